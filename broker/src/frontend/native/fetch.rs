//! Fetch: read batches from partitions, long-polling when caught up.
//!
//! The reply's payload is the stored batch bytes themselves (shared with the
//! batch cache or the disk read buffer), never re-encoded.

use std::rc::Rc;

use bytes::Bytes;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::Frame;
use shoal_protocol::messages::fetch::{FetchPartitionResponse, FetchRequest, FetchResponse};

use super::codec::{decode, respond, Failure};
use super::context::{ConnectionCtx, Reply};
use crate::error::{BrokerError, BrokerResult};
use crate::ids::{Offset, PartitionId};
use crate::partition::ReadBatches;
use crate::shard::{FetchSpec, PartitionRead};

pub async fn handle(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: FetchRequest = decode(frame)?;
    let spec = FetchSpec {
        reads: req
            .partitions
            .iter()
            .map(|p| PartitionRead {
                partition: PartitionId(p.partition),
                offset: Offset(p.offset),
                max_bytes: p.max_bytes,
            })
            .collect(),
        max_wait_ms: req.max_wait_ms,
        min_bytes: req.min_bytes,
        max_bytes: req.max_bytes,
    };
    let results = match ctx.shard.access(&ctx.caller()).fetch(&req.topic, &spec).await {
        Ok(results) => results,
        // Every partition carries the topic's error.
        Err(e) => spec.reads.iter().map(|r| (r.partition, Err(e.clone()))).collect(),
    };
    let mut partitions = Vec::with_capacity(results.len());
    let mut payload = Vec::new();
    let mut total = 0usize;
    for (partition, result) in results {
        let (resp, batches) = encode_partition(ctx, partition, result);
        total += batches.iter().map(Bytes::len).sum::<usize>();
        partitions.push(resp);
        payload.extend(batches);
    }
    let throttle = ctx.charge(&ctx.fetch_quota, total as u64);
    respond(
        frame.header().correlation_id,
        &FetchResponse {
            throttle_time_ms: throttle as u32,
            partitions,
        },
        payload,
    )
}

/// One partition's read as the wire carries it, and its batches.
fn encode_partition(
    ctx: &ConnectionCtx,
    partition: PartitionId,
    result: BrokerResult<ReadBatches>,
) -> (FetchPartitionResponse, Vec<Bytes>) {
    let mut resp = FetchPartitionResponse {
        partition: partition.get(),
        error: ErrorCode::None.to_wire(),
        message: String::new(),
        high_watermark: 0,
        log_start: 0,
        log_end: 0,
        batch_lens: Vec::new(),
    };
    match result {
        Ok(read) => {
            resp.high_watermark = read.high_watermark;
            resp.log_start = read.log_start;
            resp.log_end = read.log_end;
            resp.batch_lens = read.batches.iter().map(|b| b.len() as u32).collect();
            (resp, read.batches)
        }
        Err(e) => {
            ctx.shard.metrics().count_error(e.code());
            if let BrokerError::OffsetOutOfRange {
                log_start,
                log_end,
                high_watermark,
                ..
            } = &e
            {
                resp.log_start = *log_start;
                resp.log_end = *log_end;
                resp.high_watermark = *high_watermark;
            }
            resp.error = e.code().to_wire();
            resp.message = e.to_string();
            (resp, Vec::new())
        }
    }
}
