//! Byte progress of one transfer, and the `Read` wrapper that counts it and checks cancellation.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::cancel::CancelToken;

const UNKNOWN: u64 = u64::MAX;

/// Bytes done and expected for one transfer, readable from any thread while it runs.
#[derive(Debug)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    /// Connections the transfer reads from now, beyond the first (a split object's parts).
    extra_connections: AtomicU32,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            done: AtomicU64::new(0),
            total: AtomicU64::new(UNKNOWN),
            extra_connections: AtomicU32::new(0),
        }
    }
}

impl Progress {
    /// Zero bytes done, total unknown.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Bytes received so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Bytes expected, when the server said.
    pub fn total(&self) -> Option<u64> {
        match self.total.load(Ordering::Relaxed) {
            UNKNOWN => None,
            total => Some(total),
        }
    }

    /// Connections the transfer reads from now: 1, or more while an object comes in
    /// parallel ranged parts (aria2c's `CN`).
    pub fn connections(&self) -> u32 {
        1 + self.extra_connections.load(Ordering::Relaxed)
    }

    pub(crate) fn set_connections(&self, n: usize) {
        let extra = u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.extra_connections.store(extra, Ordering::Relaxed);
    }

    pub(crate) fn set_total(&self, total: Option<u64>) {
        self.total
            .store(total.unwrap_or(UNKNOWN), Ordering::Relaxed);
    }

    pub(crate) fn set_done(&self, bytes: u64) {
        self.done.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn reset(&self) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(UNKNOWN, Ordering::Relaxed);
        self.extra_connections.store(0, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The error a [`ProgressReader`] returns once its token is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("transfer cancelled")]
pub struct Cancelled;

/// Whether `error` is the one a [`ProgressReader`] returns on cancellation.
pub fn is_cancelled(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<Cancelled>())
}

/// A `Read` wrapper that adds every byte read to a [`Progress`] and fails with [`Cancelled`]
/// (an `io::Error` of kind `Other`) as soon as its [`CancelToken`] is cancelled: the flag is
/// checked before every read of the inner reader. Bytes a read brought while the token was
/// being cancelled are still returned (they are good bytes, which a resumable download
/// keeps); the read after them fails.
///
/// ```
/// use std::io::Read;
/// use haul::{CancelToken, Progress, ProgressReader};
///
/// let (progress, cancel) = (Progress::new(), CancelToken::new());
/// let mut reader = ProgressReader::new(&b"hello"[..], &progress, &cancel);
/// let mut out = Vec::new();
/// reader.read_to_end(&mut out)?;
/// assert_eq!(progress.done(), 5);
///
/// cancel.cancel();
/// let err = reader.read(&mut [0; 8]).unwrap_err();
/// assert!(haul::is_cancelled(&err));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a Progress,
    cancel: &'a CancelToken,
}

impl<'a, R: Read> ProgressReader<'a, R> {
    /// Wraps `inner`.
    pub fn new(inner: R, progress: &'a Progress, cancel: &'a CancelToken) -> Self {
        ProgressReader {
            inner,
            progress,
            cancel,
        }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other(Cancelled));
        }
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}
