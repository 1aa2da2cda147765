//! Fetch: read batches of a partition from an offset, with long-poll.
//!
//! The reply's meta lists, per partition, the lengths of the batches that
//! follow in the payload. The broker sends whole batches as stored, so the
//! first batch may start before the requested offset: the client skips
//! records below the offset it asked for.

use crate::api::ApiKey;
use crate::messages::message_pair;

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct FetchPartition {
    pub partition: u32,
    /// First offset wanted.
    pub offset: u64,
    /// Cap on batch bytes for this partition; at least one whole batch is
    /// returned even if it is larger, so a consumer can always progress.
    pub max_bytes: u32,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct FetchRequest {
    pub topic: String,
    /// Long-poll: wait up to this long for `min_bytes` to be available.
    pub max_wait_ms: u32,
    /// Reply as soon as this many batch bytes are available (0 = at once).
    pub min_bytes: u32,
    /// Cap on batch bytes over all partitions.
    pub max_bytes: u32,
    pub partitions: Vec<FetchPartition>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct FetchPartitionResponse {
    pub partition: u32,
    /// [`crate::error::ErrorCode`]: `OffsetOutOfRange`, `UnknownPartition`, …
    pub error: u16,
    pub message: String,
    /// Records below this offset are readable.
    pub high_watermark: u64,
    /// First retained offset.
    pub log_start: u64,
    /// Offset the next appended record gets.
    pub log_end: u64,
    /// Lengths in bytes of this partition's batches in the payload.
    pub batch_lens: Vec<u32>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct FetchResponse {
    /// How long the client should hold back before its next fetch (quota).
    pub throttle_time_ms: u32,
    /// One entry per requested partition, same order.
    pub partitions: Vec<FetchPartitionResponse>,
}

message_pair!(FetchRequest => FetchResponse, ApiKey::Fetch);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{arbitrary_struct, round_trip_tests};

    arbitrary_struct!(FetchPartition {
        partition,
        offset,
        max_bytes
    });
    arbitrary_struct!(FetchRequest {
        topic,
        max_wait_ms,
        min_bytes,
        max_bytes,
        partitions
    });
    arbitrary_struct!(FetchPartitionResponse {
        partition,
        error,
        message,
        high_watermark,
        log_start,
        log_end,
        batch_lens
    });
    arbitrary_struct!(FetchResponse {
        throttle_time_ms,
        partitions
    });

    round_trip_tests! {
        fetch_request: FetchRequest,
        fetch_response: FetchResponse,
    }
}
