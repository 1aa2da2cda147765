//! The Kafka groups one shard coordinates: the sans-IO [`KafkaGroup`]s,
//! the requests parked on them, and their timer.
//!
//! A Kafka group lives on its coordinating shard (`murmur2(group) %
//! shards`, the shard FindCoordinator names), like a Shoal group. The
//! group handlers send their work there ([`Shard::submit_to`]; no hop for
//! a client that follows FindCoordinator) and every function here runs on
//! that shard, so the registry is a thread-local: each shard is one
//! executor thread, and nothing else touches it.
//!
//! A parked JoinGroup or SyncGroup waits on a one-shot channel registered
//! under the [`ReplyTo`] token given to the group; whichever call later
//! completes it (another member's join, the leader's sync, the timer)
//! sends the answer there. The timer ticks every group whose next deadline
//! passed ([`TICK_MS`]) and drops groups left with no members, nothing
//! pending and no deadline.
//!
//! Durability lives elsewhere: a group's committed offsets are the delivery
//! service's (the shard's state log), written before a commit is answered;
//! membership is not durable, as in Kafka, whose consumers rejoin after a
//! coordinator restart. After each change the group's membership is
//! reported to the delivery service for `shoal group describe`, `GET
//! /groups/:g` and `/metrics`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use shoal_protocol::messages::group::GroupState as ShoalGroupState;

use super::consumer_assignment::assigned_partitions;
use super::group_coordinator::{
    CommitRequest, GroupDescription, GroupState, JoinRequest, JoinResponse, KafkaGroup, KafkaGroupSettings,
    Leaving, Reply, ReplyTo, SyncRequest, SyncResponse, TopicPartition,
};
use crate::delivery::assignment::TopicPartition as ShoalTopicPartition;
use crate::delivery::{ExternalMember, ExternalMembership, ExternalOffset};
use crate::error::BrokerError;
use crate::runtime::now_ms as wall_ms;
use crate::shard::Shard;

/// How often the timer looks for groups with a deadline due.
pub const TICK_MS: u64 = 50;

/// A parked request's answer channel.
enum Parked {
    Join(flume::Sender<JoinResponse>),
    Sync(flume::Sender<SyncResponse>),
}

struct Registry {
    groups: BTreeMap<String, KafkaGroup>,
    parked: HashMap<ReplyTo, Parked>,
    next_reply: u64,
    /// The clock groups run on (monotonic ms since the registry started).
    epoch: Instant,
    timer_started: bool,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry {
        groups: BTreeMap::new(),
        parked: HashMap::new(),
        next_reply: 0,
        epoch: Instant::now(),
        timer_started: false,
    });
}

fn mono_ms() -> u64 {
    REGISTRY.with(|r| r.borrow().epoch.elapsed().as_millis() as u64)
}

fn settings(shard: &Shard) -> KafkaGroupSettings {
    let k = &shard.config().kafka;
    KafkaGroupSettings {
        initial_rebalance_delay_ms: k.group_initial_rebalance_delay_ms,
        session_timeout_ms_min: k.group_session_timeout_ms_min as i32,
        session_timeout_ms_max: k.group_session_timeout_ms_max as i32,
        ..KafkaGroupSettings::default()
    }
}

/// Claims `group` for the Kafka protocol on its coordinator: a new name is
/// checked (Shoal's group-name rules, the one-protocol rule) and recorded
/// with the delivery service.
fn claim(shard: &Shard, group: &str) -> Result<(), ResponseError> {
    if REGISTRY.with(|r| r.borrow().groups.contains_key(group)) {
        return Ok(());
    }
    if crate::metadata::validate_name(group).is_err() {
        return Err(ResponseError::InvalidGroupId);
    }
    if shard.is_shoal_group(group) {
        tracing::warn!(
            group,
            "Kafka request refused: the group is used over the Shoal protocol (native or HTTP); \
             a group is used over one protocol only"
        );
        return Err(ResponseError::InconsistentGroupProtocol);
    }
    shard.kafka_claim_group(group).map_err(|e| {
        tracing::warn!(group, error = %e, "Kafka group not claimed");
        ResponseError::CoordinatorNotAvailable
    })
}

/// Runs `f` on the group (created empty if new) with the group clock, and
/// starts the shard's timer on first use.
fn with_group<T>(shard: &Rc<Shard>, group: &str, f: impl FnOnce(&mut KafkaGroup, u64) -> T) -> T {
    let now = mono_ms();
    let (out, start_timer) = REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let g = r
            .groups
            .entry(group.to_string())
            .or_insert_with(|| KafkaGroup::new(group, settings(shard), rand::random()));
        let out = f(g, now);
        let start = !r.timer_started;
        r.timer_started = true;
        (out, start)
    });
    if start_timer {
        glommio::spawn_local(timer(shard.clone())).detach();
    }
    out
}

/// Runs `f` on an existing group; `None` if there is none.
fn with_existing<T>(group: &str, f: impl FnOnce(&mut KafkaGroup, u64) -> T) -> Option<T> {
    let now = mono_ms();
    REGISTRY.with(|r| r.borrow_mut().groups.get_mut(group).map(|g| f(g, now)))
}

fn park_join() -> (ReplyTo, flume::Receiver<JoinResponse>) {
    let (tx, rx) = flume::bounded(1);
    (park(Parked::Join(tx)), rx)
}

fn park_sync() -> (ReplyTo, flume::Receiver<SyncResponse>) {
    let (tx, rx) = flume::bounded(1);
    (park(Parked::Sync(tx)), rx)
}

fn park(parked: Parked) -> ReplyTo {
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        r.next_reply += 1;
        let to = ReplyTo(r.next_reply);
        r.parked.insert(to, parked);
        to
    })
}

/// Sends each due reply to the request parked under its token. A parked
/// request whose client went away has a closed channel; its answer is
/// dropped.
fn deliver(replies: Vec<Reply>) {
    for reply in replies {
        let parked = REGISTRY.with(|r| {
            let to = match &reply {
                Reply::Join(to, _) | Reply::Sync(to, _) => *to,
            };
            r.borrow_mut().parked.remove(&to)
        });
        match (parked, reply) {
            (Some(Parked::Join(tx)), Reply::Join(_, resp)) => {
                let _ = tx.try_send(resp);
            }
            (Some(Parked::Sync(tx)), Reply::Sync(_, resp)) => {
                let _ = tx.try_send(resp);
            }
            (parked, reply) => {
                tracing::error!(
                    known = parked.is_some(),
                    ?reply,
                    "a Kafka group answered a token of another kind"
                );
            }
        }
    }
}

/// JoinGroup, on the coordinator. Waits while the join is parked.
pub async fn join(shard: Rc<Shard>, group: String, req: JoinRequest) -> JoinResponse {
    if let Err(e) = claim(&shard, &group) {
        return JoinResponse::error(e, &req.member_id);
    }
    let (to, rx) = park_join();
    let replies = with_group(&shard, &group, |g, now| g.join(now, to, req));
    deliver(replies);
    report(&shard, &group);
    rx.recv_async()
        .await
        .unwrap_or_else(|_| JoinResponse::error(ResponseError::CoordinatorNotAvailable, ""))
}

/// SyncGroup, on the coordinator. Followers wait for the leader's sync.
pub async fn sync(shard: Rc<Shard>, group: String, req: SyncRequest) -> SyncResponse {
    let (to, rx) = park_sync();
    let Some(replies) = with_existing(&group, |g, now| g.sync(now, to, req)) else {
        REGISTRY.with(|r| r.borrow_mut().parked.remove(&to));
        return SyncResponse::error(ResponseError::UnknownMemberId);
    };
    deliver(replies);
    report(&shard, &group);
    rx.recv_async()
        .await
        .unwrap_or_else(|_| SyncResponse::error(ResponseError::CoordinatorNotAvailable))
}

/// Heartbeat, on the coordinator: a Kafka error code.
pub fn heartbeat(shard: Rc<Shard>, group: String, member_id: String, generation: i32) -> i16 {
    let code = with_existing(&group, |g, now| g.heartbeat(now, &member_id, generation))
        .unwrap_or(ResponseError::UnknownMemberId.code());
    report(&shard, &group);
    code
}

/// LeaveGroup, on the coordinator: a code per member named.
pub fn leave(shard: Rc<Shard>, group: String, leaving: Vec<Leaving>) -> Vec<i16> {
    let Some((codes, replies)) = with_existing(&group, |g, now| g.leave(now, &leaving)) else {
        return vec![ResponseError::UnknownMemberId.code(); leaving.len()];
    };
    deliver(replies);
    report(&shard, &group);
    codes
}

/// OffsetCommit, on the coordinator: fenced by the group, made durable by
/// the delivery service, and only then answered. A code per partition.
pub async fn commit(shard: Rc<Shard>, group: String, req: CommitRequest) -> Vec<(TopicPartition, i16)> {
    if let Err(e) = claim(&shard, &group) {
        return req.offsets.into_iter().map(|(tp, ..)| (tp, e.code())).collect();
    }
    let check = with_group(&shard, &group, |g, now| g.check_commit(now, &req));
    if check.accepted.is_empty() {
        return check.results;
    }
    let commit_ms = wall_ms();
    let entries = check
        .accepted
        .iter()
        .map(|(tp, c)| {
            let offset = ExternalOffset {
                offset: c.offset.max(0) as u64,
                leader_epoch: c.leader_epoch,
                metadata: c.metadata.clone(),
                commit_ms,
            };
            (ShoalTopicPartition::new(&tp.topic, tp.partition as u32), offset)
        })
        .collect();
    match shard.kafka_commit_offsets(&group, entries).await {
        Ok(()) => check.results,
        Err(e) => {
            tracing::warn!(group, error = %e, "Kafka offset commit not stored");
            let code = match e {
                BrokerError::InvalidRequest(_) => ResponseError::InvalidCommitOffsetSize.code(),
                other => super::error::group_error_code(&other),
            };
            let accepted: Vec<&TopicPartition> = check.accepted.iter().map(|(tp, _)| tp).collect();
            check
                .results
                .into_iter()
                .map(|(tp, c)| {
                    if c == 0 && accepted.contains(&&tp) {
                        (tp, code)
                    } else {
                        (tp, c)
                    }
                })
                .collect()
        }
    }
}

/// A committed offset as OffsetFetch reports it: (offset, leader epoch,
/// metadata); offset −1 when none.
pub type Fetched = (TopicPartition, i64, i32, Option<String>);

/// OffsetFetch, on the coordinator: the offsets of `partitions` (all when
/// `None`), or the group-level error code.
pub fn fetch_offsets(
    shard: Rc<Shard>,
    group: String,
    partitions: Option<Vec<TopicPartition>>,
) -> Result<Vec<Fetched>, i16> {
    let wanted: Option<Vec<ShoalTopicPartition>> = partitions.map(|list| {
        list.iter()
            .map(|tp| ShoalTopicPartition::new(&tp.topic, tp.partition.max(0) as u32))
            .collect()
    });
    let offsets = shard
        .kafka_committed_offsets(&group, wanted.as_deref())
        .map_err(|e| {
            tracing::warn!(group, error = %e, "Kafka OffsetFetch refused");
            ResponseError::InconsistentGroupProtocol.code()
        })?;
    Ok(offsets
        .into_iter()
        .map(|(tp, committed)| {
            let tp = TopicPartition {
                topic: tp.topic,
                partition: tp.partition as i32,
            };
            match committed {
                Some(c) => (tp, c.offset as i64, c.leader_epoch, c.metadata),
                None => (tp, -1, -1, None),
            }
        })
        .collect())
}

/// What DescribeGroups reports for one group.
pub enum Described {
    Kafka(GroupDescription),
    /// A Shoal-protocol group: its state name.
    Shoal(&'static str),
    /// A Kafka group known only by its committed offsets (no members since
    /// the broker started).
    OffsetsOnly,
    Unknown,
}

/// DescribeGroups for one group, on the coordinator.
pub fn describe(shard: Rc<Shard>, group: String) -> Described {
    if let Some(d) = with_existing(&group, |g, _| g.describe()) {
        return Described::Kafka(d);
    }
    for (summary, kafka) in shard.local_groups_by_protocol() {
        if summary.group == group {
            return if kafka {
                Described::OffsetsOnly
            } else {
                Described::Shoal(shoal_state_name(summary.state))
            };
        }
    }
    Described::Unknown
}

/// One group as ListGroups reports it: (id, protocol type, state).
pub type Listed = (String, String, String);

/// This shard's groups, Kafka and Shoal alike, for ListGroups.
pub fn list(shard: Rc<Shard>) -> Vec<Listed> {
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (summary, kafka) in shard.local_groups_by_protocol() {
        let entry = if kafka {
            (String::new(), "Empty".to_string())
        } else {
            ("shoal".to_string(), shoal_state_name(summary.state).to_string())
        };
        out.insert(summary.group, entry);
    }
    REGISTRY.with(|r| {
        for (name, g) in &r.borrow().groups {
            let protocol = g.protocol_type().unwrap_or("").to_string();
            out.insert(name.clone(), (protocol, g.state().name().to_string()));
        }
    });
    out.into_iter().map(|(name, (p, s))| (name, p, s)).collect()
}

fn shoal_state_name(state: ShoalGroupState) -> &'static str {
    match state {
        ShoalGroupState::Empty => "Empty",
        ShoalGroupState::Rebalancing => "PreparingRebalance",
        ShoalGroupState::Stable => "Stable",
    }
}

/// Tells the delivery service the group's membership (stats and lists).
fn report(shard: &Shard, group: &str) {
    let now_mono = mono_ms();
    let now_wall = wall_ms();
    let Some((description, generation)) = with_existing(group, |g, _| (g.describe(), g.generation().0))
    else {
        return;
    };
    let consumer = description.protocol_type == "consumer";
    let members = description
        .members
        .into_iter()
        .map(|m| ExternalMember {
            assignment: if consumer {
                assigned_partitions(&m.assignment)
                    .into_iter()
                    .map(|(t, p)| ShoalTopicPartition::new(&t, p))
                    .collect()
            } else {
                Vec::new()
            },
            member_id: m.member_id,
            client_id: m.client_id,
            last_seen_ms: now_wall - now_mono.saturating_sub(m.last_heartbeat_ms) as i64,
        })
        .collect();
    let state = match description.state {
        GroupState::Empty => ShoalGroupState::Empty,
        GroupState::PreparingRebalance | GroupState::CompletingRebalance => ShoalGroupState::Rebalancing,
        GroupState::Stable => ShoalGroupState::Stable,
    };
    let membership = ExternalMembership {
        state,
        generation: generation.max(0) as u32,
        members,
    };
    shard.kafka_report_membership(group, membership);
}

/// Ticks the groups whose deadline is due, every [`TICK_MS`], until the
/// shard shuts down; drops groups left with nothing to keep.
async fn timer(shard: Rc<Shard>) {
    while !shard.is_shutting_down() {
        crate::runtime::sleep(Duration::from_millis(TICK_MS)).await;
        let now = mono_ms();
        let (replies, ticked, idle) = REGISTRY.with(|r| {
            let mut r = r.borrow_mut();
            let mut replies = Vec::new();
            let mut ticked = Vec::new();
            for (name, g) in r.groups.iter_mut() {
                if g.next_deadline().is_some_and(|d| d <= now) {
                    replies.extend(g.tick(now));
                    ticked.push(name.clone());
                }
            }
            let idle: Vec<String> = r
                .groups
                .iter()
                .filter(|(_, g)| {
                    g.state() == GroupState::Empty && g.member_ids().is_empty() && g.next_deadline().is_none()
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in &idle {
                r.groups.remove(name);
            }
            (replies, ticked, idle)
        });
        deliver(replies);
        for name in ticked {
            report(&shard, &name);
        }
        for name in idle {
            shard.kafka_report_membership(&name, ExternalMembership::default());
            shard.kafka_forget_group(&name);
        }
    }
}
