//! Hedged requests (Dean and Barroso, "The Tail at Scale"): a request to a host whose
//! response is later than the host's 95th percentile of recent first-response times (and
//! twice their median) gets a second, identical request; the first of the two to answer
//! wins, and the other is given up at once (its socket shut down) and its connection dropped.
//!
//! The transfer's own thread sends the first request and waits for it. The second is sent by
//! one of a few `haul-hedge-<i>` threads, owned by the downloader's [`Flows`](super::Flows),
//! started on the first hedge and joined when the downloader stops: one of them sleeps until
//! the earliest armed deadline (the others wait to be woken, so a deadline wakes one thread),
//! and at it sends the hedge if the first request has not answered, handing the watch to a
//! waiting thread meanwhile. Which half won is decided once, by a compare-and-swap on the
//! race's state; the winner's response goes to the transfer's thread, which reads the body
//! as always.
//! A host's hedges are at most 1 in 20 of its requests.
//!
//! At its deadline a request is hedged only if it is behind the requests sent with it (see
//! [`Verdict`]): when the host is slow as a whole (a queue at the server or on the link, as
//! when a job's concurrency climbs past what the path carries), a second request would wait
//! in the same queue, and the allowance is kept for the request that is late beside its
//! peers. One that is not is looked at again later.
//!
//! A request's delay is the one its host called for when it was sent; once the host drains
//! (the end of a job: nothing waits for it, and most of its room is free), its requests
//! still waiting are [hurried](Hedger::hurry) to the shorter delay of a host with room, so
//! the job's last stragglers do not wait out a delay measured while the host was busy.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::cancel::CancelToken;
use crate::http::{Body, HttpClient};
use crate::thread::JoinOnDrop;

/// Threads that send hedges: a hedge waits only for its response's headers, so a few carry
/// the hedges of hundreds of transfers (at most one in twenty of them hedged).
const HEDGE_THREADS: usize = 4;

const OPEN: u8 = 0;
const FIRST_WON: u8 = 1;
const HEDGE_WON: u8 = 2;

/// A response as the client returns it.
pub(crate) type Answer = Result<ureq::http::Response<ureq::Body>, ureq::Error>;

/// What a hedge repeats: the request, as it was sent.
pub(crate) struct Request<'a> {
    pub(crate) client: &'a HttpClient,
    pub(crate) url: &'a str,
    pub(crate) headers: &'a [(String, String)],
    pub(crate) timeout: Option<Duration>,
    pub(crate) body: Body,
}

/// One request and its hedge.
struct Race {
    state: AtomicU8,
    /// When the first request was sent, and its number among its host's requests.
    sent: Instant,
    seq: u64,
    /// Whether a hedge thread has taken the race (a hurried race is armed twice).
    taken: AtomicBool,
    /// Whether the race was hurried (it is, once at most).
    hurried: AtomicBool,
    client: HttpClient,
    url: String,
    headers: Vec<(String, String)>,
    timeout: Option<Duration>,
    body: Body,
    /// Cancelled when the hedge wins: the first request's wait ends at once.
    first: CancelToken,
    /// Cancelled when the first request wins or fails, or the job is cancelled.
    hedge: CancelToken,
    /// The job's token.
    job: CancelToken,
    /// The hedge's response, when it wins.
    won: Sender<ureq::http::Response<ureq::Body>>,
    /// Whether a hedge may be sent, and what it did.
    budget: Arc<dyn Budget>,
}

/// What a host says of a request still unanswered at its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hedge it now: one hedge is taken from the allowance.
    Hedge,
    /// It is not behind the requests sent with it: look again after this long.
    Later(Duration),
    /// Not at all (no allowance left, or the host pushed back).
    No,
}

/// A host's allowance of hedges, and its judge of which requests are late.
pub(crate) trait Budget: Send + Sync {
    /// Whether the request numbered `seq` (its host's count), still unanswered, is hedged
    /// now; [`Verdict::Hedge`] takes one hedge from the allowance.
    fn verdict(&self, seq: u64) -> Verdict;
    /// A hedge won its race.
    fn won(&self);
    /// A hedge was answered 429 or 503.
    fn throttled(&self);
}

struct Armed {
    due: Instant,
    race: Arc<Race>,
}

impl PartialEq for Armed {
    fn eq(&self, other: &Armed) -> bool {
        self.due == other.due
    }
}
impl Eq for Armed {}
impl PartialOrd for Armed {
    fn partial_cmp(&self, other: &Armed) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Armed {
    fn cmp(&self, other: &Armed) -> std::cmp::Ordering {
        self.due.cmp(&other.due)
    }
}

#[derive(Default)]
struct Deadlines {
    heap: BinaryHeap<Reverse<Armed>>,
    stopping: bool,
    /// One hedge thread sleeps until the earliest deadline (it *watches*); the others wait
    /// to be woken, so a deadline wakes one thread, not all of them.
    watched: bool,
}

impl Deadlines {
    /// Arms a deadline, and wakes whoever must see it: the watcher when it is now the
    /// earliest (the watcher sleeps until a later one), or a waiting thread when none
    /// watches. A deadline later than the earliest wakes nobody.
    fn arm(&mut self, armed: Armed, wake: &Condvar) {
        let earliest = self
            .heap
            .peek()
            .is_none_or(|Reverse(top)| armed.due < top.due);
        self.heap.push(Reverse(armed));
        if !self.watched {
            wake.notify_one();
        } else if earliest {
            wake.notify_all();
        }
    }
}

#[derive(Default)]
struct Shared {
    deadlines: Mutex<Deadlines>,
    wake: Condvar,
}

/// The hedge threads and their deadlines.
#[derive(Default)]
pub(crate) struct Hedger {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinOnDrop>>,
}

impl std::fmt::Debug for Hedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hedger").finish_non_exhaustive()
    }
}

impl Hedger {
    /// Sends `request` (its host's `seq`th) on this thread, hedged after `after` if `budget`
    /// says so then: returns the first response to arrive of it and its hedge. `cancel` is
    /// the job's token.
    pub(crate) fn send(
        &self,
        request: &Request<'_>,
        seq: u64,
        after: Duration,
        cancel: &CancelToken,
        budget: Arc<dyn Budget>,
    ) -> Answer {
        self.start_threads();
        let (won, hedge_answer) = crossbeam_channel::bounded(1);
        let sent = Instant::now();
        let race = Arc::new(Race {
            state: AtomicU8::new(OPEN),
            sent,
            seq,
            taken: AtomicBool::new(false),
            hurried: AtomicBool::new(false),
            client: request.client.clone(),
            url: request.url.to_owned(),
            headers: request.headers.to_vec(),
            timeout: request.timeout,
            body: request.body,
            first: CancelToken::new(),
            hedge: CancelToken::new(),
            job: cancel.clone(),
            won,
            budget,
        });
        self.shared.deadlines.lock().arm(
            Armed {
                due: sent + after,
                race: Arc::clone(&race),
            },
            &self.shared.wake,
        );
        let first_token = race.first.clone();
        let answer = {
            // The job's cancel reaches the first request through its own token.
            let _linked = cancel.on_cancel(move || first_token.cancel());
            crate::http::transport::with_cancel_at_once(&race.first, || {
                request
                    .client
                    .get(request.url, request.headers, request.timeout, request.body)
            })
        };
        finish_first(&race, answer, &hedge_answer)
    }

    /// Brings forward the hedges of `budget`'s requests still waiting for their response to
    /// `after` from when each was sent (a deadline already sooner stays), once per request:
    /// a second deadline, the first one left to find the race taken or decided.
    pub(crate) fn hurry(&self, budget: &Arc<dyn Budget>, after: Duration) {
        let mut deadlines = self.shared.deadlines.lock();
        let mut sooner = Vec::new();
        for Reverse(a) in deadlines.heap.iter() {
            let race = &a.race;
            if Arc::ptr_eq(&race.budget, budget)
                && race.state.load(Ordering::Acquire) == OPEN
                && !race.taken.load(Ordering::Acquire)
                && race.sent + after < a.due
                && !race.hurried.swap(true, Ordering::AcqRel)
            {
                sooner.push(Armed {
                    due: race.sent + after,
                    race: Arc::clone(race),
                });
            }
        }
        if sooner.is_empty() {
            return;
        }
        deadlines.heap.extend(sooner.into_iter().map(Reverse));
        drop(deadlines);
        self.shared.wake.notify_all();
    }

    fn start_threads(&self) {
        let mut threads = self.threads.lock();
        if !threads.is_empty() || self.shared.deadlines.lock().stopping {
            return;
        }
        for i in 0..HEDGE_THREADS {
            let shared = Arc::clone(&self.shared);
            match JoinOnDrop::spawn(format!("haul-hedge-{i}"), move || hedge_loop(&shared)) {
                Ok(handle) => threads.push(handle),
                // Fewer hedge threads, or none: the deadlines wait for the ones there are.
                Err(e) => log::warn!("could not start haul-hedge-{i}: {e}"),
            }
        }
    }

    /// Stops the hedge threads (hedges in flight are given up) and joins them.
    pub(crate) fn stop(&self) {
        let armed = {
            let mut deadlines = self.shared.deadlines.lock();
            deadlines.stopping = true;
            std::mem::take(&mut deadlines.heap)
        };
        for Reverse(a) in armed {
            a.race.hedge.cancel();
        }
        self.shared.wake.notify_all();
        for handle in std::mem::take(&mut *self.threads.lock()) {
            let _ = handle.join();
        }
    }
}

impl Drop for Hedger {
    /// Its threads end and are joined even when nobody called [`stop`](Hedger::stop) (a
    /// joined thread that was never told to stop would wait for ever).
    fn drop(&mut self) {
        self.stop();
    }
}

/// The first request answered (or failed): decides the race.
fn finish_first(
    race: &Race,
    answer: Answer,
    hedge_answer: &Receiver<ureq::http::Response<ureq::Body>>,
) -> Answer {
    let decided = race
        .state
        .compare_exchange(OPEN, FIRST_WON, Ordering::AcqRel, Ordering::Acquire);
    match decided {
        // The first request's answer (a response, or its own failure) stands; the hedge,
        // armed or in flight, is given up.
        Ok(_) => {
            race.hedge.cancel();
            answer
        }
        // The hedge won while the first request waited: its response is on the way (sent
        // right after the swap).
        Err(_) => {
            drop(answer);
            hedge_answer
                .recv()
                .map_err(|_| ureq::Error::Io(std::io::Error::other("hedge lost its response")))
        }
    }
}

fn hedge_loop(shared: &Shared) {
    loop {
        let race = {
            let mut deadlines = shared.deadlines.lock();
            loop {
                if deadlines.stopping {
                    return;
                }
                let now = Instant::now();
                match deadlines.heap.peek() {
                    Some(Reverse(top)) if top.due <= now => {
                        let race = deadlines.heap.pop().expect("peeked").0.race;
                        // Another thread watches the next deadline while this one judges
                        // (and perhaps sends) the hedge.
                        if !deadlines.watched && !deadlines.heap.is_empty() {
                            shared.wake.notify_one();
                        }
                        break race;
                    }
                    Some(Reverse(top)) if !deadlines.watched => {
                        let due = top.due;
                        deadlines.watched = true;
                        shared.wake.wait_until(&mut deadlines, due);
                        deadlines.watched = false;
                    }
                    // Nothing armed, or another thread watches.
                    _ => shared.wake.wait(&mut deadlines),
                }
            }
        };
        // Taken while judged, so that a second deadline of the same race (a hurried one)
        // is dropped meanwhile; put back untaken when it is to be looked at again.
        if race.taken.swap(true, Ordering::AcqRel)
            || race.state.load(Ordering::Acquire) != OPEN
            || race.hedge.is_cancelled()
            || race.job.is_cancelled()
        {
            continue;
        }
        match race.budget.verdict(race.seq) {
            Verdict::Hedge => run_hedge(&race),
            Verdict::Later(after) => {
                race.taken.store(false, Ordering::Release);
                let mut deadlines = shared.deadlines.lock();
                if !deadlines.stopping {
                    let due = Instant::now() + after;
                    deadlines.arm(Armed { due, race }, &shared.wake);
                }
            }
            Verdict::No => {}
        }
    }
}

fn run_hedge(race: &Race) {
    log::trace!("hedging {}", race.url);
    let hedge_token = race.hedge.clone();
    let answer = {
        let _linked = race.job.on_cancel(move || hedge_token.cancel());
        crate::http::transport::with_cancel_at_once(&race.hedge, || {
            race.client
                .get(&race.url, &race.headers, race.timeout, race.body)
        })
    };
    match answer {
        // Only a success wins: a hedge that met a 503 says nothing about the first request.
        Ok(response)
            if matches!(response.status().as_u16(), 200 | 206)
                && race
                    .state
                    .compare_exchange(OPEN, HEDGE_WON, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok() =>
        {
            // The first request's thread takes it once its wait is ended.
            let _ = race.won.send(response);
            race.first.cancel();
            race.budget.won();
            log::trace!("the hedge of {} answered first", race.url);
        }
        Ok(response) if matches!(response.status().as_u16(), 429 | 503) => {
            race.budget.throttled();
        }
        // Lost, failed or given up: the first request goes on alone.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpConfig;

    /// Hedges every request at its deadline.
    struct Always;

    impl Budget for Always {
        fn verdict(&self, _seq: u64) -> Verdict {
            Verdict::Hedge
        }
        fn won(&self) {}
        fn throttled(&self) {}
    }

    /// One thread sleeps until the earliest deadline; a request armed with a sooner one
    /// wakes it, and is hedged at its own time, not at the one watched before.
    #[test]
    fn a_deadline_sooner_than_the_watched_one_is_hedged_at_its_time() {
        haul_testkit::guard(|| {
            let origin = haul_origin::Origin::start().unwrap();
            let hedger = Arc::new(Hedger::default());
            let client = HttpClient::new(HttpConfig::default());
            let slow = origin.url("/slow.bin?size=10&delay_ms=10000");
            let job = CancelToken::new();
            let watched = {
                let (hedger, client, job) = (Arc::clone(&hedger), client.clone(), job.clone());
                std::thread::spawn(move || {
                    let request = Request {
                        client: &client,
                        url: &slow,
                        headers: &[],
                        timeout: None,
                        body: Body::Any,
                    };
                    let budget: Arc<dyn Budget> = Arc::new(Always);
                    hedger
                        .send(&request, 0, Duration::from_secs(20), &job, budget)
                        .is_err()
                })
            };
            assert!(haul_testkit::wait_until(|| {
                let deadlines = hedger.shared.deadlines.lock();
                deadlines.watched && deadlines.heap.len() == 1
            }));
            // Its first request straggles (10 s); its hedge answers at once.
            let straggler = origin.url("/straggler.bin?size=10&delay_ms=10000&faults_first=1");
            let request = Request {
                client: &client,
                url: &straggler,
                headers: &[],
                timeout: None,
                body: Body::Any,
            };
            let sent = Instant::now();
            let answer = hedger.send(
                &request,
                1,
                Duration::from_millis(50),
                &CancelToken::new(),
                Arc::new(Always),
            );
            let took = sent.elapsed();
            assert_eq!(answer.unwrap().status().as_u16(), 200);
            assert!(took < Duration::from_secs(5), "answered after {took:?}");
            job.cancel();
            assert!(watched.join().unwrap(), "the watched request was cancelled");
        });
    }
}
