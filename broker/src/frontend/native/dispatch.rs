//! Dispatch: checks a request frame (direction, known key, exact version)
//! and routes it to the handler of its kind. Every failure becomes a reply
//! with a stable error code; nothing here closes the connection or panics
//! on client input.

use std::rc::Rc;

use shoal_protocol::api::ApiKey;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::Frame;

use super::codec::{error_reply, Failure};
use super::context::{ConnectionCtx, Reply};
use super::{authenticate, security_admin};
use super::{delivery, dlq, fetch, group, metadata, offsets, produce, stats, topic_admin};
use crate::metadata::acl::Principal;

/// Serves one request frame and returns the reply to send.
pub async fn dispatch(ctx: &Rc<ConnectionCtx>, frame: Frame) -> Reply {
    let header = *frame.header();
    let cid = header.correlation_id;
    let shard = &ctx.shard;
    shard.metrics().count_request(header.api_key);
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
    if shard.is_shutting_down() && key != ApiKey::Handshake {
        return error_reply(
            ctx,
            cid,
            ErrorCode::ShuttingDown,
            "the broker is shutting down".into(),
        );
    }
    if needs_principal(key)
        && ctx.caller().principal == Principal::Anonymous
        && shard.security().service().authentication()
    {
        let message = "this broker requires authentication: authenticate (SCRAM-SHA-256) after the handshake";
        return error_reply(ctx, cid, ErrorCode::AuthenticationFailed, message.into());
    }
    let result = match key {
        ApiKey::Handshake => metadata::handshake(ctx, &frame).await,
        ApiKey::Metadata => metadata::metadata(ctx, &frame).await,
        ApiKey::CreateTopic => topic_admin::create(ctx, &frame).await,
        ApiKey::DeleteTopic => topic_admin::delete(ctx, &frame).await,
        ApiKey::ListTopics => topic_admin::list(ctx, &frame).await,
        ApiKey::DescribeTopic => topic_admin::describe(ctx, &frame).await,
        ApiKey::Produce => produce::handle(ctx, frame).await,
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
        ApiKey::Authenticate => authenticate::authenticate(ctx, &frame).await,
        ApiKey::SecurityAdmin => security_admin::handle(ctx, &frame).await,
        ApiKey::Leaders => metadata::leaders(ctx, &frame).await,
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

/// Whether a request needs an authenticated principal when authentication
/// is on: all but the handshake and the authentication steps themselves.
fn needs_principal(key: ApiKey) -> bool {
    !matches!(key, ApiKey::Handshake | ApiKey::Authenticate)
}
