//! The load driver: producer and consumer threads against a broker.
//!
//! The driver is written against three small traits so that the timing,
//! stamping and verification logic stays independent of the client's API:
//! a [`Connector`] prepares topics and opens one [`ProduceClient`] per
//! producer thread and one [`ConsumeClient`] per consumer thread (each opened
//! on the thread that uses it). The Shoal client adapter implements them;
//! the engine never sees a socket, and its tests run it against an
//! in-memory log.
//!
//! - [`producer`]: the open-loop send loop (sends at intended times, latency
//!   from the intended time, acks into the ledger);
//! - [`consumer`]: receive, measure end-to-end latency from the stamp, ack
//!   or nack, mark the ledger;
//! - [`engine`]: one load phase — threads, pinning, backlog and lag
//!   sampling, a broker restart when asked — merged into a
//!   [`crate::report::model::PhaseResult`].

pub mod consumer;
pub mod engine;
pub mod producer;
pub mod shared;
pub mod shoal_client;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::workload::Workload;

/// One record handed to a producer client.
#[derive(Clone, Debug)]
pub struct OutRecord {
    /// Index into the workload's topic names.
    pub topic: u32,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Identifies the record in the ack that answers it.
    pub token: u64,
}

/// The broker's answer for one record.
#[derive(Clone, Debug)]
pub struct AckEvent {
    pub token: u64,
    /// `Ok` carries the durability the broker says it achieved (e.g.
    /// "Fsynced"); `Err` carries the client's or broker's reason.
    pub result: Result<&'static str, String>,
    /// When the client learned the outcome.
    pub at: Instant,
}

/// One record received by a consumer client.
#[derive(Clone, Debug)]
pub struct InRecord {
    pub value: Vec<u8>,
    /// Whatever the client needs to ack or nack this record.
    pub handle: u64,
    /// 1 on first delivery, higher on redeliveries (group consumption).
    pub delivery_count: u32,
}

/// A producer as the driver needs it: asynchronous sends, acks collected later.
pub trait ProduceClient {
    /// Hands one record to the client, which may batch it (linger, batch size).
    /// May block while the client applies backpressure; the open-loop schedule
    /// keeps running, so the wait shows up as latency.
    fn send(&mut self, record: OutRecord) -> Result<(), BenchError>;

    /// Appends the acks that arrived to `out`, waiting at most `wait` for the first.
    fn poll_acks(&mut self, wait: Duration, out: &mut Vec<AckEvent>) -> Result<(), BenchError>;
}

/// A consumer as the driver needs it.
pub trait ConsumeClient {
    /// Appends received records to `out`, waiting at most `wait` for the first.
    fn poll(&mut self, wait: Duration, out: &mut Vec<InRecord>) -> Result<(), BenchError>;

    /// Acknowledges (`ok`) or negatively acknowledges a record (group delivery);
    /// partition consumers may ignore it.
    fn settle(&mut self, record: &InRecord, ok: bool) -> Result<(), BenchError>;
}

/// Opens clients against one broker. Shared by all threads.
pub trait Connector: Send + Sync {
    /// Creates the workload's topics (partitions, flush policy) if needed.
    fn prepare(&self, workload: &Workload) -> Result<(), BenchError>;

    /// A producer client for thread `index`, opened on that thread.
    fn producer(&self, workload: &Workload, index: u32) -> Result<Box<dyn ProduceClient>, BenchError>;

    /// A consumer client for thread `index` of `of`, positioned at the end of
    /// its partitions (or joined to `group`), opened on that thread.
    fn consumer(
        &self,
        workload: &Workload,
        index: u32,
        of: u32,
        group: &str,
    ) -> Result<Box<dyn ConsumeClient>, BenchError>;

    /// The broker's statistics of a consumer group (retry budget, counters,
    /// circuit breaker) as JSON, for connectors whose broker has groups.
    fn group_stats(&self, _group: &str) -> Result<Option<serde_json::Value>, BenchError> {
        Ok(None)
    }

    /// How many of the workload's records sit in `group`'s quarantine, for
    /// connectors whose broker quarantines (`None` otherwise).
    fn quarantine_count(&self, _workload: &Workload, _group: &str) -> Result<Option<u64>, BenchError> {
        Ok(None)
    }

    /// The values of every record in `group`'s quarantine (`None` for
    /// connectors whose broker has no quarantine).
    fn quarantine_values(
        &self,
        _workload: &Workload,
        _group: &str,
    ) -> Result<Option<Vec<Vec<u8>>>, BenchError> {
        Ok(None)
    }
}

/// The consumer group a phase's consumers join: fresh per process and phase.
pub fn group_name(run: u32) -> String {
    format!("shoal-bench-{}-{run}", std::process::id())
}

/// Stops and starts the broker, for the restart scenario.
pub trait BrokerControl: Send {
    /// Kills the broker abruptly (SIGKILL): nothing is flushed on the way out.
    fn kill(&mut self) -> Result<(), BenchError>;
    /// Starts it again on the same addresses and data directory.
    fn start(&mut self) -> Result<(), BenchError>;
    /// The running broker's process id (for its CPU time).
    fn pid(&self) -> Option<u32>;
}
