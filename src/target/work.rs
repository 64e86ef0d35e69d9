//! Work files: where an object's bytes go until it lands, with the sidecar that lets a
//! later run resume them after a crash.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use log::{debug, warn};

use crate::engine::error::DownloadError;
use crate::target::mountpath::Mountpath;
use crate::target::name::ObjectName;

/// A work file in a mountpath's work directory, with its sidecar. It removes both unless it
/// lands (or the process dies, which is what lets the next run resume it).
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
        let (path, file) = match open_locked(mountpath.work_dir(), &usual)? {
            Some(file) => (usual, file),
            None => {
                let spare = mountpath.spare_work_path(name);
                let file = open_locked(mountpath.work_dir(), &spare)?.ok_or_else(|| {
                    DownloadError::Local {
                        action: "locking work file",
                        path: spare.clone(),
                        source: io::Error::from(io::ErrorKind::WouldBlock),
                    }
                })?;
                (spare, file)
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
        };
        let on_disk = work.file().metadata().map(|m| m.len()).unwrap_or(0);
        if on_disk > 0 {
            match work.read_sidecar() {
                Some((etag, last_modified)) => {
                    debug!(
                        "{}: resuming a work file of {on_disk} bytes",
                        work.path.display()
                    );
                    work.len = on_disk;
                    work.etag = etag;
                    work.last_modified = last_modified;
                    work.meta_on_disk = true;
                }
                None => {
                    work.truncate()?;
                }
            }
        }
        Ok(work)
    }

    /// The sidecar's validators, when it is for this source.
    fn read_sidecar(&self) -> Option<(Option<String>, Option<String>)> {
        let text = fs::read_to_string(&self.meta).ok()?;
        let mut lines = text.lines();
        if lines.next()? != format!("source {}", self.source) {
            return None;
        }
        let (mut etag, mut last_modified) = (None, None);
        for line in lines {
            if let Some(v) = line.strip_prefix("etag ") {
                etag = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("last-modified ") {
                last_modified = Some(v.to_owned());
            }
        }
        Some((etag, last_modified))
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
        let mut text = format!("source {}\n", self.source);
        if let Some(etag) = &self.etag {
            text.push_str(&format!("etag {etag}\n"));
        }
        if let Some(lm) = &self.last_modified {
            text.push_str(&format!("last-modified {lm}\n"));
        }
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

    /// Empties the file; returns how many bytes were thrown away.
    pub(crate) fn truncate(&mut self) -> Result<u64, DownloadError> {
        let dropped = self.len;
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
/// without a sidecar (objects too small to resume, and split objects, whose files have
/// holes), and sidecars whose work file is gone. A work file is removed only while this
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
        if self.path.as_os_str().is_empty() {
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
