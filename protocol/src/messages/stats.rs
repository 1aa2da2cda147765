//! Group and topic statistics: lag in records and in time, retry backlog,
//! quarantine depth, circuit breaker and retry budget.
//!
//! Lag in time for a group partition is `now - append time of the oldest
//! record the group has not processed` (acked), in milliseconds, and 0 when
//! the group is caught up.

use crate::api::ApiKey;
use crate::messages::group::{GroupState, TopicPartitions};
use crate::messages::message_pair;

/// State of a group's circuit breaker.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub enum CircuitState {
    /// Delivering normally.
    Closed,
    /// Delivery paused because the failure rate crossed the threshold.
    Open,
    /// Trying a few deliveries to see whether the handler recovered.
    HalfOpen,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct GroupStatsRequest {
    pub group: String,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct MemberDescription {
    pub member_id: String,
    pub member_name: String,
    pub assignment: Vec<TopicPartitions>,
    /// Time since the member's last heartbeat.
    pub last_heartbeat_age_ms: u64,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct GroupPartitionStats {
    pub topic: String,
    pub partition: u32,
    /// Member that owns the partition; empty when unassigned.
    pub owner_member_id: String,
    /// Next offset the group will consume (the ack floor).
    pub committed_offset: u64,
    pub log_end: u64,
    /// `log_end - committed_offset`.
    pub lag_records: u64,
    /// Age of the oldest unprocessed record; 0 when caught up.
    pub lag_ms: u64,
    /// Records delivered and leased, not yet acked or nacked.
    pub in_flight: u64,
    /// Records waiting for a retry.
    pub retry_backlog: u64,
    /// Quarantined entries of this group and partition.
    pub quarantine_depth: u64,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct GroupStatsResponse {
    /// [`crate::error::ErrorCode`]: `UnknownGroup`.
    pub error: u16,
    pub message: String,
    pub group: String,
    pub state: GroupState,
    pub generation: u32,
    pub members: Vec<MemberDescription>,
    pub partitions: Vec<GroupPartitionStats>,
    pub circuit: CircuitState,
    /// Retries allowed per 1000 deliveries over the budget window.
    pub retry_budget_permille: u32,
    /// Retries used per 1000 deliveries over the current window.
    pub retry_budget_used_permille: u32,
    /// Lifetime counters.
    pub deliveries_total: u64,
    pub acks_total: u64,
    pub nacks_total: u64,
    pub retries_total: u64,
    pub quarantined_total: u64,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct TopicStatsRequest {
    pub topic: String,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct TopicPartitionStats {
    pub partition: u32,
    pub shard: u32,
    pub log_start: u64,
    pub high_watermark: u64,
    pub log_end: u64,
    pub size_bytes: u64,
    pub segments: u32,
    /// Append time of the newest record; `None` for an empty partition.
    pub last_append_at_ms: Option<i64>,
    /// Quarantined entries from this partition, over all groups.
    pub quarantine_depth: u64,
    /// [`crate::error::ErrorCode`]: `PartitionFenced` after a storage error.
    pub error: u16,
}

/// A group's total lag on the topic.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct GroupLag {
    pub group: String,
    /// Sum over partitions.
    pub lag_records: u64,
    /// Maximum over partitions.
    pub lag_ms: u64,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct TopicStatsResponse {
    /// [`crate::error::ErrorCode`]: `UnknownTopic`.
    pub error: u16,
    pub message: String,
    pub topic: String,
    pub partitions: Vec<TopicPartitionStats>,
    pub groups: Vec<GroupLag>,
}

message_pair!(GroupStatsRequest => GroupStatsResponse, ApiKey::GroupStats);
message_pair!(TopicStatsRequest => TopicStatsResponse, ApiKey::TopicStats);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{arbitrary_struct, pick, round_trip_tests};
    use quickcheck::{Arbitrary, Gen};

    impl Arbitrary for CircuitState {
        fn arbitrary(g: &mut Gen) -> Self {
            [CircuitState::Closed, CircuitState::Open, CircuitState::HalfOpen][usize::from(pick(g, 3))]
        }
    }
    arbitrary_struct!(GroupStatsRequest { group });
    arbitrary_struct!(MemberDescription {
        member_id,
        member_name,
        assignment,
        last_heartbeat_age_ms
    });
    arbitrary_struct!(GroupPartitionStats {
        topic,
        partition,
        owner_member_id,
        committed_offset,
        log_end,
        lag_records,
        lag_ms,
        in_flight,
        retry_backlog,
        quarantine_depth
    });
    arbitrary_struct!(GroupStatsResponse {
        error,
        message,
        group,
        state,
        generation,
        members,
        partitions,
        circuit,
        retry_budget_permille,
        retry_budget_used_permille,
        deliveries_total,
        acks_total,
        nacks_total,
        retries_total,
        quarantined_total
    });
    arbitrary_struct!(TopicStatsRequest { topic });
    arbitrary_struct!(TopicPartitionStats {
        partition,
        shard,
        log_start,
        high_watermark,
        log_end,
        size_bytes,
        segments,
        last_append_at_ms,
        quarantine_depth,
        error
    });
    arbitrary_struct!(GroupLag {
        group,
        lag_records,
        lag_ms
    });
    arbitrary_struct!(TopicStatsResponse {
        error,
        message,
        topic,
        partitions,
        groups
    });

    round_trip_tests! {
        group_stats_request: GroupStatsRequest,
        group_stats_response: GroupStatsResponse,
        topic_stats_request: TopicStatsRequest,
        topic_stats_response: TopicStatsResponse,
    }
}
