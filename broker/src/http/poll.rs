//! Reading records over HTTP: `GET /topics/:name/poll`, either as a group
//! member (`group`, `member`, `generation`, `max`, `wait_ms`; each record
//! carries its `delivery_count` and stays leased to the member until acked,
//! nacked or its lease ends) or from a `partition` and `offset`; and
//! `POST /topics/:name/replay` from an offset or a timestamp, either for a
//! group (moves its committed position: a seek) or as a one-off read.
//!
//! A member's poll delivers from every topic the member subscribed to when
//! it joined (the delivery service polls per member, not per topic); each
//! record names its `topic`.
//!
//! Reads go through `handlers::fetch::fetch` (long-poll included), the same
//! path as native fetches; the stored batches are then opened with
//! validated access and turned into JSON records. A fetch returns whole
//! batches, so records below the requested offset are skipped here, and
//! the reply stops at `max` records; `next_offset` is where to continue.
//!
//! Values are UTF-8 strings by default; a record whose key, value or header
//! values are not valid UTF-8 is sent base64-encoded with
//! `"encoding": "base64"` on that record, so no byte is ever lost. Ask for
//! `encoding=base64` to get every record in base64.

use std::collections::BTreeMap;
use std::rc::Rc;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shoal_protocol::batch::{self, BatchIter, BatchLimits, BatchRecords};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::delivery::{PollRequest, SeekRequest, SeekTarget};
use shoal_protocol::messages::fetch::{FetchPartition, FetchRequest};
use shoal_protocol::messages::offsets::{ListOffsetsPartitionResponse, OffsetSpec};

use super::json::{ok, parse, HttpError, HttpResponse};
use super::messages::Encoding;
use super::router::HttpRequest;
use super::topics;
use crate::delivery;
use crate::handlers::fetch::{fetch, FETCH_WAIT_MS_MAX};
use crate::handlers::local;
use crate::mesh::{ShardCall, ShardReply};
use crate::shard::Shard;

/// Records returned when the request does not say.
const POLL_RECORDS_DEFAULT: u32 = 100;
/// Most records one poll or replay returns.
pub const POLL_RECORDS_MAX: u32 = 10_000;
/// Cap on batch bytes read for one poll or replay partition.
pub const POLL_BYTES_MAX: u32 = 4 << 20;

/// One record as JSON shows it.
#[derive(Debug, Serialize)]
pub struct RecordOut {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub message_id: Option<String>,
    pub encoding: &'static str,
    /// Set in group mode: 1 on first delivery, more on redeliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_count: Option<u32>,
}

/// What one partition read produced.
#[derive(Debug, Serialize)]
pub struct PartitionRead {
    pub partition: u32,
    pub records: Vec<RecordOut>,
    /// Offset to read next.
    pub next_offset: u64,
    pub high_watermark: u64,
    pub log_start: u64,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Turns stored record bytes into JSON strings in the requested encoding,
/// falling back to base64 for the whole record if any part is not UTF-8.
struct RawRecord<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(&'a str, &'a [u8])>,
}

impl RawRecord<'_> {
    fn encode(
        &self,
        want: Encoding,
    ) -> (
        Option<String>,
        Option<String>,
        BTreeMap<String, String>,
        &'static str,
    ) {
        let utf8 = want == Encoding::Utf8
            && self.key.is_none_or(|k| std::str::from_utf8(k).is_ok())
            && self.value.is_none_or(|v| std::str::from_utf8(v).is_ok())
            && self.headers.iter().all(|(_, v)| std::str::from_utf8(v).is_ok());
        let enc = |b: &[u8]| {
            if utf8 {
                String::from_utf8_lossy(b).into_owned()
            } else {
                b64(b)
            }
        };
        let headers = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), enc(v)))
            .collect();
        let name = if utf8 { "utf8" } else { "base64" };
        (self.key.map(enc), self.value.map(enc), headers, name)
    }
}

/// Opens fetched batches and returns the records at or after `from`, at
/// most `max` of them.
pub fn decode_records(
    topic: &str,
    partition: u32,
    batches: &[Bytes],
    from: u64,
    max: usize,
    enc: Encoding,
) -> Result<Vec<RecordOut>, HttpError> {
    let limits = BatchLimits::default();
    let mut out = Vec::new();
    for bytes in batches {
        for item in BatchIter::new(bytes, limits) {
            let (header, raw) =
                item.map_err(|e| HttpError::from_code(ErrorCode::CorruptBatch, e.to_string()))?;
            let opened = BatchRecords::open(raw, &header, &limits)
                .map_err(|e| HttpError::from_code(ErrorCode::CorruptBatch, e.to_string()))?;
            let records = opened
                .records()
                .map_err(|e| HttpError::from_code(ErrorCode::CorruptBatch, e.to_string()))?;
            for (i, rec) in records.iter().enumerate() {
                let offset = header.base_offset + i as u64;
                if offset < from {
                    continue;
                }
                if out.len() >= max {
                    return Ok(out);
                }
                let raw = RawRecord {
                    key: rec.key.as_ref().map(|k| k.as_slice()),
                    value: rec.value.as_ref().map(|v| v.as_slice()),
                    headers: rec
                        .headers
                        .iter()
                        .map(|h| (h.key.as_str(), h.value.as_slice()))
                        .collect(),
                };
                let (key, value, headers, encoding) = raw.encode(enc);
                out.push(RecordOut {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    timestamp_ms: batch::record_timestamp(&header, rec),
                    key,
                    value,
                    headers,
                    message_id: rec.message_id.as_ref().map(|m| m.to_string()),
                    encoding,
                    delivery_count: None,
                });
            }
        }
    }
    Ok(out)
}

/// Reads up to `max` records of one partition from `offset`, long-polling
/// up to `wait_ms` when there is nothing yet.
pub async fn read_partition(
    shard: &Rc<Shard>,
    topic: &str,
    partition: u32,
    offset: u64,
    max: u32,
    wait_ms: u32,
    enc: Encoding,
) -> Result<PartitionRead, HttpError> {
    let req = FetchRequest {
        topic: topic.to_string(),
        max_wait_ms: wait_ms.min(FETCH_WAIT_MS_MAX),
        min_bytes: 1,
        max_bytes: POLL_BYTES_MAX,
        partitions: vec![FetchPartition {
            partition,
            offset,
            max_bytes: POLL_BYTES_MAX,
        }],
    };
    let mut results = fetch(shard, &req).await;
    let (resp, batches) = results
        .pop()
        .ok_or_else(|| HttpError::from_code(ErrorCode::Internal, "fetch returned no partition"))?;
    if resp.error != 0 {
        return Err(HttpError::from_wire(resp.error, resp.message));
    }
    let records = decode_records(topic, partition, &batches, offset, max as usize, enc)?;
    let next_offset = records.last().map_or(offset, |r| r.offset + 1);
    Ok(PartitionRead {
        partition,
        records,
        next_offset,
        high_watermark: resp.high_watermark,
        log_start: resp.log_start,
    })
}

fn record_cap(max: Option<u32>) -> Result<u32, HttpError> {
    match max.unwrap_or(POLL_RECORDS_DEFAULT) {
        0 => Err(HttpError::invalid("max must be at least 1")),
        n => Ok(n.min(POLL_RECORDS_MAX)),
    }
}

/// `GET /topics/:name/poll?group=G&member=M&generation=N[&max=N][&wait_ms=W]`
/// or `?partition=P&offset=O[&max=N][&wait_ms=W]`; `&encoding=base64` for both.
pub async fn poll(shard: &Rc<Shard>, topic: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    topics::meta(shard, topic)?;
    let enc = Encoding::parse(req.query.get("encoding").map(String::as_str))?;
    let max = record_cap(req.param("max")?)?;
    let wait_ms = req.param::<u32>("wait_ms")?.unwrap_or(0);
    if let Some(group) = req.query.get("group") {
        return poll_group(shard, group, req, max, wait_ms, enc).await;
    }
    let partition = req
        .param::<u32>("partition")?
        .ok_or_else(|| HttpError::invalid("poll needs partition and offset"))?;
    let offset = req
        .param::<u64>("offset")?
        .ok_or_else(|| HttpError::invalid("poll needs partition and offset"))?;
    let read = read_partition(shard, topic, partition, offset, max, wait_ms, enc).await?;
    Ok(ok(&read))
}

/// A group member's poll through the delivery service.
async fn poll_group(
    shard: &Rc<Shard>,
    group: &str,
    req: &HttpRequest,
    max: u32,
    wait_ms: u32,
    enc: Encoding,
) -> Result<HttpResponse, HttpError> {
    let member = req.query.get("member").cloned().ok_or_else(|| {
        HttpError::invalid("a group poll needs member and generation (from /groups/:group/join)")
    })?;
    let generation = req.param::<u32>("generation")?.ok_or_else(|| {
        HttpError::invalid("a group poll needs member and generation (from /groups/:group/join)")
    })?;
    let poll = PollRequest {
        group: group.to_string(),
        member_id: member,
        generation,
        max_records: max,
        max_bytes: POLL_BYTES_MAX,
        max_wait_ms: wait_ms.min(FETCH_WAIT_MS_MAX),
    };
    let (resp, batches) = delivery::poll(shard, poll).await;
    super::groups::check(resp.error, &resp.message)?;
    let mut records = Vec::new();
    for (polled, bytes) in resp.batches.iter().zip(&batches) {
        let counts: BTreeMap<u64, u32> = polled
            .deliveries
            .iter()
            .map(|d| (d.offset, d.delivery_count))
            .collect();
        let from = counts.keys().next().copied().unwrap_or(0);
        let decoded = decode_records(
            &polled.topic,
            polled.partition,
            std::slice::from_ref(bytes),
            from,
            usize::MAX,
            enc,
        )?;
        for mut r in decoded {
            if let Some(count) = counts.get(&r.offset) {
                r.delivery_count = Some(*count);
                records.push(r);
            }
        }
    }
    #[derive(Serialize)]
    struct Delivered {
        generation: u32,
        lease_ms: u32,
        throttle_time_ms: u32,
        records: Vec<RecordOut>,
    }
    Ok(ok(&Delivered {
        generation: resp.generation,
        lease_ms: resp.lease_ms,
        throttle_time_ms: resp.throttle_time_ms,
        records,
    }))
}

/// `POST /topics/:name/replay` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// One partition; all of the topic's partitions when absent.
    partition: Option<u32>,
    offset: Option<u64>,
    timestamp_ms: Option<i64>,
    /// Cap on records per partition (one-off read only).
    max: Option<u32>,
    encoding: Option<String>,
    /// Move this group's position instead of reading.
    group: Option<String>,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy)]
pub enum ReplayStart {
    Offset(u64),
    /// The first record at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// Resolves an offset spec on the partition's owner.
pub async fn resolve_offset(
    shard: &Rc<Shard>,
    topic: &str,
    partition: u32,
    spec: OffsetSpec,
) -> Result<u64, HttpError> {
    let owner = shard.owner(topic, partition);
    let resp = if owner == shard.id {
        local::list_offsets(shard, topic, partition, spec).await
    } else {
        let call = ShardCall::ListOffsets {
            topic: topic.to_string(),
            partition,
            spec,
        };
        match shard.on(owner, call).await {
            Ok(ShardReply::ListOffsets(r)) => r,
            Ok(_) => return Err(HttpError::from_code(ErrorCode::Internal, "mesh reply mismatch")),
            Err(e) => return Err(HttpError::from_code(ErrorCode::ShuttingDown, e.to_string())),
        }
    };
    let ListOffsetsPartitionResponse { error, offset, .. } = resp;
    if error != 0 {
        return Err(HttpError::from_wire(error, ""));
    }
    Ok(offset)
}

/// A one-off re-read from an offset or timestamp; nothing is committed.
pub async fn replay(shard: &Rc<Shard>, topic: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let body: ReplayBody = parse(&req.body)?;
    let meta = topics::meta(shard, topic)?;
    let enc = Encoding::parse(body.encoding.as_deref())?;
    let max = record_cap(body.max)?;
    let start = match (body.offset, body.timestamp_ms) {
        (Some(o), None) => ReplayStart::Offset(o),
        (None, Some(t)) => ReplayStart::Timestamp(t),
        _ => {
            return Err(HttpError::invalid(
                "replay needs exactly one of offset or timestamp_ms",
            ))
        }
    };
    if let Some(group) = body.group {
        return replay_group(shard, topic, group, body.partition, start).await;
    }
    let partitions: Vec<u32> = match body.partition {
        Some(p) if p >= meta.config.partitions => {
            return Err(HttpError::from_code(
                ErrorCode::UnknownPartition,
                format!("topic {topic:?} has {} partitions", meta.config.partitions),
            ))
        }
        Some(p) => vec![p],
        None => (0..meta.config.partitions).collect(),
    };
    let mut reads = Vec::with_capacity(partitions.len());
    for p in partitions {
        let from = match start {
            ReplayStart::Offset(o) => o,
            ReplayStart::Timestamp(t) => resolve_offset(shard, topic, p, OffsetSpec::Timestamp(t)).await?,
        };
        reads.push(read_partition(shard, topic, p, from, max, 0, enc).await?);
    }
    #[derive(Serialize)]
    struct Replayed {
        partitions: Vec<PartitionRead>,
    }
    Ok(ok(&Replayed { partitions: reads }))
}

/// Replay for a group: moves its committed position (a seek); the records
/// from there on are delivered again to its members.
async fn replay_group(
    shard: &Rc<Shard>,
    topic: &str,
    group: String,
    partition: Option<u32>,
    start: ReplayStart,
) -> Result<HttpResponse, HttpError> {
    let target = match start {
        ReplayStart::Offset(o) => SeekTarget::Offset(o),
        ReplayStart::Timestamp(t) => SeekTarget::Timestamp(t),
    };
    let resp = delivery::seek(
        shard,
        SeekRequest {
            group,
            topic: topic.to_string(),
            partitions: partition.into_iter().collect(),
            target,
        },
    )
    .await;
    super::groups::check(resp.error, &resp.message)?;
    #[derive(Serialize)]
    struct Moved {
        partition: u32,
        offset: u64,
        code: &'static str,
        error_code: u16,
    }
    let first = resp
        .partitions
        .iter()
        .find(|p| p.error != 0)
        .map(|p| (p.error, String::new()));
    let partitions: Vec<Moved> = resp
        .partitions
        .iter()
        .map(|p| Moved {
            partition: p.partition,
            offset: p.offset,
            code: ErrorCode::from_wire(p.error).name(),
            error_code: p.error,
        })
        .collect();
    #[derive(Serialize)]
    struct Seeked {
        partitions: Vec<Moved>,
    }
    Ok(super::offsets::with_partition_errors(
        first,
        &Seeked { partitions },
    ))
}
