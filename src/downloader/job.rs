//! Jobs: what to download ([`JobSpec`]), its handle ([`JobId`]) and what happened
//! ([`JobStatus`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::engine::error::DownloadError;
use crate::engine::parts::PartsPolicy;
use crate::engine::retry::RetryPolicy;
use crate::engine::verify::Sha256Digest;
use crate::target::name::ObjectName;

/// Identifies a job within one [`Downloader`](crate::Downloader). Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub(crate) u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job-{}", self.0)
    }
}

/// Where a job's objects come from. Its `Debug` redacts credential-like query values.
#[derive(Clone)]
#[non_exhaustive]
pub enum Source {
    /// One URL; the name defaults to the URL's last path segment.
    Single {
        /// The URL.
        url: String,
        /// The name to land under, when not the URL's.
        name: Option<String>,
    },
    /// A list of URLs, each with an optional name (the URL's last segment otherwise).
    Multi(Vec<(Option<String>, String)>),
    /// A range template whose expansions are the URLs (see [`Template`](crate::Template)).
    Range {
        /// The template, e.g. `https://host/shard-{0000..0999}.tar`.
        template: String,
    },
    /// Every object under a prefix of an S3 bucket (AIStore's *backend* job), listed lazily
    /// page by page while the first objects already download; the job's total becomes exact
    /// when the listing ends. Each object lands under its key.
    S3Prefix {
        /// The bucket (its store, credentials and client for listing).
        bucket: crate::s3::Bucket,
        /// The key prefix; empty for the whole bucket.
        prefix: String,
        /// Only keys ending with this (applied locally), e.g. `.tar`.
        suffix: Option<String>,
    },
    /// Named keys of an S3 bucket (a manifest's objects): each `(name, key)` lands under its
    /// name. See [`JobSpec::s3_keys`].
    S3Keys {
        /// The bucket.
        bucket: crate::s3::Bucket,
        /// `(name, key)` pairs.
        keys: Vec<(String, String)>,
    },
    /// Local files, uploaded into the downloader's S3 targets: each file given lands under
    /// its file name, each file under a directory given under its path relative to that
    /// directory (`/` between components). Directories are walked lazily, one at a time, in
    /// the byte order of the keys; symbolic links and special files inside them are skipped
    /// with a warning, never followed. See [`JobSpec::local`].
    Local {
        /// The files and directories.
        paths: Vec<std::path::PathBuf>,
    },
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::source::url::redact_url;
        match self {
            Source::Single { url, name } => f
                .debug_struct("Single")
                .field("url", &redact_url(url))
                .field("name", name)
                .finish(),
            Source::Multi(list) => f
                .debug_tuple("Multi")
                .field(
                    &list
                        .iter()
                        .map(|(name, url)| (name, redact_url(url)))
                        .collect::<Vec<_>>(),
                )
                .finish(),
            Source::Range { template } => f
                .debug_struct("Range")
                .field("template", &redact_url(template))
                .finish(),
            Source::S3Prefix {
                bucket,
                prefix,
                suffix,
            } => f
                .debug_struct("S3Prefix")
                .field("bucket", &bucket.name())
                .field("prefix", prefix)
                .field("suffix", suffix)
                .finish(),
            Source::S3Keys { bucket, keys } => f
                .debug_struct("S3Keys")
                .field("bucket", &bucket.name())
                .field("keys", &keys.len())
                .finish(),
            Source::Local { paths } => f.debug_struct("Local").field("paths", paths).finish(),
        }
    }
}

/// A download job: a [`Source`] plus options. Build one with [`JobSpec::single`],
/// [`JobSpec::multi`], [`JobSpec::multi_named`] or [`JobSpec::range`], then the setters.
///
/// ```
/// use std::time::Duration;
///
/// let spec = haul::JobSpec::range("https://host/shard-{0000..0999}.tar")
///     .subdir("shards")
///     .description("training shards")
///     .header("Authorization", "Bearer t0k3n")
///     .max_connections(8)
///     .rate_limit(100 << 20)
///     .timeout(Duration::from_secs(300));
/// # drop(spec);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct JobSpec {
    /// Where the objects come from.
    pub source: Source,
    /// A directory (relative to each mountpath) the objects land under.
    pub subdir: Option<String>,
    /// A description for [`list`](crate::Downloader::list); derived from the source when
    /// `None`.
    pub description: Option<String>,
    /// Extra request headers sent with every GET of the job.
    pub headers: Vec<(String, String)>,
    /// A limit on each GET, headers and body together.
    pub timeout: Option<Duration>,
    /// At most this many of the job's objects in flight at once (queued or running).
    pub max_connections: Option<usize>,
    /// At most this many bytes per second across the job's transfers (a token bucket).
    pub rate_limit: Option<u64>,
    /// What to do with an object whose file already exists. Default [`Existing::Replace`].
    pub existing: Existing,
    /// How each object's failed attempts are retried. Default [`RetryPolicy::default`].
    pub retry: RetryPolicy,
    /// Split large objects into ranged parts over several connections. Default off.
    pub parts: Option<PartsPolicy>,
    /// This process's share of the job: `(index, count)`. See [`JobSpec::shard`].
    pub shard: Option<(u32, u32)>,
    /// Keep the local copy of an [`S3Prefix`](Source::S3Prefix) in step with the bucket.
    /// See [`JobSpec::sync`].
    pub sync: bool,
    /// Expected SHA-256 digests by object name (the name the object lands under, without
    /// [`subdir`](JobSpec::subdir)). Objects not listed are checked for length only.
    pub sha256: std::collections::BTreeMap<String, Sha256Digest>,
    /// Expected sizes by object name (as [`sha256`](JobSpec::sha256)): an object of another
    /// size fails (`changed`) without being landed.
    pub sizes: std::collections::BTreeMap<String, u64>,
    /// ETags by object name (as [`sha256`](JobSpec::sha256)), as a manifest pins them: an
    /// object answered with another fails (`changed`) without being landed.
    pub etags: std::collections::BTreeMap<String, String>,
    /// S3 version ids by object name (as [`sha256`](JobSpec::sha256)): an object of the
    /// job's bucket is fetched as that version.
    pub versions: std::collections::BTreeMap<String, String>,
    /// Which keys of an [`S3Prefix`](Source::S3Prefix) job it takes (relative to the
    /// prefix). Default: every key.
    pub select: crate::KeySelection,
    /// Whether an [`S3Prefix`](Source::S3Prefix) job's objects land under their keys
    /// relative to the prefix's directory. See [`JobSpec::relative_names`].
    pub relative_names: bool,
}

impl fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values often carry credentials.
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("JobSpec")
            .field("source", &self.source)
            .field("subdir", &self.subdir)
            .field("description", &self.description)
            .field("headers", &header_names)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .field("rate_limit", &self.rate_limit)
            .field("existing", &self.existing)
            .field("retry", &self.retry)
            .field("parts", &self.parts)
            .field("shard", &self.shard)
            .field("sync", &self.sync)
            .field("sha256", &self.sha256.len())
            .finish()
    }
}

impl JobSpec {
    /// A job with `source` and default options.
    pub fn new(source: Source) -> JobSpec {
        JobSpec {
            source,
            subdir: None,
            description: None,
            headers: Vec::new(),
            timeout: None,
            max_connections: None,
            rate_limit: None,
            existing: Existing::Replace,
            retry: RetryPolicy::default(),
            parts: None,
            shard: None,
            sync: false,
            sha256: std::collections::BTreeMap::new(),
            sizes: std::collections::BTreeMap::new(),
            etags: std::collections::BTreeMap::new(),
            versions: std::collections::BTreeMap::new(),
            select: crate::KeySelection::new(),
            relative_names: false,
        }
    }

    /// One URL, landing under its last path segment.
    pub fn single(url: impl Into<String>) -> JobSpec {
        JobSpec::new(Source::Single {
            url: url.into(),
            name: None,
        })
    }

    /// One URL, landing under `name`.
    pub fn single_named(url: impl Into<String>, name: impl Into<String>) -> JobSpec {
        JobSpec::new(Source::Single {
            url: url.into(),
            name: Some(name.into()),
        })
    }

    /// A list of URLs, each landing under its last path segment.
    pub fn multi<I, S>(urls: I) -> JobSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        JobSpec::new(Source::Multi(
            urls.into_iter().map(|u| (None, u.into())).collect(),
        ))
    }

    /// A list of `(name, url)` pairs.
    pub fn multi_named<I, N, U>(pairs: I) -> JobSpec
    where
        I: IntoIterator<Item = (N, U)>,
        N: Into<String>,
        U: Into<String>,
    {
        JobSpec::new(Source::Multi(
            pairs
                .into_iter()
                .map(|(n, u)| (Some(n.into()), u.into()))
                .collect(),
        ))
    }

    /// The keys of `bucket` given, each under the name it is paired with (see
    /// [`Source::S3Keys`]): `(name, key)`.
    pub fn s3_keys<I, N, K>(bucket: &crate::s3::Bucket, keys: I) -> JobSpec
    where
        I: IntoIterator<Item = (N, K)>,
        N: Into<String>,
        K: Into<String>,
    {
        JobSpec::new(Source::S3Keys {
            bucket: bucket.clone(),
            keys: keys
                .into_iter()
                .map(|(n, k)| (n.into(), k.into()))
                .collect(),
        })
    }

    /// Every object under `prefix` in `bucket` (see [`Source::S3Prefix`]).
    ///
    /// ```no_run
    /// let bucket = haul::Bucket::new("datasets", &haul::S3Config::from_env())?;
    /// let spec = haul::JobSpec::s3_prefix(&bucket, "imagenet/train/").suffix(".tar");
    /// # drop(spec);
    /// # Ok::<(), haul::S3Error>(())
    /// ```
    pub fn s3_prefix(bucket: &crate::s3::Bucket, prefix: impl Into<String>) -> JobSpec {
        JobSpec::new(Source::S3Prefix {
            bucket: bucket.clone(),
            prefix: prefix.into(),
            suffix: None,
        })
    }

    /// Local files and directories, uploaded into the downloader's S3 targets (see
    /// [`Source::Local`]): `haul put`. What [`existing`](JobSpec::existing) means here:
    /// [`Existing::Replace`] uploads every file; [`Existing::Skip`] skips a file whose key is
    /// in the target; [`Existing::Revalidate`] skips it only when the stored object has the
    /// file's size and the file's bytes match the MD5 its listed ETag stands for (a
    /// single-part object: no request), or else the store's checksum of it (one HEAD), so a
    /// rerun uploads only what changed. Which keys are there comes
    /// from one listing of the target prefix, read alongside the walk (a page per 1,000
    /// keys), not a request per file. A selection applies to the names, sizes and
    /// modification times of the files.
    ///
    /// ```no_run
    /// let bucket = haul::Bucket::new("landing", &haul::S3Config::from_env())?;
    /// let uploader = haul::Downloader::builder()
    ///     .s3_target(haul::S3Target::new(&bucket, "shards/"))
    ///     .build()?;
    /// let spec = haul::JobSpec::local(["out/shards"]).existing(haul::Existing::Revalidate);
    /// let job = uploader.submit(spec)?;
    /// uploader.wait(job, std::time::Duration::from_secs(3600))?;
    /// let status = uploader.status(job, haul::Detail::OnlyActive)?;
    /// println!("{} uploaded, {} unchanged", status.finished, status.skipped);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local<I, P>(paths: I) -> JobSpec
    where
        I: IntoIterator<Item = P>,
        P: Into<std::path::PathBuf>,
    {
        JobSpec::new(Source::Local {
            paths: paths.into_iter().map(Into::into).collect(),
        })
    }

    /// Keeps only the objects of an [`S3Prefix`](Source::S3Prefix) job whose keys end with
    /// `suffix`; no effect on other sources.
    pub fn suffix(mut self, suffix: impl Into<String>) -> JobSpec {
        if let Source::S3Prefix { suffix: s, .. } = &mut self.source {
            *s = Some(suffix.into());
        }
        self
    }

    /// Takes only the keys of an [`S3Prefix`](Source::S3Prefix) job that `select` matches
    /// (relative to the prefix; see [`KeySelection`](crate::KeySelection)); of other jobs,
    /// the objects whose names (as they land, without [`subdir`](JobSpec::subdir)) its
    /// patterns match: sizes and ages are known only from a listing, so bounds on them are
    /// refused for other jobs. A selection makes a range job's total known only when its
    /// expansion ends. A sync job's record is kept per selection.
    ///
    /// ```no_run
    /// let bucket = haul::Bucket::new("datasets", &haul::S3Config::from_env())?;
    /// let select = haul::KeySelection::new().include("train/**/*.tar")?;
    /// let spec = haul::JobSpec::s3_prefix(&bucket, "imagenet/").select(select);
    /// # drop(spec);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn select(mut self, select: crate::KeySelection) -> JobSpec {
        self.select = select;
        self
    }

    /// A range template (the template is the URL).
    pub fn range(template: impl Into<String>) -> JobSpec {
        JobSpec::new(Source::Range {
            template: template.into(),
        })
    }

    /// Lands an [`S3Prefix`](Source::S3Prefix) job's objects under their keys relative to
    /// the prefix's directory (what comes after its last `/`), as `aws s3 cp --recursive`,
    /// s5cmd and rclone do: from prefix `ds/train/`, key `ds/train/a/x.tar` lands as
    /// `a/x.tar`; from `ds/k-`, `ds/k-001.bin` as `k-001.bin`. Default off: under the whole
    /// key. Part of a sync's record identity (the files are in other places).
    ///
    /// ```no_run
    /// let bucket = haul::Bucket::new("datasets", &haul::S3Config::from_env())?;
    /// let spec = haul::JobSpec::s3_prefix(&bucket, "imagenet/train/").relative_names(true);
    /// # drop(spec);
    /// # Ok::<(), haul::S3Error>(())
    /// ```
    pub fn relative_names(mut self, on: bool) -> JobSpec {
        self.relative_names = on;
        self
    }

    /// Sets [`subdir`](JobSpec::subdir).
    pub fn subdir(mut self, dir: impl Into<String>) -> JobSpec {
        self.subdir = Some(dir.into());
        self
    }

    /// Sets [`description`](JobSpec::description).
    pub fn description(mut self, text: impl Into<String>) -> JobSpec {
        self.description = Some(text.into());
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> JobSpec {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets [`timeout`](JobSpec::timeout).
    pub fn timeout(mut self, timeout: Duration) -> JobSpec {
        self.timeout = Some(timeout);
        self
    }

    /// Sets [`max_connections`](JobSpec::max_connections).
    pub fn max_connections(mut self, n: usize) -> JobSpec {
        self.max_connections = Some(n);
        self
    }

    /// Sets [`rate_limit`](JobSpec::rate_limit) in bytes per second.
    pub fn rate_limit(mut self, bytes_per_second: u64) -> JobSpec {
        self.rate_limit = Some(bytes_per_second);
        self
    }

    /// Sets [`retry`](JobSpec::retry).
    pub fn retry(mut self, policy: RetryPolicy) -> JobSpec {
        self.retry = policy;
        self
    }

    /// Takes only shard `index` of `count` of the job's objects: those whose
    /// highest-random-weight winner among `count` shards is `index`. N processes (on N
    /// machines) running the same job with shards `0..N` download every object exactly once,
    /// with no coordinator and nothing shared; going from N to N+1 shards moves only about
    /// 1/(N+1) of the objects. A sharded job's total is known when its expansion ends.
    ///
    /// ```
    /// // Machine 2 of 8 (for example a Kubernetes indexed Job's JOB_COMPLETION_INDEX):
    /// let spec = haul::JobSpec::range("https://host/shard-{00000..99999}.tar").shard(2, 8);
    /// # drop(spec);
    /// ```
    pub fn shard(mut self, index: u32, count: u32) -> JobSpec {
        self.shard = Some((index, count));
        self
    }

    /// Makes an [`S3Prefix`](Source::S3Prefix) job a *sync* (AIStore's `synchronize`):
    /// objects unchanged remotely since haul downloaded them (same size and ETag) are
    /// skipped without a request, changed and new ones are downloaded, and files haul
    /// downloaded earlier from this prefix whose objects are gone are deleted
    /// ([`JobStatus::deleted`]). Files haul did not download are never touched.
    ///
    /// What haul downloaded is kept in a record per job source (bucket, prefix, suffix,
    /// subdirectory, shard) in a mountpath's work directory, written in key order as the
    /// listing goes, so a sync holds one record line and the objects in flight in memory,
    /// never the whole prefix. A sync needs local mountpaths. An aborted sync, or one whose
    /// listing broke off, deletes nothing past the last key it listed.
    ///
    /// ```no_run
    /// let bucket = haul::Bucket::new("datasets", &haul::S3Config::from_env())?;
    /// let spec = haul::JobSpec::s3_prefix(&bucket, "imagenet/").sync(true);
    /// # drop(spec);
    /// # Ok::<(), haul::S3Error>(())
    /// ```
    pub fn sync(mut self, on: bool) -> JobSpec {
        self.sync = on;
        self
    }

    /// Sets [`parts`](JobSpec::parts).
    pub fn parts(mut self, policy: PartsPolicy) -> JobSpec {
        self.parts = Some(policy);
        self
    }

    /// Expects object `name` to have SHA-256 `digest` (see [`sha256`](JobSpec::sha256)).
    pub fn sha256(mut self, name: impl Into<String>, digest: Sha256Digest) -> JobSpec {
        self.sha256.insert(name.into(), digest);
        self
    }

    /// Expects object `name` to have `bytes` bytes (see [`sizes`](JobSpec::sizes)), as a
    /// listing or a manifest says.
    pub fn size(mut self, name: impl Into<String>, bytes: u64) -> JobSpec {
        self.sizes.insert(name.into(), bytes);
        self
    }

    /// Expects object `name` to be answered with `etag` (quotes included, as the server
    /// sends it; see [`etags`](JobSpec::etags)).
    pub fn etag(mut self, name: impl Into<String>, etag: impl Into<String>) -> JobSpec {
        self.etags.insert(name.into(), etag.into());
        self
    }

    /// Fetches object `name` of the job's bucket as version `id` (see
    /// [`versions`](JobSpec::versions)).
    pub fn version(mut self, name: impl Into<String>, id: impl Into<String>) -> JobSpec {
        self.versions.insert(name.into(), id.into());
        self
    }

    /// Sets [`existing`](JobSpec::existing).
    pub fn existing(mut self, policy: Existing) -> JobSpec {
        self.existing = policy;
        self
    }

    /// The description used when none is given, in AIStore's manner.
    pub(crate) fn default_description(&self) -> String {
        match &self.source {
            Source::Single { url, .. } => {
                format!("single: {}", crate::source::url::redact_url(url))
            }
            Source::Multi(list) => format!("multi: {} objects", list.len()),
            Source::Range { template } => {
                format!("range: {}", crate::source::url::redact_url(template))
            }
            Source::S3Prefix {
                bucket,
                prefix,
                suffix,
            } => format!(
                "backend: s3://{}/{prefix}{}",
                bucket.name(),
                suffix
                    .as_deref()
                    .map(|s| format!(" *{s}"))
                    .unwrap_or_default()
            ),
            Source::S3Keys { bucket, keys } => {
                format!("keys: {} of s3://{}", keys.len(), bucket.name())
            }
            Source::Local { paths } => match paths.as_slice() {
                [one] => format!("upload: {}", one.display()),
                many => format!("upload: {} paths", many.len()),
            },
        }
    }
}

/// What a job does with an object whose file already exists on its mountpath (after a
/// crash, or when a job is run again).
///
/// haul records nothing beside a landed object but its modification time, which it sets to
/// the server's `Last-Modified` (as `curl -R` and `wget -N` do): no sidecar or extended
/// attribute per object. Interrupted transfers are another matter: their work files resume
/// on their own, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Existing {
    /// Download it again and replace the file (the default).
    #[default]
    Replace,
    /// Skip it without a request: trust any file that is there. Fastest for finishing a
    /// batch that was interrupted, since objects land atomically.
    Skip,
    /// Ask the server whether the object changed, in one GET without a body:
    /// `Range: bytes=SIZE-` with `If-Range` set to the file's modification time. An unchanged
    /// object of the same size answers 416 `bytes */SIZE`, and is skipped. A changed one
    /// answers 200, and that response is the new download. A server that ignores ranges
    /// answers 200 too: skipped when its `Content-Length` and `Last-Modified` match the file.
    /// An object of an S3 prefix is judged by its listing instead, with no request: skipped
    /// when it gives the file's size and, to the second, its time; fetched otherwise. What
    /// the command line does by default.
    Revalidate,
}

/// How much a [`status`](crate::Downloader::status) snapshot includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Detail {
    /// Everything, including the list of failed objects.
    #[default]
    All,
    /// Counters and in-flight tasks only: the failure list is left out (AIStore's
    /// `only_active_tasks`).
    OnlyActive,
}

/// One object in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The object's name.
    pub name: ObjectName,
    /// Bytes received so far.
    pub bytes_done: u64,
    /// Bytes expected, when the server said.
    pub bytes_total: Option<u64>,
    /// Connections it reads from now: more than 1 while a large object comes in parallel
    /// ranged parts.
    pub connections: u32,
}

/// The most failures a job keeps (name and error) for [`JobStatus::failures`]: a job of
/// ten million objects that all fail holds a thousand, not ten million; the rest are
/// counted by reason and logged at debug.
pub const MAX_KEPT_FAILURES: usize = 1000;

/// One object that failed, with why.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskFailure {
    /// The object's name, or the URL when no name could be made of it.
    pub name: String,
    /// Why it failed.
    pub error: Arc<DownloadError>,
}

/// A snapshot of one job. Owned: holding it locks nothing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobStatus {
    /// The job.
    pub id: JobId,
    /// Its description.
    pub description: String,
    /// How many objects the job has, once known.
    pub total: Option<u64>,
    /// Objects handed to a mountpath's queue so far.
    pub scheduled: u64,
    /// Objects that landed.
    pub finished: u64,
    /// Objects that failed.
    pub failed: u64,
    /// Objects skipped: already present (see [`Existing`]).
    pub skipped: u64,
    /// Objects not downloaded because the job was aborted.
    pub cancelled: u64,
    /// Files a sync job deleted because their objects are gone remotely (see
    /// [`JobSpec::sync`]). Not part of `total`.
    pub deleted: u64,
    /// Bytes moved: those of the objects that landed, of objects still in flight, and of
    /// transfers that did not land (failed or cancelled; an interrupted one keeps them for
    /// the next run). Bytes taken over from an earlier run count too.
    pub bytes: u64,
    /// The bytes of the objects that landed.
    pub bytes_landed: u64,
    /// Attempts beyond each object's first: how often something went wrong and was retried.
    pub retries: u64,
    /// The first [`MAX_KEPT_FAILURES`] failed objects and why ([`Detail::All`] only); every
    /// one is counted in `failed` and [`failure_reasons`](JobStatus::failure_reasons), and
    /// logged at debug.
    pub failures: Vec<TaskFailure>,
    /// How many objects failed for each reason (`"HTTP status 404"`, `"request failed"`,
    /// …): exact for every failure, however many.
    pub failure_reasons: std::collections::BTreeMap<String, u64>,
    /// Objects being downloaded now.
    pub in_flight: Vec<TaskInfo>,
    /// When the job was submitted.
    pub submitted_at: SystemTime,
    /// When it finished, once it has.
    pub finished_at: Option<SystemTime>,
    /// Whether it was aborted.
    pub aborted: bool,
    /// Whether every object has been handed out (or dropped, for an aborted job).
    pub all_dispatched: bool,
}

impl JobStatus {
    /// Whether the job is over: nothing of it is queued or in flight, and nothing more will be.
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }
}
