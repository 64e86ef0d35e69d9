//! Which objects under a prefix a job takes: include and exclude globs (rclone's meaning) on
//! each key relative to the prefix.

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
    include: Option<(GlobSet, GlobSet)>,
    exclude: Option<(GlobSet, GlobSet)>,
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

    /// Whether the key `relative` (to the prefix) is taken.
    pub fn matches(&self, relative: &str) -> bool {
        let name = relative.rsplit('/').next().unwrap_or(relative);
        let hit = |(by_name, by_path): &(GlobSet, GlobSet)| {
            by_name.is_match(name) || by_path.is_match(relative)
        };
        self.include.as_ref().is_none_or(hit) && !self.exclude.as_ref().is_some_and(hit)
    }

    /// Whether it takes every key.
    pub fn is_all(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, as `--include A --exclude B` would give them.
    pub fn shown(&self) -> String {
        self.rules
            .iter()
            .map(|(include, p)| format!("--{} {p}", if *include { "include" } else { "exclude" }))
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
    }
}
