//! The human summary table printed at the end of a run (and saved as `summary.txt`).
//!
//! It opens with what the figures depend on — machine, durability, broker,
//! thread placement, baselines — then the throughput and latency figures,
//! each ratio to its baseline, the scenario figures and the delivery check.
//! Units: bytes per second in MB/s (10^6), latencies scaled to µs, ms or s.

use std::fmt::Write;

use crate::histogram::LatencySummary;
use crate::report::model::{PhaseResult, RunReport};

/// Send lag p99 above which the summary warns that the load generator fell behind.
pub const SEND_LAG_WARN_NS: u64 = 10_000_000;

/// Renders the whole summary.
pub fn render(r: &RunReport) -> String {
    let mut out = String::new();
    header(&mut out, r);
    if let Some(b) = &r.baselines {
        let _ = writeln!(out, "\nbaselines (same run)");
        let l = &b.loopback;
        let _ = writeln!(
            out,
            "  loopback TCP           {:>12}   round trip p50 {}  p99 {}  (cores {} -> {})",
            mb_per_s(l.throughput_bytes_per_s),
            ns(l.round_trip.p50_ns),
            ns(l.round_trip.p99_ns),
            core(l.sender_core),
            core(l.receiver_core)
        );
        let d = &b.disk;
        let _ = writeln!(
            out,
            "  disk {:<17} {:>12}   4 KiB write+fdatasync p50 {}  p99 {}",
            if d.direct_io {
                "O_DIRECT write"
            } else {
                "buffered write"
            },
            mb_per_s(d.write_bytes_per_s),
            ns(d.write_fdatasync.p50_ns),
            ns(d.write_fdatasync.p99_ns)
        );
    }
    if let Some(s) = &r.search {
        let _ = writeln!(out, "\nmax-rate search ({} trials)", s.trials.len());
        for (i, t) in s.trials.iter().enumerate() {
            let verdict = if t.sustainable { "flat" } else { "grows" };
            let measured = r.trials.get(i).map_or(String::new(), |p| match &p.error {
                Some(e) => format!("  ({e})"),
                None => format!(
                    "  ack p99 {:>9}  send lag p99 {:>9}",
                    ns(p.ack_latency.p99_ns),
                    ns(p.send_lag.p99_ns)
                ),
            });
            let _ = writeln!(
                out,
                "  {:>12} rec/s  backlog slope {:>12.1} rec/s  {verdict:<5}{measured}",
                count(t.rate_per_s as u64),
                t.backlog_slope_per_s
            );
        }
        let capped = if s.capped_by_rate_max {
            " (capped by search_rate_max_per_s)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  sustainable: {} rec/s = {}{capped}",
            count(s.sustainable_rate_per_s as u64),
            mb_per_s(s.sustainable_rate_per_s * r.workload.record_bytes as f64)
        );
    }
    if let Some(m) = &r.measured {
        phase(&mut out, m);
    }
    if let Some(g) = &r.group_stats {
        group(&mut out, g);
        if let Some(m) = r.measured.as_ref().filter(|m| m.nacked > 0) {
            retry_accounting(&mut out, m, g);
        }
    }
    ratios(&mut out, r);
    out
}

/// Under nacks, an acked record that was never processed may legitimately sit
/// in the quarantine: the ledger matched the quarantine's records against
/// the acked ones; this line compares that with the broker's own counter.
fn retry_accounting(out: &mut String, m: &PhaseResult, g: &serde_json::Value) {
    let Some(v) = &m.delivery else { return };
    let counter = g.get("quarantined_total").and_then(|v| v.as_u64()).unwrap_or(0);
    let _ = writeln!(
        out,
        "  not processed {} = found in the group's quarantine {} (broker counter {}) + lost {}",
        count(v.quarantined + v.lost),
        count(v.quarantined),
        count(counter),
        count(v.lost)
    );
}

/// The broker's group counters, as far as the JSON has them.
fn group(out: &mut String, g: &serde_json::Value) {
    let n = |k: &str| g.get(k).and_then(|v| v.as_u64()).map_or("?".to_string(), count);
    let _ = writeln!(
        out,
        "\n  group (broker's view): deliveries {} | acks {} | nacks {} | retries {} | quarantined {} | \
         retry budget used {}‰ of {}‰ | circuit {}",
        n("deliveries_total"),
        n("acks_total"),
        n("nacks_total"),
        n("retries_total"),
        n("quarantined_total"),
        n("retry_budget_used_permille"),
        n("retry_budget_permille"),
        g.get("circuit").map_or("?".to_string(), |c| c.to_string())
    );
}

fn header(out: &mut String, r: &RunReport) {
    let m = &r.machine;
    let w = &r.workload;
    let _ = writeln!(
        out,
        "shoal-bench {} — workload {:?} — {}",
        r.version, w.name, r.started_at
    );
    let _ = writeln!(
        out,
        "machine     {} | {} cores | kernel {} | {:.1} GiB RAM",
        m.cpu_model,
        m.cores_online,
        m.kernel,
        m.memory_bytes as f64 / (1u64 << 30) as f64
    );
    let rot = match m.data_rotational {
        Some(true) => "rotational",
        Some(false) => "non-rotational",
        None => "rotational unknown",
    };
    let _ = writeln!(
        out,
        "data        {} on {} ({}, mounted at {}, {rot})",
        m.data_dir.display(),
        m.data_device,
        m.data_fs,
        m.data_mount
    );
    let d = &r.durability;
    let interval = d
        .flush_interval_ms
        .map(|ms| format!(" every {ms} ms"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "durability  acks {:?} | replication factor {} | flush {:?}{interval} | checked as {:?}",
        d.acks, d.replication_factor, d.flush, d.delivery
    );
    let _ = writeln!(out, "broker      {} at {}", r.broker.mode, r.broker.address);
    let _ = writeln!(
        out,
        "load        {} x {} B ({:?}) over {} topic(s) x {} partitions | {} producer(s) on cores {} | {} consumer(s) ({:?}) on cores {}",
        w.scenario_label(),
        w.record_bytes,
        w.size_distribution,
        w.topics,
        w.partitions,
        w.producers,
        cores(&r.placement.producer_cores),
        w.consumers,
        w.consumption,
        cores(&r.placement.consumer_cores),
    );
}

fn phase(out: &mut String, m: &PhaseResult) {
    let secs = m.produce.seconds;
    match m.closed_window {
        Some(window) => {
            let _ = writeln!(
                out,
                "\n{} in closed loop ({} records in flight per producer), {:.1} s measured",
                m.label,
                count(window as u64),
                secs
            );
        }
        None => {
            let _ = writeln!(
                out,
                "\n{} at {} rec/s offered, {:.1} s measured",
                m.label,
                count(m.offered_rate_per_s as u64),
                secs
            );
        }
    }
    let _ = writeln!(
        out,
        "  produced (acked)   {:>12} rec  {:>12} rec/s  {:>12}   errors {}, unanswered {}, redirects {}",
        count(m.produce.records),
        count(m.produce.records_per_s as u64),
        mb_per_s(m.produce.bytes_per_s),
        m.produce_errors,
        m.unanswered,
        m.redirects
    );
    let _ = writeln!(
        out,
        "  consumed           {:>12} rec  {:>12} rec/s  {:>12}",
        count(m.consume.records),
        count(m.consume.records_per_s as u64),
        mb_per_s(m.consume.bytes_per_s)
    );
    let achieved: Vec<String> = m
        .ack_durability
        .iter()
        .map(|(d, n)| format!("{d} {}", count(*n)))
        .collect();
    let _ = writeln!(
        out,
        "  durability achieved (per the broker's acks): {}",
        achieved.join(", ")
    );
    let _ = writeln!(
        out,
        "\n  latency          {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    latency_row(out, "produce->ack", &m.ack_latency);
    latency_row(out, "end-to-end", &m.end_to_end);
    latency_row(out, "send lag", &m.send_lag);
    if m.closed_window.is_some() {
        if let Some((burst, sustained)) = burst_and_sustained(m) {
            let _ = writeln!(
                out,
                "  produce rate: first second {} rec/s, last half of the window {} rec/s (a burst that \
                 rides caches shows as the first being higher)",
                count(burst),
                count(sustained)
            );
        }
        let _ = writeln!(
            out,
            "  (closed loop: latency from each record's send; a stall slows the load instead of showing here)"
        );
    } else {
        let _ = writeln!(
            out,
            "  (measured from each record's intended send time: coordinated-omission free)"
        );
    }
    if let Some(cpu) = &m.cpu {
        let broker = cpu
            .broker_cores
            .map_or("not measured (external broker)".to_string(), |c| {
                format!("{c:.2} cores")
            });
        let per_record = |cores: f64| {
            let records = m.produce.records_per_s.max(1.0);
            format!("{:.2} µs/record", cores * 1e6 / records)
        };
        let _ = writeln!(
            out,
            "  cpu: client {:.2} cores ({}), broker {broker}{}",
            cpu.client_cores,
            per_record(cpu.client_cores),
            cpu.broker_cores
                .map_or(String::new(), |c| format!(" ({})", per_record(c)))
        );
    }
    if m.send_lag.p99_ns > SEND_LAG_WARN_NS {
        let _ = writeln!(
            out,
            "  WARNING: producers fell behind their schedule (send lag p99 {}): the harness or the \
             client, not only the broker, limited the offered load",
            ns(m.send_lag.p99_ns)
        );
    }
    if let Some((at, peak)) = m.consumer_lag.peak().filter(|(_, peak)| *peak > 0) {
        let _ = writeln!(
            out,
            "  consumer lag peak  {} records at {:.1} s (end-to-end latency above is the delay it caused)",
            count(peak),
            at as f64 / 1e9
        );
    }
    if let Some(b) = &m.burst {
        let drain = b
            .figures
            .drain_ns
            .map_or("did not drain before the run ended".into(), ns);
        let _ = writeln!(
            out,
            "\n  burst: peak lag {} records at {:.1} s, peak end-to-end {} (business delay), drain time {}",
            count(b.figures.peak_lag_records),
            b.figures.peak_lag_at_ns as f64 / 1e9,
            ns(b.peak_end_to_end_ns),
            drain
        );
    }
    if m.nacked + m.redelivered > 0 {
        let secs = (m.measure_end_ns - m.measure_start_ns) as f64 / 1e9;
        let _ = writeln!(
            out,
            "\n  retries: {} nacked ({:.0}/s), {} redelivered ({:.0}/s); end-to-end above is first deliveries only",
            count(m.nacked),
            m.nacked as f64 / secs,
            count(m.redelivered),
            m.redelivered as f64 / secs
        );
    }
    if let Some(rs) = &m.restart {
        let window = rs.unavailable_ns.map_or("no ack after the restart".into(), ns);
        let _ = writeln!(
            out,
            "\n  restart: killed at {:.1} s, started at {:.1} s, unavailable {window}, longest wait for an ack after the kill {}, {} produce errors",
            rs.killed_at_ns as f64 / 1e9,
            rs.restarted_at_ns as f64 / 1e9,
            ns(rs.longest_wait_ns),
            rs.produce_errors_during
        );
    }
    let Some(v) = &m.delivery else {
        let _ = writeln!(out, "\n  delivery not checked: no consumers in this phase");
        return;
    };
    let verdict = if v.ok && m.drained { "OK" } else { "FAILED" };
    let _ = writeln!(
        out,
        "\n  delivery {verdict}: acked {} | consumed {} distinct | quarantined {} | lost {} | duplicates {} | stored-but-unacked {}{}",
        count(v.acked),
        count(v.consumed_distinct),
        count(v.quarantined),
        count(v.lost),
        count(v.duplicates),
        count(v.unacked_but_consumed),
        if m.drained {
            ""
        } else {
            " | NOT DRAINED: consumers stopped before every acked record was received or quarantined"
        }
    );
}

fn ratios(out: &mut String, r: &RunReport) {
    if r.ratios.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n  {:<26} {:>12}   {:<24} {:>12} {:>9}",
        "figure", "value", "baseline", "baseline", "ratio"
    );
    for x in &r.ratios {
        let fmt = |v: f64| if x.unit == "ns" { ns(v as u64) } else { mb_per_s(v) };
        let _ = writeln!(
            out,
            "  {:<26} {:>12}   {:<24} {:>12} {:>9.3}",
            x.figure,
            fmt(x.value),
            x.baseline,
            fmt(x.baseline_value),
            x.ratio
        );
    }
}

fn latency_row(out: &mut String, name: &str, l: &LatencySummary) {
    if l.count == 0 {
        let _ = writeln!(out, "  {name:<16} {:>9}", "-");
        return;
    }
    let _ = writeln!(
        out,
        "  {name:<16} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        count(l.count),
        ns(l.p50_ns),
        ns(l.p90_ns),
        ns(l.p99_ns),
        ns(l.p999_ns),
        ns(l.p9999_ns),
        ns(l.max_ns)
    );
}

/// A duration in the largest unit that keeps it at least 1.
pub fn ns(v: u64) -> String {
    match v {
        0..=999 => format!("{v} ns"),
        1_000..=999_999 => format!("{:.1} µs", v as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} ms", v as f64 / 1e6),
        _ => format!("{:.2} s", v as f64 / 1e9),
    }
}

/// A byte rate in MB/s (10^6 bytes).
pub fn mb_per_s(bytes_per_s: f64) -> String {
    format!("{:.1} MB/s", bytes_per_s / 1e6)
}

/// An integer with thousands separators.
pub fn count(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn core(c: Option<usize>) -> String {
    c.map_or("unpinned".into(), |c| c.to_string())
}

fn cores(list: &[Option<usize>]) -> String {
    if list.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = list.iter().map(|c| core(*c)).collect();
    format!("[{}]", parts.join(","))
}

/// Closed loop: records acked in the first whole second of the measured
/// window, and the mean per second over its last half.
fn burst_and_sustained(m: &PhaseResult) -> Option<(u64, u64)> {
    let (start, end) = (
        m.measure_start_ns.div_ceil(1_000_000_000),
        m.measure_end_ns / 1_000_000_000,
    );
    let inside: Vec<u64> = m
        .produce_series
        .iter()
        .filter(|p| p.second >= start && p.second < end)
        .map(|p| p.records)
        .collect();
    let first = *inside.first()?;
    let half = &inside[inside.len() / 2..];
    let sustained = half.iter().sum::<u64>() / half.len().max(1) as u64;
    Some((first, sustained))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting() {
        // Proves counts, durations and rates are formatted with the documented units.
        assert_eq!(count(0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(ns(950), "950 ns");
        assert_eq!(ns(12_345), "12.3 µs");
        assert_eq!(ns(1_351_700), "1.35 ms");
        assert_eq!(ns(12_345_678), "12.35 ms");
        assert_eq!(ns(12_345_678_901), "12.35 s");
        assert_eq!(mb_per_s(5_120_000.0), "5.1 MB/s");
    }
}
