//! # shoal-storage
//!
//! The partition log: segments on glommio DMA files, indexes, group commit, recovery, retention, compaction, batch cache.
