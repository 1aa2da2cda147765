//! # shoal-storage
//!
//! The partition log: every partition of Shoal lives in one [`PartitionLog`],
//! a directory of segments written with direct I/O (glommio DMA files over
//! io_uring), owned by exactly one executor.
//!
//! ## Where the format lives
//!
//! The unit of storage is the record batch defined in
//! `shoal_protocol::batch` (layout documented byte by byte there): a 72-byte
//! little-endian header with a CRC-32C, followed by rkyv-archived records.
//! It lives in the protocol crate, not here, because the thin client builds
//! batches and must not pull in glommio; this crate depends on
//! `shoal-protocol` and only moves those bytes. The log never re-encodes a
//! batch on the append or fetch path: it patches the broker fields (base
//! offset, leader epoch, append time; not covered by the CRC) in place,
//! copies the bytes into an aligned tail buffer, and keeps the same bytes in
//! its tail cache for readers.
//!
//! ## Rooms
//!
//! ```text
//! partition_log      the log: open/recovery, append, roll, bounds
//!   log_reader       reads by offset and time (impl PartitionLog)
//!   log_maintenance  truncate_suffix, reset_to, retention, compaction (impl PartitionLog)
//!   write_pipeline   tail buffers, cache and marks shared with the writer
//!                    and syncer tasks; the I/O of group commit
//!     group_commit   sans-IO: written/synced marks, dirty segments, the
//!                    checkpoint, fencing, what the syncer does next
//!     segment_appender  aligned tail buffers
//!     segment        one segment file: header, data, scan, index files
//!       device       the seam under every file operation; dma_device is
//!                    glommio, tests/common/sim_disk.rs a simulated disk
//! sans-IO cores:     checkpoint, recovery, index, retention, compaction,
//!                    batch_cache, segment_name, config, error, log_stats
//! ```
//!
//! ## On disk
//!
//! ```text
//! <dir>/probe.shoal                      4 KiB, opened first (see below)
//! <dir>/00000000000000000000.log         header block, then batches laid
//!                                        end to end, then zeros
//! <dir>/00000000000000000000.index       sparse offset index (sealed segments)
//! <dir>/00000000000000000000.timeindex   time index (sealed segments)
//! <dir>/00000000000000052311.log         the active segment (last)
//! ```
//!
//! A segment is named by its base offset ([`segment_name`]), preallocated
//! with fallocate (the file size is the preallocation, so aligned writes
//! never extend the file and ext4 runs them fully asynchronously; the
//! unwritten space reads as zeros and SEEK_DATA tells where written data
//! ends) and rolled by size or age. Its first 4 KiB hold the segment's
//! synced-offset [`checkpoint`] (two slots, see there); batches start after
//! it, 8-byte aligned and contiguous in offset (compaction may leave gaps).
//! The index files of a segment are written when it is sealed, after its
//! data is fdatasynced, through a temporary file and a rename; they are
//! rebuildable from the log ([`index`]). Every executor's first DMA open is
//! the non-empty probe file: glommio 0.9 probes the device on that first
//! open and, if it is a new empty file, breaks every later read (os error
//! 95). Every file operation goes through the [`device`] seam.
//!
//! ## The write path and the durability argument
//!
//! `append` validates the framing and CRC (`append_all_validated` only the
//! framing, for batches the caller verified on ingest), assigns offsets in
//! call order (a ticket taken when called, `placement_order`, then no await
//! between the check and the copy), copies the batch
//! into the aligned tail buffer and the tail cache ([`batch_cache`]), then
//! waits for the durability its flush policy asks for. Two background tasks
//! do the I/O (`write_pipeline`): the writer writes full 1 MiB buffers as
//! appends seal them, with a sliding window of `write_depth_max` in flight
//! (disjoint and aligned), each moving the written end as it completes in
//! order; when no full buffer is waiting it writes the partial tail and ends
//! the round, and the next round rewrites that last partial block so
//! earlier bytes in it stay intact. The syncer, pipelined with it, snapshots
//! the written end, fdatasyncs every segment file written since its last
//! round, and only then moves the synced end to that snapshot. Appends that
//! arrive while a write or an fdatasync runs are coalesced into the next one
//! (group commit). What a completed write or fdatasync moves, and when an
//! append's durability is reached, is decided by a sans-IO state machine
//! (`group_commit`), tested without a runtime; the pipeline only does I/O.
//!
//! **An append acknowledged as [`Durability::Fsynced`] returns only after an
//! fdatasync that started after the write holding its last byte completed
//! and returned Ok**, on every segment file written since the previous
//! fdatasync, and only after all earlier offsets reached the same point.
//! So an acknowledged batch and everything before it are on stable storage:
//! a crash can only lose unacknowledged batches, which is what recovery
//! expects to find (a torn suffix). `Written` acks survive a process crash
//! (the data is in the device) but not a power loss; `Memory` acks survive
//! neither. Each ack states the level actually reached. A `flush`, `roll`
//! or `close` that returned Ok made everything appended before it durable.
//!
//! The checkpoint trails the synced end: after a round's fdatasync returned
//! (never before, so no version of the header a power cut can leave claims
//! more than is durable), the syncer writes the synced end into the active
//! segment's header beside the next round's fdatasync, and the round after
//! that makes it durable; no fdatasync is added per round. `flush`, `roll`,
//! `close` and `truncate_suffix` settle it (write it and fdatasync now), and
//! under `IntervalMs` an idle interval does.
//!
//! A failed or short write or fdatasync **fences** the log: it becomes
//! read-only and every later append fails with [`LogError::Fenced`] naming
//! the cause. It is never retried: after a failed fdatasync the kernel may
//! have dropped the dirty state, so a retry that succeeds proves nothing
//! (the "fsyncgate" lesson). A `truncate_suffix` that fails midway fences
//! too. Reopening runs recovery, the only way back.
//!
//! ## Recovery rules
//!
//! On open, sealed segments are trusted through their index files (their
//! batches are still CRC- and offset-checked on every disk read) and the
//! active segment is scanned from its start against its durable checkpoint
//! ([`recovery`]); `VerifyOnOpen::AllSegments` scans every segment (against
//! its index and its final checkpoint, written when it was sealed). The scan
//! checks each batch's length, framing, CRC-32C, offset sequence and
//! append-time order, that a batch ends exactly at the checkpoint with its
//! offset, and that the uncovered header bytes of the batches before it
//! (offset, length, leader epoch, append time) match its digest. It stops at
//! the first failure, which it classifies:
//! - the failure lies before the durable point (the checkpoint in the
//!   active segment; the whole of a sealed segment, which is settled before
//!   the next one exists), the checkpoint does not match, or data the
//!   checkpoint covers is missing: **corruption**, reported as
//!   [`LogError::Corrupt`] with the offset and byte position; the log is
//!   not opened and nothing is truncated (the broker fences the partition);
//! - only zeros follow: clean end;
//! - otherwise, beyond the durable point: a **torn tail**, truncated (file
//!   cut, zeroed, preallocated again, fdatasynced), even if valid batches
//!   follow a bad one: a device may persist a later unsynced write and lose
//!   an earlier one. What recovery keeps is fdatasynced before it is served.
//!
//! The fault model these rules answer: a power cut may drop, keep or tear
//! (per 512-byte sector, sectors atomic, in any order) every write not
//! covered by a completed fdatasync, and lose directory operations not
//! followed by a directory sync; separately, the medium may rot or a data
//! write may land in the wrong place (one damaged region at a time: not
//! both header slots, and not a misdirected header write, which would both
//! keep a stale checkpoint and damage the data it lands on). Under it,
//! every batch acknowledged `Fsynced`, or
//! appended before a `flush`, `roll` or `close` returned Ok, survives a
//! power cut at its offset with its bytes, and no torn unacknowledged
//! write is ever reported as corruption. Damage to an acknowledged batch is
//! reported, never cut, once the checkpoint covers it: if it lies in a
//! sealed segment, or a `flush`, `roll` or `close` returned after it was
//! appended, or two fdatasyncs of its segment started after it was
//! acknowledged and returned. **The residual window** is the active
//! segment's last one or two rounds acknowledged before the cut, whose
//! checkpoint was not durable yet: damage there cannot be told from a torn
//! write and is cut as a torn tail. Closing it would take an fdatasync per
//! round.
//!
//! ## Reads
//!
//! Reads return whole batches as shared [`bytes::Bytes`], starting with the
//! batch holding the requested offset, served from the tail cache when it
//! covers the offset (caught-up consumers never touch the disk), otherwise
//! from the segment via the sparse index with one read per chunk, checking
//! each batch's CRC and that offsets follow. Unwritten batches are always
//! cached, so the disk path only reads written bytes. `read` stops at the
//! high watermark, which in single-node mode follows the acknowledged end;
//! replicated logs set it themselves.
//!
//! ## Maintenance
//!
//! Retention deletes whole sealed segments by time and size ([`retention`]);
//! compaction rewrites sealed segments keeping the latest record per key
//! ([`compaction`]), letting only durable, committed records (below the
//! synced end and the high watermark) supersede older ones;
//! `truncate_suffix` cuts a diverged tail for a follower, settling a
//! checkpoint at the cut before it cuts the data.
//! `reset_to` empties the log and restarts it at a later offset (a
//! follower installing a leader's snapshot), newest segment removed first.
//!
//! ## Tests
//!
//! The sans-IO cores (naming, index, checkpoint, recovery scan, group
//! commit, retention, compaction planning, cache) are unit-tested (and
//! quickchecked) without a runtime; the glommio glue is tested against an
//! in-memory model (`tests/log_model.rs`), by cutting and flipping bytes of
//! real segment files (`tests/log_recovery.rs`), by real I/O faults
//! (`tests/log_fence.rs`: writes the kernel refuses past a file-size limit;
//! `tests/log_sync_fault.rs`: an ext4 filesystem on a loop device shut down
//! mid-run, so fdatasync and writes fail with EIO, then remounted), by a
//! seeded simulation of power cuts and damage on a simulated disk
//! (`tests/log_sim`, with the disk's own tests in `tests/sim_disk.rs`), and
//! by SIGKILL in the `shoal-tests` crash test (`tests/tests/log_crash.rs`).
//! The test-only `mutations` feature switches on deliberate bugs (see
//! `src/mutation.rs`) to show these tests fail when they should.
//! `benches/log_append.rs` measures append throughput against the raw
//! device in one run.
//!
//! ## Known limits
//!
//! - Bytes 12..24 of a batch header (leader epoch, append time) are not
//!   covered by the batch CRC (the protocol's choice, so patching needs no
//!   recompute). The checkpoint digest covers them at open (the active
//!   segment always, sealed ones with `VerifyOnOpen::AllSegments`); a read
//!   of a sealed segment trusted through its index does not check them.
//! - Segment files written before the checkpoint header existed are
//!   refused as corrupt (no migration).
//! - Compaction holds a rewritten segment in memory and blocks other
//!   maintenance (not appends) while it runs; fine for compacted topics of
//!   modest size (offsets, state), not for huge ones.
//! - Offsets are plain `u64` here; the broker wraps them in its newtypes.
//! - `close` flushes and stops the log's tasks; its files close when the
//!   log is dropped, through the executor's ring (glommio queues the close).
//!   An executor that stops right after dropping a log leaks those fds: give
//!   it one more turn (the tests sleep 1 ms), as a long-running shard does.

pub mod batch_cache;
pub mod checkpoint;
pub mod compaction;
pub mod config;
pub mod device;
pub mod dma_device;
pub mod error;
mod group_commit;
pub mod index;
mod log_maintenance;
mod log_reader;
mod log_stats;
mod mutation;
mod notify;
mod partition_log;
mod placement_order;
pub mod raft_files;
pub mod raft_index;
pub mod recovery;
pub mod retention;
mod segment;
mod segment_appender;
pub mod segment_name;
mod write_pipeline;

pub use config::{FlushPolicy, LogConfig, VerifyOnOpen};
pub use device::{Device, DeviceFile, IoBuffer};
pub use dma_device::DmaDevice;
pub use error::LogError;
pub use group_commit::Durability;
pub use log_reader::{ReadBatches, StoredBatch};
pub use log_stats::{LogStats, SYNC_LATENCY_BOUNDS_US};
pub use partition_log::{AppendAck, LogBounds, PartitionLog};
