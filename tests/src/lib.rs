//! # shoal-tests
//!
//! Cross-crate integration, crash and fault tests that run the real binaries
//! (`shoald`, `shoal`) as child processes, each on free ports with a fresh
//! temporary data directory. This library holds the shared harness:
//! [`BrokerProcess`] starts, kills, terminates and restarts a broker and
//! parses its ready line; [`bin_path`] finds a workspace binary next to the
//! test executable, building the workspace's binaries on first use (so the
//! README's `cargo test --workspace` works on a fresh clone with nothing
//! built before).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest a broker may take to print its ready line.
pub const BROKER_START_MS_MAX: u64 = 30_000;

/// Path of a workspace binary built for the same profile as this test.
///
/// `cargo test` builds a package's binaries only for that package's own
/// integration tests, so `shoald`, `shoal` and `shoal-bench` may not exist
/// (or may be stale) when this crate's tests run. The first call in a test
/// process therefore runs `cargo build --workspace --bins` for this test's
/// profile, as the `escargot` crate does: a no-op when everything is up to
/// date, and cargo's own lock serialises concurrent test processes. Set
/// `SHOAL_BIN_DIR` to use binaries from elsewhere (nothing is built then).
pub fn bin_path(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("SHOAL_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target profile dir");
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    if let Err(e) = BUILT.get_or_init(|| build_workspace_bins(dir)) {
        panic!("building the workspace binaries for the tests failed: {e}");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found after building the workspace binaries",
        path.display()
    );
    path
}

/// Runs `cargo build --workspace --bins` for the profile whose output
/// directory is `profile_dir` (`target/debug` is the `dev` profile).
fn build_workspace_bins(profile_dir: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "build",
            "--workspace",
            "--bins",
            "--profile",
            &profile,
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// How to start a broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub shards: u32,
    /// Extra command-line flags.
    pub args: Vec<String>,
    /// The test's own config (TOML); [`test_config`] adds the test
    /// defaults for whatever it leaves unset.
    pub config_toml: String,
    /// A file-size limit (`RLIMIT_FSIZE`, bytes) for the broker process:
    /// the kernel then refuses writes past it, as a full disk would.
    pub file_size_limit: Option<u64>,
    /// Fixed ports (kept across restarts) instead of free ones picked by
    /// the kernel at every start.
    pub fixed_ports: Option<FixedPorts>,
}

/// Ports a broker binds at every (re)start.
#[derive(Debug, Clone, Copy)]
pub struct FixedPorts {
    pub shared: u16,
    /// Shard `i` listens on `shard_base + i`.
    pub shard_base: u16,
    pub http: u16,
    /// The shared Kafka port; shard `i` serves Kafka on `kafka_shard_base + i`.
    pub kafka: u16,
    pub kafka_shard_base: u16,
}

impl FixedPorts {
    /// Ports free right now on 127.0.0.1 for a broker with `shards` shards:
    /// a shared port, an HTTP port and a run of `shards` shard ports, and
    /// the same for Kafka.
    pub fn pick(shards: u32) -> FixedPorts {
        loop {
            let singles = [free_port(), free_port(), free_port()];
            let (shard_base, kafka_shard_base) = (free_port(), free_port());
            let runs: Vec<u16> = (0..shards as u16)
                .flat_map(|i| [shard_base.wrapping_add(i), kafka_shard_base.wrapping_add(i)])
                .collect();
            let mut all: Vec<u16> = singles.iter().copied().chain(runs.iter().copied()).collect();
            all.sort_unstable();
            all.dedup();
            let distinct = all.len() == singles.len() + runs.len();
            let runs_free = runs
                .iter()
                .all(|&port| port > 1024 && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
            if distinct && runs_free {
                return FixedPorts {
                    shared: singles[0],
                    shard_base,
                    http: singles[1],
                    kafka: singles[2],
                    kafka_shard_base,
                };
            }
        }
    }
}

/// A port the kernel reports free on 127.0.0.1 (released at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            shards: 2,
            args: Vec::new(),
            config_toml: String::new(),
            file_size_limit: None,
            fixed_ports: None,
        }
    }
}

/// The config file a test broker starts with: the test's own TOML, plus
/// these defaults wherever the test sets nothing:
///
/// - `runtime.io_memory_bytes = 2 MiB` and `runtime.pin_cores = false`:
///   many brokers share two cores;
/// - `storage.preallocate_bytes = 4 MiB` instead of 64 MiB: a test that
///   creates a few hundred partitions would otherwise reserve tens of GB
///   with fallocate and fill a CI machine's disk;
/// - `runtime.wake_interval_ms` from `SHOAL_TEST_WAKE_INTERVAL_MS` when it
///   is set (0 turns the executors' periodic wake off, to repeat the stall
///   that setting guards against; see broker/src/runtime.rs).
pub fn test_config(own: &str) -> String {
    let mut config: toml::Table = own.parse().expect("BrokerOptions::config_toml is valid TOML");
    fn section<'a>(config: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
        config
            .entry(name)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("[{name}] in config_toml is a table"))
    }
    let runtime = section(&mut config, "runtime");
    runtime
        .entry("io_memory_bytes")
        .or_insert(toml::Value::Integer(2 << 20));
    runtime.entry("pin_cores").or_insert(toml::Value::Boolean(false));
    if let Some(ms) = std::env::var("SHOAL_TEST_WAKE_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    {
        runtime.insert("wake_interval_ms".into(), toml::Value::Integer(ms));
    }
    section(&mut config, "storage")
        .entry("preallocate_bytes")
        .or_insert(toml::Value::Integer(4 << 20));
    toml::to_string(&config).expect("a TOML table serializes")
}

/// A running `shoald` child process.
pub struct BrokerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub shard_ports: Vec<u16>,
    pub http_port: u16,
    /// The shared Kafka port and each shard's own Kafka port.
    pub kafka_port: u16,
    pub kafka_shard_ports: Vec<u16>,
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
            kafka_port: 0,
            kafka_shard_ports: Vec::new(),
            data_dir,
            options,
            _tmp: Some(tmp),
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let rx = self.spawn_child();
        self.await_ready_line(rx);
    }

    /// Starts `shoald` and returns the channel its first stdout line (the
    /// ready line) arrives on, without waiting for it.
    fn spawn_child(&mut self) -> std::sync::mpsc::Receiver<String> {
        let config = self.data_dir.with_extension("toml");
        let toml = test_config(&self.options.config_toml);
        std::fs::write(&config, toml).expect("write config");
        let (listen, shard_base, http, kafka, kafka_base) = match self.options.fixed_ports {
            Some(p) => (
                format!("127.0.0.1:{}", p.shared),
                p.shard_base.to_string(),
                format!("127.0.0.1:{}", p.http),
                format!("127.0.0.1:{}", p.kafka),
                p.kafka_shard_base.to_string(),
            ),
            None => (
                "127.0.0.1:0".into(),
                "0".into(),
                "127.0.0.1:0".into(),
                "127.0.0.1:0".into(),
                "0".into(),
            ),
        };
        let mut cmd = Command::new(bin_path("shoald"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--listen",
                &listen,
                "--shard-port-base",
                &shard_base,
                "--http-listen",
                &http,
                "--kafka-listen",
                &kafka,
                "--kafka-shard-port-base",
                &kafka_base,
            ])
            .args(["--shards", &self.options.shards.to_string()])
            .args(&self.options.args)
            .env(
                "RUST_LOG",
                std::env::var("SHOAL_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(limit) = self.options.file_size_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the forked child before exec and
            // only calls setrlimit(2), which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let mut rlimit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_FSIZE, &mut rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    rlimit.rlim_cur = limit.min(rlimit.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
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
        self.child = Some(child);
        rx
    }

    /// Waits for the ready line and reads the ports from it.
    fn await_ready_line(&mut self, rx: std::sync::mpsc::Receiver<String>) {
        let line = match rx.recv_timeout(Duration::from_millis(BROKER_START_MS_MAX)) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let mut child = self.child.take().expect("started");
                let status = child.wait().expect("wait for shoald");
                panic!("shoald exited before it was ready ({status}); its stderr is above");
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                }
                panic!("shoald did not become ready within {BROKER_START_MS_MAX} ms");
            }
        };
        self.parse_ready(&line);
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
            } else if let Some(v) = field.strip_prefix("kafka=") {
                self.kafka_port = v.parse().expect("kafka port");
            } else if let Some(v) = field.strip_prefix("kafka_shard_ports=") {
                self.kafka_shard_ports = v
                    .split(',')
                    .map(|p| p.parse().expect("kafka shard port"))
                    .collect();
            }
        }
    }

    /// `host:port` of the shared port, for clients and the CLI.
    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    /// `host:port` of the shared Kafka port (Kafka clients' bootstrap).
    pub fn kafka_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
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

    /// Sets the file-size limit the next (re)start runs under.
    pub fn set_file_size_limit(&mut self, limit: Option<u64>) {
        self.options.file_size_limit = limit;
    }

    /// Starts the broker again on the same data directory (new ports).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
        self.spawn();
    }

    /// SIGKILLs the broker and starts it again on the same data directory
    /// and the same fixed ports, returning at once, without waiting for its
    /// ready line (as a supervisor that polls `/readyz` would). Call
    /// [`Self::wait_started`] before using ports it reports.
    pub fn restart_without_waiting(&mut self) -> std::sync::mpsc::Receiver<String> {
        assert!(
            self.options.fixed_ports.is_some(),
            "a restart without waiting needs fixed ports"
        );
        if self.child.is_some() {
            self.kill();
        }
        self.spawn_child()
    }

    /// Waits for the ready line of a start begun by
    /// [`Self::restart_without_waiting`].
    pub fn wait_started(&mut self, rx: std::sync::mpsc::Receiver<String>) {
        self.await_ready_line(rx);
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

/// Runs `shoal-bench` with `args` and returns its stdout (also printed);
/// panics with its stderr and stdout unless it exits 0.
pub fn run_shoal_bench<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(bin_path("shoal-bench"))
        .args(args)
        .output()
        .expect("run shoal-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(
        out.status.success(),
        "shoal-bench exited {:?}: {}\n{stdout}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `shoal-bench` with `args` on the tests' `shoald` (`--broker-bin`),
/// writing its reports under `out_dir` (`--out`); returns its stdout.
pub fn run_shoal_bench_to(out_dir: &Path, args: &[&str]) -> String {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.extend([
        "--broker-bin".into(),
        bin_path("shoald").into(),
        "--out".into(),
        out_dir.into(),
    ]);
    run_shoal_bench(all)
}

/// The `report.json` of run `run` (a subdirectory) under `out_dir`.
pub fn bench_report(out_dir: &Path, run: &str) -> serde_json::Value {
    let path = out_dir.join(run).join("report.json");
    serde_json::from_slice(&std::fs::read(&path).expect("report.json")).expect("report is JSON")
}

/// Every quarantine entry of `topic` that `filter` selects, page by page in
/// entry order (a record quarantined twice appears twice), as the node
/// `client` talks to answers; panics after 1,000 pages.
pub fn quarantine_entries(
    client: &shoal_protocol::client::Client,
    topic: &str,
    filter: shoal_protocol::messages::dlq::QuarantineFilter,
) -> Vec<shoal_protocol::messages::dlq::QuarantineEntry> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..1_000 {
        let page = client
            .dlq_browse(&shoal_protocol::messages::dlq::QuarantineBrowseRequest {
                topic: topic.to_string(),
                filter: filter.clone(),
                limit: 500,
                cursor,
            })
            .expect("browse the quarantine");
        let more = !page.entries.is_empty();
        out.extend(page.entries);
        match page.next_cursor {
            Some(next) if more => cursor = Some(next),
            _ => return out,
        }
    }
    panic!("the quarantine of {topic} did not end after 1,000 pages");
}

/// Asserts a bench report's measured phase acknowledged records and that
/// its delivery check found every one of them consumed, none lost.
pub fn assert_bench_delivered(report: &serde_json::Value) {
    let delivery = &report["measured"]["delivery"];
    assert_eq!(delivery["ok"], true, "{delivery}");
    assert_eq!(delivery["lost"], 0, "{delivery}");
    assert!(
        delivery["acked"].as_u64().is_some_and(|n| n > 0),
        "nothing acknowledged: {delivery}"
    );
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

/// Milliseconds since the Unix epoch on the wall clock (the clock record
/// timestamps and append times use).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Waits until the wall clock is past `ms` and returns the time then: a
/// timestamp strictly after every record stamped up to `ms`. Panics if the
/// clock has not moved within a second.
pub fn wall_ms_after(ms: i64) -> i64 {
    let mut now = wall_ms();
    let passed = wait_until(Duration::from_secs(1), || {
        now = wall_ms();
        now > ms
    });
    assert!(passed, "the wall clock did not pass {ms} within a second");
    now
}

/// One scrape of a broker's Prometheus `/metrics`, read over a plain socket
/// (so the harness needs no HTTP client): every sample as its family name,
/// its label text and its value.
#[derive(Debug, Clone)]
pub struct Metrics {
    samples: Vec<(String, String, f64)>,
}

impl Metrics {
    /// Longest a scrape may take.
    pub const SCRAPE_MS_MAX: u64 = 10_000;

    /// `GET /metrics` on `127.0.0.1:http_port`.
    pub fn scrape(http_port: u16) -> std::io::Result<Metrics> {
        use std::io::{Read, Write};
        let timeout = Duration::from_millis(Self::SCRAPE_MS_MAX);
        let addr = SocketAddr::from(([127, 0, 0, 1], http_port));
        let mut conn = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: shoal\r\nconnection: close\r\n\r\n")?;
        // Read the head, then exactly content-length bytes of body.
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 16 << 10];
        let (head_end, body_len) = loop {
            let text = String::from_utf8_lossy(&bytes);
            if let Some(at) = text.find("\r\n\r\n") {
                let head = text[..at].to_ascii_lowercase();
                if !head.starts_with("http/1.1 200") {
                    return Err(std::io::Error::other(format!("/metrics answered {head}")));
                }
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| std::io::Error::other("/metrics reply without content-length"))?;
                break (at + 4, len);
            }
            match conn.read(&mut chunk)? {
                0 => return Err(std::io::Error::other("closed before the reply head ended")),
                n => bytes.extend_from_slice(&chunk[..n]),
            }
        };
        while bytes.len() < head_end + body_len {
            match conn.read(&mut chunk)? {
                0 => return Err(std::io::Error::other("closed before the reply body ended")),
                n => bytes.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&bytes[head_end..head_end + body_len]);
        Ok(Metrics::parse(&body))
    }

    /// Parses the text exposition format (comments skipped).
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                Some((name.to_string(), labels.to_string(), value.parse().ok()?))
            })
            .collect();
        Metrics { samples }
    }

    /// Every `(labels, value)` sample of `name`.
    pub fn values(&self, name: &str) -> Vec<(&str, f64)> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, labels, v)| (labels.as_str(), *v))
            .collect()
    }

    /// The sum of `name` over all its samples (0 when there are none).
    pub fn sum(&self, name: &str) -> f64 {
        self.values(name).iter().map(|(_, v)| v).sum()
    }
}

pub mod readme_session;

/// Shared by the storage crash test (`tests/log_crash.rs`) and its child
/// process (`log_crash_child`): the batches the child appends, how it
/// reports acknowledgements, and how the parent checks them.
pub mod log_crash {
    use bytes::BytesMut;
    use shoal_protocol::batch::{self, BatchBuilder, BatchLimits, BatchRecords, NewRecord};
    use shoal_storage::{FlushPolicy, LogConfig};

    /// Records in every batch the child appends.
    pub const RECORDS_PER_BATCH: usize = 4;
    /// Concurrent appenders in the child, so group commit is exercised.
    pub const APPENDERS: usize = 6;
    /// Locked memory for the executors of the child and the parent.
    pub const IO_MEMORY_BYTES: usize = 1 << 20;

    /// The log settings both sides use: flush `always`, small segments so
    /// kills also land around rolls.
    pub fn config() -> LogConfig {
        LogConfig {
            flush: FlushPolicy::Always,
            segment_bytes_max: 512 << 10,
            preallocate_bytes: 512 << 10,
            ..LogConfig::default()
        }
    }

    /// The values of the records of the batch with `tag`.
    pub fn values(tag: u64) -> Vec<Vec<u8>> {
        (0..RECORDS_PER_BATCH as u64)
            .map(|r| {
                let len = 100 + ((tag * 7 + r * 13) % 1000) as usize;
                let mut v = Vec::with_capacity(len);
                let seed = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ r;
                v.extend((0..len).map(|i| (seed >> (i % 8 * 8)) as u8 ^ i as u8));
                v
            })
            .collect()
    }

    /// The batch the child appends for `tag`.
    pub fn batch(tag: u64) -> BytesMut {
        let mut b = BatchBuilder::new();
        for (r, value) in values(tag).into_iter().enumerate() {
            b.push(NewRecord {
                timestamp_ms: tag as i64,
                key: Some(format!("{tag}-{r}").into_bytes()),
                value: Some(value),
                ..Default::default()
            });
        }
        BytesMut::from(&b.finish().expect("encode")[..])
    }

    /// One acknowledged append as the child prints it: `ack <base> <last> <tag>`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Ack {
        pub base: u64,
        pub last: u64,
        pub tag: u64,
    }

    impl Ack {
        pub fn line(&self) -> String {
            format!("ack {} {} {}", self.base, self.last, self.tag)
        }

        pub fn parse(line: &str) -> Option<Ack> {
            let mut f = line.strip_prefix("ack ")?.split(' ');
            let ack = Ack {
                base: f.next()?.parse().ok()?,
                last: f.next()?.parse().ok()?,
                tag: f.next()?.parse().ok()?,
            };
            f.next().is_none().then_some(ack)
        }
    }

    /// Checks that `bytes` is exactly the batch `ack` describes: valid,
    /// at its offsets, with the records the child wrote. Returns the
    /// number of records checked.
    pub fn check(ack: &Ack, bytes: &[u8]) -> Result<usize, String> {
        let limits = BatchLimits::default();
        let header = batch::validate(bytes, &limits).map_err(|e| format!("{ack:?}: {e}"))?;
        if header.base_offset != ack.base || header.last_offset() != ack.last {
            return Err(format!(
                "{ack:?}: stored at {}..={}",
                header.base_offset,
                header.last_offset()
            ));
        }
        let records = BatchRecords::open(bytes, &header, &limits).map_err(|e| e.to_string())?;
        let archived = records.records().map_err(|e| e.to_string())?;
        let expected = values(ack.tag);
        if archived.len() != expected.len() {
            return Err(format!("{ack:?}: {} records", archived.len()));
        }
        for (r, (got, want)) in archived.iter().zip(&expected).enumerate() {
            let value = got.value.as_ref().map(|v| v.as_slice());
            if value != Some(want.as_slice()) {
                return Err(format!("{ack:?}: record {r} differs"));
            }
        }
        Ok(archived.len())
    }
}
