//! The README's operator runbook works exactly as written: the commands
//! between the `runbook` markers run as one `sh -e` script (`shoal` on the
//! `PATH`, `SHOAL_BROKER` and `SHOAL_HTTP` set) against a fresh broker.

use shoal_protocol::client::Client;
use shoal_tests::{bin_path, readme_session, BrokerProcess};

/// Every runbook command succeeds and the session ends with the failed
/// records handled: two redriven and processed, one purged.
#[test]
fn readme_runbook_runs_as_written() {
    let script = readme_session::block("runbook");
    assert!(
        script.lines().filter(|l| l.starts_with("shoal ")).count() >= 8,
        "the runbook lost its commands"
    );
    let broker = BrokerProcess::start();
    let bin_dir = bin_path("shoal").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stdout = readme_session::run(
        &script,
        &[
            ("PATH", &path),
            ("SHOAL_BROKER", &broker.addr_string()),
            ("SHOAL_HTTP", &format!("127.0.0.1:{}", broker.http_port)),
        ],
    );
    for expected in [
        "billing",
        "3 entries in the quarantine of invoices",
        "would redrive 3 entries of invoices to group billing",
        "redrove 2 entries of invoices to group billing",
        "would purge 1 entries from invoices",
        "0 entries in the quarantine of invoices",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in\n{stdout}");
    }
    let client = Client::connect(&broker.addr_string()).expect("connect");
    let stats = client.group_stats("billing").expect("stats");
    for p in &stats.partitions {
        assert_eq!(
            (p.committed_offset, p.lag_records, p.quarantine_depth),
            (p.log_end, 0, 0),
            "{p:?}"
        );
    }
    assert_eq!(stats.quarantined_total, 3);
}
