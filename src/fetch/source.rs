//! Where a fetch's keys are read from: the keys of an S3 bucket, or the web (each key an
//! http(s) URL). One request reads from one source; everything else about it — the order,
//! the budget, the parts, the checks — is the same whichever it is.

use super::FetchKey;
use super::error::{FetchError, FetchErrorKind};
use crate::engine::Source;
use crate::http::HttpClient;
use crate::s3::Bucket;

/// Where [`Fetcher::fetch`](super::Fetcher::fetch) reads its keys from. A `&Bucket` or a
/// [`Web`] turns into one, so `fetcher.fetch(&bucket, keys)` and
/// `fetcher.fetch(Web::default(), urls)` both read as they should.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FetchSource {
    /// Each key is a key of this bucket.
    S3(Bucket),
    /// Each key is an http(s) URL.
    Web(Web),
}

/// The web as a fetch's source: every key is an absolute http(s) URL, fetched with one
/// client (its connection pool shared by the fetch's workers) and the headers given, which
/// are sent to the URL's own host only (never to a host a redirect leads to).
///
/// ```
/// let web = haul::Web::default().header("Authorization", "Bearer hf_example");
/// # let _ = web;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Web {
    client: HttpClient,
    headers: Vec<(String, String)>,
}

impl Web {
    /// The web through `client` (its timeouts, TLS roots, egress policy).
    pub fn new(client: HttpClient) -> Web {
        Web {
            client,
            headers: Vec::new(),
        }
    }

    /// Adds a header to every request (an `Authorization` token, say).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Web {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl From<&Bucket> for FetchSource {
    fn from(bucket: &Bucket) -> FetchSource {
        FetchSource::S3(bucket.clone())
    }
}

impl From<Bucket> for FetchSource {
    fn from(bucket: Bucket) -> FetchSource {
        FetchSource::S3(bucket)
    }
}

impl From<Web> for FetchSource {
    fn from(web: Web) -> FetchSource {
        FetchSource::Web(web)
    }
}

impl From<&Web> for FetchSource {
    fn from(web: &Web) -> FetchSource {
        FetchSource::Web(web.clone())
    }
}

impl FetchSource {
    pub(super) fn client(&self) -> &HttpClient {
        match self {
            FetchSource::S3(bucket) => bucket.client(),
            FetchSource::Web(web) => &web.client,
        }
    }

    pub(super) fn headers(&self) -> &[(String, String)] {
        match self {
            FetchSource::S3(_) => &[],
            FetchSource::Web(web) => &web.headers,
        }
    }

    /// What the transfer engine fetches for `key`.
    pub(super) fn engine<'a>(&'a self, key: &'a FetchKey) -> Source<'a> {
        match self {
            FetchSource::S3(bucket) => Source::S3 {
                bucket,
                key: &key.key,
                version: key.version.as_deref(),
            },
            FetchSource::Web(_) => Source::Url(&key.key),
        }
    }

    /// The gate `key`'s GETs take leave from: its bucket's, or its URL's host's.
    pub(super) fn flow_name(&self, key: &FetchKey) -> String {
        match self {
            FetchSource::S3(bucket) => format!("s3://{}", bucket.name()),
            FetchSource::Web(_) => crate::flow::host_of(&key.key).to_owned(),
        }
    }

    /// What errors call `key`: `s3://bucket/key`, or the URL with its secrets redacted.
    pub(super) fn shown(&self, key: &str) -> String {
        match self {
            FetchSource::S3(bucket) => format!("s3://{}/{key}", bucket.name()),
            FetchSource::Web(_) => crate::source::url::redact_url(key),
        }
    }

    /// Why `key` cannot be fetched at all, before any request: a web key that is not an
    /// absolute http(s) URL.
    pub(super) fn refuse(&self, key: &FetchKey) -> Option<FetchErrorKind> {
        match self {
            FetchSource::S3(_) => None,
            FetchSource::Web(_) => crate::source::url::check_url(&key.key)
                .err()
                .map(|e| FetchErrorKind::Url(Box::new(e))),
        }
    }

    /// The checksum of the whole object a store keeps (a ranged GET carries none): S3's,
    /// from one HEAD; the web has no such thing.
    pub(super) fn stored_checksum(
        &self,
        key: &str,
        etag: Option<&str>,
    ) -> Option<crate::engine::verify::StoreChecksum> {
        match self {
            FetchSource::S3(bucket) => bucket.stored_checksum(key, etag),
            FetchSource::Web(_) => None,
        }
    }

    /// Whether an ETag stands for the object's MD5 (an S3 single-part upload's does; a web
    /// server's is opaque).
    pub(super) fn etag_is_md5(&self) -> bool {
        matches!(self, FetchSource::S3(_))
    }

    /// An error about `key`. A web key is a URL, redacted like the error's `url`: errors
    /// are logged and printed, and a URL's query may carry a signature or a token.
    pub(super) fn error(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        kind: FetchErrorKind,
    ) -> FetchError {
        let shown = self.shown(key);
        let key = match self {
            FetchSource::S3(_) => key.to_owned(),
            FetchSource::Web(_) => shown.clone(),
        };
        FetchError::new(shown, key, range, kind)
    }
}
