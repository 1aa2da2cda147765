//! Poll, ack, nack, commit and seek: thin wrappers over [`crate::delivery`].

use std::rc::Rc;

use shoal_protocol::frame::Frame;
use shoal_protocol::messages::delivery::*;

use super::group::serve;
use super::{decode, respond, Failure};
use crate::connection::{ConnectionCtx, Reply};
use crate::delivery;

/// The poll reply carries the delivered batches as its payload.
pub async fn poll(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: PollRequest = decode(frame)?;
    let (resp, batches) = delivery::poll(&ctx.shard, req).await;
    respond(frame.header().correlation_id, &resp, batches)
}

pub async fn ack(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, AckRequest, delivery::ack)
}

pub async fn nack(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, NackRequest, delivery::nack)
}

pub async fn commit(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, CommitOffsetRequest, delivery::commit)
}

pub async fn seek(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, SeekRequest, delivery::seek)
}
