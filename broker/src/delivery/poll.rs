//! Poll: choose records for a member, lease them, and send their batches.
//!
//! One round, under one synchronous look at the group: check the member
//! and generation, ask the breaker, then lease the records that are due
//! (retries within the retry budget, redriven records, records released
//! from a key lane). Then, outside the borrow, read those records' batches
//! and new batches from the member's partitions (on their owners, as
//! shared bytes), and admit and lease the new records. Nothing to deliver
//! and time left: wait for new data or the next retry, then go again.
//!
//! A reply lists per batch the exact offsets it delivers and their
//! delivery counts; the client surfaces only those, so a retried record is
//! redelivered by resending its stored batch, never by re-encoding it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_protocol::batch::{self, BatchLimits, BatchRecords};
use shoal_protocol::messages::delivery::*;

use super::assignment::TopicPartition;
use super::delivery_state::Phase;
use super::group_coordinator::member_group;
use super::key_lanes::key_hash;
use super::member::Group;
use super::records::read_batch_at;
use super::retry_policy::Admission;
use super::service::Delivery as DeliveryService;
use super::source::PartitionSource;
use super::state_log::{committed_key, StateRecord, StateValue};
use crate::error::{BrokerError, BrokerResult};
use crate::ids::{Generation, Offset, PartitionId};
use crate::runtime::now_ms;

/// Longest long-poll a poll may ask for.
pub const POLL_WAIT_MS_MAX: u32 = 30_000;
/// Most records one poll delivers.
pub const POLL_RECORDS_MAX: u32 = 10_000;
/// Longest single wait inside a long poll before looking at the group again
/// (membership, retries coming due on other partitions).
const POLL_IDLE_WAIT_MS: u64 = 100;
/// Pause when a wait returned at once without anything to deliver (window
/// full, records held), so a long poll does not spin.
const POLL_RECHECK_MS: u64 = 10;

/// What one round may do.
struct Plan {
    generation: u32,
    lease_ms: u32,
    lease_until_ms: i64,
    limit: u32,
    /// Due records already leased, per partition: (offset, delivery count).
    leased: Vec<(TopicPartition, Vec<(u64, u32)>)>,
    /// Partitions to read new records from, at their next offset.
    reads: Vec<(TopicPartition, u64)>,
}

/// Records chosen so far in this poll.
#[derive(Default)]
struct Out {
    batches: Vec<PolledBatch>,
    payload: Vec<Bytes>,
    records: u32,
    bytes: usize,
}

impl Out {
    fn push(&mut self, tp: &TopicPartition, bytes: Bytes, deliveries: Vec<Delivery>) {
        self.records += deliveries.len() as u32;
        self.bytes += bytes.len();
        self.batches.push(PolledBatch {
            topic: tp.topic.clone(),
            partition: tp.partition,
            batch_len: bytes.len() as u32,
            deliveries,
        });
        self.payload.push(bytes);
    }
}

/// A poll's answer: the response and the batches of its payload, in order.
pub type Polled = (PollResponse, Vec<Bytes>);

impl<S: PartitionSource> DeliveryService<S> {
    pub async fn poll(&self, req: PollRequest) -> BrokerResult<Polled> {
        let started = Instant::now();
        let wait = Duration::from_millis(u64::from(req.max_wait_ms.min(POLL_WAIT_MS_MAX)));
        loop {
            let plan = self.plan(&req)?;
            let mut out = Out::default();
            self.deliver_due(&plan, &mut out).await;
            self.read_new(&req, &plan, &mut out).await;
            let elapsed = started.elapsed();
            if out.records > 0 || elapsed >= wait {
                // Delivery counts include failures still being written:
                // none is shown before it is durable.
                self.settle_proposals().await;
                let resp = PollResponse {
                    error: 0,
                    message: String::new(),
                    generation: plan.generation,
                    throttle_time_ms: 0,
                    lease_ms: plan.lease_ms,
                    batches: out.batches,
                };
                return Ok((resp, out.payload));
            }
            self.idle(&req, wait - elapsed).await;
        }
    }

    fn plan(&self, req: &PollRequest) -> BrokerResult<Plan> {
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        let group = member_group(
            &mut groups,
            &req.group,
            &req.member_id,
            Generation(req.generation),
            now,
        )?;
        if req.generation < group.generation {
            return Err(BrokerError::RebalanceInProgress {
                generation: group.generation,
            });
        }
        let probe_max = match group.breaker.admission(now) {
            Admission::All => u32::MAX,
            Admission::Probe(n) => n,
            Admission::Paused { retry_in_ms } => {
                return Err(BrokerError::CircuitOpen {
                    retry_in_ms,
                    generation: group.generation,
                });
            }
        };
        let member = &group.members[&req.member_id];
        let lease_ms = member.lease_ms();
        let limit = req.max_records.clamp(1, POLL_RECORDS_MAX).min(probe_max);
        let owned = group.assignment_of(&req.member_id);
        let mut plan = Plan {
            generation: group.generation,
            lease_ms,
            lease_until_ms: now + i64::from(lease_ms),
            limit,
            leased: Vec::new(),
            reads: Vec::new(),
        };
        for tp in owned {
            lease_due(group, &tp, &req.member_id, now, &mut plan);
            let d = &group.partitions[&tp];
            if d.window_room() > 0 {
                plan.reads.push((tp, d.next_offset()));
            }
        }
        Ok(plan)
    }
}

/// Leases the due records of one partition, within the limit and budget.
fn lease_due(group: &mut Group, tp: &TopicPartition, member: &str, now: i64, plan: &mut Plan) {
    let taken: u32 = plan.leased.iter().map(|(_, l)| l.len() as u32).sum();
    let room = plan.limit.saturating_sub(taken) as usize;
    if room == 0 {
        return;
    }
    let Group {
        partitions, budget, ..
    } = group;
    let Some(d) = partitions.get_mut(tp) else { return };
    let offsets = d.due(now, room, |_| {
        budget.allows_retry(now) && {
            budget.record_delivery(now, true);
            true
        }
    });
    if offsets.is_empty() {
        return;
    }
    let mut leased = Vec::with_capacity(offsets.len());
    for o in offsets {
        let count = d.lease(o, member, plan.lease_until_ms);
        if count == 1 {
            budget.record_delivery(now, false);
        } else {
            group.counters.retries += 1;
        }
        leased.push((o, count));
    }
    group.counters.deliveries += leased.len() as u64;
    group.breaker.record_deliveries(leased.len() as u32);
    plan.leased.push((tp.clone(), leased));
}

impl<S: PartitionSource> DeliveryService<S> {
    /// Reads the batches of the leased due records.
    async fn deliver_due(&self, plan: &Plan, out: &mut Out) {
        for (tp, leased) in &plan.leased {
            let mut i = 0;
            while i < leased.len() {
                let Ok((bytes, next)) = read_batch_at(&self.source, tp, leased[i].0).await else {
                    // The lease runs out and the record is retried or quarantined.
                    i += 1;
                    continue;
                };
                let mut deliveries = Vec::new();
                while i < leased.len() && leased[i].0 < next {
                    deliveries.push(Delivery {
                        offset: leased[i].0,
                        delivery_count: leased[i].1,
                    });
                    i += 1;
                }
                out.push(tp, bytes, deliveries);
            }
        }
    }

    /// Reads new records from each partition's next offset, admits and
    /// leases them.
    async fn read_new(&self, req: &PollRequest, plan: &Plan, out: &mut Out) {
        for (tp, offset) in &plan.reads {
            if out.records >= plan.limit || out.bytes >= req.max_bytes as usize {
                return;
            }
            let max_bytes = (req.max_bytes as usize).saturating_sub(out.bytes).max(1) as u32;
            let read = self
                .source
                .read(
                    &tp.topic,
                    PartitionId(tp.partition),
                    Offset(*offset),
                    max_bytes,
                    Duration::ZERO,
                )
                .await;
            let batches = match read {
                Ok(read) => read.batches,
                Err(BrokerError::OffsetOutOfRange { log_start, .. }) if log_start > *offset => {
                    self.skip_to(req, tp, log_start).await;
                    continue;
                }
                Err(_) => continue,
            };
            let ordered = self.retry_policy(&tp.topic).ordered_retry;
            for bytes in batches {
                if !self.admit_batch(req, plan, tp, &bytes, ordered, out) {
                    break;
                }
            }
        }
    }

    /// Admits the records of one batch at or after the partition's next
    /// offset and leases the deliverable ones. False once the poll is full.
    fn admit_batch(
        &self,
        req: &PollRequest,
        plan: &Plan,
        tp: &TopicPartition,
        bytes: &Bytes,
        ordered: bool,
        out: &mut Out,
    ) -> bool {
        let limits = BatchLimits::default();
        let Ok(header) = batch::validate(bytes, &limits) else {
            return false;
        };
        let lanes = if ordered {
            key_lanes(bytes, &header, &limits)
        } else {
            Vec::new()
        };
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(&req.group) else {
            return false;
        };
        if group.generation != plan.generation {
            return false;
        }
        let Some(d) = group.partitions.get_mut(tp) else {
            return false;
        };
        let mut deliveries = Vec::new();
        let mut offset = d.next_offset().max(header.base_offset);
        while offset < header.next_offset() {
            if out.records + deliveries.len() as u32 >= plan.limit || d.window_room() == 0 {
                break;
            }
            let lane = lanes
                .get((offset - header.base_offset) as usize)
                .copied()
                .flatten();
            let deliverable = d.admit(offset, lane, now)
                && matches!(d.entry(offset).map(|p| &p.phase), Some(Phase::Waiting { ready_at_ms }) if *ready_at_ms <= now);
            if deliverable {
                let count = d.lease(offset, &req.member_id, plan.lease_until_ms);
                let retry = count > 1;
                group.budget.record_delivery(now, retry);
                group.counters.retries += u64::from(retry);
                deliveries.push(Delivery {
                    offset,
                    delivery_count: count,
                });
            }
            offset += 1;
        }
        group.counters.deliveries += deliveries.len() as u64;
        group.breaker.record_deliveries(deliveries.len() as u32);
        let full = offset < header.next_offset();
        if !deliveries.is_empty() {
            out.push(tp, bytes.clone(), deliveries);
        }
        !full
    }

    /// Retention removed records the group had not read: move past them.
    async fn skip_to(&self, req: &PollRequest, tp: &TopicPartition, log_start: u64) {
        let record = {
            let mut groups = self.groups.borrow_mut();
            let Some(d) = groups.get_mut(&req.group).and_then(|g| g.partitions.get_mut(tp)) else {
                return;
            };
            d.skip_to(log_start);
            d.take_floor()
        };
        if let Some(c) = record {
            tracing::warn!(group = %req.group, %tp, offset = c, "records removed by retention before delivery: skipped");
            let put = StateRecord::put(committed_key(&req.group, tp), StateValue::Committed(c));
            if let Err(e) = self.persist(vec![put]).await {
                tracing::error!(error = %e, "persisting a skipped position");
            }
        }
    }

    /// Waits for new data on the member's partitions, the next retry, or `left`.
    async fn idle(&self, req: &PollRequest, left: Duration) {
        let started = Instant::now();
        let (targets, next_due) = {
            let groups = self.groups.borrow();
            let group = groups.get(&req.group);
            let owned = group.map(|g| g.assignment_of(&req.member_id)).unwrap_or_default();
            let targets: Vec<(TopicPartition, u64)> = owned
                .into_iter()
                .filter_map(|tp| {
                    group
                        .and_then(|g| g.partitions.get(&tp))
                        .map(|d| (tp, d.next_offset()))
                })
                .collect();
            let next_due = group
                .into_iter()
                .flat_map(|g| g.partitions.values().filter_map(|d| d.next_due()))
                .min();
            (targets, next_due)
        };
        let mut wait = left.min(Duration::from_millis(POLL_IDLE_WAIT_MS));
        if let Some(due) = next_due {
            wait = wait.min(Duration::from_millis((due - now_ms()).max(1) as u64));
        }
        match targets.first() {
            Some((first, _)) => {
                let partitions: Vec<(PartitionId, Offset)> = targets
                    .iter()
                    .filter(|(tp, _)| tp.topic == first.topic)
                    .map(|(tp, offset)| (PartitionId(tp.partition), Offset(*offset)))
                    .collect();
                self.source.wait_any(&first.topic, &partitions, wait).await;
            }
            None => crate::runtime::sleep(wait).await,
        }
        let pause = Duration::from_millis(POLL_RECHECK_MS);
        if started.elapsed() < pause {
            crate::runtime::sleep(pause.min(left)).await;
        }
    }
}

/// The key lane of every record of a batch (`None` for records without a key).
fn key_lanes(bytes: &[u8], header: &batch::BatchHeader, limits: &BatchLimits) -> Vec<Option<u64>> {
    let Ok(body) = BatchRecords::open(bytes, header, limits) else {
        return Vec::new();
    };
    let Ok(records) = body.records() else {
        return Vec::new();
    };
    records
        .iter()
        .map(|r| r.key.as_ref().map(|k| key_hash(k.as_slice())))
        .collect()
}
