//! The classic Kafka consumer-group protocol for one group, sans-IO: join,
//! sync, heartbeat, leave, session expiry and the committed-offset table,
//! as Kafka's own `GroupCoordinator` runs them for clients with client-side
//! assignors (librdkafka, the Java client's classic protocol, franz-go).
//!
//! Inputs are requests, the caller's `now_ms` (monotonic) and, once, a nonce
//! for member ids; outputs are responses. JoinGroup and SyncGroup answers are
//! often deferred (every member's JoinGroup is answered when the rebalance
//! completes; followers' SyncGroup when the leader's assignment arrives), so
//! every call returns the [`Reply`]s that are due, each addressed to the
//! [`ReplyTo`] token the caller passed with the parked request. The caller
//! also calls [`KafkaGroup::tick`] at [`KafkaGroup::next_deadline`].
//!
//! # States
//!
//! ```text
//!  Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!    ▲                    ▲    ▲                                   │ leader's SyncGroup
//!    └── last member left ┘    └──── join with new metadata, ◀── Stable
//!                                    leader rejoin, leave, expiry
//! ```
//!
//! - PreparingRebalance ends when every member has rejoined and no member id
//!   handed out with MEMBER_ID_REQUIRED is still unused, or when the largest
//!   rebalance timeout of the members has passed (members that did not rejoin
//!   are then removed). From Empty it first waits the initial rebalance
//!   delay, extended by each new member, so a group starting together forms
//!   in one generation.
//! - Completing the join opens generation + 1: the protocol is the one most
//!   members prefer among those all support, the leader is kept if still a
//!   member (else the first member to rejoin), and only the leader's
//!   response lists the members and their metadata.
//! - CompletingRebalance ends with the leader's SyncGroup (assignments stored,
//!   parked followers answered); if it does not come within the rebalance
//!   timeout, the members that never synced are removed and the group
//!   rebalances again.
//! - A member is expelled when its session timeout passes without a
//!   heartbeat, unless a JoinGroup or SyncGroup of its own is parked (Kafka
//!   keeps those alive; a member new in this rebalance gets at most
//!   [`NEW_MEMBER_JOIN_TIMEOUT_MS`]).
//!
//! # Fencing
//!
//! Member ids are never reused (client id, the group's nonce, a counter). A
//! request from an unknown member is UNKNOWN_MEMBER_ID; a generation other
//! than the group's is ILLEGAL_GENERATION; so an expelled or stale member
//! cannot commit: an OffsetCommit must name a current member and the current
//! generation (or, in an Empty group, generation −1 and no member: a
//! standalone consumer or an admin tool). Commits during PreparingRebalance
//! are allowed (consumers commit when their partitions are revoked), during
//! CompletingRebalance they are REBALANCE_IN_PROGRESS, as in Kafka.
//!
//! Committing is split so that nothing is acknowledged before it is
//! durable: [`KafkaGroup::check_commit`] fences the request and returns the
//! entries to persist; the caller makes them durable (the delivery service
//! keeps a Kafka group's committed offsets in the shard's state log, the one
//! source of truth that OffsetFetch, `shoal group describe` and a restart
//! all read) and only then answers.
//!
//! Not implemented: static membership (a `group_instance_id` is kept and
//! reported, and LeaveGroup may name a member by it, but a restarted static
//! member joins as a new member), offset retention, transactions.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;

/// A member new in a rebalance is kept waiting for it at most this long
/// (Kafka's `newMemberJoinTimeoutMs`).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 300_000;

/// Limits and timing of Kafka groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaGroupSettings {
    /// From Empty, wait this long for more members before the first
    /// generation (Kafka's `group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: u64,
    /// Accepted session timeouts (Kafka's `group.min/max.session.timeout.ms`).
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    /// Members plus pending member ids (Kafka's `group.max.size`).
    pub members_max: usize,
    /// Per committed offset (Kafka's `offset.metadata.max.bytes`).
    pub offset_metadata_bytes_max: usize,
}

impl Default for KafkaGroupSettings {
    fn default() -> Self {
        KafkaGroupSettings {
            initial_rebalance_delay_ms: 3_000,
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            members_max: 1_000,
            offset_metadata_bytes_max: 4_096,
        }
    }
}

/// The caller's address for a parked request (a connection and correlation
/// id, say); echoed in the [`Reply`] that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyTo(pub u64);

/// The group's generation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Generation(pub i32);

/// Where the group is in the protocol (the names DescribeGroups reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A JoinGroup request, any version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Empty on a member's first join.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    /// −1 in v0, which uses the session timeout.
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join is answered with MEMBER_ID_REQUIRED and
    /// a member id to join with.
    pub require_known_member_id: bool,
}

/// One member as the leader's JoinGroup response lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error_code: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Non-empty for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    pub fn error(error: ResponseError, member_id: &str) -> Self {
        JoinResponse {
            error_code: error.code(),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup request, any version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub member_id: String,
    pub generation_id: i32,
    /// v5+: must match the group's when set.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment per member; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: ResponseError) -> Self {
        SyncResponse {
            error_code: error.code(),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A response that is due now, to the request parked under `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Join(ReplyTo, JoinResponse),
    Sync(ReplyTo, SyncResponse),
}

/// A member named in a LeaveGroup request (v0–2 name one by member id;
/// v3+ may name several, by member id or group instance id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaving {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// A partition of a topic, for committed offsets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// A committed offset as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_time_ms: u64,
}

/// An OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    pub member_id: String,
    /// −1 for a standalone commit (no group membership).
    pub generation_id: i32,
    pub offsets: Vec<(TopicPartition, i64, i32, Option<String>)>,
}

/// What [`KafkaGroup::check_commit`] decided: an error code per partition,
/// and the entries to persist and then apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitCheck {
    pub results: Vec<(TopicPartition, i16)>,
    pub accepted: Vec<(TopicPartition, CommittedOffset)>,
}

/// One member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Metadata for the group's protocol.
    pub metadata: Bytes,
    pub assignment: Bytes,
    /// When the member was last heard from (the caller's clock).
    pub last_heartbeat_ms: u64,
}

/// What DescribeGroups reports about the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug)]
struct Member {
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: u64,
    rebalance_timeout_ms: u64,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat_ms: u64,
    /// Joined during the current rebalance (not yet through one).
    is_new: bool,
    awaiting_join: Option<ReplyTo>,
    awaiting_sync: Option<ReplyTo>,
    /// Joined the current generation, has not sent SyncGroup yet.
    pending_sync: bool,
    /// Order of (re)joining, for choosing a leader.
    join_order: u64,
}

impl Member {
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// When the member is expelled unless it is heard from.
    fn expiry_ms(&self) -> Option<u64> {
        if self.awaiting_join.is_some() {
            return self
                .is_new
                .then(|| self.last_heartbeat_ms + NEW_MEMBER_JOIN_TIMEOUT_MS);
        }
        if self.awaiting_sync.is_some() {
            return None;
        }
        Some(self.last_heartbeat_ms + self.session_timeout_ms)
    }
}

/// One Kafka consumer group's coordinator state.
#[derive(Debug)]
pub struct KafkaGroup {
    group_id: String,
    settings: KafkaGroupSettings,
    state: GroupState,
    generation: Generation,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    pending: BTreeMap<String, u64>,
    /// PreparingRebalance: when the join completes whatever happens.
    join_deadline_ms: Option<u64>,
    /// PreparingRebalance from Empty: not before this.
    initial_delay_until_ms: Option<u64>,
    /// CompletingRebalance: when members that never synced are removed.
    sync_deadline_ms: Option<u64>,
    id_nonce: u64,
    ids_issued: u64,
    /// Members added so far (orders members for choosing a leader).
    members_added: u64,
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl KafkaGroup {
    /// A new, empty group. `id_nonce` is the caller's randomness: member ids
    /// include it, so ids from before a restart never match new ones.
    pub fn new(group_id: impl Into<String>, settings: KafkaGroupSettings, id_nonce: u64) -> Self {
        KafkaGroup {
            group_id: group_id.into(),
            settings,
            state: GroupState::Empty,
            generation: Generation(0),
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            join_deadline_ms: None,
            initial_delay_until_ms: None,
            sync_deadline_ms: None,
            id_nonce,
            ids_issued: 0,
            members_added: 0,
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> Generation {
        self.generation
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// Member ids, in id order.
    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// JoinGroup. The answer to this request, and any others it completes,
    /// are in the returned replies (none if it was parked).
    pub fn join(&mut self, now_ms: u64, to: ReplyTo, req: JoinRequest) -> Vec<Reply> {
        if let Err(e) = self.check_join(&req) {
            return vec![Reply::Join(to, JoinResponse::error(e, &req.member_id))];
        }
        if req.member_id.is_empty() {
            return self.join_new_member(now_ms, to, req);
        }
        if self.pending.remove(&req.member_id).is_some() {
            let member_id = req.member_id.clone();
            return self.add_member_and_rebalance(now_ms, to, member_id, req);
        }
        if !self.members.contains_key(&req.member_id) {
            return vec![Reply::Join(
                to,
                JoinResponse::error(ResponseError::UnknownMemberId, &req.member_id),
            )];
        }
        self.join_known_member(now_ms, to, req)
    }

    fn check_join(&self, req: &JoinRequest) -> Result<(), ResponseError> {
        let s = &self.settings;
        if !(s.session_timeout_ms_min..=s.session_timeout_ms_max).contains(&req.session_timeout_ms) {
            return Err(ResponseError::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        if self.members.is_empty() {
            return Ok(());
        }
        if self
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != req.protocol_type)
        {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        // Some protocol must be supported by every other member and this one.
        let others = self.members.iter().filter(|(id, _)| **id != req.member_id);
        let common = req
            .protocols
            .iter()
            .any(|(name, _)| others.clone().all(|(_, m)| m.supports(name)));
        if !common {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    fn join_new_member(&mut self, now_ms: u64, to: ReplyTo, req: JoinRequest) -> Vec<Reply> {
        if self.members.len() + self.pending.len() >= self.settings.members_max {
            return vec![Reply::Join(
                to,
                JoinResponse::error(ResponseError::GroupMaxSizeReached, ""),
            )];
        }
        self.ids_issued += 1;
        let member_id = format!("{}-{:016x}-{}", req.client_id, self.id_nonce, self.ids_issued);
        if req.require_known_member_id {
            let lapse = now_ms + req.session_timeout_ms.max(0) as u64;
            self.pending.insert(member_id.clone(), lapse);
            let response = JoinResponse::error(ResponseError::MemberIdRequired, &member_id);
            return vec![Reply::Join(to, response)];
        }
        self.add_member_and_rebalance(now_ms, to, member_id, req)
    }

    fn add_member_and_rebalance(
        &mut self,
        now_ms: u64,
        to: ReplyTo,
        member_id: String,
        req: JoinRequest,
    ) -> Vec<Reply> {
        self.members_added += 1;
        let rebalance_timeout_ms = if req.rebalance_timeout_ms < 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        };
        let member = Member {
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms.max(0) as u64,
            rebalance_timeout_ms: rebalance_timeout_ms.max(0) as u64,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            is_new: true,
            awaiting_join: Some(to),
            awaiting_sync: None,
            pending_sync: false,
            join_order: self.members_added,
        };
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.members.insert(member_id, member);
        if self.state == GroupState::PreparingRebalance {
            if let Some(until) = self.initial_delay_until_ms.as_mut() {
                *until = (now_ms + self.settings.initial_rebalance_delay_ms)
                    .min(self.join_deadline_ms.unwrap_or(u64::MAX));
            }
        }
        let mut replies = self.prepare_rebalance(now_ms);
        replies.extend(self.try_complete_join(now_ms));
        replies
    }

    fn join_known_member(&mut self, now_ms: u64, to: ReplyTo, req: JoinRequest) -> Vec<Reply> {
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        let member = self
            .members
            .get_mut(&req.member_id)
            .expect("checked by the caller");
        let same_metadata = member.protocols == req.protocols;
        member.last_heartbeat_ms = now_ms;
        let mut replies = Vec::new();
        match self.state {
            GroupState::CompletingRebalance if same_metadata => {
                // The member missed its JoinGroup response; send it again.
                replies.push(Reply::Join(to, self.join_response(&req.member_id)));
                return replies;
            }
            GroupState::Stable if same_metadata && !is_leader => {
                replies.push(Reply::Join(to, self.join_response(&req.member_id)));
                return replies;
            }
            _ => {}
        }
        let member = self
            .members
            .get_mut(&req.member_id)
            .expect("checked by the caller");
        if let Some(old) = member.awaiting_join.replace(to) {
            let response = JoinResponse::error(ResponseError::RebalanceInProgress, &req.member_id);
            replies.push(Reply::Join(old, response));
        }
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms.max(0) as u64;
        if req.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = req.rebalance_timeout_ms as u64;
        }
        replies.extend(self.prepare_rebalance(now_ms));
        replies.extend(self.try_complete_join(now_ms));
        replies
    }

    /// Moves to PreparingRebalance (if not there already): parked syncs are
    /// answered REBALANCE_IN_PROGRESS and the join deadline is set.
    fn prepare_rebalance(&mut self, now_ms: u64) -> Vec<Reply> {
        if self.state == GroupState::PreparingRebalance {
            return Vec::new();
        }
        let mut replies = Vec::new();
        for m in self.members.values_mut() {
            if let Some(to) = m.awaiting_sync.take() {
                replies.push(Reply::Sync(
                    to,
                    SyncResponse::error(ResponseError::RebalanceInProgress),
                ));
            }
            m.pending_sync = false;
        }
        let from_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        self.sync_deadline_ms = None;
        let rebalance_ms = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.join_deadline_ms = Some(now_ms + rebalance_ms);
        self.initial_delay_until_ms = (from_empty && self.settings.initial_rebalance_delay_ms > 0)
            .then(|| (now_ms + self.settings.initial_rebalance_delay_ms).min(now_ms + rebalance_ms));
        replies
    }

    /// Completes the join if every member has rejoined and no handed-out id
    /// is pending (and any initial delay has passed), or if the join
    /// deadline has passed.
    fn try_complete_join(&mut self, now_ms: u64) -> Vec<Reply> {
        if self.state != GroupState::PreparingRebalance {
            return Vec::new();
        }
        let deadline_passed = self.join_deadline_ms.is_some_and(|d| now_ms >= d);
        let delayed = self.initial_delay_until_ms.is_some_and(|d| now_ms < d);
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some()) && self.pending.is_empty();
        if deadline_passed || (all_joined && !delayed) {
            self.complete_join(now_ms)
        } else {
            Vec::new()
        }
    }

    /// Opens the next generation with the members that rejoined.
    fn complete_join(&mut self, now_ms: u64) -> Vec<Reply> {
        let absent: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.awaiting_join.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in absent {
            self.members.remove(&id);
        }
        self.join_deadline_ms = None;
        self.initial_delay_until_ms = None;
        self.generation = Generation(self.generation.0.wrapping_add(1).max(1));
        if self.members.is_empty() {
            self.become_empty();
            return Vec::new();
        }
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self
                .members
                .iter()
                .min_by_key(|(_, m)| m.join_order)
                .map(|(id, _)| id.clone());
        }
        self.protocol_type = self.members.values().next().map(|m| m.protocol_type.clone());
        self.protocol_name = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        let rebalance_ms = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.sync_deadline_ms = Some(now_ms + rebalance_ms);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        let mut replies = Vec::with_capacity(ids.len());
        for id in ids {
            let response = self.join_response(&id);
            let m = self.members.get_mut(&id).expect("listed above");
            m.is_new = false;
            m.pending_sync = true;
            m.last_heartbeat_ms = now_ms;
            if let Some(to) = m.awaiting_join.take() {
                replies.push(Reply::Join(to, response));
            }
        }
        replies
    }

    fn become_empty(&mut self) {
        self.state = GroupState::Empty;
        self.leader = None;
        self.protocol_name = None;
        self.protocol_type = None;
        self.join_deadline_ms = None;
        self.initial_delay_until_ms = None;
        self.sync_deadline_ms = None;
    }

    /// The protocol every member supports that most members list first
    /// among those (ties: the earlier in the leader's preference).
    fn select_protocol(&self) -> Option<String> {
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l))?;
        let candidates: Vec<&str> = leader
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            let vote = m
                .protocols
                .iter()
                .find_map(|(name, _)| candidates.iter().position(|c| c == name));
            if let Some(i) = vote {
                votes[i] += 1;
            }
        }
        let best = votes
            .iter()
            .enumerate()
            .max_by_key(|&(i, v)| (*v, std::cmp::Reverse(i)))?
            .0;
        Some(candidates[best].to_owned())
    }

    /// The current generation's JoinGroup response for `member_id`.
    fn join_response(&self, member_id: &str) -> JoinResponse {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .iter()
                .map(|(id, m)| JoinedMember {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error_code: 0,
            generation_id: self.generation.0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            member_id: member_id.to_owned(),
            members,
        }
    }

    /// SyncGroup. Followers are parked until the leader's assignment comes.
    pub fn sync(&mut self, now_ms: u64, to: ReplyTo, req: SyncRequest) -> Vec<Reply> {
        if let Err(e) = self.check_member(&req.member_id, req.generation_id) {
            return vec![Reply::Sync(to, SyncResponse::error(e))];
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref());
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != self.protocol_name.as_ref());
        if type_mismatch || name_mismatch {
            return vec![Reply::Sync(
                to,
                SyncResponse::error(ResponseError::InconsistentGroupProtocol),
            )];
        }
        let member = self.members.get_mut(&req.member_id).expect("checked above");
        member.last_heartbeat_ms = now_ms;
        match self.state {
            GroupState::Empty => vec![Reply::Sync(
                to,
                SyncResponse::error(ResponseError::UnknownMemberId),
            )],
            GroupState::PreparingRebalance => {
                vec![Reply::Sync(
                    to,
                    SyncResponse::error(ResponseError::RebalanceInProgress),
                )]
            }
            GroupState::Stable => vec![Reply::Sync(to, self.sync_response(&req.member_id))],
            GroupState::CompletingRebalance => {
                member.pending_sync = false;
                if let Some(old) = member.awaiting_sync.replace(to) {
                    // A resent SyncGroup replaces the parked one.
                    let mut replies = vec![Reply::Sync(
                        old,
                        SyncResponse::error(ResponseError::RebalanceInProgress),
                    )];
                    replies.extend(self.complete_sync_if_leader(now_ms, &req));
                    return replies;
                }
                self.complete_sync_if_leader(now_ms, &req)
            }
        }
    }

    /// The leader's SyncGroup: store the assignments, answer every parked
    /// follower, and restart their sessions (as Kafka does when it
    /// propagates an assignment).
    fn complete_sync_if_leader(&mut self, now_ms: u64, req: &SyncRequest) -> Vec<Reply> {
        if self.leader.as_deref() != Some(req.member_id.as_str()) {
            return Vec::new();
        }
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
        for (id, assignment) in &req.assignments {
            if let Some(m) = self.members.get_mut(id) {
                m.assignment = assignment.clone();
            }
        }
        self.state = GroupState::Stable;
        self.sync_deadline_ms = None;
        let parked: Vec<(String, ReplyTo)> = self
            .members
            .iter_mut()
            .filter_map(|(id, m)| {
                let to = m.awaiting_sync.take()?;
                m.last_heartbeat_ms = now_ms;
                Some((id.clone(), to))
            })
            .collect();
        parked
            .into_iter()
            .map(|(id, to)| Reply::Sync(to, self.sync_response(&id)))
            .collect()
    }

    fn sync_response(&self, member_id: &str) -> SyncResponse {
        SyncResponse {
            error_code: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// A member of the current generation, or why not.
    fn check_member(&self, member_id: &str, generation_id: i32) -> Result<(), ResponseError> {
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation_id != self.generation.0 {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Heartbeat: keeps the member's session alive and tells it whether a
    /// rebalance is under way. Answered at once (a Kafka error code).
    pub fn heartbeat(&mut self, now_ms: u64, member_id: &str, generation_id: i32) -> i16 {
        if self.state == GroupState::Empty {
            return code(ResponseError::UnknownMemberId);
        }
        if let Err(e) = self.check_member(member_id, generation_id) {
            return code(e);
        }
        let member = self.members.get_mut(member_id).expect("checked above");
        member.last_heartbeat_ms = now_ms;
        match self.state {
            GroupState::PreparingRebalance => code(ResponseError::RebalanceInProgress),
            _ => 0,
        }
    }

    /// LeaveGroup: an error code per named member, and the replies the
    /// departures make due (parked requests of the leavers; a join that
    /// now completes).
    pub fn leave(&mut self, now_ms: u64, leaving: &[Leaving]) -> (Vec<i16>, Vec<Reply>) {
        let mut codes = Vec::with_capacity(leaving.len());
        let mut replies = Vec::new();
        for l in leaving {
            let id = if l.member_id.is_empty() {
                l.group_instance_id.as_ref().and_then(|instance| {
                    self.members
                        .iter()
                        .find(|(_, m)| m.group_instance_id.as_ref() == Some(instance))
                        .map(|(id, _)| id.clone())
                })
            } else {
                Some(l.member_id.clone())
            };
            let Some(id) = id else {
                codes.push(code(ResponseError::UnknownMemberId));
                continue;
            };
            if self.pending.remove(&id).is_some() {
                codes.push(0);
                replies.extend(self.try_complete_join(now_ms));
                continue;
            }
            match self.remove_member(now_ms, &id) {
                Some(r) => {
                    codes.push(0);
                    replies.extend(r);
                }
                None => codes.push(code(ResponseError::UnknownMemberId)),
            }
        }
        (codes, replies)
    }

    /// Removes a member (left or expired) and moves the group on.
    fn remove_member(&mut self, now_ms: u64, member_id: &str) -> Option<Vec<Reply>> {
        let member = self.members.remove(member_id)?;
        let mut replies = Vec::new();
        if let Some(to) = member.awaiting_join {
            replies.push(Reply::Join(
                to,
                JoinResponse::error(ResponseError::UnknownMemberId, member_id),
            ));
        }
        if let Some(to) = member.awaiting_sync {
            replies.push(Reply::Sync(
                to,
                SyncResponse::error(ResponseError::UnknownMemberId),
            ));
        }
        if self.leader.as_deref() == Some(member_id) {
            // Prefer a member that has already rejoined, then the oldest.
            self.leader = self
                .members
                .iter()
                .min_by_key(|(_, m)| (m.awaiting_join.is_none(), m.join_order))
                .map(|(id, _)| id.clone());
        }
        match self.state {
            GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() && self.pending.is_empty() {
                    self.generation = Generation(self.generation.0.wrapping_add(1).max(1));
                    self.become_empty();
                } else {
                    replies.extend(self.prepare_rebalance(now_ms));
                    replies.extend(self.try_complete_join(now_ms));
                }
            }
            GroupState::PreparingRebalance => replies.extend(self.try_complete_join(now_ms)),
        }
        Some(replies)
    }

    /// Runs the timers due at `now_ms`: pending member ids lapse, silent
    /// members are expelled, a join or sync that waited too long completes.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Reply> {
        let mut replies = Vec::new();
        let lapsed: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, lapse)| now_ms >= **lapse)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            self.pending.remove(&id);
        }
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.expiry_ms().is_some_and(|e| now_ms >= e))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            replies.extend(self.remove_member(now_ms, &id).unwrap_or_default());
        }
        replies.extend(self.try_complete_join(now_ms));
        if self.state == GroupState::CompletingRebalance && self.sync_deadline_ms.is_some_and(|d| now_ms >= d)
        {
            replies.extend(self.expire_pending_syncs(now_ms));
        }
        replies
    }

    /// The leader never sent its assignment: members that never synced are
    /// removed and the rest rebalance again.
    fn expire_pending_syncs(&mut self, now_ms: u64) -> Vec<Reply> {
        self.sync_deadline_ms = None;
        let unsynced: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.pending_sync)
            .map(|(id, _)| id.clone())
            .collect();
        let mut replies = Vec::new();
        for id in unsynced {
            replies.extend(self.remove_member(now_ms, &id).unwrap_or_default());
        }
        if self.state == GroupState::CompletingRebalance {
            replies.extend(self.prepare_rebalance(now_ms));
        }
        replies
    }

    /// The earliest time [`KafkaGroup::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let members = self.members.values().filter_map(Member::expiry_ms);
        let pending = self.pending.values().copied();
        let join = match self.state {
            GroupState::PreparingRebalance => match (self.join_deadline_ms, self.initial_delay_until_ms) {
                (Some(j), Some(d)) => Some(j.min(d)),
                (j, d) => j.or(d),
            },
            _ => None,
        };
        members
            .chain(pending)
            .chain(join)
            .chain(self.sync_deadline_ms)
            .min()
    }

    /// Validates an OffsetCommit: fencing by member and generation, then
    /// each partition's metadata size and offset. Changes nothing; the
    /// caller persists `accepted` and answers once they are durable.
    pub fn check_commit(&self, now_ms: u64, req: &CommitRequest) -> CommitCheck {
        let group_error = self.commit_fence(req);
        let mut results = Vec::with_capacity(req.offsets.len());
        let mut accepted = Vec::new();
        for (tp, offset, leader_epoch, metadata) in &req.offsets {
            let error = group_error.or_else(|| {
                if metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > self.settings.offset_metadata_bytes_max)
                {
                    return Some(ResponseError::OffsetMetadataTooLarge);
                }
                // A position is a record's offset: a negative one can name
                // no record (Kafka's clients never commit one).
                (*offset < 0).then_some(ResponseError::OffsetOutOfRange)
            });
            match error {
                Some(e) => results.push((tp.clone(), code(e))),
                None => {
                    results.push((tp.clone(), 0));
                    let committed = CommittedOffset {
                        offset: *offset,
                        leader_epoch: *leader_epoch,
                        metadata: metadata.clone(),
                        commit_time_ms: now_ms,
                    };
                    accepted.push((tp.clone(), committed));
                }
            }
        }
        CommitCheck { results, accepted }
    }

    /// The group-level reason to refuse a commit, if any.
    fn commit_fence(&self, req: &CommitRequest) -> Option<ResponseError> {
        if req.generation_id < 0 && req.member_id.is_empty() {
            // A standalone consumer or an admin tool: only while no group
            // membership is active.
            return (self.state != GroupState::Empty).then_some(ResponseError::IllegalGeneration);
        }
        if let Err(e) = self.check_member(&req.member_id, req.generation_id) {
            return Some(e);
        }
        match self.state {
            GroupState::CompletingRebalance => Some(ResponseError::RebalanceInProgress),
            _ => None,
        }
    }

    /// What DescribeGroups reports.
    pub fn describe(&self) -> GroupDescription {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = self
            .members
            .iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata(&protocol),
                assignment: m.assignment.clone(),
                last_heartbeat_ms: m.last_heartbeat_ms,
            })
            .collect();
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol,
            members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION_MS: i32 = 10_000;
    const REBALANCE_MS: i32 = 30_000;
    const REBALANCE_IN_PROGRESS: i16 = 27;
    const ILLEGAL_GENERATION: i16 = 22;
    const UNKNOWN_MEMBER_ID: i16 = 25;
    const MEMBER_ID_REQUIRED: i16 = 79;
    const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;

    fn settings(delay_ms: u64) -> KafkaGroupSettings {
        KafkaGroupSettings {
            initial_rebalance_delay_ms: delay_ms,
            ..KafkaGroupSettings::default()
        }
    }

    fn protocols(names: &[&str]) -> Vec<(String, Bytes)> {
        names
            .iter()
            .map(|n| (n.to_string(), Bytes::from(format!("meta-{n}"))))
            .collect()
    }

    fn join_req(member_id: &str, client: &str, names: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: client.to_string(),
            client_host: "/127.0.0.1".to_string(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".to_string(),
            protocols: protocols(names),
            require_known_member_id: true,
        }
    }

    fn join_of(replies: &[Reply], to: u64) -> JoinResponse {
        replies
            .iter()
            .find_map(|r| match r {
                Reply::Join(t, j) if t.0 == to => Some(j.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no join reply to {to} in {replies:?}"))
    }

    fn sync_of(replies: &[Reply], to: u64) -> SyncResponse {
        replies
            .iter()
            .find_map(|r| match r {
                Reply::Sync(t, s) if t.0 == to => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no sync reply to {to} in {replies:?}"))
    }

    fn sync_req(member_id: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncRequest {
        SyncRequest {
            member_id: member_id.to_string(),
            generation_id: generation,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        }
    }

    /// A member id the group hands out with MEMBER_ID_REQUIRED.
    fn new_member_id(g: &mut KafkaGroup, now: u64, to: u64, client: &str) -> String {
        let r = g.join(now, ReplyTo(to), join_req("", client, &["range"]));
        let j = join_of(&r, to);
        assert_eq!(j.error_code, MEMBER_ID_REQUIRED);
        assert!(j.member_id.starts_with(client));
        j.member_id
    }

    fn commit(member: &str, generation: i32) -> CommitRequest {
        CommitRequest {
            member_id: member.to_string(),
            generation_id: generation,
            offsets: vec![(
                TopicPartition {
                    topic: "orders".into(),
                    partition: 0,
                },
                42,
                -1,
                Some("m".into()),
            )],
        }
    }

    /// Two members join within the initial delay and form one generation,
    /// the leader's assignment reaches both, one leaves and the other
    /// rebalances alone, the leaver rejoins with a new id, and the stale
    /// generation's commit is refused while the current one's lands.
    #[test]
    fn two_members_assign_leave_rejoin() {
        let mut g = KafkaGroup::new("g", settings(100), 7);
        let a = new_member_id(&mut g, 0, 1, "a");
        assert!(
            g.join(1, ReplyTo(2), join_req(&a, "a", &["range"])).is_empty(),
            "parked"
        );
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        let b = new_member_id(&mut g, 2, 3, "b");
        assert!(g.join(3, ReplyTo(4), join_req(&b, "b", &["range"])).is_empty());
        assert!(g.tick(100).is_empty(), "the delay runs from B's join");
        assert_eq!(g.next_deadline(), Some(103));
        let r = g.tick(103);
        let (ja, jb) = (join_of(&r, 2), join_of(&r, 4));
        assert_eq!((ja.error_code, ja.generation_id, jb.generation_id), (0, 1, 1));
        assert_eq!((ja.leader.as_str(), jb.leader.as_str()), (a.as_str(), a.as_str()));
        assert_eq!(ja.members.len(), 2, "the leader sees every member");
        assert!(jb.members.is_empty(), "followers see none");
        assert_eq!(ja.protocol_name.as_deref(), Some("range"));
        assert_eq!(g.state(), GroupState::CompletingRebalance);

        assert!(
            g.sync(104, ReplyTo(5), sync_req(&b, 1, &[])).is_empty(),
            "follower waits"
        );
        let r = g.sync(105, ReplyTo(6), sync_req(&a, 1, &[(&a, "p0"), (&b, "p1")]));
        assert_eq!(sync_of(&r, 6).assignment, Bytes::from("p0"));
        assert_eq!(sync_of(&r, 5).assignment, Bytes::from("p1"));
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(g.heartbeat(106, &b, 1), 0);

        let (codes, r) = g.leave(
            200,
            &[Leaving {
                member_id: b.clone(),
                group_instance_id: None,
            }],
        );
        assert_eq!((codes, r), (vec![0], vec![]));
        assert_eq!(g.heartbeat(201, &a, 1), REBALANCE_IN_PROGRESS);
        let r = g.join(202, ReplyTo(7), join_req(&a, "a", &["range"]));
        let j = join_of(&r, 7);
        assert_eq!((j.generation_id, j.members.len()), (2, 1));
        let r = g.sync(203, ReplyTo(8), sync_req(&a, 2, &[(&a, "p0,p1")]));
        assert_eq!(sync_of(&r, 8).assignment, Bytes::from("p0,p1"));

        let b2 = new_member_id(&mut g, 300, 9, "b");
        assert_ne!(b2, b, "member ids are never reused");
        assert!(g
            .join(301, ReplyTo(10), join_req(&b2, "b", &["range"]))
            .is_empty());
        assert_eq!(g.heartbeat(302, &a, 2), REBALANCE_IN_PROGRESS);
        assert_eq!(g.heartbeat(302, &b, 2), UNKNOWN_MEMBER_ID, "the old id is gone");
        let r = g.join(303, ReplyTo(11), join_req(&a, "a", &["range"]));
        assert_eq!(join_of(&r, 11).generation_id, 3);
        assert_eq!(join_of(&r, 10).generation_id, 3);

        // Generation 2 is stale; generation 3 before the sync is mid-rebalance.
        let stale = g.check_commit(304, &commit(&a, 2));
        assert_eq!(stale.results[0].1, ILLEGAL_GENERATION);
        assert!(stale.accepted.is_empty());
        assert_eq!(
            g.check_commit(304, &commit(&a, 3)).results[0].1,
            REBALANCE_IN_PROGRESS
        );
        g.sync(305, ReplyTo(12), sync_req(&a, 3, &[(&a, "p0"), (&b2, "p1")]));
        let ok = g.check_commit(306, &commit(&b2, 3));
        assert_eq!(ok.results[0].1, 0);
        let accepted: Vec<(i64, u64)> = ok
            .accepted
            .iter()
            .map(|(_, c)| (c.offset, c.commit_time_ms))
            .collect();
        assert_eq!(accepted, vec![(42, 306)]);
    }

    /// Without an initial delay, and with pre-v4 joins (no
    /// MEMBER_ID_REQUIRED), a lone member forms a generation at once and
    /// gets its id in the response.
    #[test]
    fn old_clients_join_directly() {
        let mut g = KafkaGroup::new("g", settings(0), 1);
        let mut req = join_req("", "c", &["range"]);
        req.require_known_member_id = false;
        let r = g.join(0, ReplyTo(1), req);
        let j = join_of(&r, 1);
        assert_eq!((j.error_code, j.generation_id), (0, 1));
        assert_eq!(j.leader, j.member_id);
    }

    /// A member that stops heartbeating is expelled at its session timeout;
    /// the survivor is told to rejoin and forms the next generation.
    #[test]
    fn session_expiry() {
        let mut g = KafkaGroup::new("g", settings(0), 1);
        let (a, b) = stable_pair(&mut g);
        assert_eq!(g.heartbeat(5_000, &a, 1), 0);
        assert_eq!(
            g.next_deadline(),
            Some(10 + SESSION_MS as u64),
            "b's session, from its sync"
        );
        assert!(g.tick(10_009).is_empty());
        g.tick(10_010);
        assert_eq!(g.member_ids(), vec![a.clone()]);
        assert_eq!(g.heartbeat(10_011, &a, 1), REBALANCE_IN_PROGRESS);
        assert_eq!(g.heartbeat(10_011, &b, 1), UNKNOWN_MEMBER_ID);
        let r = g.join(10_012, ReplyTo(50), join_req(&a, "a", &["range"]));
        assert_eq!(join_of(&r, 50).generation_id, 2);
    }

    /// Two members stable at generation 1 (a leads), synced by t = 10.
    fn stable_pair(g: &mut KafkaGroup) -> (String, String) {
        let a = new_member_id(g, 0, 100, "a");
        let b = new_member_id(g, 0, 101, "b");
        g.join(1, ReplyTo(102), join_req(&a, "a", &["range"]));
        let r = g.join(2, ReplyTo(103), join_req(&b, "b", &["range"]));
        assert_eq!(join_of(&r, 103).generation_id, 1);
        g.sync(3, ReplyTo(104), sync_req(&b, 1, &[]));
        g.sync(10, ReplyTo(105), sync_req(&a, 1, &[(&a, "x"), (&b, "y")]));
        assert_eq!(g.state(), GroupState::Stable);
        (a, b)
    }

    /// A member that does not rejoin within the rebalance timeout is removed
    /// and the join completes without it; leadership moves to a rejoined
    /// member.
    #[test]
    fn rebalance_timeout_drops_laggards() {
        let mut g = KafkaGroup::new("g", settings(0), 1);
        let (a, b) = stable_pair(&mut g);
        // b rejoins with new metadata: a rebalance a never answers (but a
        // keeps heartbeating, so its session does not expire first).
        assert!(g
            .join(20, ReplyTo(1), join_req(&b, "b", &["range", "sticky"]))
            .is_empty());
        let deadline = 20 + REBALANCE_MS as u64;
        for t in (1_000..deadline).step_by(5_000) {
            assert_eq!(g.heartbeat(t, &a, 1), REBALANCE_IN_PROGRESS);
        }
        let r = g.tick(deadline);
        let j = join_of(&r, 1);
        assert_eq!((j.generation_id, j.leader.as_str()), (2, b.as_str()));
        assert_eq!(g.member_ids(), vec![b]);
    }

    /// The leader never sends SyncGroup: at the rebalance timeout it is
    /// removed, the parked follower is told to rejoin, the group rebalances.
    #[test]
    fn leader_sync_timeout() {
        let mut g = KafkaGroup::new("g", settings(0), 1);
        let a = new_member_id(&mut g, 0, 1, "a");
        let b = new_member_id(&mut g, 0, 2, "b");
        g.join(1, ReplyTo(3), join_req(&a, "a", &["range"]));
        g.join(2, ReplyTo(4), join_req(&b, "b", &["range"]));
        assert!(g.sync(3, ReplyTo(5), sync_req(&b, 1, &[])).is_empty());
        let r = g.tick(2 + REBALANCE_MS as u64);
        assert_eq!(sync_of(&r, 5).error_code, REBALANCE_IN_PROGRESS);
        assert_eq!(g.member_ids(), vec![b]);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
    }

    /// The chosen protocol is one every member supports, by most first
    /// preferences; a member with nothing in common, or another protocol
    /// type, is refused.
    #[test]
    fn protocol_selection_and_consistency() {
        let mut g = KafkaGroup::new("g", settings(0), 1);
        let a = new_member_id(&mut g, 0, 1, "a");
        let b = new_member_id(&mut g, 0, 2, "b");
        g.join(1, ReplyTo(3), join_req(&a, "a", &["range", "roundrobin"]));
        let r = g.join(2, ReplyTo(4), join_req(&b, "b", &["roundrobin"]));
        assert_eq!(join_of(&r, 3).protocol_name.as_deref(), Some("roundrobin"));
        assert_eq!(join_of(&r, 3).members[0].metadata, Bytes::from("meta-roundrobin"));
        let r = g.join(5, ReplyTo(5), join_req("", "c", &["sticky"]));
        assert_eq!(join_of(&r, 5).error_code, INCONSISTENT_GROUP_PROTOCOL);
        let mut other_type = join_req("", "c", &["roundrobin"]);
        other_type.protocol_type = "connect".into();
        let r = g.join(5, ReplyTo(6), other_type);
        assert_eq!(join_of(&r, 6).error_code, INCONSISTENT_GROUP_PROTOCOL);
    }

    /// A resent JoinGroup replaces the parked one, which is answered
    /// REBALANCE_IN_PROGRESS, so no request is left without an answer.
    #[test]
    fn resent_join_answers_the_old_one() {
        let mut g = KafkaGroup::new("g", settings(1_000), 1);
        let a = new_member_id(&mut g, 0, 1, "a");
        assert!(g.join(1, ReplyTo(2), join_req(&a, "a", &["range"])).is_empty());
        let r = g.join(2, ReplyTo(3), join_req(&a, "a", &["range"]));
        assert_eq!(join_of(&r, 2).error_code, REBALANCE_IN_PROGRESS);
        let r = g.tick(1_001);
        assert_eq!(join_of(&r, 3).generation_id, 1);
    }

    /// Standalone commits (generation −1, no member) land only while the
    /// group has no members; oversized metadata is refused per partition.
    #[test]
    fn standalone_commits_and_metadata_cap() {
        let mut g = KafkaGroup::new("g", settings(0), 1);
        let standalone = g.check_commit(0, &commit("", -1));
        assert_eq!(standalone.results[0].1, 0);
        let mut negative = commit("", -1);
        negative.offsets[0].1 = -1;
        let refused = g.check_commit(0, &negative);
        assert_eq!(
            (refused.results[0].1, refused.accepted.len()),
            (1, 0),
            "OFFSET_OUT_OF_RANGE"
        );
        let mut big = commit("", -1);
        big.offsets[0].3 = Some("x".repeat(4_097));
        assert_eq!(g.check_commit(0, &big).results[0].1, 12);
        stable_pair(&mut g);
        assert_eq!(
            g.check_commit(20, &commit("", -1)).results[0].1,
            ILLEGAL_GENERATION
        );
        assert_eq!(
            g.check_commit(20, &commit("nobody", 1)).results[0].1,
            UNKNOWN_MEMBER_ID
        );
    }

    /// Member ids handed out with MEMBER_ID_REQUIRED hold the join open
    /// until used or lapsed (after the session timeout), and count against
    /// the group's size.
    #[test]
    fn pending_member_ids() {
        let mut g = KafkaGroup::new(
            "g",
            KafkaGroupSettings {
                members_max: 2,
                ..settings(0)
            },
            1,
        );
        let a = new_member_id(&mut g, 0, 1, "a");
        let _b = new_member_id(&mut g, 0, 2, "b");
        let r = g.join(0, ReplyTo(3), join_req("", "c", &["range"]));
        assert_eq!(join_of(&r, 3).error_code, 81, "GROUP_MAX_SIZE_REACHED");
        assert!(
            g.join(1, ReplyTo(4), join_req(&a, "a", &["range"])).is_empty(),
            "b's id is pending"
        );
        let r = g.tick(SESSION_MS as u64);
        assert_eq!(
            join_of(&r, 4).generation_id,
            1,
            "b's id lapsed; a forms the group"
        );
    }

    /// Leaving by group instance id finds the member; an unknown one is
    /// UNKNOWN_MEMBER_ID; the last member leaving empties the group.
    #[test]
    fn leave_by_instance_and_empty() {
        let mut g = KafkaGroup::new("g", settings(0), 1);
        let mut req = join_req("", "a", &["range"]);
        req.require_known_member_id = false;
        req.group_instance_id = Some("inst-1".into());
        g.join(0, ReplyTo(1), req);
        let leaving = [
            Leaving {
                member_id: String::new(),
                group_instance_id: Some("inst-1".into()),
            },
            Leaving {
                member_id: "ghost".into(),
                group_instance_id: None,
            },
        ];
        let (codes, _) = g.leave(1, &leaving);
        assert_eq!(codes, vec![0, UNKNOWN_MEMBER_ID]);
        assert_eq!(g.state(), GroupState::Empty);
        assert!(g.member_ids().is_empty());
        assert_eq!(g.describe().state.name(), "Empty");
    }
}
