//! # shoal-bench
//!
//! shoal-bench: load testing for Shoal.
