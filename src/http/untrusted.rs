//! A server whose certificate is not trusted: the error says which host and why, and it is
//! never retried (another attempt meets the same certificate).

use std::fmt;

/// A TLS handshake refused the server's certificate.
#[derive(Debug)]
pub struct UntrustedCertificate {
    /// `host:port`.
    pub host: String,
    /// What rustls said (`invalid peer certificate: UnknownIssuer`, …).
    pub reason: String,
}

impl fmt::Display for UntrustedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the certificate of {} is not trusted: {} (a private CA's root can be added: \
             HttpConfig::root_certificate_pem, the CLI's --ca-bundle, AWS_CA_BUNDLE or SSL_CERT_FILE)",
            self.host, self.reason
        )
    }
}

impl std::error::Error for UntrustedCertificate {}

/// `error`, with a refused certificate for `url` made an [`UntrustedCertificate`].
pub(crate) fn explained(error: ureq::Error, url: &str) -> ureq::Error {
    let refused = match &error {
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .filter(|e| matches!(e, rustls::Error::InvalidCertificate(_)))
            .map(ToString::to_string),
        ureq::Error::Rustls(e @ rustls::Error::InvalidCertificate(_)) => Some(e.to_string()),
        _ => None,
    };
    let Some(reason) = refused else {
        return error;
    };
    let host = url::Url::parse(url).ok().map_or_else(
        || "the server".to_owned(),
        |u| {
            let host = u.host_str().unwrap_or("?").to_owned();
            u.port_or_known_default()
                .map_or(host.clone(), |p| format!("{host}:{p}"))
        },
    );
    ureq::Error::Io(std::io::Error::other(UntrustedCertificate { host, reason }))
}

/// The refused certificate inside `error`, if that is what it is.
pub(crate) fn untrusted(error: &ureq::Error) -> Option<&UntrustedCertificate> {
    match error {
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<UntrustedCertificate>(),
        _ => None,
    }
}
