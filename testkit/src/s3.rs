//! A real S3 server inside the test process: s3s + s3s-fs on 127.0.0.1:0, SigV4 checked, on a
//! background thread with its own tokio runtime, counting concurrent requests. Dropping it
//! stops the runtime and joins the thread.
//!
//! With `HAUL_TEST_S3_ENDPOINT` set (and `HAUL_TEST_S3_ACCESS_KEY`, `HAUL_TEST_S3_SECRET_KEY`),
//! [`S3Server::start`] uses that store instead — `.ci/run` points it at SeaweedFS to catch
//! dialect differences. Each test then gets fresh buckets (`<name>-<pid>-<n>`), seeds through
//! PUTs, and has no request counters: [`S3Server::counters`] is `None`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use haul::{Bucket, S3Config};

use super::TestDir;

pub const ACCESS_KEY: &str = "haul-test-key";
pub const SECRET_KEY: &str = "haul-test-secret";
/// The domain of a virtual-hosted in-process server ([`S3Server::start_virtual_hosted`]).
pub const VIRTUAL_DOMAIN: &str = "s3.haul.test";

/// Requests seen by the server.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub active: AtomicU64,
    pub peak: AtomicU64,
    pub gets: AtomicU64,
}

struct Active(Arc<Counters>);

impl Active {
    fn start(c: &Arc<Counters>) -> Active {
        c.requests.fetch_add(1, Ordering::SeqCst);
        let now = c.active.fetch_add(1, Ordering::SeqCst) + 1;
        c.peak.fetch_max(now, Ordering::SeqCst);
        Active(Arc::clone(c))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted as active until its last bytes are handed
/// to the connection — just *before* the client can have them, so the peak the server
/// reports never exceeds what the client really had in flight.
struct CountedBody {
    inner: s3s::Body,
    active: Option<Active>,
    remaining: Option<u64>,
}

impl CountedBody {
    fn new(inner: s3s::Body, active: Active) -> CountedBody {
        let remaining = http_body::Body::size_hint(&inner).exact();
        let mut body = CountedBody {
            inner,
            active: Some(active),
            remaining,
        };
        if body.remaining == Some(0) {
            body.active = None;
        }
        body
    }
}

impl http_body::Body for CountedBody {
    type Data = <s3s::Body as http_body::Body>::Data;
    type Error = <s3s::Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(remaining)) = (frame.data_ref(), self.remaining) {
                    let left = remaining.saturating_sub(data.len() as u64);
                    self.remaining = Some(left);
                    if left == 0 {
                        self.active = None;
                    }
                }
            }
            Poll::Ready(_) => self.active = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The keys an in-process store accepts: its own, and those a credential endpoint handed
/// out (each until it expires; then the store answers `ExpiredToken`).
#[derive(Clone, Default)]
pub struct KeyRing(Arc<parking_lot::Mutex<Keys>>, Arc<AtomicU64>);

/// Each access key's secret, and when it expires.
type Keys = std::collections::HashMap<String, (String, Option<std::time::Instant>)>;

impl KeyRing {
    /// Requests refused because their keys had expired.
    pub fn expired_refusals(&self) -> u64 {
        self.1.load(Ordering::SeqCst)
    }

    /// Accepts `access` with `secret` (until `until`, when given).
    pub fn allow(&self, access: &str, secret: &str, until: Option<std::time::Instant>) {
        self.0
            .lock()
            .insert(access.to_owned(), (secret.to_owned(), until));
    }
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for KeyRing {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        match self.0.lock().get(access_key) {
            None => Err(s3s::s3_error!(InvalidAccessKeyId)),
            Some((_, Some(until))) if std::time::Instant::now() >= *until => {
                self.1.fetch_add(1, Ordering::SeqCst);
                Err(s3s::s3_error!(ExpiredToken))
            }
            Some((secret, _)) => Ok(secret.clone().into()),
        }
    }
}

/// Who may do what: anyone signed, and, while [`S3Server::public_reads`] is on, anyone at
/// all for reads (as a public bucket of AWS Open Data).
struct PublicReads(Arc<super::s3_store::Switches>);

#[async_trait::async_trait]
impl s3s::access::S3Access for PublicReads {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let read = matches!(
            cx.s3_op().name(),
            "GetObject" | "HeadObject" | "ListObjectsV2" | "ListObjects"
        );
        if cx.credentials().is_some() || (read && self.0.public_reads.load(Ordering::SeqCst)) {
            Ok(())
        } else {
            Err(s3s::s3_error!(AccessDenied, "Signature is required"))
        }
    }
}

/// An S3 store for one test: in this process, or an outside one named by the environment.
pub struct S3Server {
    backend: Backend,
}

enum Backend {
    Local(Local),
    External(External),
}

struct Local {
    addr: SocketAddr,
    keys: KeyRing,
    switches: Arc<super::s3_store::Switches>,
    /// The server certificate's PEM, when it speaks HTTPS.
    certificate_pem: Option<String>,
    /// Buckets addressed virtual-hosted style, as `bucket.s3.haul.test:PORT`.
    virtual_hosted: bool,
    buckets: Vec<String>,
    root: TestDir,
    counters: Arc<Counters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct External {
    endpoint: String,
    access_key: String,
    secret_key: String,
    /// Bucket names as the test knows them, and their real, unique names.
    buckets: Vec<(String, String)>,
    /// Suffix for bucket names the test did not ask to create (they stay missing).
    suffix: String,
}

impl S3Server {
    /// Starts a server with the given buckets — in this process, or (with
    /// `HAUL_TEST_S3_ENDPOINT` set) fresh buckets on the outside store.
    pub fn start(buckets: &[&str]) -> S3Server {
        match std::env::var("HAUL_TEST_S3_ENDPOINT") {
            Ok(endpoint) if !endpoint.is_empty() => S3Server {
                backend: Backend::External(External::new(endpoint, buckets)),
            },
            _ => S3Server::start_local(buckets),
        }
    }

    /// Starts a server in this process, whatever the environment says: for tests about the
    /// server itself going away, or that count its requests.
    pub fn start_local(buckets: &[&str]) -> S3Server {
        S3Server::start_with(buckets, false, false)
    }

    /// Starts a server that speaks HTTPS with a fresh self-signed certificate for 127.0.0.1.
    pub fn start_tls(buckets: &[&str]) -> S3Server {
        S3Server::start_with(buckets, true, false)
    }

    /// Starts a server in this process whose buckets are addressed virtual-hosted style, as
    /// on AWS: `http://BUCKET.s3.haul.test:PORT/key` (names no DNS knows: its
    /// [`config`](S3Server::config) and [`resolve_args`](S3Server::resolve_args) say where
    /// they are).
    pub fn start_virtual_hosted(buckets: &[&str]) -> S3Server {
        S3Server::start_with(buckets, false, true)
    }

    fn start_with(buckets: &[&str], tls: bool, virtual_hosted: bool) -> S3Server {
        let root = TestDir::new();
        for bucket in buckets {
            std::fs::create_dir_all(root.path().join(bucket)).unwrap();
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let switches = Arc::new(super::s3_store::Switches::default());
        let store = super::s3_store::Store::new(root.path().to_owned(), Arc::clone(&switches));
        let mut builder = s3s::service::S3ServiceBuilder::new(store);
        let keys = KeyRing::default();
        keys.allow(ACCESS_KEY, SECRET_KEY, None);
        builder.set_auth(keys.clone());
        builder.set_access(PublicReads(Arc::clone(&switches)));
        if virtual_hosted {
            let domain = format!("{VIRTUAL_DOMAIN}:{}", addr.port());
            builder.set_host(s3s::host::SingleDomain::new(&domain).unwrap());
        }
        let service = builder.build();
        let (acceptor, certificate_pem) = if tls {
            let (acceptor, pem) = tls_acceptor();
            (Some(acceptor), Some(pem))
        } else {
            (None, None)
        };
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("test-s3-server".into())
            .spawn({
                let switches = Arc::clone(&switches);
                move || {
                    serve(
                        listener,
                        service,
                        switches,
                        thread_counters,
                        stop_rx,
                        acceptor,
                    )
                }
            })
            .unwrap();
        S3Server {
            backend: Backend::Local(Local {
                addr,
                keys,
                switches,
                certificate_pem,
                virtual_hosted,
                buckets: buckets.iter().map(|b| (*b).to_owned()).collect(),
                root,
                counters,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
        }
    }

    /// Makes the in-process server lie like a V1-only gateway or a buggy proxy: truncated
    /// listing pages carry no continuation token. Panics on an outside store.
    pub fn drop_continuation_tokens(&self, on: bool) {
        self.switches().drop_tokens.store(on, Ordering::SeqCst);
    }

    /// Holds every GET of `key` (in `bucket`) until [`S3Server::release`]. In-process only.
    pub fn gate_key(&self, key: &str) {
        let switches = self.switches();
        switches.gate.send_replace(false);
        *switches.gated_key.lock() = Some(key.to_owned());
    }

    /// Every ListObjectsV2 reply cut to half its length, with a `Content-Length` that
    /// matches (`false`: honest again). In-process only.
    pub fn cut_listings(&self, on: bool) {
        self.switches().cut_listings.store(on, Ordering::SeqCst);
    }

    /// Listing pages of at most `keys` keys, and every page after the first held until
    /// [`S3Server::release`]: a listing that has more to come but has not sent it yet.
    /// In-process only.
    pub fn gate_later_pages(&self, keys: u64) {
        let switches = self.switches();
        switches.gate.send_replace(false);
        switches.page_keys.store(keys, Ordering::SeqCst);
        switches.gated_pages.store(true, Ordering::SeqCst);
    }

    /// Makes the in-process store busy: every PUT (object or part) takes `delay`, and one
    /// that would make more than `most` in progress answers 503 `SlowDown`.
    pub fn busy_puts(&self, most: u64, delay: std::time::Duration) {
        let switches = self.switches();
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        switches.put_delay_ms.store(ms, Ordering::SeqCst);
        switches.busy_puts_above.store(most, Ordering::SeqCst);
    }

    /// PUTs the in-process store answered `SlowDown` (see [`S3Server::busy_puts`]).
    pub fn slowdowns(&self) -> u64 {
        self.switches().slowdowns.load(Ordering::SeqCst)
    }

    /// Makes the in-process store's buckets live in `region`: a request signed for another is
    /// refused the way `answer` says, as S3 refuses it. In-process only.
    pub fn home_region(&self, region: &str, answer: super::s3_store::WrongRegion) {
        *self.switches().home_region.lock() = Some((region.to_owned(), answer));
    }

    /// Requests the in-process store refused for their region (see
    /// [`S3Server::home_region`]).
    pub fn region_refusals(&self) -> u64 {
        self.switches().region_refusals.load(Ordering::SeqCst)
    }

    /// Lets the GETs held by [`S3Server::gate_key`] go on.
    pub fn release(&self) {
        self.switches().gate.send_replace(true);
    }

    fn switches(&self) -> &super::s3_store::Switches {
        match &self.backend {
            Backend::Local(local) => &local.switches,
            Backend::External(_) => panic!("only the in-process store can misbehave"),
        }
    }

    /// Whether this is the in-process server (so counters exist and seeding is a file write).
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local(_))
    }

    /// The requests the server saw: only the in-process server counts them.
    pub fn counters(&self) -> Option<&Counters> {
        match &self.backend {
            Backend::Local(local) => Some(&local.counters),
            Backend::External(_) => None,
        }
    }

    pub fn endpoint(&self) -> String {
        match &self.backend {
            Backend::Local(local) => {
                let scheme = if local.certificate_pem.is_some() {
                    "https"
                } else {
                    "http"
                };
                if local.virtual_hosted {
                    return format!("{scheme}://{VIRTUAL_DOMAIN}:{}", local.addr.port());
                }
                format!("{scheme}://{}", local.addr)
            }
            Backend::External(external) => external.endpoint.clone(),
        }
    }

    /// Lets anyone read (GET, HEAD, list) without signing, or not. Panics on an outside store.
    pub fn public_reads(&self, on: bool) {
        self.switches().public_reads.store(on, Ordering::SeqCst);
    }

    /// The in-process store's key ring, where credential endpoints register the keys they
    /// hand out. Panics on an outside store.
    pub fn key_ring(&self) -> KeyRing {
        match &self.backend {
            Backend::Local(local) => local.keys.clone(),
            Backend::External(_) => panic!("an outside store's keys are its own"),
        }
    }

    /// The access key and secret the server accepts.
    pub fn keys(&self) -> (&str, &str) {
        match &self.backend {
            Backend::Local(_) => (ACCESS_KEY, SECRET_KEY),
            Backend::External(external) => (&external.access_key, &external.secret_key),
        }
    }

    /// The server's socket address (for a proxy in front of it).
    pub fn socket_addr(&self) -> SocketAddr {
        if let Backend::Local(local) = &self.backend {
            return local.addr;
        }
        let endpoint = self.endpoint();
        let authority = endpoint.split("://").nth(1).unwrap().trim_end_matches('/');
        std::net::ToSocketAddrs::to_socket_addrs(authority)
            .unwrap()
            .next()
            .unwrap()
    }

    /// The PEM of the in-process store's self-signed certificate, when it speaks HTTPS.
    pub fn certificate_pem(&self) -> Option<&str> {
        match &self.backend {
            Backend::Local(local) => local.certificate_pem.as_deref(),
            Backend::External(_) => None,
        }
    }

    pub fn config(&self) -> S3Config {
        let config = self.config_at(self.endpoint());
        match &self.backend {
            Backend::Local(local) if local.virtual_hosted => {
                let mut http = config.http.clone();
                for (host, port) in self.virtual_hosts() {
                    http = http.resolve(host, port, local.addr.ip());
                }
                config.path_style(false).http(http)
            }
            _ => config,
        }
    }

    /// The names a virtual-hosted server is reached by (its domain, and each bucket's under
    /// it), with its port; none for others.
    pub fn virtual_hosts(&self) -> Vec<(String, u16)> {
        match &self.backend {
            Backend::Local(local) if local.virtual_hosted => {
                let port = local.addr.port();
                std::iter::once(VIRTUAL_DOMAIN.to_owned())
                    .chain(
                        local
                            .buckets
                            .iter()
                            .map(|b| format!("{b}.{VIRTUAL_DOMAIN}")),
                    )
                    .map(|host| (host, port))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// `--resolve HOST:PORT:ADDR` arguments for the `haul` binary, one per
    /// [`virtual_hosts`](S3Server::virtual_hosts) name.
    pub fn resolve_args(&self) -> Vec<String> {
        let ip = self.socket_addr().ip();
        self.virtual_hosts()
            .into_iter()
            .flat_map(|(host, port)| ["--resolve".to_owned(), format!("{host}:{port}:{ip}")])
            .collect()
    }

    /// A configuration for this server reached at `endpoint` (a proxy in front of it).
    pub fn config_at(&self, endpoint: String) -> S3Config {
        let (access, secret) = self.keys();
        let config = S3Config::new(endpoint, "us-east-1").credentials(access, secret);
        match &self.backend {
            Backend::Local(Local {
                certificate_pem: Some(pem),
                ..
            }) => {
                let http = haul::HttpConfig::default().root_certificate_pem(pem.as_bytes());
                config.http(http)
            }
            _ => config,
        }
    }

    /// A command running `program` (the `haul` binary) with this store's endpoint and keys
    /// in the standard AWS variables.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let (access_key, secret_key) = self.keys();
        let mut command = std::process::Command::new(program);
        command
            .env("AWS_ACCESS_KEY_ID", access_key)
            .env("AWS_SECRET_ACCESS_KEY", secret_key)
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_REGION", "us-east-1");
        command
    }

    /// The real name of the bucket the test calls `name`.
    pub fn bucket_name(&self, name: &str) -> String {
        match &self.backend {
            Backend::Local(_) => name.to_owned(),
            Backend::External(external) => external.real_name(name),
        }
    }

    pub fn bucket(&self, name: &str) -> Bucket {
        Bucket::new(&self.bucket_name(name), &self.config()).unwrap()
    }

    /// Stores an object: straight into the in-process server's directory (fast seeding of
    /// plain keys), or with a PUT on an outside store.
    pub fn seed_file(&self, bucket: &str, key: &str, bytes: &[u8]) {
        match &self.backend {
            Backend::Local(local) => {
                let path = local.root.path().join(bucket).join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
            Backend::External(_) => self
                .bucket(bucket)
                .put(key, bytes)
                .unwrap_or_else(|e| panic!("seeding {key}: {e}")),
        }
    }

    /// Stores an object in the in-process server's directory with what the store keeps about
    /// it besides its bytes (s3s-fs's internal info): `("checksum_crc64nvme", value)`,
    /// `("e_tag", value)`, … A GET returns them as they are, true or not (a lying store).
    ///
    /// # Panics
    ///
    /// On an outside store.
    pub fn seed_with_info(&self, bucket: &str, key: &str, bytes: &[u8], info: &[(&str, &str)]) {
        let Backend::Local(local) = &self.backend else {
            panic!("seed_with_info needs the in-process store");
        };
        self.seed_file(bucket, key, bytes);
        let path = super::s3_store::internal_info_path(local.root.path(), bucket, key);
        let map: serde_json::Map<String, serde_json::Value> = info
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).into()))
            .collect();
        std::fs::write(path, serde_json::to_vec(&map).unwrap()).unwrap();
    }

    /// The checksum with `algorithm` (`crc64nvme`, …) the in-process store keeps for `key`.
    ///
    /// # Panics
    ///
    /// On an outside store.
    pub fn stored_checksum(&self, bucket: &str, key: &str, algorithm: &str) -> Option<String> {
        let Backend::Local(local) = &self.backend else {
            panic!("stored_checksum needs the in-process store");
        };
        let path = super::s3_store::internal_info_path(local.root.path(), bucket, key);
        let info: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        Some(
            info.get(format!("checksum_{algorithm}"))?
                .as_str()?
                .to_owned(),
        )
    }

    /// Stores many objects; on an outside store, with a few PUTs at a time.
    pub fn seed_many(&self, bucket: &str, objects: Vec<(String, Vec<u8>)>) {
        if self.is_local() {
            for (key, bytes) in &objects {
                self.seed_file(bucket, key, bytes);
            }
            return;
        }
        let queue = std::sync::Mutex::new(objects.into_iter());
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    loop {
                        let next = queue.lock().unwrap().next();
                        let Some((key, bytes)) = next else { break };
                        self.seed_file(bucket, &key, &bytes);
                    }
                });
            }
        });
    }
}

impl External {
    fn new(endpoint: String, buckets: &[&str]) -> External {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let env = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| panic!("HAUL_TEST_S3_ENDPOINT needs {name}"))
        };
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let mut external = External {
            endpoint,
            access_key: env("HAUL_TEST_S3_ACCESS_KEY"),
            secret_key: env("HAUL_TEST_S3_SECRET_KEY"),
            buckets: Vec::new(),
            suffix: format!("{}-{n}", std::process::id()),
        };
        let config = S3Config::new(external.endpoint.clone(), "us-east-1")
            .credentials(external.access_key.clone(), external.secret_key.clone());
        for name in buckets {
            let real = external.real_name(name);
            Bucket::new(&real, &config)
                .unwrap()
                .create()
                .unwrap_or_else(|e| panic!("creating bucket {real}: {e}"));
            external.buckets.push((name.to_string(), real));
        }
        external
    }

    fn real_name(&self, name: &str) -> String {
        self.buckets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, real)| real.clone())
            .unwrap_or_else(|| format!("{name}-{}", self.suffix))
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A TLS acceptor (ring provider, like ureq) with a self-signed certificate for 127.0.0.1.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let pem = certified.cert.pem();
    let cert = rustls::pki_types::CertificateDer::from(certified.cert.der().to_vec());
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), pem)
}

fn serve(
    listener: std::net::TcpListener,
    service: s3s::service::S3Service,
    switches: Arc<super::s3_store::Switches>,
    counters: Arc<Counters>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let http =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        loop {
            let socket = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(_) => continue,
                },
                _ = &mut stop => break,
            };
            let _ = socket.set_nodelay(true);
            let service = service.clone();
            let counters = Arc::clone(&counters);
            let switches = Arc::clone(&switches);
            let counted =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let active = Active::start(&counters);
                    if req.method() == hyper::Method::GET {
                        counters.gets.fetch_add(1, Ordering::SeqCst);
                    }
                    let listing = req.method() == hyper::Method::GET
                        && req
                            .uri()
                            .query()
                            .is_some_and(|q| q.split('&').any(|p| p == "list-type=2"));
                    let cut = listing && switches.cut_listings.load(Ordering::SeqCst);
                    let refused = switches.region_refusal(req.method(), req.uri(), req.headers());
                    let call = refused
                        .is_none()
                        .then(|| hyper::service::Service::call(&service, req));
                    async move {
                        let Some(call) = call else {
                            let refusal = refused.expect("refused");
                            let mut response = hyper::Response::builder().status(refusal.status);
                            for (name, value) in refusal.headers {
                                response = response.header(name, value);
                            }
                            let body = s3s::Body::from(refusal.body);
                            let response = response.body(body).expect("a valid refusal");
                            return Ok(response.map(|inner| CountedBody::new(inner, active)));
                        };
                        let mut response = call.await?;
                        if cut
                            && let Ok(whole) = response.body_mut().store_all_limited(64 << 20).await
                        {
                            *response.body_mut() = s3s::Body::from(whole.slice(..whole.len() / 2));
                            response.headers_mut().remove(hyper::header::CONTENT_LENGTH);
                        }
                        Ok::<_, s3s::HttpError>(
                            response.map(|inner| CountedBody::new(inner, active)),
                        )
                    }
                });
            let http = http.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(socket).await else {
                            return;
                        };
                        let io = hyper_util::rt::TokioIo::new(tls);
                        let _ = http.serve_connection(io, counted).await;
                    }
                    None => {
                        let io = hyper_util::rt::TokioIo::new(socket);
                        let _ = http.serve_connection(io, counted).await;
                    }
                }
            });
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
}

/// The composite checksum S3 would keep for `bytes` uploaded in parts of `sizes`
/// (`BASE64-N`: the digest of the parts' digests): computed by s3s, not by haul.
pub fn composite_checksum_of(algorithm: &str, bytes: &[u8], sizes: &[usize]) -> String {
    let mut digests = Vec::new();
    let mut at = 0;
    for size in sizes {
        let part = checksum_of(algorithm, &bytes[at..at + size]);
        digests.extend(base64_simd::STANDARD.decode_to_vec(part).unwrap());
        at += size;
    }
    assert_eq!(at, bytes.len(), "the parts' sizes add up to the bytes");
    format!("{}-{}", checksum_of(algorithm, &digests), sizes.len())
}

/// The checksum S3 would keep for `bytes` with `algorithm` (`crc64nvme`, `crc32c`, `crc32`,
/// `sha1`, `sha256`), in base64: computed by s3s, not by haul.
pub fn checksum_of(algorithm: &str, bytes: &[u8]) -> String {
    use s3s::crypto::Checksum as _;
    let mut hasher = s3s::checksum::ChecksumHasher::default();
    match algorithm {
        "crc64nvme" => hasher.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
        "crc32c" => hasher.crc32c = Some(s3s::crypto::Crc32c::new()),
        "crc32" => hasher.crc32 = Some(s3s::crypto::Crc32::new()),
        "sha1" => hasher.sha1 = Some(s3s::crypto::Sha1::new()),
        "sha256" => hasher.sha256 = Some(s3s::crypto::Sha256::new()),
        other => panic!("no checksum {other}"),
    }
    hasher.update(bytes);
    let sums = hasher.finalize();
    [
        sums.checksum_crc64nvme,
        sums.checksum_crc32c,
        sums.checksum_crc32,
        sums.checksum_sha1,
        sums.checksum_sha256,
    ]
    .into_iter()
    .flatten()
    .next()
    .unwrap()
}
