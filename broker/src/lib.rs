//! # shoal-broker
//!
//! shoald: the thread-per-core Shoal broker.
