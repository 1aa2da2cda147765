//! The segment header and its synced-offset checkpoint (sans-IO).
//!
//! Every segment file starts with a [`SEGMENT_HEADER_BYTES`] header block;
//! batches follow it (a batch at data position `p` sits at file position
//! `SEGMENT_HEADER_BYTES + p`). The block holds two checkpoint slots, one
//! per 512-byte sector, the rest zeros:
//!
//! | off | len | field                                                   |
//! |----:|----:|---------------------------------------------------------|
//! |   0 |   4 | magic `SCKP`                                            |
//! |   4 |   2 | version = 1                                             |
//! |   6 |   2 | reserved, 0                                             |
//! |   8 |   8 | sequence (the slot with the higher one is current)      |
//! |  16 |   8 | base offset of the segment                              |
//! |  24 |   8 | `data_len`: bytes of whole batches covered              |
//! |  32 |   8 | `next_offset`: one past the last offset covered         |
//! |  40 |   4 | `digest`: [`digest_step`] over every batch covered      |
//! |  44 |   4 | CRC-32C of bytes 0..44                                  |
//!
//! A checkpoint says: the batches in `[0, data_len)` were covered by an
//! fdatasync that returned Ok, end exactly at `data_len` with `next_offset`,
//! and their header bytes 0..24 (base offset, length, leader epoch, append
//! time: the bytes the batch CRC does not cover) fold to `digest`.
//! It is written only *after* that fdatasync returned, so whatever version
//! of the block a power cut leaves on disk claims only what is durable; it
//! becomes durable itself with the next fdatasync of the file. Recovery
//! treats every failure before `data_len` as corruption (never a torn tail)
//! and checks the boundary and the digest.
//!
//! A write of the block rewrites both slots: the new checkpoint in slot
//! `sequence % 2`, the previous one in the other. Sectors are written
//! atomically, so a torn write of the block leaves each slot old or new,
//! both true claims. A slot that is neither zeros nor valid is damage.

use std::fmt;

/// Bytes before the first batch of a segment file.
pub const SEGMENT_HEADER_BYTES: u64 = 4096;
/// Distance between the two slots: one sector each.
const SLOT_STRIDE: usize = 512;
const SLOT_LEN: usize = 48;
const MAGIC: &[u8; 4] = b"SCKP";
const VERSION: u16 = 1;
/// Bytes of each batch header that the digest covers.
pub const DIGEST_HEADER_BYTES: usize = 24;

/// A durable point of one segment; see the module header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: u64,
    pub base_offset: u64,
    pub data_len: u64,
    pub next_offset: u64,
    pub digest: u32,
}

/// Why a header block was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderDamage(pub String);

impl fmt::Display for HeaderDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Folds one batch's uncovered header bytes into a segment's digest.
pub fn digest_step(digest: u32, batch: &[u8]) -> u32 {
    crc32c::crc32c_append(digest, &batch[..DIGEST_HEADER_BYTES])
}

impl Checkpoint {
    /// The checkpoint of a segment with nothing durable yet.
    pub fn empty(base_offset: u64) -> Self {
        Checkpoint {
            sequence: 0,
            base_offset,
            data_len: 0,
            next_offset: base_offset,
            digest: 0,
        }
    }

    fn encode_slot(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(MAGIC);
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].fill(0);
        out[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        out[16..24].copy_from_slice(&self.base_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.data_len.to_le_bytes());
        out[32..40].copy_from_slice(&self.next_offset.to_le_bytes());
        out[40..44].copy_from_slice(&self.digest.to_le_bytes());
        let crc = crc32c::crc32c(&out[..44]);
        out[44..48].copy_from_slice(&crc.to_le_bytes());
    }

    /// The header block holding this checkpoint and, in the other slot,
    /// `previous` (the last one written before it), into `block`
    /// (`SEGMENT_HEADER_BYTES` long).
    pub fn encode_block(&self, previous: Option<&Checkpoint>, block: &mut [u8]) {
        assert_eq!(block.len() as u64, SEGMENT_HEADER_BYTES, "header block size");
        block.fill(0);
        let mine = (self.sequence % 2) as usize;
        self.encode_slot(&mut block[mine * SLOT_STRIDE..mine * SLOT_STRIDE + SLOT_LEN]);
        if let Some(prev) = previous.filter(|p| p.sequence % 2 != self.sequence % 2) {
            let other = 1 - mine;
            prev.encode_slot(&mut block[other * SLOT_STRIDE..other * SLOT_STRIDE + SLOT_LEN]);
        }
    }

    /// The current checkpoint of a header block (`None` if it holds none),
    /// or the damage found. `block` may be short (a file cut before the end
    /// of its header): missing bytes read as zeros.
    pub fn decode_block(block: &[u8], base_offset: u64) -> Result<Option<Checkpoint>, HeaderDamage> {
        let mut best: Option<Checkpoint> = None;
        for slot in 0..2 {
            let start = slot * SLOT_STRIDE;
            let mut bytes = [0u8; SLOT_STRIDE];
            if let Some(present) = block.get(start..) {
                let have = present.len().min(SLOT_STRIDE);
                bytes[..have].copy_from_slice(&present[..have]);
            }
            let Some(found) =
                decode_slot(&bytes, base_offset).map_err(|e| HeaderDamage(format!("slot {slot}: {e}")))?
            else {
                continue;
            };
            if best.is_none_or(|b| found.sequence > b.sequence) {
                best = Some(found);
            }
        }
        let rest_start = 2 * SLOT_STRIDE;
        if block.len() > rest_start && block[rest_start..].iter().any(|&b| b != 0) {
            return Err(HeaderDamage(
                "bytes after the checkpoint slots are not zero".into(),
            ));
        }
        Ok(best)
    }
}

/// One slot (a whole sector): `None` if it is all zeros.
fn decode_slot(sector: &[u8], base_offset: u64) -> Result<Option<Checkpoint>, String> {
    if sector.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    if &sector[0..4] != MAGIC {
        return Err("no checkpoint magic (a segment written before format 1, or damage)".into());
    }
    let stored = u32::from_le_bytes(sector[44..48].try_into().expect("4 bytes"));
    if crc32c::crc32c(&sector[..44]) != stored {
        return Err("checksum mismatch".into());
    }
    if sector[SLOT_LEN..].iter().any(|&b| b != 0) {
        return Err("bytes after the slot are not zero".into());
    }
    let u64_at = |at: usize| u64::from_le_bytes(sector[at..at + 8].try_into().expect("8 bytes"));
    let version = u16::from_le_bytes([sector[4], sector[5]]);
    let checkpoint = Checkpoint {
        sequence: u64_at(8),
        base_offset: u64_at(16),
        data_len: u64_at(24),
        next_offset: u64_at(32),
        digest: u32::from_le_bytes(sector[40..44].try_into().expect("4 bytes")),
    };
    if version != VERSION {
        return Err(format!("unknown checkpoint version {version}"));
    }
    if checkpoint.base_offset != base_offset || checkpoint.next_offset < base_offset {
        return Err(format!(
            "checkpoint of segment {} (next offset {}) in segment {base_offset}",
            checkpoint.base_offset, checkpoint.next_offset
        ));
    }
    Ok(Some(checkpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(sequence: u64, data_len: u64) -> Checkpoint {
        Checkpoint {
            sequence,
            base_offset: 100,
            data_len,
            next_offset: 100 + data_len / 10,
            digest: 7 * sequence as u32,
        }
    }

    fn block(current: &Checkpoint, previous: Option<&Checkpoint>) -> Vec<u8> {
        let mut block = vec![0u8; SEGMENT_HEADER_BYTES as usize];
        current.encode_block(previous, &mut block);
        block
    }

    /// The newer slot wins; a fresh (zero or short) block holds none.
    #[test]
    fn newest_slot_wins() {
        let (one, two) = (cp(1, 500), cp(2, 900));
        assert_eq!(Checkpoint::decode_block(&block(&one, None), 100), Ok(Some(one)));
        assert_eq!(
            Checkpoint::decode_block(&block(&two, Some(&one)), 100),
            Ok(Some(two))
        );
        assert_eq!(Checkpoint::decode_block(&[0; 4096], 100), Ok(None));
        assert_eq!(Checkpoint::decode_block(&[], 100), Ok(None));
    }

    /// Any mix of old and new sectors (a torn block write) decodes to one of
    /// the two checkpoints written, never to damage.
    #[test]
    fn torn_block_write_keeps_a_true_checkpoint() {
        let (two, three) = (cp(2, 900), cp(3, 1300));
        let old = block(&two, Some(&cp(1, 500)));
        let new = block(&three, Some(&two));
        for mask in 0u8..4 {
            let mut torn = old.clone();
            for sector in 0..2 {
                if mask & (1 << sector) != 0 {
                    torn[sector * 512..(sector + 1) * 512]
                        .copy_from_slice(&new[sector * 512..(sector + 1) * 512]);
                }
            }
            let got = Checkpoint::decode_block(&torn, 100).unwrap().unwrap();
            assert!(got == two || got == three, "mask {mask}: {got:?}");
        }
    }

    /// Every flipped bit of a written slot, and a slot of another segment,
    /// is reported as damage.
    #[test]
    fn damaged_slot_is_reported() {
        let good = block(&cp(1, 500), None);
        for byte in 0..SLOT_STRIDE {
            let mut bad = good.clone();
            bad[byte] ^= 0x04;
            assert!(Checkpoint::decode_block(&bad, 100).is_err(), "flip at {byte}");
        }
        assert!(Checkpoint::decode_block(&good, 101).is_err());
        let mut stray = good.clone();
        stray[3000] = 1;
        assert!(Checkpoint::decode_block(&stray, 100).is_err());
    }
}
