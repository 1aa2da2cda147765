//! Owner-side partition operations, called directly when this shard owns
//! the partition and through the mesh when another shard forwarded it.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::fetch::FetchPartitionResponse;
use shoal_protocol::messages::offsets::{ListOffsetsPartitionResponse, OffsetSpec};
use shoal_protocol::messages::produce::{Acks, Durability, ProducePartitionResponse};
use shoal_storage::LogError;

use crate::metrics::add;
use crate::partition::{log_error_code, owned_from_shared, Partition};
use crate::shard::Shard;

/// Looks up a local partition or explains why it is not here.
pub fn partition(shard: &Shard, topic: &str, partition: u32) -> Result<Rc<Partition>, (ErrorCode, String)> {
    let topics = shard.topics.borrow();
    let Some(meta) = topics.get(topic) else {
        return Err((ErrorCode::UnknownTopic, format!("topic {topic:?} does not exist")));
    };
    if partition >= meta.config.partitions {
        let n = meta.config.partitions;
        return Err((
            ErrorCode::UnknownPartition,
            format!("topic {topic:?} has {n} partitions"),
        ));
    }
    shard.partition(topic, partition).ok_or_else(|| {
        (
            ErrorCode::NotOwner,
            format!("shard {} does not own {topic}/{partition}", shard.id),
        )
    })
}

/// Appends forwarded batches (already shared bytes) to a local partition.
pub async fn produce(
    shard: &Rc<Shard>,
    topic: &str,
    partition_id: u32,
    acks: Acks,
    batches: Vec<Bytes>,
) -> ProducePartitionResponse {
    let partition = match partition(shard, topic, partition_id) {
        Ok(p) => p,
        Err((code, message)) => return produce_error(partition_id, code, message),
    };
    let owned = batches.into_iter().map(owned_from_shared).collect();
    let resp = partition.produce(owned).await;
    count_produced(shard, &resp);
    if acks == Acks::None {
        return ProducePartitionResponse {
            durability: Durability::Accepted,
            ..resp
        };
    }
    resp
}

/// Counts stored records for metrics.
pub fn count_produced(shard: &Shard, resp: &ProducePartitionResponse) {
    shard.metrics.count_error(resp.error);
    if resp.error == 0 && resp.last_offset.wrapping_add(1) > resp.base_offset {
        add(&shard.metrics.records_in, resp.last_offset + 1 - resp.base_offset);
    }
}

pub fn produce_error(partition: u32, code: ErrorCode, message: String) -> ProducePartitionResponse {
    ProducePartitionResponse {
        partition,
        error: code.to_wire(),
        message,
        base_offset: 0,
        last_offset: 0,
        log_start: 0,
        append_time_ms: 0,
        durability: Durability::Accepted,
        duplicates: Vec::new(),
    }
}

/// Reads a local partition from `offset`, waiting up to `max_wait_ms` for
/// data when the consumer is caught up.
pub async fn fetch(
    shard: &Rc<Shard>,
    topic: &str,
    partition_id: u32,
    offset: u64,
    max_bytes: u32,
    max_wait_ms: u32,
) -> (FetchPartitionResponse, Vec<Bytes>) {
    let partition = match partition(shard, topic, partition_id) {
        Ok(p) => p,
        Err((code, message)) => return (fetch_error(partition_id, code, message), Vec::new()),
    };
    let log = match partition.log() {
        Ok(log) => log.clone(),
        Err((code, message)) => return (fetch_error(partition_id, code, message), Vec::new()),
    };
    if max_wait_ms > 0 && log.high_watermark() <= offset && offset <= log.log_end_offset() {
        // Either new data, a fenced or closed log (the read below reports
        // it), or the wait running out ends the long poll.
        let wait = async {
            let _ = log.wait_for_offset(offset).await;
        };
        futures_lite::future::or(
            wait,
            crate::runtime::sleep(Duration::from_millis(u64::from(max_wait_ms))),
        )
        .await;
    }
    match log.read(offset, max_bytes as usize).await {
        Ok(read) => {
            let mut lens = Vec::with_capacity(read.batches.len());
            let mut out = Vec::with_capacity(read.batches.len());
            for b in read.batches {
                add(&shard.metrics.records_out, b.next_offset - b.base_offset);
                lens.push(b.bytes.len() as u32);
                out.push(b.bytes);
            }
            let resp = FetchPartitionResponse {
                partition: partition_id,
                error: 0,
                message: String::new(),
                high_watermark: read.high_watermark,
                log_start: read.log_start_offset,
                log_end: log.log_end_offset(),
                batch_lens: lens,
            };
            (resp, out)
        }
        Err(e) => {
            let code = match &e {
                LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
                other => log_error_code(other),
            };
            let mut resp = fetch_error(partition_id, code, e.to_string());
            resp.log_start = log.log_start_offset();
            resp.log_end = log.log_end_offset();
            resp.high_watermark = log.high_watermark();
            (resp, Vec::new())
        }
    }
}

pub fn fetch_error(partition: u32, code: ErrorCode, message: String) -> FetchPartitionResponse {
    FetchPartitionResponse {
        partition,
        error: code.to_wire(),
        message,
        high_watermark: 0,
        log_start: 0,
        log_end: 0,
        batch_lens: Vec::new(),
    }
}

/// Resolves an offset spec on a local partition.
pub async fn list_offsets(
    shard: &Rc<Shard>,
    topic: &str,
    partition_id: u32,
    spec: OffsetSpec,
) -> ListOffsetsPartitionResponse {
    let fail = |code: ErrorCode| ListOffsetsPartitionResponse {
        partition: partition_id,
        error: code.to_wire(),
        offset: 0,
        timestamp_ms: None,
    };
    let partition = match partition(shard, topic, partition_id) {
        Ok(p) => p,
        Err((code, _)) => return fail(code),
    };
    let log = match partition.log() {
        Ok(log) => log.clone(),
        Err((code, _)) => return fail(code),
    };
    let offset = match spec {
        OffsetSpec::Earliest => Ok(log.log_start_offset()),
        OffsetSpec::Latest => Ok(log.high_watermark()),
        OffsetSpec::Timestamp(ts) => log
            .offset_for_timestamp(ts)
            .await
            .map(|o| o.unwrap_or_else(|| log.high_watermark())),
    };
    match offset {
        Ok(offset) => {
            let timestamp_ms = log.append_time_of(offset).await.ok().flatten();
            ListOffsetsPartitionResponse {
                partition: partition_id,
                error: 0,
                offset,
                timestamp_ms,
            }
        }
        Err(e) => fail(log_error_code(&e)),
    }
}
