//! The per-partition tail batch cache.
//!
//! Direct I/O bypasses the page cache, so the log keeps the newest batches
//! itself: the exact bytes it appended, as shared [`Bytes`], which a fetch
//! can hand to a socket without copying or re-encoding. The cache always
//! holds a contiguous suffix of the log (it only ever loses its oldest
//! entries), so a reader at or after [`BatchCache::start_offset`] is served
//! entirely from memory. Batches not yet written to disk are never evicted:
//! they exist nowhere else.

use bytes::Bytes;
use std::collections::VecDeque;

/// One cached batch.
#[derive(Debug, Clone)]
pub struct CachedBatch {
    pub base_offset: u64,
    pub next_offset: u64,
    pub append_ms: i64,
    pub bytes: Bytes,
}

/// The newest batches of one log, oldest first.
#[derive(Debug)]
pub struct BatchCache {
    batches: VecDeque<CachedBatch>,
    bytes: usize,
    bytes_max: usize,
    /// Offsets at or after this are all in the cache (it may be empty).
    start_offset: u64,
}

impl BatchCache {
    pub fn new(bytes_max: usize, log_end_offset: u64) -> Self {
        BatchCache {
            batches: VecDeque::new(),
            bytes: 0,
            bytes_max,
            start_offset: log_end_offset,
        }
    }

    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds the newest batch, then evicts old batches written to disk
    /// (`next_offset <= written_offset`) while over capacity.
    pub fn push(&mut self, batch: CachedBatch, written_offset: u64) {
        if let Some(last) = self.batches.back() {
            assert!(
                batch.base_offset >= last.next_offset,
                "cache: offsets must increase"
            );
        }
        self.bytes += batch.bytes.len();
        self.batches.push_back(batch);
        self.evict(written_offset);
    }

    /// Evicts written batches while over capacity.
    pub fn evict(&mut self, written_offset: u64) {
        while self.bytes > self.bytes_max {
            match self.batches.front() {
                Some(front) if front.next_offset <= written_offset => {
                    self.start_offset = front.next_offset;
                    self.bytes -= front.bytes.len();
                    self.batches.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Index of the first batch whose records reach `offset`, if the cache
    /// covers it.
    fn position(&self, offset: u64) -> Option<usize> {
        if offset < self.start_offset {
            return None;
        }
        let i = self.batches.partition_point(|b| b.next_offset <= offset);
        (i < self.batches.len()).then_some(i)
    }

    /// Whole batches from the one holding `offset` (or the next after a gap),
    /// stopping before `end_offset` and after `max_bytes` (at least one
    /// batch). `None` if the cache does not cover `offset`.
    pub fn read(&self, offset: u64, end_offset: u64, max_bytes: usize) -> Option<Vec<CachedBatch>> {
        if offset < self.start_offset {
            return None;
        }
        let mut out = Vec::new();
        let mut total = 0;
        let Some(first) = self.position(offset) else {
            return Some(out);
        };
        for b in self.batches.range(first..) {
            if b.next_offset > end_offset || (!out.is_empty() && total + b.bytes.len() > max_bytes) {
                break;
            }
            total += b.bytes.len();
            out.push(b.clone());
        }
        Some(out)
    }

    /// The cached batch holding `offset`, if any.
    pub fn find(&self, offset: u64) -> Option<&CachedBatch> {
        self.position(offset).map(|i| &self.batches[i])
    }

    /// Drops every batch at or after `offset` (truncate_suffix); the log now
    /// ends at `new_end`.
    pub fn truncate_from(&mut self, offset: u64, new_end: u64) {
        while self.batches.back().is_some_and(|b| b.next_offset > offset) {
            let b = self.batches.pop_back().expect("checked");
            self.bytes -= b.bytes.len();
        }
        if self.batches.is_empty() || self.start_offset > new_end {
            self.start_offset = new_end;
        }
    }

    /// Drops batches before `offset` (retention, compaction).
    pub fn drop_before(&mut self, offset: u64) {
        while self.batches.front().is_some_and(|b| b.next_offset <= offset) {
            let b = self.batches.pop_front().expect("checked");
            self.bytes -= b.bytes.len();
            self.start_offset = b.next_offset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: u64, n: u64, len: usize) -> CachedBatch {
        CachedBatch {
            base_offset: base,
            next_offset: base + n,
            append_ms: base as i64,
            bytes: Bytes::from(vec![0u8; len]),
        }
    }

    /// Reads return whole batches from the one holding the offset; eviction
    /// spares unwritten batches and keeps the cache a suffix.
    #[test]
    fn read_and_evict() {
        let mut cache = BatchCache::new(250, 0);
        for i in 0..3 {
            cache.push(batch(i * 10, 10, 100), 0);
        }
        assert_eq!(cache.start_offset(), 0, "nothing written: nothing evicted");
        cache.evict(20);
        assert_eq!(cache.start_offset(), 10);
        assert!(cache.read(5, 30, 1000).is_none());
        let got = cache.read(15, 30, 1000).unwrap();
        assert_eq!(
            got.iter().map(|b| b.base_offset).collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert_eq!(cache.read(15, 30, 1).unwrap().len(), 1, "at least one batch");
        assert_eq!(cache.read(15, 20, 1000).unwrap().len(), 1, "end bound");
        assert!(cache.read(30, 30, 1000).unwrap().is_empty());
        cache.truncate_from(20, 20);
        assert_eq!(cache.read(10, 100, 1000).unwrap().len(), 1);
        cache.drop_before(20);
        assert_eq!(cache.start_offset(), 20);
        assert_eq!(cache.bytes(), 0);
    }
}
