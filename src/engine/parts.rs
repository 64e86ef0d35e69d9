//! One large object over several connections: ranged parts fetched in parallel into their
//! places in a file, each a [`Span::Range`] of the engine pinned to the opening response's
//! version.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::debug;
use parking_lot::Mutex;

use crate::engine::dest::{Buffered, Destination, Sink};
use crate::engine::error::DownloadError;
use crate::engine::tail::{self, Feed, Helpers, PieceStore};
use crate::engine::{Answer, Context, Expect, Pin, Source, Span};

/// When and how one large object is split into ranged parts fetched in parallel.
///
/// Off by default with a fixed concurrency: a job of many objects already keeps every
/// connection busy. For a few large objects from a server that serves each connection
/// slower than the network allows, turn it on. (With the default adaptive
/// [`Concurrency`](crate::Concurrency) a downloader splits an object of over 64 MiB by
/// itself when its server takes ranges and names a validator: the plain GET's first 64 MiB
/// are read from it, and connections for the rest are added while they pay, four times as
/// many while the object's rate grows by a quarter, up to 16.) The object is asked for with `Range: bytes=0-…` (its first
/// [`min_object_bytes`](PartsPolicy::min_object_bytes)) first; if the answer shows it is
/// larger, the rest is fetched in
/// parts of [`part_bytes`](PartsPolicy::part_bytes) over
/// [`connections`](PartsPolicy::connections) connections, each written at its offset in the
/// work file, each pinned to the opening response's version (`If-Match` on its ETag, and
/// every answer's validators and `Content-Range` checked), so an object that changes
/// meanwhile is never stitched from two versions. A server that ignores ranges, answers
/// them from the wrong offset, or whose object changes, is read on one connection instead.
/// Within a run a broken part resumes on its own. A split object's work file records the
/// parts it has: each as it finishes (so a run after a crash fetches only the others), and,
/// when the transfer is interrupted, every byte that came; the next run fetches only the
/// holes, pinned to the same version.
///
/// ```
/// let parts = haul::PartsPolicy::new(4).part_bytes(32 << 20);
/// let spec = haul::JobSpec::single("https://host/big.tar").parts(parts);
/// # drop(spec);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartsPolicy {
    /// Connections per object, the first included. At least 2 to split at all.
    pub connections: usize,
    /// The size of each part. Default 16 MiB.
    pub part_bytes: u64,
    /// Objects up to this size are not split; larger ones get this much as their first part
    /// (what the opening GET asks for). Default 64 MiB.
    pub min_object_bytes: u64,
    /// Whether the connections are added while they pay (the automatic split of a downloader
    /// with an adaptive concurrency) rather than opened at once.
    ramp: bool,
}

impl PartsPolicy {
    /// Split objects larger than 64 MiB: the first 64 MiB on the opening connection, the rest
    /// in 16 MiB parts, over `connections` connections in all.
    pub fn new(connections: usize) -> PartsPolicy {
        PartsPolicy {
            connections,
            part_bytes: 16 << 20,
            min_object_bytes: 64 << 20,
            ramp: false,
        }
    }

    /// The automatic split: up to [`AUTO_CONNECTIONS`] connections, added while they pay:
    /// the opening one, then [`RAMP_GROWTH`] times as many while the object's rate grows by a quarter,
    /// measured over an interval of about four round trips ([`ramp_interval`]) after each
    /// addition has had one to settle.
    pub(crate) fn auto() -> PartsPolicy {
        PartsPolicy {
            ramp: true,
            ..PartsPolicy::new(AUTO_CONNECTIONS)
        }
    }

    /// Sets [`part_bytes`](PartsPolicy::part_bytes) (at least 64 KiB).
    pub fn part_bytes(mut self, bytes: u64) -> PartsPolicy {
        self.part_bytes = bytes.max(64 << 10);
        self
    }

    /// Sets [`min_object_bytes`](PartsPolicy::min_object_bytes) (at least 64 KiB).
    pub fn min_object_bytes(mut self, bytes: u64) -> PartsPolicy {
        self.min_object_bytes = bytes.max(64 << 10);
        self
    }

    /// Whether it splits anything at all.
    pub(crate) fn active(&self) -> bool {
        self.connections >= 2 && self.min_object_bytes > 0
    }
}

/// The most connections the automatic split opens for one object (aria2c's `-x` ceiling).
pub(crate) const AUTO_CONNECTIONS: usize = 16;
/// How many times as many connections each step of the automatic split's ramp opens: 1, 4,
/// 16. Each step costs an interval to settle and one to measure, and a new connection's
/// slow start: doubling (1, 2, 4, 8, 16) took two steps more to fill a link that needs
/// many (w2: 5.25 s against 4.98 s; 16 opened at once, 4.9 s). On loopback, where one
/// connection fills the disk, the ramp stops after its first step as before, at 4 where it
/// was 2, no slower (1 GiB into a file, 8 runs each).
const RAMP_GROWTH: usize = 4;
/// How often the automatic split measures the object's rate and decides to add connections
/// when the host's round trip is not known.
const RAMP_INTERVAL: Duration = Duration::from_millis(400);
/// The shortest and the longest interval of the ramp.
const RAMP_INTERVAL_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(200), Duration::from_secs(2));

/// How often the automatic split measures the object's rate and decides to add connections:
/// long enough for a new connection's slow start to show, about four round trips, taken as
/// twice the opening request's first-response time (a new connection's handshake and the
/// request's round trip, and the server's think time), within [`RAMP_INTERVAL_BOUNDS`].
/// A fixed 400 ms was two round trips too many at 40 ms (w2 in BENCHMARKS.md) and too few
/// at 200 ms.
fn ramp_interval(first_response: Option<Duration>) -> Duration {
    let (shortest, longest) = RAMP_INTERVAL_BOUNDS;
    first_response.map_or(RAMP_INTERVAL, |t| (t * 2).clamp(shortest, longest))
}

/// One part's place in the file: bytes go to `start + written` with positional writes
/// (`pwrite`), so parts need no seek or lock.
struct PartSink<'a> {
    file: &'a File,
    path: &'a Path,
    start: u64,
    written: u64,
}

impl Sink for PartSink<'_> {
    fn written(&self) -> u64 {
        self.written
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), DownloadError> {
        self.file
            .write_all_at(bytes, self.start + self.written)
            .map_err(|source| DownloadError::Local {
                action: "writing",
                path: self.path.to_owned(),
                source,
            })?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn restart(&mut self) -> Result<u64, DownloadError> {
        Err(DownloadError::Changed {
            url: String::new(),
            reason: "a part cannot start over on its own".to_owned(),
        })
    }
}

/// The file an object's parts go into, already sized to the object's `total` bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartsFile<'a> {
    pub(crate) file: &'a File,
    pub(crate) path: &'a Path,
    pub(crate) total: u64,
}

/// Fetches bytes `range` of the object into their place in `into`, pinned to `pin` (a
/// part: it cannot start over on its own); `first` is a response already in hand for them.
/// Returns, with the result, how many of the range's bytes (from its start) are in the file.
pub(crate) fn fetch_range(
    ctx: &Context<'_>,
    source: &Source<'_>,
    into: PartsFile<'_>,
    range: std::ops::Range<u64>,
    pin: &Pin,
    first: Option<Answer>,
    helpers: Option<&dyn Helpers>,
) -> (Result<(), DownloadError>, u64) {
    let mut dest = Buffered::new(PartSink {
        file: into.file,
        path: into.path,
        start: range.start,
        written: 0,
    });
    let span = Span::Range {
        start: range.start,
        end: range.end,
    };
    let expect = Expect::default();
    let result = tail::fetch(ctx, source, span, &mut dest, pin, expect, first, helpers).map(drop);
    // An interrupted part's buffered bytes are good ones: on disk, a later run has them.
    if result.as_ref().is_err_and(DownloadError::interrupted)
        && let Err(e) = dest.flush()
    {
        debug!(
            "{}: {}",
            into.path.display(),
            crate::engine::retry::error_chain(&e)
        );
    }
    (result, dest.sink.written)
}

/// The parts of an object of `total` bytes: its first `min_object_bytes` (what the opening
/// GET asks for), then pieces of `part_bytes`.
pub(crate) fn plan(policy: &PartsPolicy, total: u64) -> Vec<Range<u64>> {
    let first_len = policy.min_object_bytes.min(total);
    let mut parts = Vec::with_capacity(1);
    parts.push(0..first_len);
    parts.extend(cut(std::iter::once(first_len..total), policy.part_bytes));
    parts
}

/// `ranges` cut into pieces of at most `part_bytes`.
pub(crate) fn cut(
    ranges: impl IntoIterator<Item = Range<u64>>,
    part_bytes: u64,
) -> Vec<Range<u64>> {
    let mut parts = Vec::new();
    for r in ranges {
        let mut start = r.start;
        while start < r.end {
            let end = (start + part_bytes.max(1)).min(r.end);
            parts.push(start..end);
            start = end;
        }
    }
    parts
}

/// What one split fetches, and where what lands is told.
pub(crate) struct Work<'a> {
    /// The byte ranges to fetch, one request each.
    pub(crate) parts: &'a [Range<u64>],
    /// A response already in hand for the first part (the opening ranged GET's).
    pub(crate) first: Option<Answer>,
    /// The ranges in the file: those already there, and every one that reaches it, whether
    /// its part finished or not (what a later run can resume).
    pub(crate) have: &'a mut Vec<Range<u64>>,
    /// Given the ranges complete so far each time a part finishes (for the sidecar that
    /// lets a run after a crash resume them).
    pub(crate) record: &'a (dyn Fn(&[Range<u64>]) + Sync),
}

/// Fetches `work`'s parts of an object into `into`, in parallel, all pinned to `pin`.
/// Errors are the first part's that failed;
/// [`DownloadError::Changed`] and [`DownloadError::Unusable`] mean the parts cannot be
/// stitched (the object changed, or the server mangles ranges).
pub(crate) fn fetch(
    ctx: &Context<'_>,
    source: &Source<'_>,
    policy: &PartsPolicy,
    into: PartsFile<'_>,
    pin: &Pin,
    work: Work<'_>,
) -> Result<(), DownloadError> {
    let Work {
        parts,
        first,
        have,
        record,
    } = work;
    let total = into.total;
    let count = parts.len() as u64;
    debug!(
        "GET {}: {total} bytes, {count} parts to fetch over {} connections",
        source.shown(),
        policy.connections
    );
    let next = AtomicU64::new(1);
    let failed = AtomicBool::new(false);
    let error: Mutex<Option<DownloadError>> = Mutex::new(None);
    let opening = Mutex::new(first);
    let landed: Mutex<Vec<Range<u64>>> = Mutex::new(std::mem::take(have));
    // Each worker runs parts until none are left or one has failed.
    let work = |first_part: u64| {
        crate::http::transport::with_cancel(ctx.cancel, || {
            let mut part = first_part;
            while part < count && !failed.load(Ordering::Relaxed) {
                let range = parts[part as usize].clone();
                let answer = if part == 0 {
                    opening.lock().take()
                } else {
                    None
                };
                let start = range.start;
                let (result, written) = fetch_range(ctx, source, into, range, pin, answer, None);
                let finished = {
                    let mut landed = landed.lock();
                    landed.push(start..start + written);
                    result.is_ok().then(|| landed.clone())
                };
                // Written outside the lock (no lock across I/O). Two parts finishing at once
                // may write in either order: an older list is a subset of a newer one, so
                // the sidecar never claims bytes that are not there, at worst fewer.
                if let Some(finished) = finished {
                    record(&finished);
                }
                if let Err(e) = result {
                    failed.store(true, Ordering::Relaxed);
                    error.lock().get_or_insert(e);
                    return;
                }
                part = next.fetch_add(1, Ordering::Relaxed);
            }
        });
    };
    if policy.ramp {
        std::thread::scope(|scope| {
            let (done_tx, done_rx) = crossbeam_channel::unbounded::<()>();
            let spawn = |i: usize, first_part: u64| {
                let done_tx = done_tx.clone();
                let work = &work;
                std::thread::Builder::new()
                    .name(format!("haul-part-{i}"))
                    .spawn_scoped(scope, move || {
                        work(first_part);
                        let _ = done_tx.send(());
                    })
                    .inspect_err(|e| debug!("no thread for a part: {e}"))
                    .ok()
            };
            let interval = ramp_interval(ctx.flow.and_then(|permit| permit.first_response()));
            let mut helpers: Vec<_> = spawn(0, 0).into_iter().collect();
            let mut running = helpers.len();
            ctx.progress.set_connections(running);
            let mut ramping = true;
            // An interval after connections were added is not measured: their slow start
            // would count against them.
            let mut settling = false;
            let (mut last_rate, mut last_bytes, mut since) =
                (0.0, ctx.progress.done(), Instant::now());
            while running > 0 {
                match done_rx.recv_timeout(interval) {
                    Ok(()) => {
                        running -= 1;
                        ctx.progress.set_connections(running);
                        continue;
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                }
                let left = count.saturating_sub(next.load(Ordering::Relaxed)) as usize;
                if !ramping || left == 0 || failed.load(Ordering::Relaxed) {
                    continue;
                }
                let bytes = ctx.progress.done();
                let rate = bytes.saturating_sub(last_bytes) as f64 / since.elapsed().as_secs_f64();
                (last_bytes, since) = (bytes, Instant::now());
                if std::mem::take(&mut settling) {
                    continue;
                }
                if rate < last_rate * 1.25 || helpers.len() >= policy.connections {
                    debug!(
                        "GET {}: {running} connections ({:.0} MB/s)",
                        source.shown(),
                        rate / 1e6
                    );
                    ramping = false;
                    continue;
                }
                last_rate = rate;
                settling = true;
                let more = (helpers.len() * (RAMP_GROWTH - 1))
                    .min(policy.connections - helpers.len())
                    .min(left);
                for _ in 0..more {
                    let i = helpers.len();
                    if let Some(helper) = spawn(i, next.fetch_add(1, Ordering::Relaxed)) {
                        helpers.push(helper);
                        running += 1;
                    }
                }
                ctx.progress.set_connections(running);
            }
            for helper in helpers {
                if helper.join().is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
            }
        });
    } else {
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..policy.connections.min(parts.len()))
                .filter_map(|i| {
                    std::thread::Builder::new()
                        .name(format!("haul-part-{i}"))
                        .spawn_scoped(scope, || work(next.fetch_add(1, Ordering::Relaxed)))
                        .inspect_err(|e| debug!("no helper thread for a part: {e}"))
                        .ok()
                })
                .collect();
            ctx.progress.set_connections(helpers.len() + 1);
            work(0);
            for helper in helpers {
                if helper.join().is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
            }
        });
        ctx.progress.set_connections(1);
    }
    *have = landed.into_inner();
    match error.into_inner() {
        Some(error) => Err(error),
        None if failed.into_inner() => Err(DownloadError::Panicked {
            url: source.shown(),
            message: "a part's thread panicked".to_owned(),
        }),
        None => Ok(()),
    }
}

/// A piece of a cut tail into the file at `path` (sized to the object already): its own
/// handle, its bytes at their offsets, cut again for `helpers` when it is slow itself.
/// Returns, with the result, how many of its bytes (from its start) are in the file.
pub(crate) fn fetch_piece_into(
    path: &Path,
    ctx: &Context<'_>,
    source: &Source<'_>,
    range: Range<u64>,
    pin: &Pin,
    helpers: &dyn Helpers,
) -> (Result<(), DownloadError>, u64) {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(file) => {
            let into = PartsFile {
                file: &file,
                path,
                total: range.end,
            };
            fetch_range(ctx, source, into, range, pin, None, Some(helpers))
        }
        Err(source) => {
            let error = DownloadError::Local {
                action: "opening",
                path: path.to_owned(),
                source,
            };
            (Err(error), 0)
        }
    }
}

/// A piece of a cut tail that is slow itself is cut again (see [`tail`](crate::engine::tail)):
/// its own pieces write at their offsets in the same file, and are read back when joined.
impl PieceStore for Buffered<PartSink<'_>> {
    type Place = PathBuf;
    type Brought = ();
    type Record = ();

    fn make_room(&mut self, _total: u64) -> Result<(), DownloadError> {
        Ok(()) // the file is sized to the object already
    }

    fn record(&self, (): &()) {}

    fn place(&self, _range: &Range<u64>, _bytes_needed: bool) -> Option<PathBuf> {
        Some(self.sink.path.to_owned())
    }

    fn fetch_piece(
        path: PathBuf,
        ctx: &Context<'_>,
        source: &Source<'_>,
        range: Range<u64>,
        pin: &Pin,
        helpers: &dyn Helpers,
    ) -> (Result<(), DownloadError>, u64) {
        fetch_piece_into(&path, ctx, source, range, pin, helpers)
    }

    fn join_piece(&mut self, range: Range<u64>, (): (), f: Feed<'_>) -> Result<(), DownloadError> {
        let sink = &mut self.sink;
        let Some(f) = f else {
            sink.written = range.end; // in the file already; nothing to check
            return Ok(());
        };
        let mut buffer = vec![0; 256 * 1024];
        let mut at = range.start;
        while at < range.end {
            let n = buffer
                .len()
                .min(usize::try_from(range.end - at).unwrap_or(usize::MAX));
            sink.file
                .read_exact_at(&mut buffer[..n], sink.start + at)
                .map_err(|source| DownloadError::Local {
                    action: "reading",
                    path: sink.path.to_owned(),
                    source,
                })?;
            f(&buffer[..n]);
            at += n as u64;
        }
        sink.written = range.end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_waits_about_four_round_trips_within_its_bounds() {
        let ms = Duration::from_millis;
        // 40 ms RTT, a new connection and 10 ms of think time: the first response in 90 ms.
        assert_eq!(ramp_interval(Some(ms(90))), ms(200), "the shortest");
        assert_eq!(ramp_interval(Some(ms(150))), ms(300));
        // 200 ms RTT: 410 ms to the first response.
        assert_eq!(ramp_interval(Some(ms(410))), ms(820));
        assert_eq!(ramp_interval(Some(ms(5_000))), ms(2_000), "the longest");
        // Loopback: the shortest. Unknown: as before.
        assert_eq!(ramp_interval(Some(ms(1))), ms(200));
        assert_eq!(ramp_interval(None), RAMP_INTERVAL);
    }
}
