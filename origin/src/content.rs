//! Deterministic object bytes: a pure function of (path, offset), so any range can be served
//! or checked without fixture files.

/// The origin's hash of a path: FNV-1a folded through SplitMix64's finaliser. Fixed for good:
/// what the origin serves for a path, and what tests expect of it, depend on it.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of the bytes served for `path` (the request path, without the query).
pub fn seed(path: &str) -> u64 {
    hash(path.as_bytes())
}

/// The seed of the bytes served for `path` once the origin's objects were replaced
/// `version` times ([`Origin::replace_objects`](super::Origin::replace_objects)); version 0
/// is [`seed`].
pub fn versioned_seed(path: &str, version: u64) -> u64 {
    match version {
        0 => seed(path),
        v => hash(format!("{path}\0v{v}").as_bytes()),
    }
}

fn word(seed: u64, index: u64) -> u64 {
    mix(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Fills `out` with the bytes of the object `seed` starting at `offset`.
pub fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    let mut pos = offset;
    let mut rest = out;
    // Unaligned head.
    let head = ((8 - (pos % 8)) % 8) as usize;
    if head > 0 {
        let bytes = word(seed, pos / 8).to_le_bytes();
        let n = head.min(rest.len());
        let start = (pos % 8) as usize;
        rest[..n].copy_from_slice(&bytes[start..start + n]);
        rest = &mut rest[n..];
        pos += n as u64;
    }
    let mut chunks = rest.chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&word(seed, pos / 8).to_le_bytes());
        pos += 8;
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let bytes = word(seed, pos / 8).to_le_bytes();
        let n = tail.len();
        tail.copy_from_slice(&bytes[..n]);
    }
}

/// The whole body the origin serves for `path` (without the query) at `size` bytes.
///
/// ```
/// let body = haul_origin::body("/a/b.bin", 10);
/// assert_eq!(body.len(), 10);
/// assert_eq!(body, haul_origin::body("/a/b.bin", 10));
/// assert_ne!(body, haul_origin::body("/a/c.bin", 10));
/// ```
pub fn body(path: &str, size: u64) -> Vec<u8> {
    versioned_body(path, size, 0)
}

/// The body served for `path` at `size` bytes after the origin's objects were replaced
/// `version` times.
pub fn versioned_body(path: &str, size: u64, version: u64) -> Vec<u8> {
    let mut out = vec![0; usize::try_from(size).expect("size fits in memory")];
    fill(versioned_seed(path, version), 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_offset_matches_the_whole() {
        let whole = body("/x", 100);
        for offset in 0..40 {
            for len in 0..25 {
                let mut part = vec![0; len];
                fill(seed("/x"), offset as u64, &mut part);
                assert_eq!(
                    part,
                    whole[offset..offset + len],
                    "offset {offset} len {len}"
                );
            }
        }
    }
}
