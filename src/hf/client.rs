//! The Hub's API, as far as a download needs it: a revision's commit, and the file tree at
//! that commit. Every answer is checked before it is used.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;

use serde::Deserialize;

use super::path::{encode_path, encode_segment};
use super::snapshot::{HfFile, Snapshot};
use super::{HfError, HfPath};
use crate::engine::classify::{self, Failure, Verdict};
use crate::engine::retry::RetryPolicy;
use crate::http::HttpClient;
use crate::source::url::redact_url;

/// The Hub huggingface_hub talks to when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The most bytes one API answer may have (a page of a tree is a few hundred KiB).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// A client of one Hub: its endpoint, a token (sent to the Hub's own host only), the HTTP
/// client and the retry policy of its API calls (429s wait as `Retry-After` says).
///
/// ```
/// # let storage = haul_origin::Origin::start()?;
/// # let repo = haul_origin::HubRepo::dataset("org/shards").lfs_file("train/0.tar", 300_000);
/// # let hub = haul_origin::Origin::builder().hub(haul_origin::Hub::new(storage.url("")).repo(repo)).start()?;
/// use haul::{Fetcher, HfPath, HubClient};
///
/// let client = HubClient::new(hub.url("")); // HubClient::from_env() reads HF_ENDPOINT, HF_TOKEN
/// let snapshot = client.snapshot(&HfPath::parse("hf://datasets/org/shards/train")?)?;
/// assert_eq!(snapshot.files().len(), 1);
/// let fetcher = Fetcher::builder().build()?;
/// for object in fetcher.fetch(snapshot.web(), snapshot.fetch_keys()) {
///     assert_eq!(object?.size(), 300_000); // checked against the listed SHA-256
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    http: HttpClient,
    retry: RetryPolicy,
}

impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// One entry of a tree page, as the Hub sends it.
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    size: Option<u64>,
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    oid: String,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct Revision {
    sha: String,
}

impl HubClient {
    /// A client of the Hub at `endpoint` (`https://huggingface.co`), with no token.
    pub fn new(endpoint: impl Into<String>) -> HubClient {
        HubClient {
            endpoint: endpoint.into().trim_end_matches('/').to_owned(),
            token: None,
            http: HttpClient::default(),
            retry: RetryPolicy::default(),
        }
    }

    /// A client as huggingface_hub would make one: the endpoint `HF_ENDPOINT` (default
    /// [`DEFAULT_ENDPOINT`]), the token `HF_TOKEN`, else the token file (`HF_TOKEN_PATH`,
    /// default `$HF_HOME/token`, `HF_HOME` default `~/.cache/huggingface`).
    ///
    /// # Errors
    ///
    /// [`HfError::TokenFile`]: the token file exists but cannot be read.
    pub fn from_env() -> Result<HubClient, HfError> {
        let var = |name: &str| std::env::var(name).ok();
        let endpoint = var("HF_ENDPOINT")
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let mut client = HubClient::new(endpoint);
        client.token = super::token::from_env(var)?;
        Ok(client)
    }

    /// Sets the token (`hf_…`), replacing any found in the environment.
    pub fn token(mut self, token: impl Into<String>) -> HubClient {
        self.token = Some(token.into());
        self
    }

    /// The HTTP client for the API and the files (timeouts, TLS roots, egress policy).
    pub fn http(mut self, client: HttpClient) -> HubClient {
        self.http = client;
        self
    }

    /// How failed API calls are retried. Default [`RetryPolicy::default`].
    pub fn retry(mut self, policy: RetryPolicy) -> HubClient {
        self.retry = policy;
        self
    }

    /// The endpoint, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether a token will be sent.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub(super) fn http_client(&self) -> &HttpClient {
        &self.http
    }

    /// The `Authorization` header that carries the token, if there is one: for requests to
    /// the Hub's own host only.
    pub fn auth_header(&self) -> Option<(String, String)> {
        self.token
            .as_ref()
            .map(|t| ("Authorization".to_owned(), format!("Bearer {t}")))
    }

    /// The commit `path`'s revision names, asked once: a job fetches every file at it.
    ///
    /// # Errors
    ///
    /// An [`HfError`]: the repo or revision does not exist, is gated, the Hub cannot be
    /// reached or answers nonsense.
    pub fn commit(&self, path: &HfPath) -> Result<String, HfError> {
        let url = format!(
            "{}/api/{}/{}/revision/{}",
            self.endpoint,
            path.kind().api(),
            path.repo(),
            encode_segment(path.revision())
        );
        let (text, _) = self.get(&url, path, path.revision())?;
        let revision: Revision = serde_json::from_str(&text).map_err(|e| unusable(&url, e))?;
        let sha = revision.sha;
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unusable(&url, format!("{sha:?} is not a commit id")));
        }
        Ok(sha.to_ascii_lowercase())
    }

    /// Every file under `path` at its revision's commit: the revision resolved once, the
    /// tree listed recursively page by page.
    ///
    /// # Errors
    ///
    /// As [`commit`](HubClient::commit), and [`HfError::Unusable`] for a listing that
    /// cannot be trusted (an entry outside the path or not a safe relative path, a file
    /// twice, a next page on another host or seen before, no size).
    pub fn snapshot(&self, path: &HfPath) -> Result<Snapshot, HfError> {
        let commit = self.commit(path)?;
        let files = match self.tree(path, &commit, path.path(), true) {
            // A path that names a file: its directory's listing has it.
            Err(HfError::NotFound { .. }) if !path.path().is_empty() => {
                let parent = path.path().rsplit_once('/').map_or("", |(dir, _)| dir);
                let mut files = self.tree(path, &commit, parent, false)?;
                files.retain(|f| f.path == path.path());
                if files.is_empty() {
                    return Err(HfError::NotFound {
                        repo: repo_shown(path),
                        what: format!("{} at {commit}", path.path()),
                    });
                }
                files
            }
            other => other?,
        };
        Ok(Snapshot::new(path.clone(), commit, files, self.clone()))
    }

    /// The files of the tree under `under` at `commit`, every page.
    fn tree(
        &self,
        path: &HfPath,
        commit: &str,
        under: &str,
        recursive: bool,
    ) -> Result<Vec<HfFile>, HfError> {
        let tail = if under.is_empty() {
            String::new()
        } else {
            format!("/{}", encode_path(under))
        };
        let mut url = Some(format!(
            "{}/api/{}/{}/tree/{commit}{tail}?recursive={recursive}",
            self.endpoint,
            path.kind().api(),
            path.repo(),
        ));
        let (mut files, mut seen_pages, mut seen_paths) =
            (Vec::new(), HashSet::new(), HashSet::new());
        while let Some(page) = url.take() {
            if !seen_pages.insert(page.clone()) {
                return Err(unusable(&page, "its next page is one already listed"));
            }
            let (text, next) = self.get(&page, path, under)?;
            let next = next.map(|next| absolute(&page, next));
            let entries: Vec<Entry> =
                serde_json::from_str(&text).map_err(|e| unusable(&page, e))?;
            for entry in entries {
                if let Some(file) = self.file(path, commit, under, entry, &page)? {
                    if !seen_paths.insert(file.path.clone()) {
                        return Err(unusable(&page, format!("{:?} is listed twice", file.path)));
                    }
                    files.push(file);
                }
            }
            if let Some(next) = &next
                && crate::flow::host_of(next) != crate::flow::host_of(&self.endpoint)
            {
                // The token must not follow a link to another host.
                return Err(unusable(
                    &page,
                    format!("its next page is on another host: {}", redact_url(next)),
                ));
            }
            url = next;
        }
        Ok(files)
    }

    /// One checked entry: a file under `under` (directories are skipped).
    fn file(
        &self,
        path: &HfPath,
        commit: &str,
        under: &str,
        entry: Entry,
        page: &str,
    ) -> Result<Option<HfFile>, HfError> {
        let name = &entry.path;
        if crate::target::name::ObjectName::new(name.as_str()).is_err() {
            return Err(unusable(
                page,
                format!("{name:?} is not a safe relative path"),
            ));
        }
        let inside = under.is_empty()
            || name == under
            || name
                .strip_prefix(under)
                .is_some_and(|rest| rest.starts_with('/'));
        if !inside {
            return Err(unusable(page, format!("{name:?} is not under {under:?}")));
        }
        match entry.kind.as_str() {
            "directory" => return Ok(None),
            "file" => {}
            other => return Err(unusable(page, format!("{name:?} has type {other:?}"))),
        }
        let Some(size) = entry.size else {
            return Err(unusable(page, format!("{name:?} has no size")));
        };
        let sha256 = match entry.lfs {
            Some(lfs) => {
                if lfs.size.is_some_and(|s| s != size) {
                    return Err(unusable(
                        page,
                        format!("{name:?}: its LFS size is not its size"),
                    ));
                }
                let digest = lfs.oid.parse().map_err(|_| {
                    unusable(
                        page,
                        format!("{name:?}: its LFS oid {:?} is not a SHA-256", lfs.oid),
                    )
                })?;
                Some(digest)
            }
            None => None,
        };
        let url = format!(
            "{}/{}{}/resolve/{commit}/{}",
            self.endpoint,
            path.kind().url_prefix(),
            path.repo(),
            encode_path(name)
        );
        Ok(Some(HfFile {
            path: entry.path,
            size,
            sha256,
            url,
        }))
    }

    /// GETs `url` with the token, retried; the body, and the next page's URL (`Link`).
    fn get(
        &self,
        url: &str,
        path: &HfPath,
        what: &str,
    ) -> Result<(String, Option<String>), HfError> {
        let headers: Vec<(String, String)> = self.auth_header().into_iter().collect();
        let seed = crate::downloader::hrw::hash(url.as_bytes());
        crate::engine::retry::retrying(
            &self.retry,
            None,
            seed,
            None,
            |_| {
                let response = self
                    .http
                    .get(url, &headers, None, crate::http::Body::Small)
                    .map_err(|e| Failure {
                        verdict: classify::request(&e),
                        error: HfError::Request {
                            url: redact_url(url),
                            source: Box::new(e),
                        },
                    })?;
                let status = response.status().as_u16();
                let code = response
                    .headers()
                    .get("x-error-code")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let next = response
                    .headers()
                    .get_all("link")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(next_link);
                let verdict = classify::status(status, response.headers());
                let mut text = String::new();
                let read = response
                    .into_body()
                    .into_reader()
                    .take(MAX_ANSWER_BYTES)
                    .read_to_string(&mut text);
                if status == 200 {
                    read.map_err(|e| {
                        Failure::transient(HfError::Request {
                            url: redact_url(url),
                            source: Box::new(e),
                        })
                    })?;
                    return Ok((text, next));
                }
                let message = hub_message(&text);
                let repo = repo_shown(path);
                let error = match (status, code.as_deref()) {
                    (_, Some("RepoNotFound")) => HfError::RepoNotFound { repo },
                    (401 | 403, _) => HfError::Denied {
                        repo,
                        status,
                        message,
                    },
                    (404, _) => HfError::NotFound {
                        repo,
                        what: what.to_owned(),
                    },
                    _ => HfError::Status {
                        url: redact_url(url),
                        status,
                        message,
                    },
                };
                Err(match verdict {
                    Verdict::Fatal => Failure::fatal(error),
                    retry => Failure {
                        error,
                        verdict: retry,
                    },
                })
            },
            |e| e,
        )
    }
}

/// `hf://…` of the repository (no path), for messages.
fn repo_shown(path: &HfPath) -> String {
    format!("hf://{}{}", path.kind().url_prefix(), path.repo())
}

fn unusable(url: &str, reason: impl fmt::Display) -> HfError {
    HfError::Unusable {
        url: redact_url(url),
        reason: reason.to_string(),
    }
}

/// The `error` of a Hub's JSON answer, or its text (cut short).
fn hub_message(text: &str) -> String {
    #[derive(Deserialize)]
    struct Answer {
        error: String,
    }
    match serde_json::from_str::<Answer>(text) {
        Ok(answer) => answer.error,
        Err(_) => text.chars().take(200).collect(),
    }
}

/// `link` made absolute: a path (`/api/…`) is on `page`'s host, as RFC 8288 resolves it.
fn absolute(page: &str, link: String) -> String {
    if link.starts_with('/') && !link.starts_with("//") {
        format!("{}{link}", crate::flow::host_of(page))
    } else {
        link
    }
}

/// The URL of `rel="next"` in a `Link` header (`<url>; rel="next", <url>; rel="prev"`).
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let url = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| url.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_read_from_a_link_header_as_github_writes_it() {
        assert_eq!(
            next_link(r#"<https://hf.co/api/x?cursor=2>; rel="next""#).as_deref(),
            Some("https://hf.co/api/x?cursor=2")
        );
        assert_eq!(
            next_link(r#"<https://a/1>; rel="prev", <https://a/3>; rel="next""#).as_deref(),
            Some("https://a/3")
        );
        assert_eq!(next_link(r#"<https://a/1>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
        // A path is on the page's host; a network-path reference is not taken for one.
        let page = "https://hub.example:8443/api/models/o/m/tree/c?recursive=true";
        assert_eq!(
            absolute(page, "/api/models/o/m/tree/c?cursor=2".into()),
            "https://hub.example:8443/api/models/o/m/tree/c?cursor=2"
        );
        assert_eq!(absolute(page, "//evil/x".into()), "//evil/x");
        assert_eq!(absolute(page, "https://a/b".into()), "https://a/b");
    }
}
