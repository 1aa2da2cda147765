//! Secure by default: a broker bound to a non-loopback address without TLS
//! and authentication refuses to start and says how to fix it; with
//! `security.insecure = true` it starts and warns; with TLS and
//! authentication it starts quietly. Loopback brokers (every other test)
//! need neither.

mod security_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use security_support::Pki;
use shoal_tests::bin_path;

/// Starts shoald on 0.0.0.0 with `toml`; returns (started, stderr so far).
fn start_exposed(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shoald.toml");
    std::fs::write(
        &config,
        format!("[runtime]\nio_memory_bytes = 2097152\npin_cores = false\n{toml}\n"),
    )
    .unwrap();
    let mut child = Command::new(bin_path("shoald"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--listen",
            "0.0.0.0:0",
            "--shard-port-base",
            "0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--shards", "1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shoald");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let line = BufReader::new(stdout).lines().next().and_then(Result::ok);
        let _ = tx.send(line);
    });
    let started =
        matches!(rx.recv_timeout(Duration::from_secs(30)), Ok(Some(l)) if l.starts_with("shoald ready"));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (started, String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn exposed_broker_needs_tls_and_authentication_or_insecure() {
    let (started, stderr) = start_exposed("");
    assert!(!started, "an exposed plaintext broker started");
    assert!(stderr.contains("refusing to serve"), "{stderr}");
    assert!(stderr.contains("security.insecure"), "{stderr}");

    let (started, stderr) = start_exposed("[security]\nauthentication = true\n");
    assert!(!started, "authentication without TLS is not enough: {stderr}");

    let (started, stderr) = start_exposed("[security]\ninsecure = true\n");
    assert!(started, "insecure = true should start: {stderr}");
    assert!(
        stderr.contains("security.insecure = true"),
        "no warning: {stderr}"
    );

    let pki = Pki::new();
    let (started, stderr) = start_exposed(&format!(
        "[security]\nauthentication = true\n{}",
        pki.tls_toml("")
    ));
    assert!(started, "TLS and authentication should start: {stderr}");
    assert!(!stderr.contains("insecure"), "{stderr}");
}
