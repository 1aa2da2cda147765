//! Group membership requests: thin wrappers over [`crate::delivery`].

use std::rc::Rc;

use shoal_protocol::frame::Frame;
use shoal_protocol::messages::group::*;

use super::{decode, respond, Failure};
use crate::connection::{ConnectionCtx, Reply};
use crate::delivery;

/// Decodes a request, runs a service function, and encodes its response.
macro_rules! serve {
    ($ctx:expr, $frame:expr, $req:ty, $service:path) => {{
        let req: $req = decode($frame)?;
        let resp = $service(&$ctx.shard, req).await;
        respond($frame.header().correlation_id, &resp, Vec::new())
    }};
}
pub(crate) use serve;

pub async fn join(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, JoinGroupRequest, delivery::join)
}

pub async fn heartbeat(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, HeartbeatRequest, delivery::heartbeat)
}

pub async fn leave(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, LeaveGroupRequest, delivery::leave)
}

pub async fn list(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, ListGroupsRequest, delivery::list_groups)
}
