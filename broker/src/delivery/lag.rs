//! Group and topic stats: lag in records and in time, retry backlog,
//! quarantine depth, breaker and budget.
//!
//! Lag of a group partition: `high watermark - committed offset` records,
//! and `now - append time of the record at the committed offset` (the
//! oldest record the group has not finished) in ms, 0 when caught up. The
//! append time is read on the partition's owner (`append_time_of`, served
//! from the tail cache or the time index).

use std::collections::BTreeMap;
use std::rc::Rc;

use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::stats::*;

use super::assignment::TopicPartition;
use super::member::by_topic;
use super::{call_on, fan_out, DeliveryCall, DeliveryReply, Failed};
use crate::runtime::now_ms;
use crate::shard::Shard;

/// A partition's figures on its owner, and the append time at one offset.
#[derive(Debug, Clone, Default)]
pub struct PartitionView {
    pub log_start: u64,
    pub high_watermark: u64,
    pub log_end: u64,
    pub size_bytes: u64,
    pub segments: u32,
    pub last_append_ms: Option<i64>,
    /// Append time of the batch holding the asked offset (`None` at the end).
    pub append_ms_at: Option<i64>,
    pub error: u16,
}

/// Reads a local partition's view (on its owner).
pub async fn local_partition_view(
    shard: &Rc<Shard>,
    topic: &str,
    partition: u32,
    offset: u64,
) -> PartitionView {
    let p = match crate::handlers::local::partition(shard, topic, partition) {
        Ok(p) => p,
        Err((code, _)) => return failed_view(code),
    };
    let figures = p.figures();
    let log = match p.log() {
        Ok(log) => log.clone(),
        Err((code, _)) => return failed_view(code),
    };
    let at = |o: u64| {
        let log = log.clone();
        async move { log.append_time_of(o).await.ok().flatten() }
    };
    let append_ms_at = if offset < figures.high_watermark {
        at(offset.max(figures.log_start)).await
    } else {
        None
    };
    let last_append_ms = if figures.log_end > figures.log_start {
        at(figures.log_end - 1).await
    } else {
        None
    };
    PartitionView {
        log_start: figures.log_start,
        high_watermark: figures.high_watermark,
        log_end: figures.log_end,
        size_bytes: figures.size_bytes,
        segments: log.segment_bases().len() as u32,
        last_append_ms,
        append_ms_at,
        error: if figures.fenced.is_some() {
            ErrorCode::PartitionFenced.to_wire()
        } else {
            0
        },
    }
}

fn failed_view(code: ErrorCode) -> PartitionView {
    PartitionView {
        error: code.to_wire(),
        ..PartitionView::default()
    }
}

/// A partition's view, read on its owner.
pub async fn partition_view(shard: &Rc<Shard>, topic: &str, partition: u32, offset: u64) -> PartitionView {
    let owner = shard.owner(topic, partition);
    if owner == shard.id {
        return local_partition_view(shard, topic, partition, offset).await;
    }
    let call = DeliveryCall::PartitionView {
        topic: topic.to_string(),
        partition,
        offset,
    };
    match call_on(shard, owner, call).await {
        Ok(DeliveryReply::PartitionView(v)) => v,
        Ok(_) => failed_view(ErrorCode::Internal),
        Err((code, _)) => failed_view(code),
    }
}

/// Lag of one group partition at `committed`: (records, ms).
pub fn lag_of(view: &PartitionView, committed: u64, now: i64) -> (u64, u64) {
    let records = view.high_watermark.saturating_sub(committed);
    let ms = match view.append_ms_at {
        Some(t) if records > 0 => (now - t).max(0) as u64,
        _ => 0,
    };
    (records, ms)
}

/// Per partition of a group: what stats need from the coordinator.
struct Snapshot {
    tp: TopicPartition,
    owner: String,
    committed: u64,
    in_flight: u64,
    retry_backlog: u64,
    depth: u64,
}

pub async fn group_stats(shard: &Rc<Shard>, req: GroupStatsRequest) -> GroupStatsResponse {
    let now = now_ms();
    let (mut resp, snaps) = {
        let mut groups = shard.delivery.groups.borrow_mut();
        let Some(g) = groups.get_mut(&req.group) else {
            return Failed::failed(
                ErrorCode::UnknownGroup,
                format!("group {:?} does not exist", req.group),
            );
        };
        let quarantine = shard.delivery.quarantine.borrow();
        let snaps: Vec<Snapshot> = g
            .partitions
            .iter()
            .map(|(tp, d)| Snapshot {
                tp: tp.clone(),
                owner: g.owners.get(tp).cloned().unwrap_or_default(),
                committed: d.committed(),
                in_flight: d.in_flight(),
                retry_backlog: d.retry_backlog(),
                depth: quarantine.depth(&g.name, &tp.topic, tp.partition),
            })
            .collect();
        let members = g
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                member_name: m.name.clone(),
                assignment: by_topic(&g.assignment_of(&m.id)),
                last_heartbeat_age_ms: (now - m.last_seen_ms).max(0) as u64,
            })
            .collect();
        let resp = GroupStatsResponse {
            error: 0,
            message: String::new(),
            group: g.name.clone(),
            state: g.state(),
            generation: g.generation,
            members,
            partitions: Vec::new(),
            circuit: g.breaker.state(now),
            retry_budget_permille: g.budget.permille,
            retry_budget_used_permille: g.budget.used_permille(now),
            deliveries_total: g.counters.deliveries,
            acks_total: g.counters.acks,
            nacks_total: g.counters.nacks,
            retries_total: g.counters.retries,
            quarantined_total: g.counters.quarantined,
        };
        (resp, snaps)
    };
    for s in snaps {
        let view = partition_view(shard, &s.tp.topic, s.tp.partition, s.committed).await;
        let (lag_records, lag_ms) = lag_of(&view, s.committed, now);
        resp.partitions.push(GroupPartitionStats {
            topic: s.tp.topic,
            partition: s.tp.partition,
            owner_member_id: s.owner,
            committed_offset: s.committed,
            log_end: view.log_end,
            lag_records,
            lag_ms,
            in_flight: s.in_flight,
            retry_backlog: s.retry_backlog,
            quarantine_depth: s.depth,
        });
    }
    resp
}

/// This shard's groups' lag on `topic`, and its quarantine depth per partition.
pub async fn local_topic_lag(shard: &Rc<Shard>, topic: &str) -> (Vec<GroupLag>, Vec<(u32, u64)>) {
    let now = now_ms();
    let positions: Vec<(String, u32, u64)> = {
        let groups = shard.delivery.groups.borrow();
        groups
            .values()
            .flat_map(|g| {
                g.partitions
                    .iter()
                    .filter(|(tp, _)| tp.topic == topic)
                    .map(|(tp, d)| (g.name.clone(), tp.partition, d.committed()))
            })
            .collect()
    };
    let mut lags: BTreeMap<String, GroupLag> = BTreeMap::new();
    for (group, partition, committed) in positions {
        let view = partition_view(shard, topic, partition, committed).await;
        let (records, ms) = lag_of(&view, committed, now);
        let entry = lags.entry(group.clone()).or_insert(GroupLag {
            group,
            lag_records: 0,
            lag_ms: 0,
        });
        entry.lag_records += records;
        entry.lag_ms = entry.lag_ms.max(ms);
    }
    let count = shard
        .topics
        .borrow()
        .get(topic)
        .map_or(0, |m| m.config.partitions);
    let quarantine = shard.delivery.quarantine.borrow();
    let depth = (0..count)
        .map(|p| (p, quarantine.partition_depth(topic, p)))
        .collect();
    (lags.into_values().collect(), depth)
}

pub async fn topic_stats(shard: &Rc<Shard>, req: TopicStatsRequest) -> TopicStatsResponse {
    let Some(count) = shard.topics.borrow().get(&req.topic).map(|m| m.config.partitions) else {
        return Failed::failed(
            ErrorCode::UnknownTopic,
            format!("topic {:?} does not exist", req.topic),
        );
    };
    let topic = req.topic.clone();
    let parts = fan_out(
        shard,
        || DeliveryCall::LocalTopicLag(topic.clone()),
        async || local_topic_lag(shard, &topic).await,
        |r| match r {
            DeliveryReply::TopicLag(g, d) => Some((g, d)),
            _ => None,
        },
    )
    .await;
    let parts = match parts {
        Ok(p) => p,
        Err((code, message)) => return Failed::failed(code, message),
    };
    let mut depth = vec![0u64; count as usize];
    let mut groups = Vec::new();
    for (g, d) in parts {
        groups.extend(g);
        for (p, n) in d {
            depth[p as usize] += n;
        }
    }
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    let mut partitions = Vec::with_capacity(count as usize);
    for p in 0..count {
        let view = partition_view(shard, &req.topic, p, u64::MAX).await;
        partitions.push(TopicPartitionStats {
            partition: p,
            shard: shard.owner(&req.topic, p),
            log_start: view.log_start,
            high_watermark: view.high_watermark,
            log_end: view.log_end,
            size_bytes: view.size_bytes,
            segments: view.segments,
            last_append_at_ms: view.last_append_ms,
            quarantine_depth: depth[p as usize],
            error: view.error,
        });
    }
    TopicStatsResponse {
        error: 0,
        message: String::new(),
        topic: req.topic,
        partitions,
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lag in time is 0 when caught up and the age of the oldest unfinished record otherwise.
    #[test]
    fn lag_in_time() {
        let view = PartitionView {
            high_watermark: 10,
            append_ms_at: Some(1_000),
            ..Default::default()
        };
        assert_eq!(lag_of(&view, 10, 5_000), (0, 0));
        assert_eq!(lag_of(&view, 4, 5_000), (6, 4_000));
    }
}
