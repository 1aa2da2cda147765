//! Error codes on the wire and the protocol's error type.
//!
//! # Error codes
//!
//! Every response that can fail carries an `error: u16` field holding an
//! [`ErrorCode`]. The numbers are stable: a code is never renumbered or
//! reused, new codes are only appended. A client that receives a number it
//! does not know maps it to [`ErrorCode::Unknown`] through
//! [`ErrorCode::from_wire`] and keeps the raw number for the message.
//!
//! Each code is either *retryable* (the same request may succeed later
//! without any change: the broker was busy, a rebalance was running, a
//! partition moved) or *terminal* (the request itself is wrong, or the state
//! it names is gone; resending it unchanged fails the same way). The client
//! retries only retryable codes, and only within the caller's timeout.
//!
//! A request the broker cannot answer with its own response type (unknown
//! API key, unsupported version, undecodable meta) is answered with an
//! [`crate::messages::handshake::ErrorResponse`] frame (API key
//! [`crate::api::ApiKey::Error`]), whose layout is frozen forever.
//!
//! # The error type
//!
//! [`ProtocolError`] is what every codec and client call returns. It keeps
//! the classes apart: framing ([`FrameError`]), a meta section that fails
//! validation, I/O, a broker-reported [`ErrorCode`], and client-side limits
//! (timeouts, closed connection).

use std::sync::Arc;

use crate::batch::BatchError;
use crate::frame::FrameError;

/// A stable error code carried in responses. `0` means success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[repr(u16)]
pub enum ErrorCode {
    /// Success.
    None = 0,
    /// Terminal: the topic does not exist (or is being deleted).
    UnknownTopic = 1,
    /// Terminal: the partition number is outside the topic's partitions.
    UnknownPartition = 2,
    /// Terminal: a topic with that name already exists.
    TopicExists = 3,
    /// Terminal: a field of the request is invalid (the message says which).
    InvalidRequest = 4,
    /// Terminal: the broker does not speak this API version; see the handshake.
    UnsupportedVersion = 5,
    /// Terminal: the frame is longer than the broker accepts.
    FrameTooLarge = 6,
    /// Terminal: a record or batch is over the broker's or topic's size limit.
    RecordTooLarge = 7,
    /// Terminal: a batch failed its CRC, framing or archive check.
    CorruptBatch = 8,
    /// Retryable: the request reached a shard that does not own the partition
    /// and forwarding failed; refresh metadata and resend to the owner.
    NotOwner = 9,
    /// Terminal until an operator acts: the partition's storage failed (an
    /// fsync or write error) and it is fenced read-only.
    PartitionFenced = 10,
    /// Retryable: the broker is over a quota or its in-flight bound; wait
    /// `throttle_time_ms` and resend.
    Throttled = 11,
    /// Terminal: the consumer group does not exist.
    UnknownGroup = 12,
    /// Terminal for that member id: the member is not (or no longer) in the
    /// group; join again to get a new id.
    UnknownMember = 13,
    /// Terminal for that generation: the member was fenced (session expired
    /// or the group moved on); join again.
    StaleGeneration = 14,
    /// Retryable: the group is rebalancing; heartbeat to get the new
    /// assignment and retry.
    RebalanceInProgress = 15,
    /// Terminal: the offset is before the log start or after the log end.
    OffsetOutOfRange = 16,
    /// Terminal: the offset is not one the group delivered or may commit.
    InvalidOffset = 17,
    /// Informational, not a failure: a record was a duplicate within the
    /// dedup window; the reply names the original offset.
    Duplicate = 18,
    /// Retryable: the broker could not finish within the request's timeout
    /// (the write may still complete; acks was not met in time).
    Timeout = 19,
    /// Retryable on another broker or after restart: the broker is draining.
    ShuttingDown = 20,
    /// Retryable at most once: an unexpected broker fault (the message says
    /// which); report it if it repeats.
    Internal = 21,
    /// Terminal: no quarantine entry matches the id or filter.
    QuarantineEntryNotFound = 22,
    /// Terminal: the group does not subscribe to the topic.
    NotSubscribed = 23,
    /// Retryable: the group's circuit breaker is open; delivery is paused
    /// until it half-opens.
    CircuitOpen = 24,
    /// Terminal: the idempotent producer's sequence or epoch is out of order.
    OutOfOrderSequence = 25,
    /// Terminal: the request used an API key the broker does not know.
    UnknownApi = 26,
    /// Terminal: the frame or its meta section did not decode.
    CorruptFrame = 27,
    /// Retryable: the partition's shard is still recovering it (the broker
    /// just started); retry shortly.
    PartitionRecovering = 28,
    /// Retryable later: the broker refused the connection (too many from
    /// this address or on this shard); close idle connections or wait.
    TooManyConnections = 29,
    /// Terminal: authentication failed (unknown user, wrong password or
    /// token, a malformed SCRAM exchange, too many failed attempts from this
    /// address, or a request sent before authenticating). HTTP 401.
    AuthenticationFailed = 30,
    /// Terminal: the authenticated principal has no ACL allowing this
    /// operation on this resource. HTTP 403.
    AuthorizationFailed = 31,
    /// Retryable: this node's replica of a replicated partition is not the
    /// raft leader; the message names the leader's node and address when
    /// known. Refresh and send to the leader. (30 and 31 are reserved for
    /// the security codes.)
    NotLeader = 32,
    /// Retryable: this node does not coordinate the group now (on a
    /// cluster, a group's coordinator is the leader of its shard's
    /// replicated state partition, and it moves on failover); the message
    /// names the coordinator's node and address when known. Find the
    /// coordinator (the client asks `Leaders` for `__group_state`) and
    /// send it there.
    NotCoordinator = 33,
    /// Terminal: a code this client does not know (sent by a newer broker).
    Unknown = 0xffff,
}

/// Every code, in numeric order (tests and the CLI use this).
pub const ERROR_CODES_ALL: &[ErrorCode] = &[
    ErrorCode::None,
    ErrorCode::UnknownTopic,
    ErrorCode::UnknownPartition,
    ErrorCode::TopicExists,
    ErrorCode::InvalidRequest,
    ErrorCode::UnsupportedVersion,
    ErrorCode::FrameTooLarge,
    ErrorCode::RecordTooLarge,
    ErrorCode::CorruptBatch,
    ErrorCode::NotOwner,
    ErrorCode::PartitionFenced,
    ErrorCode::Throttled,
    ErrorCode::UnknownGroup,
    ErrorCode::UnknownMember,
    ErrorCode::StaleGeneration,
    ErrorCode::RebalanceInProgress,
    ErrorCode::OffsetOutOfRange,
    ErrorCode::InvalidOffset,
    ErrorCode::Duplicate,
    ErrorCode::Timeout,
    ErrorCode::ShuttingDown,
    ErrorCode::Internal,
    ErrorCode::QuarantineEntryNotFound,
    ErrorCode::NotSubscribed,
    ErrorCode::CircuitOpen,
    ErrorCode::OutOfOrderSequence,
    ErrorCode::UnknownApi,
    ErrorCode::CorruptFrame,
    ErrorCode::PartitionRecovering,
    ErrorCode::TooManyConnections,
    ErrorCode::AuthenticationFailed,
    ErrorCode::AuthorizationFailed,
    ErrorCode::NotLeader,
    ErrorCode::NotCoordinator,
    ErrorCode::Unknown,
];

impl ErrorCode {
    /// The number sent on the wire.
    pub fn to_wire(self) -> u16 {
        self as u16
    }

    /// Maps a wire number back; numbers this build does not know become
    /// [`ErrorCode::Unknown`].
    pub fn from_wire(code: u16) -> ErrorCode {
        ERROR_CODES_ALL
            .iter()
            .copied()
            .find(|c| c.to_wire() == code)
            .unwrap_or(ErrorCode::Unknown)
    }

    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }

    /// Whether resending the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotOwner
                | ErrorCode::Throttled
                | ErrorCode::RebalanceInProgress
                | ErrorCode::Timeout
                | ErrorCode::ShuttingDown
                | ErrorCode::Internal
                | ErrorCode::CircuitOpen
                | ErrorCode::PartitionRecovering
                | ErrorCode::TooManyConnections
                | ErrorCode::NotLeader
                | ErrorCode::NotCoordinator
        )
    }

    /// A short stable name (snake case), used by the CLI's JSON output.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::None => "none",
            ErrorCode::UnknownTopic => "unknown_topic",
            ErrorCode::UnknownPartition => "unknown_partition",
            ErrorCode::TopicExists => "topic_exists",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::RecordTooLarge => "record_too_large",
            ErrorCode::CorruptBatch => "corrupt_batch",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::PartitionFenced => "partition_fenced",
            ErrorCode::Throttled => "throttled",
            ErrorCode::UnknownGroup => "unknown_group",
            ErrorCode::UnknownMember => "unknown_member",
            ErrorCode::StaleGeneration => "stale_generation",
            ErrorCode::RebalanceInProgress => "rebalance_in_progress",
            ErrorCode::OffsetOutOfRange => "offset_out_of_range",
            ErrorCode::InvalidOffset => "invalid_offset",
            ErrorCode::Duplicate => "duplicate",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::QuarantineEntryNotFound => "quarantine_entry_not_found",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::CircuitOpen => "circuit_open",
            ErrorCode::OutOfOrderSequence => "out_of_order_sequence",
            ErrorCode::UnknownApi => "unknown_api",
            ErrorCode::CorruptFrame => "corrupt_frame",
            ErrorCode::PartitionRecovering => "partition_recovering",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::AuthenticationFailed => "authentication_failed",
            ErrorCode::AuthorizationFailed => "authorization_failed",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::NotCoordinator => "not_coordinator",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// A one-line human description.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::None => "success",
            ErrorCode::UnknownTopic => "the topic does not exist",
            ErrorCode::UnknownPartition => "the partition does not exist in this topic",
            ErrorCode::TopicExists => "a topic with this name already exists",
            ErrorCode::InvalidRequest => "the request is invalid",
            ErrorCode::UnsupportedVersion => "the broker does not support this API version",
            ErrorCode::FrameTooLarge => "the frame is larger than the broker accepts",
            ErrorCode::RecordTooLarge => "a record or batch is larger than allowed",
            ErrorCode::CorruptBatch => "a record batch failed its integrity checks",
            ErrorCode::NotOwner => "this shard does not own the partition and forwarding failed",
            ErrorCode::PartitionFenced => "the partition is fenced read-only after a storage error",
            ErrorCode::Throttled => "the request was throttled; retry after the throttle time",
            ErrorCode::UnknownGroup => "the consumer group does not exist",
            ErrorCode::UnknownMember => "the member is not part of the group",
            ErrorCode::StaleGeneration => "the member's generation is stale (it was fenced)",
            ErrorCode::RebalanceInProgress => "the group is rebalancing",
            ErrorCode::OffsetOutOfRange => "the offset is outside the retained log",
            ErrorCode::InvalidOffset => "the offset is not valid for this operation",
            ErrorCode::Duplicate => "the record is a duplicate of an earlier one",
            ErrorCode::Timeout => "the broker did not finish within the timeout",
            ErrorCode::ShuttingDown => "the broker is shutting down",
            ErrorCode::Internal => "internal broker error",
            ErrorCode::QuarantineEntryNotFound => "no quarantine entry matches",
            ErrorCode::NotSubscribed => "the group does not subscribe to this topic",
            ErrorCode::CircuitOpen => "the group's circuit breaker is open; delivery is paused",
            ErrorCode::OutOfOrderSequence => "the producer sequence is out of order",
            ErrorCode::UnknownApi => "the broker does not know this API key",
            ErrorCode::CorruptFrame => "the frame could not be decoded",
            ErrorCode::PartitionRecovering => "the partition is still being recovered; retry shortly",
            ErrorCode::TooManyConnections => "the broker refused the connection: too many connections",
            ErrorCode::AuthenticationFailed => "authentication failed",
            ErrorCode::AuthorizationFailed => "the principal is not authorized for this operation",
            ErrorCode::NotLeader => "this node is not the partition's leader; send to the leader",
            ErrorCode::NotCoordinator => {
                "this node does not coordinate the group; send to the group's coordinator"
            }
            ErrorCode::Unknown => "an error code this client does not know",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.to_wire())
    }
}

/// Everything a codec or client call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProtocolError {
    /// The byte stream is not a valid frame; the connection cannot continue.
    #[error("invalid frame: {0}")]
    Frame(#[from] FrameError),
    /// The meta section failed validated rkyv access (corrupt or from a
    /// different message version).
    #[error("invalid {api} meta section: {reason}")]
    BadMeta { api: &'static str, reason: String },
    /// The meta could not be archived (only on absurd inputs).
    #[error("cannot encode {api}: {reason}")]
    Encode { api: &'static str, reason: String },
    /// The frame is valid but is not the message the caller expected.
    #[error("unexpected frame: expected {expected}, got api key {api_key} (response={response})")]
    UnexpectedFrame {
        expected: &'static str,
        api_key: u16,
        response: bool,
    },
    /// The frame names a version of the API this build cannot decode.
    #[error("unsupported version {version} of {api} (this build speaks {supported})")]
    UnsupportedVersion {
        api: &'static str,
        version: u16,
        supported: u16,
    },
    /// The payload does not match the batch lengths the meta lists.
    #[error("payload is {payload_len} bytes but the meta lists {listed_len}")]
    PayloadMismatch { payload_len: usize, listed_len: usize },
    /// A record batch in a payload failed validation.
    #[error("record batch: {0}")]
    Batch(#[from] BatchError),
    /// The broker answered with an error code.
    #[error("broker error {code}: {message}")]
    Broker {
        code: ErrorCode,
        raw: u16,
        message: String,
    },
    /// A socket operation failed.
    #[error("i/o error: {0}")]
    Io(Arc<std::io::Error>),
    /// No reply arrived within the client's timeout.
    #[error("timed out after {elapsed_ms} ms waiting for {what}")]
    Timeout { what: &'static str, elapsed_ms: u64 },
    /// The connection closed (or failed earlier) with requests in flight.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The TLS handshake failed (wrong CA, expired or mismatched
    /// certificate, a plaintext port, a refused client certificate).
    #[error("TLS with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    /// SCRAM authentication failed on the client's side (the broker's
    /// signature did not verify, or a malformed exchange).
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// A client-side argument is invalid; nothing was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl From<std::io::Error> for ProtocolError {
    fn from(e: std::io::Error) -> Self {
        ProtocolError::Io(Arc::new(e))
    }
}

impl ProtocolError {
    /// Builds a broker error from a wire code and message.
    pub fn broker(raw: u16, message: impl Into<String>) -> Self {
        ProtocolError::Broker {
            code: ErrorCode::from_wire(raw),
            raw,
            message: message.into(),
        }
    }

    /// The broker error code, if this is a broker error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ProtocolError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the caller may resend the request unchanged.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProtocolError::Broker { code, .. } => code.is_retryable(),
            ProtocolError::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// Turns a wire error code into `Ok(())` or a broker error.
pub fn check(raw: u16, message: &str) -> Result<(), ProtocolError> {
    if raw == ErrorCode::None.to_wire() {
        Ok(())
    } else {
        let code = ErrorCode::from_wire(raw);
        let text = if message.is_empty() {
            code.message()
        } else {
            message
        };
        Err(ProtocolError::broker(raw, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes are stable: each maps back to itself and numbers are unique.
    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in ERROR_CODES_ALL {
            assert_eq!(ErrorCode::from_wire(code.to_wire()), code);
            assert!(seen.insert(code.to_wire()), "duplicate number for {code:?}");
            assert!(!code.message().is_empty());
        }
        assert_eq!(ErrorCode::from_wire(4242), ErrorCode::Unknown);
        assert_eq!(ErrorCode::UnknownTopic.to_wire(), 1);
        assert_eq!(ErrorCode::CorruptFrame.to_wire(), 27);
    }
}
