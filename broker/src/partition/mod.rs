//! The partition service: everything that happens to a partition on its
//! owning shard. Front ends and delivery reach partition data through
//! [`PartitionService`] only; storage sits below it.
//!
//! | module      | role                                                          |
//! |-------------|---------------------------------------------------------------|
//! | [`service`] | the shard's owned partitions; lookup, open, drop, maintenance |
//! | [`replica`] | one partition: its log, producer state, high watermark        |
//! | [`append`]  | produce: validation, sequences, dedup, durability wait        |
//! | [`read`]    | fetch and long poll, offsets by position and time, lag view   |
//! | [`dedup`]   | message-id window and idempotent-producer sequences (sans-IO) |
//! | [`raft_group`] | a replicated partition's raft group over its own log     |
//! | [`raft_storage`] | raft-rs's `Storage` over the persisted entry records   |
//! | [`replication`] | one shard's loop over its raft groups; placement       |
//!
//! Replication plugs in at [`replica`]: an append becomes leader append,
//! replicate, commit, and the high watermark moves with the commit index.

pub mod append;
pub mod dedup;
pub mod raft_group;
pub mod raft_storage;
pub mod read;
pub mod replica;
pub mod replication;
pub mod service;

pub use append::Appended;
pub use read::{ListedOffset, OffsetQuery, PartitionView, ReadBatches};
pub use replica::{PartitionFigures, Replica};
pub use service::PartitionService;
