//! Running jobs on a Downloader and reporting them: shared by `haul get`, `haul put` and
//! `haul demo`.

use std::error::Error;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use haul::{Detail, Downloader, JobId, JobStatus};

/// The exit code after the reader of stdout went away mid-stream (`s3 cat … | head`):
/// 128 + SIGPIPE, what `cat` or `curl` killed by the signal give a pipeline.
pub(crate) const BROKEN_PIPE_EXIT: u8 = 141;

/// Whether `error`, or an error it wraps, is a write into a pipe nobody reads any more.
pub(crate) fn broken_pipe(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// A job the downloader refused, in the command line's words: an option it names is the
/// flag that set it (`--rate-limit`, not the library's `rate_limit`).
pub(crate) fn refused(error: &haul::SubmitError) -> UsageError {
    if let haul::SubmitError::Option { option, reason } = error {
        let flag = match *option {
            "rate_limit" => "--rate-limit",
            "max_connections" => "--max-connections",
            "shard" => "--shard",
            "header" => "-H/--header",
            "select" => "--include/--exclude/--min-size/--max-size/--min-age/--max-age",
            "existing" => "--revalidate",
            "parts" => "--parts",
            "sync" => "--sync",
            other => other,
        };
        return UsageError(format!("{flag}: {reason}"));
    }
    UsageError(haul::error_chain(error))
}

/// A usage mistake found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// What a run of jobs did.
pub(crate) struct Summary {
    pub(crate) statuses: Vec<JobStatus>,
    pub(crate) elapsed: Duration,
    /// The signal that aborted the jobs (SIGINT, SIGTERM, SIGHUP), if one did.
    pub(crate) stopped_by: Option<i32>,
    /// A dry run: the counts are what would have been done.
    pub(crate) dry_run: bool,
    /// What the jobs do to each object, for a dry run's summary: "download" or "upload".
    pub(crate) verb: &'static str,
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
    /// each failure on stderr. The exit code: 0 all landed, 1 any failed, 128 + the signal's
    /// number when one stopped the run (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
    pub(crate) fn report(&self) -> ExitCode {
        let out = output();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        if out.json {
            say!("{}", self.json(secs));
        } else if !out.quiet && self.dry_run {
            say!(
                "dry run: would {} {} objects ({} bytes as listed), skip {}, delete {}; nothing was written",
                self.verb,
                self.landed(),
                self.bytes(),
                self.count(|s| s.skipped),
                self.count(|s| s.deleted),
            );
        } else if !out.quiet {
            let deleted = match self.count(|s| s.deleted) {
                0 => String::new(),
                n => format!(", {n} deleted"),
            };
            say!(
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
            // Objects an output directory that stopped taking any did not even try: one line
            // per directory, not one per object.
            let mut untried: std::collections::BTreeMap<String, (u64, String)> =
                std::collections::BTreeMap::new();
            for failure in &status.failures {
                if let haul::DownloadError::TargetFull { dir, source } = &*failure.error {
                    let entry = untried
                        .entry(dir.display().to_string())
                        .or_insert((0, source.to_string()));
                    entry.0 += 1;
                    continue;
                }
                tell!(
                    "failed: {}: {}",
                    failure.name,
                    haul::error_chain(&*failure.error)
                );
            }
            for (dir, (count, why)) in untried {
                tell!(
                    "failed: {count} more objects not written: output directory {dir} stopped \
                     taking objects ({why})"
                );
            }
            let unlisted = status.failed.saturating_sub(status.failures.len() as u64);
            if unlisted > 0 {
                let reasons: Vec<String> = status
                    .failure_reasons
                    .iter()
                    .map(|(reason, n)| format!("{n} {reason}"))
                    .collect();
                tell!(
                    "failed: {unlisted} more not listed (-vv logs each); all {} by reason: {}",
                    status.failed,
                    reasons.join(", ")
                );
            }
        }
        if let Some(signal) = self.stopped_by {
            if !out.quiet && !self.dry_run {
                let name = match signal {
                    1 => "SIGHUP",
                    2 => "SIGINT",
                    15 => "SIGTERM",
                    _ => "a signal",
                };
                tell!(
                    "haul: stopped by {name}; the same command again continues: what landed \
                     is kept, and what was under way resumes from its bytes"
                );
            }
            ExitCode::from(u8::try_from(128 + signal).unwrap_or(130))
        } else if self.failed() > 0 || self.count(|s| s.cancelled) > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }

    /// Says which jobs (`sources`, one per job in order) took no object at all, naming the
    /// `filters` given; whether any did. A prefix, a suffix or a pattern that matches nothing
    /// is more often a typo than an empty dataset: not a silent success (s5cmd: "no object
    /// found", exit 1).
    pub(crate) fn unmatched(&self, sources: &[String], filters: &[String]) -> bool {
        let filters = match filters.is_empty() {
            true => String::new(),
            false => format!(" ({})", filters.join(" ")),
        };
        let mut none = false;
        for (source, status) in sources.iter().zip(&self.statuses) {
            let took_nothing = status.all_dispatched && status.scheduled == 0;
            if took_nothing && status.failed == 0 && !status.aborted {
                tell!("haul: no objects matched {source}{filters}");
                none = true;
            }
        }
        none
    }

    /// The library's status fields, per job and summed.
    fn json(&self, secs: f64) -> serde_json::Value {
        let mut json = status_json(&self.statuses, secs, true, self.stopped_by.is_some());
        json["dry_run"] = self.dry_run.into();
        json
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
                    "connections": t.connections,
                })).collect::<Vec<_>>(),
                "failure_reasons": s.failure_reasons,
                "failures": s.failures.iter().map(|f| serde_json::json!({
                    "name": f.name,
                    "error": haul::error_chain(&*f.error),
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

/// The number of the stop signal that came (0: none yet); the wait loop aborts every job
/// when it sees one.
fn stop_signal() -> &'static Arc<AtomicUsize> {
    static STOP: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    STOP.get_or_init(Arc::default)
}

/// Makes SIGINT (Ctrl-C), SIGTERM (what Kubernetes and systemd send) and SIGHUP (a closed
/// terminal) abort the jobs cleanly instead of killing the process: running transfers stop
/// and keep their work files for the next run, multipart uploads of unfinished objects are
/// aborted, the summary is printed, and the exit code is 128 + the signal's number. A second stop signal kills at
/// once, as it would without haul's handler.
pub(crate) fn abort_on_stop_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let seen = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        let registered = signal_hook::flag::register_conditional_default(signal, Arc::clone(&seen))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&seen)))
            .and_then(|_| {
                let number = usize::try_from(signal).expect("signal numbers are small");
                signal_hook::flag::register_usize(signal, Arc::clone(stop_signal()), number)
            });
        if let Err(e) = registered {
            log::warn!("signal {signal} will kill haul outright: {e}");
        }
    }
}

/// Waits for every job, drawing progress on a terminal, and collects their final statuses.
/// A stop signal aborts them all.
pub(crate) fn wait_all(
    downloader: &Downloader,
    jobs: &[JobId],
    started: Instant,
) -> Result<Summary, Box<dyn Error>> {
    let out = output();
    let mut bars = (!out.quiet && !out.json && std::io::stderr().is_terminal())
        .then(crate::progress::Bars::new);
    let mut aborted = false;
    let mut stopped_by = None;
    let mut next_line = started + PROGRESS_INTERVAL;
    loop {
        let signal = stop_signal().load(Ordering::SeqCst);
        if signal != 0 && !aborted {
            aborted = true;
            stopped_by = i32::try_from(signal).ok();
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
            say!("{line}");
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
        stopped_by,
        dry_run: false,
        verb: "download",
    })
}
