//! The one classifier: which failures are worth another attempt, and how long the server asked
//! us to wait. Every transfer and every S3 control call asks it.
//!
//! Retried: no response at all (connection refused or reset, DNS, timeouts, protocol errors),
//! a body that broke off or had the wrong length or digest, and the statuses 408, 429 and
//! 5xx (S3's `SlowDown` is a 503; its `RequestTimeout` a 400 that is retried too). Not
//! retried: other 4xx statuses, TLS and certificate errors, refused addresses, local disk
//! errors, cancellation.

use std::time::{Duration, SystemTime};

/// Whether another attempt could go better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Yes: after the policy's backoff, or after `after` when the server said so and that is
    /// longer.
    Retry {
        /// The server's `Retry-After`.
        after: Option<Duration>,
    },
    /// No: it would fail the same way.
    Fatal,
}

impl Verdict {
    /// Worth another attempt, with no word from the server on when.
    pub(crate) const AGAIN: Verdict = Verdict::Retry { after: None };
}

/// A failed attempt: the error, and whether another attempt could go better.
#[derive(Debug)]
pub(crate) struct Failure<E> {
    pub(crate) error: E,
    pub(crate) verdict: Verdict,
}

impl<E> Failure<E> {
    /// A failure another attempt would not mend.
    pub(crate) fn fatal(error: E) -> Failure<E> {
        Failure {
            error,
            verdict: Verdict::Fatal,
        }
    }

    /// A failure another attempt may mend.
    pub(crate) fn transient(error: E) -> Failure<E> {
        Failure {
            error,
            verdict: Verdict::AGAIN,
        }
    }
}

/// An unwanted HTTP status: 408, 429 and 5xx are retried, after the server's `Retry-After`
/// for 429 and 503.
pub(crate) fn status(status: u16, headers: &ureq::http::HeaderMap) -> Verdict {
    match status {
        429 | 503 => Verdict::Retry {
            after: headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, SystemTime::now())),
        },
        408 | 500..=599 => Verdict::AGAIN,
        _ => Verdict::Fatal,
    }
}

/// An S3 error status with its `<Code>`: the status decides, except for the codes S3 sends
/// with a 4xx that are still worth another attempt.
pub(crate) fn s3_status(status: u16, code: Option<&str>) -> Verdict {
    match code {
        Some("RequestTimeout" | "SlowDown" | "InternalError" | "ServiceUnavailable") => {
            Verdict::AGAIN
        }
        _ => self::status(status, &ureq::http::HeaderMap::new()),
    }
}

/// A request that got no response.
pub(crate) fn request(error: &ureq::Error) -> Verdict {
    if crate::http::egress::refusal(error).is_some()
        || crate::http::untrusted::untrusted(error).is_some()
    {
        return Verdict::Fatal;
    }
    match error {
        ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound
        | ureq::Error::Protocol(_) => Verdict::AGAIN,
        _ => Verdict::Fatal,
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP-date.
pub(crate) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_worth_another_attempt() {
        let none = ureq::http::HeaderMap::new();
        for retried in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(status(retried, &none), Verdict::Retry { .. }),
                "{retried}"
            );
        }
        for fatal in [400, 401, 403, 404, 410, 412, 416] {
            assert_eq!(status(fatal, &none), Verdict::Fatal, "{fatal}");
        }
        let mut asked = ureq::http::HeaderMap::new();
        asked.insert("retry-after", "7".parse().unwrap());
        assert_eq!(
            status(503, &asked),
            Verdict::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
        // Only 429 and 503 carry a Retry-After that counts.
        assert_eq!(status(500, &asked), Verdict::AGAIN);
        assert_eq!(s3_status(400, Some("RequestTimeout")), Verdict::AGAIN);
        assert_eq!(s3_status(403, Some("AccessDenied")), Verdict::Fatal);
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        // RFC 9110's example date, 23 seconds after `now`.
        assert_eq!(
            retry_after(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                now - Duration::from_secs(23)
            ),
            Some(Duration::from_secs(23))
        );
        assert_eq!(
            retry_after(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                now + Duration::from_secs(5)
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
