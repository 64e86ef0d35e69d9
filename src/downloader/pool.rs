//! A target's joggers: the threads that consume its task queue.
//!
//! With a fixed concurrency the pool is that many joggers from the start. With an adaptive
//! one it starts at the initial limit and grows lazily up to the cap: a jogger that takes a
//! task and finds no other jogger idle and more tasks queued starts as many more as the
//! hosts' gates have room for (none while a transfer waits at a gate: threads are to
//! spare then). A jogger that has nothing to do parks on the queue; threads are never
//! stopped before the downloader is.
//!
//! A pool tells the hosts' gates whether its queue has work: once every pool's has run out,
//! the requests still out are the jobs' last, and a straggler among them is hedged after a
//! drained host's delay rather than a busy one's (see [`hedge`](crate::flow::hedge)).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::downloader::dispatcher::{Done, Task};
use crate::downloader::jogger::{Jogger, Target};
use crate::engine::tail::Helpers;
use crate::flow::Flows;
use crate::http::HttpClient;
use crate::thread::{Headcount, JoinOnDrop};

/// One target's joggers and what each new one is made of.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) setup: PoolSetup,
    /// The joggers started, and the cap on them.
    headcount: Headcount,
    idle: AtomicUsize,
    /// Idle joggers' turns lent to pieces of slow transfers' tails.
    lent: AtomicUsize,
    /// Whether the queue had work when a jogger last looked (told to the gates).
    busy: Mutex<bool>,
    handles: Mutex<Vec<JoinOnDrop>>,
    /// The OS error (`ENOSPC`, `EDQUOT`, `EROFS`) that made the target stop taking objects:
    /// once set, the rest of its objects fail at once, with no request and no write.
    pub(crate) stopped: std::sync::OnceLock<i32>,
}

/// What a [`Pool`]'s joggers share.
#[derive(Debug)]
pub(crate) struct PoolSetup {
    pub(crate) queue: Receiver<Task>,
    pub(crate) done: Sender<Done>,
    pub(crate) target: Arc<Target>,
    pub(crate) client: HttpClient,
    /// The hosts' gates (with a fixed concurrency, never shut: the threads are the limit).
    pub(crate) flows: Arc<Flows>,
    /// Whether the pool grows (an adaptive concurrency).
    pub(crate) grows: bool,
    /// Whether idle joggers take pieces of slow objects' tails.
    pub(crate) split_tails: bool,
    /// A dry run: objects are decided on, never fetched.
    pub(crate) dry_run: bool,
    /// Names the threads: `haul-jog-<label>-<i>`.
    pub(crate) label: String,
    /// The most joggers (at least one).
    pub(crate) cap: usize,
    /// The downloader-wide counter that gives each jogger its slot.
    pub(crate) slots: Arc<AtomicU64>,
    /// Whether the dispatcher has tasks to send (see [`Dispatcher`]'s `has_work`): a job's
    /// objects wait to start, queued or not.
    ///
    /// [`Dispatcher`]: crate::downloader::dispatcher::Dispatcher
    pub(crate) dispatcher_has_work: Arc<AtomicBool>,
}

impl Pool {
    /// A pool with no jogger yet.
    pub(crate) fn new(setup: PoolSetup) -> Arc<Pool> {
        setup.flows.pool_reports();
        Arc::new(Pool {
            headcount: Headcount::new(setup.cap.max(1)),
            setup,
            idle: AtomicUsize::new(0),
            lent: AtomicUsize::new(0),
            busy: Mutex::new(false),
            handles: Mutex::new(Vec::new()),
            stopped: std::sync::OnceLock::new(),
        })
    }

    /// Starts joggers until there are `n` (within the cap).
    ///
    /// # Errors
    ///
    /// The thread's name and the error when one could not be spawned; those already
    /// started end once the queue's senders are dropped, and [`join`](Pool::join) joins them.
    pub(crate) fn grow(self: &Arc<Self>, n: usize) -> Result<(), (String, io::Error)> {
        self.spawn(n.saturating_sub(self.live()))
    }

    /// Starts up to `n` more joggers within the cap; each start is claimed before its
    /// thread is spawned (see [`Headcount`]).
    fn spawn(self: &Arc<Self>, n: usize) -> Result<(), (String, io::Error)> {
        let claimed = self.headcount.claim(n);
        let end = claimed.end;
        for index in claimed {
            self.idle.fetch_add(1, Ordering::AcqRel);
            let name = format!("haul-jog-{}-{index}", self.setup.label);
            let jogger = Jogger {
                pool: Arc::clone(self),
                slot: self.setup.slots.fetch_add(1, Ordering::Relaxed),
            };
            match JoinOnDrop::spawn(name.clone(), move || jogger.run()) {
                Ok(handle) => self.handles.lock().push(handle),
                Err(error) => {
                    self.headcount.unclaim(end - index);
                    self.idle.fetch_sub(1, Ordering::AcqRel);
                    return Err((name, error));
                }
            }
        }
        Ok(())
    }

    /// A jogger took a task: grows the pool when that left none idle and more work waits.
    pub(crate) fn took_task(self: &Arc<Self>) {
        self.look_at_queue();
        let idle = self.idle.fetch_sub(1, Ordering::AcqRel) - 1;
        if !self.setup.grows || idle > 0 {
            return;
        }
        // This jogger's own transfer is not through its gate yet: one less room.
        self.start_for_room(1);
    }

    /// A host's limit grew on a response, between transfers: starts joggers for the room
    /// when none is idle and work waits.
    pub(crate) fn limit_grew(self: &Arc<Self>) {
        if !self.setup.grows || self.idle.load(Ordering::Acquire) > 0 {
            return;
        }
        self.start_for_room(0);
    }

    /// Starts as many joggers as the gates' room (less `taken`), the queue and the cap allow.
    fn start_for_room(self: &Arc<Self>, taken: usize) {
        let queued = self.setup.queue.len();
        if queued == 0 {
            return;
        }
        let room = self.setup.flows.room().saturating_sub(taken);
        if let Err((name, error)) = self.spawn(room.min(queued)) {
            log::warn!("could not start jogger {name}: {error}");
        }
    }

    /// A jogger finished its task.
    pub(crate) fn task_done(&self) {
        self.idle.fetch_add(1, Ordering::AcqRel);
        self.look_at_queue();
    }

    /// Tells the gates when the queue turns from having work to empty, or back: called as a
    /// jogger takes a task and as it finishes one.
    fn look_at_queue(&self) {
        // Under the lock, so that the gates hear this pool's turns in the order they came.
        let mut was = self.busy.lock();
        let busy = !self.setup.queue.is_empty();
        if *was != busy {
            *was = busy;
            if busy {
                self.setup.flows.pool_busy();
            } else {
                self.setup.flows.pool_drained();
            }
        }
    }

    /// Joggers started so far.
    pub(crate) fn live(&self) -> usize {
        self.headcount.started()
    }

    /// Joins every jogger, those started while it waits included, once the queue's senders
    /// are gone; returns the names of those that panicked.
    pub(crate) fn join(&self, panicked: &mut Vec<String>) {
        // A jogger starts another only while it runs a task, so once a batch is joined
        // every jogger it started is in the list. (A response that grows a host's limit may
        // start joggers in another target's pool, through the flows' growth hooks; but a
        // pool whose joggers have all ended has a closed, empty queue, and starts none.)
        loop {
            let batch = std::mem::take(&mut *self.handles.lock());
            if batch.is_empty() {
                return;
            }
            for handle in batch {
                if let Err(name) = handle.join() {
                    panicked.push(name);
                }
            }
        }
    }
}

/// A slow transfer at the end of a job borrows the turns of joggers parked on the empty
/// queue, once the dispatcher has nothing more to send, for pieces of its tail (see
/// [`tail`](crate::engine::tail)): at most one piece per idle jogger, and with an adaptive
/// concurrency no more than the hosts' gates have room for. A task that arrives meanwhile
/// still gets its jogger.
impl Helpers for Pool {
    fn lend(&self, most: usize) -> usize {
        if !self.setup.queue.is_empty() || self.setup.dispatcher_has_work.load(Ordering::Acquire) {
            return 0;
        }
        let most = if self.setup.grows {
            most.min(self.setup.flows.room())
        } else {
            most
        };
        let idle = self.idle.load(Ordering::Acquire);
        let mut lent = self.lent.load(Ordering::Acquire);
        loop {
            let n = idle.saturating_sub(lent).min(most);
            if n == 0 {
                return 0;
            }
            match self
                .lent
                .compare_exchange(lent, lent + n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return n,
                Err(now) => lent = now,
            }
        }
    }

    fn give_back(&self) {
        self.lent.fetch_sub(1, Ordering::AcqRel);
    }
}
