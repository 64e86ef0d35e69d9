//! `haul-wan`: the WAN emulator as a process, for `benches/peers.sh` (an example,
//! `cargo run --release -p haul-wan --example haul-wan`).
//!
//! ```text
//! haul-wan --listen 127.0.0.1:18090 --upstream 127.0.0.1:18080 --rtt-ms 40 --rate-mbit 1000 \
//!          --think-median-ms 10 --stragglers 0.02
//! ```
//! Prints `LISTENING 127.0.0.1:<port> PID <pid>` once it accepts; on SIGTERM or SIGINT it
//! prints what it carried as one JSON line on standard error and exits 0.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use haul_wan::{Stalls, ThinkTime, Wan, WanConfig};

/// Puts a loopback server across an emulated WAN: propagation delay, one shared bottleneck,
/// a window per connection, server think time with stragglers, loss-like stalls.
#[derive(Parser)]
#[command(name = "haul-wan", version)]
struct Args {
    /// Where clients connect (127.0.0.1:0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The server behind the WAN.
    #[arg(long)]
    upstream: SocketAddr,
    /// Round-trip propagation delay, in milliseconds.
    #[arg(long, default_value_t = 40.0)]
    rtt_ms: f64,
    /// The bottleneck's rate, in Mbit/s, per direction (0: unlimited).
    #[arg(long, default_value_t = 1000)]
    rate_mbit: u64,
    /// One connection's largest window, in KiB.
    #[arg(long, default_value_t = 4096)]
    window_kib: u64,
    /// A new connection's window, in bytes (slow start); 0: no slow start.
    #[arg(long, default_value_t = 14600)]
    initial_window: u64,
    /// The server's median think time per request, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    think_median_ms: f64,
    /// The think time's lognormal shape (standard deviation of its logarithm).
    #[arg(long, default_value_t = 0.5)]
    think_sigma: f64,
    /// The fraction of requests that straggle.
    #[arg(long, default_value_t = 0.0)]
    stragglers: f64,
    /// How many times slower a straggler is.
    #[arg(long, default_value_t = 30.0)]
    straggler_factor: f64,
    /// Loss-like stalls per MiB carried to clients.
    #[arg(long, default_value_t = 0.0)]
    stalls_per_mib: f64,
    /// How long each stall lasts, in milliseconds.
    #[arg(long, default_value_t = 200.0)]
    stall_ms: f64,
    /// The seed of every draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0) / 1000.0)
}

fn main() {
    let a = Args::parse();
    let mut config = WanConfig::default()
        .rtt(ms(a.rtt_ms))
        .window(a.window_kib << 10)
        .initial_window(if a.initial_window == 0 {
            u64::MAX
        } else {
            a.initial_window
        })
        .think(
            ThinkTime::lognormal(ms(a.think_median_ms), a.think_sigma)
                .stragglers(a.stragglers, a.straggler_factor),
        )
        .stalls(Stalls::new(a.stalls_per_mib, ms(a.stall_ms)))
        .seed(a.seed);
    if a.rate_mbit > 0 {
        config = config.rate_mbit(a.rate_mbit);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, std::sync::Arc::clone(&stop)) {
            eprintln!("haul-wan: {e}");
            std::process::exit(1);
        }
    }
    let wan = Wan::start_on(a.listen, a.upstream, config).unwrap_or_else(|e| {
        eprintln!("haul-wan: {e}");
        std::process::exit(1);
    });
    println!("LISTENING {} PID {}", wan.addr(), std::process::id());
    let _ = std::io::stdout().flush();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = wan.stats();
    eprintln!(
        "{{\"connections\":{},\"requests\":{},\"stragglers\":{},\"stalls\":{},\"bytes_up\":{},\"bytes_down\":{}}}",
        s.connections, s.requests, s.stragglers, s.stalls, s.bytes_up, s.bytes_down
    );
    std::process::exit(0);
}
