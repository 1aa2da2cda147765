//! The calls one shard sends another over the mesh, and their replies.
//!
//! Each call names the service it is for; the receiving shard's inbox
//! ([`super::inbox`]) routes it there. Replies carry the service's own
//! `Result`, so an error keeps its class across cores.

use bytes::Bytes;
use shoal_protocol::messages::delivery::*;
use shoal_protocol::messages::dlq::*;
use shoal_protocol::messages::group::*;
use shoal_protocol::messages::stats::*;
use shoal_protocol::messages::topic::TopicConfig;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::delivery::{Polled, TopicLag};
use crate::error::BrokerResult;
use crate::ids::{Offset, PartitionId};
use crate::mesh::MeshCall;
use crate::metadata::TopicMeta;
use crate::metrics::ShardSnapshot;
use crate::partition::{Appended, ListedOffset, OffsetQuery, PartitionFigures, PartitionView, ReadBatches};

/// The result of submitted work ([`super::submit`]), type-erased for the
/// trip back.
pub type Submitted = Box<dyn Any + Send>;

/// The future submitted work returns on its target shard.
pub type SubmittedFuture = Pin<Box<dyn Future<Output = Submitted>>>;

/// Work to run on another shard, given that shard (as `Rc<dyn Any>`, so
/// that this file, which the shard's state imports, need not import it;
/// [`super::submit`] wraps and unwraps it).
pub struct SubmittedWork(pub Box<dyn FnOnce(Rc<dyn Any>) -> SubmittedFuture + Send>);

impl std::fmt::Debug for SubmittedWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubmittedWork")
    }
}

/// A request to another shard.
#[derive(Debug)]
pub enum ShardCall {
    /// Append batches to a partition this shard owns.
    Produce {
        topic: String,
        partition: PartitionId,
        batches: Vec<Bytes>,
    },
    /// Read a partition this shard owns (long-poll up to `max_wait_ms`).
    Fetch {
        topic: String,
        partition: PartitionId,
        offset: Offset,
        max_bytes: u32,
        max_wait_ms: u32,
    },
    ListOffsets {
        topic: String,
        partition: PartitionId,
        query: OffsetQuery,
    },
    /// To shard 0: create a topic (validate, store the catalogue, broadcast).
    CreateTopic { name: String, config: TopicConfig },
    /// To shard 0: delete a topic.
    DeleteTopic { name: String },
    /// To shard 0 of a cluster node: propose a command to the metadata log
    /// and answer once this node applied it.
    ProposeMeta(crate::metadata::cluster_log::MetaCommand),
    /// From shard 0 to every shard: the catalogue gained this topic.
    ApplyCreate(TopicMeta),
    /// From shard 0 to every shard: the catalogue lost this topic.
    ApplyDelete(String),
    /// Partition figures for describe and metadata.
    PartitionFigures { topic: String, partition: PartitionId },
    /// A partition's figures and the append time at an offset (lag).
    PartitionView {
        topic: String,
        partition: PartitionId,
        offset: Offset,
    },
    /// Every counter of the shard, for `/metrics`.
    MetricsSnapshot,
    /// Whether every partition this shard owns is open (`/readyz`).
    Ready,
    /// A consumer-group request for the group's coordinator, or a
    /// per-shard part of a topic-wide one.
    Group(Box<GroupCall>),
    /// Stop serving and flush (shutdown).
    Shutdown,
    /// Run a front end's work here ([`super::submit`]): the Kafka front
    /// end's group coordination, on the group's coordinating shard.
    Submit(SubmittedWork),
}

/// A delivery request crossing to another shard.
#[derive(Debug)]
pub enum GroupCall {
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
}

/// The answer to a [`GroupCall`].
#[derive(Debug)]
pub enum GroupReply {
    Join(BrokerResult<JoinGroupResponse>),
    Heartbeat(BrokerResult<HeartbeatResponse>),
    Leave(BrokerResult<LeaveGroupResponse>),
    Poll(BrokerResult<Polled>),
    Ack(BrokerResult<AckResponse>),
    Nack(BrokerResult<NackResponse>),
    Commit(BrokerResult<CommitOffsetResponse>),
    Seek(BrokerResult<SeekResponse>),
    GroupStats(BrokerResult<GroupStatsResponse>),
    Redrive(BrokerResult<QuarantineRedriveResponse>),
    Groups(Vec<GroupSummary>),
    Browse(Vec<QuarantineEntry>),
    Counts(Vec<ReasonCount>),
    Purge(BrokerResult<u64>),
    TopicLag(TopicLag),
}

/// Why a shard is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("recovering partitions")]
    Recovering,
    #[error("draining")]
    Draining,
    /// It did not answer over the mesh (stopping or stopped).
    #[error("not answering: {0}")]
    Silent(String),
}

/// The answer to a [`ShardCall`].
#[derive(Debug)]
pub enum ShardReply {
    Produce(BrokerResult<Appended>),
    Fetch(BrokerResult<ReadBatches>),
    ListOffsets(BrokerResult<ListedOffset>),
    Admin(BrokerResult<()>),
    Figures(BrokerResult<PartitionFigures>),
    View(BrokerResult<PartitionView>),
    Group(Box<GroupReply>),
    Metrics(Box<ShardSnapshot>),
    Ready(Result<(), NotReady>),
    /// The result of [`ShardCall::Submit`], type-erased.
    Submitted(Submitted),
    Done,
}

impl MeshCall for ShardCall {
    const KINDS: &'static [&'static str] = &[
        "produce",
        "fetch",
        "list_offsets",
        "admin",
        "stats",
        "delivery",
        "submitted",
    ];

    /// The hot path (produce, fetch) is counted apart from admin, stats and
    /// group traffic.
    fn kind(&self) -> usize {
        match self {
            ShardCall::Produce { .. } => 0,
            ShardCall::Fetch { .. } => 1,
            ShardCall::ListOffsets { .. } => 2,
            ShardCall::CreateTopic { .. }
            | ShardCall::DeleteTopic { .. }
            | ShardCall::ProposeMeta(_)
            | ShardCall::ApplyCreate(_)
            | ShardCall::ApplyDelete(_)
            | ShardCall::Shutdown => 3,
            ShardCall::PartitionFigures { .. }
            | ShardCall::PartitionView { .. }
            | ShardCall::MetricsSnapshot
            | ShardCall::Ready => 4,
            ShardCall::Group(_) => 5,
            ShardCall::Submit(_) => 6,
        }
    }
}
