//! Outcomes of deliveries: ack, nack, and every other failure (lease
//! expiry, member expelled or left), with retry scheduling and quarantine.
//!
//! A failure adds one to the record's `failures`. If that reaches the
//! topic's `max_attempts` (or the nack rejects the record), the record
//! leaves the window into the quarantine (or is dropped and counted when
//! the topic has `dead_letter = false`); otherwise it waits for its retry
//! after the policy's backoff. The quarantine entry needs the record's
//! key, value and headers, so those are read from the partition *before*
//! the state changes: the entry, the tombstone of the failure count and the
//! new committed offset then go to the state log in one batch, and a crash
//! can never leave a record neither pending nor quarantined.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use shoal_protocol::batch::{self, BatchLimits, BatchRecords};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::delivery::*;
use shoal_protocol::messages::dlq::{QuarantineEntry, QuarantineHeader};
use shoal_protocol::messages::fetch::{FetchPartition, FetchRequest};
use shoal_protocol::messages::topic::RetryPolicy;

use super::assignment::TopicPartition;
use super::delivery_state::{Pending, Verdict};
use super::group_coordinator::{committed_key, failures_key, member_group, redriven_key};
use super::member::Group;
use super::retry_policy::backoff_ms;
use super::state_log::{StateKey, StateRecord, StateValue};
use super::Failed;
use crate::runtime::now_ms;
use crate::shard::Shard;

/// How a failure is scheduled.
#[derive(Debug, Clone, Copy)]
pub struct FailHow {
    /// Quarantine at once.
    pub reject: bool,
    /// Redeliver after this long instead of the policy's backoff.
    pub delay_ms: Option<u32>,
}

impl FailHow {
    /// The member went away: the record was not at fault, redeliver now.
    pub fn immediate() -> Self {
        FailHow {
            reject: false,
            delay_ms: Some(0),
        }
    }

    /// The policy's backoff.
    pub fn backoff() -> Self {
        FailHow {
            reject: false,
            delay_ms: None,
        }
    }
}

/// What a failure did, per partition: (retries scheduled, quarantined).
pub type FailCounts = BTreeMap<TopicPartition, (u32, u32)>;

pub async fn ack(shard: &Rc<Shard>, req: AckRequest) -> AckResponse {
    let now = now_ms();
    let mut records = Vec::new();
    let mut partitions = Vec::new();
    {
        let mut groups = shard.delivery.groups.borrow_mut();
        let group = match member_group(&mut groups, &req.group, &req.member_id, req.generation, now) {
            Ok(group) => group,
            Err((code, message)) => return Failed::failed(code, message),
        };
        for po in &req.records {
            let tp = TopicPartition::new(&po.topic, po.partition);
            let (error, committed) =
                ack_partition(group, &tp, &req.member_id, &po.offsets, now, &mut records);
            partitions.push(AckPartitionResult {
                topic: po.topic.clone(),
                partition: po.partition,
                error: error.to_wire(),
                committed_offset: committed,
            });
        }
        group.settle();
    }
    match shard.delivery.persist(records).await {
        Ok(()) => AckResponse {
            error: 0,
            message: String::new(),
            partitions,
        },
        Err(message) => Failed::failed(ErrorCode::Internal, message),
    }
}

fn ack_partition(
    group: &mut Group,
    tp: &TopicPartition,
    member: &str,
    offsets: &[u64],
    now: i64,
    records: &mut Vec<StateRecord>,
) -> (ErrorCode, u64) {
    let Some(d) = group.partitions.get_mut(tp) else {
        return (ErrorCode::InvalidOffset, 0);
    };
    let mut error = ErrorCode::None;
    for &offset in offsets {
        match d.ack(offset, member, now) {
            Ok(p) => {
                group.counters.acks += 1;
                group.breaker.record_outcome(now, true);
                if p.failures > 0 {
                    group.budget.refund(now);
                    records.push(StateRecord::delete(failures_key(&group.name, tp, offset)));
                }
                if p.redrive_count > 0 {
                    records.push(StateRecord::delete(redriven_key(&group.name, tp, offset)));
                }
            }
            Err(_) => error = ErrorCode::InvalidOffset,
        }
    }
    if let Some(c) = d.take_floor() {
        records.push(StateRecord::put(
            committed_key(&group.name, tp),
            StateValue::Committed(c),
        ));
    }
    (error, d.committed())
}

pub async fn nack(shard: &Rc<Shard>, req: NackRequest) -> NackResponse {
    let now = now_ms();
    let mut items = Vec::new();
    let mut partitions = Vec::new();
    {
        let mut groups = shard.delivery.groups.borrow_mut();
        let group = match member_group(&mut groups, &req.group, &req.member_id, req.generation, now) {
            Ok(group) => group,
            Err((code, message)) => return Failed::failed(code, message),
        };
        for po in &req.records {
            let tp = TopicPartition::new(&po.topic, po.partition);
            let leased = group.partitions.get(&tp);
            let (ok, bad): (Vec<u64>, Vec<u64>) = po
                .offsets
                .iter()
                .partition(|o| leased.is_some_and(|d| d.check_lease(**o, &req.member_id).is_ok()));
            group.counters.nacks += ok.len() as u64;
            let error = if bad.is_empty() {
                ErrorCode::None
            } else {
                ErrorCode::InvalidOffset
            };
            partitions.push((tp.clone(), error));
            items.push((tp, ok));
        }
    }
    let how = FailHow {
        reject: req.reject,
        delay_ms: req.delay_ms,
    };
    let counts = match fail_records(shard, &req.group, items, &req.reason, how).await {
        Ok(c) => c,
        Err(message) => return Failed::failed(ErrorCode::Internal, message),
    };
    let partitions = partitions
        .into_iter()
        .map(|(tp, error)| {
            let (retries, quarantined) = counts.get(&tp).copied().unwrap_or_default();
            NackPartitionResult {
                topic: tp.topic,
                partition: tp.partition,
                error: error.to_wire(),
                retries_scheduled: retries,
                quarantined,
            }
        })
        .collect();
    NackResponse {
        error: 0,
        message: String::new(),
        partitions,
    }
}

/// Counts one failed delivery for each record and schedules its retry or
/// quarantines it; persists the result before returning.
pub async fn fail_records(
    shard: &Rc<Shard>,
    group: &str,
    items: Vec<(TopicPartition, Vec<u64>)>,
    reason: &str,
    how: FailHow,
) -> Result<FailCounts, String> {
    let candidates = quarantine_candidates(shard, group, &items, how);
    let mut details = BTreeMap::new();
    for (tp, offset) in candidates {
        if let Some(d) = read_record(shard, &tp, offset).await {
            details.insert((tp, offset), d);
        }
    }
    let now = now_ms();
    let mut records = Vec::new();
    let mut counts = FailCounts::new();
    {
        let mut groups = shard.delivery.groups.borrow_mut();
        let mut quarantine = shard.delivery.quarantine.borrow_mut();
        let Some(g) = groups.get_mut(group) else {
            return Ok(counts);
        };
        for (tp, offsets) in items {
            let policy = retry_policy(shard, &tp.topic);
            for offset in offsets {
                let Some(d) = g.partitions.get_mut(&tp) else {
                    continue;
                };
                let verdict = |p: &Pending| decide(&policy, p, how, now);
                let Some((p, v)) = d.fail(offset, now, reason, verdict) else {
                    continue;
                };
                g.breaker.record_outcome(now, false);
                let entry = counts.entry(tp.clone()).or_default();
                match v {
                    Verdict::RetryAt { .. } => {
                        entry.0 += 1;
                        records.push(StateRecord::put(
                            failures_key(group, &tp, offset),
                            failure_value(&p),
                        ));
                    }
                    Verdict::Quarantine => {
                        entry.1 += 1;
                        let detail = details.remove(&(tp.clone(), offset));
                        let q = Quarantined {
                            group,
                            tp: &tp,
                            offset,
                            pending: &p,
                            now,
                        };
                        q.record(g, &mut quarantine, &policy, detail, &mut records);
                    }
                }
            }
            if let Some(c) = g.partitions.get_mut(&tp).and_then(|d| d.take_floor()) {
                records.push(StateRecord::put(
                    committed_key(group, &tp),
                    StateValue::Committed(c),
                ));
            }
        }
        g.settle();
    }
    shard.delivery.persist(records).await?;
    Ok(counts)
}

/// The retry policy of `topic` (the default if it is gone).
pub fn retry_policy(shard: &Shard, topic: &str) -> RetryPolicy {
    shard
        .topics
        .borrow()
        .get(topic)
        .map(|m| m.config.retry)
        .unwrap_or_default()
}

/// Retry or quarantine for a record that has just failed (`p.failures`
/// already counts this failure).
fn decide(policy: &RetryPolicy, p: &Pending, how: FailHow, now: i64) -> Verdict {
    if how.reject || p.failures >= policy.max_attempts.max(1) {
        return Verdict::Quarantine;
    }
    let delay = match how.delay_ms {
        Some(ms) => u64::from(ms),
        None => backoff_ms(policy, p.failures, rand::random::<f64>()),
    };
    Verdict::RetryAt {
        ready_at_ms: now + delay as i64,
    }
}

/// Records that this failure will quarantine (read before changing state).
fn quarantine_candidates(
    shard: &Shard,
    group: &str,
    items: &[(TopicPartition, Vec<u64>)],
    how: FailHow,
) -> Vec<(TopicPartition, u64)> {
    let groups = shard.delivery.groups.borrow();
    let Some(g) = groups.get(group) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (tp, offsets) in items {
        let max = retry_policy(shard, &tp.topic).max_attempts.max(1);
        let Some(d) = g.partitions.get(tp) else { continue };
        for &o in offsets {
            if d.entry(o).is_some_and(|p| how.reject || p.failures + 1 >= max) {
                out.push((tp.clone(), o));
            }
        }
    }
    out
}

fn failure_value(p: &Pending) -> StateValue {
    StateValue::Failures {
        failures: p.failures,
        first_failure_ms: p.first_failure_ms,
        last_failure_ms: p.last_failure_ms,
        reason: p.reason.clone(),
    }
}

/// A record leaving for the quarantine.
struct Quarantined<'a> {
    group: &'a str,
    tp: &'a TopicPartition,
    offset: u64,
    pending: &'a Pending,
    now: i64,
}

impl Quarantined<'_> {
    fn record(
        &self,
        g: &mut Group,
        store: &mut super::quarantine::QuarantineStore,
        policy: &RetryPolicy,
        detail: Option<RecordDetail>,
        records: &mut Vec<StateRecord>,
    ) {
        let (group, tp, offset, p) = (self.group, self.tp, self.offset, self.pending);
        // Earlier failures were persisted under this key; the entry replaces them.
        records.push(StateRecord::delete(failures_key(group, tp, offset)));
        if p.redrive_count > 0 {
            records.push(StateRecord::delete(redriven_key(group, tp, offset)));
        }
        if !policy.dead_letter || store.is_full() {
            g.counters.dropped += 1;
            tracing::warn!(group, %tp, offset, "record dropped after its attempts (no quarantine)");
            return;
        }
        g.counters.quarantined += 1;
        let d = detail.unwrap_or_default();
        let entry = QuarantineEntry {
            entry_id: store.allocate_id(),
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset,
            timestamp_ms: d.timestamp_ms,
            key: d.key,
            value: d.value,
            headers: d.headers,
            message_id: d.message_id,
            group: group.to_string(),
            attempts: p.failures,
            reason: p.reason.clone(),
            first_failure_at_ms: p.first_failure_ms,
            last_failure_at_ms: p.last_failure_ms,
            quarantined_at_ms: self.now,
            redrive_count: p.redrive_count,
        };
        records.push(StateRecord::put(
            StateKey::Entry(entry.entry_id),
            StateValue::Entry(entry.clone()),
        ));
        store.insert(entry);
    }
}

/// The parts of a record a quarantine entry keeps.
#[derive(Debug, Clone, Default)]
pub struct RecordDetail {
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<QuarantineHeader>,
    pub message_id: Option<String>,
}

/// Reads one record from its partition's owner; `None` if it is gone.
pub async fn read_record(shard: &Rc<Shard>, tp: &TopicPartition, offset: u64) -> Option<RecordDetail> {
    let (batch, _) = read_batch_at(shard, tp, offset).await.ok()?;
    let limits = BatchLimits::default();
    let header = batch::validate(&batch, &limits).ok()?;
    let body = BatchRecords::open(&batch, &header, &limits).ok()?;
    let records = body.records().ok()?;
    let index = offset.checked_sub(header.base_offset)? as usize;
    let r = records.get(index)?;
    Some(RecordDetail {
        timestamp_ms: batch::record_timestamp(&header, r),
        key: r.key.as_ref().map(|k| k.to_vec()),
        value: r.value.as_ref().map(|v| v.to_vec()),
        headers: r
            .headers
            .iter()
            .map(|h| QuarantineHeader {
                key: h.key.to_string(),
                value: h.value.to_vec(),
            })
            .collect(),
        message_id: r.message_id.as_ref().map(|m| m.to_string()),
    })
}

/// The stored batch holding `offset` and its next offset.
pub async fn read_batch_at(
    shard: &Rc<Shard>,
    tp: &TopicPartition,
    offset: u64,
) -> Result<(Bytes, u64), ErrorCode> {
    let req = FetchRequest {
        topic: tp.topic.clone(),
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1,
        partitions: vec![FetchPartition {
            partition: tp.partition,
            offset,
            max_bytes: 1,
        }],
    };
    let mut results = crate::handlers::fetch::fetch(shard, &req).await;
    let (resp, batches) = results.pop().ok_or(ErrorCode::Internal)?;
    if resp.error != 0 {
        return Err(ErrorCode::from_wire(resp.error));
    }
    let first = batches.into_iter().next().ok_or(ErrorCode::OffsetOutOfRange)?;
    let header = batch::BatchHeader::parse(&first).map_err(|_| ErrorCode::CorruptBatch)?;
    if !(header.base_offset..header.next_offset()).contains(&offset) {
        return Err(ErrorCode::OffsetOutOfRange);
    }
    Ok((first, header.next_offset()))
}
