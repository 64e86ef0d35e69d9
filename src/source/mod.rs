//! Where a job's objects come from: range templates, URLs and local files.

pub(crate) mod select;
pub(crate) mod template;
pub(crate) mod url;
pub(crate) mod walk;
