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

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Parser;
use shoal_bench::broker_process::{find_binary, BrokerSpec};
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
        next_help_heading = "TLS and credentials (for a secured broker; the embedded one takes them through --broker-arg=--config=FILE)"
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
    let report = run_one(&cli, workload, &out, None)?;
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
    let single_report = run_one(cli, single, &single_dir, None)?;
    eprintln!(
        "
=== {label} ==="
    );
    let cluster_dir = out.join(&label);
    let cluster_report = run_one(cli, replicated, &cluster_dir, Some(nodes))?;
    let figures = vec![
        suite::MemberFigures::of("single-node", &single_dir, &single_report),
        suite::MemberFigures::of(&label, &cluster_dir, &cluster_report),
    ];
    suite::write(out, &label, &figures)?;
    let comparison = suite::render_comparison(&label, &figures[0], &figures[1]);
    std::fs::write(out.join("comparison.txt"), &comparison)
        .map_err(|e| BenchError::io(format!("write {}", out.join("comparison.txt").display()), e))?;
    print!("\n{}\n{comparison}", suite::render(&label, &figures));
    println!("\nreports: {} (open index.html)", out.display());
    let ok =
        exit_code(&single_report) == ExitCode::SUCCESS && exit_code(&cluster_report) == ExitCode::SUCCESS;
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
        let report = run_one(cli, workload, &dir, None)?;
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

/// One run of `workload` with its own data directory and broker (a local
/// cluster of `cluster` nodes when set); reports go to `out`.
fn run_one(cli: &Cli, workload: Workload, out: &Path, cluster: Option<u32>) -> Result<RunReport, BenchError> {
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
            data_dir: data_dir.join(match cluster {
                Some(nodes) => format!("cluster{nodes}-{}", workload.name),
                None => format!("broker-{}", workload.name),
            }),
            shards: cli.broker_shards.unwrap_or(shards_default),
            log_path: out.join("broker.log"),
            extra_args: cli.broker_args.clone(),
        })
    };
    let broker = match (&cli.broker, cluster) {
        (Some(address), _) => BrokerChoice::External(address.clone()),
        (None, None) => BrokerChoice::Embedded(spec()?),
        (None, Some(nodes)) => BrokerChoice::Cluster(spec()?, nodes),
    };
    let settings = RunSettings {
        workload,
        broker,
        data_dir,
        baseline: (!cli.no_baselines).then(|| Duration::from_secs_f64(cli.baseline_s.clamp(0.05, 30.0))),
        drain: Duration::from_secs_f64(cli.drain_s.clamp(0.0, 600.0)),
        command_line: std::env::args().collect(),
        security: cli
            .security
            .resolve()
            .map_err(|e| BenchError::Driver(format!("TLS and credentials: {e}")))?,
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
