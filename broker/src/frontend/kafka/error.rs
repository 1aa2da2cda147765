//! The Kafka front end's error type: one enum, its classes kept apart, and
//! one mapping to Kafka's wire error codes ([`KafkaError::kafka_code`]).
//!
//! Classes:
//! - *frame* errors ([`KafkaError::FrameTooShort`], [`KafkaError::FrameTooLarge`]):
//!   the byte stream cannot be trusted past this point; close the connection.
//! - *request* errors (unknown API, unsupported version, a body that does not
//!   match its schema or is over a limit): the frame boundary is known, but
//!   Kafka's own broker closes the connection for all but an ApiVersions
//!   request it cannot serve (see [`super::codec::Refusal`]).
//! - *record* errors (a produced batch that is corrupt, over a limit, or uses
//!   something Shoal does not store): terminal for that batch, reported in
//!   the partition's produce response; the connection carries on.
//! - *encode* errors: a response could not be encoded (a bug on our side).
//!
//! Nothing here is retryable by resending the same bytes: the same request
//! or batch is refused the same way every time.

use kafka_protocol::error::ResponseError;
use shoal_protocol::batch::BatchError;

use crate::error::BrokerError;

/// Why the Kafka front end refused bytes, a request or a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaError {
    /// Frame: the length prefix is below the smallest request header.
    #[error("kafka frame length {len} is shorter than a request header ({min} bytes)")]
    FrameTooShort { len: i64, min: usize },
    /// Frame: the length prefix is over the cap for the frame's API.
    #[error("kafka frame of {len} bytes for api key {api_key} is over the limit {max}")]
    FrameTooLarge { len: usize, max: usize, api_key: i16 },
    /// Request: an API key this broker does not serve.
    #[error("kafka api key {0} is not served by this broker")]
    UnknownApi(i16),
    /// Request: a served API at a version outside the advertised range.
    #[error("kafka api key {api_key} version {version} is not supported (supported {min}..={max})")]
    UnsupportedVersion {
        api_key: i16,
        version: i16,
        min: i16,
        max: i16,
    },
    /// Request: the body does not have the shape of its schema (checked
    /// before kafka-protocol decodes it, so no length it holds is trusted).
    #[error("kafka api key {api_key} v{version} request is malformed at byte {at}: {reason}")]
    MalformedRequest {
        api_key: i16,
        version: i16,
        at: usize,
        reason: &'static str,
    },
    /// Request: more array elements than a request may hold.
    #[error("kafka request holds over {max} array elements")]
    TooManyElements { max: u32 },
    /// Request: the shape check passed but kafka-protocol refused a value
    /// (invalid UTF-8, a null where none is allowed, a tag not valid for
    /// the version).
    #[error("kafka request does not decode: {0}")]
    Decode(String),
    /// Record: the batch's CRC-32C does not match its bytes.
    #[error("kafka batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    /// Record: the batch framing or a record inside it is malformed.
    #[error("kafka batch is malformed: {0}")]
    CorruptBatch(String),
    /// Record: a batch format other than RecordBatch v2 (magic 2).
    #[error("kafka batch magic {0} is not supported (only RecordBatch v2, magic 2)")]
    UnsupportedMagic(i8),
    /// Record: a compression codec number Kafka does not define.
    #[error("kafka batch compression codec {0} is unknown")]
    UnsupportedCompression(u8),
    /// Record: a batch feature Shoal does not store (transactions, control
    /// batches).
    #[error("kafka batch uses {0}, which Shoal does not support")]
    UnsupportedBatch(&'static str),
    /// Record: the batch, once decompressed, or its record count, is over
    /// the caller's limit.
    #[error("kafka batch is over a limit: {what} {len} > {max}")]
    BatchTooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// Record: the compressed records do not decompress.
    #[error("kafka batch does not decompress: {0}")]
    Decompress(String),
    /// Record: the records span more than a Shoal batch can express (Shoal
    /// keeps per-record time as a u32 millisecond delta from the batch's
    /// first timestamp: about 49.7 days).
    #[error("kafka batch timestamps span {span_ms} ms, over the {max_ms} ms a Shoal batch holds")]
    TimestampSpan { span_ms: i64, max_ms: i64 },
    /// Record: building or reading the Shoal batch failed.
    #[error("shoal batch: {0}")]
    Batch(#[from] BatchError),
    /// Encode: a response could not be encoded.
    #[error("kafka response does not encode: {0}")]
    Encode(String),
}

impl KafkaError {
    /// The Kafka error code a client is sent for this refusal. Frame errors
    /// close the connection instead, but still map to a code for logs.
    pub fn kafka_code(&self) -> i16 {
        let e = match self {
            KafkaError::FrameTooShort { .. }
            | KafkaError::MalformedRequest { .. }
            | KafkaError::Decode(_) => ResponseError::InvalidRequest,
            KafkaError::FrameTooLarge { .. } => ResponseError::PolicyViolation,
            KafkaError::UnknownApi(_) | KafkaError::UnsupportedVersion { .. } => {
                ResponseError::UnsupportedVersion
            }
            KafkaError::TooManyElements { .. } => ResponseError::InvalidRequest,
            KafkaError::CrcMismatch { .. } | KafkaError::Decompress(_) | KafkaError::Batch(_) => {
                ResponseError::CorruptMessage
            }
            KafkaError::CorruptBatch(_) => ResponseError::InvalidRecord,
            KafkaError::UnsupportedMagic(_) | KafkaError::UnsupportedBatch(_) => {
                ResponseError::UnsupportedForMessageFormat
            }
            KafkaError::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType,
            KafkaError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
            KafkaError::TimestampSpan { .. } => ResponseError::InvalidTimestamp,
            KafkaError::Encode(_) => ResponseError::UnknownServerError,
        };
        e.code()
    }
}

/// The Kafka error code a partition-level request (produce, fetch, list
/// offsets) answers for a broker error. Each class keeps its meaning for
/// Kafka clients: retryable ones stay retryable (a recovering partition, a
/// draining broker, a timeout), terminal ones stay terminal.
pub fn partition_error_code(e: &BrokerError) -> i16 {
    use BrokerError as B;
    let code = match e {
        B::UnknownTopic { .. } | B::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
        B::TopicExists { .. } => ResponseError::TopicAlreadyExists,
        B::InvalidRequest(_) | B::NotSubscribed(_) => ResponseError::InvalidRequest,
        B::RecordTooLarge(_) => ResponseError::MessageTooLarge,
        B::CorruptBatch(_) => ResponseError::CorruptMessage,
        // Not the owner, still recovering, or draining: the client refreshes
        // its metadata and retries, as after a leader change.
        B::NotOwner { .. } | B::NotLeader { .. } | B::ShuttingDown(_) => ResponseError::NotLeaderOrFollower,
        B::PartitionRecovering { .. } => ResponseError::LeaderNotAvailable,
        // A group's coordinator moved (a cluster failover): the client
        // looks it up again, as Kafka's do after NOT_COORDINATOR.
        B::NotCoordinator { .. } => ResponseError::NotCoordinator,
        B::PartitionFenced(_) => ResponseError::KafkaStorageError,
        B::Throttled { .. } => ResponseError::ThrottlingQuotaExceeded,
        B::UnknownGroup { .. } => ResponseError::GroupIdNotFound,
        B::UnknownMember(_) => ResponseError::UnknownMemberId,
        B::StaleGeneration(_) => ResponseError::IllegalGeneration,
        B::RebalanceInProgress { .. } => ResponseError::RebalanceInProgress,
        B::OffsetOutOfRange { .. } | B::InvalidOffset(_) => ResponseError::OffsetOutOfRange,
        B::Timeout(_) => ResponseError::RequestTimedOut,
        B::Internal(_) | B::CircuitOpen { .. } => ResponseError::UnknownServerError,
        B::OutOfOrderSequence {
            sequence, expected, ..
        } => return sequence_error_code(*sequence, *expected),
        // Partition-level requests name topics, so a refusal is the topic's.
        B::AuthorizationFailed { .. } => ResponseError::TopicAuthorizationFailed,
        B::AuthenticationFailed(_) => ResponseError::SaslAuthenticationFailed,
    };
    code.code()
}

/// An idempotent producer's refused sequence as Kafka reports it. A
/// sequence below the next one expected (by less than half the sequence
/// space, so a wrap is not mistaken for it) was stored before, further back
/// than the last five batches the partition remembers:
/// DUPLICATE_SEQUENCE_NUMBER, which librdkafka and the Java client treat as
/// success (the record is in the log). Anything else is a gap (or an older
/// epoch): OUT_OF_ORDER_SEQUENCE_NUMBER. A duplicate of one of the last
/// five batches never gets here: the partition answers it with the
/// original offsets, as Kafka does.
pub fn sequence_error_code(sequence: u32, expected: u32) -> i16 {
    let behind = expected.wrapping_sub(sequence);
    if behind != 0 && behind < (1 << 30) && expected != 0 {
        ResponseError::DuplicateSequenceNumber.code()
    } else {
        ResponseError::OutOfOrderSequenceNumber.code()
    }
}

/// The Kafka error code a group request (join, sync, heartbeat, leave,
/// offsets) answers for a broker error.
pub fn group_error_code(e: &BrokerError) -> i16 {
    use BrokerError as B;
    let code = match e {
        B::ShuttingDown(_) => ResponseError::CoordinatorNotAvailable,
        B::InvalidRequest(_) => ResponseError::InvalidRequest,
        B::Internal(_) | B::PartitionFenced(_) => ResponseError::UnknownServerError,
        B::AuthorizationFailed { .. } => ResponseError::GroupAuthorizationFailed,
        other => return partition_error_code(other),
    };
    code.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fenced partition is KAFKA_STORAGE_ERROR; sequences behind the
    /// expected one are duplicates, ahead of it gaps.
    #[test]
    fn broker_errors_map_to_kafkas() {
        let fenced = BrokerError::PartitionFenced("EIO".into());
        assert_eq!(partition_error_code(&fenced), 56);
        let unknown = BrokerError::unknown_topic("t");
        assert_eq!(partition_error_code(&unknown), 3);
        let seq = |sequence, expected| BrokerError::OutOfOrderSequence {
            producer_id: 1,
            sequence,
            expected,
        };
        assert_eq!(partition_error_code(&seq(3, 10)), 46, "behind: duplicate");
        assert_eq!(partition_error_code(&seq(12, 10)), 45, "ahead: gap");
        assert_eq!(partition_error_code(&seq(5, 0)), 45, "older epoch");
        assert_eq!(group_error_code(&BrokerError::ShuttingDown("x".into())), 15);
    }

    /// The codes clients act on are Kafka's numbers (a mix-up here would
    /// make a client retry a terminal error or give up on a retryable one).
    #[test]
    fn codes_are_kafkas() {
        assert_eq!(
            KafkaError::UnsupportedVersion {
                api_key: 0,
                version: 99,
                min: 3,
                max: 9
            }
            .kafka_code(),
            35
        );
        assert_eq!(
            KafkaError::CrcMismatch {
                expected: 1,
                actual: 2
            }
            .kafka_code(),
            2
        );
        assert_eq!(KafkaError::UnsupportedCompression(7).kafka_code(), 76);
        assert_eq!(KafkaError::CorruptBatch(String::new()).kafka_code(), 87);
        assert_eq!(
            KafkaError::BatchTooLarge {
                what: "x",
                len: 2,
                max: 1
            }
            .kafka_code(),
            10
        );
    }
}
