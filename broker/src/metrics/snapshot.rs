//! What one shard reports to `/metrics`, copied out of its counters, and
//! what the whole broker reports (every shard plus every consumer group).
//!
//! A snapshot is plain data: it crosses the mesh as a reply and is
//! rendered by [`super::prometheus`] without touching any shard.

use hdrhistogram::Histogram;
use shoal_protocol::messages::stats::GroupStatsResponse;

use super::counters::http::HttpFigures;
use super::counters::kafka::KafkaFigures;
use crate::partition::PartitionFigures;

/// One partition's figures on its owner.
#[derive(Debug, Clone)]
pub struct PartitionSample {
    pub topic: String,
    pub partition: u32,
    pub figures: PartitionFigures,
    /// Write-path counters of the log; `None` when the partition is fenced on open.
    pub log: Option<shoal_storage::LogStats>,
}

/// Everything one shard reports.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: u32,
    pub records_in: u64,
    pub records_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub throttle_ms: u64,
    pub native_connections_open: u64,
    pub native_connections_total: u64,
    pub native_connections_rejected: u64,
    pub native_connections_expired: u64,
    pub connections_refused: u64,
    /// Free bytes of the shard's receive pool and in-flight budget.
    pub receive_pool_free_bytes: u64,
    pub inflight_free_bytes: u64,
    /// Error replies by wire code.
    pub native_errors: Vec<(u16, u64)>,
    pub native_produce_latency_us: Histogram<u64>,
    /// Mesh calls sent to each shard.
    pub hops_out: Vec<u64>,
    pub hops_in: u64,
    /// Mesh calls sent, by kind name.
    pub hops_by_kind: Vec<(&'static str, u64)>,
    /// Native requests served, by API key number.
    pub native_requests: Vec<u64>,
    pub http: HttpFigures,
    pub kafka: KafkaFigures,
    pub partitions: Vec<PartitionSample>,
}

/// The whole broker at one moment.
#[derive(Debug, Clone, Default)]
pub struct BrokerSnapshot {
    /// Every shard that answered, in shard order.
    pub shards: Vec<ShardSnapshot>,
    /// Every consumer group's stats, from its coordinator.
    pub groups: Vec<GroupStatsResponse>,
}
