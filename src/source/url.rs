//! HTTP(S) URLs: validation, the object name a URL implies, and redaction for logs.

use crate::target::name::{NameError, ObjectName};

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL does not start with `http://` or `https://`.
    #[error("unsupported URL {url:?}: the scheme must be http or https")]
    Scheme {
        /// The URL, redacted.
        url: String,
    },
    /// The URL has no host, or is otherwise not a valid URL.
    #[error("malformed URL {url:?}: {reason}")]
    Malformed {
        /// The URL, redacted.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The URL's last path segment is not a usable object name.
    #[error("URL {url:?} gives no usable object name")]
    Name {
        /// The URL, redacted.
        url: String,
        /// Why the name was refused.
        #[source]
        source: NameError,
    },
    /// The URL's path ends in `/` (or is empty): it names a directory, or a site's index,
    /// not a file, so the object needs a name of its own (as `curl -O` refuses it too).
    #[error("URL {url:?} names no file (its path ends in '/'): give the object a name")]
    NoFileName {
        /// The URL, redacted.
        url: String,
    },
}

impl UrlError {
    /// The URL refused, redacted.
    pub fn url(&self) -> &str {
        match self {
            UrlError::Scheme { url }
            | UrlError::Malformed { url, .. }
            | UrlError::Name { url, .. }
            | UrlError::NoFileName { url } => url,
        }
    }
}

/// The raw path of a URL haul accepts, after checking it: an absolute http(s) URL with a
/// host, no white space, and a valid port. The structure is `url`'s (WHATWG) parse; what
/// WHATWG forgives but is surely a mistake here — white space, an empty host before the
/// path — is refused first.
fn checked_path(url: &str) -> Result<&str, UrlError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        &url[8..]
    } else {
        return Err(UrlError::Scheme {
            url: redact_url(url),
        });
    };
    let malformed = |reason| UrlError::Malformed {
        url: redact_url(url),
        reason,
    };
    if url
        .chars()
        .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(malformed("it contains white space or control characters"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..authority_end].rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(malformed("it has no host"));
    }
    match ::url::Url::parse(url) {
        Ok(parsed) if parsed.host().is_some() => {}
        Ok(_) | Err(::url::ParseError::EmptyHost) => return Err(malformed("it has no host")),
        Err(::url::ParseError::InvalidPort) => {
            return Err(malformed("its port is not a number from 0 to 65535"));
        }
        Err(::url::ParseError::InvalidIpv4Address | ::url::ParseError::InvalidIpv6Address) => {
            return Err(malformed("its host is not a valid IP address"));
        }
        Err(_) => return Err(malformed("it is not a valid URL")),
    }
    let after = &rest[authority_end..];
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    Ok(&after[..path_end])
}

/// Checks that `url` is an absolute `http` or `https` URL with a host.
///
/// ```
/// assert!(haul::check_url("https://host:8443/data/x.bin").is_ok());
/// assert!(haul::check_url("ftp://host/x").is_err());
/// ```
///
/// # Errors
///
/// [`UrlError::Scheme`] or [`UrlError::Malformed`].
pub fn check_url(url: &str) -> Result<(), UrlError> {
    checked_path(url).map(|_| ())
}

/// The object name a URL implies: its last path segment, percent-decoded, without the query.
///
/// ```
/// let name = haul::name_from_url("https://host/data/shard%2001.tar?sig=abc")?;
/// assert_eq!(name.as_str(), "shard 01.tar");
/// # Ok::<(), haul::UrlError>(())
/// ```
///
/// # Errors
///
/// [`UrlError::Name`] when the URL ends in `/`, has no path, or its last segment decodes to
/// something that is not a safe name (`..`, a name with `/` or `\`, invalid UTF-8).
pub fn name_from_url(url: &str) -> Result<ObjectName, UrlError> {
    let path = checked_path(url)?;
    let segment = path.rsplit('/').next().unwrap_or("");
    if segment.is_empty() {
        return Err(UrlError::NoFileName {
            url: redact_url(url),
        });
    }
    let name_error = |source| UrlError::Name {
        url: redact_url(url),
        source,
    };
    let decoded = percent_decode(segment).ok_or_else(|| UrlError::Malformed {
        url: redact_url(url),
        reason: "its last path segment has a bad %-escape or is not UTF-8",
    })?;
    if decoded.contains('/') {
        // An encoded slash would smuggle directories into what was one segment.
        return Err(name_error(NameError::BadCharacter {
            name: decoded,
            character: '/',
        }));
    }
    ObjectName::new(decoded).map_err(name_error)
}

/// Decodes `%XX` escapes (percent-encoding's decoder); `None` when an escape is malformed
/// (a `%` without two hex digits, which WHATWG would keep as it is) or the result is not
/// UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `url` with its secrets replaced by `REDACTED`, for errors and logs: the user and password
/// of `user:pass@host`, and the values of query parameters that look like credentials
/// (signatures, credentials, tokens, keys).
///
/// ```
/// let shown = haul::redact_url("https://b.s3/k?X-Amz-Signature=abc&part=1");
/// assert_eq!(shown, "https://b.s3/k?X-Amz-Signature=REDACTED&part=1");
/// assert_eq!(haul::redact_url("https://me:pw@host/x"), "https://REDACTED@host/x");
/// ```
pub fn redact_url(url: &str) -> String {
    let url = redact_userinfo(url);
    let Some((base, query)) = url.split_once('?') else {
        return url;
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(base);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, _)) if is_secret(key) => {
                out.push_str(key);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// `scheme://user:pass@host…` → `scheme://REDACTED@host…`.
fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!(
            "{}REDACTED{}",
            &url[..authority_start],
            &url[authority_start + at..]
        ),
        None => url.to_owned(),
    }
}

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "signature",
        "credential",
        "token",
        "key",
        "sig",
        "secret",
        "password",
    ]
    .iter()
    .any(|s| key.contains(s))
}
