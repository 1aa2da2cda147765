//! Append: the write path of the partition service.
//!
//! An append validates every batch once (framing, CRC, validated rkyv access
//! to the records), applies the idempotent-producer check and the
//! `message_id` window, and appends. Batches without message ids go straight
//! to the log, concurrently with other requests, so they share group commits.
//! Batches that carry message ids take the partition's dedup lock for the
//! whole append: the window lookup and the insert of the new offsets must not
//! interleave with another request's, or two copies of one id in flight at
//! once would both be stored. A batch with duplicates is re-encoded without
//! them (the only place the broker re-encodes records), so offsets stay dense.
//!
//! The reply states the durability reached. When every record of a request
//! was a duplicate, nothing new was stored: the append waits until the
//! originals are visible (below the high watermark, so they reached the
//! topic's acknowledged durability) and reports that durability, never more
//! than the originals have (a duplicate of a record still in flight under
//! `flush never` reports `memory`, not `written`).

use bytes::BytesMut;
use shoal_protocol::batch::{self, BatchBuilder, BatchRecords, NewRecord, RecordHeader};
use shoal_protocol::messages::produce::{DuplicateRecord, Durability};
use shoal_storage::{AppendAck, Durability as StorageDurability, PartitionLog};

use super::dedup::SequenceCheck;
use super::replica::Replica;
use crate::error::{BrokerError, BrokerResult};
use crate::runtime::now_ms;

/// How often, and how many times, a new leader's first produce with
/// producer state looks whether its first entry applied (2 s in all).
const OWN_TERM_POLL_MS: u64 = 5;
const OWN_TERM_POLLS_MAX: u32 = 400;

/// Why a replicated append could not judge duplicates yet.
enum OwnTerm {
    NotLeader,
    /// The leader's first entry did not commit in time.
    Late,
}

/// What one append stored.
#[derive(Debug, Clone)]
pub struct Appended {
    /// Offset of the first stored record (the log end when none was stored).
    pub base_offset: u64,
    /// Records stored (duplicates excluded).
    pub records: u64,
    pub log_start: u64,
    pub append_time_ms: i64,
    /// The durability every record of the request reached.
    pub durability: Durability,
    /// Records not stored because an earlier copy was.
    pub duplicates: Vec<DuplicateRecord>,
}

impl Appended {
    /// Offset of the last stored record (`base_offset - 1` when none was).
    pub fn last_offset(&self) -> u64 {
        (self.base_offset + self.records).wrapping_sub(1)
    }
}

impl Replica {
    /// Appends the batches of one produce request, in order, and returns
    /// once they reached the topic's acknowledged durability.
    pub async fn append(&self, batches: Vec<BytesMut>) -> BrokerResult<Appended> {
        if self.raft.is_some() {
            return self.append_replicated(batches).await;
        }
        let log = self.log()?.clone();
        let (headers, has_ids) = self.validate(&batches)?;
        let dedup = has_ids && self.topic.config.dedup_window_ms > 0;
        let mut appended = {
            // Held across the append so no other request's ids interleave.
            let _guard = if dedup {
                Some(self.dedup_lock.acquire_permit(1).await.ok())
            } else {
                None
            };
            let mut plan = self.plan(batches, &headers, dedup)?;
            let kept_batches: Vec<BytesMut> = plan.kept.take_batches();
            let acks = if kept_batches.is_empty() {
                Vec::new()
            } else {
                // Each batch passed validate_with above or was rebuilt by
                // BatchBuilder: the log checks only the framing, not the CRC.
                log.append_all_validated(kept_batches, log.default_durability())
                    .await?
            };
            self.settle(plan, &acks, &log)
        };
        if appended.records > 0 {
            self.advance_high_watermark(&log, appended.base_offset + appended.records);
        } else {
            appended.durability = self.await_originals(&log, &appended.duplicates).await?;
        }
        Ok(appended)
    }

    /// A replicated partition: validate, drop duplicates, propose through
    /// raft, answer once a majority has the batches fsynced (`acks =
    /// quorum`).
    ///
    /// Duplicates are judged against producer state rebuilt from
    /// *committed* batches on every replica (`Replica::remember_committed`),
    /// so it holds across a leader change. A request that carries message
    /// ids or a producer id holds the dedup lock until its batches commit
    /// (the state then includes them), and first waits until this leader
    /// applied an entry of its own term, so a batch a former leader left
    /// uncommitted in the log is judged after it commits, not before.
    async fn append_replicated(&self, batches: Vec<BytesMut>) -> BrokerResult<Appended> {
        use super::raft_group::ProposeError;
        let log = self.log()?.clone();
        let (group, replication) = self.raft.as_ref().expect("replicated");
        let (headers, has_ids) = self.validate(&batches)?;
        let not_leader = |leader: u64| BrokerError::NotLeader {
            topic: self.topic.name.clone(),
            partition: self.id,
            leader,
            address: u32::try_from(leader)
                .ok()
                .and_then(|id| replication.cluster().client_addr(crate::cluster::NodeId(id))),
        };
        let dedup = has_ids && self.topic.config.dedup_window_ms > 0;
        let sequenced = headers.iter().any(|h| h.producer_id != 0);
        let _guard = if dedup || sequenced {
            let guard = self.dedup_lock.acquire_permit(1).await.ok();
            self.await_own_term(group).await.map_err(|e| match e {
                OwnTerm::NotLeader => not_leader(group.leader()),
                OwnTerm::Late => {
                    BrokerError::Timeout("the new leader did not commit its first entry in time".into())
                }
            })?;
            guard
        } else {
            None
        };
        let mut plan = self.plan(batches, &headers, dedup)?;
        let kept = plan.kept.take_batches();
        let committed = if kept.is_empty() {
            None
        } else {
            let proposed = group.propose(kept);
            replication.wake();
            Some(match proposed.await {
                Ok(c) => c,
                Err(ProposeError::NotLeader { leader }) => return Err(not_leader(leader)),
                Err(ProposeError::Superseded) => return Err(not_leader(group.leader())),
                Err(ProposeError::Dropped(reason)) => return Err(BrokerError::Timeout(reason)),
                Err(ProposeError::Fenced(reason)) => return Err(BrokerError::PartitionFenced(reason)),
            })
        };
        let base_offset = committed.as_ref().map_or(log.high_watermark(), |c| c.base_offset);
        let duplicates = plan.duplicates(base_offset);
        // Originals of duplicates are committed (the state holds nothing
        // else), so every record of the reply is `replicated`.
        Ok(Appended {
            base_offset,
            records: committed.as_ref().map_or(0, |c| c.records),
            log_start: log.log_start_offset(),
            append_time_ms: committed.as_ref().map_or(0, |c| c.append_time_ms),
            durability: Durability::Replicated,
            duplicates,
        })
    }

    /// Waits (bounded) until this replica leads and applied an entry of its
    /// own term (`RaftGroup::applied_own_term`).
    async fn await_own_term(&self, group: &super::raft_group::RaftGroup) -> Result<(), OwnTerm> {
        for _ in 0..OWN_TERM_POLLS_MAX {
            if group.applied_own_term() {
                return Ok(());
            }
            if !group.is_leader() {
                return Err(OwnTerm::NotLeader);
            }
            crate::runtime::sleep(std::time::Duration::from_millis(OWN_TERM_POLL_MS)).await;
        }
        Err(OwnTerm::Late)
    }

    /// Waits until every original of the duplicates is visible to readers
    /// and returns the durability that makes them visible.
    async fn await_originals(
        &self,
        log: &PartitionLog,
        dups: &[DuplicateRecord],
    ) -> BrokerResult<Durability> {
        let Some(last) = dups.iter().map(|d| d.original_offset).max() else {
            return Ok(self.acked_durability());
        };
        log.wait_for_offset(last).await?;
        Ok(self.acked_durability())
    }

    /// Validates every batch once (framing, CRC, records); returns their
    /// headers and whether any record carries a message id.
    fn validate(&self, batches: &[BytesMut]) -> BrokerResult<(Vec<batch::BatchHeader>, bool)> {
        let mut headers = Vec::with_capacity(batches.len());
        let mut has_ids = false;
        for b in batches {
            let (header, ids) = batch::validate_with(b, &self.limits, |records| {
                records.iter().any(|r| r.message_id.is_some())
            })
            .map_err(|e| BrokerError::CorruptBatch(e.to_string()))?;
            has_ids |= ids;
            headers.push(header);
        }
        Ok((headers, has_ids))
    }

    /// Phase one, synchronous: the producer-sequence check and the
    /// message-id lookup for every record, in request order. Records kept
    /// get consecutive positions in the run `append_all` will store.
    fn plan(
        &self,
        batches: Vec<BytesMut>,
        headers: &[batch::BatchHeader],
        dedup: bool,
    ) -> BrokerResult<Plan> {
        let mut plan = Plan::default();
        let mut chain: Option<(u64, u16, u32)> = None;
        let mut index = 0u32;
        for (b, header) in batches.into_iter().zip(headers) {
            let check = match chain {
                Some((id, epoch, next))
                    if id == header.producer_id && epoch == header.producer_epoch && id != 0 =>
                {
                    if header.base_sequence == next {
                        SequenceCheck::Accept
                    } else {
                        SequenceCheck::OutOfOrder { expected: next }
                    }
                }
                _ => self.sequences.borrow().check(
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence,
                ),
            };
            match check {
                SequenceCheck::Accept => {}
                SequenceCheck::Duplicate { base_offset } => {
                    for i in 0..header.record_count {
                        plan.dups
                            .push((index + i, Original::Stored(base_offset + u64::from(i))));
                    }
                    index += header.record_count;
                    continue;
                }
                SequenceCheck::OutOfOrder { expected } => {
                    return Err(BrokerError::OutOfOrderSequence {
                        producer_id: header.producer_id,
                        sequence: header.base_sequence,
                        expected,
                    });
                }
            }
            chain = Some((
                header.producer_id,
                header.producer_epoch,
                header.base_sequence.wrapping_add(header.record_count),
            ));
            let batch = if dedup {
                self.strip_duplicates(b, header, index, &mut plan)?
            } else {
                Some(b)
            };
            let stored = match &batch {
                Some(_) if !dedup => header.record_count,
                Some(_) => (plan.run_len - plan.kept.run_len()) as u32,
                None => 0,
            };
            if let Some(batch) = batch {
                plan.kept.push(batch, *header, stored);
            }
            plan.run_len = plan.kept.run_len();
            index += header.record_count;
        }
        Ok(plan)
    }

    /// Looks every record's message id up in the window and among the
    /// records kept earlier in this request. Returns the batch to store
    /// (re-encoded without duplicates, or `None` if all were).
    fn strip_duplicates(
        &self,
        batch: BytesMut,
        header: &batch::BatchHeader,
        first_index: u32,
        plan: &mut Plan,
    ) -> BrokerResult<Option<BytesMut>> {
        let corrupt = |e: batch::BatchError| BrokerError::CorruptBatch(e.to_string());
        let opened = BatchRecords::open(&batch, header, &self.limits).map_err(corrupt)?;
        let records = opened.records().map_err(corrupt)?;
        let mut window = self.ids.borrow_mut();
        window.expire(now_ms(), self.topic.config.dedup_window_ms);
        let mut dropped = Vec::new();
        let mut kept = 0u64;
        for (i, r) in records.iter().enumerate() {
            let id = r.message_id.as_ref().map(|m| self.hasher.hash(m.as_str()));
            let original = id.and_then(|id| {
                window
                    .lookup(id)
                    .map(Original::Stored)
                    .or_else(|| plan.ids.get(&id).map(|&pos| Original::InRun(pos)))
            });
            match original {
                Some(original) => {
                    plan.dups.push((first_index + i as u32, original));
                    dropped.push(i);
                }
                None => {
                    let pos = plan.run_len + kept;
                    if let Some(id) = id {
                        plan.ids.insert(id, pos);
                    }
                    kept += 1;
                }
            }
        }
        drop(window);
        plan.run_len += kept;
        if dropped.is_empty() {
            return Ok(Some(batch));
        }
        if kept == 0 {
            return Ok(None);
        }
        rebuild_without(header, records, &dropped).map(Some)
    }

    /// Phase two, after the append: remember sequences and ids with their
    /// real offsets and describe what was stored. The durability is filled
    /// in by the caller (it may have to wait for the originals of
    /// duplicates).
    fn settle(&self, plan: Plan, acks: &[AppendAck], log: &PartitionLog) -> Appended {
        let run_base = acks.first().map_or(log.log_end_offset(), |a| a.base_offset);
        for (ack, header) in acks.iter().zip(&plan.kept.headers) {
            let count = (ack.last_offset + 1 - ack.base_offset) as u32;
            self.sequences.borrow_mut().record(
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                count,
                ack.base_offset,
            );
        }
        if let Some(last) = acks.last() {
            let mut window = self.ids.borrow_mut();
            window.expire(last.append_time_ms, self.topic.config.dedup_window_ms);
            for (&id, &pos) in &plan.ids {
                window.insert(id, run_base + pos, last.append_time_ms);
            }
        }
        let run_len: u64 = acks.iter().map(|a| a.last_offset + 1 - a.base_offset).sum();
        let duplicates = plan.duplicates(run_base);
        let durability = match acks.last().map(|a| a.durability) {
            Some(StorageDurability::Fsynced) => Durability::Fsynced,
            Some(StorageDurability::Written) => Durability::Written,
            Some(StorageDurability::Memory) => Durability::Memory,
            None => Durability::Accepted,
        };
        Appended {
            base_offset: run_base,
            records: run_len,
            log_start: log.log_start_offset(),
            append_time_ms: acks.last().map_or(0, |a| a.append_time_ms),
            durability,
            duplicates,
        }
    }
}

/// Re-encodes a batch without the records at the `dropped` indexes.
fn rebuild_without(
    header: &batch::BatchHeader,
    records: &rkyv::vec::ArchivedVec<batch::ArchivedRecord>,
    dropped: &[usize],
) -> BrokerResult<BytesMut> {
    let compression = header
        .compression()
        .map_err(|e| BrokerError::CorruptBatch(e.to_string()))?;
    let mut builder = BatchBuilder::new().compression(compression);
    for (i, r) in records.iter().enumerate() {
        if dropped.contains(&i) {
            continue;
        }
        builder.push(NewRecord {
            timestamp_ms: batch::record_timestamp(header, r),
            key: r.key.as_ref().map(|k| k.to_vec()),
            value: r.value.as_ref().map(|v| v.to_vec()),
            headers: r
                .headers
                .iter()
                .map(|h| RecordHeader {
                    key: h.key.to_string(),
                    value: h.value.to_vec(),
                })
                .collect(),
            message_id: r.message_id.as_ref().map(|m| m.to_string()),
        });
    }
    let bytes = builder
        .finish()
        .map_err(|e| BrokerError::Internal(e.to_string()))?;
    Ok(BytesMut::from(bytes.as_slice()))
}

/// Where the first copy of a duplicate record is.
#[derive(Debug, Clone, Copy)]
enum Original {
    /// Stored before this request, at this offset.
    Stored(u64),
    /// Kept earlier in this request, at this position of the run.
    InRun(u64),
}

/// The batches of one request that will be stored, in order.
#[derive(Default)]
struct Kept {
    batches: Vec<BytesMut>,
    headers: Vec<batch::BatchHeader>,
    records: u64,
}

impl Kept {
    fn push(&mut self, batch: BytesMut, header: batch::BatchHeader, stored: u32) {
        self.batches.push(batch);
        self.headers.push(header);
        self.records += u64::from(stored);
    }

    fn run_len(&self) -> u64 {
        self.records
    }

    fn take_batches(&mut self) -> Vec<BytesMut> {
        std::mem::take(&mut self.batches)
    }
}

/// Phase one's decisions for one produce request.
#[derive(Default)]
struct Plan {
    kept: Kept,
    /// Records kept so far (positions in the run).
    run_len: u64,
    /// (index of the record in the request, where its first copy is).
    dups: Vec<(u32, Original)>,
    /// Message ids of kept records and their positions in the run.
    ids: std::collections::HashMap<u128, u64>,
}

impl Plan {
    /// The duplicates as the reply names them, once the run's first
    /// record is stored at `run_base`.
    fn duplicates(&self, run_base: u64) -> Vec<DuplicateRecord> {
        self.dups
            .iter()
            .map(|&(record_index, original)| DuplicateRecord {
                record_index,
                original_offset: match original {
                    Original::Stored(o) => o,
                    Original::InRun(pos) => run_base + pos,
                },
            })
            .collect()
    }
}
