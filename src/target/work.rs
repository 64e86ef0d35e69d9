//! Work files: where an object's bytes go until it lands, with the sidecar that lets a
//! later run resume them after a crash.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use log::{debug, warn};

use crate::engine::dest::{Buffered, Destination};
use crate::engine::error::DownloadError;
use crate::engine::parts;
use crate::engine::tail::{Feed, Helpers, PieceStore};
use crate::engine::{Context, Pin, Source};
use crate::target::mountpath::Mountpath;
use crate::target::name::ObjectName;

/// A work file in a mountpath's work directory, with its sidecar. It removes both unless it
/// lands, is [kept](WorkFile::keep) for a later run (the transfer was interrupted), or the
/// process dies: each of the last two lets the next run resume it.
///
/// The file is locked (`flock`) while open, so two transfers of one name — in this process
/// or another — never share it: the second gets a spare path of its own.
pub(crate) struct WorkFile {
    pub(crate) path: PathBuf,
    meta: PathBuf,
    file: Option<File>,
    /// Bytes in the file; all of them good.
    pub(crate) len: u64,
    /// The redacted URL, as the sidecar records it.
    source: String,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    /// Whether the sidecar exists on disk (read at open, or written since).
    meta_on_disk: bool,
    /// Where the file's cursor is, when known (saves a seek per append).
    cursor: Option<u64>,
    /// A split object's pieces an interrupted run left (the file is sized to the object and
    /// [`len`](WorkFile::len) is 0 until they are stitched).
    pub(crate) pieces: Option<Pieces>,
    /// Whether this is a spare path (another transfer had the usual one): no later run
    /// looks for it, so it is never kept.
    spare: bool,
    /// Left for a later run: the drop removes nothing.
    kept: bool,
    /// What the pieces of a split tail (see [`tail`](crate::engine::tail)) brought past
    /// the stream's bytes when it was interrupted: kept with them.
    pub(crate) tail: Option<Pieces>,
}

/// A split object's work file as an interrupted transfer left it: sized to `total` bytes,
/// of which the ranges in `have` are good and the rest are holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pieces {
    pub(crate) total: u64,
    /// Sorted, disjoint, none empty.
    have: Vec<Range<u64>>,
}

impl Pieces {
    /// The pieces `have` of an object of `total` bytes: clipped to it, sorted and merged.
    pub(crate) fn new(total: u64, mut have: Vec<Range<u64>>) -> Pieces {
        have.retain(|r| r.start < r.end.min(total));
        for r in &mut have {
            r.end = r.end.min(total);
        }
        have.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(have.len());
        for r in have {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        Pieces {
            total,
            have: merged,
        }
    }

    /// The good ranges, sorted.
    pub(crate) fn have(&self) -> &[Range<u64>] {
        &self.have
    }

    /// The good bytes.
    pub(crate) fn held(&self) -> u64 {
        self.have.iter().map(|r| r.end - r.start).sum()
    }

    /// The ranges still to fetch, in order.
    pub(crate) fn missing(&self) -> Vec<Range<u64>> {
        let mut missing = Vec::new();
        let mut at = 0;
        for r in &self.have {
            if r.start > at {
                missing.push(at..r.start);
            }
            at = r.end;
        }
        if at < self.total {
            missing.push(at..self.total);
        }
        missing
    }
}

/// Writes a split object's sidecar: its source and validators, and the pieces it has.
pub(crate) struct PiecesRecord {
    meta: PathBuf,
    head: String,
    total: u64,
}

impl PiecesRecord {
    /// Records the ranges in `have` (in any order) as the good bytes of the work file. A
    /// failure is logged: it costs a crash's resume, nothing else.
    pub(crate) fn write(&self, have: &[Range<u64>]) {
        let pieces = Pieces::new(self.total, have.to_vec());
        let text = format!("{}{}", self.head, pieces_text(&pieces));
        if let Err(e) = fs::write(&self.meta, text) {
            debug!("{}: {e}", self.meta.display());
        }
    }
}

/// A split object's lines in its sidecar.
fn pieces_text(pieces: &Pieces) -> String {
    let mut text = format!("size {}\n", pieces.total);
    for r in &pieces.have {
        text.push_str(&format!("have {}-{}\n", r.start, r.end));
    }
    text
}

/// What a sidecar records.
struct Sidecar {
    etag: Option<String>,
    last_modified: Option<String>,
    pieces: Option<Pieces>,
}

/// Objects smaller than this get no sidecar, so a crash cannot resume them: fetching them
/// again costs less than the sidecar's file operations cost every object (measured: on this
/// VM's ext4, creating, writing and removing it was a third of the time per 64 KiB object).
pub(crate) const RESUMABLE_BYTES: u64 = 1 << 20;

/// Whether an object of `total` bytes (unknown: `None`) is worth resuming after a crash.
pub(crate) fn resumable(total: Option<u64>) -> bool {
    total.is_none_or(|t| t >= RESUMABLE_BYTES)
}

impl WorkFile {
    pub(crate) fn open(
        mountpath: &Mountpath,
        name: &ObjectName,
        source: &str,
    ) -> Result<WorkFile, DownloadError> {
        let usual = mountpath.work_path(name);
        let (path, file, spare) = match open_locked(mountpath.work_dir(), &usual)? {
            Some(file) => (usual, file, false),
            None => {
                let spare = mountpath.spare_work_path(name);
                let file = open_locked(mountpath.work_dir(), &spare)?.ok_or_else(|| {
                    DownloadError::Local {
                        action: "locking work file",
                        path: spare.clone(),
                        source: io::Error::from(io::ErrorKind::WouldBlock),
                    }
                })?;
                (spare, file, true)
            }
        };
        let mut meta = path.clone().into_os_string();
        meta.push(".meta");
        let mut work = WorkFile {
            path,
            meta: meta.into(),
            file: Some(file),
            len: 0,
            source: source.to_owned(),
            etag: None,
            last_modified: None,
            meta_on_disk: false,
            cursor: Some(0),
            pieces: None,
            spare,
            kept: false,
            tail: None,
        };
        let on_disk = work.file().metadata().map(|m| m.len()).unwrap_or(0);
        if on_disk > 0 {
            match work.read_sidecar() {
                // A split object's pieces fit only the file sized to it.
                Some(sidecar) if sidecar.pieces.as_ref().is_none_or(|p| p.total == on_disk) => {
                    let held = sidecar.pieces.as_ref().map_or(on_disk, Pieces::held);
                    debug!(
                        "{}: resuming a work file holding {held} bytes",
                        work.path.display()
                    );
                    work.len = if sidecar.pieces.is_some() { 0 } else { on_disk };
                    work.cursor = None;
                    work.etag = sidecar.etag;
                    work.last_modified = sidecar.last_modified;
                    work.pieces = sidecar.pieces;
                    work.meta_on_disk = true;
                }
                _ => {
                    work.truncate()?;
                }
            }
        }
        Ok(work)
    }

    /// Whether it was [kept](WorkFile::keep) for a later run.
    pub(crate) fn is_kept(&self) -> bool {
        self.kept
    }

    /// Bytes an earlier run left that this one takes over.
    pub(crate) fn resumed(&self) -> u64 {
        self.len + self.pieces.as_ref().map_or(0, Pieces::held)
    }

    /// The sidecar, when it is for this source.
    fn read_sidecar(&self) -> Option<Sidecar> {
        let text = fs::read_to_string(&self.meta).ok()?;
        let mut lines = text.lines();
        if lines.next()? != format!("source {}", self.source) {
            return None;
        }
        let mut sidecar = Sidecar {
            etag: None,
            last_modified: None,
            pieces: None,
        };
        let (mut total, mut have) = (None, Vec::new());
        for line in lines {
            if let Some(v) = line.strip_prefix("etag ") {
                sidecar.etag = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("last-modified ") {
                sidecar.last_modified = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("size ") {
                total = Some(v.parse::<u64>().ok()?);
            } else if let Some(v) = line.strip_prefix("have ") {
                let (start, end) = v.split_once('-')?;
                have.push(start.parse::<u64>().ok()?..end.parse::<u64>().ok()?);
            }
        }
        sidecar.pieces = total.map(|total| Pieces::new(total, have));
        Some(sidecar)
    }

    /// The sidecar's text: the source and validators, and a split object's pieces.
    fn sidecar_text(&self, pieces: Option<&Pieces>) -> String {
        let mut text = format!("source {}\n", self.source);
        if let Some(etag) = &self.etag {
            text.push_str(&format!("etag {etag}\n"));
        }
        if let Some(lm) = &self.last_modified {
            text.push_str(&format!("last-modified {lm}\n"));
        }
        if let Some(pieces) = pieces {
            text.push_str(&pieces_text(pieces));
        }
        text
    }

    /// What records a split object's finished pieces in the sidecar as they finish, from
    /// the threads fetching them.
    pub(crate) fn pieces_record(&mut self, total: u64) -> PiecesRecord {
        // Written from now on: removed with the work file, whatever becomes of it.
        self.meta_on_disk = true;
        PiecesRecord {
            meta: self.meta.clone(),
            head: self.sidecar_text(None),
            total,
        }
    }

    /// Leaves the work file for a later run to resume (this transfer was interrupted), with a
    /// sidecar naming the version its bytes are of: its first [`len`](WorkFile::len) bytes,
    /// or a split object's `pieces`. Kept only with a validator to pin the resume to and
    /// bytes worth it, at the usual path (a spare one no later run looks for); otherwise the
    /// drop removes it as usual. Returns whether it was kept.
    pub(crate) fn keep(&mut self, pieces: Option<Pieces>) -> bool {
        let held = pieces.as_ref().map_or(self.len, Pieces::held);
        if self.kept || self.spare || held == 0 || self.validator().is_none() {
            return self.kept;
        }
        let text = self.sidecar_text(pieces.as_ref());
        let size = match &pieces {
            // Sized to the object: the holes are the bytes still missing.
            Some(pieces) => pieces.total,
            // Pieces of a split tail may lie beyond the stream's bytes: only these are good.
            None => self.len,
        };
        let sized = self.file().set_len(size);
        match sized.and_then(|()| fs::write(&self.meta, text)) {
            Ok(()) => {
                debug!(
                    "{}: kept with {held} bytes for a later run",
                    self.path.display()
                );
                self.meta_on_disk = true;
                self.kept = true;
            }
            Err(e) => warn!(
                "{}: cannot keep it for a later run: {e}",
                self.path.display()
            ),
        }
        self.kept
    }

    /// What `If-Range` can carry: a strong ETag, else `Last-Modified`.
    pub(crate) fn validator(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }

    /// Records the response's validators, and writes the sidecar (rewriting it when they
    /// changed) when the object is `resumable` after a crash (see [`resumable`]).
    pub(crate) fn set_validator(
        &mut self,
        etag: Option<String>,
        last_modified: Option<String>,
        resumable: bool,
    ) -> Result<(), DownloadError> {
        let same = etag == self.etag && last_modified == self.last_modified;
        self.etag = etag;
        self.last_modified = last_modified;
        let worth = resumable && self.validator().is_some();
        if !worth {
            if self.meta_on_disk {
                let _ = fs::remove_file(&self.meta);
                self.meta_on_disk = false;
            }
            return Ok(());
        }
        if same && self.meta_on_disk {
            return Ok(());
        }
        let text = self.sidecar_text(None);
        fs::write(&self.meta, text).map_err(|source| DownloadError::Local {
            action: "writing",
            path: self.meta.clone(),
            source,
        })?;
        self.meta_on_disk = true;
        Ok(())
    }

    fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("work file is open until it lands")
    }

    /// Sizes the file to `total` up front (for parts written at their offsets).
    pub(crate) fn preallocate(&mut self, total: u64) -> Result<(), DownloadError> {
        let file = self.file();
        file.set_len(total).map_err(|e| self.error("sizing", e))?;
        self.cursor = None;
        Ok(())
    }

    /// The open file, for positional writes.
    pub(crate) fn file_ref(&self) -> &File {
        self.file
            .as_ref()
            .expect("work file is open until it lands")
    }

    /// Empties the file (a resumed split object's pieces too); returns how many bytes were
    /// thrown away.
    pub(crate) fn truncate(&mut self) -> Result<u64, DownloadError> {
        let dropped = self.resumed();
        self.pieces = None;
        // What the sidecar says no longer holds (it is written again for the bytes to come).
        if self.meta_on_disk {
            let _ = fs::remove_file(&self.meta);
            self.meta_on_disk = false;
        }
        let file = self.file();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(|e| self.error("truncating", e))?;
        self.len = 0;
        self.cursor = Some(0);
        Ok(dropped)
    }

    /// Appends `bytes` at the end of the bytes known good.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), DownloadError> {
        let len = self.len;
        let cursor = self.cursor;
        let file = self.file();
        let written = if cursor == Some(len) {
            file.write_all(bytes)
        } else {
            file.seek(SeekFrom::Start(len))
                .and_then(|_| file.write_all(bytes))
        };
        match written {
            Ok(()) => {
                self.len += bytes.len() as u64;
                self.cursor = Some(self.len);
                Ok(())
            }
            Err(source) => {
                // Some of the block may be on disk: keep the bytes known good, and seek
                // back to their end before the next write.
                self.cursor = None;
                Err(self.error("writing", source))
            }
        }
    }

    /// Feeds the bytes in the file to `f`, in order (a work file resumed after a crash, so
    /// the whole object's digest can be checked).
    pub(crate) fn replay(&mut self, f: &mut dyn FnMut(&[u8])) -> Result<(), DownloadError> {
        self.replay_range(0..self.len, f)
    }

    /// Feeds bytes `range` of the file to `f`, in order.
    pub(crate) fn replay_range(
        &mut self,
        range: std::ops::Range<u64>,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DownloadError> {
        let mut buffer = vec![0; 256 * 1024];
        let mut at = range.start;
        let read = (|| {
            let file = self.file();
            file.seek(SeekFrom::Start(at))?;
            while at < range.end {
                let want = buffer
                    .len()
                    .min(usize::try_from(range.end - at).unwrap_or(usize::MAX));
                let n = file.read(&mut buffer[..want])?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                f(&buffer[..n]);
                at += n as u64;
            }
            Ok(())
        })();
        self.cursor = None;
        read.map_err(|e| self.error("reading", e))
    }

    /// Bytes up to `end` were written in place by others (pieces of a split tail): the
    /// file's good bytes now reach there.
    pub(crate) fn extend_to(&mut self, end: u64) {
        self.len = self.len.max(end);
        self.cursor = None;
    }

    pub(crate) fn error(&self, action: &'static str, source: io::Error) -> DownloadError {
        DownloadError::Local {
            action,
            path: self.path.clone(),
            source,
        }
    }

    /// Makes the work file the object at `target`, atomically, with the server's
    /// `Last-Modified` as its modification time.
    ///
    /// The lock is held until the rename is done (and, on a failure, until the work file is
    /// removed): a transfer of the same name that opened this file meanwhile finds it
    /// locked, or renamed away, and never truncates what has become the landed object.
    pub(crate) fn land(mut self, target: &Path, fsync: bool) -> Result<(), DownloadError> {
        let file = self.file_ref();
        if let Some(time) = self
            .last_modified
            .as_deref()
            .and_then(|t| httpdate::parse_http_date(t).ok())
            && let Err(e) = file.set_modified(time)
        {
            debug!("{}: cannot set mtime: {e}", self.path.display());
        }
        if fsync {
            file.sync_all().map_err(|e| self.error("syncing", e))?;
        }
        let parent = target.parent().unwrap_or(Path::new("."));
        // The directory usually exists: try the rename first, make it only when missing.
        let renamed = match fs::rename(&self.path, target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.path.exists() => {
                fs::create_dir_all(parent).map_err(|source| DownloadError::Local {
                    action: "creating directory",
                    path: parent.to_owned(),
                    source,
                })?;
                fs::rename(&self.path, target)
            }
            other => other,
        };
        renamed.map_err(|source| DownloadError::Local {
            action: "renaming work file to",
            path: target.to_owned(),
            source,
        })?;
        // Landed: the lock goes with the file, and nothing is left to remove.
        self.path = PathBuf::new();
        self.file = None;
        if self.meta_on_disk {
            let _ = fs::remove_file(&self.meta);
        }
        if fsync {
            File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(|source| DownloadError::Local {
                    action: "syncing directory",
                    path: parent.to_owned(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// Removes from `work_dir` what crashed runs left that no run can resume: spare work files
/// (`<hash>-<pid>-<seq>.part`, a transfer's when another had the usual name), work files
/// without a sidecar (objects too small to resume after a crash, and split tails, whose
/// files have holes), and sidecars whose work file is gone. A work file is removed only while this
/// process holds its lock, so one another transfer is using is left alone. Failures are
/// logged at debug: this is tidying, not a condition for anything.
pub(crate) fn sweep(work_dir: &Path) {
    let Ok(entries) = fs::read_dir(work_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if let Some(part) = name.strip_suffix(".meta") {
            if part.ends_with(".part") && !work_dir.join(part).exists() {
                remove(&path);
            }
            continue;
        }
        let Some(stem) = name.strip_suffix(".part") else {
            continue;
        };
        let mut meta = path.clone().into_os_string();
        meta.push(".meta");
        let resumable = !stem.contains('-') && Path::new(&meta).exists();
        if resumable {
            continue;
        }
        let opened = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        if let Ok(file) = opened
            && file.try_lock().is_ok()
            && same_file(&file, &path)
        {
            remove(&path);
            let _ = fs::remove_file(&meta);
        }
    }
}

fn remove(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => debug!("removed {}: a crashed run's, not resumable", path.display()),
        Err(e) => debug!("cannot remove {}: {e}", path.display()),
    }
}

/// Opens (creating) and locks the file at `path`; `None` when another holder has the lock.
///
/// The file is opened without following a symbolic link (one planted at a predictable
/// work-file name is removed, never written through). After the lock is taken, the open file
/// must still be the one at `path`: a transfer that opened it just before another renamed
/// it into place (or removed it) holds the landed file, or a deleted one, and opens again.
fn open_locked(work_dir: &Path, path: &Path) -> Result<Option<File>, DownloadError> {
    let open = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    let failed = |action, source| DownloadError::Local {
        action,
        path: path.to_owned(),
        source,
    };
    for _ in 0..100 {
        let file = match open() {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The work directory was removed under us: make it again.
                fs::create_dir_all(work_dir).map_err(|source| DownloadError::Local {
                    action: "creating work directory",
                    path: work_dir.to_owned(),
                    source,
                })?;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                warn!(
                    "{}: a symbolic link where a work file goes; removed, not followed",
                    path.display()
                );
                fs::remove_file(path)
                    .map_err(|source| failed("removing a symbolic link", source))?;
                continue;
            }
            Err(source) => return Err(failed("creating work file", source)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(source)) => {
                return Err(failed("locking work file", source));
            }
        }
        if same_file(&file, path) {
            return Ok(Some(file));
        }
        // Renamed into place or removed between our open and our lock: not ours.
    }
    Err(failed(
        "locking work file",
        io::Error::other("it kept being replaced while it was opened"),
    ))
}

/// Whether the open `file` is the file at `path` now (not a symbolic link).
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(open), Ok(there)) => open.dev() == there.dev() && open.ino() == there.ino(),
        _ => false,
    }
}

impl Drop for WorkFile {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() || self.kept {
            return;
        }
        // Removed while still locked: nobody can take over a file that is on its way out.
        if let Err(e) = fs::remove_file(&self.path) {
            warn!("could not remove work file {}: {e}", self.path.display());
        }
        if self.meta_on_disk {
            let _ = fs::remove_file(&self.meta);
        }
        self.file = None;
    }
}

/// A work file's pieces of a cut tail (see [`tail`](crate::engine::tail)) are written at their
/// offsets by their own threads, and read back when the stream joins them, for the digests.
impl PieceStore for Buffered<WorkFile> {
    type Place = PathBuf;
    type Brought = ();
    type Record = PiecesRecord;

    /// Sized to the object, with a sidecar that lists the stream's bytes as the good ones.
    fn make_room(&mut self, total: u64) -> Result<PiecesRecord, DownloadError> {
        self.flush()?;
        self.sink.preallocate(total)?;
        Ok(self.sink.pieces_record(total))
    }

    fn record(&self, record: &PiecesRecord) {
        record.write(std::slice::from_ref(&(0..self.sink.len)));
    }

    fn place(&self, _range: &Range<u64>, _bytes_needed: bool) -> Option<PathBuf> {
        Some(self.sink.path.clone())
    }

    fn fetch_piece(
        path: PathBuf,
        ctx: &Context<'_>,
        source: &Source<'_>,
        range: Range<u64>,
        pin: &Pin,
        helpers: &dyn Helpers,
    ) -> (Result<(), DownloadError>, u64) {
        parts::fetch_piece_into(&path, ctx, source, range, pin, helpers)
    }

    fn join_piece(&mut self, range: Range<u64>, (): (), f: Feed<'_>) -> Result<(), DownloadError> {
        // Read back only for the digests: the bytes are in the file.
        if let Some(f) = f {
            self.sink.replay_range(range.clone(), f)?;
        }
        self.sink.extend_to(range.end);
        Ok(())
    }

    fn keep_brought(&mut self, total: u64, brought: Vec<Range<u64>>) {
        self.sink.tail = Some(Pieces::new(total, brought));
    }
}
