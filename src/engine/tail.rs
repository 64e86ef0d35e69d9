//! The tail of a job: when there is nothing left to start and workers sit idle, a slow
//! transfer's remaining bytes are split among them instead of waiting for its one connection.
//!
//! A [`Tail`] is the destination a stream writes through: a work file's whole object (the
//! downloader), an object on its way into an S3 target, an object or part in the fetcher's
//! memory, or a piece's own stream (so a slow piece is cut again). Every [`LOOK_EVERY`] it
//! judges the stream by its rate since it began (or since it resumed): when the bytes left
//! would take its one connection more than [`SPLIT_AFTER`], and the caller lends idle
//! workers' turns ([`Helpers::lend`]: none while work waits to start), the bytes left are cut
//! into equal pieces on the store's alignment. The stream keeps the first and stops at its
//! end (the engine leaves the rest of its body unread); each other piece is a ranged GET on
//! a thread of its own (`haul-piece-<i>`), pinned to the stream's version (`If-Match`, every
//! answer checked), whose bytes go where its [`PieceStore`] says: at its offset in the work
//! file, into memory of its own, or up as parts of the S3 upload. When the stream reaches the
//! cut it joins the pieces in order, feeding their bytes to the object's digests when it has
//! any to check, so the object is verified as if it had come on one connection. A piece that
//! fails is the stream's again: it resumes from there. A piece refused because the object
//! changed (or whose server mangles ranges) stops the splitting of that object. A work file,
//! once cut, is sized to the object and its sidecar lists the good bytes (the stream's,
//! rewritten as it is judged and as each piece is joined), so a run after a crash mid-split
//! fetches only the rest; an interrupted stream keeps its work file with the stream's bytes
//! and those the pieces brought, listed in the sidecar. A transfer held to a rate
//! ([`JobSpec::rate_limit`](crate::JobSpec)) is never split: it is slow on purpose.

use std::collections::VecDeque;
use std::ops::Range;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use log::debug;

use crate::cancel::CancelToken;
use crate::engine::dest::{Destination, MemoryDest};
use crate::engine::error::DownloadError;
use crate::engine::parts;
use crate::engine::response::ObjectInfo;
use crate::engine::{self, Answer, Context, Expect, Fetched, Pin, Source, Span, retry};

/// Idle workers whose turns a slow transfer may borrow for pieces of its tail.
pub(crate) trait Helpers: Sync {
    /// Claims up to `most` idle workers' turns; none while work waits to start.
    fn lend(&self, most: usize) -> usize;
    /// A piece is done: its turn is given back.
    fn give_back(&self);
}

/// What a joined piece's bytes are fed to: the object's digests, when they need them.
pub(crate) type Feed<'a> = Option<&'a mut dyn FnMut(&[u8])>;

/// Where a cut tail's bytes go: the stream's own destination, which holds the bytes before
/// the cut and takes each piece's, in order, as the stream joins it. Offsets are the span's.
pub(crate) trait PieceStore: Destination {
    /// What a piece's thread needs to put its bytes in place (a work file's path).
    type Place: Send + 'static;
    /// What a piece's thread brings back: its bytes, unless they are in place already.
    type Brought: Send + 'static;
    /// What records the good bytes once the store has holes (a work file's sidecar).
    type Record;

    /// The first cut: makes room for all `total` bytes of the span, past the stream's.
    fn make_room(&mut self, total: u64) -> Result<Self::Record, DownloadError>;

    /// Records the bytes good so far: the stream's, the pieces joined among them.
    fn record(&self, record: &Self::Record);

    /// What the thread of the piece of bytes `range` takes with it; `None`: the piece cannot
    /// be taken now (no memory for it), and the stream keeps its bytes. `bytes_needed`: the
    /// object's digests need the piece's bytes when it is joined (else only what is in place).
    fn place(&self, range: &Range<u64>, bytes_needed: bool) -> Option<Self::Place>;

    /// Piece boundaries fall on multiples of this (from the span's start): an upload's part
    /// size, so each piece is whole parts.
    fn align(&self) -> u64 {
        ALIGN
    }

    /// Fetches the object's bytes `range` on a piece's thread: the outcome, and how many of
    /// the range's bytes (from its start) are in place. A piece that is slow itself may be
    /// cut again for `helpers` (through [`fetch`]).
    fn fetch_piece(
        place: Self::Place,
        ctx: &Context<'_>,
        source: &Source<'_>,
        range: Range<u64>,
        pin: &Pin,
        helpers: &dyn Helpers,
    ) -> (Result<Self::Brought, DownloadError>, u64);

    /// Takes a finished piece (bytes `range` of the span, right after those held), feeding
    /// its bytes to `f` when the digests need them (`None`: they do not): they are the
    /// stream's from now on.
    fn join_piece(
        &mut self,
        range: Range<u64>,
        brought: Self::Brought,
        f: Feed<'_>,
    ) -> Result<(), DownloadError>;

    /// The stream was interrupted while pieces were out: the ranges of a `total`-byte span
    /// they brought, for a store that keeps bytes for a later run.
    fn keep_brought(&mut self, total: u64, brought: Vec<Range<u64>>) {
        let _ = (total, brought);
    }
}

/// Fetches `span` of the object into `store` (see [`engine::fetch`]), through a [`Tail`] when
/// `helpers` may take pieces of it.
#[allow(clippy::too_many_arguments)] // engine::fetch's, and the helpers
pub(crate) fn fetch<S: PieceStore>(
    ctx: &Context<'_>,
    source: &Source<'_>,
    span: Span,
    store: &mut S,
    pin: &Pin,
    expect: Expect<'_>,
    first: Option<Answer>,
    helpers: Option<&dyn Helpers>,
) -> Result<Fetched, DownloadError> {
    match helpers {
        Some(helpers) => std::thread::scope(|scope| {
            let mut tail = Tail::new(scope, ctx, source, pin, helpers, span, store);
            engine::fetch(ctx, source, span, &mut tail, pin, expect, first)
        }),
        None => engine::fetch(ctx, source, span, store, pin, expect, first),
    }
}

/// How long a stream runs before its rate is judged.
const MEASURE: Duration = Duration::from_millis(500);
/// How often a stream is judged.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// A stream is cut when the bytes left would take it longer than this: more than a new
/// connection's handshake, request and slow start cost across a WAN.
const SPLIT_AFTER: Duration = Duration::from_secs(1);
/// The smallest piece.
const MIN_PIECE: u64 = 1 << 20;
/// The most pieces at once besides the stream (aria2c's `-x` ceiling, all told).
const MAX_PIECES: usize = parts::AUTO_CONNECTIONS - 1;
/// Piece boundaries fall on multiples of this.
const ALIGN: u64 = 64 << 10;

/// What a piece's thread returns: its outcome and how many of its bytes are in place.
type PieceOutcome<B> = (Result<B, DownloadError>, u64);

/// One piece of a cut tail: bytes `range` of the span, fetched by its own thread (`None`: it
/// could not be started, for want of a thread or of memory, so the stream takes it back).
struct Piece<'scope, B> {
    range: Range<u64>,
    cancel: CancelToken,
    thread: Option<ScopedJoinHandle<'scope, PieceOutcome<B>>>,
}

/// A stream's destination that may hand the tail of its span to idle workers (see the
/// module documentation). Dropping it cancels and joins the pieces still running.
pub(crate) struct Tail<'scope, 'env, 'd, S: PieceStore> {
    scope: &'scope Scope<'scope, 'env>,
    ctx: &'env Context<'env>,
    source: &'env Source<'env>,
    pin: &'env Pin,
    helpers: &'env dyn Helpers,
    store: &'d mut S,
    /// Where the span starts in the object: a piece asks for its bytes there.
    base: u64,
    /// Whether the span is a range of the object (not all of it).
    ranged_span: bool,
    /// Whether ranges are known to be served: the span was asked for as one, or the source
    /// is S3. A range's tail (a fetcher's part, or a piece cut again) does not report its
    /// connections: the progress is the whole object's.
    ranged: bool,
    /// The span's length, while it may be cut: known, at least two pieces, from a server
    /// that takes ranges and names a validator.
    total: Option<u64>,
    /// Whether pieces may be cut at all: not once one was refused because the object
    /// changed or its server mangles ranges (the stream then finishes alone, whatever
    /// version it starts over on).
    splits: bool,
    /// Where the stream stops, while pieces after it are out.
    cut: Option<u64>,
    /// The pieces after the cut, in order of their ranges (contiguous from the cut).
    pieces: VecDeque<Piece<'scope, S::Brought>>,
    /// Records the good bytes once the store has holes.
    record: Option<S::Record>,
    /// Whether the object's digests need the pieces' bytes when they are joined.
    bytes_needed: bool,
    /// When the stream began and where it was then: its rate is measured from there.
    began: (Instant, u64),
    next_look: Instant,
}

impl<'scope, 'env, 'd, S: PieceStore> Tail<'scope, 'env, 'd, S> {
    /// A tail for `span` of the object, written into `store`.
    pub(crate) fn new(
        scope: &'scope Scope<'scope, 'env>,
        ctx: &'env Context<'env>,
        source: &'env Source<'env>,
        pin: &'env Pin,
        helpers: &'env dyn Helpers,
        span: Span,
        store: &'d mut S,
    ) -> Self {
        let now = Instant::now();
        let (base, asked_range) = match span {
            Span::Whole => (0, false),
            Span::Range { start, .. } => (start, true),
        };
        // S3 serves ranges of every object, whether or not its store says so.
        let ranged = asked_range || matches!(source, Source::S3 { .. });
        Tail {
            scope,
            ctx,
            source,
            pin,
            helpers,
            store,
            base,
            ranged_span: asked_range,
            ranged,
            total: None,
            // A transfer held to a rate is slow on purpose: more connections would not help.
            splits: ctx.limiter.is_none(),
            cut: None,
            pieces: VecDeque::new(),
            record: None,
            bytes_needed: true,
            began: (now, 0),
            next_look: now + MEASURE,
        }
    }

    /// Cuts the stream at `at` when it is slow and workers are idle.
    fn consider(&mut self, at: u64, now: Instant) {
        let Some(total) = self.total else { return };
        // A split file's sidecar follows the stream, so a crash loses little of it.
        self.record_stream();
        let end = self.cut.unwrap_or(total);
        let left = end.saturating_sub(at);
        if left < 2 * MIN_PIECE {
            return;
        }
        let (since, from) = self.began;
        let rate = at.saturating_sub(from) as f64 / now.duration_since(since).as_secs_f64();
        if left as f64 > rate * SPLIT_AFTER.as_secs_f64() {
            let running = self.pieces.iter().filter(|p| p.running()).count();
            let most = MAX_PIECES
                .saturating_sub(running)
                .min(usize::try_from(left / MIN_PIECE - 1).unwrap_or(usize::MAX));
            let lent = match most {
                0 => 0,
                most => self.helpers.lend(most),
            };
            if lent > 0 {
                self.split(at, end, lent, rate);
            }
        }
        if !self.ranged_span {
            let running = self.pieces.iter().filter(|p| p.running()).count();
            self.ctx.progress.set_connections(1 + running);
        }
    }

    /// Records the good bytes so far, once the store has holes.
    fn record_stream(&self) {
        if let Some(record) = &self.record {
            self.store.record(record);
        }
    }

    /// Cuts `at..end` into `lent + 1` pieces: the stream keeps the first.
    fn split(&mut self, at: u64, end: u64, lent: usize, rate: f64) {
        // As many pieces as the store has room for: each one fewer gives a turn back.
        let mut lent = lent;
        let (bounds, places) = loop {
            let bounds = self.bounds(at, end, lent);
            if bounds[0] >= end {
                // Too little left for a whole piece past the stream's.
                (0..lent).for_each(|_| self.helpers.give_back());
                return;
            }
            let places: Option<Vec<Option<S::Place>>> = bounds
                .windows(2)
                .map(|w| match w[0]..w[1] {
                    empty if empty.is_empty() => Some(None),
                    range => self.store.place(&range, self.bytes_needed).map(Some),
                })
                .collect();
            match places {
                Some(places) => break (bounds, places),
                None => {
                    self.helpers.give_back();
                    lent -= 1;
                    if lent == 0 {
                        debug!("GET {}: no room for a piece now", self.source.shown());
                        return;
                    }
                }
            }
        };
        if self.record.is_none() {
            // From now on the store has holes: room for the whole span, and a record of
            // the good bytes (a work file's sidecar, so a run after a crash fetches only
            // the rest).
            match self.store.make_room(self.total.unwrap_or(end)) {
                Ok(record) => self.record = Some(record),
                Err(e) => {
                    debug!("GET {}: not split: {e}", self.source.shown());
                    (0..lent).for_each(|_| self.helpers.give_back());
                    return;
                }
            }
            self.record_stream();
        }
        debug!(
            "GET {}: {} bytes left at {:.1} MB/s: {lent} more connections take {}..{end}",
            self.source.shown(),
            end - at,
            rate / 1e6,
            bounds[0],
        );
        // The new pieces come before those of an earlier cut, which start at `end`.
        let ranges = bounds.windows(2).map(|w| w[0]..w[1]);
        for (i, (range, place)) in ranges.zip(places).enumerate().rev() {
            match place {
                Some(place) => {
                    let piece = self.start(i, range, place);
                    self.pieces.push_front(piece);
                }
                None => self.helpers.give_back(), // an empty range
            }
        }
        self.cut = Some(bounds[0]);
    }

    /// Where `at..end` is cut for `lent` pieces after the stream's: equal shares, each
    /// boundary on the store's alignment, `end` last.
    fn bounds(&self, at: u64, end: u64, lent: usize) -> Vec<u64> {
        let align = self.store.align().max(1);
        let size = (end - at).div_ceil(lent as u64 + 1);
        (1..=lent as u64)
            .map(|i| (at + i * size).next_multiple_of(align).min(end))
            .chain([end])
            .collect()
    }

    /// Starts the thread that fetches `range` of the span into its place.
    fn start(&self, i: usize, range: Range<u64>, place: S::Place) -> Piece<'scope, S::Brought> {
        let cancel = CancelToken::new();
        let (ctx, source, pin, helpers) = (self.ctx, self.source, self.pin, self.helpers);
        let token = cancel.clone();
        let bytes = self.base + range.start..self.base + range.end;
        let thread = std::thread::Builder::new()
            .name(format!("haul-piece-{i}"))
            .spawn_scoped(self.scope, move || {
                // The job's cancel reaches the piece; so does the stream's own.
                let _hook = ctx.cancel.on_cancel({
                    let token = token.clone();
                    move || token.cancel()
                });
                let ctx = Context {
                    cancel: &token,
                    ..*ctx
                };
                let fetched = S::fetch_piece(place, &ctx, source, bytes, pin, helpers);
                helpers.give_back();
                fetched
            });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                debug!("no thread for a piece: {e}");
                self.helpers.give_back();
                None
            }
        };
        Piece {
            range,
            cancel,
            thread,
        }
    }

    /// Judges the stream from now on, at `at` bytes of the span of `len`: only a span long
    /// enough for two pieces, from a server that takes ranges and names a validator (a
    /// shorter one is never judged: no clock read per read).
    fn judge(&mut self, info: &ObjectInfo, len: Option<u64>, at: u64) {
        let ranges = info.ranges || self.ranged;
        self.total = len.filter(|&len| {
            len >= 2 * MIN_PIECE && self.splits && ranges && info.validator().is_some()
        });
        let now = Instant::now();
        self.began = (now, at);
        self.next_look = now + MEASURE;
    }

    /// Cancels and joins every piece still out; returns the byte ranges they brought.
    fn abandon(&mut self) -> Vec<Range<u64>> {
        for piece in &self.pieces {
            piece.cancel.cancel();
        }
        let mut brought = Vec::new();
        for piece in self.pieces.drain(..) {
            if let Some(thread) = piece.thread
                && let Ok((_, written)) = thread.join()
            {
                brought.push(piece.range.start..piece.range.start + written);
            }
        }
        self.cut = None;
        // The store starts over, or is kept or lands: its record is no longer this one's.
        self.record = None;
        brought
    }
}

impl<B> Piece<'_, B> {
    fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The piece's outcome, once its thread has ended; `None` when it was never started.
    fn join(self, shown: &str) -> Option<Result<B, DownloadError>> {
        let thread = self.thread?;
        Some(thread.join().map_or_else(
            |panic| {
                Err(DownloadError::Panicked {
                    url: shown.to_owned(),
                    message: crate::downloader::jogger::panic_message(&*panic),
                })
            },
            |(result, _)| result,
        ))
    }
}

impl<S: PieceStore> Drop for Tail<'_, '_, '_, S> {
    /// Stops the pieces still out. The bytes they brought are the store's to keep when the
    /// stream was interrupted (a work file then lists them; otherwise they are ignored).
    fn drop(&mut self) {
        let brought = self.abandon();
        if let Some(total) = self.total
            && !brought.is_empty()
        {
            self.store.keep_brought(total, brought);
        }
    }
}

impl<S: PieceStore> Destination for Tail<'_, '_, '_, S> {
    fn held(&self) -> u64 {
        self.store.held()
    }

    fn begin(&mut self, info: &ObjectInfo, len: Option<u64>) -> Result<(), DownloadError> {
        // The object starts over: what pieces brought is not of use.
        self.abandon();
        self.judge(info, len, 0);
        self.store.begin(info, len)
    }

    /// A resumed stream (a work file an earlier run left, or after a broken body or a piece
    /// that failed) is judged from where it resumed.
    fn resumed(&mut self, info: &ObjectInfo, len: Option<u64>) {
        let held = self.store.held();
        self.judge(info, len, held);
        self.store.resumed(info, len);
    }

    fn verifying(&mut self, bytes_needed: bool) {
        self.bytes_needed = bytes_needed;
        self.store.verifying(bytes_needed);
    }

    fn space(&mut self) -> Result<&mut [u8], DownloadError> {
        self.store.space()
    }

    fn filled(&mut self, n: usize) -> Result<(), DownloadError> {
        self.store.filled(n)
    }

    fn flush(&mut self) -> Result<(), DownloadError> {
        self.store.flush()
    }

    fn restart(&mut self) -> Result<u64, DownloadError> {
        self.abandon();
        self.store.restart()
    }

    fn replay(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<(), DownloadError> {
        self.store.replay(f)
    }

    fn cut(&mut self, at: u64) -> Option<u64> {
        if self.total.is_some() {
            let now = Instant::now();
            if now >= self.next_look {
                self.next_look = now + LOOK_EVERY;
                self.consider(at, now);
            }
        }
        self.cut
    }

    fn join_cut(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<bool, DownloadError> {
        self.store.flush()?;
        let shown = self.source.shown();
        while let Some(piece) = self.pieces.pop_front() {
            let range = piece.range.clone();
            match piece.join(&shown) {
                Some(Ok(brought)) => {
                    let mut to_digests = |bytes: &[u8]| f(bytes);
                    let feed = self
                        .bytes_needed
                        .then_some(&mut to_digests as &mut dyn FnMut(&[u8]));
                    self.store.join_piece(range, brought, feed)?;
                    self.record_stream();
                }
                None => {
                    debug!(
                        "GET {shown}: bytes {}..{} were not taken: the stream's again",
                        self.base + range.start,
                        self.base + range.end
                    );
                    self.cut = self.pieces.front().map(|p| p.range.start);
                    return Ok(false);
                }
                Some(Err(e)) => {
                    debug!(
                        "{}; bytes {}..{} are the stream's again",
                        retry::error_chain(&e),
                        self.base + range.start,
                        self.base + range.end
                    );
                    if matches!(
                        e,
                        DownloadError::Changed { .. } | DownloadError::Unusable { .. }
                    ) {
                        self.total = None;
                        self.splits = false;
                    }
                    self.cut = self.pieces.front().map(|p| p.range.start);
                    return Ok(false);
                }
            }
        }
        self.cut = None;
        if !self.ranged_span {
            self.ctx.progress.set_connections(1);
        }
        Ok(true)
    }
}

/// The fetcher's memory: a piece reads into memory of its own, copied into place when the
/// stream joins it (the object's memory past the stream is untouched until then, so the
/// copy costs no more than the piece's own bytes while it waits).
impl PieceStore for MemoryDest {
    type Place = ();
    type Brought = Vec<u8>;
    type Record = ();

    fn make_room(&mut self, _total: u64) -> Result<(), DownloadError> {
        Ok(()) // sized to the span from the start
    }

    fn record(&self, _record: &()) {}

    fn place(&self, _range: &Range<u64>, _bytes_needed: bool) -> Option<()> {
        Some(())
    }

    fn fetch_piece(
        _place: (),
        ctx: &Context<'_>,
        source: &Source<'_>,
        range: Range<u64>,
        pin: &Pin,
        helpers: &dyn Helpers,
    ) -> (Result<Vec<u8>, DownloadError>, u64) {
        let mut dest = MemoryDest::new(range.end - range.start);
        let span = Span::Range {
            start: range.start,
            end: range.end,
        };
        let expect = Expect::default();
        let fetched = fetch(
            ctx,
            source,
            span,
            &mut dest,
            pin,
            expect,
            None,
            Some(helpers),
        );
        let held = dest.held();
        (fetched.map(|_| dest.into_bytes()), held)
    }

    fn join_piece(
        &mut self,
        range: Range<u64>,
        brought: Vec<u8>,
        f: Feed<'_>,
    ) -> Result<(), DownloadError> {
        self.put(range.start, &brought)?;
        if let Some(f) = f {
            f(&brought);
        }
        Ok(())
    }
}
