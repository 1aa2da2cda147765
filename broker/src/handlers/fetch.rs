//! Fetch: read batches from partitions, long-polling when caught up.
//!
//! The reply's payload is the stored batch bytes themselves (shared with the
//! batch cache or the disk read buffer), never re-encoded. One partition is
//! read on its owner (directly, or over the mesh when the request landed on
//! another shard). With several partitions the first pass reads them all at
//! once; if that found nothing and the request allows waiting, the fetch
//! waits for the first partition to get data (or the deadline) and reads
//! again.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::Frame;
use shoal_protocol::messages::fetch::{FetchPartitionResponse, FetchRequest, FetchResponse};

use super::local::{self, fetch_error};
use super::{decode, respond, Failure};
use crate::connection::{ConnectionCtx, Reply};
use crate::mesh::{ShardCall, ShardReply};
use crate::runtime::now_ms;
use crate::shard::Shard;

/// Longest long-poll a fetch may ask for.
pub const FETCH_WAIT_MS_MAX: u32 = 60_000;

pub async fn handle(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: FetchRequest = decode(frame)?;
    let shard = ctx.shard.clone();
    let results = fetch(&shard, &req).await;
    let mut partitions = Vec::with_capacity(results.len());
    let mut payload = Vec::new();
    let mut total = 0usize;
    for (resp, batches) in results {
        total += batches.iter().map(Bytes::len).sum::<usize>();
        partitions.push(resp);
        payload.extend(batches);
    }
    let throttle = ctx.fetch_quota.borrow_mut().charge(total as u64, now_ms());
    if throttle > 0 {
        ctx.throttle_ms.set(throttle);
        crate::metrics::add(&shard.metrics.throttle_ms, throttle);
    }
    respond(
        frame.header().correlation_id,
        &FetchResponse {
            throttle_time_ms: throttle as u32,
            partitions,
        },
        payload,
    )
}

/// Reads the requested partitions (each on its owner), long-polling as the
/// request allows. Shared by the native and the HTTP front doors.
pub async fn fetch(shard: &Rc<Shard>, req: &FetchRequest) -> Vec<(FetchPartitionResponse, Vec<Bytes>)> {
    if shard.topics.borrow().get(&req.topic).is_none() {
        let msg = format!("topic {:?} does not exist", req.topic);
        return req
            .partitions
            .iter()
            .map(|p| {
                (
                    fetch_error(p.partition, ErrorCode::UnknownTopic, msg.clone()),
                    Vec::new(),
                )
            })
            .collect();
    }
    let max_wait = req.max_wait_ms.min(FETCH_WAIT_MS_MAX);
    let single = req.partitions.len() == 1;
    // A single partition long-polls on its owner; several are read at once
    // first and waited on only if all came back empty.
    let mut results = read_all(shard, req, if single { max_wait } else { 0 }).await;
    let bytes: usize = results
        .iter()
        .map(|(_, b)| b.iter().map(Bytes::len).sum::<usize>())
        .sum();
    if !single && max_wait > 0 && bytes < (req.min_bytes.max(1) as usize) {
        wait_any(shard, req, max_wait).await;
        results = read_all(shard, req, 0).await;
    }
    results
}

async fn read_all(
    shard: &Rc<Shard>,
    req: &FetchRequest,
    max_wait: u32,
) -> Vec<(FetchPartitionResponse, Vec<Bytes>)> {
    let mut budget = req.max_bytes.max(1);
    let mut out = Vec::with_capacity(req.partitions.len());
    for p in &req.partitions {
        let max_bytes = p.max_bytes.min(budget).max(1);
        let (resp, batches) = read_one(shard, &req.topic, p.partition, p.offset, max_bytes, max_wait).await;
        let got: usize = batches.iter().map(Bytes::len).sum();
        budget = budget.saturating_sub(got as u32);
        out.push((resp, batches));
    }
    out
}

async fn read_one(
    shard: &Rc<Shard>,
    topic: &str,
    partition: u32,
    offset: u64,
    max_bytes: u32,
    max_wait: u32,
) -> (FetchPartitionResponse, Vec<Bytes>) {
    let owner = shard.owner(topic, partition);
    if owner == shard.id {
        return local::fetch(shard, topic, partition, offset, max_bytes, max_wait).await;
    }
    let call = ShardCall::Fetch {
        topic: topic.to_string(),
        partition,
        offset,
        max_bytes,
        max_wait_ms: max_wait,
    };
    match shard.on(owner, call).await {
        Ok(ShardReply::Fetch(resp, batches)) => (resp, batches),
        Ok(_) => (
            fetch_error(partition, ErrorCode::Internal, "mesh reply mismatch".into()),
            Vec::new(),
        ),
        Err(e) => (
            fetch_error(partition, ErrorCode::NotOwner, e.to_string()),
            Vec::new(),
        ),
    }
}

/// Waits until any requested partition has data at its offset, or
/// `max_wait` ms pass. Each partition long-polls in its own task; the first
/// to finish with data wakes the fetch, and dropping the rest cancels them.
async fn wait_any(shard: &Rc<Shard>, req: &FetchRequest, max_wait: u32) {
    let (tx, rx) = glommio::channels::local_channel::new_bounded::<()>(req.partitions.len().max(1));
    let tx = Rc::new(tx);
    let mut tasks = Vec::with_capacity(req.partitions.len());
    for p in &req.partitions {
        let (shard, tx, topic) = (shard.clone(), tx.clone(), req.topic.clone());
        let (partition, offset) = (p.partition, p.offset);
        tasks.push(glommio::spawn_local(async move {
            let (resp, batches) = read_one(&shard, &topic, partition, offset, 1, max_wait).await;
            if resp.error != 0 || !batches.is_empty() {
                let _ = tx.try_send(());
            }
        }));
    }
    let deadline = crate::runtime::sleep(Duration::from_millis(u64::from(max_wait)));
    futures_lite::future::or(async { rx.recv().await.unwrap_or(()) }, deadline).await;
    drop(tasks);
}
