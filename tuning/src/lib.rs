//! # shoal-tune
//!
//! shoal-tune: host probe, device benchmarks and config recommendations for Shoal.
