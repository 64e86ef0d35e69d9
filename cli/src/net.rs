//! Network options shared by the commands: retries, timeouts, the stall rule, egress.

use std::time::Duration;

use haul::S3Config;
use haul::{EgressPolicy, HttpConfig, RetryPolicy};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NetArgs {
    /// A PEM file of root certificates to trust besides the machine's (curl's --cacert, but
    /// adding): a private CA, a corporate proxy's. Repeat for more. AWS_CA_BUNDLE adds one
    /// too
    #[arg(long, value_name = "FILE", global = true)]
    ca_bundle: Vec<std::path::PathBuf>,
    /// Attempts per object (or part), the first included; 1 turns retries off.
    #[arg(long, value_name = "N", default_value_t = 5, global = true)]
    attempts: u32,
    /// Longest wait for a connection, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, global = true)]
    connect_timeout: f64,
    /// Longest wait for the response headers, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, global = true)]
    header_timeout: f64,
    /// The stall rule's window, in seconds: fewer than --stall-bytes in it abandons the
    /// attempt (which is retried, resuming where it stopped).
    #[arg(long, value_name = "SECS", default_value_t = 30.0, global = true)]
    stall_window: f64,
    /// The stall rule's floor, in bytes per window.
    #[arg(long, value_name = "BYTES", default_value_t = 1024, global = true)]
    stall_bytes: u64,
    /// Refuse to connect to loopback, private, link-local, CGNAT and cloud-metadata
    /// addresses (checked on the resolved address; proxy settings are ignored).
    #[arg(long, global = true)]
    public_only: bool,
}

impl NetArgs {
    pub(crate) fn http(&self) -> Result<HttpConfig, crate::run::UsageError> {
        let secs = |value: f64, name: &str| {
            Duration::try_from_secs_f64(value)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    crate::run::UsageError(format!("--{name} must be a positive number of seconds"))
                })
        };
        let mut config = HttpConfig::default();
        let env_bundle = std::env::var_os("AWS_CA_BUNDLE")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from);
        for path in self.ca_bundle.iter().chain(env_bundle.as_ref()) {
            let pem = std::fs::read(path).map_err(|e| {
                crate::run::UsageError(format!("--ca-bundle {}: {e}", path.display()))
            })?;
            config = config.root_certificate_pem(pem);
        }
        Ok(config
            .connect_timeout(secs(self.connect_timeout, "connect-timeout")?)
            .response_timeout(secs(self.header_timeout, "header-timeout")?)
            .stall(self.stall_bytes, secs(self.stall_window, "stall-window")?)
            .egress(if self.public_only {
                EgressPolicy::PublicOnly
            } else {
                EgressPolicy::Any
            }))
    }

    pub(crate) fn retry(&self) -> RetryPolicy {
        RetryPolicy::default().attempts(self.attempts)
    }
}

/// Where the S3 store is: the standard AWS environment, overridden by the flags.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct S3Args {
    /// The S3 endpoint (default: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, or AWS itself).
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// The region (default: AWS_REGION or AWS_DEFAULT_REGION, or us-east-1).
    #[arg(long, global = true)]
    region: Option<String>,
    /// The profile of ~/.aws/credentials and ~/.aws/config (or AWS_SHARED_CREDENTIALS_FILE,
    /// AWS_CONFIG_FILE) for the keys (when none are in the environment), region and
    /// endpoint_url (default: AWS_PROFILE, or default).
    #[arg(long, global = true, value_name = "NAME")]
    profile: Option<String>,
    /// Sign no request and look for no credentials: for public buckets (AWS Open Data, many
    /// ML datasets)
    #[arg(long, global = true)]
    no_sign_request: bool,
}

impl S3Args {
    /// The store's configuration: credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
    /// or the profile files, the network options of `net`.
    pub(crate) fn config(&self, net: &NetArgs) -> Result<S3Config, crate::run::UsageError> {
        let mut config = S3Config::from_profile(self.profile.as_deref());
        if let Some(endpoint) = &self.endpoint {
            let profile = config.profile.take();
            config = S3Config::new(endpoint.as_str(), config.region.clone());
            config.profile = profile;
        }
        if let Some(region) = &self.region {
            config.region = region.clone();
        }
        if self.no_sign_request {
            config = config.anonymous();
        }
        // The profile's ca_bundle (read by from_profile) adds to the flags' roots.
        let mut http = net.http()?;
        for pem in std::mem::take(&mut config.http.root_certificates_pem) {
            if !http.root_certificates_pem.contains(&pem) {
                http.root_certificates_pem.push(pem);
            }
        }
        Ok(config.http(http).retry(net.retry()))
    }
}

/// A size in bytes: `1048576`, `512K`, `8MiB`, `1.5G` (K, M, G, T and KiB, MiB, GiB, TiB are
/// powers of 1024; KB, MB, GB, TB powers of 1000).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?}: expected a size such as 1048576, 512K, 8MiB or 1.5G");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * unit as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// `--shard I/N`: this process takes shard I of N (0-based).
pub(crate) fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{text:?}: expected I/N with 0 <= I < N, e.g. 2/8");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (u32, u32) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        for (text, bytes) in [
            ("1048576", 1 << 20),
            ("512K", 512 << 10),
            ("8MiB", 8 << 20),
            ("8m", 8 << 20),
            ("1.5G", 3 << 29),
            ("2GB", 2_000_000_000),
            ("0", 0),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in ["", "M", "8 parsecs", "-1", "1e3"] {
            assert!(parse_size(text).is_err(), "{text}");
        }
    }
}
