//! Highest-random-weight (rendezvous) placement: a pure function from a name to one of N
//! targets, stable when targets are added or removed (only about 1/N of names move).

/// A fast, stable 64-bit hash (FNV-1a folded through a SplitMix64 finaliser).
///
/// Stable across processes, machines and versions of haul: placement and sharding depend on it.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64's finaliser: spreads every input bit over the output.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The index of the target with the highest weight for `name_hash` among targets with the
/// given `target_ids` (each target's own stable hash). `None` when there are no targets.
///
pub(crate) fn pick(name_hash: u64, target_ids: &[u64]) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    for (index, &id) in target_ids.iter().enumerate() {
        let weight = mix(name_hash ^ id);
        if best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, index));
        }
    }
    best.map(|(_, index)| index)
}

/// The HRW identities of `count` shards of a job: the same on every machine.
pub(crate) fn shard_ids(count: u32) -> Vec<u64> {
    (0..count)
        .map(|i| hash(format!("haul-shard-{i}").as_bytes()))
        .collect()
}

/// The shard, among `ids` (from [`shard_ids`]), that owns the object named `name`.
pub(crate) fn shard_of(name: &str, ids: &[u64]) -> Option<usize> {
    pick(hash(name.as_bytes()), ids)
}
