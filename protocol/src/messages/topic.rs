//! Topic administration: create, delete, list, describe, and the topic
//! configuration they carry.

use crate::api::ApiKey;
use crate::messages::message_pair;

/// When the partition log is fsynced relative to acknowledging produce.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub enum FlushPolicy {
    /// fdatasync before every ack (group commit shares one sync between
    /// requests): acks report `Fsynced`.
    Always,
    /// fdatasync at most every this many milliseconds; acks report `Written`.
    IntervalMs(u32),
    /// Never fsync explicitly (the OS decides); acks report `Written`.
    Never,
}

/// Redelivery and dead-letter policy for consumer groups on the topic.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct RetryPolicy {
    /// Deliveries of a record before it is quarantined (1 = no retries).
    pub max_attempts: u32,
    /// Backoff before the first redelivery; doubles per attempt, with jitter.
    pub backoff_base_ms: u32,
    /// Cap on the backoff.
    pub backoff_max_ms: u32,
    /// Quarantine records that exhaust their attempts (false: drop them and
    /// count the drop).
    pub dead_letter: bool,
    /// Per-key ordered retry: later records of a key wait while an earlier
    /// one of the same key waits for redelivery.
    pub ordered_retry: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            dead_letter: true,
            ordered_retry: false,
        }
    }
}

/// Everything that configures a topic.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct TopicConfig {
    /// Number of partitions, at least 1; fixed once created.
    pub partitions: u32,
    /// Delete segments older than this; `None` keeps them by time forever.
    pub retention_ms: Option<u64>,
    /// Delete the oldest segments while a partition is over this size;
    /// `None` means no size limit.
    pub retention_bytes: Option<u64>,
    /// Key-based compaction: keep the latest record per key.
    pub compacted: bool,
    /// How long a compacted topic keeps tombstones (records with no value).
    pub tombstone_retention_ms: u64,
    pub flush: FlushPolicy,
    /// Window in which a repeated `message_id` is stored once; 0 disables.
    pub dedup_window_ms: u64,
    pub retry: RetryPolicy,
    /// Replicas of each partition (issue 14): 1 keeps a partition on the
    /// node that owns it, exactly as a single node does; more runs a raft
    /// group over that many nodes of a cluster.
    pub replication_factor: u32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            retention_ms: None,
            retention_bytes: None,
            compacted: false,
            tombstone_retention_ms: 24 * 3600 * 1000,
            flush: FlushPolicy::Always,
            dedup_window_ms: 5 * 60 * 1000,
            retry: RetryPolicy::default(),
            replication_factor: 1,
        }
    }
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct CreateTopicRequest {
    pub name: String,
    pub config: TopicConfig,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct CreateTopicResponse {
    /// [`crate::error::ErrorCode`]: `TopicExists`, `InvalidRequest`.
    pub error: u16,
    pub message: String,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct DeleteTopicRequest {
    pub name: String,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct DeleteTopicResponse {
    /// [`crate::error::ErrorCode`]: `UnknownTopic`.
    pub error: u16,
    pub message: String,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ListTopicsRequest {}

/// One line of a topic listing.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    pub compacted: bool,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ListTopicsResponse {
    /// Sorted by name.
    pub topics: Vec<TopicSummary>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct DescribeTopicRequest {
    pub name: String,
}

/// A partition's placement and offsets.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct PartitionDescription {
    pub partition: u32,
    pub shard: u32,
    /// First retained offset.
    pub log_start: u64,
    /// Offset up to which records are readable by consumers (exclusive).
    pub high_watermark: u64,
    /// Offset the next appended record gets.
    pub log_end: u64,
    /// Bytes on disk over all segments.
    pub size_bytes: u64,
    /// [`crate::error::ErrorCode`]: `PartitionFenced` after a storage error.
    pub error: u16,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct DescribeTopicResponse {
    /// [`crate::error::ErrorCode`]: `UnknownTopic`.
    pub error: u16,
    pub message: String,
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionDescription>,
}

message_pair!(CreateTopicRequest => CreateTopicResponse, ApiKey::CreateTopic);
message_pair!(DeleteTopicRequest => DeleteTopicResponse, ApiKey::DeleteTopic);
message_pair!(ListTopicsRequest => ListTopicsResponse, ApiKey::ListTopics);
message_pair!(DescribeTopicRequest => DescribeTopicResponse, ApiKey::DescribeTopic);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::messages::testing::{arbitrary_struct, pick, round_trip_tests};
    use quickcheck::{Arbitrary, Gen};

    impl Arbitrary for FlushPolicy {
        fn arbitrary(g: &mut Gen) -> Self {
            match pick(g, 3) {
                0 => FlushPolicy::Always,
                1 => FlushPolicy::IntervalMs(u32::arbitrary(g)),
                _ => FlushPolicy::Never,
            }
        }
    }
    arbitrary_struct!(RetryPolicy {
        max_attempts,
        backoff_base_ms,
        backoff_max_ms,
        dead_letter,
        ordered_retry
    });
    arbitrary_struct!(TopicConfig {
        partitions,
        retention_ms,
        retention_bytes,
        compacted,
        tombstone_retention_ms,
        flush,
        dedup_window_ms,
        retry,
        replication_factor
    });
    arbitrary_struct!(CreateTopicRequest { name, config });
    arbitrary_struct!(CreateTopicResponse { error, message });
    arbitrary_struct!(DeleteTopicRequest { name });
    arbitrary_struct!(DeleteTopicResponse { error, message });
    impl Arbitrary for ListTopicsRequest {
        fn arbitrary(_: &mut Gen) -> Self {
            ListTopicsRequest {}
        }
    }
    arbitrary_struct!(TopicSummary {
        name,
        partitions,
        compacted
    });
    arbitrary_struct!(ListTopicsResponse { topics });
    arbitrary_struct!(DescribeTopicRequest { name });
    arbitrary_struct!(PartitionDescription {
        partition,
        shard,
        log_start,
        high_watermark,
        log_end,
        size_bytes,
        error
    });
    arbitrary_struct!(DescribeTopicResponse {
        error,
        message,
        name,
        config,
        partitions
    });

    round_trip_tests! {
        create_topic_request: CreateTopicRequest,
        create_topic_response: CreateTopicResponse,
        delete_topic_request: DeleteTopicRequest,
        delete_topic_response: DeleteTopicResponse,
        list_topics_request: ListTopicsRequest,
        list_topics_response: ListTopicsResponse,
        describe_topic_request: DescribeTopicRequest,
        describe_topic_response: DescribeTopicResponse,
    }
}
