//! The bench harness's `retry-storm` preset end to end: consumers of a group
//! nack half the deliveries, records that fail all their attempts go to the
//! group's quarantine, and the harness accounts for them as quarantined, not
//! lost: its ledger matches the quarantine's records against the acked ones,
//! the drain completes, and the run exits 0.
//!
//! The topic is created first with 3 attempts and a 20 ms backoff, so a
//! three-second run quarantines records (the default policy's 500 ms
//! backoff needs 7.5 s to reach the fifth attempt).

use shoal_tests::{bin_path, run_shoal_bench, BrokerProcess};
use std::process::Command;

const PREFIX: &str = "storm";
const PARTITIONS: u32 = 4;
const MAX_ATTEMPTS: u32 = 3;

#[test]
fn retry_storm_counts_quarantined_records_and_exits_zero() {
    let broker = BrokerProcess::start();
    let addr = broker.addr_string();
    // The harness names its topic `<prefix>-<flush>-p<partitions>-<i>` and
    // uses it as it finds it.
    let topic = format!("{PREFIX}-always-p{PARTITIONS}-0");
    let out = Command::new(bin_path("shoal"))
        .args(["topic", "create", &topic, "--broker", &addr])
        .args(["--partitions", &PARTITIONS.to_string()])
        .args(["--max-attempts", &MAX_ATTEMPTS.to_string()])
        .args(["--backoff-base-ms", "20", "--backoff-max-ms", "100"])
        .output()
        .expect("run shoal");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let dir = tempfile::tempdir().expect("temp dir");
    let report_dir = dir.path().join("report");
    let partitions = PARTITIONS.to_string();
    let report = report_dir.to_str().expect("utf-8 temp path");
    let stdout = run_shoal_bench([
        "--preset",
        "retry-storm",
        "--broker",
        &addr,
        "--no-baselines",
        "--topic-prefix",
        PREFIX,
        "--partitions",
        &partitions,
        "--rate-per-s",
        "500",
        "--warmup-s",
        "1",
        "--duration-s",
        "3",
        "--nack-share",
        "0.5",
        "--drain-s",
        "30",
        "--out",
        report,
    ]);

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_dir.join("report.json")).expect("report.json"))
            .expect("report is JSON");
    let measured = &report["measured"];
    let delivery = &measured["delivery"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"));
    let (acked, consumed, quarantined) = (
        n(&delivery["acked"]),
        n(&delivery["consumed_distinct"]),
        n(&delivery["quarantined"]),
    );
    assert_eq!(delivery["ok"], true, "{delivery}");
    assert_eq!(measured["drained"], true);
    assert_eq!(n(&delivery["lost"]), 0, "{delivery}");
    assert!(quarantined > 0, "nothing was quarantined: {delivery}");
    assert_eq!(acked, consumed + quarantined, "{delivery}");
    // The ledger's count (records matched in the quarantine) agrees with
    // the broker's own counter.
    assert_eq!(
        quarantined,
        n(&report["group_stats"]["quarantined_total"]),
        "{}",
        report["group_stats"]
    );
    assert!(stdout.contains("delivery OK"), "{stdout}");
}
