//! # shoal-bench
//!
//! Load testing for Shoal whose figures can be trusted: open-loop load at a
//! target rate with latency measured from each record's *intended* send time
//! (so a broker stall is never hidden by coordinated omission), HDR
//! histograms, a max-rate search for the rate where backlog stays flat,
//! physical baselines measured in the same run, and reports that carry the
//! machine, the configuration and the durability mode with every figure.
//!
//! Layout: the arithmetic is pure and tested with known inputs —
//! [`histogram`] (HDR percentiles, merging, closed-loop correction),
//! [`schedule`] (open-loop send times, burst phases), [`rate_search`]
//! (sustainable-rate search driven by backlog samples), [`timeseries`]
//! (per-second throughput and latency), [`burst`] (peak lag, drain time),
//! [`ledger`] (loss and duplicate detection), [`stamp`] (the header each
//! record carries), [`distribution`] (sizes and keys).
//!
//! Around it: [`workload`] (TOML presets in `presets/`, every field a flag),
//! [`baseline`] (loopback TCP and direct-I/O disk, measured in the same run),
//! [`machine`] (what the figures were measured on), [`driver`] (producer and
//! consumer threads behind small client traits, with the Shoal client
//! adapter), [`broker_process`] (the embedded `shoald`), [`broker_tls`] (the
//! throw-away CA and broker certificate of `--compare-tls`), [`run`] (baselines,
//! broker, search, measured phase) and [`report`] (summary table, JSON, SVG
//! charts, HTML page).
//!
//! The harness keeps itself honest too: every phase records its *send lag*
//! (how late producers sent against their schedule), so a load generator
//! that could not offer the rate is visible rather than mistaken for a slow
//! broker, and the durability each ack claimed is counted.
#![forbid(unsafe_code)]

pub mod baseline;
pub mod broker_process;
pub mod broker_tls;
pub mod burst;
pub mod cpu;
pub mod distribution;
pub mod driver;
pub mod error;
pub mod histogram;
pub mod ledger;
pub mod machine;
pub mod rate_search;
pub mod report;
pub mod run;
pub mod schedule;
pub mod stamp;
pub mod suite;
pub mod timeseries;
pub mod workload;

pub use error::BenchError;
