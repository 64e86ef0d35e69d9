//! `hf://` paths: which repository, which revision, which part of its tree.

use std::fmt;

use super::HfError;

/// The kind of a Hub repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RepoKind {
    /// A model (`hf://org/name`).
    Model,
    /// A dataset (`hf://datasets/org/name`).
    Dataset,
    /// A space (`hf://spaces/org/name`).
    Space,
}

impl RepoKind {
    /// Its segment in the API's paths: `models`, `datasets`, `spaces`.
    pub(crate) fn api(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
            RepoKind::Space => "spaces",
        }
    }

    /// What comes before the repo id in a resolve URL: nothing for a model.
    pub(crate) fn url_prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "",
            RepoKind::Dataset => "datasets/",
            RepoKind::Space => "spaces/",
        }
    }
}

/// A place in a Hub repository: `hf://[datasets/|spaces/]ORG/NAME[@REVISION][/PATH]`, as
/// huggingface_hub's `HfFileSystem` writes them. The revision is a branch, tag or commit
/// (default `main`; percent-encode a `/` in it, `@refs%2Fpr%2F1`); the path a directory or
/// file of the tree (default: all of it).
///
/// ```
/// use haul::{HfPath, RepoKind};
///
/// let path = HfPath::parse("hf://datasets/org/corpus@v1.0/data/train")?;
/// assert_eq!(path.kind(), RepoKind::Dataset);
/// assert_eq!((path.repo(), path.revision(), path.path()), ("org/corpus", "v1.0", "data/train"));
/// assert!(HfPath::parse("hf://org").is_err()); // no name
/// # Ok::<(), haul::HfError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfPath {
    kind: RepoKind,
    repo: String,
    revision: String,
    path: String,
}

impl HfPath {
    /// Parses `hf://…`.
    ///
    /// # Errors
    ///
    /// [`HfError::Path`]: no `hf://`, no `ORG/NAME`, a name with characters the Hub does not
    /// allow, an empty revision, a path with `..` or empty segments.
    pub fn parse(text: &str) -> Result<HfPath, HfError> {
        let bad = |reason: &'static str| HfError::Path {
            text: text.to_owned(),
            reason,
        };
        let rest = text
            .strip_prefix("hf://")
            .ok_or_else(|| bad("it must start with hf://"))?;
        let (kind, rest) = match rest.split_once('/') {
            Some(("datasets", rest)) => (RepoKind::Dataset, rest),
            Some(("spaces", rest)) => (RepoKind::Space, rest),
            Some(("models", rest)) => (RepoKind::Model, rest),
            _ => (RepoKind::Model, rest),
        };
        let mut segments = rest.splitn(3, '/');
        let org = segments.next().unwrap_or_default();
        let name_rev = segments
            .next()
            .ok_or_else(|| bad("it names no repository: hf://ORG/NAME"))?;
        let path = segments.next().unwrap_or_default().trim_end_matches('/');
        let (name, revision) = match name_rev.split_once('@') {
            Some((name, rev)) => (
                name,
                decode(rev).ok_or_else(|| bad("its revision is not UTF-8"))?,
            ),
            None => (name_rev, "main".to_owned()),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && !s.starts_with(['.', '-'])
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !valid(org) || !valid(name) {
            return Err(bad(
                "ORG and NAME are letters, digits, '-', '_' and '.' (not first)",
            ));
        }
        if revision.is_empty() {
            return Err(bad("its revision is empty"));
        }
        if !path.is_empty()
            && path
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(bad("its path has an empty, '.' or '..' segment"));
        }
        Ok(HfPath {
            kind,
            repo: format!("{org}/{name}"),
            revision,
            path: path.to_owned(),
        })
    }

    /// Whether `text` is meant as one (starts with `hf://`).
    pub fn is_hf(text: &str) -> bool {
        text.starts_with("hf://")
    }

    /// The repository's kind.
    pub fn kind(&self) -> RepoKind {
        self.kind
    }

    /// `org/name`.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// The branch, tag or commit asked for.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The directory or file of the tree (`""`: all of it).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for HfPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hf://{}{}", self.kind.url_prefix(), self.repo)?;
        if self.revision != "main" {
            write!(f, "@{}", encode_segment(&self.revision))?;
        }
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for HfPath {
    type Err = HfError;

    fn from_str(text: &str) -> Result<HfPath, HfError> {
        HfPath::parse(text)
    }
}

fn decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Everything but the unreserved characters, as huggingface_hub's `quote(…, safe="")`.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path's segments encoded, its `/` kept.
const PATH: &percent_encoding::AsciiSet = &SEGMENT.remove(b'/');

/// One URL segment (a revision: its `/` encoded too).
pub(crate) fn encode_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// A path within a URL, its `/` kept.
pub(crate) fn encode_path(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_as_hffilesystem_writes_them_and_print_back() {
        for (text, kind, repo, rev, path) in [
            ("hf://org/model", RepoKind::Model, "org/model", "main", ""),
            ("hf://models/org/m/", RepoKind::Model, "org/m", "main", ""),
            (
                "hf://datasets/o/d@v2/a/b.parquet",
                RepoKind::Dataset,
                "o/d",
                "v2",
                "a/b.parquet",
            ),
            (
                "hf://spaces/o/s@refs%2Fpr%2F3",
                RepoKind::Space,
                "o/s",
                "refs/pr/3",
                "",
            ),
        ] {
            let parsed = HfPath::parse(text).unwrap();
            assert_eq!(
                (
                    parsed.kind(),
                    parsed.repo(),
                    parsed.revision(),
                    parsed.path()
                ),
                (kind, repo, rev, path),
                "{text}"
            );
            assert_eq!(HfPath::parse(&parsed.to_string()).unwrap(), parsed);
        }
    }

    #[test]
    fn malformed_paths_say_what_is_wrong() {
        for (text, says) in [
            ("https://huggingface.co/org/m", "hf://"),
            ("hf://org", "no repository"),
            ("hf://org/", "ORG and NAME"),
            ("hf://or g/m", "ORG and NAME"),
            ("hf://org/.m", "ORG and NAME"),
            ("hf://org/m@", "revision is empty"),
            ("hf://org/m/a/../b", "'..'"),
            ("hf://org/m/a//b", "empty"),
        ] {
            let error = HfPath::parse(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
