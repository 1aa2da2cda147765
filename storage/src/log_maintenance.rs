//! Maintenance: `truncate_suffix`, `reset_to`, retention and compaction.
//!
//! These change which segments exist, so they run one at a time (the
//! `rewriting` flag). `truncate_suffix` also holds appends (and rolls) off
//! (the `maintenance` flag) because it moves the log end; retention and
//! compaction touch only sealed segments and let appends continue.
//!
//! Crash safety, step by step: `truncate_suffix` removes later segments
//! durably, settles a checkpoint at the cut, and only then cuts the data
//! (a crash in between keeps the old batches, never a checkpoint beyond the
//! data); if it fails midway it fences the log. Compaction drops a
//! segment's index files durably before renaming its rewrite in, so no
//! crash leaves an old index describing new data, and writes the rewrite
//! with a header whose checkpoint covers all of it.

use crate::checkpoint::{Checkpoint, SEGMENT_HEADER_BYTES};
use crate::compaction::KeyMap;
use crate::device::Device;
use crate::error::LogError;
use crate::group_commit::Mark;
use crate::mutation::{self, Mutation};
use crate::partition_log::{corrupt, read_partial_block, PartitionLog};
use crate::recovery::{scan_segment, ScanEnd};
use crate::retention::{segments_to_delete, SegmentSummary};
use crate::segment::{sync_dir, Segment, Tail};
use crate::segment_name::{file_name, FileKind};
use bytes::Bytes;
use shoal_protocol::batch::{self, BatchBuilder, BatchHeader, BatchRecords, NewRecord, Record};
use std::rc::Rc;

impl<D: Device> PartitionLog<D> {
    /// Waits for other maintenance, then marks this one as running.
    async fn begin_rewrite(&self) -> Result<(), LogError> {
        loop {
            self.check_writable()?;
            if !self.rewriting.get() && !self.maintenance.get() {
                self.rewriting.set(true);
                return Ok(());
            }
            self.pipeline.changed().notified().await;
        }
    }

    /// Ends a rewrite. Only clears `rewriting`: a roll may hold
    /// `maintenance` meanwhile (retention and compaction let appends, and
    /// so rolls, go on), and clearing it here once let a second roll start
    /// while the first was still sealing its segment.
    fn end_rewrite(&self) {
        self.rewriting.set(false);
        self.pipeline.changed().notify();
    }

    /// Removes every batch holding an offset at or above `offset` (a
    /// follower whose tail diverged). A batch is never split: if `offset`
    /// falls inside one, that whole batch goes. Returns the new log end.
    ///
    /// A failure once the truncation has begun (an I/O error, or damage
    /// found on the way) fences the log: the tail in memory and the files
    /// may then disagree, and only recovery on reopen can tell what holds.
    pub async fn truncate_suffix(&self, offset: u64) -> Result<u64, LogError> {
        self.begin_rewrite().await?;
        // No roll runs now (begin_rewrite waited for maintenance to clear,
        // with no await since), and none starts until this one ends.
        self.maintenance.set(true);
        let result = self.truncate_inner(offset).await;
        if let Err(e) = &result {
            if !matches!(
                e,
                LogError::OffsetOutOfRange { .. } | LogError::Fenced { .. } | LogError::Closed
            ) {
                self.pipeline.fence("truncate_suffix", e.to_string());
            }
        }
        self.maintenance.set(false);
        self.end_rewrite();
        result
    }

    async fn truncate_inner(&self, offset: u64) -> Result<u64, LogError> {
        let (start, end) = (self.log_start.get(), self.pipeline.log_end());
        if offset >= end {
            return Ok(end);
        }
        if offset < start {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        self.sync_to(end).await?;
        // Every append placed before now is durable: let each return its
        // acknowledgement before the tail restarts, or one still waiting
        // would compare its end with the new marks and be acknowledged later
        // for whatever batch then holds its offsets. (Maintenance keeps new
        // appends from being placed meanwhile.)
        while self.appends_placed.get() > 0 {
            self.check_writable()?;
            self.pipeline.changed().notified().await;
        }
        let keep = self.drop_segments_after(offset).await?;
        let (scanner, scan_end) = keep.scan(&self.config, 0, Some(offset), None, Tail::Any).await?;
        if let ScanEnd::Corrupt { position, .. } | ScanEnd::TornTail { position, .. } = scan_end {
            return Err(corrupt(
                keep.base_offset,
                scanner.expected_offset,
                position,
                "while truncating".into(),
            ));
        }
        for kind in [FileKind::OffsetIndex, FileKind::TimeIndex] {
            let path = self.dir.join(file_name(keep.base_offset, kind));
            crate::segment::remove_if_exists(&self.device, &path).await?;
        }
        let cut = Mark {
            offset: scanner.index.next_offset,
            segment: keep.base_offset,
            data_len: scanner.index.data_len,
            digest: scanner.digest,
        };
        keep.written_len.set(cut.data_len);
        *keep.index.borrow_mut() = scanner.index;
        let partial = read_partial_block(&keep, cut.data_len, self.alignment).await?;
        // The header may claim more than the cut keeps. Settle a checkpoint
        // at the cut first and only then cut the data, so that no crash
        // leaves a durable checkpoint beyond the data (recovery would call
        // that corruption). No checkpoint write may be running across the
        // reset, or it could land after ours.
        self.pipeline.wait_syncer_idle().await?;
        self.restart_at(keep.clone(), cut, &partial);
        self.pipeline.settle_to(cut.offset).await?;
        keep.truncate(cut.data_len, &self.config).await?;
        Ok(cut.offset)
    }

    /// Empties the log and restarts it at `offset`: a follower installing a
    /// leader's snapshot, whose retention removed every batch before
    /// `offset`. Nothing this log holds is kept (a tail past `offset` can
    /// only be uncommitted, since the leader's committed log differs there).
    ///
    /// Crash safety: the segments are removed newest first, so a crash
    /// leaves a shorter log (or none, which opens empty at 0), never a gap;
    /// the new empty segment at `offset` is created last. The caller
    /// persists `offset` before it calls this and calls it again on open
    /// while the log starts below `offset`. A failure midway fences the log.
    pub async fn reset_to(&self, offset: u64) -> Result<(), LogError> {
        self.begin_rewrite().await?;
        self.maintenance.set(true);
        let result = self.reset_inner(offset).await;
        if let Err(e) = &result {
            if !matches!(e, LogError::Fenced { .. } | LogError::Closed) {
                self.pipeline.fence("reset_to", e.to_string());
            }
        }
        self.maintenance.set(false);
        self.end_rewrite();
        result
    }

    async fn reset_inner(&self, offset: u64) -> Result<(), LogError> {
        let end = self.pipeline.log_end();
        // As in truncate_suffix: every placed append returns before the
        // tail restarts, and no checkpoint write runs across it.
        self.sync_to(end).await?;
        while self.appends_placed.get() > 0 {
            self.check_writable()?;
            self.pipeline.changed().notified().await;
        }
        self.pipeline.wait_syncer_idle().await?;
        let doomed: Vec<Rc<Segment<D>>> = std::mem::take(&mut *self.segments.borrow_mut())
            .into_values()
            .rev()
            .collect();
        for segment in &doomed {
            segment.remove_files(&self.device, &self.dir).await?;
            sync_dir(&self.device, &self.dir).await?;
        }
        let fresh = Segment::create(&self.device, &self.dir, offset, &self.config).await?;
        self.segments.borrow_mut().insert(offset, fresh.clone());
        self.log_start.set(offset);
        self.restart_at(fresh, Mark::segment_start(offset), &[]);
        self.pipeline.cache_mut().drop_before(offset);
        self.high_watermark.set(offset);
        self.pipeline.settle_to(offset).await?;
        Ok(())
    }

    /// Removes the segments after the one holding `offset`, durably, and
    /// returns that one.
    async fn drop_segments_after(&self, offset: u64) -> Result<Rc<Segment<D>>, LogError> {
        let doomed: Vec<Rc<Segment<D>>> = {
            let mut segments = self.segments.borrow_mut();
            // The first segment starts at or below `offset` (>= log start), so one stays.
            let later: Vec<u64> = segments.range(offset + 1..).map(|(&b, _)| b).collect();
            later
                .into_iter()
                .rev()
                .filter_map(|b| segments.remove(&b))
                .collect()
        };
        for segment in &doomed {
            segment.remove_files(&self.device, &self.dir).await?;
        }
        sync_dir(&self.device, &self.dir).await?;
        let segments = self.segments.borrow();
        Ok(segments.values().next_back().expect("one segment stays").clone())
    }

    /// Deletes whole segments past the retention time or size at `now_ms`.
    /// Returns how many segments were deleted.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        self.begin_rewrite().await?;
        let result = self.retention_inner(now_ms).await;
        self.end_rewrite();
        result
    }

    async fn retention_inner(&self, now_ms: i64) -> Result<usize, LogError> {
        if mutation::active(Mutation::RetentionNoop) {
            return Ok(0);
        }
        let doomed: Vec<Rc<Segment<D>>> = {
            let mut segments = self.segments.borrow_mut();
            let summaries: Vec<SegmentSummary> = segments
                .values()
                .map(|s| {
                    let index = s.index.borrow();
                    SegmentSummary {
                        base_offset: s.base_offset,
                        size_bytes: index.data_len,
                        max_append_ms: (!index.is_empty()).then_some(index.max_append_ms),
                    }
                })
                .collect();
            let n = segments_to_delete(
                &summaries,
                now_ms,
                self.config.retention_ms,
                self.config.retention_bytes,
            );
            summaries[..n]
                .iter()
                .filter_map(|s| segments.remove(&s.base_offset))
                .collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let new_start = *self
            .segments
            .borrow()
            .keys()
            .next()
            .expect("the active segment stays");
        self.log_start.set(new_start);
        self.pipeline.cache_mut().drop_before(new_start);
        if self.high_watermark.get() < new_start {
            self.high_watermark.set(new_start);
        }
        for segment in &doomed {
            segment.remove_files(&self.device, &self.dir).await?;
        }
        sync_dir(&self.device, &self.dir).await?;
        Ok(doomed.len())
    }

    /// Compacts the sealed segments of a compacted log: keeps the latest
    /// record per key and drops tombstones older than the tombstone
    /// retention. Returns how many segments were rewritten.
    pub async fn compact(&self, now_ms: i64) -> Result<usize, LogError> {
        if !self.config.compacted {
            return Err(LogError::Config(
                "compact called on a log that is not compacted".into(),
            ));
        }
        self.begin_rewrite().await?;
        let result = self.compact_inner(now_ms).await;
        self.end_rewrite();
        result
    }

    async fn compact_inner(&self, now_ms: i64) -> Result<usize, LogError> {
        let keys = self.build_key_map().await?;
        let sealed: Vec<Rc<Segment<D>>> = {
            let segments = self.segments.borrow();
            let n = segments.len() - 1;
            segments.values().take(n).cloned().collect()
        };
        let mut rewritten = 0;
        for segment in sealed {
            if self.compact_segment(&segment, &keys, now_ms).await? {
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

    /// Pass one: the newest offset of every key in the log.
    ///
    /// Only records below the horizon count: durable (synced) and committed
    /// (below the high watermark). A newer record that a power cut or a
    /// follower's `truncate_suffix` can still take away must not be the
    /// reason an older one is deleted, or the key would lose its value.
    async fn build_key_map(&self) -> Result<KeyMap, LogError> {
        let mut keys = KeyMap::new(self.config.compaction_keys_max);
        let horizon = self.pipeline.synced().min(self.high_watermark());
        let mut at = self.log_start.get();
        while at < horizon {
            let read = self.read_uncommitted(at, self.config.read_chunk_bytes).await?;
            let Some(next) = read.next_offset() else { break };
            for stored in &read.batches {
                let (header, records) = self.open_records(&stored.bytes)?;
                let archived = records.records()?;
                for (i, record) in archived.iter().enumerate() {
                    let offset = header.base_offset + i as u64;
                    if offset >= horizon {
                        break;
                    }
                    if let Some(key) = record.key.as_ref() {
                        keys.observe(key.as_slice(), offset)
                            .map_err(|e| LogError::Limit {
                                what: "compaction keys",
                                value: e.keys_max as u64 + 1,
                                limit: e.keys_max as u64,
                            })?;
                    }
                }
            }
            at = next;
        }
        Ok(keys)
    }

    fn open_records<'a>(&self, bytes: &'a Bytes) -> Result<(BatchHeader, BatchRecords<'a>), LogError> {
        let header = batch::validate(bytes, &self.config.batch_limits)?;
        let records = BatchRecords::open(bytes, &header, &self.config.batch_limits)?;
        Ok((header, records))
    }

    /// Pass two for one sealed segment: rewrite it if any record goes.
    async fn compact_segment(
        &self,
        segment: &Rc<Segment<D>>,
        keys: &KeyMap,
        now_ms: i64,
    ) -> Result<bool, LogError> {
        let (seg_end, base) = (segment.index.borrow().next_offset, segment.base_offset);
        let mut output: Vec<u8> = Vec::new();
        let mut changed = false;
        let mut at = base.max(self.log_start.get());
        while at < seg_end {
            let read = self.read_uncommitted(at, self.config.read_chunk_bytes).await?;
            let Some(next) = read.next_offset() else { break };
            for stored in read.batches.iter().filter(|b| b.base_offset < seg_end) {
                changed |= self.compact_batch(&stored.bytes, keys, now_ms, &mut output)?;
            }
            at = next;
        }
        if !changed {
            return Ok(false);
        }
        self.replace_segment(segment, &output).await?;
        Ok(true)
    }

    /// Appends the surviving records of one batch to `out`: the batch as is
    /// if all survive, else each run of consecutive survivors re-encoded as
    /// its own batch (offsets are kept, so runs are never merged).
    fn compact_batch(
        &self,
        bytes: &Bytes,
        keys: &KeyMap,
        now_ms: i64,
        out: &mut Vec<u8>,
    ) -> Result<bool, LogError> {
        let (header, records) = self.open_records(bytes)?;
        let archived = records.records()?;
        let keep: Vec<bool> = archived
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let key = r.key.as_ref().map(|k| k.as_slice());
                let offset = header.base_offset + i as u64;
                let tombstone = r.value.is_none();
                keys.keep(
                    key,
                    offset,
                    tombstone,
                    header.append_time_ms,
                    now_ms,
                    self.config.tombstone_retention_ms,
                )
            })
            .collect();
        if keep.iter().all(|&k| k) {
            out.extend_from_slice(bytes);
            return Ok(false);
        }
        let mut i = 0;
        while i < keep.len() {
            if !keep[i] {
                i += 1;
                continue;
            }
            let run_start = i;
            let mut builder = BatchBuilder::new().compression(header.compression()?);
            while i < keep.len() && keep[i] {
                let record: Record = rkyv::deserialize::<Record, rkyv::rancor::Error>(&archived[i])
                    .map_err(|e| batch::BatchError::BadArchive(e.to_string()))?;
                builder.push(NewRecord {
                    timestamp_ms: batch::record_timestamp(&header, &archived[i]),
                    key: record.key,
                    value: record.value,
                    headers: record.headers,
                    message_id: record.message_id,
                });
                i += 1;
            }
            let mut encoded = builder.finish()?;
            let run_base = header.base_offset + run_start as u64;
            batch::patch(&mut encoded, run_base, header.leader_epoch, header.append_time_ms);
            out.extend_from_slice(&encoded);
        }
        Ok(true)
    }

    /// Swaps in a rewritten segment: drop the old index files (durably, so
    /// that no crash leaves them describing the new data), write the new
    /// segment (a header whose checkpoint covers all of it, then the
    /// batches) beside the old one, fdatasync, rename over it, sync the
    /// directory, then write its index files.
    async fn replace_segment(&self, old: &Rc<Segment<D>>, bytes: &[u8]) -> Result<(), LogError> {
        let base = old.base_offset;
        let checkpoint = self.checkpoint_of_rewrite(base, bytes)?;
        let mut file = vec![0u8; SEGMENT_HEADER_BYTES as usize];
        checkpoint.encode_block(None, &mut file);
        file.extend_from_slice(bytes);
        for kind in [FileKind::OffsetIndex, FileKind::TimeIndex] {
            let path = self.dir.join(file_name(base, kind));
            crate::segment::remove_if_exists(&self.device, &path).await?;
        }
        sync_dir(&self.device, &self.dir).await?;
        let name = file_name(base, FileKind::Log);
        crate::segment::write_file_atomic(&self.device, &self.dir, &name, &file).await?;
        let fresh_index = crate::index::SegmentIndex::new(base, self.config.index_interval_bytes);
        let fresh = Segment::open(&self.device, &self.dir, base, fresh_index).await?;
        let (scanner, end) = fresh
            .scan(&self.config, 0, None, Some(checkpoint), Tail::Any)
            .await?;
        let mut index = scanner.index;
        if end != ScanEnd::Clean || index.data_len != bytes.len() as u64 {
            return Err(corrupt(
                base,
                index.next_offset,
                index.data_len,
                "compacted segment does not read back".into(),
            ));
        }
        index.next_offset = old.index.borrow().next_offset;
        fresh.written_len.set(index.data_len);
        *fresh.index.borrow_mut() = index;
        fresh.write_index_files(&self.device, &self.dir).await?;
        let seg_end = fresh.index.borrow().next_offset;
        self.segments.borrow_mut().insert(base, fresh);
        self.pipeline.cache_mut().drop_before(seg_end);
        Ok(())
    }

    /// The checkpoint of a rewritten segment: all of `bytes`, which must
    /// scan clean.
    fn checkpoint_of_rewrite(&self, base: u64, bytes: &[u8]) -> Result<Checkpoint, LogError> {
        let (scanner, end) = scan_segment(
            bytes,
            base,
            false,
            None,
            bytes.len() as u64,
            self.config.batch_limits,
            self.config.index_interval_bytes,
        );
        if end != ScanEnd::Clean || scanner.position != bytes.len() as u64 {
            return Err(corrupt(
                base,
                scanner.expected_offset,
                scanner.position,
                format!("compaction produced a segment that does not scan: {end:?}"),
            ));
        }
        Ok(Checkpoint {
            sequence: 1,
            base_offset: base,
            data_len: scanner.position,
            next_offset: scanner.expected_offset,
            digest: scanner.digest,
        })
    }
}
