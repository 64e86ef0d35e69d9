//! Hugging Face Hub repositories as sources: `hf://[datasets/|spaces/]ORG/NAME[@REV][/PATH]`.
//!
//! A [`HubClient`] resolves the revision to its commit once (so every file of a job is of
//! one version), lists the file tree under the path through the Hub's API (recursive, page
//! by page as its `Link` header says, every entry checked), and gives a [`Snapshot`]: the
//! files with their sizes and, for LFS files, the SHA-256 the tree lists. A snapshot
//! becomes a download job ([`Snapshot::job`]) or the keys of an ordered fetch
//! ([`Snapshot::fetch_keys`] with [`Snapshot::web`]); either way every file is fetched
//! through its resolve URL at the commit (the redirect to the storage host followed, ranges
//! taken there, the token sent to the Hub only) and checked against its size and digest.

mod client;
mod error;
mod path;
mod snapshot;
mod token;

pub use client::{DEFAULT_ENDPOINT, HubClient};
pub use error::HfError;
pub use path::{HfPath, RepoKind};
pub use snapshot::{HfFile, Snapshot};
