//! The recovery scan (sans-IO): which bytes of a segment are whole, valid
//! batches, and how the rest ends.
//!
//! A [`Scanner`] walks batches from the start of a segment's data, checking
//! each one's framing and CRC-32C ([`batch::check_crc`]), that offsets
//! increase (and are contiguous, unless the log is compacted; even then
//! from [`Scanner::contiguous_from`] on: appends never leave gaps, only
//! compaction of sealed segments does), and that
//! append times never go back, and folds the header bytes the CRC does not
//! cover into a digest ([`digest_step`]). Given the segment's durable
//! [`Checkpoint`], it also checks that a batch ends exactly at the
//! checkpoint's `data_len`, with its `next_offset` and `digest`; any
//! mismatch there is corruption. It stops at the first batch that fails;
//! what that failure means is decided by [`classify`]:
//!
//! - the batch lies before `valid_until` (data known to be durable: the
//!   checkpoint's `data_len` in the active segment, the whole of a sealed
//!   segment): **corruption**;
//! - everything from there to the end of the data is zero: a clean end (the
//!   zero padding of the last written block, or preallocated space);
//! - otherwise: a **torn tail**, the remains of writes that were never
//!   covered by an fdatasync and never acknowledged as durable; the caller
//!   truncates it.
//!
//! Nothing after the durable point is taken as evidence of corruption, not
//! even valid batches behind a bad one: a device may persist a later unsynced
//! write and lose an earlier one (its write cache reorders), so a hole
//! followed by valid data is what a power cut legitimately leaves there.

use crate::checkpoint::{digest_step, Checkpoint};
use crate::index::SegmentIndex;
use shoal_protocol::batch::{self, BatchError, BatchHeader, BatchLimits, BATCH_HEADER_LEN};

/// Where a scan of a segment stopped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// The valid batches end at `data_len`; only zeros follow.
    Clean,
    /// Bytes from `position` on are an unfinished write: truncate them.
    TornTail { position: u64, reason: String },
    /// The batch expected to hold `offset`, at `position`, is damaged.
    Corrupt {
        position: u64,
        offset: u64,
        reason: String,
    },
}

/// What [`Scanner::feed`] needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The buffer ended inside a batch: feed again from `Scanner::position`
    /// with at least `need` bytes.
    NeedMore { need: usize },
    /// The whole buffer was consumed and it was the end of the file.
    End,
    /// The batch at `position` does not verify.
    Bad { position: u64, reason: String },
    /// The batches before `position` disagree with the durable checkpoint:
    /// corruption, whatever follows.
    Mismatch { position: u64, reason: String },
    /// The next batch reaches past `Scanner::keep_below`; the scan stopped
    /// before it.
    Stopped,
}

/// Walks the batches of one segment, building its index as it goes.
#[derive(Debug)]
pub struct Scanner {
    /// Data position in the segment of the next byte to verify.
    pub position: u64,
    /// The offset the next batch must start at (or after, when compacted).
    pub expected_offset: u64,
    pub index: SegmentIndex,
    /// Stop before the first batch holding an offset at or above this.
    pub keep_below: Option<u64>,
    /// [`digest_step`] folded over every batch verified so far.
    pub digest: u32,
    /// The durable checkpoint to verify on the way, if any.
    pub checkpoint: Option<Checkpoint>,
    /// From this data position on offsets must be contiguous even in a
    /// compacted log (the active segment beyond its checkpoint holds only
    /// appends): an offset flipped upward there is damage, not a gap.
    pub contiguous_from: Option<u64>,
    last_append_ms: i64,
    contiguous: bool,
    limits: BatchLimits,
}

impl Scanner {
    pub fn new(base_offset: u64, index_interval_bytes: u32, contiguous: bool, limits: BatchLimits) -> Self {
        Scanner {
            position: 0,
            expected_offset: base_offset,
            index: SegmentIndex::new(base_offset, index_interval_bytes),
            keep_below: None,
            digest: 0,
            checkpoint: None,
            contiguous_from: None,
            last_append_ms: i64::MIN,
            contiguous,
            limits,
        }
    }

    /// Verifies the batches at the start of `buf`, which holds the segment
    /// from `self.position` on; `at_eof` says the data ends where `buf` does.
    pub fn feed(&mut self, buf: &[u8], at_eof: bool) -> Step {
        let mut rest = buf;
        loop {
            if let Some(mismatch) = self.check_checkpoint() {
                return mismatch;
            }
            if rest.is_empty() {
                return if at_eof {
                    Step::End
                } else {
                    Step::NeedMore {
                        need: BATCH_HEADER_LEN,
                    }
                };
            }
            let (header, len) = match batch::check_crc(rest, &self.limits) {
                Ok(ok) => ok,
                Err(BatchError::Truncated { need, .. }) if !at_eof => return Step::NeedMore { need },
                Err(e) => return self.bad(e.to_string()),
            };
            if let Err(reason) = self.check_sequence(&header) {
                return self.bad(reason);
            }
            if self.keep_below.is_some_and(|keep| header.next_offset() > keep) {
                return Step::Stopped;
            }
            self.index.observe(
                header.base_offset,
                header.next_offset(),
                self.position,
                len as u32,
                header.append_time_ms,
            );
            self.digest = digest_step(self.digest, rest);
            self.expected_offset = header.next_offset();
            self.last_append_ms = header.append_time_ms;
            self.position += len as u64;
            rest = &rest[len..];
        }
    }

    fn bad(&self, reason: String) -> Step {
        Step::Bad {
            position: self.position,
            reason,
        }
    }

    /// At the checkpoint's boundary, the batches before it must match it
    /// (then the checkpoint is done with); past it without a boundary, they
    /// cannot.
    fn check_checkpoint(&mut self) -> Option<Step> {
        let cp = self.checkpoint?;
        if self.position < cp.data_len {
            return None;
        }
        let reason = if self.position > cp.data_len {
            format!("no batch ends at the checkpoint's byte {}", cp.data_len)
        } else if self.expected_offset != cp.next_offset {
            format!(
                "the batches before the checkpoint end at offset {}, it says {}",
                self.expected_offset, cp.next_offset
            )
        } else if self.digest != cp.digest {
            "the uncovered header bytes (offsets, lengths, leader epochs, append times) of the \
             batches before the checkpoint do not match its digest"
                .to_string()
        } else {
            self.checkpoint = None;
            return None;
        };
        Some(Step::Mismatch {
            position: cp.data_len,
            reason,
        })
    }

    fn check_sequence(&self, header: &BatchHeader) -> Result<(), String> {
        let contiguous = self.contiguous || self.contiguous_from.is_some_and(|from| self.position >= from);
        let offset_ok = if contiguous {
            header.base_offset == self.expected_offset
        } else {
            header.base_offset >= self.expected_offset
        };
        if !offset_ok {
            return Err(format!(
                "batch base offset {} where {} was expected",
                header.base_offset, self.expected_offset
            ));
        }
        if header.append_time_ms < self.last_append_ms {
            return Err(format!(
                "append time {} goes back from {}",
                header.append_time_ms, self.last_append_ms
            ));
        }
        Ok(())
    }
}

/// Decides what a failed batch means; see the module header for the rules.
pub fn classify(
    position: u64,
    expected_offset: u64,
    reason: String,
    valid_until: u64,
    rest_is_zero: bool,
) -> ScanEnd {
    if position < valid_until {
        return ScanEnd::Corrupt {
            position,
            offset: expected_offset,
            reason,
        };
    }
    if rest_is_zero {
        ScanEnd::Clean
    } else {
        ScanEnd::TornTail { position, reason }
    }
}

/// How a scan that fed every byte ended, given what it was told is durable:
/// data missing before `valid_until` is corruption too.
pub fn finish(
    scanner: &Scanner,
    step: Step,
    valid_until: u64,
    rest_is_zero: impl FnOnce(u64) -> bool,
) -> ScanEnd {
    match step {
        Step::Mismatch { position, reason } => ScanEnd::Corrupt {
            position,
            offset: scanner.expected_offset,
            reason: format!("checkpoint mismatch: {reason}"),
        },
        Step::Bad { position, reason } => classify(
            position,
            scanner.expected_offset,
            reason,
            valid_until,
            rest_is_zero(position),
        ),
        Step::End | Step::Stopped if scanner.keep_below.is_none() && scanner.position < valid_until => {
            ScanEnd::Corrupt {
                position: scanner.position,
                offset: scanner.expected_offset,
                reason: format!(
                    "durable data ends at byte {valid_until}, the segment at {}",
                    scanner.position
                ),
            }
        }
        Step::End | Step::Stopped => ScanEnd::Clean,
        Step::NeedMore { .. } => unreachable!("a scan that fed every byte never asks for more"),
    }
}

/// Scans a whole segment's data held in memory. The I/O glue does the same
/// over chunks; this form is the reference the unit tests pin down.
pub fn scan_segment(
    bytes: &[u8],
    base_offset: u64,
    contiguous: bool,
    checkpoint: Option<Checkpoint>,
    valid_until: u64,
    limits: BatchLimits,
    index_interval_bytes: u32,
) -> (Scanner, ScanEnd) {
    let mut scanner = Scanner::new(base_offset, index_interval_bytes, contiguous, limits);
    scanner.checkpoint = checkpoint;
    let valid_until = valid_until.max(checkpoint.map_or(0, |cp| cp.data_len));
    let step = scanner.feed(bytes, true);
    let end = finish(&scanner, step, valid_until, |p| {
        bytes[p as usize..].iter().all(|&b| b == 0)
    });
    (scanner, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::batch::{BatchBuilder, NewRecord};

    /// Builds `n` contiguous batches of 3 records each, laid end to end.
    pub(crate) fn segment(n: usize) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for i in 0..n {
            let mut b = BatchBuilder::new();
            for r in 0..3 {
                b.push(NewRecord {
                    timestamp_ms: 1000 + i as i64,
                    key: Some(format!("k{r}").into_bytes()),
                    value: Some(vec![i as u8; 50 + 10 * i]),
                    ..Default::default()
                });
            }
            let mut batch = b.finish().unwrap();
            batch::patch(&mut batch, 10 + 3 * i as u64, 0, 5000 + i as i64);
            starts.push(bytes.len() as u64);
            bytes.extend_from_slice(&batch);
        }
        (bytes, starts)
    }

    fn scan(bytes: &[u8], valid_until: u64) -> (SegmentIndex, ScanEnd) {
        let (scanner, end) = scan_segment(bytes, 10, true, None, valid_until, BatchLimits::default(), 64);
        (scanner.index, end)
    }

    /// The checkpoint a log would have written after syncing `bytes`.
    fn checkpoint_of(bytes: &[u8]) -> Checkpoint {
        let (scanner, end) = scan_segment(bytes, 10, true, None, 0, BatchLimits::default(), 64);
        assert_eq!(end, ScanEnd::Clean);
        Checkpoint {
            sequence: 1,
            base_offset: 10,
            data_len: scanner.position,
            next_offset: scanner.expected_offset,
            digest: scanner.digest,
        }
    }

    fn scan_with(bytes: &[u8], cp: Checkpoint) -> ScanEnd {
        scan_segment(bytes, 10, true, Some(cp), 0, BatchLimits::default(), 64).1
    }

    /// A clean segment with zero padding scans to its end.
    #[test]
    fn clean_with_padding() {
        let (mut bytes, _) = segment(5);
        let len = bytes.len() as u64;
        bytes.resize(bytes.len() + 4096, 0);
        let (index, end) = scan(&bytes, 0);
        assert_eq!(end, ScanEnd::Clean);
        assert_eq!(index.data_len, len);
        assert_eq!(index.next_offset, 25);
    }

    /// Every cut inside the last batch is a torn tail at that batch's start.
    #[test]
    fn cut_is_torn_tail() {
        let (bytes, starts) = segment(4);
        let last = starts[3] as usize;
        for cut in last + 1..bytes.len() {
            let (index, end) = scan(&bytes[..cut], 0);
            assert!(
                matches!(end, ScanEnd::TornTail { position, .. } if position == starts[3]),
                "cut {cut}"
            );
            assert_eq!(index.next_offset, 19, "cut {cut}");
        }
    }

    /// A flipped byte in a CRC-covered field is corruption naming that
    /// batch's offset below the durable point, and a torn tail above it,
    /// even with valid batches behind it: a device may keep a later unsynced
    /// write and lose an earlier one.
    #[test]
    fn flip_is_corruption_only_below_the_durable_point() {
        let (bytes, starts) = segment(4);
        let (from, to) = (starts[1] as usize, starts[2] as usize);
        for i in (from..to).filter(|&i| !(from..from + 24).contains(&i)) {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            let (_, end) = scan(&b, bytes.len() as u64);
            assert!(
                matches!(end, ScanEnd::Corrupt { offset: 13, position, .. } if position == starts[1]),
                "flip {i}: {end:?}"
            );
            let (_, end) = scan(&b, starts[1]);
            assert!(
                matches!(end, ScanEnd::TornTail { position, .. } if position == starts[1]),
                "flip {i} above the durable point: {end:?}"
            );
        }
    }

    /// Against a checkpoint, every flipped byte of every batch it covers,
    /// the header bytes the batch CRC skips included, is corruption.
    #[test]
    fn every_flip_below_the_checkpoint_is_corruption() {
        let (bytes, _) = segment(4);
        let cp = checkpoint_of(&bytes);
        assert_eq!(scan_with(&bytes, cp), ScanEnd::Clean);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(
                matches!(scan_with(&b, cp), ScanEnd::Corrupt { .. }),
                "flip at byte {i}: {:?}",
                scan_with(&b, cp)
            );
        }
    }

    /// Data missing before the checkpoint (cut, or zeros where batches
    /// were), and a checkpoint that does not fall on a batch boundary, are
    /// corruption; beyond the checkpoint a cut is a torn tail.
    #[test]
    fn checkpoint_bounds_the_torn_tail() {
        let (bytes, starts) = segment(4);
        let cp = checkpoint_of(&bytes[..starts[3] as usize]);
        for cut in [0, starts[1] as usize + 5, starts[2] as usize + 40] {
            let mut zeroed = bytes.clone();
            zeroed[cut..].fill(0);
            assert!(
                matches!(scan_with(&bytes[..cut], cp), ScanEnd::Corrupt { .. }),
                "cut {cut}"
            );
            assert!(
                matches!(scan_with(&zeroed, cp), ScanEnd::Corrupt { .. }),
                "zeroed from {cut}"
            );
        }
        assert!(matches!(
            scan_with(&bytes[..starts[3] as usize + 9], cp),
            ScanEnd::TornTail { .. }
        ));
        let off_boundary = Checkpoint {
            data_len: cp.data_len - 8,
            ..cp
        };
        assert!(matches!(scan_with(&bytes, off_boundary), ScanEnd::Corrupt { .. }));
        let wrong_offset = Checkpoint {
            next_offset: cp.next_offset + 1,
            ..cp
        };
        assert!(matches!(scan_with(&bytes, wrong_offset), ScanEnd::Corrupt { .. }));
    }

    /// In a compacted log gaps are allowed below the durable point, but the
    /// active segment's tail beyond it holds only appends: an offset flipped
    /// upward there is a torn tail, not a gap.
    #[test]
    fn compacted_tail_beyond_the_checkpoint_is_contiguous() {
        let (bytes, starts) = segment(3);
        let mut b = bytes.clone();
        b[starts[2] as usize + 4] ^= 0x04; // base offset + 2^34
        let limits = BatchLimits::default();
        let mut scanner = Scanner::new(10, 64, false, limits);
        assert_eq!(
            scanner.feed(&b, true),
            Step::End,
            "a gap is fine in a sealed compacted segment"
        );
        let mut scanner = Scanner::new(10, 64, false, limits);
        scanner.contiguous_from = Some(starts[1]);
        assert!(matches!(scanner.feed(&b, true), Step::Bad { position, .. } if position == starts[2]));
    }

    /// Out-of-sequence offsets are rejected unless the log is compacted.
    #[test]
    fn offsets_must_follow() {
        let (bytes, starts) = segment(3);
        let mut b = bytes.clone();
        b[starts[2] as usize] = 99;
        assert!(matches!(scan(&b, 0).1, ScanEnd::TornTail { .. }));
        let (scanner, end) = scan_segment(&b, 10, false, None, 0, BatchLimits::default(), 64);
        assert_eq!(end, ScanEnd::Clean);
        assert_eq!(scanner.index.next_offset, 102);
    }
}
