//! Compaction planning (sans-IO): the latest value per key.
//!
//! A pass first reads every record of the log to learn the newest offset of
//! each key ([`KeyMap::observe`]), then rewrites sealed segments keeping a
//! record only if [`KeyMap::keep`] says so:
//! - records without a key are kept (they cannot be superseded);
//! - a keyed record is kept only if it is the newest for its key;
//! - a tombstone (no value) that is the newest for its key is kept until
//!   `tombstone_retention_ms` after its append, so consumers that lag less
//!   than that still see the delete, and then dropped.
//!
//! Offsets never change: kept records keep their offsets, so the log gains
//! gaps, which readers already skip.

use ahash::AHashMap;

/// Newest offset of every key seen, bounded by `keys_max`.
#[derive(Debug, Default)]
pub struct KeyMap {
    latest: AHashMap<Vec<u8>, u64>,
    keys_max: usize,
}

/// The map would track more keys than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyKeys {
    pub keys_max: usize,
}

impl KeyMap {
    pub fn new(keys_max: usize) -> Self {
        KeyMap {
            latest: AHashMap::new(),
            keys_max,
        }
    }

    /// Notes that `key` was written at `offset`; offsets must increase.
    pub fn observe(&mut self, key: &[u8], offset: u64) -> Result<(), TooManyKeys> {
        if let Some(latest) = self.latest.get_mut(key) {
            *latest = (*latest).max(offset);
            return Ok(());
        }
        if self.latest.len() >= self.keys_max {
            return Err(TooManyKeys {
                keys_max: self.keys_max,
            });
        }
        self.latest.insert(key.to_vec(), offset);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Whether the record at `offset` survives compaction at `now_ms`.
    pub fn keep(
        &self,
        key: Option<&[u8]>,
        offset: u64,
        tombstone: bool,
        append_ms: i64,
        now_ms: i64,
        tombstone_retention_ms: u64,
    ) -> bool {
        let Some(key) = key else { return true };
        if self.latest.get(key).is_some_and(|&latest| latest > offset) {
            return false;
        }
        !tombstone || now_ms.saturating_sub(append_ms) < tombstone_retention_ms as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the newest record per key survives; tombstones expire; keyless stay.
    #[test]
    fn latest_per_key() {
        let mut map = KeyMap::new(10);
        for (k, o) in [(b"a", 1), (b"b", 2), (b"a", 3), (b"c", 4)] {
            map.observe(k, o).unwrap();
        }
        assert!(!map.keep(Some(b"a"), 1, false, 0, 0, 10));
        assert!(map.keep(Some(b"a"), 3, false, 0, 0, 10));
        assert!(map.keep(Some(b"c"), 4, true, 100, 105, 10));
        assert!(!map.keep(Some(b"c"), 4, true, 100, 110, 10));
        assert!(map.keep(None, 0, true, 0, 1000, 10));
        let mut small = KeyMap::new(1);
        small.observe(b"x", 1).unwrap();
        assert_eq!(small.observe(b"y", 2), Err(TooManyKeys { keys_max: 1 }));
    }
}
