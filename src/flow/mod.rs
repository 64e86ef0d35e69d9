//! Concurrency that finds its own level: how many transfers run at once to each host.
//!
//! Every origin host (or S3 bucket) a downloader talks to has a [`Flow`]: a gate with an
//! adjustable limit on the transfers in flight to it, and the [control loop](controller)
//! that moves the limit — up while more transfers bring more bytes per second, down when
//! they stop doing so, when the time to first byte climbs (a queue at the server), or when
//! the host answers 429 or 503. A transfer takes a [`Permit`] before its first request and
//! gives it back when done; the permit carries what the loop measures.
//!
//! With a [fixed](Concurrency::fixed) concurrency the gate never shuts (its limit is every
//! thread that could talk to the host): the number of threads is the number of transfers,
//! as it always was, and the flow only measures.

mod controller;
pub(crate) mod hedge;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::cancel::CancelToken;
use controller::{Controller, Finished};

/// First-response times kept per host for its hedge's delay.
const FIRST_BYTE_SAMPLES: usize = 128;
/// A host is hedged only once this many first-response times are known.
const HEDGE_AFTER_SAMPLES: usize = 32;
/// No hedge sooner than this: below it, a second request saves less than it costs.
const MIN_HEDGE_DELAY: Duration = Duration::from_millis(20);
/// At most one hedge per this many requests to a host.
const REQUESTS_PER_HEDGE: u64 = 20;
/// Requests kept per host with when they were sent and answered: a request at its hedge's
/// deadline is judged beside its peers among them.
const SENT_KEPT: usize = 1024;
/// A request's peers: this many of the requests sent next after it, filled up with those
/// sent just before it (within its own age).
const PEERS: usize = 16;
/// No hedges to a host this long after it pushed back: a second request adds to its load.
const NO_HEDGE_AFTER_THROTTLE: Duration = Duration::from_secs(10);

/// A host's bodies are small while they average under this many bytes.
const SMALL_BODY_BYTES: u64 = 1 << 20;
/// A body this long is large: the host's later requests use large buffers.
pub(crate) const LARGE_BODY_BYTES: u64 = 16 << 20;

/// What one transfer counts for in the loop's rate besides its bytes: a request's round
/// trip and the server's work for it, in bytes. A revalidation that carries no body then
/// still measures the host (a sync rerun of unchanged objects climbs as a download would).
pub(crate) const REQUEST_WORK: u64 = 16 << 10;

/// The limit a host starts at: twice the six connections a browser opens to a host, so a
/// server built for browsers takes it; across a WAN each doubling from here costs a
/// new connection's first response (BENCHMARKS.md measured 8, 16 and 32).
pub const DEFAULT_INITIAL_CONCURRENCY: usize = 16;
/// The most transfers in flight to one host, by default.
pub const DEFAULT_MAX_CONCURRENCY: usize = 256;

/// How many transfers run at once: a fixed number, or a limit per host that adapts between
/// a floor and a cap (the default).
///
/// An adaptive limit starts at `initial` and doubles every first-response time while the
/// rate keeps growing (as TCP's slow start, one more per response), then climbs and descends in small steps to where more
/// transfers stop helping; it halves when the host answers 429 or 503 or a request gets no
/// response, and steps down when the time to first byte climbs. ARCHITECTURE.md describes
/// the loop.
///
/// ```
/// use haul::Concurrency;
///
/// let default = Concurrency::adaptive();
/// assert_eq!((default.min(), default.max()), (1, 256));
/// let pinned = Concurrency::fixed(4);
/// assert!(pinned.is_fixed());
/// let gentle = Concurrency::adaptive().between(2, 32).initial(4);
/// assert_eq!((gentle.initial_limit(), gentle.max()), (4, 32));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    initial: usize,
    min: usize,
    max: usize,
    fixed: bool,
}

impl Concurrency {
    /// Exactly `n` transfers at once (0 is refused where it is used).
    pub fn fixed(n: usize) -> Concurrency {
        Concurrency {
            initial: n,
            min: n,
            max: n,
            fixed: true,
        }
    }

    /// A limit per host that adapts, from [`DEFAULT_INITIAL_CONCURRENCY`] between 1 and
    /// [`DEFAULT_MAX_CONCURRENCY`].
    pub fn adaptive() -> Concurrency {
        Concurrency {
            initial: DEFAULT_INITIAL_CONCURRENCY,
            min: 1,
            max: DEFAULT_MAX_CONCURRENCY,
            fixed: false,
        }
    }

    /// Keeps an adaptive limit between `min` and `max` (`min` at least 1, `max` at least
    /// `min`); the initial limit is brought between them.
    pub fn between(mut self, min: usize, max: usize) -> Concurrency {
        self.min = min.max(1);
        self.max = max.max(self.min);
        self.initial = self.initial.clamp(self.min, self.max);
        self
    }

    /// Where an adaptive limit starts (brought between its bounds).
    pub fn initial(mut self, n: usize) -> Concurrency {
        self.initial = n.clamp(self.min, self.max);
        self
    }

    /// Whether the number is fixed.
    pub fn is_fixed(&self) -> bool {
        self.fixed
    }

    /// Where the limit starts.
    pub fn initial_limit(&self) -> usize {
        self.initial
    }

    /// The floor.
    pub fn min(&self) -> usize {
        self.min
    }

    /// The cap: the most threads a target runs.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Default for Concurrency {
    fn default() -> Concurrency {
        Concurrency::adaptive()
    }
}

/// One host's concurrency as it stands ([`Downloader::flows`](crate::Downloader::flows)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlowStatus {
    /// `scheme://host:port`, or `s3://bucket`; `s3://bucket (uploads)` for the uploads of
    /// a downloader whose target is that bucket.
    pub host: String,
    /// Transfers that may be in flight now.
    pub limit: usize,
    /// Transfers in flight now.
    pub in_flight: usize,
    /// The most ever in flight at once.
    pub peak: usize,
    /// Times the host pushed back (429, 503, a request with no response).
    pub throttles: u64,
    /// Hedged requests sent (a second request for a response later than the host's 95th
    /// percentile and twice its median, or, once a downloader's queues have run out and
    /// the host has drained, twice its lower quartile, and behind the requests sent with
    /// it; at most one in twenty of its requests).
    pub hedged: u64,
    /// Hedged requests that answered first.
    pub hedges_won: u64,
    /// Bytes the host delivered in transfers that finished well.
    pub bytes: u64,
    /// The path's base time to first response as the loop measures it (the lowest of its
    /// recent rounds' medians), against which it tells a queue building; `None` until a
    /// round of finished transfers has one.
    pub base_first_response: Option<Duration>,
}

/// The flows of one downloader, one per host, made on first use.
#[derive(Debug)]
pub(crate) struct Flows {
    concurrency: Concurrency,
    by_host: Mutex<HashMap<String, Arc<Flow>>>,
    /// Sends the hosts' hedges; `None` when hedging is off.
    hedger: Option<Arc<hedge::Hedger>>,
    /// Told when a limit grows between transfers (see [`Flows::on_growth`]).
    growth: Arc<Growth>,
    /// Whether the work of the pools that feed the gates has run out.
    drain: Arc<Drain>,
}

/// Whether the work of the pools that send transfers through the gates has run out (the end
/// of a job): every pool that reports (a downloader's, one per target; a fetcher, busy
/// while one of its requests has keys or parts to hand out) has found its queue empty.
/// With no pool reporting the hosts are never taken as drained.
#[derive(Debug, Default)]
struct Drain {
    pools: AtomicUsize,
    busy: AtomicUsize,
}

impl Drain {
    fn drained(&self) -> bool {
        self.pools.load(Ordering::Acquire) > 0 && self.busy.load(Ordering::Acquire) == 0
    }
}

/// What is told when a limit grows on a response, while no transfer has ended to start the
/// next: the pools, which start threads for the room.
#[derive(Default)]
struct Growth {
    hooks: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Growth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Growth").finish_non_exhaustive()
    }
}

impl Growth {
    fn grew(&self) {
        for hook in self.hooks.lock().iter() {
            hook();
        }
    }
}

impl Flows {
    pub(crate) fn new(concurrency: Concurrency, hedging: bool) -> Flows {
        Flows {
            concurrency,
            by_host: Mutex::new(HashMap::new()),
            hedger: hedging.then(Arc::default),
            growth: Arc::default(),
            drain: Arc::default(),
        }
    }

    /// A pool will say when its queue has work ([`busy`](Flows::pool_busy)) and when it has
    /// run out ([`drained`](Flows::pool_drained)); it starts out drained.
    pub(crate) fn pool_reports(&self) {
        self.drain.pools.fetch_add(1, Ordering::AcqRel);
    }

    /// A reporting pool's queue has work again.
    pub(crate) fn pool_busy(&self) {
        self.drain.busy.fetch_add(1, Ordering::AcqRel);
    }

    /// A reporting pool's queue ran out. When it was the last busy one, the requests still
    /// out to a host that has drained need not wait out a busy spell's hedge delay.
    pub(crate) fn pool_drained(&self) {
        if self.drain.busy.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let flows: Vec<Arc<Flow>> = self.by_host.lock().values().cloned().collect();
        for flow in &flows {
            let hurry = flow.hurry(&flow.gate.lock());
            if let Some(hurry) = hurry {
                hurry.send(flow);
            }
        }
    }

    /// Whether the limits adapt (not a fixed concurrency).
    pub(crate) fn adaptive(&self) -> bool {
        !self.concurrency.is_fixed()
    }

    /// Calls `hook` whenever a host's limit grows on a response (startup grows it by one
    /// for each first response): a pool then starts the threads the room calls for. The
    /// hook runs on the thread of the transfer that got the response, with no lock held; it
    /// must not keep what it closes over alive (take a `Weak`).
    pub(crate) fn on_growth(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.growth.hooks.lock().push(Box::new(hook));
    }

    /// Stops the hedge threads and joins them (once no transfer runs).
    pub(crate) fn stop(&self) {
        if let Some(hedger) = &self.hedger {
            hedger.stop();
        }
    }

    /// The flow to `host`.
    pub(crate) fn flow(&self, host: &str) -> Arc<Flow> {
        let mut by_host = self.by_host.lock();
        if let Some(flow) = by_host.get(host) {
            return Arc::clone(flow);
        }
        let c = self.concurrency;
        let flow = Arc::new(Flow {
            host: host.to_owned(),
            gate: Mutex::new(Gate {
                controller: Controller::new(c.initial, c.min, c.max, Instant::now()),
                in_flight: 0,
                waiting: 0,
                peak: 0,
                bytes: 0,
                work: 0,
                finished: 0,
                large_seen: false,
                first_bytes: VecDeque::with_capacity(FIRST_BYTE_SAMPLES),
                sent: Sent::default(),
                hedge_delay: None,
                drained_hedge_delay: None,
                since_delay: 0,
                requests: 0,
                hedged: 0,
                hedges_won: 0,
                last_throttle: None,
            }),
            room: Condvar::new(),
            hedger: self.hedger.clone(),
            adaptive: !c.is_fixed(),
            growth: Arc::clone(&self.growth),
            drain: Arc::clone(&self.drain),
        });
        by_host.insert(host.to_owned(), Arc::clone(&flow));
        flow
    }

    /// Every host's status, sorted by host.
    pub(crate) fn status(&self) -> Vec<FlowStatus> {
        let flows: Vec<Arc<Flow>> = self.by_host.lock().values().cloned().collect();
        let mut status: Vec<FlowStatus> = flows.iter().map(|f| f.status()).collect();
        status.sort_by(|a, b| a.host.cmp(&b.host));
        status
    }

    /// Whether some transfer waits at a gate now.
    #[cfg(test)]
    fn anyone_waiting(&self) -> bool {
        let flows: Vec<Arc<Flow>> = self.by_host.lock().values().cloned().collect();
        flows.iter().any(|f| f.gate.lock().waiting > 0)
    }

    /// Transfers the gates would let go now that no thread is there to run: the room under
    /// each host's limit, when nobody waits at any gate (a waiter means threads to spare).
    /// A host not seen yet has room for its initial limit, counted once.
    pub(crate) fn room(&self) -> usize {
        let flows: Vec<Arc<Flow>> = self.by_host.lock().values().cloned().collect();
        let mut room = 0;
        for flow in &flows {
            let gate = flow.gate.lock();
            if gate.waiting > 0 {
                return 0;
            }
            room += gate.controller.limit().saturating_sub(gate.in_flight);
        }
        room
    }
}

std::thread_local! {
    /// The flow whose gate this thread's S3 calls run under (an upload), if any.
    static OBSERVED: std::cell::RefCell<Option<Arc<Flow>>> = const { std::cell::RefCell::new(None) };
}

/// A store's 429 or 503 met by a call on this thread: the flow it runs under (see
/// [`Observer::run`]) halves its limit. Calls that run under none are not counted.
pub(crate) fn throttle_observed() {
    if let Some(flow) = OBSERVED.with(|o| o.borrow().clone()) {
        flow.throttled();
    }
}

/// What lets a thread's S3 calls (which retry on their own, inside the bucket's methods)
/// tell a flow about the 429s and 503s they meet: an upload's parts run on threads of
/// their own, each under a clone.
#[derive(Debug, Clone)]
pub(crate) struct Observer(Arc<Flow>);

impl Observer {
    /// Runs `f` with this thread's throttles going to the flow; the one before is restored.
    pub(crate) fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<Arc<Flow>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let before = self.0.take();
                OBSERVED.with(|o| *o.borrow_mut() = before);
            }
        }
        let before = OBSERVED.with(|o| o.borrow_mut().replace(Arc::clone(&self.0)));
        let _restore = Restore(before);
        f()
    }
}

/// The key of a URL's host: `scheme://authority`.
pub(crate) fn host_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// One host's gate and control loop.
#[derive(Debug)]
pub(crate) struct Flow {
    host: String,
    gate: Mutex<Gate>,
    /// Signalled when a transfer may go: one finished, the limit grew, or a cancel.
    room: Condvar,
    hedger: Option<Arc<hedge::Hedger>>,
    /// Whether the concurrency adapts (not fixed).
    adaptive: bool,
    growth: Arc<Growth>,
    drain: Arc<Drain>,
}

/// A host's requests to bring forward to `after` (see [`hedge::Hedger::hurry`]).
struct Hurry {
    hedger: Arc<hedge::Hedger>,
    after: Duration,
}

impl Hurry {
    fn send(self, flow: &Arc<Flow>) {
        let budget: Arc<dyn hedge::Budget> = Arc::clone(flow) as _;
        self.hedger.hurry(&budget, self.after);
    }
}

#[derive(Debug)]
struct Gate {
    controller: Controller,
    in_flight: usize,
    waiting: usize,
    peak: usize,
    bytes: u64,
    /// What the control loop's rate counts: the bytes, and a request's worth per transfer.
    work: u64,
    /// Transfers that finished well.
    finished: u64,
    /// Whether a response announced a large body.
    large_seen: bool,
    /// The latest first-response times, and the hedge's delay worked out from them.
    first_bytes: VecDeque<Duration>,
    /// The latest requests, in the order they were sent (kept when hedging is on).
    sent: Sent,
    hedge_delay: Option<Duration>,
    /// The hedge's delay once the host has drained (see [`Gate::drained`]).
    drained_hedge_delay: Option<Duration>,
    since_delay: u32,
    /// Permits granted, hedges sent, hedges that won.
    requests: u64,
    hedged: u64,
    hedges_won: u64,
    /// When the host last pushed back.
    last_throttle: Option<Instant>,
}

impl Gate {
    /// Whether the limit lets one more transfer in.
    fn has_room(&self) -> bool {
        self.in_flight < self.controller.limit()
    }

    /// Counts one more transfer in flight.
    fn take_place(&mut self) {
        self.in_flight += 1;
        self.peak = self.peak.max(self.in_flight);
    }

    /// Whether the host's bodies are small: none announced as large, and the average under
    /// 1 MiB.
    fn small_bodies(&self) -> bool {
        !self.large_seen && self.bytes < SMALL_BODY_BYTES.saturating_mul(self.finished.max(1))
    }

    /// Records a first-response time; the hedge's delay is worked out again every 16.
    fn first_byte(&mut self, took: Duration) {
        if self.first_bytes.len() == FIRST_BYTE_SAMPLES {
            self.first_bytes.pop_front();
        }
        self.first_bytes.push_back(took);
        self.since_delay += 1;
        let n = self.first_bytes.len();
        if n >= HEDGE_AFTER_SAMPLES && (self.hedge_delay.is_none() || self.since_delay >= 16) {
            self.since_delay = 0;
            let mut sorted: Vec<Duration> = self.first_bytes.iter().copied().collect();
            sorted.sort_unstable();
            let busy = hedge_delay(&sorted);
            self.hedge_delay = Some(busy);
            self.drained_hedge_delay = Some(drained_hedge_delay(&sorted).min(busy));
        }
    }

    /// Whether the host has drained, as at the end of a job: the pools' work has run out
    /// (`pools_drained`), no transfer waits for the host, and at most an eighth of its limit
    /// and of its busiest are in flight. The first-response times of its busy spells (a queue
    /// at the server or on the link) then say nothing about the requests still out.
    fn drained(&self, pools_drained: bool) -> bool {
        pools_drained
            && self.waiting == 0
            && self.in_flight * 8 <= self.controller.limit()
            && self.in_flight * 8 <= self.peak
    }

    /// Takes one hedge from the host's allowance (at most one in twenty of its requests, none
    /// for a while after it pushed back); `false` when none is left.
    fn take_hedge(&mut self) -> bool {
        let pushed_back = self
            .last_throttle
            .is_some_and(|at| at.elapsed() < NO_HEDGE_AFTER_THROTTLE);
        if pushed_back || (self.hedged + 1) * REQUESTS_PER_HEDGE > self.requests {
            return false;
        }
        self.hedged += 1;
        true
    }

    /// When a new request should be hedged, when it is worth it.
    fn hedge_after(&self, pools_drained: bool) -> Option<Duration> {
        let delay = if self.drained(pools_drained) {
            self.drained_hedge_delay
        } else {
            self.hedge_delay
        };
        delay.filter(|p| *p >= MIN_HEDGE_DELAY)
    }
}

/// The hedge's delay for a host whose recent first-response times are `sorted`: their 95th
/// percentile, and at least twice their median. A hedge sent at the 95th percentile answers
/// about a median later, so it wins only over a first request later than the two together:
/// where the times are close (a steady server), the 95th percentile is only noise, and hedges
/// sent at it would win nothing and spend the allowance a real straggler needs.
fn hedge_delay(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    let p95 = sorted[(n * 95 / 100).min(n - 1)];
    p95.max(sorted[n / 2] * 2)
}

/// The hedge's delay for a drained host: twice the lower quartile of its recent
/// first-response times, about what a request to it takes with no queue in front (a busy
/// spell's times sit above the quartile), so a request still unanswered after twice that is
/// a straggler's. Never later than the busy delay.
fn drained_hedge_delay(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 4] * 2
}

/// A host's latest requests in the order they were sent: when each was sent, and how long
/// its first response took (or until it ended without one).
#[derive(Debug, Default)]
struct Sent {
    requests: VecDeque<SentRequest>,
    /// The number of the request at the front.
    first: u64,
}

#[derive(Debug)]
struct SentRequest {
    at: Instant,
    answered: Option<Duration>,
}

impl Sent {
    /// A request sent now: its number.
    fn push(&mut self, at: Instant) -> u64 {
        if self.requests.len() == SENT_KEPT {
            self.requests.pop_front();
            self.first += 1;
        }
        self.requests.push_back(SentRequest { at, answered: None });
        self.first + self.requests.len() as u64 - 1
    }

    /// The request numbered `seq` was answered (or ended) at `at`: the first word counts.
    fn answered(&mut self, seq: u64, at: Instant) {
        let kept = seq
            .checked_sub(self.first)
            .and_then(|i| self.requests.get_mut(usize::try_from(i).ok()?));
        if let Some(request) = kept
            && request.answered.is_none()
        {
            request.answered = Some(at.saturating_duration_since(request.at));
        }
    }

    /// Whether the request numbered `seq`, unanswered at `now`, is behind its peers (the
    /// requests sent next after it, filled up with those sent just before it within its
    /// age): `None` when it is (or it has no peers: then its age alone judges it), else how
    /// long to wait before looking again. A request is behind when most of its peers have answered and it
    /// has waited twice their median: one that is only as slow as the requests sent with it
    /// waits where a hedge would wait too (the host, or the path to it, is slow as a whole).
    fn not_behind(&self, seq: u64, now: Instant) -> Option<Duration> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        let me = self.requests.get(i)?;
        let age = now.saturating_duration_since(me.at);
        let since = me.at.checked_sub(age);
        // The requests sent next after it first; those sent before it fill up the rest.
        let after = self.requests.range(i + 1..).take(PEERS);
        let before = self
            .requests
            .range(..i)
            .rev()
            .take_while(|r| since.is_some_and(|since| r.at >= since));
        let mut peers = 0;
        let mut answered: Vec<Duration> = Vec::with_capacity(PEERS);
        for r in after.chain(before).take(PEERS) {
            peers += 1;
            answered.extend(r.answered);
        }
        if peers == 0 {
            return None;
        }
        let again = MIN_HEDGE_DELAY.max(age / 4);
        // The peers' median, the unanswered counted as later than any answer.
        if answered.len() <= peers / 2 {
            return Some(again);
        }
        answered.sort_unstable();
        let median = answered[peers / 2];
        (age < median * 2).then(|| (median * 2 - age).max(MIN_HEDGE_DELAY))
    }
}

impl hedge::Budget for Flow {
    fn verdict(&self, seq: u64) -> hedge::Verdict {
        let mut gate = self.gate.lock();
        if let Some(again) = gate.sent.not_behind(seq, Instant::now()) {
            return hedge::Verdict::Later(again);
        }
        if gate.take_hedge() {
            hedge::Verdict::Hedge
        } else {
            hedge::Verdict::No
        }
    }

    fn won(&self) {
        self.gate.lock().hedges_won += 1;
    }

    fn throttled(&self) {
        Flow::throttled(self);
    }
}

impl Flow {
    /// Waits until a transfer may go to this host, or `cancel` is cancelled (`None`).
    pub(crate) fn acquire(self: &Arc<Self>, cancel: &CancelToken) -> Option<Permit> {
        let mut gate = self.gate.lock();
        if cancel.is_cancelled() {
            return None;
        }
        if gate.has_room() {
            // In at once: one lock, and no cancel hook to register on the job's token.
            gate.take_place();
        } else {
            drop(gate);
            if !self.enter(cancel, None) {
                return None;
            }
            gate = self.gate.lock();
        }
        gate.requests += 1;
        let small_bodies = gate.small_bodies();
        let hedge_after = self
            .hedger
            .as_ref()
            .and(gate.hedge_after(self.drain.drained()));
        drop(gate);
        Some(Permit {
            flow: Arc::clone(self),
            started: Instant::now(),
            seq: std::sync::OnceLock::new(),
            first_byte: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            succeeded: AtomicBool::new(false),
            small_bodies,
            hedge_after,
            out: AtomicBool::new(false),
            keeps_place: AtomicBool::new(false),
        })
    }

    /// Waits until a transfer may go to this host and counts it in flight; `false` when
    /// `cancel` is cancelled first. With `out` (a permit's, stepped out while it backs off),
    /// the permit comes back in: `out` is cleared under the gate's lock as its place is
    /// taken, and a thread sharing the permit that finds it cleared stops waiting (the place
    /// is taken once).
    fn enter(self: &Arc<Self>, cancel: &CancelToken, out: Option<&AtomicBool>) -> bool {
        let back = || out.is_some_and(|out| !out.load(Ordering::Acquire));
        // The hook takes the gate's lock, and runs under the token's: it is registered, and
        // deregistered, while this thread holds no gate lock.
        let woken = Arc::clone(self);
        let hook = cancel.on_cancel(move || {
            drop(woken.gate.lock());
            woken.room.notify_all();
        });
        let mut gate = self.gate.lock();
        let mut waited = false;
        let granted = loop {
            if cancel.is_cancelled() {
                break false;
            }
            if back() {
                break true; // a thread sharing the permit took its place
            }
            if gate.has_room() {
                // Taken once: a permit's threads that come back together count it once.
                if out.is_none_or(|out| out.swap(false, Ordering::AcqRel)) {
                    gate.take_place();
                    if out.is_some() {
                        self.room.notify_all(); // its other threads stop waiting
                    }
                }
                break true;
            }
            if !waited {
                gate.waiting += 1;
                waited = true;
            }
            self.room.wait(&mut gate);
        };
        if waited {
            gate.waiting -= 1;
        }
        drop(gate);
        drop(hook);
        if !granted {
            // It may have taken a wake-up meant for a transfer that can go.
            self.room.notify_one();
        }
        granted
    }

    /// A permit steps out of the gate while its transfer backs off (`out` set, once).
    fn leave(&self, out: &AtomicBool) {
        let mut gate = self.gate.lock();
        if !out.swap(true, Ordering::AcqRel) {
            gate.in_flight -= 1;
            drop(gate);
            self.room.notify_one();
        }
    }

    /// What to bring forward when the host has drained: its requests still out, to the
    /// drained host's hedge delay.
    fn hurry(&self, gate: &Gate) -> Option<Hurry> {
        let hedger = self.hedger.as_ref()?;
        let after = gate.drained_hedge_delay?;
        (after >= MIN_HEDGE_DELAY && gate.drained(self.drain.drained())).then(|| Hurry {
            hedger: Arc::clone(hedger),
            after,
        })
    }

    fn throttled(&self) {
        let mut gate = self.gate.lock();
        let now = Instant::now();
        gate.last_throttle = Some(now);
        gate.controller.throttled(now);
    }

    fn status(&self) -> FlowStatus {
        let gate = self.gate.lock();
        FlowStatus {
            host: self.host.clone(),
            limit: gate.controller.limit(),
            in_flight: gate.in_flight,
            peak: gate.peak,
            throttles: gate.controller.throttles(),
            bytes: gate.bytes,
            hedged: gate.hedged,
            hedges_won: gate.hedges_won,
            base_first_response: gate.controller.base_first_byte(),
        }
    }
}

/// Leave for one transfer to a host; dropping it lets the next one go. What the transfer
/// reports on it is what the host's control loop measures.
#[derive(Debug)]
pub(crate) struct Permit {
    flow: Arc<Flow>,
    started: Instant,
    /// Its number among the host's requests sent, from its first GET (kept when hedging is
    /// on): a transfer that goes on with a response already in hand sends none.
    seq: std::sync::OnceLock<u64>,
    /// Nanoseconds from `started` to the first response, plus one (0: none yet).
    first_byte: AtomicU64,
    delivered: AtomicU64,
    succeeded: AtomicBool,
    /// Whether the host's bodies have been small: its requests use small buffers.
    small_bodies: bool,
    /// When this transfer's requests are hedged (`None`: not).
    hedge_after: Option<Duration>,
    /// Whether the transfer has stepped out of the gate while it backs off before a retry.
    out: AtomicBool,
    /// Whether it keeps its place through a backoff (it holds leave from another gate).
    keeps_place: AtomicBool,
}

impl Permit {
    /// A response's headers arrived (only the first counts).
    /// In startup the host's limit grows by one on it (see the
    /// [controller](controller::Controller::responded)).
    pub(crate) fn responded(&self) {
        let first = self
            .first_byte
            .compare_exchange(
                0,
                stored_time(self.started.elapsed()),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        // A fixed concurrency's limit never moves: no need for the gate unless the answer
        // is one a hedge's verdict looks at.
        let hedged = self.flow.hedger.is_some();
        if !first || !(self.flow.adaptive || hedged) {
            return;
        }
        let grew = {
            let mut gate = self.flow.gate.lock();
            if let Some(&seq) = self.seq.get() {
                gate.sent.answered(seq, Instant::now());
            }
            let limited = gate.waiting > 0 || gate.in_flight >= gate.controller.limit();
            self.flow.adaptive && gate.controller.responded(limited)
        };
        if grew {
            self.flow.room.notify_all();
            self.flow.growth.grew();
        }
    }

    /// The host pushed back: a 429 or 503, or a request that got no response.
    pub(crate) fn throttled(&self) {
        self.flow.throttled();
    }

    /// How long the transfer's first request waited for its response, once it has one.
    pub(crate) fn first_response(&self) -> Option<Duration> {
        loaded_time(self.first_byte.load(Ordering::Acquire))
    }

    /// Whether the concurrency adapts: a large object may then split by itself.
    pub(crate) fn adaptive(&self) -> bool {
        self.flow.adaptive
    }

    /// Whether the host's bodies are small (none announced over 16 MiB, and on average
    /// under 1 MiB), so this transfer's connection needs no large buffers.
    pub(crate) fn small_bodies(&self) -> bool {
        // A large body announced since the permit was granted (this transfer's own opening
        // answer, say) holds for its later requests too: the parts of a split object.
        self.small_bodies && !self.flow.gate.lock().large_seen
    }

    /// Sends a GET, hedged when the host's first-response times call for it. The transfer's
    /// first GET takes its number among the host's requests sent (a hedge's verdict judges a
    /// request beside those sent with it).
    pub(crate) fn get(&self, request: &hedge::Request<'_>, cancel: &CancelToken) -> hedge::Answer {
        let Some(hedger) = &self.flow.hedger else {
            return request
                .client
                .get(request.url, request.headers, request.timeout, request.body);
        };
        let seq = *self
            .seq
            .get_or_init(|| self.flow.gate.lock().sent.push(Instant::now()));
        match self.hedge_after {
            Some(after) => {
                let budget: Arc<dyn hedge::Budget> = Arc::clone(&self.flow) as _;
                hedger.send(request, seq, after, cancel, budget)
            }
            None => request
                .client
                .get(request.url, request.headers, request.timeout, request.body),
        }
    }

    /// What reports the 429s and 503s of S3 calls on this transfer's behalf.
    pub(crate) fn observer(&self) -> Observer {
        Observer(Arc::clone(&self.flow))
    }

    /// A response announced a large body: the host's transfers use large buffers from now on.
    pub(crate) fn large_body(&self) {
        self.flow.gate.lock().large_seen = true;
    }

    /// The transfer backs off before a retry: its place at the gate goes to another
    /// transfer meanwhile. After a 429 or 503 the limit is cut; a transfer that kept its
    /// place would retry beyond it, and a burst past what the host takes would be refused
    /// again and again.
    pub(crate) fn step_out(&self) {
        if !self.keeps_place.load(Ordering::Acquire) {
            self.flow.leave(&self.out);
        }
    }

    /// The transfer holds leave from a second gate, taken after this one (a download into a
    /// bucket holds its uploads' leave): it keeps its place here through its backoffs. Waiting
    /// at this gate again while holding the second would take the two in the other order,
    /// and transfers holding this one while they wait for the second could then wait on it
    /// for ever.
    pub(crate) fn keep_place(&self) {
        self.keeps_place.store(true, Ordering::Release);
    }

    /// The transfer retries: it waits at the gate for a place again; `false` when `cancel`
    /// is cancelled first. (The parts of a split object share their permit: of those that
    /// come back together, one takes the place and the others go on with it.)
    pub(crate) fn step_in(&self, cancel: &CancelToken) -> bool {
        !self.out.load(Ordering::Acquire) || self.flow.enter(cancel, Some(&self.out))
    }

    /// The transfer finished well, with `bytes` from the host.
    pub(crate) fn succeeded(&self, bytes: u64) {
        self.delivered.store(bytes, Ordering::Release);
        self.succeeded.store(true, Ordering::Release);
    }
}

/// A time kept in an atomic: nanoseconds plus one, so that 0 says "none".
fn stored_time(took: Duration) -> u64 {
    u64::try_from(took.as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

/// A time kept by [`stored_time`], if one was.
fn loaded_time(stored: u64) -> Option<Duration> {
    stored.checked_sub(1).map(Duration::from_nanos)
}

impl Drop for Permit {
    fn drop(&mut self) {
        let now = Instant::now();
        let first_byte = self.first_response();
        let mut gate = self.flow.gate.lock();
        let before = gate.controller.limit();
        let limited = gate.waiting > 0 || gate.in_flight >= before;
        // A transfer that stepped out and never came back is not in flight.
        if !self.out.load(Ordering::Acquire) {
            gate.in_flight -= 1;
        }
        if let Some(first) = first_byte {
            gate.first_byte(first);
        }
        // One that ended without a response holds its peers' verdicts up no longer.
        if let Some(&seq) = self.seq.get() {
            gate.sent.answered(seq, now);
        }
        if self.succeeded.load(Ordering::Acquire) {
            let delivered = self.delivered.load(Ordering::Acquire);
            gate.bytes += delivered;
            gate.work += delivered + REQUEST_WORK;
            gate.finished += 1;
            let work = gate.work;
            gate.controller.finished(Finished {
                now,
                took: now - self.started,
                first_byte,
                work,
                limited,
            });
        }
        let grew = gate.controller.limit() > before;
        let hurry = self.flow.hurry(&gate);
        drop(gate);
        if grew {
            self.flow.room.notify_all();
        } else {
            self.flow.room.notify_one();
        }
        // The host drained: its requests still out need not wait out a busy spell's delay.
        if let Some(hurry) = hurry {
            hurry.send(&self.flow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_its_scheme_and_authority() {
        assert_eq!(host_of("http://127.0.0.1:80/a/b?c"), "http://127.0.0.1:80");
        assert_eq!(host_of("https://h.example?x=1"), "https://h.example");
        assert_eq!(host_of("https://h.example"), "https://h.example");
        assert_eq!(host_of("http://u:p@h:1#f"), "http://u:p@h:1");
    }

    #[test]
    fn the_gate_holds_transfers_to_the_limit_and_a_cancel_frees_a_waiter() {
        let flows = Flows::new(Concurrency::adaptive().between(2, 2), false);
        let flow = flows.flow("http://h");
        let cancel = CancelToken::new();
        let first = flow.acquire(&cancel).expect("room");
        let _second = flow.acquire(&cancel).expect("room");
        assert_eq!(flows.status()[0].in_flight, 2);
        let waiter_cancel = CancelToken::new();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| flow.acquire(&waiter_cancel).is_some());
            // Until the waiter is counted at the gate it has not begun to wait.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !flows.anyone_waiting() {
                assert!(Instant::now() < deadline, "the waiter never waited");
                std::thread::yield_now();
            }
            waiter_cancel.cancel();
            assert!(!waiter.join().unwrap(), "a cancelled waiter gets no permit");
        });
        drop(first);
        let third = flow.acquire(&cancel);
        assert!(third.is_some(), "the room a finished transfer left");
        let status = &flows.status()[0];
        assert_eq!((status.in_flight, status.peak, status.limit), (2, 2, 2));
    }

    #[test]
    fn a_transfer_backing_off_gives_its_place_back_and_waits_for_one_to_retry() {
        let flows = Flows::new(Concurrency::adaptive().between(1, 1), false);
        let flow = flows.flow("http://h");
        let cancel = CancelToken::new();
        let refused = flow.acquire(&cancel).expect("room");
        refused.step_out();
        refused.step_out(); // once out, out
        assert_eq!(flows.status()[0].in_flight, 0);
        let other = flow.acquire(&cancel).expect("the place it gave back");
        std::thread::scope(|s| {
            let retry = s.spawn(|| refused.step_in(&cancel));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !flows.anyone_waiting() {
                assert!(Instant::now() < deadline, "the retry never waited");
                std::thread::yield_now();
            }
            drop(other);
            assert!(retry.join().unwrap(), "in again once the other is done");
        });
        assert_eq!(flows.status()[0].in_flight, 1);
        // Threads sharing the permit (a split object's parts) come back at once, with no
        // other place free: one place is taken, not two, and none waits for a second.
        refused.step_out();
        std::thread::scope(|s| {
            let parts: Vec<_> = (0..4)
                .map(|_| s.spawn(|| refused.step_in(&cancel)))
                .collect();
            assert!(parts.into_iter().all(|p| p.join().unwrap()));
        });
        assert_eq!(flows.status()[0].in_flight, 1);
        drop(refused);
        assert_eq!(flows.status()[0].in_flight, 0);
        // One that is cancelled while it waits stays out, and its drop counts nothing.
        let held = flow.acquire(&cancel).expect("room");
        let waiting = CancelToken::new();
        held.step_out();
        let taken = flow.acquire(&cancel).expect("room");
        waiting.cancel();
        assert!(!held.step_in(&waiting));
        drop(held);
        assert_eq!(flows.status()[0].in_flight, 1);
        drop(taken);
        assert_eq!(flows.status()[0].in_flight, 0);
        // One that holds leave from a second gate keeps its place.
        let keeps = flow.acquire(&cancel).expect("room");
        keeps.keep_place();
        keeps.step_out();
        assert_eq!(flows.status()[0].in_flight, 1);
        assert!(keeps.step_in(&cancel));
        drop(keeps);
        assert_eq!(flows.status()[0].in_flight, 0);
    }

    #[test]
    fn a_finished_transfer_lets_a_waiter_go() {
        let flows = Flows::new(Concurrency::adaptive().between(1, 1), false);
        let flow = flows.flow("s3://b");
        let cancel = CancelToken::new();
        let held = flow.acquire(&cancel).expect("room");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| flow.acquire(&cancel).map(|p| p.succeeded(5)).is_some());
            let deadline = Instant::now() + Duration::from_secs(10);
            while !flows.anyone_waiting() {
                assert!(Instant::now() < deadline, "the waiter never waited");
                std::thread::yield_now();
            }
            held.succeeded(7);
            drop(held);
            assert!(waiter.join().unwrap());
        });
        assert_eq!(flows.status()[0].bytes, 12);
    }

    #[test]
    fn hedges_wait_for_a_known_percentile_and_stay_one_in_twenty() {
        let flows = Flows::new(Concurrency::fixed(64), true);
        let flow = flows.flow("http://h");
        let cancel = CancelToken::new();
        for i in 0..100u64 {
            let permit = flow.acquire(&cancel).expect("room");
            // Until 32 first-response times are known, nothing is hedged.
            assert_eq!(permit.hedge_after.is_some(), i >= 32, "request {i}");
            // First responses with a long tail, 10 ms to 0.5 s: the 95th percentile of those
            // kept (10 + 91² / 20 ms of the first 96), later than twice their median.
            let took = Duration::from_millis(10 + i * i / 20);
            permit
                .first_byte
                .store(stored_time(took), Ordering::Release);
        }
        let after = flow.acquire(&cancel).unwrap().hedge_after.unwrap();
        assert!(
            (Duration::from_millis(400)..=Duration::from_millis(440)).contains(&after),
            "{after:?}"
        );
        // 101 requests so far: five hedges allowed, not six.
        let taken = (0..10).filter(|_| flow.gate.lock().take_hedge()).count();
        assert_eq!(taken, 5);
        assert_eq!(flows.status()[0].hedged, 5);
        for _ in 0..40 {
            drop(flow.acquire(&cancel));
        }
        flow.throttled();
        assert!(
            !flow.gate.lock().take_hedge(),
            "no hedges to a host that pushed back"
        );
    }

    #[test]
    fn a_request_is_behind_only_once_most_of_its_peers_answered_in_half_its_age() {
        let ms = |m: u64| Duration::from_millis(m);
        let t0 = Instant::now();
        let mut sent = Sent::default();
        // Four requests sent a millisecond apart; the first is the one judged.
        let seqs: Vec<u64> = (0..4).map(|i| sent.push(t0 + ms(i))).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        let at = |m: u64| t0 + ms(m);
        // Its peers unanswered too: the host is slow as a whole; look again in a quarter of
        // its age (20 ms at least).
        assert_eq!(sent.not_behind(0, at(100)), Some(ms(25)));
        assert_eq!(sent.not_behind(0, at(40)), Some(MIN_HEDGE_DELAY));
        // Two of three answered, after 30 ms and 50 ms: their median (the unanswered one
        // counted as the latest) is 50 ms, so it is behind from 100 ms on.
        sent.answered(1, at(1 + 30));
        sent.answered(2, at(2 + 50));
        assert_eq!(sent.not_behind(0, at(80)), Some(ms(20)));
        assert_eq!(sent.not_behind(0, at(100)), None);
        // The first word counts.
        sent.answered(2, at(2 + 500));
        assert_eq!(sent.not_behind(0, at(100)), None);
        // The last one sent has only peers sent before it within its age: at 60 ms the
        // others (sent 1 to 3 ms before it) are, with the same median.
        assert_eq!(sent.not_behind(3, at(63)), Some(ms(40)));
        assert_eq!(sent.not_behind(3, at(103)), None);
        let alone = sent.push(t0 + ms(200));
        assert_eq!(
            sent.not_behind(alone, at(250)),
            None,
            "no peers: its age alone"
        );
        // A request no longer kept (or never numbered) has no peers either.
        assert_eq!(sent.not_behind(99, at(100)), None);
    }

    #[test]
    fn a_steady_host_is_hedged_at_twice_its_median_not_at_its_noise() {
        let ms = |m: u64| Duration::from_millis(m);
        // 25 to 27 ms: the 95th percentile (27 ms) is noise, a hedge sent then wins nothing.
        let steady: Vec<Duration> = (0..100).map(|i| ms(if i < 90 { 25 } else { 27 })).collect();
        assert_eq!(hedge_delay(&steady), ms(50));
        // A long tail: its 95th percentile is later than twice the median.
        let tailed: Vec<Duration> = (0..100).map(|i| ms(10 + i * i / 20)).collect();
        assert_eq!(hedge_delay(&tailed), ms(10 + 95 * 95 / 20));
    }
}
