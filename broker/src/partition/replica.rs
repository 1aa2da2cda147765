//! One partition on its owning shard: the storage log, the producer state
//! (dedup window, idempotent sequences) and the high watermark.
//!
//! The high watermark is the partition service's decision, not the log's:
//! the log is opened with `hw_follows_ack = false`, and the service moves
//! the watermark (`PartitionLog::set_high_watermark`, which bounds reads and
//! wakes long polls) once an append reached the durability the topic's flush
//! policy acknowledges. On a single node that is the acknowledged end; a
//! replicated partition (replication factor > 1 in a cluster) moves it to
//! the end of the raft commit index instead ([`raise_watermark`], called by
//! its raft group on every commit), in this file and nowhere else. A
//! failed open keeps the partition as fenced (every request gets the
//! reason) rather than failing the shard.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::sync::Semaphore;
use glommio::TaskQueueHandle;
use shoal_config::Config;
use shoal_protocol::batch::{self, BatchLimits, BatchRecords};
use shoal_protocol::messages::produce::Durability;
use shoal_protocol::messages::topic::FlushPolicy as TopicFlush;
use shoal_storage::{LogConfig, PartitionLog};

use super::dedup::{IdHasher, IdWindow, ProducerSequences};
use super::raft_group::{ApplyHook, RaftGroup};
use super::replication::{placement, Replication};
use crate::error::{BrokerError, BrokerResult};
use crate::ids::PartitionId;
use crate::metadata::TopicMeta;
use crate::runtime::now_ms;

/// A partition's bounds and state, read on its owner.
#[derive(Debug, Clone, Default)]
pub struct PartitionFigures {
    pub log_start: u64,
    pub log_end: u64,
    pub high_watermark: u64,
    /// Bytes of segment data on disk.
    pub size_bytes: u64,
    pub segments: u32,
    pub fenced: Option<String>,
}

/// A partition owned by this shard.
pub struct Replica {
    pub(super) topic: Rc<TopicMeta>,
    pub(super) id: PartitionId,
    dir: PathBuf,
    /// The log, or why it could not be opened (the partition is fenced).
    log: Result<Rc<PartitionLog>, String>,
    pub(super) ids: RefCell<IdWindow>,
    pub(super) hasher: IdHasher,
    pub(super) sequences: RefCell<ProducerSequences>,
    /// Held across an append that carries message ids, so no other
    /// request's ids interleave between the window lookup and the insert.
    pub(super) dedup_lock: Semaphore,
    pub(super) limits: BatchLimits,
    /// A replicated partition's raft group on this node, and the shard's
    /// replication (for the leader's address).
    pub(super) raft: Option<(Rc<RaftGroup>, Rc<Replication>)>,
    /// An internal partition's reader of committed batches (the group
    /// state's mirror), given each after the producer state took it.
    committed_hook: RefCell<Option<ApplyHook>>,
}

/// What a replica needs from its shard to open.
pub struct OpenContext<'a> {
    pub config: &'a Config,
    pub shard_count: u32,
    pub log_queue: TaskQueueHandle,
    /// This shard's replication, on a cluster member.
    pub replication: Option<Rc<Replication>>,
}

impl Replica {
    /// Opens the partition's log (running recovery) and rebuilds its dedup
    /// window. A failure fences the partition instead of failing the shard.
    pub async fn open(
        ctx: &OpenContext<'_>,
        topic: Rc<TopicMeta>,
        id: PartitionId,
        dir: PathBuf,
    ) -> Rc<Replica> {
        let config = log_config(ctx, &topic);
        let limits = config.batch_limits;
        let log = match PartitionLog::open(&dir, config).await {
            Ok(log) => Ok(log),
            Err(e) => {
                tracing::error!(topic = %topic.name, partition = %id, error = %e, "partition fenced on open");
                Err(e.to_string())
            }
        };
        let (log, raft) = match log {
            Ok(log) => match open_raft(ctx, &topic, id, &dir, &log).await {
                Ok(raft) => (Ok(log), raft),
                Err(e) => {
                    tracing::error!(topic = %topic.name, partition = %id, error = %e, "replicated partition fenced on open");
                    (Err(e), None)
                }
            },
            Err(e) => (Err(e), None),
        };
        let replica = Rc::new(Replica {
            topic,
            id,
            dir,
            log,
            ids: RefCell::new(IdWindow::default()),
            hasher: IdHasher::default(),
            sequences: RefCell::new(ProducerSequences::default()),
            dedup_lock: Semaphore::new(1),
            limits,
            raft,
            committed_hook: RefCell::new(None),
        });
        if let Some((group, _)) = &replica.raft {
            // Producer state travels in the log: every replica rebuilds it
            // from the batches as they commit, so a new leader has it. Set
            // before the rebuild below, so no commit falls between the two
            // (a batch seen by both is remembered twice, harmlessly).
            let weak = Rc::downgrade(&replica);
            group.set_on_apply(Box::new(move |bytes: &[u8]| {
                if let Some(replica) = weak.upgrade() {
                    replica.remember_committed(bytes);
                    if let Some(hook) = replica.committed_hook.borrow().as_ref() {
                        hook(bytes);
                    }
                }
            }));
        }
        replica.rebuild_dedup_window().await;
        replica
    }

    pub fn id(&self) -> PartitionId {
        self.id
    }

    pub fn topic(&self) -> &Rc<TopicMeta> {
        &self.topic
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log, or `PartitionFenced` when it could not be opened.
    pub fn log(&self) -> BrokerResult<&Rc<PartitionLog>> {
        self.log
            .as_ref()
            .map_err(|e| BrokerError::PartitionFenced(e.clone()))
    }

    /// The first offset not yet visible to readers.
    pub fn high_watermark(&self) -> u64 {
        self.log.as_ref().map_or(0, |log| log.high_watermark())
    }

    /// Makes offsets below `end` visible to readers (the service's watermark
    /// rule; see the module header). Never moves the watermark backwards.
    pub(super) fn advance_high_watermark(&self, log: &PartitionLog, end: u64) {
        if end > log.high_watermark() {
            log.set_high_watermark(end);
        }
    }

    /// The durability an acknowledged append of this topic reaches.
    pub fn acked_durability(&self) -> Durability {
        match self.topic.config.flush {
            TopicFlush::Always => Durability::Fsynced,
            TopicFlush::IntervalMs(_) => Durability::Written,
            TopicFlush::Never => Durability::Memory,
        }
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
                    segments: log.segment_bases().len() as u32,
                    fenced: log.fenced(),
                }
            }
            Err(e) => PartitionFigures {
                fenced: Some(e.clone()),
                ..Default::default()
            },
        }
    }

    /// The raft group, when this partition is replicated.
    pub fn raft(&self) -> Option<&Rc<RaftGroup>> {
        self.raft.as_ref().map(|(g, _)| g)
    }

    /// The leader this replica knows (0: none) and its native address,
    /// when this partition is replicated.
    pub fn leader_hint(&self) -> Option<(u64, Option<String>)> {
        let (group, replication) = self.raft.as_ref()?;
        let leader = group.leader();
        let address = u32::try_from(leader)
            .ok()
            .filter(|&id| id != 0)
            .and_then(|id| replication.cluster().client_addr(crate::cluster::NodeId(id)));
        Some((leader, address))
    }

    /// Sets the hook given every batch of this replicated partition as it
    /// commits, in log order, on every replica, from now on (batches
    /// committed before are in the log, below the high watermark).
    pub fn on_committed(&self, hook: ApplyHook) {
        *self.committed_hook.borrow_mut() = Some(hook);
    }

    /// Flushes and closes the log (shutdown, topic deletion).
    pub async fn close(&self) {
        if let Some((group, _)) = &self.raft {
            group.close().await;
        }
        if let Ok(log) = &self.log {
            if let Err(e) = log.close().await {
                tracing::error!(topic = %self.topic.name, partition = %self.id, error = %e, "close failed");
            }
        }
    }

    /// Retention, then compaction for compacted topics.
    pub async fn maintain(&self, now_ms: i64) {
        let Ok(log) = &self.log else { return };
        match log.apply_retention(now_ms).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(topic = %self.topic.name, partition = %self.id, segments = n, "retention deleted segments")
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic.name, partition = %self.id, error = %e, "retention failed")
            }
        }
        if self.topic.config.compacted {
            if let Err(e) = log.compact(now_ms).await {
                tracing::warn!(topic = %self.topic.name, partition = %self.id, error = %e, "compaction failed");
            }
        }
    }

    /// Cuts the log back to `offset` (a follower whose tail diverged) and
    /// forgets the message ids of the cut records.
    pub async fn truncate(&self, offset: u64) -> BrokerResult<()> {
        let log = self.log()?;
        log.truncate_suffix(offset).await?;
        self.ids.borrow_mut().truncate_from(offset);
        Ok(())
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
        // A replica rebuilds from committed batches only (up to the commit
        // it persisted, where its high watermark restarts): a tail above it
        // may yet be cut by a new leader, and an id remembered from a cut
        // record would drop a retry of it. Later commits arrive through
        // `remember_committed`.
        let end = if self.raft.is_some() {
            log.high_watermark()
        } else {
            log.log_end_offset()
        };
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
                if self.raft.is_some() {
                    self.remember_sequence(&header);
                }
                offset = header.next_offset();
            }
        }
    }

    /// A committed batch of a replicated partition: its message ids and
    /// its producer sequence join the dedup state (every replica).
    fn remember_committed(&self, bytes: &[u8]) {
        let Ok((header, _)) = batch::peek(bytes, &self.limits) else {
            return;
        };
        if self.topic.config.dedup_window_ms > 0 {
            self.ids
                .borrow_mut()
                .expire(header.append_time_ms, self.topic.config.dedup_window_ms);
            self.remember_ids(bytes, &header, &self.limits);
        }
        self.remember_sequence(&header);
    }

    fn remember_sequence(&self, header: &batch::BatchHeader) {
        self.sequences.borrow_mut().record(
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            header.record_count,
            header.base_offset,
        );
    }

    fn remember_ids(&self, bytes: &[u8], header: &batch::BatchHeader, limits: &BatchLimits) {
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

/// Moves a replicated partition's high watermark to `end`, the end offset
/// of its raft commit index (the raft group calls it on every commit).
/// Never moves it backwards.
pub(super) fn raise_watermark(log: &PartitionLog, end: u64) {
    if end > log.high_watermark() {
        log.set_high_watermark(end);
    }
}

/// Opens the raft group of a replicated partition whose replicas include
/// this node; `None` for a partition that is not replicated.
async fn open_raft(
    ctx: &OpenContext<'_>,
    topic: &TopicMeta,
    id: PartitionId,
    dir: &Path,
    log: &Rc<PartitionLog>,
) -> Result<Option<(Rc<RaftGroup>, Rc<Replication>)>, String> {
    let Some(replication) = ctx.replication.clone() else {
        return Ok(None);
    };
    let rf = topic.config.replication_factor;
    if rf <= 1 {
        return Ok(None);
    }
    let voters = placement(&replication.nodes(), &topic.name, id.get(), rf);
    if !voters.contains(&replication.me()) {
        return Err(format!("this node is not among the replicas {voters:?}"));
    }
    let weak = Rc::downgrade(log);
    let on_commit = Box::new(move |end: u64| {
        if let Some(log) = weak.upgrade() {
            raise_watermark(&log, end);
        }
    });
    let group = RaftGroup::open(
        replication.me(),
        &voters,
        dir.to_path_buf(),
        log.clone(),
        on_commit,
    )
    .await?;
    replication.add(&topic.name, id.get(), group.clone());
    Ok(Some((group, replication)))
}

/// Bytes of segment files in a partition directory (segments keep their
/// logical size; preallocation does not count).
fn segment_bytes(dir: &Path) -> u64 {
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

/// The storage settings of a partition: broker defaults, topic overrides.
fn log_config(ctx: &OpenContext<'_>, topic: &TopicMeta) -> LogConfig {
    let s = &ctx.config.storage;
    let t = &topic.config;
    let flush = match t.flush {
        TopicFlush::Always => shoal_storage::FlushPolicy::Always,
        TopicFlush::IntervalMs(ms) => shoal_storage::FlushPolicy::IntervalMs(u64::from(ms)),
        TopicFlush::Never => shoal_storage::FlushPolicy::Never,
    };
    let partitions_here = topic.config.partitions.div_ceil(ctx.shard_count).max(1) as usize;
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
        batch_limits: BatchLimits {
            batch_len_max: ctx.config.limits.frame_bytes_max,
            ..BatchLimits::default()
        },
        // The service moves the watermark itself (module header).
        hw_follows_ack: false,
        task_queue: Some(ctx.log_queue),
        ..LogConfig::default()
    }
}
