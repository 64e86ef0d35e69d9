//! Cooperative cancellation: a shared flag that transfers check on every read, and that wakes
//! whatever waits on it.

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

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    hooks: Mutex<Hooks>,
    wake: Condvar,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("cancelled", &self.cancelled)
            .finish_non_exhaustive()
    }
}

/// What runs when the token is cancelled: each hook, with the id that deregisters it.
#[derive(Default)]
struct Hooks {
    next: u64,
    registered: Vec<(u64, Box<dyn Fn() + Send + Sync>)>,
}

/// A hook registered with [`CancelToken::on_cancel`]; dropping it deregisters the hook,
/// which never runs after that.
#[must_use = "the hook is deregistered when this is dropped"]
pub(crate) struct OnCancel<'a> {
    token: &'a CancelToken,
    id: u64,
}

impl Drop for OnCancel<'_> {
    fn drop(&mut self) {
        let mut hooks = self.token.0.hooks.lock();
        hooks.registered.retain(|(id, _)| *id != self.id);
    }
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels every holder of this token.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
        let hooks = self.0.hooks.lock();
        for (_, hook) in &hooks.registered {
            hook();
        }
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
        let mut hooks = self.0.hooks.lock();
        while !self.is_cancelled() {
            if self.0.wake.wait_until(&mut hooks, deadline).timed_out() {
                return !self.is_cancelled();
            }
        }
        false
    }

    /// Runs `hook` when the token is cancelled (at once, if it already is), until the
    /// returned guard is dropped: for a blocking call the flag alone cannot interrupt, such
    /// as a write into a socket whose peer stopped reading. Hooks run under the token's
    /// lock, so one never runs after its guard is gone; keep them short.
    pub(crate) fn on_cancel(&self, hook: impl Fn() + Send + Sync + 'static) -> OnCancel<'_> {
        let mut hooks = self.0.hooks.lock();
        if self.is_cancelled() {
            hook();
        }
        let id = hooks.next;
        hooks.next += 1;
        hooks.registered.push((id, Box::new(hook)));
        OnCancel { token: self, id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn hooks_run_on_cancel_only_while_registered() {
        let token = CancelToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = |runs: &Arc<AtomicU32>| {
            let runs = Arc::clone(runs);
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
            }
        };
        drop(token.on_cancel(counted(&runs))); // gone before the cancel: never runs
        let kept = token.on_cancel(counted(&runs));
        token.cancel();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        drop(kept);
        // Registered after the cancel: runs at once.
        let _late = token.on_cancel(counted(&runs));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
