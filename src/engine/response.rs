//! Every response is checked before a byte of it is used: its status and `Content-Range`
//! against what was asked, its validators and size against the object's first response.
//!
//! haul does not trust a server to honour `If-Range` or `If-Match` (caches and gateways
//! drop them), to answer a range from where it was asked (some answer from offset 0), or to
//! keep an object's size: a 206 is used only when its `Content-Range` starts at the offset
//! asked, ends where asked (or at the object's end), announces the total the first response
//! did, and carries the same validators.

use ureq::http::HeaderMap;

use crate::engine::verify::{CHECKSUM_HEADERS, StoreChecksum};

/// What a response says about the object (the version of it) it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObjectInfo {
    /// The whole object's size, when the response told.
    pub(crate) total: Option<u64>,
    /// The `ETag` as sent, quotes kept.
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    /// A full-object checksum the store returned (`x-amz-checksum-*`, not a composite one).
    pub(crate) checksum: Option<StoreChecksum>,
    /// A composite checksum the store returned instead (of the parts' checksums: the bytes
    /// can be checked against it only once the parts' sizes are known).
    pub(crate) composite: Option<StoreChecksum>,
    /// Server-side encryption with KMS or a customer key: the ETag is then not the MD5.
    pub(crate) encrypted: bool,
    /// Whether the server said it serves byte ranges (`Accept-Ranges: bytes`).
    pub(crate) ranges: bool,
}

impl ObjectInfo {
    /// The validators and checksums of `headers` (the total is the framing's to say).
    pub(crate) fn of(headers: &HeaderMap) -> ObjectInfo {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let encrypted = text("x-amz-server-side-encryption").is_some_and(|v| v != "AES256")
            || text("x-amz-server-side-encryption-customer-algorithm").is_some();
        let returned = CHECKSUM_HEADERS
            .iter()
            .find_map(|(name, algorithm)| text(name).map(|value| (*algorithm, value)));
        // A composite checksum (`…-N`) is of the parts' checksums, not the bytes.
        let composite = text("x-amz-checksum-type").is_some_and(|t| t == "COMPOSITE")
            || returned.as_ref().is_some_and(|(_, v)| v.contains('-'));
        let (checksum, composite) = match returned {
            Some((algorithm, value)) => {
                let checksum = StoreChecksum {
                    algorithm,
                    value,
                    parts: None,
                };
                if composite {
                    (None, Some(checksum))
                } else {
                    (Some(checksum), None)
                }
            }
            None => (None, None),
        };
        ObjectInfo {
            total: None,
            etag: text("etag"),
            last_modified: text("last-modified"),
            checksum,
            composite,
            encrypted,
            ranges: text("accept-ranges").is_some_and(|v| v.eq_ignore_ascii_case("bytes")),
        }
    }

    /// A version known from a listing: its ETag (quoted, as responses carry it) and size.
    pub(crate) fn listed(etag: Option<&str>, size: Option<u64>) -> ObjectInfo {
        ObjectInfo {
            total: size,
            etag: etag.map(|e| format!("\"{}\"", e.trim_matches('"'))),
            ..ObjectInfo::default()
        }
    }

    /// The ETag when it is strong (not `W/`).
    pub(crate) fn strong_etag(&self) -> Option<&str> {
        self.etag.as_deref().filter(|e| !e.starts_with("W/"))
    }

    /// What `If-Range` can carry: a strong ETag, else `Last-Modified`.
    pub(crate) fn validator(&self) -> Option<&str> {
        self.strong_etag().or(self.last_modified.as_deref())
    }

    /// The ETag without its quotes, as S3 listings and `Object::etag` show it.
    pub(crate) fn etag_unquoted(&self) -> Option<&str> {
        self.etag.as_deref().map(|e| e.trim_matches('"'))
    }

    /// The MD5 an S3 single-part upload's ETag stands for (none for multipart ETags, weak
    /// ones, or objects encrypted with KMS or a customer key).
    pub(crate) fn md5(&self) -> Option<[u8; 16]> {
        if self.encrypted {
            return None;
        }
        crate::engine::verify::etag_md5(self.strong_etag()?)
    }

    /// Why a later response, `other`, is not of this version; `None` when nothing shows it.
    /// A validator one response lacks cannot be compared, so it proves nothing.
    pub(crate) fn differs(&self, other: &ObjectInfo) -> Option<String> {
        if let (Some(a), Some(b)) = (&self.etag, &other.etag)
            && a != b
        {
            return Some(format!("its ETag is {b}, was {a}"));
        }
        if let (Some(a), Some(b)) = (&self.last_modified, &other.last_modified)
            && a != b
        {
            return Some(format!("its Last-Modified is {b}, was {a}"));
        }
        if let (Some(a), Some(b)) = (self.total, other.total)
            && a != b
        {
            return Some(format!("its size is {b} bytes, was {a}"));
        }
        None
    }
}

/// The bytes an attempt asks for: from `start` to `end` (exclusive), or to the object's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asked {
    pub(crate) start: u64,
    pub(crate) end: Option<u64>,
}

impl Asked {
    /// The `Range` header that asks for it; `None` for the whole object.
    pub(crate) fn range(&self) -> Option<String> {
        match self.end {
            None if self.start == 0 => None,
            None => Some(format!("bytes={}-", self.start)),
            Some(end) => Some(format!("bytes={}-{}", self.start, end.saturating_sub(1))),
        }
    }
}

/// Which bytes of the object a response's body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Framing {
    /// Offset of the body's first byte in the object.
    pub(crate) start: u64,
    /// The body's length, when announced.
    pub(crate) len: Option<u64>,
    /// The object's size, when announced.
    pub(crate) total: Option<u64>,
}

/// The framing of a 200 or 206 answer to `asked`, or why it cannot be used. A 200 is the
/// whole object from offset 0 (whatever was asked: the caller decides whether that will
/// do); a 206 must be exactly the range asked, clamped at the object's end.
pub(crate) fn framing(status: u16, headers: &HeaderMap, asked: Asked) -> Result<Framing, String> {
    let len = crate::http::content_length(headers);
    if status == 200 {
        return Ok(Framing {
            start: 0,
            len,
            total: len,
        });
    }
    let range = headers
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let Some((first, last, total)) = range.and_then(content_range) else {
        return Err(match range {
            Some(range) => format!("a 206 with Content-Range {range:?}"),
            None => "a 206 without Content-Range (several ranges?)".to_owned(),
        });
    };
    let shown = range.unwrap_or_default();
    if first != asked.start {
        return Err(format!(
            "Content-Range {shown} starts at byte {first}, not at {} as asked",
            asked.start
        ));
    }
    let end = last + 1;
    let ends_right = match (asked.end, total) {
        (Some(asked_end), Some(total)) => end == asked_end.min(total),
        (Some(asked_end), None) => end == asked_end,
        (None, Some(total)) => end == total,
        (None, None) => true,
    };
    if !ends_right || total.is_some_and(|t| end > t) {
        let wanted = asked
            .end
            .map_or("the end".to_owned(), |e| format!("byte {e}"));
        return Err(format!(
            "Content-Range {shown} does not end at {wanted} as asked"
        ));
    }
    if let Some(len) = len
        && len != end - first
    {
        return Err(format!(
            "Content-Range {shown} holds {} bytes, Content-Length says {len}",
            end - first
        ));
    }
    Ok(Framing {
        start: first,
        len: Some(end - first),
        total,
    })
}

/// `bytes FIRST-LAST/TOTAL` → (first, last inclusive, total when known).
pub(crate) fn content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    (last >= first).then_some((first, last, total))
}

/// The size a 416's `Content-Range: bytes */SIZE` gives: the object's whole length.
pub(crate) fn unsatisfied_size(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("content-range")?
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes */")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn asked(start: u64, end: Option<u64>) -> Asked {
        Asked { start, end }
    }

    #[test]
    fn a_206_must_be_the_range_asked() {
        let ok = |range: &str, len: &str, a: Asked| {
            framing(
                206,
                &headers(&[("content-range", range), ("content-length", len)]),
                a,
            )
        };
        // Exactly as asked, an open range to the end, and a range clamped at the end.
        assert_eq!(
            ok("bytes 100-199/1000", "100", asked(100, Some(200))),
            Ok(Framing {
                start: 100,
                len: Some(100),
                total: Some(1000)
            })
        );
        assert!(ok("bytes 100-999/1000", "900", asked(100, None)).is_ok());
        assert!(ok("bytes 900-999/1000", "100", asked(900, Some(2000))).is_ok());
        assert!(ok("bytes 100-199/*", "100", asked(100, Some(200))).is_ok());
        // From the wrong place, to the wrong place, longer than the object, lying lengths.
        let wrong = ok("bytes 0-99/1000", "100", asked(100, Some(200))).unwrap_err();
        assert!(wrong.contains("starts at byte 0, not at 100"), "{wrong}");
        assert!(ok("bytes 100-149/1000", "50", asked(100, Some(200))).is_err());
        assert!(ok("bytes 100-499/1000", "400", asked(100, None)).is_err());
        assert!(ok("bytes 100-199/150", "100", asked(100, Some(200))).is_err());
        assert!(ok("bytes 100-199/1000", "99", asked(100, Some(200))).is_err());
        assert!(framing(206, &HeaderMap::new(), asked(0, Some(10))).is_err());
        assert!(ok("bytes 9-3/1000", "1", asked(9, None)).is_err());
        // A 200 is the whole object; the caller decides what it is worth.
        assert_eq!(
            framing(200, &headers(&[("content-length", "7")]), asked(3, None)),
            Ok(Framing {
                start: 0,
                len: Some(7),
                total: Some(7)
            })
        );
    }

    #[test]
    fn versions_differ_by_what_both_responses_say() {
        let v = |etag: Option<&str>, lm: Option<&str>, total: Option<u64>| ObjectInfo {
            etag: etag.map(str::to_owned),
            last_modified: lm.map(str::to_owned),
            total,
            ..ObjectInfo::default()
        };
        let first = v(
            Some("\"a\""),
            Some("Mon, 01 Jan 2024 00:00:00 GMT"),
            Some(10),
        );
        assert_eq!(first.differs(&first.clone()), None);
        assert!(first.differs(&v(Some("\"b\""), None, None)).is_some());
        assert!(
            first
                .differs(&v(None, Some("Tue, 02 Jan 2024 00:00:00 GMT"), None))
                .is_some()
        );
        assert!(first.differs(&v(None, None, Some(11))).is_some());
        assert_eq!(
            first.differs(&v(None, None, None)),
            None,
            "nothing to compare"
        );
        assert_eq!(first.validator(), Some("\"a\""));
        assert_eq!(v(Some("W/\"a\""), Some("d"), None).validator(), Some("d"));
        assert_eq!(
            ObjectInfo::listed(Some("abc"), Some(3)).etag.as_deref(),
            Some("\"abc\"")
        );
    }

    #[test]
    fn ranges_as_asked() {
        assert_eq!(asked(0, None).range(), None);
        assert_eq!(asked(5, None).range().as_deref(), Some("bytes=5-"));
        assert_eq!(asked(0, Some(10)).range().as_deref(), Some("bytes=0-9"));
        assert_eq!(content_range("bytes 0-9/10"), Some((0, 9, Some(10))));
        assert_eq!(content_range("bytes 0-9/*"), Some((0, 9, None)));
        assert_eq!(content_range("bytes */10"), None);
        assert_eq!(
            unsatisfied_size(&headers(&[("content-range", "bytes */42")])),
            Some(42)
        );
    }
}
