//! # shoal-tests
//!
//! Cross-crate integration, crash and fault tests that run the real binaries
//! (`shoald`, `shoal`) as child processes, each on free ports with a fresh
//! temporary data directory. This library holds the shared harness:
//! [`BrokerProcess`] starts, kills, terminates and restarts a broker and
//! parses its ready line; [`bin_path`] finds a workspace binary next to the
//! test executable (`cargo test --workspace` builds them: `shoal-broker` and
//! `shoal-protocol` have integration tests that use their binaries).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest a broker may take to print its ready line.
pub const BROKER_START_MS_MAX: u64 = 30_000;

/// Path of a workspace binary built for the same profile as this test.
pub fn bin_path(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("SHOAL_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (`cargo build --workspace --bins`), or set SHOAL_BIN_DIR",
        path.display()
    );
    path
}

/// How to start a broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub shards: u32,
    /// Extra command-line flags.
    pub args: Vec<String>,
    /// Extra TOML appended to the generated config file.
    pub config_toml: String,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            shards: 2,
            args: Vec::new(),
            config_toml: String::new(),
        }
    }
}

/// A running `shoald` child process.
pub struct BrokerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub shard_ports: Vec<u16>,
    pub http_port: u16,
    pub data_dir: PathBuf,
    options: BrokerOptions,
    /// Keeps the temporary directory alive for the broker's lifetime.
    _tmp: Option<tempfile::TempDir>,
}

impl BrokerProcess {
    /// Starts a 2-shard broker on free ports with a fresh data directory.
    pub fn start() -> Self {
        Self::start_with(BrokerOptions::default())
    }

    pub fn start_with(options: BrokerOptions) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let mut broker = BrokerProcess {
            child: None,
            addr: "127.0.0.1:0".parse().expect("addr"),
            shard_ports: Vec::new(),
            http_port: 0,
            data_dir,
            options,
            _tmp: Some(tmp),
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let config = self.data_dir.with_extension("toml");
        let toml = format!(
            "[runtime]\nio_memory_bytes = 2097152\npin_cores = false\n{}\n",
            self.options.config_toml
        );
        std::fs::write(&config, toml).expect("write config");
        let mut cmd = Command::new(bin_path("shoald"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--shard-port-base",
                "0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(["--shards", &self.options.shards.to_string()])
            .args(&self.options.args)
            .env(
                "RUST_LOG",
                std::env::var("SHOAL_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn shoald");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the broker never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_millis(BROKER_START_MS_MAX))
            .unwrap_or_else(|_| panic!("shoald did not become ready within {BROKER_START_MS_MAX} ms"));
        self.parse_ready(&line);
        self.child = Some(child);
    }

    fn parse_ready(&mut self, line: &str) {
        assert!(
            line.starts_with("shoald ready"),
            "unexpected first line from shoald: {line}"
        );
        for field in line.split_whitespace() {
            if let Some(v) = field.strip_prefix("listen=") {
                self.addr = v.parse().expect("listen address");
            } else if let Some(v) = field.strip_prefix("shard_ports=") {
                self.shard_ports = v.split(',').map(|p| p.parse().expect("shard port")).collect();
            } else if let Some(v) = field.strip_prefix("http=") {
                self.http_port = v.parse().expect("http port");
            }
        }
    }

    /// `host:port` of the shared port, for clients and the CLI.
    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker running").id()
    }

    fn signal(&mut self, signal: i32) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        Some(child.wait().expect("wait for shoald"))
    }

    /// SIGKILL: the crash case.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
    }

    /// SIGTERM: the graceful case; returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM).expect("broker was running")
    }

    /// Starts the broker again on the same data directory (new ports).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
        self.spawn();
    }

    /// Resident set size of the broker process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// True while the process has not exited.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the `shoal` CLI against `broker` with `args`, feeding `stdin`;
/// returns (exit success, stdout, stderr).
pub fn shoal_cli(broker: &BrokerProcess, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(bin_path("shoal"))
        .arg("--broker")
        .arg(broker.addr_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shoal");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait shoal");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
