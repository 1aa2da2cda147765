//! List offsets: earliest, latest, or the first offset at a time.

use std::rc::Rc;

use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::Frame;
use shoal_protocol::messages::offsets::{
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse,
};

use super::{decode, local, respond, Failure};
use crate::connection::{ConnectionCtx, Reply};
use crate::mesh::{ShardCall, ShardReply};

pub async fn handle(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: ListOffsetsRequest = decode(frame)?;
    let shard = ctx.shard.clone();
    if shard.topics.borrow().get(&req.topic).is_none() {
        let resp = ListOffsetsResponse {
            error: ErrorCode::UnknownTopic.to_wire(),
            message: format!("topic {:?} does not exist", req.topic),
            partitions: Vec::new(),
        };
        return respond(frame.header().correlation_id, &resp, Vec::new());
    }
    let mut partitions = Vec::with_capacity(req.partitions.len());
    for p in &req.partitions {
        let owner = shard.owner(&req.topic, p.partition);
        let resp = if owner == shard.id {
            local::list_offsets(&shard, &req.topic, p.partition, p.spec).await
        } else {
            let call = ShardCall::ListOffsets {
                topic: req.topic.clone(),
                partition: p.partition,
                spec: p.spec,
            };
            match shard.on(owner, call).await {
                Ok(ShardReply::ListOffsets(r)) => r,
                _ => ListOffsetsPartitionResponse {
                    partition: p.partition,
                    error: ErrorCode::NotOwner.to_wire(),
                    offset: 0,
                    timestamp_ms: None,
                },
            }
        };
        partitions.push(resp);
    }
    respond(
        frame.header().correlation_id,
        &ListOffsetsResponse {
            error: 0,
            message: String::new(),
            partitions,
        },
        Vec::new(),
    )
}
