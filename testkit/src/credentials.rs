//! Credential endpoints on 127.0.0.1 for the credential chain's tests: instance metadata
//! (IMDSv2), a container credentials endpoint and STS's `AssumeRoleWithWebIdentity`. Each
//! call hands out fresh keys, registered in a store's [`KeyRing`] for `lifetime`, so a
//! listing the store accepts proves the keys came from the endpoint.
//!
//! | request | answer |
//! |---|---|
//! | `PUT /latest/api/token` with `x-aws-ec2-metadata-token-ttl-seconds` | the IMDS token |
//! | `GET /latest/meta-data/iam/security-credentials/` with the token | `test-role` |
//! | `GET /latest/meta-data/iam/security-credentials/test-role` with the token | keys (JSON) |
//! | `GET /container` with `Authorization:` [`CONTAINER_TOKEN`] | keys (JSON) |
//! | `POST /` `Action=AssumeRoleWithWebIdentity&WebIdentityToken=`[`WEB_TOKEN`]… | keys (XML) |

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::s3::KeyRing;

/// The container endpoint's authorization token.
pub const CONTAINER_TOKEN: &str = "container-secret-token";
/// The web identity token STS accepts.
pub const WEB_TOKEN: &str = "web-identity-token";
const IMDS_TOKEN: &str = "imds-session-token";

/// Keys handed out, by kind.
#[derive(Debug, Default)]
pub struct Issued {
    /// By instance metadata.
    pub imds: AtomicU64,
    /// By the container endpoint.
    pub container: AtomicU64,
    /// By STS.
    pub sts: AtomicU64,
    /// Requests refused (a wrong or missing token).
    pub refused: AtomicU64,
}

/// The endpoints; they stop when dropped.
pub struct CredentialServer {
    addr: SocketAddr,
    issued: Arc<Issued>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CredentialServer {
    /// Starts the endpoints; keys they hand out are good in `keys` for `lifetime`.
    pub fn start(keys: KeyRing, lifetime: Duration) -> CredentialServer {
        CredentialServer::start_revoking(keys, lifetime, lifetime)
    }

    /// Starts the endpoints; keys they hand out say they are good for `lifetime`, but the
    /// store takes them for `accepted` only (a session revoked early, or clocks apart).
    pub fn start_revoking(
        keys: KeyRing,
        lifetime: Duration,
        accepted: Duration,
    ) -> CredentialServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let issued = Arc::new(Issued::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (issued_t, stop_t) = (Arc::clone(&issued), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("test-credentials".into())
            .spawn(move || {
                while !stop_t.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                            let _ = serve(stream, &keys, (lifetime, accepted), &issued_t);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2)); // the accept loop's poll
                        }
                        Err(_) => return,
                    }
                }
            })
            .unwrap();
        CredentialServer {
            addr,
            issued,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it handed out.
    pub fn issued(&self) -> &Issued {
        &self.issued
    }
}

impl Drop for CredentialServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request on its connection (closed after the answer).
fn serve(
    stream: TcpStream,
    keys: &KeyRing,
    (lifetime, accepted): (Duration, Duration),
    issued: &Issued,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let header = |name: &str| headers.get(name).map(String::as_str);
    let mint = |kind: &str, counter: &AtomicU64| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let access = format!("ASIA{}{n}", kind.to_ascii_uppercase());
        let secret = format!("{kind}-secret-{n}");
        keys.allow(&access, &secret, Some(Instant::now() + accepted));
        let expires = time::OffsetDateTime::from(SystemTime::now() + lifetime)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        (access, secret, format!("{kind}-session-{n}"), expires)
    };
    let json = |(access, secret, token, expires): (String, String, String, String)| {
        serde_json::json!({
            "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": access,
            "SecretAccessKey": secret, "Token": token, "Expiration": expires,
        })
        .to_string()
    };
    let imds_ok = header("x-aws-ec2-metadata-token") == Some(IMDS_TOKEN);
    let (status, text) = match (method.as_str(), path.as_str()) {
        ("PUT", "/latest/api/token")
            if header("x-aws-ec2-metadata-token-ttl-seconds").is_some() =>
        {
            (200, IMDS_TOKEN.to_owned())
        }
        ("GET", "/latest/meta-data/iam/security-credentials/") if imds_ok => {
            (200, "test-role\n".to_owned())
        }
        ("GET", "/latest/meta-data/iam/security-credentials/test-role") if imds_ok => {
            (200, json(mint("imds", &issued.imds)))
        }
        ("GET", "/container") if header("authorization") == Some(CONTAINER_TOKEN) => {
            (200, json(mint("container", &issued.container)))
        }
        ("POST", "/") => {
            let form: HashMap<String, String> =
                url::form_urlencoded::parse(&body).into_owned().collect();
            let good = form.get("Action").map(String::as_str) == Some("AssumeRoleWithWebIdentity")
                && form.get("WebIdentityToken").map(String::as_str) == Some(WEB_TOKEN)
                && form.contains_key("RoleArn");
            if good {
                let (access, secret, token, expires) = mint("sts", &issued.sts);
                (
                    200,
                    format!(
                        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                     <AccessKeyId>{access}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>\
                     <SessionToken>{token}</SessionToken><Expiration>{expires}</Expiration>\
                     </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
                    ),
                )
            } else {
                issued.refused.fetch_add(1, Ordering::SeqCst);
                (403, "<ErrorResponse><Error><Code>AccessDenied</Code><Message>bad web identity token</Message></Error></ErrorResponse>".to_owned())
            }
        }
        _ => {
            issued.refused.fetch_add(1, Ordering::SeqCst);
            (401, "refused".to_owned())
        }
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}
