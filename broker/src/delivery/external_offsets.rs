//! The delivery service's operations on external (Kafka) groups
//! ([`super::external_group`]): claiming a name for the Kafka protocol,
//! durable commits, reading offsets, reported membership, admin seek, and
//! their lag for stats and lists.
//!
//! Durability: [`Delivery::commit_external`] appends the offsets to the
//! shard's state log and waits for its fsync before it makes them visible
//! and returns; the caller answers the client only after `Ok`.

use std::collections::BTreeMap;

use shoal_protocol::messages::group::GroupSummary;
use shoal_protocol::messages::stats::*;

use super::assignment::TopicPartition;
use super::external_group::{
    external_key, ExternalGroup, ExternalMembership, ExternalOffset, EXTERNAL_PARTITIONS_MAX,
};
use super::group_coordinator::GROUPS_MAX;
use super::lag::lag_of;
use super::service::Delivery;
use super::source::PartitionSource;
use super::state_log::{StateRecord, StateValue};
use crate::error::{BrokerError, BrokerResult};
use crate::ids::{Offset, PartitionId};
use crate::runtime::now_ms;

fn mixed(group: &str, first: &str, second: &str) -> BrokerError {
    BrokerError::invalid(format!(
        "group {group:?} is used over the {first} protocol; a group is used over one protocol only, \
         so it cannot be used over the {second} protocol too: pick another group name"
    ))
}

impl<S: PartitionSource> Delivery<S> {
    /// Claims `group` as an external group (created if new). Refused when
    /// a Shoal-protocol group has that name, when the name is not a valid
    /// Shoal name, or when the shard coordinates [`GROUPS_MAX`] groups.
    pub fn claim_external(&self, group: &str) -> BrokerResult<()> {
        if self.external.borrow().contains_key(group) {
            return Ok(());
        }
        crate::metadata::validate_name(group)
            .map_err(|e| BrokerError::invalid(format!("group name: {e}")))?;
        if self.groups.borrow().contains_key(group) {
            return Err(mixed(group, "Shoal", "Kafka"));
        }
        let count = self.groups.borrow().len() + self.external.borrow().len();
        if count >= GROUPS_MAX {
            return Err(BrokerError::invalid(format!(
                "too many groups on this shard (max {GROUPS_MAX})"
            )));
        }
        self.external
            .borrow_mut()
            .insert(group.to_string(), ExternalGroup::default());
        Ok(())
    }

    /// The error a Shoal-protocol request gets for an external group.
    pub(super) fn refuse_if_external(&self, group: &str) -> BrokerResult<()> {
        if self.external.borrow().contains_key(group) {
            return Err(mixed(group, "Kafka", "Shoal"));
        }
        Ok(())
    }

    /// Whether `group` is a Shoal-protocol group on this shard.
    pub fn is_shoal(&self, group: &str) -> bool {
        self.groups.borrow().contains_key(group)
    }

    /// Whether `group` is an external group on this shard.
    pub fn is_external(&self, group: &str) -> bool {
        self.external.borrow().contains_key(group)
    }

    /// Makes committed offsets durable (state log, fsynced), then visible.
    /// The caller acknowledges the commit only after `Ok`.
    pub async fn commit_external(
        &self,
        group: &str,
        entries: Vec<(TopicPartition, ExternalOffset)>,
    ) -> BrokerResult<()> {
        self.claim_external(group)?;
        {
            let external = self.external.borrow();
            let known = &external.get(group).expect("claimed above").offsets;
            let mut new: Vec<&TopicPartition> = entries
                .iter()
                .map(|(tp, _)| tp)
                .filter(|tp| !known.contains_key(*tp))
                .collect();
            new.sort();
            new.dedup();
            if known.len() + new.len() > EXTERNAL_PARTITIONS_MAX {
                return Err(BrokerError::invalid(format!(
                    "group {group:?} would commit offsets for more than {EXTERNAL_PARTITIONS_MAX} partitions"
                )));
            }
        }
        let records = entries
            .iter()
            .map(|(tp, o)| {
                let value = StateValue::ExternalCommitted {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_ms: o.commit_ms,
                };
                StateRecord::put(external_key(group, tp), value)
            })
            .collect();
        // Commits on one connection are served concurrently and their
        // writes complete together: the number taken here, before the
        // write, keeps a later commit's offset from being overwritten in
        // memory by an earlier one that resumed last (the state log
        // already stores them in call order).
        let number = {
            let mut external = self.external.borrow_mut();
            let g = external.entry(group.to_string()).or_default();
            g.commits_issued += 1;
            g.commits_issued
        };
        self.persist(records).await?;
        let mut external = self.external.borrow_mut();
        let g = external.entry(group.to_string()).or_default();
        for (tp, o) in entries {
            if g.written_by.get(&tp).is_some_and(|&by| by > number) {
                continue;
            }
            g.written_by.insert(tp.clone(), number);
            g.offsets.insert(tp, o);
        }
        Ok(())
    }

    /// Committed offsets of an external group: of `partitions`, or all of
    /// them when `None` (an unknown group has none). A Shoal-protocol
    /// group is refused.
    pub fn external_offsets(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> BrokerResult<Vec<(TopicPartition, Option<ExternalOffset>)>> {
        if self.groups.borrow().contains_key(group) {
            return Err(mixed(group, "Shoal", "Kafka"));
        }
        let external = self.external.borrow();
        let offsets = external.get(group).map(|g| &g.offsets);
        Ok(match partitions {
            Some(list) => list
                .iter()
                .map(|tp| (tp.clone(), offsets.and_then(|o| o.get(tp)).cloned()))
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|(tp, o)| (tp.clone(), Some(o.clone())))
                .collect(),
        })
    }

    /// Records the membership the front end reports (after each change).
    pub fn update_external_membership(&self, group: &str, membership: ExternalMembership) {
        if let Some(g) = self.external.borrow_mut().get_mut(group) {
            g.membership = membership;
        }
    }

    /// Forgets an external group that has no members and no committed
    /// offsets (the front end dropped it).
    pub fn forget_external_if_idle(&self, group: &str) {
        let mut external = self.external.borrow_mut();
        let idle = external
            .get(group)
            .is_some_and(|g| g.offsets.is_empty() && g.membership.members.is_empty());
        if idle {
            external.remove(group);
        }
    }

    /// Moves an external group's committed offsets (admin replay). As
    /// Kafka's offset reset, only while no member is active: a live Kafka
    /// consumer keeps its position in memory and would commit over it.
    pub(super) async fn seek_external(
        &self,
        group: &str,
        moves: Vec<(TopicPartition, u64)>,
    ) -> BrokerResult<()> {
        let active = self
            .external
            .borrow()
            .get(group)
            .map_or(0, |g| g.membership.members.len());
        if active > 0 {
            return Err(BrokerError::invalid(format!(
                "Kafka group {group:?} has {active} active members: stop them before moving its offsets"
            )));
        }
        let now = now_ms();
        let entries = moves
            .into_iter()
            .map(|(tp, offset)| {
                let committed = ExternalOffset {
                    offset,
                    leader_epoch: -1,
                    metadata: None,
                    commit_ms: now,
                };
                (tp, committed)
            })
            .collect();
        self.commit_external(group, entries).await
    }

    /// Restores one replayed committed offset.
    pub(super) fn restore_external(&self, group: String, tp: TopicPartition, offset: ExternalOffset) {
        self.external
            .borrow_mut()
            .entry(group)
            .or_default()
            .offsets
            .insert(tp, offset);
    }

    /// This shard's external groups, for list groups.
    pub(super) fn external_summaries(&self) -> Vec<GroupSummary> {
        self.external
            .borrow()
            .iter()
            .map(|(name, g)| {
                let mut topics: Vec<String> = g.offsets.keys().map(|tp| tp.topic.clone()).collect();
                topics.extend(
                    g.membership
                        .members
                        .iter()
                        .flat_map(|m| m.assignment.iter().map(|tp| tp.topic.clone())),
                );
                topics.sort();
                topics.dedup();
                GroupSummary {
                    group: name.clone(),
                    state: g.membership.state,
                    generation: g.membership.generation,
                    members: g.membership.members.len() as u32,
                    topics,
                }
            })
            .collect()
    }

    /// Stats of an external group: members, and per committed partition
    /// the lag in records and seconds. Deliveries, retries, quarantine and
    /// the breaker do not apply (zero and closed).
    pub(super) async fn external_stats(&self, group: &str) -> Option<GroupStatsResponse> {
        let now = now_ms();
        let (membership, offsets) = {
            let external = self.external.borrow();
            let g = external.get(group)?;
            (g.membership.clone(), g.offsets.clone())
        };
        let owners: BTreeMap<&TopicPartition, &str> = membership
            .members
            .iter()
            .flat_map(|m| m.assignment.iter().map(move |tp| (tp, m.member_id.as_str())))
            .collect();
        let mut partitions = Vec::with_capacity(offsets.len());
        for (tp, committed) in &offsets {
            let view = self
                .source
                .view(&tp.topic, PartitionId(tp.partition), Offset(committed.offset))
                .await
                .unwrap_or_default();
            let (lag_records, lag_ms) = lag_of(&view, committed.offset, now);
            partitions.push(GroupPartitionStats {
                topic: tp.topic.clone(),
                partition: tp.partition,
                owner_member_id: owners.get(tp).map(|m| m.to_string()).unwrap_or_default(),
                committed_offset: committed.offset,
                log_end: view.log_end,
                lag_records,
                lag_ms,
                in_flight: 0,
                retry_backlog: 0,
                quarantine_depth: 0,
            });
        }
        let members = membership
            .members
            .iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.clone(),
                member_name: m.client_id.clone(),
                assignment: super::member::by_topic(&m.assignment.iter().cloned().collect()),
                last_heartbeat_age_ms: (now - m.last_seen_ms).max(0) as u64,
            })
            .collect();
        Some(GroupStatsResponse {
            error: 0,
            message: String::new(),
            group: group.to_string(),
            state: membership.state,
            generation: membership.generation,
            members,
            partitions,
            circuit: CircuitState::Closed,
            retry_budget_permille: 0,
            retry_budget_used_permille: 0,
            deliveries_total: 0,
            acks_total: 0,
            nacks_total: 0,
            retries_total: 0,
            quarantined_total: 0,
        })
    }

    /// (group, partition, committed offset) of this shard's external groups
    /// on `topic`, for topic lag.
    pub(super) fn external_positions(&self, topic: &str) -> Vec<(String, u32, u64)> {
        self.external
            .borrow()
            .iter()
            .flat_map(|(name, g)| {
                g.offsets
                    .iter()
                    .filter(|(tp, _)| tp.topic == topic)
                    .map(|(tp, o)| (name.clone(), tp.partition, o.offset))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shoal_protocol::messages::group::JoinGroupRequest;
    use shoal_protocol::messages::stats::GroupStatsRequest;
    use shoal_protocol::messages::topic::TopicConfig;

    use super::*;
    use crate::delivery::external_group::ExternalMember;
    use crate::metadata::TopicMeta;
    use crate::partition::{ListedOffset, OffsetQuery, PartitionView, ReadBatches};
    use shoal_protocol::messages::group::GroupState;
    use std::rc::Rc;

    /// One topic "t" whose partitions hold 10 records, appended at 1000 ms.
    struct TenRecords(Rc<TopicMeta>);

    impl PartitionSource for TenRecords {
        fn topic(&self, name: &str) -> Option<Rc<TopicMeta>> {
            (name == "t").then(|| self.0.clone())
        }

        async fn read(
            &self,
            _: &str,
            _: PartitionId,
            _: Offset,
            _: u32,
            _: Duration,
        ) -> BrokerResult<ReadBatches> {
            Ok(ReadBatches::default())
        }

        async fn wait_any(&self, _: &str, _: &[(PartitionId, Offset)], _: Duration) {}

        async fn list_offset(&self, _: &str, _: PartitionId, _: OffsetQuery) -> BrokerResult<ListedOffset> {
            Ok(ListedOffset {
                offset: Offset(10),
                timestamp_ms: None,
            })
        }

        async fn view(&self, _: &str, _: PartitionId, offset: Offset) -> BrokerResult<PartitionView> {
            Ok(PartitionView {
                high_watermark: 10,
                log_end: 10,
                append_ms_at: (offset.get() < 10).then_some(1_000),
                ..PartitionView::default()
            })
        }
    }

    fn delivery() -> Rc<Delivery<TenRecords>> {
        let meta = TopicMeta {
            name: "t".into(),
            config: TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            },
        };
        Rc::new(Delivery::new(0, Default::default(), TenRecords(Rc::new(meta))))
    }

    fn offset(o: u64) -> ExternalOffset {
        ExternalOffset {
            offset: o,
            leader_epoch: 3,
            metadata: Some("m".into()),
            commit_ms: 5,
        }
    }

    fn join(group: &str) -> JoinGroupRequest {
        JoinGroupRequest {
            group: group.into(),
            member_name: "n".into(),
            member_id: None,
            topics: vec!["t".into()],
            session_timeout_ms: 10_000,
        }
    }

    /// Committed offsets are durable: a new service on the same state log
    /// has them, reports the group's lag in records and time, lists it,
    /// and a group name stays with its first protocol both ways.
    #[test]
    fn commits_survive_a_restart_and_protocols_do_not_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard-0");
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .unwrap();
        ex.run(async move {
            {
                let d = delivery();
                d.start(&path).await.unwrap();
                let tp = TopicPartition::new("t", 1);
                d.commit_external("k", vec![(tp.clone(), offset(4))])
                    .await
                    .unwrap();
                let err = d.join(join("k")).await.unwrap_err();
                assert!(err.to_string().contains("Kafka protocol"), "{err}");
                d.join(join("s")).await.unwrap();
                let err = d.claim_external("s").unwrap_err();
                assert!(err.to_string().contains("Shoal protocol"), "{err}");
                assert!(
                    d.external_offsets("s", None).is_err(),
                    "a Shoal group's offsets are not Kafka's"
                );
                d.close().await;
            }
            let d = delivery();
            d.start(&path).await.unwrap();
            let tp = TopicPartition::new("t", 1);
            let got = d
                .external_offsets("k", Some(&[tp.clone(), TopicPartition::new("t", 0)]))
                .unwrap();
            assert_eq!(
                got,
                vec![(tp, Some(offset(4))), (TopicPartition::new("t", 0), None)]
            );
            let stats = d
                .group_stats(GroupStatsRequest { group: "k".into() })
                .await
                .unwrap();
            let p = &stats.partitions[0];
            assert_eq!((p.committed_offset, p.lag_records), (4, 6));
            assert!(p.lag_ms > 0, "lag in time: {p:?}");
            assert!(d.local_groups().iter().any(|g| g.group == "k"));
            d.close().await;
        });
    }

    /// Seeking a Kafka group with active members is refused; without any,
    /// it moves the committed offsets. The partition bound holds.
    #[test]
    fn seek_needs_an_idle_group_and_partitions_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard-0");
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .unwrap();
        ex.run(async move {
            let d = delivery();
            d.start(&path).await.unwrap();
            let tp = TopicPartition::new("t", 0);
            d.claim_external("k").unwrap();
            let member = ExternalMember {
                member_id: "m-1".into(),
                ..ExternalMember::default()
            };
            let active = ExternalMembership {
                state: GroupState::Stable,
                generation: 1,
                members: vec![member],
            };
            d.update_external_membership("k", active);
            assert!(d.seek_external("k", vec![(tp.clone(), 2)]).await.is_err());
            d.update_external_membership("k", ExternalMembership::default());
            d.seek_external("k", vec![(tp.clone(), 2)]).await.unwrap();
            assert_eq!(
                d.external_offsets("k", Some(std::slice::from_ref(&tp))).unwrap()[0]
                    .1
                    .as_ref()
                    .map(|o| o.offset),
                Some(2)
            );
            let too_many: Vec<_> = (0..=EXTERNAL_PARTITIONS_MAX as u32)
                .map(|p| (TopicPartition::new("t", p), offset(0)))
                .collect();
            assert!(d.commit_external("k", too_many).await.is_err());
            d.close().await;
        });
    }
}
