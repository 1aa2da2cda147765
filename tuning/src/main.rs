//! `shoal-tune`: probe a host, benchmark its disk, recommend and check broker configs.
//!
//! Every command prints a human-readable report, or with `--json` the same
//! data as JSON (so `recommend` can take the saved output of `probe` and
//! `bench`). Progress goes to stderr. `check` exits 1 when it finds an error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use shoal_tune::bench_plan::BenchLimits;
use shoal_tune::config_check::{check_config_text, Severity};
use shoal_tune::config_toml::render_toml;
use shoal_tune::device_bench::{format_bytes, run_bench, BenchReport};
use shoal_tune::host_probe::{existing_ancestor, HostProbe};
use shoal_tune::recommend::{recommend, Priority, Recommendation};
use shoal_tune::text_report::{bench_text, host_changes_text, probe_text, problems_text};
use shoal_tune::TuneError;

#[derive(Parser)]
#[command(
    name = "shoal-tune",
    version,
    about = "Probe a host, benchmark its disk and recommend a Shoal broker config"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum PriorityArg {
    Durability,
    Latency,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Most disk space the benchmark occupies at once, in MiB.
    #[arg(long, default_value_t = 256)]
    file_mib: u64,
    /// Time the benchmark cases may take, in seconds.
    #[arg(long, default_value_t = 40)]
    time_max_s: u64,
}

impl BenchArgs {
    fn limits(&self) -> BenchLimits {
        BenchLimits {
            file_bytes_max: self.file_mib << 20,
            time_max: Duration::from_secs(self.time_max_s),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Kernel, io_uring, O_DIRECT alignment, block device, memlock, CPUs, sysctls, free space.
    Probe {
        /// Data directory to probe (its nearest existing ancestor if it does not exist yet).
        #[arg(long, default_value = "./shoal-data")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// O_DIRECT write bandwidth, 4 KiB latency and fdatasync latency in a temporary file under DIR.
    Bench {
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        limits: BenchArgs,
        /// Also save the report as JSON here (for `recommend --bench`).
        #[arg(long)]
        save: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Write a commented broker config for this host and list host changes.
    Recommend {
        /// Data directory the broker will use.
        #[arg(long, default_value = "./shoal-data")]
        dir: PathBuf,
        /// Saved `probe --json` output to use instead of probing.
        #[arg(long)]
        probe: Option<PathBuf>,
        /// Saved `bench --json` output to use instead of benchmarking.
        #[arg(long)]
        bench: Option<PathBuf>,
        /// Recommend without benchmarking (device-driven settings keep broker defaults).
        #[arg(long, conflicts_with = "bench")]
        no_bench: bool,
        #[command(flatten)]
        limits: BenchArgs,
        /// Favour durability (flush before every ack) or latency (interval flush).
        #[arg(long, value_enum, default_value = "durability")]
        priority: PriorityArg,
        /// Write the TOML here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Validate a broker config file against this host and explain each problem.
    Check {
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shoal-tune: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, TuneError> {
    match cli.command {
        Command::Probe { dir, json } => {
            let probe = HostProbe::gather_live(&dir)?;
            print_either(json, &probe, || probe_text(&probe));
        }
        Command::Bench {
            dir,
            limits,
            save,
            json,
        } => {
            let report = bench(&dir, &limits)?;
            if let Some(path) = save {
                let text = serde_json::to_string_pretty(&report).expect("reports always serialise");
                std::fs::write(&path, text).map_err(|source| TuneError::Io {
                    op: "write",
                    path,
                    source,
                })?;
            }
            let probe = HostProbe::gather_live(&dir).ok();
            print_either(json, &report, || bench_text(&report, probe.as_ref()));
        }
        Command::Recommend {
            dir,
            probe,
            bench: bench_file,
            no_bench,
            limits,
            priority,
            out,
            json,
        } => {
            let probe = match probe {
                Some(path) => load_json::<HostProbe>(&path)?,
                None => HostProbe::gather_live(&dir)?,
            };
            let report = match (bench_file, no_bench) {
                (Some(path), _) => Some(load_json::<BenchReport>(&path)?),
                (None, true) => None,
                (None, false) => Some(bench(&existing_ancestor(&dir)?, &limits)?),
            };
            let priority = match priority {
                PriorityArg::Durability => Priority::Durability,
                PriorityArg::Latency => Priority::Latency,
            };
            let rec = recommend(&probe, report.as_ref(), dir, priority);
            emit_recommendation(&rec, &probe, report.as_ref(), priority, out.as_deref(), json)?;
        }
        Command::Check { config, json } => return check(&config, json),
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks a config file against the host its data directory is on; exit 1 on any error.
fn check(config: &Path, json: bool) -> Result<ExitCode, TuneError> {
    let text = std::fs::read_to_string(config).map_err(|source| TuneError::Read {
        path: config.to_path_buf(),
        source,
    })?;
    // A file that does not parse is still checked against the current directory's host.
    let data_dir = toml::from_str::<shoal_config::Config>(&text)
        .map(|c| c.server.data_dir)
        .unwrap_or_else(|_| PathBuf::from("."));
    let probe = HostProbe::gather_live(&data_dir)?;
    let problems = check_config_text(&text, &probe);
    print_either(json, &problems, || problems_text(&problems));
    if problems.iter().any(|p| p.severity == Severity::Error) {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(dir: &Path, args: &BenchArgs) -> Result<BenchReport, TuneError> {
    let limits = args.limits();
    shoal_tune::interrupt::install();
    eprintln!(
        "bench: {} for about {:?} in {}",
        format_bytes(limits.file_bytes_max),
        limits.time_max,
        dir.display()
    );
    run_bench(dir, &limits, &mut |line| eprintln!("bench: {line}"))
}

fn print_either<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("reports always serialise")
        );
    } else {
        print!("{}", text());
    }
}

fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T, TuneError> {
    let text = std::fs::read_to_string(path).map_err(|source| TuneError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| TuneError::Report {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn emit_recommendation(
    rec: &Recommendation,
    probe: &HostProbe,
    bench: Option<&BenchReport>,
    priority: Priority,
    out: Option<&Path>,
    json: bool,
) -> Result<(), TuneError> {
    let toml = render_toml(rec, &header_lines(probe, bench, priority));
    if let Some(path) = out {
        std::fs::write(path, &toml).map_err(|source| TuneError::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        })?;
        eprintln!("wrote {}", path.display());
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(rec).expect("recommendations always serialise")
        );
        return Ok(());
    }
    if out.is_none() {
        println!("{toml}");
    }
    print!("{}", host_changes_text(rec));
    Ok(())
}

fn header_lines(probe: &HostProbe, bench: Option<&BenchReport>, priority: Priority) -> Vec<String> {
    let f = &probe.facts;
    let device = f.device.as_ref().map_or("no block device".into(), |d| {
        format!(
            "{} ({:?}{})",
            d.disk,
            d.kind,
            d.model.as_ref().map_or(String::new(), |m| format!(", {m}"))
        )
    });
    let fs = f
        .mount
        .as_ref()
        .map_or("unknown fs".into(), |m| m.fs_type.clone());
    let mut lines = vec![
        "Shoal broker config written by `shoal-tune recommend`.".to_string(),
        format!(
            "Host: kernel {}, {} CPUs available, {} memory, {device}, {fs}.",
            f.kernel.release,
            probe.live.available_cpus,
            format_bytes(f.memory.total_bytes)
        ),
    ];
    match bench {
        Some(b) => lines.push(format!(
            "Bench: peak sequential write {:.0} MiB/s, 4 KiB QD1 write p50 {:.0} us / p99 {:.0} us.",
            b.peak_bandwidth_mib_per_sec(),
            b.write_latency.p50_us,
            b.write_latency.p99_us
        )),
        None => lines.push("Bench: not run; device-driven settings are the broker defaults.".into()),
    }
    lines.push(format!(
        "Priority: {priority:?}. Each setting's comment says why it has its value."
    ));
    lines
}
