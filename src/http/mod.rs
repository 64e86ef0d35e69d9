//! The shared HTTP client: one keep-alive pool per process or per handle (two ureq `Agent`s
//! in fact, one with buffers for large bodies and one with buffers for small ones).

use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) mod egress;
pub(crate) mod transport;
pub(crate) mod untrusted;

use egress::{EgressPolicy, PolicyResolver};

/// Settings of the shared HTTP client.
///
/// ```
/// use std::time::Duration;
///
/// let config = haul::HttpConfig::default()
///     .idle_connections_per_host(32)
///     .connect_timeout(Duration::from_secs(5));
/// let client = haul::HttpClient::new(config);
/// # drop(client);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Idle keep-alive connections kept per host. Size it to the number of threads that talk
    /// to one host: ureq's own default of 3 makes 16 threads open a new connection for most
    /// requests. Default 64.
    pub idle_connections_per_host: usize,
    /// Longest wait for a TCP (and TLS) connection. Default 10 s.
    pub connect_timeout: Duration,
    /// Longest wait from sending a request to the end of the response headers. Default 30 s.
    pub response_timeout: Duration,
    /// The stall rule's window: a transfer that receives fewer than
    /// [`stall_min_bytes`](HttpConfig::stall_min_bytes) in this long (or nothing at all in
    /// any one read), or whose peer takes nothing of a write for this long, is abandoned,
    /// and retried by the [`RetryPolicy`](crate::RetryPolicy). Default 30 s.
    pub stall_window: Duration,
    /// The stall rule's floor: fewer bytes than this in a whole
    /// [`stall_window`](HttpConfig::stall_window) is a stall. Default 1 KiB (the rule then
    /// only catches a server that has all but stopped; raise it to demand a minimum speed).
    pub stall_min_bytes: u64,
    /// Which addresses may be connected to. Default [`EgressPolicy::Any`].
    pub egress: EgressPolicy,
    /// The receive buffer of each connection, allocated on its first use. Default 1 MiB:
    /// ureq's own 128 KiB made a 1 GiB loopback stream 2–3× slower, one `recv` per 128 KiB
    /// (BENCHMARKS.md, case b).
    pub input_buffer_bytes: usize,
    /// The `User-Agent` sent with every request. Default `haul/<version>`.
    pub user_agent: String,
    /// PEM root certificates to trust *besides* the machine's (a private CA, a corporate
    /// proxy's, a test server's self-signed certificate).
    ///
    /// The machine's trust store is read once per process (`rustls-native-certs`: the
    /// system bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set); on a machine that has
    /// none, and with no roots added here, the bundled web PKI roots are trusted instead.
    pub root_certificates_pem: Vec<Vec<u8>>,
    /// Addresses to connect to for some `host:port`s instead of asking DNS, as curl's
    /// `--resolve HOST:PORT:ADDR`: to reach a store's virtual-hosted bucket names, a staging
    /// server under its production name, or a test server. The egress policy still judges
    /// the address. Default none.
    pub resolve: Vec<(String, u16, std::net::IpAddr)>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            idle_connections_per_host: 64,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            stall_window: Duration::from_secs(30),
            stall_min_bytes: 1024,
            egress: EgressPolicy::Any,
            input_buffer_bytes: 1 << 20,
            user_agent: concat!("haul/", env!("CARGO_PKG_VERSION")).to_owned(),
            root_certificates_pem: Vec::new(),
            resolve: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// Sets [`idle_connections_per_host`](HttpConfig::idle_connections_per_host).
    pub fn idle_connections_per_host(mut self, n: usize) -> Self {
        self.idle_connections_per_host = n;
        self
    }

    /// Sets [`connect_timeout`](HttpConfig::connect_timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`response_timeout`](HttpConfig::response_timeout).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Adds a PEM root certificate to [`root_certificates_pem`](HttpConfig::root_certificates_pem).
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates_pem.push(pem.into());
        self
    }

    /// Sets the stall rule: fewer than `min_bytes` in `window` abandons the attempt.
    pub fn stall(mut self, min_bytes: u64, window: Duration) -> Self {
        self.stall_min_bytes = min_bytes;
        self.stall_window = window;
        self
    }

    /// Connects to `addr` for `host:port` (see [`resolve`](HttpConfig::resolve)).
    ///
    /// ```
    /// let config = haul::HttpConfig::default().resolve("data.s3.internal", 9000, [127, 0, 0, 1].into());
    /// assert_eq!(config.resolve.len(), 1);
    /// ```
    pub fn resolve(mut self, host: impl Into<String>, port: u16, addr: std::net::IpAddr) -> Self {
        self.resolve
            .push((host.into().to_ascii_lowercase(), port, addr));
        self
    }

    /// Sets [`egress`](HttpConfig::egress).
    pub fn egress(mut self, policy: EgressPolicy) -> Self {
        self.egress = policy;
        self
    }
}

/// The receive buffer of connections for small bodies ([`Body::Small`]).
const SMALL_INPUT_BYTES: usize = 64 * 1024;
/// The send buffer of those connections: a GET's request head.
const SMALL_OUTPUT_BYTES: usize = 32 * 1024;

/// What a request expects back, which decides the connection's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// Any size: the configured 1 MiB receive buffer, so a long stream moves in few reads.
    Any,
    /// Small bodies (a host whose objects have been small): 64 KiB buffers, so hundreds of
    /// connections in flight do not hold a megabyte each.
    Small,
}

/// A blocking HTTP client with one keep-alive connection pool. Cloning is cheap and shares
/// the pool; it is `Send + Sync`, so every worker thread uses the same one.
#[derive(Clone)]
pub struct HttpClient {
    /// For `http://` URLs.
    plain: Agents,
    shared: Arc<Shared>,
}

/// What a client's clones share besides the plain agents.
struct Shared {
    config: HttpConfig,
    /// For `https://` URLs: the same settings, trusting the roots; made on the first such
    /// URL (reading the machine's trust store doubled a plain run's start-up, 10 → 20 ms).
    tls: std::sync::OnceLock<Agents>,
}

/// One client's two agents: large buffers, and the same settings with small buffers (its
/// own connections, allocated on first use).
#[derive(Clone)]
struct Agents {
    any: ureq::Agent,
    small: ureq::Agent,
}

impl Agents {
    /// Agents for `config`, with the roots TLS verifies against (plain HTTP: none).
    fn new(config: &HttpConfig, roots: Option<ureq::tls::RootCerts>) -> Agents {
        let agent = |buffers: Option<(usize, usize)>| {
            ureq::Agent::with_parts(
                agent_config(config, buffers, roots.clone()),
                crate::http::transport::CancellableConnector::default(),
                PolicyResolver::new(config.egress, config.resolve.clone()),
            )
        };
        Agents {
            any: agent(None),
            small: agent(Some((SMALL_INPUT_BYTES, SMALL_OUTPUT_BYTES))),
        }
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new(HttpConfig::default())
    }
}

impl HttpClient {
    /// A client with `config`.
    pub fn new(config: HttpConfig) -> HttpClient {
        HttpClient {
            plain: Agents::new(&config, None),
            shared: Arc::new(Shared {
                config,
                tls: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The agents for `url`: a TLS one for `https://`. (The engine follows redirects
    /// itself, so every request's scheme is known here.)
    fn agents(&self, url: &str) -> &Agents {
        let tls = url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
        if !tls {
            return &self.plain;
        }
        let config = &self.shared.config;
        self.shared
            .tls
            .get_or_init(|| Agents::new(config, Some(root_certs(&config.root_certificates_pem))))
    }

    /// The client's settings.
    pub fn config(&self) -> &HttpConfig {
        &self.shared.config
    }

    /// Sends a GET with `headers`; any status is a response, not an error. `timeout` bounds
    /// the whole call, body included.
    pub(crate) fn get(
        &self,
        url: &str,
        headers: &[(String, String)],
        timeout: Option<Duration>,
        body: Body,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let agents = self.agents(url);
        let agent = match body {
            Body::Any => &agents.any,
            Body::Small => &agents.small,
        };
        let mut request = agent.get(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if timeout.is_some() {
            request = request.config().timeout_per_call(timeout).build();
        }
        request.call().map_err(|e| untrusted::explained(e, url))
    }

    /// Sends a request with `method` and `body` (empty: none); any status is a response, not
    /// an error.
    pub(crate) fn send(
        &self,
        method: ureq::http::Method,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(body).map_err(ureq::Error::from)?;
        self.agents(url)
            .any
            .run(request)
            .map_err(|e| untrusted::explained(e, url))
    }
}

/// The machine's root certificates, read once per process.
fn system_roots() -> &'static [ureq::tls::Certificate<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<ureq::tls::Certificate<'static>>> =
        std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            log::debug!("reading the machine's root certificates: {error}");
        }
        found
            .certs
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
            .collect()
    })
}

/// The roots a client trusts: the machine's and `extra` (PEM); the bundled web PKI when the
/// machine has none and nothing is added.
fn root_certs(extra: &[Vec<u8>]) -> ureq::tls::RootCerts {
    let mut roots = system_roots().to_vec();
    let system = roots.len();
    for pem in extra {
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => roots.push(cert),
                Ok(_) => {}
                Err(e) => log::warn!("ignoring an unreadable root certificate: {e}"),
            }
        }
    }
    if roots.is_empty() {
        return ureq::tls::RootCerts::WebPki;
    }
    if system == 0 {
        log::debug!("the machine has no root certificates: trusting only the ones given");
    }
    ureq::tls::RootCerts::new_with_certs(&roots)
}

/// ureq's settings for `config`; `buffers` overrides the receive and send buffers, `roots`
/// are those TLS trusts.
fn agent_config(
    config: &HttpConfig,
    buffers: Option<(usize, usize)>,
    roots: Option<ureq::tls::RootCerts>,
) -> ureq::config::Config {
    let mut builder = ureq::Agent::config_builder();
    if let Some(roots) = roots {
        builder = builder.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
    }
    if config.egress != EgressPolicy::Any {
        // The resolver must see the target, not a proxy from the environment.
        builder = builder.proxy(None);
    }
    builder = builder
        .http_status_as_error(false)
        // The engine follows redirects itself, deciding which headers may cross
        // (`engine::request`); ureq hands it every 3xx as it is.
        .max_redirects(0)
        .input_buffer_size(config.input_buffer_bytes.max(16 * 1024))
        .max_idle_connections_per_host(config.idle_connections_per_host.max(1))
        .max_idle_connections(config.idle_connections_per_host.max(1) * 4)
        .timeout_connect(Some(config.connect_timeout))
        .timeout_recv_response(Some(config.response_timeout))
        .timeout_per_read(Some(config.stall_window))
        // A write that the peer does not read for a whole window is a stall too.
        .timeout_per_write(Some(config.stall_window))
        .user_agent(config.user_agent.as_str());
    if let Some((input, output)) = buffers {
        builder = builder.input_buffer_size(input).output_buffer_size(output);
    }
    builder.build()
}

/// The announced body length: `Content-Length`, unless the body is chunked.
pub(crate) fn content_length(headers: &ureq::http::HeaderMap) -> Option<u64> {
    if headers.contains_key("transfer-encoding") {
        return None;
    }
    headers
        .get("content-length")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The stall rule broke an attempt off: fewer than the rule's bytes arrived in its window
/// (see [`HttpConfig::stall`]). It is the source of the `io::Error` the attempt failed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stalled: {received} bytes in {window:?}, fewer than {min_bytes}")]
pub struct Stalled {
    /// Bytes received in the window.
    pub received: u64,
    /// The rule's floor.
    pub min_bytes: u64,
    /// The rule's window.
    pub window: Duration,
}

/// A `Read` wrapper that enforces the stall rule on the bytes it passes through. A read that
/// returns nothing at all for a whole window is ended by the client's per-read timeout; this
/// catches a trickle.
#[derive(Debug)]
pub(crate) struct StallGuard<R> {
    inner: R,
    min_bytes: u64,
    window: Duration,
    started: Instant,
    received: u64,
}

impl<R: Read> StallGuard<R> {
    pub(crate) fn new(inner: R, config: &HttpConfig) -> StallGuard<R> {
        StallGuard {
            inner,
            min_bytes: config.stall_min_bytes,
            window: config.stall_window,
            started: Instant::now(),
            received: 0,
        }
    }
}

impl<R: Read> Read for StallGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.received += n as u64;
        if n > 0 && self.started.elapsed() >= self.window {
            if self.received < self.min_bytes {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    Stalled {
                        received: self.received,
                        min_bytes: self.min_bytes,
                        window: self.window,
                    },
                ));
            }
            self.started = Instant::now();
            self.received = 0;
        }
        Ok(n)
    }
}
