//! Produce: each partition's Kafka RecordBatch is validated and turned into
//! a Shoal batch here, at the edge, then appended on the partition's owner
//! through the shard's routing (the client sends to the leader's port, so
//! no hop) exactly as a native produce is.
//!
//! Acks map to what the broker actually waits for:
//! - `acks=0`: nothing is answered (Kafka clients read no response). The
//!   batches are converted and handed to the partitions without waiting;
//!   if one cannot be (corrupt, unknown topic), the connection is closed,
//!   as Kafka's broker does, so the client learns of it.
//! - `acks=1` and `acks=-1` (all): the answer waits for the append to
//!   reach the topic's acknowledged durability (`flush = always`: the
//!   fdatasync covering it). On one node the leader's durability is the
//!   topic's full durability, so both wait for the same thing; once
//!   replication exists `acks=all` will wait for the quorum.
//!
//! Idempotent producers: the batch's producer id, epoch and base sequence
//! travel in the Shoal batch header, and the partition service checks them
//! against the last five batches of that producer. A retried batch among
//! them is answered with its original offsets and no error (as Kafka's
//! broker does); an older one gets DUPLICATE_SEQUENCE_NUMBER, a gap
//! OUT_OF_ORDER_SEQUENCE_NUMBER ([`super::error::sequence_error_code`]).

use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use shoal_protocol::messages::produce::Acks;

use super::context::{Answer, KafkaConn};
use super::error::partition_error_code;
use super::records::convert_produced_batch;
use crate::error::BrokerResult;
use crate::ids::PartitionId;
use crate::metrics::counters::kafka as kafka_metrics;
use crate::shard::Produced;

/// What the dispatcher sends for a produce.
pub enum Outcome {
    Respond(ProduceResponse),
    /// acks=0: no response ([`Answer::Silent`]), or close on failure.
    NoResponse(Answer),
}

/// One partition of the request after conversion: its Shoal batch (handed
/// to the partition as it is, without a copy), or the Kafka error code that
/// refused it.
struct Converted {
    index: i32,
    batch: Result<BytesMut, i16>,
}

pub async fn handle(conn: &Rc<KafkaConn>, version: i16, req: ProduceRequest) -> Outcome {
    let started = Instant::now();
    let acks = match req.acks {
        0 => Acks::None,
        1 => Acks::Leader,
        -1 => Acks::Quorum,
        _ => return Outcome::Respond(refuse_all(req, ResponseError::InvalidRequiredAcks.code())),
    };
    let bytes: usize = req
        .topic_data
        .iter()
        .flat_map(|t| {
            t.partition_data
                .iter()
                .map(|p| p.records.as_ref().map_or(0, Bytes::len))
        })
        .sum();
    let throttle = conn.charge(&conn.produce_quota, bytes as u64);
    let timeout_ms = req.timeout_ms.max(1) as u32;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let converted: Vec<Converted> = topic
            .partition_data
            .iter()
            .map(|p| Converted {
                index: p.index,
                batch: convert(conn, p.records.as_ref()),
            })
            .collect();
        topics.push((name, converted));
    }
    let outcomes = append_all(conn, topics, acks, timeout_ms).await;
    if acks == Acks::None {
        let failed = outcomes
            .iter()
            .flat_map(|(_, parts)| parts)
            .any(|p| p.error_code != 0);
        return Outcome::NoResponse(if failed { Answer::Close } else { Answer::Silent });
    }
    kafka_metrics::record_produce_latency(started.elapsed().as_micros() as u64);
    let responses = outcomes
        .into_iter()
        .map(|(name, partitions)| {
            TopicProduceResponse::default()
                .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(name)))
                .with_partition_responses(partitions)
        })
        .collect();
    let _ = version;
    Outcome::Respond(
        ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle),
    )
}

/// A partition's records field as a Shoal batch (exactly one Kafka batch
/// per partition, as produce v3+ requires).
fn convert(conn: &KafkaConn, records: Option<&Bytes>) -> Result<BytesMut, i16> {
    let Some(records) = records else {
        return Err(ResponseError::InvalidRecord.code());
    };
    let batch = convert_produced_batch(records, &conn.record_limits).map_err(|e| {
        tracing::debug!(error = %e, "kafka batch refused");
        e.kafka_code()
    })?;
    // Vec → Bytes → BytesMut hands the one buffer on: the Bytes is unique,
    // so neither step copies.
    Ok(BytesMut::from(Bytes::from(batch)))
}

/// Appends every topic's converted batches (topics concurrently, each
/// through the shard's routing) and returns each partition's response in
/// request order.
async fn append_all(
    conn: &Rc<KafkaConn>,
    topics: Vec<(String, Vec<Converted>)>,
    acks: Acks,
    timeout_ms: u32,
) -> Vec<(String, Vec<PartitionProduceResponse>)> {
    if topics.len() == 1 {
        let (name, parts) = topics.into_iter().next().expect("one topic");
        let responses = append_topic(conn.clone(), name.clone(), parts, acks, timeout_ms).await;
        return vec![(name, responses)];
    }
    // Spawned in request order, so each topic's appends reach their
    // partitions in the order the requests arrived.
    let tasks: Vec<_> = topics
        .into_iter()
        .map(|(name, parts)| {
            let conn = conn.clone();
            let task_name = name.clone();
            let task = glommio::spawn_local(append_topic(conn, task_name, parts, acks, timeout_ms));
            (name, task)
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for (name, task) in tasks {
        out.push((name, task.await));
    }
    out
}

async fn append_topic(
    conn: Rc<KafkaConn>,
    topic: String,
    parts: Vec<Converted>,
    acks: Acks,
    timeout_ms: u32,
) -> Vec<PartitionProduceResponse> {
    let mut responses: Vec<PartitionProduceResponse> = parts
        .iter()
        .map(|p| PartitionProduceResponse::default().with_index(p.index))
        .collect();
    let mut batches = Vec::new();
    let mut slots = Vec::new();
    for (slot, p) in parts.into_iter().enumerate() {
        match (p.batch, u32::try_from(p.index)) {
            (Ok(batch), Ok(index)) => {
                batches.push((PartitionId(index), vec![batch]));
                slots.push(slot);
            }
            (Err(code), _) => responses[slot].error_code = code,
            (Ok(_), Err(_)) => responses[slot].error_code = ResponseError::UnknownTopicOrPartition.code(),
        }
    }
    if !batches.is_empty() {
        let caller = conn.caller();
        let outcomes = conn
            .shard
            .access(&caller)
            .produce(&topic, batches, acks, timeout_ms)
            .await;
        for ((_, outcome), slot) in outcomes.into_iter().zip(slots) {
            fill(&mut responses[slot], outcome);
        }
    }
    responses
}

/// One partition's outcome in Kafka's terms.
fn fill(resp: &mut PartitionProduceResponse, outcome: BrokerResult<Produced>) {
    match outcome {
        Ok(Produced::Accepted) => {}
        Ok(Produced::Stored(a)) => {
            // Every record a duplicate of a batch stored before: the
            // original offsets, as Kafka answers a retried batch.
            resp.base_offset = if a.records == 0 {
                a.duplicates
                    .iter()
                    .map(|d| d.original_offset)
                    .min()
                    .unwrap_or(a.base_offset) as i64
            } else {
                a.base_offset as i64
            };
            resp.log_start_offset = a.log_start as i64;
            resp.log_append_time_ms = -1;
        }
        Err(e) => {
            tracing::debug!(error = %e, "kafka produce refused");
            resp.error_code = partition_error_code(&e);
            resp.error_message = Some(StrBytes::from_string(e.to_string()));
            resp.base_offset = -1;
        }
    }
}

/// Every partition refused with `code` (acks out of range).
fn refuse_all(req: ProduceRequest, code: i16) -> ProduceResponse {
    let responses = req
        .topic_data
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_data
                .iter()
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(code)
                        .with_base_offset(-1)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
