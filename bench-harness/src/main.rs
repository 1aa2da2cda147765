//! `shoal-bench`: load-test a Shoal broker and report figures with their baselines.
//!
//! `shoal-bench --preset quick` starts `shoald` on free loopback ports with a
//! fresh temporary data directory, measures the physical baselines, offers
//! the preset's load, prints the summary table and writes `report.json`,
//! `summary.txt`, SVG charts and `index.html` to `--out`. Every workload field
//! can be set by a flag (`--help` lists them all).
//!
//! `--cluster N` runs the workload twice in one invocation: on a single
//! embedded node, then on a local cluster of N nodes with replication
//! factor N and `acks = quorum` (unless given), each node with the same
//! shards (`--broker-shards`, default 1), and prints the replicated
//! figures next to the single-node ones with their ratios
//! (`comparison.txt`).
//!
//! `--compare-tls` also runs the workload twice in one invocation, on two
//! embedded brokers with the same settings and fresh data directories:
//! plaintext, then TLS 1.3 on the native ports with a CA and broker
//! certificate made for the run (`<out>/certs/`, see [`broker_tls`]); the
//! clients of the second run trust that CA. Both reports (`plaintext/`,
//! `tls/`) and the TLS figures' ratios to the plaintext ones
//! (`comparison.txt`) are written.
//!
//! [`broker_tls`]: shoal_bench::broker_tls

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Parser;
use shoal_bench::broker_process::{find_binary, BrokerSpec};
use shoal_bench::broker_tls::BrokerTls;
use shoal_bench::error::BenchError;
use shoal_bench::report::{self, model::RunReport};
use shoal_bench::run::{run, BrokerChoice, RunSettings};
use shoal_bench::suite;
use shoal_bench::workload::{Acks, Workload, WorkloadLayer, WorkloadSource, PRESETS};
use shoal_protocol::tls::SecurityArgs;

/// Load-test a Shoal broker: open-loop load at a target rate (or a search for
/// the highest sustainable rate), HDR latency measured from each record's
/// intended send time, loss/duplicate verification, and physical baselines
/// (loopback TCP, disk O_DIRECT + fdatasync) measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "shoal-bench", version, about, long_about = None)]
struct Cli {
    /// Shipped preset to start from: quick, steady, max-rate, closed-loop, burst, slow-consumer, retry-storm, restart
    #[arg(long, default_value = "quick", conflicts_with = "workload")]
    preset: String,
    /// Workload TOML file to start from instead of a preset (same fields as the flags below)
    #[arg(long)]
    workload: Option<PathBuf>,
    /// Use an already running broker at HOST:PORT instead of starting shoald
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
    /// shoald binary for the embedded broker [default: next to shoal-bench, then ./target/release/shoald]
    #[arg(long, value_name = "PATH")]
    broker_bin: Option<PathBuf>,
    /// Data directory: the embedded broker's, and where the disk baseline runs [default: a fresh temporary directory]
    #[arg(long, value_name = "PATH")]
    data_dir: Option<PathBuf>,
    /// Shards of the embedded broker [default: available cores; 1 per node with --cluster]
    #[arg(long)]
    broker_shards: Option<u32>,
    /// Run on a single node, then on a local cluster of N nodes (replication factor N, acks quorum unless given); report both and their ratios
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=7), conflicts_with_all = ["broker", "suite"])]
    cluster: Option<u32>,
    /// Run on a plaintext embedded broker, then on one with TLS 1.3 on its native ports (certificates made for the run, in <out>/certs); report both and their ratios
    #[arg(long, conflicts_with_all = ["broker", "cluster", "suite"])]
    compare_tls: bool,
    /// Extra argument for the embedded shoald; repeat for several (e.g. --broker-arg=--no-pin)
    #[arg(long = "broker-arg", value_name = "ARG", allow_hyphen_values = true)]
    broker_args: Vec<String>,
    /// Output directory for report.json, summary.txt, the SVG charts and index.html [default: ./bench-out/<timestamp>]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Seconds each baseline measurement runs (loopback throughput, loopback round trip, disk write, fdatasync)
    #[arg(long, default_value_t = 0.75)]
    baseline_s: f64,
    /// Skip the physical baselines (no ratios are reported)
    #[arg(long)]
    no_baselines: bool,
    /// Seconds after the load ends for acks and consumers to catch up before the check
    #[arg(long, default_value_t = 15.0)]
    drain_s: f64,
    /// Print the resolved workload as TOML and exit
    #[arg(long)]
    print_workload: bool,
    /// List the shipped presets and exit
    #[arg(long)]
    list_presets: bool,
    /// Run a suite of workloads instead of one ("closing": max-rate with flush always and never, then burst)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["workload", "print_workload"])]
    suite: Option<String>,
    #[command(
        flatten,
        next_help_heading = "TLS and credentials (for a secured broker; the embedded one takes them through --broker-arg=--config=FILE; --compare-tls makes its own)"
    )]
    security: SecurityArgs,
    #[command(flatten, next_help_heading = "Workload (each overrides the preset or file)")]
    overrides: WorkloadLayer,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shoal-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<ExitCode, BenchError> {
    if cli.list_presets {
        for (name, text) in PRESETS {
            let first = text.lines().next().unwrap_or("").trim_start_matches('#').trim();
            println!("{name:<14} {first}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(name) = &cli.suite {
        return run_suite(&cli, name);
    }
    let source = match &cli.workload {
        Some(path) => WorkloadSource::File(path),
        None => WorkloadSource::Preset(&cli.preset),
    };
    let workload = Workload::resolve(source.clone(), &cli.overrides)?;
    if cli.print_workload {
        print!(
            "{}",
            toml::to_string(&workload).map_err(|e| BenchError::Driver(e.to_string()))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let out = cli.out.clone().unwrap_or_else(default_out);
    if let Some(nodes) = cli.cluster {
        return run_cluster_comparison(&cli, source, nodes, &out);
    }
    if cli.compare_tls {
        return run_tls_comparison(&cli, workload, &out);
    }
    let report = run_one(&cli, workload, &out, Target::Single)?;
    Ok(exit_code(&report))
}

/// `--cluster N`: the workload on one node (replication factor 1, acks
/// leader), then on N nodes (replication factor N, acks quorum, unless
/// the flags say otherwise), each with its own baselines; both reports and
/// the ratios of the replicated figures to the single-node ones.
fn run_cluster_comparison(
    cli: &Cli,
    source: WorkloadSource<'_>,
    nodes: u32,
    out: &Path,
) -> Result<ExitCode, BenchError> {
    let mut single_flags = cli.overrides.clone();
    single_flags.replication_factor = Some(1);
    single_flags.acks = match cli.overrides.acks {
        None | Some(Acks::Quorum) => Some(Acks::Leader),
        other => other,
    };
    let mut cluster_flags = cli.overrides.clone();
    cluster_flags.replication_factor = cli.overrides.replication_factor.or(Some(nodes));
    cluster_flags.acks = cli.overrides.acks.or(Some(Acks::Quorum));
    let single = Workload::resolve(source.clone(), &single_flags)?;
    let replicated = Workload::resolve(source, &cluster_flags)?;
    let label = format!("cluster-{nodes}");
    eprintln!(
        "
=== single node ==="
    );
    let single_dir = out.join("single-node");
    let single_report = run_one(cli, single, &single_dir, Target::Single)?;
    eprintln!(
        "
=== {label} ==="
    );
    let cluster_dir = out.join(&label);
    let cluster_report = run_one(cli, replicated, &cluster_dir, Target::Cluster(nodes))?;
    let figures = vec![
        suite::MemberFigures::of("single-node", &single_dir, &single_report),
        suite::MemberFigures::of(&label, &cluster_dir, &cluster_report),
    ];
    let comparison = suite::render_comparison(&label, &figures[0], &figures[1]);
    write_comparison(
        out,
        &label,
        &figures,
        &comparison,
        [&single_report, &cluster_report],
    )
}

/// `--compare-tls`: the workload on a plaintext embedded broker, then on
/// one with TLS on its native ports (the same settings, a fresh data
/// directory), each with its own baselines; both reports and the ratios of
/// the TLS figures to the plaintext ones.
fn run_tls_comparison(cli: &Cli, workload: Workload, out: &Path) -> Result<ExitCode, BenchError> {
    refuse_own_tls(cli)?;
    let tls = BrokerTls::create(&out.join("certs"))?;
    eprintln!("certificates for the TLS run in {}", out.join("certs").display());
    eprintln!("\n=== plaintext ===");
    let plain_dir = out.join("plaintext");
    let plain_report = run_one(cli, workload.clone(), &plain_dir, Target::Single)?;
    eprintln!("\n=== tls ===");
    let tls_dir = out.join("tls");
    let tls_report = run_one(cli, workload, &tls_dir, Target::Tls(&tls))?;
    let figures = vec![
        suite::MemberFigures::of("plaintext", &plain_dir, &plain_report),
        suite::MemberFigures::of("tls", &tls_dir, &tls_report),
    ];
    let comparison = suite::render_tls_comparison(&figures[0], &figures[1]);
    write_comparison(
        out,
        "compare-tls",
        &figures,
        &comparison,
        [&plain_report, &tls_report],
    )
}

/// `--compare-tls` makes the TLS run's certificates and broker config
/// itself: a CA of the user's would make the plaintext run dial in TLS, and
/// a second `--config` for shoald would be refused by it mid-run.
fn refuse_own_tls(cli: &Cli) -> Result<(), BenchError> {
    let security = cli
        .security
        .resolve()
        .map_err(|e| BenchError::Driver(format!("TLS and credentials: {e}")))?;
    if security.tls.is_some() {
        return Err(BenchError::InvalidWorkload(
            "--compare-tls makes its own CA and broker certificate; drop --tls-ca \
             (and SHOAL_TLS_CA or tls_ca in the client config)"
                .into(),
        ));
    }
    if cli
        .broker_args
        .iter()
        .any(|a| a == "--config" || a.starts_with("--config="))
    {
        return Err(BenchError::InvalidWorkload(
            "--compare-tls gives the TLS broker its own --config; drop --broker-arg=--config".into(),
        ));
    }
    Ok(())
}

/// Writes the two runs' suite summary and `comparison.txt` into `out` and
/// prints them; exit code 0 only if both runs delivered every ack.
fn write_comparison(
    out: &Path,
    label: &str,
    figures: &[suite::MemberFigures],
    comparison: &str,
    reports: [&RunReport; 2],
) -> Result<ExitCode, BenchError> {
    suite::write(out, label, figures)?;
    let path = out.join("comparison.txt");
    std::fs::write(&path, comparison).map_err(|e| BenchError::io(format!("write {}", path.display()), e))?;
    print!("\n{}\n{comparison}", suite::render(label, figures));
    println!("\nreports: {} (open index.html)", out.display());
    let ok = reports.iter().all(|r| exit_code(r) == ExitCode::SUCCESS);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// Runs every member of a suite into `<out>/<label>/`, then writes the suite summary.
fn run_suite(cli: &Cli, name: &str) -> Result<ExitCode, BenchError> {
    let members = suite::members(name)?;
    let out = cli.out.clone().unwrap_or_else(default_out);
    let mut figures = Vec::new();
    let mut all_ok = true;
    for member in members {
        eprintln!("\n=== suite {name}: {} ===", member.label);
        let flags = suite::member_flags(&cli.overrides, member);
        let workload = Workload::resolve(WorkloadSource::Preset(member.preset), &flags)?;
        let dir = out.join(member.label);
        let report = run_one(cli, workload, &dir, Target::Single)?;
        all_ok &= exit_code(&report) == ExitCode::SUCCESS;
        figures.push(suite::MemberFigures::of(member.label, &dir, &report));
    }
    suite::write(&out, name, &figures)?;
    print!("\n{}", suite::render(name, &figures));
    println!("\nsuite report: {} (open index.html)", out.display());
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Which embedded broker a run starts (unless `--broker` names one).
#[derive(Clone, Copy)]
enum Target<'a> {
    /// One plaintext `shoald`.
    Single,
    /// A local cluster of this many nodes.
    Cluster(u32),
    /// One `shoald` with TLS on its native ports; the clients trust its CA.
    Tls(&'a BrokerTls),
}

/// One run of `workload` with its own data directory and broker (as
/// `target` says); reports go to `out`.
fn run_one(cli: &Cli, workload: Workload, out: &Path, target: Target<'_>) -> Result<RunReport, BenchError> {
    // A temporary data directory lives until the end of the run and is then removed.
    let temp = match &cli.data_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("shoal-bench-")
                .tempdir()
                .map_err(|e| BenchError::io("temp dir", e))?,
        ),
    };
    let data_dir = cli
        .data_dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
        .expect("one is set");
    std::fs::create_dir_all(out).map_err(|e| BenchError::io(format!("create {}", out.display()), e))?;
    let spec = || -> Result<BrokerSpec, BenchError> {
        // With --cluster both runs give each node the same shards.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let shards_default = if cli.cluster.is_some() { 1 } else { cores };
        Ok(BrokerSpec {
            binary: find_binary(cli.broker_bin.as_deref())?,
            data_dir: data_dir.join(match target {
                Target::Single => format!("broker-{}", workload.name),
                Target::Cluster(nodes) => format!("cluster{nodes}-{}", workload.name),
                Target::Tls(_) => format!("broker-{}-tls", workload.name),
            }),
            shards: cli.broker_shards.unwrap_or(shards_default),
            log_path: out.join("broker.log"),
            extra_args: match target {
                Target::Tls(tls) => [cli.broker_args.clone(), vec![tls.broker_arg()]].concat(),
                _ => cli.broker_args.clone(),
            },
        })
    };
    let broker = match (&cli.broker, target) {
        (Some(address), _) => BrokerChoice::External(address.clone()),
        (None, Target::Single | Target::Tls(_)) => BrokerChoice::Embedded(spec()?),
        (None, Target::Cluster(nodes)) => BrokerChoice::Cluster(spec()?, nodes),
    };
    let mut security = cli
        .security
        .resolve()
        .map_err(|e| BenchError::Driver(format!("TLS and credentials: {e}")))?;
    if let Target::Tls(tls) = target {
        security.tls = Some(tls.client()?);
    }
    let settings = RunSettings {
        workload,
        broker,
        data_dir,
        baseline: (!cli.no_baselines).then(|| Duration::from_secs_f64(cli.baseline_s.clamp(0.05, 30.0))),
        drain: Duration::from_secs_f64(cli.drain_s.clamp(0.0, 600.0)),
        command_line: std::env::args().collect(),
        security,
    };
    let report = run(settings)?;
    print!("{}", report::summary::render(&report));
    let written = report::write(out, &report)?;
    println!(
        "\nreport: {} ({} files; open index.html)",
        out.display(),
        written.len()
    );
    Ok(report)
}

/// 0 when every acknowledged record was consumed as promised, 2 otherwise.
fn exit_code(report: &RunReport) -> ExitCode {
    let ok = report
        .measured
        .as_ref()
        .is_none_or(|m| m.drained && m.delivery.as_ref().is_none_or(|v| v.ok));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// `./bench-out/<UTC timestamp>`.
fn default_out() -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(':', "-");
    PathBuf::from("bench-out").join(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        // Proves clap accepts the flag set: no clashing names between harness and workload flags.
        Cli::command().debug_assert();
    }

    #[test]
    fn every_workload_field_is_a_flag() {
        // Proves each field of the defaults file can be set from the command line.
        let help = Cli::command().render_long_help().to_string();
        let defaults: toml::Table = shoal_bench::workload::DEFAULTS_TOML.parse().unwrap();
        for key in defaults.keys() {
            let flag = format!("--{}", key.replace('_', "-"));
            assert!(help.contains(&flag), "{flag} missing from --help");
        }
    }
}
