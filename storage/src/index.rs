//! Sparse offset index and time index of one segment (sans-IO).
//!
//! Both are rebuildable from the log: recovery scans a segment and feeds
//! every batch to [`SegmentIndex::observe`], which keeps one entry per
//! `interval_bytes` of log. A lookup returns the position of the last entry
//! at or before the target; the caller scans forward from there.
//!
//! The in-memory index of every segment is kept (it is small: one entry per
//! 4 KiB by default). A sealed segment's index is written to two files when
//! the segment is rolled, after its data is fdatasynced, so reopening does
//! not rescan sealed segments. Both files share one layout (little-endian):
//!
//! | off | len | field               |
//! |----:|----:|---------------------|
//! |   0 |   4 | magic `SIDX`/`STIX` |
//! |   4 |   4 | version = 1         |
//! |   8 |   8 | base offset         |
//! |  16 |   8 | next offset         |
//! |  24 |   8 | data length (bytes) |
//! |  32 |   8 | first append time   |
//! |  40 |   8 | max append time     |
//! |  48 |   4 | entry count         |
//! |  52 |   4 | entry length        |
//! |  56 |   … | entries             |
//! | end |   4 | CRC-32C of all above|
//!
//! An offset entry is `(relative offset u32, position u32)`; a time entry is
//! `(append time i64, relative offset u32, position u32)`. A file that fails
//! any check is ignored and the index rebuilt from the log.

const OFFSET_MAGIC: &[u8; 4] = b"SIDX";
const TIME_MAGIC: &[u8; 4] = b"STIX";
const INDEX_VERSION: u32 = 1;
const HEADER_LEN: usize = 56;
const OFFSET_ENTRY_LEN: usize = 8;
const TIME_ENTRY_LEN: usize = 16;
const CRC_LEN: usize = 4;

/// Why an index file was rejected (it is then rebuilt from the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("index file is malformed: {0}")]
    Malformed(&'static str),
    #[error("index file checksum mismatch")]
    Checksum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub append_time_ms: i64,
    pub relative_offset: u32,
    pub position: u32,
}

/// The indexes and summary of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    pub base_offset: u64,
    /// One past the last offset stored in the segment.
    pub next_offset: u64,
    /// Bytes of whole batches in the segment.
    pub data_len: u64,
    pub first_append_ms: Option<i64>,
    pub max_append_ms: i64,
    interval_bytes: u32,
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
}

impl SegmentIndex {
    pub fn new(base_offset: u64, interval_bytes: u32) -> Self {
        SegmentIndex {
            base_offset,
            next_offset: base_offset,
            data_len: 0,
            first_append_ms: None,
            max_append_ms: i64::MIN,
            interval_bytes,
            offsets: Vec::new(),
            times: Vec::new(),
        }
    }

    /// Records the batch `[base_offset, next_offset)` stored at `position`.
    /// Batches must be observed in log order.
    pub fn observe(&mut self, base_offset: u64, next_offset: u64, position: u64, len: u32, append_ms: i64) {
        assert!(base_offset >= self.next_offset, "index: offsets must increase");
        assert!(position == self.data_len, "index: batches must be contiguous");
        let due = match self.offsets.last() {
            None => true,
            Some(last) => position - u64::from(last.position) >= u64::from(self.interval_bytes),
        };
        if due {
            let relative_offset = (base_offset - self.base_offset) as u32;
            let position = position as u32;
            self.offsets.push(OffsetEntry {
                relative_offset,
                position,
            });
            self.times.push(TimeEntry {
                append_time_ms: append_ms,
                relative_offset,
                position,
            });
        }
        self.next_offset = next_offset;
        self.data_len = position + u64::from(len);
        self.first_append_ms.get_or_insert(append_ms);
        self.max_append_ms = self.max_append_ms.max(append_ms);
    }

    pub fn is_empty(&self) -> bool {
        self.data_len == 0
    }

    /// Position of the last indexed batch starting at or before `offset`.
    pub fn position_for_offset(&self, offset: u64) -> u64 {
        let rel = offset.saturating_sub(self.base_offset);
        let i = self
            .offsets
            .partition_point(|e| u64::from(e.relative_offset) <= rel);
        i.checked_sub(1)
            .map_or(0, |i| u64::from(self.offsets[i].position))
    }

    /// Base offset and position of the last indexed batch starting at or
    /// before `offset`; `None` if there is none (then scan from position 0).
    pub fn entry_for_offset(&self, offset: u64) -> Option<(u64, u64)> {
        let rel = offset.saturating_sub(self.base_offset);
        let i = self
            .offsets
            .partition_point(|e| u64::from(e.relative_offset) <= rel);
        let e = self.offsets.get(i.checked_sub(1)?)?;
        Some((
            self.base_offset + u64::from(e.relative_offset),
            u64::from(e.position),
        ))
    }

    /// Offset and position of the last indexed batch appended strictly
    /// before `ts_ms` (or the segment start): the first batch with append
    /// time `>= ts_ms` is at or after it.
    pub fn entry_for_time(&self, ts_ms: i64) -> (u64, u64) {
        let i = self.times.partition_point(|e| e.append_time_ms < ts_ms);
        i.checked_sub(1).map_or((self.base_offset, 0), |i| {
            let e = self.times[i];
            (
                self.base_offset + u64::from(e.relative_offset),
                u64::from(e.position),
            )
        })
    }

    pub fn encode_offsets(&self) -> Vec<u8> {
        let mut out = self.header(OFFSET_MAGIC, self.offsets.len(), OFFSET_ENTRY_LEN);
        for e in &self.offsets {
            out.extend_from_slice(&e.relative_offset.to_le_bytes());
            out.extend_from_slice(&e.position.to_le_bytes());
        }
        seal(out)
    }

    pub fn encode_times(&self) -> Vec<u8> {
        let mut out = self.header(TIME_MAGIC, self.times.len(), TIME_ENTRY_LEN);
        for e in &self.times {
            out.extend_from_slice(&e.append_time_ms.to_le_bytes());
            out.extend_from_slice(&e.relative_offset.to_le_bytes());
            out.extend_from_slice(&e.position.to_le_bytes());
        }
        seal(out)
    }

    fn header(&self, magic: &[u8; 4], count: usize, entry_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + count * entry_len + CRC_LEN);
        out.extend_from_slice(magic);
        out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&self.base_offset.to_le_bytes());
        out.extend_from_slice(&self.next_offset.to_le_bytes());
        out.extend_from_slice(&self.data_len.to_le_bytes());
        out.extend_from_slice(&self.first_append_ms.unwrap_or(i64::MIN).to_le_bytes());
        out.extend_from_slice(&self.max_append_ms.to_le_bytes());
        out.extend_from_slice(&(count as u32).to_le_bytes());
        out.extend_from_slice(&(entry_len as u32).to_le_bytes());
        out
    }

    /// Rebuilds an index from its two files, checking every field.
    pub fn decode(
        base_offset: u64,
        interval_bytes: u32,
        offsets: &[u8],
        times: &[u8],
    ) -> Result<Self, IndexError> {
        let (oh, obody) = open_file(offsets, OFFSET_MAGIC, OFFSET_ENTRY_LEN)?;
        let (th, tbody) = open_file(times, TIME_MAGIC, TIME_ENTRY_LEN)?;
        if oh != th || oh.base_offset != base_offset || oh.next_offset < oh.base_offset {
            return Err(IndexError::Malformed("headers disagree"));
        }
        let mut index = SegmentIndex::new(base_offset, interval_bytes);
        index.next_offset = oh.next_offset;
        index.data_len = oh.data_len;
        index.first_append_ms = (oh.first_append_ms != i64::MIN).then_some(oh.first_append_ms);
        index.max_append_ms = oh.max_append_ms;
        index.offsets = obody
            .chunks_exact(OFFSET_ENTRY_LEN)
            .map(|c| OffsetEntry {
                relative_offset: u32_at(c, 0),
                position: u32_at(c, 4),
            })
            .collect();
        index.times = tbody
            .chunks_exact(TIME_ENTRY_LEN)
            .map(|c| TimeEntry {
                append_time_ms: u64_at(c, 0) as i64,
                relative_offset: u32_at(c, 8),
                position: u32_at(c, 12),
            })
            .collect();
        index.check_entries()?;
        Ok(index)
    }

    fn check_entries(&self) -> Result<(), IndexError> {
        let span = self.next_offset - self.base_offset;
        let in_range =
            |rel: u32, pos: u32| u64::from(rel) < span.max(1) && u64::from(pos) < self.data_len.max(1);
        let offsets_ok = self
            .offsets
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position)
            && self
                .offsets
                .iter()
                .all(|e| in_range(e.relative_offset, e.position));
        let times_ok = self
            .times
            .windows(2)
            .all(|w| w[0].append_time_ms <= w[1].append_time_ms)
            && self.times.len() == self.offsets.len()
            && self
                .times
                .iter()
                .zip(&self.offsets)
                .all(|(t, o)| t.relative_offset == o.relative_offset && t.position == o.position);
        if !offsets_ok {
            return Err(IndexError::Malformed("offset entries out of order or range"));
        }
        if !times_ok {
            return Err(IndexError::Malformed("time entries out of order or mismatched"));
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
struct FileHeader {
    base_offset: u64,
    next_offset: u64,
    data_len: u64,
    first_append_ms: i64,
    max_append_ms: i64,
    count: usize,
}

fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn open_file<'a>(
    bytes: &'a [u8],
    magic: &[u8; 4],
    entry_len: usize,
) -> Result<(FileHeader, &'a [u8]), IndexError> {
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(IndexError::Malformed("too short"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    if crc32c::crc32c(body) != u32_at(crc, 0) {
        return Err(IndexError::Checksum);
    }
    if &body[0..4] != magic || u32_at(body, 4) != INDEX_VERSION {
        return Err(IndexError::Malformed("bad magic or version"));
    }
    let count = u32_at(body, 48) as usize;
    if u32_at(body, 52) as usize != entry_len || body.len() != HEADER_LEN + count * entry_len {
        return Err(IndexError::Malformed("entry count does not match length"));
    }
    let header = FileHeader {
        base_offset: u64_at(body, 8),
        next_offset: u64_at(body, 16),
        data_len: u64_at(body, 24),
        first_append_ms: u64_at(body, 32) as i64,
        max_append_ms: u64_at(body, 40) as i64,
        count,
    };
    Ok((header, &body[HEADER_LEN..]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentIndex {
        let mut index = SegmentIndex::new(100, 1000);
        let mut pos = 0;
        for i in 0..50u64 {
            index.observe(100 + i * 3, 100 + i * 3 + 3, pos, 400, 1_000 + i as i64 * 10);
            pos += 400;
        }
        index
    }

    /// Entries are sparse, lookups land at or before the target, and the
    /// encoded files decode to the same index.
    #[test]
    fn observe_lookup_roundtrip() {
        let index = sample();
        assert_eq!(index.offsets.len(), 17);
        assert_eq!(index.position_for_offset(0), 0);
        assert_eq!(index.position_for_offset(100), 0);
        // Batch 10 starts at offset 130, position 4000: an entry (every third batch).
        assert_eq!(index.position_for_offset(131), 3600);
        assert_eq!(index.entry_for_time(1_000), (100, 0));
        assert_eq!(index.entry_for_time(1_095), (127, 3600));
        let decoded =
            SegmentIndex::decode(100, 1000, &index.encode_offsets(), &index.encode_times()).unwrap();
        assert_eq!(decoded, index);
    }

    /// Any flipped byte or cut makes the files rejected, never misread.
    #[test]
    fn damaged_files_rejected() {
        let index = sample();
        let (offsets, times) = (index.encode_offsets(), index.encode_times());
        for i in 0..offsets.len() {
            let mut o = offsets.clone();
            o[i] ^= 1;
            assert!(
                SegmentIndex::decode(100, 1000, &o, &times).is_err(),
                "flip at {i}"
            );
        }
        assert!(SegmentIndex::decode(100, 1000, &offsets[..offsets.len() - 1], &times).is_err());
        assert!(SegmentIndex::decode(101, 1000, &offsets, &times).is_err());
    }
}
