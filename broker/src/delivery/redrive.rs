//! Quarantine operations: browse, counts by reason, purge (each shard's
//! part here; the shard fans topic-wide requests out to every shard and
//! merges with [`merge_browse`] and [`merge_counts`]) and redrive (on the
//! failing group's coordinator).
//!
//! Redrive hands entries back to the group that failed them, and only to
//! it: the entry leaves the quarantine and its record becomes a redriven
//! record of that group, delivered like a retry (delivery count from 1).
//! It is paced at `rate_per_sec`, stops at `max_entries` or `timeout_ms`
//! and returns a cursor to resume from. A dry run counts and moves nothing.
//! Loop guard: every entry carries how often it was redriven; at
//! [`REDRIVE_MAX`] it is refused, so a record that can never succeed
//! cannot cycle between the group and the quarantine forever.

use std::time::{Duration, Instant};

use shoal_protocol::messages::dlq::*;

use super::assignment::TopicPartition;
use super::delivery_state::PartitionDelivery;
use super::quarantine::{count_by_reason, merge_counts, REDRIVE_MAX};
use super::service::Delivery;
use super::source::PartitionSource;
use super::state_log::{redriven_key, StateKey, StateRecord, StateValue};
use crate::error::{BrokerError, BrokerResult};
use crate::runtime::now_ms;

/// Most entries one browse returns.
pub const BROWSE_LIMIT_MAX: u32 = 1000;
/// Longest a redrive request runs before replying with a cursor.
pub const REDRIVE_TIMEOUT_MS_MAX: u32 = 60_000;

/// Merges every shard's browse entries: by entry id, `limit` of them, with
/// the cursor to resume from when more remain.
pub fn merge_browse(parts: Vec<Vec<QuarantineEntry>>, limit: u32) -> QuarantineBrowseResponse {
    let mut entries: Vec<QuarantineEntry> = parts.into_iter().flatten().collect();
    entries.sort_by_key(|e| e.entry_id);
    let limit = limit.clamp(1, BROWSE_LIMIT_MAX) as usize;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next_cursor = if more {
        entries.last().map(|e| e.entry_id)
    } else {
        None
    };
    QuarantineBrowseResponse {
        error: 0,
        message: String::new(),
        entries,
        next_cursor,
    }
}

/// Merges every shard's counts by reason.
pub fn merge_count_parts(parts: Vec<Vec<ReasonCount>>) -> QuarantineCountsResponse {
    let counts = merge_counts(parts.into_iter().flatten());
    QuarantineCountsResponse {
        error: 0,
        message: String::new(),
        total: counts.iter().map(|c| c.count).sum(),
        counts,
    }
}

impl<S: PartitionSource> Delivery<S> {
    fn known_topic(&self, topic: &str) -> BrokerResult<()> {
        match self.source.topic(topic) {
            Some(_) => Ok(()),
            None => Err(BrokerError::unknown_topic(topic)),
        }
    }

    /// This shard's entries matching the browse (up to one more than asked,
    /// so the merge can tell whether more remain).
    pub fn local_browse(&self, req: &QuarantineBrowseRequest) -> Vec<QuarantineEntry> {
        let limit = req.limit.clamp(1, BROWSE_LIMIT_MAX) as usize;
        self.with_quarantine(|store| {
            store
                .matching(&req.topic, &req.filter, req.cursor)
                .take(limit + 1)
                .cloned()
                .collect()
        })
    }

    /// This shard's counts by reason.
    pub fn local_counts(&self, req: &QuarantineCountsRequest) -> Vec<ReasonCount> {
        self.with_quarantine(|store| count_by_reason(store.matching(&req.topic, &req.filter, None)))
    }

    /// Deletes this shard's matching entries (counts them on a dry run).
    /// On a cluster replica that does not coordinate, a dry run counts the
    /// committed entries and a purge of any is refused (`not_coordinator`):
    /// only the coordinator changes them.
    pub async fn local_purge(&self, req: &QuarantinePurgeRequest) -> BrokerResult<u64> {
        if let Err(refused) = self.check_coordinator() {
            let matched = self.with_quarantine(|q| q.matching(&req.topic, &req.filter, None).count());
            if req.dry_run || matched == 0 {
                return Ok(matched as u64);
            }
            return Err(refused);
        }
        let records: Vec<StateRecord> = {
            let mut store = self.quarantine.borrow_mut();
            let ids: Vec<u64> = store
                .matching(&req.topic, &req.filter, None)
                .map(|e| e.entry_id)
                .collect();
            if !req.dry_run {
                for id in &ids {
                    store.remove(*id);
                }
            }
            ids.into_iter()
                .map(|id| StateRecord::delete(StateKey::Entry(id)))
                .collect()
        };
        let purged = records.len() as u64;
        if !req.dry_run {
            self.persist(records).await?;
        }
        Ok(purged)
    }

    /// Redrive on the group's coordinator (the entries of a group live there).
    pub async fn redrive(&self, req: QuarantineRedriveRequest) -> BrokerResult<QuarantineRedriveResponse> {
        self.known_topic(&req.topic)?;
        let started = Instant::now();
        let timeout = Duration::from_millis(u64::from(req.timeout_ms.clamp(1, REDRIVE_TIMEOUT_MS_MAX)));
        let filter = QuarantineFilter {
            group: Some(req.group.clone()),
            ..req.filter.clone()
        };
        let ids: Vec<u64> = {
            let store = self.quarantine.borrow();
            let cap = if req.max_entries == 0 {
                usize::MAX
            } else {
                req.max_entries as usize
            };
            store
                .matching(&req.topic, &filter, req.cursor)
                .map(|e| e.entry_id)
                .take(cap)
                .collect()
        };
        let mut resp = QuarantineRedriveResponse {
            error: 0,
            message: String::new(),
            matched: 0,
            redriven: 0,
            skipped_loop_guard: 0,
            next_cursor: None,
        };
        for (i, id) in ids.iter().enumerate() {
            if started.elapsed() >= timeout {
                resp.next_cursor = i.checked_sub(1).map(|j| ids[j]).or(req.cursor);
                return Ok(resp);
            }
            match self.redrive_one(&req, *id).await? {
                Step::Gone => continue,
                Step::Guarded => resp.skipped_loop_guard += 1,
                Step::Counted => {}
                Step::Moved => resp.redriven += 1,
            }
            resp.matched += 1;
            if req.rate_per_sec > 0 && !req.dry_run && i + 1 < ids.len() {
                crate::runtime::sleep(Duration::from_micros(1_000_000 / u64::from(req.rate_per_sec))).await;
            }
        }
        if req.max_entries > 0 && ids.len() == req.max_entries as usize {
            resp.next_cursor = ids.last().copied();
        }
        Ok(resp)
    }

    async fn redrive_one(&self, req: &QuarantineRedriveRequest, id: u64) -> BrokerResult<Step> {
        let now = now_ms();
        let records = {
            let mut store = self.quarantine.borrow_mut();
            let Some(entry) = store.get(id) else {
                return Ok(Step::Gone);
            };
            if entry.redrive_count >= REDRIVE_MAX {
                return Ok(Step::Guarded);
            }
            if req.dry_run {
                return Ok(Step::Counted);
            }
            let entry = store.remove(id).expect("just looked up");
            let tp = TopicPartition::new(&entry.topic, entry.partition);
            let redrive_count = entry.redrive_count + 1;
            let mut groups = self.groups.borrow_mut();
            let group = groups
                .entry(req.group.clone())
                .or_insert_with(|| self.new_group(&req.group));
            group
                .partitions
                .entry(tp.clone())
                .or_insert_with(|| PartitionDelivery::new(0))
                .redrive(entry.offset, redrive_count, now);
            vec![
                StateRecord::delete(StateKey::Entry(id)),
                StateRecord::put(
                    redriven_key(&req.group, &tp, entry.offset),
                    StateValue::Redriven { redrive_count },
                ),
            ]
        };
        self.persist(records).await?;
        Ok(Step::Moved)
    }
}

enum Step {
    /// The entry was purged or redriven meanwhile.
    Gone,
    /// Refused by the loop guard.
    Guarded,
    /// Dry run: would move.
    Counted,
    Moved,
}
