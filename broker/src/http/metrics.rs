//! `GET /metrics`: Prometheus text format, gathered from every shard.
//!
//! Each shard keeps its own counters with no locks: the broker's
//! [`crate::metrics::ShardMetrics`], the mesh's hop counters, its partitions'
//! figures, and this module's HTTP counters. The HTTP counters live in a
//! thread-local because each shard is exactly one executor thread, so a
//! thread-local is shard-local without widening the `Shard` struct. The
//! endpoint asks every other shard for a [`ShardSnapshot`] over the mesh
//! (`ShardCall::MetricsSnapshot`, counted as a hop like any call) and renders
//! the union; samples carry a `shard` label where they are per shard.
//! Consumer-group figures (lag in records and seconds, in-flight leases,
//! retry backlog, quarantine depth, breaker state, retry and quarantine
//! counters) come from each group's coordinator through the delivery
//! service's `group_stats`, one call per group.
//!
//! Per partition, storage's counters give bytes written, appends, writes,
//! the fdatasync latency histogram (storage's fixed buckets, from 50 us to
//! 1 s), and reads answered from the tail batch cache versus from disk,
//! with their ratio as `shoal_partition_batch_cache_hit_ratio`. The produce
//! ack latency histogram is per shard and front door (HTTP also by
//! durability reached).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use hdrhistogram::Histogram;
use hyper::StatusCode;

use super::json::HttpResponse;
use shoal_protocol::messages::group::ListGroupsRequest;
use shoal_protocol::messages::stats::{
    CircuitState, GroupPartitionStats, GroupStatsRequest, GroupStatsResponse,
};

use crate::mesh::{PartitionFigures, ShardCall, ShardReply};
use crate::shard::Shard;

/// Highest latency the HTTP histograms record, in microseconds (one minute).
const LATENCY_US_MAX: u64 = 60_000_000;
/// Histogram bucket bounds in seconds, as Prometheus `le` labels.
const BUCKETS_S: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// This shard's HTTP counters.
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

fn bump(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

/// Counts an open HTTP connection for as long as it lives.
pub struct ConnectionGuard(());

impl ConnectionGuard {
    pub fn open() -> ConnectionGuard {
        HTTP.with(|h| {
            bump(&h.connections_open, 1);
            bump(&h.connections_total, 1);
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
    HTTP.with(|h| bump(&h.requests, 1));
}

pub fn count_deadline_close() {
    HTTP.with(|h| bump(&h.deadline_closes, 1));
}

/// Counts a reply by status and, for errors, by its JSON `code`.
pub fn count_response(resp: &HttpResponse) {
    let status = resp.status();
    let code = if status.is_success() {
        String::new()
    } else {
        error_code_of(resp).unwrap_or_else(|| "unknown".into())
    };
    HTTP.with(|h| {
        *h.responses
            .borrow_mut()
            .entry((status.as_u16(), code))
            .or_insert(0) += 1
    });
}

fn error_code_of(resp: &HttpResponse) -> Option<String> {
    resp.extensions()
        .get::<super::json::ErrorTag>()
        .map(|t| t.0.to_string())
}

/// Records one publish's ack latency under the durability it reached.
pub fn record_produce_ack(durability: &'static str, micros: u64) {
    HTTP.with(|h| {
        let mut map = h.produce_ack_us.borrow_mut();
        let hist = map.entry(durability).or_insert_with(latency_histogram);
        let _ = hist.record(micros.clamp(1, LATENCY_US_MAX));
    });
}

/// One partition's figures on its owner.
#[derive(Debug, Clone)]
pub struct PartitionSample {
    pub topic: String,
    pub partition: u32,
    pub figures: PartitionFigures,
    /// Write-path counters of the log; `None` when the partition is fenced on open.
    pub log: Option<shoal_storage::LogStats>,
}

/// Everything one shard reports to `/metrics`.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: u32,
    pub records_in: u64,
    pub records_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub throttle_ms: u64,
    pub native_connections_open: u64,
    pub native_connections_total: u64,
    pub native_connections_rejected: u64,
    pub native_errors: Vec<(u16, u64)>,
    pub native_produce_latency_us: Histogram<u64>,
    pub hops_out: Vec<u64>,
    pub hops_in: u64,
    /// Mesh calls sent, by [`crate::mesh::CALL_KINDS`] kind.
    pub hops_by_kind: Vec<u64>,
    /// Native requests served, by API key number.
    pub native_requests: Vec<u64>,
    pub http_connections_open: u64,
    pub http_connections_total: u64,
    pub http_requests: u64,
    pub http_deadline_closes: u64,
    pub http_responses: Vec<(u16, String, u64)>,
    pub http_produce_ack_us: Vec<(&'static str, Histogram<u64>)>,
    pub partitions: Vec<PartitionSample>,
}

/// This shard's snapshot (called on the shard itself).
pub fn snapshot(shard: &Shard) -> ShardSnapshot {
    let m = &shard.metrics;
    let mut partitions: Vec<PartitionSample> = shard
        .local_partitions()
        .iter()
        .map(|p| PartitionSample {
            topic: p.topic.name.clone(),
            partition: p.id,
            figures: p.figures(),
            log: p.log().ok().map(|l| l.stats()),
        })
        .collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    HTTP.with(|h| ShardSnapshot {
        shard: shard.id,
        records_in: m.records_in.get(),
        records_out: m.records_out.get(),
        bytes_in: m.bytes_in.get(),
        bytes_out: m.bytes_out.get(),
        throttle_ms: m.throttle_ms.get(),
        native_connections_open: m.connections_open.get(),
        native_connections_total: m.connections_total.get(),
        native_connections_rejected: m.connections_rejected.get(),
        native_errors: m.errors.borrow().iter().map(|(k, v)| (*k, *v)).collect(),
        native_produce_latency_us: m.produce_latency_us.borrow().clone(),
        hops_out: shard.mesh.hops_out(),
        hops_in: shard.mesh.hops_in(),
        hops_by_kind: shard.mesh.hops_by_kind(),
        native_requests: m.requests.borrow().clone(),
        http_connections_open: h.connections_open.get(),
        http_connections_total: h.connections_total.get(),
        http_requests: h.requests.get(),
        http_deadline_closes: h.deadline_closes.get(),
        http_responses: h
            .responses
            .borrow()
            .iter()
            .map(|((s, c), n)| (*s, c.clone(), *n))
            .collect(),
        http_produce_ack_us: h
            .produce_ack_us
            .borrow()
            .iter()
            .map(|(d, hist)| (*d, hist.clone()))
            .collect(),
        partitions,
    })
}

/// Snapshots of every shard, this one included, in shard order. A shard
/// that does not answer (stopping) is left out.
pub async fn gather(shard: &Rc<Shard>) -> Vec<ShardSnapshot> {
    let mut out = Vec::with_capacity(shard.count as usize);
    for id in 0..shard.count {
        if id == shard.id {
            out.push(snapshot(shard));
            continue;
        }
        match shard.on(id, ShardCall::MetricsSnapshot).await {
            Ok(ShardReply::Metrics(s)) => out.push(*s),
            Ok(_) => tracing::warn!(shard = id, "metrics: mesh reply mismatch"),
            Err(e) => tracing::debug!(shard = id, error = %e, "metrics: shard did not answer"),
        }
    }
    out
}

pub async fn handle(shard: &Rc<Shard>) -> HttpResponse {
    let snapshots = gather(shard).await;
    let mut text = render(&snapshots);
    text.push_str(&render_groups(&group_stats(shard).await));
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(text)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// Stats of every consumer group, through the delivery service (each from
/// its coordinating shard). A group that vanished between list and stats
/// is left out.
async fn group_stats(shard: &Rc<Shard>) -> Vec<GroupStatsResponse> {
    let list = crate::delivery::list_groups(shard, ListGroupsRequest {}).await;
    let mut out = Vec::with_capacity(list.groups.len());
    for g in list.groups {
        let stats = crate::delivery::group_stats(shard, GroupStatsRequest { group: g.group }).await;
        if stats.error == 0 {
            out.push(stats);
        }
    }
    out
}

/// Per group and partition: lag in records and seconds, in-flight leases,
/// retry backlog and quarantine depth; per group: breaker state, retry
/// budget use and lifetime counters (their rates are the retry rate and
/// the quarantine inflow).
pub fn render_groups(groups: &[GroupStatsResponse]) -> String {
    let mut e = Exposition { out: String::new() };
    type PartPick = fn(&GroupPartitionStats) -> f64;
    let per_partition: [(&str, &str, PartPick); 5] = [
        (
            "shoal_group_lag_records",
            "Records not yet processed (acked) by the group.",
            |p| p.lag_records as f64,
        ),
        (
            "shoal_group_lag_seconds",
            "Age of the oldest record the group has not processed; 0 when caught up.",
            |p| p.lag_ms as f64 / 1000.0,
        ),
        (
            "shoal_group_in_flight",
            "Records delivered and leased, not yet acked or nacked.",
            |p| p.in_flight as f64,
        ),
        ("shoal_group_retry_backlog", "Records waiting for a retry.", |p| {
            p.retry_backlog as f64
        }),
        (
            "shoal_quarantine_depth",
            "Quarantined entries of the group and partition.",
            |p| p.quarantine_depth as f64,
        ),
    ];
    for (name, help, pick) in per_partition {
        e.family(name, "gauge", help);
        for g in groups {
            for p in &g.partitions {
                let partition = p.partition.to_string();
                let labels = [
                    ("group", g.group.as_str()),
                    ("topic", p.topic.as_str()),
                    ("partition", &partition),
                ];
                e.sample(name, &labels, pick(p));
            }
        }
    }
    type GroupPick = fn(&GroupStatsResponse) -> f64;
    let per_group: [(&str, &str, &str, GroupPick); 7] = [
        (
            "shoal_group_circuit_state",
            "gauge",
            "Circuit breaker: 0 closed, 1 half-open, 2 open.",
            |g| match g.circuit {
                CircuitState::Closed => 0.0,
                CircuitState::HalfOpen => 1.0,
                CircuitState::Open => 2.0,
            },
        ),
        (
            "shoal_group_retry_budget_used_permille",
            "gauge",
            "Retries per 1000 deliveries in the budget window.",
            |g| f64::from(g.retry_budget_used_permille),
        ),
        (
            "shoal_group_deliveries_total",
            "counter",
            "Records delivered to members.",
            |g| g.deliveries_total as f64,
        ),
        ("shoal_group_acks_total", "counter", "Records acked.", |g| {
            g.acks_total as f64
        }),
        ("shoal_group_nacks_total", "counter", "Records nacked.", |g| {
            g.nacks_total as f64
        }),
        (
            "shoal_group_retries_total",
            "counter",
            "Redeliveries scheduled (rate = retry rate).",
            |g| g.retries_total as f64,
        ),
        (
            "shoal_group_quarantined_total",
            "counter",
            "Records quarantined (rate = quarantine inflow).",
            |g| g.quarantined_total as f64,
        ),
    ];
    for (name, kind, help, pick) in per_group {
        e.family(name, kind, help);
        for g in groups {
            e.sample(name, &[("group", g.group.as_str())], pick(g));
        }
    }
    e.out
}

/// Writes metric families in the Prometheus text format (0.0.4).
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// Samples of one histogram (`name` without suffix) from µs values.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], hist: &Histogram<u64>) {
        let cumulative = BUCKETS_S
            .iter()
            .map(|&le| (le, hist.count_between(0, (le * 1e6) as u64)));
        let sum_s = hist.mean() * hist.len() as f64 / 1e6;
        self.buckets(name, labels, cumulative, hist.len(), sum_s);
    }

    /// Samples of one histogram from cumulative `(upper bound in seconds,
    /// count)` pairs, then `+Inf` (= `count`), `_sum` and `_count`.
    fn buckets(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        cumulative: impl IntoIterator<Item = (f64, u64)>,
        count: u64,
        sum_s: f64,
    ) {
        let bucket = format!("{name}_bucket");
        for (le, n) in cumulative {
            let le = le.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, n as f64);
        }
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        self.sample(&bucket, &inf, count as f64);
        self.sample(&format!("{name}_sum"), labels, sum_s);
        self.sample(&format!("{name}_count"), labels, count as f64);
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Renders every shard's snapshot as one exposition.
pub fn render(snaps: &[ShardSnapshot]) -> String {
    let mut e = Exposition { out: String::new() };
    render_partitions(&mut e, snaps);
    render_log_stats(&mut e, snaps);
    render_shards(&mut e, snaps);
    render_http(&mut e, snaps);
    e.out
}

fn render_partitions(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    type Pick = fn(&PartitionFigures) -> f64;
    let families: [(&str, &str, Pick); 5] = [
        (
            "shoal_partition_log_end_offset",
            "Offset the next appended record gets.",
            |f| f.log_end as f64,
        ),
        (
            "shoal_partition_high_watermark",
            "Records below this offset are readable.",
            |f| f.high_watermark as f64,
        ),
        (
            "shoal_partition_log_start_offset",
            "First retained offset.",
            |f| f.log_start as f64,
        ),
        (
            "shoal_partition_size_bytes",
            "Bytes of segment data on disk.",
            |f| f.size_bytes as f64,
        ),
        (
            "shoal_partition_fenced",
            "1 when the partition is fenced read-only after a storage error.",
            |f| f64::from(u8::from(f.fenced.is_some())),
        ),
    ];
    for (name, help, pick) in families {
        e.family(name, "gauge", help);
        for s in snaps {
            let shard = s.shard.to_string();
            for p in &s.partitions {
                let partition = p.partition.to_string();
                let labels = [
                    ("topic", p.topic.as_str()),
                    ("partition", &partition),
                    ("shard", &shard),
                ];
                e.sample(name, &labels, pick(&p.figures));
            }
        }
    }
}

/// Storage's counters per partition: the write path, fdatasync latency as
/// a histogram over storage's fixed buckets, and tail-cache reads.
fn render_log_stats(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    type Pick = fn(&shoal_storage::LogStats) -> f64;
    let families: [(&str, &str, &str, Pick); 5] = [
        (
            "shoal_partition_appends_total",
            "counter",
            "Appends to the partition log.",
            |s| s.appends as f64,
        ),
        (
            "shoal_partition_bytes_in_total",
            "counter",
            "Batch bytes written to the partition log.",
            |s| s.bytes_written as f64,
        ),
        (
            "shoal_partition_writes_total",
            "counter",
            "DMA writes to the partition log.",
            |s| s.writes as f64,
        ),
        (
            "shoal_partition_cache_reads_total",
            "counter",
            "Reads answered from the tail batch cache.",
            |s| s.cache_reads as f64,
        ),
        (
            "shoal_partition_disk_reads_total",
            "counter",
            "Reads that went to the segment files.",
            |s| s.disk_reads as f64,
        ),
    ];
    for (name, kind, help, pick) in families {
        e.family(name, kind, help);
        for_each_log(snaps, |labels, stats| e.sample(name, labels, pick(stats)));
    }
    e.family(
        "shoal_partition_batch_cache_hit_ratio",
        "gauge",
        "Share of reads answered from the tail batch cache since the broker started (absent before the first read).",
    );
    for_each_log(snaps, |labels, stats| {
        let reads = stats.cache_reads + stats.disk_reads;
        if reads > 0 {
            let ratio = stats.cache_reads as f64 / reads as f64;
            e.sample("shoal_partition_batch_cache_hit_ratio", labels, ratio);
        }
    });
    let name = "shoal_partition_fsync_seconds";
    e.family(name, "histogram", "fdatasync latency of the partition log.");
    for_each_log(snaps, |labels, stats| {
        let mut running = 0;
        let cumulative = shoal_storage::SYNC_LATENCY_BOUNDS_US
            .iter()
            .zip(stats.sync_latency_buckets)
            .map(|(&us, n)| {
                running += n;
                (us as f64 / 1e6, running)
            });
        e.buckets(
            name,
            labels,
            cumulative,
            stats.fdatasyncs,
            stats.sync_wait_us as f64 / 1e6,
        );
    });
}

/// Calls `f` with the labels and storage stats of every open partition log.
fn for_each_log(snaps: &[ShardSnapshot], mut f: impl FnMut(&[(&str, &str)], &shoal_storage::LogStats)) {
    for s in snaps {
        let shard = s.shard.to_string();
        for p in &s.partitions {
            let Some(stats) = &p.log else { continue };
            let partition = p.partition.to_string();
            let labels = [
                ("topic", p.topic.as_str()),
                ("partition", &partition),
                ("shard", &shard),
            ];
            f(&labels, stats);
        }
    }
}

fn render_shards(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    type Pick = fn(&ShardSnapshot) -> u64;
    let counters: [(&str, &str, Pick); 7] = [
        (
            "shoal_records_in_total",
            "Records appended by partitions on this shard.",
            |s| s.records_in,
        ),
        (
            "shoal_records_out_total",
            "Records read from partitions on this shard.",
            |s| s.records_out,
        ),
        (
            "shoal_native_bytes_in_total",
            "Bytes read from native-protocol sockets.",
            |s| s.bytes_in,
        ),
        (
            "shoal_native_bytes_out_total",
            "Bytes written to native-protocol sockets.",
            |s| s.bytes_out,
        ),
        (
            "shoal_throttle_time_ms_total",
            "Quota throttle time handed to clients, in ms.",
            |s| s.throttle_ms,
        ),
        (
            "shoal_cross_core_hops_in_total",
            "Mesh calls received from other shards.",
            |s| s.hops_in,
        ),
        (
            "shoal_native_connections_rejected_total",
            "Native connections closed for malformed input.",
            |s| s.native_connections_rejected,
        ),
    ];
    for (name, help, pick) in counters {
        e.family(name, "counter", help);
        for s in snaps {
            e.sample(name, &[("shard", &s.shard.to_string())], pick(s) as f64);
        }
    }
    render_hops_and_requests(e, snaps);
    e.family(
        "shoal_cross_core_hops_out_total",
        "counter",
        "Mesh calls sent to another shard.",
    );
    for s in snaps {
        for (to, n) in s
            .hops_out
            .iter()
            .enumerate()
            .filter(|(to, _)| *to as u32 != s.shard)
        {
            let labels = [("shard", s.shard.to_string()), ("to", to.to_string())];
            e.sample(
                "shoal_cross_core_hops_out_total",
                &[("shard", &labels[0].1), ("to", &labels[1].1)],
                *n as f64,
            );
        }
    }
    render_connections(e, snaps);
    e.family(
        "shoal_request_errors_total",
        "counter",
        "Error replies by front door and error code.",
    );
    for s in snaps {
        let shard = s.shard.to_string();
        for (code, n) in &s.native_errors {
            let name = shoal_protocol::error::ErrorCode::from_wire(*code).name();
            let labels = [
                ("shard", shard.as_str()),
                ("front_door", "native"),
                ("code", name),
            ];
            e.sample("shoal_request_errors_total", &labels, *n as f64);
        }
        for (status, code, n) in s.http_responses.iter().filter(|(st, _, _)| *st >= 400) {
            let _ = status;
            let labels = [
                ("shard", shard.as_str()),
                ("front_door", "http"),
                ("code", code.as_str()),
            ];
            e.sample("shoal_request_errors_total", &labels, *n as f64);
        }
    }
    e.family(
        "shoal_produce_ack_latency_seconds",
        "histogram",
        "Produce latency from request decode to ack, by front door (http: by durability reached).",
    );
    for s in snaps {
        let shard = s.shard.to_string();
        let labels = [
            ("shard", shard.as_str()),
            ("front_door", "native"),
            ("durability", "any"),
        ];
        e.histogram(
            "shoal_produce_ack_latency_seconds",
            &labels,
            &s.native_produce_latency_us,
        );
        for (durability, hist) in &s.http_produce_ack_us {
            let labels = [
                ("shard", shard.as_str()),
                ("front_door", "http"),
                ("durability", durability),
            ];
            e.histogram("shoal_produce_ack_latency_seconds", &labels, hist);
        }
    }
}

fn render_connections(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    e.family("shoal_connections_open", "gauge", "Open client connections.");
    for s in snaps {
        let shard = s.shard.to_string();
        let native = [("shard", shard.as_str()), ("front_door", "native")];
        e.sample(
            "shoal_connections_open",
            &native,
            s.native_connections_open as f64,
        );
        let http = [("shard", shard.as_str()), ("front_door", "http")];
        e.sample("shoal_connections_open", &http, s.http_connections_open as f64);
    }
    e.family(
        "shoal_connections_total",
        "counter",
        "Client connections accepted.",
    );
    for s in snaps {
        let shard = s.shard.to_string();
        let native = [("shard", shard.as_str()), ("front_door", "native")];
        e.sample(
            "shoal_connections_total",
            &native,
            s.native_connections_total as f64,
        );
        let http = [("shard", shard.as_str()), ("front_door", "http")];
        e.sample("shoal_connections_total", &http, s.http_connections_total as f64);
    }
}

fn render_http(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    e.family("shoal_http_requests_total", "counter", "HTTP requests received.");
    for s in snaps {
        e.sample(
            "shoal_http_requests_total",
            &[("shard", &s.shard.to_string())],
            s.http_requests as f64,
        );
    }
    e.family(
        "shoal_http_responses_total",
        "counter",
        "HTTP replies by status and error code.",
    );
    for s in snaps {
        let shard = s.shard.to_string();
        for (status, code, n) in &s.http_responses {
            let status = status.to_string();
            let labels = [
                ("shard", shard.as_str()),
                ("status", &status),
                ("code", code.as_str()),
            ];
            e.sample("shoal_http_responses_total", &labels, *n as f64);
        }
    }
    e.family(
        "shoal_http_deadline_closes_total",
        "counter",
        "HTTP connections closed by the header-read or idle deadline.",
    );
    for s in snaps {
        let labels = [("shard", s.shard.to_string())];
        e.sample(
            "shoal_http_deadline_closes_total",
            &[("shard", &labels[0].1)],
            s.http_deadline_closes as f64,
        );
    }
}

/// Cross-core calls by kind (produce and fetch apart from admin, stats and
/// group traffic) and native requests by API: together they give the share
/// of hot-path requests that crossed cores.
fn render_hops_and_requests(e: &mut Exposition, snaps: &[ShardSnapshot]) {
    e.family(
        "shoal_cross_core_calls_total",
        "counter",
        "Mesh calls sent to another shard, by kind (produce, fetch, list_offsets, admin, stats, delivery).",
    );
    for s in snaps {
        let shard = s.shard.to_string();
        for (kind, n) in crate::mesh::CALL_KINDS.iter().zip(&s.hops_by_kind) {
            e.sample(
                "shoal_cross_core_calls_total",
                &[("shard", &shard), ("kind", kind)],
                *n as f64,
            );
        }
    }
    e.family(
        "shoal_native_requests_total",
        "counter",
        "Native-protocol requests served, by API.",
    );
    for s in snaps {
        let shard = s.shard.to_string();
        for (key, n) in s.native_requests.iter().enumerate().filter(|(_, n)| **n > 0) {
            let api = shoal_protocol::api::ApiKey::from_wire(key as u16).map_or("unknown", |k| k.name());
            e.sample(
                "shoal_native_requests_total",
                &[("shard", &shard), ("api", api)],
                *n as f64,
            );
        }
    }
}
