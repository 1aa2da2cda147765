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
//! Reads go through the shard's `read` (long-poll included), the same path
//! as native fetches; the stored batches are then opened with validated
//! access and turned into JSON records ([`super::records`]). A fetch returns whole
//! batches, so records below the requested offset are skipped here, and
//! the reply stops at `max` records; `next_offset` is where to continue.
//!
//! Values are UTF-8 strings by default; a record whose key, value or header
//! values are not valid UTF-8 is sent base64-encoded with
//! `"encoding": "base64"` on that record, so no byte is ever lost. Ask for
//! `encoding=base64` to get every record in base64.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::delivery::{PollRequest, SeekRequest, SeekTarget};

use super::common::{first_error, topic_meta, with_partition_errors, Encoding, HttpRequest};
use super::json::{ok, parse, HttpError, HttpResponse};
use super::records::{decode_records, RecordOut};
use crate::ids::{Offset, PartitionId};
use crate::partition::OffsetQuery;
use crate::shard::Access;
use crate::shard::{Shard, FETCH_WAIT_MS_MAX};

/// Records returned when the request does not say.
const POLL_RECORDS_DEFAULT: u32 = 100;
/// Most records one poll or replay returns.
pub const POLL_RECORDS_MAX: u32 = 10_000;
/// Cap on batch bytes read for one poll or replay partition.
pub const POLL_BYTES_MAX: u32 = 4 << 20;

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

/// Reads up to `max` records of one partition from `offset`, long-polling
/// up to `wait_ms` when there is nothing yet.
pub async fn read_partition(
    access: &Access<'_>,
    topic: &str,
    partition: u32,
    offset: u64,
    max: u32,
    wait_ms: u32,
    enc: Encoding,
) -> Result<PartitionRead, HttpError> {
    let read = access
        .read(
            topic,
            PartitionId(partition),
            Offset(offset),
            POLL_BYTES_MAX,
            wait_ms.min(FETCH_WAIT_MS_MAX),
        )
        .await?;
    let records = decode_records(topic, partition, &read.batches, offset, max as usize, enc)?;
    let next_offset = records.last().map_or(offset, |r| r.offset + 1);
    Ok(PartitionRead {
        partition,
        records,
        next_offset,
        high_watermark: read.high_watermark,
        log_start: read.log_start,
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
    topic_meta(shard, topic)?;
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
    let read = read_partition(
        &shard.access(&req.caller),
        topic,
        partition,
        offset,
        max,
        wait_ms,
        enc,
    )
    .await?;
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
    let (resp, batches) = shard.access(&req.caller).group_poll(poll).await?;
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

/// The first offset at or after `timestamp_ms`, resolved on the owner.
pub async fn offset_at(
    access: &Access<'_>,
    topic: &str,
    partition: u32,
    timestamp_ms: i64,
) -> Result<u64, HttpError> {
    let listed = access
        .list_offset(
            topic,
            PartitionId(partition),
            OffsetQuery::Timestamp(timestamp_ms),
        )
        .await?;
    Ok(listed.offset.get())
}

/// A one-off re-read from an offset or timestamp; nothing is committed.
pub async fn replay(shard: &Rc<Shard>, topic: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let body: ReplayBody = parse(&req.body)?;
    let meta = topic_meta(shard, topic)?;
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
    let access = shard.access(&req.caller);
    if let Some(group) = body.group {
        return replay_group(&access, topic, group, body.partition, start).await;
    }
    let partitions: Vec<u32> = match body.partition {
        Some(p) if p >= meta.config.partitions => {
            let e = crate::error::BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition: PartitionId(p),
                count: meta.config.partitions,
            };
            return Err(e.into());
        }
        Some(p) => vec![p],
        None => (0..meta.config.partitions).collect(),
    };
    let mut reads = Vec::with_capacity(partitions.len());
    for p in partitions {
        let from = match start {
            ReplayStart::Offset(o) => o,
            ReplayStart::Timestamp(t) => offset_at(&access, topic, p, t).await?,
        };
        reads.push(read_partition(&access, topic, p, from, max, 0, enc).await?);
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
    access: &Access<'_>,
    topic: &str,
    group: String,
    partition: Option<u32>,
    start: ReplayStart,
) -> Result<HttpResponse, HttpError> {
    let target = match start {
        ReplayStart::Offset(o) => SeekTarget::Offset(o),
        ReplayStart::Timestamp(t) => SeekTarget::Timestamp(t),
    };
    let resp = access
        .group_seek(SeekRequest {
            group,
            topic: topic.to_string(),
            partitions: partition.into_iter().collect(),
            target,
        })
        .await?;
    #[derive(Serialize)]
    struct Moved {
        partition: u32,
        offset: u64,
        code: &'static str,
        error_code: u16,
    }
    let first = first_error(resp.partitions.iter().map(|p| p.error));
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
    Ok(with_partition_errors(first, &Seeked { partitions }))
}
