//! A WAN emulator for haul's benches: a TCP proxy on 127.0.0.1 that puts a loopback server
//! across a wide-area network, in user space (this kernel has no netem).
//!
//! What it emulates, per [`WanConfig`]:
//!
//! - **Propagation**: each direction pays half the round trip, so a request on an open
//!   connection costs one round trip and a new connection one more for its handshake (the
//!   client's first bytes leave one round trip after it connected).
//! - **One bottleneck**: a link per direction at a fixed rate, shared by every connection in
//!   the order they send (FIFO), so N parallel transfers together never beat the rate.
//! - **One connection's window**: at most `window` bytes unacknowledged, acknowledgements a
//!   round trip after the bytes left, so one connection moves at most `window / rtt`; a new
//!   connection starts from ten segments and doubles each round trip (slow start).
//! - **Server think time**: each request (a client piece after a response piece, as in
//!   HTTP/1.1) waits a seeded lognormal draw, and a fraction of requests straggle (a
//!   multiple of their draw).
//! - **Loss-like stalls**: now and then a response waits as for a retransmission timeout and
//!   its connection's window halves.
//!
//! [`Wan`] runs it in process (tests, benches); the `haul-wan` binary runs it for
//! `benches/peers.sh`.

mod config;
mod draws;
mod link;
mod pipe;
mod proxy;

pub use config::{Stalls, ThinkTime, WanConfig};
pub use proxy::{Wan, WanStats};
