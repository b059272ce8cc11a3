//! Runtime URLs as shown in errors, logs and `Debug` output: credentials masked.
//!
//! A runtime URL may carry its auth token (`?token=…`, which the runtime accepts as well
//! as the `Authorization` header) or userinfo. Masking works on the text, not on a parsed
//! URL, because malformed URLs must be shown (masked) in the errors that reject them.

/// `url` with its userinfo, every query value and any fragment replaced by `***`.
///
/// `ws://user:pw@host:8080/p?token=abc&x` becomes `ws://***@host:8080/p?token=***&***`.
pub(crate) fn mask_url(url: &str) -> String {
    let parts = Parts::of(url);
    let mut out = String::with_capacity(url.len());
    out.push_str(parts.before_userinfo);
    if parts.userinfo.is_some() {
        out.push_str("***@");
    }
    out.push_str(parts.host_and_path);
    if let Some(query) = parts.query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}=***"),
                None if pair.is_empty() => String::new(),
                None => "***".to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if parts.fragment.is_some() {
        out.push_str("#***");
    }
    out
}

/// `text` (e.g. an error message about `url`) with the credentials of `url` masked
/// wherever they appear; `None` when it contains none of them.
pub(crate) fn scrub(text: &str, url: &str) -> Option<String> {
    let parts = Parts::of(url);
    let secrets = [parts.userinfo, parts.query, parts.fragment];
    let mut scrubbed = text.to_owned();
    let mut changed = false;
    for secret in secrets.into_iter().flatten().filter(|s| !s.is_empty()) {
        if scrubbed.contains(secret) {
            scrubbed = scrubbed.replace(secret, "***");
            changed = true;
        }
    }
    changed.then_some(scrubbed)
}

/// A URL cut where credentials may be (RFC 3986: the userinfo ends at the last `@` of the
/// authority, which ends at the first `/`, `?` or `#`).
struct Parts<'a> {
    /// The scheme and `://`, if any.
    before_userinfo: &'a str,
    userinfo: Option<&'a str>,
    host_and_path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> Parts<'a> {
    fn of(url: &'a str) -> Self {
        let (rest, fragment) = match url.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment)),
            None => (url, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let authority_start = rest.find("://").map_or(0, |i| i + 3);
        let authority_end = rest[authority_start..]
            .find('/')
            .map_or(rest.len(), |i| authority_start + i);
        let (userinfo, host_start) = match rest[authority_start..authority_end].rfind('@') {
            Some(at) => (
                Some(&rest[authority_start..authority_start + at]),
                authority_start + at + 1,
            ),
            None => (None, authority_start),
        };
        Self {
            before_userinfo: &rest[..authority_start],
            userinfo,
            host_and_path: &rest[host_start..],
            query,
            fragment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{mask_url, scrub};

    #[test]
    fn masks_query_values_userinfo_and_fragment() {
        assert_eq!(
            mask_url("ws://user:pw@host:8080/p?token=abc&x&empty=#frag"),
            "ws://***@host:8080/p?token=***&***&empty=***#***"
        );
        assert_eq!(
            mask_url("wss://h/?token=SECRET-TOKEN-123"),
            "wss://h/?token=***"
        );
    }

    #[test]
    fn leaves_urls_without_credentials_alone() {
        for url in ["ws://127.0.0.1:8080", "ws://h/path", "not a url", ""] {
            assert_eq!(mask_url(url), url);
        }
    }

    #[test]
    fn masks_malformed_urls_too() {
        assert_eq!(
            mask_url("http//bad url?token=s3cret"),
            "http//bad url?token=***"
        );
        assert_eq!(mask_url("a:b@h?k=v"), "***@h?k=***");
    }

    #[test]
    fn an_at_sign_in_the_query_is_not_userinfo() {
        assert_eq!(mask_url("ws://h/?mail=a@b"), "ws://h/?mail=***");
    }

    #[test]
    fn scrub_replaces_the_credentials_of_the_url_in_a_text() {
        let url = "ws://u:pw@h/?token=SECRET";
        assert_eq!(
            scrub("Unable to connect to ws://u:pw@h/?token=SECRET", url).as_deref(),
            Some("Unable to connect to ws://***@h/?***")
        );
        assert_eq!(scrub("connection refused", url), None);
    }
}
