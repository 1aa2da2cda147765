//! Poll, ack, nack, commit and seek.

use std::rc::Rc;

use shoal_protocol::frame::Frame;
use shoal_protocol::messages::delivery::*;

use super::codec::{decode, encode_result, respond, Failed, Failure};
use super::context::{ConnectionCtx, Reply};
use super::group::serve;

/// The poll reply carries the delivered batches as its payload.
pub async fn poll(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: PollRequest = decode(frame)?;
    let (resp, batches) = match ctx.shard.access(&ctx.caller()).group_poll(req).await {
        Ok(polled) => polled,
        Err(e) => {
            ctx.shard.metrics().count_error(e.code());
            (PollResponse::from_error(&e), Vec::new())
        }
    };
    respond(frame.header().correlation_id, &resp, batches)
}

pub async fn ack(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, AckRequest, group_ack)
}

pub async fn nack(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, NackRequest, group_nack)
}

pub async fn commit(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, CommitOffsetRequest, group_commit)
}

pub async fn seek(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, SeekRequest, group_seek)
}
