//! The control loop on one host's concurrency: how many transfers may be in flight to it.
//!
//! It works in *rounds*, each about as long as a typical transfer (a smoothed mean of
//! transfer times, 20 ms to 5 s). At the end of a round it knows the host's delivery rate
//! over the round (the *work* of the transfers that finished: their bytes, plus a request's
//! worth each, so that requests with no body, such as revalidations, count too) and the
//! median time to first byte of the transfers that finished in it.
//!
//! - **Startup** (as TCP's slow start): each first response that arrives while the limit
//!   holds transfers back adds one to it, so the limit doubles every first-response time
//!   (a pool starts threads for the room at once); and a round in which the limit held
//!   transfers back ends with it at least tripled (for transfers whose responses are not
//!   seen: uploads). Pacing by responses rather than by whole transfers matters across a
//!   WAN, where a transfer on a new connection takes several round trips more than its
//!   first response (the handshake, slow start): on the convergence bench, tripling per
//!   round took 0.59 s to reach 90% of the link, growing per response 0.32 s, against
//!   0.18 s for a pool pinned at the right size. (Growing per *completion* lags most: the
//!   transfers it starts are the slow new ones.) Startup ends when
//!   the rate has not grown by a quarter for three rounds, when the time to first byte has
//!   doubled over the path's base (a queue is building), or at the first throttle; the limit
//!   goes back to where the best rate was measured (where it started, if no round measured
//!   one).
//! - **Steady** (a hill climb, in both directions): while the limit holds transfers back it
//!   probes a step (an eighth, at least one) up, and keeps going while each step raises the
//!   rate by 2%; a step that did not is undone, the limit rests four rounds, then probes
//!   down, and keeps going while each step costs less than 2% of the rate; a step that cost
//!   more is undone, and after a rest it probes up again. So it climbs to where more
//!   transfers stop helping, and comes back down from beyond it. A time to first byte over
//!   twice the base (a queue) cuts the limit by a tenth.
//! - **Throttles** — a 429 or 503 (S3's `SlowDown`), or a request that got no response at
//!   all — halve the limit, at most once a round, and rest it four rounds.
//!
//! The limit stays between the configured floor and cap. Everything here is arithmetic on
//! the samples it is given, with the time passed in: no clock, no thread, no lock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const MIN_ROUND: Duration = Duration::from_millis(20);
const MAX_ROUND: Duration = Duration::from_secs(5);
/// What a round in startup whose limit held transfers back multiplies the limit by, at
/// least (its responses may have grown it more).
const STARTUP_GROWTH: f64 = 3.0;
/// Startup ends after this many rounds without a quarter more rate.
const FLAT_ROUNDS: u32 = 3;
/// Round medians of first-byte time kept for the base (the lowest of them).
const BASE_ROUNDS: usize = 32;
/// How long the limit rests after a cut or an undone probe, in rounds.
const REST_ROUNDS: u32 = 4;
/// First-byte times kept per round for its median.
const ROUND_SAMPLES: usize = 512;

/// One finished transfer, as the loop sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finished {
    pub(crate) now: Instant,
    /// How long the transfer took, first request to last byte.
    pub(crate) took: Duration,
    /// How long its first response took to arrive, when one did.
    pub(crate) first_byte: Option<Duration>,
    /// The host's work so far, all transfers together: every byte delivered, and
    /// [`REQUEST_WORK`](super::REQUEST_WORK) for each transfer.
    pub(crate) work: u64,
    /// Whether the limit was what held transfers back: all of it in use, or someone waiting.
    pub(crate) limited: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Startup,
    Steady,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// The last round probed up from `from`.
    Up { from: f64 },
    /// The last round probed down from `from`.
    Down { from: f64 },
    /// Rounds to wait, then probe up (`true`) or down.
    Rest { rounds: u32, up: bool },
}

#[derive(Debug)]
struct Round {
    started: Instant,
    work_at_start: u64,
    first_bytes: Vec<Duration>,
    limited: bool,
}

impl Round {
    fn new(now: Instant, work: u64) -> Round {
        Round {
            started: now,
            work_at_start: work,
            first_bytes: Vec::new(),
            limited: false,
        }
    }

    fn median_first_byte(&mut self) -> Option<Duration> {
        if self.first_bytes.is_empty() {
            return None;
        }
        let middle = self.first_bytes.len() / 2;
        Some(*self.first_bytes.select_nth_unstable(middle).1)
    }
}

/// The loop's state for one host.
#[derive(Debug)]
pub(crate) struct Controller {
    floor: f64,
    cap: f64,
    limit: f64,
    phase: Phase,
    step: Step,
    round: Round,
    /// A smoothed mean of transfer times: the round's length.
    smoothed: Option<Duration>,
    best_rate: f64,
    /// The limit at the end of the round with the best rate (startup); the start's until a
    /// round the limit held back measures one (a queue seen before then must not drop the
    /// limit to the floor).
    best_limit: f64,
    flat_rounds: u32,
    last_rate: f64,
    /// The latest round medians of first-byte time; their lowest is the path's base.
    medians: VecDeque<Duration>,
    last_cut: Option<Instant>,
    throttles: u64,
    /// The limit when the round began.
    round_limit: f64,
}

impl Controller {
    pub(crate) fn new(initial: usize, floor: usize, cap: usize, now: Instant) -> Controller {
        let floor = floor.max(1) as f64;
        let cap = (cap as f64).max(floor);
        Controller {
            floor,
            cap,
            limit: (initial as f64).clamp(floor, cap),
            phase: Phase::Startup,
            step: Step::Rest {
                rounds: 0,
                up: true,
            },
            round: Round::new(now, 0),
            smoothed: None,
            best_rate: 0.0,
            best_limit: (initial as f64).clamp(floor, cap),
            flat_rounds: 0,
            last_rate: 0.0,
            medians: VecDeque::new(),
            last_cut: None,
            throttles: 0,
            round_limit: (initial as f64).clamp(floor, cap),
        }
    }

    /// The path's base time to first byte: the lowest of the latest round medians (`None`
    /// until a round has one).
    pub(crate) fn base_first_byte(&self) -> Option<Duration> {
        self.medians.iter().min().copied()
    }

    /// The number of transfers that may be in flight now.
    pub(crate) fn limit(&self) -> usize {
        self.limit.round() as usize
    }

    /// Throttles seen (429, 503, no response), over the host's life.
    pub(crate) fn throttles(&self) -> u64 {
        self.throttles
    }

    fn round_length(&self) -> Duration {
        self.smoothed
            .unwrap_or(MIN_ROUND)
            .clamp(MIN_ROUND, MAX_ROUND)
    }

    /// A transfer finished well.
    pub(crate) fn finished(&mut self, f: Finished) {
        self.smoothed = Some(match self.smoothed {
            None => f.took,
            Some(s) => (s * 7 + f.took) / 8,
        });
        if let Some(first) = f.first_byte
            && self.round.first_bytes.len() < ROUND_SAMPLES
        {
            self.round.first_bytes.push(first);
        }
        self.round.limited |= f.limited;
        let elapsed = f.now.saturating_duration_since(self.round.started);
        if elapsed >= self.round_length() {
            self.end_round(f.now, f.work, elapsed);
        }
    }

    /// A transfer's first response arrived. In startup, while the limit holds transfers
    /// back, each one adds one to it: the limit doubles every first-response time, as TCP's
    /// slow start doubles its window every round trip (a segment per ACK), paced by the
    /// host's answers rather than by whole transfers, which across a WAN take several round
    /// trips more (a new connection's handshake and slow start). Returns whether it grew.
    pub(crate) fn responded(&mut self, limited: bool) -> bool {
        if self.phase != Phase::Startup || !limited || self.limit >= self.cap {
            return false;
        }
        let before = self.limit();
        self.limit = (self.limit + 1.0).min(self.cap);
        self.limit() > before
    }

    /// The host pushed back: a 429 or 503, or a request that got no response.
    pub(crate) fn throttled(&mut self, now: Instant) {
        self.throttles += 1;
        let once_a_round = self
            .last_cut
            .is_none_or(|at| now.saturating_duration_since(at) >= self.round_length());
        if once_a_round {
            self.last_cut = Some(now);
            self.limit = (self.limit * 0.5).max(self.floor);
            self.phase = Phase::Steady;
            self.step = Step::Rest {
                rounds: REST_ROUNDS,
                up: false,
            };
        }
    }

    fn end_round(&mut self, now: Instant, work: u64, elapsed: Duration) {
        let rate = work.saturating_sub(self.round.work_at_start) as f64 / elapsed.as_secs_f64();
        let median = self.round.median_first_byte();
        let limited = self.round.limited;
        self.round = Round::new(now, work);
        // The base latency: the lowest round median among the recent ones, before this one
        // (a queue that builds this round must not become the base).
        let base = self.base_first_byte();
        if let Some(m) = median {
            if self.medians.len() == BASE_ROUNDS {
                self.medians.pop_front();
            }
            self.medians.push_back(m);
        }
        let queueing =
            matches!((median, base), (Some(m), Some(b)) if self.medians.len() > 2 && m > b * 2);
        match self.phase {
            Phase::Startup => {
                if limited {
                    if rate >= self.best_rate * 1.25 {
                        self.best_rate = rate;
                        self.best_limit = self.limit;
                        self.flat_rounds = 0;
                    } else {
                        self.flat_rounds += 1;
                    }
                }
                if queueing || self.flat_rounds >= FLAT_ROUNDS {
                    self.phase = Phase::Steady;
                    self.limit = self.best_limit.clamp(self.floor, self.cap);
                    self.step = Step::Rest {
                        rounds: REST_ROUNDS,
                        up: false,
                    };
                } else if limited {
                    // At least triple a round, for transfers whose first response is not
                    // seen (uploads) or comes late; responses may have grown it further.
                    let tripled = self.round_limit * STARTUP_GROWTH;
                    self.limit = self.limit.max(tripled).min(self.cap);
                }
            }
            Phase::Steady => {
                if queueing {
                    self.limit = (self.limit * 0.9).max(self.floor);
                    self.step = Step::Rest {
                        rounds: REST_ROUNDS,
                        up: false,
                    };
                } else {
                    self.step = self.climb(rate, limited);
                }
            }
        }
        log::debug!(
            "round of {elapsed:?}: {:.1} MB/s, first byte {median:?} (base {base:?}){}{}, {:?} {:?}: limit {:.1}",
            rate / 1e6,
            if limited { ", limited" } else { "" },
            if queueing { ", queueing" } else { "" },
            self.phase,
            self.step,
            self.limit
        );
        self.last_rate = rate;
        self.round_limit = self.limit;
    }

    /// One round of the steady phase's hill climb; returns the next step.
    fn climb(&mut self, rate: f64, limited: bool) -> Step {
        let step = (self.limit / 8.0).max(1.0);
        let rest = |up| Step::Rest {
            rounds: REST_ROUNDS,
            up,
        };
        match self.step {
            Step::Up { from } if rate < self.last_rate * 1.02 => {
                self.limit = from;
                rest(false)
            }
            Step::Down { from } if rate < self.last_rate * 0.98 => {
                self.limit = from;
                rest(true)
            }
            Step::Rest { rounds, up } if rounds > 1 => Step::Rest {
                rounds: rounds - 1,
                up,
            },
            // Probing only means something while the limit is what holds transfers back.
            _ if !limited => self.step,
            Step::Up { .. } | Step::Rest { up: true, .. } if self.limit < self.cap => {
                let from = self.limit;
                self.limit = (self.limit + step).min(self.cap);
                Step::Up { from }
            }
            Step::Down { .. } | Step::Rest { up: false, .. } if self.limit > self.floor => {
                let from = self.limit;
                self.limit = (self.limit - step).max(self.floor);
                Step::Down { from }
            }
            // At the cap or the floor: rest, then try the other way.
            Step::Up { .. } | Step::Rest { up: true, .. } => rest(false),
            Step::Down { .. } | Step::Rest { up: false, .. } => rest(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A host simulated in rounds. It delivers 64 KiB per transfer; up to `best` transfers
    /// at once each take `base`, beyond that the host's rate is capped and each takes
    /// longer in proportion (Little's law), first byte included.
    struct Host {
        now: Instant,
        bytes: u64,
        base: Duration,
        best: usize,
    }

    impl Host {
        fn new(best: usize) -> Host {
            Host {
                now: Instant::now(),
                bytes: 0,
                base: 50 * MS,
                best,
            }
        }

        /// One round at the current limit, every transfer held back by it.
        fn round(&mut self, c: &mut Controller) {
            let n = c.limit();
            let took = self.base * n.max(self.best) as u32 / self.best as u32;
            for _ in 0..n {
                self.now += took / n as u32;
                self.bytes += 65536;
                c.finished(Finished {
                    now: self.now,
                    took,
                    first_byte: Some(took - self.base / 2),
                    work: self.bytes,
                    limited: true,
                });
            }
        }
    }

    #[test]
    fn startup_triples_each_round_while_the_rate_grows() {
        let mut host = Host::new(1000);
        let mut c = Controller::new(8, 1, 256, host.now);
        let mut limits = vec![c.limit()];
        for _ in 0..5 {
            host.round(&mut c);
            limits.push(c.limit());
        }
        // A round of the loop's is about one transfer time, not aligned with the simulated
        // batches: some batches hold no round's end.
        assert!(
            limits
                .windows(2)
                .all(|w| w[1] == w[0] || w[1] == (w[0] * 3).min(256)),
            "{limits:?}"
        );
        assert_eq!(limits[5], 256, "{limits:?}");
    }

    #[test]
    fn in_startup_each_response_that_finds_the_limit_holding_transfers_back_adds_one() {
        let mut c = Controller::new(8, 1, 256, Instant::now());
        assert!(!c.responded(false), "nothing held back: no growth");
        for _ in 0..8 {
            assert!(c.responded(true));
        }
        assert_eq!(c.limit(), 16, "doubled in one response time");
        c.throttled(Instant::now());
        assert_eq!(c.limit(), 8);
        assert!(
            !c.responded(true),
            "after startup, responses leave it to the rounds"
        );
        assert_eq!(c.limit(), 8);
    }

    #[test]
    fn it_settles_near_where_more_transfers_stop_helping() {
        for best in [12, 40, 100] {
            let mut host = Host::new(best);
            let mut c = Controller::new(8, 1, 256, host.now);
            for _ in 0..100 {
                host.round(&mut c);
            }
            // And stays there: later rounds keep it within a few probes of the knee.
            let mut seen = Vec::new();
            for _ in 0..60 {
                host.round(&mut c);
                seen.push(c.limit());
            }
            let (low, high) = (best * 3 / 4, best * 2);
            assert!(
                seen.iter().all(|l| (low..=high).contains(l)),
                "knee {best}: {seen:?}"
            );
        }
    }

    #[test]
    fn it_comes_back_down_when_the_host_gets_slower() {
        let mut host = Host::new(100);
        let mut c = Controller::new(8, 1, 256, host.now);
        for _ in 0..60 {
            host.round(&mut c);
        }
        assert!(c.limit() >= 75, "{}", c.limit());
        host.best = 10;
        for _ in 0..200 {
            host.round(&mut c);
        }
        assert!(c.limit() <= 20, "stayed at {}", c.limit());
    }

    #[test]
    fn throttles_halve_the_limit_once_a_round_down_to_the_floor() {
        let now = Instant::now();
        let mut c = Controller::new(64, 2, 256, now);
        c.throttled(now);
        assert_eq!(c.limit(), 32);
        // The same round's other 503s do not cut again.
        c.throttled(now + MS);
        c.throttled(now + 2 * MS);
        assert_eq!(c.limit(), 32);
        for i in 1..10 {
            c.throttled(now + MAX_ROUND * i);
        }
        assert_eq!(c.limit(), 2, "the floor holds");
        assert_eq!(c.throttles(), 12);
    }

    #[test]
    fn a_limit_that_holds_nothing_back_does_not_grow() {
        let mut c = Controller::new(8, 1, 256, Instant::now());
        let mut now = Instant::now();
        for i in 0..1000u64 {
            now += 10 * MS;
            c.finished(Finished {
                now,
                took: 30 * MS,
                first_byte: Some(10 * MS),
                work: i * 65536,
                limited: false,
            });
        }
        assert_eq!(c.limit(), 8);
    }

    #[test]
    fn a_startup_that_ends_on_a_queue_before_it_measured_a_rate_keeps_its_start() {
        let mut c = Controller::new(16, 1, 256, Instant::now());
        let mut now = Instant::now();
        // Rounds in which the limit held nothing back (no rate measured at any limit),
        // then first responses four times slower than the base: a queue, startup ends.
        for i in 0..40u64 {
            if c.phase == Phase::Steady {
                break;
            }
            now += 10 * MS;
            let first_byte = if i < 30 { 10 * MS } else { 40 * MS };
            c.finished(Finished {
                now,
                took: 30 * MS,
                first_byte: Some(first_byte),
                work: i * 65536,
                limited: false,
            });
        }
        assert_eq!(c.phase, Phase::Steady, "the queue ended startup");
        assert_eq!(c.limit(), 16, "no better limit was measured than the start");
    }

    #[test]
    fn floor_and_cap_bound_the_start() {
        let now = Instant::now();
        assert_eq!(Controller::new(1000, 1, 64, now).limit(), 64);
        assert_eq!(Controller::new(0, 4, 64, now).limit(), 4);
        assert_eq!(Controller::new(8, 0, 0, now).limit(), 1);
    }
}
