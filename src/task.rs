//! One object from request to landed file: GET, stream through a [`ProgressReader`] into a
//! work file, check the length, optionally fsync, rename into place.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use log::{debug, trace, warn};

use crate::cancel::CancelToken;
use crate::http::HttpClient;
use crate::mountpath::Mountpath;
use crate::name::ObjectName;
use crate::progress::{self, Progress, ProgressReader};
use crate::rate::RateLimiter;
use crate::url::{self, UrlError};

/// Size of the per-thread buffer bodies are streamed through. `std::io::copy` moves 8 KiB at
/// a time, which was measured 1.4–2× slower for large bodies.
pub const BUFFER_BYTES: usize = 256 * 1024;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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

/// One object to download: where from, under which name, with which extra request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectTask {
    /// The URL to GET.
    pub url: String,
    /// The name the object lands under.
    pub name: ObjectName,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
}

impl ObjectTask {
    /// A task for `url`, landing under `name`.
    pub fn new(url: impl Into<String>, name: ObjectName) -> ObjectTask {
        ObjectTask {
            url: url.into(),
            name,
            headers: Vec::new(),
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
}

/// Downloads one object into `mountpath`.
///
/// The body streams through a [`ProgressReader`] (so `progress` counts every byte and
/// `cancel` stops the transfer within one read) into a work file in the mountpath's work
/// directory, and is renamed into place only when complete and of the announced length. On
/// any error or cancellation the work file is removed: no partial object is ever visible.
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
    };
    fetch(client, &request, mountpath, progress, cancel)
}

/// What the downloader's joggers pass for one object: borrowed from the task and its job.
pub(crate) struct Request<'a> {
    pub(crate) url: &'a str,
    pub(crate) name: &'a ObjectName,
    pub(crate) headers: &'a [(String, String)],
    pub(crate) timeout: Option<std::time::Duration>,
    pub(crate) limiter: Option<&'a RateLimiter>,
}

/// [`download`] for a borrowed request, with the job's timeout and rate limit.
pub(crate) fn fetch(
    client: &HttpClient,
    task: &Request<'_>,
    mountpath: &Mountpath,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<Landed, DownloadError> {
    crate::transport::with_cancel(cancel, || {
        fetch_inner(client, task, mountpath, progress, cancel)
    })
}

fn fetch_inner(
    client: &HttpClient,
    task: &Request<'_>,
    mountpath: &Mountpath,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<Landed, DownloadError> {
    let shown = || url::redact(task.url);
    url::check(task.url)?;
    if cancel.is_cancelled() {
        return Err(DownloadError::Cancelled { url: shown() });
    }
    let response = client
        .get(task.url, task.headers, task.timeout)
        .map_err(|e| {
            if cancel.is_cancelled() {
                DownloadError::Cancelled { url: shown() }
            } else {
                DownloadError::Request {
                    url: shown(),
                    source: Box::new(e),
                }
            }
        })?;
    let status = response.status().as_u16();
    if status != 200 {
        debug!("GET {}: status {status}", shown());
        return Err(DownloadError::Status {
            url: shown(),
            status,
        });
    }
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let expected = crate::http::content_length(response.headers());
    let body = response.into_body();
    progress.set_total(expected);

    let final_path = mountpath.path_of(task.name);
    let mut work = WorkFile::create(mountpath.work_dir(), mountpath.work_path(task.name))?;
    let reader = ProgressReader::new(body.into_reader(), progress, cancel);
    let received = BUFFER.with_borrow_mut(|buffer| {
        if buffer.len() != BUFFER_BYTES {
            buffer.resize(BUFFER_BYTES, 0);
        }
        match task.limiter {
            None => stream(&mut { reader }, &mut work, buffer),
            Some(limiter) => {
                let mut throttled = Throttled {
                    inner: reader,
                    limiter,
                    cancel,
                };
                stream(&mut throttled, &mut work, buffer)
            }
        }
    });
    let received = match received {
        Ok(received) => received,
        Err(StreamError::Read(e, received)) if progress::is_cancelled(&e) => {
            debug!("GET {}: cancelled after {received} bytes", shown());
            return Err(DownloadError::Cancelled { url: shown() });
        }
        Err(StreamError::Read(source, received)) => {
            return Err(DownloadError::Body {
                url: shown(),
                received,
                source,
            });
        }
        Err(StreamError::Write(source)) => return Err(work.error("writing", source)),
    };
    if let Some(expected) = expected.filter(|&e| e != received) {
        return Err(DownloadError::Length {
            url: shown(),
            expected,
            received,
        });
    }
    work.land(&final_path, mountpath.fsyncs())?;
    trace!("landed {} ({received} bytes)", final_path.display());
    Ok(Landed {
        path: final_path,
        bytes: received,
        etag,
    })
}

/// A reader that pays the job's rate limiter for every byte it returns.
struct Throttled<'a, R> {
    inner: R,
    limiter: &'a RateLimiter,
    cancel: &'a CancelToken,
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

enum StreamError {
    Read(io::Error, u64),
    Write(io::Error),
}

/// Copies `reader` into `work`, filling `buffer` before each write to keep writes large.
fn stream(
    reader: &mut impl Read,
    work: &mut WorkFile,
    buffer: &mut [u8],
) -> Result<u64, StreamError> {
    let mut received = 0u64;
    loop {
        let mut filled = 0;
        let mut eof = false;
        while filled < buffer.len() {
            match reader.read(&mut buffer[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StreamError::Read(e, received + filled as u64)),
            }
        }
        if filled > 0 {
            work.file()
                .write_all(&buffer[..filled])
                .map_err(StreamError::Write)?;
            received += filled as u64;
        }
        if eof {
            return Ok(received);
        }
    }
}

/// A work file that removes itself unless it landed.
struct WorkFile {
    path: PathBuf,
    file: Option<File>,
}

impl WorkFile {
    fn create(work_dir: &Path, path: PathBuf) -> Result<WorkFile, DownloadError> {
        let file = match File::create(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The work directory was removed under us: make it again once.
                fs::create_dir_all(work_dir).map_err(|source| DownloadError::Local {
                    action: "creating work directory",
                    path: work_dir.to_owned(),
                    source,
                })?;
                File::create(&path).map_err(|source| DownloadError::Local {
                    action: "creating work file",
                    path: path.clone(),
                    source,
                })?
            }
            Err(source) => {
                return Err(DownloadError::Local {
                    action: "creating work file",
                    path,
                    source,
                });
            }
        };
        Ok(WorkFile {
            path,
            file: Some(file),
        })
    }

    fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("work file is open until it lands")
    }

    fn error(&self, action: &'static str, source: io::Error) -> DownloadError {
        DownloadError::Local {
            action,
            path: self.path.clone(),
            source,
        }
    }

    /// Makes the work file the object at `target`, atomically.
    fn land(mut self, target: &Path, fsync: bool) -> Result<(), DownloadError> {
        let file = self.file.take().expect("work file is open until it lands");
        if fsync {
            file.sync_all().map_err(|e| self.error("syncing", e))?;
        }
        drop(file);
        let parent = target.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|source| DownloadError::Local {
            action: "creating directory",
            path: parent.to_owned(),
            source,
        })?;
        fs::rename(&self.path, target).map_err(|source| DownloadError::Local {
            action: "renaming work file to",
            path: target.to_owned(),
            source,
        })?;
        if fsync {
            File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(|source| DownloadError::Local {
                    action: "syncing directory",
                    path: parent.to_owned(),
                    source,
                })?;
        }
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for WorkFile {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        self.file = None;
        if let Err(e) = fs::remove_file(&self.path) {
            warn!("could not remove work file {}: {e}", self.path.display());
        }
    }
}
