//! `shoald`'s command line: the printed defaults are the embedded defaults,
//! and a bad flag or config is refused with exit code 2. (Also makes
//! `cargo test --workspace` build the `shoald` binary that the end-to-end
//! tests in the `tests` crate run.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn shoald(data_dir: &std::path::Path, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoald"));
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--shard-port-base", "0"])
        .args(["--http-listen", "127.0.0.1:0", "--shards", "1", "--no-pin"])
        .args(["--kafka-listen", "127.0.0.1:0", "--kafka-shard-port-base", "0"]);
    cmd
}

/// A second broker on the same port, or on the same data directory, is
/// refused instead of silently sharing (SO_REUSEPORT would let it).
#[test]
fn second_broker_on_same_port_or_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = shoald(&dir.path().join("a"), port)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("shoald ready"), "{line}");
    let same_port = shoald(&dir.path().join("b"), port).output().unwrap();
    let same_dir = shoald(&dir.path().join("a"), free_port()).output().unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    for out in [same_port, same_dir] {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("in use by another process"), "{err}");
    }
}
