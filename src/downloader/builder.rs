//! Building a [`Downloader`]: its targets, threads, queues and client.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

use crate::downloader::dispatcher::Dispatcher;
use crate::downloader::error::BuildError;
use crate::downloader::hrw;
use crate::downloader::jogger::Target;
use crate::downloader::pool::{Pool, PoolSetup};
use crate::downloader::store::Store;
use crate::downloader::{
    DEFAULT_JOB_QUEUE_CAPACITY, DEFAULT_MAX_ACTIVE_JOBS, DEFAULT_QUEUE_CAPACITY, Downloader,
};
use crate::flow::{Concurrency, Flows};
use crate::http::{HttpClient, HttpConfig};
use crate::target::mountpath::Mountpath;
use crate::target::s3::S3Target;
use crate::thread::JoinOnDrop;

/// The default memory budget of S3 targets with an adaptive concurrency holds this many
/// parts (with a fixed one, one part per jogger).
const ADAPTIVE_BUDGET_PARTS: u64 = 16;

/// Builds a [`Downloader`]. Setters take and return the builder by value.
#[derive(Debug, Clone)]
pub struct DownloaderBuilder {
    mountpaths: Vec<PathBuf>,
    s3_targets: Vec<S3Target>,
    memory_budget: Option<u64>,
    concurrency: Concurrency,
    hedging: bool,
    split_tails: bool,
    queue_capacity: usize,
    max_active_jobs: usize,
    job_queue_capacity: usize,
    fsync: bool,
    dry_run: bool,
    http: HttpConfig,
}

impl DownloaderBuilder {
    /// The defaults (what [`Downloader::builder`] gives).
    pub(super) fn new() -> DownloaderBuilder {
        DownloaderBuilder {
            mountpaths: Vec::new(),
            s3_targets: Vec::new(),
            memory_budget: None,
            concurrency: Concurrency::adaptive(),
            hedging: true,
            split_tails: true,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_active_jobs: DEFAULT_MAX_ACTIVE_JOBS,
            job_queue_capacity: DEFAULT_JOB_QUEUE_CAPACITY,
            fsync: false,
            dry_run: false,
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
    /// own queue and joggers, and objects are spread over several
    /// targets by HRW, as over mountpaths. See [`S3Target`].
    pub fn s3_target(mut self, target: S3Target) -> Self {
        self.s3_targets.push(target);
        self
    }

    /// For S3 targets: the most bytes buffered at once by all joggers together (each object
    /// in flight buffers one part, or the whole object when smaller). Default: with a fixed
    /// concurrency one part per jogger, so the budget never makes a jogger wait; with an
    /// adaptive one sixteen parts. Lower it to cap memory; a jogger then waits for bytes to
    /// come back before it reads its object's body. An object that needs
    /// more than the whole budget fails with [`DownloadError::Budget`](crate::DownloadError::Budget).
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// Pins the number of joggers per target (mountpath or S3 target), each running one
    /// download at a time: `Concurrency::fixed(n)`, with no gate per host. Zero is refused
    /// by [`build`](DownloaderBuilder::build).
    pub fn workers_per_target(mut self, n: usize) -> Self {
        self.concurrency = Concurrency::fixed(n);
        self
    }

    /// Hedged requests (default on): a request whose response is later than its host's
    /// 95th percentile of recent first-response times (and at least twice their median, and
    /// 20 ms) gets a second,
    /// identical one on another connection; the first to answer wins and the other is given
    /// up. At most one in twenty of a host's requests; counted in
    /// [`FlowStatus::hedged`](crate::FlowStatus::hedged). Requests are GETs, so a duplicate
    /// changes nothing at the server; turn it off for servers that bill per request.
    pub fn hedging(mut self, on: bool) -> Self {
        self.hedging = on;
        self
    }

    /// Splitting tails (default on): when a target has nothing left to start and joggers
    /// idle, the rest of an object still streaming slowly (at least 2 MiB, from a server that
    /// takes ranges) is cut into pieces of at least 1 MiB, fetched by the idle joggers with
    /// ranged requests pinned to the object's version, so one slow connection does not set a
    /// job's end. Off: every object is one request (unless it is fetched in parts), for
    /// servers that count connections or requests per client.
    pub fn split_tails(mut self, on: bool) -> Self {
        self.split_tails = on;
        self
    }

    /// How many transfers run at once. Default [`Concurrency::adaptive`]: a limit per host
    /// (or bucket) that finds its own level between 1 and 256, each target's joggers
    /// started as the limit needs them. [`Downloader::flows`] shows where it stands.
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
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

    /// A dry run (default off; rclone's and s5cmd's `--dry-run`): jobs are expanded and
    /// listed, and each object's fate decided as it would be (skipped as existing or
    /// unchanged, or downloaded), but no object is requested and nothing is written or
    /// deleted: mountpaths are neither created nor swept, a sync's record stays as it is.
    /// A job's status then counts what would happen: [`finished`](crate::JobStatus::finished)
    /// the objects that would be downloaded (or checked again, for
    /// [`Existing::Revalidate`](crate::Existing::Revalidate)), [`bytes`](crate::JobStatus::bytes)
    /// their sizes as listed (a URL's size is not asked for: 0),
    /// [`skipped`](crate::JobStatus::skipped) and [`deleted`](crate::JobStatus::deleted) what
    /// would be skipped and deleted. Each decision is logged at info, with the object's name.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join("haul-doc-dry-run");
    /// let d = haul::Downloader::builder().mountpath(&dir).dry_run(true).build()?;
    /// assert!(!dir.exists(), "a dry run creates nothing");
    /// # drop(d);
    /// # Ok::<(), haul::BuildError>(())
    /// ```
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// Fsync each object before it counts as landed. Default off (see [`Mountpath::new`]).
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }

    /// Settings of the shared HTTP client. Its idle connections per host are raised to the
    /// most joggers there can be when lower.
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
            (self.concurrency.max(), "workers_per_target"),
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
            let mp = if self.dry_run {
                Mountpath::untouched(path)
            } else {
                Mountpath::new(path).map_err(|source| BuildError::Mountpath {
                    path: path.clone(),
                    source,
                })?
            };
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            let id = hrw::hash(canonical.to_string_lossy().as_bytes());
            if ids.contains(&id) {
                return Err(BuildError::DuplicateTarget(path.display().to_string()));
            }
            ids.push(id);
            targets.push(Target::Dir(Arc::new(mp.fsync(self.fsync))));
        }
        let c = self.concurrency;
        let parts_per_target = if c.is_fixed() {
            c.max() as u64
        } else {
            ADAPTIVE_BUDGET_PARTS.max(c.initial_limit() as u64)
        };
        let budget_parts = parts_per_target * self.s3_targets.len() as u64;
        let largest_part = self
            .s3_targets
            .iter()
            .map(S3Target::configured_part_size)
            .max()
            .unwrap_or(0);
        let budget = (!self.s3_targets.is_empty()).then(|| {
            crate::fetch::MemoryBudget::new(
                self.memory_budget
                    .unwrap_or(budget_parts.saturating_mul(largest_part)),
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
                target: Box::new(target.clone()),
                budget: Arc::clone(budget.as_ref().expect("made for S3 targets")),
            });
        }
        let targets: Vec<Arc<Target>> = targets.into_iter().map(Arc::new).collect();
        let workers = c.max() * targets.len();
        let mut http = self.http;
        http.idle_connections_per_host = http.idle_connections_per_host.max(workers);
        let client = HttpClient::new(http);

        let store = Arc::new(Store::default());
        let unstarted = Arc::new(AtomicUsize::new(0));
        let (command_tx, command_rx) = crossbeam_channel::bounded(self.job_queue_capacity);
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        // A fixed concurrency's gates never shut: every jogger of every target may talk to
        // one host at once.
        let gates = if c.is_fixed() {
            Concurrency::fixed(c.max() * targets.len())
        } else {
            c
        };
        let flows = Arc::new(Flows::new(gates, self.hedging));
        let slots = Arc::new(AtomicU64::new(0));
        let dispatcher_has_work = Arc::new(AtomicBool::new(false));
        let mut queues = Vec::with_capacity(targets.len());
        let mut pools = Vec::with_capacity(targets.len());
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
            let setup = PoolSetup {
                queue: rx,
                done: done_tx.clone(),
                target: Arc::clone(target),
                client: client.clone(),
                flows: Arc::clone(&flows),
                grows: !c.is_fixed(),
                split_tails: self.split_tails,
                dry_run: self.dry_run,
                label,
                cap: c.max(),
                slots: Arc::clone(&slots),
                dispatcher_has_work: Arc::clone(&dispatcher_has_work),
            };
            let pool = Pool::new(setup);
            let weak = Arc::downgrade(&pool);
            flows.on_growth(move || {
                if let Some(pool) = weak.upgrade() {
                    pool.limit_grew();
                }
            });
            pools.push(Arc::clone(&pool));
            if let Err((name, source)) = pool.grow(c.initial_limit()) {
                // Close the queues first, so the joggers already started end and can be
                // joined.
                drop(queues);
                join_all(&pools);
                return Err(BuildError::Spawn { name, source });
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
            has_work: dispatcher_has_work,
        };
        // A failed spawn drops the dispatcher, and with it the queues' senders.
        let dispatcher = match JoinOnDrop::spawn("haul-dispatch".into(), move || dispatcher.run()) {
            Ok(dispatcher) => dispatcher,
            Err(source) => {
                join_all(&pools);
                return Err(BuildError::Spawn {
                    name: "haul-dispatch".into(),
                    source,
                });
            }
        };
        log::debug!("downloader started: {} targets, {:?}", targets.len(), c);
        Ok(Downloader {
            commands: Some(command_tx),
            store,
            unstarted,
            job_queue_capacity: self.job_queue_capacity,
            targets,
            budget,
            target_ids: ids,
            flows,
            dispatcher: Some(dispatcher),
            pools,
            dry_run: self.dry_run,
        })
    }
}

/// Joins the joggers of pools whose queues are closed (on a failed build).
fn join_all(pools: &[Arc<Pool>]) {
    let mut panicked = Vec::new();
    for pool in pools {
        pool.join(&mut panicked);
    }
}
