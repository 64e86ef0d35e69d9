//! Building a [`Downloader`]: its targets, threads, queues and client.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::downloader::dispatcher::Dispatcher;
use crate::downloader::error::BuildError;
use crate::downloader::hrw;
use crate::downloader::jogger::{Jogger, Target};
use crate::downloader::store::Store;
use crate::downloader::{
    DEFAULT_JOB_QUEUE_CAPACITY, DEFAULT_MAX_ACTIVE_JOBS, DEFAULT_QUEUE_CAPACITY,
    DEFAULT_WORKERS_PER_TARGET, Downloader,
};
use crate::http::{HttpClient, HttpConfig};
use crate::target::mountpath::Mountpath;
use crate::target::s3::S3Target;
use crate::thread::JoinOnDrop;

/// Builds a [`Downloader`]. Setters take and return the builder by value.
#[derive(Debug, Clone)]
pub struct DownloaderBuilder {
    mountpaths: Vec<PathBuf>,
    s3_targets: Vec<S3Target>,
    memory_budget: Option<u64>,
    workers_per_target: usize,
    queue_capacity: usize,
    max_active_jobs: usize,
    job_queue_capacity: usize,
    fsync: bool,
    http: HttpConfig,
}

impl DownloaderBuilder {
    /// The defaults (what [`Downloader::builder`] gives).
    pub(super) fn new() -> DownloaderBuilder {
        DownloaderBuilder {
            mountpaths: Vec::new(),
            s3_targets: Vec::new(),
            memory_budget: None,
            workers_per_target: DEFAULT_WORKERS_PER_TARGET,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_active_jobs: DEFAULT_MAX_ACTIVE_JOBS,
            job_queue_capacity: DEFAULT_JOB_QUEUE_CAPACITY,
            fsync: false,
            http: HttpConfig::default(),
        }
    }

    /// Adds a mountpath: a local directory (typically one per disk), created when missing.
    pub fn mountpath(mut self, dir: impl Into<PathBuf>) -> Self {
        self.mountpaths.push(dir.into());
        self
    }

    /// Adds an S3 target: objects land in a bucket under a prefix instead of in local
    /// directories (a downloader takes either mountpaths or S3 targets). Each target has its
    /// own queue and `workers_per_target` joggers, and objects are spread over several
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

    /// Joggers per target (mountpath or S3 target), each running one download at a time. Default
    /// [`DEFAULT_WORKERS_PER_TARGET`]; raise it for network-bound work (16 in total is a
    /// good start on loopback or a fast LAN).
    pub fn workers_per_target(mut self, n: usize) -> Self {
        self.workers_per_target = n;
        self
    }

    /// Capacity of each target's task queue. Default [`DEFAULT_QUEUE_CAPACITY`]. A sync
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
    /// [`SubmitError::QueueFull`](crate::SubmitError::QueueFull). Default
    /// [`DEFAULT_JOB_QUEUE_CAPACITY`].
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

    /// Opens the targets (a mountpath's directories are made when missing) and starts the
    /// threads.
    ///
    /// # Errors
    ///
    /// A [`BuildError`]; threads already started are stopped and joined first.
    pub fn build(self) -> Result<Downloader, BuildError> {
        if self.mountpaths.is_empty() && self.s3_targets.is_empty() {
            return Err(BuildError::NoTarget);
        }
        if !self.mountpaths.is_empty() && !self.s3_targets.is_empty() {
            return Err(BuildError::MixedTargets);
        }
        for (figure, name) in [
            (self.workers_per_target, "workers_per_target"),
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
                return Err(BuildError::DuplicateTarget(path.display().to_string()));
            }
            ids.push(id);
            targets.push(Target::Dir(Arc::new(mp.fsync(self.fsync))));
        }
        let workers_total = (self.workers_per_target * self.s3_targets.len()) as u64;
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
        let workers = self.workers_per_target * targets.len();
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
            for i in 0..self.workers_per_target {
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
            target_ids: ids.clone(),
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
            target_ids: ids,
            dispatcher: Some(dispatcher),
            joggers,
        })
    }
}
