//! A token bucket shared by every transfer of one job: a byte rate across all its connections.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::cancel::CancelToken;

/// Longest single sleep, so a cancel is seen promptly while throttled.
const SLICE: Duration = Duration::from_millis(50);

/// A byte-rate limit: `rate` bytes per second with a burst of one second's worth.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub(crate) fn new(bytes_per_second: u64) -> RateLimiter {
        let rate = bytes_per_second.max(1) as f64;
        RateLimiter {
            rate,
            burst: rate,
            bucket: Mutex::new(Bucket {
                tokens: rate,
                last: Instant::now(),
            }),
        }
    }

    /// Takes `bytes` tokens, sleeping (in short slices, watching `cancel`) until the debt is
    /// paid. The lock is never held while sleeping.
    pub(crate) fn take(&self, bytes: u64, cancel: &CancelToken) {
        let mut wait = {
            let mut bucket = self.bucket.lock();
            let now = Instant::now();
            let refill = now.duration_since(bucket.last).as_secs_f64() * self.rate;
            bucket.tokens = (bucket.tokens + refill).min(self.burst) - bytes as f64;
            bucket.last = now;
            if bucket.tokens >= 0.0 {
                return;
            }
            Duration::from_secs_f64(-bucket.tokens / self.rate)
        };
        while !wait.is_zero() && !cancel.is_cancelled() {
            let slice = wait.min(SLICE);
            std::thread::sleep(slice);
            wait -= slice;
        }
    }
}
