//! Retries: which failures are worth another attempt, and how long to wait before it.

use std::time::{Duration, SystemTime};

/// How failed attempts are retried: exponential backoff with jitter, honouring `Retry-After`.
///
/// Retried: connection refused or reset, DNS failures, timeouts and stalls, a body that
/// broke off or had the wrong length or digest, and the statuses 408, 429 and 5xx. Not
/// retried: other 4xx statuses, TLS and certificate errors, refused addresses
/// ([`EgressPolicy`](crate::EgressPolicy)), and local disk errors — another attempt would
/// fail the same way.
///
/// Before retry *n* (1-based) haul waits a random time between half and all of
/// `initial_backoff × 2ⁿ⁻¹`, capped at `max_backoff` ("equal jitter": never zero, and
/// retries from many workers spread out). A `Retry-After` on a 429 or 503 replaces that
/// wait when it is longer; one longer than `max_retry_after` ends the retries at once.
///
/// ```
/// use std::time::Duration;
/// use haul::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .attempts(8)
///     .initial_backoff(Duration::from_millis(100))
///     .max_backoff(Duration::from_secs(5));
/// assert_eq!(policy.attempts, 8);
/// assert_eq!(RetryPolicy::none().attempts, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retries. Default 5.
    pub attempts: u32,
    /// The wait before the first retry, before jitter. Default 250 ms.
    pub initial_backoff: Duration,
    /// The longest wait between attempts, before jitter. Default 10 s.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one fails the object. Default 60 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Sets [`attempts`](RetryPolicy::attempts) (at least 1).
    pub fn attempts(mut self, n: u32) -> RetryPolicy {
        self.attempts = n.max(1);
        self
    }

    /// Sets [`initial_backoff`](RetryPolicy::initial_backoff).
    pub fn initial_backoff(mut self, wait: Duration) -> RetryPolicy {
        self.initial_backoff = wait;
        self
    }

    /// Sets [`max_backoff`](RetryPolicy::max_backoff).
    pub fn max_backoff(mut self, wait: Duration) -> RetryPolicy {
        self.max_backoff = wait;
        self
    }

    /// Sets [`max_retry_after`](RetryPolicy::max_retry_after).
    pub fn max_retry_after(mut self, wait: Duration) -> RetryPolicy {
        self.max_retry_after = wait;
        self
    }

    /// The wait before retry number `retry` (1-based), or `None` when there is none left or
    /// the server asked for a longer pause than [`max_retry_after`](Self::max_retry_after).
    /// `seed` varies the jitter between callers.
    pub(crate) fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        seed: u64,
    ) -> Option<Duration> {
        if retry >= self.attempts {
            return None;
        }
        let exponent = retry.saturating_sub(1).min(30);
        let full = self
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        // Equal jitter: half fixed, half random.
        let nanos = u64::try_from(full.as_nanos()).unwrap_or(u64::MAX);
        let half = nanos / 2;
        let random = crate::downloader::hrw::mix(seed ^ u64::from(retry)) % (half + 1);
        let backoff = Duration::from_nanos(half + random);
        match retry_after {
            Some(asked) if asked > self.max_retry_after => None,
            Some(asked) => Some(asked.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP-date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP/1.1 servers send.
pub(crate) fn parse_http_date(value: &str) -> Option<SystemTime> {
    let rest = value.get(5..)?; // "Sun, "
    let mut fields = rest.split(' ');
    let day: u64 = fields.next()?.parse().ok()?;
    let month_name = fields.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u64 + 1;
    let year: u64 = fields.next()?.parse().ok()?;
    let mut clock = fields.next()?.split(':');
    let hour: u64 = clock.next()?.parse().ok()?;
    let minute: u64 = clock.next()?.parse().ok()?;
    let second: u64 = clock.next()?.parse().ok()?;
    if fields.next()? != "GMT"
        || fields.next().is_some()
        || !(1..=31).contains(&day)
        || year < 1970
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Formats `time` as an IMF-fixdate.
pub(crate) fn format_http_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let rem = secs % 86_400;
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_round_trip_and_match_known_values() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
        assert_eq!(format_http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(parse_http_date(&format_http_date(leap)), Some(leap));
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "x",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_700);
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(77))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_and_respects_the_caps() {
        let p = RetryPolicy::default()
            .attempts(10)
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(800))
            .max_retry_after(Duration::from_secs(5));
        for seed in 0..200 {
            for (retry, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (9, 800)] {
                let d = p.delay(retry, None, seed).unwrap();
                let full = Duration::from_millis(full);
                assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
            }
        }
        assert_eq!(p.delay(10, None, 1), None, "attempts used up");
        let asked = Duration::from_secs(2);
        assert_eq!(p.delay(1, Some(asked), 1), Some(asked));
        assert_eq!(p.delay(1, Some(Duration::from_secs(6)), 1), None);
        assert_eq!(RetryPolicy::none().delay(1, None, 1), None);
    }
}
