//! Per-shard counters and histograms.
//!
//! Each shard counts into its own plain `Cell`s (no atomics, no locks: only
//! its executor touches them). Readers (the HTTP `/metrics` endpoint and the
//! stats APIs) ask each shard for a snapshot over the mesh and add them up.
//!
//! The HTTP and Kafka front ends' counters live in thread-locals ([`http`],
//! [`kafka`]): each shard is exactly one executor thread, so a thread-local
//! is shard-local without the front end reaching into the shard's state.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Highest latency the histograms record, in microseconds (one minute).
const LATENCY_US_MAX: u64 = 60_000_000;

/// An empty latency histogram (1 µs to one minute, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// One shard's counters.
pub struct ShardMetrics {
    /// Requests served, by API key.
    pub requests: RefCell<Vec<u64>>,
    /// Error replies, by error code.
    pub errors: RefCell<BTreeMap<u16, u64>>,
    pub connections_open: Cell<u64>,
    pub connections_total: Cell<u64>,
    /// Connections closed because of malformed input.
    pub connections_rejected: Cell<u64>,
    /// Connections closed by the frame or idle deadline.
    pub connections_expired: Cell<u64>,
    /// Connections refused by the per-shard or per-address limit (both
    /// front doors).
    pub connections_refused: Cell<u64>,
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
            connections_expired: Cell::new(0),
            connections_refused: Cell::new(0),
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

    /// Counts an error reply by its wire code.
    pub fn count_error(&self, code: shoal_protocol::error::ErrorCode) {
        if !code.is_ok() {
            *self.errors.borrow_mut().entry(code.to_wire()).or_insert(0) += 1;
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

/// The HTTP front end's counters of this shard (thread-local, see above).
pub mod http {
    use super::*;

    #[derive(Default)]
    struct HttpCounters {
        connections_open: Cell<u64>,
        connections_total: Cell<u64>,
        requests: Cell<u64>,
        deadline_closes: Cell<u64>,
        /// Replies by (status, error code name; "" for success).
        responses: RefCell<BTreeMap<(u16, String), u64>>,
        /// Publish ack latency by the durability reached, in µs.
        produce_ack_us: RefCell<BTreeMap<&'static str, Histogram<u64>>>,
    }

    thread_local! {
        static HTTP: HttpCounters = HttpCounters::default();
    }

    /// This shard's HTTP counters, copied out for a snapshot.
    #[derive(Debug, Clone, Default)]
    pub struct HttpFigures {
        pub connections_open: u64,
        pub connections_total: u64,
        pub requests: u64,
        pub deadline_closes: u64,
        pub responses: Vec<(u16, String, u64)>,
        pub produce_ack_us: Vec<(&'static str, Histogram<u64>)>,
    }

    /// Counts an open HTTP connection for as long as it lives.
    pub struct ConnectionGuard(());

    impl ConnectionGuard {
        pub fn open() -> ConnectionGuard {
            HTTP.with(|h| {
                add(&h.connections_open, 1);
                add(&h.connections_total, 1);
            });
            ConnectionGuard(())
        }
    }

    impl Drop for ConnectionGuard {
        fn drop(&mut self) {
            HTTP.with(|h| h.connections_open.set(h.connections_open.get().saturating_sub(1)));
        }
    }

    pub fn count_request() {
        HTTP.with(|h| add(&h.requests, 1));
    }

    pub fn count_deadline_close() {
        HTTP.with(|h| add(&h.deadline_closes, 1));
    }

    /// Counts a reply by status and, for errors, by its stable `code` name.
    pub fn count_response(status: u16, code: &str) {
        HTTP.with(|h| {
            *h.responses
                .borrow_mut()
                .entry((status, code.to_string()))
                .or_insert(0) += 1
        });
    }

    /// Records one publish's ack latency under the durability it reached.
    pub fn record_produce_ack(durability: &'static str, micros: u64) {
        HTTP.with(|h| {
            let mut map = h.produce_ack_us.borrow_mut();
            let hist = map.entry(durability).or_insert_with(latency_histogram);
            let _ = hist.record(micros.clamp(1, LATENCY_US_MAX));
        });
    }

    /// Copies this shard's HTTP counters out.
    pub fn figures() -> HttpFigures {
        HTTP.with(|h| HttpFigures {
            connections_open: h.connections_open.get(),
            connections_total: h.connections_total.get(),
            requests: h.requests.get(),
            deadline_closes: h.deadline_closes.get(),
            responses: h
                .responses
                .borrow()
                .iter()
                .map(|((s, c), n)| (*s, c.clone(), *n))
                .collect(),
            produce_ack_us: h
                .produce_ack_us
                .borrow()
                .iter()
                .map(|(d, hist)| (*d, hist.clone()))
                .collect(),
        })
    }
}

/// The Kafka front end's counters of this shard (thread-local, see above).
/// Requests and errors are kept by Kafka's own numbers (API key, error
/// code); the Prometheus renderer names them.
pub mod kafka {
    use super::*;

    #[derive(Default)]
    struct KafkaCounters {
        connections_open: Cell<u64>,
        connections_total: Cell<u64>,
        /// Closed for a malformed or refused request.
        connections_rejected: Cell<u64>,
        /// Closed by the frame-read or idle deadline.
        connections_expired: Cell<u64>,
        bytes_in: Cell<u64>,
        bytes_out: Cell<u64>,
        /// Requests by API key.
        requests: RefCell<BTreeMap<i16, u64>>,
        /// Error codes answered, by (API key, Kafka error code); a request
        /// refused before its API was known counts under key −1.
        errors: RefCell<BTreeMap<(i16, i16), u64>>,
        /// Produce latency from decode to the reply, in µs.
        produce_latency_us: RefCell<Option<Histogram<u64>>>,
    }

    thread_local! {
        static KAFKA: KafkaCounters = KafkaCounters::default();
    }

    /// This shard's Kafka counters, copied out for a snapshot.
    #[derive(Debug, Clone, Default)]
    pub struct KafkaFigures {
        pub connections_open: u64,
        pub connections_total: u64,
        pub connections_rejected: u64,
        pub connections_expired: u64,
        pub bytes_in: u64,
        pub bytes_out: u64,
        pub requests: Vec<(i16, u64)>,
        pub errors: Vec<(i16, i16, u64)>,
        pub produce_latency_us: Option<Histogram<u64>>,
    }

    /// Counts an open Kafka connection for as long as it lives.
    pub struct ConnectionGuard(());

    impl ConnectionGuard {
        pub fn open() -> ConnectionGuard {
            KAFKA.with(|k| {
                add(&k.connections_open, 1);
                add(&k.connections_total, 1);
            });
            ConnectionGuard(())
        }
    }

    impl Drop for ConnectionGuard {
        fn drop(&mut self) {
            KAFKA.with(|k| k.connections_open.set(k.connections_open.get().saturating_sub(1)));
        }
    }

    pub fn count_rejected() {
        KAFKA.with(|k| add(&k.connections_rejected, 1));
    }

    pub fn count_expired() {
        KAFKA.with(|k| add(&k.connections_expired, 1));
    }

    pub fn count_bytes_in(n: u64) {
        KAFKA.with(|k| add(&k.bytes_in, n));
    }

    pub fn count_bytes_out(n: u64) {
        KAFKA.with(|k| add(&k.bytes_out, n));
    }

    pub fn count_request(api_key: i16) {
        KAFKA.with(|k| *k.requests.borrow_mut().entry(api_key).or_insert(0) += 1);
    }

    /// Counts one error code answered (0 is not an error and is skipped).
    pub fn count_error(api_key: i16, code: i16) {
        if code != 0 {
            KAFKA.with(|k| *k.errors.borrow_mut().entry((api_key, code)).or_insert(0) += 1);
        }
    }

    pub fn record_produce_latency(micros: u64) {
        KAFKA.with(|k| {
            let mut hist = k.produce_latency_us.borrow_mut();
            let hist = hist.get_or_insert_with(latency_histogram);
            let _ = hist.record(micros.clamp(1, LATENCY_US_MAX));
        });
    }

    /// Copies this shard's Kafka counters out.
    pub fn figures() -> KafkaFigures {
        KAFKA.with(|k| KafkaFigures {
            connections_open: k.connections_open.get(),
            connections_total: k.connections_total.get(),
            connections_rejected: k.connections_rejected.get(),
            connections_expired: k.connections_expired.get(),
            bytes_in: k.bytes_in.get(),
            bytes_out: k.bytes_out.get(),
            requests: k.requests.borrow().iter().map(|(a, n)| (*a, *n)).collect(),
            errors: k.errors.borrow().iter().map(|((a, c), n)| (*a, *c, *n)).collect(),
            produce_latency_us: k.produce_latency_us.borrow().clone(),
        })
    }
}
