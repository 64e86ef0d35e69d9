//! Where a job's objects come from: range templates and URLs.

pub mod template;
pub mod url;
