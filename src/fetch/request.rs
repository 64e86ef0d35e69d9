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
use std::sync::atomic::AtomicU64;

use parking_lot::{Condvar, Mutex};

use super::budget::{BudgetPermit, MemoryBudget};
use super::error::{FetchError, FetchErrorKind};
use super::{FetchKey, Object};
use crate::cancel::CancelToken;
use crate::engine::retry::RetryPolicy;
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
        /// The MD5 (hex) the ETag stands for, checked as the caller reads.
        md5: Option<String>,
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
    retry: RetryPolicy,
    retries: Arc<AtomicU64>,
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
        retry: RetryPolicy,
        retries: Arc<AtomicU64>,
    ) -> Request {
        Request {
            bucket,
            cancel: CancelToken::new(),
            budget,
            part_size,
            max_whole,
            retry,
            retries,
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
            if let Some((total, parts)) = open.shape
                && open.next_part < parts
            {
                let part = open.next_part;
                open.next_part += 1;
                let unit = self.part_unit(open.index, part, &open.key, total, parts);
                plan.open
                    .retain(|o| o.shape.is_none_or(|(_, n)| o.next_part < n));
                return Some(unit);
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
        crate::http::transport::with_cancel(&self.cancel.clone(), || match unit.kind {
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
        let result = self
            .download(&unit.key, Span::whole(size), None)
            .map(|(bytes, got)| Object::whole(unit.key.key.clone(), got.etag, bytes, permit));
        self.post_item(unit.item, Slot::Done(result));
    }

    fn run_probe(self: &Arc<Self>, unit: &Unit) {
        let got = match self.retrying(&unit.key, None, || self.get(&unit.key, None, None)) {
            Ok(got) => got,
            Err(e) => return self.fail_probe(unit, e),
        };
        let Some(size) = got
            .response
            .as_ref()
            .and_then(|r| crate::http::content_length(r.headers()))
        else {
            let e = self.error(&unit.key, None, FetchErrorKind::NoLength);
            return self.fail_probe(unit, e);
        };
        if size <= self.max_whole {
            self.set_shape(unit.item, size, 1);
            let Ok(permit) = self.reserve(unit.item, 0, 1, size) else {
                return;
            };
            let result = self
                .download(&unit.key, Span::whole(size), Some(got))
                .map(|(bytes, got)| Object::whole(unit.key.key.clone(), got.etag, bytes, permit));
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
        let span = Span {
            start: 0,
            len: first,
            total: size,
        };
        match self.download(&unit.key, span, Some(got)) {
            Ok((bytes, got)) => {
                self.post_item(
                    unit.item,
                    Slot::Streamed {
                        key: unit.key.key.clone(),
                        size,
                        md5: got.md5_hex(),
                        etag: got.etag,
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
        let span = Span {
            start,
            len: end - start,
            total,
        };
        match self.download(&unit.key, span, None) {
            Ok((bytes, got)) => {
                if unit.part == 0 {
                    self.post_item(
                        unit.item,
                        Slot::Streamed {
                            key: unit.key.key.clone(),
                            size: total,
                            md5: got.md5_hex(),
                            etag: got.etag,
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

    /// Runs `once` until it succeeds, fails for good, or the retry policy gives up.
    fn retrying<T>(
        &self,
        key: &FetchKey,
        range: Option<(u64, u64)>,
        mut once: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, FetchError> {
        let seed = crate::downloader::hrw::hash(key.key.as_bytes()) ^ range.map_or(0, |(a, _)| a);
        let mut attempt = 1;
        loop {
            let failed = match once() {
                Ok(value) => return Ok(value),
                Err(failed) => failed,
            };
            if self.cancel.is_cancelled() {
                return Err(self.error(key, range, FetchErrorKind::Cancelled));
            }
            if !failed.retry {
                return Err(failed.error);
            }
            let Some(wait) = self.retry.delay(attempt, failed.retry_after, seed) else {
                return Err(failed.error);
            };
            log::warn!(
                "{}; attempt {attempt} of {} failed, retrying in {wait:.2?}",
                crate::target::file::chain(&failed.error),
                self.retry.attempts
            );
            if !self.cancel.sleep(wait) {
                return Err(self.error(key, range, FetchErrorKind::Cancelled));
            }
            attempt += 1;
            self.retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Fetches `span` of `key` into memory, retrying; a body that breaks off resumes from
    /// where it stopped with a ranged GET and `If-Match` on the ETag, so only the missing
    /// bytes come again. `pending` is a response already in hand for the span's start. A
    /// whole object whose ETag is an MD5 is checked against it.
    fn download(
        &self,
        key: &FetchKey,
        span: Span,
        mut pending: Option<Got>,
    ) -> Result<(Vec<u8>, Got), FetchError> {
        let range = span.range();
        let mut bytes = Vec::with_capacity(usize::try_from(span.len).unwrap_or(0));
        let mut seen: Option<Got> = None;
        let mut checksum = None;
        self.retrying(key, range, || {
            let mut got = match pending.take() {
                Some(got) => got,
                None => {
                    let have = bytes.len() as u64;
                    let asked = (span.ranged() || have > 0)
                        .then(|| (span.start + have, span.start + span.len - 1));
                    let if_match = seen.as_ref().and_then(|g| g.etag.as_deref());
                    match self.get(key, asked, if_match.filter(|_| have > 0)) {
                        Ok(got) => got,
                        Err(failed) => {
                            if failed.is_status(412) {
                                // The object changed since the bytes we hold: start over.
                                bytes.clear();
                                seen = None;
                                checksum = None;
                            }
                            return Err(failed);
                        }
                    }
                }
            };
            let etag_changed = seen
                .as_ref()
                .is_some_and(|old| old.etag.is_some() && old.etag != got.etag);
            // A resume's ranged response carries no full-object checksum: keep the first's.
            if etag_changed || got.checksum.is_some() {
                checksum = got.checksum.clone();
            }
            if etag_changed {
                log::warn!(
                    "GET s3://{}/{}: its ETag changed; starting over",
                    self.bucket.name(),
                    key.key
                );
                let resumed = !bytes.is_empty();
                bytes.clear();
                seen = None;
                if resumed {
                    // This response holds the rest of another version: not a byte of it fits.
                    return Err(Attempt::again(self.error(
                        key,
                        range,
                        FetchErrorKind::Status { status: 412 },
                    )));
                }
            }
            // The body must end where the span does, unless it is a whole-object response
            // of which only the first part is wanted (a probe of a large object).
            let ends = bytes.is_empty() && span.start == 0 && span.len < span.total;
            let response = got.take_response();
            seen = Some(got);
            self.read_into(key, range, response, &mut bytes, span.len, !ends)?;
            if !span.ranged() {
                self.verify_whole(key, &mut bytes, checksum.as_ref(), seen.as_ref())?;
            }
            Ok(())
        })?;
        let got = seen.expect("a successful attempt saw a response");
        Ok((bytes, got))
    }

    /// Checks a whole object against the store's checksum and its MD5 ETag, when it gave
    /// them; a mismatch empties `bytes` and is worth another attempt.
    fn verify_whole(
        &self,
        key: &FetchKey,
        bytes: &mut Vec<u8>,
        checksum: Option<&crate::engine::verify::StoreChecksum>,
        got: Option<&Got>,
    ) -> Result<(), Attempt> {
        let mut checks = Vec::with_capacity(2);
        if let Some(checksum) = checksum {
            checks.push((
                checksum.algorithm,
                checksum.value.clone(),
                checksum.of(bytes),
            ));
        }
        if let Some(expected) = got.and_then(Got::md5_hex) {
            checks.push(("md5", expected, crate::engine::verify::md5_hex(bytes)));
        }
        for (algorithm, expected, actual) in checks {
            if actual != expected {
                bytes.clear();
                let mismatch =
                    crate::engine::verify::DigestMismatch::new(algorithm, expected, actual);
                return Err(Attempt::again(self.error(
                    key,
                    None,
                    FetchErrorKind::Digest(mismatch),
                )));
            }
        }
        Ok(())
    }

    /// Presigns and sends one GET (ranged when `range` is given), checking the status.
    fn get(
        &self,
        key: &FetchKey,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<Got, Attempt> {
        let url = self
            .bucket
            .presign_get(&key.key, key.version.as_deref())
            .map_err(|e| {
                Attempt::fatal(self.error(key, range, FetchErrorKind::Sign(Box::new(e))))
            })?;
        let mut headers: Vec<(String, String)> = range
            .map(|(first, last)| vec![("range".to_owned(), format!("bytes={first}-{last}"))])
            .unwrap_or_default();
        if let Some(etag) = if_match {
            headers.push(("if-match".to_owned(), format!("\"{etag}\"")));
        }

        let response = self
            .bucket
            .client()
            .get(&url, &headers, None)
            .map_err(|e| {
                if self.cancel.is_cancelled() {
                    Attempt::fatal(self.error(key, range, FetchErrorKind::Cancelled))
                } else {
                    let retry = crate::target::file::is_transient(&e)
                        && crate::http::egress::refusal(&e).is_none();
                    Attempt {
                        error: self.error(key, range, FetchErrorKind::Request(Box::new(e))),
                        retry,
                        retry_after: None,
                    }
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
            let retry_after = match status {
                429 | 503 => response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        crate::engine::retry::parse_retry_after(v, std::time::SystemTime::now())
                    }),
                _ => None,
            };
            return Err(Attempt {
                error: self.error(key, range, kind),
                // 412: the object changed under an If-Match; the retry starts it over.
                retry: matches!(status, 408 | 412 | 429 | 500..=599),
                retry_after,
            });
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header("etag").map(|e| e.trim_matches('"').to_owned());
        // SSE-KMS and SSE-C objects have ETags that are not the MD5 of their bytes.
        let encrypted = header("x-amz-server-side-encryption").is_some_and(|v| v != "AES256")
            || header("x-amz-server-side-encryption-customer-algorithm").is_some();
        let md5 = etag
            .as_deref()
            .filter(|_| !encrypted)
            .and_then(crate::engine::verify::etag_md5);
        let checksum =
            crate::engine::verify::CHECKSUM_HEADERS
                .iter()
                .find_map(|(name, algorithm)| {
                    header(name)
                        .filter(|v| !v.contains('-')) // composite: a checksum of part checksums
                        .map(|value| crate::engine::verify::StoreChecksum { algorithm, value })
                });
        Ok(Got {
            response: Some(response),
            etag,
            md5,
            checksum,
        })
    }

    /// Appends the body to `bytes` until it holds `len` bytes. With `ends`, the body must
    /// end there: reading on to its end also lets ureq put the connection back in the
    /// keep-alive pool. Without it (a probe keeping only its first part) the rest is left
    /// unread and the connection closes.
    fn read_into(
        &self,
        key: &FetchKey,
        range: Option<(u64, u64)>,
        response: ureq::http::Response<ureq::Body>,
        bytes: &mut Vec<u8>,
        len: u64,
        ends: bool,
    ) -> Result<(), Attempt> {
        let progress = Progress::new();
        let want = len - bytes.len() as u64;
        let limit = if ends { want.saturating_add(1) } else { want };
        let body = response.into_body().into_reader().take(limit);
        let reader = ProgressReader::new(body, &progress, &self.cancel);
        let mut reader = crate::http::StallGuard::new(reader, self.bucket.client().config());
        let result = reader.read_to_end(bytes);
        let error = |kind| self.error(key, range, kind);
        match result {
            Ok(_) if bytes.len() as u64 == len => Ok(()),
            Ok(_) => {
                let received = bytes.len() as u64;
                if received > len {
                    bytes.clear();
                }
                Err(Attempt::again(error(FetchErrorKind::Length {
                    expected: len,
                    received,
                })))
            }
            Err(e) if progress::is_cancelled(&e) || self.cancel.is_cancelled() => {
                Err(Attempt::fatal(error(FetchErrorKind::Cancelled)))
            }
            Err(source) => Err(Attempt::again(error(FetchErrorKind::Body {
                received: bytes.len() as u64,
                source,
            }))),
        }
    }
}

/// Which bytes of an object a unit wants.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    len: u64,
    /// The object's size.
    total: u64,
}

impl Span {
    fn whole(size: u64) -> Span {
        Span {
            start: 0,
            len: size,
            total: size,
        }
    }

    /// Whether the span is less than the whole object, so every GET for it is ranged.
    fn ranged(&self) -> bool {
        self.start > 0 || self.len < self.total
    }

    /// The inclusive byte range errors name, for a part.
    fn range(&self) -> Option<(u64, u64)> {
        (self.ranged() && self.len > 0).then(|| (self.start, self.start + self.len - 1))
    }
}

/// A response with its checked status, and what it says about the object.
struct Got {
    response: Option<ureq::http::Response<ureq::Body>>,
    etag: Option<String>,
    /// The MD5 the ETag stands for, when it stands for one.
    md5: Option<[u8; 16]>,
    /// A full-object checksum the store returned.
    checksum: Option<crate::engine::verify::StoreChecksum>,
}

impl Got {
    fn take_response(&mut self) -> ureq::http::Response<ureq::Body> {
        self.response.take().expect("a response is read once")
    }

    fn md5_hex(&self) -> Option<String> {
        self.md5
            .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// A failed attempt: the error, and whether another attempt could go better.
struct Attempt {
    error: FetchError,
    retry: bool,
    retry_after: Option<std::time::Duration>,
}

impl Attempt {
    fn is_status(&self, code: u16) -> bool {
        matches!(self.error.kind, FetchErrorKind::Status { status } if status == code)
    }

    fn fatal(error: FetchError) -> Attempt {
        Attempt {
            error,
            retry: false,
            retry_after: None,
        }
    }

    fn again(error: FetchError) -> Attempt {
        Attempt {
            error,
            retry: true,
            retry_after: None,
        }
    }
}
