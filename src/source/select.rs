//! Which objects under a prefix a job takes: include and exclude globs (rclone's meaning) on
//! each key relative to the prefix, and the wildcard of an `s3://bucket/prefix*` URL
//! (s5cmd's meaning).

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

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

    /// Whether the object at key `relative` (to the prefix) of `size` bytes is taken: its
    /// key matches and its size is within the bounds.
    pub fn matches_object(&self, relative: &str, size: u64) -> bool {
        self.min_size.is_none_or(|min| size >= min)
            && self.max_size.is_none_or(|max| size <= max)
            && self.matches(relative)
    }

    /// Whether the key `relative` (to the prefix) is taken (sizes aside).
    pub fn matches(&self, relative: &str) -> bool {
        let name = relative.rsplit('/').next().unwrap_or(relative);
        let hit = |(by_name, by_path): &(GlobSet, GlobSet)| {
            by_name.is_match(name) || by_path.is_match(relative)
        };
        self.wildcard
            .as_ref()
            .is_none_or(|(_, w)| w.is_match(relative))
            && self.include.as_ref().is_none_or(hit)
            && !self.exclude.as_ref().is_some_and(hit)
    }

    /// Whether it takes every object.
    pub fn is_all(&self) -> bool {
        self.rules.is_empty()
            && self.min_size.is_none()
            && self.max_size.is_none()
            && self.wildcard.is_none()
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
        assert!(s.matches_object("a", 10) && s.matches_object("a", 20));
        assert!(!s.matches_object("a", 9) && !s.matches_object("a", 21) && !s.is_all());
        assert_eq!(s.shown(), "--min-size 10 --max-size 20");
    }
}
