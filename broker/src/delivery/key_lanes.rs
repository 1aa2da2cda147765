//! Per-key ordered retry lanes, sans-IO.
//!
//! With a topic's `ordered_retry` on, every key of a partition is a lane:
//! the offsets of that key not yet done (acked or quarantined), in order.
//! Only the head of a lane may be delivered; the others are held. So while
//! a key's record is in flight or waiting for its retry, later records of
//! that key wait behind it and other keys keep flowing. The wait is bounded
//! by the head's remaining attempts times the maximum backoff: when the
//! head is quarantined the next one becomes the head.

use std::collections::{BTreeSet, HashMap};

/// Lanes of one partition, by key hash.
#[derive(Debug, Default, Clone)]
pub struct KeyLanes {
    lanes: HashMap<u64, BTreeSet<u64>>,
}

impl KeyLanes {
    /// Adds `offset` to its key's lane; true if it is the head (deliverable).
    pub fn push(&mut self, key: u64, offset: u64) -> bool {
        let lane = self.lanes.entry(key).or_default();
        lane.insert(offset);
        lane.first() == Some(&offset)
    }

    /// Removes a done offset; returns the new head if `offset` was the head
    /// and later offsets of the key were waiting.
    pub fn remove(&mut self, key: u64, offset: u64) -> Option<u64> {
        let lane = self.lanes.get_mut(&key)?;
        let was_head = lane.first() == Some(&offset);
        lane.remove(&offset);
        let next = lane.first().copied();
        if lane.is_empty() {
            self.lanes.remove(&key);
        }
        if was_head {
            next
        } else {
            None
        }
    }

    /// Offsets held behind a head, over all keys.
    pub fn held(&self) -> usize {
        self.lanes.values().map(|l| l.len().saturating_sub(1)).sum()
    }

    pub fn clear(&mut self) {
        self.lanes.clear();
    }
}

/// The lane of a record key (FNV-1a: stable and cheap; collisions only
/// make two keys share a lane, which keeps order and costs some waiting).
pub fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the head of a lane is deliverable; removing it promotes the next.
    #[test]
    fn head_then_next() {
        let mut l = KeyLanes::default();
        assert!(l.push(1, 10));
        assert!(!l.push(1, 12));
        assert!(l.push(2, 11), "other keys flow");
        assert_eq!(l.held(), 1);
        assert_eq!(l.remove(1, 10), Some(12));
        assert_eq!(l.remove(1, 12), None);
        assert_eq!(l.held(), 0);
    }
}
