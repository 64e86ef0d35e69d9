//! One large object over several connections: ranged parts fetched in parallel into their
//! places in the work file.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use log::debug;
use parking_lot::Mutex;

use crate::cancel::CancelToken;
use crate::http::{HttpClient, StallGuard};
use crate::progress::{Progress, ProgressReader};
use crate::target::file::{self as task, DownloadError, Failure, Request, StreamError};

/// When and how one large object is split into ranged parts fetched in parallel.
///
/// Off by default: a job of many objects already keeps every connection busy. For a few
/// large objects from a server that serves each connection slower than the network allows,
/// turn it on. The object is asked for with `Range: bytes=0-…` (its first
/// [`min_object_bytes`](PartsPolicy::min_object_bytes)) first; if the answer shows it is
/// larger, the rest is fetched in
/// parts of [`part_bytes`](PartsPolicy::part_bytes) over
/// [`connections`](PartsPolicy::connections) connections, each written at its offset in the
/// work file, each with `If-Match` on the ETag so an object that changes meanwhile is not
/// stitched from two versions. A server that ignores ranges is read on one connection.
/// Split objects are not resumed after a crash (their work file has holes); within a run a
/// broken part resumes on its own.
///
/// ```
/// let parts = haul::PartsPolicy::new(4).part_bytes(32 << 20);
/// let spec = haul::JobSpec::single("https://host/big.tar").parts(parts);
/// # drop(spec);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartsPolicy {
    /// Connections per object, the first included. At least 2 to split at all.
    pub connections: usize,
    /// The size of each part. Default 16 MiB.
    pub part_bytes: u64,
    /// Objects up to this size are not split; larger ones get this much as their first part
    /// (what the opening GET asks for). Default 64 MiB.
    pub min_object_bytes: u64,
}

impl PartsPolicy {
    /// Split objects larger than 64 MiB: the first 64 MiB on the opening connection, the rest
    /// in 16 MiB parts, over `connections` connections in all.
    pub fn new(connections: usize) -> PartsPolicy {
        PartsPolicy {
            connections,
            part_bytes: 16 << 20,
            min_object_bytes: 64 << 20,
        }
    }

    /// Sets [`part_bytes`](PartsPolicy::part_bytes) (at least 64 KiB).
    pub fn part_bytes(mut self, bytes: u64) -> PartsPolicy {
        self.part_bytes = bytes.max(64 << 10);
        self
    }

    /// Sets [`min_object_bytes`](PartsPolicy::min_object_bytes) (at least 64 KiB).
    pub fn min_object_bytes(mut self, bytes: u64) -> PartsPolicy {
        self.min_object_bytes = bytes.max(64 << 10);
        self
    }

    /// Whether it splits anything at all.
    pub(crate) fn active(&self) -> bool {
        self.connections >= 2 && self.min_object_bytes > 0
    }
}

/// The work file the parts go into.
#[derive(Clone, Copy)]
struct Target<'a> {
    file: &'a File,
    path: &'a Path,
}

/// A writer at an offset of a shared file (`pwrite`), so parts need no seek or lock.
struct At<'a> {
    file: &'a File,
    offset: u64,
}

impl Write for At<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Fetches an object of `total` bytes into `file` (already `total` long): part 0 (its first
/// `min_object_bytes`) from `first`, the response to the opening ranged GET, and the other
/// parts in parallel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fetch(
    client: &HttpClient,
    task: &Request<'_>,
    policy: &PartsPolicy,
    file: &File,
    path: &Path,
    total: u64,
    etag: Option<&str>,
    first: ureq::http::Response<ureq::Body>,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<(), Failure> {
    // Part 0 is what the opening GET asked for; the rest comes in `part_bytes` pieces.
    let first_len = policy.min_object_bytes.min(total);
    let parts = 1 + (total - first_len).div_ceil(policy.part_bytes);
    debug!(
        "GET {}: {total} bytes in {parts} parts over {} connections",
        crate::source::url::redact(task.url),
        policy.connections
    );
    let next = AtomicU64::new(1);
    let failed = AtomicBool::new(false);
    let error: Mutex<Option<Failure>> = Mutex::new(None);
    let span = |part: u64| {
        if part == 0 {
            return (0, first_len);
        }
        let start = first_len + (part - 1) * policy.part_bytes;
        (start, (start + policy.part_bytes).min(total))
    };
    // Each worker runs parts until none are left or one has failed.
    let work = |first: Option<ureq::http::Response<ureq::Body>>| {
        crate::http::transport::with_cancel(cancel, || {
            let mut first = first;
            let mut part = if first.is_some() {
                0
            } else {
                next.fetch_add(1, Ordering::Relaxed)
            };
            while part < parts && !failed.load(Ordering::Relaxed) {
                let (start, end) = span(part);
                let target = Target { file, path };
                if let Err(failure) = fetch_part(
                    client,
                    task,
                    target,
                    start,
                    end,
                    etag,
                    first.take(),
                    progress,
                    cancel,
                ) {
                    failed.store(true, Ordering::Relaxed);
                    error.lock().get_or_insert(failure);
                    return;
                }
                part = next.fetch_add(1, Ordering::Relaxed);
            }
        });
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..policy.connections.min(parts as usize))
            .filter_map(|i| {
                std::thread::Builder::new()
                    .name(format!("haul-part-{i}"))
                    .spawn_scoped(scope, || work(None))
                    .inspect_err(|e| debug!("no helper thread for a part: {e}"))
                    .ok()
            })
            .collect();
        work(Some(first));
        for helper in helpers {
            if helper.join().is_err() {
                failed.store(true, Ordering::Relaxed);
            }
        }
    });
    match error.into_inner() {
        Some(failure) => Err(failure),
        None if failed.into_inner() => Err(Failure::fatal(DownloadError::Panicked {
            url: crate::source::url::redact(task.url),
            message: "a part's thread panicked".to_owned(),
        })),
        None => Ok(()),
    }
}

/// Bytes `start..end` into their place, retrying and resuming within the part.
#[allow(clippy::too_many_arguments)]
fn fetch_part(
    client: &HttpClient,
    task: &Request<'_>,
    target: Target<'_>,
    start: u64,
    end: u64,
    etag: Option<&str>,
    mut response: Option<ureq::http::Response<ureq::Body>>,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<(), Failure> {
    let shown = || crate::source::url::redact(task.url);
    let seed = crate::downloader::hrw::hash(task.url.as_bytes()) ^ start;
    let mut done = 0u64;
    let mut attempt = 1;
    loop {
        let result = (|| {
            let response = match response.take() {
                Some(response) => response,
                None => {
                    let mut headers = task.headers.to_vec();
                    headers.push((
                        "range".to_owned(),
                        format!("bytes={}-{}", start + done, end - 1),
                    ));
                    if let Some(etag) = etag {
                        headers.push(("if-match".to_owned(), etag.to_owned()));
                    }
                    let response = client
                        .get(task.url, &headers, task.timeout)
                        .map_err(|e| task::request_failure(e, shown(), cancel))?;
                    let status = response.status().as_u16();
                    if status != 206 {
                        // 412: the object changed; 200: the range was ignored. Either way
                        // the parts cannot be stitched: the object starts over whole.
                        return Err(Failure {
                            error: DownloadError::Status {
                                url: shown(),
                                status,
                            },
                            retry: matches!(status, 200 | 408 | 412 | 429 | 500..=599),
                            retry_after: None,
                        });
                    }
                    response
                }
            };
            let want = end - start - done;
            let body = response.into_body().into_reader();
            let mut reader = StallGuard::new(
                ProgressReader::new(io::Read::take(body, want), progress, cancel),
                client.config(),
            );
            let mut out = At {
                file: target.file,
                offset: start + done,
            };
            let streamed = task::BUFFER.with_borrow_mut(|buffer| {
                if buffer.len() != task::BUFFER_BYTES {
                    buffer.resize(task::BUFFER_BYTES, 0);
                }
                task::stream(&mut reader, &mut out, buffer)
            });
            match streamed {
                Ok(n) => {
                    done += n;
                    if done < end - start {
                        return Err(Failure::transient(DownloadError::Length {
                            url: shown(),
                            expected: end - start,
                            received: done,
                        }));
                    }
                    Ok(())
                }
                Err(StreamError::Read(e, n)) => {
                    done += n;
                    if crate::progress::is_cancelled(&e) {
                        return Err(Failure::fatal(DownloadError::Cancelled { url: shown() }));
                    }
                    Err(Failure::transient(DownloadError::Body {
                        url: shown(),
                        received: done,
                        source: e,
                    }))
                }
                Err(StreamError::Write(source)) => Err(Failure::fatal(DownloadError::Local {
                    action: "writing",
                    path: target.path.to_owned(),
                    source,
                })),
            }
        })();
        let failure = match result {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        let restarts_object = matches!(
            failure.error,
            DownloadError::Status {
                status: 200 | 412,
                ..
            }
        );
        if cancel.is_cancelled() || !failure.retry || restarts_object {
            return Err(failure);
        }
        let Some(wait) = task.retry.delay(attempt, failure.retry_after, seed) else {
            return Err(failure);
        };
        log::warn!(
            "{}; part at {start} attempt {attempt} of {} failed, retrying in {wait:.2?}",
            task::chain(&failure.error),
            task.retry.attempts
        );
        if !cancel.sleep(wait) {
            return Err(Failure::fatal(DownloadError::Cancelled { url: shown() }));
        }
        attempt += 1;
        if let Some(retries) = task.retries {
            retries.fetch_add(1, Ordering::Relaxed);
        }
    }
}
