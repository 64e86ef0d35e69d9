//! `--include` / `--exclude`: rclone's globs, on S3 keys relative to the prefix (`s3 ls`,
//! `s3 get`), on the names objects land under (`get`) and on files' paths under the
//! directories given (`put`, which rewords their help).

use crate::run::UsageError;

/// Which objects, by name.
#[derive(Debug, clap::Args)]
pub(crate) struct PatternArgs {
    /// Only objects whose names match this glob (the name an object lands under; for `s3`
    /// commands, its key relative to the prefix): `*` within a path segment, `**` across
    /// them, `?`, `[a-z]`, `{a,b}`; without a `/` it matches the last segment. Repeat for
    /// more (any may match)
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave out objects whose names match this glob (as --include reads it). Repeat for more
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
}

impl PatternArgs {
    /// The globs as a selection.
    pub(crate) fn selection(&self) -> Result<haul::KeySelection, UsageError> {
        let mut select = haul::KeySelection::new();
        for glob in &self.include {
            select = select
                .include(glob)
                .map_err(|e| UsageError(e.to_string()))?;
        }
        for glob in &self.exclude {
            select = select
                .exclude(glob)
                .map_err(|e| UsageError(e.to_string()))?;
        }
        Ok(select)
    }
}
