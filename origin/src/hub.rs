//! An emulated Hugging Face Hub: the parts of its API a downloader uses, over the origin's
//! own connection handling.
//!
//! - `GET /api/{models|datasets|spaces}/{org}/{name}/revision/{rev}`: `{"id", "sha",
//!   "siblings"}`, the commit a branch (or the commit itself) names, and the files' names.
//! - `GET /api/{kind}/{org}/{name}/tree/{rev}[/{path}]?recursive=true`: the entries under
//!   `path` as a JSON array, [`Hub::page_size`] at a time, the next page in a
//!   `Link: <…>; rel="next"` header (its URL carries `cursor=N`).
//! - `GET|HEAD /[datasets/|spaces/]{org}/{name}/resolve/{rev}/{file}`: a small (non-LFS) file
//!   is served here; an LFS file is a `302` to the storage host given to [`Hub::new`]
//!   (`{storage}/lfs/{kind}/{org}/{name}/{file}?size=N&X-Amz-Signature=…`), which serves its
//!   bytes with ranges as any origin path. Both carry `X-Repo-Commit`, and LFS files
//!   `X-Linked-Etag` and `X-Linked-Size`, as the Hub does.
//!
//! A gated repo answers `401` without `Authorization: Bearer TOKEN` and `403` with another
//! token; an unknown repo `401` (`X-Error-Code: RepoNotFound`), an unknown revision or file
//! `404`. [`Hub::throttle_first`] answers the first API calls `429` with `Retry-After: 1`.
//!
//! A file's bytes are [`body`](crate::body) of its storage path ([`HubRepo::body`]), the same
//! wherever it is served from.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// The emulated Hub's repositories and behaviour; give it to
/// [`OriginBuilder::hub`](crate::OriginBuilder::hub).
#[derive(Debug)]
pub struct Hub {
    storage: String,
    repos: Vec<HubRepo>,
    page_size: usize,
    throttle_first: u64,
    api_calls: AtomicU64,
}

/// One repository of the emulated Hub: its kind, id, one branch at one commit, its files.
#[derive(Debug, Clone)]
pub struct HubRepo {
    kind: &'static str,
    id: String,
    branch: String,
    commit: String,
    files: Vec<HubFile>,
    token: Option<String>,
}

#[derive(Debug, Clone)]
struct HubFile {
    path: String,
    size: u64,
    lfs: bool,
    /// The SHA-256 the tree lists for an LFS file (its bytes', unless told to lie).
    listed_sha256: Option<String>,
}

impl Clone for Hub {
    fn clone(&self) -> Hub {
        Hub {
            storage: self.storage.clone(),
            repos: self.repos.clone(),
            page_size: self.page_size,
            throttle_first: self.throttle_first,
            api_calls: AtomicU64::new(self.api_calls.load(Ordering::SeqCst)),
        }
    }
}

impl Hub {
    /// A Hub whose LFS files are served by the origin at `storage` (`http://127.0.0.1:PORT`).
    pub fn new(storage: impl Into<String>) -> Hub {
        Hub {
            storage: storage.into(),
            repos: Vec::new(),
            page_size: 50,
            throttle_first: 0,
            api_calls: AtomicU64::new(0),
        }
    }

    /// Adds a repository.
    pub fn repo(mut self, repo: HubRepo) -> Hub {
        self.repos.push(repo);
        self
    }

    /// Entries per tree page. Default 50.
    pub fn page_size(mut self, n: usize) -> Hub {
        self.page_size = n.max(1);
        self
    }

    /// The first `n` API calls (revision, tree) are answered `429` with `Retry-After: 1`.
    pub fn throttle_first(mut self, n: u64) -> Hub {
        self.throttle_first = n;
        self
    }
}

impl HubRepo {
    fn new(kind: &'static str, id: &str) -> HubRepo {
        let seed = crate::content::seed(&format!("{kind}/{id}"));
        HubRepo {
            kind,
            id: id.to_owned(),
            branch: "main".to_owned(),
            commit: format!("{seed:016x}{:016x}{:08x}", seed.rotate_left(17), seed >> 32),
            files: Vec::new(),
            token: None,
        }
    }

    /// A model repository, `org/name`.
    pub fn model(id: &str) -> HubRepo {
        HubRepo::new("models", id)
    }

    /// A dataset repository, `org/name`.
    pub fn dataset(id: &str) -> HubRepo {
        HubRepo::new("datasets", id)
    }

    /// A small file kept in git: served by the Hub itself, listed without `lfs`.
    pub fn file(mut self, path: &str, size: u64) -> HubRepo {
        self.files.push(HubFile {
            path: path.to_owned(),
            size,
            lfs: false,
            listed_sha256: None,
        });
        self
    }

    /// An LFS file: listed with its SHA-256, served by the storage host after a redirect.
    pub fn lfs_file(mut self, path: &str, size: u64) -> HubRepo {
        let sha256 = hex(&Sha256::digest(self.body_of(path, size)));
        self.files.push(HubFile {
            path: path.to_owned(),
            size,
            lfs: true,
            listed_sha256: Some(sha256),
        });
        self
    }

    /// An LFS file whose listed SHA-256 is not its bytes' (a tree that lies, or a storage
    /// host serving other bytes).
    pub fn lfs_file_listed_wrong(mut self, path: &str, size: u64) -> HubRepo {
        self.files.push(HubFile {
            path: path.to_owned(),
            size,
            lfs: true,
            listed_sha256: Some("0".repeat(64)),
        });
        self
    }

    /// Gated: every request needs `Authorization: Bearer TOKEN`.
    pub fn gated(mut self, token: &str) -> HubRepo {
        self.token = Some(token.to_owned());
        self
    }

    /// The commit its branch `main` points at.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// The bytes of file `path` (of the size it was added with).
    ///
    /// # Panics
    ///
    /// When the repo has no such file.
    pub fn body(&self, path: &str) -> Vec<u8> {
        let file = self
            .files
            .iter()
            .find(|f| f.path == path)
            .expect("a file of the repo");
        self.body_of(path, file.size)
    }

    /// The SHA-256 (hex) of file `path`'s bytes.
    pub fn sha256(&self, path: &str) -> String {
        hex(&Sha256::digest(self.body(path)))
    }

    fn body_of(&self, path: &str, size: u64) -> Vec<u8> {
        crate::content::body(&self.storage_path(path), size)
    }

    /// Where the storage host serves `path` (percent-encoded as the Hub would).
    fn storage_path(&self, path: &str) -> String {
        format!("/lfs/{}/{}/{}", self.kind, self.id, encode_path(path))
    }

    fn knows(&self, rev: &str) -> bool {
        rev == self.branch || rev == self.commit
    }
}

/// What the Hub makes of a request.
pub(crate) enum Route {
    /// Not a Hub path: served as any origin path.
    Pass,
    /// An answer of its own: status, extra header lines, a JSON body (empty for a redirect).
    Reply {
        status: u16,
        headers: String,
        body: String,
    },
    /// A file served here: the storage path whose bytes it is, its size, and extra headers.
    Serve {
        path: String,
        size: u64,
        headers: String,
    },
}

impl Hub {
    /// Routes one request: `path` and `query` raw, `headers` with lowercased names, `base`
    /// this origin's `http://host:port`.
    pub(crate) fn route(
        &self,
        path: &str,
        query: &str,
        headers: &[(String, String)],
        base: &str,
    ) -> Route {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if segments.first() == Some(&"api") {
            return self.api(&segments[1..], query, headers, base);
        }
        let (kind, rest) = match segments.first() {
            Some(&"datasets") => ("datasets", &segments[1..]),
            Some(&"spaces") => ("spaces", &segments[1..]),
            _ => ("models", &segments[..]),
        };
        match rest {
            [org, name, "resolve", rev, file @ ..] if !file.is_empty() => {
                let id = format!("{org}/{name}");
                let file = decode(&file.join("/"));
                self.resolve(kind, &id, &decode(rev), &file, headers)
            }
            _ => Route::Pass,
        }
    }

    fn api(
        &self,
        segments: &[&str],
        query: &str,
        headers: &[(String, String)],
        base: &str,
    ) -> Route {
        let [kind, org, name, verb, rev, path @ ..] = segments else {
            return json(404, "", r#"{"error":"no such API"}"#);
        };
        if self.api_calls.fetch_add(1, Ordering::SeqCst) < self.throttle_first {
            return json(429, "retry-after: 1\r\n", r#"{"error":"rate limited"}"#);
        }
        let id = format!("{org}/{name}");
        let repo = match self.find(kind, &id, headers) {
            Ok(repo) => repo,
            Err(refused) => return refused,
        };
        let rev = decode(rev);
        if !repo.knows(&rev) {
            return json(
                404,
                "x-error-code: RevisionNotFound\r\n",
                &format!(r#"{{"error":"Invalid rev id: {}"}}"#, escape(&rev)),
            );
        }
        match *verb {
            // With the files' names, as the Hub's repo info has them (huggingface_hub's
            // snapshot_download before 1.0 lists a repo by them).
            "revision" if path.is_empty() => {
                let siblings: Vec<String> = repo
                    .files
                    .iter()
                    .map(|f| format!(r#"{{"rfilename":"{}"}}"#, escape(&f.path)))
                    .collect();
                let body = format!(
                    r#"{{"id":"{}","sha":"{}","private":false,"siblings":[{}]}}"#,
                    escape(&repo.id),
                    repo.commit,
                    siblings.join(",")
                );
                json(200, "", &body)
            }
            "tree" => {
                let under = decode(&path.join("/"));
                let recursive = query
                    .split('&')
                    .any(|p| p == "recursive=true" || p == "recursive=1");
                let cursor = query
                    .split('&')
                    .find_map(|p| p.strip_prefix("cursor="))
                    .and_then(|c| c.parse::<usize>().ok())
                    .unwrap_or(0);
                let entries = repo.entries(&under, recursive);
                if entries.is_empty() && !under.is_empty() {
                    return json(
                        404,
                        "x-error-code: EntryNotFound\r\n",
                        &format!(r#"{{"error":"{} does not exist"}}"#, escape(&under)),
                    );
                }
                let page: Vec<&String> = entries.iter().skip(cursor).take(self.page_size).collect();
                let mut link = String::new();
                if cursor + self.page_size < entries.len() {
                    let tail = if path.is_empty() {
                        String::new()
                    } else {
                        format!("/{}", path.join("/"))
                    };
                    let next = cursor + self.page_size;
                    let rev_raw = segments[4];
                    let _ = write!(
                        link,
                        "link: <{base}/api/{kind}/{id}/tree/{rev_raw}{tail}?recursive={recursive}&cursor={next}>; rel=\"next\"\r\n"
                    );
                }
                let body = format!(
                    "[{}]",
                    page.iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
                json(200, &link, &body)
            }
            _ => json(404, "", r#"{"error":"no such API"}"#),
        }
    }

    fn resolve(
        &self,
        kind: &str,
        id: &str,
        rev: &str,
        file: &str,
        headers: &[(String, String)],
    ) -> Route {
        let repo = match self.find(kind, id, headers) {
            Ok(repo) => repo,
            Err(refused) => return refused,
        };
        if !repo.knows(rev) {
            return json(
                404,
                "x-error-code: RevisionNotFound\r\n",
                r#"{"error":"Invalid rev id"}"#,
            );
        }
        let Some(entry) = repo.files.iter().find(|f| f.path == file) else {
            return json(
                404,
                "x-error-code: EntryNotFound\r\n",
                r#"{"error":"Entry not found"}"#,
            );
        };
        let mut extra = format!("x-repo-commit: {}\r\n", repo.commit);
        if entry.lfs {
            let sha256 = entry.listed_sha256.as_deref().unwrap_or_default();
            let _ = write!(
                extra,
                "x-linked-etag: \"{sha256}\"\r\nx-linked-size: {}\r\nlocation: {}{}?size={}&X-Amz-Signature=hub-signed\r\n",
                entry.size,
                self.storage,
                repo.storage_path(file),
                entry.size
            );
            return Route::Reply {
                status: 302,
                headers: extra,
                body: String::new(),
            };
        }
        Route::Serve {
            path: repo.storage_path(file),
            size: entry.size,
            headers: extra,
        }
    }

    /// The repo, if the request may see it.
    fn find(&self, kind: &str, id: &str, headers: &[(String, String)]) -> Result<&HubRepo, Route> {
        let repo = self.repos.iter().find(|r| r.kind == kind && r.id == id);
        let Some(repo) = repo else {
            return Err(json(
                401,
                "x-error-code: RepoNotFound\r\n",
                r#"{"error":"Repository not found"}"#,
            ));
        };
        if let Some(token) = &repo.token {
            let sent = headers
                .iter()
                .find(|(n, _)| n == "authorization")
                .map(|(_, v)| v.as_str());
            match sent {
                None => {
                    return Err(json(
                        401,
                        "x-error-code: GatedRepo\r\n",
                        r#"{"error":"Access to this repo is restricted. You must be authenticated to access it."}"#,
                    ));
                }
                Some(v) if v != format!("Bearer {token}") => {
                    return Err(json(
                        403,
                        "x-error-code: GatedRepo\r\n",
                        r#"{"error":"Access to this repo is restricted and you are not in the authorized list."}"#,
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(repo)
    }
}

impl HubRepo {
    /// The tree's entries under `under` (`""`: the root), as JSON, in path order: files, and
    /// the directories on their paths.
    fn entries(&self, under: &str, recursive: bool) -> Vec<String> {
        let prefix = if under.is_empty() {
            String::new()
        } else {
            format!("{}/", under.trim_end_matches('/'))
        };
        let mut items: std::collections::BTreeMap<String, String> = Default::default();
        for file in &self.files {
            let Some(rest) = file.path.strip_prefix(&prefix) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            // The directories between `under` and the file.
            for depth in 1..parts.len() {
                if !recursive && depth > 1 {
                    break;
                }
                let dir = format!("{prefix}{}", parts[..depth].join("/"));
                let oid = format!("{:040x}", u128::from(crate::content::seed(&dir)));
                items.entry(dir.clone()).or_insert_with(|| {
                    format!(
                        r#"{{"type":"directory","oid":"{oid}","path":"{}"}}"#,
                        escape(&dir)
                    )
                });
            }
            if !recursive && parts.len() > 1 {
                continue;
            }
            let oid = format!("{:040x}", u128::from(crate::content::seed(&file.path)));
            let lfs = match &file.listed_sha256 {
                Some(sha256) if file.lfs => format!(
                    r#","lfs":{{"oid":"{sha256}","size":{},"pointerSize":134}}"#,
                    file.size
                ),
                _ => String::new(),
            };
            items.insert(
                file.path.clone(),
                format!(
                    r#"{{"type":"file","oid":"{oid}","size":{},"path":"{}"{lfs}}}"#,
                    file.size,
                    escape(&file.path)
                ),
            );
        }
        items.into_values().collect()
    }
}

fn json(status: u16, headers: &str, body: &str) -> Route {
    Route::Reply {
        status,
        headers: headers.to_owned(),
        body: body.to_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A JSON string's inside.
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path, keeping `/` and the unreserved characters.
fn encode_path(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn decode(text: &str) -> String {
    crate::faults::percent_decode(text)
}
