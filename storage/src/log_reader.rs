//! Reads: by offset, by timestamp, and the append time of an offset.
//!
//! A read returns whole batches as shared [`Bytes`]: from the tail cache
//! when it covers the offset (no disk access, no copy), otherwise from the
//! segment file with one read into one buffer that the batches then slice.
//! Every batch read from disk has its framing and CRC checked; a failure is
//! reported as corruption at that offset.

use crate::batch_cache::CachedBatch;
use crate::device::Device;
use crate::error::LogError;
use crate::partition_log::{corrupt, PartitionLog};
use crate::segment::Segment;
use bytes::Bytes;
use shoal_protocol::batch::{self, BatchError, BatchHeader};
use std::rc::Rc;

/// One stored batch as returned by a read.
pub type StoredBatch = CachedBatch;

/// The answer to a read.
#[derive(Debug, Clone, Default)]
pub struct ReadBatches {
    /// Whole batches in offset order, starting with the one holding the
    /// requested offset (or the next one after a compaction gap).
    pub batches: Vec<StoredBatch>,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

impl ReadBatches {
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn total_bytes(&self) -> usize {
        self.batches.iter().map(|b| b.bytes.len()).sum()
    }

    /// One past the last offset returned (`None` if empty).
    pub fn next_offset(&self) -> Option<u64> {
        self.batches.last().map(|b| b.next_offset)
    }
}

impl<D: Device> PartitionLog<D> {
    /// Reads whole batches from the one holding `from_offset`, up to about
    /// `max_bytes` (at least one batch), below the high watermark.
    pub async fn read(&self, from_offset: u64, max_bytes: usize) -> Result<ReadBatches, LogError> {
        self.read_below(from_offset, max_bytes, self.high_watermark())
            .await
    }

    /// Like [`read`](Self::read) but up to the log end, including batches
    /// not yet acknowledged (for replication and maintenance).
    pub async fn read_uncommitted(
        &self,
        from_offset: u64,
        max_bytes: usize,
    ) -> Result<ReadBatches, LogError> {
        self.read_below(from_offset, max_bytes, self.pipeline.log_end())
            .await
    }

    async fn read_below(&self, from: u64, max_bytes: usize, end: u64) -> Result<ReadBatches, LogError> {
        let (start, log_end) = (self.log_start.get(), self.pipeline.log_end());
        if from < start || from > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset: from,
                start,
                end: log_end,
            });
        }
        let mut out = ReadBatches {
            batches: Vec::new(),
            high_watermark: self.high_watermark(),
            log_start_offset: start,
        };
        if from >= end {
            return Ok(out);
        }
        if let Some(batches) = self.pipeline.cache().read(from, end, max_bytes) {
            out.batches = batches;
            self.bump(|s| s.cache_reads += 1);
            return Ok(out);
        }
        self.bump(|s| s.disk_reads += 1);
        // The disk serves only batches the writer has written: later ones
        // are in the cache (unwritten batches always are), and one whose
        // first bytes are written but not its last must not be read here.
        // The cache missed, so `from` lies below `written`.
        let end = end.min(self.pipeline.written());
        let mut at = from;
        while out.batches.is_empty() && at < end {
            let Some(segment) = self.segment_for(at) else {
                break;
            };
            out.batches = self.read_segment(&segment, at, end, max_bytes).await?;
            // A compacted segment may end before the next one starts (its
            // last records compacted away; after a scan its index ends at
            // its last batch): go on from the next segment then.
            let seg_end = segment.index.borrow().next_offset;
            let next = match self.segments.borrow().range(segment.base_offset + 1..).next() {
                Some((&next_base, _)) => seg_end.max(next_base),
                None => seg_end,
            };
            if next <= at {
                break;
            }
            at = next;
        }
        Ok(out)
    }

    /// The segment holding `offset` (the last one starting at or before it).
    fn segment_for(&self, offset: u64) -> Option<Rc<Segment<D>>> {
        let segments = self.segments.borrow();
        segments
            .range(..=offset)
            .next_back()
            .or_else(|| segments.iter().next())
            .map(|(_, s)| s.clone())
    }

    /// Reads batches of one segment from disk, checking each one: framing,
    /// CRC, and that offsets follow (a batch read at an index entry starts
    /// at that entry's offset; then each starts where the previous one
    /// ended, or later in a compacted log, and none ends past the segment's
    /// known end): the base offset is not covered by the CRC, and a damaged
    /// one must not move or hide a batch.
    async fn read_segment(
        &self,
        segment: &Segment<D>,
        from: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredBatch>, LogError> {
        let limits = &self.config.batch_limits;
        // Every batch below `end` (at most the written offset when the read
        // began) lies within these bytes, which only grow.
        let written = segment.written_len.get();
        let segment_end = segment.index.borrow().next_offset;
        let entry = segment.index.borrow().entry_for_offset(from);
        let mut pos = entry.map_or(0, |(_, position)| position);
        let mut sequence = OffsetSequence {
            expected: entry.map_or(segment.base_offset, |(offset, _)| offset),
            exact: entry.is_some() || !self.config.compacted,
            contiguous: !self.config.compacted,
        };
        let mut out: Vec<StoredBatch> = Vec::new();
        let mut total = 0usize;
        let mut want = max_bytes.max(self.config.read_chunk_bytes);
        while pos < written {
            let len = (want as u64).min(written - pos) as usize;
            let buf = Bytes::copy_from_slice(&segment.read(pos, len).await?);
            let mut at = 0usize;
            while at < buf.len() {
                let damaged = |reason: String| {
                    let offset = out.last().map_or(from, |b| b.next_offset);
                    corrupt(segment.base_offset, offset, pos + at as u64, reason)
                };
                let (header, blen) = match batch::check_crc(&buf[at..], limits) {
                    Ok(ok) => ok,
                    Err(BatchError::Truncated { need, .. }) if pos + (at + need) as u64 <= written => {
                        want = want.max(need);
                        break;
                    }
                    Err(e) => return Err(damaged(e.to_string())),
                };
                sequence.next(&header).map_err(&damaged)?;
                if header.next_offset() > segment_end {
                    return Err(damaged(format!(
                        "batch ends at offset {}, past its segment's end {segment_end}",
                        header.next_offset()
                    )));
                }
                if header.next_offset() > end {
                    return Ok(out);
                }
                if header.next_offset() > from {
                    if !out.is_empty() && total + blen > max_bytes {
                        return Ok(out);
                    }
                    total += blen;
                    out.push(StoredBatch {
                        base_offset: header.base_offset,
                        next_offset: header.next_offset(),
                        append_ms: header.append_time_ms,
                        bytes: buf.slice(at..at + blen),
                    });
                }
                at += blen;
                if header.next_offset() >= end {
                    // Nothing past `end` is wanted, and what follows may be
                    // a batch only partly written yet.
                    return Ok(out);
                }
            }
            pos += at as u64;
            if !out.is_empty() && total >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// The first offset whose batch was appended at or after `ts_ms`, or
    /// `None` if every batch is older. Uses the time index to start near it.
    pub async fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<u64>, LogError> {
        let start = {
            let segments = self.segments.borrow();
            let found = segments.values().find(|s| {
                let index = s.index.borrow();
                !index.is_empty() && index.max_append_ms >= ts_ms
            });
            match found {
                Some(segment) => segment.index.borrow().entry_for_time(ts_ms).0,
                None => return Ok(None),
            }
        };
        let mut at = start.max(self.log_start.get());
        let chunk = self.config.read_chunk_bytes;
        loop {
            let read = self.read(at, chunk).await?;
            let Some(next) = read.next_offset() else {
                return Ok(None);
            };
            if let Some(b) = read.batches.iter().find(|b| b.append_ms >= ts_ms) {
                return Ok(Some(b.base_offset.max(at)));
            }
            at = next;
        }
    }

    /// Append time of the batch holding `offset` (or of the next batch after
    /// a gap); `None` at or past the log end. For lag in seconds.
    pub async fn append_time_of(&self, offset: u64) -> Result<Option<i64>, LogError> {
        if let Some(b) = self.pipeline.cache().find(offset) {
            return Ok(Some(b.append_ms));
        }
        let read = self.read_uncommitted(offset, 1).await?;
        Ok(read.batches.first().map(|b| b.append_ms))
    }
}

/// The offsets a segment's batches must start at, batch after batch.
struct OffsetSequence {
    expected: u64,
    /// The next batch must start exactly at `expected` (else at or after).
    exact: bool,
    contiguous: bool,
}

impl OffsetSequence {
    fn next(&mut self, header: &BatchHeader) -> Result<(), String> {
        let ok = if self.exact {
            header.base_offset == self.expected
        } else {
            header.base_offset >= self.expected
        };
        if !ok {
            return Err(format!(
                "batch base offset {} where {} was expected",
                header.base_offset, self.expected
            ));
        }
        self.expected = header.next_offset();
        self.exact = self.contiguous;
        Ok(())
    }
}
