//! `POST /topics/:name/messages`: publish one record or a batch.
//!
//! Body: either one record (`key`, `value`, `headers`, `message_id`,
//! `partition`, `timestamp_ms`) or `{"records": [...]}`, plus the request
//! options `acks` (`none` | `leader` | `quorum`, default `leader`),
//! `encoding` (`utf8`, default, or `base64` for keys, values and header
//! values) and `timeout_ms`. A record's partition is its explicit
//! `partition`, else `murmur2(key) % partitions` (the partitioner every
//! client uses), else the next one round-robin. Records are grouped per
//! partition into one batch each (request order kept within a partition)
//! and appended through the shard's `produce`, as the native protocol does.
//!
//! Reply: one entry per record, in request order, with its partition,
//! offset and the durability reached (`accepted` with acks `none`, when the
//! offset is not known yet). A record stored earlier within the dedup window
//! (same `message_id`) reports the original offset and `duplicate: true`.
//! If any partition fails, the reply has that partition's error status and
//! error body, plus the per-record outcome so a client can tell what landed.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use shoal_protocol::batch::{BatchBuilder, NewRecord, RecordHeader};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::produce::{Acks, DuplicateRecord};
use shoal_protocol::partitioner::partition_for_key;

use super::common::{durability_name, topic_meta, ConnState, Encoding, HttpRequest};
use super::json::{json_response, ok, parse, ErrorTag, HttpError, HttpResponse};
use crate::error::{BrokerError, BrokerResult};
use crate::ids::PartitionId;
use crate::metrics::counters::http as http_metrics;
use crate::runtime::now_ms;
use crate::shard::{Produced, Shard, PRODUCE_TIMEOUT_MS_MAX};

/// Most records one publish request may carry.
pub const PUBLISH_RECORDS_MAX: usize = 10_000;
/// Ack timeout when the request does not set one.
const PUBLISH_TIMEOUT_MS_DEFAULT: u32 = 30_000;

thread_local! {
    /// Next partition for records without key or partition (per shard).
    static ROUND_ROBIN: Cell<u32> = const { Cell::new(0) };
}

/// One record as JSON carries it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordIn {
    key: Option<String>,
    /// `null` (or absent) is a tombstone.
    value: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    message_id: Option<String>,
    partition: Option<u32>,
    /// Create time; the broker's clock when absent.
    timestamp_ms: Option<i64>,
}

/// The publish body: one flat record or `records`, plus options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    records: Option<Vec<RecordIn>>,
    key: Option<String>,
    value: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    message_id: Option<String>,
    partition: Option<u32>,
    timestamp_ms: Option<i64>,
    acks: Option<String>,
    encoding: Option<String>,
    timeout_ms: Option<u32>,
}

fn parse_acks(name: Option<&str>) -> Result<Acks, HttpError> {
    match name {
        None | Some("leader") => Ok(Acks::Leader),
        Some("none") => Ok(Acks::None),
        Some("quorum") => Ok(Acks::Quorum),
        Some(other) => Err(HttpError::invalid(format!(
            "acks {other:?} is not one of none | leader | quorum"
        ))),
    }
}

impl PublishBody {
    /// The records, whichever shape the body used.
    fn into_records(self) -> Result<Vec<RecordIn>, HttpError> {
        let single = self.key.is_some()
            || self.value.is_some()
            || self.headers.is_some()
            || self.message_id.is_some()
            || self.partition.is_some()
            || self.timestamp_ms.is_some();
        match (self.records, single) {
            (Some(_), true) => Err(HttpError::invalid(
                "give either \"records\" or one record's fields, not both",
            )),
            (Some(records), false) => Ok(records),
            (None, _) => Ok(vec![RecordIn {
                key: self.key,
                value: self.value,
                headers: self.headers.unwrap_or_default(),
                message_id: self.message_id,
                partition: self.partition,
                timestamp_ms: self.timestamp_ms,
            }]),
        }
    }
}

/// A record ready for its batch.
struct Placed {
    partition: u32,
    record: NewRecord,
}

fn place(records: Vec<RecordIn>, partitions: u32, enc: Encoding, now: i64) -> Result<Vec<Placed>, HttpError> {
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let key = r
            .key
            .as_deref()
            .map(|k| enc.decode(&format!("records[{i}].key"), k))
            .transpose()?;
        let value = r
            .value
            .as_deref()
            .map(|v| enc.decode(&format!("records[{i}].value"), v))
            .transpose()?;
        let mut headers = Vec::with_capacity(r.headers.len());
        for (name, v) in r.headers {
            let value = enc.decode(&format!("records[{i}].headers.{name}"), &v)?;
            headers.push(RecordHeader { key: name, value });
        }
        let partition = match (r.partition, &key) {
            (Some(p), _) if p >= partitions => {
                return Err(HttpError::from_code(
                    ErrorCode::UnknownPartition,
                    format!("records[{i}].partition {p}: the topic has {partitions} partitions"),
                ))
            }
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => ROUND_ROBIN.with(|c| {
                let next = c.get();
                c.set(next.wrapping_add(1));
                next % partitions
            }),
        };
        let record = NewRecord {
            timestamp_ms: r.timestamp_ms.unwrap_or(now),
            key,
            value,
            headers,
            message_id: r.message_id,
        };
        out.push(Placed { partition, record });
    }
    Ok(out)
}

/// One record's outcome in the reply.
#[derive(Debug, Serialize)]
struct RecordOut {
    partition: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    durability: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Refuses a publish while the connection is throttled (429 with
/// `Retry-After`), else charges its body to the connection's byte rate and
/// returns the throttle time the reply must carry.
fn charge_quota(shard: &Shard, conn: &ConnState, body_bytes: usize) -> Result<u64, HttpError> {
    let now = now_ms();
    let until = conn.throttled_until_ms.get();
    if now < until {
        return Err(HttpError::throttled((until - now) as u64));
    }
    let throttle = conn.publish_quota.borrow_mut().charge(body_bytes as u64, now);
    if throttle > 0 {
        conn.throttled_until_ms.set(now + throttle as i64);
        crate::metrics::add(&shard.metrics().throttle_ms, throttle);
    }
    Ok(throttle)
}

pub async fn publish(
    shard: &Rc<Shard>,
    conn: &ConnState,
    topic: &str,
    req: &HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let started = Instant::now();
    let body: PublishBody = parse(&req.body)?;
    let acks = parse_acks(body.acks.as_deref())?;
    let enc = Encoding::parse(body.encoding.as_deref())?;
    let timeout_ms = body
        .timeout_ms
        .unwrap_or(PUBLISH_TIMEOUT_MS_DEFAULT)
        .clamp(1, PRODUCE_TIMEOUT_MS_MAX);
    let meta = topic_meta(shard, topic)?;
    let records = body.into_records()?;
    if records.is_empty() || records.len() > PUBLISH_RECORDS_MAX {
        return Err(HttpError::invalid(format!(
            "a publish carries 1 to {PUBLISH_RECORDS_MAX} records, not {}",
            records.len()
        )));
    }
    let throttle_time_ms = charge_quota(shard, conn, req.body.len())?;
    let placed = place(records, meta.config.partitions, enc, now_ms())?;
    let (order, batches) = build_batches(placed)?;
    let input: Vec<(PartitionId, Vec<BytesMut>)> = batches
        .iter()
        .map(|(p, b)| (PartitionId(*p), vec![BytesMut::from(b.as_slice())]))
        .collect();
    let results = shard
        .access(&req.caller)
        .produce(topic, input, acks, timeout_ms)
        .await;
    let reply = per_record(&order, &results);
    if let Some(e) = results.iter().find_map(|(_, r)| r.as_ref().err()) {
        return Ok(partial_failure(e, reply));
    }
    if let Some((_, Ok(first))) = results.first() {
        let micros = started.elapsed().as_micros() as u64;
        http_metrics::record_produce_ack(durability_name(outcome_durability(first)), micros);
    }
    #[derive(Serialize)]
    struct Published {
        records: Vec<RecordOut>,
        /// Hold back this long before the next publish on this connection.
        throttle_time_ms: u64,
    }
    Ok(ok(&Published {
        records: reply,
        throttle_time_ms,
    }))
}

/// Per partition (in first-seen order): the encoded batch; and for every
/// record in request order, its partition and its index within that
/// partition's batch.
type Batches = (Vec<(u32, u32)>, Vec<(u32, rkyv::util::AlignedVec<16>)>);

fn build_batches(placed: Vec<Placed>) -> Result<Batches, HttpError> {
    let mut builders: Vec<(u32, BatchBuilder)> = Vec::new();
    let mut order = Vec::with_capacity(placed.len());
    for Placed { partition, record } in placed {
        let slot = match builders.iter().position(|(p, _)| *p == partition) {
            Some(i) => i,
            None => {
                builders.push((partition, BatchBuilder::new()));
                builders.len() - 1
            }
        };
        let builder = &mut builders[slot].1;
        order.push((partition, builder.len() as u32));
        builder.push(record);
    }
    let mut batches = Vec::with_capacity(builders.len());
    for (partition, builder) in builders {
        let batch = builder
            .finish()
            .map_err(|e| HttpError::from_code(ErrorCode::RecordTooLarge, e.to_string()))?;
        batches.push((partition, batch));
    }
    Ok((order, batches))
}

/// The durability a partition's outcome reached.
fn outcome_durability(p: &Produced) -> shoal_protocol::messages::produce::Durability {
    match p {
        Produced::Stored(a) => a.durability,
        Produced::Accepted => shoal_protocol::messages::produce::Durability::Accepted,
    }
}

/// Each record's offset, following the produce reply's rule: stored records
/// take consecutive offsets from `base_offset`, duplicates their original.
fn per_record(order: &[(u32, u32)], results: &[(PartitionId, BrokerResult<Produced>)]) -> Vec<RecordOut> {
    let mut offsets: BTreeMap<u32, Vec<(Option<u64>, bool)>> = BTreeMap::new();
    for (partition, result) in results {
        let count = order.iter().filter(|(p, _)| *p == partition.get()).count() as u32;
        let (mut next, dups): (Option<u64>, &[DuplicateRecord]) = match result {
            Ok(Produced::Stored(a)) => (Some(a.base_offset), &a.duplicates),
            _ => (None, &[]),
        };
        let mut list = Vec::with_capacity(count as usize);
        for i in 0..count {
            let dup = dups.iter().find(|d| d.record_index == i);
            list.push(match (dup, next.as_mut()) {
                (Some(d), _) => (Some(d.original_offset), true),
                (None, Some(n)) => {
                    *n += 1;
                    (Some(*n - 1), false)
                }
                (None, None) => (None, false),
            });
        }
        offsets.insert(partition.get(), list);
    }
    order
        .iter()
        .map(|(p, i)| {
            let r = results.iter().find(|(q, _)| q.get() == *p).map(|(_, r)| r);
            let (offset, duplicate) = offsets
                .get(p)
                .and_then(|l| l.get(*i as usize))
                .copied()
                .unwrap_or_default();
            RecordOut {
                partition: *p,
                offset,
                durability: match r {
                    Some(Ok(produced)) => durability_name(outcome_durability(produced)),
                    _ => "accepted",
                },
                duplicate,
                error: r
                    .and_then(|r| r.as_ref().err())
                    .map(|e| e.code().name().to_string()),
            }
        })
        .collect()
}

fn partial_failure(failed: &BrokerError, records: Vec<RecordOut>) -> HttpResponse {
    let e = HttpError::from(failed.clone());
    #[derive(Serialize)]
    struct Failed<'a> {
        code: &'a str,
        error_code: u16,
        message: &'a str,
        records: Vec<RecordOut>,
    }
    let body = Failed {
        code: e.code,
        error_code: e.error_code,
        message: &e.message,
        records,
    };
    let mut resp = json_response(e.status, &body);
    resp.extensions_mut().insert(ErrorTag(e.code));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::Appended;
    use shoal_protocol::messages::produce::Durability;

    fn resp(partition: u32, base: u64, dups: Vec<DuplicateRecord>) -> (PartitionId, BrokerResult<Produced>) {
        let appended = Appended {
            base_offset: base,
            records: 0,
            log_start: 0,
            append_time_ms: 0,
            durability: Durability::Fsynced,
            duplicates: dups,
        };
        (PartitionId(partition), Ok(Produced::Stored(appended)))
    }

    /// Offsets follow the produce rule: consecutive per partition in request
    /// order, duplicates at their original offset and skipped in the count.
    #[test]
    fn offsets_per_record() {
        let order = [(0, 0), (1, 0), (0, 1), (0, 2)];
        let dup = DuplicateRecord {
            record_index: 1,
            original_offset: 3,
        };
        let out = per_record(&order, &[resp(0, 10, vec![dup]), resp(1, 7, vec![])]);
        let got: Vec<_> = out.iter().map(|r| (r.partition, r.offset, r.duplicate)).collect();
        assert_eq!(
            got,
            vec![
                (0, Some(10), false),
                (1, Some(7), false),
                (0, Some(3), true),
                (0, Some(11), false)
            ]
        );
    }

    /// Keyed records go to murmur2(key) % partitions, unkeyed ones spread.
    #[test]
    fn placement() {
        let rec = |key: Option<&str>| RecordIn {
            key: key.map(str::to_string),
            value: Some("v".into()),
            ..Default::default()
        };
        let placed = place(vec![rec(Some("k")), rec(None), rec(None)], 4, Encoding::Utf8, 0).unwrap();
        assert_eq!(placed[0].partition, partition_for_key(b"k", 4));
        assert_ne!(placed[1].partition, placed[2].partition);
        let bad = place(
            vec![RecordIn {
                partition: Some(4),
                ..Default::default()
            }],
            4,
            Encoding::Utf8,
            0,
        );
        assert_eq!(bad.err().map(|e| e.code), Some("unknown_partition"));
        let b64 = place(
            vec![RecordIn {
                value: Some("!!".into()),
                ..Default::default()
            }],
            1,
            Encoding::Base64,
            0,
        );
        assert_eq!(b64.err().map(|e| e.code), Some("invalid_request"));
    }
}
