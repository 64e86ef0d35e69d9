//! The job table: the only shared mutable state on the download side. Counters are atomics;
//! the locks guard short lists and are never held across I/O or a blocking send.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use crate::cancel::CancelToken;
use crate::downloader::job::{
    Detail, Existing, JobId, JobStatus, MAX_KEPT_FAILURES, TaskFailure, TaskInfo,
};
use crate::engine::Known;
use crate::engine::error::DownloadError;
use crate::engine::parts::PartsPolicy;
use crate::engine::rate::RateLimiter;
use crate::engine::retry::RetryPolicy;
use crate::progress::Progress;
use crate::target::name::ObjectName;

const UNKNOWN: u64 = u64::MAX;

/// An object's file is already there.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Present {
    /// Skip it: haul wrote it (a sync's record says so), and it is unchanged.
    Ours,
    /// Skip it: a file is there, whoever wrote it.
    Skip,
    /// Skip it: the target holds the same bytes (a local file whose stored copy matches).
    Same,
    /// Ask the server whether it changed since.
    Check { size: u64, modified: SystemTime },
}

/// One job's settings and live counters, shared by the handle, the dispatcher and the joggers.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: JobId,
    pub(crate) description: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) limiter: Option<RateLimiter>,
    pub(crate) existing: Existing,
    pub(crate) retry: RetryPolicy,
    pub(crate) parts: Option<PartsPolicy>,
    /// This process's shard index, and the HRW ids of all the job's shards.
    pub(crate) shard: Option<(usize, Vec<u64>)>,
    /// What is known of objects beforehand (SHA-256, size, pinned ETag, S3 version) by full
    /// name (subdir included).
    pub(crate) known: BTreeMap<String, Known>,
    /// The bucket of a backend job, whose tasks name keys in it.
    pub(crate) bucket: Option<crate::s3::Bucket>,
    pub(crate) cancel: CancelToken,
    pub(crate) retries: AtomicU64,
    aborted: AtomicBool,
    total: AtomicU64,
    scheduled: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    cancelled: AtomicU64,
    deleted: AtomicU64,
    /// The landed objects' bytes.
    bytes: AtomicU64,
    /// The bytes of transfers that ended without landing.
    partial: AtomicU64,
    failures: Mutex<Failures>,
    running: Mutex<Vec<Running>>,
    submitted_at: SystemTime,
    finished_at: Mutex<Option<SystemTime>>,
    all_dispatched: AtomicBool,
}

/// A job's failures: the first [`MAX_KEPT_FAILURES`] whole, every one counted by reason.
#[derive(Debug, Default)]
struct Failures {
    kept: Vec<TaskFailure>,
    reasons: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Running {
    slot: u64,
    name: ObjectName,
    progress: Arc<Progress>,
}

/// The settings a job is created with.
#[derive(Debug)]
pub(crate) struct JobSettings {
    pub(crate) description: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) rate_limit: Option<u64>,
    pub(crate) existing: Existing,
    pub(crate) retry: RetryPolicy,
    pub(crate) parts: Option<PartsPolicy>,
    pub(crate) shard: Option<(u32, u32)>,
    /// What is known of objects beforehand, by the object's full name (subdir included).
    pub(crate) known: BTreeMap<String, Known>,
    pub(crate) bucket: Option<crate::s3::Bucket>,
    pub(crate) total: Option<u64>,
}

impl Job {
    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Marks the job aborted and cancels its running transfers.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        self.cancel.cancel();
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished_at.lock().is_some()
    }

    pub(crate) fn scheduled(&self) {
        self.scheduled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn landed(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// A sync job deleted a file whose object is gone remotely.
    pub(crate) fn deleted(&self) {
        self.deleted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, name: String, error: DownloadError) {
        log::debug!(
            "{}: {name} failed: {}",
            self.id,
            crate::engine::retry::error_chain(&error)
        );
        let reason = error.reason();
        {
            let mut failures = self.failures.lock();
            *failures.reasons.entry(reason).or_insert(0) += 1;
            if failures.kept.len() < MAX_KEPT_FAILURES {
                failures.kept.push(TaskFailure {
                    name,
                    error: Arc::new(error),
                });
            }
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// No more objects of this job will be scheduled. For an aborted job, every object never
    /// scheduled counts as cancelled, so a finished job always accounts for its total:
    /// `finished + failed + skipped + cancelled == total`. Idempotent.
    pub(crate) fn close_dispatch(&self) {
        if self.all_dispatched.swap(true, Ordering::AcqRel) {
            return;
        }
        // A listed job's total is known only now: every object it listed was scheduled.
        let _ = self.total.compare_exchange(
            UNKNOWN,
            self.scheduled.load(Ordering::Relaxed),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        let total = self.total.load(Ordering::Relaxed);
        if self.is_aborted() && total != UNKNOWN {
            let scheduled = self.scheduled.load(Ordering::Relaxed);
            self.cancelled
                .fetch_add(total.saturating_sub(scheduled), Ordering::Relaxed);
        }
    }

    /// Registers a running transfer in jogger slot `slot`.
    pub(crate) fn start_running(&self, slot: u64, name: &ObjectName, progress: &Arc<Progress>) {
        self.running.lock().push(Running {
            slot,
            name: name.clone(),
            progress: Arc::clone(progress),
        });
    }

    /// The transfer in jogger slot `slot` ended; its bytes count as moved unless it
    /// `landed` (then [`landed`](Job::landed) counts them).
    pub(crate) fn stop_running(&self, slot: u64, landed: bool) {
        let mut running = self.running.lock();
        if !landed && let Some(r) = running.iter().find(|r| r.slot == slot) {
            self.partial.fetch_add(r.progress.done(), Ordering::Relaxed);
        }
        running.retain(|r| r.slot != slot);
    }

    /// What is known of the file at `path` when the job cares: `Skip` when it should be
    /// skipped outright, or its size and modification time for a revalidation.
    pub(crate) fn existing(&self, path: &Path) -> Option<Present> {
        // The name itself, never what a symbolic link there points to.
        let file = || std::fs::symlink_metadata(path).ok().filter(|m| m.is_file());
        match self.existing {
            Existing::Replace => None,
            Existing::Skip => file().map(|_| Present::Skip),
            Existing::Revalidate => {
                let meta = file()?;
                Some(Present::Check {
                    size: meta.len(),
                    modified: meta.modified().ok()?,
                })
            }
        }
    }

    /// An owned snapshot.
    pub(crate) fn status(&self, detail: Detail) -> JobStatus {
        let in_flight: Vec<TaskInfo> = self
            .running
            .lock()
            .iter()
            .map(|r| TaskInfo {
                name: r.name.clone(),
                bytes_done: r.progress.done(),
                bytes_total: r.progress.total(),
                connections: r.progress.connections(),
            })
            .collect();
        let (failures, failure_reasons) = match detail {
            Detail::All => {
                let failures = self.failures.lock();
                (failures.kept.clone(), failures.reasons.clone())
            }
            Detail::OnlyActive => Default::default(),
        };
        let total = self.total.load(Ordering::Relaxed);
        JobStatus {
            id: self.id,
            description: self.description.clone(),
            total: (total != UNKNOWN).then_some(total),
            scheduled: self.scheduled.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed)
                + self.partial.load(Ordering::Relaxed)
                + in_flight.iter().map(|t| t.bytes_done).sum::<u64>(),
            bytes_landed: self.bytes.load(Ordering::Relaxed),
            failures,
            failure_reasons,
            in_flight,
            submitted_at: self.submitted_at,
            finished_at: *self.finished_at.lock(),
            aborted: self.is_aborted(),
            all_dispatched: self.all_dispatched.load(Ordering::Acquire),
        }
    }
}

/// Every job of one downloader, and the condition variable `wait` sleeps on.
#[derive(Debug, Default)]
pub(crate) struct Store {
    jobs: Mutex<BTreeMap<JobId, Arc<Job>>>,
    finished: Condvar,
    next_id: AtomicU64,
}

impl Store {
    pub(crate) fn create(&self, settings: JobSettings) -> Arc<Job> {
        let id = JobId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let job = Arc::new(Job {
            id,
            description: settings.description,
            headers: settings.headers,
            timeout: settings.timeout,
            max_connections: settings.max_connections,
            limiter: settings.rate_limit.map(RateLimiter::new),
            existing: settings.existing,
            retry: settings.retry,
            parts: settings.parts,
            shard: settings
                .shard
                .map(|(index, count)| (index as usize, crate::downloader::hrw::shard_ids(count))),
            known: settings.known,
            bucket: settings.bucket,
            retries: AtomicU64::new(0),
            cancel: CancelToken::new(),
            aborted: AtomicBool::new(false),
            total: AtomicU64::new(settings.total.unwrap_or(UNKNOWN)),
            scheduled: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            partial: AtomicU64::new(0),
            failures: Mutex::new(Failures::default()),
            running: Mutex::new(Vec::new()),
            submitted_at: SystemTime::now(),
            finished_at: Mutex::new(None),
            all_dispatched: AtomicBool::new(false),
        });
        self.jobs.lock().insert(id, Arc::clone(&job));
        job
    }

    pub(crate) fn get(&self, id: JobId) -> Option<Arc<Job>> {
        self.jobs.lock().get(&id).cloned()
    }

    pub(crate) fn remove(&self, id: JobId) -> Option<Arc<Job>> {
        self.jobs.lock().remove(&id)
    }

    pub(crate) fn all(&self) -> Vec<Arc<Job>> {
        self.jobs.lock().values().cloned().collect()
    }

    /// Marks `job` finished and wakes every `wait`er.
    pub(crate) fn finish(&self, job: &Job) {
        let jobs = self.jobs.lock();
        {
            let mut at = job.finished_at.lock();
            if at.is_some() {
                return;
            }
            *at = Some(SystemTime::now());
        }
        drop(jobs);
        let status = job.status(Detail::OnlyActive);
        log::info!(
            "{} finished{}: {} landed, {} failed, {} skipped, {} cancelled, {} deleted, {} bytes",
            job.id,
            if status.aborted { " (aborted)" } else { "" },
            status.finished,
            status.failed,
            status.skipped,
            status.cancelled,
            status.deleted,
            status.bytes
        );
        let _jobs = self.jobs.lock();
        self.finished.notify_all();
    }

    /// Blocks until `job` is finished or `timeout` passes; returns whether it finished.
    pub(crate) fn wait(&self, job: &Job, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut jobs = self.jobs.lock();
        loop {
            if job.is_finished() {
                return true;
            }
            if self.finished.wait_until(&mut jobs, deadline).timed_out() {
                return job.is_finished();
            }
        }
    }
}
