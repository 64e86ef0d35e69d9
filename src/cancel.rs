//! Cooperative cancellation: a shared flag that transfers check on every read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A cancellation flag shared between whoever cancels and the transfers that check it.
///
/// Cloning shares the flag. Cancelling is permanent.
///
/// ```
/// let token = haul::CancelToken::new();
/// let seen_by_worker = token.clone();
/// token.cancel();
/// assert!(seen_by_worker.is_cancelled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels every holder of this token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`cancel`](CancelToken::cancel) has been called on any clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
