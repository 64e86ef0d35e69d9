//! One fetch request: its lazy plan, the order in which it reserves budget, and the reorder
//! buffer its results wait in until the caller takes them.
//!
//! A request's work is cut into *units*: a whole object, or one ranged part of a large one.
//! Units reserve budget strictly in the caller's order — item by item, part by part — by
//! waiting for their *turn* before joining the budget's FIFO queue. So the object the caller
//! needs next is never overtaken by a later one, however small the budget: the only bytes
//! that can stand in its way are those the caller itself holds.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::budget::{BudgetPermit, MemoryBudget};
use super::error::{FetchError, FetchErrorKind};
use super::{FetchKey, Object};
use crate::cancel::CancelToken;
use crate::progress::{self, Progress, ProgressReader};
use crate::s3::Bucket;

/// One unit of work: a whole object, or one part of a large one.
#[derive(Debug)]
pub(crate) struct Unit {
    item: u64,
    part: u64,
    key: Arc<FetchKey>,
    kind: UnitKind,
}

#[derive(Debug)]
enum UnitKind {
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
}

/// An item whose later parts are still to be handed out.
#[derive(Debug)]
struct OpenItem {
    index: u64,
    key: Arc<FetchKey>,
    /// `(total bytes, parts)` once known.
    shape: Option<(u64, u64)>,
    next_part: u64,
}

struct Planner {
    keys: Box<dyn Iterator<Item = FetchKey> + Send>,
    next_item: u64,
    exhausted: bool,
    open: VecDeque<OpenItem>,
    /// No item at or past this index is started (the caller has gone).
    stop_at: Option<u64>,
}

/// Whose turn it is to reserve budget: `(item, part)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Turn {
    item: u64,
    part: u64,
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
    /// Streamed items whose reader is gone: their parts are dropped on arrival.
    abandoned: HashSet<u64>,
    /// How many items the request has, once the keys are exhausted.
    total: Option<u64>,
}

pub(crate) struct Request {
    pub(crate) bucket: Bucket,
    pub(crate) cancel: CancelToken,
    budget: Arc<MemoryBudget>,
    part_size: u64,
    max_whole: u64,
    plan: Mutex<Planner>,
    turn: Mutex<Turn>,
    turn_cv: Condvar,
    out: Mutex<Output>,
    out_cv: Condvar,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("bucket", &self.bucket.name())
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Request {
    pub(crate) fn new(
        bucket: Bucket,
        keys: Box<dyn Iterator<Item = FetchKey> + Send>,
        budget: Arc<MemoryBudget>,
        part_size: u64,
        max_whole: u64,
    ) -> Request {
        Request {
            bucket,
            cancel: CancelToken::new(),
            budget,
            part_size,
            max_whole,
            plan: Mutex::new(Planner {
                keys,
                next_item: 0,
                exhausted: false,
                open: VecDeque::new(),
                stop_at: None,
            }),
            turn: Mutex::new(Turn { item: 0, part: 0 }),
            turn_cv: Condvar::new(),
            out: Mutex::new(Output::default()),
            out_cv: Condvar::new(),
        }
    }

    fn error(&self, key: &FetchKey, range: Option<(u64, u64)>, kind: FetchErrorKind) -> FetchError {
        FetchError::new(self.bucket.name(), &key.key, range, kind)
    }

    /// Cancels the request: wakes every waiter, drops every buffered result (giving its
    /// budget back). Idempotent.
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
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
        self.budget.wake_all();
    }

    /// Starts no item at or past `index` (the caller has gone, a reader lives on).
    pub(crate) fn stop_planning_at(&self, index: u64) {
        self.plan.lock().stop_at = Some(index);
    }

    /// The next unit to run, in the caller's order; `None` when there is none now.
    pub(crate) fn next_unit(&self) -> Option<Unit> {
        if self.cancel.is_cancelled() {
            return None;
        }
        let mut plan = self.plan.lock();
        // Later parts of items already started come first: they are earlier in turn order.
        for open in plan.open.iter_mut() {
            if let Some((total, parts)) = open.shape {
                if open.next_part < parts {
                    let part = open.next_part;
                    open.next_part += 1;
                    let unit = self.part_unit(open.index, part, &open.key, total, parts);
                    plan.open
                        .retain(|o| o.shape.is_none_or(|(_, n)| o.next_part < n));
                    return Some(unit);
                }
            }
        }
        if plan.exhausted || plan.stop_at.is_some_and(|s| plan.next_item >= s) {
            return None;
        }
        let Some(key) = plan.keys.next() else {
            plan.exhausted = true;
            let total = plan.next_item;
            drop(plan);
            self.out.lock().total = Some(total);
            self.out_cv.notify_all();
            return None;
        };
        let index = plan.next_item;
        plan.next_item += 1;
        let key = Arc::new(key);
        match key.size {
            Some(size) if size <= self.max_whole => Some(Unit {
                item: index,
                part: 0,
                key,
                kind: UnitKind::Whole { size: Some(size) },
            }),
            Some(size) => {
                let parts = size.div_ceil(self.part_size);
                let unit = self.part_unit(index, 0, &key, size, parts);
                plan.open.push_back(OpenItem {
                    index,
                    key,
                    shape: Some((size, parts)),
                    next_part: 1,
                });
                Some(unit)
            }
            None => {
                plan.open.push_back(OpenItem {
                    index,
                    key: Arc::clone(&key),
                    shape: None,
                    next_part: 1,
                });
                Some(Unit {
                    item: index,
                    part: 0,
                    key,
                    kind: UnitKind::Whole { size: None },
                })
            }
        }
    }

    fn part_unit(&self, item: u64, part: u64, key: &Arc<FetchKey>, total: u64, parts: u64) -> Unit {
        let start = part * self.part_size;
        Unit {
            item,
            part,
            key: Arc::clone(key),
            kind: UnitKind::Part {
                start,
                end: (start + self.part_size).min(total),
                total,
                parts,
            },
        }
    }

    /// A probe learned its object's shape: `parts == 1` means whole.
    fn set_shape(&self, item: u64, total: u64, parts: u64) {
        let mut plan = self.plan.lock();
        if let Some(open) = plan.open.iter_mut().find(|o| o.index == item) {
            open.shape = Some((total, parts));
        }
        plan.open
            .retain(|o| o.shape.is_none_or(|(_, n)| o.next_part < n));
    }

    /// Blocks until it is `(item, part)`'s turn to reserve budget.
    fn wait_turn(&self, item: u64, part: u64) -> Result<(), ()> {
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
    fn advance(&self, item: u64, part: u64, parts: u64) {
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
    /// for the bytes.
    fn reserve(&self, item: u64, part: u64, parts: u64, bytes: u64) -> Result<BudgetPermit, ()> {
        self.wait_turn(item, part)?;
        let ticket = self.budget.enqueue(bytes);
        self.advance(item, part, parts);
        self.budget.wait(ticket, &self.cancel).map_err(|_| ())
    }

    fn post_item(&self, item: u64, slot: Slot) {
        let mut out = self.out.lock();
        if self.cancel.is_cancelled() {
            return; // dropped with the lock released below
        }
        out.items.insert(item, slot);
        self.out_cv.notify_all();
    }

    fn post_part(&self, item: u64, part: u64, data: Result<PartData, FetchError>) {
        let mut out = self.out.lock();
        if self.cancel.is_cancelled() || out.abandoned.contains(&item) {
            return;
        }
        out.parts.insert((item, part), data);
        self.out_cv.notify_all();
    }

    /// The caller's next item, blocking until it is ready; `None` past the last.
    pub(crate) fn take_item(&self, index: u64) -> Option<Slot> {
        let mut out = self.out.lock();
        loop {
            if let Some(slot) = out.items.remove(&index) {
                return Some(slot);
            }
            if self.cancel.is_cancelled() || out.total.is_some_and(|t| index >= t) {
                return None;
            }
            self.out_cv.wait(&mut out);
        }
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
                return Err(FetchError::new(
                    self.bucket.name(),
                    key,
                    None,
                    FetchErrorKind::Cancelled,
                ));
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

    /// Runs one unit to completion (or failure), posting its result.
    pub(crate) fn run(self: &Arc<Self>, unit: Unit) {
        crate::transport::with_cancel(&self.cancel.clone(), || match unit.kind {
            UnitKind::Whole { size: Some(size) } => self.run_whole(&unit, size),
            UnitKind::Whole { size: None } => self.run_probe(&unit),
            UnitKind::Part {
                start,
                end,
                total,
                parts,
            } => self.run_part(&unit, start, end, total, parts),
        });
    }

    fn run_whole(self: &Arc<Self>, unit: &Unit, size: u64) {
        let Ok(permit) = self.reserve(unit.item, 0, 1, size) else {
            return;
        };
        let result = self.get(&unit.key, None).and_then(|(response, etag)| {
            let bytes = self.read_exact(&unit.key, None, response, size)?;
            Ok(Object::whole(unit.key.key.clone(), etag, bytes, permit))
        });
        self.post_item(unit.item, Slot::Done(result));
    }

    fn run_probe(self: &Arc<Self>, unit: &Unit) {
        let (response, etag) = match self.get(&unit.key, None) {
            Ok(got) => got,
            Err(e) => return self.fail_probe(unit, e),
        };
        let Some(size) = crate::http::content_length(response.headers()) else {
            let e = self.error(&unit.key, None, FetchErrorKind::NoLength);
            return self.fail_probe(unit, e);
        };
        if size <= self.max_whole {
            self.set_shape(unit.item, size, 1);
            let Ok(permit) = self.reserve(unit.item, 0, 1, size) else {
                return;
            };
            let result = self
                .read_exact(&unit.key, None, response, size)
                .map(|bytes| Object::whole(unit.key.key.clone(), etag, bytes, permit));
            return self.post_item(unit.item, Slot::Done(result));
        }
        // A large object: this response's first part_size bytes are part 0; the other parts
        // are ranged GETs that other workers may start now.
        let parts = size.div_ceil(self.part_size);
        self.set_shape(unit.item, size, parts);
        let first = self.part_size.min(size);
        let Ok(permit) = self.reserve(unit.item, 0, parts, first) else {
            return;
        };
        let range = Some((0, first - 1));
        match self.read_body(&unit.key, range, response, first, false) {
            Ok(bytes) => {
                self.post_item(
                    unit.item,
                    Slot::Streamed {
                        key: unit.key.key.clone(),
                        size,
                        etag,
                        parts,
                    },
                );
                self.post_part(
                    unit.item,
                    0,
                    Ok(PartData {
                        bytes,
                        _permit: permit,
                    }),
                );
            }
            Err(e) => self.post_item(unit.item, Slot::Done(Err(e))),
        }
    }

    /// A probe failed before its size was known: it still has to pass the turn on.
    fn fail_probe(&self, unit: &Unit, error: FetchError) {
        self.set_shape(unit.item, 0, 1);
        if self.wait_turn(unit.item, 0).is_ok() {
            self.advance(unit.item, 0, 1);
            self.post_item(unit.item, Slot::Done(Err(error)));
        }
    }

    fn run_part(self: &Arc<Self>, unit: &Unit, start: u64, end: u64, total: u64, parts: u64) {
        let Ok(permit) = self.reserve(unit.item, unit.part, parts, end - start) else {
            return;
        };
        let range = Some((start, end - 1));
        let result = self.get(&unit.key, range).and_then(|(response, etag)| {
            let bytes = self.read_exact(&unit.key, range, response, end - start)?;
            Ok((bytes, etag))
        });
        match result {
            Ok((bytes, etag)) => {
                if unit.part == 0 {
                    self.post_item(
                        unit.item,
                        Slot::Streamed {
                            key: unit.key.key.clone(),
                            size: total,
                            etag,
                            parts,
                        },
                    );
                }
                self.post_part(
                    unit.item,
                    unit.part,
                    Ok(PartData {
                        bytes,
                        _permit: permit,
                    }),
                );
            }
            Err(e) if unit.part == 0 => self.post_item(unit.item, Slot::Done(Err(e))),
            Err(e) => self.post_part(unit.item, unit.part, Err(e)),
        }
    }

    /// Presigns and sends a GET (ranged when `range` is given), checking the status.
    fn get(
        &self,
        key: &FetchKey,
        range: Option<(u64, u64)>,
    ) -> Result<(ureq::http::Response<ureq::Body>, Option<String>), FetchError> {
        let url = self
            .bucket
            .presign_get(&key.key, key.version.as_deref())
            .map_err(|e| self.error(key, range, FetchErrorKind::Sign(Box::new(e))))?;
        let headers: Vec<(String, String)> = range
            .map(|(first, last)| vec![("range".to_owned(), format!("bytes={first}-{last}"))])
            .unwrap_or_default();
        let response = self
            .bucket
            .client()
            .get(&url, &headers, None)
            .map_err(|e| {
                if self.cancel.is_cancelled() {
                    self.error(key, range, FetchErrorKind::Cancelled)
                } else {
                    self.error(key, range, FetchErrorKind::Request(Box::new(e)))
                }
            })?;
        let status = response.status().as_u16();
        let expected = if range.is_some() { 206 } else { 200 };
        if status != expected {
            let kind = if status == 404 {
                FetchErrorKind::NotFound
            } else {
                FetchErrorKind::Status { status }
            };
            return Err(self.error(key, range, kind));
        }
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|e| e.trim_matches('"').to_owned());
        Ok((response, etag))
    }

    /// Reads exactly `len` bytes of the body (a body may be longer: a probe reads only its
    /// first part).
    fn read_exact(
        &self,
        key: &FetchKey,
        range: Option<(u64, u64)>,
        response: ureq::http::Response<ureq::Body>,
        len: u64,
    ) -> Result<Vec<u8>, FetchError> {
        self.read_body(key, range, response, len, true)
    }

    /// Reads `len` bytes of the body. With `whole`, the body must end there: reading on to
    /// its end also lets ureq put the connection back in the keep-alive pool. Without it (a
    /// probe keeping only its first part) the rest is left unread and the connection closes.
    fn read_body(
        &self,
        key: &FetchKey,
        range: Option<(u64, u64)>,
        response: ureq::http::Response<ureq::Body>,
        len: u64,
        whole: bool,
    ) -> Result<Vec<u8>, FetchError> {
        let progress = Progress::new();
        let limit = if whole { len.saturating_add(1) } else { len };
        let body = response.into_body().into_reader().take(limit);
        let mut reader = ProgressReader::new(body, &progress, &self.cancel);
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        match reader.read_to_end(&mut bytes) {
            Ok(_) if bytes.len() as u64 == len => Ok(bytes),
            Ok(_) => Err(self.error(
                key,
                range,
                FetchErrorKind::Length {
                    expected: len,
                    received: bytes.len() as u64,
                },
            )),
            Err(e) if progress::is_cancelled(&e) || self.cancel.is_cancelled() => {
                Err(self.error(key, range, FetchErrorKind::Cancelled))
            }
            Err(source) => Err(self.error(
                key,
                range,
                FetchErrorKind::Body {
                    received: progress.done(),
                    source,
                },
            )),
        }
    }
}
