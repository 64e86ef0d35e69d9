//! One direction of one connection: a carrier thread reads what one side sends and times
//! each piece (window, bottleneck, propagation, think time); a deliverer thread writes each
//! piece to the other side when it is due.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::WanConfig;
use crate::draws::Draws;
use crate::link::Link;
use crate::proxy::Counters;

/// The most one read takes, and so the largest piece timed as one.
const PIECE: usize = 64 << 10;

/// What a carrier hands its deliverer.
pub(crate) enum Piece {
    Bytes {
        bytes: Vec<u8>,
        due: Instant,
    },
    /// The sender closed its side: shut the receiver's write side once all is delivered.
    End {
        due: Instant,
    },
    /// The sender's side failed (a reset): close the receiver's side at once.
    Reset,
}

/// Which way a pipe carries, and what that way pays besides propagation and the link.
pub(crate) enum Way {
    /// Client to server: the first bytes wait for the handshake's round trip, and each new
    /// request waits the server's think time.
    Up { opened: Instant },
    /// Server to client: the way responses go, with loss-like stalls.
    Down,
}

/// What both directions of one connection share.
pub(crate) struct Connection {
    /// Pieces the server has sent so far: a client piece after a new one of these is a new
    /// request (HTTP/1.1 without pipelining).
    pub(crate) responses_seen: AtomicU64,
}

/// One direction: its timing, its link, the draws and the counters.
pub(crate) struct Pipe {
    pub(crate) way: Way,
    pub(crate) config: Arc<WanConfig>,
    pub(crate) link: Arc<Link>,
    pub(crate) draws: Arc<Draws>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) connection: Arc<Connection>,
}

/// The window: what is unacknowledged, and how large it may grow.
struct Window {
    /// Pieces sent and not yet acknowledged: (bytes, when the acknowledgement is back).
    unacked: VecDeque<(usize, Instant)>,
    unacked_bytes: usize,
    current: usize,
    largest: usize,
}

impl Window {
    /// The earliest time at or after `t` when `n` more bytes fit; acknowledgements up to then
    /// open the window (slow start: by what they acknowledge).
    fn fit(&mut self, mut t: Instant, n: usize) -> Instant {
        loop {
            while let Some(&(bytes, acked)) = self.unacked.front() {
                if acked > t {
                    break;
                }
                self.unacked.pop_front();
                self.unacked_bytes -= bytes;
                self.current = (self.current + bytes).min(self.largest);
            }
            if self.unacked_bytes == 0 || self.unacked_bytes + n <= self.current {
                return t;
            }
            t = self.unacked.front().map_or(t, |&(_, acked)| acked);
        }
    }
}

impl Pipe {
    /// Reads `from` until it ends, timing every piece and handing it to the deliverer.
    pub(crate) fn carry(&self, mut from: TcpStream, to: Sender<Piece>) {
        let one_way = self.config.rtt / 2;
        let mut window = Window {
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            current: self.config.initial_window_bytes as usize,
            largest: self.config.window_bytes as usize,
        };
        // The handshake: the client's first bytes leave after SYN and SYN-ACK.
        let mut not_before = match self.way {
            Way::Up { opened } => opened + self.config.rtt,
            Way::Down => Instant::now(),
        };
        let mut last_response_seen = None;
        // Deliveries in order: a piece is never due before the one ahead of it.
        let mut last_due = Instant::now();
        let mut buf = vec![0u8; PIECE];
        loop {
            let want = PIECE.min(window.current.max(1));
            let n = match from.read(&mut buf[..want]) {
                Ok(0) => {
                    let _ = to.send(Piece::End { due: last_due });
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    let _ = to.send(Piece::Reset);
                    return;
                }
            };
            let read_at = Instant::now().max(not_before);
            let mut extra = Duration::ZERO;
            match self.way {
                Way::Up { .. } => {
                    let seen = self.connection.responses_seen.load(Ordering::Acquire);
                    if last_response_seen != Some(seen) {
                        last_response_seen = Some(seen);
                        let think = self.draws.think();
                        self.counters.requests.fetch_add(1, Ordering::Relaxed);
                        if think.straggler {
                            self.counters.stragglers.fetch_add(1, Ordering::Relaxed);
                        }
                        extra = think.time;
                    }
                    self.counters
                        .bytes_up
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Way::Down => {
                    self.connection
                        .responses_seen
                        .fetch_add(1, Ordering::AcqRel);
                    self.counters
                        .bytes_down
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            let mut start = window.fit(read_at, n);
            if matches!(self.way, Way::Down) {
                let stalls = self.config.stalls;
                if self
                    .draws
                    .chance(stalls.per_mib * n as f64 / (1 << 20) as f64)
                {
                    self.counters.stalls.fetch_add(1, Ordering::Relaxed);
                    start += stalls.duration;
                    window.current =
                        (window.current / 2).max(self.config.initial_window_bytes as usize);
                }
            }
            // The piece asks for the link only when the window lets it leave: a connection
            // waiting for its acks must not hold the link for the others meanwhile (the link
            // serves in the order pieces are ready, as a router's queue does).
            sleep_until(start);
            let sent = self.link.send(start, n);
            window.unacked.push_back((n, sent + self.config.rtt));
            window.unacked_bytes += n;
            let due = (sent + one_way + extra).max(last_due);
            last_due = due;
            not_before = sent;
            if to
                .send(Piece::Bytes {
                    bytes: buf[..n].to_vec(),
                    due,
                })
                .is_err()
            {
                return;
            }
            // Hold the next read until this piece has left: the proxy buffers one piece per
            // direction beyond the window, as a router queue would.
            sleep_until(sent);
        }
    }
}

/// Writes each piece to `to` when it is due; when `to` fails, closes `from` too, so the
/// carrier reading it stops.
pub(crate) fn deliver(mut to: TcpStream, from: TcpStream, pieces: Receiver<Piece>) {
    for piece in pieces {
        match piece {
            Piece::Bytes { bytes, due } => {
                sleep_until(due);
                if to.write_all(&bytes).is_err() {
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
            Piece::End { due } => {
                sleep_until(due);
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Piece::Reset => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_holds_bytes_until_acknowledgements_come_back() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Window {
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            current: 1000,
            largest: 4000,
        };
        assert_eq!(w.fit(t0, 1000), t0);
        w.unacked.push_back((1000, t0 + ms(40)));
        w.unacked_bytes = 1000;
        // Full: the next piece waits for the acknowledgement, which doubles the window.
        assert_eq!(w.fit(t0, 1000), t0 + ms(40));
        assert_eq!(w.current, 2000);
        assert_eq!(w.fit(t0 + ms(40), 2000), t0 + ms(40));
        w.unacked.push_back((2000, t0 + ms(80)));
        w.unacked_bytes = 2000;
        assert_eq!(w.fit(t0 + ms(40), 2000), t0 + ms(80));
        assert_eq!(w.current, 4000);
        // It never grows past the largest.
        w.unacked.push_back((4000, t0 + ms(120)));
        w.unacked_bytes = 4000;
        assert_eq!(w.fit(t0 + ms(80), 1), t0 + ms(120));
        assert_eq!(w.current, 4000);
    }
}
