//! When and how long to wait before retrying a request, the way the official SDKs do.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::config::RetryPolicy;

/// Whether a response with this status is worth another attempt: 408, 409, 429, 5xx. A
/// server may decide for itself with `x-should-retry: true|false`.
pub(crate) fn should_retry(status: StatusCode, headers: &HeaderMap) -> bool {
    match headers.get("x-should-retry").and_then(|v| v.to_str().ok()) {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

/// The delay the server asks for: `retry-after-ms` (milliseconds), else `retry-after`
/// (seconds, or an HTTP date). A negative or unreadable value counts as none.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return seconds(ms / 1000.0);
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let when = httpdate(value)?;
    when.duration_since(std::time::SystemTime::now()).ok()
}

fn seconds(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers send.
fn httpdate(value: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?;
    let (day, year): (u64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    // Days since 1970-01-01 of the first of the month (civil-from-days, inverted).
    let (y, mo) = if month < 2 {
        (year - 1, month + 10)
    } else {
        (year, month - 2)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * i64::try_from(mo).ok()? + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()? + day - 1;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// How long to wait before attempt `attempt + 1`: the server's wish when it is reasonable,
/// else `initial_backoff · 2^(attempt-1)` capped at `max_backoff`, minus up to 25% jitter
/// so that many clients do not retry in step.
pub(crate) fn delay(policy: &RetryPolicy, attempt: u32, asked: Option<Duration>) -> Duration {
    if let Some(asked) = asked.filter(|d| *d <= policy.max_retry_after) {
        return asked;
    }
    let exponent = attempt.saturating_sub(1).min(31);
    let backoff = policy
        .initial_backoff
        .saturating_mul(1 << exponent)
        .min(policy.max_backoff);
    backoff.mul_f64(1.0 - 0.25 * unit_random())
}

/// A number in [0, 1) from the standard library's per-process random hash keys.
fn unit_random() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    #[allow(clippy::cast_precision_loss)]
    let value = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retryable_statuses_follow_the_sdks() {
        let none = HeaderMap::new();
        for code in [408, 409, 429, 500, 502, 503] {
            assert!(
                should_retry(StatusCode::from_u16(code).unwrap(), &none),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 422] {
            assert!(
                !should_retry(StatusCode::from_u16(code).unwrap(), &none),
                "{code}"
            );
        }
        let no = headers(&[("x-should-retry", "false")]);
        assert!(!should_retry(StatusCode::TOO_MANY_REQUESTS, &no));
    }

    #[test]
    fn retry_after_headers_are_read() {
        let ms = headers(&[("retry-after-ms", "250"), ("retry-after", "9")]);
        assert_eq!(retry_after(&ms), Some(Duration::from_millis(250)));
        let secs = headers(&[("retry-after", "2")]);
        assert_eq!(retry_after(&secs), Some(Duration::from_secs(2)));
        let past = headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(retry_after(&past), None);
        assert_eq!(
            httpdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
    }

    #[test]
    fn delays_grow_and_stay_bounded() {
        let policy = RetryPolicy::default();
        let first = delay(&policy, 1, None);
        assert!(first <= policy.initial_backoff && first >= policy.initial_backoff * 3 / 4);
        assert!(delay(&policy, 30, None) <= policy.max_backoff);
        assert_eq!(
            delay(&policy, 1, Some(Duration::from_millis(7))),
            Duration::from_millis(7)
        );
        let too_long = Some(policy.max_retry_after + Duration::from_secs(1));
        assert!(delay(&policy, 1, too_long) <= policy.initial_backoff);
    }
}
