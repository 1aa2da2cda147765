//! What a run found: the data every report format renders.
//!
//! [`RunReport`] is serialised as-is into `report.json`, so every figure in
//! the summary table and the charts is also in the JSON, next to the full
//! workload, the machine, the durability mode and the baselines.
//! [`ratios`] relates each broker figure to the physical baseline that
//! bounds it.

use serde::Serialize;

use crate::baseline::Baselines;
use crate::burst::BurstFigures;
use crate::histogram::LatencySummary;
use crate::ledger::{Delivery, DeliveryVerdict};
use crate::machine::Machine;
use crate::rate_search::SearchOutcome;
use crate::timeseries::{GaugeSeries, SeriesPoint};
use crate::workload::{Acks, Flush, Workload};

/// Records and bytes over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Throughput {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_s: f64,
    pub bytes_per_s: f64,
}

impl Throughput {
    pub fn over(records: u64, bytes: u64, seconds: f64) -> Self {
        let s = seconds.max(1e-9);
        Self {
            records,
            bytes,
            seconds,
            records_per_s: records as f64 / s,
            bytes_per_s: bytes as f64 / s,
        }
    }
}

/// The durability promise the figures were measured under.
#[derive(Clone, Debug, Serialize)]
pub struct Durability {
    pub acks: Acks,
    /// Replicas of each partition (1: a single copy).
    pub replication_factor: u32,
    pub flush: Flush,
    pub flush_interval_ms: Option<u64>,
    pub delivery: Delivery,
}

impl Durability {
    pub fn of(w: &Workload) -> Self {
        Self {
            acks: w.acks,
            replication_factor: w.replication_factor,
            flush: w.flush,
            flush_interval_ms: (w.flush == Flush::Interval).then_some(w.flush_interval_ms),
            delivery: w.delivery,
        }
    }
}

/// Which broker the run talked to.
#[derive(Clone, Debug, Serialize)]
pub struct BrokerInfo {
    /// "embedded" (spawned by the harness), "cluster-N" (N nodes spawned
    /// by the harness; `address` lists them) or "external".
    pub mode: String,
    pub address: String,
    pub binary: Option<String>,
    pub data_dir: Option<String>,
}

/// Where the load threads ran.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Placement {
    pub producer_cores: Vec<Option<usize>>,
    pub consumer_cores: Vec<Option<usize>>,
}

/// What a burst did, with the business delay it caused.
#[derive(Clone, Debug, Serialize)]
pub struct BurstReport {
    pub figures: BurstFigures,
    /// Largest end-to-end latency of records consumed after the burst began.
    pub peak_end_to_end_ns: u64,
}

/// What a broker restart cost.
#[derive(Clone, Debug, Serialize)]
pub struct RestartReport {
    pub killed_at_ns: u64,
    pub restarted_at_ns: u64,
    /// From the kill to the first acknowledgement after it.
    pub unavailable_ns: Option<u64>,
    /// The longest a record acknowledged after the kill waited for its ack,
    /// from its intended send time: on a cluster, where partitions led by
    /// other nodes go on acknowledging, this is the window the killed
    /// leader's partitions were unavailable (failover, redirects, retries).
    pub longest_wait_ns: u64,
    pub produce_errors_during: u64,
}

/// One load phase at one offered rate, measured.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseResult {
    pub label: String,
    /// 0 in closed loop.
    pub offered_rate_per_s: f64,
    /// Closed loop: records each producer kept in flight.
    pub closed_window: Option<usize>,
    /// The measured window, ns since the run's epoch.
    pub measure_start_ns: u64,
    pub measure_end_ns: u64,
    pub produce: Throughput,
    pub consume: Throughput,
    pub ack_latency: LatencySummary,
    pub end_to_end: LatencySummary,
    /// How late producers sent against their schedule (the harness's own health).
    pub send_lag: LatencySummary,
    pub produce_errors: u64,
    /// Leader redirects the clients followed in the phase (a cluster).
    pub redirects: u64,
    /// Records sent but neither acked nor failed by the drain deadline.
    pub unanswered: u64,
    /// Deliveries the consumers nacked (retry storm).
    pub nacked: u64,
    /// Deliveries that arrived with a delivery count above 1.
    pub redelivered: u64,
    /// Acks counted by the durability the broker reported achieving
    /// ("Fsynced", "Written", "Accepted", ...): what the figures were really bought with.
    pub ack_durability: std::collections::BTreeMap<String, u64>,
    /// Records the schedule made due in each second since the epoch (index = second).
    pub offered_series: Vec<u64>,
    pub produce_series: Vec<SeriesPoint>,
    pub consume_series: Vec<SeriesPoint>,
    /// Records due by the schedule but not yet acknowledged.
    pub backlog: GaugeSeries,
    /// Records acknowledged but not yet consumed.
    pub consumer_lag: GaugeSeries,
    pub burst: Option<BurstReport>,
    pub restart: Option<RestartReport>,
    /// The delivery check; `None` when the phase ran without consumers.
    pub delivery: Option<DeliveryVerdict>,
    /// False when consumers had not received every acknowledged record by the drain deadline.
    pub drained: bool,
    /// CPU the harness (client) and the embedded broker used over the
    /// measured window, in cores.
    pub cpu: Option<crate::cpu::CpuShare>,
}

/// One max-rate search trial (producers only), as measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrialPhase {
    pub rate_per_s: f64,
    pub produce: Throughput,
    pub ack_latency: LatencySummary,
    /// A large send lag means the load generator, not the broker, fell behind.
    pub send_lag: LatencySummary,
    pub produce_errors: u64,
    /// Why the trial produced no figures (a stalled broker or client).
    pub error: Option<String>,
}

impl TrialPhase {
    pub fn of(p: &PhaseResult, error: Option<String>) -> Self {
        Self {
            rate_per_s: p.offered_rate_per_s,
            produce: p.produce,
            ack_latency: p.ack_latency,
            send_lag: p.send_lag,
            produce_errors: p.produce_errors,
            error,
        }
    }
}

/// A figure next to the physical baseline that bounds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ratio {
    pub figure: String,
    pub value: f64,
    pub unit: String,
    pub baseline: String,
    pub baseline_value: f64,
    /// `value / baseline_value`.
    pub ratio: f64,
}

/// Everything a run reports.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub tool: String,
    pub version: String,
    pub started_at: String,
    pub command_line: Vec<String>,
    pub workload: Workload,
    pub durability: Durability,
    pub machine: Machine,
    pub broker: BrokerInfo,
    pub placement: Placement,
    pub baselines: Option<Baselines>,
    pub search: Option<SearchOutcome>,
    /// What each search trial measured, in the order run.
    pub trials: Vec<TrialPhase>,
    pub measured: Option<PhaseResult>,
    /// The broker's statistics of the measured phase's consumer group (group consumption).
    pub group_stats: Option<serde_json::Value>,
    pub ratios: Vec<Ratio>,
}

/// Each broker figure against the baseline that bounds it: byte rates
/// against loopback TCP and direct-I/O disk bandwidth, latencies against the
/// loopback round trip and (for `flush = always`) one append + fdatasync.
pub fn ratios(
    measured: Option<&PhaseResult>,
    search: Option<&SearchOutcome>,
    baselines: &Baselines,
    record_bytes: usize,
    flush: Flush,
) -> Vec<Ratio> {
    let net = baselines.loopback.throughput_bytes_per_s;
    let disk = baselines.disk.write_bytes_per_s;
    let rtt = &baselines.loopback.round_trip;
    let sync = &baselines.disk.write_fdatasync;
    let mut out = Vec::new();
    let mut push = |figure: &str, value: f64, unit: &str, baseline: &str, base: f64| {
        if base > 0.0 {
            out.push(Ratio {
                figure: figure.into(),
                value,
                unit: unit.into(),
                baseline: baseline.into(),
                baseline_value: base,
                ratio: value / base,
            });
        }
    };
    if let Some(s) = search {
        let bytes = s.sustainable_rate_per_s * record_bytes as f64;
        push("max sustainable produce", bytes, "B/s", "loopback TCP", net);
        push(
            "max sustainable produce",
            bytes,
            "B/s",
            "disk O_DIRECT write",
            disk,
        );
    }
    let Some(m) = measured else { return out };
    push(
        "produce throughput",
        m.produce.bytes_per_s,
        "B/s",
        "loopback TCP",
        net,
    );
    push(
        "produce throughput",
        m.produce.bytes_per_s,
        "B/s",
        "disk O_DIRECT write",
        disk,
    );
    push(
        "consume throughput",
        m.consume.bytes_per_s,
        "B/s",
        "loopback TCP",
        net,
    );
    let p50: fn(&LatencySummary) -> u64 = |l| l.p50_ns;
    let p99: fn(&LatencySummary) -> u64 = |l| l.p99_ns;
    let pairs = [("p50", p50), ("p99", p99)];
    for (name, pick) in pairs {
        let (ack, e2e) = (pick(&m.ack_latency) as f64, pick(&m.end_to_end) as f64);
        if m.ack_latency.count > 0 {
            push(
                &format!("produce->ack {name}"),
                ack,
                "ns",
                &format!("loopback RTT {name}"),
                pick(rtt) as f64,
            );
            if flush == Flush::Always {
                push(
                    &format!("produce->ack {name}"),
                    ack,
                    "ns",
                    &format!("4 KiB fdatasync {name}"),
                    pick(sync) as f64,
                );
            }
        }
        if m.end_to_end.count > 0 {
            push(
                &format!("end-to-end {name}"),
                e2e,
                "ns",
                &format!("loopback RTT {name}"),
                pick(rtt) as f64,
            );
        }
    }
    if m.end_to_end.count > 0 {
        push(
            "end-to-end p99.9",
            m.end_to_end.p999_ns as f64,
            "ns",
            "loopback RTT p99.9",
            rtt.p999_ns as f64,
        );
    }
    out
}
