//! Fetch: read stored Shoal batches through the shard's routing (from the
//! owner; the client fetches from the leader's port, so no hop) and send
//! them as uncompressed Kafka RecordBatch v2 with the same offsets.
//!
//! Long poll: every partition is read at once; if together they hold
//! fewer than `min_bytes` and `max_wait_ms` allows, the handler waits until
//! any of them has data at its fetch offset (or the wait ends), then reads
//! again. A batch holding the fetch offset is sent whole, records before
//! the offset included (Kafka clients skip them, as with compressed
//! batches).
//!
//! Size: the records of one response stop at the request's `max_bytes`
//! and each partition's at its `partition_max_bytes`, both capped by the
//! connection's fetch response limit (`limits.frame_bytes_max`); as in
//! Kafka, the first batch of the response is sent even when larger, so a
//! consumer always makes progress.
//!
//! Fetch sessions (KIP-227) are not kept: every response is a full one
//! with session id 0, which clients take as "no session" and keep sending
//! full requests; a request naming a session gets
//! FETCH_SESSION_ID_NOT_FOUND.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;

use super::context::KafkaConn;
use super::error::partition_error_code;
use super::records::{encode_shoal_batches, TimestampType};
use crate::error::BrokerResult;
use crate::ids::{Offset, PartitionId};
use crate::metadata::security::Caller;
use crate::partition::ReadBatches;
use crate::shard::{Access, FetchSpec, PartitionRead, Shard, FETCH_WAIT_MS_MAX};

/// One topic's reads: (partition index as sent, the read) in request order.
type TopicReads = Vec<(i32, BrokerResult<ReadBatches>)>;

pub async fn handle(conn: &Rc<KafkaConn>, version: i16, req: FetchRequest) -> FetchResponse {
    if version >= 7 && req.session_id != 0 {
        return FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let shard = &conn.shard;
    let budget = (req.max_bytes.max(1) as usize).min(conn.fetch_response_bytes_max);
    let caller = conn.caller();
    let access = shard.access(&caller);
    let mut reads = read_all(&access, &req, 0).await;
    let max_wait = (req.max_wait_ms.max(0) as u32).min(FETCH_WAIT_MS_MAX);
    if max_wait > 0 && bytes_of(&reads) < req.min_bytes.max(1) as usize && !any_error(&reads) {
        wait_for_data(shard, &caller, &req, Duration::from_millis(u64::from(max_wait))).await;
        reads = read_all(&access, &req, 0).await;
    }
    let mut left = budget;
    let mut first = true;
    let mut total = 0usize;
    let mut responses = Vec::with_capacity(reads.len());
    for (topic, partitions) in req.topics.iter().zip(reads) {
        let max_per_partition: Vec<i32> = topic.partitions.iter().map(|p| p.partition_max_bytes).collect();
        let partitions: Vec<PartitionData> = partitions
            .into_iter()
            .zip(max_per_partition)
            .map(|((index, read), partition_max)| {
                let limit = left.min(partition_max.max(0) as usize);
                let data = partition_data(conn, index, read, limit, &mut first);
                let sent = data.records.as_ref().map_or(0, Bytes::len);
                left = left.saturating_sub(sent);
                total += sent;
                data
            })
            .collect();
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    let throttle = conn.charge(&conn.fetch_quota, total as u64);
    FetchResponse::default()
        .with_responses(responses)
        .with_throttle_time_ms(throttle)
}

/// Reads every partition of the request (each topic through the shard's
/// fetch, which routes to the owners), waiting at most `max_wait_ms`.
async fn read_all(access: &Access<'_>, req: &FetchRequest, max_wait_ms: u32) -> Vec<TopicReads> {
    let mut out = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = topic.topic.0.as_str();
        let mut reads: TopicReads = Vec::with_capacity(topic.partitions.len());
        let mut spec = FetchSpec {
            reads: Vec::with_capacity(topic.partitions.len()),
            max_wait_ms,
            min_bytes: 1,
            max_bytes: req.max_bytes.max(1) as u32,
        };
        let mut slots = Vec::new();
        for p in &topic.partitions {
            match (u32::try_from(p.partition), u64::try_from(p.fetch_offset)) {
                (Ok(partition), Ok(offset)) => {
                    spec.reads.push(PartitionRead {
                        partition: PartitionId(partition),
                        offset: Offset(offset),
                        max_bytes: p.partition_max_bytes.max(1) as u32,
                    });
                    slots.push(reads.len());
                    reads.push((p.partition, Ok(ReadBatches::default())));
                }
                (Err(_), _) => reads.push((p.partition, Err(crate::error::BrokerError::unknown_topic(name)))),
                (Ok(_), Err(_)) => reads.push((
                    p.partition,
                    Err(crate::error::BrokerError::OffsetOutOfRange {
                        offset: 0,
                        log_start: 0,
                        log_end: 0,
                        high_watermark: 0,
                    }),
                )),
            }
        }
        if !spec.reads.is_empty() {
            let results = match access.fetch(name, &spec).await {
                Ok(results) => results.into_iter().map(|(_, r)| r).collect(),
                Err(e) => vec![Err(e); spec.reads.len()],
            };
            for (slot, result) in slots.into_iter().zip(results) {
                reads[slot].1 = result;
            }
        }
        out.push(reads);
    }
    out
}

fn bytes_of(reads: &[TopicReads]) -> usize {
    reads
        .iter()
        .flatten()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flat_map(|r| r.batches.iter().map(Bytes::len))
        .sum()
}

fn any_error(reads: &[TopicReads]) -> bool {
    reads.iter().flatten().any(|(_, r)| r.is_err())
}

/// Waits until any partition of the request has data at its fetch offset,
/// or `max_wait` passes: each topic waits in its own task, the first to
/// see data ends the wait.
async fn wait_for_data(shard: &Rc<Shard>, caller: &Rc<Caller>, req: &FetchRequest, max_wait: Duration) {
    let targets: Vec<(String, Vec<(PartitionId, Offset)>)> = req
        .topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .filter_map(|p| {
                    Some((
                        PartitionId(u32::try_from(p.partition).ok()?),
                        Offset(u64::try_from(p.fetch_offset).ok()?),
                    ))
                })
                .collect();
            (t.topic.0.to_string(), parts)
        })
        .filter(|(_, parts): &(String, Vec<_>)| !parts.is_empty())
        .collect();
    if let [(topic, parts)] = &targets[..] {
        shard.access(caller).wait_any(topic, parts, max_wait).await;
        return;
    }
    let (tx, rx) = glommio::channels::local_channel::new_bounded::<()>(targets.len().max(1));
    let tx = Rc::new(tx);
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|(topic, parts)| {
            let (shard, caller, tx) = (shard.clone(), caller.clone(), tx.clone());
            glommio::spawn_local(async move {
                shard.access(&caller).wait_any(&topic, &parts, max_wait).await;
                let _ = tx.try_send(());
            })
        })
        .collect();
    let deadline = crate::runtime::sleep(max_wait);
    futures_lite::future::or(async { rx.recv().await.unwrap_or(()) }, deadline).await;
    drop(tasks);
}

/// One partition's answer: its stored batches as Kafka batches, up to
/// `limit` bytes (the response's first batch is always sent whole).
fn partition_data(
    conn: &KafkaConn,
    index: i32,
    read: BrokerResult<ReadBatches>,
    limit: usize,
    first: &mut bool,
) -> PartitionData {
    let data = PartitionData::default().with_partition_index(index);
    let read = match read {
        Ok(read) => read,
        Err(e) => {
            let data = data.with_error_code(partition_error_code(&e)).with_records(None);
            return match e {
                crate::error::BrokerError::OffsetOutOfRange {
                    log_start,
                    high_watermark,
                    ..
                } => data
                    .with_high_watermark(high_watermark as i64)
                    .with_last_stable_offset(high_watermark as i64)
                    .with_log_start_offset(log_start as i64),
                _ => data.with_high_watermark(-1),
            };
        }
    };
    // An uncompressed stored batch is larger than its Kafka encoding, so
    // the stored size (within the limit) usually holds the answer; when it
    // does not (an lz4-stored batch), `encode_shoal_batch` reserves each
    // batch's exact encoded size first, so the buffer grows at most once
    // per batch.
    let stored_bytes: usize = read.batches.iter().map(Bytes::len).sum();
    let mut out = BytesMut::with_capacity(if *first {
        stored_bytes
    } else {
        stored_bytes.min(limit)
    });
    for stored in &read.batches {
        if !*first && out.len() >= limit {
            break;
        }
        let before = out.len();
        if let Err(e) = encode_shoal_batches(stored, &conn.batch_limits, TimestampType::CreateTime, &mut out)
        {
            // A stored batch that does not read back is corruption on this
            // partition: report it rather than skip records silently.
            tracing::error!(partition = index, error = %e, "a stored batch does not convert for a Kafka fetch");
            out.truncate(before);
            return data
                .with_error_code(ResponseError::KafkaStorageError.code())
                .with_records(None);
        }
        if !*first && out.len() > limit {
            out.truncate(before);
            break;
        }
        *first = false;
    }
    data.with_high_watermark(read.high_watermark as i64)
        .with_last_stable_offset(read.high_watermark as i64)
        .with_log_start_offset(read.log_start as i64)
        .with_records(Some(out.freeze()))
}
