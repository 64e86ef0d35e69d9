//! The proxy: an accept thread, and for each connection a carrier and a deliverer per
//! direction; all joined when the [`Wan`] is dropped.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::Mutex;

use crate::WanConfig;
use crate::draws::Draws;
use crate::link::Link;
use crate::pipe::{Connection, Pipe, Way, deliver};

/// A proxy's threads stay small: they hold one 64 KiB piece each.
const STACK: usize = 256 << 10;

/// What the proxy has carried so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WanStats {
    /// Connections accepted.
    pub connections: u64,
    /// Requests seen (each drew a think time).
    pub requests: u64,
    /// Requests that straggled.
    pub stragglers: u64,
    /// Loss-like stalls.
    pub stalls: u64,
    /// Bytes from clients to the server.
    pub bytes_up: u64,
    /// Bytes from the server to clients.
    pub bytes_down: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) stragglers: AtomicU64,
    pub(crate) stalls: AtomicU64,
    pub(crate) bytes_up: AtomicU64,
    pub(crate) bytes_down: AtomicU64,
}

struct Shared {
    config: Arc<WanConfig>,
    upstream: SocketAddr,
    up_link: Arc<Link>,
    down_link: Arc<Link>,
    draws: Arc<Draws>,
    counters: Arc<Counters>,
    stopping: AtomicBool,
    /// Both sockets of every open connection, to close them on drop.
    open: Mutex<HashMap<u64, [TcpStream; 2]>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running WAN emulator: a TCP proxy on 127.0.0.1 in front of one upstream address.
///
/// ```no_run
/// use std::time::Duration;
/// use haul_wan::{ThinkTime, Wan, WanConfig};
///
/// let config = WanConfig::default()
///     .rtt(Duration::from_millis(40))
///     .rate_mbit(1000)
///     .think(ThinkTime::lognormal(Duration::from_millis(10), 0.5).stragglers(0.02, 30.0));
/// let wan = Wan::start("127.0.0.1:8080".parse().unwrap(), config)?;
/// println!("the server, across a WAN: http://{}/", wan.addr());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Wan {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accepting: Option<JoinHandle<()>>,
}

impl Wan {
    /// Listens on a free port of 127.0.0.1 and carries every connection to `upstream`.
    pub fn start(upstream: SocketAddr, config: WanConfig) -> io::Result<Wan> {
        Wan::start_on("127.0.0.1:0".parse().expect("an address"), upstream, config)
    }

    /// Listens on `listen` (a loopback address) and carries every connection to `upstream`.
    pub fn start_on(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: WanConfig,
    ) -> io::Result<Wan> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            up_link: Arc::new(Link::new(config.rate_bits_per_sec)),
            down_link: Arc::new(Link::new(config.rate_bits_per_sec)),
            draws: Arc::new(Draws::new(config.think, config.seed)),
            config: Arc::new(config),
            upstream,
            counters: Arc::default(),
            stopping: AtomicBool::new(false),
            open: Mutex::default(),
            threads: Mutex::default(),
        });
        let accepting = std::thread::Builder::new()
            .name("wan-accept".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&shared, &listener)
            })?;
        Ok(Wan {
            addr,
            shared,
            accepting: Some(accepting),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The network it emulates.
    pub fn config(&self) -> &WanConfig {
        &self.shared.config
    }

    /// What it has carried so far.
    pub fn stats(&self) -> WanStats {
        let c = &self.shared.counters;
        WanStats {
            connections: c.connections.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            stragglers: c.stragglers.load(Ordering::Relaxed),
            stalls: c.stalls.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Wan {
    /// Stops accepting, closes every open connection and joins every thread.
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr); // wakes the accept
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
        for [client, server] in self.shared.open.lock().drain().map(|(_, s)| s) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    let mut next_id = 0u64;
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = client else { continue };
        let opened = Instant::now();
        shared.counters.connections.fetch_add(1, Ordering::Relaxed);
        let Ok(server) = TcpStream::connect(shared.upstream) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        next_id += 1;
        if let Err(e) = open(shared, next_id, client, server, opened) {
            log_error(&e);
        }
        shared.threads.lock().retain(|t| !t.is_finished());
    }
}

/// Starts the four threads of one connection.
fn open(
    shared: &Arc<Shared>,
    id: u64,
    client: TcpStream,
    server: TcpStream,
    opened: Instant,
) -> io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    shared
        .open
        .lock()
        .insert(id, [client.try_clone()?, server.try_clone()?]);
    let connection = Arc::new(Connection {
        responses_seen: AtomicU64::new(0),
    });
    let pipe = |way, link: &Arc<Link>| Pipe {
        way,
        config: Arc::clone(&shared.config),
        link: Arc::clone(link),
        draws: Arc::clone(&shared.draws),
        counters: Arc::clone(&shared.counters),
        connection: Arc::clone(&connection),
    };
    let up = pipe(Way::Up { opened }, &shared.up_link);
    let down = pipe(Way::Down, &shared.down_link);
    let (up_tx, up_rx) = crossbeam_channel::bounded(pieces_in(&shared.config));
    let (down_tx, down_rx) = crossbeam_channel::bounded(pieces_in(&shared.config));
    let mut threads = Vec::with_capacity(4);
    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name)
            .stack_size(STACK)
            .spawn(f)
    };
    let (c, s) = (client.try_clone()?, server.try_clone()?);
    threads.push(spawn(
        format!("wan-{id}-up"),
        Box::new(move || up.carry(c, up_tx)),
    )?);
    let (c, s2) = (client.try_clone()?, s);
    threads.push(spawn(
        format!("wan-{id}-to-server"),
        Box::new(move || deliver(s2, c, up_rx)),
    )?);
    let s = server.try_clone()?;
    threads.push(spawn(
        format!("wan-{id}-down"),
        Box::new(move || down.carry(s, down_tx)),
    )?);
    let last = {
        let shared = Arc::clone(shared);
        move || {
            deliver(client, server, down_rx);
            shared.open.lock().remove(&id);
        }
    };
    threads.push(spawn(format!("wan-{id}-to-client"), Box::new(last))?);
    shared.threads.lock().extend(threads);
    Ok(())
}

/// How many pieces a direction may queue: a window's worth and a few more, so that a client
/// that stops reading stops the server as a receive window would.
fn pieces_in(config: &WanConfig) -> usize {
    (config.window_bytes as usize).div_ceil(16 << 10) + 4
}

fn log_error(e: &io::Error) {
    eprintln!("haul-wan: a connection could not start: {e}");
}
