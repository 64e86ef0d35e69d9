//! S3 targets: a [`Downloader`](crate::Downloader) that lands objects in an S3-compatible
//! store (SeaweedFS, MinIO, Ceph, AWS) instead of local directories.
//!
//! One object, on its jogger's thread: the GET's body is read into a buffer of at most one
//! part, taken from the downloader's memory budget. An object that fits in one part is
//! stored with one PUT; a larger one becomes a multipart upload, a part at a time. Either
//! way the object appears only when it is complete and verified: a failed, cancelled or
//! panicking transfer aborts its multipart upload (the `Upload`'s `Drop`), so no partial
//! object and no dangling upload is left. A body that breaks off resumes from the byte it
//! stopped at (`Range` + `If-Range`), like a download to a file.

use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use log::{debug, trace, warn};
use sha2::Digest as _;

use crate::cancel::CancelToken;
use crate::fetch::{BudgetPermit, MemoryBudget};
use crate::http::HttpClient;
use crate::name::ObjectName;
use crate::progress::{self, Progress, ProgressReader};
use crate::s3::{Bucket, S3Error};
use crate::task::{self, DownloadError, Failure, Request, Throttled};
use crate::url;
use crate::verify::{DigestMismatch, Sha256Digest};

/// The smallest part S3 takes (except an upload's last part): 5 MiB.
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// The default part size: 8 MiB.
pub const DEFAULT_PART_BYTES: u64 = 8 << 20;
/// The most parts one upload may have.
const MAX_PARTS: u64 = 10_000;

/// A place in an S3-compatible store where a [`Downloader`](crate::Downloader) lands
/// objects: a bucket and a key prefix. Object `name` lands as key `prefix + name`.
///
/// Give a downloader one or more targets instead of mountpaths
/// ([`DownloaderBuilder::s3_target`](crate::DownloaderBuilder::s3_target)); objects are
/// spread over several targets by HRW, as over mountpaths, and each target has its own
/// queue and `workers_per_mountpath` joggers.
///
/// ```no_run
/// use haul::s3::{Bucket, S3Config};
/// use haul::{Downloader, JobSpec, S3Target};
///
/// let bucket = Bucket::new("landing", &S3Config::from_env())?;
/// let downloader = Downloader::builder()
///     .s3_target(S3Target::new(&bucket, "shards/").part_size(16 << 20))
///     .workers_per_mountpath(16)
///     .build()?;
/// let job = downloader.submit(JobSpec::range("https://host/shard-{0000..0999}.tar"))?;
/// # let _ = job;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct S3Target {
    bucket: Bucket,
    prefix: String,
    part_size: u64,
}

impl fmt::Debug for S3Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Target")
            .field("bucket", &self.bucket.name())
            .field("prefix", &self.prefix)
            .field("part_size", &self.part_size)
            .finish()
    }
}

impl S3Target {
    /// Objects land in `bucket` under `prefix`; a prefix that is not empty and does not end
    /// with `/` gets one (`"shards"` is the directory `shards/`).
    pub fn new(bucket: &Bucket, prefix: impl Into<String>) -> S3Target {
        let mut prefix = prefix.into();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        S3Target {
            bucket: bucket.clone(),
            prefix,
            part_size: DEFAULT_PART_BYTES,
        }
    }

    /// The part size of multipart uploads, and so the most an object in flight buffers:
    /// objects up to this size are stored with one PUT. Default [`DEFAULT_PART_BYTES`]; at
    /// least [`MIN_PART_BYTES`] (checked when the downloader is built). An object too large
    /// for 10,000 parts of this size uses larger parts.
    pub fn part_size(mut self, bytes: u64) -> S3Target {
        self.part_size = bytes;
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The key prefix (empty, or ending with `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The configured part size.
    pub fn configured_part_size(&self) -> u64 {
        self.part_size
    }

    /// The key object `name` lands under.
    pub fn key_of(&self, name: &ObjectName) -> String {
        format!("{}{}", self.prefix, name.as_str())
    }

    /// `s3://bucket/prefix`, for messages.
    pub(crate) fn shown(&self) -> String {
        format!("s3://{}/{}", self.bucket.name(), self.prefix)
    }

    /// A stable identity for HRW placement: the store, the bucket and the prefix.
    pub(crate) fn id(&self) -> u64 {
        crate::hrw::hash(format!("{}/{}", self.bucket.url(), self.prefix).as_bytes())
    }

    /// The part size for an object of `total` bytes: the configured one, or larger when
    /// 10,000 parts of it would not hold the object.
    fn part_for(&self, total: Option<u64>) -> u64 {
        match total {
            Some(total) => self.part_size.max(total.div_ceil(MAX_PARTS)),
            None => self.part_size,
        }
    }
}

/// One object from its URL into an S3 target. Returns the bytes stored.
pub(crate) fn store(
    client: &HttpClient,
    task: &Request<'_>,
    target: &S3Target,
    budget: &Arc<MemoryBudget>,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<u64, DownloadError> {
    crate::transport::with_cancel(cancel, || {
        let shown = url::redact(task.url);
        url::check(task.url)?;
        if cancel.is_cancelled() {
            return Err(DownloadError::Cancelled { url: shown });
        }
        let mut upload = Upload::new(target, target.key_of(task.name), task.sha256.is_some());
        task::retrying(task, cancel, |_| {
            attempt(client, task, &mut upload, budget, progress, cancel)
        })?;
        let bytes = upload.received;
        upload.finish(task)?;
        trace!(
            "stored s3://{}/{} ({bytes} bytes)",
            target.bucket.name(),
            upload.key
        );
        Ok(bytes)
    })
}

/// One object on its way into the store: the part being filled, and the upload so far.
struct Upload<'a> {
    target: &'a S3Target,
    key: String,
    /// The part being filled; its length is the part size (or the whole object).
    buffer: Vec<u8>,
    filled: usize,
    /// The budget's share for `buffer`.
    permit: Option<BudgetPermit>,
    /// Bytes of the object taken from the source: uploaded parts and `filled`.
    received: u64,
    /// The object's size, when the source said.
    total: Option<u64>,
    upload_id: Option<String>,
    parts: Vec<(u32, String)>,
    /// The source's validators, for resuming with `If-Range`.
    etag: Option<String>,
    last_modified: Option<String>,
    /// A SHA-256 of everything received, when the task expects one.
    hasher: Option<sha2::Sha256>,
}

impl<'a> Upload<'a> {
    fn new(target: &'a S3Target, key: String, hash: bool) -> Upload<'a> {
        Upload {
            target,
            key,
            buffer: Vec::new(),
            filled: 0,
            permit: None,
            received: 0,
            total: None,
            upload_id: None,
            parts: Vec::new(),
            etag: None,
            last_modified: None,
            hasher: hash.then(sha2::Sha256::new),
        }
    }

    fn store_error(&self, source: S3Error) -> DownloadError {
        DownloadError::Store {
            key: format!("s3://{}/{}", self.target.bucket.name(), self.key),
            source: Box::new(source),
        }
    }

    /// What `If-Range` can carry: a strong ETag, else `Last-Modified`.
    fn validator(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }

    /// Throws away everything received (the object changed, or its bytes were wrong) and
    /// the upload so far. Returns the bytes thrown away.
    fn restart(&mut self) -> u64 {
        let dropped = self.received;
        self.abort();
        self.parts.clear();
        self.filled = 0;
        self.received = 0;
        self.total = None;
        self.permit = None;
        self.buffer = Vec::new();
        if let Some(hasher) = &mut self.hasher {
            *hasher = sha2::Sha256::new();
        }
        dropped
    }

    /// Takes the buffer for an object of `total` bytes from the budget, once.
    fn reserve(
        &mut self,
        budget: &Arc<MemoryBudget>,
        cancel: &CancelToken,
        task: &Request<'_>,
    ) -> Result<(), Failure> {
        if self.permit.is_some() {
            return Ok(());
        }
        let part = self.target.part_for(self.total);
        let bytes = self.total.map_or(part, |t| t.min(part));
        if bytes > budget.total() {
            return Err(Failure::fatal(DownloadError::Budget {
                url: url::redact(task.url),
                needed: bytes,
                budget: budget.total(),
            }));
        }
        let permit = budget.acquire(bytes, cancel).map_err(|_| {
            Failure::fatal(DownloadError::Cancelled {
                url: url::redact(task.url),
            })
        })?;
        self.buffer = vec![0; usize::try_from(bytes).expect("a part fits in memory")];
        self.permit = Some(permit);
        Ok(())
    }

    /// Reads `reader` to its end, uploading each part as the buffer fills.
    fn take(&mut self, reader: &mut impl Read) -> Result<(), Taken> {
        loop {
            if self.filled == self.buffer.len() {
                if self.total == Some(self.received) {
                    return Ok(()); // the buffer holds the last part
                }
                self.send_part().map_err(Taken::Store)?;
            }
            match reader.read(&mut self.buffer[self.filled..]) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    if let Some(hasher) = &mut self.hasher {
                        hasher.update(&self.buffer[self.filled..self.filled + n]);
                    }
                    self.filled += n;
                    self.received += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Taken::Read(e)),
            }
        }
    }

    /// Uploads the buffer as the next part, starting the multipart upload first if needed.
    fn send_part(&mut self) -> Result<(), S3Error> {
        let bucket = &self.target.bucket;
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = bucket.create_upload(&self.key)?;
                debug!("s3://{}/{}: multipart upload {id}", bucket.name(), self.key);
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as u32 + 1;
        let etag =
            bucket.upload_part(&self.key, &upload_id, number, &self.buffer[..self.filled])?;
        self.parts.push((number, etag));
        self.filled = 0;
        Ok(())
    }

    /// Stores what was received: one PUT, or the last part and the completion.
    fn finish(&mut self, task: &Request<'_>) -> Result<(), DownloadError> {
        let bucket = &self.target.bucket;
        let result = match self.upload_id.clone() {
            None => bucket.put(&self.key, &self.buffer[..self.filled]),
            Some(upload_id) => {
                let last = if self.filled > 0 {
                    self.send_part()
                } else {
                    Ok(())
                };
                last.and_then(|()| bucket.complete_upload(&self.key, &upload_id, &self.parts))
            }
        };
        match result {
            Ok(()) => {
                self.upload_id = None; // complete: nothing to abort
                Ok(())
            }
            Err(_) if crate::transport::is_cancelled() => Err(DownloadError::Cancelled {
                url: url::redact(task.url),
            }),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// Aborts the multipart upload, if one was started. Never cancelled itself: it runs
    /// under a fresh token, so a job's abort cannot stop its own clean-up.
    fn abort(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let bucket = &self.target.bucket;
        let aborted = crate::transport::with_cancel(&CancelToken::new(), || {
            bucket.abort_upload(&self.key, &upload_id)
        });
        match aborted {
            Ok(()) => debug!(
                "s3://{}/{}: aborted upload {upload_id}",
                bucket.name(),
                self.key
            ),
            Err(e) => warn!(
                "{}: the upload's parts stay in the store until a lifecycle rule or \
                 `Bucket::abort_upload` removes them",
                task::chain(&e)
            ),
        }
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        self.abort();
    }
}

enum Taken {
    Read(io::Error),
    Store(S3Error),
}

/// One GET: from `received` (with `Range` and `If-Range`) when bytes were taken already,
/// else from zero. On success everything is received and verified, not yet stored.
fn attempt(
    client: &HttpClient,
    task: &Request<'_>,
    upload: &mut Upload<'_>,
    budget: &Arc<MemoryBudget>,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<(), Failure> {
    let shown = || url::redact(task.url);
    let mut headers = task.headers.to_vec();
    if upload.received > 0 {
        match upload.validator() {
            Some(validator) => {
                headers.push(("range".to_owned(), format!("bytes={}-", upload.received)));
                headers.push(("if-range".to_owned(), validator.to_owned()));
            }
            None => {
                upload.restart();
            }
        }
    }
    let response = client
        .get(task.url, &headers, task.timeout)
        .map_err(|e| task::request_failure(e, shown(), cancel))?;
    let status = response.status().as_u16();
    let etag = task::header(&response, "etag");
    match status {
        200 => {
            if upload.received > 0 {
                warn!(
                    "GET {}: starting over after {} bytes: the server ignored the range or \
                     the object changed",
                    shown(),
                    upload.received
                );
                upload.restart();
            }
            upload.total = crate::http::content_length(response.headers());
        }
        206 if upload.received > 0 => {
            let range = task::header(&response, "content-range");
            match range.as_deref().and_then(task::parse_content_range) {
                Some((start, total)) if start == upload.received => upload.total = total,
                _ => {
                    upload.restart();
                    return Err(Failure::transient(DownloadError::Status {
                        url: shown(),
                        status,
                    }));
                }
            }
        }
        416 if upload.received > 0 => {
            let range = task::header(&response, "content-range");
            let size = range
                .as_deref()
                .and_then(|r| r.trim().strip_prefix("bytes */"))
                .and_then(|n| n.parse::<u64>().ok());
            if size == Some(upload.received) {
                return verify(task, upload);
            }
            upload.restart();
            return Err(Failure::transient(DownloadError::Status {
                url: shown(),
                status,
            }));
        }
        _ => return Err(task::status_failure(&response, shown())),
    }
    if upload.received == 0 {
        upload.etag = etag;
        upload.last_modified = task::header(&response, "last-modified");
    }
    upload.reserve(budget, cancel, task)?;
    progress.set_total(upload.total);
    progress.set_done(upload.received);
    let reader = crate::http::StallGuard::new(
        ProgressReader::new(response.into_body().into_reader(), progress, cancel),
        client.config(),
    );
    let taken = match task.limiter {
        None => upload.take(&mut { reader }),
        Some(limiter) => upload.take(&mut Throttled {
            inner: reader,
            limiter,
            cancel,
        }),
    };
    match taken {
        Ok(()) => {}
        Err(Taken::Read(e)) if progress::is_cancelled(&e) => {
            return Err(Failure::fatal(DownloadError::Cancelled { url: shown() }));
        }
        Err(Taken::Read(source)) => {
            return Err(Failure::transient(DownloadError::Body {
                url: shown(),
                received: upload.received,
                source,
            }));
        }
        Err(Taken::Store(_)) if cancel.is_cancelled() => {
            return Err(Failure::fatal(DownloadError::Cancelled { url: shown() }));
        }
        Err(Taken::Store(e)) => return Err(Failure::fatal(upload.store_error(e))),
    }
    if let Some(expected) = upload.total.filter(|&t| t != upload.received) {
        let received = upload.received;
        if received > expected {
            upload.restart();
        }
        return Err(Failure::transient(DownloadError::Length {
            url: shown(),
            expected,
            received,
        }));
    }
    verify(task, upload)
}

/// Checks everything received against the task's digest, if it has one.
fn verify(task: &Request<'_>, upload: &mut Upload<'_>) -> Result<(), Failure> {
    let (Some(expected), Some(hasher)) = (task.sha256, &upload.hasher) else {
        return Ok(());
    };
    let actual = Sha256Digest::from_bytes(hasher.clone().finalize().into());
    if actual == *expected {
        return Ok(());
    }
    upload.restart();
    Err(Failure::transient(DownloadError::Digest {
        url: url::redact(task.url),
        mismatch: DigestMismatch::new("sha256", expected.to_string(), actual.to_string()),
    }))
}
