//! # shoal-broker
//!
//! `shoald`, the Shoal broker.
pub mod config;
