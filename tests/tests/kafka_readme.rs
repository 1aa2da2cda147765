//! The README's kcat session works exactly as written: the lines between
//! the `kcat` markers run as one `sh -e` script (with `SHOAL_KAFKA` pointing
//! at a fresh broker's Kafka port, `SHOAL_BROKER` at its native port, and
//! `cargo run --release --bin shoal --` replaced by the built `shoal`) and
//! every command succeeds.
//!
//! kcat is Debian's package (`.ci/run` installs it). Without it the test
//! says SKIPPED and passes, unless `SHOAL_REQUIRE_KCAT=1` (as `.ci/run`
//! sets) makes that a failure.

use std::process::Command;

use shoal_tests::{bin_path, readme_session, BrokerProcess};

fn kcat_installed() -> bool {
    Command::new("kcat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The session exits 0; the plain consumer prints the three records with
/// their partitions and offsets, the group consumer prints them too, and
/// the group then shows in Shoal's describe with its position committed
/// (lag 0) on both partitions; the metadata lists one broker per shard.
#[test]
fn readme_kcat_session_runs_as_written() {
    if !kcat_installed() {
        assert!(
            std::env::var("SHOAL_REQUIRE_KCAT").is_err(),
            "kcat is required (SHOAL_REQUIRE_KCAT) but not installed"
        );
        println!("SKIPPED: kcat is not installed (apt-get install kcat)");
        return;
    }
    let shoal = bin_path("shoal");
    let script = readme_session::block("kcat")
        .replace("cargo run --release --bin shoal --", &shoal.display().to_string());
    assert!(script.contains("kcat -b $K -P") && script.contains("kcat -b $K -G"));
    let broker = BrokerProcess::start();
    let stdout = readme_session::run(
        &script,
        &[
            ("SHOAL_KAFKA", &broker.kafka_bootstrap()),
            ("SHOAL_BROKER", &broker.addr_string()),
        ],
    );
    for line in ["alice=home", "bob=cart", "alice=checkout"] {
        assert_eq!(
            stdout.matches(line).count(),
            2,
            "{line} read twice (plain, group): {stdout}"
        );
    }
    assert!(stdout.contains("alice=checkout partition"), "{stdout}");
    let describe: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("group dashboard"))
        .take_while(|l| !l.starts_with("Metadata"))
        .collect();
    let partitions: Vec<Vec<&str>> = describe
        .iter()
        .filter(|l| l.split_whitespace().next() == Some("clicks"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(partitions.len(), 2, "both partitions committed: {describe:?}");
    for p in &partitions {
        assert_eq!(
            (p[2] == p[3], p[4]),
            (true, "0"),
            "committed = log end, lag 0: {p:?}"
        );
    }
    assert!(
        stdout.contains(" 2 brokers:"),
        "one Kafka broker per shard: {stdout}"
    );
}
