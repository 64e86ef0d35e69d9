//! Retries: the policy (how many attempts, how long between them) and the one loop that runs
//! them, for every transfer and every S3 call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::cancel::CancelToken;
use crate::engine::classify::{Failure, Verdict};

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

/// Runs `attempt` (given its number, from 1) until it succeeds, fails for good, is
/// cancelled, or `policy` gives up: the one retry loop of every transfer and S3 call. Between
/// attempts it waits the policy's backoff, or the server's `Retry-After` when longer, on
/// `cancel` (the calling thread's current token when `None`), so an abort ends the wait at
/// once; `cancelled` turns the last failure's error into the one returned then. Each retry is logged at warn and counted
/// in `retries`. `seed` varies the jitter between callers.
pub(crate) fn retrying<T, E: std::error::Error>(
    policy: &RetryPolicy,
    cancel: Option<&CancelToken>,
    seed: u64,
    retries: Option<&AtomicU64>,
    mut attempt: impl FnMut(u32) -> Result<T, Failure<E>>,
    cancelled: impl FnOnce(E) -> E,
) -> Result<T, E> {
    let current = cancel.cloned().or_else(crate::http::transport::current);
    let seed = seed
        ^ SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
    let mut number = 1;
    loop {
        let failure = match attempt(number) {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        if current.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Err(cancelled(failure.error));
        }
        let after = match failure.verdict {
            Verdict::Fatal => return Err(failure.error),
            Verdict::Retry { after } => after,
        };
        let Some(wait) = policy.delay(number, after, seed) else {
            return Err(failure.error);
        };
        log::warn!(
            "{}; attempt {number} of {} failed, retrying in {wait:.2?}",
            error_chain(&failure.error),
            policy.attempts
        );
        let waited = match &current {
            Some(token) => token.sleep(wait),
            None => {
                std::thread::sleep(wait);
                true
            }
        };
        if !waited {
            return Err(cancelled(failure.error));
        }
        number += 1;
        if let Some(retries) = retries {
            retries.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An error and its sources on one line, `what: why: why`, as haul prints and logs them.
///
/// ```
/// let error = haul::name_from_url("http://h/%2e%2e").unwrap_err();
/// assert_eq!(
///     haul::error_chain(&error),
///     "URL \"http://h/%2e%2e\" gives no usable object name: object name \"..\" has a \"..\" segment"
/// );
/// ```
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

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
