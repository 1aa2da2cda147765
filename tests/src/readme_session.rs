//! The README's sessions, run as written by the README tests
//! (`readme_session`, `http_readme`, `kafka_readme`, `delivery_runbook`):
//! [`block`] takes the lines between a pair of `<!-- NAME:begin -->` and
//! `<!-- NAME:end -->` markers, and [`run`] runs them as one `sh -e`
//! script, so a README command that fails fails its test.

use std::process::Command;

/// The README's lines between the `name` markers, each trimmed (the
/// README indents them as a code block) and ended by a newline.
pub fn block(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("read README.md");
    let (begin, end) = (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->"));
    let block = readme
        .split(begin.as_str())
        .nth(1)
        .and_then(|rest| rest.split(end.as_str()).next())
        .unwrap_or_else(|| panic!("README has a {name} block"));
    block.lines().map(|l| format!("{}\n", l.trim())).collect()
}

/// Runs `script` with `sh -e` in a fresh temporary directory, with `env`
/// added to the environment. Asserts that it exits 0 (the message shows
/// the script, its stdout and its stderr) and returns its stdout.
pub fn run(script: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir.path())
        .envs(env.iter().copied())
        .output()
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the session failed ({}):\n{script}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
