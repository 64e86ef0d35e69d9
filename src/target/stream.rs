//! One object into any `Write` (stdout, a socket, a hasher): no file, no rename, but the
//! same engine, retries, resume and checks as a download to disk, as far as a stream allows.

use std::io::Write;

use crate::cancel::CancelToken;
use crate::engine::dest::{Destination, WriteSink};
use crate::engine::error::DownloadError;
use crate::engine::{self, Expect, Pin, Source, Span};
use crate::http::HttpClient;
use crate::progress::Progress;
use crate::source::url;
use crate::target::file::ObjectTask;

/// Downloads one object into `out`, returning its length.
///
/// A body that breaks off resumes with `Range` + `If-Range`, exactly as [`download`] does,
/// since the bytes already written are a prefix of the object, and every answer is checked
/// the same way. What a stream cannot do is take bytes back: when a server ignores the
/// range, answers from elsewhere, or the object changed, after bytes were written, or the
/// task's SHA-256 does not match at the end, the error says so
/// ([`DownloadError::Changed`], [`DownloadError::Digest`]) and the caller must discard what
/// it got. (To a file, [`download`] starts over instead.)
///
/// ```
/// use haul::{CancelToken, HttpClient, ObjectTask, Progress};
/// # let origin = haul_origin::Origin::start()?;
/// # let url = origin.url("/a.bin?size=5000");
///
/// let mut out = Vec::new();
/// let task = ObjectTask::from_url(url)?;
/// let n = haul::download_to(&HttpClient::default(), &task, &mut out, &Progress::new(), &CancelToken::new())?;
/// assert_eq!((n, out.len()), (5000, 5000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`download`]: crate::download
///
/// # Errors
///
/// A [`DownloadError`] naming the URL; a failed write is `Local` with the path `-`.
pub fn download_to(
    client: &HttpClient,
    task: &ObjectTask,
    out: &mut impl Write,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<u64, DownloadError> {
    url::check_url(&task.url)?;
    let ctx = task.context(client, progress, cancel);
    let mut dest = WriteSink::into(out);
    let expect = Expect {
        sha256: task.sha256.as_ref(),
        checksum: false,
        md5_etag: false,
        size: None,
        etag: None,
    };
    engine::fetch(
        &ctx,
        &Source::Url(&task.url),
        Span::Whole,
        &mut dest,
        &Pin::new(),
        expect,
        None,
    )?;
    Ok(dest.held())
}
