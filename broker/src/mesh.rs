//! Cross-shard messaging: Seastar-style `submit_to` over bounded channels.
//!
//! Every shard has one bounded inbox (a flume channel). A call sends an
//! [`Envelope`] holding the request and a one-shot reply channel, and awaits
//! the reply. Nothing is shared between shards but these messages: no locks.
//! Every hop is counted per destination so operators (and the shard-aware
//! client's tests) can see how much work crossed cores.
//!
//! A full inbox is backpressure: the caller waits for room (the inbox depth
//! is [`SHARD_INBOX_MAX`]). A closed inbox means the peer shard stopped; the
//! call fails with [`MeshError::Closed`] and the handler answers
//! `ShuttingDown`.

use std::cell::Cell;

use bytes::Bytes;
use shoal_protocol::messages::fetch::FetchPartitionResponse;
use shoal_protocol::messages::offsets::{ListOffsetsPartitionResponse, OffsetSpec};
use shoal_protocol::messages::produce::{Acks, ProducePartitionResponse};
use shoal_protocol::messages::topic::TopicConfig;

use crate::topics::TopicMeta;

/// Depth of each shard's inbox.
pub const SHARD_INBOX_MAX: usize = 1024;

/// A request to another shard.
#[derive(Debug)]
pub enum ShardCall {
    /// Append batches to a partition this shard owns.
    Produce {
        topic: String,
        partition: u32,
        acks: Acks,
        batches: Vec<Bytes>,
    },
    /// Read a partition this shard owns (long-poll up to `max_wait_ms`).
    Fetch {
        topic: String,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        max_wait_ms: u32,
    },
    ListOffsets {
        topic: String,
        partition: u32,
        spec: OffsetSpec,
    },
    /// To shard 0: create a topic (validate, store the catalogue, broadcast).
    CreateTopic { name: String, config: TopicConfig },
    /// To shard 0: delete a topic.
    DeleteTopic { name: String },
    /// From shard 0 to every shard: the catalogue gained this topic.
    ApplyCreate(TopicMeta),
    /// From shard 0 to every shard: the catalogue lost this topic.
    ApplyDelete(String),
    /// Partition figures for stats and metrics.
    PartitionStats { topic: String, partition: u32 },
    /// Every counter of the shard, for `/metrics` and `/readyz`.
    MetricsSnapshot,
    /// Consumer groups and the quarantine ([`crate::delivery`]).
    Delivery(Box<crate::delivery::DeliveryCall>),
    /// Stop serving and flush (shutdown).
    Shutdown,
}

/// Kinds of cross-shard call, for the per-kind hop counters.
pub const CALL_KINDS: [&str; 6] = ["produce", "fetch", "list_offsets", "admin", "stats", "delivery"];

impl ShardCall {
    /// Index into [`CALL_KINDS`]: the hot path (produce, fetch) is counted
    /// apart from admin, stats and group traffic.
    pub fn kind(&self) -> usize {
        match self {
            ShardCall::Produce { .. } => 0,
            ShardCall::Fetch { .. } => 1,
            ShardCall::ListOffsets { .. } => 2,
            ShardCall::CreateTopic { .. }
            | ShardCall::DeleteTopic { .. }
            | ShardCall::ApplyCreate(_)
            | ShardCall::ApplyDelete(_)
            | ShardCall::Shutdown => 3,
            ShardCall::PartitionStats { .. } | ShardCall::MetricsSnapshot => 4,
            ShardCall::Delivery(_) => 5,
        }
    }
}

/// Figures of one partition, read on its owner.
#[derive(Debug, Clone, Default)]
pub struct PartitionFigures {
    pub log_start: u64,
    pub log_end: u64,
    pub high_watermark: u64,
    /// Bytes of segment data on disk.
    pub size_bytes: u64,
    pub fenced: Option<String>,
}

/// The answer to a [`ShardCall`].
#[derive(Debug)]
pub enum ShardReply {
    Produce(ProducePartitionResponse),
    Fetch(FetchPartitionResponse, Vec<Bytes>),
    ListOffsets(ListOffsetsPartitionResponse),
    /// Result of an admin call: error code (0 = ok) and message.
    Admin(u16, String),
    Stats(Option<PartitionFigures>),
    Delivery(Box<crate::delivery::DeliveryReply>),
    Metrics(Box<crate::http::metrics::ShardSnapshot>),
    Done,
}

/// A call in flight to another shard.
pub struct Envelope {
    pub from: u32,
    pub call: ShardCall,
    pub reply: flume::Sender<ShardReply>,
}

/// Why a cross-shard call failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("shard {0} has stopped")]
    Closed(u32),
}

/// This shard's end of the mesh.
pub struct Mesh {
    shard: u32,
    peers: Vec<flume::Sender<Envelope>>,
    hops_out: Vec<Cell<u64>>,
    hops_in: Cell<u64>,
    hops_by_kind: [Cell<u64>; CALL_KINDS.len()],
}

impl Mesh {
    pub fn new(shard: u32, peers: Vec<flume::Sender<Envelope>>) -> Self {
        let hops_out = peers.iter().map(|_| Cell::new(0)).collect();
        Mesh {
            shard,
            peers,
            hops_out,
            hops_in: Cell::new(0),
            hops_by_kind: Default::default(),
        }
    }

    /// Sends `call` to shard `to` and waits for its reply.
    pub async fn call(&self, to: u32, call: ShardCall) -> Result<ShardReply, MeshError> {
        let kind = &self.hops_by_kind[call.kind()];
        kind.set(kind.get() + 1);
        let (tx, rx) = flume::bounded(1);
        let envelope = Envelope {
            from: self.shard,
            call,
            reply: tx,
        };
        let peer = &self.peers[to as usize];
        peer.send_async(envelope)
            .await
            .map_err(|_| MeshError::Closed(to))?;
        let cell = &self.hops_out[to as usize];
        cell.set(cell.get() + 1);
        rx.recv_async().await.map_err(|_| MeshError::Closed(to))
    }

    /// Counts a call received from another shard.
    pub fn count_in(&self) {
        self.hops_in.set(self.hops_in.get() + 1);
    }

    /// Calls sent to each shard so far.
    pub fn hops_out(&self) -> Vec<u64> {
        self.hops_out.iter().map(Cell::get).collect()
    }

    /// Calls sent to other shards so far, by [`CALL_KINDS`] kind.
    pub fn hops_by_kind(&self) -> Vec<u64> {
        self.hops_by_kind.iter().map(Cell::get).collect()
    }

    /// Calls received from other shards so far.
    pub fn hops_in(&self) -> u64 {
        self.hops_in.get()
    }

    pub fn shard_count(&self) -> u32 {
        self.peers.len() as u32
    }
}

/// Creates the inboxes of `shards` shards: every shard gets the senders to
/// all inboxes (its own included) and its own receiver.
pub fn build(shards: u32) -> (Vec<flume::Sender<Envelope>>, Vec<flume::Receiver<Envelope>>) {
    (0..shards).map(|_| flume::bounded(SHARD_INBOX_MAX)).unzip()
}
