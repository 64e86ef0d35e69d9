//! Running jobs on a Downloader and reporting them: shared by `haul get` and `haul demo`.

use std::error::Error;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use haul::{Detail, Downloader, JobId, JobStatus};

/// A usage mistake found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// What a run of jobs did.
pub(crate) struct Summary {
    pub(crate) statuses: Vec<JobStatus>,
    pub(crate) elapsed: Duration,
    /// Ctrl-C aborted the jobs.
    pub(crate) interrupted: bool,
}

impl Summary {
    pub(crate) fn landed(&self) -> u64 {
        self.statuses.iter().map(|s| s.finished).sum()
    }

    pub(crate) fn failed(&self) -> u64 {
        self.statuses.iter().map(|s| s.failed).sum()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.statuses.iter().map(|s| s.bytes).sum()
    }

    fn count(&self, f: impl Fn(&JobStatus) -> u64) -> u64 {
        self.statuses.iter().map(f).sum()
    }

    /// Prints the summary (a line, or one JSON object with `--json`; nothing with `-q`) and
    /// each failure on stderr. The exit code: 0 all landed, 1 any failed, 130 interrupted.
    pub(crate) fn report(&self) -> ExitCode {
        let out = output();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        if out.json {
            println!("{}", self.json(secs));
        } else if !out.quiet {
            let deleted = match self.count(|s| s.deleted) {
                0 => String::new(),
                n => format!(", {n} deleted"),
            };
            println!(
                "{} landed, {} failed, {} skipped, {} cancelled{deleted}; {} bytes in {secs:.3} s: {:.1} MB/s, {:.0} objects/s",
                self.landed(),
                self.failed(),
                self.count(|s| s.skipped),
                self.count(|s| s.cancelled),
                self.bytes(),
                self.bytes() as f64 / 1e6 / secs,
                self.landed() as f64 / secs,
            );
        }
        for status in &self.statuses {
            for failure in &status.failures {
                eprintln!("failed: {}: {}", failure.name, chain(&*failure.error));
            }
        }
        if self.interrupted {
            ExitCode::from(130)
        } else if self.failed() > 0 || self.count(|s| s.cancelled) > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }

    /// The library's status fields, per job and summed.
    fn json(&self, secs: f64) -> serde_json::Value {
        status_json(&self.statuses, secs, true, self.interrupted)
    }
}

/// One JSON status: the library's fields per job, and sums. `done` tells the final status
/// from a `--json-progress` line.
fn status_json(
    statuses: &[JobStatus],
    secs: f64,
    done: bool,
    interrupted: bool,
) -> serde_json::Value {
    let sum = |f: fn(&JobStatus) -> u64| statuses.iter().map(f).sum::<u64>();
    let jobs: Vec<serde_json::Value> = statuses
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id.to_string(),
                "description": s.description,
                "total": s.total,
                "scheduled": s.scheduled,
                "finished": s.finished,
                "failed": s.failed,
                "skipped": s.skipped,
                "cancelled": s.cancelled,
                "deleted": s.deleted,
                "bytes": s.bytes,
                "retries": s.retries,
                "aborted": s.aborted,
                "in_flight": s.in_flight.iter().map(|t| serde_json::json!({
                    "name": t.name.as_str(),
                    "bytes_done": t.bytes_done,
                    "bytes_total": t.bytes_total,
                })).collect::<Vec<_>>(),
                "failures": s.failures.iter().map(|f| serde_json::json!({
                    "name": f.name,
                    "error": chain(&*f.error),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "done": done,
        "landed": sum(|s| s.finished),
        "failed": sum(|s| s.failed),
        "skipped": sum(|s| s.skipped),
        "cancelled": sum(|s| s.cancelled),
        "deleted": sum(|s| s.deleted),
        "bytes": sum(|s| s.bytes),
        "retries": sum(|s| s.retries),
        "seconds": secs,
        "interrupted": interrupted,
        "jobs": jobs,
    })
}

/// How the commands talk: set once from the global flags.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Output {
    pub(crate) quiet: bool,
    pub(crate) json: bool,
    /// With `json`: a status line every [`PROGRESS_INTERVAL`] too.
    pub(crate) json_progress: bool,
}

/// How often `--json-progress` prints a line.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

static OUTPUT: std::sync::OnceLock<Output> = std::sync::OnceLock::new();

pub(crate) fn set_output(out: Output) {
    let _ = OUTPUT.set(out);
}

pub(crate) fn output() -> Output {
    OUTPUT.get().copied().unwrap_or_default()
}

/// Set by the Ctrl-C handler; the wait loop aborts every job when it sees it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C (SIGINT) abort the jobs cleanly instead of killing the process: running
/// transfers stop, work files are removed, the summary is printed, the exit code is 130.
pub(crate) fn abort_on_ctrl_c() {
    if let Err(e) = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)) {
        log::warn!("Ctrl-C will kill haul outright: {e}");
    }
}

/// Waits for every job, drawing progress on a terminal, and collects their final statuses.
/// Ctrl-C aborts them all.
pub(crate) fn wait_all(
    downloader: &Downloader,
    jobs: &[JobId],
    started: Instant,
) -> Result<Summary, Box<dyn Error>> {
    let out = output();
    let mut bars = (!out.quiet && !out.json && std::io::stderr().is_terminal())
        .then(crate::progress::Bars::new);
    let mut aborted = false;
    let mut next_line = started + PROGRESS_INTERVAL;
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) && !aborted {
            aborted = true;
            for &job in jobs {
                let _ = downloader.abort(job);
            }
        }
        let mut all_done = true;
        let mut live = Vec::with_capacity(jobs.len());
        for &job in jobs {
            let status = downloader.status(job, Detail::OnlyActive)?;
            all_done &= status.is_finished();
            live.push(status);
        }
        if let Some(bars) = &mut bars {
            bars.draw(&live, started.elapsed());
        }
        if all_done {
            break;
        }
        if out.json_progress && Instant::now() >= next_line {
            next_line += PROGRESS_INTERVAL;
            let line = status_json(&live, started.elapsed().as_secs_f64(), false, aborted);
            println!("{line}");
        }
        // Wakes as soon as the first unfinished job ends; redraws every 100 ms meanwhile.
        let pending = live.iter().find(|s| !s.is_finished()).map(|s| s.id);
        if let Some(job) = pending {
            downloader.wait(job, Duration::from_millis(100))?;
        }
    }
    if let Some(bars) = bars {
        bars.finish();
    }
    let mut statuses = Vec::with_capacity(jobs.len());
    for &job in jobs {
        statuses.push(downloader.status(job, Detail::All)?);
    }
    Ok(Summary {
        statuses,
        elapsed: started.elapsed(),
        interrupted: aborted,
    })
}

/// An error and its sources, joined with ": ".
pub(crate) fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
