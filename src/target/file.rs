//! One object into a mountpath: the engine fetches it into a work file, which is renamed
//! into place only when complete and verified.

use std::path::PathBuf;
use std::time::SystemTime;

use log::{debug, trace, warn};

use crate::cancel::CancelToken;
use crate::engine::Known;
use crate::engine::classify::Failure;
use crate::engine::dest::{Buffered, Destination, Sink};
use crate::engine::parts::PartsPolicy;
use crate::engine::response::{Asked, ObjectInfo};
use crate::engine::retry::{self, RetryPolicy};
use crate::engine::tail::{self, Helpers};
use crate::engine::verify::{Sha256Digest, Verifier};
use crate::engine::{self, Answer, Condition, Context, Pin, Source, Span};
use crate::http::HttpClient;
use crate::progress::Progress;
use crate::source::url::{self, UrlError};
use crate::target::mountpath::Mountpath;
use crate::target::name::ObjectName;
use crate::target::work::{self, Pieces, WorkFile};

use crate::engine::error::DownloadError;

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
            .field("url", &url::redact_url(&self.url))
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
        let name = url::name_from_url(&url)?;
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

    /// What the engine needs to run this task on its own: no job, so no timeout, rate
    /// limit or retry counter.
    pub(crate) fn context<'a>(
        &'a self,
        client: &'a HttpClient,
        progress: &'a Progress,
        cancel: &'a CancelToken,
    ) -> Context<'a> {
        Context {
            client,
            headers: &self.headers,
            timeout: None,
            limiter: None,
            retry: &self.retry,
            retries: None,
            progress,
            cancel,
            flow: None,
        }
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
    /// Bytes taken over from a work file an earlier run left (interrupted, or killed).
    pub resumed: u64,
}

/// Downloads one object into `mountpath`, retrying and resuming as its task says.
///
/// The body streams through a [`ProgressReader`](crate::ProgressReader) (so `progress` counts every byte and
/// `cancel` stops the transfer within one read) into a work file in the mountpath's work
/// directory, and is renamed into place only when complete, of the announced length and (when
/// the task has one) of the right SHA-256. A body that breaks off is resumed with
/// `Range: bytes=N-` and `If-Range` on the validator (a strong `ETag`, else
/// `Last-Modified`): only the missing bytes are fetched again. A server that ignores the
/// range, or whose object changed, starts the object over, and haul logs why. The landed
/// file's modification time is the server's `Last-Modified`, when it sent one.
///
/// No partial object is ever visible. A transfer that is interrupted — cancelled, or failed
/// past its retries on the network or a 429/5xx — keeps its work file in the work directory
/// with a small sidecar (`.part.meta`: the redacted URL, the validator, and for a split
/// object the byte ranges it has); so does a process killed mid-transfer (for objects of
/// 1 MiB or more, and a split object's finished parts). The next download of the same name
/// and URL resumes it when the validator still matches, fetching only the missing bytes. Any
/// other failure (the bytes or the version are in doubt, the disk refused them) removes it.
///
/// ```
/// use haul::{CancelToken, HttpClient, Mountpath, ObjectTask, Progress};
/// # let origin = haul_origin::Origin::start()?;
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
    let ctx = task.context(client, progress, cancel);
    let known = Known {
        sha256: task.sha256,
        ..Known::default()
    };
    let request = Request {
        source: Source::Url(&task.url),
        name: &task.name,
        known: &known,
        revalidate: None,
        parts: task.parts.as_ref(),
        helpers: None,
    };
    match fetch(&ctx, &request, mountpath)? {
        Outcome::Landed(landed) => Ok(landed),
        Outcome::Unchanged => unreachable!("no revalidation was asked for"),
    }
}

/// One object for a mountpath, as the downloader's joggers pass it: borrowed from the task
/// and its job.
pub(crate) struct Request<'a> {
    pub(crate) source: Source<'a>,
    pub(crate) name: &'a ObjectName,
    /// Its SHA-256, size, pinned ETag and version, when a manifest or a listing gave them.
    pub(crate) known: &'a Known,
    /// The file already there (size, modification time): ask whether the object changed.
    pub(crate) revalidate: Option<(u64, SystemTime)>,
    /// Split a large object into ranged parts over several connections.
    pub(crate) parts: Option<&'a PartsPolicy>,
    /// Idle joggers that may take pieces of a slow stream's tail (see [`tail`]).
    pub(crate) helpers: Option<&'a dyn Helpers>,
}

/// What became of a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    Landed(Landed),
    /// Revalidation found the file already there up to date.
    Unchanged,
}

/// [`download`] for a borrowed request, with the job's context.
pub(crate) fn fetch(
    ctx: &Context<'_>,
    request: &Request<'_>,
    mountpath: &Mountpath,
) -> Result<Outcome, DownloadError> {
    crate::http::transport::with_cancel(ctx.cancel, || fetch_inner(ctx, request, mountpath))
}

fn fetch_inner(
    ctx: &Context<'_>,
    request: &Request<'_>,
    mountpath: &Mountpath,
) -> Result<Outcome, DownloadError> {
    let source = &request.source;
    let shown = source.shown();
    if let Source::Url(url) = source {
        url::check_url(url)?;
    }
    if ctx.cancel.is_cancelled() {
        return Err(DownloadError::Cancelled { url: shown });
    }
    check_way(mountpath, request.name)?;
    let work = WorkFile::open(mountpath, request.name, &shown)?;
    let resumed = work.resumed();
    // A work file an earlier run left is pinned to the version its sidecar recorded.
    let pin = if resumed > 0 {
        Pin::of(ObjectInfo {
            etag: work.etag.clone(),
            last_modified: work.last_modified.clone(),
            // A split object's pieces fit only an object of the size they were cut from.
            total: work.pieces.as_ref().map(|p| p.total),
            ..ObjectInfo::default()
        })
    } else {
        Pin::new()
    };
    let mut dest = Buffered::new(work);
    match transfer(ctx, request, &mut dest, &pin) {
        Ok(Some(mut effort)) => {
            effort.resumed = resumed;
            land(dest, &pin, request.name, mountpath, effort).map(Outcome::Landed)
        }
        Ok(None) => Ok(Outcome::Unchanged),
        Err(e) => {
            // An interrupted transfer's bytes are the next run's: kept, with what is
            // buffered (good bytes of the pinned version), unless a split kept its pieces.
            if e.interrupted() && !dest.sink.is_kept() && dest.sink.pieces.is_none() {
                if let Err(flush) = dest.flush() {
                    debug!("GET {shown}: {}", retry::error_chain(&flush));
                }
                // A split tail's pieces are kept with the stream's bytes before them.
                let pieces = dest.sink.tail.take().map(|tail| {
                    let mut have = tail.have().to_vec();
                    have.push(0..dest.sink.len);
                    Pieces::new(tail.total, have)
                });
                dest.sink.keep(pieces);
            }
            Err(e)
        }
    }
}

/// Fetches the object into `dest`, complete and verified: what it took, or `None` when
/// revalidation found the file there unchanged.
fn transfer(
    ctx: &Context<'_>,
    request: &Request<'_>,
    dest: &mut WorkDest,
    pin: &Pin,
) -> Result<Option<Effort>, DownloadError> {
    let source = &request.source;
    let shown = source.shown();
    let mut first = None;
    let mut refetched = 0;
    if let Some(pieces) = dest.sink.pieces.clone() {
        match resume_split(ctx, request, dest, pin, pieces)? {
            Split::Done => {
                return Ok(Some(Effort {
                    attempts: 1,
                    ..Effort::default()
                }));
            }
            Split::Whole(answer) => first = Some(*answer),
            Split::OneStream { thrown } => refetched += thrown,
        }
    }
    let fresh = dest.sink.resumed() == 0;
    if let Some((size, modified)) = request.revalidate.filter(|_| fresh) {
        match revalidate(ctx, source, size, modified)? {
            Revalidated::Unchanged => {
                debug!("GET {shown}: unchanged since the file there");
                return Ok(None);
            }
            Revalidated::Download(answer) => first = answer.map(|a| *a),
        }
    }
    let split = request
        .parts
        .filter(|p| p.active() && fresh && first.is_none());
    // With an adaptive concurrency and no policy of the caller's, a large object splits by
    // itself when its server takes ranges, adding connections while they pay.
    let auto = request.parts.is_none()
        && fresh
        && first.is_none()
        && ctx.flow.is_some_and(crate::flow::Permit::adaptive);
    let opened = if auto {
        Some(auto_split(ctx, request, dest, pin)?)
    } else if let Some(policy) = split {
        Some(split_download(ctx, request, policy, dest, pin)?)
    } else {
        None
    };
    if let Some(opened) = opened {
        match opened {
            Split::Done => {
                return Ok(Some(Effort {
                    attempts: 1,
                    refetched,
                    ..Effort::default()
                }));
            }
            Split::Whole(answer) => first = Some(*answer),
            Split::OneStream { thrown } => refetched += thrown,
        }
    }
    // From S3, a single-part object's ETag is its MD5 too (the engine asks only then).
    let expect = request.known.expect();
    let helpers = request.helpers;
    let fetched = tail::fetch(ctx, source, Span::Whole, dest, pin, expect, first, helpers)?;
    Ok(Some(Effort {
        attempts: fetched.attempts,
        refetched: refetched + fetched.refetched,
        resumed: 0,
    }))
}

/// Refuses a name whose way into the mountpath goes through a symbolic link.
fn check_way(mountpath: &Mountpath, name: &ObjectName) -> Result<(), DownloadError> {
    mountpath
        .check_way(name)
        .map_err(|(path, source)| DownloadError::Local {
            action: "landing through",
            path,
            source,
        })
}

/// What it took to fetch an object, for [`Landed`].
#[derive(Debug, Clone, Copy, Default)]
struct Effort {
    attempts: u32,
    refetched: u64,
    resumed: u64,
}

/// Renames the complete work file into place (the way to it checked again: it may have
/// changed while the object was fetched).
fn land(
    dest: WorkDest,
    pin: &Pin,
    name: &ObjectName,
    mountpath: &Mountpath,
    effort: Effort,
) -> Result<Landed, DownloadError> {
    let path = mountpath.path_of(name);
    let bytes = dest.sink.len;
    let etag = pin
        .get()
        .and_then(|info| info.etag)
        .or_else(|| dest.sink.etag.clone());
    check_way(mountpath, name)?;
    dest.sink.land(&path, mountpath.fsyncs())?;
    trace!("landed {} ({bytes} bytes)", path.display());
    Ok(Landed {
        path,
        bytes,
        etag,
        attempts: effort.attempts,
        refetched: effort.refetched,
        resumed: effort.resumed,
    })
}

/// What revalidation found.
enum Revalidated {
    Unchanged,
    /// Download the object: this answer is its first response already (a 200), or none.
    Download(Option<Box<Answer>>),
}

/// Asks whether the object changed since the file there (`size` bytes, modified at
/// `modified`) in one GET without a body: `Range: bytes=SIZE-` with `If-Range` on the
/// file's time. Unchanged and the same size: 416 `bytes */SIZE` (with no `Last-Modified`,
/// or the file's: a server that ignores `If-Range` answers 416 for any file of the size).
/// Changed: 200, the new object. A server that ignores ranges answers 200 too: unchanged
/// when its length and `Last-Modified` match the file.
fn revalidate(
    ctx: &Context<'_>,
    source: &Source<'_>,
    size: u64,
    modified: SystemTime,
) -> Result<Revalidated, DownloadError> {
    let date = httpdate::fmt_http_date(modified);
    let asked = Asked {
        start: size,
        end: None,
    };
    let shown = source.shown();
    let answer = engine::request_retried(ctx, source, |location| {
        match engine::request(ctx, source, location, asked, Condition::IfRange(&date)) {
            // A 206 from elsewhere than the file's end is no answer to this question.
            Err(Failure {
                error: DownloadError::Unusable { .. },
                ..
            }) => Ok(None),
            other => other.map(Some),
        }
    })?;
    let Some(answer) = answer else {
        return Ok(Revalidated::Download(None));
    };
    let same_time = answer
        .info
        .last_modified
        .as_deref()
        .and_then(|t| httpdate::parse_http_date(t).ok())
        .is_some_and(|t| same_second(t, modified));
    // A server that ignores `If-Range` answers 416 whenever the sizes match: its own
    // `Last-Modified`, when it sends one, must be the file's too.
    let other_time = answer
        .info
        .last_modified
        .as_deref()
        .is_some_and(|_| !same_time);
    Ok(match answer.status {
        416 if answer.info.total == Some(size) && !other_time => Revalidated::Unchanged,
        200 if same_time && answer.info.total == Some(size) => Revalidated::Unchanged,
        200 => Revalidated::Download(Some(Box::new(answer))),
        416 if other_time => {
            debug!("GET {shown}: the server ignored If-Range: its object is not the file's time");
            Revalidated::Download(None)
        }
        // Same object, but the file there is not all of it: download it whole.
        _ => {
            debug!("GET {shown}: the file there is incomplete");
            Revalidated::Download(None)
        }
    })
}

/// How a split download went.
enum Split {
    /// Every part is in the work file, verified.
    Done,
    /// The object fit in the opening part: this answer is all of it.
    Whole(Box<Answer>),
    /// It cannot be split (the server refused the range, mangles ranges, or the object
    /// changed under its parts): fetch it on one connection; `thrown` bytes were lost.
    OneStream { thrown: u64 },
}

/// Opens with a plain GET; when its answer is a 200 of at least the automatic split's
/// threshold, from a server that takes ranges and names a validator, the answer's first
/// part is read from it and the rest comes in ranged parts (`PartsPolicy::auto`: the
/// connections added while they pay); otherwise the answer is the whole object's.
fn auto_split(
    ctx: &Context<'_>,
    request: &Request<'_>,
    dest: &mut WorkDest,
    pin: &Pin,
) -> Result<Split, DownloadError> {
    let policy = PartsPolicy::auto();
    let source = &request.source;
    let asked = Asked {
        start: 0,
        end: None,
    };
    // The opening GET is retried as the engine's would be: counted, with the backoff.
    let answer = engine::request_retried(ctx, source, |location| {
        engine::request(ctx, source, location, asked, Condition::None)
    })?;
    let total = match (answer.status, answer.info.total) {
        (200, Some(total))
            if total > policy.min_object_bytes
                && answer.info.ranges
                && answer.info.validator().is_some() =>
        {
            total
        }
        _ => return Ok(Split::Whole(Box::new(answer))),
    };
    split_rest(ctx, request, &policy, dest, pin, answer, total)
}

/// Opens with a ranged GET for the first part; when its `Content-Range` shows a larger
/// object, the rest comes in ranged parts over several connections (`engine::parts`), into
/// a work file sized up front, whose sidecar lists the parts that have finished.
fn split_download(
    ctx: &Context<'_>,
    request: &Request<'_>,
    policy: &PartsPolicy,
    dest: &mut WorkDest,
    pin: &Pin,
) -> Result<Split, DownloadError> {
    let source = &request.source;
    let shown = source.shown();
    let asked = Asked {
        start: 0,
        end: Some(policy.min_object_bytes),
    };
    let mut location = None;
    let answer = match engine::request(ctx, source, &mut location, asked, Condition::None) {
        Ok(answer) => answer,
        Err(failure) if failure.verdict.retries() => {
            debug!(
                "GET {shown}: {}; not split",
                retry::error_chain(&failure.error)
            );
            return Ok(Split::OneStream { thrown: 0 });
        }
        Err(failure) => return Err(failure.error),
    };
    let total = match (answer.status, answer.info.total) {
        (206, Some(total)) if total > policy.min_object_bytes => total,
        // The whole object fit in the opening part, or the server sent it whole.
        (200 | 206, _) => return Ok(Split::Whole(Box::new(answer))),
        // A range it will not serve (an empty object answers 416): ask plainly.
        _ => return Ok(Split::OneStream { thrown: 0 }),
    };
    split_rest(ctx, request, policy, dest, pin, answer, total)
}

/// The rest of a split: the work file sized, part 0 from `answer`, the other parts in
/// parallel, then the whole checked.
fn split_rest(
    ctx: &Context<'_>,
    request: &Request<'_>,
    policy: &PartsPolicy,
    dest: &mut WorkDest,
    pin: &Pin,
    answer: Answer,
    total: u64,
) -> Result<Split, DownloadError> {
    let source = &request.source;
    let shown = source.shown();
    let info = answer.info.clone();
    pin.settle(&info).map_err(|reason| DownloadError::Changed {
        url: shown.clone(),
        reason,
    })?;
    dest.sink
        .set_validator(info.etag.clone(), info.last_modified.clone(), false)?;
    dest.sink.preallocate(total)?;
    ctx.progress.set_total(Some(total));
    ctx.progress.set_done(0);
    let todo = Todo {
        parts: crate::engine::parts::plan(policy, total),
        first: Some(answer),
        have: Vec::new(),
    };
    stitch(ctx, request, policy, dest, pin, total, todo)
}

/// What is left of a split object: the parts to fetch, a response already in hand for the
/// first, and the ranges already in its work file.
struct Todo {
    parts: Vec<std::ops::Range<u64>>,
    first: Option<Answer>,
    have: Vec<std::ops::Range<u64>>,
}

/// Fetches the pieces a split object's interrupted transfer left out (its work file's
/// sidecar lists those it has), pinned to the version they are of; a changed object starts
/// over on one connection.
fn resume_split(
    ctx: &Context<'_>,
    request: &Request<'_>,
    dest: &mut WorkDest,
    pin: &Pin,
    pieces: Pieces,
) -> Result<Split, DownloadError> {
    let policy = request.parts.copied().unwrap_or_else(PartsPolicy::auto);
    let total = pieces.total;
    debug!(
        "GET {}: resuming a split object: {} of {total} bytes are here",
        request.source.shown(),
        pieces.held()
    );
    ctx.progress.set_total(Some(total));
    ctx.progress.set_done(pieces.held());
    let todo = Todo {
        parts: crate::engine::parts::cut(pieces.missing(), policy.part_bytes),
        first: None,
        have: pieces.have().to_vec(),
    };
    stitch(ctx, request, &policy, dest, pin, total, todo)
}

/// Fetches what is left of a split object into its work file (sized to `total`), then
/// checks the whole. An interrupted transfer keeps the file and the ranges it has for a
/// later run; parts that cannot be stitched (the object changed under them, the server
/// mangles ranges, the bytes are wrong) empty it, to be fetched on one connection.
fn stitch(
    ctx: &Context<'_>,
    request: &Request<'_>,
    policy: &PartsPolicy,
    dest: &mut WorkDest,
    pin: &Pin,
    total: u64,
    todo: Todo,
) -> Result<Split, DownloadError> {
    let Todo {
        parts,
        first,
        mut have,
    } = todo;
    let source = &request.source;
    let shown = source.shown();
    let (size, etag) = (request.known.size, request.known.etag.as_deref());
    let info = pin.get().unwrap_or_default();
    if let Some(error) = crate::engine::not_as_known(&shown, size, etag, &info, total) {
        return Err(error);
    }
    let held = ctx.progress.done();
    // Each part that finishes is in the sidecar at once: a run after a crash resumes it.
    let record = dest.sink.pieces_record(total);
    let into = crate::engine::parts::PartsFile {
        file: dest.sink.file_ref(),
        path: &dest.sink.path,
        total,
    };
    let work = crate::engine::parts::Work {
        parts: &parts,
        first,
        have: &mut have,
        record: &|have: &[std::ops::Range<u64>]| record.write(have),
    };
    let result = crate::engine::parts::fetch(ctx, source, policy, into, pin, work);
    let stitched = result.and_then(|()| {
        dest.sink.pieces = None;
        dest.sink.len = total;
        // The whole, read back once: the SHA-256 expected, and from S3 the store's
        // full-object checksum (one HEAD: ranged answers carry none), else the MD5 ETag.
        let info = pin.get().unwrap_or_default();
        let (checksum, md5) = match source {
            Source::S3 { bucket, key, .. } => (
                bucket.stored_checksum(key, info.etag_unquoted()),
                info.md5(),
            ),
            Source::Url(_) => (None, None),
        };
        let mut verifier = Verifier::new(request.known.sha256.as_ref(), md5, checksum.as_ref());
        if verifier.is_empty() {
            return Ok(());
        }
        verifier
            .update_from_file(&dest.sink.path, ctx.cancel)
            .map_err(|e| DownloadError::from_read(e, &shown, |e| dest.sink.error("reading", e)))?;
        verifier.finish().map_err(|mismatch| DownloadError::Digest {
            url: shown.clone(),
            mismatch,
        })
    });
    match stitched {
        Ok(()) => Ok(Split::Done),
        Err(
            e @ (DownloadError::Changed { .. }
            | DownloadError::Unusable { .. }
            | DownloadError::Digest { .. }),
        ) => {
            warn!("{}; fetching it on one connection", retry::error_chain(&e));
            let thrown = ctx.progress.done().saturating_sub(held);
            dest.sink.truncate()?;
            pin.clear();
            Ok(Split::OneStream { thrown })
        }
        Err(e) => {
            if e.interrupted() {
                dest.sink.keep(Some(Pieces::new(total, have)));
            }
            Err(e)
        }
    }
}

/// Whether two times fall in the same second (HTTP dates have no finer resolution).
pub(crate) fn same_second(a: SystemTime, b: SystemTime) -> bool {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
    };
    secs(a).ok() == secs(b).ok()
}

/// The work file as the engine's destination's sink: full buffers are appended; starting
/// over empties the file; a resumed file's bytes are replayed for its digest.
type WorkDest = Buffered<WorkFile>;

impl Sink for WorkFile {
    fn written(&self) -> u64 {
        self.len
    }

    fn begin(&mut self, info: &ObjectInfo, len: Option<u64>) -> Result<(), DownloadError> {
        self.set_validator(
            info.etag.clone(),
            info.last_modified.clone(),
            work::resumable(len),
        )
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), DownloadError> {
        WorkFile::write(self, bytes)
    }

    fn restart(&mut self) -> Result<u64, DownloadError> {
        self.truncate()
    }

    fn replay(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<(), DownloadError> {
        WorkFile::replay(self, f)
    }
}
