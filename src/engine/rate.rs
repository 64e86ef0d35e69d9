//! A token bucket shared by every transfer of one job: a byte rate across all its connections.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::cancel::CancelToken;

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

    /// Takes `bytes` tokens, waiting until the debt is paid or `cancel` is cancelled
    /// (which ends the wait at once). The lock is never held while waiting.
    pub(crate) fn take(&self, bytes: u64, cancel: &CancelToken) {
        let wait = {
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
        cancel.sleep(wait);
    }
}

/// `reader`, paying `limiter` for every byte when there is one.
pub(crate) fn limited<'a, R: Read + 'a>(
    reader: R,
    limiter: Option<&'a RateLimiter>,
    cancel: &'a CancelToken,
) -> Box<dyn Read + 'a> {
    match limiter {
        None => Box::new(reader),
        Some(limiter) => Box::new(Throttled {
            inner: reader,
            limiter,
            cancel,
        }),
    }
}

/// A reader that pays a rate limiter for every byte it returns.
pub(crate) struct Throttled<'a, R> {
    pub(crate) inner: R,
    pub(crate) limiter: &'a RateLimiter,
    pub(crate) cancel: &'a CancelToken,
}

impl<R: Read> Read for Throttled<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Small reads keep the pacing smooth and the limiter fair between connections.
        let len = buf.len().min(64 * 1024);
        let n = self.inner.read(&mut buf[..len])?;
        self.limiter.take(n as u64, self.cancel);
        Ok(n)
    }
}
