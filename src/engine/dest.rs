//! Destinations: what the engine writes an object's bytes into. Each knows only how to take
//! bytes, say how many it holds, and start over; the engine does everything else.
//!
//! The engine reads the body straight into [`Destination::space`] — a buffer the destination
//! owns (a work file's write buffer, an S3 part, the fetcher's memory) — so no destination
//! costs a copy of its own.

use std::cell::RefCell;
use std::io::Write;

use crate::engine::error::DownloadError;
use crate::engine::response::ObjectInfo;

/// Where one transfer's bytes go.
pub(crate) trait Destination {
    /// Bytes of the span it holds: the next byte goes at this offset in the span.
    fn held(&self) -> u64;

    /// A (re)started object's first response: `len` is the span's length when known (the
    /// object's, for a whole object). Sizes buffers, records validators, takes budget.
    fn begin(&mut self, info: &ObjectInfo, len: Option<u64>) -> Result<(), DownloadError>;

    /// A resumed transfer's answer (the bytes held are kept, [`begin`](Destination::begin)
    /// is not called again): `len` as there.
    fn resumed(&mut self, info: &ObjectInfo, len: Option<u64>) {
        let _ = (info, len);
    }

    /// Whether the object's bytes are checked as they come (a digest, MD5 or checksum to
    /// verify), said once the checks are known: when not, the bytes other connections bring
    /// need not be fed back through [`join_cut`](Destination::join_cut)'s `f`.
    fn verifying(&mut self, bytes_needed: bool) {
        let _ = bytes_needed;
    }

    /// Room for the next bytes; never empty.
    fn space(&mut self) -> Result<&mut [u8], DownloadError>;

    /// `n` bytes were read into the start of [`space`](Destination::space).
    fn filled(&mut self, n: usize) -> Result<(), DownloadError>;

    /// Writes out what is buffered: at the end of a body, and before a resume.
    fn flush(&mut self) -> Result<(), DownloadError>;

    /// Throws everything held away (the object changed, or its bytes were wrong); returns
    /// how many bytes were thrown away. A destination that cannot take bytes back fails.
    fn restart(&mut self) -> Result<u64, DownloadError>;

    /// Feeds the bytes held before this run to `f`, in order, so the whole object's digest
    /// can be checked (a work file resumed after a crash). Most destinations start empty.
    fn replay(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<(), DownloadError> {
        let _ = f;
        Ok(())
    }

    /// Where the body's bytes must stop now that its next byte is at offset `at` of the
    /// span: a destination that hands the rest of the object to other connections cuts the
    /// stream short (see [`engine::tail`](crate::engine::tail)). `None`: at the span's end.
    /// Called for every read, so it must be cheap.
    fn cut(&mut self, at: u64) -> Option<u64> {
        let _ = at;
        None
    }

    /// The stream has reached the [`cut`](Destination::cut): waits for the connections that
    /// took the bytes after it and holds their bytes, feeding them to `f` in order. Returns
    /// whether the span is complete; otherwise a piece failed and the stream takes it back
    /// (the cut has moved past it, and [`held`](Destination::held) is where it resumes).
    fn join_cut(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<bool, DownloadError> {
        let _ = f;
        Ok(true)
    }
}

/// The largest write buffer: writes of 1 MiB keep file systems and pipes busy (8 KiB, what
/// `std::io::copy` uses, was 1.4–2× slower for large bodies; 256 KiB slower than 1 MiB).
pub const BUFFER_BYTES: usize = 1024 * 1024;

thread_local! {
    /// Each thread's spare write buffer, lent to one transfer at a time.
    static SPARE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A write buffer lent from the thread's spare one, sized to what the transfer needs (a
/// small object does not hold 1 MiB), taken on first use and given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    bytes: Vec<u8>,
    filled: usize,
    /// The size it fills up to; 0 until sized (then [`BUFFER_BYTES`] on first use).
    size: usize,
}

impl Buffer {
    /// A buffer of at most [`BUFFER_BYTES`], and at most `len` when the length is known.
    pub(crate) fn for_len(len: Option<u64>) -> Buffer {
        let size = len.map_or(BUFFER_BYTES, |l| {
            usize::try_from(l).map_or(BUFFER_BYTES, |l| l.clamp(1, BUFFER_BYTES))
        });
        Buffer {
            bytes: Vec::new(),
            filled: 0,
            size,
        }
    }

    /// Room after the bytes filled so far (empty when full).
    pub(crate) fn space(&mut self) -> &mut [u8] {
        if self.size == 0 {
            self.size = BUFFER_BYTES;
        }
        if self.bytes.len() < self.size {
            let mut spare = SPARE.with_borrow_mut(std::mem::take);
            if spare.len() < self.size {
                spare.resize(self.size, 0);
            }
            spare[..self.filled].copy_from_slice(&self.bytes[..self.filled]);
            self.bytes = spare;
        }
        &mut self.bytes[self.filled..self.size]
    }

    pub(crate) fn filled(&mut self, n: usize) {
        self.filled += n;
    }

    pub(crate) fn is_full(&self) -> bool {
        self.size > 0 && self.filled >= self.size
    }

    /// The bytes filled so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[..self.filled]
    }

    pub(crate) fn len(&self) -> usize {
        self.filled
    }

    pub(crate) fn clear(&mut self) {
        self.filled = 0;
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        SPARE.with_borrow_mut(|spare| {
            if bytes.len() > spare.len() {
                *spare = bytes;
            }
        });
    }
}

/// What a [`Buffered`] destination hands its full buffers to: a file, a part at an offset,
/// any `Write`.
pub(crate) trait Sink {
    /// Bytes written so far.
    fn written(&self) -> u64;

    /// The object (re)starts: `len` bytes when known (see [`Destination::begin`]).
    fn begin(&mut self, info: &ObjectInfo, len: Option<u64>) -> Result<(), DownloadError> {
        let _ = (info, len);
        Ok(())
    }

    /// Appends `bytes` after those written.
    fn write(&mut self, bytes: &[u8]) -> Result<(), DownloadError>;

    /// Throws away what was written; the bytes thrown away. A sink that cannot take bytes
    /// back fails (see [`Destination::restart`]).
    fn restart(&mut self) -> Result<u64, DownloadError>;

    /// See [`Destination::replay`].
    fn replay(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<(), DownloadError> {
        let _ = f;
        Ok(())
    }
}

/// A destination that reads into a [`Buffer`] (the object's size when smaller than
/// [`BUFFER_BYTES`]) and hands it to its sink when full, at the end of a body, and before a
/// resume: large writes, and no copy of its own.
#[derive(Debug)]
pub(crate) struct Buffered<S> {
    pub(crate) sink: S,
    buffer: Buffer,
}

impl<S: Sink> Buffered<S> {
    pub(crate) fn new(sink: S) -> Buffered<S> {
        Buffered {
            sink,
            buffer: Buffer::default(),
        }
    }
}

impl<S: Sink> Destination for Buffered<S> {
    fn held(&self) -> u64 {
        self.sink.written() + self.buffer.len() as u64
    }

    fn begin(&mut self, info: &ObjectInfo, len: Option<u64>) -> Result<(), DownloadError> {
        self.sink.begin(info, len)?;
        if self.buffer.len() == 0 {
            self.buffer = Buffer::for_len(len);
        }
        Ok(())
    }

    fn space(&mut self) -> Result<&mut [u8], DownloadError> {
        if self.buffer.is_full() {
            self.flush()?;
        }
        Ok(self.buffer.space())
    }

    fn filled(&mut self, n: usize) -> Result<(), DownloadError> {
        self.buffer.filled(n);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DownloadError> {
        if self.buffer.len() > 0 {
            self.sink.write(self.buffer.bytes())?;
            self.buffer.clear();
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<u64, DownloadError> {
        let buffered = self.buffer.len() as u64;
        self.buffer.clear();
        Ok(self.sink.restart()? + buffered)
    }

    fn replay(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<(), DownloadError> {
        self.sink.replay(f)
    }
}

/// Any `Write`: stdout, a socket, a hasher. Bytes written cannot be taken back, so a
/// restart after the first write fails.
#[derive(Debug)]
pub(crate) struct WriteSink<'a, W> {
    out: &'a mut W,
    written: u64,
}

impl<'a, W: Write> WriteSink<'a, W> {
    /// A destination into `out`.
    pub(crate) fn into(out: &'a mut W) -> Buffered<WriteSink<'a, W>> {
        Buffered::new(WriteSink { out, written: 0 })
    }
}

impl<W: Write> Sink for WriteSink<'_, W> {
    fn written(&self) -> u64 {
        self.written
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), DownloadError> {
        self.out
            .write_all(bytes)
            .map_err(|source| DownloadError::Local {
                action: "writing",
                path: "-".into(),
                source,
            })?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn restart(&mut self) -> Result<u64, DownloadError> {
        if self.written > 0 {
            return Err(DownloadError::Changed {
                url: String::new(),
                reason: format!(
                    "{} bytes were written already and cannot be taken back",
                    self.written
                ),
            });
        }
        Ok(0)
    }
}

/// Memory of a known size: the fetcher's buffer for one object or part, whose budget the
/// caller took before the request.
#[derive(Debug)]
pub(crate) struct MemoryDest {
    bytes: Vec<u8>,
    filled: usize,
}

impl MemoryDest {
    /// Room for exactly `len` bytes.
    pub(crate) fn new(len: u64) -> MemoryDest {
        MemoryDest {
            bytes: vec![0; usize::try_from(len).expect("a reserved size fits in memory")],
            filled: 0,
        }
    }

    /// Puts `bytes` right after those held, at offset `at` (where the held ones end): what
    /// another connection brought for them.
    pub(crate) fn put(&mut self, at: u64, bytes: &[u8]) -> Result<(), DownloadError> {
        let start = usize::try_from(at).ok().filter(|&s| s == self.filled);
        let end = start.and_then(|s| s.checked_add(bytes.len()));
        match (start, end) {
            (Some(start), Some(end)) if end <= self.bytes.len() => {
                self.bytes[start..end].copy_from_slice(bytes);
                self.filled = end;
                Ok(())
            }
            _ => Err(DownloadError::Changed {
                url: String::new(),
                reason: format!(
                    "{} bytes at {at} do not follow the {} held of {}",
                    bytes.len(),
                    self.filled,
                    self.bytes.len()
                ),
            }),
        }
    }

    /// The bytes, once complete.
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        self.bytes.truncate(self.filled);
        self.bytes
    }
}

impl Destination for MemoryDest {
    fn held(&self) -> u64 {
        self.filled as u64
    }

    fn begin(&mut self, info: &ObjectInfo, len: Option<u64>) -> Result<(), DownloadError> {
        match len {
            Some(len) if len == self.bytes.len() as u64 => Ok(()),
            other => Err(DownloadError::Changed {
                url: String::new(),
                reason: format!(
                    "it has {} bytes, {} were expected{}",
                    other.map_or("an unknown number of".to_owned(), |l| l.to_string()),
                    self.bytes.len(),
                    info.etag
                        .as_deref()
                        .map(|e| format!(" (ETag {e})"))
                        .unwrap_or_default()
                ),
            }),
        }
    }

    fn space(&mut self) -> Result<&mut [u8], DownloadError> {
        Ok(&mut self.bytes[self.filled..])
    }

    fn filled(&mut self, n: usize) -> Result<(), DownloadError> {
        self.filled += n;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DownloadError> {
        Ok(())
    }

    fn restart(&mut self) -> Result<u64, DownloadError> {
        Ok(std::mem::take(&mut self.filled) as u64)
    }
}
