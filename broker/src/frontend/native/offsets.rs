//! List offsets: earliest, latest, or the first offset at a time.

use std::rc::Rc;

use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::Frame;
use shoal_protocol::messages::offsets::{
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetSpec,
};

use super::codec::{decode, respond, Failure};
use super::context::{ConnectionCtx, Reply};
use crate::ids::PartitionId;
use crate::partition::OffsetQuery;

/// The partition service's query for a wire offset spec.
pub fn query_of(spec: OffsetSpec) -> OffsetQuery {
    match spec {
        OffsetSpec::Earliest => OffsetQuery::Earliest,
        OffsetSpec::Latest => OffsetQuery::Latest,
        OffsetSpec::Timestamp(ts) => OffsetQuery::Timestamp(ts),
    }
}

pub async fn handle(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: ListOffsetsRequest = decode(frame)?;
    let shard = ctx.shard.clone();
    if shard.topic(&req.topic).is_none() {
        let resp = ListOffsetsResponse {
            error: ErrorCode::UnknownTopic.to_wire(),
            message: format!("topic {:?} does not exist", req.topic),
            partitions: Vec::new(),
        };
        return respond(frame.header().correlation_id, &resp, Vec::new());
    }
    let mut partitions = Vec::with_capacity(req.partitions.len());
    for p in &req.partitions {
        let listed = shard
            .access(&ctx.caller())
            .list_offset(&req.topic, PartitionId(p.partition), query_of(p.spec))
            .await;
        partitions.push(match listed {
            Ok(l) => ListOffsetsPartitionResponse {
                partition: p.partition,
                error: ErrorCode::None.to_wire(),
                offset: l.offset.get(),
                timestamp_ms: l.timestamp_ms,
            },
            Err(e) => ListOffsetsPartitionResponse {
                partition: p.partition,
                error: e.code().to_wire(),
                offset: 0,
                timestamp_ms: None,
            },
        });
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
