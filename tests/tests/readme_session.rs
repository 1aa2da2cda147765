//! The README's quick-start session works exactly as written: every command
//! between the `quickstart` markers is run (with `cargo run --release --bin
//! shoal --` replaced by the built `shoal` binary, and the broker address
//! given through `SHOAL_BROKER`) against a fresh broker and must succeed.

use shoal_tests::{bin_path, readme_session, BrokerProcess};

/// Every quick-start command exits 0 and the consume commands print the
/// three produced records.
#[test]
fn readme_quickstart_runs_as_written() {
    let block = readme_session::block("quickstart");
    let commands: Vec<&str> = block.lines().filter(|l| !l.is_empty()).collect();
    assert!(commands.len() >= 5, "the quickstart block lost its commands");
    let broker = BrokerProcess::start();
    let shoal = bin_path("shoal");
    let mut outputs = Vec::new();
    for cmd in commands {
        assert!(
            cmd.contains("cargo run --release --bin shoal -- "),
            "unexpected README command: {cmd}"
        );
        let runnable = cmd.replace("cargo run --release --bin shoal --", &shoal.display().to_string());
        outputs.push(readme_session::run(
            &runnable,
            &[("SHOAL_BROKER", &broker.addr_string())],
        ));
    }
    let consumed = &outputs[outputs.len() - 1];
    assert_eq!(
        consumed.lines().count(),
        3,
        "the JSON consume prints one line per record: {consumed}"
    );
    for name in ["alice", "bob"] {
        assert!(consumed.contains(name), "{name} missing from {consumed}");
    }
}
