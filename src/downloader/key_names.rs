//! The name a listed key lands under: the key, or the key relative to its prefix's
//! directory ([`JobSpec::relative_names`](crate::JobSpec::relative_names)), under the job's
//! subdirectory. One place for the dispatcher, which lands objects there, and a sync, which
//! deletes them there.

use crate::target::name::{NameError, ObjectName};

/// How a job's listed keys become names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyNames {
    /// Bytes dropped from the front of every key (the prefix up to its last `/`).
    strip: usize,
    subdir: Option<String>,
}

impl KeyNames {
    /// For keys listed under `prefix`: relative to its directory when `relative`, and under
    /// `subdir`.
    pub(crate) fn new(prefix: &str, relative: bool, subdir: Option<String>) -> KeyNames {
        let strip = if relative {
            prefix.rfind('/').map_or(0, |i| i + 1)
        } else {
            0
        };
        KeyNames { strip, subdir }
    }

    /// The name `key` lands under.
    pub(crate) fn name(&self, key: &str) -> Result<ObjectName, NameError> {
        let name = ObjectName::new(key.get(self.strip..).unwrap_or(key))?;
        match &self.subdir {
            Some(dir) => name.under(dir),
            None => Ok(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names_drop_the_prefix_up_to_its_last_slash() {
        let name = |prefix, relative, subdir: Option<&str>, key| {
            KeyNames::new(prefix, relative, subdir.map(str::to_owned))
                .name(key)
                .unwrap()
                .to_string()
        };
        assert_eq!(name("ds/train/", true, None, "ds/train/a/x.tar"), "a/x.tar");
        assert_eq!(name("ds/k-", true, None, "ds/k-001.bin"), "k-001.bin");
        assert_eq!(name("k-", true, None, "k-001.bin"), "k-001.bin");
        assert_eq!(name("ds/train/", false, None, "ds/train/x"), "ds/train/x");
        assert_eq!(name("ds/", true, Some("out"), "ds/x"), "out/x");
    }
}
