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

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use log::{debug, trace, warn};
use sha2::Digest as _;

use crate::cancel::CancelToken;
use crate::engine::verify::{DigestMismatch, Sha256Digest};
use crate::fetch::{BudgetPermit, MemoryBudget};
use crate::http::HttpClient;
use crate::progress::{self, Progress, ProgressReader};
use crate::s3::{Bucket, S3Error};
use crate::source::url;
use crate::target::file::{self as task, DownloadError, Failure, Request, Throttled};
use crate::target::name::ObjectName;

/// The smallest part S3 takes (except an upload's last part): 5 MiB.
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// The default part size: 8 MiB.
pub const DEFAULT_PART_BYTES: u64 = 8 << 20;
/// Parts of one object uploaded at once by default, as rclone and s5cmd do.
pub const DEFAULT_UPLOAD_CONNECTIONS: usize = 4;
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
    upload_connections: usize,
}

impl fmt::Debug for S3Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Target")
            .field("bucket", &self.bucket.name())
            .field("prefix", &self.prefix)
            .field("part_size", &self.part_size)
            .field("upload_connections", &self.upload_connections)
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
            upload_connections: DEFAULT_UPLOAD_CONNECTIONS,
        }
    }

    /// How many parts of one object upload at once, each on a thread of its own, while the
    /// body is read on. Default [`DEFAULT_UPLOAD_CONNECTIONS`]; 1 sends each part before
    /// reading on. Extra parts in flight take their buffers from the memory budget only when
    /// it has room at once, so they never make another object wait.
    pub fn upload_connections(mut self, n: usize) -> S3Target {
        self.upload_connections = n.max(1);
        self
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
        crate::downloader::hrw::hash(format!("{}/{}", self.bucket.url(), self.prefix).as_bytes())
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
    crate::http::transport::with_cancel(cancel, || {
        let shown = url::redact(task.url);
        url::check(task.url)?;
        if cancel.is_cancelled() {
            return Err(DownloadError::Cancelled { url: shown });
        }
        // Parts upload on scoped threads, all joined before this returns.
        std::thread::scope(|scope| {
            let mut upload = Upload::new(target, task, budget, cancel, scope);
            task::retrying(task, cancel, |_| {
                attempt(client, task, &mut upload, progress, cancel)
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
    })
}

/// A buffer and the budget's share for it.
type Buffer = (Vec<u8>, BudgetPermit);

/// What a part upload thread gives back: the part's number and ETag, and its buffer (still
/// counted in the budget until it is dropped or filled again).
type Sent = Result<(u32, String, Buffer), S3Error>;

/// One object on its way into the store: the part being filled, the parts being sent, and
/// the upload so far.
struct Upload<'a, 'scope, 'env> {
    target: &'a S3Target,
    key: String,
    budget: &'a Arc<MemoryBudget>,
    cancel: &'a CancelToken,
    scope: &'scope std::thread::Scope<'scope, 'env>,
    /// The part being filled; its length is the part size (or the whole object).
    buffer: Vec<u8>,
    filled: usize,
    /// The budget's share for `buffer`, held until the object is done.
    permit: Option<BudgetPermit>,
    /// Parts being uploaded on their own threads, oldest first; each holds its buffer and
    /// a budget share of its own.
    sending: VecDeque<std::thread::ScopedJoinHandle<'scope, Sent>>,
    /// A buffer back from a finished upload, to fill next.
    spare: Option<Buffer>,
    /// Bytes of the object taken from the source: parts sent and `filled`.
    received: u64,
    /// The object's size, when the source said.
    total: Option<u64>,
    upload_id: Option<String>,
    /// Parts uploaded: number and ETag.
    parts: Vec<(u32, String)>,
    /// The next part's number.
    next_part: u32,
    /// The source's validators, for resuming with `If-Range`.
    etag: Option<String>,
    last_modified: Option<String>,
    /// A SHA-256 of everything received, when the task expects one.
    hasher: Option<sha2::Sha256>,
}

impl<'a, 'scope, 'env> Upload<'a, 'scope, 'env> {
    fn new(
        target: &'a S3Target,
        task: &Request<'_>,
        budget: &'a Arc<MemoryBudget>,
        cancel: &'a CancelToken,
        scope: &'scope std::thread::Scope<'scope, 'env>,
    ) -> Self {
        Upload {
            target,
            key: target.key_of(task.name),
            budget,
            cancel,
            scope,
            buffer: Vec::new(),
            filled: 0,
            permit: None,
            sending: VecDeque::new(),
            spare: None,
            received: 0,
            total: None,
            upload_id: None,
            parts: Vec::new(),
            next_part: 1,
            etag: None,
            last_modified: None,
            hasher: task.sha256.is_some().then(sha2::Sha256::new),
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
    /// the upload so far.
    fn restart(&mut self) {
        self.abort();
        self.parts.clear();
        self.next_part = 1;
        self.filled = 0;
        self.received = 0;
        self.total = None;
        self.permit = None;
        self.buffer = Vec::new();
        self.spare = None;
        if let Some(hasher) = &mut self.hasher {
            *hasher = sha2::Sha256::new();
        }
    }

    /// Takes the buffer for an object of `total` bytes from the budget, once.
    fn reserve(&mut self, task: &Request<'_>) -> Result<(), Failure> {
        if self.permit.is_some() {
            return Ok(());
        }
        let part = self.target.part_for(self.total);
        let bytes = self.total.map_or(part, |t| t.min(part));
        if bytes > self.budget.total() {
            return Err(Failure::fatal(DownloadError::Budget {
                url: url::redact(task.url),
                needed: bytes,
                budget: self.budget.total(),
            }));
        }
        let permit = self.budget.acquire(bytes, self.cancel).map_err(|_| {
            Failure::fatal(DownloadError::Cancelled {
                url: url::redact(task.url),
            })
        })?;
        self.buffer = vec![0; usize::try_from(bytes).expect("a part fits in memory")];
        self.permit = Some(permit);
        Ok(())
    }

    /// Reads `reader` to its end, sending each part as the buffer fills.
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

    /// Sends the buffer as the next part, starting the multipart upload first if needed:
    /// on a thread of its own while the budget has room for another buffer and fewer than
    /// the target's upload connections are busy, else here.
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
        let number = self.next_part;
        self.next_part += 1;
        let Some((mut next, permit)) = self.another_buffer()? else {
            let etag =
                bucket.upload_part(&self.key, &upload_id, number, &self.buffer[..self.filled])?;
            self.parts.push((number, etag));
            self.filled = 0;
            return Ok(());
        };
        let len = self.buffer.len();
        next.resize(len, 0);
        let mut bytes = std::mem::replace(&mut self.buffer, next);
        bytes.truncate(self.filled);
        self.filled = 0;
        let (bucket, key, cancel) = (bucket.clone(), self.key.clone(), self.cancel.clone());
        let handle = std::thread::Builder::new()
            .name(format!("haul-upload-{number}"))
            .spawn_scoped(self.scope, move || {
                crate::http::transport::with_cancel(&cancel, || {
                    bucket
                        .upload_part(&key, &upload_id, number, &bytes)
                        .map(|etag| (number, etag, (bytes, permit)))
                })
            });
        match handle {
            Ok(handle) => self.sending.push_back(handle),
            Err(e) => {
                return Err(S3Error::Request {
                    op: "upload part",
                    bucket: self.target.bucket.name().to_owned(),
                    key: self.key.clone(),
                    source: Box::new(e),
                });
            }
        }
        Ok(())
    }

    /// Another buffer with its budget share, so the full one can be sent on its own
    /// thread; `None` when it should be sent here. The full buffer keeps the reader's
    /// share and the thread takes this one: the budget counts every buffer alive. Never
    /// waits for other joggers' bytes (which could deadlock): only for this object's own
    /// parts to finish.
    fn another_buffer(&mut self) -> Result<Option<Buffer>, S3Error> {
        if self.target.upload_connections <= 1 {
            return Ok(None);
        }
        while self.sending.len() >= self.target.upload_connections {
            self.reap()?;
        }
        loop {
            if let Some(spare) = self.spare.take() {
                return Ok(Some(spare));
            }
            let len = self.buffer.len();
            if let Some(permit) = self.budget.try_acquire(len as u64) {
                return Ok(Some((vec![0; len], permit)));
            }
            if self.sending.is_empty() {
                return Ok(None);
            }
            self.reap()?;
        }
    }

    /// Waits for the oldest part being sent.
    fn reap(&mut self) -> Result<(), S3Error> {
        let Some(handle) = self.sending.pop_front() else {
            return Ok(());
        };
        let (number, etag, buffer) = handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        self.parts.push((number, etag));
        self.spare = Some(buffer); // an older spare, if any, goes back to the budget
        Ok(())
    }

    /// Waits for every part being sent; the first error, if any.
    fn reap_all(&mut self) -> Result<(), S3Error> {
        let mut first = Ok(());
        while !self.sending.is_empty() {
            if let Err(e) = self.reap()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Sends the last part, waits for every part, and completes the upload.
    fn complete(&mut self, upload_id: &str) -> Result<(), S3Error> {
        if self.filled > 0 {
            self.send_part()?;
        }
        self.reap_all()?;
        self.parts.sort_unstable_by_key(|(number, _)| *number);
        self.target
            .bucket
            .complete_upload(&self.key, upload_id, &self.parts)
    }

    /// Stores what was received: one PUT, or the last part and the completion.
    fn finish(&mut self, task: &Request<'_>) -> Result<(), DownloadError> {
        let bucket = &self.target.bucket;
        let result = match self.upload_id.clone() {
            None => bucket.put(&self.key, &self.buffer[..self.filled]),
            Some(upload_id) => self.complete(&upload_id),
        };
        match result {
            Ok(()) => {
                self.upload_id = None; // complete: nothing to abort
                Ok(())
            }
            Err(_) if crate::http::transport::is_cancelled() => Err(DownloadError::Cancelled {
                url: url::redact(task.url),
            }),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// Aborts the multipart upload, if one was started, once no part of it is in flight
    /// (a part that lands after the abort would stay in the store). Never cancelled itself:
    /// it runs under a fresh token, so a job's abort cannot stop its own clean-up.
    fn abort(&mut self) {
        while let Some(handle) = self.sending.pop_front() {
            let _ = handle.join();
        }
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let bucket = &self.target.bucket;
        let aborted = crate::http::transport::with_cancel(&CancelToken::new(), || {
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

impl Drop for Upload<'_, '_, '_> {
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
    upload: &mut Upload<'_, '_, '_>,
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
            // `bytes */N` with N what we hold: everything came already.
            if task::unsatisfied_size(&response) == Some(upload.received) {
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
    upload.reserve(task)?;
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
fn verify(task: &Request<'_>, upload: &mut Upload<'_, '_, '_>) -> Result<(), Failure> {
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
