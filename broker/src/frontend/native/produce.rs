//! Produce: split the payload per partition, append on the owners, reply
//! with offsets and the durability reached.
//!
//! The shard routes each partition to its owner (the shard-aware client
//! sends to the owner's port, so no hop). With acks `none` the reply goes
//! out before the append (at-most-once); otherwise it waits for every
//! partition, up to the request's timeout (after which the append still
//! completes, but the reply says `Timeout`).

use std::rc::Rc;
use std::time::Instant;

use shoal_protocol::codec::split_payload_owned;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::Frame;
use shoal_protocol::messages::produce::{
    Durability, ProducePartitionResponse, ProduceRequest, ProduceResponse,
};

use super::codec::{decode, respond, Failure};
use super::context::{ConnectionCtx, Reply};
use crate::error::BrokerResult;
use crate::ids::PartitionId;
use crate::shard::Produced;

/// Takes the frame: its batches go to the log in the buffer they arrived in.
pub async fn handle(ctx: &Rc<ConnectionCtx>, frame: Frame) -> Result<Reply, Failure> {
    let started = Instant::now();
    let req: ProduceRequest = decode(&frame)?;
    let shard = ctx.shard.clone();
    let correlation_id = frame.header().correlation_id;
    let payload_len = frame.payload().len();
    let lens = req.partitions.iter().flat_map(|p| p.batch_lens.iter().copied());
    let mut batches = split_payload_owned(frame.into_payload(), lens)?.into_iter();
    let per_partition = req
        .partitions
        .iter()
        .map(|p| {
            (
                PartitionId(p.partition),
                batches.by_ref().take(p.batch_lens.len()).collect(),
            )
        })
        .collect();
    let throttle = ctx.charge(&ctx.produce_quota, payload_len as u64);
    let caller = ctx.caller();
    let outcomes = shard
        .access(&caller)
        .produce(&req.topic, per_partition, req.acks, req.timeout_ms)
        .await;
    let partitions = outcomes
        .into_iter()
        .map(|(p, outcome)| encode_partition(ctx, p, outcome))
        .collect();
    shard
        .metrics()
        .record_produce_latency(started.elapsed().as_micros() as u64);
    respond(
        correlation_id,
        &ProduceResponse {
            throttle_time_ms: throttle as u32,
            partitions,
        },
        Vec::new(),
    )
}

/// One partition's outcome as the wire carries it.
pub fn encode_partition(
    ctx: &ConnectionCtx,
    partition: PartitionId,
    outcome: BrokerResult<Produced>,
) -> ProducePartitionResponse {
    let mut resp = ProducePartitionResponse {
        partition: partition.get(),
        error: ErrorCode::None.to_wire(),
        message: String::new(),
        base_offset: 0,
        last_offset: 0,
        log_start: 0,
        append_time_ms: 0,
        durability: Durability::Accepted,
        duplicates: Vec::new(),
    };
    match outcome {
        Ok(Produced::Accepted) => {}
        Ok(Produced::Stored(a)) => {
            resp.base_offset = a.base_offset;
            resp.last_offset = a.last_offset();
            resp.log_start = a.log_start;
            resp.append_time_ms = a.append_time_ms;
            resp.durability = a.durability;
            resp.duplicates = a.duplicates;
        }
        Err(e) => {
            ctx.shard.metrics().count_error(e.code());
            resp.error = e.code().to_wire();
            resp.message = e.to_string();
        }
    }
    resp
}
