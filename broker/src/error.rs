//! The broker's one error type: what a service call can fail with.
//!
//! Services (partition, delivery, metadata) return `Result<_, BrokerError>`;
//! only the front ends turn an error into bytes. [`BrokerError::code`] is the
//! single mapping to the wire's stable [`ErrorCode`] (the native protocol and
//! the Kafka front end encode it), and the HTTP front end maps that code to a
//! status in one function (`frontend::http::json::status_for`). The message
//! (the `Display` text) says what happened and, where there is something to
//! do, what to do next.
//!
//! Retryable versus terminal follows the wire code
//! ([`ErrorCode::is_retryable`]): a variant's doc says which class it is in.

use shoal_protocol::error::ErrorCode;
use shoal_storage::LogError;

use crate::ids::{PartitionId, ShardId};

/// Why a broker operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// Terminal: no topic has this name.
    #[error("topic {topic:?} does not exist")]
    UnknownTopic { topic: String },
    /// Terminal: the partition number is outside the topic's partitions.
    #[error("topic {topic:?} has {count} partitions (0-{}); asked for partition {partition}", count.saturating_sub(1))]
    UnknownPartition {
        topic: String,
        partition: PartitionId,
        count: u32,
    },
    /// Terminal: a topic with that name already exists.
    #[error("topic {topic:?} already exists")]
    TopicExists { topic: String },
    /// Terminal: a field of the request is invalid (the message says which).
    #[error("{0}")]
    InvalidRequest(String),
    /// Terminal: a record or batch is over a size limit.
    #[error("{0}")]
    RecordTooLarge(String),
    /// Terminal: a batch failed its CRC, framing or archive check.
    #[error("{0}")]
    CorruptBatch(String),
    /// Retryable: this shard does not own the partition (refresh metadata).
    #[error("shard {shard} does not own {topic}/{partition}")]
    NotOwner {
        shard: ShardId,
        topic: String,
        partition: PartitionId,
    },
    /// Retryable: this node's replica is not the raft leader (issue 14).
    #[error("{topic}/{partition}: not the leader; the leader is {}", leader_text(*leader, address.as_deref()))]
    NotLeader {
        topic: String,
        partition: PartitionId,
        /// The leader's node id, 0 when none is known (an election runs).
        leader: u64,
        /// The leader's native-protocol address, when known.
        address: Option<String>,
    },
    /// Retryable: on a cluster, this node's replica of shard `shard`'s group
    /// state partition does not lead (or has not yet restored the state),
    /// so this node does not coordinate the groups of that shard now.
    #[error("this node does not coordinate the groups of shard {shard} now; the coordinator is {}", leader_text(*leader, address.as_deref()))]
    NotCoordinator {
        shard: ShardId,
        /// The coordinator's node id, 0 when none is known (an election
        /// runs, or the new leader is still restoring the state).
        leader: u64,
        /// The coordinator's native-protocol address, when known.
        address: Option<String>,
    },
    /// Retryable: the owning shard is still recovering the partition.
    #[error("partition {topic}/{partition} is still being recovered: retry shortly")]
    PartitionRecovering { topic: String, partition: PartitionId },
    /// Terminal until an operator acts: the partition's storage failed and
    /// it is read-only (or it could not be opened).
    #[error("partition is fenced: {0}")]
    PartitionFenced(String),
    /// Retryable: over a quota; retry after `retry_ms`.
    #[error("over the byte rate: retry in {retry_ms} ms")]
    Throttled { retry_ms: u64 },
    /// Terminal: no consumer group has this name.
    #[error("group {group:?} does not exist")]
    UnknownGroup { group: String },
    /// Terminal for that member id: join again.
    #[error("{0}")]
    UnknownMember(String),
    /// Terminal for that generation: heartbeat or join again.
    #[error("{0}")]
    StaleGeneration(String),
    /// Retryable: the group moved to `generation`; heartbeat first.
    #[error("the group moved to generation {generation}: heartbeat first")]
    RebalanceInProgress { generation: u32 },
    /// Terminal for that offset: it lies outside the partition's log.
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: u64,
        log_start: u64,
        log_end: u64,
        high_watermark: u64,
    },
    /// Terminal: the offset is not one the group delivered or may commit.
    #[error("{0}")]
    InvalidOffset(String),
    /// Retryable: the work did not finish within the request's timeout.
    #[error("{0}")]
    Timeout(String),
    /// Retryable elsewhere or after a restart: the broker is draining.
    #[error("{0}")]
    ShuttingDown(String),
    /// Retryable at most once: an unexpected fault.
    #[error("{0}")]
    Internal(String),
    /// Terminal: the member does not own or subscribe to that partition.
    #[error("{0}")]
    NotSubscribed(String),
    /// Retryable: the group's circuit breaker is open.
    #[error("the group's circuit breaker is open: retry in {retry_in_ms} ms")]
    CircuitOpen { retry_in_ms: u32, generation: u32 },
    /// Terminal: an idempotent producer's sequence is out of order.
    #[error("producer {producer_id} sequence {sequence} (expected {expected})")]
    OutOfOrderSequence {
        producer_id: u64,
        sequence: u32,
        expected: u32,
    },
    /// Terminal: authentication is required or failed (the message says
    /// which, never why a password was wrong).
    #[error("{0}")]
    AuthenticationFailed(String),
    /// Terminal: the principal has no ACL allowing `operation` on `resource`.
    #[error("{principal} may not {operation} {resource}")]
    AuthorizationFailed {
        principal: String,
        operation: &'static str,
        resource: String,
    },
}

/// A service call's result.
pub type BrokerResult<T> = Result<T, BrokerError>;

/// How a `not_leader` reply names the leader: `node 2 at 127.0.0.1:9400`.
fn leader_text(leader: u64, address: Option<&str>) -> String {
    match (leader, address) {
        (0, _) => "not known yet (an election is running)".into(),
        (id, Some(addr)) => format!("node {id} at {addr}"),
        (id, None) => format!("node {id}"),
    }
}

impl BrokerError {
    /// The stable wire code of this error (the one mapping to the wire).
    pub fn code(&self) -> ErrorCode {
        use BrokerError as E;
        match self {
            E::UnknownTopic { .. } => ErrorCode::UnknownTopic,
            E::UnknownPartition { .. } => ErrorCode::UnknownPartition,
            E::TopicExists { .. } => ErrorCode::TopicExists,
            E::InvalidRequest(_) => ErrorCode::InvalidRequest,
            E::RecordTooLarge(_) => ErrorCode::RecordTooLarge,
            E::CorruptBatch(_) => ErrorCode::CorruptBatch,
            E::NotOwner { .. } => ErrorCode::NotOwner,
            E::NotLeader { .. } => ErrorCode::NotLeader,
            E::NotCoordinator { .. } => ErrorCode::NotCoordinator,
            E::PartitionRecovering { .. } => ErrorCode::PartitionRecovering,
            E::PartitionFenced(_) => ErrorCode::PartitionFenced,
            E::Throttled { .. } => ErrorCode::Throttled,
            E::UnknownGroup { .. } => ErrorCode::UnknownGroup,
            E::UnknownMember(_) => ErrorCode::UnknownMember,
            E::StaleGeneration(_) => ErrorCode::StaleGeneration,
            E::RebalanceInProgress { .. } => ErrorCode::RebalanceInProgress,
            E::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            E::InvalidOffset(_) => ErrorCode::InvalidOffset,
            E::Timeout(_) => ErrorCode::Timeout,
            E::ShuttingDown(_) => ErrorCode::ShuttingDown,
            E::Internal(_) => ErrorCode::Internal,
            E::NotSubscribed(_) => ErrorCode::NotSubscribed,
            E::CircuitOpen { .. } => ErrorCode::CircuitOpen,
            E::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
            E::AuthenticationFailed(_) => ErrorCode::AuthenticationFailed,
            E::AuthorizationFailed { .. } => ErrorCode::AuthorizationFailed,
        }
    }

    pub fn unknown_topic(topic: &str) -> Self {
        BrokerError::UnknownTopic {
            topic: topic.to_string(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        BrokerError::InvalidRequest(message.into())
    }

    pub fn internal(message: impl Into<String>) -> Self {
        BrokerError::Internal(message.into())
    }

    /// A peer shard stopped (its inbox closed): the broker is draining.
    pub fn shard_stopped(shard: ShardId) -> Self {
        BrokerError::ShuttingDown(format!("shard {shard} has stopped"))
    }

    /// A storage error of one partition, in the broker's classes. A failed
    /// write or sync, corruption and every I/O failure fence the partition.
    pub fn from_log(e: &LogError) -> Self {
        match e {
            LogError::InvalidBatch(b) => BrokerError::CorruptBatch(b.to_string()),
            LogError::Limit { .. } => BrokerError::RecordTooLarge(e.to_string()),
            LogError::Closed => BrokerError::ShuttingDown(e.to_string()),
            LogError::OffsetOutOfRange { offset, start, end } => BrokerError::OffsetOutOfRange {
                offset: *offset,
                log_start: *start,
                log_end: *end,
                high_watermark: *end,
            },
            _ => BrokerError::PartitionFenced(e.to_string()),
        }
    }
}

impl From<LogError> for BrokerError {
    fn from(e: LogError) -> Self {
        BrokerError::from_log(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant maps to the wire code of its class, and the message of
    /// an unknown partition tells the caller the valid range.
    #[test]
    fn codes_and_messages() {
        let e = BrokerError::UnknownPartition {
            topic: "orders".into(),
            partition: PartitionId(9),
            count: 4,
        };
        assert_eq!(e.code(), ErrorCode::UnknownPartition);
        assert_eq!(
            e.to_string(),
            "topic \"orders\" has 4 partitions (0-3); asked for partition 9"
        );
        let fenced = BrokerError::from_log(&LogError::Fenced {
            operation: "fdatasync",
            cause: "EIO".into(),
        });
        assert_eq!(fenced.code(), ErrorCode::PartitionFenced);
        assert!(BrokerError::Throttled { retry_ms: 5 }.code().is_retryable());
        assert!(!BrokerError::unknown_topic("t").code().is_retryable());
    }
}
