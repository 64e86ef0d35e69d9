//! The gate: holds `gate_after=N` responses mid-body until the test releases it.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Holds responses mid-body (those with the `gate_after=N` fault) until released.
///
/// A test waits until a response has reached the gate ([`Gate::wait_arrivals`]), does what it
/// must while the transfer is provably in the middle of the body (abort it, read its progress),
/// then [`release`](Gate::release)s it. No sleeps needed.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct State {
    arrived: u64,
    waiting: u64,
    open: bool,
    stopped: bool,
}

impl Gate {
    pub(super) fn new() -> Gate {
        Gate::default()
    }

    /// How many responses have reached the gate so far.
    pub fn arrivals(&self) -> u64 {
        self.state.lock().arrived
    }

    /// How many responses are held at the gate now.
    pub fn waiting(&self) -> u64 {
        self.state.lock().waiting
    }

    /// Blocks until at least `n` responses have reached the gate, or `timeout` passes.
    /// Returns whether they did.
    pub fn wait_arrivals(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        while state.arrived < n {
            if self.cv.wait_until(&mut state, deadline).timed_out() {
                return state.arrived >= n;
            }
        }
        true
    }

    /// Opens the gate: held responses go on, and later ones pass without stopping.
    pub fn release(&self) {
        self.state.lock().open = true;
        self.cv.notify_all();
    }

    /// Closes the gate again: later responses stop at it.
    pub fn close(&self) {
        self.state.lock().open = false;
    }

    /// Called by a response that reached its `gate_after` point; returns when it may go on.
    pub(super) fn pass(&self) {
        let mut state = self.state.lock();
        state.arrived += 1;
        state.waiting += 1;
        self.cv.notify_all();
        while !state.open && !state.stopped {
            self.cv.wait(&mut state);
        }
        state.waiting -= 1;
    }

    pub(super) fn stop(&self) {
        self.state.lock().stopped = true;
        self.cv.notify_all();
    }
}
