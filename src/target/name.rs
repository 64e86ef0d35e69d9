//! Object names: relative, `/`-separated paths that can never escape a mountpath.

use std::fmt;

/// Why a string cannot be an object name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("object name is empty")]
    Empty,
    /// The name starts with `/`.
    #[error("object name {0:?} is absolute")]
    Absolute(String),
    /// The name ends with `/`, so it names a directory, not a file.
    #[error("object name {0:?} ends with '/'")]
    TrailingSlash(String),
    /// A segment is empty (`a//b`), `.` or `..`.
    #[error("object name {name:?} has a {segment:?} segment")]
    BadSegment {
        /// The whole name.
        name: String,
        /// The offending segment (`""`, `"."` or `".."`).
        segment: String,
    },
    /// The name holds a character that cannot be in a portable file name (NUL or `\`).
    #[error("object name {name:?} contains {character:?}")]
    BadCharacter {
        /// The whole name.
        name: String,
        /// The offending character.
        character: char,
    },
    /// The name falls inside haul's own work directory.
    #[error("object name {0:?} is inside haul's work directory")]
    Reserved(String),
}

/// The name of the hidden directory inside each mountpath that holds work files.
pub(crate) const WORK_DIR: &str = ".haul-work";

/// A validated object name: a relative path of `/`-separated segments, none of them empty,
/// `.` or `..`, with no NUL or backslash, and not inside haul's work directory.
///
/// Only [`Mountpath`](crate::Mountpath) turns a name into a path.
///
/// ```
/// use haul::ObjectName;
///
/// assert!(ObjectName::new("shards/shard-0001.tar").is_ok());
/// assert!(ObjectName::new("../etc/passwd").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName(String);

impl ObjectName {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// A [`NameError`] naming the rule the name breaks.
    pub fn new(name: impl Into<String>) -> Result<ObjectName, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if let Some(character) = name.chars().find(|&c| c == '\0' || c == '\\') {
            return Err(NameError::BadCharacter { name, character });
        }
        if name.starts_with('/') {
            return Err(NameError::Absolute(name));
        }
        if name.ends_with('/') {
            return Err(NameError::TrailingSlash(name));
        }
        if let Some(segment) = name
            .split('/')
            .find(|s| s.is_empty() || *s == "." || *s == "..")
        {
            let segment = segment.to_owned();
            return Err(NameError::BadSegment { name, segment });
        }
        // Case-insensitively: `.HAUL-WORK` is the work directory on file systems that fold
        // case (macOS, Windows shares), and no name needs it.
        if name
            .split('/')
            .next()
            .is_some_and(|first| first.eq_ignore_ascii_case(WORK_DIR))
        {
            return Err(NameError::Reserved(name));
        }
        Ok(ObjectName(name))
    }

    /// `self` under the directory `dir` (itself a valid relative name), as `dir/self`.
    ///
    /// # Errors
    ///
    /// A [`NameError`] when `dir` is not a valid name.
    pub fn under(&self, dir: &str) -> Result<ObjectName, NameError> {
        if dir.is_empty() {
            return Ok(self.clone());
        }
        ObjectName::new(format!("{}/{}", dir.trim_end_matches('/'), self.0))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments of the name, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for ObjectName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
