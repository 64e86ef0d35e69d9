//! Why a Hub repository could not be listed.

/// Why an `hf://` path could not be parsed, or its repository resolved or listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HfError {
    /// The `hf://` path is malformed.
    #[error("bad Hugging Face path {text:?}: {reason}")]
    Path {
        /// The path given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The repository is gated or private and no token was given (401), or the token given
    /// has no access to it (403).
    #[error("{repo}: {}", if *status == 401 {
        "gated or private: it needs a token (set HF_TOKEN, pass --hf-token, or log in with `hf auth login`)"
    } else {
        "the token has no access (a gated repo: accept its conditions on the Hub first)"
    })]
    Denied {
        /// `hf://…` of the repository.
        repo: String,
        /// 401 or 403.
        status: u16,
        /// What the Hub said.
        message: String,
    },
    /// No such repository (or a private one the token cannot see: the Hub does not say
    /// which).
    #[error("{repo}: repository not found (or private, and the token cannot see it)")]
    RepoNotFound {
        /// `hf://…` of the repository.
        repo: String,
    },
    /// No such revision, or no such path at it.
    #[error("{repo}: {what} not found")]
    NotFound {
        /// `hf://…` of the repository.
        repo: String,
        /// The revision, or the path.
        what: String,
    },
    /// Another status, after the retries.
    #[error("GET {url}: HTTP status {status}: {message}")]
    Status {
        /// The URL, redacted.
        url: String,
        /// The status.
        status: u16,
        /// What the Hub said.
        message: String,
    },
    /// No response, after the retries.
    #[error("GET {url}: request failed")]
    Request {
        /// The URL, redacted.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The Hub's answer cannot be used: not the JSON it should be, an entry that is not a
    /// safe relative path or lies outside the path asked for, a file listed twice, a next
    /// page on another host or one seen before.
    #[error("GET {url}: unusable answer: {reason}")]
    Unusable {
        /// The URL, redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token file exists but cannot be read.
    #[error("cannot read the Hugging Face token file {path}")]
    TokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
