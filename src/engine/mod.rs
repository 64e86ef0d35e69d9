//! The transfer engine: one object's bytes from an HTTP(S) source, safely.
//!
//! Every path that moves an object's bytes — into a work file, into ranged parts at their
//! offsets, into any `Write`, into an S3 target's part buffer, into the fetcher's memory —
//! goes through [`fetch`]. It sends the GETs (following redirects itself, so the job's
//! headers never reach another host), classifies each failure ([`classify`]), waits out the
//! backoff ([`retry`]), resumes a body that broke off with `Range` and `If-Range` or
//! `If-Match`, checks every response against what was asked and against the object's first
//! response ([`response`]), and verifies the whole object ([`verify`]). The paths differ only
//! in the [`Destination`](dest::Destination) the bytes go into.

pub(crate) mod classify;
pub(crate) mod dest;
pub(crate) mod error;
pub(crate) mod parts;
pub(crate) mod rate;
pub(crate) mod response;
pub(crate) mod retry;
pub(crate) mod verify;

use std::io::{self, Read};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use log::{debug, warn};
use parking_lot::Mutex;

use crate::cancel::CancelToken;
use crate::http::HttpClient;
use crate::progress::{self, Progress, ProgressReader};
use crate::s3::Bucket;
use crate::source::url;

use classify::{Failure, Verdict};
use dest::Destination;
use error::DownloadError;
use rate::{RateLimiter, Throttled};
use response::{Asked, Framing, ObjectInfo};
use retry::RetryPolicy;
use verify::{Sha256Digest, Verifier};

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

    fn url(&self) -> Result<String, Failure<DownloadError>> {
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
    fn condition<'p>(&self, pinned: &'p ObjectInfo, span: Span) -> Condition<'p> {
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

/// What every transfer of one caller shares: the client, the job's headers and limits, the
/// retry policy, the progress record and the cancel token.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) client: &'a HttpClient,
    pub(crate) headers: &'a [(String, String)],
    /// A limit on each GET, headers and body together.
    pub(crate) timeout: Option<Duration>,
    pub(crate) limiter: Option<&'a RateLimiter>,
    pub(crate) retry: &'a RetryPolicy,
    /// Counts every retry.
    pub(crate) retries: Option<&'a AtomicU64>,
    pub(crate) progress: &'a Progress,
    pub(crate) cancel: &'a CancelToken,
}

/// Which bytes of the object a transfer wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    /// All of it, however long it turns out to be.
    Whole,
    /// Bytes `start..end` (fewer when the object ends sooner).
    Range { start: u64, end: u64 },
}

impl Span {
    fn bounds(self) -> (u64, Option<u64>) {
        match self {
            Span::Whole => (0, None),
            Span::Range { start, end } => (start, Some(end)),
        }
    }
}

/// The version of the object a transfer is pinned to: set by its first response (or known
/// from a listing or a crashed run's sidecar), shared by the parts of one object so that
/// no part of another version is ever stitched in. It also keeps where a redirect moved the
/// object, so later requests (resumes, other parts) go there directly.
#[derive(Debug, Default)]
pub(crate) struct Pin(Mutex<Pinned>);

#[derive(Debug, Default)]
struct Pinned {
    info: Option<ObjectInfo>,
    location: Option<Location>,
}

impl Pin {
    pub(crate) fn new() -> Pin {
        Pin::default()
    }

    /// Pinned to `info` from the start.
    pub(crate) fn of(info: ObjectInfo) -> Pin {
        Pin(Mutex::new(Pinned {
            info: Some(info),
            location: None,
        }))
    }

    pub(crate) fn get(&self) -> Option<ObjectInfo> {
        self.0.lock().info.clone()
    }

    fn set(&self, info: ObjectInfo) {
        self.0.lock().info = Some(info);
    }

    /// Forgets the version (the object starts over) and where it was.
    pub(crate) fn clear(&self) {
        *self.0.lock() = Pinned::default();
    }

    fn location(&self) -> Option<Location> {
        self.0.lock().location.clone()
    }

    fn set_location(&self, location: &Location) {
        self.0.lock().location = Some(location.clone());
    }

    /// Pins `info` when nothing is pinned yet; otherwise why it is another version, if it
    /// is. A size the pinned version did not know is learned.
    pub(crate) fn settle(&self, info: &ObjectInfo) -> Result<(), String> {
        let mut pinned = self.0.lock();
        match &mut pinned.info {
            None => {
                pinned.info = Some(info.clone());
                Ok(())
            }
            Some(known) => match known.differs(info) {
                Some(why) => Err(why),
                None => {
                    known.total = known.total.or(info.total);
                    Ok(())
                }
            },
        }
    }
}

/// What a whole object is checked against, besides its length.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expect<'a> {
    /// The SHA-256 the caller expects.
    pub(crate) sha256: Option<&'a Sha256Digest>,
    /// The MD5 an S3 single-part ETag stands for, and a full-object checksum the store
    /// returns.
    pub(crate) store_digests: bool,
}

/// What a finished transfer did.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The version fetched.
    pub(crate) info: ObjectInfo,
    /// Attempts it took (1 when nothing went wrong).
    pub(crate) attempts: u32,
    /// Bytes thrown away because the object had to start over.
    pub(crate) refetched: u64,
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
    let mut extra = Vec::with_capacity(2);
    if let Some(range) = asked.range() {
        extra.push(("range".to_owned(), range));
    }
    match condition {
        Condition::None => {}
        Condition::IfRange(v) => extra.push(("if-range".to_owned(), v.to_owned())),
        Condition::IfMatch(v) => extra.push(("if-match".to_owned(), v.to_owned())),
    }
    let mut hops = 0;
    let response = loop {
        let mut headers = if with_headers {
            ctx.headers.to_vec()
        } else {
            Vec::new()
        };
        headers.extend(extra.iter().cloned());
        let response = ctx
            .client
            .get(&url, &headers, ctx.timeout)
            .map_err(|e| request_failure(e, shown.clone(), ctx.cancel))?;
        let status = response.status().as_u16();
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
            return Err(Failure {
                verdict: classify::status(status, headers),
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

/// Fetches `span` of the object from `source` into `dest`, retrying, resuming and checking
/// as the module documentation says; `pin` is the version it must be (empty: whatever the
/// first response is), `first` a response already in hand for the span's start.
///
/// A whole object that changed, or was answered in a way that cannot be used, starts over
/// in `dest` (which may refuse: a stream that already wrote). A part cannot start over on
/// its own: it fails with [`DownloadError::Changed`] or [`DownloadError::Unusable`], and
/// whoever assembles the parts decides.
pub(crate) fn fetch(
    ctx: &Context<'_>,
    source: &Source<'_>,
    span: Span,
    dest: &mut dyn Destination,
    pin: &Pin,
    expect: Expect<'_>,
    first: Option<Answer>,
) -> Result<Fetched, DownloadError> {
    let shown = source.shown();
    if ctx.cancel.is_cancelled() {
        return Err(DownloadError::Cancelled { url: shown });
    }
    let mut run = Run {
        ctx,
        source,
        span,
        pin,
        expect,
        first,
        location: None,
        verifier: None,
        refetched: 0,
        attempts: 0,
        shown: shown.clone(),
    };
    let seed = crate::downloader::hrw::hash(shown.as_bytes()) ^ span.bounds().0;
    crate::http::transport::with_cancel(ctx.cancel, || {
        retry::retrying(
            ctx.retry,
            Some(ctx.cancel),
            seed,
            ctx.retries,
            |number| {
                run.attempts = number;
                run.attempt(dest).map_err(|f| Failure {
                    error: f.error.named(&run.shown),
                    verdict: f.verdict,
                })
            },
            |_| DownloadError::Cancelled { url: shown.clone() },
        )
    })?;
    Ok(Fetched {
        info: pin.get().unwrap_or_default(),
        attempts: run.attempts,
        refetched: run.refetched,
    })
}

/// One transfer's state across its attempts.
struct Run<'r, 'a> {
    ctx: &'r Context<'a>,
    source: &'r Source<'a>,
    span: Span,
    pin: &'r Pin,
    expect: Expect<'r>,
    first: Option<Answer>,
    location: Option<Location>,
    /// The whole object's running digests, once its first response is known.
    verifier: Option<Verifier>,
    refetched: u64,
    attempts: u32,
    shown: String,
}

impl Run<'_, '_> {
    fn whole(&self) -> bool {
        self.span == Span::Whole
    }

    /// One GET and its body: on success `dest` holds the whole span, verified.
    fn attempt(&mut self, dest: &mut dyn Destination) -> Result<(), Failure<DownloadError>> {
        let mut held = dest.held();
        let pinned = self.pin.get();
        // A whole object's resume must be pinned to its version; without a validator it
        // starts over.
        if held > 0 && self.whole() && pinned.as_ref().and_then(ObjectInfo::validator).is_none() {
            debug!(
                "GET {}: no validator to resume with: starting over",
                self.shown
            );
            self.restart(dest).map_err(|_| {
                Failure::fatal(DownloadError::Unusable {
                    url: self.shown.clone(),
                    reason: format!(
                        "it sent no validator to resume with, and {held} bytes were delivered already"
                    ),
                })
            })?;
            held = 0;
        }
        let (start, end) = self.span.bounds();
        let asked = Asked {
            start: start + held,
            end,
        };
        let answer = match self.first.take() {
            Some(answer) => answer,
            None => {
                if self.location.is_none() {
                    self.location = self.pin.location();
                }
                let condition = match &pinned {
                    Some(pinned) if held > 0 || !self.whole() => {
                        self.source.condition(pinned, self.span)
                    }
                    _ => Condition::None,
                };
                let requested =
                    request(self.ctx, self.source, &mut self.location, asked, condition);
                match requested {
                    Ok(answer) => answer,
                    Err(failure) => return Err(self.refused(dest, failure, held)),
                }
            }
        };
        if let Some(location) = &answer.location {
            self.pin.set_location(location);
            self.location = Some(location.clone());
        }
        // 416: nothing left from where the resume asked. Complete only when that is the end
        // of the very version held.
        let Some(framing) = answer.framing else {
            let complete = self.whole()
                && held > 0
                && answer.info.total == Some(held)
                && pinned
                    .as_ref()
                    .is_none_or(|p| p.differs(&answer.info).is_none());
            if complete {
                debug!("GET {}: complete at {held} bytes", self.shown);
                return self.verify(dest);
            }
            let reason = match answer.info.total {
                Some(total) => format!("416 with {total} bytes, {held} held"),
                None => "416 without a size".to_owned(),
            };
            return Err(self.changed(dest, reason));
        };
        // A 200 to a resume: the range was ignored, or If-Range found another version.
        // Either way it is the whole object, from its first byte.
        if framing.start < asked.start {
            if !self.whole() {
                return Err(Failure::fatal(DownloadError::Unusable {
                    url: self.shown.clone(),
                    reason: "the server ignored the range".to_owned(),
                }));
            }
            let why = match pinned.as_ref().and_then(|p| p.differs(&answer.info)) {
                Some(why) => why,
                None => "the server ignored the range".to_owned(),
            };
            warn!(
                "GET {}: starting over after {held} bytes: {why}",
                self.shown
            );
            if let Err(refused) = self.restart(dest) {
                let url = self.shown.clone();
                let error = match pinned.as_ref().and_then(|p| p.differs(&answer.info)) {
                    Some(reason) => DownloadError::Changed { url, reason },
                    None => DownloadError::Unusable { url, reason: why },
                };
                return Err(self.start_over_refused(error, refused));
            }
            held = 0;
        }
        let fresh = held == 0;
        if fresh && self.whole() {
            self.pin.set(answer.info.clone());
            self.verifier = None;
        } else if let Err(why) = self.pin.settle(&answer.info) {
            return Err(self.changed(dest, why));
        }
        // What this response must still deliver: the span's end, or the object's.
        let span_end = match end {
            Some(end) => Some(framing.total.map_or(end, |t| end.min(t))),
            None => framing.total.or(self.pin.get().and_then(|p| p.total)),
        };
        let len = span_end.map(|e| e - start);
        if fresh {
            dest.begin(&answer.info, len)
                .map_err(|e| Failure::fatal(e.named(&self.shown)))?;
        }
        if self.whole() {
            self.ctx.progress.set_total(len);
            self.ctx.progress.set_done(held);
        }
        if self.whole() && self.verifier.is_none() {
            self.start_verifier(dest)?;
        }
        let want = span_end.map(|e| e - (start + held));
        let more_than_wanted = framing.len.zip(want).is_some_and(|(len, want)| len > want);
        self.read_body(dest, answer.response, want, more_than_wanted, held)?;
        let held = dest.held();
        if let Some(end) = span_end
            && start + held != end
        {
            let (expected, received) = (end - start, held);
            let error = DownloadError::Length {
                url: self.shown.clone(),
                expected,
                received,
            };
            if received > expected {
                return Err(self.start_over(dest, error));
            }
            return Err(Failure::transient(error));
        }
        if self.whole() {
            return self.verify(dest);
        }
        Ok(())
    }

    /// Streams `response`'s body into `dest`: `want` bytes when known. With
    /// `more_than_wanted` the body goes on past them (a whole object of which only a part
    /// is wanted) and the rest is left unread; otherwise a body that goes on is too long.
    fn read_body(
        &mut self,
        dest: &mut dyn Destination,
        response: ureq::http::Response<ureq::Body>,
        want: Option<u64>,
        more_than_wanted: bool,
        held: u64,
    ) -> Result<(), Failure<DownloadError>> {
        let ctx = self.ctx;
        let body = response.into_body().into_reader();
        let reader = crate::http::StallGuard::new(
            ProgressReader::new(body, ctx.progress, ctx.cancel),
            ctx.client.config(),
        );
        let mut reader: Box<dyn Read + '_> = match ctx.limiter {
            None => Box::new(reader),
            Some(limiter) => Box::new(Throttled {
                inner: reader,
                limiter,
                cancel: ctx.cancel,
            }),
        };
        let mut got = 0u64;
        let broke = loop {
            let left = want.map_or(u64::MAX, |w| w - got);
            if left == 0 {
                if more_than_wanted {
                    break None;
                }
                // Nothing may follow: a body longer than announced is not this object.
                match reader.read(&mut [0; 1]) {
                    Ok(0) => break None,
                    Ok(_) => {
                        dest.flush()
                            .map_err(|e| Failure::fatal(e.named(&self.shown)))?;
                        let expected = dest.held();
                        let error = DownloadError::Length {
                            url: self.shown.clone(),
                            expected,
                            received: expected + 1,
                        };
                        return Err(self.start_over(dest, error));
                    }
                    Err(e) => break Some(e),
                }
            }
            let space = dest
                .space()
                .map_err(|e| Failure::fatal(e.named(&self.shown)))?;
            let n = space.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match reader.read(&mut space[..n]) {
                Ok(0) => break None,
                Ok(n) => {
                    if let Some(verifier) = &mut self.verifier {
                        verifier.update(&space[..n]);
                    }
                    dest.filled(n)
                        .map_err(|e| Failure::fatal(e.named(&self.shown)))?;
                    got += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        dest.flush()
            .map_err(|e| Failure::fatal(e.named(&self.shown)))?;
        match broke {
            None => Ok(()),
            Some(e) if progress::is_cancelled(&e) || ctx.cancel.is_cancelled() => {
                debug!("GET {}: cancelled after {} bytes", self.shown, held + got);
                Err(Failure::fatal(DownloadError::Cancelled {
                    url: self.shown.clone(),
                }))
            }
            Some(source) => Err(Failure::transient(DownloadError::Body {
                url: self.shown.clone(),
                received: dest.held(),
                source,
            })),
        }
    }

    /// The whole object's digests: the SHA-256 expected, the MD5 an S3 ETag stands for and
    /// a full-object checksum the store returned. Bytes held from before this run are
    /// replayed into them.
    fn start_verifier(&mut self, dest: &mut dyn Destination) -> Result<(), Failure<DownloadError>> {
        let pinned = self.pin.get().unwrap_or_default();
        let store = self.expect.store_digests;
        let md5 = pinned
            .md5()
            .filter(|_| store && matches!(self.source, Source::S3 { .. }));
        let checksum = pinned.checksum.as_ref().filter(|_| store);
        let mut verifier = Verifier::new(self.expect.sha256, md5, checksum);
        if !verifier.is_empty() && dest.held() > 0 {
            dest.replay(&mut |bytes| verifier.update(bytes))
                .map_err(|e| Failure::fatal(e.named(&self.shown)))?;
        }
        self.verifier = Some(verifier);
        Ok(())
    }

    /// Checks the whole object's digests; a mismatch starts it over.
    fn verify(&mut self, dest: &mut dyn Destination) -> Result<(), Failure<DownloadError>> {
        if self.verifier.is_none() {
            self.start_verifier(dest)?;
        }
        let Some(verifier) = &mut self.verifier else {
            return Ok(());
        };
        match verifier.finish() {
            Ok(()) => Ok(()),
            Err(mismatch) => {
                let error = DownloadError::Digest {
                    url: self.shown.clone(),
                    mismatch,
                };
                Err(self.start_over(dest, error))
            }
        }
    }

    /// Throws away what `dest` holds; the next attempt starts from the object's first byte,
    /// pinned to whatever version answers then. A destination that cannot take bytes back
    /// says why (a [`DownloadError::Changed`] without a URL).
    fn restart(&mut self, dest: &mut dyn Destination) -> Result<(), DownloadError> {
        let dropped = dest.restart()?;
        self.refetched += dropped;
        self.pin.clear();
        if let Some(verifier) = &mut self.verifier {
            verifier.reset();
        }
        self.ctx.progress.set_done(0);
        Ok(())
    }

    /// Starts over after `error`, which another attempt may then mend; when `dest` cannot
    /// take bytes back, `error` is final, with why.
    fn start_over(
        &mut self,
        dest: &mut dyn Destination,
        error: DownloadError,
    ) -> Failure<DownloadError> {
        match self.restart(dest) {
            Ok(()) => Failure::transient(error),
            Err(refused) => self.start_over_refused(error, refused),
        }
    }

    /// `error` made the object start over, and `dest` refused: the error is final.
    fn start_over_refused(
        &self,
        error: DownloadError,
        refused: DownloadError,
    ) -> Failure<DownloadError> {
        Failure::fatal(match (error, refused) {
            (
                DownloadError::Changed { url, reason },
                DownloadError::Changed { reason: why, .. },
            ) => DownloadError::Changed {
                url,
                reason: format!("{reason}, and {why}"),
            },
            (
                DownloadError::Unusable { url, reason },
                DownloadError::Changed { reason: why, .. },
            ) => DownloadError::Unusable {
                url,
                reason: format!("{reason}, and {why}"),
            },
            (error, DownloadError::Changed { .. }) => error,
            (_, other) => other.named(&self.shown),
        })
    }

    /// The object is another version than the one held: a whole object starts over (when
    /// `dest` can), a part fails for good.
    fn changed(&mut self, dest: &mut dyn Destination, reason: String) -> Failure<DownloadError> {
        let error = DownloadError::Changed {
            url: self.shown.clone(),
            reason,
        };
        if !self.whole() {
            return Failure::fatal(error);
        }
        warn!("{}; starting over", retry::error_chain(&error));
        self.start_over(dest, error)
    }

    /// A request that failed: an object changed under its `If-Match` (412), or an answer
    /// that cannot be used, starts a whole object over; a part fails for good.
    fn refused(
        &mut self,
        dest: &mut dyn Destination,
        failure: Failure<DownloadError>,
        held: u64,
    ) -> Failure<DownloadError> {
        match failure.error {
            DownloadError::Changed { reason, .. } => self.changed(dest, reason),
            DownloadError::Unusable { .. } if !self.whole() => Failure::fatal(failure.error),
            DownloadError::Unusable { .. } if held > 0 => {
                warn!("{}; starting over", retry::error_chain(&failure.error));
                self.start_over(dest, failure.error)
            }
            _ => failure,
        }
    }
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
pub(crate) fn header(headers: &ureq::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl Verdict {
    /// Whether another attempt could go better.
    pub(crate) fn retries(self) -> bool {
        matches!(self, Verdict::Retry { .. })
    }
}
