//! Mountpaths: the local directories objects land in, and the only place names become paths.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::target::name::{ObjectName, WORK_DIR};

/// A local directory that objects land in, typically one per disk.
///
/// It owns a hidden work directory (`.haul-work`) on the same file system, so a finished
/// work file can be renamed into place atomically: a reader never sees a partial object.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("haul-doc-mp-{}", std::process::id()));
/// use haul::{Mountpath, ObjectName};
///
/// let mp = Mountpath::new(&dir)?;
/// let path = mp.path_of(&ObjectName::new("a/b.tar")?);
/// assert!(path.starts_with(mp.root()));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Mountpath {
    root: PathBuf,
    work: PathBuf,
    fsync: bool,
    next_work_file: AtomicU64,
}

impl Mountpath {
    /// Opens `root` as a mountpath, creating it and its work directory when missing. The root
    /// may be a symbolic link (to a disk, say); its work directory may not. Work files that
    /// crashed runs left and no run can resume (spare ones, split objects' files with holes)
    /// are removed; those with a sidecar stay, for the next transfer of their object.
    ///
    /// Durability defaults to *no fsync*: objects are renamed into place once complete,
    /// which protects readers from partial objects, but not against power loss. This is what
    /// curl and wget do, and it is much faster for many small objects; turn on
    /// [`fsync`](Mountpath::fsync) when the objects must survive a crash of the machine.
    ///
    /// # Errors
    ///
    /// The I/O error from creating the directories; an error of kind `Other` when the work
    /// directory is a symbolic link (haul never writes its work files through one).
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Mountpath> {
        let mountpath = Mountpath::untouched(root);
        let work = &mountpath.work;
        fs::create_dir_all(work)?;
        if fs::symlink_metadata(work)?.file_type().is_symlink() {
            return Err(io::Error::other(format!(
                "{} is a symbolic link: haul writes its work files only into a directory of \
                 the mountpath itself",
                work.display()
            )));
        }
        crate::target::work::sweep(work);
        Ok(mountpath)
    }

    /// `root` as a mountpath that is only looked at (a dry run): nothing is created or swept,
    /// and it need not exist.
    pub(crate) fn untouched(root: impl Into<PathBuf>) -> Mountpath {
        let root = root.into();
        Mountpath {
            work: root.join(WORK_DIR),
            root,
            fsync: false,
            next_work_file: AtomicU64::new(0),
        }
    }

    /// Whether each object is fsynced (and its directory after the rename) before it counts
    /// as landed. Off by default; see [`Mountpath::new`].
    pub fn fsync(mut self, on: bool) -> Mountpath {
        self.fsync = on;
        self
    }

    /// Whether objects are fsynced before they count as landed.
    pub fn fsyncs(&self) -> bool {
        self.fsync
    }

    /// The directory objects land in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The hidden directory holding work files.
    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    /// Where the object `name` lands. The result is always inside [`root`](Mountpath::root):
    /// [`ObjectName`] admits no `..`, absolute or empty segment.
    pub fn path_of(&self, name: &ObjectName) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(name.segments());
        path
    }

    /// Checks the way to where `name` lands: no directory inside the mountpath on it may be
    /// a symbolic link (it would land the object, or delete a file, outside the mountpath).
    /// Directories that do not exist yet are fine: haul makes them.
    ///
    /// # Errors
    ///
    /// The path of the first symbolic link, with an error of kind `Other`; or the error of
    /// looking at a directory.
    pub(crate) fn check_way(&self, name: &ObjectName) -> Result<(), (PathBuf, io::Error)> {
        let mut path = self.root.clone();
        let mut segments = name.segments().peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_none() {
                break; // the object itself: a rename replaces a link, it never follows one
            }
            path.push(segment);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let error = io::Error::other("a symbolic link inside the output directory");
                    return Err((path, error));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err((path, e)),
            }
        }
        Ok(())
    }

    /// Where the work file of `name` goes while it is fetched: the same in every run, so a
    /// run after a crash finds what the last one left and resumes it. (A second transfer of
    /// the same name at once takes a spare name beside it.)
    pub fn work_path(&self, name: &ObjectName) -> PathBuf {
        let hash = crate::downloader::hrw::hash(name.as_str().as_bytes());
        self.work.join(format!("{hash:016x}.part"))
    }

    /// A work-file path for `name` unique within this process, for when the usual one is
    /// taken by another transfer of the same name.
    pub(crate) fn spare_work_path(&self, name: &ObjectName) -> PathBuf {
        let seq = self.next_work_file.fetch_add(1, Ordering::Relaxed);
        let hash = crate::downloader::hrw::hash(name.as_str().as_bytes());
        self.work
            .join(format!("{hash:016x}-{}-{seq}.part", std::process::id()))
    }
}
