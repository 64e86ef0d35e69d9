//! Where a job's objects come from: range templates and URLs.

pub(crate) mod select;
pub(crate) mod template;
pub(crate) mod url;
