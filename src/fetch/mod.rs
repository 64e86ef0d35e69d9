//! The ordered fetcher: keys (of a bucket, or URLs) in, objects out in the caller's order,
//! within a byte budget.

mod budget;
mod error;
mod request;
mod source;
mod unit;

use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

pub use budget::{BudgetPermit, MemoryBudget};
pub use error::{FetchError, FetchErrorKind, FetcherBuildError};
pub use request::MAX_ITEMS_AHEAD;
use request::{PartData, Request, Settings, Slot};
pub use source::{FetchSource, Web};

use crate::engine::retry::RetryPolicy;
use crate::flow::{Concurrency, Flows};
use crate::s3::ListedObject;
use crate::thread::{Headcount, JoinOnDrop};

/// The pool size of [`FetcherBuilder::workers`]'s examples and benches; the default
/// concurrency adapts ([`Concurrency::adaptive`]).
pub const DEFAULT_FETCH_WORKERS: usize = 16;
/// Default cap on one request's units in flight with a fixed pool.
pub const DEFAULT_PER_REQUEST_WORKERS: usize = 8;
/// Default byte budget: 512 MiB.
pub const DEFAULT_MEMORY_BUDGET_BYTES: u64 = 512 << 20;
/// Default largest object delivered whole: 64 MiB (or the budget, if smaller).
pub const DEFAULT_MAX_WHOLE_OBJECT_BYTES: u64 = 64 << 20;

/// A key to fetch: the key, and optionally its size (so the budget is reserved before the
/// GET, and large objects are split at once), its ETag (so every part is pinned to that
/// version from the start), an S3 version id and the SHA-256 its bytes must have.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchKey {
    /// The object's key.
    pub key: String,
    /// Its size, when known (from a listing).
    pub size: Option<u64>,
    /// Its ETag, when known (from a listing), quotes optional.
    pub etag: Option<String>,
    /// The version to fetch, when not the latest.
    pub version: Option<String>,
    /// The SHA-256 its bytes must have (from a manifest, or a Hub's tree).
    pub sha256: Option<crate::Sha256Digest>,
}

impl FetchKey {
    /// A key of unknown size.
    pub fn new(key: impl Into<String>) -> FetchKey {
        FetchKey {
            key: key.into(),
            size: None,
            etag: None,
            version: None,
            sha256: None,
        }
    }

    /// Sets the known size.
    pub fn size(mut self, bytes: u64) -> FetchKey {
        self.size = Some(bytes);
        self
    }

    /// Sets the ETag the object must have: a part of another version fails instead of
    /// being stitched in.
    pub fn etag(mut self, etag: impl Into<String>) -> FetchKey {
        self.etag = Some(etag.into());
        self
    }

    /// Sets the version id.
    pub fn version(mut self, version: impl Into<String>) -> FetchKey {
        self.version = Some(version.into());
        self
    }

    /// Sets the SHA-256 the object must have: a whole object of other bytes is an error
    /// item, a streamed one fails its reader at the end (before the end of file).
    pub fn sha256(mut self, digest: crate::Sha256Digest) -> FetchKey {
        self.sha256 = Some(digest);
        self
    }
}

impl From<&str> for FetchKey {
    fn from(key: &str) -> FetchKey {
        FetchKey::new(key)
    }
}

impl From<String> for FetchKey {
    fn from(key: String) -> FetchKey {
        FetchKey::new(key)
    }
}

impl From<&String> for FetchKey {
    fn from(key: &String) -> FetchKey {
        FetchKey::new(key.as_str())
    }
}

impl From<ListedObject> for FetchKey {
    fn from(object: ListedObject) -> FetchKey {
        let key = FetchKey::new(object.key).size(object.size);
        match object.etag {
            Some(etag) => key.etag(etag),
            None => key,
        }
    }
}

/// Counters of a [`Fetcher`], for monitoring and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetcherStats {
    /// Pool threads started so far (with an adaptive concurrency, as the bucket's limit
    /// needs them).
    pub workers: usize,
    /// Pool threads running a unit now.
    pub busy: usize,
    /// The whole budget.
    pub budget_bytes: u64,
    /// Bytes held now (by objects the caller holds, and units in flight).
    pub budget_in_use: u64,
    /// The most bytes ever held at once.
    pub budget_peak: u64,
    /// GETs retried after a failed attempt, over the fetcher's life.
    pub retries: u64,
}

/// Builds a [`Fetcher`].
#[derive(Debug, Clone)]
pub struct FetcherBuilder {
    concurrency: Concurrency,
    hedging: bool,
    /// `None`: the default, [`DEFAULT_PER_REQUEST_WORKERS`] or the pool if smaller.
    per_request_workers: Option<usize>,
    memory_budget: u64,
    part_size: u64,
    max_whole_object: Option<u64>,
    retry: RetryPolicy,
}

impl FetcherBuilder {
    /// How failed GETs are retried. Default [`RetryPolicy::default`]. A body that breaks off
    /// is resumed from where it stopped (a ranged GET with `If-Match` on the ETag).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Pins the pool: `n` threads shared by every request, `Concurrency::fixed(n)`. By
    /// default the pool adapts ([`concurrency`](FetcherBuilder::concurrency)).
    pub fn workers(mut self, n: usize) -> Self {
        self.concurrency = Concurrency::fixed(n);
        self
    }

    /// How many GETs run at once. Default [`Concurrency::adaptive`]: a limit per bucket
    /// that finds its own level (see [`Downloader::flows`](crate::Downloader::flows) for
    /// the loop), the pool's threads started as it needs them, up to its cap.
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Hedged requests, as [`DownloaderBuilder::hedging`](crate::DownloaderBuilder::hedging).
    /// Default on.
    pub fn hedging(mut self, on: bool) -> Self {
        self.hedging = on;
        self
    }

    /// Most units one request has in flight. Default with a fixed pool
    /// [`DEFAULT_PER_REQUEST_WORKERS`] (or the pool size, if smaller); with an adaptive one
    /// the cap (the bucket's limit holds them back).
    pub fn per_request_workers(mut self, n: usize) -> Self {
        self.per_request_workers = Some(n);
        self
    }

    /// The byte budget. Default [`DEFAULT_MEMORY_BUDGET_BYTES`].
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// The part size for large objects. Default [`DEFAULT_PART_BYTES`](crate::DEFAULT_PART_BYTES), as for S3 targets.
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes;
        self
    }

    /// The largest object delivered whole. Default [`DEFAULT_MAX_WHOLE_OBJECT_BYTES`] or the
    /// budget, if smaller.
    pub fn max_whole_object(mut self, bytes: u64) -> Self {
        self.max_whole_object = Some(bytes);
        self
    }

    /// Validates the settings and starts the pool.
    ///
    /// # Errors
    ///
    /// A [`FetcherBuildError`]: a zero figure, a cap above the pool, a budget that cannot
    /// hold one part per worker of a fixed pool (one part, for an adaptive one), a thread
    /// that cannot be spawned.
    pub fn build(self) -> Result<Fetcher, FetcherBuildError> {
        let c = self.concurrency;
        // The threads at the start: all of them when fixed; when adaptive, its initial
        // limit or as many as the budget holds parts, if fewer (the pool grows past its
        // start whatever the budget, its threads waiting for room).
        let start = if c.is_fixed() {
            c.max()
        } else {
            let parts = self.memory_budget / self.part_size.max(1);
            c.initial_limit()
                .min(parts.try_into().unwrap_or(usize::MAX))
                .max(1)
        };
        let per_request_workers = self.per_request_workers.unwrap_or(if c.is_fixed() {
            DEFAULT_PER_REQUEST_WORKERS.min(c.max())
        } else {
            c.max()
        });
        for (figure, name) in [
            (c.max() as u64, "workers"),
            (per_request_workers as u64, "per_request_workers"),
            (self.memory_budget, "memory_budget"),
            (self.part_size, "part_size"),
            (self.max_whole_object.unwrap_or(1), "max_whole_object"),
        ] {
            if figure == 0 {
                return Err(FetcherBuildError::Zero(name));
            }
        }
        if per_request_workers > c.max() {
            return Err(FetcherBuildError::CapAbovePool {
                cap: per_request_workers,
                pool: c.max(),
            });
        }
        let needed = self.part_size.saturating_mul(start as u64);
        if self.memory_budget < needed {
            return Err(FetcherBuildError::BudgetTooSmall {
                budget: self.memory_budget,
                part_size: self.part_size,
                workers: start,
                needed,
            });
        }
        let max_whole = match self.max_whole_object {
            Some(max) if max > self.memory_budget => {
                return Err(FetcherBuildError::WholeAboveBudget {
                    max,
                    budget: self.memory_budget,
                });
            }
            Some(max) => max,
            None => DEFAULT_MAX_WHOLE_OBJECT_BYTES.min(self.memory_budget),
        };
        let (queue, rx) = crossbeam_channel::unbounded::<Message>();
        let shared = Arc::new(Shared {
            budget: MemoryBudget::new(self.memory_budget),
            part_size: self.part_size,
            max_whole,
            retry: self.retry,
            retries: Arc::new(AtomicU64::new(0)),
            per_request: per_request_workers,
            busy: AtomicUsize::new(0),
            live: Mutex::new(Vec::new()),
            flows: Arc::new(Flows::new(c, self.hedging)),
            grows: !c.is_fixed(),
            threads: Mutex::new(Threads::default()),
            headcount: Headcount::new(c.max()),
            rx,
            tx: queue.clone(),
        });
        // Its requests say when their work runs out (`Request::report_work`).
        shared.flows.pool_reports();
        let weak = Arc::downgrade(&shared);
        shared.flows.on_growth(move || {
            if let Some(shared) = weak.upgrade() {
                let busy = shared.busy.load(Ordering::SeqCst);
                grow(&shared, busy);
            }
        });
        if let Err((name, source)) = spawn_workers(&shared, start) {
            stop_workers(&shared);
            return Err(FetcherBuildError::Spawn { name, source });
        }
        Ok(Fetcher { queue, shared })
    }
}

/// The pool's threads, and whether it is stopping (no more are started then).
#[derive(Default)]
struct Threads {
    handles: Vec<JoinOnDrop>,
    stopping: bool,
}

impl fmt::Debug for Threads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Threads")
            .field("threads", &self.handles.len())
            .field("stopping", &self.stopping)
            .finish()
    }
}

/// Starts up to `n` more pool threads within the cap, unless the pool is stopping.
fn spawn_workers(shared: &Arc<Shared>, n: usize) -> Result<(), (String, io::Error)> {
    let mut threads = shared.threads.lock();
    if threads.stopping {
        return Ok(());
    }
    let claimed = shared.headcount.claim(n);
    let end = claimed.end;
    for i in claimed {
        let name = format!("haul-fetch-{i}");
        let worker = Arc::clone(shared);
        match JoinOnDrop::spawn(name.clone(), move || work(&worker)) {
            Ok(handle) => threads.handles.push(handle),
            Err(source) => {
                shared.headcount.unclaim(end - i);
                return Err((name, source));
            }
        }
    }
    Ok(())
}

/// Stops and joins every pool thread: no more start, each gets a `Stop`.
fn stop_workers(shared: &Shared) {
    let handles = {
        let mut threads = shared.threads.lock();
        threads.stopping = true;
        std::mem::take(&mut threads.handles)
    };
    for _ in 0..handles.len() {
        let _ = shared.tx.send(Message::Stop);
    }
    drop(handles); // joins
    shared.flows.stop();
}

pub(crate) enum Message {
    Work(Arc<Request>),
    Stop,
}

#[derive(Debug)]
struct Shared {
    budget: Arc<MemoryBudget>,
    part_size: u64,
    max_whole: u64,
    retry: RetryPolicy,
    retries: Arc<AtomicU64>,
    per_request: usize,
    busy: AtomicUsize,
    live: Mutex<Vec<Weak<Request>>>,
    /// The buckets' gates, shared with every request.
    flows: Arc<Flows>,
    /// Whether the pool grows (an adaptive concurrency).
    grows: bool,
    threads: Mutex<Threads>,
    /// The threads started, and the cap on them.
    headcount: Headcount,
    /// The pool's queue, both ends (for the threads it starts and the stops it sends).
    rx: Receiver<Message>,
    tx: Sender<Message>,
}

/// A pool thread: takes a request's token, runs one unit, puts the token back. A token
/// whose request has nothing to run now retires; the request puts it back when work appears.
/// A unit's panic is caught inside [`Request::run`]: the thread goes on.
fn work(shared: &Arc<Shared>) {
    let (rx, tx) = (&shared.rx, &shared.tx);
    for message in rx {
        let request = match message {
            Message::Work(request) => request,
            Message::Stop => return,
        };
        let Some(unit) = request.next_unit() else {
            request.retire();
            continue;
        };
        let busy = shared.busy.fetch_add(1, Ordering::SeqCst) + 1;
        grow(shared, busy);
        request.run(unit);
        shared.busy.fetch_sub(1, Ordering::SeqCst);
        if request.cancel.is_cancelled() || tx.send(Message::Work(Arc::clone(&request))).is_err() {
            request.retire();
        }
    }
}

/// An adaptive pool: when every thread is busy, more tokens wait and the buckets' limits have
/// room, starts as many threads as would go through (up to the cap).
fn grow(shared: &Arc<Shared>, busy: usize) {
    if !shared.grows {
        return;
    }
    let live = shared.headcount.started();
    let queued = shared.rx.len();
    if busy < live || queued == 0 {
        return;
    }
    let more = shared.flows.room().min(queued);
    if let Err((name, error)) = spawn_workers(shared, more) {
        log::warn!("could not start {name}: {error}");
    }
}

/// Fetches lists of keys from S3, or of URLs from the web ([`Web`]), in the caller's order
/// with a pool of threads and a byte budget.
///
/// # How a request runs
///
/// [`Fetcher::fetch`] takes the keys lazily (an iterator, so a listing of millions of keys is
/// never materialised) and returns [`Objects`]. The request puts `per_request_workers` tokens
/// into the pool's queue; a pool thread that takes a token runs one *unit* of the request (a
/// whole object, or one ranged part of a large one) and puts the token back, so a request
/// never has more units in flight than its cap, and requests share the pool round-robin.
///
/// # The budget and its fairness rule
///
/// Every unit reserves its bytes before it reads them, and units reserve strictly in the
/// caller's order (item by item, part by part) from a FIFO [`MemoryBudget`]. The object the
/// caller needs next is therefore never blocked by a later one: the only bytes in its way
/// are those the caller still holds. Bytes come back when the caller drops the [`Object`]
/// (or, for a streamed object, as each part is read) — not when a worker finishes.
///
/// Objects up to `max_whole_object` bytes arrive whole ([`Object::bytes`]); larger ones,
/// including objects larger than the whole budget, arrive as a stream of ranged parts
/// ([`Object::into_reader`]), each part holding its budget until read. Read a streamed
/// object before asking [`Objects`] for the next item: the next item may need the budget its
/// unread parts hold.
///
/// # Threads and ownership
///
/// A `Fetcher` owns its pool's threads (`haul-fetch-<i>`: `n` with
/// [`workers`](FetcherBuilder::workers)`(n)`; with the default adaptive concurrency 8 at
/// first and more, up to 256, as the bucket's limit grows) and its hedge threads
/// (`haul-hedge-<i>`), and joins them when dropped; it cancels every live request first, so
/// nothing waits on budget or the network. Share it
/// behind an `Arc` (it is `Send + Sync`); every request shares its pool and its budget.
pub struct Fetcher {
    queue: Sender<Message>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A builder with the defaults.
    pub fn builder() -> FetcherBuilder {
        FetcherBuilder {
            concurrency: Concurrency::adaptive(),
            hedging: true,
            per_request_workers: None,
            memory_budget: DEFAULT_MEMORY_BUDGET_BYTES,
            part_size: crate::DEFAULT_PART_BYTES,
            max_whole_object: None,
            retry: RetryPolicy::default(),
        }
    }

    /// Fetches `keys` from `source` (a `&Bucket`, or [`Web`]: each key a URL), yielding
    /// exactly one item per key, in order, each as soon as it and every key before it are
    /// ready. Dropping the returned [`Objects`] cancels the request and gives every worker
    /// and byte back.
    pub fn fetch<I, K>(&self, source: impl Into<FetchSource>, keys: I) -> Objects
    where
        I: IntoIterator<Item = K>,
        I::IntoIter: Send + 'static,
        K: Into<FetchKey> + 'static,
    {
        let keys = Box::new(keys.into_iter().map(Into::into));
        let settings = Settings {
            budget: Arc::clone(&self.shared.budget),
            part_size: self.shared.part_size,
            max_whole: self.shared.max_whole,
            retry: self.shared.retry,
            retries: Arc::clone(&self.shared.retries),
            per_request: self.shared.per_request,
            pool: self.queue.clone(),
            flows: Arc::clone(&self.shared.flows),
        };
        let request = Arc::new(Request::new(source.into(), keys, settings));
        {
            let mut live = self.shared.live.lock();
            live.retain(|r| r.strong_count() > 0);
            live.push(Arc::downgrade(&request));
        }
        request.top_up();
        Objects {
            keep: Arc::new(KeepAlive(Arc::clone(&request))),
            request,
            next: 0,
            fail_fast: false,
            failed: false,
        }
    }

    /// The pool's and the budget's counters.
    pub fn stats(&self) -> FetcherStats {
        FetcherStats {
            workers: self.shared.threads.lock().handles.len(),
            busy: self.shared.busy.load(Ordering::SeqCst),
            budget_bytes: self.shared.budget.total(),
            budget_in_use: self.shared.budget.in_use(),
            budget_peak: self.shared.budget.peak_in_use(),
            retries: self.shared.retries.load(Ordering::Relaxed),
        }
    }

    /// Each host's (or bucket's) concurrency, as [`Downloader::flows`](crate::Downloader::flows):
    /// its limit, transfers in flight, throttles, hedged requests and bytes; sorted by host.
    pub fn flows(&self) -> Vec<crate::FlowStatus> {
        self.shared.flows.status()
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        for request in self.shared.live.lock().drain(..) {
            if let Some(request) = request.upgrade() {
                request.cancel();
            }
        }
        stop_workers(&self.shared);
    }
}

/// Cancels its request when the last holder (the `Objects`, or a streamed object's reader)
/// is gone.
#[derive(Debug)]
struct KeepAlive(Arc<Request>);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The objects of one request, in the caller's order. See [`Fetcher::fetch`].
#[derive(Debug)]
pub struct Objects {
    request: Arc<Request>,
    keep: Arc<KeepAlive>,
    next: u64,
    fail_fast: bool,
    failed: bool,
}

impl Objects {
    /// Stops at the first error: it is yielded, the request is cancelled, and iteration ends.
    pub fn fail_fast(mut self) -> Objects {
        self.fail_fast = true;
        self
    }
}

impl Iterator for Objects {
    type Item = Result<Object, FetchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let slot = self.request.take_item(self.next)?;
        let item = self.next;
        self.next += 1;
        let result = match slot {
            Slot::Done(result) => result,
            Slot::Streamed {
                key,
                size,
                etag,
                verifier,
                parts,
            } => Ok(Object {
                key,
                size,
                etag,
                body: Body::Streamed(Stream {
                    request: Arc::clone(&self.request),
                    _keep: Arc::clone(&self.keep),
                    item,
                    parts,
                    next_part: 0,
                    current: None,
                    pos: 0,
                    verifier,
                }),
            }),
        };
        if result.is_err() && self.fail_fast {
            self.failed = true;
            self.request.cancel();
        }
        Some(result)
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        // Start nothing new; a streamed object's reader may still finish its own parts.
        self.request.stop_planning_at(self.next);
    }
}

/// One fetched object. It holds its share of the budget until dropped.
#[derive(Debug)]
pub struct Object {
    key: String,
    size: u64,
    etag: Option<String>,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Whole {
        bytes: Vec<u8>,
        _permit: BudgetPermit,
    },
    Streamed(Stream),
}

impl Object {
    pub(crate) fn whole(
        key: String,
        etag: Option<String>,
        bytes: Vec<u8>,
        permit: BudgetPermit,
    ) -> Object {
        Object {
            key,
            size: bytes.len() as u64,
            etag,
            body: Body::Whole {
                bytes,
                _permit: permit,
            },
        }
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The ETag, quotes removed.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// The bytes of an object delivered whole; `None` for a streamed one.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Whole { bytes, .. } => Some(bytes),
            Body::Streamed(_) => None,
        }
    }

    /// Whether the object arrives as a stream of parts (it is larger than
    /// `max_whole_object`).
    pub fn is_streamed(&self) -> bool {
        matches!(self.body, Body::Streamed(_))
    }

    /// A reader over the object's bytes, whole or streamed. A streamed object's parts give
    /// their budget back as they are read.
    pub fn into_reader(self) -> ObjectReader {
        ObjectReader {
            key: self.key,
            body: self.body,
            pos: 0,
            failed: None,
        }
    }
}

/// Reads an [`Object`]; see [`Object::into_reader`]. A failed part is an `io::Error` whose
/// inner error is the [`FetchError`] naming the key and range.
#[derive(Debug)]
pub struct ObjectReader {
    key: String,
    body: Body,
    pos: usize,
    /// The first error, once one happened: every later read fails the same way, so a
    /// broken object never reads as a clean end of file.
    failed: Option<(io::ErrorKind, String)>,
}

#[derive(Debug)]
struct Stream {
    request: Arc<Request>,
    _keep: Arc<KeepAlive>,
    item: u64,
    parts: u64,
    next_part: u64,
    current: Option<PartData>,
    pos: usize,
    /// The whole object's digests, over the parts read.
    verifier: crate::engine::verify::Verifier,
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.next_part < self.parts {
            self.request.abandon(self.item);
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, message)) = &self.failed {
            return Err(io::Error::new(*kind, message.clone()));
        }
        let read = self.read_body(buf);
        if let Err(e) = &read {
            self.failed = Some((e.kind(), e.to_string()));
            if let Body::Streamed(stream) = &mut self.body {
                // Nothing more of it will be read: its parts go, and their budget with them.
                stream.current = None;
                stream.next_part = stream.parts;
                stream.request.abandon(stream.item);
            }
        }
        read
    }
}

impl ObjectReader {
    fn read_body(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.body {
            Body::Whole { bytes, .. } => {
                let n = (&bytes[self.pos..]).read(buf)?;
                self.pos += n;
                Ok(n)
            }
            Body::Streamed(stream) => loop {
                if let Some(part) = &stream.current {
                    if stream.pos < part.bytes.len() {
                        let n = (&part.bytes[stream.pos..]).read(buf)?;
                        stream.pos += n;
                        return Ok(n);
                    }
                    stream.current = None; // gives the part's budget back
                }
                if stream.next_part >= stream.parts {
                    if !stream.verifier.is_empty() {
                        let verified = std::mem::take(&mut stream.verifier).finish();
                        if let Err(mismatch) = verified {
                            return Err(io::Error::other(stream.request.source.error(
                                &self.key,
                                None,
                                FetchErrorKind::Digest(mismatch),
                            )));
                        }
                    }
                    return Ok(0);
                }
                let part = stream
                    .request
                    .take_part(stream.item, stream.next_part, &self.key)
                    .map_err(io::Error::other)?;
                stream.verifier.update(&part.bytes);
                stream.next_part += 1;
                stream.current = Some(part);
                stream.pos = 0;
            },
        }
    }
}
