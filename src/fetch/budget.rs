//! The byte budget: a counting semaphore over bytes, strictly first-in first-out, whose
//! permits give their bytes back when dropped (tokio's owned-permit shape, blocking).
//!
//! # Fairness
//!
//! Waiters are served in the order they [`enqueue`](MemoryBudget::enqueue)d. The waiter at the
//! head blocks everyone behind it until its bytes are free, even if a later, smaller request
//! would fit now (no barging). This is what lets a large reservation ever succeed, and it is
//! what the fetcher relies on: each request enqueues its reservations in the caller's order,
//! so the object the caller needs next is never overtaken by a later one.

use std::collections::VecDeque;
use std::sync::Arc;

use std::thread::Thread;

use parking_lot::Mutex;

use crate::cancel::CancelToken;
use crate::progress::Cancelled;

/// A pool of bytes shared by every request of a [`Fetcher`](crate::fetch::Fetcher).
///
/// Only the waiter at the head of the queue can ever proceed, so only it is woken (each
/// waiter parks its own thread): no thundering herd however many threads wait.
#[derive(Debug)]
pub struct MemoryBudget {
    total: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    available: u64,
    peak_in_use: u64,
    queue: VecDeque<Waiter>,
    next_ticket: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    bytes: u64,
    /// The thread waiting for this ticket, once it waits.
    thread: Option<Thread>,
}

impl State {
    /// Wakes the head waiter when its bytes are free.
    fn wake_head(&self) {
        if let Some(head) = self.queue.front()
            && head.bytes <= self.available
            && let Some(thread) = &head.thread
        {
            thread.unpark();
        }
    }
}

/// A place in the budget's queue, for `bytes` bytes. Redeem it with
/// [`MemoryBudget::wait`]; dropping it unredeemed leaves the queue.
#[derive(Debug)]
#[must_use = "a ticket holds a place in the queue until redeemed or dropped"]
pub(crate) struct Ticket {
    budget: Arc<MemoryBudget>,
    id: u64,
    bytes: u64,
    redeemed: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.redeemed {
            let mut state = self.budget.state.lock();
            state.queue.retain(|w| w.id != self.id);
            state.wake_head();
        }
    }
}

/// Bytes held from a [`MemoryBudget`]; they go back when this is dropped.
#[derive(Debug)]
#[must_use = "the bytes go back as soon as the permit is dropped"]
pub struct BudgetPermit {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl BudgetPermit {
    /// The bytes this permit holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        if self.bytes > 0 {
            let mut state = self.budget.state.lock();
            state.available += self.bytes;
            debug_assert!(state.available <= self.budget.total);
            state.wake_head();
        }
    }
}

impl MemoryBudget {
    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            total,
            state: Mutex::new(State {
                available: total,
                peak_in_use: 0,
                queue: VecDeque::new(),
                next_ticket: 0,
            }),
        })
    }

    /// The whole budget.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held by permits now.
    pub fn in_use(&self) -> u64 {
        self.total - self.state.lock().available
    }

    /// The most bytes ever held at once.
    pub fn peak_in_use(&self) -> u64 {
        self.state.lock().peak_in_use
    }

    /// Joins the queue for `bytes` (at most the whole budget). Never blocks.
    ///
    /// # Panics
    ///
    /// If `bytes` exceeds the whole budget: callers split such objects into parts.
    pub(crate) fn enqueue(self: &Arc<Self>, bytes: u64) -> Ticket {
        assert!(
            bytes <= self.total,
            "{bytes} bytes exceed the whole budget of {}",
            self.total
        );
        let mut state = self.state.lock();
        let id = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back(Waiter {
            id,
            bytes,
            thread: None,
        });
        Ticket {
            budget: Arc::clone(self),
            id,
            bytes,
            redeemed: false,
        }
    }

    /// Blocks until `ticket` is at the head of the queue and its bytes are free, or until
    /// `cancel` is cancelled. Whoever cancels must call [`wake_all`](MemoryBudget::wake_all):
    /// a flag alone wakes no one.
    pub(crate) fn wait(
        &self,
        mut ticket: Ticket,
        cancel: &CancelToken,
    ) -> Result<BudgetPermit, Cancelled> {
        loop {
            let mut state = self.state.lock();
            if cancel.is_cancelled() {
                drop(state);
                return Err(Cancelled); // the ticket's Drop leaves the queue
            }
            let at_head = state.queue.front().is_some_and(|w| w.id == ticket.id);
            if at_head && state.available >= ticket.bytes {
                state.queue.pop_front();
                state.available -= ticket.bytes;
                let in_use = self.total - state.available;
                state.peak_in_use = state.peak_in_use.max(in_use);
                // The next head may fit too.
                state.wake_head();
                ticket.redeemed = true;
                return Ok(BudgetPermit {
                    budget: Arc::clone(&ticket.budget),
                    bytes: ticket.bytes,
                });
            }
            if let Some(waiter) = state.queue.iter_mut().find(|w| w.id == ticket.id)
                && waiter.thread.is_none()
            {
                waiter.thread = Some(std::thread::current());
            }
            drop(state);
            // An unpark between the unlock and here is kept: park returns at once.
            std::thread::park();
        }
    }

    /// Takes `bytes` from the budget, joining the back of the queue and blocking until they
    /// are free, or until `cancel` is cancelled (whoever cancels must then call
    /// [`wake_all`](MemoryBudget::wake_all): a flag alone wakes no one).
    ///
    /// # Errors
    ///
    /// [`Cancelled`] when `cancel` was cancelled first.
    ///
    /// # Panics
    ///
    /// If `bytes` exceeds the whole budget.
    pub fn acquire(
        self: &Arc<Self>,
        bytes: u64,
        cancel: &CancelToken,
    ) -> Result<BudgetPermit, Cancelled> {
        let ticket = self.enqueue(bytes);
        self.wait(ticket, cancel)
    }

    /// Takes `bytes` now if that needs no waiting: nobody is queued ahead (the queue stays
    /// first-in first-out) and the bytes are free. `None` otherwise.
    pub fn try_acquire(self: &Arc<Self>, bytes: u64) -> Option<BudgetPermit> {
        let mut state = self.state.lock();
        if !state.queue.is_empty() || state.available < bytes {
            return None;
        }
        state.available -= bytes;
        let in_use = self.total - state.available;
        state.peak_in_use = state.peak_in_use.max(in_use);
        Some(BudgetPermit {
            budget: Arc::clone(self),
            bytes,
        })
    }

    /// Wakes every waiter so it looks at its cancel flag.
    pub fn wake_all(&self) {
        let state = self.state.lock();
        for thread in state.queue.iter().filter_map(|w| w.thread.as_ref()) {
            thread.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn try_acquire_never_waits_and_never_jumps_the_queue() {
        let budget = MemoryBudget::new(100);
        let held = budget.try_acquire(60).expect("free");
        assert!(budget.try_acquire(50).is_none(), "only 40 left");
        let more = budget.try_acquire(40).expect("exactly what is left");
        assert_eq!(budget.in_use(), 100);
        drop(more);
        // A queued waiter comes first, even for bytes that are free.
        let ticket = budget.enqueue(70);
        assert!(budget.try_acquire(10).is_none(), "someone is queued");
        drop(ticket);
        assert!(budget.try_acquire(10).is_some());
        drop(held);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn permits_give_bytes_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let cancel = CancelToken::new();
        let a = budget.acquire(60, &cancel).unwrap();
        assert_eq!(budget.in_use(), 60);
        drop(a);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.peak_in_use(), 60);
    }

    #[test]
    fn bytes_held_never_exceed_the_budget_under_contention() {
        let budget = MemoryBudget::new(1000);
        let held = AtomicU64::new(0);
        let worst = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..16u64 {
                let (budget, held, worst) = (&budget, &held, &worst);
                s.spawn(move || {
                    let cancel = CancelToken::new();
                    for i in 0..500u64 {
                        let n = (t * 131 + i * 17) % 400 + 1;
                        let permit = budget.acquire(n, &cancel).unwrap();
                        let now = held.fetch_add(n, Ordering::SeqCst) + n;
                        worst.fetch_max(now, Ordering::SeqCst);
                        held.fetch_sub(n, Ordering::SeqCst);
                        drop(permit);
                    }
                });
            }
        });
        assert!(worst.load(Ordering::SeqCst) <= 1000);
        assert!(budget.peak_in_use() <= 1000);
        assert_eq!(budget.in_use(), 0, "back to full");
    }

    #[test]
    fn the_head_of_the_queue_is_not_overtaken_by_smaller_requests() {
        let budget = MemoryBudget::new(100);
        let cancel = CancelToken::new();
        let held = budget.acquire(60, &cancel).unwrap();
        let big = budget.enqueue(80); // must wait for `held`
        // 30 would fit now, but it queues behind `big`; once `big` holds 80 it no longer fits,
        // so it can only be served after `big` is done: the order below is deterministic.
        let small = budget.enqueue(30);
        let (tx, rx) = crossbeam_channel::unbounded();
        let (b, c) = (&budget, &cancel);
        std::thread::scope(|s| {
            let tx_small = tx.clone();
            s.spawn(move || {
                let p = b.wait(small, c).unwrap();
                tx_small.send("small").unwrap();
                drop(p);
            });
            s.spawn(move || {
                let p = b.wait(big, c).unwrap();
                tx.send("big").unwrap();
                drop(p);
            });
            assert!(
                rx.try_recv().is_err(),
                "nobody may pass while the head waits"
            );
            drop(held);
        });
        let order: Vec<&str> = rx.try_iter().collect();
        assert_eq!(order, ["big", "small"]);
    }

    #[test]
    fn cancel_wakes_a_waiter_and_leaves_the_queue() {
        let budget = MemoryBudget::new(10);
        let cancel = CancelToken::new();
        let held = budget.acquire(10, &cancel).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| budget.acquire(5, &cancel));
            // The waiter may not have queued yet; cancelling before or after both end it.
            cancel.cancel();
            budget.wake_all();
            assert!(waiter.join().unwrap().is_err());
        });
        drop(held);
        // The cancelled ticket left the queue: a new request is served at once.
        assert!(budget.acquire(10, &CancelToken::new()).is_ok());
    }
}
