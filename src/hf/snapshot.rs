//! A repository's files at one commit, and what they become: a download job, or the keys
//! of an ordered fetch.

use super::{HfPath, HubClient};
use crate::engine::verify::Sha256Digest;
use crate::fetch::{FetchKey, Web};
use crate::source::select::KeySelection;
use crate::{JobSpec, ListedObject};

/// One file of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HfFile {
    /// Its path in the repository (`data/train-00000.parquet`): the name it lands under.
    pub path: String,
    /// Its size, as the tree lists it.
    pub size: u64,
    /// The SHA-256 the tree lists for an LFS file (git files have none).
    pub sha256: Option<Sha256Digest>,
    /// Its resolve URL at the snapshot's commit.
    pub url: String,
}

/// A repository's files under a path, at the commit its revision named when listed.
#[derive(Debug, Clone)]
pub struct Snapshot {
    path: HfPath,
    commit: String,
    files: Vec<HfFile>,
    client: HubClient,
}

impl Snapshot {
    pub(super) fn new(path: HfPath, commit: String, files: Vec<HfFile>, client: HubClient) -> Self {
        Snapshot {
            path,
            commit,
            files,
            client,
        }
    }

    /// What was listed.
    pub fn path(&self) -> &HfPath {
        &self.path
    }

    /// The commit every file is fetched at.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// The files, in path order.
    pub fn files(&self) -> &[HfFile] {
        &self.files
    }

    /// Their bytes in all.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Only the files `selection` takes, its patterns matched against each file's path in
    /// the repository (as huggingface_hub's `allow_patterns` and `ignore_patterns`), its
    /// sizes against the listed sizes.
    pub fn select(mut self, selection: &KeySelection) -> Snapshot {
        self.files.retain(|f| {
            let listed = ListedObject {
                key: f.path.clone(),
                size: f.size,
                etag: None,
                last_modified: None,
            };
            selection.matches_listed(&f.path, &listed)
        });
        self
    }

    /// The web as a fetch of these files needs it: the Hub's HTTP client and token (sent
    /// to the Hub only; the storage host a file redirects to gets none).
    pub fn web(&self) -> Web {
        let web = Web::new(self.client.http_client().clone());
        match self.client.auth_header() {
            Some((name, value)) => web.header(name, value),
            None => web,
        }
    }

    /// The headers a request of these files needs: the Hub's token, if there is one (the
    /// engine keeps it to the Hub's host across redirects).
    pub fn headers(&self) -> Vec<(String, String)> {
        self.client.auth_header().into_iter().collect()
    }

    /// A fetch key per file: its resolve URL, size and (LFS files) SHA-256, so each object
    /// is checked against both.
    pub fn fetch_keys(&self) -> Vec<FetchKey> {
        self.files
            .iter()
            .map(|f| {
                let key = FetchKey::new(f.url.as_str()).size(f.size);
                match f.sha256 {
                    Some(digest) => key.sha256(digest),
                    None => key,
                }
            })
            .collect()
    }

    /// A download job of these files: each lands under its path in the repository, LFS
    /// files checked against their SHA-256 and every file against its listed size; the
    /// token goes to the Hub only.
    pub fn job(&self) -> JobSpec {
        let mut spec =
            JobSpec::multi_named(self.files.iter().map(|f| (f.path.clone(), f.url.clone())))
                .description(format!("{} at {}", self.path, self.commit));
        for file in &self.files {
            if let Some(digest) = file.sha256 {
                spec = spec.sha256(file.path.clone(), digest);
            }
            spec = spec.size(file.path.clone(), file.size);
        }
        if let Some((name, value)) = self.client.auth_header() {
            spec = spec.header(name, value);
        }
        spec
    }
}
