//! Metadata: which shard owns each partition, and on which port.
//!
//! A shard-aware client asks once, then sends produce and fetch for a
//! partition straight to `host:shard_port` of its owning shard, so those
//! requests never cross cores. Ownership is
//! [`crate::partitioner::shard_for_partition`]; the broker reports it here so
//! clients need not know the shard count in advance.

use crate::api::ApiKey;
use crate::messages::message_pair;

/// Ask for metadata.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct MetadataRequest {
    /// Topics to describe; empty means every topic.
    pub topics: Vec<String>,
}

/// A shard and the port it alone listens on.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ShardEndpoint {
    pub shard: u32,
    pub port: u16,
}

/// Where one partition lives.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct PartitionMetadata {
    pub partition: u32,
    /// The owning shard.
    pub shard: u32,
    /// That shard's own port (same host as the shared port).
    pub shard_port: u16,
    /// [`crate::error::ErrorCode`], e.g. `PartitionFenced`.
    pub error: u16,
}

/// One topic's partitions.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct TopicMetadata {
    pub name: String,
    /// [`crate::error::ErrorCode`]: `UnknownTopic` for a requested topic that does not exist.
    pub error: u16,
    /// In partition order, `partitions[i].partition == i`.
    pub partitions: Vec<PartitionMetadata>,
}

/// The broker's layout.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct MetadataResponse {
    /// Host to connect to for shard ports; empty means "the host you used".
    pub host: String,
    /// The shared port every shard accepts on.
    pub shared_port: u16,
    pub shard_count: u32,
    /// Every shard's own port, in shard order.
    pub shards: Vec<ShardEndpoint>,
    pub topics: Vec<TopicMetadata>,
}

message_pair!(MetadataRequest => MetadataResponse, ApiKey::Metadata);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{arbitrary_struct, round_trip_tests};

    arbitrary_struct!(MetadataRequest { topics });
    arbitrary_struct!(ShardEndpoint { shard, port });
    arbitrary_struct!(PartitionMetadata {
        partition,
        shard,
        shard_port,
        error
    });
    arbitrary_struct!(TopicMetadata {
        name,
        error,
        partitions
    });
    arbitrary_struct!(MetadataResponse {
        host,
        shared_port,
        shard_count,
        shards,
        topics
    });

    round_trip_tests! {
        metadata_request: MetadataRequest,
        metadata_response: MetadataResponse,
    }
}
