//! Group stats and per-shard topic lag: lag in records and in time, retry
//! backlog, quarantine depth, breaker and budget.
//!
//! Lag of a group partition: `high watermark - committed offset` records,
//! and `now - append time of the record at the committed offset` (the
//! oldest record the group has not finished) in ms, 0 when caught up. The
//! append time is read on the partition's owner through the
//! [`PartitionSource`] (served from the tail cache or the time index).

use std::collections::BTreeMap;

use shoal_protocol::messages::stats::*;

use super::assignment::TopicPartition;
use super::member::by_topic;
use super::service::Delivery;
use super::source::PartitionSource;
use crate::error::{BrokerError, BrokerResult};
use crate::ids::{Offset, PartitionId};
use crate::partition::PartitionView;
use crate::runtime::now_ms;

/// One shard's groups' lag on a topic, and its quarantine depth per partition.
#[derive(Debug, Clone, Default)]
pub struct TopicLag {
    pub groups: Vec<GroupLag>,
    /// (partition, entries quarantined by this shard's groups).
    pub quarantine_depth: Vec<(u32, u64)>,
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

impl<S: PartitionSource> Delivery<S> {
    pub async fn group_stats(&self, req: GroupStatsRequest) -> BrokerResult<GroupStatsResponse> {
        let now = now_ms();
        if !self.groups.borrow().contains_key(&req.group) {
            return match self.external_stats(&req.group).await {
                Some(stats) => Ok(stats),
                None => Err(BrokerError::UnknownGroup { group: req.group }),
            };
        }
        let (mut resp, snaps) = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(&req.group) else {
                return Err(BrokerError::UnknownGroup { group: req.group });
            };
            let quarantine = self.quarantine.borrow();
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
            let view = self.view(&s.tp, s.committed).await;
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
        Ok(resp)
    }

    /// This shard's groups' lag on `topic`, and its quarantine depth per partition.
    pub async fn local_topic_lag(&self, topic: &str) -> TopicLag {
        let now = now_ms();
        let mut positions: Vec<(String, u32, u64)> = {
            let groups = self.groups.borrow();
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
        positions.extend(self.external_positions(topic));
        let mut lags: BTreeMap<String, GroupLag> = BTreeMap::new();
        for (group, partition, committed) in positions {
            let view = self.view(&TopicPartition::new(topic, partition), committed).await;
            let (records, ms) = lag_of(&view, committed, now);
            let entry = lags.entry(group.clone()).or_insert(GroupLag {
                group,
                lag_records: 0,
                lag_ms: 0,
            });
            entry.lag_records += records;
            entry.lag_ms = entry.lag_ms.max(ms);
        }
        let count = self.source.topic(topic).map_or(0, |m| m.config.partitions);
        let depth = self.with_quarantine(|quarantine| {
            (0..count)
                .map(|p| (p, quarantine.partition_depth(topic, p)))
                .collect()
        });
        TopicLag {
            groups: lags.into_values().collect(),
            quarantine_depth: depth,
        }
    }

    /// A partition's view at `offset`; an unreadable partition counts as
    /// empty (lag 0) rather than failing the whole stats request.
    async fn view(&self, tp: &TopicPartition, offset: u64) -> PartitionView {
        self.source
            .view(&tp.topic, PartitionId(tp.partition), Offset(offset))
            .await
            .unwrap_or_default()
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
