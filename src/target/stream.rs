//! One object into any `Write` (stdout, a socket, a hasher): no file, no rename, but the
//! same retries, resume and verification as a download to disk, as far as a stream allows.

use std::io::Write;

use log::warn;
use sha2::Digest as _;

use crate::cancel::CancelToken;
use crate::engine::verify::{DigestMismatch, Sha256Digest};
use crate::http::{HttpClient, StallGuard};
use crate::progress::{self, Progress, ProgressReader};
use crate::source::url;
use crate::target::file::{
    self as task, BUFFER, BUFFER_BYTES, DownloadError, Failure, ObjectTask, StreamError, header,
    parse_content_range,
};

/// Downloads one object into `out`, returning its length.
///
/// A body that breaks off resumes with `Range` + `If-Range`, exactly as [`download`] does,
/// since the bytes already written are a prefix of the object. What a stream cannot do is
/// take bytes back: when a server ignores the range, or the object changed, after bytes were
/// written, or the task's SHA-256 does not match at the end, the error says so and the
/// caller must discard what it got. (To a file, [`download`] starts over instead.)
///
/// ```
/// use haul::{CancelToken, HttpClient, ObjectTask, Progress};
/// # let origin = haul::origin::Origin::start()?;
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
    crate::http::transport::with_cancel(cancel, || {
        let shown = url::redact(&task.url);
        url::check(&task.url)?;
        let mut state = State {
            written: 0,
            validator: None,
            etag: None,
            hasher: task.sha256.map(|_| sha2::Sha256::new()),
        };
        let seed = crate::downloader::hrw::hash(task.url.as_bytes());
        let mut attempt = 1;
        loop {
            let failure = match once(client, task, out, &mut state, progress, cancel) {
                Ok(()) => break,
                Err(failure) => failure,
            };
            if cancel.is_cancelled() || failure.error.is_cancelled() {
                return Err(DownloadError::Cancelled { url: shown });
            }
            let wait = if failure.retry {
                task.retry.delay(attempt, failure.retry_after, seed)
            } else {
                None
            };
            let Some(wait) = wait else {
                return Err(failure.error);
            };
            warn!(
                "{}; attempt {attempt} of {} failed, retrying in {wait:.2?}",
                task::chain(&failure.error),
                task.retry.attempts
            );
            if !cancel.sleep(wait) {
                return Err(DownloadError::Cancelled { url: shown });
            }
            attempt += 1;
        }
        if let (Some(expected), Some(hasher)) = (task.sha256, state.hasher.take()) {
            let actual = Sha256Digest::from_bytes(hasher.finalize().into());
            if actual != expected {
                return Err(DownloadError::Digest {
                    url: shown,
                    mismatch: DigestMismatch::new(
                        "sha256",
                        expected.to_string(),
                        actual.to_string(),
                    ),
                });
            }
        }
        Ok(state.written)
    })
}

struct State {
    written: u64,
    /// What `If-Range` carries on a resume: a strong ETag, else Last-Modified.
    validator: Option<String>,
    etag: Option<String>,
    hasher: Option<sha2::Sha256>,
}

/// A writer that also feeds the running digest.
struct Tee<'a, W> {
    out: &'a mut W,
    hasher: Option<&'a mut sha2::Sha256>,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn once(
    client: &HttpClient,
    task: &ObjectTask,
    out: &mut impl Write,
    state: &mut State,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<(), Failure> {
    let shown = || url::redact(&task.url);
    let mut headers = task.headers.clone();
    if state.written > 0 {
        let Some(validator) = &state.validator else {
            return Err(Failure::fatal(cannot_restart(
                shown(),
                "it sent no validator",
            )));
        };
        headers.push(("range".to_owned(), format!("bytes={}-", state.written)));
        headers.push(("if-range".to_owned(), validator.clone()));
    }
    let response = client
        .get(&task.url, &headers, None)
        .map_err(|e| task::request_failure(e, shown(), cancel))?;
    let status = response.status().as_u16();
    let total = match status {
        200 if state.written == 0 => crate::http::content_length(response.headers()),
        200 => {
            return Err(Failure::fatal(cannot_restart(
                shown(),
                "it ignored the range or changed",
            )));
        }
        206 if state.written > 0 => match header(&response, "content-range")
            .as_deref()
            .and_then(parse_content_range)
        {
            Some((start, total)) if start == state.written => total,
            _ => {
                return Err(Failure::fatal(cannot_restart(
                    shown(),
                    "it sent another range",
                )));
            }
        },
        _ => return Err(task::status_failure(&response, shown())),
    };
    if state.written == 0 {
        state.etag = header(&response, "etag");
        state.validator = state
            .etag
            .clone()
            .filter(|e| !e.starts_with("W/"))
            .or_else(|| header(&response, "last-modified"));
    }
    progress.set_total(total);
    progress.set_done(state.written);
    let mut reader = StallGuard::new(
        ProgressReader::new(response.into_body().into_reader(), progress, cancel),
        client.config(),
    );
    let mut tee = Tee {
        out,
        hasher: state.hasher.as_mut(),
    };
    let streamed = BUFFER.with_borrow_mut(|buffer| {
        if buffer.len() != BUFFER_BYTES {
            buffer.resize(BUFFER_BYTES, 0);
        }
        task::stream(&mut reader, &mut tee, buffer)
    });
    match streamed {
        Ok(n) => state.written += n,
        Err(StreamError::Read(e, n)) => {
            state.written += n;
            if progress::is_cancelled(&e) {
                return Err(Failure::fatal(DownloadError::Cancelled { url: shown() }));
            }
            return Err(Failure::transient(DownloadError::Body {
                url: shown(),
                received: state.written,
                source: e,
            }));
        }
        Err(StreamError::Write(source)) => {
            return Err(Failure::fatal(DownloadError::Local {
                action: "writing",
                path: "-".into(),
                source,
            }));
        }
    }
    match total {
        Some(expected) if expected > state.written => {
            Err(Failure::transient(DownloadError::Length {
                url: shown(),
                expected,
                received: state.written,
            }))
        }
        Some(expected) if expected < state.written => Err(Failure::fatal(DownloadError::Length {
            url: shown(),
            expected,
            received: state.written,
        })),
        _ => Ok(()),
    }
}

fn cannot_restart(url: String, why: &str) -> DownloadError {
    DownloadError::Request {
        url,
        source: format!("cannot resume the stream: {why}, and written bytes cannot be taken back")
            .into(),
    }
}
