//! External groups: consumer groups whose members Shoal does not deliver
//! to. Today these are the Kafka front end's groups: Kafka consumers fetch
//! records themselves and commit their positions; the broker keeps those
//! committed offsets durable and reports the group's lag, but it leases
//! nothing, counts no deliveries, retries nothing and quarantines nothing
//! (a Kafka consumer that fails a record handles it itself).
//!
//! What this service keeps per external group, on the group's coordinating
//! shard:
//! - the committed offsets, each with Kafka's leader epoch, metadata string
//!   and commit time, written to the shard's state log (key
//!   `x/<group>/<topic>/<partition>`, fsynced) *before* they become
//!   visible: [`Delivery::commit_external`] persists, then applies, and the
//!   caller acknowledges only after it returned `Ok`;
//! - the membership the front end reports after each change (state,
//!   generation, members and their assignments), for `group describe`,
//!   `GET /groups/:g`, list groups and `/metrics`. It is not durable: Kafka
//!   members rejoin after a restart.
//!
//! A group name is used over one protocol only. A Shoal-protocol group (one
//! that joined, committed or was seeked through the native or HTTP API)
//! cannot be claimed as external, and an external group refuses native
//! joins ([`Delivery::refuse_if_external`]); each side gets a message
//! naming the other protocol.

use std::collections::BTreeMap;

use shoal_protocol::messages::group::{GroupState, GroupSummary};
use shoal_protocol::messages::stats::*;

use super::assignment::TopicPartition;
use super::group_coordinator::GROUPS_MAX;
use super::lag::lag_of;
use super::service::Delivery;
use super::source::PartitionSource;
use super::state_log::{StateKey, StateRecord, StateValue};
use crate::error::{BrokerError, BrokerResult};
use crate::ids::{Offset, PartitionId};
use crate::runtime::now_ms;

/// Partitions with a committed offset, per external group (Kafka's groups
/// have no such bound; this one keeps a hostile client from growing the
/// state log without limit).
pub const EXTERNAL_PARTITIONS_MAX: usize = 100_000;

/// The protocol of every external group today.
pub const KAFKA_PROTOCOL: &str = "kafka";

/// A committed offset of an external group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalOffset {
    pub offset: u64,
    /// Kafka's committed leader epoch (−1: none).
    pub leader_epoch: i32,
    /// The client's metadata string, kept as given.
    pub metadata: Option<String>,
    /// Wall-clock time of the commit.
    pub commit_ms: i64,
}

/// One member as the front end reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExternalMember {
    pub member_id: String,
    /// The client's name for itself (Kafka's client id).
    pub client_id: String,
    /// The partitions the group's leader assigned it, where the front end
    /// could read the assignment.
    pub assignment: Vec<TopicPartition>,
    /// Wall-clock time the member was last heard from.
    pub last_seen_ms: i64,
}

/// What the front end reports of an external group's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalMembership {
    pub state: GroupState,
    pub generation: u32,
    pub members: Vec<ExternalMember>,
}

impl Default for ExternalMembership {
    fn default() -> Self {
        ExternalMembership {
            state: GroupState::Empty,
            generation: 0,
            members: Vec::new(),
        }
    }
}

/// One external group on its coordinator.
#[derive(Debug, Clone, Default)]
pub struct ExternalGroup {
    pub offsets: BTreeMap<TopicPartition, ExternalOffset>,
    pub membership: ExternalMembership,
}

/// Key of an external group's committed offset.
pub fn external_key(group: &str, tp: &TopicPartition) -> StateKey {
    StateKey::ExternalCommitted {
        group: group.to_string(),
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
}

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
        self.persist(records).await?;
        let mut external = self.external.borrow_mut();
        let g = external.entry(group.to_string()).or_default();
        for (tp, o) in entries {
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
