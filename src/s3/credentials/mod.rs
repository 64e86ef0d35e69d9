//! S3 credentials: the standard chain, as the AWS SDKs document it, blocking like the rest of
//! haul, with temporary credentials cached and refreshed before they expire.
//!
//! The chain, in order (the first that is configured wins; one that is configured and fails
//! is an error, not a fall-through, so a broken role never silently becomes another
//! identity):
//!
//! 1. keys given to [`S3Config::credentials`](crate::S3Config::credentials);
//! 2. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
//! 3. web identity (EKS IRSA): `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`
//!    (`AWS_ROLE_SESSION_NAME`), exchanged at STS (`AWS_ENDPOINT_URL_STS`) with
//!    `AssumeRoleWithWebIdentity` ([`remote`]);
//! 4. the shared files' profile (`AWS_PROFILE` or `--profile`, else `default`): keys from
//!    `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`) or `~/.aws/config`
//!    (`AWS_CONFIG_FILE`, `[profile NAME]`), or its `credential_process` ([`profile`]);
//! 5. container credentials (ECS, EKS Pod Identity): `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`
//!    or `_FULL_URI`, with `AWS_CONTAINER_AUTHORIZATION_TOKEN` or `_TOKEN_FILE`;
//! 6. instance metadata, IMDSv2 (a token PUT, then the role's credentials;
//!    `AWS_EC2_METADATA_SERVICE_ENDPOINT`, off with `AWS_EC2_METADATA_DISABLED=true`).
//!
//! When none is configured the error lists what was tried and why each did not apply.

mod profile;
mod remote;

use std::fmt;
use std::time::{Duration, SystemTime};

use log::{debug, warn};
use parking_lot::{Mutex, RwLock};

use crate::http::{HttpClient, HttpConfig};

pub(crate) use profile::{Profile, ProfileFiles};

/// Why no credentials could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// No provider of the chain is configured; what each one looked for.
    #[error(
        "no S3 credentials found (tried: {tried}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or a role"
    )]
    NotFound {
        /// Each provider tried and why it did not apply, `; `-separated.
        tried: String,
    },
    /// A provider that is configured failed.
    #[error("S3 credentials from {provider}: {reason}")]
    Failed {
        /// The provider (`web identity`, `profile prod`, `container`, `instance metadata`…).
        provider: String,
        /// Why.
        reason: String,
    },
}

/// One set of keys, and when they expire (temporary credentials).
#[derive(Clone)]
pub(crate) struct Keys {
    pub(crate) access_key: String,
    pub(crate) secret_key: String,
    pub(crate) token: Option<String>,
    pub(crate) expires: Option<SystemTime>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("access_key", &self.access_key)
            .field("secret_key", &"REDACTED")
            .field("token", &self.token.as_ref().map(|_| "REDACTED"))
            .field("expires", &self.expires)
            .finish()
    }
}

/// Where keys come from: the link of the chain that supplied them, asked again to refresh.
#[derive(Debug, Clone)]
enum Provider {
    /// No keys: requests go unsigned (public buckets).
    Anonymous,
    Static(Keys),
    Environment,
    WebIdentity(remote::WebIdentity),
    Profile(Profile),
    Container(remote::Container),
    InstanceMetadata(String),
}

impl Provider {
    fn name(&self) -> String {
        match self {
            Provider::Anonymous => "no credentials (unsigned requests)".to_owned(),
            Provider::Static(_) => "the given keys".to_owned(),
            Provider::Environment => "the environment".to_owned(),
            Provider::WebIdentity(_) => "web identity".to_owned(),
            Provider::Profile(p) => format!("profile {}", p.name),
            Provider::Container(_) => "container credentials".to_owned(),
            Provider::InstanceMetadata(_) => "instance metadata".to_owned(),
        }
    }

    fn load(&self, endpoints: &Endpoints) -> Result<Keys, String> {
        match self {
            Provider::Anonymous => Ok(Keys {
                access_key: String::new(),
                secret_key: String::new(),
                token: None,
                expires: None,
            }),
            Provider::Static(keys) => Ok(keys.clone()),
            Provider::Environment => environment_keys().ok_or_else(|| "gone".to_owned()),
            Provider::WebIdentity(w) => w.load(endpoints.client()),
            Provider::Profile(p) => p.load(),
            Provider::Container(c) => c.load(endpoints.client()),
            Provider::InstanceMetadata(endpoint) => {
                remote::instance_metadata(endpoints.client(), endpoint)
            }
        }
    }
}

/// What the chain reads besides the environment: set by [`S3Config`](crate::S3Config).
#[derive(Debug, Clone, Default)]
pub(crate) struct ChainSettings {
    /// Sign nothing: no provider is asked.
    pub(crate) anonymous: bool,
    pub(crate) keys: Option<(String, String, Option<String>)>,
    pub(crate) profile: Option<String>,
    pub(crate) http: HttpConfig,
}

/// The client that asks credential endpoints (STS, container, IMDS), made on first use:
/// keys given or in the environment never need one. Credential endpoints answer fast or not
/// at all (IMDS is absent off EC2), hence the short timeouts.
struct Endpoints {
    http: HttpConfig,
    client: std::sync::OnceLock<HttpClient>,
}

impl Endpoints {
    fn client(&self) -> &HttpClient {
        self.client.get_or_init(|| {
            HttpClient::new(
                self.http
                    .clone()
                    .connect_timeout(Duration::from_secs(1))
                    .response_timeout(Duration::from_secs(5)),
            )
        })
    }
}

/// A bucket's credentials: the provider found once, its keys cached, refreshed when they
/// are within [`refresh_ahead`] of expiring (by one caller while the others keep signing
/// with the keys they have), or at once when a store says they expired.
pub(crate) struct Credentials {
    provider: Provider,
    endpoints: Endpoints,
    /// The keys, and when they were loaded.
    keys: RwLock<(Keys, SystemTime)>,
    refreshing: Mutex<()>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("provider", &self.provider.name())
            .finish_non_exhaustive()
    }
}

/// How long before expiry keys are refreshed: a quarter of their lifetime, at most 5 min
/// (the SDKs refresh 5 to 15 minutes ahead of an hour's session).
fn refresh_ahead(lifetime: Duration) -> Duration {
    (lifetime / 4).min(Duration::from_secs(300))
}

impl Credentials {
    /// Finds the chain's first configured provider and loads its keys.
    pub(crate) fn resolve(settings: &ChainSettings) -> Result<Credentials, CredentialsError> {
        let endpoints = Endpoints {
            http: settings.http.clone(),
            client: std::sync::OnceLock::new(),
        };
        let mut tried = Vec::new();
        let provider =
            find(settings, &endpoints, &mut tried).ok_or_else(|| CredentialsError::NotFound {
                tried: tried.join("; "),
            })?;
        let keys = provider
            .load(&endpoints)
            .map_err(|reason| CredentialsError::Failed {
                provider: provider.name(),
                reason,
            })?;
        debug!(
            "S3 credentials from {} ({}{})",
            provider.name(),
            keys.access_key,
            if keys.expires.is_some() {
                ", temporary"
            } else {
                ""
            }
        );
        Ok(Credentials {
            provider,
            endpoints,
            keys: RwLock::new((keys, SystemTime::now())),
            refreshing: Mutex::new(()),
        })
    }

    /// The keys to sign with now, refreshed first when they are about to expire.
    pub(crate) fn keys(&self) -> Result<Keys, CredentialsError> {
        let (keys, loaded) = self.keys.read().clone();
        let Some(expires) = keys.expires else {
            return Ok(keys);
        };
        let now = SystemTime::now();
        let left = expires.duration_since(now).unwrap_or_default();
        let lifetime = expires.duration_since(loaded).unwrap_or_default();
        if left > refresh_ahead(lifetime) {
            return Ok(keys);
        }
        self.refresh(&keys, expires > now)
    }

    /// A store refused `used` as expired: refresh now (once, whoever asks first).
    pub(crate) fn expired(&self, used: &Keys) -> Result<Keys, CredentialsError> {
        self.refresh(used, false)
    }

    /// Loads fresh keys unless another caller already replaced `stale`. While `stale` is
    /// still valid a failed refresh keeps it (and says so); once expired it is an error.
    /// Only expired keys make a caller wait for the refresher: while they are valid, the
    /// others sign on with them.
    fn refresh(&self, stale: &Keys, still_valid: bool) -> Result<Keys, CredentialsError> {
        let _one = match self.refreshing.try_lock() {
            Some(one) => one,
            None if still_valid => return Ok(stale.clone()),
            None => self.refreshing.lock(),
        };
        {
            let current = &self.keys.read().0;
            if current.access_key != stale.access_key || current.token != stale.token {
                return Ok(current.clone());
            }
        }
        match self.provider.load(&self.endpoints) {
            Ok(fresh) => {
                debug!("S3 credentials refreshed from {}", self.provider.name());
                *self.keys.write() = (fresh.clone(), SystemTime::now());
                Ok(fresh)
            }
            Err(reason) if still_valid => {
                warn!(
                    "refreshing S3 credentials from {}: {reason}; the current ones stay until they expire",
                    self.provider.name()
                );
                Ok(stale.clone())
            }
            Err(reason) => Err(CredentialsError::Failed {
                provider: self.provider.name(),
                reason,
            }),
        }
    }

    /// Whether requests are signed at all (not for a public bucket read anonymously).
    pub(crate) fn signs(&self) -> bool {
        !matches!(self.provider, Provider::Anonymous)
    }

    /// Whether these credentials can expire (and so be refreshed).
    pub(crate) fn temporary(&self) -> bool {
        !matches!(
            self.provider,
            Provider::Anonymous | Provider::Static(_) | Provider::Environment
        ) || self.keys.read().0.expires.is_some()
    }
}

/// An environment variable, when set and not empty.
pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn environment_keys() -> Option<Keys> {
    Some(Keys {
        access_key: var("AWS_ACCESS_KEY_ID")?,
        secret_key: var("AWS_SECRET_ACCESS_KEY")?,
        token: var("AWS_SESSION_TOKEN"),
        expires: None,
    })
}

/// The chain's first configured provider; each one passed over says why in `tried`.
fn find(
    settings: &ChainSettings,
    endpoints: &Endpoints,
    tried: &mut Vec<String>,
) -> Option<Provider> {
    if settings.anonymous {
        return Some(Provider::Anonymous);
    }
    if let Some((access_key, secret_key, token)) = &settings.keys {
        return Some(Provider::Static(Keys {
            access_key: access_key.clone(),
            secret_key: secret_key.clone(),
            token: token.clone(),
            expires: None,
        }));
    }
    if environment_keys().is_some() {
        return Some(Provider::Environment);
    }
    tried.push("environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set)".to_owned());
    match remote::WebIdentity::from_env() {
        Some(w) => return Some(Provider::WebIdentity(w)),
        None => tried
            .push("web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN not set)".to_owned()),
    }
    let files = ProfileFiles::from_env();
    let name = settings
        .profile
        .clone()
        .or_else(|| var("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    match files.profile(&name) {
        Some(p) if p.has_credentials() => return Some(Provider::Profile(p)),
        Some(_) => tried.push(format!(
            "profile {name} (no keys or credential_process in it)"
        )),
        None => tried.push(format!("profile {name} (not in {})", files.shown())),
    }
    match remote::Container::from_env() {
        Ok(Some(c)) => return Some(Provider::Container(c)),
        Ok(None) => tried.push(
            "container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI not set)"
                .to_owned(),
        ),
        Err(reason) => tried.push(format!("container credentials ({reason})")),
    }
    if var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        tried.push("instance metadata (AWS_EC2_METADATA_DISABLED)".to_owned());
        return None;
    }
    let endpoint = var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|| "http://169.254.169.254".to_owned());
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    match remote::instance_metadata_token(endpoints.client(), &endpoint) {
        Ok(_) => Some(Provider::InstanceMetadata(endpoint)),
        Err(reason) => {
            tried.push(format!("instance metadata at {endpoint} ({reason})"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_refresh_a_quarter_of_their_lifetime_ahead_and_at_most_five_minutes() {
        assert_eq!(
            refresh_ahead(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_ahead(Duration::from_secs(8)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn debug_never_shows_a_secret_or_token() {
        let keys = Keys {
            access_key: "AKIA1".to_owned(),
            secret_key: "s3cr3t".to_owned(),
            token: Some("t0k3n".to_owned()),
            expires: None,
        };
        let shown = format!("{keys:?}");
        assert!(shown.contains("AKIA1") && !shown.contains("s3cr3t") && !shown.contains("t0k3n"));
    }
}
