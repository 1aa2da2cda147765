//! Group membership requests: join, heartbeat, leave, list.

use std::rc::Rc;

use shoal_protocol::frame::Frame;
use shoal_protocol::messages::group::*;

use super::codec::{decode, encode_result, respond, Failure};
use super::context::{ConnectionCtx, Reply};

/// Decodes a request, runs a shard method, and encodes its response (an
/// error in the response's own `error` field).
macro_rules! serve {
    ($ctx:expr, $frame:expr, $req:ty, $method:ident) => {{
        let req: $req = decode($frame)?;
        let caller = $ctx.caller();
        let result = $ctx.shard.access(&caller).$method(req).await;
        let resp = encode_result($ctx, result);
        respond($frame.header().correlation_id, &resp, Vec::new())
    }};
}
pub(crate) use serve;

pub async fn join(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, JoinGroupRequest, group_join)
}

pub async fn heartbeat(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, HeartbeatRequest, group_heartbeat)
}

pub async fn leave(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, LeaveGroupRequest, group_leave)
}

pub async fn list(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let _: ListGroupsRequest = decode(frame)?;
    let caller = ctx.caller();
    let resp = ctx
        .shard
        .access(&caller)
        .list_groups()
        .await
        .unwrap_or_else(|_| ListGroupsResponse { groups: Vec::new() });
    respond(frame.header().correlation_id, &resp, Vec::new())
}
