//! Running jobs on a Downloader and reporting them: shared by `haul get`, `haul put` and
//! `haul demo`.

use std::error::Error;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use haul::{Detail, Downloader, JobId, JobStatus};
use indicatif::HumanBytes;

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

/// A run's length as people read it: `0.482 s`, `12.3 s`, `4m 05s`, `1h 02m`.
pub(crate) fn elapsed_text(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let whole = elapsed.as_secs();
    if secs < 10.0 {
        format!("{secs:.3} s")
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if whole < 3600 {
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h {:02}m", whole / 3600, whole % 3600 / 60)
    }
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

    /// Prints the summary on stderr (a line; nothing with `-q`), or with `--json` one JSON
    /// object on stdout (the run's result, as data), and each failure on stderr. The exit
    /// code: 0 all landed, 1 any failed, 128 + the signal's number when one stopped the run
    /// (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
    pub(crate) fn report(&self) -> ExitCode {
        let out = output();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        if out.json {
            say!("{}", self.json(secs));
        } else if !out.quiet && self.dry_run {
            tell!(
                "dry run: would {} {} objects ({} as listed), skip {}, delete {}; nothing was written",
                self.verb,
                self.landed(),
                HumanBytes(self.bytes()),
                self.count(|s| s.skipped),
                self.count(|s| s.deleted),
            );
        } else if !out.quiet {
            let deleted = match self.count(|s| s.deleted) {
                0 => String::new(),
                n => format!(", {n} deleted"),
            };
            let landed = self.count(|s| s.bytes_landed);
            // Bytes of transfers that did not land (kept for the next run) are told apart.
            let moved = match self.bytes() {
                moved if moved > landed => format!(" ({} moved)", HumanBytes(moved)),
                _ => String::new(),
            };
            tell!(
                "{} landed, {} failed, {} skipped, {} cancelled{deleted}; {}{moved} in {}: {}/s, {:.0} objects/s",
                self.landed(),
                self.failed(),
                self.count(|s| s.skipped),
                self.count(|s| s.cancelled),
                HumanBytes(landed),
                elapsed_text(self.elapsed),
                HumanBytes((landed as f64 / secs) as u64),
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
        status_json(
            &self.statuses,
            secs,
            true,
            self.stopped_by.is_some(),
            self.dry_run,
        )
    }
}

/// One JSON status: the library's fields per job, and sums. `done` tells the final status
/// from a `--json-progress` line.
fn status_json(
    statuses: &[JobStatus],
    secs: f64,
    done: bool,
    interrupted: bool,
    dry_run: bool,
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
                "landed": s.finished,
                "failed": s.failed,
                "skipped": s.skipped,
                "cancelled": s.cancelled,
                "deleted": s.deleted,
                "bytes": s.bytes,
                "bytes_landed": s.bytes_landed,
                "retries": s.retries,
                "aborted": s.aborted,
                "in_flight": s.in_flight.iter().map(|t| serde_json::json!({
                    "name": t.name.as_str(),
                    "bytes_done": t.bytes_done,
                    "bytes_total": t.bytes_total,
                    "connections": t.connections,
                })).collect::<Vec<_>>(),
                "failure_reasons": s.failure_reasons,
                "failures": s.failures.iter().map(|f| failure_json(&f.name, &f.error)).collect::<Vec<_>>(),
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
        "bytes_landed": sum(|s| s.bytes_landed),
        "retries": sum(|s| s.retries),
        "seconds": secs,
        "interrupted": interrupted,
        "dry_run": dry_run,
        "jobs": jobs,
    })
}

/// One failed object in JSON: its name, the URL (redacted) and HTTP status when the error
/// has them, the kind of failure (`reason`, as `failure_reasons` counts them) and the whole
/// error.
pub(crate) fn failure_json(name: &str, error: &haul::DownloadError) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "url": error.url(),
        "status": error.http_status(),
        "reason": error.reason(),
        "error": haul::error_chain(error),
    })
}

/// What a command that writes objects to stdout did, for `--json` (on stderr: stdout is
/// the data).
pub(crate) fn stream_json(
    landed: u64,
    failures: &[serde_json::Value],
    bytes: u64,
    elapsed: Duration,
) -> serde_json::Value {
    serde_json::json!({
        "done": true,
        "landed": landed,
        "failed": failures.len(),
        "bytes": bytes,
        "seconds": elapsed.as_secs_f64(),
        "failures": failures,
    })
}

/// Ends a command that wrote objects to stdout: its status on stderr (a line, or JSON with
/// `--json`; nothing with `-q`), and the exit code.
pub(crate) fn report_stream(
    landed: u64,
    failures: &[serde_json::Value],
    bytes: u64,
    elapsed: Duration,
) -> ExitCode {
    let out = output();
    if out.json {
        tell!("{}", stream_json(landed, failures, bytes, elapsed));
    } else if !out.quiet {
        let secs = elapsed.as_secs_f64().max(1e-9);
        tell!(
            "{landed} written, {} failed; {} in {}: {}/s",
            failures.len(),
            HumanBytes(bytes),
            elapsed_text(elapsed),
            HumanBytes((bytes as f64 / secs) as u64),
        );
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
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
    dry_run: bool,
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
            let line = status_json(
                &live,
                started.elapsed().as_secs_f64(),
                false,
                aborted,
                dry_run,
            );
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
        dry_run,
        verb: "download",
    })
}
