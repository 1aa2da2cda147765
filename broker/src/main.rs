//! `shoald`: the Shoal broker.
//!
//! `cargo run --release --bin shoald` starts a single node with the embedded
//! defaults; `--config FILE` reads a TOML file (see `shoald --print-config`)
//! and the flags below override it. On SIGTERM or SIGINT the broker stops
//! accepting, finishes the requests in flight, fsyncs every partition and
//! exits 0. Once serving it prints one line to stdout:
//! `shoald ready listen=<ip:port> shard_ports=<p0,p1,..> http=<port>
//! [kafka=<port> kafka_shard_ports=<p0,p1,..>] data_dir=<path>` (the Kafka
//! fields only while the Kafka listener is on).
//!
//! `shoald --check-config FILE` parses and validates FILE with the same
//! rules as a start (unknown keys, units, cross-field limits) and exits 0
//! (`FILE: ok`) or 1 with the problem and the key at fault, without
//! binding a port or touching the data directory: for CI and for a
//! systemd `ExecStartPre=`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shoal_config::{Config, ConfigError, FlushMode};

/// The Shoal message broker.
#[derive(Debug, Parser)]
#[command(name = "shoald", version, about)]
struct Args {
    /// TOML configuration file; flags override its values.
    #[arg(long, short = 'c', env = "SHOAL_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: ./shoal-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Native protocol address, shared by every shard [default: 127.0.0.1:9400].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// First shard port; shard i listens on base + i; 0 = pick free ports [default: 9401].
    #[arg(long)]
    shard_port_base: Option<u16>,
    /// HTTP API address [default: 127.0.0.1:9480].
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Kafka protocol address, shared by every shard [default: 127.0.0.1:9092].
    #[arg(long)]
    kafka_listen: Option<SocketAddr>,
    /// First Kafka shard port; shard i serves Kafka on base + i and is
    /// advertised as Kafka broker i there; 0 = pick free ports [default: 9093].
    #[arg(long)]
    kafka_shard_port_base: Option<u16>,
    /// Do not serve the Kafka protocol.
    #[arg(long)]
    no_kafka: bool,
    /// Number of shards; 0 = one per available core [default: 0].
    #[arg(long)]
    shards: Option<u32>,
    /// Default flush policy for topics: always | interval | never [default: always].
    #[arg(long, value_parser = parse_flush)]
    flush: Option<FlushMode>,
    /// Do not pin shards to cores.
    #[arg(long)]
    no_pin: bool,
    /// Cluster: this node's id (> 0); see docs/replication.md.
    #[arg(long)]
    node_id: Option<u32>,
    /// Cluster: the id every node of the cluster shares.
    #[arg(long)]
    cluster_id: Option<String>,
    /// Cluster: a peer as `id@host:port` (its --node-listen); repeat per peer.
    #[arg(long = "peer", value_name = "ID@HOST:PORT")]
    peers: Vec<String>,
    /// Cluster: where this node listens for peers (shard i on port + i).
    #[arg(long)]
    node_listen: Option<SocketAddr>,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `shoal_broker=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Validate this configuration file (with any flags given) and exit:
    /// 0 when it is valid, 1 with the problem named. Takes the place of
    /// --config.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

/// A `--flush` value that is not a policy.
#[derive(Debug, thiserror::Error)]
#[error("unknown flush policy {0:?} (always | interval | never)")]
struct BadFlush(String);

fn parse_flush(s: &str) -> Result<FlushMode, BadFlush> {
    match s {
        "always" => Ok(FlushMode::Always),
        "interval" => Ok(FlushMode::Interval),
        "never" => Ok(FlushMode::Never),
        other => Err(BadFlush(other.to_string())),
    }
}

fn effective_config(args: &Args) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let s = &mut config.server;
    if let Some(v) = &args.data_dir {
        s.data_dir = v.clone();
    }
    if let Some(v) = args.listen {
        s.listen = v;
    }
    if let Some(v) = args.shard_port_base {
        s.shard_port_base = v;
    }
    if let Some(v) = args.http_listen {
        s.http_listen = v;
    }
    if let Some(v) = args.shards {
        s.shards = v;
    }
    if let Some(v) = args.kafka_listen {
        config.kafka.listen = v;
    }
    if let Some(v) = args.kafka_shard_port_base {
        config.kafka.shard_port_base = v;
    }
    if args.no_kafka {
        config.kafka.enabled = false;
    }
    if let Some(v) = args.flush {
        config.storage.flush = v;
    }
    if args.no_pin {
        config.runtime.pin_cores = false;
    }
    cluster_flags(args, &mut config.cluster);
    config.validate()?;
    Ok(config)
}

/// The cluster flags override the `[cluster]` section (peers replace it).
fn cluster_flags(args: &Args, cluster: &mut shoal_config::ClusterConfig) {
    if let Some(v) = args.node_id {
        cluster.node_id = v;
    }
    if let Some(v) = &args.cluster_id {
        cluster.cluster_id = v.clone();
    }
    if !args.peers.is_empty() {
        cluster.peers = args.peers.clone();
    }
    if let Some(v) = args.node_listen {
        cluster.node_listen = Some(v);
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(path) = args.check_config.take() {
        args.config = Some(path.clone());
        return match effective_config(&args) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shoald: {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let config = match effective_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoald: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", config.to_toml_string());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .with_writer(std::io::stderr)
        .init();
    // A write past the process's file-size limit (`ulimit -f`) raises
    // SIGXFSZ, whose default action kills the broker. Ignored, the write
    // fails with EFBIG instead and fences only that partition's log, the
    // same as a full disk.
    // SAFETY: installs SIG_IGN for one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shoald: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let data_dir = config.server.data_dir.clone();
    let broker = match shoal_broker::server::start(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("shoald: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ports = &broker.ports;
    let list = |ports: &[u16]| ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    let kafka = ports.kafka.as_ref().map_or(String::new(), |k| {
        format!(" kafka={} kafka_shard_ports={}", k.shared, list(&k.shard_ports))
    });
    println!(
        "shoald ready listen={}:{} shard_ports={} http={}{kafka} data_dir={}",
        ports.host,
        ports.shared,
        list(&ports.shard_ports),
        ports.http,
        data_dir.display()
    );
    tracing::info!(listen = ports.shared, "shoald serving");
    let stop = broker.stopper();
    let reload_tls = broker.tls_reloader();
    let mut signals = signals;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == signal_hook::consts::SIGHUP {
                // New connections use the re-read certificates; open ones
                // keep their sessions.
                match reload_tls() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the old certificates")
                    }
                }
                continue;
            }
            tracing::info!(signal, "stopping");
            stop();
            break;
        }
    });
    broker.join();
    tracing::info!("shoald stopped");
    ExitCode::SUCCESS
}
