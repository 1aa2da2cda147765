//! Consumer groups, acknowledgements, bounded retries and the quarantine.
//!
//! | module                | role                                                     |
//! |-----------------------|----------------------------------------------------------|
//! | [`assignment`]        | sticky assignor (sans-IO, quickcheck-tested)             |
//! | [`member`]            | membership, generations, drain-before-revoke (sans-IO)   |
//! | [`delivery_state`]    | per group partition: window, leases, ack floor (sans-IO) |
//! | [`key_lanes`]         | per-key ordered retry (sans-IO)                          |
//! | [`retry_policy`]      | backoff with jitter, retry budget, breaker (sans-IO)     |
//! | [`quarantine`]        | one shard's quarantine entries (sans-IO)                 |
//! | [`state_log`]         | the durable compacted internal log, replayed on start    |
//! | [`group_coordinator`] | join, heartbeat, leave, commit, seek, the expiry timer   |
//! | [`poll`]              | poll: choosing, leasing and reading records              |
//! | [`outcome`]           | ack, nack, failures, quarantining                        |
//! | [`redrive`]           | quarantine browse, counts, redrive, purge                |
//! | [`lag`]               | group and topic stats, lag in records and time           |
//! | [`settings`]          | the `[delivery]` config section                          |
//!
//! Ownership: a group is coordinated by shard `shard_for_group(group)`. That
//! shard owns the group's membership, assignment and delivery state, its
//! retry schedule, breaker and budget, and the quarantine entries of its
//! failures, and writes them to its own internal log. A request for a group
//! that lands on another shard is forwarded over the mesh (counted in
//! `forwarded`). Records are read from the partitions' owners with the
//! ordinary fetch path, as shared batch bytes that are never re-encoded.
//!
//! The public `async fn`s here are the service API shared by the native
//! protocol handlers and the HTTP front door: each takes a protocol request
//! and returns its response (errors inside it, never a panic).
//!
//! Refinements of the first design, and why:
//! - The lease is the record-level fence. A live member one generation
//!   behind may still ack or nack what is leased to it (it must, to drain a
//!   revoked partition); it cannot poll until it heartbeats, and explicit
//!   commits need the current generation. Expelled members are unknown ids.
//! - The retry schedule is the `Waiting { ready_at }` records of each
//!   bounded window, scanned on poll and on the 25 ms timer, rather than a
//!   separate timer wheel: the window is capped at 4096 records per group
//!   partition, so the scan is bounded and there is one source of truth.
//! - Quarantine entries live on the failing group's coordinator (which
//!   decides both quarantine and redrive); topic-wide reads fan out to all
//!   shards and merge by entry id.
//! - Acked retries are refunded to the retry budget, so the budget limits
//!   retry load only while retries keep failing.
//! - Acks above the ack floor and deliveries themselves are not written to
//!   the state log (only failures, the floor, quarantine and redrive are),
//!   to keep one fsync per ack request: after a broker crash those records
//!   are delivered again (at-least-once), with the count of their stored
//!   failures plus one.

pub mod assignment;
pub mod delivery_state;
pub mod group_coordinator;
pub mod key_lanes;
pub mod lag;
pub mod member;
pub mod outcome;
pub mod poll;
pub mod quarantine;
pub mod redrive;
pub mod retry_policy;
pub mod settings;
pub mod state_log;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::delivery::*;
use shoal_protocol::messages::dlq::*;
use shoal_protocol::messages::group::*;
use shoal_protocol::messages::stats::*;
use shoal_protocol::partitioner::shard_for_group;

use crate::mesh::{ShardCall, ShardReply};
use crate::runtime::now_ms;
use crate::shard::Shard;
use member::Group;
use quarantine::QuarantineStore;
use state_log::{StateLog, StateRecord};

/// How often the coordinator checks sessions and leases.
pub const TICK_MS: u64 = 25;

/// One shard's delivery state: the groups it coordinates and their quarantine.
pub struct Delivery {
    pub groups: RefCell<BTreeMap<String, Group>>,
    pub quarantine: RefCell<QuarantineStore>,
    log: RefCell<Option<Rc<StateLog>>>,
    /// Set from the config on start.
    pub settings: RefCell<settings::DeliveryConfig>,
    /// Requests forwarded to another shard's coordinator.
    pub forwarded: Cell<u64>,
}

impl Delivery {
    pub fn new(shard: u32) -> Self {
        Delivery {
            groups: RefCell::new(BTreeMap::new()),
            quarantine: RefCell::new(QuarantineStore::new(shard)),
            log: RefCell::new(None),
            settings: RefCell::new(settings::DeliveryConfig::default()),
            forwarded: Cell::new(0),
        }
    }

    /// A new, empty group with this broker's settings.
    pub fn new_group(&self, name: &str) -> Group {
        Group::new(name, &self.settings.borrow())
    }

    /// Writes state changes durably; the caller replies only after `Ok`.
    pub async fn persist(&self, records: Vec<StateRecord>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let log = self.log.borrow().clone();
        match log {
            Some(log) => log.append(records, now_ms()).await.map_err(|e| e.to_string()),
            None => Err("the delivery state log is not open".into()),
        }
    }

    /// Flushes and closes the state log (shutdown).
    pub async fn close(&self) {
        let log = self.log.borrow_mut().take();
        if let Some(log) = log {
            log.close().await;
        }
    }
}

/// Opens this shard's state log, restores its groups and quarantine, and
/// starts the session/lease timer. Runs after the topics are loaded.
pub async fn start(shard: &Rc<Shard>) -> Result<(), String> {
    let dir = shard
        .config
        .server
        .data_dir
        .join("internal")
        .join(format!("shard-{}", shard.id));
    *shard.delivery.settings.borrow_mut() = shard.config.delivery.clone();
    let (log, state) = StateLog::open(&dir).await.map_err(|e| e.to_string())?;
    group_coordinator::restore(shard, state, now_ms());
    *shard.delivery.log.borrow_mut() = Some(Rc::new(log));
    let timer_shard = shard.clone();
    glommio::spawn_local(async move {
        while !timer_shard.shutting_down.get() {
            crate::runtime::sleep(Duration::from_millis(TICK_MS)).await;
            group_coordinator::tick(&timer_shard).await;
        }
    })
    .detach();
    Ok(())
}

/// A delivery request crossing to another shard.
#[derive(Debug)]
pub enum DeliveryCall {
    Join(JoinGroupRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveGroupRequest),
    Poll(PollRequest),
    Ack(AckRequest),
    Nack(NackRequest),
    Commit(CommitOffsetRequest),
    Seek(SeekRequest),
    GroupStats(GroupStatsRequest),
    Redrive(QuarantineRedriveRequest),
    /// This shard's groups only.
    LocalGroups,
    LocalBrowse(QuarantineBrowseRequest),
    LocalCounts(QuarantineCountsRequest),
    LocalPurge(QuarantinePurgeRequest),
    /// This shard's groups' lag on a topic and quarantine depth per partition.
    LocalTopicLag(String),
    /// To a partition's owner: its figures and the append time at an offset.
    PartitionView {
        topic: String,
        partition: u32,
        offset: u64,
    },
}

/// The answer to a [`DeliveryCall`].
#[derive(Debug)]
pub enum DeliveryReply {
    Join(JoinGroupResponse),
    Heartbeat(HeartbeatResponse),
    Leave(LeaveGroupResponse),
    Poll(PollResponse, Vec<Bytes>),
    Ack(AckResponse),
    Nack(NackResponse),
    Commit(CommitOffsetResponse),
    Seek(SeekResponse),
    GroupStats(GroupStatsResponse),
    Redrive(QuarantineRedriveResponse),
    Groups(Vec<GroupSummary>),
    Browse(QuarantineBrowseResponse),
    Counts(QuarantineCountsResponse),
    Purge(QuarantinePurgeResponse),
    TopicLag(Vec<GroupLag>, Vec<(u32, u64)>),
    PartitionView(lag::PartitionView),
}

/// Serves a call forwarded from another shard.
pub async fn handle_call(shard: &Rc<Shard>, call: DeliveryCall) -> DeliveryReply {
    use DeliveryCall as C;
    use DeliveryReply as R;
    match call {
        C::Join(r) => R::Join(group_coordinator::join(shard, r).await),
        C::Heartbeat(r) => R::Heartbeat(group_coordinator::heartbeat(shard, r)),
        C::Leave(r) => R::Leave(group_coordinator::leave(shard, r).await),
        C::Poll(r) => {
            let (resp, batches) = poll::poll(shard, r).await;
            R::Poll(resp, batches)
        }
        C::Ack(r) => R::Ack(outcome::ack(shard, r).await),
        C::Nack(r) => R::Nack(outcome::nack(shard, r).await),
        C::Commit(r) => R::Commit(group_coordinator::commit(shard, r).await),
        C::Seek(r) => R::Seek(group_coordinator::seek(shard, r).await),
        C::GroupStats(r) => R::GroupStats(lag::group_stats(shard, r).await),
        C::Redrive(r) => R::Redrive(redrive::redrive(shard, r).await),
        C::LocalGroups => R::Groups(group_coordinator::local_groups(shard)),
        C::LocalBrowse(r) => R::Browse(redrive::local_browse(shard, &r)),
        C::LocalCounts(r) => R::Counts(redrive::local_counts(shard, &r)),
        C::LocalPurge(r) => R::Purge(redrive::local_purge(shard, &r).await),
        C::LocalTopicLag(topic) => {
            let (groups, depth) = lag::local_topic_lag(shard, &topic).await;
            R::TopicLag(groups, depth)
        }
        C::PartitionView {
            topic,
            partition,
            offset,
        } => R::PartitionView(lag::local_partition_view(shard, &topic, partition, offset).await),
    }
}

/// A response type that can carry a whole-request error.
pub trait Failed {
    fn failed(code: ErrorCode, message: String) -> Self;
}

/// The shard coordinating `group`.
pub fn coordinator(shard: &Shard, group: &str) -> u32 {
    shard_for_group(group, shard.count)
}

/// Sends `call` to shard `to`; a mesh failure becomes `ShuttingDown`/`Internal`.
pub async fn call_on(
    shard: &Rc<Shard>,
    to: u32,
    call: DeliveryCall,
) -> Result<DeliveryReply, (ErrorCode, String)> {
    match shard.on(to, ShardCall::Delivery(Box::new(call))).await {
        Ok(ShardReply::Delivery(reply)) => Ok(*reply),
        Ok(_) => Err((ErrorCode::Internal, "mesh reply mismatch".into())),
        Err(e) => Err((ErrorCode::ShuttingDown, e.to_string())),
    }
}

/// Forwards a group request to its coordinator and unwraps the reply.
macro_rules! forward {
    ($shard:expr, $to:expr, $variant:ident, $req:expr) => {{
        $shard.delivery.forwarded.set($shard.delivery.forwarded.get() + 1);
        match call_on($shard, $to, DeliveryCall::$variant($req)).await {
            Ok(DeliveryReply::$variant(resp)) => resp,
            Ok(_) => Failed::failed(ErrorCode::Internal, "mesh reply mismatch".into()),
            Err((code, message)) => Failed::failed(code, message),
        }
    }};
}

pub async fn join(shard: &Rc<Shard>, req: JoinGroupRequest) -> JoinGroupResponse {
    match coordinator(shard, &req.group) {
        to if to != shard.id => forward!(shard, to, Join, req),
        _ => group_coordinator::join(shard, req).await,
    }
}

pub async fn heartbeat(shard: &Rc<Shard>, req: HeartbeatRequest) -> HeartbeatResponse {
    match coordinator(shard, &req.group) {
        to if to != shard.id => forward!(shard, to, Heartbeat, req),
        _ => group_coordinator::heartbeat(shard, req),
    }
}

pub async fn leave(shard: &Rc<Shard>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    match coordinator(shard, &req.group) {
        to if to != shard.id => forward!(shard, to, Leave, req),
        _ => group_coordinator::leave(shard, req).await,
    }
}

/// Returns the reply and the batches of its payload, in order.
pub async fn poll(shard: &Rc<Shard>, req: PollRequest) -> (PollResponse, Vec<Bytes>) {
    let to = coordinator(shard, &req.group);
    if to == shard.id {
        return poll::poll(shard, req).await;
    }
    shard.delivery.forwarded.set(shard.delivery.forwarded.get() + 1);
    match call_on(shard, to, DeliveryCall::Poll(req)).await {
        Ok(DeliveryReply::Poll(resp, batches)) => (resp, batches),
        Ok(_) => (
            Failed::failed(ErrorCode::Internal, "mesh reply mismatch".into()),
            Vec::new(),
        ),
        Err((code, message)) => (Failed::failed(code, message), Vec::new()),
    }
}

pub async fn ack(shard: &Rc<Shard>, req: AckRequest) -> AckResponse {
    match coordinator(shard, &req.group) {
        to if to != shard.id => forward!(shard, to, Ack, req),
        _ => outcome::ack(shard, req).await,
    }
}

pub async fn nack(shard: &Rc<Shard>, req: NackRequest) -> NackResponse {
    match coordinator(shard, &req.group) {
        to if to != shard.id => forward!(shard, to, Nack, req),
        _ => outcome::nack(shard, req).await,
    }
}

pub async fn commit(shard: &Rc<Shard>, req: CommitOffsetRequest) -> CommitOffsetResponse {
    match coordinator(shard, &req.group) {
        to if to != shard.id => forward!(shard, to, Commit, req),
        _ => group_coordinator::commit(shard, req).await,
    }
}

pub async fn seek(shard: &Rc<Shard>, req: SeekRequest) -> SeekResponse {
    match coordinator(shard, &req.group) {
        to if to != shard.id => forward!(shard, to, Seek, req),
        _ => group_coordinator::seek(shard, req).await,
    }
}

pub async fn group_stats(shard: &Rc<Shard>, req: GroupStatsRequest) -> GroupStatsResponse {
    match coordinator(shard, &req.group) {
        to if to != shard.id => forward!(shard, to, GroupStats, req),
        _ => lag::group_stats(shard, req).await,
    }
}

pub async fn quarantine_redrive(
    shard: &Rc<Shard>,
    req: QuarantineRedriveRequest,
) -> QuarantineRedriveResponse {
    match coordinator(shard, &req.group) {
        to if to != shard.id => forward!(shard, to, Redrive, req),
        _ => redrive::redrive(shard, req).await,
    }
}

/// Every shard's answer to `call()`, this shard's included (`local()`).
pub async fn fan_out<T>(
    shard: &Rc<Shard>,
    call: impl Fn() -> DeliveryCall,
    local: impl AsyncFnOnce() -> T,
    unwrap: impl Fn(DeliveryReply) -> Option<T>,
) -> Result<Vec<T>, (ErrorCode, String)> {
    let mut out = vec![local().await];
    for peer in (0..shard.count).filter(|&s| s != shard.id) {
        let reply = call_on(shard, peer, call()).await?;
        out.push(unwrap(reply).ok_or((ErrorCode::Internal, "mesh reply mismatch".to_string()))?);
    }
    Ok(out)
}

pub async fn list_groups(shard: &Rc<Shard>, _req: ListGroupsRequest) -> ListGroupsResponse {
    let parts = fan_out(
        shard,
        || DeliveryCall::LocalGroups,
        async || group_coordinator::local_groups(shard),
        |r| match r {
            DeliveryReply::Groups(g) => Some(g),
            _ => None,
        },
    )
    .await
    .unwrap_or_default();
    let mut groups: Vec<GroupSummary> = parts.into_iter().flatten().collect();
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    ListGroupsResponse { groups }
}

pub use lag::topic_stats;
pub use redrive::{quarantine_browse, quarantine_counts, quarantine_purge};

macro_rules! failed_with_error_message {
    ($($ty:ty { $($field:ident: $value:expr),* $(,)? }),* $(,)?) => {
        $(impl Failed for $ty {
            fn failed(code: ErrorCode, message: String) -> Self {
                #[allow(clippy::needless_update)]
                Self { error: code.to_wire(), message, $($field: $value),* }
            }
        })*
    };
}

failed_with_error_message! {
    JoinGroupResponse { member_id: String::new(), generation: 0, assignment: Vec::new(), heartbeat_interval_ms: 0 },
    HeartbeatResponse { generation: 0, assignment: Vec::new(), added: Vec::new(), revoked: Vec::new() },
    LeaveGroupResponse {},
    PollResponse { generation: 0, throttle_time_ms: 0, lease_ms: 0, batches: Vec::new() },
    AckResponse { partitions: Vec::new() },
    NackResponse { partitions: Vec::new() },
    CommitOffsetResponse { partitions: Vec::new() },
    SeekResponse { partitions: Vec::new() },
    QuarantineRedriveResponse { matched: 0, redriven: 0, skipped_loop_guard: 0, next_cursor: None },
    QuarantineBrowseResponse { entries: Vec::new(), next_cursor: None },
    QuarantineCountsResponse { total: 0, counts: Vec::new() },
    QuarantinePurgeResponse { purged: 0 },
    TopicStatsResponse { topic: String::new(), partitions: Vec::new(), groups: Vec::new() },
}

impl Failed for GroupStatsResponse {
    fn failed(code: ErrorCode, message: String) -> Self {
        GroupStatsResponse {
            error: code.to_wire(),
            message,
            group: String::new(),
            state: GroupState::Empty,
            generation: 0,
            members: Vec::new(),
            partitions: Vec::new(),
            circuit: CircuitState::Closed,
            retry_budget_permille: 0,
            retry_budget_used_permille: 0,
            deliveries_total: 0,
            acks_total: 0,
            nacks_total: 0,
            retries_total: 0,
            quarantined_total: 0,
        }
    }
}
