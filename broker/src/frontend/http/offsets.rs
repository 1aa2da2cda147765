//! `POST /offsets/commit`, `POST /topics/:name/ack` and `/nack`.
//!
//! All three are fenced by the member's `generation`: the coordinator
//! refuses an old one (409 `stale_generation`) so a zombie member cannot
//! move the group's position. Ack and nack name records either as one
//! `partition` + `offset` or as `records: [{partition, offset}, ...]`.
//! A per-partition failure (e.g. an offset not leased to this member)
//! answers with that error's status and the per-partition outcome.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use shoal_protocol::messages::delivery::{
    AckRequest, CommitOffsetRequest, NackRequest, PartitionCommit, PartitionOffsets,
};

use super::common::{code_name, first_error, with_partition_errors, HttpRequest};
use super::json::{parse, HttpError, HttpResponse};
use crate::shard::Shard;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordRef {
    partition: u32,
    offset: u64,
}

/// What ack and nack bodies share.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeBody {
    group: String,
    member: String,
    generation: u32,
    partition: Option<u32>,
    offset: Option<u64>,
    records: Option<Vec<RecordRef>>,
    /// Nack only: why processing failed.
    reason: Option<String>,
    /// Nack only: redeliver after at least this long.
    delay_ms: Option<u32>,
    /// Nack only: quarantine at once.
    reject: Option<bool>,
}

impl OutcomeBody {
    /// The named records grouped per partition of `topic`.
    fn offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>, HttpError> {
        let mut refs: Vec<(u32, u64)> = match (&self.records, self.partition, self.offset) {
            (Some(r), None, None) => r.iter().map(|r| (r.partition, r.offset)).collect(),
            (None, Some(p), Some(o)) => vec![(p, o)],
            _ => {
                return Err(HttpError::invalid(
                    "name the records as partition + offset, or as records: [{partition, offset}]",
                ))
            }
        };
        if refs.is_empty() {
            return Err(HttpError::invalid("no records named"));
        }
        refs.sort_unstable();
        let mut per: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for (p, o) in refs {
            per.entry(p).or_default().push(o);
        }
        Ok(per
            .into_iter()
            .map(|(partition, offsets)| PartitionOffsets {
                topic: topic.to_string(),
                partition,
                offsets,
            })
            .collect())
    }
}

#[derive(Serialize)]
struct PartitionOutcome {
    partition: u32,
    code: &'static str,
    error_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    committed_offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries_scheduled: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quarantined: Option<u32>,
}

/// `POST /topics/:name/ack`.
pub async fn ack(shard: &Rc<Shard>, topic: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let body: OutcomeBody = parse(&req.body)?;
    if body.reason.is_some() || body.delay_ms.is_some() || body.reject.is_some() {
        return Err(HttpError::invalid("reason, delay_ms and reject belong to nack"));
    }
    let records = body.offsets(topic)?;
    let resp = shard
        .access(&req.caller)
        .group_ack(AckRequest {
            group: body.group,
            member_id: body.member,
            generation: body.generation,
            records,
        })
        .await?;
    let first = first_error(resp.partitions.iter().map(|p| p.error));
    let partitions: Vec<PartitionOutcome> = resp
        .partitions
        .iter()
        .map(|p| PartitionOutcome {
            partition: p.partition,
            code: code_name(p.error),
            error_code: p.error,
            committed_offset: Some(p.committed_offset),
            retries_scheduled: None,
            quarantined: None,
        })
        .collect();
    #[derive(Serialize)]
    struct Acked {
        partitions: Vec<PartitionOutcome>,
    }
    Ok(with_partition_errors(first, &Acked { partitions }))
}

/// `POST /topics/:name/nack`.
pub async fn nack(shard: &Rc<Shard>, topic: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let body: OutcomeBody = parse(&req.body)?;
    let records = body.offsets(topic)?;
    let resp = shard
        .access(&req.caller)
        .group_nack(NackRequest {
            group: body.group,
            member_id: body.member,
            generation: body.generation,
            records,
            reason: body.reason.unwrap_or_default(),
            delay_ms: body.delay_ms,
            reject: body.reject.unwrap_or(false),
        })
        .await?;
    let first = first_error(resp.partitions.iter().map(|p| p.error));
    let partitions: Vec<PartitionOutcome> = resp
        .partitions
        .iter()
        .map(|p| PartitionOutcome {
            partition: p.partition,
            code: code_name(p.error),
            error_code: p.error,
            committed_offset: None,
            retries_scheduled: Some(p.retries_scheduled),
            quarantined: Some(p.quarantined),
        })
        .collect();
    #[derive(Serialize)]
    struct Nacked {
        partitions: Vec<PartitionOutcome>,
    }
    Ok(with_partition_errors(first, &Nacked { partitions }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitEntry {
    topic: String,
    partition: u32,
    offset: u64,
}

/// `POST /offsets/commit` body: one position, or `offsets: [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    group: String,
    member: String,
    generation: u32,
    topic: Option<String>,
    partition: Option<u32>,
    /// The next offset the group will consume.
    offset: Option<u64>,
    offsets: Option<Vec<CommitEntry>>,
}

/// `POST /offsets/commit`.
pub async fn commit(shard: &Rc<Shard>, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let body: CommitBody = parse(&req.body)?;
    let offsets = match (body.offsets, body.topic, body.partition, body.offset) {
        (Some(list), None, None, None) if !list.is_empty() => list
            .into_iter()
            .map(|e| PartitionCommit {
                topic: e.topic,
                partition: e.partition,
                offset: e.offset,
            })
            .collect(),
        (None, Some(topic), Some(partition), Some(offset)) => vec![PartitionCommit {
            topic,
            partition,
            offset,
        }],
        _ => {
            return Err(HttpError::invalid(
                "commit needs topic + partition + offset, or a non-empty offsets list",
            ))
        }
    };
    let resp = shard
        .access(&req.caller)
        .group_commit(CommitOffsetRequest {
            group: body.group,
            member_id: body.member,
            generation: body.generation,
            offsets,
        })
        .await?;
    #[derive(Serialize)]
    struct Outcome {
        topic: String,
        partition: u32,
        code: &'static str,
        error_code: u16,
    }
    let first = first_error(resp.partitions.iter().map(|p| p.error));
    let partitions: Vec<Outcome> = resp
        .partitions
        .into_iter()
        .map(|p| Outcome {
            topic: p.topic,
            partition: p.partition,
            code: code_name(p.error),
            error_code: p.error,
        })
        .collect();
    #[derive(Serialize)]
    struct Committed {
        partitions: Vec<Outcome>,
    }
    Ok(with_partition_errors(first, &Committed { partitions }))
}
