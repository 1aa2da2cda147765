//! Quarantine operations: browse, counts by reason, purge (topic-wide, over
//! every shard) and redrive (on the failing group's coordinator).
//!
//! Redrive hands entries back to the group that failed them, and only to
//! it: the entry leaves the quarantine and its record becomes a redriven
//! record of that group, delivered like a retry (delivery count from 1).
//! It is paced at `rate_per_sec`, stops at `max_entries` or `timeout_ms`
//! and returns a cursor to resume from. A dry run counts and moves nothing.
//! Loop guard: every entry carries how often it was redriven; at
//! [`REDRIVE_MAX`] it is refused, so a record that can never succeed
//! cannot cycle between the group and the quarantine forever.

use std::rc::Rc;
use std::time::{Duration, Instant};

use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::dlq::*;

use super::assignment::TopicPartition;
use super::delivery_state::PartitionDelivery;
use super::group_coordinator::redriven_key;
use super::quarantine::{count_by_reason, merge_counts, REDRIVE_MAX};
use super::state_log::{StateKey, StateRecord, StateValue};
use super::{fan_out, DeliveryCall, DeliveryReply, Failed};
use crate::runtime::now_ms;
use crate::shard::Shard;

/// Most entries one browse returns.
pub const BROWSE_LIMIT_MAX: u32 = 1000;
/// Longest a redrive request runs before replying with a cursor.
pub const REDRIVE_TIMEOUT_MS_MAX: u32 = 60_000;

fn unknown_topic<T: Failed>(shard: &Shard, topic: &str) -> Option<T> {
    shard
        .topics
        .borrow()
        .get(topic)
        .is_none()
        .then(|| T::failed(ErrorCode::UnknownTopic, format!("topic {topic:?} does not exist")))
}

pub fn local_browse(shard: &Shard, req: &QuarantineBrowseRequest) -> QuarantineBrowseResponse {
    let limit = req.limit.clamp(1, BROWSE_LIMIT_MAX) as usize;
    let store = shard.delivery.quarantine.borrow();
    let entries: Vec<QuarantineEntry> = store
        .matching(&req.topic, &req.filter, req.cursor)
        .take(limit + 1)
        .cloned()
        .collect();
    QuarantineBrowseResponse {
        error: 0,
        message: String::new(),
        entries,
        next_cursor: None,
    }
}

pub async fn quarantine_browse(shard: &Rc<Shard>, req: QuarantineBrowseRequest) -> QuarantineBrowseResponse {
    if let Some(resp) = unknown_topic(shard, &req.topic) {
        return resp;
    }
    let parts = fan_out(
        shard,
        || DeliveryCall::LocalBrowse(req.clone()),
        async || local_browse(shard, &req).entries,
        |r| match r {
            DeliveryReply::Browse(b) => Some(b.entries),
            _ => None,
        },
    )
    .await;
    let mut entries: Vec<QuarantineEntry> = match parts {
        Ok(p) => p.into_iter().flatten().collect(),
        Err((code, message)) => return Failed::failed(code, message),
    };
    entries.sort_by_key(|e| e.entry_id);
    let limit = req.limit.clamp(1, BROWSE_LIMIT_MAX) as usize;
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

pub fn local_counts(shard: &Shard, req: &QuarantineCountsRequest) -> QuarantineCountsResponse {
    let store = shard.delivery.quarantine.borrow();
    let counts = count_by_reason(store.matching(&req.topic, &req.filter, None));
    QuarantineCountsResponse {
        error: 0,
        message: String::new(),
        total: counts.iter().map(|c| c.count).sum(),
        counts,
    }
}

pub async fn quarantine_counts(shard: &Rc<Shard>, req: QuarantineCountsRequest) -> QuarantineCountsResponse {
    if let Some(resp) = unknown_topic(shard, &req.topic) {
        return resp;
    }
    let parts = fan_out(
        shard,
        || DeliveryCall::LocalCounts(req.clone()),
        async || local_counts(shard, &req).counts,
        |r| match r {
            DeliveryReply::Counts(c) => Some(c.counts),
            _ => None,
        },
    )
    .await;
    match parts {
        Ok(p) => {
            let counts = merge_counts(p.into_iter().flatten());
            QuarantineCountsResponse {
                error: 0,
                message: String::new(),
                total: counts.iter().map(|c| c.count).sum(),
                counts,
            }
        }
        Err((code, message)) => Failed::failed(code, message),
    }
}

pub async fn local_purge(shard: &Rc<Shard>, req: &QuarantinePurgeRequest) -> QuarantinePurgeResponse {
    let records: Vec<StateRecord> = {
        let mut store = shard.delivery.quarantine.borrow_mut();
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
    let result = if req.dry_run {
        Ok(())
    } else {
        shard.delivery.persist(records).await
    };
    match result {
        Ok(()) => QuarantinePurgeResponse {
            error: 0,
            message: String::new(),
            purged,
        },
        Err(message) => Failed::failed(ErrorCode::Internal, message),
    }
}

pub async fn quarantine_purge(shard: &Rc<Shard>, req: QuarantinePurgeRequest) -> QuarantinePurgeResponse {
    if let Some(resp) = unknown_topic(shard, &req.topic) {
        return resp;
    }
    let parts = fan_out(
        shard,
        || DeliveryCall::LocalPurge(req.clone()),
        async || local_purge(shard, &req).await,
        |r| match r {
            DeliveryReply::Purge(p) => Some(p),
            _ => None,
        },
    )
    .await;
    match parts {
        Ok(p) => match p.iter().find(|r| r.error != 0) {
            Some(bad) => bad.clone(),
            None => QuarantinePurgeResponse {
                error: 0,
                message: String::new(),
                purged: p.iter().map(|r| r.purged).sum(),
            },
        },
        Err((code, message)) => Failed::failed(code, message),
    }
}

/// Redrive on the group's coordinator (the entries of a group live there).
pub async fn redrive(shard: &Rc<Shard>, req: QuarantineRedriveRequest) -> QuarantineRedriveResponse {
    if let Some(resp) = unknown_topic(shard, &req.topic) {
        return resp;
    }
    let started = Instant::now();
    let timeout = Duration::from_millis(u64::from(req.timeout_ms.clamp(1, REDRIVE_TIMEOUT_MS_MAX)));
    let filter = QuarantineFilter {
        group: Some(req.group.clone()),
        ..req.filter.clone()
    };
    let ids: Vec<u64> = {
        let store = shard.delivery.quarantine.borrow();
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
            return resp;
        }
        match redrive_one(shard, &req, *id).await {
            Ok(Step::Gone) => continue,
            Ok(Step::Guarded) => resp.skipped_loop_guard += 1,
            Ok(Step::Counted) => {}
            Ok(Step::Moved) => resp.redriven += 1,
            Err(message) => return Failed::failed(ErrorCode::Internal, message),
        }
        resp.matched += 1;
        if req.rate_per_sec > 0 && !req.dry_run && i + 1 < ids.len() {
            crate::runtime::sleep(Duration::from_micros(1_000_000 / u64::from(req.rate_per_sec))).await;
        }
    }
    if req.max_entries > 0 && ids.len() == req.max_entries as usize {
        resp.next_cursor = ids.last().copied();
    }
    resp
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

async fn redrive_one(shard: &Rc<Shard>, req: &QuarantineRedriveRequest, id: u64) -> Result<Step, String> {
    let now = now_ms();
    let records = {
        let mut store = shard.delivery.quarantine.borrow_mut();
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
        let mut groups = shard.delivery.groups.borrow_mut();
        let group = groups
            .entry(req.group.clone())
            .or_insert_with(|| shard.delivery.new_group(&req.group));
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
    shard.delivery.persist(records).await?;
    Ok(Step::Moved)
}
