//! Checking a local tree against a manifest: every listed file's size and SHA-256 — hashed
//! in parallel on rayon's pool with the `rayon` feature (CPU-bound work, which is what it
//! is for), one after another without — and the files there that the manifest does not
//! list.

use std::io;
use std::path::Path;

#[cfg(feature = "rayon")]
use rayon::prelude::*;

use super::{Manifest, ManifestEntry};
use crate::engine::verify::{Sha256Digest, read_blocks};

/// A listed file that is there but not as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mismatch {
    /// Its name.
    pub name: String,
    /// How it differs: its size, its digest, or what it is instead of a file.
    pub reason: String,
}

/// What [`Manifest::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Files found as listed.
    pub good: usize,
    /// Of them, those checked by size alone (the manifest has no digest for them).
    pub size_only: usize,
    /// Bytes read and hashed.
    pub bytes_hashed: u64,
    /// Listed files not there.
    pub missing: Vec<String>,
    /// Listed files there but not as listed.
    pub mismatched: Vec<Mismatch>,
    /// Files there that the manifest does not list (haul's own `.haul*` files aside).
    pub extra: Vec<String>,
}

impl VerifyReport {
    /// Whether the tree is exactly the manifest's: nothing missing, mismatched or extra.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty() && self.extra.is_empty()
    }
}

/// What became of one listed file.
enum Found {
    Good { size_only: bool, hashed: u64 },
    Missing,
    Mismatch(String, u64),
}

impl Manifest {
    /// Checks the files under `dir` against the manifest: each listed file's size, then its
    /// SHA-256 where the manifest has one — in parallel with the `rayon` feature, the
    /// largest first so the last to finish are small; `progress` is told the bytes of each
    /// block hashed, from any of the pool's threads. A symbolic link is never followed: a listed name that is one is
    /// a mismatch.
    ///
    /// # Errors
    ///
    /// The I/O error of reading `dir` itself (it does not exist, or is not a directory).
    /// A file that cannot be read is a [`Mismatch`] that says why.
    pub fn verify(&self, dir: &Path, progress: &(dyn Fn(u64) + Sync)) -> io::Result<VerifyReport> {
        let mut listed: Vec<&ManifestEntry> = self.entries.values().collect();
        listed.sort_by_key(|e| std::cmp::Reverse(e.size));
        let extra = extra_files(dir, self)?;
        let each = |entry: &ManifestEntry| check(dir, entry, progress);
        #[cfg(feature = "rayon")]
        let checked: Vec<Found> = listed.par_iter().map(|e| each(e)).collect();
        #[cfg(not(feature = "rayon"))]
        let checked: Vec<Found> = listed.iter().map(|e| each(e)).collect();
        let found = listed.into_iter().zip(checked);
        let mut report = VerifyReport {
            extra,
            ..VerifyReport::default()
        };
        for (entry, found) in found {
            match found {
                Found::Good { size_only, hashed } => {
                    report.good += 1;
                    report.size_only += usize::from(size_only);
                    report.bytes_hashed += hashed;
                }
                Found::Missing => report.missing.push(entry.name.clone()),
                Found::Mismatch(reason, hashed) => {
                    report.bytes_hashed += hashed;
                    report.mismatched.push(Mismatch {
                        name: entry.name.clone(),
                        reason,
                    });
                }
            }
        }
        report.missing.sort();
        report.mismatched.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(report)
    }
}

fn check(dir: &Path, entry: &ManifestEntry, progress: &(dyn Fn(u64) + Sync)) -> Found {
    let path = dir.join(&entry.name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Found::Missing,
        Err(e) => return Found::Mismatch(format!("cannot be read: {e}"), 0),
    };
    if meta.file_type().is_symlink() {
        return Found::Mismatch("is a symbolic link, not a file".into(), 0);
    }
    if !meta.is_file() {
        return Found::Mismatch("is not a regular file".into(), 0);
    }
    if meta.len() != entry.size {
        let reason = format!("has {} bytes, the manifest says {}", meta.len(), entry.size);
        return Found::Mismatch(reason, 0);
    }
    let Some(want) = entry.sha256 else {
        return Found::Good {
            size_only: true,
            hashed: 0,
        };
    };
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut hashed = 0;
    let read = read_blocks(&path, None, |block| {
        sha2::Digest::update(&mut hasher, block);
        hashed += block.len() as u64;
        progress(block.len() as u64);
    });
    if let Err(e) = read {
        return Found::Mismatch(format!("cannot be read: {e}"), hashed);
    }
    let got = Sha256Digest::from_bytes(sha2::Digest::finalize(hasher).into());
    if got == want {
        Found::Good {
            size_only: false,
            hashed,
        }
    } else {
        Found::Mismatch(
            format!("its sha256 is {got}, the manifest says {want}"),
            hashed,
        )
    }
}

/// The files under `dir` (relative paths, `/`-separated, sorted) that `manifest` does not
/// list: haul's own `.haul*` entries are skipped, symbolic links are listed, not followed.
fn extra_files(dir: &Path, manifest: &Manifest) -> io::Result<Vec<String>> {
    let mut extra = Vec::new();
    let mut stack = vec![(dir.to_owned(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        for item in std::fs::read_dir(&path)? {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with(".haul") {
                continue;
            }
            let relative = format!("{prefix}{name}");
            if item.file_type()?.is_dir() {
                stack.push((item.path(), format!("{relative}/")));
            } else if manifest.get(&relative).is_none() {
                extra.push(relative);
            }
        }
    }
    extra.sort();
    Ok(extra)
}
