//! The group coordinator: join, heartbeat, leave, commit, seek, restore,
//! and the timer that expels silent members and expires leases.
//!
//! Runs on the group's coordinating shard only (callers forward). State is
//! mutated inside short synchronous sections (no `RefCell` borrow is held
//! across an await); the records describing a change are appended to the
//! state log right after, and the reply waits for them to be durable.
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
use std::rc::Rc;

use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::delivery::*;
use shoal_protocol::messages::group::*;
use shoal_protocol::messages::offsets::OffsetSpec;

use super::assignment::TopicPartition;
use super::delivery_state::{PartitionDelivery, Restored};
use super::member::{by_topic, Group, MEMBERS_MAX, SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN};
use super::outcome::{fail_records, FailHow};
use super::state_log::{StateKey, StateRecord, StateValue};
use super::Failed;
use crate::mesh::{ShardCall, ShardReply};
use crate::runtime::now_ms;
use crate::shard::Shard;

/// Most groups one shard coordinates.
pub const GROUPS_MAX: usize = 10_000;

/// Partition counts of `topics` that exist.
pub fn partition_counts(shard: &Shard, topics: impl IntoIterator<Item = String>) -> BTreeMap<String, u32> {
    let registry = shard.topics.borrow();
    topics
        .into_iter()
        .filter_map(|t| registry.get(&t).map(|m| (t, m.config.partitions)))
        .collect()
}

/// Recomputes a group's assignment and makes sure every assigned partition
/// has delivery state.
pub fn rebalance(shard: &Shard, group: &mut Group) {
    let counts = partition_counts(shard, group.topics());
    group.rebalance(&counts);
    for tp in group.target.keys() {
        group
            .partitions
            .entry(tp.clone())
            .or_insert_with(|| PartitionDelivery::new(0));
    }
}

/// The group `name` with `member` checked by [`check_member`] (and marked
/// alive): the common preamble of every member request.
pub fn member_group<'a>(
    groups: &'a mut BTreeMap<String, Group>,
    name: &str,
    member: &str,
    generation: u32,
    now: i64,
) -> Result<&'a mut Group, (ErrorCode, String)> {
    let Some(group) = groups.get_mut(name) else {
        return Err((ErrorCode::UnknownMember, format!("group {name:?} has no members")));
    };
    check_member(group, member, generation, now)?;
    Ok(group)
}

/// Checks that `member` belongs to the group at a generation not newer
/// than the group's, and marks it alive.
pub fn check_member(
    group: &mut Group,
    member: &str,
    generation: u32,
    now: i64,
) -> Result<(), (ErrorCode, String)> {
    let current = group.generation;
    let Some(m) = group.members.get_mut(member) else {
        return Err((
            ErrorCode::UnknownMember,
            format!(
                "member {member:?} is not in group {:?} (expelled or left): join again",
                group.name
            ),
        ));
    };
    if generation > current {
        return Err((
            ErrorCode::StaleGeneration,
            format!("generation {generation} is newer than the group's {current}"),
        ));
    }
    m.last_seen_ms = now;
    Ok(())
}

fn check_join(shard: &Shard, req: &JoinGroupRequest) -> Result<(), (ErrorCode, String)> {
    crate::topics::validate_name(&req.group)
        .map_err(|e| (ErrorCode::InvalidRequest, format!("group name: {e}")))?;
    if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&req.session_timeout_ms) {
        return Err((
            ErrorCode::InvalidRequest,
            format!("session_timeout_ms must be {SESSION_TIMEOUT_MS_MIN}..={SESSION_TIMEOUT_MS_MAX}"),
        ));
    }
    if req.topics.is_empty() {
        return Err((
            ErrorCode::InvalidRequest,
            "a member must subscribe to a topic".into(),
        ));
    }
    let registry = shard.topics.borrow();
    match req.topics.iter().find(|t| registry.get(t).is_none()) {
        Some(t) => Err((ErrorCode::UnknownTopic, format!("topic {t:?} does not exist"))),
        None => Ok(()),
    }
}

pub async fn join(shard: &Rc<Shard>, req: JoinGroupRequest) -> JoinGroupResponse {
    if let Err((code, message)) = check_join(shard, &req) {
        return Failed::failed(code, message);
    }
    let now = now_ms();
    let mut groups = shard.delivery.groups.borrow_mut();
    if !groups.contains_key(&req.group) && groups.len() >= GROUPS_MAX {
        return Failed::failed(
            ErrorCode::InvalidRequest,
            format!("too many groups (max {GROUPS_MAX})"),
        );
    }
    let group = groups
        .entry(req.group.clone())
        .or_insert_with(|| shard.delivery.new_group(&req.group));
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
                return Failed::failed(
                    ErrorCode::UnknownMember,
                    format!("member {id:?} is not in the group"),
                );
            }
        },
        None if group.members.len() >= MEMBERS_MAX => {
            return Failed::failed(
                ErrorCode::InvalidRequest,
                format!("too many members (max {MEMBERS_MAX})"),
            );
        }
        None => group.add_member(&req.member_name, &req.topics, req.session_timeout_ms, now),
    };
    rebalance(shard, group);
    let assignment = group.assignment_of(&id);
    let member = group.members.get_mut(&id).expect("just joined");
    member.reported = assignment.clone();
    tracing::info!(group = %req.group, member = %id, generation = group.generation, "member joined");
    JoinGroupResponse {
        error: 0,
        message: String::new(),
        member_id: id,
        generation: group.generation,
        assignment: by_topic(&assignment),
        heartbeat_interval_ms: member.heartbeat_interval_ms(),
    }
}

pub fn heartbeat(shard: &Rc<Shard>, req: HeartbeatRequest) -> HeartbeatResponse {
    let now = now_ms();
    let mut groups = shard.delivery.groups.borrow_mut();
    let group = match member_group(&mut groups, &req.group, &req.member_id, req.generation, now) {
        Ok(group) => group,
        Err((code, message)) => return Failed::failed(code, message),
    };
    group.settle();
    let assignment = group.assignment_of(&req.member_id);
    let revoked = group.revoked_of(&req.member_id);
    let member = group.members.get_mut(&req.member_id).expect("checked");
    let added: BTreeSet<TopicPartition> = assignment.difference(&member.reported).cloned().collect();
    member.reported = assignment.clone();
    HeartbeatResponse {
        error: 0,
        message: String::new(),
        generation: group.generation,
        assignment: by_topic(&assignment),
        added: by_topic(&added),
        revoked: by_topic(&revoked),
    }
}

pub async fn leave(shard: &Rc<Shard>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let held = {
        let mut groups = shard.delivery.groups.borrow_mut();
        let Some(group) = groups.get_mut(&req.group) else {
            return Failed::failed(
                ErrorCode::UnknownMember,
                format!("group {:?} has no members", req.group),
            );
        };
        if !group.members.contains_key(&req.member_id) {
            return Failed::failed(
                ErrorCode::UnknownMember,
                format!("member {:?} is not in the group", req.member_id),
            );
        }
        let held = leased_to(group, &req.member_id);
        group.remove_member(&req.member_id);
        held
    };
    tracing::info!(group = %req.group, member = %req.member_id, "member left");
    let result = fail_records(
        shard,
        &req.group,
        held,
        "member left before acking",
        FailHow::immediate(),
    )
    .await;
    reassign(shard, &req.group);
    match result {
        Ok(_) => LeaveGroupResponse {
            error: 0,
            message: String::new(),
        },
        Err(message) => Failed::failed(ErrorCode::Internal, message),
    }
}

/// Offsets per partition.
pub type Leased = Vec<(TopicPartition, Vec<u64>)>;

/// Records leased to `member`, per partition.
pub fn leased_to(group: &Group, member: &str) -> Leased {
    group
        .partitions
        .iter()
        .map(|(tp, d)| (tp.clone(), d.leased_to(member)))
        .filter(|(_, o)| !o.is_empty())
        .collect()
}

fn reassign(shard: &Shard, name: &str) {
    if let Some(group) = shard.delivery.groups.borrow_mut().get_mut(name) {
        rebalance(shard, group);
    }
}

/// Explicit commit: moves the position forward (records below it are done).
pub async fn commit(shard: &Rc<Shard>, req: CommitOffsetRequest) -> CommitOffsetResponse {
    let now = now_ms();
    let mut records = Vec::new();
    let mut partitions = Vec::new();
    {
        let mut groups = shard.delivery.groups.borrow_mut();
        let group = match member_group(&mut groups, &req.group, &req.member_id, req.generation, now) {
            Ok(group) => group,
            Err((code, message)) => return Failed::failed(code, message),
        };
        if req.generation != group.generation {
            let message = format!(
                "generation {} is stale (group is at {})",
                req.generation, group.generation
            );
            return Failed::failed(ErrorCode::StaleGeneration, message);
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
    match shard.delivery.persist(records).await {
        Ok(()) => CommitOffsetResponse {
            error: 0,
            message: String::new(),
            partitions,
        },
        Err(message) => Failed::failed(ErrorCode::Internal, message),
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

pub fn committed_key(group: &str, tp: &TopicPartition) -> StateKey {
    StateKey::Committed {
        group: group.to_string(),
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
}

pub fn failures_key(group: &str, tp: &TopicPartition, offset: u64) -> StateKey {
    StateKey::Failures {
        group: group.to_string(),
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
    }
}

pub fn redriven_key(group: &str, tp: &TopicPartition, offset: u64) -> StateKey {
    StateKey::Redriven {
        group: group.to_string(),
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
    }
}

/// Replay: moves a group's position (admin; needs no membership).
pub async fn seek(shard: &Rc<Shard>, req: SeekRequest) -> SeekResponse {
    let Some(count) = partition_counts(shard, [req.topic.clone()])
        .get(&req.topic)
        .copied()
    else {
        return Failed::failed(
            ErrorCode::UnknownTopic,
            format!("topic {:?} does not exist", req.topic),
        );
    };
    if crate::topics::validate_name(&req.group).is_err() {
        return Failed::failed(
            ErrorCode::InvalidRequest,
            format!("invalid group name {:?}", req.group),
        );
    }
    let wanted: Vec<u32> = if req.partitions.is_empty() {
        (0..count).collect()
    } else {
        req.partitions.clone()
    };
    let mut partitions = Vec::new();
    let mut records = Vec::new();
    for p in wanted {
        let resolved = if p >= count {
            Err(ErrorCode::UnknownPartition)
        } else {
            resolve(shard, &req.topic, p, req.target).await
        };
        let (error, offset) = match resolved {
            Ok(offset) => {
                seek_partition(
                    shard,
                    &req.group,
                    &TopicPartition::new(&req.topic, p),
                    offset,
                    &mut records,
                );
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
    match shard.delivery.persist(records).await {
        Ok(()) => SeekResponse {
            error: 0,
            message: String::new(),
            partitions,
        },
        Err(message) => Failed::failed(ErrorCode::Internal, message),
    }
}

fn seek_partition(
    shard: &Shard,
    group: &str,
    tp: &TopicPartition,
    offset: u64,
    records: &mut Vec<StateRecord>,
) {
    let mut groups = shard.delivery.groups.borrow_mut();
    let g = groups
        .entry(group.to_string())
        .or_insert_with(|| shard.delivery.new_group(group));
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
async fn resolve(
    shard: &Rc<Shard>,
    topic: &str,
    partition: u32,
    target: SeekTarget,
) -> Result<u64, ErrorCode> {
    let spec = match target {
        SeekTarget::Offset(o) => return Ok(o),
        SeekTarget::Earliest => OffsetSpec::Earliest,
        SeekTarget::Latest => OffsetSpec::Latest,
        SeekTarget::Timestamp(ts) => OffsetSpec::Timestamp(ts),
    };
    let owner = shard.owner(topic, partition);
    let resp = if owner == shard.id {
        crate::handlers::local::list_offsets(shard, topic, partition, spec).await
    } else {
        let call = ShardCall::ListOffsets {
            topic: topic.to_string(),
            partition,
            spec,
        };
        match shard.on(owner, call).await {
            Ok(ShardReply::ListOffsets(r)) => r,
            _ => return Err(ErrorCode::NotOwner),
        }
    };
    match ErrorCode::from_wire(resp.error) {
        ErrorCode::None => Ok(resp.offset),
        code => Err(code),
    }
}

/// This shard's groups, for list groups.
pub fn local_groups(shard: &Shard) -> Vec<GroupSummary> {
    shard
        .delivery
        .groups
        .borrow()
        .values()
        .map(|g| GroupSummary {
            group: g.name.clone(),
            state: g.state(),
            generation: g.generation,
            members: g.members.len() as u32,
            topics: g.topics().into_iter().collect(),
        })
        .collect()
}

/// Rebuilds groups and the quarantine from the replayed state log.
pub fn restore(shard: &Shard, state: BTreeMap<StateKey, StateValue>, now: i64) {
    let mut groups = shard.delivery.groups.borrow_mut();
    let mut quarantine = shard.delivery.quarantine.borrow_mut();
    let settings = shard.delivery.settings.borrow();
    for (key, value) in state {
        restore_one(shard, &mut groups, &mut quarantine, &settings, key, value, now);
    }
}

fn restore_one(
    shard: &Shard,
    groups: &mut BTreeMap<String, Group>,
    quarantine: &mut super::quarantine::QuarantineStore,
    settings: &super::settings::DeliveryConfig,
    key: StateKey,
    value: StateValue,
    now: i64,
) {
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
            let policy = super::outcome::retry_policy(shard, &topic);
            let delay = super::retry_policy::backoff_ms(&policy, failures, rand::random::<f64>());
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
            partition_mut(groups, settings, &group, &topic, p).restore_redriven(offset, redrive_count, now);
        }
        (StateKey::Entry(_), StateValue::Entry(entry)) => {
            partition_mut(groups, settings, &entry.group, &entry.topic, entry.partition)
                .restore(entry.offset, None);
            quarantine.insert(entry);
        }
        (key, _) => tracing::error!(?key, "delivery state record of the wrong kind ignored"),
    }
}

fn partition_mut<'a>(
    groups: &'a mut BTreeMap<String, Group>,
    settings: &super::settings::DeliveryConfig,
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

/// One timer round: expels members whose session ran out, fails records
/// whose lease ran out, moves drained partitions, compacts the state log.
pub async fn tick(shard: &Rc<Shard>) {
    let now = now_ms();
    let names: Vec<String> = shard.delivery.groups.borrow().keys().cloned().collect();
    for name in names {
        expel_silent(shard, &name, now).await;
        expire_leases(shard, &name, now).await;
        if let Some(g) = shard.delivery.groups.borrow_mut().get_mut(&name) {
            g.settle();
        }
    }
    let log = shard.delivery.log.borrow().clone();
    if let Some(log) = log {
        log.maybe_compact(now).await;
    }
}

async fn expel_silent(shard: &Rc<Shard>, name: &str, now: i64) {
    let expelled: Vec<(String, Leased)> = {
        let mut groups = shard.delivery.groups.borrow_mut();
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
        if let Err(e) = fail_records(
            shard,
            name,
            held,
            "member expelled: session timed out",
            FailHow::immediate(),
        )
        .await
        {
            tracing::error!(group = name, error = %e, "recording an expelled member's records");
        }
    }
    reassign(shard, name);
}

async fn expire_leases(shard: &Rc<Shard>, name: &str, now: i64) {
    let expired: Vec<(TopicPartition, Vec<u64>)> = {
        let groups = shard.delivery.groups.borrow();
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
    if let Err(e) = fail_records(shard, name, expired, "lease expired", FailHow::backoff()).await {
        tracing::error!(group = name, error = %e, "recording expired leases");
    }
}
