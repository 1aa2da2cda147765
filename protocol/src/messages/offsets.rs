//! List offsets: the earliest, latest, or first-at-a-time offset of partitions.

use crate::api::ApiKey;
use crate::messages::message_pair;

/// Which offset to look up.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub enum OffsetSpec {
    /// The first retained offset.
    Earliest,
    /// The log end: the offset the next record will get.
    Latest,
    /// The first offset whose record timestamp (ms since the Unix epoch) is
    /// at or after this; the log end if there is none.
    Timestamp(i64),
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ListOffsetsPartition {
    pub partition: u32,
    pub spec: OffsetSpec,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ListOffsetsRequest {
    pub topic: String,
    pub partitions: Vec<ListOffsetsPartition>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ListOffsetsPartitionResponse {
    pub partition: u32,
    /// [`crate::error::ErrorCode`].
    pub error: u16,
    pub offset: u64,
    /// Timestamp of the record at `offset`; `None` at the log end.
    pub timestamp_ms: Option<i64>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ListOffsetsResponse {
    /// [`crate::error::ErrorCode`] for the whole request (`UnknownTopic`).
    pub error: u16,
    pub message: String,
    /// One entry per requested partition, same order.
    pub partitions: Vec<ListOffsetsPartitionResponse>,
}

message_pair!(ListOffsetsRequest => ListOffsetsResponse, ApiKey::ListOffsets);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::messages::testing::{arbitrary_struct, pick, round_trip_tests};
    use quickcheck::{Arbitrary, Gen};

    impl Arbitrary for OffsetSpec {
        fn arbitrary(g: &mut Gen) -> Self {
            match pick(g, 3) {
                0 => OffsetSpec::Earliest,
                1 => OffsetSpec::Latest,
                _ => OffsetSpec::Timestamp(i64::arbitrary(g)),
            }
        }
    }
    arbitrary_struct!(ListOffsetsPartition { partition, spec });
    arbitrary_struct!(ListOffsetsRequest { topic, partitions });
    arbitrary_struct!(ListOffsetsPartitionResponse {
        partition,
        error,
        offset,
        timestamp_ms
    });
    arbitrary_struct!(ListOffsetsResponse {
        error,
        message,
        partitions
    });

    round_trip_tests! {
        list_offsets_request: ListOffsetsRequest,
        list_offsets_response: ListOffsetsResponse,
    }
}
