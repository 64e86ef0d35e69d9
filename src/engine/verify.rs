//! Verification of what arrived: SHA-256 digests the caller expects, and S3's MD5 ETags.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use sha2::Digest as _;

/// An expected SHA-256 digest, written as 64 hex digits (as `sha256sum` prints it).
///
/// ```
/// let digest: haul::Sha256Digest =
///     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
/// assert_eq!(digest, haul::Sha256Digest::of(b""));
/// # Ok::<(), haul::DigestError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest whose 32 bytes are `bytes`.
    pub fn from_bytes(bytes: [u8; 32]) -> Sha256Digest {
        Sha256Digest(bytes)
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest(sha2::Sha256::digest(bytes).into())
    }

    /// The digest of the file at `path`, read in 256 KiB blocks.
    ///
    /// # Errors
    ///
    /// The I/O error from opening or reading the file.
    pub fn of_file(path: &Path) -> io::Result<Sha256Digest> {
        let mut file = File::open(path)?;
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0; 256 * 1024];
        loop {
            match file.read(&mut buffer) {
                Ok(0) => return Ok(Sha256Digest(hasher.finalize().into())),
                Ok(n) => hasher.update(&buffer[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Sha256Digest {
    /// The digest in base64, as S3's `x-amz-checksum-sha256` carries it.
    pub fn to_base64(&self) -> String {
        base64(&self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

/// What arrived does not have the digest it should have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{algorithm} mismatch: expected {expected}, got {actual}")]
#[non_exhaustive]
pub struct DigestMismatch {
    /// `"sha256"` or `"md5"`.
    pub algorithm: &'static str,
    /// The expected digest, in hex.
    pub expected: String,
    /// The digest of what arrived, in hex.
    pub actual: String,
}

impl DigestMismatch {
    pub(crate) fn new(algorithm: &'static str, expected: String, actual: String) -> Box<Self> {
        Box::new(DigestMismatch {
            algorithm,
            expected,
            actual,
        })
    }
}

/// A digest that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad SHA-256 digest {0:?}: expected 64 hex digits")]
pub struct DigestError(pub String);

impl FromStr for Sha256Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Sha256Digest, DigestError> {
        let bad = || DigestError(s.to_owned());
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Sha256Digest(out))
    }
}

/// The MD5 an S3 ETag stands for, when it stands for one: a single-part upload's ETag is the
/// MD5 of the object in hex; a multipart one has a `-N` suffix and is not.
pub(crate) fn etag_md5(etag: &str) -> Option<[u8; 16]> {
    let hex = etag.trim_matches('"');
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Hex of an MD5 digest.
pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", md5::compute(bytes))
}

/// A full-object checksum an S3 store returned with a whole-object GET (`x-amz-checksum-*`):
/// the algorithm and the base64 value. haul does not send `x-amz-checksum-mode: ENABLED`:
/// an unsigned `x-amz-*` header makes stores that check them (SeaweedFS) refuse a presigned
/// GET, and rust-s3 cannot presign a GET with extra headers. Stores that return checksums
/// anyway (s3s, and the uploads haul itself makes) are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreChecksum {
    pub(crate) algorithm: &'static str,
    pub(crate) value: String,
}

/// The algorithms haul verifies, by response header. `sha1` and `crc64nvme` are not
/// verified (logged at debug); composite checksums of multipart uploads (`…-N`) neither.
pub(crate) const CHECKSUM_HEADERS: [(&str, &str); 3] = [
    ("x-amz-checksum-sha256", "sha256"),
    ("x-amz-checksum-crc32c", "crc32c"),
    ("x-amz-checksum-crc32", "crc32"),
];

impl StoreChecksum {
    /// The checksum of `bytes` with this algorithm, in base64, as S3 writes it.
    pub(crate) fn of(&self, bytes: &[u8]) -> String {
        match self.algorithm {
            "sha256" => Sha256Digest::of(bytes).to_base64(),
            "crc32c" => base64(&crc32(CRC32C, bytes).to_be_bytes()),
            _ => base64(&crc32(CRC32, bytes).to_be_bytes()),
        }
    }
}

/// The reflected polynomials of CRC-32 (IEEE) and CRC-32C (Castagnoli).
const CRC32: u32 = 0xEDB8_8320;
const CRC32C: u32 = 0x82F6_3B78;

/// A bitwise CRC-32 with a reflected `polynomial`: small, and fast enough for verifying
/// objects the fetcher holds in memory anyway.
fn crc32(polynomial: u32, bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (polynomial & mask);
        }
    }
    !crc
}

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An incremental MD5, for objects that arrive in parts.
pub(crate) struct Md5(md5::Context);

impl Md5 {
    pub(crate) fn new() -> Md5 {
        Md5(md5::Context::new())
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.consume(bytes);
    }

    pub(crate) fn hex(self) -> String {
        format!("{:x}", self.0.finalize())
    }
}

impl fmt::Debug for Md5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Md5")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_print_and_refuse_bad_text() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Sha256Digest>(), Ok(d));
        assert_eq!(d.to_string().to_uppercase().parse::<Sha256Digest>(), Ok(d));
        for bad in ["", "xyz", &"g".repeat(64), &"a".repeat(63), &"é".repeat(32)] {
            assert!(bad.parse::<Sha256Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn checksums_match_known_values() {
        // The check values of the CRC catalogue, and RFC 4648's base64 examples.
        assert_eq!(crc32(CRC32, b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(CRC32C, b"123456789"), 0xE306_9283);
        for (raw, b64) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64(raw.as_bytes()), b64);
        }
        let sha = StoreChecksum {
            algorithm: "sha256",
            value: String::new(),
        };
        assert_eq!(sha.of(b""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }

    #[test]
    fn etags_that_are_md5s() {
        let md5 = md5_hex(b"hello");
        assert_eq!(md5, "5d41402abc4b2a76b9719d911017c592");
        assert!(etag_md5(&format!("\"{md5}\"")).is_some());
        assert!(etag_md5("\"5d41402abc4b2a76b9719d911017c592-3\"").is_none());
        assert!(etag_md5("\"abc\"").is_none());
        let mut inc = Md5::new();
        inc.update(b"hel");
        inc.update(b"lo");
        assert_eq!(inc.hex(), md5);
    }
}
