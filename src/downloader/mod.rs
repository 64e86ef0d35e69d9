//! The [`Downloader`]: the public handle over the dispatcher thread and the joggers.

pub(crate) mod dispatcher;
pub mod hrw;
pub(crate) mod job;
pub(crate) mod jogger;
pub(crate) mod store;
pub(crate) mod sync;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, Sender};

use crate::downloader::dispatcher::{Command, Dispatcher, Expansion, Listed};
use crate::downloader::job::{Detail, JobId, JobSpec, JobStatus, Source};
use crate::downloader::jogger::{Jogger, Target};
use crate::downloader::store::{JobSettings, Store};
use crate::http::{HttpClient, HttpConfig};
use crate::source::template::{Template, TemplateError};
use crate::source::url::{self, UrlError};
use crate::target::mountpath::Mountpath;
use crate::target::name::{NameError, ObjectName};
use crate::target::s3::S3Target;
use crate::thread::JoinOnDrop;

/// Default number of joggers per mountpath (AIStore runs one).
pub const DEFAULT_WORKERS_PER_MOUNTPATH: usize = 1;
/// Default capacity of each mountpath's task queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1000;
/// Default number of jobs expanded at once; later jobs wait their turn.
pub const DEFAULT_MAX_ACTIVE_JOBS: usize = 16;
/// Default number of submitted jobs that may wait to become active.
pub const DEFAULT_JOB_QUEUE_CAPACITY: usize = 1024;
/// How long `submit` waits for the dispatcher before it says the queue is full.
const SUBMIT_WAIT: Duration = Duration::from_millis(100);

/// Why a [`Downloader`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No mountpath or S3 target was given.
    #[error("no mountpath: give at least one directory or S3 target")]
    NoMountpath,
    /// Both mountpaths and S3 targets were given: a downloader lands its objects in one kind
    /// of place.
    #[error("mountpaths and S3 targets cannot be mixed in one downloader")]
    MixedTargets,
    /// The same S3 bucket and prefix was given twice.
    #[error("S3 target {0} given twice")]
    DuplicateTarget(String),
    /// A figure is out of its range.
    #[error("{name} is {value}, below its minimum of {min}")]
    TooSmall {
        /// What.
        name: &'static str,
        /// The value given.
        value: u64,
        /// The least it may be.
        min: u64,
    },
    /// The same directory was given twice.
    #[error("mountpath {0} given twice")]
    DuplicateMountpath(PathBuf),
    /// A mountpath could not be created or opened.
    #[error("cannot open mountpath {path}")]
    Mountpath {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A figure that must be at least 1 was 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A thread could not be spawned; the threads already started were stopped.
    #[error("cannot spawn thread {name}")]
    Spawn {
        /// The thread's name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a job was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// Too many jobs are waiting: try again later.
    #[error("job queue is full ({capacity} jobs waiting)")]
    QueueFull {
        /// The job queue's capacity.
        capacity: usize,
    },
    /// The job has no objects.
    #[error("job has no objects")]
    Empty,
    /// The range template is malformed.
    #[error("bad range template")]
    Template(#[from] TemplateError),
    /// A URL is malformed or implies no safe name.
    #[error("bad URL")]
    Url(#[from] UrlError),
    /// An explicit object name or the subdirectory is not a safe name.
    #[error("bad object name")]
    Name(#[from] NameError),
    /// An option has a value that cannot work.
    #[error("bad option {option}: {reason}")]
    Option {
        /// The option.
        option: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// Two objects of the job would land under the same name: one would silently replace
    /// the other, so the job is refused. Give them distinct names.
    #[error("objects {first} and {second} of the job both land as {name}")]
    DuplicateName {
        /// The name.
        name: String,
        /// The position (from 0) of the first object with it.
        first: usize,
        /// The position of the second.
        second: usize,
    },
    /// The downloader is shutting down.
    #[error("downloader is shut down")]
    ShutDown,
    /// Another sync of the same source (bucket, prefix, suffix, subdirectory, shard) is
    /// running, in this process or another, and holds its record: two would each rewrite
    /// it. Wait for it, or abort it.
    #[error("another sync of this source is running (its record {record} is locked)")]
    SyncRunning {
        /// The record the running sync holds.
        record: PathBuf,
    },
    /// A sync job's record could not be opened or started.
    #[error("cannot open the sync record")]
    SyncRecord {
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a call about one job failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// No job has this id (it never existed or was removed).
    #[error("unknown job {0}")]
    Unknown(JobId),
    /// The job is still running; abort it or wait for it first.
    #[error("{0} is still running")]
    Running(JobId),
}

/// A pattern for [`Downloader::list`] was not a valid regular expression.
#[derive(Debug, Clone, thiserror::Error)]
#[error("bad job filter {pattern:?}: {reason}")]
pub struct FilterError {
    /// The pattern.
    pub pattern: String,
    /// Why it is not a regular expression.
    pub reason: String,
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

/// A thread of the downloader panicked; found at [`Downloader::shutdown`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("downloader threads panicked: {}", threads.join(", "))]
pub struct ShutdownError {
    /// The names of the threads that panicked.
    pub threads: Vec<String>,
}

/// Builds a [`Downloader`]. Setters take and return the builder by value.
#[derive(Debug, Clone)]
pub struct DownloaderBuilder {
    mountpaths: Vec<PathBuf>,
    s3_targets: Vec<S3Target>,
    memory_budget: Option<u64>,
    workers_per_mountpath: usize,
    queue_capacity: usize,
    max_active_jobs: usize,
    job_queue_capacity: usize,
    fsync: bool,
    http: HttpConfig,
}

impl DownloaderBuilder {
    /// Adds a mountpath: a local directory (typically one per disk), created when missing.
    pub fn mountpath(mut self, dir: impl Into<PathBuf>) -> Self {
        self.mountpaths.push(dir.into());
        self
    }

    /// Adds an S3 target: objects land in a bucket under a prefix instead of in local
    /// directories (a downloader takes either mountpaths or S3 targets). Each target has its
    /// own queue and `workers_per_mountpath` joggers, and objects are spread over several
    /// targets by HRW, as over mountpaths. See [`S3Target`].
    pub fn s3_target(mut self, target: S3Target) -> Self {
        self.s3_targets.push(target);
        self
    }

    /// For S3 targets: the most bytes buffered at once by all joggers together (each object
    /// in flight buffers one part, or the whole object when smaller). Default: one part per
    /// jogger, so the budget never makes a jogger wait. Lower it to cap memory; a jogger then
    /// waits for bytes to come back before it reads its object's body. An object that needs
    /// more than the whole budget fails with [`DownloadError::Budget`](crate::DownloadError::Budget).
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// Joggers per mountpath (or per S3 target), each running one download at a time. Default
    /// [`DEFAULT_WORKERS_PER_MOUNTPATH`]; raise it for network-bound work (16 in total is a
    /// good start on loopback or a fast LAN).
    pub fn workers_per_mountpath(mut self, n: usize) -> Self {
        self.workers_per_mountpath = n;
        self
    }

    /// Capacity of each mountpath's task queue. Default [`DEFAULT_QUEUE_CAPACITY`]. A sync
    /// job also runs at most four times this many objects past its oldest unfinished one
    /// (its record is written in key order), so one stalled object holds it back instead of
    /// its memory growing.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// Jobs expanded at once, their objects interleaved. Default [`DEFAULT_MAX_ACTIVE_JOBS`].
    pub fn max_active_jobs(mut self, n: usize) -> Self {
        self.max_active_jobs = n;
        self
    }

    /// Submitted jobs that may wait to become active before `submit` says
    /// [`SubmitError::QueueFull`]. Default [`DEFAULT_JOB_QUEUE_CAPACITY`].
    pub fn job_queue_capacity(mut self, n: usize) -> Self {
        self.job_queue_capacity = n;
        self
    }

    /// Fsync each object before it counts as landed. Default off (see [`Mountpath::new`]).
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }

    /// Settings of the shared HTTP client. Its idle connections per host are raised to the
    /// number of joggers when lower.
    pub fn http(mut self, config: HttpConfig) -> Self {
        self.http = config;
        self
    }

    /// Opens the mountpaths and starts the threads.
    ///
    /// # Errors
    ///
    /// A [`BuildError`]; threads already started are stopped and joined first.
    pub fn build(self) -> Result<Downloader, BuildError> {
        if self.mountpaths.is_empty() && self.s3_targets.is_empty() {
            return Err(BuildError::NoMountpath);
        }
        if !self.mountpaths.is_empty() && !self.s3_targets.is_empty() {
            return Err(BuildError::MixedTargets);
        }
        for (figure, name) in [
            (self.workers_per_mountpath, "workers_per_mountpath"),
            (self.queue_capacity, "queue_capacity"),
            (self.max_active_jobs, "max_active_jobs"),
            (self.job_queue_capacity, "job_queue_capacity"),
        ] {
            if figure == 0 {
                return Err(BuildError::Zero(name));
            }
        }
        let mut targets = Vec::with_capacity(self.mountpaths.len() + self.s3_targets.len());
        let mut ids = Vec::with_capacity(targets.capacity());
        for path in &self.mountpaths {
            let mp = Mountpath::new(path).map_err(|source| BuildError::Mountpath {
                path: path.clone(),
                source,
            })?;
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            let id = hrw::hash(canonical.to_string_lossy().as_bytes());
            if ids.contains(&id) {
                return Err(BuildError::DuplicateMountpath(path.clone()));
            }
            ids.push(id);
            targets.push(Target::Dir(Arc::new(mp.fsync(self.fsync))));
        }
        let workers_total = (self.workers_per_mountpath * self.s3_targets.len()) as u64;
        let largest_part = self
            .s3_targets
            .iter()
            .map(S3Target::configured_part_size)
            .max()
            .unwrap_or(0);
        let budget = (!self.s3_targets.is_empty()).then(|| {
            crate::fetch::MemoryBudget::new(
                self.memory_budget
                    .unwrap_or(workers_total.saturating_mul(largest_part)),
            )
        });
        for target in &self.s3_targets {
            let part = target.configured_part_size();
            if part < crate::target::s3::MIN_PART_BYTES {
                return Err(BuildError::TooSmall {
                    name: "part_size",
                    value: part,
                    min: crate::target::s3::MIN_PART_BYTES,
                });
            }
            let id = target.id();
            if ids.contains(&id) {
                return Err(BuildError::DuplicateTarget(target.shown()));
            }
            ids.push(id);
            targets.push(Target::S3 {
                target: target.clone(),
                budget: Arc::clone(budget.as_ref().expect("made for S3 targets")),
            });
        }
        let targets: Vec<Arc<Target>> = targets.into_iter().map(Arc::new).collect();
        let workers = self.workers_per_mountpath * targets.len();
        let mut http = self.http;
        http.idle_connections_per_host = http.idle_connections_per_host.max(workers);
        let client = HttpClient::new(http);

        let store = Arc::new(Store::default());
        let unstarted = Arc::new(AtomicUsize::new(0));
        let (command_tx, command_rx) = crossbeam_channel::bounded(self.job_queue_capacity);
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut queues = Vec::with_capacity(targets.len());
        let mut joggers = Vec::with_capacity(workers);
        for (index, target) in targets.iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(self.queue_capacity);
            queues.push(tx);
            let label = match &**target {
                Target::Dir(mountpath) => mountpath
                    .root()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| index.to_string()),
                Target::S3 { target, .. } => target.bucket().name().to_owned(),
            };
            for i in 0..self.workers_per_mountpath {
                let name = format!("haul-jog-{label}-{i}");
                let jogger = Jogger {
                    queue: rx.clone(),
                    done: done_tx.clone(),
                    target: Arc::clone(target),
                    client: client.clone(),
                    slot: joggers.len() as u64,
                };
                match JoinOnDrop::spawn(name.clone(), move || jogger.run()) {
                    Ok(handle) => joggers.push(handle),
                    Err(source) => {
                        // Close the queues first, so the joggers already started end and
                        // can be joined.
                        drop(queues);
                        drop(joggers);
                        return Err(BuildError::Spawn { name, source });
                    }
                }
            }
        }
        drop(done_tx);
        let dispatcher = Dispatcher {
            commands: command_rx,
            done: done_rx,
            queues,
            mountpath_ids: ids.clone(),
            store: Arc::clone(&store),
            max_active: self.max_active_jobs,
            sync_window: self.queue_capacity.saturating_mul(4),
            unstarted: Arc::clone(&unstarted),
        };
        let dispatcher = JoinOnDrop::spawn("haul-dispatch".into(), move || dispatcher.run())
            .map_err(|source| BuildError::Spawn {
                name: "haul-dispatch".into(),
                source,
            })?;
        log::debug!(
            "downloader started: {} targets, {workers} joggers",
            targets.len()
        );
        Ok(Downloader {
            commands: Some(command_tx),
            store,
            unstarted,
            job_queue_capacity: self.job_queue_capacity,
            targets,
            budget,
            mountpath_ids: ids,
            dispatcher: Some(dispatcher),
            joggers,
        })
    }
}

/// Downloads jobs of objects into local mountpaths with a fixed set of threads.
///
/// ```
/// use std::time::Duration;
/// use haul::{Detail, Downloader, JobSpec};
/// # let origin = haul::origin::Origin::start()?;
/// # let template = origin.url("/data/shard-{000..099}.bin?size=1000");
/// # let dir = std::env::temp_dir().join(format!("haul-doc-dl-{}", std::process::id()));
///
/// let downloader = Downloader::builder()
///     .mountpath(dir.join("disk1"))
///     .mountpath(dir.join("disk2"))
///     .workers_per_mountpath(4)
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
///   object on a mountpath by highest-random-weight hashing of its name, and sends it into
///   that mountpath's bounded task queue, blocking while the queue is full — but it waits for
///   a command or a finished task at the same time, so it is never deaf to `abort`;
/// - `workers_per_mountpath` joggers per mountpath, `haul-jog-<dir>-<i>`, each taking one task
///   at a time from its mountpath's queue and reporting it done on an unbounded channel (it
///   never holds more than the tasks in flight).
///
/// A downloader of [S3 targets](DownloaderBuilder::s3_target) has the same shape: each target
/// is placed, queued and served like a mountpath (joggers `haul-jog-<bucket>-<i>`), and its
/// joggers share one [memory budget](DownloaderBuilder::memory_budget) for the parts they
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
    commands: Option<Sender<Command>>,
    store: Arc<Store>,
    unstarted: Arc<AtomicUsize>,
    job_queue_capacity: usize,
    targets: Vec<Arc<Target>>,
    /// The memory budget of S3 targets' buffers.
    budget: Option<Arc<crate::fetch::MemoryBudget>>,
    /// Each mountpath's (or S3 target's) HRW identity (the hash of its canonical path), computed once.
    mountpath_ids: Vec<u64>,
    dispatcher: Option<JoinOnDrop>,
    joggers: Vec<JoinOnDrop>,
}

impl Downloader {
    /// A builder with the defaults.
    pub fn builder() -> DownloaderBuilder {
        DownloaderBuilder {
            mountpaths: Vec::new(),
            s3_targets: Vec::new(),
            memory_budget: None,
            workers_per_mountpath: DEFAULT_WORKERS_PER_MOUNTPATH,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_active_jobs: DEFAULT_MAX_ACTIVE_JOBS,
            job_queue_capacity: DEFAULT_JOB_QUEUE_CAPACITY,
            fsync: false,
            http: HttpConfig::default(),
        }
    }

    /// The mountpaths, in the order given to the builder (none for a downloader of S3
    /// targets).
    pub fn mountpaths(&self) -> impl Iterator<Item = &Mountpath> {
        self.targets.iter().filter_map(|t| match &**t {
            Target::Dir(mountpath) => Some(&**mountpath),
            Target::S3 { .. } => None,
        })
    }

    /// The memory budget S3 targets buffer their parts in (`None` for a downloader of
    /// mountpaths): how much is in use now, and the most ever in use.
    pub fn memory_budget(&self) -> Option<&Arc<crate::fetch::MemoryBudget>> {
        self.budget.as_ref()
    }

    /// The S3 targets, in the order given to the builder (none for a downloader of
    /// mountpaths).
    pub fn s3_targets(&self) -> impl Iterator<Item = &S3Target> {
        self.targets.iter().filter_map(|t| match &**t {
            Target::S3 { target, .. } => Some(target),
            Target::Dir(_) => None,
        })
    }

    /// The mountpath (or S3 target) HRW places `name` on: an index into
    /// [`mountpaths`](Downloader::mountpaths) or [`s3_targets`](Downloader::s3_targets).
    pub fn placement(&self, name: &ObjectName) -> usize {
        hrw::pick(hrw::hash(name.as_str().as_bytes()), &self.mountpath_ids)
            .expect("at least one mountpath")
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
        let to_store = self.budget.is_some();
        let sync_source = sync_source(&spec);
        let (settings, expansion) = prepare(spec, to_store)?;
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
            Some((source, subdir)) => match self.open_sync(&source, subdir) {
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
        subdir: Option<String>,
    ) -> Result<crate::downloader::sync::SyncRun, SubmitError> {
        let mountpaths = self
            .targets
            .iter()
            .zip(&self.mountpath_ids)
            .filter_map(|(t, id)| match &**t {
                Target::Dir(mountpath) => Some((*id, Arc::clone(mountpath))),
                Target::S3 { .. } => None,
            })
            .collect();
        crate::downloader::sync::SyncRun::open(source, mountpaths, subdir).map_err(|e| match e {
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
        for jogger in self.joggers.drain(..) {
            if let Err(name) = jogger.join() {
                panicked.push(name);
            }
        }
        // Jobs the dispatcher did not get to finish are over now.
        for job in self.store.all() {
            job.close_dispatch();
            self.store.finish(&job);
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

/// For a sync job: what tells its record from every other job's (the store, bucket,
/// prefix, suffix, subdirectory and shard), and its subdirectory.
fn sync_source(spec: &JobSpec) -> Option<(String, Option<String>)> {
    let Source::S3Prefix {
        bucket,
        prefix,
        suffix,
    } = &spec.source
    else {
        return None;
    };
    if !spec.sync {
        return None;
    }
    let subdir = spec
        .subdir
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('/').to_owned());
    let shard = spec
        .shard
        .map(|(i, n)| format!("{i}/{n}"))
        .unwrap_or_default();
    let source = format!(
        "{}/{prefix} suffix={} subdir={} shard={shard}",
        bucket.url(),
        suffix.as_deref().unwrap_or(""),
        subdir.as_deref().unwrap_or("")
    );
    Some((source, subdir))
}

/// Validates a spec and turns it into job settings and a lazy expansion.
fn prepare(spec: JobSpec, to_store: bool) -> Result<(JobSettings, Expansion), SubmitError> {
    if spec.sync && (to_store || !matches!(spec.source, Source::S3Prefix { .. })) {
        return Err(SubmitError::Option {
            option: "sync",
            reason: "needs an S3 prefix job and local mountpaths",
        });
    }
    if to_store {
        if spec.existing == crate::Existing::Revalidate {
            return Err(SubmitError::Option {
                option: "existing",
                reason: "Revalidate needs local mountpaths; S3 targets take Skip or Replace",
            });
        }
        if spec.parts.is_some_and(|p| p.active()) {
            return Err(SubmitError::Option {
                option: "parts",
                reason: "ranged parts need local mountpaths; S3 targets upload large objects in parts already",
            });
        }
    }
    if spec.max_connections == Some(0) {
        return Err(SubmitError::Option {
            option: "max_connections",
            reason: "must be at least 1",
        });
    }
    if let Some((index, count)) = spec.shard
        && (count == 0 || index >= count)
    {
        return Err(SubmitError::Option {
            option: "shard",
            reason: "the index must be below the count, and the count at least 1",
        });
    }
    if spec.rate_limit == Some(0) {
        return Err(SubmitError::Option {
            option: "rate_limit",
            reason: "must be at least 1 byte per second",
        });
    }
    for (name, _) in &spec.headers {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(SubmitError::Option {
                option: "header",
                reason: "a header name must be printable ASCII without ':' or spaces",
            });
        }
    }
    let subdir = match spec.subdir.as_deref() {
        None | Some("") => None,
        Some(dir) => Some(ObjectName::new(dir.trim_end_matches('/'))?.to_string()),
    };
    let subdir_for_digests = subdir.clone();
    let place = |url: &str, name: Option<&str>| -> Result<(String, ObjectName), SubmitError> {
        url::check(url)?;
        let name = match name {
            Some(name) => ObjectName::new(name)?,
            None => url::object_name(url)?,
        };
        let name = match &subdir {
            Some(dir) => name.under(dir)?,
            None => name,
        };
        Ok((url.to_owned(), name))
    };
    let description = spec
        .description
        .clone()
        .unwrap_or_else(|| spec.default_description());
    let job_bucket = match &spec.source {
        Source::S3Prefix { bucket, .. } => Some(bucket.clone()),
        _ => None,
    };
    let (total, expansion) = match spec.source {
        Source::Single { url, name } => {
            let object = place(&url, name.as_deref())?;
            (Some(1), Expansion::List(vec![object].into_iter()))
        }
        Source::Multi(list) => {
            if list.is_empty() {
                return Err(SubmitError::Empty);
            }
            let objects = list
                .iter()
                .map(|(name, url)| place(url, name.as_deref()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut seen = std::collections::HashMap::with_capacity(objects.len());
            for (second, (_, name)) in objects.iter().enumerate() {
                if let Some(first) = seen.insert(name.as_str(), second) {
                    return Err(SubmitError::DuplicateName {
                        name: name.to_string(),
                        first,
                        second,
                    });
                }
            }
            (
                Some(objects.len() as u64),
                Expansion::List(objects.into_iter()),
            )
        }
        Source::Range { template } => {
            let template = Template::parse(&template)?;
            // The first URL shows whether the scheme and host are right; later names are
            // checked as they are reached, and a bad one fails only its object.
            let first = template.get(0).ok_or(SubmitError::Empty)?;
            url::check(&first)?;
            if let Some((a, b)) = template.same_name_pair() {
                let name = url::object_name(&first)?;
                return Err(SubmitError::DuplicateName {
                    name: name.to_string(),
                    first: a as usize,
                    second: b as usize,
                });
            }
            (
                Some(template.len()),
                Expansion::Range {
                    names: template.into_iter(),
                    subdir,
                },
            )
        }
        Source::S3Prefix {
            bucket,
            prefix,
            suffix,
        } => {
            let listing = bucket.list(&prefix);
            (
                None,
                Expansion::Listed(Box::new(Listed {
                    bucket,
                    listing,
                    suffix,
                    subdir,
                    failed: false,
                })),
            )
        }
    };
    let sha256 = spec
        .sha256
        .into_iter()
        .map(|(name, digest)| {
            let name = ObjectName::new(&name)?;
            let name = match &subdir_for_digests {
                Some(dir) => name.under(dir)?,
                None => name,
            };
            Ok((name.to_string(), digest))
        })
        .collect::<Result<_, SubmitError>>()?;
    let settings = JobSettings {
        description,
        headers: spec.headers,
        timeout: spec.timeout,
        max_connections: spec.max_connections,
        rate_limit: spec.rate_limit,
        existing: spec.existing,
        retry: spec.retry,
        parts: spec.parts,
        shard: spec.shard,
        sha256,
        bucket: job_bucket,
        // A shard's share is known only when the expansion ends.
        total: total.filter(|_| spec.shard.is_none()),
    };
    Ok((settings, expansion))
}
