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
/// Anything out of range (day 00 or 31 Feb, year 0 or beyond 9999, hour 24…) is no date:
/// the header comes from the network and must not make the arithmetic overflow.
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
    if !(1..=9999).contains(&year) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    // 60: a leap second.
    if *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
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
    // Before 1970: in the past anyway.
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()? + (day - 1);
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    std::time::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days in `month` (0 = January) of `year`, in the proleptic Gregorian calendar.
fn days_in_month(year: i64, month: usize) -> u64 {
    match month {
        1 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        1 => 28,
        3 | 5 | 8 | 10 => 30,
        _ => 31,
    }
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
    fn malformed_dates_are_no_dates() {
        let bad = [
            "Thu, 00 Jan 1970 00:00:00 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Wed, 30 Feb 2000 00:00:00 GMT",
            "Tue, 29 Feb 2023 00:00:00 GMT",
            "Sun, 99999999999999999999 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 9223372036854775807 08:49:37 GMT",
            "Sun, 06 Nov -9223372036854775808 08:49:37 GMT",
            "Sun, 06 Nov 290000000000 08:49:37 GMT",
            "Sun, 06 Nov 10000 08:49:37 GMT",
            "Sun, 06 Nov 0 08:49:37 GMT",
            "Sun, 06 Nov 1994 99999999999999999:00:00 GMT",
            "Sun, 06 Nov 1994 3000000000000000:00:00 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, 06 Nov 1994 08:18446744073709551615:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37:00 GMT",
            "Sun, 06 Nov 1994 -1:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
        ];
        for value in bad {
            assert_eq!(httpdate(value), None, "{value}");
            assert_eq!(retry_after(&headers(&[("retry-after", value)])), None);
        }
        // The bounds themselves are dates.
        assert_eq!(
            httpdate("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(std::time::UNIX_EPOCH)
        );
        assert_eq!(
            httpdate("Thu, 29 Feb 2024 23:59:60 GMT"),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(1_709_251_200))
        );
        assert_eq!(
            httpdate("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(253_402_300_799))
        );
        let far = headers(&[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")]);
        assert!(retry_after(&far).is_some_and(|d| d > Duration::from_secs(1 << 32)));
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
