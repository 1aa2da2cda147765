//! Key → partition, and name → shard: one documented, stable hash.
//!
//! Shoal uses Kafka's murmur2 variant (seed `0x9747b28c`, `m = 0x5bd1e995`,
//! `r = 24`, little-endian 4-byte blocks, tail bytes folded in the order
//! Kafka's `Utils.murmur2` folds them) so that every client, the broker and a
//! later Kafka-compatible front end agree on where a key lives:
//!
//! `partition = (murmur2(key) & 0x7fff_ffff) % partitions`
//!
//! Records without a key are spread by the producer (round robin per batch).
//! The same hash places partitions and groups on shards (see [`shard_for_partition`]).
//! Never change this function: doing so moves every key to another partition.

/// Kafka's murmur2 hash of `data`, as a signed 32-bit value like Kafka's.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `toPositive`: clears the sign bit.
pub fn to_positive(h: i32) -> u32 {
    (h as u32) & 0x7fff_ffff
}

/// The partition a key belongs to. `partitions` must be at least 1.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    to_positive(murmur2(key)) % partitions
}

/// The shard that owns `partition` of `topic`:
/// `(murmur2(topic) + partition) % shards`. Consecutive partitions of a topic
/// land on consecutive shards, so a topic's partitions spread evenly.
pub fn shard_for_partition(topic: &str, partition: u32, shards: u32) -> u32 {
    assert!(shards > 0, "a broker has at least one shard");
    ((u64::from(to_positive(murmur2(topic.as_bytes()))) + u64::from(partition)) % u64::from(shards)) as u32
}

/// The shard that coordinates consumer group `group`: `murmur2(group) % shards`.
pub fn shard_for_group(group: &str, shards: u32) -> u32 {
    assert!(shards > 0, "a broker has at least one shard");
    to_positive(murmur2(group.as_bytes())) % shards
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    /// The vectors from Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn kafka_murmur2_vectors() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                *expected,
                "murmur2({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    quickcheck! {
        fn partition_in_range(key: Vec<u8>, n: u8) -> bool {
            let n = u32::from(n) + 1;
            partition_for_key(&key, n) < n
        }
        fn shard_in_range(topic: String, p: u32, s: u8) -> bool {
            let s = u32::from(s) + 1;
            shard_for_partition(&topic, p, s) < s && shard_for_group(&topic, s) < s
        }
    }
}
