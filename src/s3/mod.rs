//! S3 and S3-compatible stores (SeaweedFS, MinIO, Ceph, AWS): configuration, signing, listing.
//!
//! rust-s3 (sync, signing only) holds the credentials and signs requests as presigned URLs;
//! haul moves every byte — objects and listings — through its own [`HttpClient`], one
//! keep-alive pool. rust-s3's own sync transport opens a new connection per request and
//! sleeps in the calling thread on retries, so it is never used to move data.

use std::fmt;
use std::io::Read;
use std::sync::Arc;

mod attributes;
pub(crate) mod credentials;
mod listing;
mod multipart;
mod region;
mod sign;

pub use listing::{ListedObject, Listing};
pub use multipart::MultipartUpload;

use crate::engine::classify::{self, Failure, Verdict};
use crate::engine::retry::{self, RetryPolicy};
use crate::http::{HttpClient, HttpConfig};
use crate::source::url::redact_url;

/// How long a presigned URL is valid. Each is used at once, so this only has to cover clock
/// skew and slow starts.
const PRESIGN_EXPIRY_SECS: u32 = 3600;
/// Keys per listing page (the S3 maximum).
const PAGE_KEYS: &str = "1000";

/// Why an S3 call failed. Each variant names the bucket and key (or prefix) involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The configuration cannot work: a bad endpoint or region, a bad bucket name.
    #[error("bad S3 configuration: {0}")]
    Config(String),
    /// No credentials: none of the chain's providers is configured, or the one that is
    /// failed (see [`S3Config::from_env`] for the chain).
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    /// A request could not be signed.
    #[error("signing {op} s3://{bucket}/{key}: {reason}")]
    Sign {
        /// The operation.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
        /// Why.
        reason: String,
    },
    /// No response: connection refused or reset, timeout, TLS.
    #[error("{op} s3://{bucket}/{key}: request failed")]
    Request {
        /// The operation.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store answered with an error status.
    #[error("{op} s3://{bucket}/{key}: HTTP status {status}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        /// The operation.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
        /// The status code.
        status: u16,
        /// The S3 error code from the body (`NoSuchKey`, `AccessDenied`, ...), when given.
        code: Option<String>,
    },
    /// The call was cancelled (its job was aborted) before it could succeed.
    #[error("{op} s3://{bucket}/{key}: cancelled")]
    Cancelled {
        /// The operation.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
    },
    /// A reply could not be parsed.
    #[error("{op} s3://{bucket}/{key}: unreadable response: {reason}")]
    Parse {
        /// The operation.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
        /// Why.
        reason: String,
    },
}

impl S3Error {
    /// The cancellation of the call that failed with `self`.
    fn cancelled(self) -> S3Error {
        match self {
            S3Error::Sign {
                op, bucket, key, ..
            }
            | S3Error::Request {
                op, bucket, key, ..
            }
            | S3Error::Status {
                op, bucket, key, ..
            }
            | S3Error::Cancelled { op, bucket, key }
            | S3Error::Parse {
                op, bucket, key, ..
            } => S3Error::Cancelled { op, bucket, key },
            other => other,
        }
    }

    /// Whether another attempt could go better (the one classifier's verdict).
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            S3Error::Status { status, code, .. } => classify::s3_status(*status, code.as_deref()),
            S3Error::Request { source, .. } => match source.downcast_ref::<ureq::Error>() {
                Some(e) => classify::request(e),
                None => Verdict::AGAIN, // a body that broke off
            },
            _ => Verdict::Fatal,
        }
    }

    /// Whether the store pushed back: 503 (`SlowDown`) or 429.
    pub(crate) fn is_throttle(&self) -> bool {
        matches!(
            self,
            S3Error::Status {
                status: 429 | 503,
                ..
            }
        ) || matches!(self, S3Error::Status { code: Some(code), .. } if code == "SlowDown")
    }

    /// Whether the store refused the signature's credentials as expired.
    pub(crate) fn is_expired_token(&self) -> bool {
        matches!(self, S3Error::Status { code: Some(code), .. }
            if matches!(code.as_str(), "ExpiredToken" | "TokenRefreshRequired" | "RequestExpired"))
    }
}

/// Where the store is and how to sign for it.
///
/// ```
/// let config = haul::S3Config::new("http://127.0.0.1:8333", "us-east-1")
///     .credentials("AKIAEXAMPLE", "wJalrXUtnFEMI");
/// // Debug never shows the credentials.
/// let shown = format!("{config:?}");
/// assert!(!shown.contains("AKIAEXAMPLE") && !shown.contains("wJalrXUtnFEMI"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct S3Config {
    /// The endpoint URL (`http://127.0.0.1:8333`), or `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` unless the store says otherwise).
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), which MinIO, SeaweedFS and Ceph need.
    /// Default: on with a custom endpoint, off for AWS.
    pub path_style: bool,
    /// The profile of the shared files (`~/.aws/credentials` and `~/.aws/config`, or
    /// `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`) whose credentials the chain
    /// reads when no keys are given: `AWS_PROFILE` with [`from_env`](S3Config::from_env),
    /// else `default`.
    pub profile: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    session_token: Option<String>,
    /// Unsigned requests, for public buckets (see [`anonymous`](S3Config::anonymous)).
    pub anonymous: bool,
    /// Settings of the HTTP client that moves the bytes.
    pub http: HttpConfig,
    /// How listing pages, PUTs and bucket creation are retried (the fetcher has its own,
    /// [`FetcherBuilder::retry`](crate::fetch::FetcherBuilder::retry)). Default
    /// [`RetryPolicy::default`].
    pub retry: RetryPolicy,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("profile", &self.profile)
            .field("anonymous", &self.anonymous)
            .field("path_style", &self.path_style)
            .field("access_key", &self.access_key.as_ref().map(|_| "REDACTED"))
            .field("secret_key", &self.secret_key.as_ref().map(|_| "REDACTED"))
            .field("http", &self.http)
            .field("retry", &self.retry)
            .finish()
    }
}

impl S3Config {
    /// A store at `endpoint` in `region`, path-style, with credentials from the chain (see
    /// [`from_env`](S3Config::from_env)) unless [`credentials`](S3Config::credentials) sets
    /// them.
    pub fn new(endpoint: impl Into<String>, region: impl Into<String>) -> S3Config {
        S3Config {
            endpoint: Some(endpoint.into()),
            region: region.into(),
            path_style: true,
            profile: None,
            access_key: None,
            secret_key: None,
            session_token: None,
            anonymous: false,
            http: HttpConfig::default(),
            retry: RetryPolicy::default(),
        }
    }

    /// From the standard AWS environment: `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, else
    /// the profile's `endpoint_url` (none means AWS itself); `AWS_REGION` or
    /// `AWS_DEFAULT_REGION`, else the profile's `region` (default `us-east-1`); credentials
    /// from the chain ([`CredentialsError`](crate::CredentialsError) lists it): the
    /// environment's keys, web identity, the profile (`AWS_PROFILE`, default `default`, in
    /// `~/.aws/credentials` and `~/.aws/config`), container credentials, instance metadata.
    /// `AWS_CA_BUNDLE` (else the profile's `ca_bundle`) adds roots to the machine's
    /// ([`HttpConfig::root_certificates_pem`](crate::HttpConfig)).
    pub fn from_env() -> S3Config {
        S3Config::from_profile(None)
    }

    /// As [`from_env`](S3Config::from_env), with the profile `name` (when given) in place of
    /// `AWS_PROFILE`'s: its region, `endpoint_url` and credentials.
    pub fn from_profile(name: Option<&str>) -> S3Config {
        let var = credentials::var;
        let profile = name.map(str::to_owned).or_else(|| var("AWS_PROFILE"));
        let files = credentials::ProfileFiles::from_env();
        let section = files.profile(profile.as_deref().unwrap_or("default"));
        let from_profile = |get: fn(&credentials::Profile) -> Option<&str>| {
            section.as_ref().and_then(get).map(str::to_owned)
        };
        let endpoint = var("AWS_ENDPOINT_URL_S3")
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .or_else(|| from_profile(credentials::Profile::endpoint_url));
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| from_profile(credentials::Profile::region))
            .unwrap_or_else(|| "us-east-1".to_owned());
        // AWS_CA_BUNDLE, else the profile's ca_bundle, adds roots to the machine's.
        let mut http = HttpConfig::default();
        let bundle = var("AWS_CA_BUNDLE").or_else(|| from_profile(credentials::Profile::ca_bundle));
        if let Some(path) = bundle {
            match std::fs::read(&path) {
                Ok(pem) => http = http.root_certificate_pem(pem),
                Err(e) => log::warn!("the CA bundle {path}: {e}"),
            }
        }
        S3Config {
            path_style: endpoint.is_some(),
            endpoint,
            region,
            profile,
            access_key: None,
            secret_key: None,
            session_token: None,
            anonymous: false,
            http,
            retry: RetryPolicy::default(),
        }
    }

    /// Reads the credentials from this profile of the shared files when no keys are given
    /// (and none are in the environment, nor a web identity). Its region and endpoint are
    /// [`from_profile`](S3Config::from_profile)'s to read.
    pub fn profile(mut self, name: impl Into<String>) -> S3Config {
        self.profile = Some(name.into());
        self
    }

    /// Sets static credentials.
    pub fn credentials(
        mut self,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> S3Config {
        self.access_key = Some(access_key.into());
        self.secret_key = Some(secret_key.into());
        self
    }

    /// Signs no request and asks no credential provider: for public buckets (AWS Open Data,
    /// many ML datasets), as the AWS CLI's `--no-sign-request`.
    ///
    /// ```
    /// let config = haul::S3Config::from_env().anonymous();
    /// assert!(config.anonymous);
    /// ```
    pub fn anonymous(mut self) -> S3Config {
        self.anonymous = true;
        self
    }

    /// Sets a session token (temporary credentials).
    pub fn session_token(mut self, token: impl Into<String>) -> S3Config {
        self.session_token = Some(token.into());
        self
    }

    /// Sets [`path_style`](S3Config::path_style).
    pub fn path_style(mut self, on: bool) -> S3Config {
        self.path_style = on;
        self
    }

    /// Sets [`http`](S3Config::http).
    pub fn http(mut self, config: HttpConfig) -> S3Config {
        self.http = config;
        self
    }

    /// Sets [`retry`](S3Config::retry).
    pub fn retry(mut self, policy: RetryPolicy) -> S3Config {
        self.retry = policy;
        self
    }
}

/// Checks a bucket name against S3's rules: 3–63 characters of lowercase letters, digits,
/// dots and hyphens, starting and ending with a letter or digit.
fn check_bucket_name(name: &str) -> Result<(), S3Error> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = name
        .bytes()
        .next()
        .zip(name.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if (3..=63).contains(&name.len()) && ok_chars && ok_ends && !name.contains("..") {
        Ok(())
    } else {
        Err(S3Error::Config(format!(
            "bucket name {name:?} must be 3-63 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit"
        )))
    }
}

/// One bucket of a store: signs requests with rust-s3, moves bytes through haul's
/// [`HttpClient`]. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Bucket {
    name: String,
    /// Signs requests, and says where they go; shared by clones, so a region followed by
    /// one is followed by all.
    signer: Arc<region::Signer>,
    credentials: Arc<credentials::Credentials>,
    client: HttpClient,
    retry: RetryPolicy,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Bucket {
    /// The bucket `name` of the store `config` describes.
    ///
    /// # Errors
    ///
    /// [`S3Error::Config`] for a bad bucket name, endpoint or region;
    /// [`S3Error::Credentials`] when no credentials can be found.
    pub fn new(name: &str, config: &S3Config) -> Result<Bucket, S3Error> {
        Bucket::with_client(name, config, HttpClient::new(config.http.clone()))
    }

    /// Like [`Bucket::new`], sharing an existing client (and its keep-alive pool).
    ///
    /// # Errors
    ///
    /// As [`Bucket::new`].
    pub fn with_client(
        name: &str,
        config: &S3Config,
        client: HttpClient,
    ) -> Result<Bucket, S3Error> {
        check_bucket_name(name)?;
        let region = match &config.endpoint {
            Some(endpoint) => {
                crate::source::url::check_url(endpoint)
                    .map_err(|e| S3Error::Config(e.to_string()))?;
                ::s3::Region::Custom {
                    region: config.region.clone(),
                    endpoint: endpoint.trim_end_matches('/').to_owned(),
                }
            }
            None => config
                .region
                .parse()
                .map_err(|e| S3Error::Config(format!("region {:?}: {e}", config.region)))?,
        };
        let settings = credentials::ChainSettings {
            anonymous: config.anonymous,
            keys: config
                .access_key
                .clone()
                .zip(config.secret_key.clone())
                .map(|(a, s)| (a, s, config.session_token.clone())),
            profile: config.profile.clone(),
            http: config.http.clone(),
        };
        let credentials = Arc::new(credentials::Credentials::resolve(&settings)?);
        // rust-s3's bucket only builds URLs here; haul signs every request itself.
        let signer = region::Signer::new(name, config.endpoint.clone(), region, config.path_style)?;
        Ok(Bucket {
            name: name.to_owned(),
            signer: Arc::new(signer),
            credentials,
            client,
            retry: config.retry,
        })
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bucket's URL (`endpoint/bucket`, or the bucket's own host) as configured, before
    /// any region was followed: its identity for placement and sync records.
    pub(crate) fn url(&self) -> String {
        self.signer.configured_url().to_owned()
    }

    /// Follows the region a failed reply names, when it is another than the one requests
    /// are signed for (see [`region`]); whether they now go elsewhere, so the call is worth
    /// making again at once.
    pub(crate) fn follow_region(
        &self,
        status: u16,
        headers: &ureq::http::HeaderMap,
        body: &str,
    ) -> bool {
        self.signer.follow(status, headers, body)
    }

    /// The `<Code>` of a failed reply's error document, having followed the region it names
    /// (see [`follow_region`](Bucket::follow_region)).
    fn failed_reply(
        &self,
        status: u16,
        response: ureq::http::Response<ureq::Body>,
    ) -> Option<String> {
        let headers = response.headers().clone();
        let text = error_text(response.into_body());
        self.follow_region(status, &headers, &text);
        s3_error_code(&text)
    }

    /// The client that moves this bucket's bytes.
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// A presigned GET URL for `key` (and `version`, when given), whose signature covers
    /// [`CHECKSUM_MODE`]: the GET must send it.
    pub(crate) fn presign_get(&self, key: &str, version: Option<&str>) -> Result<String, S3Error> {
        let (headers, _) = signed_headers(&[(CHECKSUM_MODE.0, CHECKSUM_MODE.1.to_owned())]);
        let version = version.map(|v| [("versionId", v)]);
        self.presign(&sign::Presign {
            op: "GET",
            method: "GET",
            key,
            queries: version.as_ref().map_or(&[], |v| &v[..]),
            headers: &headers,
        })
    }

    /// Runs `once` until it succeeds, fails for good, or the retry policy gives up: the
    /// engine's one retry loop and classifier, on the calling thread's cancel token (a job's,
    /// inside a transfer or a listing), which ends a backoff at once.
    pub(crate) fn retrying<T>(
        &self,
        mut once: impl FnMut() -> Result<T, S3Error>,
    ) -> Result<T, S3Error> {
        let seed = crate::downloader::hrw::hash(self.name.as_bytes());
        // A store that says the token expired gets one call more with fresh keys; one that
        // names another region, one call more signed for it.
        let mut once = || {
            let region = self.signer.region();
            match once() {
                Err(error) if error.is_expired_token() && self.credentials.temporary() => {
                    log::debug!("{error}: refreshing the credentials");
                    let used = self.credentials.keys()?;
                    self.credentials.expired(&used)?;
                    once()
                }
                Err(S3Error::Status { .. }) if self.signer.region() != region => once(),
                other => other,
            }
        };
        retry::retrying(
            &self.retry,
            None,
            seed,
            None,
            |_| {
                once().map_err(|error| {
                    if error.is_throttle() {
                        crate::flow::throttle_observed();
                    }
                    let verdict = error.verdict();
                    Failure { error, verdict }
                })
            },
            S3Error::cancelled,
        )
    }

    fn sign_error(&self, op: &'static str, key: &str, e: ::s3::error::S3Error) -> S3Error {
        S3Error::Sign {
            op,
            bucket: self.name.clone(),
            key: key.to_owned(),
            reason: redact_url(&e.to_string()),
        }
    }

    /// Stores `bytes` under `key` (one PUT, with a full-object CRC-64/NVME checksum the
    /// store checks and keeps, so later GETs can be verified against it).
    ///
    /// # Errors
    ///
    /// An [`S3Error`] naming the key.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), S3Error> {
        self.retrying(|| self.put_once(key, bytes))
    }

    fn put_once(&self, key: &str, bytes: &[u8]) -> Result<(), S3Error> {
        use crate::engine::verify::Crc64Nvme;
        let (signed, sent) = signed_headers(&[(Crc64Nvme::HEADER, Crc64Nvme::of(bytes))]);
        let presign = sign::Presign {
            op: "PUT",
            method: "PUT",
            key,
            queries: &[],
            headers: &signed,
        };
        self.call(&presign, &sent, bytes).map(drop)
    }

    /// Sends one signed request and returns its body when the status is 2xx.
    pub(crate) fn call(
        &self,
        presign: &sign::Presign<'_>,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(ureq::http::HeaderMap, String), S3Error> {
        let url = self.presign(presign)?;
        let method =
            ureq::http::Method::from_bytes(presign.method.as_bytes()).expect("a valid method");
        let request_error = |source: Box<dyn std::error::Error + Send + Sync>| S3Error::Request {
            op: presign.op,
            bucket: self.name.clone(),
            key: presign.key.to_owned(),
            source,
        };
        let response = self
            .client
            .send(method, &url, headers, body)
            .map_err(|e| request_error(Box::new(e)))?;
        let status = response.status().as_u16();
        if status / 100 != 2 {
            return Err(S3Error::Status {
                op: presign.op,
                bucket: self.name.clone(),
                key: presign.key.to_owned(),
                status,
                code: self.failed_reply(status, response),
            });
        }
        let headers = response.headers().clone();
        let mut text = String::new();
        response
            .into_body()
            .into_reader()
            .take(1 << 20)
            .read_to_string(&mut text)
            .map_err(|e| request_error(Box::new(e)))?;
        Ok((headers, text))
    }

    /// Deletes `key`. Deleting a key that does not exist succeeds, as in S3.
    ///
    /// # Errors
    ///
    /// An [`S3Error`] naming the key.
    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        let headers = ureq::http::HeaderMap::new();
        self.retrying(|| {
            let presign = sign::Presign {
                op: "delete",
                method: "DELETE",
                key,
                queries: &[],
                headers: &headers,
            };
            match self.call(&presign, &[], &[]) {
                Ok(_) | Err(S3Error::Status { status: 404, .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// What the store says of `key` (one HEAD): its size and ETag, or `None` when it does
    /// not exist.
    ///
    /// # Errors
    ///
    /// An [`S3Error`] naming the key.
    pub fn head(&self, key: &str) -> Result<Option<ListedObject>, S3Error> {
        let Some(reply) = self.head_reply(key)? else {
            return Ok(None);
        };
        let text = |name: &str| reply.get(name).and_then(|v| v.to_str().ok());
        Ok(Some(ListedObject {
            key: key.to_owned(),
            size: text("content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            etag: text("etag").map(|e| e.trim().trim_matches('"').to_owned()),
            last_modified: text("last-modified").and_then(|v| httpdate::parse_http_date(v).ok()),
        }))
    }

    /// The version id of `key`'s current version (one HEAD), in a bucket that keeps
    /// versions; `None` when it keeps none (or the store says `null`) or `key` is gone.
    pub(crate) fn version_of(&self, key: &str) -> Result<Option<String>, S3Error> {
        Ok(self.head_reply(key)?.and_then(|reply| {
            let version = reply.get("x-amz-version-id")?.to_str().ok()?.trim();
            (!version.is_empty() && version != "null").then(|| version.to_owned())
        }))
    }

    /// One HEAD of `key`, asking for its checksums: the reply's headers, or `None` for a
    /// 404.
    fn head_reply(&self, key: &str) -> Result<Option<ureq::http::HeaderMap>, S3Error> {
        let (signed, sent) = signed_headers(&[(CHECKSUM_MODE.0, CHECKSUM_MODE.1.to_owned())]);
        self.retrying(|| {
            let presign = sign::Presign {
                op: "head",
                method: "HEAD",
                key,
                queries: &[],
                headers: &signed,
            };
            match self.call(&presign, &sent, &[]) {
                Ok((reply, _)) => Ok(Some(reply)),
                Err(S3Error::Status { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    /// The checksum the store keeps for `key`, asked with a HEAD (a ranged GET does not
    /// return it): a full-object one, or a composite one with its parts' sizes (see
    /// [`composite_parts`](Bucket::composite_parts)); `None` when it keeps none (or a
    /// composite one whose parts it does not list), or when the object's ETag is no longer
    /// `etag` (another version, whose checksum says nothing of this one's bytes).
    /// A HEAD that fails is logged at debug: the object is then checked without it.
    pub(crate) fn stored_checksum(
        &self,
        key: &str,
        etag: Option<&str>,
    ) -> Option<crate::engine::verify::StoreChecksum> {
        let reply = match self.head_reply(key) {
            Ok(reply) => reply?, // gone since: its parts will say so
            Err(e) => {
                log::debug!("s3://{}/{key}: no checksum asked ({e})", self.name);
                return None;
            }
        };
        let info = crate::engine::response::ObjectInfo::of(&reply);
        let same = etag.is_none_or(|e| info.etag_unquoted() == Some(e.trim_matches('"')));
        if !same {
            return None;
        }
        match (info.checksum, &info.composite) {
            (Some(checksum), _) => Some(checksum),
            (None, Some(composite)) => self.composite_parts(key, etag, composite),
            (None, None) => None,
        }
    }

    /// What a HEAD of `key` says of its version (size, ETag, full-object checksum), or
    /// `None` for a 404.
    pub(crate) fn head_info(
        &self,
        key: &str,
    ) -> Result<Option<crate::engine::response::ObjectInfo>, S3Error> {
        Ok(self.head_reply(key)?.map(|reply| {
            let mut info = crate::engine::response::ObjectInfo::of(&reply);
            info.total = reply
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            info
        }))
    }

    /// Creates the bucket (one `PUT /bucket`). Creating a bucket you already own succeeds, so
    /// this is safe to call before every batch that writes into it.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), haul::S3Error> {
    /// let bucket = haul::Bucket::new("landing", &haul::S3Config::from_env())?;
    /// bucket.create()?;
    /// bucket.put("hello.txt", b"hello")?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// An [`S3Error`]: `Status` with code `BucketAlreadyExists` when the name is taken by a
    /// bucket these credentials cannot use.
    pub fn create(&self) -> Result<(), S3Error> {
        self.retrying(|| self.create_once())
    }

    fn create_once(&self) -> Result<(), S3Error> {
        // Outside us-east-1, S3 wants the region restated in the body.
        let region = self.signer.region();
        let body = if region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            )
        };
        let presign = sign::Presign {
            op: "create bucket",
            method: "PUT",
            key: "",
            queries: &[],
            headers: &ureq::http::HeaderMap::new(),
        };
        match self.call(&presign, &[], body.as_bytes()) {
            Ok(_) => Ok(()),
            // `BucketAlreadyOwnedByYou` is AWS's answer to the owner; single-tenant stores
            // (s3s, some MinIO set-ups) say `BucketAlreadyExists` to everyone, so that one
            // counts as success when these credentials can list the bucket.
            Err(S3Error::Status {
                code: Some(code), ..
            }) if code == "BucketAlreadyOwnedByYou"
                || (code == "BucketAlreadyExists" && self.list_request("", None, "1").is_ok()) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// An error reply's body as text (its first 64 KiB; empty when it cannot be read).
pub(crate) fn error_text(body: ureq::Body) -> String {
    let mut text = String::new();
    let _ = body.into_reader().take(64 * 1024).read_to_string(&mut text);
    text
}

/// An S3 `<Error>` document: its `<Code>`.
#[derive(Debug, serde::Deserialize)]
struct ErrorDocument {
    #[serde(rename = "Code")]
    code: Option<String>,
}

/// The `<Code>` of `text` when it is an S3 `<Error>` document (quick-xml); `None` for any
/// The header that asks S3 for an object's checksums with a GET (unasked, S3 does not
/// return them); signed, since stores refuse unsigned `x-amz-*` headers on presigned URLs.
pub(crate) const CHECKSUM_MODE: (&str, &str) = ("x-amz-checksum-mode", "ENABLED");

/// `headers` as a request's signature covers them, and as they are sent: stores that check
/// every `x-amz-*` header against the signature (SeaweedFS) refuse unsigned ones.
pub(crate) fn signed_headers(
    headers: &[(&'static str, String)],
) -> (ureq::http::HeaderMap, Vec<(String, String)>) {
    let mut signed = ureq::http::HeaderMap::new();
    for (name, value) in headers {
        let value = ureq::http::HeaderValue::from_str(value).expect("base64 or a token");
        signed.insert(*name, value);
    }
    let sent = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    (signed, sent)
}

/// other document, or text that is not XML.
pub(crate) fn s3_error_code(text: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(text);
    let root = loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) => break e.name().as_ref().to_vec(),
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    };
    if root != b"Error" {
        return None;
    }
    let document: ErrorDocument = quick_xml::de::from_str(text).ok()?;
    document.code.map(|c| c.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_come_from_error_documents_only() {
        let error = r#"<?xml version="1.0" encoding="UTF-8"?>
            <Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"#;
        assert_eq!(s3_error_code(error).as_deref(), Some("SlowDown"));
        let result = "<CompleteMultipartUploadResult><Code>not an error</Code>\
                      </CompleteMultipartUploadResult>";
        assert_eq!(s3_error_code(result), None);
        assert_eq!(s3_error_code("<Error></Error>"), None);
        assert_eq!(s3_error_code("not xml at all"), None);
    }
}
