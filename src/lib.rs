//! haul moves large batches of objects over HTTP(S) and S3 from blocking code.
//!
//! It is for programs that are not async — dataset preparation, ETL, ML shard downloaders —
//! and want many objects fetched fast, with bounded memory and nothing half-written.
//!
//! # Quick start: a job
//!
//! ```
//! use std::time::Duration;
//! use haul::{Detail, Downloader, JobSpec};
//! # let origin = haul_origin::Origin::start()?;
//! # let template = origin.url("/shards/shard-{0000..0099}.tar?size=2048");
//! # let dir = std::env::temp_dir().join(format!("haul-doc-lib-dl-{}", std::process::id()));
//!
//! let downloader = Downloader::builder()
//!     .mountpath(dir.join("disk1")) // one per disk: objects are spread by HRW on their names
//!     .mountpath(dir.join("disk2"))
//!     .workers_per_target(4)
//!     .build()?;
//! let job = downloader.submit(JobSpec::range(template))?; // expanded lazily
//! downloader.wait(job, Duration::from_secs(60))?;
//! let status = downloader.status(job, Detail::All)?;
//! assert_eq!((status.finished, status.failed), (100, 0));
//! # drop(downloader);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Quick start: an ordered S3 fetch
//!
//! ```no_run
//! use haul::{FetchKey, Fetcher};
//! use haul::{Bucket, S3Config};
//!
//! let bucket = Bucket::new("datasets", &S3Config::from_env())?;
//! let fetcher = Fetcher::builder().workers(16).memory_budget(512 << 20).build()?;
//! let keys = bucket.list("train/").filter_map(Result::ok).map(FetchKey::from);
//! for object in fetcher.fetch(&bucket, keys) {
//!     let object = object?; // in the caller's order; an error names its key
//!     if let Some(bytes) = object.bytes() {
//!         println!("{}: {} bytes", object.key(), bytes.len());
//!     }
//! } // each object's bytes go back to the budget when it is dropped
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The same from the web: [`Web`] as the source, each key a URL (a template's names, say).
//!
//! ```
//! use std::io::Read;
//! use haul::{Fetcher, Template, Web};
//! # let origin = haul_origin::Origin::start()?;
//! # let template = origin.url("/shard-{00..09}.tar?size=300000");
//!
//! let urls = Template::parse(&template)?.iter();
//! let fetcher = Fetcher::builder().memory_budget(64 << 20).build()?;
//! let mut total = 0;
//! for object in fetcher.fetch(Web::default(), urls) {
//!     let mut reader = object?.into_reader(); // whole, or streamed in ranged parts
//!     total += std::io::copy(&mut reader, &mut std::io::sink())?;
//! }
//! assert_eq!(total, 10 * 300_000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Watching a job
//!
//! [`Downloader::status`] is an owned snapshot: counters, the bytes so far, and each object
//! in flight with its progress. Poll it while [`Downloader::wait`] times out, or draw your
//! own display from it (`examples/custom_progress.rs`):
//!
//! ```
//! use std::time::Duration;
//! use haul::{Detail, Downloader, JobSpec};
//! # let origin = haul_origin::Origin::start()?;
//! # let template = origin.url("/watch/o-{00..19}.bin?size=100000");
//! # let dir = std::env::temp_dir().join(format!("haul-doc-lib-watch-{}", std::process::id()));
//!
//! let downloader = Downloader::builder().mountpath(&dir).workers_per_target(2).build()?;
//! let job = downloader.submit(JobSpec::range(template).description("watched"))?;
//! while !downloader.wait(job, Duration::from_millis(100))? {
//!     let status = downloader.status(job, Detail::OnlyActive)?;
//!     for task in &status.in_flight {
//!         println!("{}: {} of {:?} bytes", task.name, task.bytes_done, task.bytes_total);
//!     }
//! }
//! let status = downloader.status(job, Detail::All)?;
//! assert_eq!(status.finished + status.failed, 20);
//! # drop(downloader);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Downloader::abort`] stops a job within one read of each running transfer and leaves
//! no partial file; [`Downloader::list`] finds jobs by a regular expression over their
//! descriptions.
//!
//! # Into an S3 bucket
//!
//! A downloader built with [`S3Target`]s instead of mountpaths stores each object in a
//! bucket under a prefix: one PUT up to the part size, a multipart upload above it, the
//! parts in flight bounded by a memory budget. An object appears only when complete; a
//! failure, an abort or dropping the downloader aborts its upload.
//!
//! ```no_run
//! use std::time::Duration;
//! use haul::{Bucket, S3Config};
//! use haul::{Downloader, JobSpec, S3Target};
//!
//! let bucket = Bucket::new("landing", &S3Config::from_env())?;
//! let downloader = Downloader::builder()
//!     .s3_target(S3Target::new(&bucket, "shards/"))
//!     .workers_per_target(16)
//!     .memory_budget(256 << 20)
//!     .build()?;
//! let job = downloader.submit(JobSpec::range("https://host/shard-{0000..0999}.tar"))?;
//! downloader.wait(job, Duration::from_secs(3600))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Datasets: Hugging Face repositories and manifests
//!
//! [`HubClient`] lists a Hub repository (`hf://datasets/org/corpus@v1.0/data`, an
//! [`HfPath`]) at the commit its revision names into a [`Snapshot`]: a download job, or
//! the keys of an ordered fetch, each file checked against its size and the SHA-256 the
//! tree lists. A [`Manifest`] pins a set of objects as text (names, sizes, digests, ETags,
//! URLs): [`Manifest::job`] downloads exactly that set, failing what no longer matches, and
//! [`Manifest::verify`] checks a local copy.
//!
//! # Keeping a copy of a prefix in step
//!
//! An [`S3Prefix`](Source::S3Prefix) job downloads every object under a prefix, listed page
//! by page. With [`JobSpec::sync`] a rerun fetches only what changed, skips the rest without
//! a request, and deletes the files it downloaded earlier whose objects are gone
//! ([`JobStatus::deleted`]); files haul did not write are never touched.
//!
//! ```no_run
//! # let downloader = haul::Downloader::builder().mountpath("/data").build()?;
//! let bucket = haul::Bucket::new("datasets", &haul::S3Config::from_env())?;
//! let job = downloader.submit(haul::JobSpec::s3_prefix(&bucket, "train/").sync(true))?;
//! # let _ = job;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Over several machines
//!
//! [`JobSpec::shard`]`(i, n)` takes the objects whose highest-random-weight winner among `n`
//! shards is `i`: `n` processes running the same job with shards `0..n` fetch every object
//! exactly once, with no coordinator. With an S3 target they fill one bucket together.
//!
//! # Quick start: one object
//!
//! ```
//! use haul::{CancelToken, HttpClient, Mountpath, ObjectTask, Progress};
//! # let origin = haul_origin::Origin::start()?;
//! # let url = origin.url("/shards/shard-0001.tar?size=4096");
//! # let dir = std::env::temp_dir().join(format!("haul-doc-lib-{}", std::process::id()));
//!
//! let client = HttpClient::default(); // one keep-alive pool; clone it into every thread
//! let disk = Mountpath::new(&dir)?;   // objects land here, atomically
//! let task = ObjectTask::from_url(url)?; // lands as "shard-0001.tar"
//! let landed = haul::download(&client, &task, &disk, &Progress::new(), &CancelToken::new())?;
//! assert_eq!(landed.bytes, 4096);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Range templates
//!
//! A job of many objects is often written as a template, expanded lazily:
//!
//! ```
//! let t = haul::Template::parse("https://host/shard-{0000..0999}.tar")?;
//! assert_eq!(t.len(), 1000);
//! assert_eq!(t.get(7).as_deref(), Some("https://host/shard-0007.tar"));
//! # Ok::<(), haul::TemplateError>(())
//! ```
//!
//! # Retries, resume and verification
//!
//! A failed attempt is retried by a [`RetryPolicy`] (5 attempts, jittered exponential
//! backoff, `Retry-After` honoured) when another attempt could go better: network errors,
//! timeouts, stalls ([`HttpConfig::stall`]), 408/429/5xx, a body of the wrong length or
//! digest. A body that broke off resumes from its last byte (`Range` + `If-Range`); objects
//! land only complete and verified (length; [`Sha256Digest`] when given; S3 MD5 ETags).
//! A transfer that is interrupted (cancelled, aborted, stopped, or failed past its retries)
//! or killed keeps its work file, and the next run of the same URL resumes it; a split
//! object keeps the parts it has. [`Existing`] says what to do with files already there. [`EgressPolicy::PublicOnly`] refuses private addresses.
//!
//! ```
//! use std::time::Duration;
//! # let origin = haul_origin::Origin::start()?;
//! # let url = origin.url("/o.bin?size=300000&drop_after=100000&faults_first=1");
//! # let dir = std::env::temp_dir().join(format!("haul-doc-lib-retry-{}", std::process::id()));
//! use haul::{Detail, Downloader, JobSpec, RetryPolicy};
//!
//! let downloader = Downloader::builder().mountpath(&dir).build()?;
//! // The origin cuts this body after 100,000 bytes, once: the retry fetches the rest.
//! let spec = JobSpec::single(url).retry(RetryPolicy::default().initial_backoff(Duration::from_millis(10)));
//! let job = downloader.submit(spec)?;
//! assert!(downloader.wait(job, Duration::from_secs(30))?);
//! let status = downloader.status(job, Detail::All)?;
//! assert_eq!((status.finished, status.retries), (1, 1));
//! # drop(downloader);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Thread model
//!
//! Nothing in this crate spawns a thread behind your back except the handles that say so in
//! their docs; each names its threads `haul-…` and joins them when dropped. A [`Downloader`]
//! owns one dispatcher thread and a pool of joggers per target (mountpath or S3 target;
//! started as each host's [`Concurrency`] limit needs them, up to its cap; see its "Threads
//! and ownership" section); a jogger splitting a large object over
//! several connections runs its parts on scoped `haul-part-<i>` threads, one storing a large
//! object in S3 sends its parts on scoped `haul-upload-<n>` threads; a [`Fetcher`] owns a
//! pool of `haul-fetch-<i>` threads shared by all its requests (grown as its buckets'
//! limits need). Hedged requests go out on up to four `haul-hedge-<i>` threads per
//! downloader or fetcher, started on the first hedge. [`download`] runs on the calling
//! thread. This crate uses no async runtime.
//! Bytes move through
//! [`ProgressReader`], which counts them into a [`Progress`] and checks a [`CancelToken`] on
//! every read.
//!
//! # Log levels
//!
//! haul logs through the [`log`] crate, with the module path as the target:
//! - `error`: never (errors are returned, not logged);
//! - `warn`: retries, configuration mistakes, work files that could not be removed;
//! - `info`: one line per job submitted, finished or aborted;
//! - `debug`: per-object decisions ("skipping {name}: {reason}"), thread start and stop;
//! - `trace`: per-object landing and per-chunk progress.
//!
//! URLs are logged and put in errors with credential-like query values redacted
//! ([`redact_url`]).
//!
//! # Errors
//!
//! One error enum per concern, each `#[non_exhaustive]`, `Send + Sync + 'static`, with a
//! lowercase "what: why" message that names the URL, object or path, and the cause as its
//! [`source`](std::error::Error::source): [`TemplateError`], [`NameError`], [`UrlError`],
//! [`DownloadError`], [`SubmitError`], [`JobError`], [`BuildError`], [`FetchError`],
//! [`S3Error`], [`HfError`], [`ManifestError`]; their sources include [`DigestMismatch`], [`EgressRefused`], [`UntrustedCertificate`] and
//! [`Stalled`]. An object that cannot be stored in its S3 target fails with
//! [`DownloadError::Store`], naming `s3://bucket/key`.
//!
//! # The crates
//!
//! This crate is the library alone: it builds no command line and no test server. The
//! `haul` binary is the `haul-cli` crate of the same repository; the loopback origin its
//! tests, benches and `haul demo` use is `haul-origin`.
//!
//! # Features
//!
//! - `max-level-debug` (off): compiles `trace` logging out of release builds (`log`'s
//!   `release_max_level_debug`). ureq logs every body byte at `trace` level, a level check
//!   per 16 bytes; a binary that moves gigabytes should turn this on (or enable that `log`
//!   feature itself), as haul's benchmarks do for the `haul` binary:
//!   `cargo build --release -p haul-cli --features max-level-debug`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub)]

mod cancel;
mod downloader;
mod engine;
mod fetch;
mod flow;
mod hf;
mod http;
mod manifest;
mod progress;
mod s3;
mod source;
mod target;
mod thread;

pub use cancel::CancelToken;
pub use downloader::job::{
    Detail, Existing, JobId, JobSpec, JobStatus, MAX_KEPT_FAILURES, Source, TaskFailure, TaskInfo,
};
pub use downloader::{
    BuildError, DEFAULT_JOB_QUEUE_CAPACITY, DEFAULT_MAX_ACTIVE_JOBS, DEFAULT_QUEUE_CAPACITY,
    DELETIONS_LOG_TARGET, DRY_RUN_LOG_TARGET, Downloader, DownloaderBuilder, FilterError, JobError,
    JobFilter, MemoryUse, ShutdownError, SubmitError, shard_of,
};
pub use engine::dest::BUFFER_BYTES;
pub use engine::error::DownloadError;
pub use engine::parts::PartsPolicy;
pub use engine::retry::{RetryPolicy, error_chain};
pub use engine::verify::{DigestError, DigestMismatch, Sha256Digest};
pub use fetch::{
    BudgetPermit, DEFAULT_FETCH_WORKERS, DEFAULT_MAX_WHOLE_OBJECT_BYTES,
    DEFAULT_MEMORY_BUDGET_BYTES, DEFAULT_PER_REQUEST_WORKERS, FetchError, FetchErrorKind, FetchKey,
    FetchSource, Fetcher, FetcherBuildError, FetcherBuilder, FetcherStats, MAX_ITEMS_AHEAD,
    MemoryBudget, Object, ObjectReader, Objects, Web,
};
pub use flow::{Concurrency, DEFAULT_INITIAL_CONCURRENCY, DEFAULT_MAX_CONCURRENCY, FlowStatus};
pub use hf::{
    DEFAULT_ENDPOINT as HF_DEFAULT_ENDPOINT, HfError, HfFile, HfPath, HubClient, RepoKind, Snapshot,
};
pub use http::egress::{EgressPolicy, EgressRefused};
pub use http::untrusted::UntrustedCertificate;
pub use http::{HttpClient, HttpConfig, Stalled};
pub use manifest::{Manifest, ManifestEntry, ManifestError, Mismatch, VerifyReport};
pub use progress::{Cancelled, Progress, ProgressReader, is_cancelled};
pub use s3::credentials::CredentialsError;
pub use s3::{Bucket, ListedObject, Listing, MultipartUpload, S3Config, S3Error};
pub use source::select::{GlobError, KeySelection};
pub use source::template::{DEFAULT_MAX_TEMPLATE_NAMES, Names, Template, TemplateError};
pub use source::url::{UrlError, check_url, name_from_url, redact_url};
pub use target::file::{Landed, ObjectTask, download};
pub use target::mountpath::Mountpath;
pub use target::name::{NameError, ObjectName};
pub use target::s3::{DEFAULT_PART_BYTES, DEFAULT_UPLOAD_CONNECTIONS, MIN_PART_BYTES, S3Target};
pub use target::stream::download_to;
