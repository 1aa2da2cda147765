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
//! ## On disk
//!
//! ```text
//! <dir>/probe.shoal                      4 KiB, opened first (see below)
//! <dir>/00000000000000000000.log         batches laid end to end, then zeros
//! <dir>/00000000000000000000.index       sparse offset index (sealed segments)
//! <dir>/00000000000000000000.timeindex   time index (sealed segments)
//! <dir>/00000000000000052311.log         the active segment (last)
//! ```
//!
//! A segment is named by its base offset ([`segment_name`]), preallocated
//! with fallocate (the file size is the preallocation, so aligned writes
//! never extend the file and ext4 runs them fully asynchronously; the
//! unwritten space reads as zeros and SEEK_DATA tells where written data
//! ends) and rolled by size or age. Batches are 8-byte aligned and contiguous in
//! offset (compaction may leave gaps). The index files of a segment are
//! written when it is sealed, after its data is fdatasynced, through a
//! temporary file and a rename; they are rebuildable from the log
//! ([`index`]). Every executor's first DMA open is the non-empty probe
//! file: glommio 0.9 probes the device on that first open and, if it is a
//! new empty file, breaks every later read (os error 95).
//!
//! ## The write path and the durability argument
//!
//! `append` validates the framing and CRC (`append_all_validated` only the
//! framing, for batches the caller verified on ingest), assigns offsets in
//! call order (no await between the check and the copy), copies the batch
//! into the aligned tail buffer (`segment_appender`) and the tail cache
//! ([`batch_cache`]), then waits for the durability its flush policy asks
//! for. Two background tasks do the I/O (`write_pipeline`): the writer
//! writes full 1 MiB buffers as appends seal them, with a sliding window of
//! `write_depth_max` in flight (disjoint and aligned), each moving the
//! written end as it completes in order; when no full buffer is waiting it
//! writes the partial tail and ends the round, and the next round rewrites
//! that last partial block so earlier bytes in it stay intact. The syncer,
//! pipelined with it, snapshots the written end, fdatasyncs every
//! segment file written since its last round, and only then moves the
//! synced end to that snapshot. Appends that arrive while a write or an
//! fdatasync runs are coalesced into the next one (group commit). What a
//! completed write or fdatasync moves, and when an append's durability is
//! reached, is decided by a sans-IO state machine (`group_commit`), tested
//! without a runtime; the pipeline only does the I/O.
//!
//! **An append acknowledged as [`Durability::Fsynced`] returns only after an
//! fdatasync that started after the write holding its last byte completed
//! and returned Ok**, on every segment file written since the previous
//! fdatasync, and only after all earlier offsets reached the same point.
//! So an acknowledged batch and everything before it are on stable storage:
//! a crash can only lose unacknowledged batches, which is what recovery
//! expects to find (a torn suffix). `Written` acks survive a process crash
//! (the data is in the device) but not a power loss; `Memory` acks survive
//! neither. Each ack states the level actually reached.
//!
//! A failed or short write or fdatasync **fences** the log: it becomes
//! read-only and every later append fails with [`LogError::Fenced`] naming
//! the cause. It is never retried: after a failed fdatasync the kernel may
//! have dropped the dirty state, so a retry that succeeds proves nothing
//! (the "fsyncgate" lesson). Reopening runs recovery, the only way back.
//!
//! ## Recovery rules
//!
//! On open, sealed segments are trusted through their index files (their
//! batches are still CRC-checked on every disk read) and the active segment
//! is scanned from its start ([`recovery`]); `VerifyOnOpen::AllSegments`
//! scans every segment. The scan checks each batch's length, framing,
//! CRC-32C, offset sequence and append-time order, and stops at the first
//! failure, which it classifies:
//! - only zeros follow: clean end;
//! - a valid batch that belongs later follows, or the failure lies in a
//!   sealed segment or before the known durable length: **corruption**,
//!   reported as [`LogError::Corrupt`] with the offset and byte position;
//!   the log is not opened and nothing is truncated (the broker fences the
//!   partition);
//! - otherwise: a **torn tail** (an unacknowledged, partly written round),
//!   truncated (file cut, zeroed, preallocated again, fdatasynced).
//!
//! ## Reads
//!
//! Reads return whole batches as shared [`bytes::Bytes`], starting with the
//! batch holding the requested offset, served from the tail cache when it
//! covers the offset (caught-up consumers never touch the disk), otherwise
//! from the segment via the sparse index with one read per chunk. Unwritten
//! batches are always cached, so the disk path only reads written bytes.
//! `read` stops at the high watermark, which in single-node mode follows the
//! acknowledged end; replicated logs set it themselves.
//!
//! ## Maintenance
//!
//! Retention deletes whole sealed segments by time and size ([`retention`]);
//! compaction rewrites sealed segments keeping the latest record per key
//! ([`compaction`]); `truncate_suffix` cuts a diverged tail for a follower.
//!
//! The sans-IO cores (naming, index, recovery scan, retention, compaction
//! planning, cache) are unit-tested without a runtime; the glommio glue is
//! tested against an in-memory model (`tests/log_model.rs`), by cutting
//! and flipping bytes of real segment files (`tests/log_recovery.rs`), by
//! real I/O faults (`tests/log_fence.rs`: writes the kernel refuses past a
//! file-size limit; `tests/log_sync_fault.rs`: an ext4 filesystem on a loop
//! device shut down mid-run, so fdatasync and writes fail with EIO, then
//! remounted), and by SIGKILL in the `shoal-tests` crash test
//! (`tests/tests/log_crash.rs`).
//! `benches/log_append.rs` measures append throughput against the raw
//! device in one run.
//!
//! ## Known limits
//!
//! - Bytes 12..24 of a batch header (leader epoch, append time) are not
//!   covered by the batch CRC (the protocol's choice, so patching needs no
//!   recompute); a flip there is caught only if it breaks append-time order.
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
