//! Verification of what arrived: SHA-256 digests the caller expects, the checksums S3 keeps
//! (CRC-64/NVME, CRC-32C, CRC-32, SHA-1, SHA-256) and S3's MD5 ETags.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use sha2::Digest as _;

use crate::cancel::CancelToken;
use crate::progress::Cancelled;

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
        let mut hasher = sha2::Sha256::new();
        read_blocks(path, None, |block| hasher.update(block))?;
        Ok(Sha256Digest(hasher.finalize().into()))
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
        f.write_str(&hex::encode(self.0))
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
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestError(s.to_owned()))?;
        Ok(Sha256Digest(out))
    }
}

/// The MD5 an S3 ETag stands for, when it stands for one: a single-part upload's ETag is the
/// MD5 of the object in hex; a multipart one has a `-N` suffix and is not.
pub(crate) fn etag_md5(etag: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(etag.trim_matches('"'), &mut out).ok()?;
    Some(out)
}

/// A full-object checksum an S3 store returned with a whole-object GET (`x-amz-checksum-*`,
/// asked for with a signed `x-amz-checksum-mode: ENABLED`): the algorithm and the base64
/// value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreChecksum {
    pub(crate) algorithm: &'static str,
    pub(crate) value: String,
    /// For a composite checksum (`…-N`, of a multipart upload's parts' checksums): the
    /// parts' sizes, in order, when known (`GetObjectAttributes`); `None` for a full-object
    /// checksum.
    pub(crate) parts: Option<Vec<u64>>,
}

/// The algorithms haul verifies, by response header, cheapest first: an object with more
/// than one is checked against the first. A composite checksum of a multipart upload
/// (`…-N`, of its parts' checksums) is not the bytes' and is not verified (logged at debug).
pub(crate) const CHECKSUM_HEADERS: [(&str, &str); 5] = [
    ("x-amz-checksum-crc64nvme", "crc64nvme"),
    ("x-amz-checksum-crc32c", "crc32c"),
    ("x-amz-checksum-crc32", "crc32"),
    ("x-amz-checksum-sha1", "sha1"),
    ("x-amz-checksum-sha256", "sha256"),
];

/// One digest computed as bytes pass: SHA-256, SHA-1, MD5, or a CRC (CRC-64/NVME, CRC-32C,
/// CRC-32; SIMD, by crc-fast).
#[derive(Clone)]
enum Running {
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
    Md5(md5::Context),
    /// The CRC and its width in bytes.
    Crc(crc_fast::Digest, usize),
    /// A composite checksum: one digest per part, then the digest of those digests.
    Composite(Box<Composite>),
}

/// A composite checksum being computed: the parts' sizes, where the bytes have got to, the
/// running digest of the part they are in, and the digests of the parts before it (raw,
/// concatenated: what the composite is the digest of).
#[derive(Clone)]
struct Composite {
    algorithm: &'static str,
    sizes: Vec<u64>,
    index: usize,
    in_part: u64,
    part: Running,
    digests: Vec<u8>,
    /// More bytes came than the parts hold.
    overflow: bool,
}

impl Composite {
    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Some(&size) = self.sizes.get(self.index) else {
                self.overflow = true;
                return;
            };
            let take = usize::try_from(size - self.in_part)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            self.part.update(&bytes[..take]);
            self.in_part += take as u64;
            bytes = &bytes[take..];
            if self.in_part == size {
                let done = std::mem::replace(&mut self.part, Running::new(self.algorithm));
                self.digests.extend(done.raw());
                self.index += 1;
                self.in_part = 0;
            }
        }
    }

    /// `BASE64-N`, as S3 writes a composite checksum; a value that matches none when the
    /// bytes were not the parts' sizes.
    fn finish(self) -> String {
        let count = self.sizes.len();
        if self.overflow || self.index != count {
            return format!("(not {count} parts of the sizes the store lists)");
        }
        let mut outer = Running::new(self.algorithm);
        outer.update(&self.digests);
        format!("{}-{count}", base64(&outer.raw()))
    }
}

impl Running {
    fn new(algorithm: &str) -> Running {
        use crc_fast::{CrcAlgorithm, Digest};
        match algorithm {
            "sha256" => Running::Sha256(sha2::Sha256::new()),
            "sha1" => Running::Sha1(<sha1::Sha1 as sha1::Digest>::new()),
            "md5" => Running::Md5(md5::Context::new()),
            "crc64nvme" => Running::Crc(Digest::new(CrcAlgorithm::Crc64Nvme), 8),
            "crc32c" => Running::Crc(Digest::new(CrcAlgorithm::Crc32Iscsi), 4),
            _ => Running::Crc(Digest::new(CrcAlgorithm::Crc32IsoHdlc), 4),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Running::Sha256(h) => h.update(bytes),
            Running::Sha1(h) => sha1::Digest::update(h, bytes),
            Running::Md5(h) => h.consume(bytes),
            Running::Crc(h, _) => h.update(bytes),
            Running::Composite(c) => c.update(bytes),
        }
    }

    /// The digest's bytes (big-endian for CRCs).
    fn raw(self) -> Vec<u8> {
        match self {
            Running::Sha256(h) => h.finalize().to_vec(),
            Running::Sha1(h) => sha1::Digest::finalize(h).to_vec(),
            Running::Md5(h) => h.finalize().0.to_vec(),
            Running::Crc(h, width) => h.finalize().to_be_bytes()[8 - width..].to_vec(),
            Running::Composite(c) => c.finish().into_bytes(),
        }
    }

    /// The digest as S3 and ETags write it: base64 for SHA-256 and SHA-1, and of the
    /// big-endian value for CRCs; hex for MD5.
    fn finish(self) -> String {
        match self {
            Running::Md5(h) => format!("{:x}", h.finalize()),
            Running::Composite(c) => c.finish(),
            other => base64(&other.raw()),
        }
    }
}

/// The CRC-64/NVME of an object or a part, computed as its bytes pass: the full-object
/// checksum haul sends with every upload (S3's default algorithm, and the cheapest: SIMD).
#[derive(Clone)]
pub(crate) struct Crc64Nvme(crc_fast::Digest);

impl Crc64Nvme {
    /// The header that carries it.
    pub(crate) const HEADER: &'static str = "x-amz-checksum-crc64nvme";

    pub(crate) fn new() -> Crc64Nvme {
        Crc64Nvme(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme))
    }

    /// The checksum of `bytes`, as the header carries it.
    pub(crate) fn of(bytes: &[u8]) -> String {
        let mut crc = Crc64Nvme::new();
        crc.update(bytes);
        crc.base64()
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Goes on as if `other`'s bytes had followed those so far.
    pub(crate) fn combine(&mut self, other: &Crc64Nvme) {
        self.0.combine(&other.0);
    }

    /// The checksum so far, in base64 of its big-endian bytes (as S3 writes it).
    pub(crate) fn base64(&self) -> String {
        base64(&self.0.finalize().to_be_bytes())
    }
}

impl fmt::Debug for Crc64Nvme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Crc64Nvme")
    }
}

/// Reads the file at `path` in 256 KiB blocks, each given to `each`.
pub(crate) fn read_blocks(
    path: &Path,
    cancel: Option<&CancelToken>,
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut buffer = vec![0; 256 * 1024];
    loop {
        // A large file takes a while: a cancel stops it between blocks.
        if cancel.is_some_and(CancelToken::is_cancelled) {
            return Err(io::Error::other(Cancelled));
        }
        match file.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => each(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Hex of base64 text (for showing a SHA-256), or the text itself when it is not base64.
fn base64_to_hex(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_or_else(|_| text.to_owned(), hex::encode)
}

/// The digests one whole object is checked against, computed as its bytes pass: the
/// SHA-256 the caller expects, the MD5 an S3 single-part ETag stands for, a full-object
/// checksum the store returned. Reset when the object starts over.
#[derive(Default)]
pub(crate) struct Verifier {
    checks: Vec<(Running, Expected)>,
}

/// What one running digest must come to, and how to show it.
#[derive(Clone)]
struct Expected {
    /// The digest as it starts, before any byte (what it starts again from).
    start: Running,
    algorithm: &'static str,
    /// As [`Running::finish`] writes it.
    value: String,
    /// Shown in hex (a SHA-256 the caller gave, as sha256sum writes it), not base64.
    hex: bool,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithms: Vec<&str> = self.checks.iter().map(|(_, e)| e.algorithm).collect();
        f.debug_struct("Verifier")
            .field("algorithms", &algorithms)
            .finish()
    }
}

impl Verifier {
    /// Checks for an object, in the order a mismatch is reported: `sha256` when the caller
    /// expects one, `checksum` when the store returned one, `md5` when an S3 ETag stands for
    /// one (and no checksum does: a CRC catches what the MD5 would, at a tenth of the CPU).
    pub(crate) fn new(
        sha256: Option<&Sha256Digest>,
        md5: Option<[u8; 16]>,
        checksum: Option<&StoreChecksum>,
    ) -> Verifier {
        let mut checks = Vec::new();
        if let Some(digest) = sha256 {
            checks.push((
                Running::new("sha256"),
                Expected {
                    start: Running::new("sha256"),
                    algorithm: "sha256",
                    value: digest.to_base64(),
                    hex: true,
                },
            ));
        }
        if let Some(checksum) = checksum {
            let start = match &checksum.parts {
                None => Running::new(checksum.algorithm),
                Some(sizes) => Running::Composite(Box::new(Composite {
                    algorithm: checksum.algorithm,
                    sizes: sizes.clone(),
                    index: 0,
                    in_part: 0,
                    part: Running::new(checksum.algorithm),
                    digests: Vec::new(),
                    overflow: false,
                })),
            };
            checks.push((
                start.clone(),
                Expected {
                    start,
                    algorithm: checksum.algorithm,
                    value: checksum.value.clone(),
                    hex: false,
                },
            ));
        }
        if let Some(md5) = md5.filter(|_| checksum.is_none()) {
            checks.push((
                Running::new("md5"),
                Expected {
                    start: Running::new("md5"),
                    algorithm: "md5",
                    value: hex::encode(md5),
                    hex: false,
                },
            ));
        }
        Verifier { checks }
    }

    /// Whether there is anything to check.
    pub(crate) fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        for (running, _) in &mut self.checks {
            running.update(bytes);
        }
    }

    /// Feeds the file at `path` to every digest.
    pub(crate) fn update_from_file(&mut self, path: &Path, cancel: &CancelToken) -> io::Result<()> {
        read_blocks(path, Some(cancel), |block| self.update(block))
    }

    /// Compares every digest with what it should be; the first mismatch. The digests start
    /// again from nothing.
    pub(crate) fn finish(&mut self) -> Result<(), Box<DigestMismatch>> {
        let mut first = None;
        for (running, expected) in &mut self.checks {
            let done = std::mem::replace(running, expected.start.clone());
            let actual = done.finish();
            if actual != expected.value && first.is_none() {
                let shown = |value: &str| {
                    if expected.hex {
                        base64_to_hex(value)
                    } else {
                        value.to_owned()
                    }
                };
                first = Some(DigestMismatch::new(
                    expected.algorithm,
                    shown(&expected.value),
                    shown(&actual),
                ));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Starts every digest again from nothing (the object starts over).
    pub(crate) fn reset(&mut self) {
        for (running, expected) in &mut self.checks {
            *running = expected.start.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file read back to be checked stops at a cancel, between one block and the next.
    #[test]
    fn a_file_read_back_stops_at_a_cancel() {
        haul_testkit::guard(|| {
            let dir = haul_testkit::TestDir::new();
            let path = dir.path().join("f.bin");
            std::fs::write(&path, vec![1u8; 4 << 20]).unwrap();
            let cancel = CancelToken::new();
            let mut blocks = 0;
            let read = read_blocks(&path, Some(&cancel), |_| {
                blocks += 1;
                cancel.cancel();
            });
            let e = read.unwrap_err();
            assert!(crate::progress::is_cancelled(&e), "{e}");
            assert_eq!(blocks, 1);
        });
    }

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
        // The check values of the CRC catalogue (0xCBF43926, 0xE3069283,
        // 0xAE8B14860A799888), FIPS 180's SHA-1 of "abc", and RFC 4648's base64 examples.
        let of = |algorithm, bytes: &[u8]| {
            let mut running = Running::new(algorithm);
            running.update(bytes);
            running.finish()
        };
        let crc = |algorithm| of(algorithm, b"123456789");
        assert_eq!(crc("crc32"), base64(&0xCBF4_3926u32.to_be_bytes()));
        assert_eq!(crc("crc32c"), base64(&0xE306_9283u32.to_be_bytes()));
        let nvme = 0xAE8B_1486_0A79_9888u64;
        assert_eq!(crc("crc64nvme"), base64(&nvme.to_be_bytes()));
        let sha1 = hex::decode("a9993e364706816aba3e25717850c26c9cd0d89d").unwrap();
        assert_eq!(of("sha1", b"abc"), base64(&sha1));
        for (raw, b64) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64(raw.as_bytes()), b64);
        }
        assert_eq!(
            of("sha256", b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn a_verifier_names_the_first_mismatch_and_starts_over() {
        let good = Sha256Digest::of(b"hello");
        let mut v = Verifier::new(
            Some(&good),
            etag_md5("5d41402abc4b2a76b9719d911017c592"),
            None,
        );
        v.update(b"hel");
        v.update(b"lo");
        assert_eq!(v.finish(), Ok(()));
        v.update(b"jello");
        let mismatch = v.finish().unwrap_err();
        assert_eq!(mismatch.algorithm, "sha256");
        assert_eq!(mismatch.expected, good.to_string());
        assert_eq!(mismatch.actual, Sha256Digest::of(b"jello").to_string());
        v.update(b"hello");
        assert_eq!(v.finish(), Ok(()), "finish starts the digests again");
        assert!(Verifier::new(None, None, None).is_empty());
    }

    #[test]
    fn a_composite_checksum_is_the_digest_of_the_parts_digests() {
        let bytes: Vec<u8> = (0..250u32).map(|i| (i * 7) as u8).collect();
        let sizes = [100u64, 60, 90];
        let mut digests = Vec::new();
        let mut at = 0;
        for size in sizes {
            let mut part = Running::new("crc32c");
            part.update(&bytes[at..at + size as usize]);
            digests.extend(part.raw());
            at += size as usize;
        }
        let mut outer = Running::new("crc32c");
        outer.update(&digests);
        let value = format!("{}-3", base64(&outer.raw()));
        let checksum = |sizes: &[u64]| StoreChecksum {
            algorithm: "crc32c",
            value: value.clone(),
            parts: Some(sizes.to_vec()),
        };
        let mut v = Verifier::new(None, None, Some(&checksum(&sizes)));
        // Fed in pieces that straddle the parts' boundaries.
        for chunk in bytes.chunks(33) {
            v.update(chunk);
        }
        assert_eq!(v.finish(), Ok(()));
        // Other boundaries, a byte more, or a byte changed: never taken for it.
        let mut other = Verifier::new(None, None, Some(&checksum(&[100, 90, 60])));
        other.update(&bytes);
        assert!(other.finish().is_err());
        v.update(&bytes);
        v.update(b"x");
        assert!(v.finish().is_err());
        let mut changed = bytes.clone();
        changed[150] ^= 1;
        v.update(&changed);
        assert!(v.finish().is_err());
        v.update(&bytes);
        assert_eq!(v.finish(), Ok(()), "it starts again after each finish");
    }

    #[test]
    fn etags_that_are_md5s() {
        let md5 = format!("{:x}", md5::compute(b"hello"));
        assert_eq!(md5, "5d41402abc4b2a76b9719d911017c592");
        assert!(etag_md5(&format!("\"{md5}\"")).is_some());
        assert!(etag_md5("\"5d41402abc4b2a76b9719d911017c592-3\"").is_none());
        assert!(etag_md5("\"abc\"").is_none());
        let mut inc = Running::new("md5");
        inc.update(b"hel");
        inc.update(b"lo");
        assert_eq!(inc.finish(), md5);
    }
}
