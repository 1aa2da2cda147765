//! `shoal-bench --compare-tls` end to end (issue 20): one invocation runs
//! the workload on a plaintext embedded broker, then makes a CA and broker
//! certificate and runs it again on a broker with TLS on its native ports,
//! whose clients trust that CA. Both runs' records are all consumed, the
//! second report says it measured over TLS, and `comparison.txt` gives the
//! TLS/plaintext ratio. A short search capped at a low rate keeps the run
//! bounded; the figures themselves are measured with `--preset max-rate`
//! (README). No timing is asserted.

use std::process::Command;

use shoal_tests::{assert_bench_delivered, bench_report, bin_path, run_shoal_bench_to};

#[test]
fn compare_tls_reports_tls_figures_next_to_plaintext() {
    // Proves one invocation writes a plaintext and a TLS report, the certificates, and their ratio.
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("report");
    let stdout = run_shoal_bench_to(
        &out_dir,
        &[
            "--preset",
            "max-rate",
            "--compare-tls",
            "--no-baselines",
            "--search-rate-start-per-s",
            "1000",
            "--search-rate-max-per-s",
            "1000",
            "--search-trial-s",
            "1",
            "--warmup-s",
            "0.5",
            "--duration-s",
            "2",
            "--drain-s",
            "20",
        ],
    );

    let plaintext = bench_report(&out_dir, "plaintext");
    let tls = bench_report(&out_dir, "tls");
    assert_eq!(plaintext["broker"]["mode"], "embedded");
    assert_eq!(tls["broker"]["mode"], "embedded+tls");
    assert_ne!(
        plaintext["broker"]["data_dir"], tls["broker"]["data_dir"],
        "each run has a fresh data directory"
    );
    for report in [&plaintext, &tls] {
        assert!(
            report["search"]["sustainable_rate_per_s"].as_f64().unwrap() > 0.0,
            "{}",
            report["search"]
        );
        assert_bench_delivered(report);
    }
    for cert in ["ca.pem", "broker.pem", "broker.key", "broker.toml"] {
        assert!(out_dir.join("certs").join(cert).is_file(), "certs/{cert} written");
    }

    let comparison = std::fs::read_to_string(out_dir.join("comparison.txt")).expect("comparison.txt");
    assert!(comparison.contains("TLS 1.3"), "{comparison}");
    let ratio_line = comparison
        .lines()
        .find(|l| l.contains("max sustainable produce"))
        .unwrap_or_else(|| panic!("no rate line: {comparison}"));
    let ratio: f64 = ratio_line
        .rsplit("ratio ")
        .next()
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ratio in {ratio_line:?}"));
    assert!(ratio > 0.0, "{ratio_line}");
    assert!(comparison.contains("produce->ack p99"), "{comparison}");
    assert!(stdout.contains(&comparison), "the comparison is printed");
}

#[test]
fn compare_tls_refuses_a_cluster_or_an_external_broker() {
    // Proves --compare-tls with --cluster or --broker stops before any run, naming the clash.
    for clash in [["--cluster", "3"], ["--broker", "127.0.0.1:9"]] {
        let out = Command::new(bin_path("shoal-bench"))
            .args(["--compare-tls", "--no-baselines"])
            .args(clash)
            .output()
            .expect("run shoal-bench");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{clash:?} accepted: {stderr}");
        assert!(
            stderr.contains("--compare-tls") && stderr.contains(clash[0]),
            "{clash:?}: {stderr}"
        );
    }
}
