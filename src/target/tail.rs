//! The tail of a job: when a target's queue is empty and joggers sit idle, a slow transfer's
//! remaining bytes are split among them instead of waiting for its one connection.
//!
//! A [`Tail`] is the destination a work file's whole-object stream writes through. Every
//! [`LOOK_EVERY`] it judges the stream by its rate since it began: when the bytes left would
//! take its one connection more than [`SPLIT_AFTER`], and the target's pool lends idle
//! joggers' turns ([`Helpers::lend`]: none while tasks wait in its queue), the bytes left are
//! cut into equal pieces. The stream keeps the first and stops at its end (the engine
//! leaves the rest of its body unread); each other piece is a ranged GET on a thread of its
//! own (`haul-piece-<i>`), pinned to the stream's version (`If-Match`, every answer checked)
//! and written at its offset in the work file. When the stream reaches the cut it joins the
//! pieces in order, feeding their bytes to the whole object's digests, so the object is
//! verified as if it had come on one connection. A piece that fails is the stream's again:
//! it resumes from there. A piece refused because the object changed (or whose server
//! mangles ranges) stops the splitting of that object. Once cut, a work file is sized to the
//! object and its sidecar lists the good bytes (the stream's, rewritten as it is judged and
//! as each piece is joined), so a run after a crash mid-split fetches only the rest. An interrupted stream keeps its work
//! file with the stream's bytes and those the pieces brought, listed in the sidecar. A job held to a rate
//! ([`JobSpec::rate_limit`](crate::JobSpec)) is never split: it is slow on purpose.

use std::collections::VecDeque;
use std::ops::Range;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use log::debug;

use crate::cancel::CancelToken;
use crate::engine::dest::{Buffered, Destination};
use crate::engine::error::DownloadError;
use crate::engine::parts::{self, PartsFile};
use crate::engine::response::ObjectInfo;
use crate::engine::{Context, Pin, Source, retry};
use crate::target::work::{Pieces, PiecesRecord, WorkFile};

/// Idle joggers whose turns a slow transfer may borrow for pieces of its tail.
pub(crate) trait Helpers: Sync {
    /// Claims up to `most` idle joggers' turns; none while tasks wait in the queue.
    fn lend(&self, most: usize) -> usize;
    /// A piece is done: its turn is given back.
    fn give_back(&self);
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

/// One piece of a cut tail: bytes `range`, fetched by its own thread (`None`: it could not
/// be started, so the stream takes it back), which tells how it went and how many of its
/// bytes (from its start) are in the file.
struct Piece<'scope> {
    range: Range<u64>,
    cancel: CancelToken,
    thread: Option<ScopedJoinHandle<'scope, (Result<(), DownloadError>, u64)>>,
}

/// A work file's destination that may hand the tail of its stream to idle joggers (see the
/// module documentation). Dropping it cancels and joins the pieces still running.
pub(crate) struct Tail<'scope, 'env, 'd> {
    scope: &'scope Scope<'scope, 'env>,
    ctx: &'env Context<'env>,
    source: &'env Source<'env>,
    pin: &'env Pin,
    helpers: &'env dyn Helpers,
    dest: &'d mut Buffered<WorkFile>,
    /// The object's size, while it may be cut: known, at least two pieces, from a server
    /// that takes ranges and names a validator.
    total: Option<u64>,
    /// Whether pieces may be cut at all: not once one was refused because the object
    /// changed or its server mangles ranges (the stream then finishes alone, whatever
    /// version it starts over on).
    splits: bool,
    /// Where the stream stops, while pieces after it are out.
    cut: Option<u64>,
    /// The pieces after the cut, in order of their ranges (contiguous from the cut).
    pieces: VecDeque<Piece<'scope>>,
    /// Writes the sidecar of the file once it has holes: the bytes good so far.
    record: Option<PiecesRecord>,
    /// When the stream began and where it was then: its rate is measured from there.
    began: (Instant, u64),
    next_look: Instant,
}

impl<'scope, 'env, 'd> Tail<'scope, 'env, 'd> {
    pub(crate) fn new(
        scope: &'scope Scope<'scope, 'env>,
        ctx: &'env Context<'env>,
        source: &'env Source<'env>,
        pin: &'env Pin,
        helpers: &'env dyn Helpers,
        dest: &'d mut Buffered<WorkFile>,
    ) -> Self {
        let now = Instant::now();
        Tail {
            scope,
            ctx,
            source,
            pin,
            helpers,
            dest,
            total: None,
            // A job held to a rate is slow on purpose: more connections would not help.
            splits: ctx.limiter.is_none(),
            cut: None,
            pieces: VecDeque::new(),
            record: None,
            began: (now, 0),
            next_look: now + MEASURE,
        }
    }

    /// Cuts the stream at `at` when it is slow and joggers are idle.
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
        let running = self.pieces.iter().filter(|p| p.running()).count();
        self.ctx.progress.set_connections(1 + running);
    }

    /// Rewrites a split file's sidecar: the stream's bytes so far are the good ones.
    fn record_stream(&self) {
        if let Some(record) = &self.record {
            let stream = 0..self.dest.sink.len;
            record.write(std::slice::from_ref(&stream));
        }
    }

    /// Cuts `at..end` into `lent + 1` pieces: the stream keeps the first.
    fn split(&mut self, at: u64, end: u64, lent: usize, rate: f64) {
        if self.cut.is_none() {
            // From now on the file has holes: it is sized to the object, and its sidecar
            // lists the stream's bytes as the good ones, so a run after a crash fetches
            // only the rest.
            let total = self.total.unwrap_or(end);
            let sized = self
                .dest
                .flush()
                .and_then(|()| self.dest.sink.preallocate(total));
            if let Err(e) = sized {
                debug!("GET {}: not split: {e}", self.source.shown());
                (0..lent).for_each(|_| self.helpers.give_back());
                return;
            }
            self.record = Some(self.dest.sink.pieces_record(total));
            self.record_stream();
        }
        let size = (end - at).div_ceil(lent as u64 + 1).next_multiple_of(ALIGN);
        let bounds: Vec<u64> = (1..=lent as u64)
            .map(|i| (at + i * size).min(end))
            .chain([end])
            .collect();
        debug!(
            "GET {}: {} bytes left at {:.1} MB/s: {lent} more connections take {}..{end}",
            self.source.shown(),
            end - at,
            rate / 1e6,
            bounds[0],
        );
        // The new pieces come before those of an earlier cut, which start at `end`.
        for (i, range) in bounds.windows(2).map(|w| w[0]..w[1]).enumerate().rev() {
            if range.is_empty() {
                self.helpers.give_back();
                continue;
            }
            let piece = self.start(i, range);
            self.pieces.push_front(piece);
        }
        self.cut = Some(bounds[0]);
    }

    /// Starts the thread that fetches `range` into its place.
    fn start(&self, i: usize, range: Range<u64>) -> Piece<'scope> {
        let cancel = CancelToken::new();
        let (ctx, source, pin, helpers) = (self.ctx, self.source, self.pin, self.helpers);
        let path = self.dest.sink.path.clone();
        let token = cancel.clone();
        let bytes = range.clone();
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
                let fetched = match std::fs::OpenOptions::new().write(true).open(&path) {
                    Ok(file) => {
                        let total = bytes.end;
                        let into = PartsFile {
                            file: &file,
                            path: &path,
                            total,
                        };
                        parts::fetch_range(&ctx, source, into, bytes, pin, None)
                    }
                    Err(source) => {
                        let error = DownloadError::Local {
                            action: "opening",
                            path: path.clone(),
                            source,
                        };
                        (Err(error), 0)
                    }
                };
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
        // The file starts over, or is kept or lands: its sidecar is no longer this one's.
        self.record = None;
        brought
    }
}

impl Piece<'_> {
    fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The piece's outcome, once its thread has ended.
    fn join(self, shown: &str) -> Result<(), DownloadError> {
        match self.thread {
            Some(thread) => thread.join().map_or_else(
                |panic| {
                    Err(DownloadError::Panicked {
                        url: shown.to_owned(),
                        message: crate::downloader::jogger::panic_message(&*panic),
                    })
                },
                |(result, _)| result,
            ),
            None => Err(DownloadError::Panicked {
                url: shown.to_owned(),
                message: "no thread could be started for a piece".to_owned(),
            }),
        }
    }
}

impl Drop for Tail<'_, '_, '_> {
    /// Stops the pieces still out. The bytes they brought are the work file's to keep when
    /// the stream was interrupted (the file then lists them; otherwise they are ignored).
    fn drop(&mut self) {
        let brought = self.abandon();
        if let Some(total) = self.total
            && !brought.is_empty()
        {
            self.dest.sink.tail = Some(Pieces::new(total, brought));
        }
    }
}

impl Destination for Tail<'_, '_, '_> {
    fn held(&self) -> u64 {
        self.dest.held()
    }

    fn begin(&mut self, info: &ObjectInfo, len: Option<u64>) -> Result<(), DownloadError> {
        // The object starts over: what pieces brought is not of use.
        self.abandon();
        let now = Instant::now();
        // An object too small for two pieces is never judged (no clock read per read).
        self.total = len.filter(|&len| {
            len >= 2 * MIN_PIECE && self.splits && info.ranges && info.validator().is_some()
        });
        self.began = (now, 0);
        self.next_look = now + MEASURE;
        self.dest.begin(info, len)
    }

    fn space(&mut self) -> Result<&mut [u8], DownloadError> {
        self.dest.space()
    }

    fn filled(&mut self, n: usize) -> Result<(), DownloadError> {
        self.dest.filled(n)
    }

    fn flush(&mut self) -> Result<(), DownloadError> {
        self.dest.flush()
    }

    fn restart(&mut self) -> Result<u64, DownloadError> {
        self.abandon();
        self.dest.restart()
    }

    fn replay(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<(), DownloadError> {
        self.dest.replay(f)
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
        self.dest.flush()?;
        let shown = self.source.shown();
        while let Some(piece) = self.pieces.pop_front() {
            let range = piece.range.clone();
            match piece.join(&shown) {
                Ok(()) => {
                    self.dest.sink.replay_range(range.clone(), f)?;
                    self.dest.sink.extend_to(range.end);
                    self.record_stream();
                }
                Err(e) => {
                    debug!(
                        "{}; bytes {}..{} are the stream's again",
                        retry::error_chain(&e),
                        range.start,
                        range.end
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
        self.ctx.progress.set_connections(1);
        Ok(true)
    }
}
