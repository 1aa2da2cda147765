//! Encoding for the native front end: decoding a request's meta, encoding
//! a response, and putting a [`BrokerError`] into a response's `error` and
//! `message` fields (the native protocol's form of an error).

use shoal_protocol::codec::{self, Message};
use shoal_protocol::error::{ErrorCode, ProtocolError};
use shoal_protocol::frame::Frame;
use shoal_protocol::messages::delivery::*;
use shoal_protocol::messages::dlq::*;
use shoal_protocol::messages::group::*;
use shoal_protocol::messages::stats::*;

use super::context::{ConnectionCtx, Reply};
use crate::error::{BrokerError, BrokerResult};

/// A request that could not be answered with its own response type.
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: String) -> Self {
        Failure { code, message }
    }
}

impl From<ProtocolError> for Failure {
    fn from(e: ProtocolError) -> Self {
        let code = e.code().unwrap_or(ErrorCode::CorruptFrame);
        Failure::new(code, e.to_string())
    }
}

/// Decodes a request's meta into its owned form (validated access).
pub fn decode<M: Message>(frame: &Frame) -> Result<M, Failure> {
    codec::decode::<M>(frame).map_err(|e| Failure::new(ErrorCode::CorruptFrame, e.to_string()))
}

/// Encodes a response with its payload pieces.
pub fn respond<M: Message>(cid: u32, msg: &M, payload: Vec<bytes::Bytes>) -> Result<Reply, Failure> {
    let payload_len = payload.iter().map(|p| p.len()).sum();
    let head = codec::encode_head(msg, cid, payload_len)?;
    Ok(Reply { head, payload })
}

/// The error frame for a request answered with no response of its own.
pub fn error_reply(ctx: &ConnectionCtx, cid: u32, code: ErrorCode, message: String) -> Reply {
    ctx.shard.metrics().count_error(code);
    let head = codec::encode_error(cid, code.to_wire(), &message)
        .or_else(|_| codec::encode_error(cid, code.to_wire(), "error"))
        .expect("the error frame always encodes");
    Reply::head_only(head)
}

/// A response type that can carry a whole-request error.
pub trait Failed {
    fn failed(code: ErrorCode, message: String) -> Self;

    /// The response for `e`; types with fields an error fills in (a poll's
    /// generation and throttle) override it.
    fn from_error(e: &BrokerError) -> Self
    where
        Self: Sized,
    {
        Self::failed(e.code(), e.to_string())
    }
}

/// The response a service result becomes on the wire, counting an error.
pub fn encode_result<T: Failed>(ctx: &ConnectionCtx, result: BrokerResult<T>) -> T {
    result.unwrap_or_else(|e| {
        ctx.shard.metrics().count_error(e.code());
        T::from_error(&e)
    })
}

macro_rules! failed_with_error_message {
    ($($ty:ty { $($field:ident: $value:expr),* $(,)? }),* $(,)?) => {
        $(impl Failed for $ty {
            fn failed(code: ErrorCode, message: String) -> Self {
                #[allow(clippy::needless_update)]
                Self { error: code.to_wire(), message, $($field: $value),* }
            }
        })*
    };
}

failed_with_error_message! {
    JoinGroupResponse { member_id: String::new(), generation: 0, assignment: Vec::new(), heartbeat_interval_ms: 0 },
    HeartbeatResponse { generation: 0, assignment: Vec::new(), added: Vec::new(), revoked: Vec::new() },
    LeaveGroupResponse {},
    AckResponse { partitions: Vec::new() },
    NackResponse { partitions: Vec::new() },
    CommitOffsetResponse { partitions: Vec::new() },
    SeekResponse { partitions: Vec::new() },
    QuarantineRedriveResponse { matched: 0, redriven: 0, skipped_loop_guard: 0, next_cursor: None },
    QuarantineBrowseResponse { entries: Vec::new(), next_cursor: None },
    QuarantineCountsResponse { total: 0, counts: Vec::new() },
    QuarantinePurgeResponse { purged: 0 },
    TopicStatsResponse { topic: String::new(), partitions: Vec::new(), groups: Vec::new() },
}

impl Failed for PollResponse {
    fn failed(code: ErrorCode, message: String) -> Self {
        PollResponse {
            error: code.to_wire(),
            message,
            generation: 0,
            throttle_time_ms: 0,
            lease_ms: 0,
            batches: Vec::new(),
        }
    }

    /// A rebalance names the group's generation; an open breaker says when
    /// to poll again.
    fn from_error(e: &BrokerError) -> Self {
        let mut resp = Self::failed(e.code(), e.to_string());
        match e {
            BrokerError::RebalanceInProgress { generation } => resp.generation = *generation,
            BrokerError::CircuitOpen {
                retry_in_ms,
                generation,
            } => {
                resp.generation = *generation;
                resp.throttle_time_ms = *retry_in_ms;
            }
            _ => {}
        }
        resp
    }
}

impl Failed for GroupStatsResponse {
    fn failed(code: ErrorCode, message: String) -> Self {
        GroupStatsResponse {
            error: code.to_wire(),
            message,
            group: String::new(),
            state: GroupState::Empty,
            generation: 0,
            members: Vec::new(),
            partitions: Vec::new(),
            circuit: CircuitState::Closed,
            retry_budget_permille: 0,
            retry_budget_used_permille: 0,
            deliveries_total: 0,
            acks_total: 0,
            nacks_total: 0,
            retries_total: 0,
            quarantined_total: 0,
        }
    }
}
