//! One request: where an object's bytes come from ([`Source`]), the GET with its range and
//! precondition, redirects followed (the job's headers kept to their origin), and the status
//! and framing checked before a byte of the body is used.

use log::debug;

use crate::cancel::CancelToken;
use crate::engine::classify::{self, Failure, Verdict};
use crate::engine::error::DownloadError;
use crate::engine::response::{self, Asked, Framing, ObjectInfo};
use crate::engine::{Context, Span};
use crate::s3::Bucket;
use crate::source::url;

/// The most redirects one request follows.
const MAX_REDIRECTS: u32 = 10;

/// Where an object's bytes come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// A URL, fetched as it is.
    Url(&'a str),
    /// A key of an S3 bucket (a version of it, when given); every request is presigned
    /// afresh, so a transfer that outlives a signature keeps going.
    S3 {
        bucket: &'a Bucket,
        key: &'a str,
        version: Option<&'a str>,
    },
}

impl Source<'_> {
    /// What errors and logs call it: the URL with its secrets redacted, or `s3://bucket/key`.
    /// Stable from run to run (no signature in it), so a work file's sidecar can record it.
    pub(crate) fn shown(&self) -> String {
        match self {
            Source::Url(url) => url::redact_url(url),
            Source::S3 {
                bucket,
                key,
                version: None,
            } => format!("s3://{}/{key}", bucket.name()),
            Source::S3 {
                bucket,
                key,
                version: Some(v),
            } => format!("s3://{}/{key}?versionId={v}", bucket.name()),
        }
    }

    pub(crate) fn url(&self) -> Result<String, Failure<DownloadError>> {
        match self {
            Source::Url(url) => Ok((*url).to_owned()),
            Source::S3 {
                bucket,
                key,
                version,
            } => bucket.presign_get(key, *version).map_err(|e| {
                Failure::fatal(DownloadError::Request {
                    url: self.shown(),
                    source: Box::new(e),
                })
            }),
        }
    }

    /// The condition that pins a resume (or a part) to `pinned`: S3 documents `If-Match`;
    /// for an HTTP server a whole object's resume asks `If-Range`, so a changed object
    /// comes back whole in the same round trip, and a part asks `If-Match`.
    pub(crate) fn condition<'p>(&self, pinned: &'p ObjectInfo, span: Span) -> Condition<'p> {
        let strong = pinned.strong_etag();
        match (self, span, strong) {
            (Source::S3 { .. }, _, Some(etag))
            | (Source::Url(_), Span::Range { .. }, Some(etag)) => Condition::IfMatch(etag),
            (Source::S3 { .. }, _, None) => Condition::None,
            (Source::Url(_), _, _) => pinned
                .validator()
                .map_or(Condition::None, Condition::IfRange),
        }
    }
}

/// A precondition on a request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Condition<'a> {
    None,
    /// The range only if the object still has this validator; else the whole object.
    IfRange(&'a str),
    /// Only if the object still has this ETag; else 412.
    IfMatch(&'a str),
}

/// Where a transfer's requests go once a redirect moved them, and whether the job's headers
/// may go there (not to another origin, nor from https to http).
#[derive(Debug, Clone)]
pub(crate) struct Location {
    url: String,
    headers: bool,
}

/// A response whose status and framing were checked, its body still to read.
pub(crate) struct Answer {
    pub(crate) response: ureq::http::Response<ureq::Body>,
    pub(crate) status: u16,
    /// What it says of the object; `total` included.
    pub(crate) info: ObjectInfo,
    /// Which bytes its body carries (`None` for a 416, which carries none).
    pub(crate) framing: Option<Framing>,
    /// Where it came from, after redirects.
    pub(crate) location: Option<Location>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("info", &self.info)
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

/// Sends one GET for `asked` with `condition`, following redirects, and checks its status
/// and framing: a 200 or 206 that fits what was asked, or a 416, is an [`Answer`]; anything
/// else is a classified failure. `location` is where an earlier redirect moved the
/// transfer, and is updated by this one's.
pub(crate) fn request(
    ctx: &Context<'_>,
    source: &Source<'_>,
    location: &mut Option<Location>,
    asked: Asked,
    condition: Condition<'_>,
) -> Result<Answer, Failure<DownloadError>> {
    let shown = source.shown();
    let (mut url, mut with_headers) = match location {
        Some(at) => (at.url.clone(), at.headers),
        None => (source.url()?, true),
    };
    let mut extra = Vec::with_capacity(3);
    if let Source::S3 { .. } = source {
        let (name, value) = crate::s3::CHECKSUM_MODE;
        extra.push((name.to_owned(), value.to_owned()));
    }
    if let Some(range) = asked.range() {
        extra.push(("range".to_owned(), range));
    }
    match condition {
        Condition::None => {}
        Condition::IfRange(v) => extra.push(("if-range".to_owned(), v.to_owned())),
        Condition::IfMatch(v) => extra.push(("if-match".to_owned(), v.to_owned())),
    }
    let body = match ctx.flow {
        Some(flow) if flow.small_bodies() => crate::http::Body::Small,
        _ => crate::http::Body::Any,
    };
    let mut hops = 0;
    let response = loop {
        let mut headers = if with_headers {
            ctx.headers.to_vec()
        } else {
            Vec::new()
        };
        headers.extend(extra.iter().cloned());
        let sent = match ctx.flow {
            Some(flow) => {
                let request = crate::flow::hedge::Request {
                    client: ctx.client,
                    url: &url,
                    headers: &headers,
                    timeout: ctx.timeout,
                    body,
                };
                flow.get(&request, ctx.cancel)
            }
            None => ctx.client.get(&url, &headers, ctx.timeout, body),
        };
        let response = sent.map_err(|e| {
            let failure = request_failure(e, shown.clone(), ctx.cancel);
            if let Some(flow) = ctx.flow
                && failure.verdict != Verdict::Fatal
            {
                flow.throttled();
            }
            failure
        })?;
        let status = response.status().as_u16();
        if let Some(flow) = ctx.flow {
            match status {
                429 | 503 => flow.throttled(),
                _ => flow.responded(),
            }
            // A large body: the host's later requests go out with large buffers. This one
            // is read where it came (64 KiB reads cost nothing measurable, even at a GiB on
            // loopback; asked again, it cost a request and a new connection's round trips).
            let large = crate::http::content_length(response.headers())
                .is_some_and(|len| len >= crate::flow::LARGE_BODY_BYTES);
            if large && matches!(status, 200 | 206) {
                flow.large_body();
            }
        }
        let target = matches!(status, 301 | 302 | 303 | 307 | 308)
            .then(|| header(response.headers(), "location"))
            .flatten();
        let Some(target) = target else {
            break response;
        };
        hops += 1;
        let next = ::url::Url::parse(&url)
            .and_then(|base| base.join(&target))
            .map_err(|e| {
                Failure::fatal(DownloadError::Unusable {
                    url: shown.clone(),
                    reason: format!("a redirect to {:?}: {e}", url::redact_url(&target)),
                })
            })?;
        if hops > MAX_REDIRECTS {
            return Err(Failure::fatal(DownloadError::Unusable {
                url: shown,
                reason: format!("more than {MAX_REDIRECTS} redirects"),
            }));
        }
        crate::source::url::check_url(next.as_str()).map_err(|e| Failure::fatal(e.into()))?;
        let here = ::url::Url::parse(&url).ok();
        let same_origin = here.as_ref().is_some_and(|h| h.origin() == next.origin());
        if with_headers && !same_origin && !ctx.headers.is_empty() {
            debug!(
                "GET {shown}: redirected to {}: the job's headers are not sent there",
                url::redact_url(next.as_str())
            );
        }
        with_headers &= same_origin;
        url = next.into();
        *location = Some(Location {
            url: url.clone(),
            headers: with_headers,
        });
    };
    let status = response.status().as_u16();
    let headers = response.headers();
    let mut info = ObjectInfo::of(headers);
    let framing = match status {
        200 | 206 => {
            let framing = response::framing(status, headers, asked).map_err(|reason| {
                Failure::transient(DownloadError::Unusable {
                    url: shown.clone(),
                    reason,
                })
            })?;
            info.total = framing.total;
            Some(framing)
        }
        416 => {
            info.total = response::unsatisfied_size(headers);
            None
        }
        412 => {
            return Err(Failure::transient(DownloadError::Changed {
                url: shown,
                reason: "412 Precondition Failed on If-Match".to_owned(),
            }));
        }
        _ => {
            debug!("GET {shown}: status {status}");
            let mut verdict = classify::status(status, headers);
            // A bucket in another region than it was signed for: signed for that one, the
            // next attempt can succeed.
            if let Source::S3 { bucket, .. } = source {
                let headers = headers.clone();
                let text = crate::s3::error_text(response.into_body());
                if bucket.follow_region(status, &headers, &text) {
                    verdict = Verdict::AGAIN;
                }
            }
            return Err(Failure {
                verdict,
                error: DownloadError::Status { url: shown, status },
            });
        }
    };
    Ok(Answer {
        response,
        status,
        info,
        framing,
        location: location.clone(),
    })
}

/// Classifies a request that got no response.
pub(crate) fn request_failure(
    error: ureq::Error,
    url: String,
    cancel: &CancelToken,
) -> Failure<DownloadError> {
    if cancel.is_cancelled() {
        return Failure::fatal(DownloadError::Cancelled { url });
    }
    if let Some(refused) = crate::http::egress::refusal(&error).cloned() {
        return Failure::fatal(DownloadError::Egress {
            url,
            refused: Box::new(refused),
        });
    }
    Failure {
        verdict: classify::request(&error),
        error: DownloadError::Request {
            url,
            source: Box::new(error),
        },
    }
}

/// A header's value as text.
fn header(headers: &ureq::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
