//! The progress display on a terminal: one line for the whole run and one per busy worker
//! (object name, bytes so far). Drawn on stderr, only when it is a terminal and neither
//! `-q` nor `--json` was given. Log lines printed meanwhile go above it (see
//! [`crate::logs`]), never into a frame.
//!
//! The run's line shows bytes of the total, the percentage and an ETA when the total is
//! known — every object's size is (sizes the servers announced for those in flight, and the
//! landed objects' bytes) — and objects of the total otherwise; the rate over the last few
//! seconds and the elapsed time always (rclone's `-P` and aria2c's status line).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use haul::JobStatus;
use indicatif::{HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressStyle};

/// At most this many per-object lines.
const MAX_LINES: usize = 8;
/// The rate is measured over this long a window.
const RATE_WINDOW: Duration = Duration::from_secs(5);

pub(crate) struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    lines: Vec<ProgressBar>,
    /// Bytes moved at recent draws, for the rate.
    samples: VecDeque<(Instant, u64)>,
}

/// What the run's line says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Overall {
    /// Objects accounted for (landed, failed, skipped, cancelled) and in all.
    pub(crate) objects: (u64, u64),
    /// Bytes landed or in flight, and the total when every object's size is known.
    pub(crate) bytes: (u64, Option<u64>),
    pub(crate) failed: u64,
}

impl Overall {
    pub(crate) fn of(statuses: &[JobStatus]) -> Overall {
        let sum = |f: fn(&JobStatus) -> u64| statuses.iter().map(f).sum::<u64>();
        let total = sum(|s| s.total.unwrap_or(s.scheduled));
        let done = sum(|s| s.finished + s.failed + s.skipped + s.cancelled);
        let in_flight = statuses.iter().flat_map(|s| &s.in_flight);
        let flying = in_flight.clone().count() as u64;
        let moved = sum(|s| s.bytes_landed) + in_flight.clone().map(|t| t.bytes_done).sum::<u64>();
        // Known when nothing is left to start and every transfer in flight has a size.
        let all_known = statuses
            .iter()
            .all(|s| s.total.is_some() && s.all_dispatched)
            && done + flying == total;
        let of = all_known
            .then(|| {
                in_flight
                    .map(|t| t.bytes_total)
                    .sum::<Option<u64>>()
                    .map(|flying| sum(|s| s.bytes_landed) + flying)
            })
            .flatten();
        Overall {
            objects: (done, total),
            bytes: (moved, of),
            failed: sum(|s| s.failed),
        }
    }

    /// The line's text, at `rate` bytes a second, `elapsed` into the run.
    pub(crate) fn text(&self, rate: f64, elapsed: Duration) -> String {
        let (moved, of) = self.bytes;
        let (done, total) = self.objects;
        let eta = |left: f64| {
            if left.is_finite() && left > 0.0 {
                format!("  ETA {}", HumanDuration(Duration::from_secs_f64(left)))
            } else {
                String::new()
            }
        };
        let failed = match self.failed {
            0 => String::new(),
            n => format!("  {n} failed"),
        };
        let elapsed = HumanDuration(elapsed);
        let rate_text = HumanBytes(rate as u64);
        match of {
            Some(of) => {
                let percent = if of == 0 {
                    100.0
                } else {
                    moved as f64 * 100.0 / of as f64
                };
                let left = (of.saturating_sub(moved)) as f64 / rate;
                format!(
                    "{} / {}  {percent:.0}%  {rate_text}/s{}  elapsed {elapsed}  {done}/{total} objects{failed}",
                    HumanBytes(moved),
                    HumanBytes(of),
                    eta(left),
                )
            }
            None => {
                let left = if done > 0 && rate > 0.0 && total > done {
                    // Objects of the size landed so far, at the rate now.
                    moved as f64 / done as f64 * (total - done) as f64 / rate
                } else {
                    f64::NAN
                };
                format!(
                    "{done}/{total} objects  {}  {rate_text}/s{}  elapsed {elapsed}{failed}",
                    HumanBytes(moved),
                    eta(left),
                )
            }
        }
    }
}

impl Bars {
    pub(crate) fn new() -> Bars {
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new(1000));
        overall.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        crate::logs::above(Some(multi.clone()));
        Bars {
            multi,
            overall,
            lines: Vec::new(),
            samples: VecDeque::new(),
        }
    }

    /// The rate over the last [`RATE_WINDOW`], given `moved` bytes now.
    fn rate(&mut self, moved: u64, elapsed: Duration) -> f64 {
        let now = Instant::now();
        self.samples.push_back((now, moved));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some(&(at, then)) if now.duration_since(at) >= Duration::from_millis(500) => {
                moved.saturating_sub(then) as f64 / now.duration_since(at).as_secs_f64()
            }
            // Too soon for a window: the rate since the start.
            _ => moved as f64 / elapsed.as_secs_f64().max(1e-3),
        }
    }

    /// Redraws from the jobs' current statuses.
    pub(crate) fn draw(&mut self, statuses: &[JobStatus], elapsed: Duration) {
        let overall = Overall::of(statuses);
        let rate = self.rate(overall.bytes.0, elapsed);
        // The bar fills by bytes when the total is known, by objects otherwise.
        let fraction = match overall.bytes {
            (moved, Some(of)) if of > 0 => moved as f64 / of as f64,
            _ => match overall.objects {
                (done, total) if total > 0 => done as f64 / total as f64,
                _ => 0.0,
            },
        };
        self.overall
            .set_position((fraction.clamp(0.0, 1.0) * 1000.0) as u64);
        self.overall.set_message(overall.text(rate, elapsed));
        let busy: Vec<_> = statuses
            .iter()
            .flat_map(|s| &s.in_flight)
            .take(MAX_LINES)
            .collect();
        while self.lines.len() < busy.len() {
            let line = self.multi.add(ProgressBar::new_spinner());
            line.set_style(ProgressStyle::with_template("  {msg}").expect("a valid template"));
            self.lines.push(line);
        }
        while self.lines.len() > busy.len() {
            if let Some(line) = self.lines.pop() {
                line.finish_and_clear();
            }
        }
        for (line, task) in self.lines.iter().zip(busy) {
            let of = task
                .bytes_total
                .map(|t| format!(" of {}", HumanBytes(t)))
                .unwrap_or_default();
            // aria2c's CN: a large object coming in parallel parts.
            let connections = match task.connections {
                1 => String::new(),
                n => format!("  ({n} connections)"),
            };
            line.set_message(format!(
                "{}  {}{of}{connections}",
                task.name,
                HumanBytes(task.bytes_done)
            ));
        }
    }

    /// Removes the display, leaving the terminal for the summary.
    pub(crate) fn finish(self) {
        crate::logs::above(None);
        for line in self.lines {
            line.finish_and_clear();
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}
