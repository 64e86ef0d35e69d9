//! Which objects under a prefix a job takes: include and exclude globs (rclone's meaning) on
//! each key relative to the prefix, and the wildcard of an `s3://bucket/prefix*` URL
//! (s5cmd's meaning).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::s3::ListedObject;

/// A pattern that cannot be a glob.
#[derive(Debug, thiserror::Error)]
#[error("bad glob {pattern:?}: {reason}")]
pub struct GlobError {
    /// The pattern.
    pub pattern: String,
    /// Why.
    pub reason: String,
}

/// Include and exclude globs on keys relative to a job's prefix, as rclone's filters mean
/// them: `*` matches within one path segment, `**` across segments, `?` one character,
/// `[a-z]` a class, `{a,b}` either. A pattern without a `/` matches a key's last segment
/// (its file name, at any depth); one with a `/` matches the whole relative key. A key is
/// taken when no include is given or one matches, and no exclude matches.
///
/// ```
/// let select = haul::KeySelection::new()
///     .include("*.tar")?
///     .exclude("val/**")?;
/// assert!(select.matches("train/shard-0001.tar"));
/// assert!(!select.matches("val/shard-0001.tar"));
/// assert!(!select.matches("train/README.md"));
/// # Ok::<(), haul::GlobError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct KeySelection {
    rules: Vec<(bool, String)>,
    /// Objects of fewer bytes are left out.
    min_size: Option<u64>,
    /// Objects of more bytes are left out.
    max_size: Option<u64>,
    include: Option<(GlobSet, GlobSet)>,
    exclude: Option<(GlobSet, GlobSet)>,
    /// A URL's wildcard, as given and compiled.
    wildcard: Option<(String, globset::GlobMatcher)>,
    /// Objects last modified less than this long ago are left out.
    min_age: Option<Duration>,
    /// Objects last modified more than this long ago are left out.
    max_age: Option<Duration>,
    /// What ages are measured from: when the first age bound was set.
    now: Option<SystemTime>,
    /// Only these keys (relative to the prefix), and the set's fingerprint.
    only: Option<(Arc<HashSet<String>>, u64)>,
}

impl KeySelection {
    /// Every key.
    pub fn new() -> KeySelection {
        KeySelection::default()
    }

    /// Takes only keys that match `glob` (or another include).
    ///
    /// # Errors
    ///
    /// [`GlobError`] for a malformed pattern.
    pub fn include(self, glob: &str) -> Result<KeySelection, GlobError> {
        self.with(true, glob)
    }

    /// Leaves out keys that match `glob`.
    ///
    /// # Errors
    ///
    /// [`GlobError`] for a malformed pattern.
    pub fn exclude(self, glob: &str) -> Result<KeySelection, GlobError> {
        self.with(false, glob)
    }

    fn with(mut self, include: bool, glob: &str) -> Result<KeySelection, GlobError> {
        self.rules.push((include, glob.to_owned()));
        let patterns: Vec<&str> = self
            .rules
            .iter()
            .filter(|(inc, _)| *inc == include)
            .map(|(_, p)| p.as_str())
            .collect();
        let sets = compile(&patterns)?;
        if include {
            self.include = Some(sets);
        } else {
            self.exclude = Some(sets);
        }
        Ok(self)
    }

    /// Takes only keys that match `pattern`, relative to the prefix, as s5cmd means the
    /// wildcard of an `s3://bucket/prefix*` URL: `*` matches any run of characters, `/`
    /// included, `?` any one. (The literal part before the first wildcard is the prefix.)
    ///
    /// ```
    /// let select = haul::KeySelection::new().wildcard("*.tar")?;
    /// assert!(select.matches("train/shard-0001.tar"));
    /// assert!(!select.matches("train/README.md"));
    /// # Ok::<(), haul::GlobError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`GlobError`] for a malformed pattern.
    pub fn wildcard(mut self, pattern: &str) -> Result<KeySelection, GlobError> {
        let matcher = GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| GlobError {
                pattern: pattern.to_owned(),
                reason: e.kind().to_string(),
            })?
            .compile_matcher();
        self.wildcard = Some((pattern.to_owned(), matcher));
        Ok(self)
    }

    /// Leaves out objects smaller than `bytes` (rclone's `--min-size`).
    pub fn min_size(mut self, bytes: u64) -> KeySelection {
        self.min_size = Some(bytes);
        self
    }

    /// Leaves out objects larger than `bytes` (rclone's `--max-size`).
    pub fn max_size(mut self, bytes: u64) -> KeySelection {
        self.max_size = Some(bytes);
        self
    }

    /// Leaves out objects last modified less than `age` ago (rclone's `--min-age`): ages
    /// are measured from when the first bound is set, so one job judges every object alike.
    /// An object whose time the store did not give is left out by an age bound.
    pub fn min_age(mut self, age: Duration) -> KeySelection {
        self.min_age = Some(age);
        self.now.get_or_insert_with(SystemTime::now);
        self
    }

    /// Leaves out objects last modified more than `age` ago (rclone's `--max-age`).
    pub fn max_age(mut self, age: Duration) -> KeySelection {
        self.max_age = Some(age);
        self.now.get_or_insert_with(SystemTime::now);
        self
    }

    /// Takes only these keys, relative to the prefix (rclone's `--files-from`; the listing
    /// still reads the whole prefix).
    ///
    /// ```
    /// let select = haul::KeySelection::new().only(["a/x.tar".to_owned()]);
    /// assert!(select.matches("a/x.tar") && !select.matches("a/y.tar"));
    /// ```
    pub fn only(mut self, keys: impl IntoIterator<Item = String>) -> KeySelection {
        let keys: HashSet<String> = keys.into_iter().collect();
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort();
        let mut text = String::new();
        for key in sorted {
            text.push_str(key);
            text.push('\n');
        }
        let fingerprint = crate::downloader::hrw::hash(text.as_bytes());
        self.only = Some((Arc::new(keys), fingerprint));
        self
    }

    /// Whether `object`, listed at key `relative` (to the prefix), is taken: its key
    /// matches, and its size and age are within the bounds.
    pub fn matches_listed(&self, relative: &str, object: &ListedObject) -> bool {
        let size = object.size;
        let age = || {
            let (now, modified) = (self.now?, object.last_modified?);
            Some(now.duration_since(modified).unwrap_or(Duration::ZERO))
        };
        let aged = self.min_age.is_none() && self.max_age.is_none()
            || age().is_some_and(|age| {
                self.min_age.is_none_or(|min| age >= min)
                    && self.max_age.is_none_or(|max| age <= max)
            });
        self.min_size.is_none_or(|min| size >= min)
            && self.max_size.is_none_or(|max| size <= max)
            && aged
            && self.matches(relative)
    }

    /// Whether the key `relative` (to the prefix) is taken (sizes aside).
    pub fn matches(&self, relative: &str) -> bool {
        let name = relative.rsplit('/').next().unwrap_or(relative);
        let hit = |(by_name, by_path): &(GlobSet, GlobSet)| {
            by_name.is_match(name) || by_path.is_match(relative)
        };
        self.only
            .as_ref()
            .is_none_or(|(keys, _)| keys.contains(relative))
            && self
                .wildcard
                .as_ref()
                .is_none_or(|(_, w)| w.is_match(relative))
            && self.include.as_ref().is_none_or(hit)
            && !self.exclude.as_ref().is_some_and(hit)
    }

    /// Whether it judges keys by their names only (no size or age bounds): what a job with
    /// no listing can apply.
    pub fn names_only(&self) -> bool {
        self.min_size.is_none()
            && self.max_size.is_none()
            && self.min_age.is_none()
            && self.max_age.is_none()
    }

    /// Whether it takes every object.
    pub fn is_all(&self) -> bool {
        self.rules.is_empty()
            && self.min_size.is_none()
            && self.max_size.is_none()
            && self.wildcard.is_none()
            && self.min_age.is_none()
            && self.max_age.is_none()
            && self.only.is_none()
    }

    /// The rules, as `--include A --exclude B --min-size N` would give them (a wildcard as
    /// `--wildcard W`).
    pub fn shown(&self) -> String {
        self.wildcard
            .iter()
            .map(|(w, _)| format!("--wildcard {w}"))
            .chain(self.rules.iter().map(|(include, p)| {
                format!("--{} {p}", if *include { "include" } else { "exclude" })
            }))
            .chain(self.min_size.map(|n| format!("--min-size {n}")))
            .chain(self.max_size.map(|n| format!("--max-size {n}")))
            .chain(self.min_age.map(|a| format!("--min-age {}s", a.as_secs())))
            .chain(self.max_age.map(|a| format!("--max-age {}s", a.as_secs())))
            .chain(
                self.only
                    .as_ref()
                    .map(|(keys, f)| format!("--files-from ({} keys, {f:016x})", keys.len())),
            )
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Two sets: patterns without a `/` (matched against a key's last segment) and with one.
fn compile(patterns: &[&str]) -> Result<(GlobSet, GlobSet), GlobError> {
    let mut by_name = GlobSetBuilder::new();
    let mut by_path = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern.trim_start_matches('/'))
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| GlobError {
                pattern: (*pattern).to_owned(),
                reason: e.kind().to_string(),
            })?;
        if pattern.contains('/') {
            by_path.add(glob);
        } else {
            by_name.add(glob);
        }
    }
    let build = |b: GlobSetBuilder| {
        b.build().map_err(|e| GlobError {
            pattern: patterns.join(" "),
            reason: e.to_string(),
        })
    };
    Ok((build(by_name)?, build(by_path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_mean_what_rclone_means() {
        let s = KeySelection::new().include("*.tar").unwrap();
        assert!(s.matches("a.tar") && s.matches("d/e/a.tar") && !s.matches("a.tar.gz"));
        let s = KeySelection::new().include("train/*.tar").unwrap();
        assert!(s.matches("train/a.tar") && !s.matches("train/x/a.tar") && !s.matches("a.tar"));
        let s = KeySelection::new().include("train/**").unwrap();
        assert!(s.matches("train/x/a.tar") && !s.matches("val/a.tar"));
        let s = KeySelection::new()
            .include("*.{tar,idx}")
            .unwrap()
            .exclude("shard-000?.*")
            .unwrap();
        assert!(
            s.matches("shard-0010.idx") && !s.matches("shard-0001.tar") && !s.matches("x.json")
        );
        assert!(KeySelection::new().matches("anything") && KeySelection::new().is_all());
        assert!(KeySelection::new().include("a[").is_err());
        assert_eq!(s.shown(), "--include *.{tar,idx} --exclude shard-000?.*");
        let s = KeySelection::new().min_size(10).max_size(20);
        let sized = |size| {
            let mut object = ListedObject::new("a", size);
            object.last_modified = Some(SystemTime::now());
            object
        };
        assert!(s.matches_listed("a", &sized(10)) && s.matches_listed("a", &sized(20)));
        assert!(!s.matches_listed("a", &sized(9)) && !s.matches_listed("a", &sized(21)));
        assert!(!s.is_all());
        assert_eq!(s.shown(), "--min-size 10 --max-size 20");
    }

    #[test]
    fn ages_are_measured_from_one_instant_and_a_time_unknown_is_left_out() {
        let secs = Duration::from_secs;
        let mut object = ListedObject::new("k", 1);
        let min = KeySelection::new().min_age(secs(5));
        object.last_modified = min.now.map(|now| now - secs(10));
        assert!(min.matches_listed("k", &object));
        assert!(
            !KeySelection::new()
                .min_age(secs(3600))
                .matches_listed("k", &object)
        );
        assert!(
            KeySelection::new()
                .max_age(secs(3600))
                .matches_listed("k", &object)
        );
        assert!(
            !KeySelection::new()
                .max_age(secs(5))
                .matches_listed("k", &object)
        );
        object.last_modified = None;
        assert!(!min.matches_listed("k", &object));
        assert!(KeySelection::new().matches_listed("k", &object));
    }

    #[test]
    fn only_the_listed_keys_and_the_list_is_part_of_what_is_shown() {
        let a = KeySelection::new().only(["x/1".to_owned(), "x/2".to_owned()]);
        let b = KeySelection::new().only(["x/2".to_owned(), "x/1".to_owned()]);
        let c = KeySelection::new().only(["x/1".to_owned()]);
        assert!(a.matches("x/1") && a.matches("x/2") && !a.matches("x/3"));
        assert_eq!(
            a.shown(),
            b.shown(),
            "the order of the list does not matter"
        );
        assert_ne!(a.shown(), c.shown());
        assert!(!a.is_all());
    }
}
