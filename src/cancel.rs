//! Cooperative cancellation: a shared flag that transfers check on every read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A cancellation flag shared between whoever cancels and the transfers that check it.
///
/// Cloning shares the flag. Cancelling is permanent, and wakes every
/// [`sleep`](CancelToken::sleep) on it at once.
///
/// ```
/// use std::time::Duration;
///
/// let token = haul::CancelToken::new();
/// let seen_by_worker = token.clone();
/// token.cancel();
/// assert!(seen_by_worker.is_cancelled());
/// assert!(!seen_by_worker.sleep(Duration::from_secs(3600)), "returns at once");
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels every holder of this token.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
        let _guard = self.0.lock.lock();
        self.0.wake.notify_all();
    }

    /// Whether [`cancel`](CancelToken::cancel) has been called on any clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }

    /// Waits for `duration` unless the token is cancelled first. Returns `true` when the
    /// whole time passed, `false` when cancelled (at once, not at the end of the wait).
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut guard = self.0.lock.lock();
        while !self.is_cancelled() {
            if self.0.wake.wait_until(&mut guard, deadline).timed_out() {
                return !self.is_cancelled();
            }
        }
        false
    }
}
