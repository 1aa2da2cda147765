//! The dead-letter quarantine held by one shard, sans-IO.
//!
//! An entry is stored on the shard that coordinates the group whose
//! deliveries failed, because that shard decides the quarantine and the
//! redrive; topic-wide reads (browse, counts, purge) ask every shard and
//! merge. Entry ids are unique across shards: `(sequence << 8) | shard`,
//! so merged pages are ordered by id and a cursor works across shards.
//! Browsing never changes an entry.

use std::collections::{BTreeMap, HashMap};

use shoal_protocol::messages::dlq::{QuarantineEntry, QuarantineFilter, ReasonCount};

/// Bits of an entry id that hold the shard id.
const SHARD_BITS: u32 = 8;
/// Most shards whose ids fit in an entry id.
pub const SHARDS_MAX: u32 = 1 << SHARD_BITS;
/// Most entries one shard keeps; beyond it new failures are dropped and counted.
pub const ENTRIES_MAX: usize = 1_000_000;
/// Times an entry may be redriven before the loop guard refuses it.
pub const REDRIVE_MAX: u32 = 3;

/// One shard's quarantine entries, all topics.
#[derive(Debug, Default)]
pub struct QuarantineStore {
    entries: BTreeMap<u64, QuarantineEntry>,
    next_sequence: u64,
    shard: u32,
    /// Entries refused because the store was full.
    pub dropped_total: u64,
}

impl QuarantineStore {
    pub fn new(shard: u32) -> Self {
        assert!(shard < SHARDS_MAX, "entry ids hold at most {SHARDS_MAX} shards");
        QuarantineStore {
            shard,
            ..Default::default()
        }
    }

    /// The id the next entry gets.
    pub fn allocate_id(&mut self) -> u64 {
        let id = (self.next_sequence << SHARD_BITS) | u64::from(self.shard);
        self.next_sequence += 1;
        id
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= ENTRIES_MAX
    }

    /// Adds an entry (new, or replayed from the state log).
    pub fn insert(&mut self, entry: QuarantineEntry) {
        self.next_sequence = self.next_sequence.max((entry.entry_id >> SHARD_BITS) + 1);
        self.entries.insert(entry.entry_id, entry);
    }

    pub fn remove(&mut self, id: u64) -> Option<QuarantineEntry> {
        self.entries.remove(&id)
    }

    pub fn get(&self, id: u64) -> Option<&QuarantineEntry> {
        self.entries.get(&id)
    }

    /// Entries of `topic` matching `filter` with ids above `cursor`, in id order.
    pub fn matching<'a>(
        &'a self,
        topic: &'a str,
        filter: &'a QuarantineFilter,
        cursor: Option<u64>,
    ) -> impl Iterator<Item = &'a QuarantineEntry> + 'a {
        let from = cursor.map_or(0, |c| c.saturating_add(1));
        self.entries
            .range(from..)
            .map(|(_, e)| e)
            .filter(move |e| e.topic == topic && matches(filter, e))
    }

    /// Entries of one group partition (for stats).
    pub fn depth(&self, group: &str, topic: &str, partition: u32) -> u64 {
        self.entries
            .values()
            .filter(|e| e.group == group && e.topic == topic && e.partition == partition)
            .count() as u64
    }

    /// Entries of one partition over all groups.
    pub fn partition_depth(&self, topic: &str, partition: u32) -> u64 {
        self.entries
            .values()
            .filter(|e| e.topic == topic && e.partition == partition)
            .count() as u64
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// True if `entry` passes `filter` (empty fields match everything).
pub fn matches(filter: &QuarantineFilter, entry: &QuarantineEntry) -> bool {
    filter.group.as_ref().is_none_or(|g| *g == entry.group)
        && filter.partition.is_none_or(|p| p == entry.partition)
        && filter
            .reason_contains
            .as_ref()
            .is_none_or(|r| entry.reason.contains(r.as_str()))
        && (filter.entry_ids.is_empty() || filter.entry_ids.contains(&entry.entry_id))
}

/// Counts entries by (group, reason), largest first, ties by name.
pub fn count_by_reason<'a>(entries: impl Iterator<Item = &'a QuarantineEntry>) -> Vec<ReasonCount> {
    let mut counts: HashMap<(&str, &str), u64> = HashMap::new();
    for e in entries {
        *counts.entry((e.group.as_str(), e.reason.as_str())).or_default() += 1;
    }
    let mut out: Vec<ReasonCount> = counts
        .into_iter()
        .map(|((group, reason), count)| ReasonCount {
            group: group.to_string(),
            reason: reason.to_string(),
            count,
        })
        .collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| (&a.group, &a.reason).cmp(&(&b.group, &b.reason)))
    });
    out
}

/// Adds up per-shard counts (they share (group, reason) keys).
pub fn merge_counts(parts: impl IntoIterator<Item = ReasonCount>) -> Vec<ReasonCount> {
    let mut sum: BTreeMap<(String, String), u64> = BTreeMap::new();
    for c in parts {
        *sum.entry((c.group, c.reason)).or_default() += c.count;
    }
    let mut out: Vec<ReasonCount> = sum
        .into_iter()
        .map(|((group, reason), count)| ReasonCount { group, reason, count })
        .collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| (&a.group, &a.reason).cmp(&(&b.group, &b.reason)))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(id: u64, group: &str, partition: u32, reason: &str) -> QuarantineEntry {
        QuarantineEntry {
            entry_id: id,
            topic: "t".into(),
            partition,
            offset: id,
            timestamp_ms: 0,
            key: None,
            value: None,
            headers: Vec::new(),
            message_id: None,
            group: group.into(),
            attempts: 3,
            reason: reason.into(),
            first_failure_at_ms: 0,
            last_failure_at_ms: 0,
            quarantined_at_ms: 0,
            redrive_count: 0,
        }
    }

    /// Filters, cursors and counts by reason see the same entries.
    #[test]
    fn filter_cursor_counts() {
        let mut q = QuarantineStore::new(1);
        let ids: Vec<u64> = (0..4).map(|_| q.allocate_id()).collect();
        assert_eq!(ids, vec![1, 257, 513, 769]);
        q.insert(entry(ids[0], "a", 0, "timeout"));
        q.insert(entry(ids[1], "a", 1, "bad json"));
        q.insert(entry(ids[2], "b", 0, "timeout"));
        q.insert(entry(ids[3], "a", 0, "timeout again"));
        let f = QuarantineFilter {
            group: Some("a".into()),
            reason_contains: Some("timeout".into()),
            ..Default::default()
        };
        let got: Vec<u64> = q.matching("t", &f, None).map(|e| e.entry_id).collect();
        assert_eq!(got, vec![1, 769]);
        let after: Vec<u64> = q.matching("t", &f, Some(1)).map(|e| e.entry_id).collect();
        assert_eq!(after, vec![769]);
        let counts = count_by_reason(q.matching("t", &QuarantineFilter::default(), None));
        assert_eq!(counts.len(), 4);
        assert_eq!(q.depth("a", "t", 0), 2);
        let merged = merge_counts(counts.clone().into_iter().chain(counts));
        assert!(merged.iter().all(|c| c.count == 2));
    }
}
