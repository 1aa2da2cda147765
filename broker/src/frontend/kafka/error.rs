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

#[cfg(test)]
mod tests {
    use super::*;

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
