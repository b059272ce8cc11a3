//! What a connection asks for at the upgrade: a plain session, a new durable one, or the
//! resume of one (headers first, the query string for clients that cannot set headers).

use std::borrow::Cow;

use axum::http::{HeaderMap, Uri};
use runtimeuse_protocol::resume::{
    HEADER_LAST_SEQ, HEADER_RESUMABLE, HEADER_RESUME_KEY, HEADER_SESSION_ID, QUERY_LAST_SEQ,
    QUERY_RESUMABLE, QUERY_RESUME_KEY, QUERY_SESSION_ID,
};

/// The session a connection asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionRequest {
    /// No opt-in: the session ends with its connection.
    Plain,
    /// A new durable session.
    Durable,
    /// The resume of a durable session.
    Resume(ResumeRequest),
}

/// Who resumes what, from where.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ResumeRequest {
    pub session_id: String,
    pub resume_key: String,
    /// The last runtime frame the client holds.
    pub last_seq: u64,
}

impl std::fmt::Debug for ResumeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeRequest")
            .field("session_id", &self.session_id)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

/// The value of query parameter `name`, percent-decoded.
pub(crate) fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<Cow<'a, str>> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Header `header`, else query parameter `query`, trimmed.
fn param<'a>(headers: &'a HeaderMap, uri: &'a Uri, header: &str, query: &str) -> Option<String> {
    headers
        .get(header)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .or_else(|| query_param(uri, query).map(|v| v.trim().to_owned()))
        .filter(|v| !v.is_empty())
}

impl SessionRequest {
    /// Reads the request; an error says what is malformed.
    pub fn from_request(headers: &HeaderMap, uri: &Uri) -> Result<Self, String> {
        let session_id = param(headers, uri, HEADER_SESSION_ID, QUERY_SESSION_ID);
        let Some(session_id) = session_id else {
            let durable = param(headers, uri, HEADER_RESUMABLE, QUERY_RESUMABLE);
            return Ok(match durable.as_deref() {
                None | Some("0") | Some("false") => SessionRequest::Plain,
                Some(_) => SessionRequest::Durable,
            });
        };
        let resume_key = param(headers, uri, HEADER_RESUME_KEY, QUERY_RESUME_KEY)
            .ok_or("a resume needs the session's resume key")?;
        let last_seq = match param(headers, uri, HEADER_LAST_SEQ, QUERY_LAST_SEQ) {
            None => 0,
            Some(text) => text
                .parse()
                .map_err(|_| format!("last seq {text:?} is not a number"))?,
        };
        Ok(SessionRequest::Resume(ResumeRequest {
            session_id,
            resume_key,
            last_seq,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], uri: &str) -> Result<SessionRequest, String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        SessionRequest::from_request(&map, &uri.parse().unwrap())
    }

    #[test]
    fn opt_in_and_resume_come_from_headers_or_the_query() {
        assert_eq!(request(&[], "/"), Ok(SessionRequest::Plain));
        assert_eq!(request(&[], "/?token=x"), Ok(SessionRequest::Plain));
        assert_eq!(
            request(&[("x-runtimeuse-resumable", "1")], "/"),
            Ok(SessionRequest::Durable)
        );
        assert_eq!(
            request(&[], "/?runtimeuse_resumable=1"),
            Ok(SessionRequest::Durable)
        );
        let resume = request(
            &[
                ("x-runtimeuse-session-id", "abc"),
                ("x-runtimeuse-resume-key", "k"),
            ],
            "/?runtimeuse_last_seq=12",
        )
        .unwrap();
        assert_eq!(
            resume,
            SessionRequest::Resume(ResumeRequest {
                session_id: "abc".into(),
                resume_key: "k".into(),
                last_seq: 12
            })
        );
        let debug = format!("{resume:?}");
        assert!(
            !debug.contains("\"k\""),
            "the key stays out of logs: {debug}"
        );
    }

    #[test]
    fn malformed_resumes_say_what_is_wrong() {
        let no_key = request(&[], "/?runtimeuse_session_id=abc").unwrap_err();
        assert!(no_key.contains("resume key"), "{no_key}");
        let bad_seq = request(
            &[],
            "/?runtimeuse_session_id=a&runtimeuse_resume_key=k&runtimeuse_last_seq=x",
        )
        .unwrap_err();
        assert!(bad_seq.contains("not a number"), "{bad_seq}");
    }
}
