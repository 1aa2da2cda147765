//! Newtypes for the numbers that cross module boundaries, so a partition
//! id cannot be passed where a shard id or an offset is meant.
//!
//! The wire messages (`shoal_protocol::messages`) carry plain integers;
//! front ends wrap them on the way in and unwrap them on the way out. The
//! sans-IO delivery state keeps plain `u64` offsets inside one module.

use std::fmt;

/// A partition number within a topic (`0..partitions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PartitionId(pub u32);

/// A shard (one core's executor) of this broker (`0..shards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ShardId(pub u32);

/// A record's position in its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Offset(pub u64);

/// A consumer group's generation (bumped by every membership change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Generation(pub u32);

impl PartitionId {
    pub fn get(self) -> u32 {
        self.0
    }

    /// The index of this partition in a per-topic vector.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl ShardId {
    pub fn get(self) -> u32 {
        self.0
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl Offset {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl Generation {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
