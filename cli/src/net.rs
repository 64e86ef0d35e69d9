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
    /// Connect to ADDR for HOST:PORT instead of asking DNS (curl's --resolve): a bucket's
    /// virtual-hosted name on a private store, a staging server under its real name. Repeat
    /// for more
    #[arg(long, value_name = "HOST:PORT:ADDR", value_parser = parse_resolve, global = true)]
    resolve: Vec<(String, u16, std::net::IpAddr)>,
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
        for (host, port, addr) in &self.resolve {
            config = config.resolve(host.as_str(), *port, *addr);
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
    /// How buckets are addressed: virtual (https://BUCKET.host/key, AWS's way), path
    /// (https://host/BUCKET/key, which MinIO, SeaweedFS and Ceph need), or auto: virtual for
    /// AWS, path for any --endpoint
    #[arg(long, global = true, value_enum, value_name = "STYLE", default_value_t = Addressing::Auto)]
    addressing_style: Addressing,
}

/// `--addressing-style`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Addressing {
    Auto,
    Path,
    Virtual,
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
        match self.addressing_style {
            Addressing::Auto => {}
            Addressing::Path => config = config.path_style(true),
            Addressing::Virtual => config = config.path_style(false),
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

/// `--resolve HOST:PORT:ADDR` (an IPv6 address may be bracketed, as curl writes it).
fn parse_resolve(text: &str) -> Result<(String, u16, std::net::IpAddr), String> {
    let bad = || format!("{text:?}: expected HOST:PORT:ADDR, e.g. data.s3.internal:443:10.0.0.5");
    let mut parts = text.splitn(3, ':');
    let (host, port, addr) = (parts.next(), parts.next(), parts.next());
    let (Some(host), Some(port), Some(addr)) = (host, port, addr) else {
        return Err(bad());
    };
    let port = port.parse().map_err(|_| bad())?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr = addr.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), port, addr))
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
    use super::{parse_resolve, parse_size};

    #[test]
    fn resolve_takes_host_port_and_an_address() {
        assert_eq!(
            parse_resolve("Data.S3.internal:9000:10.0.0.5"),
            Ok(("data.s3.internal".to_owned(), 9000, [10, 0, 0, 5].into()))
        );
        let v6 = parse_resolve("h:443:[::1]").unwrap();
        assert_eq!(v6.2, std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        for text in ["h:443", "h:port:1.2.3.4", ":443:1.2.3.4", "h:443:nowhere"] {
            assert!(parse_resolve(text).is_err(), "{text}");
        }
    }

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
