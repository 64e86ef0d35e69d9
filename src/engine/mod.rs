//! The transfer engine: one object's bytes from an HTTP(S) source, safely.
//!
//! Every path that moves an object's bytes — into a work file, into ranged parts at their
//! offsets, into any `Write`, into an S3 target's part buffer, into the fetcher's memory —
//! goes through [`fetch`]. It sends the GETs (following redirects itself, so the job's
//! headers never reach another host), classifies each failure ([`classify`]), waits out the
//! backoff ([`retry`]), resumes a body that broke off with `Range` and `If-Range` or
//! `If-Match`, checks every response against what was asked and against the object's first
//! response ([`response`]), and verifies the whole object ([`verify`]). The paths differ only
//! in the [`Destination`](dest::Destination) the bytes go into. Local files going up into a
//! store are read into the same destinations by [`local`].

pub(crate) mod classify;
pub(crate) mod dest;
pub(crate) mod error;
pub(crate) mod local;
pub(crate) mod parts;
mod pin;
pub(crate) mod rate;
mod request;
pub(crate) mod response;
pub(crate) mod retry;
pub(crate) mod tail;
pub(crate) mod verify;

use std::io::{self, Read};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use log::{debug, warn};

use crate::cancel::CancelToken;
use crate::flow::Permit;
use crate::http::HttpClient;
use crate::progress::{self, Progress, ProgressReader};

pub(crate) use pin::Pin;
pub(crate) use request::{Answer, Condition, Location, Source, request};

use classify::{Failure, Verdict};
use dest::Destination;
use error::DownloadError;
use rate::RateLimiter;
use response::{Asked, ObjectInfo};
use retry::RetryPolicy;
use verify::{Sha256Digest, Verifier};

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
    /// The host's leave for this transfer, told when a response arrives and when the host
    /// pushes back (a downloader with adaptive concurrency).
    pub(crate) flow: Option<&'a Permit>,
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

/// What a whole object is checked against, besides its length.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expect<'a> {
    /// The SHA-256 the caller expects.
    pub(crate) sha256: Option<&'a Sha256Digest>,
    /// A full-object checksum the store returns (`x-amz-checksum-*`).
    pub(crate) checksum: bool,
    /// The MD5 an S3 single-part ETag stands for (checked only for an S3 source, and only
    /// when the ETag is one: not multipart, not KMS-encrypted). It costs a core about 2 s
    /// per GiB (MD5 does not vectorise); the fetcher and the downloader's S3 jobs ask for
    /// it, a plain HTTP download or stream does not.
    pub(crate) md5_etag: bool,
    /// The size a listing gave: an object of another size is not the one listed.
    pub(crate) size: Option<u64>,
    /// The ETag a manifest pinned: an object with another is not the one pinned.
    pub(crate) etag: Option<&'a str>,
}

/// What the caller knows of one object beforehand, to check it against: its SHA-256, its
/// size (from a manifest or a listing) and the ETag a manifest pinned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Known {
    pub(crate) sha256: Option<Sha256Digest>,
    pub(crate) size: Option<u64>,
    pub(crate) etag: Option<String>,
    /// The S3 version to fetch (a manifest's `version:ID`).
    pub(crate) version: Option<String>,
}

impl Known {
    /// What a whole-object fetch checks, besides the store's own checksums.
    pub(crate) fn expect(&self) -> Expect<'_> {
        Expect {
            sha256: self.sha256.as_ref(),
            checksum: true,
            md5_etag: true,
            size: self.size,
            etag: self.etag.as_deref(),
        }
    }
}

/// Why an answer (`info`, the object's `size` bytes) is not the object a listing gave as
/// `listed` bytes or a manifest pinned to ETag `pinned`, if it is not: another attempt
/// would find the same, so the caller fails it at once.
pub(crate) fn not_as_known(
    url: &str,
    listed: Option<u64>,
    pinned: Option<&str>,
    info: &ObjectInfo,
    size: u64,
) -> Option<DownloadError> {
    let got = info.etag.as_deref();
    let reason = if let Some(want) = listed.filter(|&want| want != size) {
        format!("it has {size} bytes, {want} were listed")
    } else {
        let want = pinned.filter(|&want| got != Some(want))?;
        format!(
            "its ETag is {}, the manifest pinned {want}",
            got.unwrap_or("missing")
        )
    };
    Some(DownloadError::Changed {
        url: url.to_owned(),
        reason,
    })
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
                gated(ctx, &shown, || {
                    run.attempt(dest).map_err(|f| Failure {
                        error: f.error.named(&run.shown),
                        verdict: f.verdict,
                    })
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

/// One request of `source` whose body is the caller's (a probe, a revalidation, a split's
/// opening), retried as a transfer's attempts are: by the context's policy, counted, after
/// the backoff, waiting on its cancel token. `attempt` gets the redirect state of a fresh
/// attempt.
pub(crate) fn request_retried<T>(
    ctx: &Context<'_>,
    source: &Source<'_>,
    mut attempt: impl FnMut(&mut Option<Location>) -> Result<T, Failure<DownloadError>>,
) -> Result<T, DownloadError> {
    let shown = source.shown();
    retry::retrying(
        ctx.retry,
        Some(ctx.cancel),
        crate::downloader::hrw::hash(shown.as_bytes()),
        ctx.retries,
        |_| gated(ctx, &shown, || attempt(&mut None)),
        |_| DownloadError::Cancelled { url: shown.clone() },
    )
}

/// An attempt of a transfer under its context's permit: a failure that may be retried gives
/// the transfer's place at the host's gate back for the backoff, and the next attempt waits
/// at the gate for it again ([`Permit::step_out`]), so retries keep within a limit that a 429
/// or 503 cut.
fn gated<T>(
    ctx: &Context<'_>,
    shown: &str,
    attempt: impl FnOnce() -> Result<T, Failure<DownloadError>>,
) -> Result<T, Failure<DownloadError>> {
    if let Some(permit) = ctx.flow
        && !permit.step_in(ctx.cancel)
    {
        return Err(Failure::fatal(DownloadError::Cancelled {
            url: shown.to_owned(),
        }));
    }
    let result = attempt();
    if let (Err(failure), Some(permit)) = (&result, ctx.flow)
        && failure.verdict != Verdict::Fatal
    {
        permit.step_out();
    }
    result
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
        if fresh
            && self.whole()
            && let Some(error) = len.and_then(|len| {
                let (size, etag) = (self.expect.size, self.expect.etag);
                not_as_known(&self.shown, size, etag, &answer.info, len)
            })
        {
            return Err(Failure::fatal(error));
        }
        if fresh {
            dest.begin(&answer.info, len)
                .map_err(|e| Failure::fatal(e.named(&self.shown)))?;
        } else {
            dest.resumed(&answer.info, len);
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
        let mut held = dest.held();
        // Stopped at a cut: the rest comes from the connections that took it, in order.
        while let Some(end) = span_end
            && start + held < end
            && dest.cut(held) == Some(held)
        {
            let verifier = &mut self.verifier;
            let complete = dest
                .join_cut(&mut |bytes| {
                    if let Some(verifier) = verifier.as_mut() {
                        verifier.update(bytes);
                    }
                })
                .map_err(|e| Failure::fatal(e.named(&self.shown)))?;
            held = dest.held();
            if !complete {
                // A piece failed: this stream resumes from it (the check below says how
                // far it got).
                break;
            }
        }
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
            // Also for a resumed or chunked body, whose first answer was not checked.
            let (size, etag) = (self.expect.size, self.expect.etag);
            let info = self.pin.get().unwrap_or_default();
            if let Some(error) = not_as_known(&self.shown, size, etag, &info, dest.held()) {
                return Err(Failure::fatal(error));
            }
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
        let mut reader = rate::limited(reader, ctx.limiter, ctx.cancel);
        let mut got = 0u64;
        let broke = loop {
            let mut left = want.map_or(u64::MAX, |w| w - got);
            // The bytes past a cut are other connections': leave them unread.
            if let Some(cut) = dest.cut(held + got) {
                left = left.min(cut.saturating_sub(held + got));
                if left == 0 {
                    break None;
                }
            }
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
    /// a checksum the store returned (full-object, or composite once its parts' sizes are
    /// known). Bytes held from before this run are replayed into them.
    fn start_verifier(&mut self, dest: &mut dyn Destination) -> Result<(), Failure<DownloadError>> {
        let pinned = self.pin.get().unwrap_or_default();
        let md5 = pinned
            .md5()
            .filter(|_| self.expect.md5_etag && matches!(self.source, Source::S3 { .. }));
        // A composite checksum (of the parts' checksums) needs the parts' sizes: one request
        // for them, or the skip logged at debug.
        let composite = match (&pinned.composite, self.source) {
            (Some(composite), Source::S3 { bucket, key, .. }) if self.expect.checksum => {
                bucket.composite_parts(key, pinned.etag_unquoted(), composite)
            }
            (Some(composite), _) if self.expect.checksum => {
                debug!(
                    "GET {}: a composite {} checksum is not verified: no store to ask its parts",
                    self.shown, composite.algorithm
                );
                None
            }
            _ => None,
        };
        let checksum = pinned
            .checksum
            .as_ref()
            .or(composite.as_ref())
            .filter(|_| self.expect.checksum);
        let mut verifier = Verifier::new(self.expect.sha256, md5, checksum);
        if !verifier.is_empty() && dest.held() > 0 {
            dest.replay(&mut |bytes| verifier.update(bytes))
                .map_err(|e| Failure::fatal(e.named(&self.shown)))?;
        }
        dest.verifying(!verifier.is_empty());
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

impl Verdict {
    /// Whether another attempt could go better.
    pub(crate) fn retries(self) -> bool {
        matches!(self, Verdict::Retry { .. })
    }
}
