//! The stamp each benchmark record carries at the start of its value.
//!
//! End-to-end latency and the delivery check need to know, at the consumer,
//! who produced a record, its sequence and when it was meant to be sent.
//! The first [`STAMP_LEN`] bytes of every value hold, little-endian:
//!
//! | off | len | field         |
//! |----:|----:|---------------|
//! |   0 |   4 | magic `SHB1`  |
//! |   4 |   4 | run (one per load phase, so records of an earlier phase are told apart) |
//! |   8 |   4 | producer      |
//! |  12 |   4 | reserved, 0   |
//! |  16 |   8 | sequence      |
//! |  24 |   8 | `intended_ns` (since the run's epoch) |
//!
//! The rest of the value is filler up to the record size. Producers and
//! consumers live in one process and share the epoch, so no wall clocks are
//! compared.

/// Bytes a stamp occupies; the smallest record the harness can send.
pub const STAMP_LEN: usize = 32;
const MAGIC: [u8; 4] = *b"SHB1";

/// Identity and intended send time of one benchmark record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub run: u32,
    pub producer: u32,
    pub sequence: u64,
    pub intended_ns: u64,
}

impl Stamp {
    /// Writes the stamp into the start of `value`, which must be at least
    /// [`STAMP_LEN`] bytes (the workload guarantees it).
    pub fn write(&self, value: &mut [u8]) {
        value[0..4].copy_from_slice(&MAGIC);
        value[4..8].copy_from_slice(&self.run.to_le_bytes());
        value[8..12].copy_from_slice(&self.producer.to_le_bytes());
        value[12..16].fill(0);
        value[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        value[24..32].copy_from_slice(&self.intended_ns.to_le_bytes());
    }

    /// Reads a stamp, or `None` for a value this run did not produce.
    pub fn read(value: &[u8]) -> Option<Stamp> {
        if value.len() < STAMP_LEN || value[0..4] != MAGIC {
            return None;
        }
        let u32_at = |at: usize| u32::from_le_bytes(value[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(value[at..at + 8].try_into().expect("8 bytes"));
        Some(Stamp {
            run: u32_at(4),
            producer: u32_at(8),
            sequence: u64_at(16),
            intended_ns: u64_at(24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_the_round_trip() {
        // Proves write then read returns the same stamp, with filler after it untouched.
        let stamp = Stamp {
            run: 3,
            producer: 7,
            sequence: u64::MAX - 3,
            intended_ns: 123_456_789,
        };
        let mut value = vec![0xAB; 64];
        stamp.write(&mut value);
        assert_eq!(Stamp::read(&value), Some(stamp));
        assert!(value[STAMP_LEN..].iter().all(|b| *b == 0xAB));
    }

    #[test]
    fn foreign_values_are_not_stamps() {
        // Proves short values and values without the magic are rejected.
        assert_eq!(Stamp::read(b"short"), None);
        assert_eq!(Stamp::read(&[0u8; 64]), None);
    }
}
