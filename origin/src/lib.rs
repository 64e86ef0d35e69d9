//! A loopback HTTP/1.1 origin for haul's tests, benchmarks and `haul demo`, that can misbehave
//! on purpose.
//!
//! It serves generated, deterministic bytes for any path ([`body`] gives the expected bytes),
//! with `Content-Length`, `ETag`, byte ranges (`Range`, `If-Range`, 206 and 416) and
//! keep-alive, and counts requests, connections, peak concurrent requests, statuses and body
//! bytes ([`Origin::stats`]). [`Faults`] switch on misbehaviour for the whole origin or per
//! request through the query string, and the [`Gate`] holds responses mid-body until the test
//! releases it, so abort and progress tests need no sleeps.
//!
//! It listens on `127.0.0.1` only, runs one named thread per connection, sets `TCP_NODELAY`
//! (without it a keep-alive client waits ~40 ms per request on delayed ACKs), and joins every
//! thread when dropped.
//!
//! ```
//! use haul_origin::Origin;
//!
//! let origin = Origin::start()?;
//! let url = origin.url("/data/a.bin?size=100&drop_after=10");
//! assert!(url.starts_with("http://127.0.0.1:"));
//! assert_eq!(origin.stats().requests, 0);
//! # Ok::<(), std::io::Error>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub)]

mod conn;
mod content;
mod faults;
mod gate;
mod hub;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

pub use content::{body, fill, seed, versioned_body, versioned_seed};
pub use faults::Faults;
pub use gate::Gate;
pub use hub::{Hub, HubRepo};

/// The object size served when the query has no `size=N`: 64 KiB.
pub const DEFAULT_OBJECT_BYTES: u64 = 64 * 1024;

/// What the origin has seen since it started or since [`Origin::reset_stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OriginStats {
    /// Requests received.
    pub requests: u64,
    /// Connections accepted.
    pub connections: u64,
    /// The most requests in progress at once.
    pub peak_concurrent: u64,
    /// Requests in progress now.
    pub active: u64,
    /// Body bytes sent (headers not counted).
    pub body_bytes: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests by path (without the query).
    pub paths: HashMap<String, u64>,
}

impl OriginStats {
    /// Responses sent with `status`.
    pub fn status_count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Requests received for `path` (without the query).
    pub fn requests_for(&self, path: &str) -> u64 {
        self.paths.get(path).copied().unwrap_or(0)
    }
}

/// Builds an [`Origin`].
#[derive(Debug, Clone)]
pub struct OriginBuilder {
    object_size: u64,
    faults: Faults,
    hub: Option<Hub>,
}

impl OriginBuilder {
    /// The size of objects whose query has no `size=N`. Default [`DEFAULT_OBJECT_BYTES`].
    pub fn object_size(mut self, bytes: u64) -> Self {
        self.object_size = bytes;
        self
    }

    /// Faults applied to every request (a query can override each).
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Answers the Hugging Face Hub's API and resolve paths as `hub` says (see [`Hub`]).
    pub fn hub(mut self, hub: Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    ///
    /// # Errors
    ///
    /// The I/O error from binding or from spawning the accept thread.
    pub fn start(self) -> io::Result<Origin> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            addr,
            object_size: self.object_size,
            faults: Mutex::new(self.faults),
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop_cv: Condvar::new(),
            gate: Gate::new(),
            counters: Mutex::new(Counters::default()),
            body_bytes: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            etag_counter: AtomicU64::new(0),
            version: AtomicU64::new(0),
            path_queries: Mutex::new(HashMap::new()),
            hub: self.hub,
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("haul-origin-accept".into())
            .spawn(move || accept_loop(&accept_shared, listener))?;
        Ok(Origin {
            shared,
            accept: Some(accept),
        })
    }
}

/// A running origin on `127.0.0.1`. Dropping it closes every connection and joins every thread.
#[derive(Debug)]
pub struct Origin {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Origin {
    /// Starts an origin with default settings.
    ///
    /// # Errors
    ///
    /// The I/O error from binding or from spawning the accept thread.
    pub fn start() -> io::Result<Origin> {
        Origin::builder().start()
    }

    /// A builder for an origin with non-default settings.
    pub fn builder() -> OriginBuilder {
        OriginBuilder {
            object_size: DEFAULT_OBJECT_BYTES,
            faults: Faults::default(),
            hub: None,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path_and_query` (which should start with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.shared.addr)
    }

    /// Replaces the faults applied to every request.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock() = faults;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> OriginStats {
        let counters = self.shared.counters.lock();
        OriginStats {
            requests: counters.requests,
            connections: counters.connections,
            peak_concurrent: counters.peak,
            active: counters.active,
            body_bytes: self.shared.body_bytes.load(Ordering::Relaxed),
            statuses: counters.statuses.clone(),
            paths: counters.paths.clone(),
        }
    }

    /// Zeroes the counters, including the per-path counts that `fail_first` uses.
    pub fn reset_stats(&self) {
        let mut counters = self.shared.counters.lock();
        let active = counters.active;
        *counters = Counters {
            active,
            peak: active,
            ..Counters::default()
        };
        self.shared.body_bytes.store(0, Ordering::Relaxed);
    }

    /// The gate that `gate_after=N` responses wait at.
    pub fn gate(&self) -> &Gate {
        &self.shared.gate
    }

    /// Replaces every object with a new version: new bytes
    /// ([`versioned_body`]), a new `ETag` and a new `Last-Modified`, as an upload of new
    /// content would. Returns the new version (1 after the first call). Responses already
    /// under way keep their version.
    pub fn replace_objects(&self) -> u64 {
        self.shared.version.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Answers requests for `path` as if their query started with `query` (the request's
    /// own query still applies on top): for clients that cannot add a query of their own,
    /// such as presigned S3 requests. `set_query("/bucket/key", "size=3000000&status=503")`.
    pub fn set_query(&self, path: &str, query: &str) {
        self.shared
            .path_queries
            .lock()
            .insert(path.to_owned(), query.to_owned());
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.stop_lock.lock();
            self.shared.stop_cv.notify_all();
        }
        self.shared.gate.stop();
        for stream in self.shared.conns.lock().values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        // Wake the accept loop; it sees `stopping` and returns.
        let _ = TcpStream::connect_timeout(&self.shared.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take()
            && accept.join().is_err()
            && !std::thread::panicking()
        {
            panic!("origin accept thread panicked");
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: u64,
    connections: u64,
    active: u64,
    peak: u64,
    statuses: BTreeMap<u16, u64>,
    paths: HashMap<String, u64>,
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    object_size: u64,
    faults: Mutex<Faults>,
    stopping: AtomicBool,
    stop_lock: Mutex<()>,
    stop_cv: Condvar,
    gate: Gate,
    counters: Mutex<Counters>,
    body_bytes: AtomicU64,
    /// A clone of every open connection, so `Drop` can shut them down.
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    etag_counter: AtomicU64,
    /// How often every object was replaced ([`Origin::replace_objects`]).
    version: AtomicU64,
    /// Per-path queries ([`Origin::set_query`]).
    path_queries: Mutex<HashMap<String, String>>,
    /// The emulated Hugging Face Hub, if it is one.
    hub: Option<Hub>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration`, or until the origin stops. Returns false when it stopped.
    fn sleep(&self, duration: Duration) -> bool {
        let deadline = std::time::Instant::now() + duration;
        let mut guard = self.stop_lock.lock();
        while !self.stopping() {
            if self.stop_cv.wait_until(&mut guard, deadline).timed_out() {
                return !self.stopping();
            }
        }
        false
    }

    /// Counts a request for `path` and returns how many requests that path has had.
    fn request_started(&self, path: &str) -> u64 {
        let mut c = self.counters.lock();
        c.requests += 1;
        c.active += 1;
        c.peak = c.peak.max(c.active);
        let n = c.paths.entry(path.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    /// Requests in progress now.
    fn active(&self) -> u64 {
        self.counters.lock().active
    }

    fn request_ended(&self) {
        let mut c = self.counters.lock();
        c.active = c.active.saturating_sub(1);
    }

    fn record_status(&self, status: u16) {
        *self.counters.lock().statuses.entry(status).or_insert(0) += 1;
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    for stream in listener.incoming() {
        if shared.stopping() {
            break;
        }
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let Ok(tracked) = stream.try_clone() else {
            continue;
        };
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        shared.conns.lock().insert(id, tracked);
        shared.counters.lock().connections += 1;
        let conn_shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("haul-origin-conn".into())
            .spawn(move || {
                conn::serve(&conn_shared, &stream);
                // Drop the tracked clone before `stream`, so a reset (SO_LINGER 0) takes
                // effect when the last descriptor closes.
                conn_shared.conns.lock().remove(&id);
                drop(stream);
            });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                log::warn!("origin: cannot spawn a connection thread: {e}");
                shared.conns.lock().remove(&id);
            }
        }
        handles.retain(|h| !h.is_finished());
    }
    for handle in handles {
        let _ = handle.join();
    }
}
