//! A partition on its owning shard: the storage log plus the produce-side
//! state (dedup window, producer sequences) and the owner-side operations.
//!
//! Produce validates every batch once (framing, CRC, validated rkyv access
//! to the records), applies the idempotent-producer check and the
//! `message_id` window, and appends. Batches without message ids go straight
//! to the log, concurrently with other requests, so they share group commits.
//! Batches that carry message ids take the partition's dedup lock for the
//! whole append: the window lookup and the insert of the new offsets must not
//! interleave with another request's, or two copies of one id in flight at
//! once would both be stored. A batch with duplicates is re-encoded without
//! them (the only place the broker re-encodes records), so offsets stay dense.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::sync::Semaphore;
use shoal_protocol::batch::{self, BatchBuilder, BatchRecords, NewRecord, RecordHeader};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::produce::{DuplicateRecord, Durability, ProducePartitionResponse};
use shoal_protocol::messages::topic::FlushPolicy as TopicFlush;
use shoal_storage::{LogConfig, LogError, PartitionLog};

use crate::dedup::{IdHasher, IdWindow, ProducerSequences, SequenceCheck};
use crate::mesh::PartitionFigures;
use crate::runtime::now_ms;
use crate::shard::Shard;
use crate::topics::TopicMeta;

/// A partition owned by this shard.
pub struct Partition {
    pub topic: Rc<TopicMeta>,
    pub id: u32,
    dir: PathBuf,
    /// The log, or why it could not be opened (the partition is fenced).
    log: Result<Rc<PartitionLog>, String>,
    ids: RefCell<IdWindow>,
    hasher: IdHasher,
    sequences: RefCell<ProducerSequences>,
    dedup_lock: Semaphore,
    limits: batch::BatchLimits,
}

/// A produce failure for one partition: the code and the message.
pub type Refusal = (ErrorCode, String);

fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
    (code, message.into())
}

/// Maps a storage error to the code a client sees.
pub fn log_error_code(e: &LogError) -> ErrorCode {
    match e {
        LogError::InvalidBatch(_) => ErrorCode::CorruptBatch,
        LogError::Limit { .. } => ErrorCode::RecordTooLarge,
        LogError::Closed => ErrorCode::ShuttingDown,
        _ => ErrorCode::PartitionFenced,
    }
}

impl Partition {
    /// Opens the partition's log (running recovery). A failure fences the
    /// partition instead of failing the shard.
    pub async fn open(shard: &Rc<Shard>, topic: Rc<TopicMeta>, id: u32, dir: PathBuf) -> Rc<Partition> {
        let config = log_config(shard, &topic);
        let limits = config.batch_limits;
        let log = match PartitionLog::open(&dir, config).await {
            Ok(log) => Ok(log),
            Err(e) => {
                tracing::error!(topic = %topic.name, partition = id, error = %e, "partition fenced on open");
                Err(e.to_string())
            }
        };
        let partition = Rc::new(Partition {
            topic,
            id,
            dir,
            log,
            ids: RefCell::new(IdWindow::default()),
            hasher: IdHasher::default(),
            sequences: RefCell::new(ProducerSequences::default()),
            dedup_lock: Semaphore::new(1),
            limits,
        });
        partition.rebuild_dedup_window().await;
        partition
    }

    pub fn log(&self) -> Result<&Rc<PartitionLog>, Refusal> {
        self.log
            .as_ref()
            .map_err(|e| refusal(ErrorCode::PartitionFenced, e.clone()))
    }

    /// Bounds and state for stats and metadata.
    pub fn figures(&self) -> PartitionFigures {
        match &self.log {
            Ok(log) => {
                let b = log.bounds();
                PartitionFigures {
                    log_start: b.log_start_offset,
                    log_end: b.log_end_offset,
                    high_watermark: b.high_watermark,
                    size_bytes: segment_bytes(&self.dir),
                    fenced: log.fenced(),
                }
            }
            Err(e) => PartitionFigures {
                fenced: Some(e.clone()),
                ..Default::default()
            },
        }
    }

    /// Flushes and closes the log (shutdown, topic deletion).
    pub async fn close(&self) {
        if let Ok(log) = &self.log {
            if let Err(e) = log.close().await {
                tracing::error!(topic = %self.topic.name, partition = self.id, error = %e, "close failed");
            }
        }
    }

    /// Retention, then compaction for compacted topics.
    pub async fn maintain(&self, now_ms: i64) {
        let Ok(log) = &self.log else { return };
        match log.apply_retention(now_ms).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(topic = %self.topic.name, partition = self.id, segments = n, "retention deleted segments")
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic.name, partition = self.id, error = %e, "retention failed")
            }
        }
        if self.topic.config.compacted {
            if let Err(e) = log.compact(now_ms).await {
                tracing::warn!(topic = %self.topic.name, partition = self.id, error = %e, "compaction failed");
            }
        }
    }

    /// Appends the batches of one produce request, in order.
    pub async fn produce(&self, batches: Vec<BytesMut>) -> ProducePartitionResponse {
        match self.produce_inner(batches).await {
            Ok(resp) => resp,
            Err((code, message)) => self.failed(code, message),
        }
    }

    fn failed(&self, code: ErrorCode, message: String) -> ProducePartitionResponse {
        ProducePartitionResponse {
            partition: self.id,
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

    async fn produce_inner(&self, batches: Vec<BytesMut>) -> Result<ProducePartitionResponse, Refusal> {
        let log = self.log()?.clone();
        let limits = self.limits;
        let mut headers = Vec::with_capacity(batches.len());
        let mut has_ids = false;
        for b in &batches {
            let (header, ids) = batch::validate_with(b, &limits, |records| {
                records.iter().any(|r| r.message_id.is_some())
            })
            .map_err(|e| refusal(ErrorCode::CorruptBatch, e.to_string()))?;
            has_ids |= ids;
            headers.push(header);
        }
        let dedup = has_ids && self.topic.config.dedup_window_ms > 0;
        // Held across the append so no other request's ids interleave.
        let _guard = if dedup {
            Some(self.dedup_lock.acquire_permit(1).await.ok())
        } else {
            None
        };
        let mut plan = self.plan(batches, &headers, dedup)?;
        let kept_batches: Vec<BytesMut> = plan.kept.iter_mut_batches();
        let acks = if kept_batches.is_empty() {
            Vec::new()
        } else {
            // Each batch passed validate_with above or was rebuilt by
            // BatchBuilder: the log checks only the framing, not the CRC again.
            log.append_all_validated(kept_batches, log.default_durability())
                .await
                .map_err(|e| refusal(log_error_code(&e), e.to_string()))?
        };
        Ok(self.settle(plan, &acks, &log))
    }

    /// Phase one, synchronous: the producer-sequence check and the
    /// message-id lookup for every record, in request order. Records kept
    /// get consecutive positions in the run `append_all` will store.
    fn plan(
        &self,
        batches: Vec<BytesMut>,
        headers: &[batch::BatchHeader],
        dedup: bool,
    ) -> Result<Plan, Refusal> {
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
                    let msg = format!(
                        "producer {} sequence {} (expected {expected})",
                        header.producer_id, header.base_sequence
                    );
                    return Err(refusal(ErrorCode::OutOfOrderSequence, msg));
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
    ) -> Result<Option<BytesMut>, Refusal> {
        let corrupt = |e: batch::BatchError| refusal(ErrorCode::CorruptBatch, e.to_string());
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
    /// real offsets and build the reply.
    fn settle(
        &self,
        plan: Plan,
        acks: &[shoal_storage::AppendAck],
        log: &PartitionLog,
    ) -> ProducePartitionResponse {
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
        let duplicates = plan
            .dups
            .iter()
            .map(|&(record_index, original)| DuplicateRecord {
                record_index,
                original_offset: match original {
                    Original::Stored(o) => o,
                    Original::InRun(pos) => run_base + pos,
                },
            })
            .collect();
        let durability = match acks.last().map(|a| a.durability) {
            Some(shoal_storage::Durability::Fsynced) => Durability::Fsynced,
            Some(shoal_storage::Durability::Written) => Durability::Written,
            Some(shoal_storage::Durability::Memory) => Durability::Memory,
            // Every record was a duplicate: the originals were stored before.
            None => Durability::Written,
        };
        ProducePartitionResponse {
            partition: self.id,
            error: 0,
            message: String::new(),
            base_offset: run_base,
            last_offset: (run_base + run_len).wrapping_sub(1),
            log_start: log.log_start_offset(),
            append_time_ms: acks.last().map_or(0, |a| a.append_time_ms),
            durability,
            duplicates,
        }
    }

    /// Refills the message-id window from the records appended within the
    /// topic's window, so dedup survives a restart.
    async fn rebuild_dedup_window(&self) {
        let window_ms = self.topic.config.dedup_window_ms;
        let Ok(log) = &self.log else { return };
        if window_ms == 0 || log.log_end_offset() == log.log_start_offset() {
            return;
        }
        let since = now_ms().saturating_sub(window_ms as i64);
        let Ok(Some(mut offset)) = log.offset_for_timestamp(since).await else {
            return;
        };
        let limits = self.limits;
        let end = log.log_end_offset();
        while offset < end {
            let Ok(read) = log.read(offset, 1 << 20).await else {
                return;
            };
            if read.batches.is_empty() {
                return;
            }
            for stored in &read.batches {
                let Ok(header) = batch::validate(&stored.bytes, &limits) else {
                    return;
                };
                self.remember_ids(&stored.bytes, &header, &limits);
                offset = header.next_offset();
            }
        }
    }

    fn remember_ids(&self, bytes: &[u8], header: &batch::BatchHeader, limits: &batch::BatchLimits) {
        let Ok(records) = BatchRecords::open(bytes, header, limits) else {
            return;
        };
        let Ok(records) = records.records() else { return };
        let mut window = self.ids.borrow_mut();
        for (i, r) in records.iter().enumerate() {
            if let Some(m) = r.message_id.as_ref() {
                window.insert(
                    self.hasher.hash(m.as_str()),
                    header.base_offset + i as u64,
                    header.append_time_ms,
                );
            }
        }
    }
}

/// Bytes of segment files in a partition directory (segments keep their
/// logical size; preallocation does not count).
fn segment_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Re-encodes a batch without the records at the `dropped` indexes.
fn rebuild_without(
    header: &batch::BatchHeader,
    records: &rkyv::vec::ArchivedVec<batch::ArchivedRecord>,
    dropped: &[usize],
) -> Result<BytesMut, Refusal> {
    let compression = header
        .compression()
        .map_err(|e| refusal(ErrorCode::CorruptBatch, e.to_string()))?;
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
        .map_err(|e| refusal(ErrorCode::Internal, e.to_string()))?;
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

    fn iter_mut_batches(&mut self) -> Vec<BytesMut> {
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

/// The storage settings of a partition: broker defaults, topic overrides.
fn log_config(shard: &Shard, topic: &TopicMeta) -> LogConfig {
    let s = &shard.config.storage;
    let t = &topic.config;
    let flush = match t.flush {
        TopicFlush::Always => shoal_storage::FlushPolicy::Always,
        TopicFlush::IntervalMs(ms) => shoal_storage::FlushPolicy::IntervalMs(u64::from(ms)),
        TopicFlush::Never => shoal_storage::FlushPolicy::Never,
    };
    let partitions_here = topic.config.partitions.div_ceil(shard.count).max(1) as usize;
    LogConfig {
        flush,
        segment_bytes_max: s.segment_bytes_max,
        segment_age_ms_max: Some(s.segment_age_ms_max),
        preallocate_bytes: s.preallocate_bytes.min(s.segment_bytes_max),
        write_chunk_bytes: s.write_chunk_bytes,
        cache_bytes_max: (s.batch_cache_bytes_max / partitions_here).max(s.write_chunk_bytes),
        retention_ms: t.retention_ms,
        retention_bytes: t.retention_bytes,
        compacted: t.compacted,
        tombstone_retention_ms: t.tombstone_retention_ms,
        batch_limits: batch::BatchLimits {
            batch_len_max: shard.config.limits.frame_bytes_max,
            ..batch::BatchLimits::default()
        },
        task_queue: Some(shard.log_queue),
        ..LogConfig::default()
    }
}

/// Copies a batch slice of a request frame into the owned buffer the log takes.
pub fn owned_batch(bytes: &[u8]) -> BytesMut {
    BytesMut::from(bytes)
}

/// Turns shared batch bytes (from the mesh) into the owned buffer the log takes.
pub fn owned_from_shared(bytes: Bytes) -> BytesMut {
    bytes.try_into_mut().unwrap_or_else(|b| BytesMut::from(&b[..]))
}
