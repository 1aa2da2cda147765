//! Produce: split the payload per partition, append on the owners, reply
//! with offsets and the durability reached.
//!
//! Partitions owned here are appended directly; others are forwarded over
//! the mesh (counted; the shard-aware client never needs it). Each
//! partition's work runs in its own task so one partition's fsync does not
//! hold up another's. With acks `none` the reply goes out before the append
//! (at-most-once); otherwise the reply waits for every partition, up to the
//! request's timeout (after which the append still completes, but the reply
//! says `Timeout`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_protocol::codec::split_payload;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::Frame;
use shoal_protocol::messages::produce::{Acks, ProducePartitionResponse, ProduceRequest, ProduceResponse};

use super::local::{self, produce_error};
use super::{decode, respond, Failure};
use crate::connection::{ConnectionCtx, Reply};
use crate::mesh::{ShardCall, ShardReply};
use crate::partition::owned_batch;
use crate::runtime::now_ms;
use crate::shard::Shard;

/// Longest a produce may ask the broker to wait for its acks.
pub const PRODUCE_TIMEOUT_MS_MAX: u32 = 300_000;

pub async fn handle(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let started = Instant::now();
    let req: ProduceRequest = decode(frame)?;
    let shard = ctx.shard.clone();
    let lens = req.partitions.iter().flat_map(|p| p.batch_lens.iter().copied());
    let batches = split_payload(frame.payload(), lens)?;
    let topic_known = shard.topics.borrow().get(&req.topic).is_some();
    let mut tasks = Vec::with_capacity(req.partitions.len());
    let mut at = 0;
    for p in &req.partitions {
        let mine = &batches[at..at + p.batch_lens.len()];
        at += p.batch_lens.len();
        if !topic_known {
            let msg = format!("topic {:?} does not exist", req.topic);
            tasks.push(Task::Done(produce_error(
                p.partition,
                ErrorCode::UnknownTopic,
                msg,
            )));
            continue;
        }
        tasks.push(start_partition(&shard, &req.topic, p.partition, req.acks, mine));
    }
    let throttle = ctx
        .produce_quota
        .borrow_mut()
        .charge(frame.payload().len() as u64, now_ms());
    if throttle > 0 {
        ctx.throttle_ms.set(throttle);
        crate::metrics::add(&shard.metrics.throttle_ms, throttle);
    }
    let timeout = Duration::from_millis(u64::from(req.timeout_ms.clamp(1, PRODUCE_TIMEOUT_MS_MAX)));
    let mut partitions = Vec::with_capacity(tasks.len());
    for (task, p) in tasks.into_iter().zip(&req.partitions) {
        partitions.push(task.finish(p.partition, req.acks, started + timeout).await);
    }
    shard
        .metrics
        .record_produce_latency(started.elapsed().as_micros() as u64);
    respond(
        frame.header().correlation_id,
        &ProduceResponse {
            throttle_time_ms: throttle as u32,
            partitions,
        },
        Vec::new(),
    )
}

/// One partition's share of a produce request.
enum Task {
    Done(ProducePartitionResponse),
    Running(glommio::task::JoinHandle<ProducePartitionResponse>),
}

fn start_partition(shard: &Rc<Shard>, topic: &str, partition: u32, acks: Acks, batches: &[&[u8]]) -> Task {
    let owner = shard.owner(topic, partition);
    let shard = shard.clone();
    let topic = topic.to_string();
    let handle = if owner == shard.id {
        let owned: Vec<_> = batches.iter().map(|b| owned_batch(b)).collect();
        glommio::spawn_local(async move {
            match local::partition(&shard, &topic, partition) {
                Ok(p) => {
                    let resp = p.produce(owned).await;
                    local::count_produced(&shard, &resp);
                    resp
                }
                Err((code, message)) => produce_error(partition, code, message),
            }
        })
        .detach()
    } else {
        let shared: Vec<_> = batches.iter().map(|b| Bytes::copy_from_slice(b)).collect();
        glommio::spawn_local(async move {
            let call = ShardCall::Produce {
                topic,
                partition,
                acks,
                batches: shared,
            };
            match shard.on(owner, call).await {
                Ok(ShardReply::Produce(resp)) => resp,
                Ok(_) => produce_error(partition, ErrorCode::Internal, "mesh reply mismatch".into()),
                Err(e) => produce_error(partition, ErrorCode::NotOwner, e.to_string()),
            }
        })
        .detach()
    };
    Task::Running(handle)
}

impl Task {
    async fn finish(self, partition: u32, acks: Acks, deadline: Instant) -> ProducePartitionResponse {
        let handle = match self {
            Task::Done(resp) => return resp,
            Task::Running(handle) => handle,
        };
        if acks == Acks::None {
            // At-most-once: the append goes on in the background.
            return ProducePartitionResponse {
                durability: shoal_protocol::messages::produce::Durability::Accepted,
                ..produce_error(partition, ErrorCode::None, String::new())
            };
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let timed_out = async {
            crate::runtime::sleep(left).await;
            None
        };
        match futures_lite::future::or(async { handle.await }, timed_out).await {
            Some(resp) => resp,
            None => produce_error(
                partition,
                ErrorCode::Timeout,
                "acks not reached within the request timeout; the append may still complete".into(),
            ),
        }
    }
}
