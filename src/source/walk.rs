//! Local files as a job's source: the files under the paths given, walked lazily, one
//! directory read at a time.
//!
//! A file given by path is named by its file name; the files under a directory given by
//! path are named by their paths relative to it, with `/` between components (what
//! `aws s3 cp --recursive` and rclone do, and what `s3 get` writes back). Within a
//! directory, entries are visited in the byte order of their names with `/` appended to
//! directories, so the whole walk yields names in byte order: the order an S3 listing of
//! the destination comes in, which lets a job compare the two in one pass.
//!
//! Symbolic links and special files under a directory are skipped with a warning, never
//! followed (a link could lead out of the tree, or around in circles); a path given
//! explicitly is taken for what it points to, as `cp` and rsync take it.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use log::warn;

/// One regular file found by a [`Walk`].
#[derive(Debug, Clone)]
pub(crate) struct LocalFile {
    pub(crate) path: PathBuf,
    /// Its name: relative to the directory given, `/` between components.
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) modified: Option<SystemTime>,
}

impl LocalFile {
    fn new(path: PathBuf, name: String, meta: &Metadata) -> LocalFile {
        LocalFile {
            path,
            name,
            size: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// Why one path of a walk yields no file: it could not be read, or its name cannot be a
/// key.
#[derive(Debug)]
pub(crate) struct WalkError {
    pub(crate) path: PathBuf,
    pub(crate) action: &'static str,
    pub(crate) source: io::Error,
}

/// A directory being walked: its entries not yet visited (path, name, type), in reverse
/// order: the next one last.
#[derive(Debug)]
struct Level {
    entries: Vec<(PathBuf, String, fs::FileType)>,
}

/// The files under some paths, walked lazily (see the module documentation).
#[derive(Debug)]
pub(crate) struct Walk {
    /// The paths given, not yet started, in reverse order.
    roots: Vec<PathBuf>,
    /// The directories open now, innermost last.
    levels: Vec<Level>,
}

impl Walk {
    pub(crate) fn new(paths: &[PathBuf]) -> Walk {
        Walk {
            roots: paths.iter().rev().cloned().collect(),
            levels: Vec::new(),
        }
    }

    /// Opens directory `path`, whose entries are named under `prefix`.
    fn open(&mut self, path: &Path, prefix: &str) -> Result<(), WalkError> {
        let read = |source| WalkError {
            path: path.to_owned(),
            action: "reading directory",
            source,
        };
        let mut entries = Vec::new();
        for entry in fs::read_dir(path).map_err(read)? {
            let entry = entry.map_err(read)?;
            let file_type = entry.file_type().map_err(read)?;
            let child = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                // Not UTF-8: it cannot be a key. Reported when reached, under the raw name.
                let shown = entry.file_name().to_string_lossy().into_owned();
                entries.push((child, format!("{prefix}{shown}\u{0}"), file_type));
                continue;
            };
            entries.push((child, format!("{prefix}{name}"), file_type));
        }
        // Byte order of the names as keys: a directory sorts as its name and a `/`.
        let sort_key = |(_, name, file_type): &(PathBuf, String, fs::FileType)| {
            let mut key = name.clone().into_bytes();
            if file_type.is_dir() {
                key.push(b'/');
            }
            key
        };
        entries.sort_by_cached_key(sort_key);
        entries.reverse();
        self.levels.push(Level { entries });
        Ok(())
    }
}

impl Iterator for Walk {
    type Item = Result<LocalFile, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some(level) = self.levels.last_mut() else {
                let root = self.roots.pop()?;
                // What a path given names, links followed.
                let meta = match fs::metadata(&root) {
                    Ok(meta) => meta,
                    Err(source) => {
                        return Some(Err(WalkError {
                            path: root,
                            action: "reading",
                            source,
                        }));
                    }
                };
                if meta.is_dir() {
                    if let Err(e) = self.open(&root, "") {
                        return Some(Err(e));
                    }
                    continue;
                }
                if !meta.is_file() {
                    return Some(Err(not_a_file(root)));
                }
                let Some(name) = root.file_name().and_then(|n| n.to_str()).map(str::to_owned)
                else {
                    return Some(Err(not_utf8(root)));
                };
                return Some(Ok(LocalFile::new(root, name, &meta)));
            };
            let Some((path, name, file_type)) = level.entries.pop() else {
                self.levels.pop();
                continue;
            };
            if name.ends_with('\u{0}') {
                return Some(Err(not_utf8(path)));
            }
            if file_type.is_dir() {
                if let Err(e) = self.open(&path, &format!("{name}/")) {
                    return Some(Err(e));
                }
                continue;
            }
            if file_type.is_symlink() {
                warn!("{}: a symbolic link: not followed", path.display());
                continue;
            }
            if !file_type.is_file() {
                warn!("{}: not a regular file: skipped", path.display());
                continue;
            }
            // The entry's own metadata, not a link's target: it was a file when listed.
            return Some(match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => Ok(LocalFile::new(path, name, &meta)),
                Ok(_) => Err(not_a_file(path)),
                Err(source) => Err(WalkError {
                    path,
                    action: "reading",
                    source,
                }),
            });
        }
    }
}

fn not_utf8(path: PathBuf) -> WalkError {
    WalkError {
        path,
        action: "naming",
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            "the file name is not UTF-8, so it cannot be a key",
        ),
    }
}

fn not_a_file(path: PathBuf) -> WalkError {
    WalkError {
        path,
        action: "reading",
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file or a directory",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(paths: &[PathBuf]) -> Vec<String> {
        Walk::new(paths)
            .map(|f| {
                f.map(|f| f.name)
                    .unwrap_or_else(|e| format!("error {}", e.action))
            })
            .collect()
    }

    #[test]
    fn a_walk_yields_names_in_key_order_and_skips_links() {
        let dir = std::env::temp_dir().join(format!("haul-walk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let root = dir.as_path();
        for name in ["a-c", "a/b", "a/z/y", "b", "a.txt"] {
            let path = root.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, name).unwrap();
        }
        std::os::unix::fs::symlink(root.join("b"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root, root.join("a/loop")).unwrap();
        let got = names(&[root.to_owned()]);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, ["a-c", "a.txt", "a/b", "a/z/y", "b"]);
        assert_eq!(got, sorted, "byte order of the keys");
        // A file given by path is named by its file name; one that is missing is an error.
        let got = names(&[root.join("a/z/y"), root.join("missing"), root.join("a/z")]);
        assert_eq!(got, ["y", "error reading", "y"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
