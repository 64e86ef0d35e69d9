//! The shared HTTP client: one ureq `Agent` (one keep-alive pool) per process or per handle.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
    /// Longest wait for any one read of the body to return data. A server that stalls longer
    /// fails the transfer. Default 30 s.
    pub read_timeout: Duration,
    /// The `User-Agent` sent with every request. Default `haul/<version>`.
    pub user_agent: String,
    /// PEM root certificates to trust *instead of* the built-in web PKI roots (a private CA,
    /// or a test server's self-signed certificate). Empty (the default) means the web PKI.
    pub root_certificates_pem: Vec<Vec<u8>>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            idle_connections_per_host: 64,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            user_agent: concat!("haul/", env!("CARGO_PKG_VERSION")).to_owned(),
            root_certificates_pem: Vec::new(),
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

    /// Sets [`read_timeout`](HttpConfig::read_timeout).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }
}

/// A blocking HTTP client with one keep-alive connection pool. Cloning is cheap and shares
/// the pool; it is `Send + Sync`, so every worker thread uses the same one.
#[derive(Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
    config: Arc<HttpConfig>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("config", &self.config)
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
        let mut builder = ureq::Agent::config_builder();
        if !config.root_certificates_pem.is_empty() {
            let mut roots = Vec::new();
            for pem in &config.root_certificates_pem {
                for item in ureq::tls::parse_pem(pem) {
                    match item {
                        Ok(ureq::tls::PemItem::Certificate(cert)) => roots.push(cert),
                        Ok(_) => {}
                        Err(e) => log::warn!("ignoring an unreadable root certificate: {e}"),
                    }
                }
            }
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                .build();
            builder = builder.tls_config(tls);
        }
        let agent_config = builder
            .http_status_as_error(false)
            .max_idle_connections_per_host(config.idle_connections_per_host.max(1))
            .max_idle_connections(config.idle_connections_per_host.max(1) * 4)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_recv_response(Some(config.response_timeout))
            .timeout_per_read(Some(config.read_timeout))
            .user_agent(config.user_agent.as_str())
            .build();
        let agent = ureq::Agent::with_parts(
            agent_config,
            crate::transport::CancellableConnector::default(),
            ureq::unversioned::resolver::DefaultResolver::default(),
        );
        HttpClient {
            agent,
            config: Arc::new(config),
        }
    }

    /// The client's settings.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Sends a GET with `headers`; any status is a response, not an error. `timeout` bounds
    /// the whole call, body included.
    pub(crate) fn get(
        &self,
        url: &str,
        headers: &[(String, String)],
        timeout: Option<Duration>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut request = self.agent.get(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if timeout.is_some() {
            request = request.config().timeout_per_call(timeout).build();
        }
        request.call()
    }

    /// Sends a PUT of `body`; any status is a response, not an error.
    pub(crate) fn put(
        &self,
        url: &str,
        body: &[u8],
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.agent.put(url).send(body)
    }
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
