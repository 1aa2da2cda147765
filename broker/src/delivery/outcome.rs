//! Outcomes of deliveries: ack, nack, and every other failure (lease
//! expiry, member expelled or left), as glue around the sans-IO decision in
//! [`super::failure`].
//!
//! The quarantine entry needs the record's key, value and headers, so those
//! are read from the partition *before* the state changes: the entry, the
//! tombstone of the failure count and the new committed offset then go to
//! the state log in one batch, and a crash can never leave a record neither
//! pending nor quarantined.

use std::collections::BTreeMap;

use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::delivery::*;

use super::assignment::TopicPartition;
use super::failure::{apply_failures, quarantine_candidates, FailCounts, FailHow, Failures};
use super::group_coordinator::member_group;
use super::member::Group;
use super::records::read_record;
use super::service::Delivery;
use super::source::PartitionSource;
use super::state_log::{committed_key, failures_key, redriven_key, StateRecord, StateValue};
use crate::error::BrokerResult;
use crate::ids::Generation;
use crate::runtime::now_ms;

impl<S: PartitionSource> Delivery<S> {
    pub async fn ack(&self, req: AckRequest) -> BrokerResult<AckResponse> {
        let now = now_ms();
        let mut records = Vec::new();
        let mut partitions = Vec::new();
        {
            let mut groups = self.groups.borrow_mut();
            let group = member_group(
                &mut groups,
                &req.group,
                &req.member_id,
                Generation(req.generation),
                now,
            )?;
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
        self.persist(records).await?;
        Ok(AckResponse {
            error: 0,
            message: String::new(),
            partitions,
        })
    }

    pub async fn nack(&self, req: NackRequest) -> BrokerResult<NackResponse> {
        let now = now_ms();
        let mut items = Vec::new();
        let mut partitions = Vec::new();
        {
            let mut groups = self.groups.borrow_mut();
            let group = member_group(
                &mut groups,
                &req.group,
                &req.member_id,
                Generation(req.generation),
                now,
            )?;
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
        let counts = self.fail_records(&req.group, items, &req.reason, how).await?;
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
        Ok(NackResponse {
            error: 0,
            message: String::new(),
            partitions,
        })
    }

    /// Counts one failed delivery for each record and schedules its retry or
    /// quarantines it; persists the result before returning.
    pub(super) async fn fail_records(
        &self,
        group: &str,
        items: Vec<(TopicPartition, Vec<u64>)>,
        reason: &str,
        how: FailHow,
    ) -> BrokerResult<FailCounts> {
        let policy = |topic: &str| self.retry_policy(topic);
        let candidates = match self.groups.borrow().get(group) {
            Some(g) => quarantine_candidates(g, &items, how, policy),
            None => Vec::new(),
        };
        let mut details = BTreeMap::new();
        for (tp, offset) in candidates {
            if let Some(d) = read_record(&self.source, &tp, offset).await {
                details.insert((tp, offset), d);
            }
        }
        let failures = Failures {
            items,
            reason,
            how,
            now: now_ms(),
            details,
        };
        let (records, counts) = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group) else {
                return Ok(FailCounts::new());
            };
            let mut store = self.quarantine.borrow_mut();
            apply_failures(g, &mut store, failures, policy, &mut rand::random::<f64>)
        };
        self.persist(records).await?;
        Ok(counts)
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
