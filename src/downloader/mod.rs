//! The downloader: the public handle ([`Downloader`]) over one dispatcher thread and the
//! joggers of each target. A *target* is where objects land: a mountpath (a local
//! directory) or an S3 target (a bucket prefix); the dispatcher places each object on one
//! by HRW and feeds that target's queue.

mod builder;
pub(crate) mod dispatcher;
mod error;
pub(crate) mod hrw;
pub(crate) mod job;
pub(crate) mod jogger;
pub(crate) mod key_names;
pub(crate) mod pool;
mod spec;
pub(crate) mod store;
pub(crate) mod sync;
pub(crate) mod uploads;

pub use builder::DownloaderBuilder;
pub use error::{BuildError, FilterError, JobError, ShutdownError, SubmitError};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, Sender};

use crate::downloader::dispatcher::Command;
use crate::downloader::job::{Detail, JobId, JobSpec, JobStatus};
use crate::downloader::jogger::Target;
use crate::downloader::pool::Pool;
use crate::downloader::spec::{prepare, sync_source};
use crate::downloader::store::Store;
use crate::flow::{FlowStatus, Flows};
use crate::target::mountpath::Mountpath;
use crate::target::name::ObjectName;
use crate::target::s3::S3Target;
use crate::thread::JoinOnDrop;

/// Default capacity of each target's task queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1000;
/// Default number of jobs expanded at once; later jobs wait their turn.
pub const DEFAULT_MAX_ACTIVE_JOBS: usize = 16;
/// Default number of submitted jobs that may wait to become active.
pub const DEFAULT_JOB_QUEUE_CAPACITY: usize = 1024;
/// The log target of a dry run's decisions ([`DownloaderBuilder::dry_run`]), one line per
/// object at info: what a dry run shows when only this target is let through.
pub const DRY_RUN_LOG_TARGET: &str = "haul::dry_run";
/// The log target of a sync's deletions ([`JobSpec::sync`]), one line per file deleted at
/// info: let it through to show which files a sync removed.
pub const DELETIONS_LOG_TARGET: &str = "haul::deleted";
/// How long `submit` waits for the dispatcher before it says the queue is full.
const SUBMIT_WAIT: Duration = Duration::from_millis(100);

/// What a downloader of S3 targets buffers ([`Downloader::memory_use`]), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUse {
    /// The memory budget ([`DownloaderBuilder::memory_budget`]).
    pub budget: u64,
    /// Held now by parts in flight.
    pub in_use: u64,
    /// The most ever held at once.
    pub peak: u64,
}

/// Which of `count` shards owns the object named `name` (see [`JobSpec::shard`]): a pure
/// function of the two, the same on every machine and in every version of haul. `None`
/// when `count` is 0.
///
/// ```
/// let shard = haul::shard_of("shard-0042.tar", 8).unwrap();
/// assert!(shard < 8);
/// assert_eq!(haul::shard_of("shard-0042.tar", 8), Some(shard));
/// ```
///
/// [`JobSpec::shard`]: crate::JobSpec::shard
pub fn shard_of(name: &str, count: u32) -> Option<u32> {
    let index = hrw::shard_of(name, &hrw::shard_ids(count))?;
    u32::try_from(index).ok()
}

/// Which jobs [`Downloader::list`] returns.
///
/// ```
/// let filter = haul::JobFilter::all().matching("^shards")?.only_running();
/// # drop(filter);
/// # Ok::<(), haul::FilterError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pattern: Option<regex::Regex>,
    only_running: bool,
}

impl JobFilter {
    /// Every job.
    pub fn all() -> JobFilter {
        JobFilter::default()
    }

    /// Only jobs whose description matches the regular expression `pattern`.
    ///
    /// # Errors
    ///
    /// A [`FilterError`] when `pattern` is not a valid regular expression.
    pub fn matching(mut self, pattern: &str) -> Result<JobFilter, FilterError> {
        let regex = regex::Regex::new(pattern).map_err(|e| FilterError {
            pattern: pattern.to_owned(),
            reason: e.to_string(),
        })?;
        self.pattern = Some(regex);
        Ok(self)
    }

    /// Only jobs that have not finished.
    pub fn only_running(mut self) -> JobFilter {
        self.only_running = true;
        self
    }
}

/// Downloads jobs of objects into *targets* — local directories (mountpaths) or bucket
/// prefixes (S3 targets) — with a fixed set of threads.
///
/// ```
/// use std::time::Duration;
/// use haul::{Detail, Downloader, JobSpec};
/// # let origin = haul_origin::Origin::start()?;
/// # let template = origin.url("/data/shard-{000..099}.bin?size=1000");
/// # let dir = std::env::temp_dir().join(format!("haul-doc-dl-{}", std::process::id()));
///
/// let downloader = Downloader::builder()
///     .mountpath(dir.join("disk1"))
///     .mountpath(dir.join("disk2"))
///     .workers_per_target(4)
///     .build()?;
/// let job = downloader.submit(JobSpec::range(template).subdir("shards"))?;
/// assert!(downloader.wait(job, Duration::from_secs(60))?);
/// let status = downloader.status(job, Detail::All)?;
/// assert_eq!((status.finished, status.failed), (100, 0));
/// # drop(downloader);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Threads and ownership
///
/// A `Downloader` owns, and joins when dropped:
/// - one dispatcher thread, `haul-dispatch`, which owns every active job's lazy expansion. It
///   receives commands on a bounded channel (capacity: the job queue capacity), places each
///   object on a target by highest-random-weight hashing of its name, and sends it into
///   that target's bounded task queue, blocking while the queue is full — but it waits for
///   a command or a finished task at the same time, so it is never deaf to `abort`;
/// - a pool of joggers per target, `haul-jog-<dir or bucket>-<i>`: `n` with
///   [`Concurrency::fixed`](crate::Concurrency::fixed)`(n)`; with the default adaptive
///   concurrency the initial limit at first, and more, up to the cap, when a jogger takes a
///   task, finds none idle and the hosts' limits have room. Before its first request each
///   waits for leave from the task's host (its limit on transfers in flight; see
///   [`flows`](Downloader::flows)). Each takes one task at a time from its target's queue
///   and reports it done on an unbounded channel (it never holds more than the tasks in
///   flight).
///
/// The joggers of [S3 targets](DownloaderBuilder::s3_target) share one
/// [memory budget](DownloaderBuilder::memory_budget) for the parts they
/// buffer. A jogger sends a large object's parts on up to
/// [`upload_connections`](S3Target::upload_connections) scoped `haul-upload-<n>` threads,
/// joined before the object is done. A sync job's record is read and written by the
/// dispatcher thread.
///
/// All methods take `&self` and return quickly: `submit` waits at most ~100 ms for room in
/// the command channel; `status`, `list`, `abort` and `remove` take the job table's lock
/// briefly; only `wait` blocks, up to its timeout. The handle is `Send + Sync`: share it
/// behind an `Arc`.
///
/// Dropping the `Downloader` aborts every job (running transfers stop within one read), closes
/// the channels and joins every thread; [`shutdown`](Downloader::shutdown) does the same and
/// reports threads that panicked. A panic inside one transfer fails that object with
/// [`DownloadError::Panicked`](crate::DownloadError::Panicked); the jogger goes on.
#[derive(Debug)]
pub struct Downloader {
    // Field order is the shutdown order (see `Drop`).
    pub(super) commands: Option<Sender<Command>>,
    pub(super) store: Arc<Store>,
    pub(super) unstarted: Arc<AtomicUsize>,
    pub(super) job_queue_capacity: usize,
    pub(super) targets: Vec<Arc<Target>>,
    /// The memory budget of S3 targets' buffers.
    pub(super) budget: Option<Arc<crate::fetch::MemoryBudget>>,
    /// Each target's HRW identity (the hash of a mountpath's canonical path, or of a store,
    /// bucket and prefix), computed once.
    pub(super) target_ids: Vec<u64>,
    /// Each host's gate and control loop.
    pub(super) flows: Arc<Flows>,
    pub(super) dispatcher: Option<JoinOnDrop>,
    /// Each target's joggers.
    pub(super) pools: Vec<Arc<Pool>>,
    /// A dry run ([`DownloaderBuilder::dry_run`]).
    pub(super) dry_run: bool,
}

impl Downloader {
    /// A builder with the defaults.
    pub fn builder() -> DownloaderBuilder {
        DownloaderBuilder::new()
    }

    /// The mountpaths, in the order given to the builder (none for a downloader of S3
    /// targets).
    pub fn mountpaths(&self) -> impl Iterator<Item = &Mountpath> {
        self.targets.iter().filter_map(|t| match &**t {
            Target::Dir(mountpath) => Some(&**mountpath),
            Target::S3 { .. } => None,
        })
    }

    /// The memory S3 targets buffer their parts in (`None` for a downloader of
    /// mountpaths): the budget, how much of it is in use now, and the most ever in use.
    pub fn memory_use(&self) -> Option<MemoryUse> {
        self.budget.as_ref().map(|budget| MemoryUse {
            budget: budget.total(),
            in_use: budget.in_use(),
            peak: budget.peak_in_use(),
        })
    }

    /// Each host's (or bucket's) concurrency: its limit now, the transfers in flight, the
    /// most ever in flight, the throttles it answered with and the bytes it delivered; sorted
    /// by host. With a fixed [`Concurrency`](crate::Concurrency) the limit is every target's
    /// joggers together and never moves.
    pub fn flows(&self) -> Vec<FlowStatus> {
        self.flows.status()
    }

    /// Joggers started so far, over all targets (with an adaptive concurrency they are
    /// started as the limits need them).
    pub fn joggers(&self) -> usize {
        self.pools.iter().map(|p| p.live()).sum()
    }

    /// The S3 targets, in the order given to the builder (none for a downloader of
    /// mountpaths).
    pub fn s3_targets(&self) -> impl Iterator<Item = &S3Target> {
        self.targets.iter().filter_map(|t| match &**t {
            Target::S3 { target, .. } => Some(&**target),
            Target::Dir(_) => None,
        })
    }

    /// The target HRW places `name` on: an index into
    /// [`mountpaths`](Downloader::mountpaths) or [`s3_targets`](Downloader::s3_targets).
    pub fn placement(&self, name: &ObjectName) -> usize {
        hrw::pick(hrw::hash(name.as_str().as_bytes()), &self.target_ids)
            .expect("a downloader has at least one target")
    }

    /// Submits a job. Its objects are expanded lazily, so a job of ten million names costs
    /// no more memory than a job of ten.
    ///
    /// # Errors
    ///
    /// A [`SubmitError`]: an invalid spec (bad template, URL, name or option, no objects) is
    /// refused here; [`SubmitError::QueueFull`] when too many jobs are waiting.
    pub fn submit(&self, spec: JobSpec) -> Result<JobId, SubmitError> {
        let commands = self.commands.as_ref().ok_or(SubmitError::ShutDown)?;
        let sync_source = sync_source(&spec);
        let s3_targets: Vec<&S3Target> = self.s3_targets().collect();
        let (settings, expansion) = prepare(spec, &s3_targets)?;
        let full = SubmitError::QueueFull {
            capacity: self.job_queue_capacity,
        };
        if self.unstarted.fetch_add(1, Ordering::AcqRel) >= self.job_queue_capacity {
            self.unstarted.fetch_sub(1, Ordering::AcqRel);
            return Err(full);
        }
        // The record is opened (and locked) only once the job has room: a refused submit
        // touches no record.
        let sync = match sync_source {
            None => None,
            Some((source, names)) => match self.open_sync(&source, names) {
                Ok(run) => Some(Box::new(run)),
                Err(e) => {
                    self.unstarted.fetch_sub(1, Ordering::AcqRel);
                    return Err(e);
                }
            },
        };
        let job = self.store.create(settings);
        let id = job.id;
        match commands.send_timeout(
            Command::Submit(Arc::clone(&job), expansion, sync),
            SUBMIT_WAIT,
        ) {
            Ok(()) => {
                log::info!("{id} submitted: {}", job.description);
                Ok(id)
            }
            Err(e) => {
                self.unstarted.fetch_sub(1, Ordering::AcqRel);
                self.store.remove(id);
                Err(match e {
                    SendTimeoutError::Timeout(_) => full,
                    SendTimeoutError::Disconnected(_) => SubmitError::ShutDown,
                })
            }
        }
    }

    /// Opens a sync job's record on the mountpaths.
    fn open_sync(
        &self,
        source: &str,
        names: crate::downloader::key_names::KeyNames,
    ) -> Result<crate::downloader::sync::SyncRun, SubmitError> {
        let mountpaths = self
            .targets
            .iter()
            .zip(&self.target_ids)
            .filter_map(|(t, id)| match &**t {
                Target::Dir(mountpath) => Some((*id, Arc::clone(mountpath))),
                Target::S3 { .. } => None,
            })
            .collect();
        let open = if self.dry_run {
            crate::downloader::sync::SyncRun::planned
        } else {
            crate::downloader::sync::SyncRun::open
        };
        open(source, mountpaths, names).map_err(|e| match e {
            crate::downloader::sync::OpenError::Running(record) => {
                SubmitError::SyncRunning { record }
            }
            crate::downloader::sync::OpenError::Io(source) => SubmitError::SyncRecord { source },
        })
    }

    /// Aborts a job: it is marked aborted at once, its queued objects are dropped as they are
    /// dequeued, running transfers stop within one read and leave no work file. The job
    /// finishes once nothing of it is in flight. Aborting a finished job succeeds.
    ///
    /// # Errors
    ///
    /// [`JobError::Unknown`].
    pub fn abort(&self, id: JobId) -> Result<(), JobError> {
        let job = self.store.get(id).ok_or(JobError::Unknown(id))?;
        if !job.is_finished() && !job.is_aborted() {
            log::info!("{id} aborted");
            job.abort();
            if let Some(budget) = &self.budget {
                // Joggers waiting for buffer bytes look at their job's flag.
                budget.wake_all();
            }
            if let Some(commands) = &self.commands {
                // A wake-up only: the flag is what counts, so a full channel is fine.
                let _ = commands.try_send(Command::Abort);
            }
        }
        Ok(())
    }

    /// Forgets a finished job.
    ///
    /// # Errors
    ///
    /// [`JobError::Running`] while the job is not finished, [`JobError::Unknown`].
    pub fn remove(&self, id: JobId) -> Result<(), JobError> {
        let job = self.store.get(id).ok_or(JobError::Unknown(id))?;
        if !job.is_finished() {
            return Err(JobError::Running(id));
        }
        self.store.remove(id);
        Ok(())
    }

    /// A snapshot of one job.
    ///
    /// # Errors
    ///
    /// [`JobError::Unknown`].
    pub fn status(&self, id: JobId, detail: Detail) -> Result<JobStatus, JobError> {
        let job = self.store.get(id).ok_or(JobError::Unknown(id))?;
        Ok(job.status(detail))
    }

    /// Snapshots (without failure lists) of the jobs `filter` selects, oldest first.
    pub fn list(&self, filter: &JobFilter) -> Vec<JobStatus> {
        self.store
            .all()
            .into_iter()
            .filter(|job| !(filter.only_running && job.is_finished()))
            .filter(|job| {
                filter
                    .pattern
                    .as_ref()
                    .is_none_or(|p| p.is_match(&job.description))
            })
            .map(|job| job.status(Detail::OnlyActive))
            .collect()
    }

    /// Blocks until the job finishes or `timeout` passes; returns whether it finished.
    ///
    /// # Errors
    ///
    /// [`JobError::Unknown`].
    pub fn wait(&self, id: JobId, timeout: Duration) -> Result<bool, JobError> {
        let job = self.store.get(id).ok_or(JobError::Unknown(id))?;
        Ok(self.store.wait(&job, timeout))
    }

    /// Aborts every job, stops and joins every thread.
    ///
    /// # Errors
    ///
    /// A [`ShutdownError`] naming the threads that panicked.
    pub fn shutdown(mut self) -> Result<(), ShutdownError> {
        let mut panicked = Vec::new();
        self.stop(&mut panicked);
        if panicked.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError { threads: panicked })
        }
    }

    fn stop(&mut self, panicked: &mut Vec<String>) {
        for job in self.store.all() {
            job.abort();
        }
        if let Some(budget) = &self.budget {
            budget.wake_all();
        }
        // Closing the command channel ends the dispatcher, which drops the queue senders,
        // which ends each jogger once its queue is drained (aborted tasks drain at once).
        self.commands = None;
        if let Some(dispatcher) = self.dispatcher.take()
            && let Err(name) = dispatcher.join()
        {
            panicked.push(name);
        }
        for pool in self.pools.drain(..) {
            pool.join(panicked);
        }
        self.flows.stop();
        // Jobs the dispatcher did not get to finish are over now.
        for job in self.store.all() {
            job.close_dispatch();
            self.store.finish(&job);
        }
        // A work directory this run leaves empty goes (only an empty one can: another run's
        // work files, or a sync's records, keep it; a transfer that finds it gone makes it
        // again).
        for mountpath in self.mountpaths() {
            let _ = std::fs::remove_dir(mountpath.work_dir());
        }
    }
}

impl Drop for Downloader {
    fn drop(&mut self) {
        let mut panicked = Vec::new();
        self.stop(&mut panicked);
        if !panicked.is_empty() && !std::thread::panicking() {
            panic!("downloader threads panicked: {}", panicked.join(", "));
        }
    }
}
