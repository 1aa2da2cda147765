//! Runs the real `shoal-tune` binary: probe, recommend from saved reports, check.

use std::path::Path;
use std::process::{Command, Output};

fn shoal_tune(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal-tune"))
        .args(args)
        .output()
        .expect("binary runs");
    eprintln!("stderr of {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

/// probe --json writes a report that recommend reads back, and the recommended file passes check.
#[test]
fn probe_recommend_check_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    let probe = shoal_tune(&["probe", "--dir", data, "--json"]);
    assert!(probe.status.success());
    let probe_json = dir.path().join("probe.json");
    std::fs::write(&probe_json, &probe.stdout).unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert_eq!(parsed["requested_dir"], data);
    assert!(parsed["facts"]["kernel"]["release"].is_string());

    let toml_path = dir.path().join("shoal.toml");
    let rec = shoal_tune(&[
        "recommend",
        "--dir",
        data,
        "--probe",
        probe_json.to_str().unwrap(),
        "--no-bench",
        "--out",
        toml_path.to_str().unwrap(),
    ]);
    assert!(rec.status.success());
    assert!(stdout(&rec).starts_with("host changes"), "{}", stdout(&rec));
    let text = std::fs::read_to_string(&toml_path).unwrap();
    assert!(text.starts_with("# Shoal broker config written by `shoal-tune recommend`."));
    let config = shoal_config::Config::from_toml_str(&text).unwrap();
    assert_eq!(config.server.data_dir, Path::new(data));

    let check = shoal_tune(&["check", toml_path.to_str().unwrap(), "--json"]);
    let problems: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    let errors: Vec<_> = problems
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] == "error")
        .collect();
    // On a host without the memlock headroom the only error allowed is io memory, with exit 1.
    assert!(
        errors.iter().all(|p| p["key"] == "runtime.io_memory_bytes"),
        "{problems:#}"
    );
    assert_eq!(check.status.code(), Some(if errors.is_empty() { 0 } else { 1 }));
}

/// check explains a broken file and exits 1; an unknown saved report is a clear error (exit 2).
#[test]
fn bad_inputs_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[storage]\nwrite_chunk_bytes = 1000\n").unwrap();
    let check = shoal_tune(&["check", bad.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        stdout(&check).contains("storage.write_chunk_bytes"),
        "{}",
        stdout(&check)
    );

    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let rec = shoal_tune(&["recommend", "--probe", junk.to_str().unwrap(), "--no-bench"]);
    assert_eq!(rec.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&rec.stderr).contains("junk.json"));
}

/// SIGINT during a bench stops it at the next I/O boundary and removes its files (exit 2).
#[test]
fn interrupted_bench_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_shoal-tune"))
        .args([
            "bench",
            "--dir",
            dir.path().to_str().unwrap(),
            "--file-mib",
            "32",
            "--time-max-s",
            "30",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the bench has created its directory, so the interrupt lands mid-run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_dir(dir.path()).unwrap().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "bench never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: kill only sends a signal to the child we spawned.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "bench files remain"
    );
}
