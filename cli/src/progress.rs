//! The progress display on a terminal: one line for the whole run (objects, bytes, rate,
//! ETA) and one per busy worker (object name, bytes so far). Drawn on stderr, only when it
//! is a terminal and neither `-q` nor `--json` was given.

use std::time::Duration;

use haul::JobStatus;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};

/// At most this many per-object lines.
const MAX_LINES: usize = 8;

pub(crate) struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    lines: Vec<ProgressBar>,
}

impl Bars {
    pub(crate) fn new() -> Bars {
        let multi = MultiProgress::new();
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} objects  {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        Bars {
            multi,
            overall,
            lines: Vec::new(),
        }
    }

    /// Redraws from the jobs' current statuses.
    pub(crate) fn draw(&mut self, statuses: &[JobStatus], elapsed: Duration) {
        let total: u64 = statuses
            .iter()
            .map(|s| s.total.unwrap_or(s.scheduled))
            .sum();
        let done: u64 = statuses
            .iter()
            .map(|s| s.finished + s.failed + s.skipped + s.cancelled)
            .sum();
        let bytes: u64 = statuses.iter().map(|s| s.bytes).sum();
        let failed: u64 = statuses.iter().map(|s| s.failed).sum();
        let secs = elapsed.as_secs_f64().max(1e-3);
        let eta = if done > 0 && total > done {
            let left = secs / done as f64 * (total - done) as f64;
            format!(
                ", ETA {}",
                indicatif::HumanDuration(Duration::from_secs_f64(left))
            )
        } else {
            String::new()
        };
        self.overall.set_length(total);
        self.overall.set_position(done);
        self.overall.set_message(format!(
            "{} at {}/s{}{eta}",
            HumanBytes(bytes),
            HumanBytes((bytes as f64 / secs) as u64),
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            }
        ));
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
        for line in self.lines {
            line.finish_and_clear();
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}
