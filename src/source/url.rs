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
}

/// The parts of a URL haul looks at.
struct Parts<'a> {
    path: &'a str,
}

fn split(url: &str) -> Result<Parts<'_>, UrlError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        &url[8..]
    } else {
        return Err(UrlError::Scheme { url: redact(url) });
    };
    let malformed = |reason| UrlError::Malformed {
        url: redact(url),
        reason,
    };
    if url
        .chars()
        .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(malformed("it contains white space or control characters"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.is_empty() || host.starts_with(':') {
        return Err(malformed("it has no host"));
    }
    if let Some((_, port)) = host.rsplit_once(':').filter(|_| !host.ends_with(']'))
        && (port.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(malformed("its port is not a number from 0 to 65535"));
    }
    let after = &rest[authority_end..];
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    Ok(Parts {
        path: &after[..path_end],
    })
}

/// Checks that `url` is an absolute `http` or `https` URL with a host.
///
/// # Errors
///
/// [`UrlError::Scheme`] or [`UrlError::Malformed`].
pub fn check(url: &str) -> Result<(), UrlError> {
    split(url).map(|_| ())
}

/// The object name a URL implies: its last path segment, percent-decoded, without the query.
///
/// ```
/// let name = haul::url::object_name("https://host/data/shard%2001.tar?sig=abc")?;
/// assert_eq!(name.as_str(), "shard 01.tar");
/// # Ok::<(), haul::UrlError>(())
/// ```
///
/// # Errors
///
/// [`UrlError::Name`] when the URL ends in `/`, has no path, or its last segment decodes to
/// something that is not a safe name (`..`, a name with `/` or `\`, invalid UTF-8).
pub fn object_name(url: &str) -> Result<ObjectName, UrlError> {
    let parts = split(url)?;
    let segment = parts.path.rsplit('/').next().unwrap_or("");
    let name_error = |source| UrlError::Name {
        url: redact(url),
        source,
    };
    let decoded = percent_decode(segment).ok_or_else(|| UrlError::Malformed {
        url: redact(url),
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

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `url` with the values of query parameters that look like credentials replaced by
/// `REDACTED` (signatures, credentials, tokens, keys), for errors and logs.
///
/// ```
/// let shown = haul::url::redact("https://b.s3/k?X-Amz-Signature=abc&part=1");
/// assert_eq!(shown, "https://b.s3/k?X-Amz-Signature=REDACTED&part=1");
/// ```
pub fn redact(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
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
