//! Reports: a summary table, `report.json`, SVG charts and `index.html`.
//!
//! [`model`] holds what a run found; [`summary`] renders the table,
//! [`charts`] the SVGs, [`html`] the page that embeds them. [`write`] puts
//! them all in the output directory (`--out`, default
//! `./bench-out/<timestamp>/`).

pub mod charts;
pub mod html;
pub mod model;
pub mod summary;

use std::path::{Path, PathBuf};

use crate::error::BenchError;
use model::RunReport;

/// Writes every report file for `report` into `dir` (created if needed) and
/// answers their paths.
pub fn write(dir: &Path, report: &RunReport) -> Result<Vec<PathBuf>, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(format!("create {}", dir.display()), e))?;
    let put = |name: &str, text: &str| -> Result<PathBuf, BenchError> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| BenchError::io(format!("write {}", path.display()), e))?;
        Ok(path)
    };
    let mut paths = Vec::new();
    let json = serde_json::to_string_pretty(report).map_err(|e| BenchError::Report {
        path: dir.join("report.json"),
        message: e.to_string(),
    })?;
    paths.push(put("report.json", &json)?);
    let text = summary::render(report);
    paths.push(put("summary.txt", &text)?);
    let charts = match &report.measured {
        Some(m) => charts::write(dir, m)?,
        None => Vec::new(),
    };
    paths.extend(charts.iter().map(|c| dir.join(c)));
    let title = format!("shoal-bench: {}", report.workload.name);
    paths.push(put("index.html", &html::render(&title, &text, &charts))?);
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::{disk::DiskBaseline, loopback::LoopbackBaseline, Baselines};
    use crate::histogram::LatencyHistogram;
    use crate::ledger::{Delivery, DeliveryLedger};
    use crate::report::model::*;
    use crate::timeseries::{GaugeSeries, TimeSeries};
    use crate::workload::{Flush, Workload, WorkloadLayer, WorkloadSource};

    fn summary_of(values: &[u64]) -> crate::histogram::LatencySummary {
        let mut h = LatencyHistogram::new();
        values.iter().for_each(|v| h.record(*v));
        h.summary()
    }

    fn baselines() -> Baselines {
        Baselines {
            loopback: LoopbackBaseline {
                throughput_bytes_per_s: 1e9,
                bytes_sent: 1 << 30,
                round_trip: summary_of(&[20_000, 40_000]),
                sender_core: Some(0),
                receiver_core: Some(1),
            },
            disk: DiskBaseline {
                path: "/tmp".into(),
                direct_io: true,
                write_bytes_per_s: 5e8,
                bytes_written: 1 << 29,
                write_fdatasync: summary_of(&[1_000_000, 2_000_000]),
            },
        }
    }

    fn phase() -> PhaseResult {
        let mut series = TimeSeries::new();
        for i in 0..3_000u64 {
            series.record(i * 1_000_000, 1024, Some(100_000 + i));
        }
        let mut ledger = DeliveryLedger::new();
        ledger.ack(0, 0);
        ledger.receive(0, 0);
        PhaseResult {
            label: "measured".into(),
            offered_rate_per_s: 1000.0,
            closed_window: None,
            measure_start_ns: 0,
            measure_end_ns: 3_000_000_000,
            produce: Throughput::over(3_000, 3_000 * 1024, 3.0),
            consume: Throughput::over(3_000, 3_000 * 1024, 3.0),
            ack_latency: summary_of(&[100_000, 200_000]),
            end_to_end: summary_of(&[300_000, 400_000]),
            send_lag: summary_of(&[1_000]),
            produce_errors: 0,
            redirects: 0,
            unanswered: 0,
            nacked: 0,
            redelivered: 0,
            ack_durability: [("Fsynced".to_string(), 3_000)].into(),
            offered_series: vec![1000, 1000, 1000],
            produce_series: series.points(),
            consume_series: series.points(),
            backlog: GaugeSeries {
                samples: vec![(0, 1), (1_000_000_000, 3)],
            },
            consumer_lag: GaugeSeries {
                samples: vec![(0, 0), (1_000_000_000, 2)],
            },
            burst: None,
            restart: None,
            delivery: Some(ledger.verdict(Delivery::AtLeastOnce)),
            drained: true,
            cpu: None,
        }
    }

    #[test]
    fn ratios_divide_each_figure_by_its_baseline() {
        // Proves throughput is divided by loopback and disk bandwidth, latency by RTT and fdatasync.
        let m = phase();
        let r = model::ratios(Some(&m), None, &baselines(), 1024, Flush::Always);
        let find = |fig: &str, base: &str| {
            r.iter()
                .find(|x| x.figure == fig && x.baseline.starts_with(base))
                .unwrap()
        };
        let produce_net = find("produce throughput", "loopback");
        assert!((produce_net.ratio - 3_072_000.0 / 3.0 / 1e9).abs() < 1e-12);
        let produce_disk = find("produce throughput", "disk");
        assert!((produce_disk.ratio - 1_024_000.0 / 5e8).abs() < 1e-12);
        let ack_sync = find("produce->ack p50", "4 KiB fdatasync");
        assert!((ack_sync.ratio - m.ack_latency.p50_ns as f64 / 1_000_000.0).abs() < 0.01);
        let no_sync = model::ratios(Some(&m), None, &baselines(), 1024, Flush::Never);
        assert!(no_sync.iter().all(|x| !x.baseline.contains("fdatasync")));
    }

    #[test]
    fn writes_json_charts_and_page() {
        // Proves a report directory gets report.json (with figures), summary, SVG charts and index.html.
        let dir = tempfile::tempdir().unwrap();
        let workload = Workload::resolve(WorkloadSource::Preset("quick"), &WorkloadLayer::default()).unwrap();
        let m = phase();
        let report = RunReport {
            tool: "shoal-bench".into(),
            version: "test".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            command_line: vec!["shoal-bench".into()],
            durability: Durability::of(&workload),
            machine: crate::machine::describe(dir.path()),
            broker: BrokerInfo {
                mode: "external".into(),
                address: "127.0.0.1:1".into(),
                binary: None,
                data_dir: None,
            },
            placement: Placement::default(),
            ratios: model::ratios(Some(&m), None, &baselines(), 1024, Flush::Always),
            baselines: Some(baselines()),
            search: None,
            trials: Vec::new(),
            measured: Some(m),
            group_stats: None,
            workload,
        };
        let out = dir.path().join("out");
        let paths = write(&out, &report).unwrap();
        assert_eq!(paths.len(), 6, "{paths:?}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        assert_eq!(json["workload"]["name"], "quick");
        assert_eq!(json["measured"]["produce"]["records"], 3_000);
        assert!(json["machine"]["kernel"].is_string());
        let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("end-to-end p99"));
        let page = std::fs::read_to_string(out.join("index.html")).unwrap();
        assert!(page.contains("throughput.svg") && page.contains("delivery OK"));
    }
}
