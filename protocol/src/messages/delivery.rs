//! Delivery to group members: poll, ack, nack, commit offset, seek/replay.
//!
//! A poll reply carries whole batches in its payload plus, per batch, the
//! exact records delivered from it (offset and delivery count). The client
//! surfaces only those records, so a single record being retried is
//! redelivered by sending its stored batch again, without re-encoding.
//! Every delivered record is leased to the member for `lease_ms`; an ack
//! ends the lease, a nack (or lease expiry) schedules a retry with backoff
//! or quarantines the record, per the topic's [`super::topic::RetryPolicy`].
//! The committed offset advances to the ack floor (the first unacked record).

use crate::api::ApiKey;
use crate::messages::message_pair;

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct PollRequest {
    pub group: String,
    pub member_id: String,
    pub generation: u32,
    /// Cap on records delivered in this reply.
    pub max_records: u32,
    /// Cap on batch bytes in this reply (at least one batch is sent).
    pub max_bytes: u32,
    /// Long-poll: wait up to this long for a record to deliver.
    pub max_wait_ms: u32,
}

/// One record delivered from a batch.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct Delivery {
    pub offset: u64,
    /// 1 on first delivery, incremented on each redelivery (durable).
    pub delivery_count: u32,
}

/// A batch in the payload and the records delivered from it.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct PolledBatch {
    pub topic: String,
    pub partition: u32,
    /// Length in bytes of this batch in the payload.
    pub batch_len: u32,
    /// The records to surface from this batch, in offset order; records of
    /// the batch not listed here are not delivered by this reply.
    pub deliveries: Vec<Delivery>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct PollResponse {
    /// [`crate::error::ErrorCode`]: `StaleGeneration`, `UnknownMember`,
    /// `RebalanceInProgress`, `CircuitOpen`.
    pub error: u16,
    pub message: String,
    pub generation: u32,
    pub throttle_time_ms: u32,
    /// Each delivered record is leased to the member for this long; unacked
    /// after that, it is redelivered (and counts as a failed attempt).
    pub lease_ms: u32,
    /// In payload order.
    pub batches: Vec<PolledBatch>,
}

/// Offsets of records in one partition.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: u32,
    pub offsets: Vec<u64>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct AckRequest {
    pub group: String,
    pub member_id: String,
    pub generation: u32,
    pub records: Vec<PartitionOffsets>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct AckPartitionResult {
    pub topic: String,
    pub partition: u32,
    /// [`crate::error::ErrorCode`]: `InvalidOffset` for an offset not leased
    /// to this member.
    pub error: u16,
    /// The group's committed offset for the partition after the ack.
    pub committed_offset: u64,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct AckResponse {
    /// [`crate::error::ErrorCode`] for the whole request: `StaleGeneration`,
    /// `UnknownMember` (nothing was acked).
    pub error: u16,
    pub message: String,
    pub partitions: Vec<AckPartitionResult>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct NackRequest {
    pub group: String,
    pub member_id: String,
    pub generation: u32,
    pub records: Vec<PartitionOffsets>,
    /// Why processing failed; kept with the record and shown in the quarantine.
    pub reason: String,
    /// Redeliver after at least this long instead of the policy's backoff.
    pub delay_ms: Option<u32>,
    /// Quarantine at once, without further attempts.
    pub reject: bool,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct NackPartitionResult {
    pub topic: String,
    pub partition: u32,
    /// [`crate::error::ErrorCode`].
    pub error: u16,
    /// Records scheduled for redelivery.
    pub retries_scheduled: u32,
    /// Records moved to the quarantine (attempts exhausted or rejected).
    pub quarantined: u32,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct NackResponse {
    /// [`crate::error::ErrorCode`] for the whole request.
    pub error: u16,
    pub message: String,
    pub partitions: Vec<NackPartitionResult>,
}

/// A committed position: `offset` is the next record the group will consume.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct PartitionCommit {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct CommitOffsetRequest {
    pub group: String,
    /// The committing member; fenced by `generation` like acks are.
    pub member_id: String,
    pub generation: u32,
    pub offsets: Vec<PartitionCommit>,
}

/// Outcome for one partition.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: u32,
    /// [`crate::error::ErrorCode`].
    pub error: u16,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct CommitOffsetResponse {
    /// [`crate::error::ErrorCode`] for the whole request.
    pub error: u16,
    pub message: String,
    pub partitions: Vec<PartitionResult>,
}

/// Where to move a group's position.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub enum SeekTarget {
    Earliest,
    Latest,
    Offset(u64),
    /// The first record at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// Replay: move a group's committed position. Pending retries at or after
/// the new position are dropped (their records will be delivered again).
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct SeekRequest {
    pub group: String,
    pub topic: String,
    /// Partitions to move; empty means all of the topic's partitions.
    pub partitions: Vec<u32>,
    pub target: SeekTarget,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct SeekPartitionResult {
    pub partition: u32,
    /// [`crate::error::ErrorCode`].
    pub error: u16,
    /// The new committed offset.
    pub offset: u64,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct SeekResponse {
    /// [`crate::error::ErrorCode`] for the whole request.
    pub error: u16,
    pub message: String,
    pub partitions: Vec<SeekPartitionResult>,
}

message_pair!(PollRequest => PollResponse, ApiKey::Poll);
message_pair!(AckRequest => AckResponse, ApiKey::Ack);
message_pair!(NackRequest => NackResponse, ApiKey::Nack);
message_pair!(CommitOffsetRequest => CommitOffsetResponse, ApiKey::CommitOffset);
message_pair!(SeekRequest => SeekResponse, ApiKey::Seek);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{arbitrary_struct, pick, round_trip_tests};
    use quickcheck::{Arbitrary, Gen};

    arbitrary_struct!(PollRequest {
        group,
        member_id,
        generation,
        max_records,
        max_bytes,
        max_wait_ms
    });
    arbitrary_struct!(Delivery {
        offset,
        delivery_count
    });
    arbitrary_struct!(PolledBatch {
        topic,
        partition,
        batch_len,
        deliveries
    });
    arbitrary_struct!(PollResponse {
        error,
        message,
        generation,
        throttle_time_ms,
        lease_ms,
        batches
    });
    arbitrary_struct!(PartitionOffsets {
        topic,
        partition,
        offsets
    });
    arbitrary_struct!(AckRequest {
        group,
        member_id,
        generation,
        records
    });
    arbitrary_struct!(AckPartitionResult {
        topic,
        partition,
        error,
        committed_offset
    });
    arbitrary_struct!(AckResponse {
        error,
        message,
        partitions
    });
    arbitrary_struct!(NackRequest {
        group,
        member_id,
        generation,
        records,
        reason,
        delay_ms,
        reject
    });
    arbitrary_struct!(NackPartitionResult {
        topic,
        partition,
        error,
        retries_scheduled,
        quarantined
    });
    arbitrary_struct!(NackResponse {
        error,
        message,
        partitions
    });
    arbitrary_struct!(PartitionCommit {
        topic,
        partition,
        offset
    });
    arbitrary_struct!(CommitOffsetRequest {
        group,
        member_id,
        generation,
        offsets
    });
    arbitrary_struct!(PartitionResult {
        topic,
        partition,
        error
    });
    arbitrary_struct!(CommitOffsetResponse {
        error,
        message,
        partitions
    });
    impl Arbitrary for SeekTarget {
        fn arbitrary(g: &mut Gen) -> Self {
            match pick(g, 4) {
                0 => SeekTarget::Earliest,
                1 => SeekTarget::Latest,
                2 => SeekTarget::Offset(u64::arbitrary(g)),
                _ => SeekTarget::Timestamp(i64::arbitrary(g)),
            }
        }
    }
    arbitrary_struct!(SeekRequest {
        group,
        topic,
        partitions,
        target
    });
    arbitrary_struct!(SeekPartitionResult {
        partition,
        error,
        offset
    });
    arbitrary_struct!(SeekResponse {
        error,
        message,
        partitions
    });

    round_trip_tests! {
        poll_request: PollRequest,
        poll_response: PollResponse,
        ack_request: AckRequest,
        ack_response: AckResponse,
        nack_request: NackRequest,
        nack_response: NackResponse,
        commit_offset_request: CommitOffsetRequest,
        commit_offset_response: CommitOffsetResponse,
        seek_request: SeekRequest,
        seek_response: SeekResponse,
    }
}
