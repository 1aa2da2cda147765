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
        let mut has_ids = false;
        for b in &batches {
            let header =
                batch::validate(b, &limits).map_err(|e| refusal(ErrorCode::CorruptBatch, e.to_string()))?;
            has_ids |= batch_has_ids(b, &header, &limits);
        }
        let dedup = has_ids && self.topic.config.dedup_window_ms > 0;
        let _guard = if dedup {
            Some(self.dedup_lock.acquire_permit(1).await.ok())
        } else {
            None
        };
        let mut out = Appended::default();
        for b in batches {
            self.append_one(&log, b, dedup, &mut out).await?;
        }
        Ok(out.into_response(self.id, log.log_start_offset()))
    }

    async fn append_one(
        &self,
        log: &Rc<PartitionLog>,
        batch: BytesMut,
        dedup: bool,
        out: &mut Appended,
    ) -> Result<(), Refusal> {
        let limits = self.limits;
        let header =
            batch::validate(&batch, &limits).map_err(|e| refusal(ErrorCode::CorruptBatch, e.to_string()))?;
        match self
            .sequences
            .borrow()
            .check(header.producer_id, header.producer_epoch, header.base_sequence)
        {
            SequenceCheck::Accept => {}
            SequenceCheck::Duplicate { base_offset } => {
                out.duplicate_batch(header.record_count, base_offset);
                return Ok(());
            }
            SequenceCheck::OutOfOrder { expected } => {
                return Err(refusal(
                    ErrorCode::OutOfOrderSequence,
                    format!(
                        "producer {} sequence {} (expected {expected})",
                        header.producer_id, header.base_sequence
                    ),
                ));
            }
        }
        let (batch, dups, ids) = if dedup {
            self.strip_duplicates(batch, &header, &limits)?
        } else {
            (Some(batch), Vec::new(), Vec::new())
        };
        let stored = header.record_count - dups.len() as u32;
        for &(index, offset) in &dups {
            out.duplicate(index, offset);
        }
        let Some(batch) = batch else {
            out.skip(header.record_count);
            return Ok(());
        };
        let ack = log
            .append(batch)
            .await
            .map_err(|e| refusal(log_error_code(&e), e.to_string()))?;
        debug_assert_eq!(ack.last_offset + 1 - ack.base_offset, u64::from(stored));
        self.sequences.borrow_mut().record(
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            header.record_count,
            ack.base_offset,
        );
        let mut window = self.ids.borrow_mut();
        window.expire(ack.append_time_ms, self.topic.config.dedup_window_ms);
        for (i, id) in ids.into_iter().enumerate() {
            if let Some(id) = id {
                window.insert(id, ack.base_offset + i as u64, ack.append_time_ms);
            }
        }
        out.stored(header.record_count, &ack);
        Ok(())
    }

    /// Looks every record's message id up in the window. Returns the batch to
    /// store (re-encoded without duplicates, or `None` if all were), the
    /// duplicates as (index in this batch, original offset), and the id hash
    /// of every stored record in order.
    #[allow(clippy::type_complexity)]
    fn strip_duplicates(
        &self,
        batch: BytesMut,
        header: &batch::BatchHeader,
        limits: &batch::BatchLimits,
    ) -> Result<(Option<BytesMut>, Vec<(u32, u64)>, Vec<Option<u128>>), Refusal> {
        let records = BatchRecords::open(&batch, header, limits)
            .map_err(|e| refusal(ErrorCode::CorruptBatch, e.to_string()))?;
        let records = records
            .records()
            .map_err(|e| refusal(ErrorCode::CorruptBatch, e.to_string()))?;
        let mut window = self.ids.borrow_mut();
        window.expire(now_ms(), self.topic.config.dedup_window_ms);
        let mut dups = Vec::new();
        let mut ids: Vec<Option<u128>> = Vec::with_capacity(records.len());
        let mut seen_here: Vec<(u128, u32)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let Some(id) = r.message_id.as_ref().map(|m| self.hasher.hash(m.as_str())) else {
                ids.push(None);
                continue;
            };
            if let Some(offset) = window.lookup(id) {
                dups.push((i as u32, offset));
            } else if let Some(&(_, first)) = seen_here.iter().find(|(h, _)| *h == id) {
                // The same id twice in one batch: the later copy names the
                // offset the first copy will get.
                let kept_before = first as usize - dups.iter().filter(|(d, _)| *d < first).count();
                dups.push((i as u32, u64::MAX - kept_before as u64));
            } else {
                seen_here.push((id, i as u32));
                ids.push(Some(id));
            }
        }
        drop(window);
        if dups.is_empty() {
            return Ok((Some(batch), dups, ids));
        }
        if dups.len() == records.len() {
            return Ok((None, dups, Vec::new()));
        }
        let rebuilt = rebuild_without(header, records, &dups)?;
        Ok((Some(rebuilt), dups, ids))
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

/// Whether any record of a (validated) batch carries a message id.
fn batch_has_ids(bytes: &[u8], header: &batch::BatchHeader, limits: &batch::BatchLimits) -> bool {
    let Ok(records) = BatchRecords::open(bytes, header, limits) else {
        return false;
    };
    let Ok(records) = records.records() else {
        return false;
    };
    records.iter().any(|r| r.message_id.is_some())
}

/// Re-encodes a batch without the records listed in `dups`.
fn rebuild_without(
    header: &batch::BatchHeader,
    records: &rkyv::vec::ArchivedVec<batch::ArchivedRecord>,
    dups: &[(u32, u64)],
) -> Result<BytesMut, Refusal> {
    let compression = header
        .compression()
        .map_err(|e| refusal(ErrorCode::CorruptBatch, e.to_string()))?;
    let mut builder = BatchBuilder::new().compression(compression);
    for (i, r) in records.iter().enumerate() {
        if dups.iter().any(|(d, _)| *d as usize == i) {
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

/// Accumulates the outcome of one partition's batches.
#[derive(Default)]
struct Appended {
    /// Records of the request seen so far (index of the next one).
    next_index: u32,
    base_offset: Option<u64>,
    last_offset: Option<u64>,
    append_time_ms: i64,
    durability: Option<shoal_storage::Durability>,
    duplicates: Vec<DuplicateRecord>,
    /// Duplicates within a batch that point at a not-yet-known offset:
    /// (duplicate index, index among the stored records of its batch, batch start).
    pending_self: Vec<(usize, u64)>,
}

impl Appended {
    fn duplicate(&mut self, index_in_batch: u32, offset: u64) {
        self.duplicates.push(DuplicateRecord {
            record_index: self.next_index + index_in_batch,
            original_offset: offset,
        });
        if offset > u64::MAX / 2 {
            self.pending_self
                .push((self.duplicates.len() - 1, u64::MAX - offset));
        }
    }

    fn duplicate_batch(&mut self, count: u32, base_offset: u64) {
        for i in 0..count {
            self.duplicates.push(DuplicateRecord {
                record_index: self.next_index + i,
                original_offset: base_offset + u64::from(i),
            });
        }
        self.next_index += count;
    }

    fn skip(&mut self, count: u32) {
        self.next_index += count;
    }

    fn stored(&mut self, count: u32, ack: &shoal_storage::AppendAck) {
        for (dup, kept_index) in self.pending_self.drain(..) {
            self.duplicates[dup].original_offset = ack.base_offset + kept_index;
        }
        self.base_offset.get_or_insert(ack.base_offset);
        self.last_offset = Some(ack.last_offset);
        self.append_time_ms = ack.append_time_ms;
        self.durability = Some(match self.durability {
            Some(d) => d.min(ack.durability),
            None => ack.durability,
        });
        self.next_index += count;
    }

    fn into_response(self, partition: u32, log_start: u64) -> ProducePartitionResponse {
        let base = self.base_offset.unwrap_or(0);
        ProducePartitionResponse {
            partition,
            error: 0,
            message: String::new(),
            base_offset: base,
            last_offset: self.last_offset.unwrap_or(base.wrapping_sub(1)),
            log_start,
            append_time_ms: self.append_time_ms,
            durability: match self.durability {
                Some(shoal_storage::Durability::Fsynced) => Durability::Fsynced,
                Some(shoal_storage::Durability::Written) => Durability::Written,
                Some(shoal_storage::Durability::Memory) => Durability::Memory,
                // Every record was a duplicate: the originals' durability.
                None => Durability::Written,
            },
            duplicates: self.duplicates,
        }
    }
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
        task_queue: None,
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
