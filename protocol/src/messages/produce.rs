//! Produce: record batches in, offsets and achieved durability out.
//!
//! The request's meta lists, per partition, the lengths of the batches that
//! follow in the payload (partitions in the order listed, each partition's
//! batches in order). Batches are built with [`crate::batch::BatchBuilder`];
//! the broker validates each once and writes the same bytes to its log.
//!
//! Offsets in the reply: the records of one partition that were stored get
//! consecutive offsets from `base_offset` to `last_offset`, in request order,
//! skipping the records listed in `duplicates` (those were already stored
//! within the dedup window, at `original_offset`). With that rule a client
//! recovers every record's offset without one entry per record.

use crate::api::ApiKey;
use crate::messages::message_pair;

/// How much the broker must do before it replies.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub enum Acks {
    /// Reply as soon as the request is accepted, before it is appended
    /// (at-most-once; durability `Accepted`, no offsets).
    None,
    /// Reply after the owning shard appended (and, per the topic's flush
    /// policy, synced) the batches.
    Leader,
    /// Reply after a quorum of replicas has the batches (replicated topics).
    Quorum,
}

/// What the broker actually achieved before it replied.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub enum Durability {
    /// Accepted but not yet appended (acks `None`): offsets are not known and
    /// `base_offset`/`last_offset` are 0.
    Accepted,
    /// Appended to the shard's memory (batch cache) only.
    Memory,
    /// Written to the log file, not yet fsynced.
    Written,
    /// Written and covered by a completed fdatasync.
    Fsynced,
    /// Committed by a quorum of replicas.
    Replicated,
}

/// The batches for one partition.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ProducePartition {
    pub partition: u32,
    /// Lengths in bytes of this partition's batches in the payload.
    pub batch_lens: Vec<u32>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ProduceRequest {
    pub topic: String,
    pub acks: Acks,
    /// How long the broker may wait for `acks` before replying `Timeout`.
    pub timeout_ms: u32,
    pub partitions: Vec<ProducePartition>,
}

/// A record the broker found already stored (dedup by `message_id`, or a
/// replayed idempotent-producer sequence).
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct DuplicateRecord {
    /// Index of the record among this partition's records in the request
    /// (counting across its batches, from 0).
    pub record_index: u32,
    /// Offset at which the first copy was stored.
    pub original_offset: u64,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ProducePartitionResponse {
    pub partition: u32,
    /// [`crate::error::ErrorCode`]; on error nothing of this partition was stored.
    pub error: u16,
    pub message: String,
    /// Offset of the first stored record (see the module docs).
    pub base_offset: u64,
    /// Offset of the last stored record; `last_offset + 1 == base_offset`
    /// when every record was a duplicate.
    pub last_offset: u64,
    /// First retained offset of the partition after the append.
    pub log_start: u64,
    /// Broker wall-clock time the batches were appended.
    pub append_time_ms: i64,
    pub durability: Durability,
    pub duplicates: Vec<DuplicateRecord>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ProduceResponse {
    /// How long the client should hold back before its next produce (quota).
    pub throttle_time_ms: u32,
    /// One entry per requested partition, same order.
    pub partitions: Vec<ProducePartitionResponse>,
}

message_pair!(ProduceRequest => ProduceResponse, ApiKey::Produce);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::messages::testing::{arbitrary_struct, pick, round_trip_tests};
    use quickcheck::{Arbitrary, Gen};

    impl Arbitrary for Acks {
        fn arbitrary(g: &mut Gen) -> Self {
            [Acks::None, Acks::Leader, Acks::Quorum][usize::from(pick(g, 3))]
        }
    }
    impl Arbitrary for Durability {
        fn arbitrary(g: &mut Gen) -> Self {
            use Durability::*;
            [Accepted, Memory, Written, Fsynced, Replicated][usize::from(pick(g, 5))]
        }
    }
    arbitrary_struct!(ProducePartition {
        partition,
        batch_lens
    });
    arbitrary_struct!(ProduceRequest {
        topic,
        acks,
        timeout_ms,
        partitions
    });
    arbitrary_struct!(DuplicateRecord {
        record_index,
        original_offset
    });
    arbitrary_struct!(ProducePartitionResponse {
        partition,
        error,
        message,
        base_offset,
        last_offset,
        log_start,
        append_time_ms,
        durability,
        duplicates
    });
    arbitrary_struct!(ProduceResponse {
        throttle_time_ms,
        partitions
    });

    round_trip_tests! {
        produce_request: ProduceRequest,
        produce_response: ProduceResponse,
    }
}
