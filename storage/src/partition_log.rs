//! `PartitionLog`: one partition's log, owned by one executor.
//!
//! All state sits behind `Cell`/`RefCell` so any number of tasks on the
//! owning executor can append and read concurrently; nothing here is `Send`.
//! Offsets follow call order: an append takes its place in a queue when it
//! is called ([`PlacementOrder`]), before it waits for anything, and assigns
//! offsets with no await between the check and the copy. The log owns its segments, its bounds and the
//! maintenance flags; everything on the way from an accepted batch to stable
//! storage (tail buffers, cache, group-commit marks, the background writer
//! and syncer) is its [`WritePipeline`], which appends wait on.

use crate::batch_cache::CachedBatch;
use crate::checkpoint::Checkpoint;
use crate::config::{FlushPolicy, LogConfig, VerifyOnOpen};
use crate::device::{Device, DeviceFile};
use crate::dma_device::DmaDevice;
use crate::error::LogError;
use crate::group_commit::{Durability, Mark};
use crate::index::SegmentIndex;
use crate::log_stats::LogStats;
use crate::mutation::{self, Mutation};
use crate::placement_order::PlacementOrder;
use crate::recovery::ScanEnd;
use crate::segment::{load_index, remove_if_exists, Segment, Tail};
use crate::segment_appender::Appender;
use crate::segment_name::{parse_file_name, FileKind, PROBE_FILE_NAME};
use crate::write_pipeline::{run_interval_sync, run_syncer, run_writer, WritePipeline};
use bytes::BytesMut;
use shoal_protocol::batch::{self, BatchError, BatchHeader, BatchLimits};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// The answer to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    pub base_offset: u64,
    pub last_offset: u64,
    pub append_time_ms: i64,
    /// The durability reached when the append returned.
    pub durability: Durability,
}

/// A log's bounds at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub log_end_offset: u64,
}

/// The log of one partition, on a [`Device`] (glommio DMA files unless a
/// test passes its simulated disk to [`PartitionLog::open_on`]).
pub struct PartitionLog<D: Device = DmaDevice> {
    pub(crate) device: D,
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) segments: RefCell<BTreeMap<u64, Rc<Segment<D>>>>,
    pub(crate) active: RefCell<Rc<Segment<D>>>,
    pub(crate) pipeline: Rc<WritePipeline<D>>,
    pub(crate) alignment: usize,
    pub(crate) log_start: Cell<u64>,
    /// Set by replicated logs, and lowered by truncation; in single-node
    /// mode the acknowledged end raises it (see `high_watermark`).
    pub(crate) high_watermark: Cell<u64>,
    last_append_ms: Cell<i64>,
    /// Roll, truncate and compaction hold appends off while they run.
    pub(crate) maintenance: Cell<bool>,
    /// Truncation, retention and compaction run one at a time.
    pub(crate) rewriting: Cell<bool>,
    /// Appends whose batches are placed and that have not returned yet
    /// (`truncate_suffix` lets them return before it cuts: see there).
    pub(crate) appends_placed: Cell<usize>,
    /// Appends place in call order, whatever they wait for first.
    placement: PlacementOrder,
}

/// Counts one placed append until it returns (or is dropped).
struct PlacedAppend<'a> {
    count: &'a Cell<usize>,
    changed: &'a crate::notify::Notify,
}

impl<'a> PlacedAppend<'a> {
    fn new(count: &'a Cell<usize>, changed: &'a crate::notify::Notify) -> Self {
        count.set(count.get() + 1);
        PlacedAppend { count, changed }
    }
}

impl Drop for PlacedAppend<'_> {
    fn drop(&mut self) {
        self.count.set(self.count.get() - 1);
        self.changed.notify();
    }
}

/// Whether an append assigns offsets and the append time, or keeps the
/// ones a raft leader gave the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Assign,
    Keep,
}

/// A replicated run must start at the log end and be contiguous, so no
/// offset of a replica can hold another record than the leader's.
fn check_placed(checked: &[(BytesMut, BatchHeader, usize)], log_end: u64) -> Result<(), LogError> {
    let mut next = log_end;
    for (_, header, _) in checked {
        if header.base_offset != next {
            return Err(LogError::OffsetOutOfRange {
                offset: header.base_offset,
                start: next,
                end: next,
            });
        }
        next = header.next_offset();
    }
    Ok(())
}

/// Writes are aligned to at least this, whatever the device reports: on
/// 4 KiB-sector storage a 512-byte-aligned write costs a read-modify-write.
pub const ALIGNMENT_MIN_BYTES: usize = 4096;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl PartitionLog<DmaDevice> {
    /// Opens (or creates) the log in `dir` on glommio DMA files, running
    /// recovery; see the crate header for the rules. Must run on the
    /// executor that will own the log.
    pub async fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Rc<Self>, LogError> {
        Self::open_on(DmaDevice, dir, config).await
    }
}

impl<D: Device> PartitionLog<D> {
    /// Opens (or creates) the log in `dir` on `device`, running recovery.
    pub async fn open_on(device: D, dir: impl AsRef<Path>, config: LogConfig) -> Result<Rc<Self>, LogError> {
        config.check()?;
        let dir = dir.as_ref();
        let dir = device
            .prepare_dir(dir)
            .await
            .map_err(|e| LogError::io(format!("preparing {}", dir.display()), e))?;
        let bases = list_segments(&device, &dir).await?;
        let mut segments = BTreeMap::new();
        let mut tail = RecoveredTail::empty(0);
        for (i, &base) in bases.iter().enumerate() {
            let segment = if i + 1 == bases.len() {
                let (segment, recovered) = open_active(&device, &dir, base, &config).await?;
                tail = recovered;
                segment
            } else {
                open_sealed(&device, &dir, base, &config).await?
            };
            segments.insert(base, segment);
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(&device, &dir, 0, &config).await?);
        }
        check_sequence(&segments)?;
        let log = Self::assemble(device, dir, config, segments, tail).await?;
        log.spawn_tasks()?;
        Ok(log)
    }

    async fn assemble(
        device: D,
        dir: PathBuf,
        config: LogConfig,
        segments: BTreeMap<u64, Rc<Segment<D>>>,
        tail: RecoveredTail,
    ) -> Result<Rc<Self>, LogError> {
        let active = segments
            .values()
            .next_back()
            .expect("at least one segment")
            .clone();
        let log_start = *segments.keys().next().expect("at least one segment");
        let end = tail.end;
        debug_assert_eq!(end.offset, active.index.borrow().next_offset);
        let last_append_ms = segments
            .values()
            .map(|s| s.index.borrow().max_append_ms)
            .max()
            .unwrap_or(i64::MIN);
        let alignment = active.file.alignment().max(ALIGNMENT_MIN_BYTES);
        let free_max = config.pending_bytes_max / config.write_chunk_bytes + config.write_depth_max;
        let mut appender = Appender::new(alignment, config.write_chunk_bytes, free_max);
        let partial = read_partial_block(&active, end.data_len, alignment).await?;
        appender.start_segment(active.clone(), end, &partial);
        let pipeline = WritePipeline::new(
            dir.clone(),
            &config,
            alignment,
            appender,
            active.clone(),
            end,
            tail.durable,
        );
        Ok(Rc::new(PartitionLog {
            device,
            dir,
            config,
            segments: RefCell::new(segments),
            active: RefCell::new(active),
            pipeline: Rc::new(pipeline),
            alignment,
            log_start: Cell::new(log_start),
            high_watermark: Cell::new(end.offset),
            last_append_ms: Cell::new(last_append_ms),
            maintenance: Cell::new(false),
            rewriting: Cell::new(false),
            appends_placed: Cell::new(0),
            placement: PlacementOrder::default(),
        }))
    }

    fn spawn_tasks(&self) -> Result<(), LogError> {
        let weak = Rc::downgrade(&self.pipeline);
        self.spawn(run_writer(weak.clone()))?;
        self.spawn(run_syncer(weak.clone()))?;
        if let FlushPolicy::IntervalMs(ms) = self.config.flush {
            self.spawn(run_interval_sync(weak, Duration::from_millis(ms)))?;
        }
        Ok(())
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + 'static) -> Result<(), LogError> {
        match self.config.task_queue {
            Some(queue) => {
                glommio::spawn_local_into(task, queue)
                    .map_err(|e| LogError::io("spawning the write pipeline", e))?
                    .detach();
            }
            None => {
                glommio::spawn_local(task).detach();
            }
        }
        Ok(())
    }

    /// The durability `append` waits for under this log's flush policy.
    pub fn default_durability(&self) -> Durability {
        match self.config.flush {
            FlushPolicy::Always => Durability::Fsynced,
            FlushPolicy::IntervalMs(_) => Durability::Written,
            FlushPolicy::Never => Durability::Memory,
        }
    }

    /// Appends one batch with the log's default durability.
    pub async fn append(&self, batch: BytesMut) -> Result<AppendAck, LogError> {
        self.append_with(batch, self.default_durability()).await
    }

    /// Appends one batch (exactly one, already validated on ingest; framing
    /// and CRC are checked again here) and returns once `durability` is
    /// reached. Assigns offsets and the append time by patching the header.
    pub async fn append_with(&self, batch: BytesMut, durability: Durability) -> Result<AppendAck, LogError> {
        let mut acks = self.append_all(vec![batch], durability).await?;
        Ok(acks.pop().expect("one ack per batch"))
    }

    /// Appends several batches as one contiguous run of offsets: no other
    /// append can land between them (a produce request's batches for one
    /// partition must get consecutive offsets), then waits once for
    /// `durability` of the whole run. Each batch is checked as in
    /// [`append_with`](Self::append_with).
    pub async fn append_all(
        &self,
        batches: Vec<BytesMut>,
        durability: Durability,
    ) -> Result<Vec<AppendAck>, LogError> {
        self.append_run(batches, durability, batch::check_crc, Stamp::Assign)
            .await
    }

    /// [`append_all`](Self::append_all) for batches whose CRC the caller has
    /// already verified: every batch passed [`batch::validate`] (or
    /// `check_crc`) on ingest, or was built by `BatchBuilder`, and its bytes
    /// have not changed since. Only the framing (header, length) is checked
    /// here, so a produce request pays for one CRC pass, not two. This is
    /// the broker's produce path.
    pub async fn append_all_validated(
        &self,
        batches: Vec<BytesMut>,
        durability: Durability,
    ) -> Result<Vec<AppendAck>, LogError> {
        self.append_run(batches, durability, batch::peek, Stamp::Assign)
            .await
    }

    /// Appends batches a raft leader already placed (a replicated
    /// partition, `docs/replication.md`): each batch keeps its base offset,
    /// leader epoch and append time, and its base offset must be this log's
    /// end at that point, so every replica holds the same bytes at the same
    /// offsets. Framing and CRC are checked. Returns once `durability` is
    /// reached for the whole run.
    pub async fn append_replicated(
        &self,
        batches: Vec<BytesMut>,
        durability: Durability,
    ) -> Result<Vec<AppendAck>, LogError> {
        self.append_run(batches, durability, batch::check_crc, Stamp::Keep)
            .await
    }

    async fn append_run(
        &self,
        batches: Vec<BytesMut>,
        durability: Durability,
        check: impl Fn(&[u8], &BatchLimits) -> Result<(BatchHeader, usize), BatchError>,
        stamp: Stamp,
    ) -> Result<Vec<AppendAck>, LogError> {
        // Taken before the first await: appends place in call order.
        let turn = self.placement.take();
        let mut checked = Vec::with_capacity(batches.len());
        let mut total = 0;
        for batch in batches {
            let (header, len) = check(&batch, &self.config.batch_limits)?;
            if len != batch.len() {
                return Err(BatchError::BadLength {
                    len: batch.len(),
                    max: self.config.batch_limits.batch_len_max,
                }
                .into());
            }
            total += len;
            checked.push((batch, header, len));
        }
        turn.wait_turn().await;
        self.wait_for_room(total).await?;
        if stamp == Stamp::Keep {
            check_placed(&checked, self.pipeline.log_end())?;
        }
        // From here to the end of the copies there is no await: every
        // structure sees the batches at once.
        let placed: Vec<(u64, u64, i64)> = checked
            .into_iter()
            .map(|(batch, header, len)| self.place(batch, &header, len, stamp))
            .collect();
        drop(turn);
        let Some(&(_, end, _)) = placed.last() else {
            return Ok(Vec::new());
        };
        if durability == Durability::Fsynced {
            self.pipeline.request_sync(end);
        }
        // Under flush `never` the append itself moves the high watermark.
        self.pipeline.changed().notify();
        self.pipeline.kick();
        let waiting = PlacedAppend::new(&self.appends_placed, self.pipeline.changed());
        self.pipeline.wait_durable(end, durability).await?;
        let reached = self.pipeline.durability_of(end);
        drop(waiting);
        Ok(placed
            .into_iter()
            .map(|(base, next, append_ms)| AppendAck {
                base_offset: base,
                last_offset: next - 1,
                append_time_ms: append_ms,
                durability: reached,
            })
            .collect())
    }

    /// Assigns offsets and the append time to one checked batch and hands it
    /// to the index and the write pipeline. Synchronous by design.
    fn place(&self, mut batch: BytesMut, header: &BatchHeader, len: usize, stamp: Stamp) -> (u64, u64, i64) {
        let (base, append_ms) = match stamp {
            Stamp::Assign => {
                let base = self.pipeline.log_end() + u64::from(mutation::active(Mutation::OffsetGap));
                let append_ms = now_ms().max(self.last_append_ms.get());
                batch::patch(&mut batch, base, self.config.leader_epoch, append_ms);
                (base, append_ms)
            }
            // Checked against the log end by `check_placed` with no await since.
            Stamp::Keep => (header.base_offset, header.append_time_ms),
        };
        let next = base + u64::from(header.record_count);
        if mutation::active(Mutation::DamageAppended) {
            batch[len - 1] ^= 0x01;
            let crc = batch::compute_crc(&batch);
            batch[24..28].copy_from_slice(&crc.to_le_bytes());
        }
        let bytes = batch.freeze();
        {
            let active = self.active.borrow();
            let mut index = active.index.borrow_mut();
            let pos = index.data_len;
            index.observe(base, next, pos, len as u32, append_ms);
        }
        self.pipeline.accept(CachedBatch {
            base_offset: base,
            next_offset: next,
            append_ms,
            bytes,
        });
        self.last_append_ms.set(append_ms);
        (base, next, append_ms)
    }

    /// Waits until the log is writable, not in maintenance, under its
    /// pending-bytes limit, and rolled if this batch needs a new segment.
    async fn wait_for_room(&self, len: usize) -> Result<(), LogError> {
        // An append that never blocks never yields: let the writer and I/O
        // completions in when the scheduler asks, so writes keep flowing
        // while appenders copy.
        glommio::yield_if_needed().await;
        loop {
            self.check_writable()?;
            if self.maintenance.get() {
                self.pipeline.changed().notified().await;
                continue;
            }
            let pending = self.pipeline.pending_bytes();
            if pending > 0 && pending + len > self.config.pending_bytes_max {
                self.pipeline.changed().notified().await;
                continue;
            }
            if self.needs_roll(len) {
                self.roll_with_maintenance().await?;
                continue;
            }
            return Ok(());
        }
    }

    pub(crate) fn check_writable(&self) -> Result<(), LogError> {
        self.pipeline.check_writable()
    }

    fn needs_roll(&self, len: usize) -> bool {
        let active = self.active.borrow();
        let index = active.index.borrow();
        if index.is_empty() {
            return false;
        }
        let too_big = index.data_len + len as u64 > self.config.segment_bytes_max;
        let too_old = match (self.config.segment_age_ms_max, index.first_append_ms) {
            (Some(age), Some(first)) => now_ms().saturating_sub(first) >= age as i64,
            _ => false,
        };
        too_big || too_old
    }

    /// Rolls to a new segment now, if the active one holds any batch.
    pub async fn roll(&self) -> Result<(), LogError> {
        loop {
            self.check_writable()?;
            if !self.maintenance.get() {
                break;
            }
            self.pipeline.changed().notified().await;
        }
        if self.active.borrow().index.borrow().is_empty() {
            return Ok(());
        }
        self.roll_with_maintenance().await
    }

    async fn roll_with_maintenance(&self) -> Result<(), LogError> {
        self.maintenance.set(true);
        let result = self.roll_inner().await;
        self.maintenance.set(false);
        self.pipeline.changed().notify();
        result
    }

    /// Seals the active segment (all its data fdatasynced and its
    /// checkpoint settled at its end, then its index files written) and
    /// starts a new one at the log end. Recovery takes any failure in a
    /// sealed segment for corruption, so it must be whole before the next
    /// segment exists.
    async fn roll_inner(&self) -> Result<(), LogError> {
        let end = self.pipeline.log_end();
        self.pipeline.settle_to(end).await?;
        let old = self.active.borrow().clone();
        if let Err(e) = old.write_index_files(&self.device, &self.dir).await {
            // The index is rebuildable; a missing file only costs a scan on open.
            tracing::warn!(base_offset = old.base_offset, error = %e, "writing index files failed");
        }
        let new = Segment::create(&self.device, &self.dir, end, &self.config).await?;
        self.segments.borrow_mut().insert(end, new.clone());
        *self.active.borrow_mut() = new.clone();
        self.pipeline.start_segment(new);
        Ok(())
    }

    /// Writes and fdatasyncs everything appended so far and settles the
    /// checkpoint: once it returns Ok, those batches survive a power loss
    /// and damage to them is reported, never cut as a torn tail.
    pub async fn flush(&self) -> Result<(), LogError> {
        self.pipeline.settle_to(self.pipeline.log_end()).await
    }

    pub(crate) async fn sync_to(&self, offset: u64) -> Result<(), LogError> {
        self.pipeline.sync_to(offset).await
    }

    /// Flushes and stops the write pipeline; later appends fail with `Closed`.
    pub async fn close(&self) -> Result<(), LogError> {
        let flushed = self.flush().await;
        self.pipeline.close();
        flushed
    }

    /// Sets the high watermark (replicated logs); clamped to the log end.
    pub fn set_high_watermark(&self, offset: u64) {
        self.high_watermark
            .set(offset.min(self.pipeline.log_end()).max(self.log_start.get()));
        self.pipeline.changed().notify();
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log_start.get()
    }

    pub fn log_end_offset(&self) -> u64 {
        self.pipeline.log_end()
    }

    /// In single-node mode (`hw_follows_ack`) the high watermark is the
    /// acknowledged end: what an append under this log's flush policy has
    /// been told is stored. Replicated logs set it themselves.
    pub fn high_watermark(&self) -> u64 {
        let set = self.high_watermark.get();
        if self.config.hw_follows_ack {
            set.max(self.pipeline.acked_end())
        } else {
            set
        }
    }

    pub fn bounds(&self) -> LogBounds {
        LogBounds {
            log_start_offset: self.log_start.get(),
            high_watermark: self.high_watermark(),
            log_end_offset: self.pipeline.log_end(),
        }
    }

    /// The cause, if a failed write or fdatasync fenced this log.
    pub fn fenced(&self) -> Option<String> {
        self.pipeline.fenced()
    }

    /// The log's counters since open.
    pub fn stats(&self) -> LogStats {
        self.pipeline.stats()
    }

    pub(crate) fn bump(&self, f: impl FnOnce(&mut LogStats)) {
        self.pipeline.bump(f);
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<u64> {
        self.segments.borrow().keys().copied().collect()
    }

    /// Waits until the high watermark passes `offset` (long-poll fetch), or
    /// the log is fenced or closed.
    pub async fn wait_for_offset(&self, offset: u64) -> Result<(), LogError> {
        if mutation::active(Mutation::WakeEarly) {
            return Ok(());
        }
        loop {
            if self.high_watermark() > offset {
                return Ok(());
            }
            self.check_writable()?;
            self.pipeline.changed().notified().await;
        }
    }

    /// Restarts the tail at `end` in `segment` (after `truncate_suffix`).
    pub(crate) fn restart_at(&self, segment: Rc<Segment<D>>, end: Mark, partial: &[u8]) {
        *self.active.borrow_mut() = segment.clone();
        self.pipeline.restart(segment, end, partial);
        if self.high_watermark.get() > end.offset {
            self.high_watermark.set(end.offset);
        }
    }
}

impl<D: Device> Drop for PartitionLog<D> {
    fn drop(&mut self) {
        self.pipeline.close();
    }
}

/// Lists the base offsets of the segment files in `dir`, removing leftover
/// temporary files and index files whose log is gone.
async fn list_segments<D: Device>(device: &D, dir: &Path) -> Result<Vec<u64>, LogError> {
    let names = device
        .list(dir)
        .await
        .map_err(|e| LogError::io(format!("listing {}", dir.display()), e))?;
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(LogError::UnexpectedFile(path));
        };
        match parse_file_name(name) {
            Some((base, FileKind::Log)) => logs.push(base),
            Some((base, FileKind::OffsetIndex | FileKind::TimeIndex)) => indexes.push((base, path)),
            Some((_, FileKind::Temporary)) => remove_if_exists(device, &path).await?,
            // A replicated partition's raft files live beside its segments.
            None if name == PROBE_FILE_NAME || crate::raft_index::is_raft_file(name) => {}
            None => return Err(LogError::UnexpectedFile(path)),
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            remove_if_exists(device, &path).await?;
        }
    }
    Ok(logs)
}

/// What recovery established about the active segment.
struct RecoveredTail {
    /// Its end: after the last whole batch, with the digest up to there.
    end: Mark,
    /// The checkpoint in its header (empty if none was written).
    durable: Checkpoint,
}

impl RecoveredTail {
    fn empty(base: u64) -> Self {
        RecoveredTail {
            end: Mark::segment_start(base),
            durable: Checkpoint::empty(base),
        }
    }
}

/// Opens the active segment: a full scan against its checkpoint, a torn
/// tail cut, and the kept bytes made durable before they are served (a
/// killed process may have left written but unsynced batches behind).
async fn open_active<D: Device>(
    device: &D,
    dir: &Path,
    base: u64,
    config: &LogConfig,
) -> Result<(Rc<Segment<D>>, RecoveredTail), LogError> {
    let fresh_index = SegmentIndex::new(base, config.index_interval_bytes);
    let segment = Segment::open(device, dir, base, fresh_index).await?;
    let checkpoint = segment.read_checkpoint().await?;
    let (scanner, end) = segment.scan(config, 0, None, checkpoint, Tail::Appends).await?;
    let durable = checkpoint.unwrap_or(Checkpoint::empty(base));
    let data_len = scanner.index.data_len;
    match end {
        ScanEnd::Clean if data_len > durable.data_len => segment.fdatasync().await?,
        ScanEnd::Clean => {}
        ScanEnd::TornTail { position, reason } => {
            tracing::warn!(base_offset = base, position, %reason, "truncating torn tail");
            segment.truncate(position, config).await?;
        }
        ScanEnd::Corrupt {
            position,
            offset,
            reason,
        } => return Err(corrupt(base, offset, position, reason)),
    }
    let tail = RecoveredTail {
        end: Mark {
            offset: scanner.index.next_offset,
            segment: base,
            data_len,
            digest: scanner.digest,
        },
        durable,
    };
    segment.written_len.set(data_len);
    *segment.index.borrow_mut() = scanner.index;
    Ok((segment, tail))
}

/// Opens a sealed segment: from its index files when they are valid (and
/// verification of sealed segments is off), otherwise by a scan in which
/// any failure is corruption (a segment is sealed only once whole).
async fn open_sealed<D: Device>(
    device: &D,
    dir: &Path,
    base: u64,
    config: &LogConfig,
) -> Result<Rc<Segment<D>>, LogError> {
    let loaded = load_index(device, dir, base, config).await;
    let trust_index = config.verify_on_open == VerifyOnOpen::ActiveSegment;
    if let (Some(index), true) = (&loaded, trust_index) {
        let segment = Segment::open(device, dir, base, index.clone()).await?;
        if segment.data_end().await? >= index.data_len {
            return Ok(segment);
        }
        tracing::warn!(base_offset = base, "segment shorter than its index; rescanning");
    }
    let fresh_index = SegmentIndex::new(base, config.index_interval_bytes);
    let segment = Segment::open(device, dir, base, fresh_index).await?;
    let checkpoint = segment.read_checkpoint().await?;
    let valid_until = loaded.as_ref().map_or(0, |i| i.data_len);
    let (scanner, end) = segment
        .scan(config, valid_until, None, checkpoint, Tail::Any)
        .await?;
    match end {
        ScanEnd::Clean => {}
        ScanEnd::TornTail { position, reason } => {
            return Err(corrupt(
                base,
                scanner.expected_offset,
                position,
                format!("sealed segment: {reason}"),
            ));
        }
        ScanEnd::Corrupt {
            position,
            offset,
            reason,
        } => return Err(corrupt(base, offset, position, reason)),
    }
    segment.written_len.set(scanner.index.data_len);
    *segment.index.borrow_mut() = scanner.index;
    if loaded.is_none() {
        if let Err(e) = segment.write_index_files(device, dir).await {
            tracing::warn!(base_offset = base, error = %e, "rewriting index files failed");
        }
    }
    Ok(segment)
}

pub(crate) fn corrupt(segment_base: u64, offset: u64, position: u64, reason: String) -> LogError {
    LogError::Corrupt {
        segment_base,
        offset,
        position,
        reason,
    }
}

/// Segments must not overlap: each starts at or after the previous end.
fn check_sequence<D: Device>(segments: &BTreeMap<u64, Rc<Segment<D>>>) -> Result<(), LogError> {
    let mut prev_end: Option<u64> = None;
    for segment in segments.values() {
        let index = segment.index.borrow();
        if prev_end.is_some_and(|end| end > segment.base_offset) {
            return Err(corrupt(
                segment.base_offset,
                segment.base_offset,
                0,
                format!(
                    "segment overlaps the previous one, which ends at {}",
                    prev_end.unwrap_or(0)
                ),
            ));
        }
        prev_end = Some(index.next_offset);
    }
    Ok(())
}

/// The bytes of the last partial block of the active segment, as on disk.
pub(crate) async fn read_partial_block<D: Device>(
    segment: &Segment<D>,
    data_len: u64,
    alignment: usize,
) -> Result<Vec<u8>, LogError> {
    let block_start = data_len / alignment as u64 * alignment as u64;
    let len = (data_len - block_start) as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    let bytes = segment.read(block_start, len).await?;
    if bytes.len() != len {
        return Err(LogError::io(
            "reading the tail block",
            std::io::Error::other(format!("short read: {} of {len} bytes", bytes.len())),
        ));
    }
    Ok(bytes.to_vec())
}
