//! Why one key of a fetch failed. Every error names its object (`s3://bucket/key`, or the
//! URL), key and, for a part, range.

use std::fmt;

use crate::s3::S3Error;

/// Why one key (or one part of it) could not be fetched.
///
/// Its `Display` is `GET s3://bucket/key[ bytes=a-b]: what` (or `GET https://…`); the
/// cause, when there is one, is its [`source`](std::error::Error::source).
#[derive(Debug)]
#[non_exhaustive]
pub struct FetchError {
    /// The object: `s3://bucket/key`, or the URL with its secrets redacted.
    pub url: String,
    /// The key (for the web, the URL, redacted as `url` is).
    pub key: String,
    /// The byte range (first, last inclusive) when a part failed.
    pub range: Option<(u64, u64)>,
    /// What went wrong.
    pub kind: FetchErrorKind,
}

/// What went wrong with a key.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// The key does not exist (404).
    NotFound,
    /// Another error status.
    Status {
        /// The status code.
        status: u16,
    },
    /// No response: connection refused or reset, timeout, TLS.
    Request(Box<dyn std::error::Error + Send + Sync>),
    /// The body broke off.
    Body {
        /// Bytes received before it did.
        received: u64,
        /// Why.
        source: std::io::Error,
    },
    /// The body's length differs from the expected size.
    Length {
        /// Bytes expected (the listed size or the range).
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The store sent no Content-Length for an object of unknown size.
    NoLength,
    /// The bytes do not have the digest the store gave for them (the MD5 in a single-part
    /// upload's ETag).
    Digest(Box<crate::engine::verify::DigestMismatch>),
    /// The request could not be signed.
    Sign(Box<S3Error>),
    /// A web fetch's key is not an absolute http(s) URL; nothing was requested.
    Url(Box<crate::source::url::UrlError>),
    /// The object changed while its parts were fetched (another ETag, a 412 on
    /// `If-Match`): the parts already read are of another version.
    Changed(String),
    /// The store's answer did not fit what was asked (a `Content-Range` other than the
    /// range asked), and another attempt got no better answer.
    Unusable(String),
    /// The caller's key iterator panicked; the request ends with this item.
    Keys(String),
    /// Fetching the key panicked (a bug in haul or a library it uses); the pool survived.
    Panicked(String),
    /// The request was cancelled (its `Objects` or the `Fetcher` was dropped).
    Cancelled,
}

impl From<crate::engine::error::DownloadError> for FetchErrorKind {
    /// What the transfer engine's error means for one key.
    fn from(error: crate::engine::error::DownloadError) -> FetchErrorKind {
        use crate::engine::error::DownloadError as E;
        match error {
            E::Status { status: 404, .. } => FetchErrorKind::NotFound,
            E::Status { status, .. } => FetchErrorKind::Status { status },
            E::Request { source, .. } => match source.downcast::<S3Error>() {
                Ok(sign) => FetchErrorKind::Sign(sign),
                Err(source) => FetchErrorKind::Request(source),
            },
            E::Egress { refused, .. } => FetchErrorKind::Request(refused),
            E::Body {
                received, source, ..
            } => FetchErrorKind::Body { received, source },
            E::Length {
                expected, received, ..
            } => FetchErrorKind::Length { expected, received },
            E::Digest { mismatch, .. } => FetchErrorKind::Digest(mismatch),
            E::Changed { reason, .. } => FetchErrorKind::Changed(reason),
            E::Unusable { reason, .. } => FetchErrorKind::Unusable(reason),
            E::Cancelled { .. } => FetchErrorKind::Cancelled,
            E::Panicked { message, .. } => FetchErrorKind::Panicked(message),
            other => FetchErrorKind::Request(Box::new(other)),
        }
    }
}

impl FetchError {
    pub(crate) fn new(
        url: String,
        key: String,
        range: Option<(u64, u64)>,
        kind: FetchErrorKind,
    ) -> FetchError {
        FetchError {
            url,
            key,
            range,
            kind,
        }
    }

    /// Whether the key does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, FetchErrorKind::NotFound)
    }

    /// Whether the fetch was cancelled rather than failed.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, FetchErrorKind::Cancelled)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GET {}", self.url)?;
        if let Some((first, last)) = self.range {
            write!(f, " bytes={first}-{last}")?;
        }
        match &self.kind {
            FetchErrorKind::NotFound => write!(f, ": not found"),
            FetchErrorKind::Status { status } => write!(f, ": HTTP status {status}"),
            FetchErrorKind::Request(_) => write!(f, ": request failed"),
            FetchErrorKind::Body { received, .. } => {
                write!(f, ": body broke off after {received} bytes")
            }
            FetchErrorKind::Length { expected, received } => {
                write!(f, ": {received} bytes arrived, expected {expected}")
            }
            FetchErrorKind::NoLength => write!(f, ": no Content-Length"),
            FetchErrorKind::Digest(mismatch) => write!(f, ": {mismatch}"),
            FetchErrorKind::Sign(_) => write!(f, ": cannot sign the request"),
            FetchErrorKind::Url(e) => write!(f, ": {e}"),
            FetchErrorKind::Changed(reason) => {
                write!(f, ": the object changed while it was fetched: {reason}")
            }
            FetchErrorKind::Unusable(reason) => write!(f, ": unusable response: {reason}"),
            FetchErrorKind::Keys(message) => write!(f, ": the key iterator panicked: {message}"),
            FetchErrorKind::Panicked(message) => write!(f, ": panicked: {message}"),
            FetchErrorKind::Cancelled => write!(f, ": cancelled"),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            FetchErrorKind::Request(e) => Some(&**e),
            FetchErrorKind::Body { source, .. } => Some(source),
            FetchErrorKind::Sign(e) => Some(&**e),
            _ => None,
        }
    }
}

/// Why a [`Fetcher`](super::Fetcher) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetcherBuildError {
    /// A figure that must be at least 1 was 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The per-request cap exceeds the pool.
    #[error("per_request_workers ({cap}) exceeds workers ({pool})")]
    CapAbovePool {
        /// The per-request cap.
        cap: usize,
        /// The pool size.
        pool: usize,
    },
    /// The budget cannot hold one part per worker of a fixed pool (one part, for an
    /// adaptive one).
    #[error(
        "memory budget of {budget} bytes cannot hold one {part_size}-byte part per worker ({workers} workers need {needed})"
    )]
    BudgetTooSmall {
        /// The budget.
        budget: u64,
        /// The part size.
        part_size: u64,
        /// The threads the pool starts with.
        workers: usize,
        /// What it would take.
        needed: u64,
    },
    /// The largest whole object exceeds the budget.
    #[error("max_whole_object ({max}) exceeds the memory budget ({budget})")]
    WholeAboveBudget {
        /// The largest whole object.
        max: u64,
        /// The budget.
        budget: u64,
    },
    /// A worker thread could not be spawned; the threads already started were stopped.
    #[error("cannot spawn thread {name}")]
    Spawn {
        /// The thread's name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
