//! One fetch request: its lazy plan, the order in which it reserves budget, and the reorder
//! buffer its results wait in until the caller takes them.
//!
//! A request's work is cut into *units*: a whole object, or one ranged part of a large one.
//! Units reserve budget strictly in the caller's order — item by item, part by part — by
//! waiting for their *turn* before joining the budget's FIFO queue. So the object the caller
//! needs next is never overtaken by a later one, however small the budget: the only bytes
//! that can stand in its way are those the caller itself holds. Each unit's bytes are
//! fetched by the transfer engine into memory; the parts of one object share a [`Pin`], so
//! no part of another version is stitched in.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};

use super::budget::{BudgetPermit, MemoryBudget};
use super::error::{FetchError, FetchErrorKind};
use super::{FetchKey, FetchSource, Message, Object};
use crate::cancel::CancelToken;
use crate::engine::Pin;
use crate::engine::response::ObjectInfo;
use crate::engine::retry::RetryPolicy;
use crate::engine::tail::Helpers;

/// The most items a request starts ahead of the one its caller takes next. The budget
/// bounds the bytes they hold; this bounds how many there are, so that empty objects and
/// errors, which hold no budget, cannot pile up waiting for a caller who stopped taking them.
pub const MAX_ITEMS_AHEAD: u64 = 1024;

/// One unit of work: a whole object, or one part of a large one.
#[derive(Debug)]
pub(crate) struct Unit {
    pub(super) item: u64,
    pub(super) part: u64,
    pub(super) key: Arc<FetchKey>,
    /// The version the item's units are pinned to.
    pub(super) pin: Arc<Pin>,
    pub(super) kind: UnitKind,
}

#[derive(Debug)]
pub(super) enum UnitKind {
    /// The whole object in one GET; its size is known from a listing, or learned from the
    /// response (a *probe*, which may turn out to be part 0 of a large object).
    Whole { size: Option<u64> },
    /// Bytes `start..end` of an object of `total` bytes in `parts` parts.
    Part {
        start: u64,
        end: u64,
        total: u64,
        parts: u64,
    },
    /// The item failed before any request (the key iterator panicked): it only has to
    /// take its turn and say so.
    Failed(Box<FetchError>),
}

impl UnitKind {
    pub(super) fn parts(&self) -> u64 {
        match self {
            UnitKind::Part { parts, .. } => *parts,
            _ => 1,
        }
    }
}

/// An item whose later parts are still to be handed out.
#[derive(Debug)]
struct OpenItem {
    index: u64,
    key: Arc<FetchKey>,
    pin: Arc<Pin>,
    /// `(total bytes, parts)` once known.
    shape: Option<(u64, u64)>,
    next_part: u64,
}

/// The keys, pulled one at a time by whichever worker needs the next one. Taken out of the
/// lock while pulled, so an iterator that blocks (keys fed from a channel) holds no lock
/// that `drop`, `next` or a probe need.
type Keys = Box<dyn Iterator<Item = FetchKey> + Send>;

struct Planner {
    next_item: u64,
    /// A worker is pulling the next key (outside the lock).
    pulling: bool,
    exhausted: bool,
    open: VecDeque<OpenItem>,
    /// No item at or past this index is started (the caller has gone).
    stop_at: Option<u64>,
    /// Whether the request counts as busy in its flows (see [`Request::report_work`]).
    busy: bool,
}

impl Planner {
    /// Whether a started item has parts to hand out.
    fn parts_waiting(&self) -> bool {
        self.open
            .iter()
            .any(|o| o.shape.is_some_and(|(_, parts)| o.next_part < parts))
    }
}

/// Whose turn it is to reserve budget: `(item, part)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Turn {
    pub(super) item: u64,
    pub(super) part: u64,
}

/// What an item became, waiting for the caller.
#[derive(Debug)]
pub(crate) enum Slot {
    /// A whole object, or why the key failed.
    Done(Result<Object, FetchError>),
    /// A large object streamed in parts; its first part has arrived.
    Streamed {
        key: String,
        size: u64,
        etag: Option<String>,
        /// What the whole object is checked against as the caller reads: the store's
        /// full-object checksum, else the MD5 its ETag stands for.
        verifier: crate::engine::verify::Verifier,
        parts: u64,
    },
}

/// One part of a streamed object, holding its budget until read.
#[derive(Debug)]
pub(crate) struct PartData {
    pub(crate) bytes: Vec<u8>,
    pub(crate) _permit: BudgetPermit,
}

#[derive(Debug, Default)]
struct Output {
    items: BTreeMap<u64, Slot>,
    parts: BTreeMap<(u64, u64), Result<PartData, FetchError>>,
    /// Items none of whose later parts anyone will read (part 0 failed, or the reader is
    /// gone): their parts are not fetched, or dropped on arrival.
    abandoned: HashSet<u64>,
    /// How many items the request has, once the keys are exhausted.
    total: Option<u64>,
}

/// What a request needs from its fetcher's settings and pool.
pub(crate) struct Settings {
    pub(crate) budget: Arc<MemoryBudget>,
    pub(crate) part_size: u64,
    pub(crate) max_whole: u64,
    pub(crate) retry: RetryPolicy,
    pub(crate) retries: Arc<AtomicU64>,
    /// Units of this request in flight at most (tokens in the pool's queue).
    pub(crate) per_request: usize,
    /// The pool's queue, to put tokens back in when work appears.
    pub(crate) pool: Sender<Message>,
    /// The buckets' gates and control loops (see [`flow`](crate::flow)).
    pub(crate) flows: Arc<crate::flow::Flows>,
}

pub(crate) struct Request {
    pub(super) source: FetchSource,
    pub(super) cancel: CancelToken,
    pub(super) settings: Settings,
    keys: Mutex<Option<Keys>>,
    plan: Mutex<Planner>,
    /// Tokens of this request in the pool now (queued or running a unit).
    tokens: AtomicUsize,
    /// The index of the item the caller takes next.
    taken: AtomicU64,
    pub(super) turn: Mutex<Turn>,
    pub(super) turn_cv: Condvar,
    out: Mutex<Output>,
    out_cv: Condvar,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("source", &self.source)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Request {
    pub(crate) fn new(source: FetchSource, keys: Keys, settings: Settings) -> Request {
        settings.flows.pool_busy();
        Request {
            source,
            cancel: CancelToken::new(),
            settings,
            keys: Mutex::new(Some(keys)),
            plan: Mutex::new(Planner {
                next_item: 0,
                pulling: false,
                exhausted: false,
                open: VecDeque::new(),
                stop_at: None,
                busy: true,
            }),
            tokens: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
            turn: Mutex::new(Turn { item: 0, part: 0 }),
            turn_cv: Condvar::new(),
            out: Mutex::new(Output::default()),
            out_cv: Condvar::new(),
        }
    }

    pub(super) fn error(
        &self,
        key: &FetchKey,
        range: Option<(u64, u64)>,
        kind: FetchErrorKind,
    ) -> FetchError {
        self.source.error(&key.key, range, kind)
    }

    /// Puts tokens in the pool's queue until the request has its cap of them: when it
    /// starts, and whenever work appears that workers who found none have left behind.
    pub(crate) fn top_up(self: &Arc<Self>) {
        while !self.cancel.is_cancelled() {
            let claimed = self
                .tokens
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.settings.per_request).then_some(n + 1)
                })
                .is_ok();
            if !claimed {
                return;
            }
            if self
                .settings
                .pool
                .send(Message::Work(Arc::clone(self)))
                .is_err()
            {
                // The pool is gone (the fetcher is being dropped): nobody to hand work to.
                self.tokens.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
    }

    /// A worker found no unit to run now: its token leaves the queue. Work may have
    /// appeared between the look and the retirement (a key pulled, the caller taking an
    /// item) while a top-up still counted this token: then it is put back.
    pub(crate) fn retire(self: &Arc<Self>) {
        self.tokens.fetch_sub(1, Ordering::AcqRel);
        if self.has_work() {
            self.top_up();
        }
    }

    /// Whether a worker asking now would find a unit (or a key to pull).
    fn has_work(&self) -> bool {
        if self.cancel.is_cancelled() {
            return false;
        }
        let plan = self.plan.lock();
        let ahead = self.taken.load(Ordering::Acquire) + MAX_ITEMS_AHEAD;
        plan.parts_waiting()
            || !(plan.exhausted
                || plan.pulling
                || plan.next_item >= ahead
                || plan.stop_at.is_some_and(|s| plan.next_item >= s))
    }

    /// Tells the fetcher's flows when the request's work runs out (every key pulled and
    /// every known part handed out, or a cancel) and when it comes back (a probe that finds
    /// a large object has parts to hand out). With every request's work out, a host that
    /// has drained hedges the requests still out to it after its quick times
    /// ([`Flows::pool_drained`](crate::flow::Flows::pool_drained)), as a downloader's
    /// hosts do at the end of a job. Called under the planner's lock, so the turns arrive
    /// in order.
    fn report_work(&self, plan: &mut Planner) {
        let busy = !self.cancel.is_cancelled() && (!plan.exhausted || plan.parts_waiting());
        if busy == plan.busy {
            return;
        }
        plan.busy = busy;
        if busy {
            self.settings.flows.pool_busy();
        } else {
            self.settings.flows.pool_drained();
        }
    }

    /// Cancels the request: wakes every waiter, drops every buffered result (giving its
    /// budget back). Idempotent.
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
        self.report_work(&mut self.plan.lock());
        {
            let _turn = self.turn.lock();
            self.turn_cv.notify_all();
        }
        let dropped = {
            let mut out = self.out.lock();
            self.out_cv.notify_all();
            (
                std::mem::take(&mut out.items),
                std::mem::take(&mut out.parts),
            )
        };
        drop(dropped);
        self.settings.budget.wake_all();
    }

    /// Starts no item at or past `index` (the caller has gone, a reader lives on).
    pub(crate) fn stop_planning_at(&self, index: u64) {
        self.plan.lock().stop_at = Some(index);
    }

    /// The next unit to run, in the caller's order; `None` when there is none now.
    pub(crate) fn next_unit(self: &Arc<Self>) -> Option<Unit> {
        if self.cancel.is_cancelled() {
            return None;
        }
        let mut plan = self.plan.lock();
        // Later parts of items already started come first: they are earlier in turn order.
        for open in plan.open.iter_mut() {
            if let Some((total, parts)) = open.shape
                && open.next_part < parts
            {
                let part = open.next_part;
                open.next_part += 1;
                let unit = self.part_unit(open, part, total, parts);
                plan.open
                    .retain(|o| o.shape.is_none_or(|(_, n)| o.next_part < n));
                self.report_work(&mut plan);
                return Some(unit);
            }
        }
        let ahead = self.taken.load(Ordering::Acquire) + MAX_ITEMS_AHEAD;
        if plan.exhausted
            || plan.pulling
            || plan.next_item >= ahead
            || plan.stop_at.is_some_and(|s| plan.next_item >= s)
        {
            return None;
        }
        // Pull the next key outside the planner's lock.
        plan.pulling = true;
        drop(plan);
        let pulled = {
            let mut keys = self.keys.lock();
            let iterator = keys.as_mut()?;
            let pulled = catch_unwind(AssertUnwindSafe(|| iterator.next()));
            if !matches!(pulled, Ok(Some(_))) {
                *keys = None; // exhausted, or broken by its panic
            }
            pulled
        };
        let mut plan = self.plan.lock();
        plan.pulling = false;
        let index = plan.next_item;
        let key = match pulled {
            Ok(Some(key)) => key,
            Ok(None) => {
                plan.exhausted = true;
                self.report_work(&mut plan);
                drop(plan);
                self.set_total(index);
                return None;
            }
            Err(panic) => {
                plan.exhausted = true;
                plan.next_item += 1;
                self.report_work(&mut plan);
                drop(plan);
                self.set_total(index + 1);
                let message = crate::downloader::jogger::panic_message(&*panic);
                let key = Arc::new(FetchKey::new(format!("(key {index})")));
                return Some(self.failed_unit(index, key, FetchErrorKind::Keys(message)));
            }
        };
        plan.next_item += 1;
        let key = Arc::new(key);
        if let Some(refused) = self.source.refuse(&key) {
            return Some(self.failed_unit(index, key, refused));
        }
        // A version known from a listing pins every part from the start (`If-Match`).
        let pin = Arc::new(match &key.etag {
            Some(etag) => Pin::of(ObjectInfo::listed(Some(etag), key.size)),
            None => Pin::new(),
        });
        let max_whole = self.settings.max_whole;
        let unit = match key.size {
            Some(size) if size <= max_whole => Unit {
                item: index,
                part: 0,
                key,
                pin,
                kind: UnitKind::Whole { size: Some(size) },
            },
            Some(size) => {
                let parts = size.div_ceil(self.settings.part_size);
                let mut open = OpenItem {
                    index,
                    key,
                    pin,
                    shape: Some((size, parts)),
                    next_part: 1,
                };
                let unit = self.part_unit(&open, 0, size, parts);
                open.next_part = 1;
                plan.open.push_back(open);
                unit
            }
            None => {
                plan.open.push_back(OpenItem {
                    index,
                    key: Arc::clone(&key),
                    pin: Arc::clone(&pin),
                    shape: None,
                    next_part: 1,
                });
                Unit {
                    item: index,
                    part: 0,
                    key,
                    pin,
                    kind: UnitKind::Whole { size: None },
                }
            }
        };
        drop(plan);
        // Workers that found nothing while this key was pulled may have left.
        self.top_up();
        Some(unit)
    }

    /// The unit of an item that failed before any request: it only takes its turn.
    fn failed_unit(&self, item: u64, key: Arc<FetchKey>, kind: FetchErrorKind) -> Unit {
        let error = self.error(&key, None, kind);
        Unit {
            item,
            part: 0,
            key,
            pin: Arc::new(Pin::new()),
            kind: UnitKind::Failed(Box::new(error)),
        }
    }

    fn set_total(&self, total: u64) {
        self.out.lock().total = Some(total);
        self.out_cv.notify_all();
    }

    fn part_unit(&self, open: &OpenItem, part: u64, total: u64, parts: u64) -> Unit {
        let start = part * self.settings.part_size;
        Unit {
            item: open.index,
            part,
            key: Arc::clone(&open.key),
            pin: Arc::clone(&open.pin),
            kind: UnitKind::Part {
                start,
                end: (start + self.settings.part_size).min(total),
                total,
                parts,
            },
        }
    }

    /// A probe learned its object's shape: `parts == 1` means whole.
    pub(super) fn set_shape(self: &Arc<Self>, item: u64, total: u64, parts: u64) {
        {
            let mut plan = self.plan.lock();
            if let Some(open) = plan.open.iter_mut().find(|o| o.index == item) {
                open.shape = Some((total, parts));
            }
            plan.open
                .retain(|o| o.shape.is_none_or(|(_, n)| o.next_part < n));
            self.report_work(&mut plan);
        }
        if parts > 1 {
            self.top_up(); // its parts are work for the workers that found none
        }
    }

    /// An item's parts will never be known (its probe failed): it leaves the plan.
    pub(super) fn forget_open(&self, item: u64) {
        let mut plan = self.plan.lock();
        plan.open.retain(|o| o.index != item);
        self.report_work(&mut plan);
    }

    /// No more parts of `item` will be read: none is fetched or kept. Its later parts are
    /// still handed out, to take their turn (the turn walks every part in order) without a
    /// request or a byte of budget.
    pub(super) fn abandon_item(&self, item: u64) {
        self.abandon(item);
    }

    /// Blocks until it is `(item, part)`'s turn to reserve budget.
    pub(super) fn wait_turn(&self, item: u64, part: u64) -> Result<(), ()> {
        let mut turn = self.turn.lock();
        while *turn != (Turn { item, part }) {
            if self.cancel.is_cancelled() {
                return Err(());
            }
            self.turn_cv.wait(&mut turn);
        }
        if self.cancel.is_cancelled() {
            Err(())
        } else {
            Ok(())
        }
    }

    /// Passes the turn on from `(item, part)` of an item with `parts` parts.
    pub(super) fn advance(&self, item: u64, part: u64, parts: u64) {
        let mut turn = self.turn.lock();
        *turn = if part + 1 < parts {
            Turn {
                item,
                part: part + 1,
            }
        } else {
            Turn {
                item: item + 1,
                part: 0,
            }
        };
        self.turn_cv.notify_all();
    }

    /// Waits for the turn, joins the budget queue for `bytes`, passes the turn on, then waits
    /// for the bytes. A unit of an abandoned item passes its turn without reserving.
    pub(super) fn reserve(
        &self,
        item: u64,
        part: u64,
        parts: u64,
        bytes: u64,
    ) -> Result<BudgetPermit, ()> {
        self.wait_turn(item, part)?;
        if part > 0 && self.out.lock().abandoned.contains(&item) {
            self.advance(item, part, parts);
            return Err(());
        }
        let ticket = self.settings.budget.enqueue(bytes);
        self.advance(item, part, parts);
        self.settings
            .budget
            .wait(ticket, &self.cancel)
            .map_err(|_| ())
    }

    pub(super) fn post_item(&self, item: u64, slot: Slot) {
        let mut out = self.out.lock();
        if self.cancel.is_cancelled() {
            return; // dropped with the lock released below
        }
        out.items.insert(item, slot);
        self.out_cv.notify_all();
    }

    pub(super) fn post_part(&self, item: u64, part: u64, data: Result<PartData, FetchError>) {
        let mut out = self.out.lock();
        if self.cancel.is_cancelled() || out.abandoned.contains(&item) {
            return;
        }
        out.parts.insert((item, part), data);
        self.out_cv.notify_all();
    }

    /// The caller's next item, blocking until it is ready; `None` past the last.
    pub(crate) fn take_item(self: &Arc<Self>, index: u64) -> Option<Slot> {
        let slot = {
            let mut out = self.out.lock();
            loop {
                if let Some(slot) = out.items.remove(&index) {
                    break Some(slot);
                }
                if self.cancel.is_cancelled() || out.total.is_some_and(|t| index >= t) {
                    break None;
                }
                self.out_cv.wait(&mut out);
            }
        };
        // The window of items ahead moves on: workers that stopped at its edge may go on.
        self.taken.store(index + 1, Ordering::Release);
        self.top_up();
        slot
    }

    /// Part `part` of streamed item `item`, blocking until it arrives.
    pub(crate) fn take_part(
        &self,
        item: u64,
        part: u64,
        key: &str,
    ) -> Result<PartData, FetchError> {
        let mut out = self.out.lock();
        loop {
            if let Some(data) = out.parts.remove(&(item, part)) {
                return data;
            }
            if self.cancel.is_cancelled() {
                return Err(self.source.error(key, None, FetchErrorKind::Cancelled));
            }
            self.out_cv.wait(&mut out);
        }
    }

    /// The reader of streamed item `item` is gone: drop its parts now and on arrival.
    pub(crate) fn abandon(&self, item: u64) {
        let dropped: Vec<_> = {
            let mut out = self.out.lock();
            out.abandoned.insert(item);
            let keys: Vec<(u64, u64)> = out
                .parts
                .range((item, 0)..=(item, u64::MAX))
                .map(|(k, _)| *k)
                .collect();
            keys.into_iter()
                .filter_map(|k| out.parts.remove(&k))
                .collect()
        };
        drop(dropped);
    }
}

/// A slow unit at the end of a request borrows the turns of the request's idle tokens for
/// pieces of its tail (see [`tail`](crate::engine::tail)): tokens it has out of the pool
/// because it had nothing to run, so its units and pieces together stay within its cap.
/// None while it has work to start or a worker waits for the caller's next key (work may
/// come: a listing's next page on its way), and with an adaptive concurrency no more than
/// the buckets' gates have room for.
impl Helpers for Arc<Request> {
    fn lend(&self, most: usize) -> usize {
        if self.has_work() || self.plan.lock().pulling {
            return 0;
        }
        let most = if self.settings.flows.adaptive() {
            most.min(self.settings.flows.room())
        } else {
            most
        };
        let cap = self.settings.per_request;
        let mut lent = 0;
        let claimed = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                lent = cap.saturating_sub(n).min(most);
                (lent > 0).then_some(n + lent)
            });
        if claimed.is_ok() { lent } else { 0 }
    }

    /// The piece's turn is a token again: back in the pool if work appeared meanwhile.
    fn give_back(&self) {
        self.retire();
    }
}
