//! The README's HTTP session works exactly as written: the lines between
//! the `http` markers run as one `sh -e` script (with `SHOAL_HTTP` pointing
//! at a fresh broker) and every curl succeeds (`-f`: an HTTP error fails).

use std::process::Command;

use shoal_tests::BrokerProcess;

/// The session exits 0, publishes two records, delivers them to the group
/// and commits its position, and the replay reads them back.
#[test]
fn readme_http_session_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let block = readme
        .split("<!-- http:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- http:end -->").next())
        .expect("README has an http block");
    let script: String = block.lines().map(|l| format!("{}\n", l.trim())).collect();
    assert!(script.contains("/messages") && script.contains("/poll?") && script.contains("/offsets/commit"));
    assert!(
        script.contains("/replay"),
        "the four core endpoints are in the session"
    );
    let broker = BrokerProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg("-ec")
        .arg(&script)
        .current_dir(dir.path())
        .env("SHOAL_HTTP", format!("127.0.0.1:{}", broker.http_port))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""durability":"fsynced""#), "{stdout}");
    assert!(stdout.contains(r#""delivery_count":1"#), "{stdout}");
    assert_eq!(
        stdout.matches(r#""value":"{\"total\": 12}""#).count(),
        2,
        "poll and replay: {stdout}"
    );
    assert!(stdout.contains(r#""committed_offset":2"#), "{stdout}");
}
