//! A ureq transport that notices cancellation while it waits for bytes or to send them.
//!
//! A body read blocks in the socket until data arrives; a [`ProgressReader`] sees its cancel
//! flag only when that read returns. This transport, wrapped around ureq's default chain,
//! waits for input in slices of at most [`SLICE`] and checks the calling thread's current
//! cancel token between slices, so an abort stops a transfer promptly even when the server
//! sends nothing. A write blocks until the peer reads (an upload to a store that stopped
//! reading); while one is under way, the token holds a hook that shuts the socket down on
//! cancel, which ends the write at once. ureq drives a request's I/O on the calling thread,
//! so the token travels in a thread-local set by [`with_cancel`] around the whole transfer.
//!
//! This uses ureq's *unversioned* transport API; `Cargo.toml` pins ureq's minor version.
//!
//! [`ProgressReader`]: crate::ProgressReader

use std::cell::RefCell;
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, ShutdownHandle, Transport,
};

use crate::cancel::CancelToken;
use crate::progress::Cancelled;

/// The longest a blocked read waits before it looks at the cancel flag again.
const SLICE: Duration = Duration::from_millis(50);

/// This thread's current cancel token, and whether a cancel shuts a waiting read's socket
/// down at once (instead of being seen within a slice).
#[derive(Clone)]
struct Current {
    token: CancelToken,
    at_once: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Runs `f` with `token` as this thread's current cancel token.
pub(crate) fn with_cancel<T>(token: &CancelToken, f: impl FnOnce() -> T) -> T {
    set_current(token, false, f)
}

/// Runs `f` with `token` as this thread's current cancel token; a cancel shuts down the
/// socket of a read waiting for input at once. For a request that loses a race (a hedged
/// request's other half): its connection is given up anyway. The hook costs a lock per wait,
/// so it is not for the reads of a body.
pub(crate) fn with_cancel_at_once<T>(token: &CancelToken, f: impl FnOnce() -> T) -> T {
    set_current(token, true, f)
}

fn set_current<T>(token: &CancelToken, at_once: bool, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<Current>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with_borrow_mut(|current| *current = previous);
        }
    }
    let set = Current {
        token: token.clone(),
        at_once,
    };
    let previous = CURRENT.with_borrow_mut(|current| current.replace(set));
    let _reset = Reset(previous);
    f()
}

/// This thread's current cancel token, if any.
pub(crate) fn current() -> Option<CancelToken> {
    CURRENT.with_borrow(|c| c.as_ref().map(|c| c.token.clone()))
}

fn current_at_once() -> bool {
    CURRENT.with_borrow(|c| c.as_ref().is_some_and(|c| c.at_once))
}

/// ureq's default connector chain, each transport wrapped in [`CancellableTransport`].
#[derive(Debug, Default)]
pub(crate) struct CancellableConnector {
    inner: DefaultConnector,
}

/// The shutdown handle of the socket under a transport, once its connector registered it.
type Handle = Arc<Mutex<Option<Weak<dyn ShutdownHandle>>>>;

impl Connector<()> for CancellableConnector {
    type Out = CancellableTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        // The socket's connector registers its shutdown handle with the agent; keep a copy,
        // so a cancel can shut this socket down.
        let handle: Handle = Arc::default();
        let agent = Arc::clone(&details.register_shutdown);
        let kept = Arc::clone(&handle);
        let details = ConnectionDetails {
            uri: details.uri,
            addrs: details.addrs.clone(),
            config: details.config,
            request_level: details.request_level,
            resolver: details.resolver,
            now: details.now,
            timeout: details.timeout,
            current_time: Arc::clone(&details.current_time),
            run_connector: Arc::clone(&details.run_connector),
            register_shutdown: Arc::new(move |weak: Weak<dyn ShutdownHandle>| {
                *kept.lock() = Some(weak.clone());
                agent(weak)
            }),
        };
        Ok(self
            .inner
            .connect(&details, chained)?
            .map(|inner| CancellableTransport { inner, handle }))
    }
}

/// A transport whose waits for input end early when the current cancel token is cancelled,
/// and whose writes are interrupted by it.
#[derive(Debug)]
pub(crate) struct CancellableTransport {
    inner: Box<dyn Transport>,
    handle: Handle,
}

impl Transport for CancellableTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let Some(cancel) = current() else {
            return self.inner.transmit_output(amount, timeout);
        };
        if cancel.is_cancelled() {
            return Err(ureq::Error::Io(io::Error::other(Cancelled)));
        }
        let handle = self.handle.lock().clone();
        let sent = {
            let _hook = handle.map(|weak| {
                cancel.on_cancel(move || {
                    if let Some(socket) = weak.upgrade() {
                        socket.shutdown();
                    }
                })
            });
            self.inner.transmit_output(amount, timeout)
        };
        match sent {
            Err(_) if cancel.is_cancelled() => Err(ureq::Error::Io(io::Error::other(Cancelled))),
            other => other,
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let Some(cancel) = current() else {
            return self.inner.await_input(timeout);
        };
        let handle = current_at_once()
            .then(|| self.handle.lock().clone())
            .flatten();
        let _hook = handle.map(|weak| {
            cancel.on_cancel(move || {
                if let Some(socket) = weak.upgrade() {
                    socket.shutdown();
                }
            })
        });
        let real = timeout.for_read();
        let limit = (!real.after.is_not_happening()).then(|| *real.after);
        let started = Instant::now();
        loop {
            if cancel.is_cancelled() {
                return Err(ureq::Error::Io(io::Error::other(Cancelled)));
            }
            let left = limit.map(|l| l.saturating_sub(started.elapsed()));
            let slice = left.map_or(SLICE, |l| l.min(SLICE));
            let sliced = NextTimeout {
                after: slice.into(),
                reason: real.reason,
                per_read: None,
                per_write: timeout.per_write,
            };
            match self.inner.await_input(sliced) {
                // Our slice ran out, not the caller's timeout: look at the flag, wait again.
                Err(ureq::Error::Timeout(_)) if left.is_none_or(|l| l > slice) => continue,
                other => return other,
            }
        }
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}
