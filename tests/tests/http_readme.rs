//! The README's HTTP session works exactly as written: the lines between
//! the `http` markers run as one `sh -e` script (with `SHOAL_HTTP` pointing
//! at a fresh broker) and every curl succeeds (`-f`: an HTTP error fails).

use shoal_tests::{readme_session, BrokerProcess};

/// The session exits 0, publishes two records, delivers them to the group
/// and commits its position, and the replay reads them back.
#[test]
fn readme_http_session_runs_as_written() {
    let script = readme_session::block("http");
    assert!(script.contains("/messages") && script.contains("/poll?") && script.contains("/offsets/commit"));
    assert!(
        script.contains("/replay"),
        "the four core endpoints are in the session"
    );
    let broker = BrokerProcess::start();
    let http = format!("127.0.0.1:{}", broker.http_port);
    let stdout = readme_session::run(&script, &[("SHOAL_HTTP", &http)]);
    assert!(stdout.contains(r#""durability":"fsynced""#), "{stdout}");
    assert!(stdout.contains(r#""delivery_count":1"#), "{stdout}");
    assert_eq!(
        stdout.matches(r#""value":"{\"total\": 12}""#).count(),
        2,
        "poll and replay: {stdout}"
    );
    assert!(stdout.contains(r#""committed_offset":2"#), "{stdout}");
}
