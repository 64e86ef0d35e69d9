//! What the emulated network is: its round trip, its bottleneck, one connection's window, the
//! server's think time and loss-like stalls.

use std::time::Duration;

/// A wide-area network between the proxy's clients and its upstream server.
///
/// Every field has a builder method; [`WanConfig::default`] is a 40 ms round trip with an
/// unlimited link, a 4 MiB window (Linux's usual ceiling) opened by slow start from ten
/// segments, no think time and no stalls.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WanConfig {
    /// The round-trip propagation delay; each direction pays half of it.
    pub rtt: Duration,
    /// The bottleneck's rate in bits per second, one link per direction shared by every
    /// connection in FIFO order; `None` is unlimited.
    pub rate_bits_per_sec: Option<u64>,
    /// One connection's largest window: at most this many bytes unacknowledged, so one
    /// connection moves at most `window / rtt`.
    pub window_bytes: u64,
    /// A new connection's window (slow start doubles it each round trip up to
    /// `window_bytes`); equal to `window_bytes` turns slow start off.
    pub initial_window_bytes: u64,
    /// The server's think time, drawn for each request.
    pub think: ThinkTime,
    /// Loss-like stalls of the server-to-client direction.
    pub stalls: Stalls,
    /// The seed of every draw (think times, stragglers, stalls).
    pub seed: u64,
}

impl Default for WanConfig {
    fn default() -> WanConfig {
        WanConfig {
            rtt: Duration::from_millis(40),
            rate_bits_per_sec: None,
            window_bytes: 4 << 20,
            initial_window_bytes: 10 * 1460,
            think: ThinkTime::none(),
            stalls: Stalls::none(),
            seed: 1,
        }
    }
}

impl WanConfig {
    /// The round-trip propagation delay.
    pub fn rtt(mut self, rtt: Duration) -> WanConfig {
        self.rtt = rtt;
        self
    }

    /// The bottleneck's rate in Mbit/s (10^6 bits per second).
    pub fn rate_mbit(mut self, mbit: u64) -> WanConfig {
        self.rate_bits_per_sec = Some(mbit * 1_000_000);
        self
    }

    /// One connection's largest window in bytes.
    pub fn window(mut self, bytes: u64) -> WanConfig {
        self.window_bytes = bytes.max(1);
        self.initial_window_bytes = self.initial_window_bytes.min(self.window_bytes);
        self
    }

    /// A new connection's window in bytes; `u64::MAX` (or anything at least the window)
    /// turns slow start off.
    pub fn initial_window(mut self, bytes: u64) -> WanConfig {
        self.initial_window_bytes = bytes.clamp(1, self.window_bytes);
        self
    }

    /// The server's think time per request.
    pub fn think(mut self, think: ThinkTime) -> WanConfig {
        self.think = think;
        self
    }

    /// Loss-like stalls.
    pub fn stalls(mut self, stalls: Stalls) -> WanConfig {
        self.stalls = stalls;
        self
    }

    /// The seed of every draw.
    pub fn seed(mut self, seed: u64) -> WanConfig {
        self.seed = seed;
        self
    }

    /// The least time a transfer of `bytes` over `rounds` sequential request rounds can take
    /// on this network: the bytes at the bottleneck's rate plus one round trip per round
    /// (think time and handshakes not counted). `None` without a rate.
    pub fn floor(&self, bytes: u64, rounds: u32) -> Option<Duration> {
        let rate = self.rate_bits_per_sec?;
        Some(Duration::from_secs_f64(bytes as f64 * 8.0 / rate as f64) + self.rtt * rounds)
    }
}

/// A server's think time per request: lognormal around a median, and a fraction of
/// stragglers that take a multiple of their draw.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ThinkTime {
    /// The median think time.
    pub median: Duration,
    /// The lognormal's shape (the standard deviation of the logarithm); 0 is a constant.
    pub sigma: f64,
    /// The fraction of requests that straggle, in `0.0..=1.0`.
    pub straggler_fraction: f64,
    /// How many times slower a straggler is.
    pub straggler_factor: f64,
}

impl ThinkTime {
    /// No think time: the server answers at once.
    pub fn none() -> ThinkTime {
        ThinkTime::lognormal(Duration::ZERO, 0.0)
    }

    /// A lognormal think time with this median and shape, without stragglers.
    pub fn lognormal(median: Duration, sigma: f64) -> ThinkTime {
        ThinkTime {
            median,
            sigma: sigma.max(0.0),
            straggler_fraction: 0.0,
            straggler_factor: 1.0,
        }
    }

    /// Makes `fraction` of the requests take `factor` times their draw.
    pub fn stragglers(mut self, fraction: f64, factor: f64) -> ThinkTime {
        self.straggler_fraction = fraction.clamp(0.0, 1.0);
        self.straggler_factor = factor.max(1.0);
        self
    }
}

/// Loss-like stalls: now and then a connection's server-to-client bytes wait as they would
/// for a retransmission timeout, and its window halves.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Stalls {
    /// The expected number of stalls per MiB carried.
    pub per_mib: f64,
    /// How long each stall holds the connection.
    pub duration: Duration,
}

impl Stalls {
    /// No stalls.
    pub fn none() -> Stalls {
        Stalls::new(0.0, Duration::ZERO)
    }

    /// `per_mib` stalls per MiB on average, each of `duration`.
    pub fn new(per_mib: f64, duration: Duration) -> Stalls {
        Stalls {
            per_mib: per_mib.max(0.0),
            duration,
        }
    }
}
