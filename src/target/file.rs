//! One object from request to landed file: GET, stream through a [`ProgressReader`] into a
//! work file, check the length, optionally fsync, rename into place.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use log::{debug, trace, warn};

use crate::cancel::CancelToken;
use crate::engine::parts::PartsPolicy;
use crate::engine::rate::RateLimiter;
use crate::engine::retry::RetryPolicy;
use crate::engine::verify::{DigestMismatch, Sha256Digest};
use crate::http::HttpClient;
use crate::progress::{self, Progress, ProgressReader};
use crate::source::url::{self, UrlError};
use crate::target::mountpath::Mountpath;
use crate::target::name::ObjectName;
use crate::target::work::WorkFile;

/// Size of the per-thread buffer bodies are streamed through, matching the connection's
/// receive buffer ([`HttpConfig::input_buffer_bytes`](crate::HttpConfig::input_buffer_bytes)).
/// `std::io::copy`'s 8 KiB was measured 1.4–2× slower for large bodies, and 256 KiB slower
/// than 1 MiB for a 1 GiB stream.
pub const BUFFER_BYTES: usize = 1024 * 1024;

thread_local! {
    pub(crate) static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Why one object did not land. Each variant names the URL (redacted) or the local path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The URL was refused before any request.
    #[error("bad URL")]
    Url(#[from] UrlError),
    /// The server answered with a status other than 200.
    #[error("GET {url}: HTTP status {status}")]
    Status {
        /// The URL, redacted.
        url: String,
        /// The status code.
        status: u16,
    },
    /// No response: connection refused or reset, DNS, TLS, timeout, protocol error.
    #[error("GET {url}: request failed")]
    Request {
        /// The URL, redacted.
        url: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The body broke off: the connection was closed or reset mid-body, or a read timed out.
    #[error("GET {url}: body broke off after {received} bytes")]
    Body {
        /// The URL, redacted.
        url: String,
        /// Bytes received before the failure.
        received: u64,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The body was shorter or longer than the `Content-Length` the server sent.
    #[error("GET {url}: body has {received} bytes, Content-Length said {expected}")]
    Length {
        /// The URL, redacted.
        url: String,
        /// The length the server announced.
        expected: u64,
        /// The bytes that arrived.
        received: u64,
    },
    /// The bytes that arrived do not have the digest they should have.
    #[error("GET {url}: {mismatch}")]
    Digest {
        /// The URL, redacted.
        url: String,
        /// Which digest, expected and actual.
        mismatch: Box<DigestMismatch>,
    },
    /// The [`EgressPolicy`](crate::EgressPolicy) refused the address; nothing was sent.
    #[error("GET {url}: refused")]
    Egress {
        /// The URL, redacted.
        url: String,
        /// Which address, and why.
        #[source]
        refused: Box<crate::http::egress::EgressRefused>,
    },
    /// The transfer was cancelled through its [`CancelToken`].
    #[error("GET {url}: cancelled")]
    Cancelled {
        /// The URL, redacted.
        url: String,
    },
    /// The transfer panicked (a bug in haul or in a library it uses); the worker survived.
    #[error("GET {url}: panicked: {message}")]
    Panicked {
        /// The URL, redacted.
        url: String,
        /// The panic's message.
        message: String,
    },
    /// The object could not be stored in its S3 target (after the store's retries).
    #[error("storing {key}")]
    Store {
        /// `s3://bucket/key`.
        key: String,
        /// What failed.
        #[source]
        source: Box<crate::s3::S3Error>,
    },
    /// Going to an S3 target, the object needs a larger buffer (one part, or the whole
    /// object when smaller) than the downloader's whole memory budget.
    #[error(
        "GET {url}: needs a buffer of {needed} bytes, more than the whole memory budget of {budget} bytes"
    )]
    Budget {
        /// The URL, redacted.
        url: String,
        /// The buffer it needs.
        needed: u64,
        /// The budget.
        budget: u64,
    },
    /// A local file operation failed (the disk is full, the directory is not writable, ...).
    #[error("{action} {path}")]
    Local {
        /// What haul was doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

impl DownloadError {
    /// Whether the error is a cancellation rather than a failure.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, DownloadError::Cancelled { .. })
    }
}

/// One object to download: where from, under which name, with which extra request headers,
/// retry policy and expected digest.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectTask {
    /// The URL to GET.
    pub url: String,
    /// The name the object lands under.
    pub name: ObjectName,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// How failed attempts are retried. Default [`RetryPolicy::default`].
    pub retry: RetryPolicy,
    /// The SHA-256 the object must have; a mismatch fails the attempt (and is retried).
    pub sha256: Option<Sha256Digest>,
    /// Split a large object into ranged parts over several connections. Default off.
    pub parts: Option<PartsPolicy>,
}

impl std::fmt::Debug for ObjectTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry signatures, header values credentials.
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ObjectTask")
            .field("url", &url::redact(&self.url))
            .field("name", &self.name)
            .field("headers", &header_names)
            .field("retry", &self.retry)
            .field("sha256", &self.sha256)
            .field("parts", &self.parts)
            .finish()
    }
}

impl ObjectTask {
    /// A task for `url`, landing under `name`.
    pub fn new(url: impl Into<String>, name: ObjectName) -> ObjectTask {
        ObjectTask {
            url: url.into(),
            name,
            headers: Vec::new(),
            retry: RetryPolicy::default(),
            sha256: None,
            parts: None,
        }
    }

    /// A task for `url`, landing under the name the URL implies (its last path segment).
    ///
    /// # Errors
    ///
    /// A [`UrlError`] when the URL is not http(s) or implies no safe name.
    pub fn from_url(url: impl Into<String>) -> Result<ObjectTask, UrlError> {
        let url = url.into();
        let name = url::object_name(&url)?;
        Ok(ObjectTask::new(url, name))
    }

    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> ObjectTask {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets [`retry`](ObjectTask::retry).
    pub fn retry(mut self, policy: RetryPolicy) -> ObjectTask {
        self.retry = policy;
        self
    }

    /// Sets [`sha256`](ObjectTask::sha256).
    pub fn sha256(mut self, digest: Sha256Digest) -> ObjectTask {
        self.sha256 = Some(digest);
        self
    }

    /// Sets [`parts`](ObjectTask::parts).
    pub fn parts(mut self, policy: PartsPolicy) -> ObjectTask {
        self.parts = Some(policy);
        self
    }
}

/// An object that landed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Landed {
    /// Where it is now.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The `ETag` the server sent, if any.
    pub etag: Option<String>,
    /// Attempts it took (1 when nothing went wrong).
    pub attempts: u32,
    /// Bytes that arrived more than once: received, then thrown away because the object had
    /// to start over (the server ignored a range, its ETag changed, a digest mismatched).
    /// Bytes kept across a resume are not counted.
    pub refetched: u64,
    /// Bytes taken over from a work file an earlier run left (after a crash).
    pub resumed: u64,
}

/// Downloads one object into `mountpath`, retrying and resuming as its task says.
///
/// The body streams through a [`ProgressReader`] (so `progress` counts every byte and
/// `cancel` stops the transfer within one read) into a work file in the mountpath's work
/// directory, and is renamed into place only when complete, of the announced length and (when
/// the task has one) of the right SHA-256. A body that breaks off is resumed with
/// `Range: bytes=N-` and `If-Range` on the validator (a strong `ETag`, else
/// `Last-Modified`): only the missing bytes are fetched again. A server that ignores the
/// range, or whose object changed, starts the object over, and haul logs why. The landed
/// file's modification time is the server's `Last-Modified`, when it sent one.
///
/// On a failure or cancellation the work file is removed: no partial object is ever visible.
/// A process killed mid-transfer leaves its work file and a small sidecar (`.part.meta`:
/// the redacted URL and the validator) in the work directory; the next download of the same
/// name and URL resumes it when the validator still matches.
///
/// ```
/// use haul::{CancelToken, HttpClient, Mountpath, ObjectTask, Progress};
/// # let origin = haul::origin::Origin::start()?;
/// # let url = origin.url("/data/obj-1.bin?size=1000");
/// # let dir = std::env::temp_dir().join(format!("haul-doc-task-{}", std::process::id()));
///
/// let client = HttpClient::default();
/// let mountpath = Mountpath::new(&dir)?;
/// let task = ObjectTask::from_url(url)?;
/// let progress = Progress::new();
/// let landed = haul::download(&client, &task, &mountpath, &progress, &CancelToken::new())?;
/// assert_eq!(landed.bytes, 1000);
/// assert_eq!(progress.done(), 1000);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// A [`DownloadError`] naming the URL or the local path.
pub fn download(
    client: &HttpClient,
    task: &ObjectTask,
    mountpath: &Mountpath,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<Landed, DownloadError> {
    let request = Request {
        url: &task.url,
        name: &task.name,
        headers: &task.headers,
        timeout: None,
        limiter: None,
        retry: &task.retry,
        sha256: task.sha256.as_ref(),
        retries: None,
        revalidate: None,
        parts: task.parts.as_ref(),
    };
    match fetch(client, &request, mountpath, progress, cancel)? {
        Fetched::Landed(landed) => Ok(landed),
        Fetched::Unchanged => unreachable!("no revalidation was asked for"),
    }
}

/// What the downloader's joggers pass for one object: borrowed from the task and its job.
pub(crate) struct Request<'a> {
    pub(crate) url: &'a str,
    pub(crate) name: &'a ObjectName,
    pub(crate) headers: &'a [(String, String)],
    pub(crate) timeout: Option<std::time::Duration>,
    pub(crate) limiter: Option<&'a RateLimiter>,
    pub(crate) retry: &'a RetryPolicy,
    pub(crate) sha256: Option<&'a Sha256Digest>,
    /// Counts every retry, landed or not.
    pub(crate) retries: Option<&'a std::sync::atomic::AtomicU64>,
    /// The file already there (size, modification time): ask whether the object changed.
    pub(crate) revalidate: Option<(u64, SystemTime)>,
    /// Split a large object into ranged parts over several connections.
    pub(crate) parts: Option<&'a PartsPolicy>,
}

/// What became of a request.
#[derive(Debug)]
pub(crate) enum Fetched {
    Landed(Landed),
    /// Revalidation found the file already there up to date.
    Unchanged,
}

/// [`download`] for a borrowed request, with the job's timeout and rate limit.
pub(crate) fn fetch(
    client: &HttpClient,
    task: &Request<'_>,
    mountpath: &Mountpath,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<Fetched, DownloadError> {
    crate::http::transport::with_cancel(cancel, || {
        fetch_inner(client, task, mountpath, progress, cancel)
    })
}

/// A failed attempt: the error, and whether another attempt could go better.
pub(crate) struct Failure {
    pub(crate) error: DownloadError,
    pub(crate) retry: bool,
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn fatal(error: DownloadError) -> Failure {
        Failure {
            error,
            retry: false,
            retry_after: None,
        }
    }

    pub(crate) fn transient(error: DownloadError) -> Failure {
        Failure {
            error,
            retry: true,
            retry_after: None,
        }
    }
}

impl From<DownloadError> for Failure {
    fn from(error: DownloadError) -> Failure {
        Failure::fatal(error)
    }
}

/// Runs `attempt` (given its number, from 1) until it succeeds, fails for good, is
/// cancelled, or the task's retry policy gives up; waits the policy's backoff (or the
/// server's `Retry-After`) between attempts, cancellably, and counts each retry.
pub(crate) fn retrying<T>(
    task: &Request<'_>,
    cancel: &CancelToken,
    mut attempt: impl FnMut(u32) -> Result<T, Failure>,
) -> Result<T, DownloadError> {
    let cancelled = || DownloadError::Cancelled {
        url: url::redact(task.url),
    };
    let seed = crate::downloader::hrw::hash(task.url.as_bytes())
        ^ SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into());
    let mut number = 1;
    loop {
        let failure = match attempt(number) {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        if cancel.is_cancelled() || failure.error.is_cancelled() {
            return Err(cancelled());
        }
        if !failure.retry {
            return Err(failure.error);
        }
        let Some(wait) = task.retry.delay(number, failure.retry_after, seed) else {
            return Err(failure.error);
        };
        warn!(
            "{}; attempt {number} of {} failed, retrying in {wait:.2?}",
            chain(&failure.error),
            task.retry.attempts
        );
        if !cancel.sleep(wait) {
            return Err(cancelled());
        }
        number += 1;
        if let Some(retries) = task.retries {
            retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

fn fetch_inner(
    client: &HttpClient,
    task: &Request<'_>,
    mountpath: &Mountpath,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<Fetched, DownloadError> {
    let shown = url::redact(task.url);
    url::check(task.url)?;
    if cancel.is_cancelled() {
        return Err(DownloadError::Cancelled { url: shown });
    }
    let final_path = mountpath.path_of(task.name);
    let mut work = WorkFile::open(mountpath, task.name, &shown)?;
    let resumed = work.len;
    let mut state = Attempts {
        attempt: 1,
        refetched: 0,
        revalidate: task.revalidate,
        no_split: false,
    };
    let unchanged = retrying(task, cancel, |attempt_number| {
        state.attempt = attempt_number;
        attempt(client, task, &mut work, &mut state, progress, cancel)
    })?;
    if let Done::Unchanged = unchanged {
        return Ok(Fetched::Unchanged);
    }
    let bytes = work.len;
    let etag = work.etag.clone();
    work.land(&final_path, mountpath.fsyncs())?;
    trace!("landed {} ({bytes} bytes)", final_path.display());
    Ok(Fetched::Landed(Landed {
        path: final_path,
        bytes,
        etag,
        attempts: state.attempt,
        refetched: state.refetched,
        resumed,
    }))
}

/// An error and its sources on one line, for logs.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

struct Attempts {
    attempt: u32,
    refetched: u64,
    /// The file already there, until a response has been compared with it.
    revalidate: Option<(u64, SystemTime)>,
    /// The server cannot be asked for the opening part (it refused the range): one stream.
    no_split: bool,
}

/// A successful attempt.
enum Done {
    /// The work file holds the whole, verified object.
    Complete,
    /// The file already there is up to date.
    Unchanged,
}

/// One GET: from the work file's end (with `Range` and `If-Range`) when it has bytes and a
/// validator, else from zero. On success the work file holds the whole, verified object.
fn attempt(
    client: &HttpClient,
    task: &Request<'_>,
    work: &mut WorkFile,
    state: &mut Attempts,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<Done, Failure> {
    let shown = || url::redact(task.url);
    let mut headers = task.headers.to_vec();
    // Revalidation in one request without a body: "the bytes after mine, if the object is
    // still the one of this date". Unchanged and the same size: 416 `bytes */SIZE`.
    let revalidate = state.revalidate.filter(|_| work.len == 0);
    if let Some((size, modified)) = revalidate {
        headers.push(("range".to_owned(), format!("bytes={size}-")));
        headers.push((
            "if-range".to_owned(),
            crate::engine::retry::format_http_date(modified),
        ));
    }
    if work.len > 0 {
        match work.validator() {
            Some(validator) => {
                headers.push(("range".to_owned(), format!("bytes={}-", work.len)));
                headers.push(("if-range".to_owned(), validator.to_owned()));
            }
            None => state.refetched += work.truncate()?,
        }
    }
    // Splitting: open with a ranged GET for the first part; its Content-Range tells the size.
    let split = task
        .parts
        .filter(|p| p.active() && !state.no_split && work.len == 0 && revalidate.is_none());
    if let Some(policy) = split {
        headers.push((
            "range".to_owned(),
            format!("bytes=0-{}", policy.min_object_bytes - 1),
        ));
    }
    let response = client
        .get(task.url, &headers, task.timeout)
        .map_err(|e| request_failure(e, shown(), cancel))?;
    let status = response.status().as_u16();
    let etag = header(&response, "etag");
    let last_modified = header(&response, "last-modified");
    if let Some((size, modified)) = revalidate {
        state.revalidate = None;
        let same_time = last_modified
            .as_deref()
            .and_then(crate::engine::retry::parse_http_date)
            .is_some_and(|t| same_second(t, modified));
        let unchanged = match status {
            416 => {
                header(&response, "content-range").as_deref().map(str::trim)
                    == Some(format!("bytes */{size}").as_str())
            }
            // A server that ignores ranges: compare what it says.
            200 => same_time && crate::http::content_length(response.headers()) == Some(size),
            _ => false,
        };
        if unchanged {
            debug!("GET {}: unchanged since the file there", shown());
            return Ok(Done::Unchanged);
        }
        if matches!(status, 206 | 416) {
            // Same object, but the file there is not all of it: download it whole.
            debug!("GET {}: the file there is incomplete", shown());
            drop(response);
            return attempt(client, task, work, state, progress, cancel);
        }
    }
    if let Some(policy) = split {
        let range = header(&response, "content-range");
        let total = range.as_deref().and_then(parse_content_range);
        match (status, total) {
            (206, Some((0, Some(total)))) if total > policy.min_object_bytes => {
                return split_download(
                    client,
                    task,
                    policy,
                    work,
                    state,
                    total,
                    etag,
                    last_modified,
                    response,
                    progress,
                    cancel,
                );
            }
            // The whole object fit in the opening part: read it as usual.
            (206, Some((0, Some(total)))) => {
                work.set_validator(
                    etag,
                    last_modified,
                    crate::target::work::resumable(Some(total)),
                )?;
                return stream_body(
                    client,
                    task,
                    work,
                    state,
                    response,
                    Some(total),
                    progress,
                    cancel,
                );
            }
            // A range it will not serve (an empty object answers 416): ask plainly.
            (206 | 416, _) => {
                drop(response);
                state.no_split = true;
                return attempt(client, task, work, state, progress, cancel);
            }
            _ => {}
        }
    }
    let total = match status {
        200 => {
            if work.len > 0 {
                let why = match (&work.etag, &etag) {
                    (Some(old), Some(new)) if old != new => {
                        format!("its ETag changed from {old} to {new}")
                    }
                    _ => "the server ignored the range".to_owned(),
                };
                warn!(
                    "GET {}: starting over after {} bytes: {why}",
                    shown(),
                    work.len
                );
                state.refetched += work.truncate()?;
            }
            crate::http::content_length(response.headers())
        }
        206 if work.len > 0 => {
            let range = header(&response, "content-range");
            match range.as_deref().and_then(parse_content_range) {
                Some((start, total)) if start == work.len => total,
                _ => {
                    state.refetched += work.truncate()?;
                    return Err(Failure::transient(DownloadError::Status {
                        url: shown(),
                        status,
                    }));
                }
            }
        }
        416 if work.len > 0 => {
            // `bytes */N` with N what we hold: the range starts at the end, so we have it
            // all (the body that brought it announced more than it sent). If-Range held,
            // or the server would have answered 200, so the bytes are of this object.
            if unsatisfied_size(&response) == Some(work.len) {
                debug!("GET {}: complete at {} bytes", shown(), work.len);
                return verify(task, work, state).map(|()| Done::Complete);
            }
            // Otherwise the object is now shorter than what we hold: it changed.
            state.refetched += work.truncate()?;
            return Err(Failure::transient(DownloadError::Status {
                url: shown(),
                status,
            }));
        }
        _ => {
            debug!("GET {}: status {status}", shown());
            return Err(status_failure(&response, shown()));
        }
    };
    work.set_validator(etag, last_modified, crate::target::work::resumable(total))?;
    stream_body(client, task, work, state, response, total, progress, cancel)
}

/// Appends `response`'s body to the work file and checks the result: its length against
/// `total`, and the task's digest.
#[allow(clippy::too_many_arguments)]
fn stream_body(
    client: &HttpClient,
    task: &Request<'_>,
    work: &mut WorkFile,
    state: &mut Attempts,
    response: ureq::http::Response<ureq::Body>,
    total: Option<u64>,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<Done, Failure> {
    let shown = || url::redact(task.url);
    progress.set_total(total);
    progress.set_done(work.len);
    let reader = crate::http::StallGuard::new(
        ProgressReader::new(response.into_body().into_reader(), progress, cancel),
        client.config(),
    );
    let streamed = work.append(|file| {
        BUFFER.with_borrow_mut(|buffer| {
            if buffer.len() != BUFFER_BYTES {
                buffer.resize(BUFFER_BYTES, 0);
            }
            match task.limiter {
                None => stream(&mut { reader }, file, buffer),
                Some(limiter) => {
                    let mut throttled = Throttled {
                        inner: reader,
                        limiter,
                        cancel,
                    };
                    stream(&mut throttled, file, buffer)
                }
            }
        })
    });
    match streamed {
        Ok(_) => {}
        Err(StreamError::Read(e, received)) if progress::is_cancelled(&e) => {
            debug!("GET {}: cancelled after {received} bytes", shown());
            return Err(Failure::fatal(DownloadError::Cancelled { url: shown() }));
        }
        Err(StreamError::Read(source, _)) => {
            return Err(Failure::transient(DownloadError::Body {
                url: shown(),
                received: work.len,
                source,
            }));
        }
        Err(StreamError::Write(source)) => return Err(work.error("writing", source).into()),
    }
    if let Some(expected) = total.filter(|&t| t != work.len) {
        let received = work.len;
        if received > expected {
            state.refetched += work.truncate()?;
        }
        return Err(Failure::transient(DownloadError::Length {
            url: shown(),
            expected,
            received,
        }));
    }
    verify(task, work, state).map(|()| Done::Complete)
}

/// An object larger than its opening part: the rest in ranged parts over several
/// connections (`parts.rs`), into a work file sized up front. No sidecar: a file with holes
/// cannot be resumed after a crash.
#[allow(clippy::too_many_arguments)]
fn split_download(
    client: &HttpClient,
    task: &Request<'_>,
    policy: &PartsPolicy,
    work: &mut WorkFile,
    state: &mut Attempts,
    total: u64,
    etag: Option<String>,
    last_modified: Option<String>,
    first: ureq::http::Response<ureq::Body>,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<Done, Failure> {
    // A file with holes cannot be resumed after a crash: no sidecar.
    work.set_validator(etag.clone(), last_modified, false)?;
    work.preallocate(total)?;
    progress.set_total(Some(total));
    progress.set_done(0);
    let strong = etag.filter(|e| !e.starts_with("W/"));
    let result = crate::engine::parts::fetch(
        client,
        task,
        policy,
        work.file_ref(),
        &work.path,
        total,
        strong.as_deref(),
        first,
        progress,
        cancel,
    );
    if let Err(failure) = result {
        // Parts may be missing anywhere: the next attempt starts over. An object that
        // changed under its parts (412), or a server that stopped honouring ranges (200),
        // is fetched on one connection from then on: a single stream cannot mix versions.
        if matches!(
            failure.error,
            DownloadError::Status {
                status: 200 | 412,
                ..
            }
        ) {
            warn!(
                "GET {}: the parts could not be stitched; fetching it on one connection",
                url::redact(task.url)
            );
            state.no_split = true;
        }
        state.refetched += progress.done();
        work.truncate()?;
        return Err(failure);
    }
    work.len = total;
    verify(task, work, state).map(|()| Done::Complete)
}

/// Whether two times fall in the same second (HTTP dates have no finer resolution).
fn same_second(a: SystemTime, b: SystemTime) -> bool {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
    };
    secs(a).ok() == secs(b).ok()
}

/// Checks a complete work file against the task's digest, if it has one.
fn verify(task: &Request<'_>, work: &mut WorkFile, state: &mut Attempts) -> Result<(), Failure> {
    let Some(expected) = task.sha256 else {
        return Ok(());
    };
    let actual = Sha256Digest::of_file(&work.path).map_err(|e| work.error("reading", e))?;
    if actual == *expected {
        return Ok(());
    }
    state.refetched += work.truncate()?;
    Err(Failure::transient(DownloadError::Digest {
        url: url::redact(task.url),
        mismatch: DigestMismatch::new("sha256", expected.to_string(), actual.to_string()),
    }))
}

/// An unwanted status: retried when the server may answer better later (408, 429, 5xx),
/// after its `Retry-After` for 429 and 503.
pub(crate) fn status_failure(response: &ureq::http::Response<ureq::Body>, url: String) -> Failure {
    let status = response.status().as_u16();
    let retry_after = match status {
        429 | 503 => header(response, "retry-after")
            .and_then(|v| crate::engine::retry::parse_retry_after(&v, SystemTime::now())),
        _ => None,
    };
    Failure {
        error: DownloadError::Status { url, status },
        retry: matches!(status, 408 | 429 | 500..=599),
        retry_after,
    }
}

/// Classifies a request that got no response.
pub(crate) fn request_failure(error: ureq::Error, url: String, cancel: &CancelToken) -> Failure {
    if cancel.is_cancelled() {
        return Failure::fatal(DownloadError::Cancelled { url });
    }
    if let Some(refused) = crate::http::egress::refusal(&error).cloned() {
        return Failure::fatal(DownloadError::Egress {
            url,
            refused: Box::new(refused),
        });
    }
    let retry = is_transient(&error);
    Failure {
        error: DownloadError::Request {
            url,
            source: Box::new(error),
        },
        retry,
        retry_after: None,
    }
}

/// Whether a request error could go away on its own: network trouble and timeouts, not TLS,
/// protocol or configuration errors.
pub(crate) fn is_transient(error: &ureq::Error) -> bool {
    matches!(
        error,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
    )
}

pub(crate) fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The size a 416's `Content-Range: bytes */SIZE` gives: the object's whole length.
pub(crate) fn unsatisfied_size(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    header(response, "content-range")?
        .trim()
        .strip_prefix("bytes */")?
        .parse()
        .ok()
}

/// `bytes START-END/TOTAL` → (START, TOTAL when known).
pub(crate) fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, _end) = span.split_once('-')?;
    let total = match total {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.parse().ok()?, total))
}

/// A reader that pays the job's rate limiter for every byte it returns.
pub(crate) struct Throttled<'a, R> {
    pub(crate) inner: R,
    pub(crate) limiter: &'a RateLimiter,
    pub(crate) cancel: &'a CancelToken,
}

impl<R: Read> Read for Throttled<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Small reads keep the pacing smooth and the limiter fair between connections.
        let len = buf.len().min(64 * 1024);
        let n = self.inner.read(&mut buf[..len])?;
        self.limiter.take(n as u64, self.cancel);
        Ok(n)
    }
}

pub(crate) enum StreamError {
    Read(io::Error, u64),
    Write(io::Error),
}

/// Copies `reader` into `out`, filling `buffer` before each write to keep writes large.
/// Returns the bytes written; on a read error, what was read before it is written first.
pub(crate) fn stream(
    reader: &mut impl Read,
    out: &mut impl Write,
    buffer: &mut [u8],
) -> Result<u64, StreamError> {
    let mut received = 0u64;
    loop {
        let mut filled = 0;
        let mut end = None;
        while filled < buffer.len() {
            match reader.read(&mut buffer[filled..]) {
                Ok(0) => {
                    end = Some(Ok(()));
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    end = Some(Err(e));
                    break;
                }
            }
        }
        if filled > 0 {
            out.write_all(&buffer[..filled])
                .map_err(StreamError::Write)?;
            received += filled as u64;
        }
        match end {
            None => {}
            Some(Ok(())) => return Ok(received),
            Some(Err(e)) => return Err(StreamError::Read(e, received)),
        }
    }
}
