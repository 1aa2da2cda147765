//! Metrics: each shard's counters, the snapshot a shard reports, and the
//! Prometheus text rendering of the whole broker.
//!
//! | module         | role                                                       |
//! |----------------|------------------------------------------------------------|
//! | [`counters`]   | per-shard counters and histograms; the HTTP front door's   |
//! | [`snapshot`]   | what one shard and the whole broker report (plain data)    |
//! | [`prometheus`] | the table of metric families and the text renderer         |
//!
//! Gathering a shard's snapshot reads shard state, so it lives with the
//! shard (`shard::snapshot`); rendering needs nothing but the snapshot.

pub mod counters;
pub mod prometheus;
pub mod snapshot;

pub use counters::{add, latency_histogram, ShardMetrics};
pub use snapshot::{BrokerSnapshot, PartitionSample, ShardSnapshot};
