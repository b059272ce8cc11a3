//! The forms a secret takes on its way through URLs, errors and logs.
//!
//! A secret used in a URL comes back percent-encoded (paths, queries, user info) or
//! normalised (a host is lower-cased and IDNA-encoded, a whole URL re-serialised); one quoted
//! with `{:?}` in an error comes back escaped. Each form is redacted like the secret itself.
//! Case is handled by the matcher (ASCII case-insensitive), not by listing cases here.

use percent_encoding::{
    AsciiSet, CONTROLS, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode,
};

/// Characters the URL standard percent-encodes in a fragment.
const FRAGMENT: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`');
/// … in a query.
const QUERY: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>');
/// … in a path segment.
const PATH: &AsciiSet = &FRAGMENT
    .add(b'#')
    .add(b'?')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');
/// … in user info.
const USERINFO: &AsciiSet = &PATH
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

/// A form shorter than this is not added when it is shorter than the secret itself (a
/// decoded `%41` is `A`, which would redact every letter a).
const MIN_DERIVED_LEN: usize = 4;

/// `secret` and every other form of it, distinct (compared ASCII case-insensitively),
/// the secret first.
pub(super) fn forms(secret: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![secret.to_owned()];
    let mut add = |form: String| {
        if form.is_empty()
            || (form.len() < secret.len() && form.len() < MIN_DERIVED_LEN)
            || out.iter().any(|known| known.eq_ignore_ascii_case(&form))
        {
            return;
        }
        out.push(form);
    };
    for set in [NON_ALPHANUMERIC, PATH, QUERY, USERINFO, FRAGMENT] {
        add(utf8_percent_encode(secret, set).to_string());
    }
    add(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
    if secret.contains('%')
        && let Ok(decoded) = percent_decode_str(secret).decode_utf8()
    {
        add(decoded.into_owned());
    }
    let quoted = format!("{secret:?}");
    if let Some(inner) = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
        add(inner.to_owned());
    }
    if let Ok(url::Host::Domain(domain)) = url::Host::parse(secret) {
        add(domain);
    }
    if let Ok(url) = url::Url::parse(secret) {
        let serialised = url.to_string();
        // `https://host` is serialised with a trailing slash the secret lacked.
        add(serialised
            .strip_suffix('/')
            .filter(|_| !secret.ends_with('/'))
            .map_or_else(|| serialised.clone(), str::to_owned));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms_of_a_secret_are_listed() {
        let f = forms("my secret/päss");
        assert!(f.contains(&"my%20secret%2Fp%C3%A4ss".to_owned()), "{f:?}");
        assert!(f.contains(&"my+secret%2Fp%C3%A4ss".to_owned()), "{f:?}");
        assert_eq!(f[0], "my secret/päss");
    }

    #[test]
    fn hosts_and_urls_are_normalised_like_the_url_parser_does() {
        assert!(forms("Bücher.Example").contains(&"xn--bcher-kva.example".to_owned()));
        // Case alone is left to the matcher; the re-serialised path is a new form.
        let f = forms("HTTPS://Secret.Example.COM/a b");
        assert!(
            f.iter()
                .any(|s| s.eq_ignore_ascii_case("https://secret.example.com/a%20b")),
            "{f:?}"
        );
    }

    #[test]
    fn escaped_and_decoded_forms_are_listed_but_not_tiny_ones() {
        assert!(forms(r#"a"b\c"#).contains(&r#"a\"b\\c"#.to_owned()));
        assert!(forms("pa%20ss").contains(&"pa ss".to_owned()));
        assert_eq!(forms("%41"), vec!["%41".to_owned(), "%2541".to_owned()]);
    }
}
