//! Joggers: worker threads pinned to one target (`haul-jog-<dir or bucket>-<i>`), each
//! running one task at a time from that target's bounded queue, after taking leave from the
//! task's host when the concurrency adapts (see [`flow`](crate::flow)).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use log::{debug, info, trace};

use crate::downloader::dispatcher::{Done, Task};
use crate::downloader::pool::Pool;
use crate::downloader::store::Present;
use crate::engine::error::DownloadError;
use crate::engine::verify::Verifier;
use crate::engine::{Context, Source};
use crate::fetch::MemoryBudget;
use crate::flow::{self, Permit};
use crate::progress::Progress;
use crate::source::url;
use crate::target::file::{self, Outcome, Request, same_second};
use crate::target::mountpath::Mountpath;
use crate::target::s3::{self, S3Target};

pub(crate) struct Jogger {
    /// The pool it belongs to: its queue, target, client and the hosts' gates.
    pub(crate) pool: Arc<Pool>,
    /// This jogger's identity in a job's list of running transfers.
    pub(crate) slot: u64,
}

impl Jogger {
    /// Runs tasks until the queue is closed and empty.
    pub(crate) fn run(self) {
        debug!("jogger {} started", self.slot);
        // One progress record per jogger, reset per task: no allocation per object.
        let progress = Arc::new(Progress::new());
        let pool = &self.pool;
        for task in &pool.setup.queue {
            pool.took_task();
            let kept = self.run_one(&task, &progress);
            pool.task_done();
            let done = Done {
                job: Arc::clone(&task.job),
                sync: task.sync.map(|ticket| (ticket.seq, kept)),
            };
            // The dispatcher may be gone on shutdown; nothing to tell then.
            let _ = pool.setup.done.send(done);
        }
        debug!("jogger {} stopped", self.slot);
    }

    /// Runs one task; returns whether the object is at its target now (landed, or skipped
    /// as already there).
    fn run_one(&self, task: &Task, progress: &Arc<Progress>) -> bool {
        let job = &task.job;
        if job.is_aborted() {
            trace!("{}: dropping {}: job aborted", job.id, task.name);
            job.cancelled();
            return false;
        }
        if let (Some(&code), Target::Dir(mountpath)) =
            (self.pool.stopped.get(), &*self.pool.setup.target)
        {
            let error = DownloadError::TargetFull {
                dir: mountpath.root().to_owned(),
                source: std::io::Error::from_raw_os_error(code),
            };
            job.failed(task.name.to_string(), error);
            return false;
        }
        // What the return value tells a sync's record: `true` records the object as haul's
        // (landed now, or landed before and unchanged); `false` keeps the record's old line,
        // so a file haul did not write never becomes one it may delete.
        let revalidate = match self.present(task) {
            Ok(None) => None,
            Ok(Some(Present::Ours)) => {
                debug!(
                    "{}: skipping {}: unchanged since haul wrote it",
                    job.id, task.name
                );
                job.skipped();
                return true;
            }
            Ok(Some(Present::Skip)) => {
                debug!("{}: skipping {}: already present", job.id, task.name);
                job.skipped();
                return false;
            }
            Ok(Some(Present::Same)) => {
                debug!(
                    "{}: skipping {}: the target holds the same bytes",
                    job.id, task.name
                );
                job.skipped();
                return false;
            }
            Ok(Some(Present::Check { size, modified })) => Some((size, modified)),
            Err(error) => {
                job.failed(task.name.to_string(), error);
                return false;
            }
        };
        if self.pool.setup.dry_run {
            let size = task.size.unwrap_or(0);
            let what = if revalidate.is_some() {
                "check again"
            } else if task.local.is_some() {
                "upload"
            } else {
                "download"
            };
            info!(
                target: crate::DRY_RUN_LOG_TARGET,
                "{}: would {what} {} ({size} bytes)",
                job.id,
                task.name
            );
            job.landed(size);
            return false;
        }
        let known = job
            .known
            .get(task.name.as_str())
            .cloned()
            .unwrap_or_default();
        let from = match (&task.local, &task.key, &job.bucket) {
            (Some(path), _, _) => From::File(path),
            (None, Some(key), Some(bucket)) => From::Remote(Source::S3 {
                bucket,
                key,
                // A manifest's `version:ID`: that version, whatever the key holds now.
                version: known.version.as_deref(),
            }),
            _ => From::Remote(Source::Url(&task.url)),
        };
        let Ok((permit, uploads)) = self.leave(&from, job) else {
            job.cancelled();
            return false;
        };
        progress.reset();
        let started = std::time::Instant::now();
        job.start_running(self.slot, &task.name, progress);
        let ctx = Context {
            client: &self.pool.setup.client,
            headers: &job.headers,
            timeout: job.timeout,
            limiter: job.limiter.as_ref(),
            retry: &job.retry,
            retries: Some(&job.retries),
            progress,
            cancel: &job.cancel,
            flow: permit.as_ref(),
        };
        // The bytes that landed, or `None` when revalidation found the file up to date.
        let result = caught(&task.url, || match &*self.pool.setup.target {
            Target::Dir(mountpath) => {
                let From::Remote(source) = from else {
                    unreachable!("a job of local files is refused at submit without S3 targets")
                };
                let request = Request {
                    source,
                    name: &task.name,
                    known: &known,
                    revalidate,
                    parts: job.parts.as_ref(),
                    helpers: self.pool.setup.split_tails.then_some(&*self.pool as _),
                };
                file::fetch(&ctx, &request, mountpath).map(|outcome| match outcome {
                    Outcome::Landed(landed) => Some(landed.bytes),
                    Outcome::Unchanged => None,
                })
            }
            Target::S3 { target, budget } => {
                let observer = uploads.as_ref().map(Permit::observer);
                let to = s3::UploadTo {
                    target,
                    budget,
                    observer,
                    helpers: self.pool.setup.split_tails.then_some(&*self.pool as _),
                };
                match &from {
                    From::File(path) => s3::store_file(&ctx, path, &task.name, &to),
                    From::Remote(source) => s3::store(&ctx, source, &task.name, &known, &to),
                }
                .map(Some)
            }
        });
        match &result {
            Ok(Some(bytes)) => {
                if let Some(permit) = &permit {
                    permit.succeeded(*bytes);
                }
                if let Some(uploads) = &uploads {
                    uploads.succeeded(*bytes);
                }
            }
            // A revalidation that found the file current: a request with no body, which
            // measures the host all the same.
            Ok(None) => {
                if let Some(permit) = &permit {
                    permit.succeeded(0);
                }
            }
            Err(_) => {}
        }
        drop(uploads);
        drop(permit);
        job.stop_running(self.slot, matches!(result, Ok(Some(_))));
        match result {
            Ok(Some(bytes)) => {
                trace!(
                    "{}: {} landed: {bytes} bytes in {:?}",
                    job.id,
                    task.name,
                    started.elapsed()
                );
                job.landed(bytes)
            }
            Ok(None) => {
                // Revalidated as unchanged: a file that matches, not one haul wrote now.
                job.skipped();
                return false;
            }
            Err(e) if e.is_cancelled() => {
                job.cancelled();
                return false;
            }
            Err(e) => {
                self.stop_if_full(&e);
                job.failed(task.name.to_string(), e);
                return false;
            }
        }
        true
    }

    /// Stops the target taking objects when `error` says it cannot take any more: a full
    /// disk, an exceeded quota, a read-only file system. Said once, at warn.
    fn stop_if_full(&self, error: &DownloadError) {
        let Target::Dir(mountpath) = &*self.pool.setup.target else {
            return;
        };
        let Some(code) = no_room(error) else {
            return;
        };
        if self.pool.stopped.set(code).is_ok() {
            log::warn!(
                "{}: {}: no more objects are written there; the other output directories \
                 carry on",
                mountpath.root().display(),
                std::io::Error::from_raw_os_error(code)
            );
        }
    }

    /// Leave from the source's host to run a transfer (none to read a local file) and, into
    /// a bucket, leave for its uploads (taken second: every jogger in the same order), so
    /// that a store that says SlowDown gets fewer PUTs at once; `Err` when the job was
    /// cancelled while it waited.
    fn leave(
        &self,
        from: &From<'_>,
        job: &crate::downloader::store::Job,
    ) -> Result<(Option<Permit>, Option<Permit>), ()> {
        let flows = &self.pool.setup.flows;
        let flow = match from {
            From::Remote(Source::Url(url)) => Some(flows.flow(flow::host_of(url))),
            From::Remote(Source::S3 { bucket, .. }) => {
                Some(flows.flow(&format!("s3://{}", bucket.name())))
            }
            From::File(_) => None,
        };
        let permit = match flow {
            Some(flow) => Some(flow.acquire(&job.cancel).ok_or(())?),
            None => None,
        };
        let uploads = match &*self.pool.setup.target {
            Target::S3 { target, .. } => {
                let uploads = flows.flow(&target.uploads_flow());
                let uploads = uploads.acquire(&job.cancel).ok_or(())?;
                // Its source's retries must not wait at the source's gate while it holds this.
                if let Some(permit) = &permit {
                    permit.keep_place();
                }
                Some(uploads)
            }
            Target::Dir(_) => None,
        };
        Ok((permit, uploads))
    }

    /// Whether the object is already at its target, as far as the job cares (see
    /// [`Existing`](crate::Existing)): a file on a mountpath, or a key in a store (one HEAD).
    fn present(&self, task: &Task) -> Result<Option<Present>, DownloadError> {
        let job = &task.job;
        match &*self.pool.setup.target {
            Target::Dir(mountpath) => {
                let path = mountpath.path_of(&task.name);
                // A sync job's object unchanged since haul downloaded it: there, same size.
                let expected = task.sync.and_then(|t| t.expect);
                if expected.is_some()
                    && std::fs::symlink_metadata(&path)
                        .is_ok_and(|m| m.is_file() && Some(m.len()) == expected)
                {
                    return Ok(Some(Present::Ours));
                }
                match (job.existing(&path), task.size.zip(task.modified)) {
                    // The listing answers for a request: a file of the object's size and,
                    // to the second, its time (haul sets a landed file's time to the
                    // object's) is unchanged; any other is not. (Stores do not all honour
                    // `If-Range`: SeaweedFS answers a revalidation 416 whatever the time.)
                    (Some(Present::Check { size, modified }), Some((listed_size, listed))) => {
                        Ok((size == listed_size && same_second(listed, modified))
                            .then_some(Present::Same))
                    }
                    (present, _) => Ok(present),
                }
            }
            Target::S3 { target, .. } => {
                if job.existing == crate::Existing::Replace {
                    return Ok(None);
                }
                let key = target.key_of(&task.name);
                if let Some(path) = &task.local {
                    return stored_same(task, target, &key, path);
                }
                let head =
                    crate::http::transport::with_cancel(&job.cancel, || target.bucket().head(&key));
                match head {
                    Ok(found) => Ok(found.map(|_| Present::Skip)),
                    Err(source) => Err(DownloadError::Store {
                        key: format!("s3://{}/{key}", target.bucket().name()),
                        source: Box::new(source),
                    }),
                }
            }
        }
    }
}

/// The OS error in `error`'s chain that says its file system takes no more objects:
/// `ENOSPC`, `EDQUOT` or `EROFS`.
fn no_room(error: &DownloadError) -> Option<i32> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(code) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .filter(|c| [libc::ENOSPC, libc::EDQUOT, libc::EROFS].contains(c))
        {
            return Some(code);
        }
        next = e.source();
    }
    None
}

/// Where a task's bytes come from: a remote object, or a local file to upload.
enum From<'a> {
    Remote(Source<'a>),
    File(&'a std::path::Path),
}

/// Whether a local file's key in `target` is there as the job cares (see
/// [`JobSpec::local`](crate::JobSpec::local)): for [`Existing::Skip`](crate::Existing::Skip)
/// any object the listing found; for [`Existing::Revalidate`](crate::Existing::Revalidate)
/// one of the file's size whose MD5 ETag in the listing, or else stored checksum (one
/// HEAD), the file's bytes match. An object the store keeps no checksum of cannot be told unchanged: it is uploaded.
fn stored_same(
    task: &Task,
    target: &S3Target,
    key: &str,
    path: &std::path::Path,
) -> Result<Option<Present>, DownloadError> {
    let job = &task.job;
    let Some(stored) = &task.stored else {
        return Ok(None);
    };
    if job.existing == crate::Existing::Skip {
        return Ok(Some(Present::Skip));
    }
    if task.size != Some(stored.size) {
        return Ok(None);
    }
    // A single-part object's ETag in the listing is its MD5: no request needed. (An ETag
    // that only looks like one, of a KMS-encrypted object, never matches: uploaded again,
    // which costs bytes but loses nothing.) Otherwise the stored checksum, from a HEAD.
    let listed_md5 = stored
        .etag
        .as_deref()
        .and_then(crate::engine::verify::etag_md5);
    let mut verifier = match listed_md5 {
        Some(md5) => Verifier::new(None, Some(md5), None),
        None => {
            let head =
                crate::http::transport::with_cancel(&job.cancel, || target.bucket().head_info(key));
            let info = head.map_err(|source| DownloadError::Store {
                key: format!("s3://{}/{key}", target.bucket().name()),
                source: Box::new(source),
            })?;
            let Some(info) = info.filter(|info| info.total == task.size) else {
                return Ok(None); // gone or rewritten since it was listed
            };
            Verifier::new(None, info.md5(), info.checksum.as_ref())
        }
    };
    if verifier.is_empty() {
        debug!(
            "{}: s3://{}/{key} keeps no checksum to compare {} with: uploading it",
            job.id,
            target.bucket().name(),
            path.display()
        );
        return Ok(None);
    }
    verifier.update_from_file(path, &job.cancel).map_err(|e| {
        DownloadError::from_read(e, &path.display().to_string(), |source| {
            DownloadError::Local {
                action: "reading",
                path: path.to_owned(),
                source,
            }
        })
    })?;
    match verifier.finish() {
        Ok(()) => Ok(Some(Present::Same)),
        Err(mismatch) => {
            debug!("{}: {} changed: {mismatch}", job.id, path.display());
            Ok(None)
        }
    }
}

/// Where a jogger puts objects: a local directory, or a place in an S3 store with the
/// downloader's memory budget for the parts in flight.
#[derive(Debug)]
pub(crate) enum Target {
    Dir(Arc<Mountpath>),
    S3 {
        target: Box<S3Target>,
        budget: Arc<MemoryBudget>,
    },
}

/// Runs one transfer; a panic inside it becomes [`DownloadError::Panicked`] for that object,
/// and the jogger goes on.
fn caught<T>(
    url: &str,
    transfer: impl FnOnce() -> Result<T, DownloadError>,
) -> Result<T, DownloadError> {
    catch_unwind(AssertUnwindSafe(transfer)).unwrap_or_else(|panic| {
        Err(DownloadError::Panicked {
            url: url::redact_url(url),
            message: panic_message(&*panic),
        })
    })
}

/// The message a panic carried.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_transfer_fails_its_object_and_the_thread_goes_on() {
        let err = caught::<()>("http://h/x?sig=s3cr3t", || panic!("boom {}", 7)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "GET http://h/x?sig=REDACTED: panicked: boom 7"
        );
        let err = caught::<()>("http://h/y", || panic!("static")).unwrap_err();
        assert!(matches!(err, DownloadError::Panicked { ref message, .. } if message == "static"));
        // The same thread carries on with the next transfer.
        assert_eq!(caught("http://h/z", || Ok(5)).unwrap(), 5);
    }
}
