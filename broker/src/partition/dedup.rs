//! Deduplication state of one partition, sans-IO.
//!
//! Two mechanisms, both owned by the partition's shard:
//! - `message_id` window: a record whose `message_id` was stored within the
//!   topic's `dedup_window_ms` is not stored again; the produce reply names
//!   the offset of the first copy. Ids are kept as 128-bit hashes (two
//!   independently seeded 64-bit hashes), so the produce path allocates
//!   nothing per record; a false match needs a 2^-128-scale collision. The
//!   window is bounded by time and by [`DEDUP_IDS_MAX`] entries (oldest
//!   evicted first and counted), and rebuilt from the log's recent records
//!   when the partition opens, so it survives restarts.
//! - idempotent producer: per `producer_id`, the epoch and the last few
//!   batches' sequence ranges. A retried batch (same base sequence) is a
//!   duplicate of the batch stored before; a gap is `OutOfOrderSequence`.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

/// Most message ids one partition remembers.
pub const DEDUP_IDS_MAX: usize = 200_000;
/// Batches remembered per idempotent producer (as Kafka: 5 in flight).
pub const PRODUCER_BATCHES_MAX: usize = 5;
/// Idempotent producers remembered per partition.
pub const PRODUCERS_MAX: usize = 10_000;

/// A 128-bit fingerprint of a message id.
pub type IdHash = u128;

/// Hashes message ids with fixed seeds (stable for the process lifetime,
/// which is all the window needs since it is rebuilt on open).
#[derive(Clone)]
pub struct IdHasher {
    a: ahash::RandomState,
    b: ahash::RandomState,
}

impl Default for IdHasher {
    fn default() -> Self {
        IdHasher {
            a: ahash::RandomState::with_seeds(0x5151, 0x7a7a, 0x1234, 0x9876),
            b: ahash::RandomState::with_seeds(0xdead, 0xbeef, 0xcafe, 0xf00d),
        }
    }
}

impl IdHasher {
    pub fn hash(&self, id: &str) -> IdHash {
        let mut ha = self.a.build_hasher();
        ha.write(id.as_bytes());
        let mut hb = self.b.build_hasher();
        hb.write(id.as_bytes());
        (u128::from(ha.finish()) << 64) | u128::from(hb.finish())
    }
}

/// The message-id window of one partition.
#[derive(Default)]
pub struct IdWindow {
    ids: HashMap<IdHash, u64>,
    order: VecDeque<(IdHash, i64)>,
    /// Ids forgotten early because the window was full.
    pub evicted_early: u64,
}

impl IdWindow {
    /// The offset the id was stored at, if it is still in the window.
    pub fn lookup(&self, id: IdHash) -> Option<u64> {
        self.ids.get(&id).copied()
    }

    /// Remembers `id` stored at `offset` at `append_ms`.
    pub fn insert(&mut self, id: IdHash, offset: u64, append_ms: i64) {
        if self.ids.insert(id, offset).is_none() {
            self.order.push_back((id, append_ms));
        }
        while self.order.len() > DEDUP_IDS_MAX {
            if let Some((old, _)) = self.order.pop_front() {
                self.ids.remove(&old);
                self.evicted_early += 1;
            }
        }
    }

    /// Forgets ids appended before `now_ms - window_ms`.
    pub fn expire(&mut self, now_ms: i64, window_ms: u64) {
        let horizon = now_ms.saturating_sub(window_ms as i64);
        while let Some(&(id, at)) = self.order.front() {
            if at >= horizon {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&id);
        }
    }

    /// Forgets ids stored at or after `offset` (log truncated there).
    pub fn truncate_from(&mut self, offset: u64) {
        self.ids.retain(|_, o| *o < offset);
        let ids = &self.ids;
        self.order.retain(|(id, _)| ids.contains_key(id));
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// What the producer-sequence check decided for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not an idempotent batch, or the next batch in sequence: store it.
    Accept,
    /// A retry of a batch already stored at this base offset.
    Duplicate { base_offset: u64 },
    /// A gap or an older epoch: refuse.
    OutOfOrder { expected: u32 },
}

#[derive(Default)]
struct ProducerState {
    epoch: u16,
    /// (base_sequence, record_count, base_offset) of recent batches.
    recent: VecDeque<(u32, u32, u64)>,
}

/// Idempotent-producer sequences of one partition.
#[derive(Default)]
pub struct ProducerSequences {
    producers: HashMap<u64, ProducerState>,
}

impl ProducerSequences {
    pub fn check(&self, producer_id: u64, epoch: u16, base_sequence: u32) -> SequenceCheck {
        if producer_id == 0 {
            return SequenceCheck::Accept;
        }
        let Some(state) = self.producers.get(&producer_id) else {
            return SequenceCheck::Accept;
        };
        if epoch > state.epoch {
            return SequenceCheck::Accept;
        }
        if epoch < state.epoch {
            return SequenceCheck::OutOfOrder { expected: 0 };
        }
        if let Some(&(_, _, base_offset)) = state.recent.iter().find(|(seq, _, _)| *seq == base_sequence) {
            return SequenceCheck::Duplicate { base_offset };
        }
        let expected = state.recent.back().map_or(0, |(seq, n, _)| seq.wrapping_add(*n));
        if base_sequence == expected {
            SequenceCheck::Accept
        } else {
            SequenceCheck::OutOfOrder { expected }
        }
    }

    /// Records a stored batch.
    pub fn record(&mut self, producer_id: u64, epoch: u16, base_sequence: u32, count: u32, base_offset: u64) {
        if producer_id == 0 {
            return;
        }
        if !self.producers.contains_key(&producer_id) && self.producers.len() >= PRODUCERS_MAX {
            // Forget an arbitrary producer rather than grow without bound; it
            // will be accepted as new on its next batch.
            if let Some(&victim) = self.producers.keys().next() {
                self.producers.remove(&victim);
            }
        }
        let state = self.producers.entry(producer_id).or_default();
        if epoch != state.epoch {
            state.epoch = epoch;
            state.recent.clear();
        }
        state.recent.push_back((base_sequence, count, base_offset));
        while state.recent.len() > PRODUCER_BATCHES_MAX {
            state.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An id is found within the window and forgotten after it.
    #[test]
    fn window_expires() {
        let h = IdHasher::default();
        let mut w = IdWindow::default();
        w.insert(h.hash("a"), 7, 1_000);
        assert_eq!(w.lookup(h.hash("a")), Some(7));
        assert_eq!(w.lookup(h.hash("b")), None);
        w.expire(1_500, 1_000);
        assert_eq!(w.lookup(h.hash("a")), Some(7));
        w.expire(2_001, 1_000);
        assert_eq!(w.lookup(h.hash("a")), None);
    }

    /// Truncation forgets ids at and after the cut.
    #[test]
    fn window_truncates() {
        let h = IdHasher::default();
        let mut w = IdWindow::default();
        w.insert(h.hash("a"), 1, 0);
        w.insert(h.hash("b"), 5, 0);
        w.truncate_from(5);
        assert_eq!(w.lookup(h.hash("a")), Some(1));
        assert_eq!(w.lookup(h.hash("b")), None);
    }

    /// A retried batch is a duplicate; a gap is out of order; a new epoch resets.
    #[test]
    fn producer_sequences() {
        let mut s = ProducerSequences::default();
        assert_eq!(s.check(9, 0, 0), SequenceCheck::Accept);
        s.record(9, 0, 0, 3, 100);
        assert_eq!(s.check(9, 0, 0), SequenceCheck::Duplicate { base_offset: 100 });
        assert_eq!(s.check(9, 0, 3), SequenceCheck::Accept);
        assert_eq!(s.check(9, 0, 5), SequenceCheck::OutOfOrder { expected: 3 });
        assert_eq!(s.check(9, 1, 0), SequenceCheck::Accept);
        assert_eq!(s.check(0, 0, 77), SequenceCheck::Accept);
    }
}
