//! The files under `deploy/`: the Grafana dashboard queries only metrics a
//! live broker exports; the systemd unit passes `systemd-analyze verify`;
//! the sample production config passes `shoald --check-config`, which
//! also names the key of a bad one; and the packages install the binaries
//! the README says (`cargo install --path broker` gives `shoald`).

mod console_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use console_support::{make_scene, Http};
use serde_json::Value;
use shoal_tests::{bin_path, BrokerProcess};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every PromQL expression in the dashboard, wherever a panel keeps it.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The `shoal_*` metric names an expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("shoal_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn grafana_dashboard_queries_exported_metrics() {
    let path = repo().join("deploy/grafana/shoal-broker.json");
    let dashboard: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("dashboard")).expect("dashboard is JSON");
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    let queried: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    // The list: throughput, ack latency, fsync latency, lag seconds,
    // retry and quarantine rates, breaker, fenced partitions.
    for needed in [
        "shoal_records_in_total",
        "shoal_produce_ack_latency_seconds_bucket",
        "shoal_partition_fsync_seconds_bucket",
        "shoal_group_lag_seconds",
        "shoal_group_retries_total",
        "shoal_group_quarantined_total",
        "shoal_group_circuit_state",
        "shoal_partition_fenced",
    ] {
        assert!(queried.contains(needed), "the dashboard does not chart {needed}");
    }
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "duplicate id: {panel}"
        );
        if panel["type"] != "row" {
            assert!(
                !panel["targets"].as_array().expect("targets").is_empty(),
                "no query: {panel}"
            );
        }
    }

    // A broker with records, a group that nacked (so the group families
    // have samples), HTTP publishes (so the ack histogram has samples) and
    // one error reply.
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    make_scene(&http);
    // Error counters have a sample only once an error was answered.
    let (status, _, _) = http.raw("GET", "/topics/no-such-topic", None);
    assert_eq!(status, 404);
    let (status, _, text) = http.raw("GET", "/metrics", None);
    assert_eq!(status, 200);
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = queried
        .iter()
        .filter(|m| !exported.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics /metrics does not export: {missing:?}"
    );
}

fn shoald_check(config: &Path) -> (bool, String) {
    let out = Command::new(bin_path("shoald"))
        .arg("--check-config")
        .arg(config)
        .output()
        .expect("run shoald --check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn sample_config_passes_check_config_and_bad_ones_are_named() {
    let sample = repo().join("deploy/shoald.toml");
    let (ok, text) = shoald_check(&sample);
    assert!(ok, "the sample production config is invalid: {text}");
    assert!(text.contains(": ok"), "{text}");

    let dir = tempfile::tempdir().expect("temp dir");
    let good = std::fs::read_to_string(&sample).expect("sample");
    for (broken, key) in [
        (
            good.replace("write_chunk_bytes = 262144", "write_chunk_bytes = 1000"),
            "storage.write_chunk_bytes",
        ),
        (good.replace("[delivery]", "[delivery]\nbogus_ms = 1"), "bogus_ms"),
        (
            good.replace("io_memory_bytes = 16777216", "io_memory_bytes = 4096"),
            "runtime.io_memory_bytes",
        ),
    ] {
        let path = dir.path().join("broken.toml");
        std::fs::write(&path, &broken).expect("write config");
        let out = Command::new(bin_path("shoald"))
            .arg("--check-config")
            .arg(&path)
            .output()
            .expect("run shoald");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{key}: {stderr}");
        assert!(stderr.contains(key), "the error does not name {key}: {stderr}");
    }
    let (ok, text) = shoald_check(&dir.path().join("missing.toml"));
    assert!(!ok && text.contains("cannot read config file"), "{text}");
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        if std::env::var("SHOAL_SKIP_SYSTEMD_VERIFY").is_ok_and(|v| v == "1") {
            println!("SKIPPED: systemd-analyze not installed (SHOAL_SKIP_SYSTEMD_VERIFY=1)");
            return;
        }
        panic!(
            "checking deploy/shoald.service needs systemd-analyze (Debian: apt-get install systemd; \
             .ci/run installs it). Set SHOAL_SKIP_SYSTEMD_VERIFY=1 to skip it on a machine without it."
        );
    };
    let unit = std::fs::read_to_string(repo().join("deploy/shoald.service")).expect("unit");
    for needed in [
        "LimitMEMLOCK=",
        "LimitNOFILE=",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecStartPre=/usr/local/bin/shoald --check-config",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    // The stop timeout must outlast the broker's drain (10 s) and its fsyncs.
    let stop_s: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop_s > 10,
        "TimeoutStopSec={stop_s}s does not cover the 10 s drain"
    );

    // verify checks that the executables exist: point the unit at the
    // binary this test built, keeping everything else as shipped.
    let dir = tempfile::tempdir().expect("temp dir");
    let shoald = bin_path("shoald");
    let local = unit.replace("/usr/local/bin/shoald", &shoald.display().to_string());
    let path = dir.path().join("shoald.service");
    std::fs::write(&path, local).expect("write unit");
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Other units on the host may draw complaints; ours must draw none.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("shoald.service")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify failed ({}):\n{stderr}",
        out.status
    );
}

#[test]
fn packages_install_the_documented_binaries() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(repo().join("Cargo.toml"))
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    // `cargo install --path DIR` installs the bin targets of the package in DIR.
    for (dir, bin) in [("broker", "shoald"), ("protocol", "shoal")] {
        let manifest = repo()
            .join(dir)
            .join("Cargo.toml")
            .canonicalize()
            .expect("manifest");
        let package = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| Path::new(p["manifest_path"].as_str().unwrap_or_default()) == manifest)
            .unwrap_or_else(|| panic!("no package in {dir}"));
        let bins: Vec<&str> = package["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .filter(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin")))
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(
            bins.contains(&bin),
            "cargo install --path {dir} would not install {bin}: {bins:?}"
        );
    }
}
