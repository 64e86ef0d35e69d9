//! Where objects land: mountpaths (local directories, with their names and work files), any
//! `Write`, and S3 targets.

pub(crate) mod file;
pub(crate) mod mountpath;
pub(crate) mod name;
pub(crate) mod s3;
pub(crate) mod stream;
pub(crate) mod work;
