//! The recovery scan (sans-IO): which bytes of a segment are whole, valid
//! batches, and how the rest ends.
//!
//! A [`Scanner`] walks batches from the start of a segment, checking each
//! one's framing and CRC-32C ([`batch::check_crc`]), that offsets increase
//! (and, unless the log is compacted, are contiguous), and that append
//! times never go backwards. It stops at the first batch that fails. What
//! that failure means is decided by [`classify`]:
//!
//! - everything from there to the end of the file is zero: a clean end (the
//!   zero padding of the last written block, or preallocated space);
//! - some later position holds a valid batch that belongs after the bad one
//!   (CRC passes, offset not below the expected one): **corruption**, since a
//!   torn write only ever loses a suffix and never leaves valid data behind a
//!   hole;
//! - the bad batch lies before `valid_until` (data known to be durable: the
//!   whole of a sealed segment): **corruption**;
//! - otherwise: a **torn tail**, the remains of a write that never completed
//!   and was never acknowledged; the caller truncates it.
//!
//! The broker-patched header fields (`leader_epoch`, `append_time_ms`) are
//! not covered by the batch CRC (see `shoal_protocol::batch`); a flip there is
//! only caught if it breaks append-time order. `base_offset` is checked by
//! the offset sequence.

use crate::index::SegmentIndex;
use shoal_protocol::batch::{self, BatchError, BatchHeader, BatchLimits, BATCH_ALIGN, BATCH_HEADER_LEN};

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
    /// The next batch reaches past `Scanner::keep_below`; the scan stopped
    /// before it.
    Stopped,
}

/// Walks the batches of one segment, building its index as it goes.
#[derive(Debug)]
pub struct Scanner {
    /// Position in the segment of the next byte to verify.
    pub position: u64,
    /// The offset the next batch must start at (or after, when compacted).
    pub expected_offset: u64,
    pub index: SegmentIndex,
    /// Stop before the first batch holding an offset at or above this.
    pub keep_below: Option<u64>,
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
            last_append_ms: i64::MIN,
            contiguous,
            limits,
        }
    }

    /// Verifies the batches at the start of `buf`, which holds the segment
    /// from `self.position` on; `at_eof` says the file ends where `buf` does.
    pub fn feed(&mut self, buf: &[u8], at_eof: bool) -> Step {
        let mut rest = buf;
        loop {
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

    fn check_sequence(&self, header: &BatchHeader) -> Result<(), String> {
        let offset_ok = if self.contiguous {
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

/// Finds the first 8-aligned position in `buf[from..search_end]` holding a
/// valid batch (CRC passes, fully inside `buf`) whose base offset is at
/// least `expected_offset`. Positions are relative to `buf`.
pub fn find_valid_batch(
    buf: &[u8],
    from: usize,
    search_end: usize,
    expected_offset: u64,
    limits: &BatchLimits,
) -> Option<usize> {
    let start = from.div_ceil(BATCH_ALIGN) * BATCH_ALIGN;
    (start..search_end.min(buf.len())).step_by(BATCH_ALIGN).find(
        |&q| matches!(batch::check_crc(&buf[q..], limits), Ok((h, _)) if h.base_offset >= expected_offset),
    )
}

/// Decides what a failed batch means; see the module header for the rules.
pub fn classify(
    position: u64,
    expected_offset: u64,
    reason: String,
    valid_until: u64,
    valid_data_follows: bool,
    rest_is_zero: bool,
) -> ScanEnd {
    if valid_data_follows || position < valid_until {
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

/// Scans a whole segment held in memory. The I/O glue does the same over
/// chunks; this form is the reference the unit tests pin down.
pub fn scan_segment(
    bytes: &[u8],
    base_offset: u64,
    contiguous: bool,
    valid_until: u64,
    limits: BatchLimits,
    index_interval_bytes: u32,
) -> (SegmentIndex, ScanEnd) {
    let mut scanner = Scanner::new(base_offset, index_interval_bytes, contiguous, limits);
    let end = match scanner.feed(bytes, true) {
        Step::End | Step::Stopped => ScanEnd::Clean,
        Step::NeedMore { .. } => unreachable!("a scan at end of file never asks for more"),
        Step::Bad { position, reason } => {
            let p = position as usize;
            let follows =
                find_valid_batch(bytes, p + 1, bytes.len(), scanner.expected_offset, &limits).is_some();
            let zero = bytes[p..].iter().all(|&b| b == 0);
            classify(
                position,
                scanner.expected_offset,
                reason,
                valid_until,
                follows,
                zero,
            )
        }
    };
    (scanner.index, end)
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
        scan_segment(bytes, 10, true, valid_until, BatchLimits::default(), 64)
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

    /// Any flipped byte in a covered field of a non-tail batch is corruption
    /// naming that batch's offset; the same flip in a sealed segment too.
    #[test]
    fn flip_in_middle_is_corruption() {
        let (bytes, starts) = segment(4);
        let (from, to) = (starts[1] as usize, starts[2] as usize);
        for i in (from..to).filter(|&i| !(from + 12..from + 24).contains(&i)) {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            let (_, end) = scan(&b, 0);
            assert!(
                matches!(end, ScanEnd::Corrupt { offset: 13, position, .. } if position == starts[1]),
                "flip {i}: {end:?}"
            );
        }
        let mut b = bytes.clone();
        let tail = starts[3] as usize + 40;
        b[tail] ^= 1;
        assert!(matches!(scan(&b, 0).1, ScanEnd::TornTail { .. }));
        assert!(matches!(
            scan(&b, bytes.len() as u64).1,
            ScanEnd::Corrupt { offset: 19, .. }
        ));
    }

    /// Out-of-sequence offsets are rejected unless the log is compacted.
    #[test]
    fn offsets_must_follow() {
        let (bytes, starts) = segment(3);
        let mut b = bytes.clone();
        b[starts[2] as usize] = 99;
        assert!(matches!(scan(&b, 0).1, ScanEnd::TornTail { .. }));
        let (index, end) = scan_segment(&b, 10, false, 0, BatchLimits::default(), 64);
        assert_eq!(end, ScanEnd::Clean);
        assert_eq!(index.next_offset, 102);
    }
}
