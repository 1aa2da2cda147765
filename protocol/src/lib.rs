//! # shoal-protocol
//!
//! Everything that crosses the wire between Shoal and its clients, kept
//! sans-IO where it can be:
//!
//! - [`batch`]: the record batch, the same bytes on the wire and on disk
//!   (layout documented byte by byte there);
//! - [`partitioner`]: the stable key → partition and name → shard hash.
#![forbid(unsafe_code)]

pub mod batch;
pub mod partitioner;
