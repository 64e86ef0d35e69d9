//! Why one object's transfer failed.

use std::io;
use std::path::PathBuf;

use crate::engine::verify::DigestMismatch;
use crate::source::url::UrlError;

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
    /// The object changed while it was fetched (a new `ETag` or `Last-Modified`, a 412 on
    /// `If-Match`), and what was already delivered cannot be taken back: a stream, or a part
    /// of an object assembled elsewhere. Downloads to files and S3 targets start over instead.
    #[error("GET {url}: the object changed while it was fetched: {reason}")]
    Changed {
        /// The URL, redacted.
        url: String,
        /// What showed it.
        reason: String,
    },
    /// The server's answer does not fit what was asked (a `Content-Range` other than the
    /// range asked, a total that differs from the first response's), and another attempt got
    /// no better answer.
    #[error("GET {url}: unusable response: {reason}")]
    Unusable {
        /// The URL, redacted.
        url: String,
        /// What was wrong with it.
        reason: String,
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
    /// The transfer was cancelled through its [`CancelToken`](crate::CancelToken).
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
    /// The object was not tried: its output directory stopped taking objects when an
    /// earlier one failed with a full disk, an exceeded quota or a read-only file system
    /// (the other output directories carry on).
    #[error("not written: output directory {} stopped taking objects", dir.display())]
    TargetFull {
        /// The output directory.
        dir: PathBuf,
        /// What it said.
        #[source]
        source: io::Error,
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
    /// A local file's read error: the cancel check's (see
    /// [`ProgressReader`](crate::ProgressReader)) is a cancel of `url`; any other is what
    /// `otherwise` makes of it.
    pub(crate) fn from_read(
        error: io::Error,
        url: &str,
        otherwise: impl FnOnce(io::Error) -> DownloadError,
    ) -> DownloadError {
        if crate::progress::is_cancelled(&error) {
            DownloadError::Cancelled {
                url: url.to_owned(),
            }
        } else {
            otherwise(error)
        }
    }

    /// Whether the error is a cancellation rather than a failure.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, DownloadError::Cancelled { .. })
    }

    /// Whether it interrupted a transfer whose bytes so far are good, so that a later run
    /// may resume them: a cancellation (an abort, a stop signal), or a server or network that
    /// failed past the retries. Not one whose bytes or version are in doubt.
    pub(crate) fn interrupted(&self) -> bool {
        match self {
            DownloadError::Cancelled { .. }
            | DownloadError::Request { .. }
            | DownloadError::Body { .. } => true,
            DownloadError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// What kind of failure this is, without the object it is about: the key of
    /// [`JobStatus::failure_reasons`](crate::JobStatus::failure_reasons).
    pub fn reason(&self) -> String {
        match self {
            DownloadError::Url(_) => "bad URL".to_owned(),
            DownloadError::Status { status, .. } => format!("HTTP status {status}"),
            DownloadError::Request { .. } => "request failed".to_owned(),
            DownloadError::Body { .. } => "body broke off".to_owned(),
            DownloadError::Length { .. } => "wrong length".to_owned(),
            DownloadError::Changed { .. } => "changed while fetched".to_owned(),
            DownloadError::Unusable { .. } => "unusable response".to_owned(),
            DownloadError::Digest { mismatch, .. } => format!("{} mismatch", mismatch.algorithm),
            DownloadError::Egress { .. } => "address refused".to_owned(),
            DownloadError::Cancelled { .. } => "cancelled".to_owned(),
            DownloadError::Panicked { .. } => "panicked".to_owned(),
            DownloadError::Store { .. } => "storing failed".to_owned(),
            DownloadError::Budget { .. } => "larger than the memory budget".to_owned(),
            DownloadError::TargetFull { .. } => "output directory stopped".to_owned(),
            DownloadError::Local { action, source, .. } => {
                format!("{action}: {}", std::io::Error::from(source.kind()))
            }
        }
    }

    /// The URL (redacted) of the object the failure is about, when it names one (not a
    /// local file's failure, or one of an S3 target, which names its key).
    pub fn url(&self) -> Option<&str> {
        match self {
            DownloadError::Url(e) => Some(e.url()),
            DownloadError::Status { url, .. }
            | DownloadError::Request { url, .. }
            | DownloadError::Body { url, .. }
            | DownloadError::Length { url, .. }
            | DownloadError::Changed { url, .. }
            | DownloadError::Unusable { url, .. }
            | DownloadError::Digest { url, .. }
            | DownloadError::Egress { url, .. }
            | DownloadError::Cancelled { url }
            | DownloadError::Panicked { url, .. }
            | DownloadError::Budget { url, .. } => Some(url),
            DownloadError::Store { .. }
            | DownloadError::TargetFull { .. }
            | DownloadError::Local { .. } => None,
        }
    }

    /// The HTTP status the server answered with, for [`DownloadError::Status`].
    pub fn http_status(&self) -> Option<u16> {
        match self {
            DownloadError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error with `url` filled in where its maker could not know it (a destination
    /// refusing to start over knows no URL).
    pub(crate) fn named(self, url: &str) -> DownloadError {
        match self {
            DownloadError::Changed { url: u, reason } if u.is_empty() => DownloadError::Changed {
                url: url.to_owned(),
                reason,
            },
            DownloadError::Unusable { url: u, reason } if u.is_empty() => DownloadError::Unusable {
                url: url.to_owned(),
                reason,
            },
            other => other,
        }
    }
}
