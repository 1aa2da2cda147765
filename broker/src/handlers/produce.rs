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
    let mut per_partition = Vec::with_capacity(req.partitions.len());
    let mut at = 0;
    for p in &req.partitions {
        per_partition.push((p.partition, batches[at..at + p.batch_lens.len()].to_vec()));
        at += p.batch_lens.len();
    }
    let throttle = ctx
        .produce_quota
        .borrow_mut()
        .charge(frame.payload().len() as u64, now_ms());
    if throttle > 0 {
        ctx.throttle_ms.set(throttle);
        crate::metrics::add(&shard.metrics.throttle_ms, throttle);
    }
    let partitions = produce(&shard, &req.topic, per_partition, req.acks, req.timeout_ms).await;
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

/// Appends batches to partitions of `topic` (each on its owner) and returns
/// one response per partition, in the order given. Shared by the native and
/// the HTTP front doors.
pub async fn produce(
    shard: &Rc<Shard>,
    topic: &str,
    partitions: Vec<(u32, Vec<&[u8]>)>,
    acks: Acks,
    timeout_ms: u32,
) -> Vec<ProducePartitionResponse> {
    let started = Instant::now();
    let topic_known = shard.topics.borrow().get(topic).is_some();
    let mut tasks = Vec::with_capacity(partitions.len());
    for (partition, batches) in &partitions {
        if !topic_known {
            let msg = format!("topic {topic:?} does not exist");
            tasks.push(Task::Done(produce_error(
                *partition,
                ErrorCode::UnknownTopic,
                msg,
            )));
            continue;
        }
        tasks.push(start_partition(shard, topic, *partition, acks, batches));
    }
    let timeout = Duration::from_millis(u64::from(timeout_ms.clamp(1, PRODUCE_TIMEOUT_MS_MAX)));
    let mut out = Vec::with_capacity(tasks.len());
    for (task, (partition, _)) in tasks.into_iter().zip(&partitions) {
        out.push(task.finish(*partition, acks, started + timeout).await);
    }
    out
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
        match futures_lite::future::or(handle, timed_out).await {
            Some(resp) => resp,
            None => produce_error(
                partition,
                ErrorCode::Timeout,
                "acks not reached within the request timeout; the append may still complete".into(),
            ),
        }
    }
}
