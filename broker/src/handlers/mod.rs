//! Request handlers: one file per request kind, plus [`local`] for the
//! owner-side partition operations that both direct requests and
//! cross-shard calls use.
//!
//! [`dispatch`] checks the frame (direction, known key, exact version),
//! decodes the meta through validated access, and routes it. Every failure
//! becomes a reply with a stable error code; nothing here closes the
//! connection or panics on client input.

pub mod delivery;
pub mod dlq;
pub mod fetch;
pub mod group;
pub mod local;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod stats;
pub mod topic_admin;

use std::rc::Rc;

use shoal_protocol::api::ApiKey;
use shoal_protocol::codec::{self, Message};
use shoal_protocol::error::{ErrorCode, ProtocolError};
use shoal_protocol::frame::Frame;

use crate::connection::{ConnectionCtx, Reply};

/// Serves one request frame and returns the reply to send.
pub async fn dispatch(ctx: &Rc<ConnectionCtx>, frame: Frame) -> Reply {
    let header = *frame.header();
    let cid = header.correlation_id;
    let shard = &ctx.shard;
    shard.metrics.count_request(header.api_key);
    let Some(key) = ApiKey::from_wire(header.api_key) else {
        return error_reply(
            ctx,
            cid,
            ErrorCode::UnknownApi,
            format!("unknown API key {}", header.api_key),
        );
    };
    if header.is_response() {
        return error_reply(
            ctx,
            cid,
            ErrorCode::InvalidRequest,
            "a response frame was sent as a request".into(),
        );
    }
    if header.api_version != key.version() {
        let message = format!(
            "{key} version {} is not supported (this broker speaks {})",
            header.api_version,
            key.version()
        );
        return error_reply(ctx, cid, ErrorCode::UnsupportedVersion, message);
    }
    if shard.shutting_down.get() && key != ApiKey::Handshake {
        return error_reply(
            ctx,
            cid,
            ErrorCode::ShuttingDown,
            "the broker is shutting down".into(),
        );
    }
    let result = match key {
        ApiKey::Handshake => metadata::handshake(ctx, &frame).await,
        ApiKey::Metadata => metadata::metadata(ctx, &frame).await,
        ApiKey::CreateTopic => topic_admin::create(ctx, &frame).await,
        ApiKey::DeleteTopic => topic_admin::delete(ctx, &frame).await,
        ApiKey::ListTopics => topic_admin::list(ctx, &frame).await,
        ApiKey::DescribeTopic => topic_admin::describe(ctx, &frame).await,
        ApiKey::Produce => produce::handle(ctx, &frame).await,
        ApiKey::Fetch => fetch::handle(ctx, &frame).await,
        ApiKey::ListOffsets => offsets::handle(ctx, &frame).await,
        ApiKey::JoinGroup => group::join(ctx, &frame).await,
        ApiKey::Heartbeat => group::heartbeat(ctx, &frame).await,
        ApiKey::LeaveGroup => group::leave(ctx, &frame).await,
        ApiKey::ListGroups => group::list(ctx, &frame).await,
        ApiKey::Poll => delivery::poll(ctx, &frame).await,
        ApiKey::Ack => delivery::ack(ctx, &frame).await,
        ApiKey::Nack => delivery::nack(ctx, &frame).await,
        ApiKey::CommitOffset => delivery::commit(ctx, &frame).await,
        ApiKey::Seek => delivery::seek(ctx, &frame).await,
        ApiKey::GroupStats => stats::group(ctx, &frame).await,
        ApiKey::TopicStats => stats::topic(ctx, &frame).await,
        ApiKey::QuarantineBrowse => dlq::browse(ctx, &frame).await,
        ApiKey::QuarantineCounts => dlq::counts(ctx, &frame).await,
        ApiKey::QuarantineRedrive => dlq::redrive(ctx, &frame).await,
        ApiKey::QuarantinePurge => dlq::purge(ctx, &frame).await,
        other => Err(Failure::new(
            ErrorCode::UnknownApi,
            format!("{other} is not served by this broker build"),
        )),
    };
    match result {
        Ok(reply) => reply,
        Err(f) => error_reply(ctx, cid, f.code, f.message),
    }
}

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

fn error_reply(ctx: &ConnectionCtx, cid: u32, code: ErrorCode, message: String) -> Reply {
    ctx.shard.metrics.count_error(code.to_wire());
    let head = codec::encode_error(cid, code.to_wire(), &message)
        .or_else(|_| codec::encode_error(cid, code.to_wire(), "error"))
        .expect("the error frame always encodes");
    Reply::head_only(head)
}
