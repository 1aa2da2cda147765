//! The group coordinator: join, heartbeat, leave, commit, seek, restore,
//! and the timer that expels silent members and expires leases.
//!
//! Runs on the group's coordinating shard only (the shard routes requests
//! there). State is mutated inside short synchronous sections (no `RefCell`
//! borrow is held across an await); the records describing a change are
//! appended to the state log right after, and the reply waits for them to
//! be durable.
//!
//! Fencing: a member id is never reused, so a member expelled for missing
//! its session timeout gets `UnknownMember` on every later call. A request
//! carrying a generation newer than the group's is `StaleGeneration`. A
//! live member one generation behind may still ack and nack the records
//! leased to it (the lease names the member; that is the record-level
//! fence, and it is what lets a member drain revoked partitions), but it
//! must heartbeat before it polls again, and an explicit commit needs the
//! current generation.

use std::collections::{BTreeMap, BTreeSet};

use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::delivery::*;
use shoal_protocol::messages::group::*;

use super::assignment::TopicPartition;
use super::delivery_state::{PartitionDelivery, Restored};
use super::external_group::ExternalOffset;
use super::failure::FailHow;
use super::member::{by_topic, Group, MEMBERS_MAX, SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN};
use super::quarantine::QuarantineStore;
use super::retry_policy::backoff_ms;
use super::service::Delivery;
use super::source::PartitionSource;
use super::state_log::{committed_key, failures_key, StateKey, StateRecord, StateValue};
use crate::error::{BrokerError, BrokerResult};
use crate::ids::{Generation, PartitionId};
use crate::partition::OffsetQuery;
use crate::runtime::now_ms;

/// Most groups one shard coordinates.
pub const GROUPS_MAX: usize = 10_000;

/// Offsets per partition.
pub type Leased = Vec<(TopicPartition, Vec<u64>)>;

/// The group `name` with `member` checked by [`check_member`] (and marked
/// alive): the common preamble of every member request.
pub fn member_group<'a>(
    groups: &'a mut BTreeMap<String, Group>,
    name: &str,
    member: &str,
    generation: Generation,
    now: i64,
) -> BrokerResult<&'a mut Group> {
    let Some(group) = groups.get_mut(name) else {
        return Err(BrokerError::UnknownMember(format!(
            "group {name:?} has no members"
        )));
    };
    check_member(group, member, generation, now)?;
    Ok(group)
}

/// Checks that `member` belongs to the group at a generation not newer
/// than the group's, and marks it alive.
pub fn check_member(group: &mut Group, member: &str, generation: Generation, now: i64) -> BrokerResult<()> {
    let (generation, current) = (generation.get(), group.generation);
    let Some(m) = group.members.get_mut(member) else {
        return Err(BrokerError::UnknownMember(format!(
            "member {member:?} is not in group {:?} (expelled or left): join again",
            group.name
        )));
    };
    if generation > current {
        return Err(BrokerError::StaleGeneration(format!(
            "generation {generation} is newer than the group's {current}"
        )));
    }
    m.last_seen_ms = now;
    Ok(())
}

/// Records leased to `member`, per partition.
pub fn leased_to(group: &Group, member: &str) -> Leased {
    group
        .partitions
        .iter()
        .map(|(tp, d)| (tp.clone(), d.leased_to(member)))
        .filter(|(_, o)| !o.is_empty())
        .collect()
}

impl<S: PartitionSource> Delivery<S> {
    /// Partition counts of `topics` that exist.
    pub(super) fn partition_counts(&self, topics: impl IntoIterator<Item = String>) -> BTreeMap<String, u32> {
        topics
            .into_iter()
            .filter_map(|t| self.source.topic(&t).map(|m| (t, m.config.partitions)))
            .collect()
    }

    /// Recomputes a group's assignment and makes sure every assigned
    /// partition has delivery state.
    fn rebalance(&self, group: &mut Group) {
        let counts = self.partition_counts(group.topics());
        group.rebalance(&counts);
        for tp in group.target.keys() {
            group
                .partitions
                .entry(tp.clone())
                .or_insert_with(|| PartitionDelivery::new(0));
        }
    }

    fn reassign(&self, name: &str) {
        if let Some(group) = self.groups.borrow_mut().get_mut(name) {
            self.rebalance(group);
        }
    }

    fn check_join(&self, req: &JoinGroupRequest) -> BrokerResult<()> {
        crate::metadata::validate_name(&req.group)
            .map_err(|e| BrokerError::invalid(format!("group name: {e}")))?;
        if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&req.session_timeout_ms) {
            return Err(BrokerError::invalid(format!(
                "session_timeout_ms must be {SESSION_TIMEOUT_MS_MIN}..={SESSION_TIMEOUT_MS_MAX}"
            )));
        }
        if req.topics.is_empty() {
            return Err(BrokerError::invalid("a member must subscribe to a topic"));
        }
        match req.topics.iter().find(|t| self.source.topic(t).is_none()) {
            Some(t) => Err(BrokerError::unknown_topic(t)),
            None => Ok(()),
        }
    }

    pub async fn join(&self, req: JoinGroupRequest) -> BrokerResult<JoinGroupResponse> {
        self.check_join(&req)?;
        self.refuse_if_external(&req.group)?;
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(&req.group) && groups.len() >= GROUPS_MAX {
            return Err(BrokerError::invalid(format!(
                "too many groups (max {GROUPS_MAX})"
            )));
        }
        let group = groups
            .entry(req.group.clone())
            .or_insert_with(|| self.new_group(&req.group));
        let id = match &req.member_id {
            Some(id) => match group.members.get_mut(id) {
                Some(m) => {
                    m.topics = req.topics.iter().cloned().collect();
                    m.session_timeout_ms = req.session_timeout_ms;
                    m.last_seen_ms = now;
                    group.generation += 1;
                    id.clone()
                }
                None => {
                    return Err(BrokerError::UnknownMember(format!(
                        "member {id:?} is not in the group"
                    )));
                }
            },
            None if group.members.len() >= MEMBERS_MAX => {
                return Err(BrokerError::invalid(format!(
                    "too many members (max {MEMBERS_MAX})"
                )));
            }
            None => group.add_member(&req.member_name, &req.topics, req.session_timeout_ms, now),
        };
        self.rebalance(group);
        let assignment = group.assignment_of(&id);
        let member = group.members.get_mut(&id).expect("just joined");
        member.reported = assignment.clone();
        tracing::info!(group = %req.group, member = %id, generation = group.generation, "member joined");
        Ok(JoinGroupResponse {
            error: 0,
            message: String::new(),
            member_id: id,
            generation: group.generation,
            assignment: by_topic(&assignment),
            heartbeat_interval_ms: member.heartbeat_interval_ms(),
        })
    }

    pub fn heartbeat(&self, req: HeartbeatRequest) -> BrokerResult<HeartbeatResponse> {
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        let group = member_group(
            &mut groups,
            &req.group,
            &req.member_id,
            Generation(req.generation),
            now,
        )?;
        group.settle();
        let assignment = group.assignment_of(&req.member_id);
        let revoked = group.revoked_of(&req.member_id);
        let member = group.members.get_mut(&req.member_id).expect("checked");
        let added: BTreeSet<TopicPartition> = assignment.difference(&member.reported).cloned().collect();
        member.reported = assignment.clone();
        Ok(HeartbeatResponse {
            error: 0,
            message: String::new(),
            generation: group.generation,
            assignment: by_topic(&assignment),
            added: by_topic(&added),
            revoked: by_topic(&revoked),
        })
    }

    pub async fn leave(&self, req: LeaveGroupRequest) -> BrokerResult<LeaveGroupResponse> {
        let held = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(&req.group) else {
                return Err(BrokerError::UnknownMember(format!(
                    "group {:?} has no members",
                    req.group
                )));
            };
            if !group.members.contains_key(&req.member_id) {
                return Err(BrokerError::UnknownMember(format!(
                    "member {:?} is not in the group",
                    req.member_id
                )));
            }
            let held = leased_to(group, &req.member_id);
            group.remove_member(&req.member_id);
            held
        };
        tracing::info!(group = %req.group, member = %req.member_id, "member left");
        let reason = "member left before acking";
        let result = self
            .fail_records(&req.group, held, reason, FailHow::immediate())
            .await;
        self.reassign(&req.group);
        result.map(|_| LeaveGroupResponse {
            error: 0,
            message: String::new(),
        })
    }

    /// Explicit commit: moves the position forward (records below it are done).
    pub async fn commit(&self, req: CommitOffsetRequest) -> BrokerResult<CommitOffsetResponse> {
        let now = now_ms();
        let mut records = Vec::new();
        let mut partitions = Vec::new();
        {
            let mut groups = self.groups.borrow_mut();
            let group = member_group(
                &mut groups,
                &req.group,
                &req.member_id,
                Generation(req.generation),
                now,
            )?;
            if req.generation != group.generation {
                return Err(BrokerError::StaleGeneration(format!(
                    "generation {} is stale (group is at {})",
                    req.generation, group.generation
                )));
            }
            let owned = group.assignment_of(&req.member_id);
            for c in &req.offsets {
                let tp = TopicPartition::new(&c.topic, c.partition);
                let error = match group.partitions.get_mut(&tp) {
                    Some(d) if owned.contains(&tp) => {
                        commit_partition(&req.group, &tp, d, c.offset, now, &mut records);
                        ErrorCode::None
                    }
                    _ => ErrorCode::NotSubscribed,
                };
                partitions.push(PartitionResult {
                    topic: c.topic.clone(),
                    partition: c.partition,
                    error: error.to_wire(),
                });
            }
            group.settle();
        }
        self.persist(records).await?;
        Ok(CommitOffsetResponse {
            error: 0,
            message: String::new(),
            partitions,
        })
    }

    /// Replay: moves a group's position (admin; needs no membership).
    pub async fn seek(&self, req: SeekRequest) -> BrokerResult<SeekResponse> {
        let Some(count) = self.source.topic(&req.topic).map(|m| m.config.partitions) else {
            return Err(BrokerError::unknown_topic(&req.topic));
        };
        if crate::metadata::validate_name(&req.group).is_err() {
            return Err(BrokerError::invalid(format!(
                "invalid group name {:?}",
                req.group
            )));
        }
        let wanted: Vec<u32> = if req.partitions.is_empty() {
            (0..count).collect()
        } else {
            req.partitions.clone()
        };
        // Every target is resolved first; the moves then apply together.
        let mut partitions = Vec::with_capacity(wanted.len());
        let mut moves = Vec::new();
        for p in wanted {
            let resolved = if p >= count {
                Err(ErrorCode::UnknownPartition)
            } else {
                self.resolve(&req.topic, PartitionId(p), req.target)
                    .await
                    .map_err(|e| e.code())
            };
            let (error, offset) = match resolved {
                Ok(offset) => {
                    moves.push((TopicPartition::new(&req.topic, p), offset));
                    (ErrorCode::None, offset)
                }
                Err(code) => (code, 0),
            };
            partitions.push(SeekPartitionResult {
                partition: p,
                error: error.to_wire(),
                offset,
            });
        }
        if self.is_external(&req.group) {
            // A Kafka group: the offsets become its committed Kafka offsets.
            self.seek_external(&req.group, moves).await?;
        } else {
            let mut records = Vec::with_capacity(moves.len());
            for (tp, offset) in &moves {
                self.seek_partition(&req.group, tp, *offset, &mut records);
            }
            self.persist(records).await?;
        }
        Ok(SeekResponse {
            error: 0,
            message: String::new(),
            partitions,
        })
    }

    fn seek_partition(&self, group: &str, tp: &TopicPartition, offset: u64, records: &mut Vec<StateRecord>) {
        let mut groups = self.groups.borrow_mut();
        let g = groups
            .entry(group.to_string())
            .or_insert_with(|| self.new_group(group));
        g.partitions
            .entry(tp.clone())
            .or_insert_with(|| PartitionDelivery::new(offset))
            .seek(offset);
        g.settle();
        records.push(StateRecord::put(
            committed_key(group, tp),
            StateValue::Committed(offset),
        ));
    }

    /// The offset a seek target names, resolved on the partition's owner.
    async fn resolve(&self, topic: &str, partition: PartitionId, target: SeekTarget) -> BrokerResult<u64> {
        let query = match target {
            SeekTarget::Offset(o) => return Ok(o),
            SeekTarget::Earliest => OffsetQuery::Earliest,
            SeekTarget::Latest => OffsetQuery::Latest,
            SeekTarget::Timestamp(ts) => OffsetQuery::Timestamp(ts),
        };
        let listed = self.source.list_offset(topic, partition, query).await?;
        Ok(listed.offset.get())
    }

    /// Rebuilds groups and the quarantine from the replayed state log.
    /// `jitter` spreads the restored retries (values in `[0, 1)`).
    pub(super) fn restore(
        &self,
        state: BTreeMap<StateKey, StateValue>,
        now: i64,
        jitter: &mut impl FnMut() -> f64,
    ) {
        let mut groups = self.groups.borrow_mut();
        let mut quarantine = self.quarantine.borrow_mut();
        for (key, value) in state {
            self.restore_one(&mut groups, &mut quarantine, key, value, now, jitter);
        }
    }

    fn restore_one(
        &self,
        groups: &mut BTreeMap<String, Group>,
        quarantine: &mut QuarantineStore,
        key: StateKey,
        value: StateValue,
        now: i64,
        jitter: &mut impl FnMut() -> f64,
    ) {
        let settings = &self.settings;
        match (key, value) {
            (
                StateKey::Committed {
                    group,
                    topic,
                    partition: p,
                },
                StateValue::Committed(offset),
            ) => {
                partition_mut(groups, settings, &group, &topic, p).seek(offset);
            }
            (
                StateKey::Failures {
                    group,
                    topic,
                    partition: p,
                    offset,
                },
                StateValue::Failures {
                    failures,
                    first_failure_ms,
                    last_failure_ms,
                    reason,
                },
            ) => {
                let policy = self.retry_policy(&topic);
                let delay = backoff_ms(&policy, failures, jitter());
                let r = Restored {
                    failures,
                    first_failure_ms,
                    last_failure_ms,
                    reason,
                    ready_at_ms: last_failure_ms + delay as i64,
                };
                partition_mut(groups, settings, &group, &topic, p).restore(offset, Some(r));
            }
            (
                StateKey::Redriven {
                    group,
                    topic,
                    partition: p,
                    offset,
                },
                StateValue::Redriven { redrive_count },
            ) => {
                partition_mut(groups, settings, &group, &topic, p).restore_redriven(
                    offset,
                    redrive_count,
                    now,
                );
            }
            (
                StateKey::ExternalCommitted {
                    group,
                    topic,
                    partition,
                },
                StateValue::ExternalCommitted {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_ms,
                },
            ) => {
                let committed = ExternalOffset {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_ms,
                };
                self.restore_external(group, TopicPartition::new(&topic, partition), committed);
            }
            (StateKey::Entry(_), StateValue::Entry(entry)) => {
                partition_mut(groups, settings, &entry.group, &entry.topic, entry.partition)
                    .restore(entry.offset, None);
                quarantine.insert(entry);
            }
            (key, _) => tracing::error!(?key, "delivery state record of the wrong kind ignored"),
        }
    }

    /// One timer round: expels members whose session ran out, fails records
    /// whose lease ran out, moves drained partitions, compacts the state log.
    pub(super) async fn tick(&self) {
        let now = now_ms();
        let names: Vec<String> = self.groups.borrow().keys().cloned().collect();
        for name in names {
            self.expel_silent(&name, now).await;
            self.expire_leases(&name, now).await;
            if let Some(g) = self.groups.borrow_mut().get_mut(&name) {
                g.settle();
            }
        }
        self.compact_log(now).await;
    }

    async fn expel_silent(&self, name: &str, now: i64) {
        let expelled: Vec<(String, Leased)> = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(name) else { return };
            let ids = group.expired_members(now);
            ids.into_iter()
                .map(|id| {
                    let held = leased_to(group, &id);
                    group.remove_member(&id);
                    (id, held)
                })
                .collect()
        };
        if expelled.is_empty() {
            return;
        }
        for (id, held) in expelled {
            tracing::warn!(group = name, member = %id, "member expelled: session timed out");
            let reason = "member expelled: session timed out";
            if let Err(e) = self.fail_records(name, held, reason, FailHow::immediate()).await {
                tracing::error!(group = name, error = %e, "recording an expelled member's records");
            }
        }
        self.reassign(name);
    }

    async fn expire_leases(&self, name: &str, now: i64) {
        let expired: Leased = {
            let groups = self.groups.borrow();
            let Some(group) = groups.get(name) else { return };
            group
                .partitions
                .iter()
                .map(|(tp, d)| (tp.clone(), d.expired(now)))
                .filter(|(_, o)| !o.is_empty())
                .collect()
        };
        if expired.is_empty() {
            return;
        }
        let result = self
            .fail_records(name, expired, "lease expired", FailHow::backoff())
            .await;
        if let Err(e) = result {
            tracing::error!(group = name, error = %e, "recording expired leases");
        }
    }
}

fn commit_partition(
    group: &str,
    tp: &TopicPartition,
    d: &mut PartitionDelivery,
    offset: u64,
    now: i64,
    records: &mut Vec<StateRecord>,
) {
    for (o, p) in d.commit(offset, now) {
        if p.failures > 0 {
            records.push(StateRecord::delete(failures_key(group, tp, o)));
        }
    }
    if let Some(c) = d.take_floor() {
        records.push(StateRecord::put(
            committed_key(group, tp),
            StateValue::Committed(c),
        ));
    }
}

fn partition_mut<'a>(
    groups: &'a mut BTreeMap<String, Group>,
    settings: &shoal_config::DeliveryConfig,
    group: &str,
    topic: &str,
    partition: u32,
) -> &'a mut PartitionDelivery {
    groups
        .entry(group.to_string())
        .or_insert_with(|| Group::new(group, settings))
        .partitions
        .entry(TopicPartition::new(topic, partition))
        .or_insert_with(|| PartitionDelivery::new(0))
}
