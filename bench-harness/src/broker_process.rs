//! The embedded broker: a `shoald` child process the harness starts, kills and restarts.
//!
//! The harness picks free loopback ports itself (the shared port and a run
//! of consecutive shard ports) so that a restarted broker comes back on the
//! same addresses and clients reconnect without new metadata. `shoald`
//! prints `shoald ready listen=...` on stdout once it serves; the harness
//! waits for that line (at most [`READY_WAIT_MAX`]). The broker's stderr
//! goes to `broker.log` in the output directory. The restart scenario uses
//! SIGKILL (nothing flushed on the way out); the end of a run sends SIGTERM
//! and waits for a clean exit (at most [`STOP_WAIT_MAX`], then SIGKILL).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::driver::BrokerControl;
use crate::error::BenchError;

/// Longest wait for `shoald ready`.
pub const READY_WAIT_MAX: Duration = Duration::from_secs(60);
/// Longest wait for a clean exit after SIGTERM.
pub const STOP_WAIT_MAX: Duration = Duration::from_secs(20);
/// Attempts at finding a run of free shard ports.
const PORT_SEARCH_MAX: u32 = 64;

/// How to run `shoald`.
#[derive(Clone, Debug)]
pub struct BrokerSpec {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub shards: u32,
    pub log_path: PathBuf,
    pub extra_args: Vec<String>,
}

/// A running (or deliberately stopped) `shoald`.
pub struct BrokerProcess {
    spec: BrokerSpec,
    listen_port: u16,
    shard_port_base: u16,
    /// The HTTP port the running broker reported ready on.
    http_port: Option<u16>,
    child: Option<Child>,
}

impl BrokerProcess {
    /// Picks ports and starts the broker.
    pub fn start(spec: BrokerSpec) -> Result<Self, BenchError> {
        let (listen_port, shard_port_base) = free_ports(spec.shards)?;
        let mut broker = Self {
            spec,
            listen_port,
            shard_port_base,
            http_port: None,
            child: None,
        };
        broker.launch()?;
        Ok(broker)
    }

    /// The shared native-protocol address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.listen_port)
    }

    fn launch(&mut self) -> Result<(), BenchError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.spec.log_path)
            .map_err(|e| BenchError::io(format!("open {}", self.spec.log_path.display()), e))?;
        let mut child = Command::new(&self.spec.binary)
            .arg("--data-dir")
            .arg(&self.spec.data_dir)
            .arg("--listen")
            .arg(self.address())
            .arg("--shard-port-base")
            .arg(self.shard_port_base.to_string())
            .arg("--http-listen")
            .arg("127.0.0.1:0")
            .arg("--kafka-listen")
            .arg("127.0.0.1:0")
            .arg("--kafka-shard-port-base")
            .arg("0")
            .arg("--shards")
            .arg(self.spec.shards.to_string())
            .args(&self.spec.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| BenchError::io(format!("start {}", self.spec.binary.display()), e))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        self.child = Some(child);
        let ready = wait_ready(stdout).inspect_err(|_| self.kill_now())?;
        self.http_port = ready
            .split_whitespace()
            .find_map(|field| field.strip_prefix("http="))
            .and_then(|port| port.parse().ok());
        Ok(())
    }

    /// The running broker's HTTP address, from its ready line.
    pub fn http_address(&self) -> Option<String> {
        self.child.as_ref()?;
        self.http_port.map(|port| format!("127.0.0.1:{port}"))
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The child may already have exited; either way it is reaped below.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; SIGKILL after [`STOP_WAIT_MAX`].
    pub fn stop(&mut self) -> Result<(), BenchError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .map_err(|e| BenchError::io("send SIGTERM to shoald", e))?;
        let start = Instant::now();
        while status.success() && start.elapsed() < STOP_WAIT_MAX {
            if let Some(exit) = child
                .try_wait()
                .map_err(|e| BenchError::io("wait for shoald", e))?
            {
                return match exit.success() {
                    true => Ok(()),
                    false => Err(BenchError::Driver(format!(
                        "shoald exited with {exit} after SIGTERM"
                    ))),
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(BenchError::Driver(
            "shoald did not exit after SIGTERM; killed".into(),
        ))
    }
}

impl BrokerControl for BrokerProcess {
    fn kill(&mut self) -> Result<(), BenchError> {
        self.kill_now();
        Ok(())
    }

    fn start(&mut self) -> Result<(), BenchError> {
        self.launch()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// `GET path` over plain HTTP/1.1 on loopback, as JSON (None on any
/// failure: the caller falls back).
fn http_get_json(address: &str, path: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// Reads stdout until the ready line (returned), on a helper thread so the
/// wait is bounded.
fn wait_ready(stdout: std::process::ChildStdout) -> Result<String, BenchError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut ready_sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !ready_sent && line.starts_with("shoald ready") {
                ready_sent = tx.send(line).is_ok();
            }
        }
        // Keep draining stdout until the broker exits so it never blocks on a full pipe.
    });
    rx.recv_timeout(READY_WAIT_MAX)
        .map_err(|_| BenchError::Driver("shoald did not report ready (see broker.log)".into()))
}

/// A free port for the shared listener and a base with `shards` free ports after it.
fn free_ports(shards: u32) -> Result<(u16, u16), BenchError> {
    let listen = TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::io("find a free port", e))?;
    let listen_port = listen
        .local_addr()
        .map_err(|e| BenchError::io("find a free port", e))?
        .port();
    for _ in 0..PORT_SEARCH_MAX {
        let probe = TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::io("find free ports", e))?;
        let base = probe
            .local_addr()
            .map_err(|e| BenchError::io("find free ports", e))?
            .port();
        drop(probe);
        let Some(end) = base.checked_add(shards as u16) else {
            continue;
        };
        let run: Result<Vec<TcpListener>, _> =
            (base..end).map(|p| TcpListener::bind(("127.0.0.1", p))).collect();
        if run.is_ok() && !(base..end).contains(&listen_port) {
            return Ok((listen_port, base));
        }
    }
    Err(BenchError::Driver(
        "no run of free loopback ports for the shard ports".into(),
    ))
}

/// The `shoald` to run: `--broker-bin`, else next to this executable, else
/// `target/release/shoald` under the current directory.
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, BenchError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("shoald")));
    let candidates = beside.into_iter().chain([PathBuf::from("target/release/shoald")]);
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(BenchError::Driver(
        "no shoald binary found: build it (cargo build --release --bin shoald) or pass --broker-bin".into(),
    ))
}

/// A local cluster (`--cluster N`): `nodes` `shoald` processes linked as
/// one raft cluster on loopback. Node `i` (1-based) gets `--node-id i`,
/// the cluster id `shoal-bench`, a run of free node ports and every other
/// node as a peer; its data in `<data_dir>/node-<i>` and its stderr in
/// `broker-node<i>.log` beside the spec's log; unpinned (`--no-pin`: the
/// nodes share the host's cores). Each node is started like the single
/// embedded broker and waited for.
///
/// The restart scenario kills the node that leads the most user
/// partitions (asked of every node's `GET /cluster`), and starts it again
/// on the same ports and data.
pub struct ClusterProcess {
    nodes: Vec<BrokerProcess>,
    /// The node the restart scenario killed (index into `nodes`).
    killed: Option<usize>,
}

impl ClusterProcess {
    pub fn start(spec: &BrokerSpec, nodes: u32) -> Result<Self, BenchError> {
        let node_ports = (0..nodes)
            .map(|_| free_ports(spec.shards).map(|(_, base)| base))
            .collect::<Result<Vec<u16>, BenchError>>()?;
        let mut started = Vec::with_capacity(nodes as usize);
        for (i, port) in node_ports.iter().enumerate() {
            let id = i + 1;
            let mut args = spec.extra_args.clone();
            // Several nodes on one host: each would pin its shard 0 to core
            // 0 (three nodes measured 0.35 of a single node that way).
            if !args.iter().any(|a| a == "--no-pin") {
                args.push("--no-pin".into());
            }
            args.extend([
                "--node-id".to_string(),
                id.to_string(),
                "--cluster-id".into(),
                "shoal-bench".into(),
                "--node-listen".into(),
                format!("127.0.0.1:{port}"),
            ]);
            for (j, peer) in node_ports.iter().enumerate().filter(|&(j, _)| j != i) {
                args.push("--peer".into());
                args.push(format!("{}@127.0.0.1:{peer}", j + 1));
            }
            let log_path = spec.log_path.with_file_name(format!("broker-node{id}.log"));
            started.push(BrokerProcess::start(BrokerSpec {
                binary: spec.binary.clone(),
                data_dir: spec.data_dir.join(format!("node-{id}")),
                shards: spec.shards,
                log_path,
                extra_args: args,
            })?);
        }
        Ok(Self {
            nodes: started,
            killed: None,
        })
    }

    /// The node leading the most partitions of user topics, by what each
    /// node's `GET /cluster` says it leads (the first node when none answers).
    fn busiest_leader(&self) -> usize {
        let leads = |node: &BrokerProcess| -> usize {
            let status = node.http_address().and_then(|a| http_get_json(&a, "/cluster"));
            let Some(partitions) = status.as_ref().and_then(|s| s["partitions"].as_array()) else {
                return 0;
            };
            partitions
                .iter()
                .filter(|p| {
                    p["role"] == "leader" && p["topic"].as_str().is_some_and(|t| !t.starts_with("__"))
                })
                .count()
        };
        let counts: Vec<usize> = self.nodes.iter().map(leads).collect();
        (0..counts.len())
            .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))
            .unwrap_or(0)
    }

    /// Every node's shared native-protocol address, node 1 first.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(BrokerProcess::address).collect()
    }

    /// Stops every node (SIGTERM, then a wait); the first failure is returned.
    pub fn stop(&mut self) -> Result<(), BenchError> {
        let mut first = Ok(());
        for node in &mut self.nodes {
            if let Err(e) = node.stop() {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

impl BrokerControl for ClusterProcess {
    /// SIGKILLs the node leading the most user partitions.
    fn kill(&mut self) -> Result<(), BenchError> {
        let victim = self.busiest_leader();
        eprintln!(
            "restart: killing node {} (it leads the most partitions)",
            victim + 1
        );
        self.nodes[victim].kill_now();
        self.killed = Some(victim);
        Ok(())
    }

    fn start(&mut self) -> Result<(), BenchError> {
        match self.killed.take() {
            Some(victim) => self.nodes[victim].launch(),
            None => Ok(()),
        }
    }

    /// None: the broker's CPU is not one process's on a cluster.
    fn pid(&self) -> Option<u32> {
        None
    }
}
