//! The failure decision, sans-IO: what one failed delivery does to a
//! record, given the topic's retry policy, the time and a jitter value.
//!
//! A failure adds one to the record's `failures`. If that reaches the
//! topic's `max_attempts` (or the nack rejects the record), the record
//! leaves the window into the quarantine (or is dropped and counted when
//! the topic has `dead_letter = false`); otherwise it waits for its retry
//! after the policy's backoff with jitter. [`apply_failures`] changes the
//! group's in-memory state and the quarantine store and returns the state
//! records that describe the change; the caller (`outcome`) reads the
//! quarantined records' details before and persists the records after.
//! Nothing here reads a clock or a random source: `now` and `jitter` are
//! arguments.

use std::collections::BTreeMap;

use shoal_protocol::messages::dlq::{QuarantineEntry, QuarantineHeader};
use shoal_protocol::messages::topic::RetryPolicy;

use super::assignment::TopicPartition;
use super::delivery_state::{Pending, Verdict};
use super::member::Group;
use super::quarantine::QuarantineStore;
use super::retry_policy::backoff_ms;
use super::state_log::{committed_key, failures_key, redriven_key, StateKey, StateRecord, StateValue};

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

/// The parts of a record a quarantine entry keeps.
#[derive(Debug, Clone, Default)]
pub struct RecordDetail {
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<QuarantineHeader>,
    pub message_id: Option<String>,
}

/// The inputs of one failure decision besides the state it changes.
pub struct Failures<'a> {
    /// Offsets that failed, per partition.
    pub items: Vec<(TopicPartition, Vec<u64>)>,
    pub reason: &'a str,
    pub how: FailHow,
    pub now: i64,
    /// Details of the records that will be quarantined (see
    /// [`quarantine_candidates`]); a missing one leaves the entry empty.
    pub details: BTreeMap<(TopicPartition, u64), RecordDetail>,
}

/// Records that this failure will quarantine (read their details first).
pub fn quarantine_candidates(
    group: &Group,
    items: &[(TopicPartition, Vec<u64>)],
    how: FailHow,
    policy: impl Fn(&str) -> RetryPolicy,
) -> Vec<(TopicPartition, u64)> {
    let mut out = Vec::new();
    for (tp, offsets) in items {
        let max = policy(&tp.topic).max_attempts.max(1);
        let Some(d) = group.partitions.get(tp) else {
            continue;
        };
        for &o in offsets {
            if d.entry(o).is_some_and(|p| how.reject || p.failures + 1 >= max) {
                out.push((tp.clone(), o));
            }
        }
    }
    out
}

/// Counts one failed delivery for each record of `f.items`, schedules its
/// retry or quarantines it, and returns the state records to persist and
/// what was done per partition. `jitter` yields values in `[0, 1)`.
pub fn apply_failures(
    g: &mut Group,
    store: &mut QuarantineStore,
    mut f: Failures<'_>,
    policy: impl Fn(&str) -> RetryPolicy,
    jitter: &mut impl FnMut() -> f64,
) -> (Vec<StateRecord>, FailCounts) {
    let mut records = Vec::new();
    let mut counts = FailCounts::new();
    let (now, how) = (f.now, f.how);
    for (tp, offsets) in std::mem::take(&mut f.items) {
        let policy = policy(&tp.topic);
        for offset in offsets {
            let Some(d) = g.partitions.get_mut(&tp) else {
                continue;
            };
            let verdict = |p: &Pending| decide(&policy, p, how, now, jitter());
            let Some((p, v)) = d.fail(offset, now, f.reason, verdict) else {
                continue;
            };
            g.breaker.record_outcome(now, false);
            let entry = counts.entry(tp.clone()).or_default();
            match v {
                Verdict::RetryAt { .. } => {
                    entry.0 += 1;
                    let key = failures_key(&g.name, &tp, offset);
                    records.push(StateRecord::put(key, failure_value(&p)));
                }
                Verdict::Quarantine => {
                    entry.1 += 1;
                    let detail = f.details.remove(&(tp.clone(), offset));
                    let q = Quarantined {
                        tp: &tp,
                        offset,
                        pending: &p,
                        now,
                    };
                    q.record(g, store, &policy, detail, &mut records);
                }
            }
        }
        if let Some(c) = g.partitions.get_mut(&tp).and_then(|d| d.take_floor()) {
            let key = committed_key(&g.name, &tp);
            records.push(StateRecord::put(key, StateValue::Committed(c)));
        }
    }
    g.settle();
    (records, counts)
}

/// Retry or quarantine for a record that has just failed (`p.failures`
/// already counts this failure).
pub fn decide(policy: &RetryPolicy, p: &Pending, how: FailHow, now: i64, jitter: f64) -> Verdict {
    if how.reject || p.failures >= policy.max_attempts.max(1) {
        return Verdict::Quarantine;
    }
    let delay = match how.delay_ms {
        Some(ms) => u64::from(ms),
        None => backoff_ms(policy, p.failures, jitter),
    };
    Verdict::RetryAt {
        ready_at_ms: now + delay as i64,
    }
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
    tp: &'a TopicPartition,
    offset: u64,
    pending: &'a Pending,
    now: i64,
}

impl Quarantined<'_> {
    fn record(
        &self,
        g: &mut Group,
        store: &mut QuarantineStore,
        policy: &RetryPolicy,
        detail: Option<RecordDetail>,
        records: &mut Vec<StateRecord>,
    ) {
        let (tp, offset, p) = (self.tp, self.offset, self.pending);
        let group = g.name.clone();
        // Earlier failures were persisted under this key; the entry replaces them.
        records.push(StateRecord::delete(failures_key(&group, tp, offset)));
        if p.redrive_count > 0 {
            records.push(StateRecord::delete(redriven_key(&group, tp, offset)));
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
            group,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::delivery_state::PartitionDelivery;

    fn group_with(records: u64) -> Group {
        let mut g = Group::new("g", &shoal_config::DeliveryConfig::default());
        let tp = TopicPartition::new("t", 0);
        let mut d = PartitionDelivery::new(0);
        for o in 0..records {
            assert!(d.admit(o, None, 0));
            d.lease(o, "m", 1_000);
        }
        g.partitions.insert(tp, d);
        g
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            ..RetryPolicy::default()
        }
    }

    /// A failure below the attempt limit schedules a retry inside the
    /// jittered backoff window (upper half) and persists the failure; at the
    /// limit the record is quarantined with its detail and the committed
    /// offset moves past it. The same inputs give the same decision.
    #[test]
    fn retry_then_quarantine_is_deterministic() {
        let mut g = group_with(1);
        let mut store = QuarantineStore::new(0);
        let tp = TopicPartition::new("t", 0);
        let fail = |now| Failures {
            items: vec![(tp.clone(), vec![0])],
            reason: "boom",
            how: FailHow::backoff(),
            now,
            details: BTreeMap::new(),
        };
        let (records, counts) = apply_failures(&mut g, &mut store, fail(10), |_| policy(2), &mut || 0.0);
        assert_eq!(counts[&tp], (1, 0));
        assert_eq!(records.len(), 1, "one failure record");
        let ready = g.partitions[&tp].next_due().expect("retry scheduled");
        assert_eq!(ready, 10 + 50, "jitter 0 picks the lower end of [d/2, d]");
        g.partitions.get_mut(&tp).unwrap().lease(0, "m", 2_000);
        let mut f = fail(20);
        f.details.insert(
            (tp.clone(), 0),
            RecordDetail {
                value: Some(b"v".to_vec()),
                ..RecordDetail::default()
            },
        );
        let (records, counts) = apply_failures(&mut g, &mut store, f, |_| policy(2), &mut || 0.5);
        assert_eq!(counts[&tp], (0, 1));
        assert_eq!(store.len(), 1);
        assert!(records.iter().any(
            |r| matches!(&r.value, Some(StateValue::Entry(e)) if e.value.as_deref() == Some(&b"v"[..]))
        ));
        assert!(records
            .iter()
            .any(|r| matches!(r.value, Some(StateValue::Committed(1)))));
    }

    /// A rejecting nack quarantines at once, whatever the attempt count.
    #[test]
    fn reject_quarantines_at_once() {
        let g = group_with(3);
        let tp = TopicPartition::new("t", 0);
        let how = FailHow {
            reject: true,
            delay_ms: None,
        };
        let items = vec![(tp, vec![0, 2])];
        assert_eq!(quarantine_candidates(&g, &items, how, |_| policy(5)).len(), 2);
        assert!(quarantine_candidates(&g, &items, FailHow::backoff(), |_| policy(5)).is_empty());
    }
}
