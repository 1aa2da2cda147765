//! Per-shard counters and histograms.
//!
//! Each shard counts into its own plain `Cell`s (no atomics, no locks: only
//! its executor touches them). Readers (the HTTP `/metrics` endpoint and the
//! stats APIs) ask each shard for a snapshot over the mesh and add them up.

use std::cell::{Cell, RefCell};

use hdrhistogram::Histogram;

/// Highest latency the histograms record, in microseconds (one minute).
const LATENCY_US_MAX: u64 = 60_000_000;

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// One shard's counters.
pub struct ShardMetrics {
    /// Requests served, by API key.
    pub requests: RefCell<Vec<u64>>,
    /// Error replies, by error code.
    pub errors: RefCell<std::collections::BTreeMap<u16, u64>>,
    pub connections_open: Cell<u64>,
    pub connections_total: Cell<u64>,
    /// Connections closed because of malformed input.
    pub connections_rejected: Cell<u64>,
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    pub records_in: Cell<u64>,
    pub records_out: Cell<u64>,
    /// Total throttle time handed out, in ms.
    pub throttle_ms: Cell<u64>,
    /// Produce request latency from decode to reply, in µs.
    pub produce_latency_us: RefCell<Histogram<u64>>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            requests: RefCell::new(vec![0; 64]),
            errors: RefCell::new(Default::default()),
            connections_open: Cell::new(0),
            connections_total: Cell::new(0),
            connections_rejected: Cell::new(0),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            records_in: Cell::new(0),
            records_out: Cell::new(0),
            throttle_ms: Cell::new(0),
            produce_latency_us: RefCell::new(latency_histogram()),
        }
    }
}

/// Adds `n` to a counter cell.
pub fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

impl ShardMetrics {
    pub fn count_request(&self, api_key: u16) {
        let mut requests = self.requests.borrow_mut();
        if let Some(slot) = requests.get_mut(usize::from(api_key)) {
            *slot += 1;
        }
    }

    pub fn count_error(&self, code: u16) {
        if code != 0 {
            *self.errors.borrow_mut().entry(code).or_insert(0) += 1;
        }
    }

    pub fn record_produce_latency(&self, micros: u64) {
        // Values above the bound are clamped rather than lost.
        let _ = self
            .produce_latency_us
            .borrow_mut()
            .record(micros.clamp(1, LATENCY_US_MAX));
    }
}
