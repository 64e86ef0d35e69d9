//! S3 targets: a [`Downloader`](crate::Downloader) that lands objects in an S3-compatible
//! store (SeaweedFS, MinIO, Ceph, AWS) instead of local directories.
//!
//! One object, on its jogger's thread: the GET's body is read into a buffer of at most one
//! part, taken from the downloader's memory budget. An object that fits in one part is
//! stored with one PUT; a larger one becomes a multipart upload, a part at a time. Either
//! way the object appears only when it is complete and verified: a failed, cancelled or
//! panicking transfer aborts its multipart upload (the `Upload`'s `Drop`), so no partial
//! object and no dangling upload is left. A body that breaks off resumes from the byte it
//! stopped at (`Range` + `If-Range`), like a download to a file: the same engine, with an
//! upload as its destination.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use log::{debug, trace, warn};

use crate::cancel::CancelToken;
use crate::engine::Known;
use crate::engine::dest::{Destination, MemoryDest};
use crate::engine::error::DownloadError;
use crate::engine::response::ObjectInfo;
use crate::engine::tail::{self, Feed, Helpers, PieceStore};
use crate::engine::verify::Crc64Nvme;
use crate::engine::{self, Context, Pin, Source, Span};
use crate::fetch::{BudgetPermit, MemoryBudget};
use crate::flow::Observer;
use crate::s3::{Bucket, S3Error};
use crate::target::name::ObjectName;

/// The smallest part S3 takes (except an upload's last part): 5 MiB.
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// The default part size: 8 MiB, for S3 targets' multipart uploads and the fetcher's ranged
/// parts alike.
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
/// queue and joggers.
///
/// ```no_run
/// use haul::{Bucket, S3Config};
/// use haul::{Downloader, JobSpec, S3Target};
///
/// let bucket = Bucket::new("landing", &S3Config::from_env())?;
/// let downloader = Downloader::builder()
///     .s3_target(S3Target::new(&bucket, "shards/").part_size(16 << 20))
///     .workers_per_target(16)
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

    /// The key of the flow its uploads take leave from (apart from the bucket's GETs,
    /// should the job read from it too).
    pub(crate) fn uploads_flow(&self) -> String {
        format!("s3://{} (uploads)", self.bucket.name())
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

/// Where an object goes up to: the target, the budget its buffers come from, and the flow
/// its store calls report 429s and 503s to.
pub(crate) struct UploadTo<'a> {
    pub(crate) target: &'a S3Target,
    pub(crate) budget: &'a Arc<MemoryBudget>,
    pub(crate) observer: Option<Observer>,
    /// Idle joggers that may take pieces of a slow object's tail (see
    /// [`tail`](crate::engine::tail)): whole parts each, uploaded by the piece.
    pub(crate) helpers: Option<&'a dyn Helpers>,
}

/// One object from its source into an S3 target. Returns the bytes stored.
pub(crate) fn store(
    ctx: &Context<'_>,
    source: &Source<'_>,
    name: &ObjectName,
    known: &Known,
    to: &UploadTo<'_>,
) -> Result<u64, DownloadError> {
    if let Source::Url(url) = source {
        crate::source::url::check_url(url)?;
    }
    upload(ctx, source.shown(), name, to, |upload| {
        let expect = known.expect();
        let pin = Pin::new();
        tail::fetch(
            ctx,
            source,
            Span::Whole,
            upload,
            &pin,
            expect,
            None,
            to.helpers,
        )
        .map(|_| ())
    })
}

/// The local file at `path` into an S3 target, as object `name`. Returns the bytes stored.
pub(crate) fn store_file(
    ctx: &Context<'_>,
    path: &std::path::Path,
    name: &ObjectName,
    to: &UploadTo<'_>,
) -> Result<u64, DownloadError> {
    upload(ctx, path.display().to_string(), name, to, |upload| {
        engine::local::read_file(ctx, path, upload).map(|_| ())
    })
}

/// One upload: `fill` puts the object's bytes into it, then it is stored (or, on any
/// failure, aborted). `shown` names the source in errors.
fn upload(
    ctx: &Context<'_>,
    shown: String,
    name: &ObjectName,
    to: &UploadTo<'_>,
    fill: impl FnOnce(&mut Upload<'_, '_, '_>) -> Result<(), DownloadError>,
) -> Result<u64, DownloadError> {
    crate::http::transport::with_cancel(ctx.cancel, || {
        if ctx.cancel.is_cancelled() {
            return Err(DownloadError::Cancelled { url: shown });
        }
        // Parts upload on scoped threads, all joined before this returns.
        std::thread::scope(|scope| {
            let mut upload = Upload::new(to, name, shown, ctx.cancel, scope);
            fill(&mut upload)?;
            let bytes = upload.received;
            upload.finish()?;
            trace!(
                "stored s3://{}/{} ({bytes} bytes)",
                to.target.bucket.name(),
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

/// One object on its way into the store — the engine's destination: the part being
/// filled, the parts being sent, and the upload so far.
struct Upload<'a, 'scope, 'env> {
    target: &'a S3Target,
    key: String,
    /// The source, for errors.
    shown: String,
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
    /// The whole object's CRC-64/NVME, of the bytes received so far.
    crc: Crc64Nvme,
    /// The next part's number.
    next_part: u32,
    /// Where the store's pushback is reported (every call, on every thread).
    observer: Option<Observer>,
}

/// Runs a store call with its 429s and 503s reported to `observer`'s flow.
fn observed<T>(observer: Option<&Observer>, call: impl FnOnce() -> T) -> T {
    match observer {
        Some(observer) => observer.run(call),
        None => call(),
    }
}

impl<'a, 'scope, 'env> Upload<'a, 'scope, 'env> {
    fn new(
        to: &UploadTo<'a>,
        name: &ObjectName,
        shown: String,
        cancel: &'a CancelToken,
        scope: &'scope std::thread::Scope<'scope, 'env>,
    ) -> Self {
        Upload {
            target: to.target,
            key: to.target.key_of(name),
            shown,
            budget: to.budget,
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
            crc: Crc64Nvme::new(),
            next_part: 1,
            observer: to.observer.clone(),
        }
    }

    fn store_error(&self, source: S3Error) -> DownloadError {
        if self.cancel.is_cancelled() {
            return DownloadError::Cancelled {
                url: self.shown.clone(),
            };
        }
        DownloadError::Store {
            key: format!("s3://{}/{}", self.target.bucket.name(), self.key),
            source: Box::new(source),
        }
    }

    /// Takes the buffer for an object of `total` bytes from the budget, once.
    fn reserve(&mut self) -> Result<(), DownloadError> {
        if self.permit.is_some() {
            return Ok(());
        }
        let part = self.target.part_for(self.total);
        let bytes = self.total.map_or(part, |t| t.min(part));
        if bytes > self.budget.total() {
            return Err(DownloadError::Budget {
                url: self.shown.clone(),
                needed: bytes,
                budget: self.budget.total(),
            });
        }
        let permit =
            self.budget
                .acquire(bytes, self.cancel)
                .map_err(|_| DownloadError::Cancelled {
                    url: self.shown.clone(),
                })?;
        self.buffer = vec![0; usize::try_from(bytes).expect("a part fits in memory")];
        self.permit = Some(permit);
        Ok(())
    }

    /// Sends the buffer as the next part, starting the multipart upload first if needed:
    /// on a thread of its own while the budget has room for another buffer and fewer than
    /// the target's upload connections are busy, else here.
    fn send_part(&mut self) -> Result<(), S3Error> {
        let bucket = &self.target.bucket;
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = observed(self.observer.as_ref(), || bucket.create_upload(&self.key))?;
                debug!("s3://{}/{}: multipart upload {id}", bucket.name(), self.key);
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.next_part;
        self.next_part += 1;
        let Some((mut next, permit)) = self.another_buffer()? else {
            let bytes = &self.buffer[..self.filled];
            let etag = observed(self.observer.as_ref(), || {
                bucket.upload_part(&self.key, &upload_id, number, bytes)
            })?;
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
        let observer = self.observer.clone();
        let handle = std::thread::Builder::new()
            .name(format!("haul-upload-{number}"))
            .spawn_scoped(self.scope, move || {
                crate::http::transport::with_cancel(&cancel, || {
                    observed(observer.as_ref(), || {
                        bucket.upload_part(&key, &upload_id, number, &bytes)
                    })
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
        let checksum = self.crc.base64();
        observed(self.observer.as_ref(), || {
            self.target
                .bucket
                .complete_upload(&self.key, upload_id, &self.parts, &checksum)
        })
    }

    /// Stores what was received: one PUT, or the last part and the completion.
    fn finish(&mut self) -> Result<(), DownloadError> {
        let bucket = &self.target.bucket;
        let result = match self.upload_id.clone() {
            None => observed(self.observer.as_ref(), || {
                bucket.put(&self.key, &self.buffer[..self.filled])
            }),
            Some(upload_id) => self.complete(&upload_id),
        };
        match result {
            Ok(()) => {
                self.upload_id = None; // complete: nothing to abort
                Ok(())
            }
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
                crate::engine::retry::error_chain(&e)
            ),
        }
    }
}

impl Destination for Upload<'_, '_, '_> {
    fn held(&self) -> u64 {
        self.received
    }

    fn begin(&mut self, _: &ObjectInfo, len: Option<u64>) -> Result<(), DownloadError> {
        self.total = len;
        self.reserve()
    }

    fn space(&mut self) -> Result<&mut [u8], DownloadError> {
        // A full buffer with more to come is a part.
        if self.filled == self.buffer.len() {
            self.send_part().map_err(|e| self.store_error(e))?;
        }
        Ok(&mut self.buffer[self.filled..])
    }

    fn filled(&mut self, n: usize) -> Result<(), DownloadError> {
        self.crc.update(&self.buffer[self.filled..self.filled + n]);
        self.filled += n;
        self.received += n as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DownloadError> {
        Ok(()) // the buffer is the part: it goes when full, or at the end
    }

    /// Throws away everything received and the upload so far (the object changed, or its
    /// bytes were wrong).
    fn restart(&mut self) -> Result<u64, DownloadError> {
        let dropped = self.received;
        self.abort();
        self.parts.clear();
        self.crc = Crc64Nvme::new();
        self.next_part = 1;
        self.filled = 0;
        self.received = 0;
        self.total = None;
        self.permit = None;
        self.buffer = Vec::new();
        self.spare = None;
        Ok(dropped)
    }
}

impl Drop for Upload<'_, '_, '_> {
    fn drop(&mut self) {
        self.abort();
    }
}

/// What a piece of a cut tail takes to its thread: where its parts go up, and the budget's
/// share it holds: for all its bytes until the stream has joined them (`keep`: the object's
/// digests need them), else for the one part it fills at a time.
pub(crate) struct PieceParts {
    bucket: Bucket,
    key: String,
    upload_id: String,
    part: u64,
    keep: bool,
    permit: BudgetPermit,
    observer: Option<Observer>,
}

impl PieceParts {
    /// Uploads `bytes` as part `number`.
    fn upload(
        &self,
        cancel: &CancelToken,
        number: u64,
        bytes: &[u8],
    ) -> Result<(u32, String), DownloadError> {
        let number = u32::try_from(number).expect("at most 10,000 parts");
        crate::http::transport::with_cancel(cancel, || {
            observed(self.observer.as_ref(), || {
                self.bucket
                    .upload_part(&self.key, &self.upload_id, number, bytes)
            })
        })
        .map(|etag| (number, etag))
        .map_err(|e| DownloadError::Store {
            key: format!("s3://{}/{}", self.bucket.name(), self.key),
            source: Box::new(e),
        })
    }
}

/// A piece's parts, in the store; with its bytes, kept for the stream's digests, or else the
/// CRC-64/NVME of them, which the stream's combines with.
pub(crate) struct UploadedPiece {
    bytes: Vec<u8>,
    crc: Option<Crc64Nvme>,
    parts: Vec<(u32, String)>,
    _permit: BudgetPermit,
}

/// A piece that keeps none of its bytes: each part it fills goes up at once (on the piece's
/// thread), and only their CRC-64/NVME stays.
struct StreamedParts<'a> {
    to: &'a PieceParts,
    cancel: &'a CancelToken,
    next: u64,
    buffer: Vec<u8>,
    filled: usize,
    received: u64,
    crc: Crc64Nvme,
    parts: Vec<(u32, String)>,
}

impl StreamedParts<'_> {
    fn send(&mut self) -> Result<(), DownloadError> {
        let part = self
            .to
            .upload(self.cancel, self.next, &self.buffer[..self.filled])?;
        self.parts.push(part);
        self.next += 1;
        self.filled = 0;
        Ok(())
    }
}

impl Destination for StreamedParts<'_> {
    fn held(&self) -> u64 {
        self.received
    }

    fn begin(&mut self, _: &ObjectInfo, _: Option<u64>) -> Result<(), DownloadError> {
        Ok(())
    }

    fn space(&mut self) -> Result<&mut [u8], DownloadError> {
        if self.filled == self.buffer.len() {
            self.send()?;
        }
        Ok(&mut self.buffer[self.filled..])
    }

    fn filled(&mut self, n: usize) -> Result<(), DownloadError> {
        self.crc.update(&self.buffer[self.filled..self.filled + n]);
        self.filled += n;
        self.received += n as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DownloadError> {
        Ok(()) // the buffer is the part: it goes when full, or at the end
    }

    fn restart(&mut self) -> Result<u64, DownloadError> {
        Err(DownloadError::Changed {
            url: String::new(),
            reason: "a piece cannot start over on its own".to_owned(),
        })
    }
}

/// A slow object's tail into a bucket (see [`tail`](crate::engine::tail)): the pieces are
/// whole parts (cut on the part size), uploaded as their parts of the object's multipart
/// upload by their own threads. When the object's digests need the bytes, a piece holds them
/// (from the budget) until the stream joins them in order; otherwise it streams its parts up
/// one at a time and hands back their CRC-64/NVME, which the stream's combines with. A piece
/// with no room in the budget is not cut.
impl PieceStore for Upload<'_, '_, '_> {
    type Place = PieceParts;
    type Brought = UploadedPiece;
    type Record = ();

    /// The pieces go up as parts: the object becomes a multipart upload now.
    fn make_room(&mut self, _total: u64) -> Result<(), DownloadError> {
        if self.upload_id.is_none() {
            let bucket = &self.target.bucket;
            let id = observed(self.observer.as_ref(), || bucket.create_upload(&self.key))
                .map_err(|e| self.store_error(e))?;
            debug!("s3://{}/{}: multipart upload {id}", bucket.name(), self.key);
            self.upload_id = Some(id);
        }
        Ok(())
    }

    fn record(&self, (): &()) {}

    fn place(&self, range: &Range<u64>, bytes_needed: bool) -> Option<PieceParts> {
        let part = self.align();
        let len = range.end - range.start;
        let held = if bytes_needed { len } else { len.min(part) };
        let permit = self.budget.try_acquire(held)?;
        Some(PieceParts {
            bucket: self.target.bucket.clone(),
            key: self.key.clone(),
            upload_id: self.upload_id.clone()?,
            part,
            keep: bytes_needed,
            permit,
            observer: self.observer.clone(),
        })
    }

    fn align(&self) -> u64 {
        self.target.part_for(self.total)
    }

    fn fetch_piece(
        to: PieceParts,
        ctx: &Context<'_>,
        source: &Source<'_>,
        range: Range<u64>,
        pin: &Pin,
        helpers: &dyn Helpers,
    ) -> (Result<UploadedPiece, DownloadError>, u64) {
        let len = range.end - range.start;
        let first = range.start / to.part + 1;
        if !to.keep {
            let mut dest = StreamedParts {
                to: &to,
                cancel: ctx.cancel,
                next: first,
                buffer: vec![0; usize::try_from(len.min(to.part)).expect("a part fits")],
                filled: 0,
                received: 0,
                crc: Crc64Nvme::new(),
                parts: Vec::new(),
            };
            let span = Span::Range {
                start: range.start,
                end: range.end,
            };
            let expect = crate::engine::Expect::default();
            let sent = engine::fetch(ctx, source, span, &mut dest, pin, expect, None)
                .and_then(|_| if dest.filled > 0 { dest.send() } else { Ok(()) });
            if let Err(e) = sent {
                return (Err(e), 0);
            }
            let StreamedParts { crc, parts, .. } = dest;
            let piece = UploadedPiece {
                bytes: Vec::new(),
                crc: Some(crc),
                parts,
                _permit: to.permit,
            };
            return (Ok(piece), len);
        }
        // The piece's bytes in memory (cut again when it is slow), then its parts.
        let bytes = match MemoryDest::fetch_piece((), ctx, source, range.clone(), pin, helpers) {
            (Ok(bytes), _) => bytes,
            (Err(e), _) => return (Err(e), 0),
        };
        let mut parts = Vec::new();
        let chunks = bytes.chunks(usize::try_from(to.part).unwrap_or(usize::MAX));
        for (i, chunk) in chunks.enumerate() {
            match to.upload(ctx.cancel, first + i as u64, chunk) {
                Ok(part) => parts.push(part),
                Err(e) => return (Err(e), 0),
            }
        }
        let piece = UploadedPiece {
            bytes,
            crc: None,
            parts,
            _permit: to.permit,
        };
        (Ok(piece), len)
    }

    /// The stream's last part, full at the cut, goes up first; then the piece's bytes are
    /// the stream's (its parts already in the store).
    fn join_piece(
        &mut self,
        range: Range<u64>,
        piece: UploadedPiece,
        f: Feed<'_>,
    ) -> Result<(), DownloadError> {
        if self.filled > 0 {
            self.send_part().map_err(|e| self.store_error(e))?;
        }
        match (piece.crc, f) {
            (Some(crc), None) => self.crc.combine(&crc),
            (None, f) => {
                self.crc.update(&piece.bytes);
                if let Some(f) = f {
                    f(&piece.bytes);
                }
            }
            (Some(_), Some(_)) => {
                return Err(DownloadError::Changed {
                    url: String::new(),
                    reason: "a piece brought no bytes for the digests".to_owned(),
                });
            }
        }
        self.parts.extend(piece.parts);
        self.received = range.end;
        let part = self.align();
        self.next_part = u32::try_from(range.end / part + 1).expect("at most 10,000 parts");
        Ok(())
    }
}
