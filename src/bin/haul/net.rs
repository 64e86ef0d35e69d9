//! Network options shared by the commands: retries, timeouts, the stall rule, egress.

use std::time::Duration;

use haul::{EgressPolicy, HttpConfig, RetryPolicy};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NetArgs {
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
        Ok(HttpConfig::default()
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
