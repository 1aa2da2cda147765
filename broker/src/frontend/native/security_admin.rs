//! Users, tokens and ACLs over the native protocol (`shoal user`, `shoal
//! token`, `shoal acl`): decoded here, authorized (cluster `admin`),
//! applied and audited behind the shard's access gate.

use std::rc::Rc;

use shoal_protocol::frame::Frame;
use shoal_protocol::messages::security::{SecurityAdminRequest, SecurityAdminResponse};

use super::codec::{decode, respond, Failure};
use super::context::{ConnectionCtx, Reply};

pub async fn handle(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: SecurityAdminRequest = decode(frame)?;
    let caller = ctx.caller();
    let resp = match ctx.shard.access(&caller).security_admin(req.op).await {
        Ok(resp) => resp,
        Err(e) => {
            ctx.shard.metrics().count_error(e.code());
            SecurityAdminResponse {
                error: e.code().to_wire(),
                message: e.to_string(),
                ..SecurityAdminResponse::default()
            }
        }
    };
    respond(frame.header().correlation_id, &resp, Vec::new())
}
