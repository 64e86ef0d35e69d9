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
//!
//! ```
//! # let storage = haul_origin::Origin::start()?;
//! # let repo = haul_origin::HubRepo::dataset("org/shards").lfs_file("train/0.tar", 300_000);
//! # let hub = haul_origin::Origin::builder().hub(haul_origin::Hub::new(storage.url("")).repo(repo)).start()?;
//! use haul::{Fetcher, HfPath, HubClient};
//!
//! let client = HubClient::new(hub.url("")); // HubClient::from_env() reads HF_ENDPOINT, HF_TOKEN
//! let snapshot = client.snapshot(&HfPath::parse("hf://datasets/org/shards/train")?)?;
//! assert_eq!(snapshot.files().len(), 1);
//! let fetcher = Fetcher::builder().build()?;
//! for object in fetcher.fetch(snapshot.web(), snapshot.fetch_keys()) {
//!     assert_eq!(object?.size(), 300_000); // checked against the listed SHA-256
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod error;
mod path;
mod snapshot;
mod token;

pub use client::{DEFAULT_ENDPOINT, HubClient};
pub use error::HfError;
pub use path::{HfPath, RepoKind};
pub use snapshot::{HfFile, Snapshot};
