//! Manifests: a dataset pinned as text — every object's name, size, SHA-256 and validator
//! where known, and URL — so the same bytes can be fetched next month, or a local copy
//! checked, and the run says why not when they differ.
//!
//! The text format is documented on [`Manifest`].

mod probe;
mod verify;

use std::collections::BTreeMap;
use std::fmt;

use crate::JobSpec;
use crate::engine::verify::Sha256Digest;

pub use verify::{Mismatch, VerifyReport};

/// The first line of every manifest.
const HEADER: &str = "# haul manifest 1";

/// One object of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManifestEntry {
    /// Where it lands: a relative path.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, when known.
    pub sha256: Option<Sha256Digest>,
    /// The ETag it must have (quotes included, as the server sent it), when pinned by one.
    pub etag: Option<String>,
    /// The S3 version it is (a bucket that keeps versions): fetched as that version, even
    /// after the key was written again.
    pub version: Option<String>,
    /// Where it is fetched from.
    pub url: String,
}

impl ManifestEntry {
    /// An object `name` of `size` bytes at `url`, nothing else known.
    pub fn new(name: impl Into<String>, size: u64, url: impl Into<String>) -> ManifestEntry {
        ManifestEntry {
            name: name.into(),
            size,
            sha256: None,
            etag: None,
            version: None,
            url: url.into(),
        }
    }

    /// Sets its SHA-256.
    pub fn sha256(mut self, digest: Sha256Digest) -> ManifestEntry {
        self.sha256 = Some(digest);
        self
    }

    /// Sets the ETag it must have.
    pub fn etag(mut self, etag: impl Into<String>) -> ManifestEntry {
        self.etag = Some(etag.into());
        self
    }

    /// Sets the S3 version it is.
    pub fn version(mut self, id: impl Into<String>) -> ManifestEntry {
        self.version = Some(id.into());
        self
    }
}

/// A pinned set of objects. `Display` writes its text form and [`Manifest::parse`] reads it.
///
/// # The format
///
/// UTF-8 text, one object per line, sorted by name, so two manifests diff well (tabs shown
/// as `⇥`):
///
/// ```text
/// # haul manifest 1
/// # source hf://datasets/org/corpus at commit 0123456789abcdef0123456789abcdef01234567
/// # 2 objects, 1000300 bytes
/// README.md ⇥ 300 ⇥ - ⇥ - ⇥ https://huggingface.co/datasets/org/corpus/resolve/0123…/README.md
/// data/train.parquet ⇥ 1000000 ⇥ 9f86d081… ⇥ - ⇥ https://huggingface.co/datasets/org/corpus/resolve/0123…/data/train.parquet
/// ```
///
/// The first line is `# haul manifest 1` (the format's version). Other lines starting with
/// `#` are notes (the source, totals, an estimate), kept but not read; blank lines are
/// skipped. An object's line has five fields separated by tabs: its **name** (where it
/// lands: a relative path), its **size** in bytes, its **SHA-256** (64 hex digits), its
/// **validator** (`etag:"…"`: the ETag it must have; `version:ID`: the S3 version it is;
/// both, separated by `;`) and its **URL** (http or https; an
/// `hf://` source's resolve URL at the commit, so the commit pins it; `s3://bucket/key` for
/// an object of a bucket). `-` stands for an unknown digest or validator. Names are unique.
///
/// # In code
///
/// ```
/// use haul::{Manifest, ManifestEntry, Sha256Digest};
///
/// let mut manifest = Manifest::new();
/// manifest.note("source https://host/");
/// manifest.push(ManifestEntry::new("b.bin", 3, "https://host/b.bin").sha256(Sha256Digest::of(b"abc")));
/// manifest.push(ManifestEntry::new("a.bin", 10, "https://host/a.bin").etag("\"v1\""));
/// manifest.push(ManifestEntry::new("c.bin", 1, "s3://bucket/c.bin").etag("\"e\"").version("v9"));
/// let text = manifest.to_string();
/// assert!(text.starts_with("# haul manifest 1\n# source https://host/\n"));
/// let read = Manifest::parse(&text)?;
/// assert_eq!(read.entries()[0].name, "a.bin"); // sorted by name
/// assert_eq!(read, manifest);
/// let job = read.job(); // a download of exactly these objects, each checked
/// # drop(job);
/// # Ok::<(), haul::ManifestError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// By name.
    entries: BTreeMap<String, ManifestEntry>,
    notes: Vec<String>,
}

/// Why a manifest could not be read: the line (from 1) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest line {line}: {reason}")]
pub struct ManifestError {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl Manifest {
    /// An empty manifest.
    pub fn new() -> Manifest {
        Manifest::default()
    }

    /// Adds an object, replacing one of the same name.
    pub fn push(&mut self, entry: ManifestEntry) {
        self.entries.insert(entry.name.clone(), entry);
    }

    /// Adds a note (a `#` line after the header: the source, totals).
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// The objects, sorted by name.
    pub fn entries(&self) -> Vec<&ManifestEntry> {
        self.entries.values().collect()
    }

    /// The object named `name`.
    pub fn get(&self, name: &str) -> Option<&ManifestEntry> {
        self.entries.get(name)
    }

    /// How many objects.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Their bytes in all.
    pub fn total_bytes(&self) -> u64 {
        self.entries.values().map(|e| e.size).sum()
    }

    /// The notes.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The manifest of a Hub snapshot: each file at the snapshot's commit (its resolve URL
    /// names it), its size, and the SHA-256 of an LFS file.
    pub fn from_snapshot(snapshot: &crate::Snapshot) -> Manifest {
        let mut manifest = Manifest::new();
        manifest.note(format!(
            "source {} at commit {}",
            snapshot.path(),
            snapshot.commit()
        ));
        for file in snapshot.files() {
            let mut entry = ManifestEntry::new(file.path.clone(), file.size, file.url.clone());
            entry.sha256 = file.sha256;
            manifest.push(entry);
        }
        manifest
    }

    /// Reads a manifest's text.
    ///
    /// # Errors
    ///
    /// A [`ManifestError`] naming the first bad line: no header, too few fields, a name
    /// that is not a safe relative path or that came before, a size that is not a number,
    /// a digest that is not 64 hex digits, a validator that is not `etag:"…"` or `version:ID`, a URL that
    /// is not http(s).
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, first)) if first.trim_end() == HEADER => {}
            _ => {
                return Err(ManifestError {
                    line: 1,
                    reason: format!("not a haul manifest (the first line must be {HEADER:?})"),
                });
            }
        }
        let mut manifest = Manifest::new();
        for (line, text) in lines {
            let bad = |reason: String| ManifestError { line, reason };
            if text.trim().is_empty() {
                continue;
            }
            if let Some(note) = text.strip_prefix('#') {
                manifest.note(note.trim());
                continue;
            }
            let fields: Vec<&str> = text.split('\t').collect();
            let [name, size, sha256, validator, url] = fields[..] else {
                return Err(bad(format!(
                    "{} fields; an object's line has 5 (name, size, sha256, validator, url) separated by tabs",
                    fields.len()
                )));
            };
            crate::target::name::ObjectName::new(name)
                .map_err(|e| bad(format!("name {name:?}: {e}")))?;
            let size = size
                .parse()
                .map_err(|_| bad(format!("size {size:?} is not a number of bytes")))?;
            let sha256 = match sha256 {
                "-" => None,
                hex => Some(
                    hex.parse()
                        .map_err(|_| bad(format!("sha256 {hex:?} is not 64 hex digits")))?,
                ),
            };
            let (mut etag, mut version) = (None, None);
            for part in validator.split(';').filter(|_| validator != "-") {
                let bad_part = || {
                    bad(format!(
                        "validator {part:?} is not etag:\"…\", version:ID or -"
                    ))
                };
                if let Some(e) = part.strip_prefix("etag:").filter(|e| !e.is_empty()) {
                    etag = Some(e.to_owned());
                } else if let Some(v) = part.strip_prefix("version:").filter(|v| !v.is_empty()) {
                    version = Some(v.to_owned());
                } else {
                    return Err(bad_part());
                }
            }
            if s3_object(url).is_none() {
                crate::source::url::check_url(url).map_err(|e| bad(e.to_string()))?;
            }
            if manifest.entries.contains_key(name) {
                return Err(bad(format!("{name:?} is listed twice")));
            }
            manifest.push(ManifestEntry {
                name: name.to_owned(),
                size,
                sha256,
                etag,
                version,
                url: url.to_owned(),
            });
        }
        Ok(manifest)
    }

    /// A download job of exactly its web objects (its `http(s)` URLs): each under its name,
    /// checked against its size, its SHA-256 and its ETag where the manifest has them (an
    /// object that no longer matches fails, named, and nothing of it lands). Resumable and
    /// shardable as any job. Objects of buckets are [`jobs`](Manifest::jobs)' too.
    pub fn job(&self) -> JobSpec {
        let web: Vec<&ManifestEntry> = self
            .entries
            .values()
            .filter(|e| s3_object(&e.url).is_none())
            .collect();
        let pairs = web.iter().map(|e| (e.name.clone(), e.url.clone()));
        pinned(JobSpec::multi_named(pairs), &web)
    }

    /// Download jobs of every object: one of the web objects ([`job`](Manifest::job)), if
    /// there are any, and one per bucket of the `s3://` objects, with `config`'s store and
    /// credentials, each checked as `job` checks them.
    ///
    /// # Errors
    ///
    /// An [`S3Error`](crate::S3Error) when a bucket's client cannot be made.
    pub fn jobs(&self, config: &crate::S3Config) -> Result<Vec<JobSpec>, crate::S3Error> {
        let mut by_bucket: BTreeMap<&str, Vec<(&ManifestEntry, &str)>> = BTreeMap::new();
        let mut web = false;
        for entry in self.entries.values() {
            match s3_object(&entry.url) {
                Some((bucket, key)) => by_bucket.entry(bucket).or_default().push((entry, key)),
                None => web = true,
            }
        }
        let mut jobs = Vec::new();
        if web {
            jobs.push(self.job());
        }
        for (name, objects) in by_bucket {
            let bucket = crate::Bucket::new(name, config)?;
            let pairs = objects
                .iter()
                .map(|(e, key)| (e.name.clone(), (*key).to_owned()));
            let entries: Vec<&ManifestEntry> = objects.iter().map(|(e, _)| *e).collect();
            jobs.push(pinned(JobSpec::s3_keys(&bucket, pairs), &entries));
        }
        Ok(jobs)
    }

    /// The manifest of the objects under `prefix` in `bucket` that `select` takes (its
    /// patterns on the key after the prefix, as `s3 get`), each named by its key after the
    /// prefix's directory (as `s3 get` lands it), with its size and ETag; with `versions`,
    /// also the version id of each (one HEAD an object), so a job fetches those versions
    /// even after their keys are written again.
    ///
    /// # Errors
    ///
    /// The listing's or a HEAD's [`S3Error`](crate::S3Error); a key that makes no safe name.
    pub fn from_bucket(
        bucket: &crate::Bucket,
        prefix: &str,
        select: &crate::KeySelection,
        versions: bool,
    ) -> Result<Manifest, crate::S3Error> {
        let names = crate::downloader::key_names::KeyNames::new(prefix, true, None);
        let mut manifest = Manifest::new();
        manifest.note(format!("source s3://{}/{prefix}", bucket.name()));
        for object in bucket.list(prefix) {
            let object = object?;
            let relative = object.key.get(prefix.len()..).unwrap_or(&object.key);
            if object.key.ends_with('/') || !select.matches_listed(relative, &object) {
                continue;
            }
            let url = format!("s3://{}/{}", bucket.name(), object.key);
            let name = names.name(&object.key).map_err(|e| crate::S3Error::Parse {
                op: "list",
                bucket: bucket.name().to_owned(),
                key: object.key.clone(),
                reason: format!("no safe name: {e}"),
            })?;
            let mut entry = ManifestEntry::new(name.to_string(), object.size, url);
            // As the store sends it in answers, quoted: what a GET's ETag is compared with.
            entry.etag = object.etag.map(|e| format!("\"{e}\""));
            if versions {
                entry.version = bucket.version_of(&object.key)?;
            }
            manifest.push(entry);
        }
        Ok(manifest)
    }
}

/// `spec` checked against the entries' sizes, digests and ETags, described by them.
fn pinned(mut spec: JobSpec, entries: &[&ManifestEntry]) -> JobSpec {
    let bytes: u64 = entries.iter().map(|e| e.size).sum();
    spec = spec.description(format!(
        "manifest: {} objects, {bytes} bytes",
        entries.len()
    ));
    for entry in entries {
        spec = spec.size(entry.name.clone(), entry.size);
        if let Some(digest) = entry.sha256 {
            spec = spec.sha256(entry.name.clone(), digest);
        }
        if let Some(etag) = &entry.etag {
            spec = spec.etag(entry.name.clone(), etag.clone());
        }
        if let Some(version) = &entry.version {
            spec = spec.version(entry.name.clone(), version.clone());
        }
    }
    spec
}

/// `(bucket, key)` of an `s3://bucket/key` URL.
fn s3_object(url: &str) -> Option<(&str, &str)> {
    let (bucket, key) = url.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{HEADER}")?;
        for note in &self.notes {
            writeln!(f, "# {note}")?;
        }
        for e in self.entries.values() {
            let sha256 = e.sha256.map_or_else(|| "-".to_owned(), |d| d.to_string());
            let validators: Vec<String> = (e.etag.iter().map(|t| format!("etag:{t}")))
                .chain(e.version.iter().map(|v| format!("version:{v}")))
                .collect();
            let validator = match validators.is_empty() {
                true => "-".to_owned(),
                false => validators.join(";"),
            };
            writeln!(
                f,
                "{}\t{}\t{sha256}\t{validator}\t{}",
                e.name, e.size, e.url
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_is_named_with_what_is_wrong() {
        let ok = "x.bin\t1\t-\t-\thttps://h/x.bin";
        for (body, line, says) in [
            ("x.bin\t1\t-\thttps://h/x.bin", 2, "4 fields"),
            ("../x\t1\t-\t-\thttps://h/x", 2, "name"),
            ("x.bin\tten\t-\t-\thttps://h/x.bin", 2, "not a number"),
            ("x.bin\t1\tabc\t-\thttps://h/x.bin", 2, "64 hex"),
            ("x.bin\t1\t-\tmd5:x\thttps://h/x.bin", 2, "etag:"),
            (
                "x.bin\t1\t-\tetag:\"a\";version:\thttps://h/x.bin",
                2,
                "version:ID",
            ),
            ("x.bin\t1\t-\t-\tftp://h/x.bin", 2, "http or https"),
            (&format!("# note\n{ok}\n{ok}"), 4, "listed twice"),
        ] {
            let text = format!("{HEADER}\n{body}\n");
            let error = Manifest::parse(&text).unwrap_err();
            assert_eq!(error.line, line, "{body:?}: {error}");
            assert!(error.reason.contains(says), "{body:?}: {error}");
        }
        let error = Manifest::parse(ok).unwrap_err();
        assert!(error.reason.contains("not a haul manifest"), "{error}");
    }
}
