//! `shoald`'s command line: the printed defaults are the embedded defaults,
//! and a bad flag or config is refused with exit code 2. (Also makes
//! `cargo test --workspace` build the `shoald` binary that the end-to-end
//! tests in the `tests` crate run.)

use std::process::Command;

/// `--print-config` prints TOML that parses back to the defaults.
#[test]
fn print_config_is_the_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_shoald"))
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed = shoal_broker::config::Config::from_toml_str(&text).unwrap();
    assert_eq!(parsed, shoal_broker::config::Config::default());
    assert!(text.contains("listen = \"127.0.0.1:9400\""), "{text}");
}

/// An invalid setting stops the broker before it binds anything.
#[test]
fn bad_flag_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_shoald"))
        .args(["--flush", "sometimes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
