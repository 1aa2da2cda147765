//! A whole run: machine, baselines, broker, (search), measured phase, reports.
//!
//! Baselines are measured first, before the broker starts, so they do not
//! compete with it for the two cores. In max-rate mode the search trials
//! run producers only (backlog = due − acked); the measured phase then runs
//! producers and consumers at `measure_share` of the sustainable rate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use shoal_protocol::tls::ClientSecurity;

use crate::baseline::{self, Baselines};
use crate::broker_process::{BrokerProcess, BrokerSpec, ClusterProcess};
use crate::driver::engine::{run_phase, PhaseOptions};
use crate::driver::shoal_client::ShoalConnector;
use crate::driver::{group_name, BrokerControl, Connector};
use crate::error::BenchError;
use crate::machine;
use crate::rate_search::{RateSearch, RateSearchConfig, SearchOutcome, SearchStep};
use crate::report::model::{self, BrokerInfo, Durability, PhaseResult, Placement, RunReport, TrialPhase};
use crate::schedule::Phase;
use crate::workload::{Consumption, RateMode, Scenario, Workload};

/// How long a search trial's producers may take to collect their last acks.
const TRIAL_DRAIN: Duration = Duration::from_secs(2);
/// Below this rate the search gives up.
const SEARCH_RATE_MIN_PER_S: f64 = 10.0;
/// Upper bound on search trials.
const SEARCH_TRIALS_MAX: u32 = 24;
/// Share of a trial ignored while queues settle.
const SEARCH_SETTLE_FRACTION: f64 = 0.25;

/// Which broker to load.
pub enum BrokerChoice {
    /// An already running broker at this address.
    External(String),
    /// Start `shoald` as described.
    Embedded(BrokerSpec),
    /// Start a local cluster of this many `shoald` nodes, each as described.
    Cluster(BrokerSpec, u32),
}

/// Everything a run needs besides the workload.
pub struct RunSettings {
    pub workload: Workload,
    pub broker: BrokerChoice,
    /// Where the disk baseline runs (the broker's data directory).
    pub data_dir: PathBuf,
    /// Per-measurement length of the baselines; `None` skips them.
    pub baseline: Option<Duration>,
    /// After the load ends, how long acks and consumers get to catch up.
    pub drain: Duration,
    pub command_line: Vec<String>,
    /// TLS and credentials of every client connection (none: plaintext).
    pub security: ClientSecurity,
}

/// The brokers a run started.
enum Running {
    Single(BrokerProcess),
    Cluster(ClusterProcess),
}

/// Runs everything and answers the report (not yet written).
pub fn run(settings: RunSettings) -> Result<RunReport, BenchError> {
    let w = &settings.workload;
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let machine = machine::describe(&settings.data_dir);
    let baselines = match settings.baseline {
        Some(d) => Some(measure_baselines(&settings, d)?),
        None => None,
    };
    let (mut process, broker) = match &settings.broker {
        BrokerChoice::External(address) => (
            None,
            BrokerInfo {
                mode: "external".into(),
                address: address.clone(),
                binary: None,
                data_dir: None,
            },
        ),
        BrokerChoice::Embedded(spec) => {
            eprintln!(
                "starting {} (data in {})",
                spec.binary.display(),
                spec.data_dir.display()
            );
            let p = BrokerProcess::start(spec.clone())?;
            let info = BrokerInfo {
                mode: "embedded".into(),
                address: p.address(),
                binary: Some(spec.binary.display().to_string()),
                data_dir: Some(spec.data_dir.display().to_string()),
            };
            (Some(Running::Single(p)), info)
        }
        BrokerChoice::Cluster(spec, nodes) => {
            eprintln!(
                "starting a cluster of {nodes} x {} (data in {})",
                spec.binary.display(),
                spec.data_dir.display()
            );
            let c = ClusterProcess::start(spec, *nodes)?;
            let info = BrokerInfo {
                mode: format!("cluster-{nodes}"),
                address: c.addresses().join(","),
                binary: Some(spec.binary.display().to_string()),
                data_dir: Some(spec.data_dir.display().to_string()),
            };
            (Some(Running::Cluster(c)), info)
        }
    };
    let mut broker = broker;
    if settings.security.tls.is_some() {
        // The report says the figures were measured over TLS.
        broker.mode.push_str("+tls");
    }
    let mut connector = ShoalConnector::new(
        broker.address.split(',').next().unwrap_or_default(),
        settings.security.clone(),
    );
    if let Some(Running::Cluster(c)) = &process {
        connector = connector.with_nodes(c.addresses());
    }
    let connector: Arc<dyn Connector> = Arc::new(connector);
    connector.prepare(w)?;
    // The restart scenario kills and restarts the single embedded broker,
    // or a cluster's busiest leader node.
    let control = match process.as_mut() {
        Some(Running::Single(p)) => Some(p as &mut dyn BrokerControl),
        Some(Running::Cluster(c)) => Some(c as &mut dyn BrokerControl),
        None => None,
    };
    let Loaded {
        search,
        trials,
        measured,
        placement,
        run_id,
    } = load(&connector, &settings, control)?;
    let group_stats = match w.consumption {
        Consumption::Group if w.consumers > 0 => connector.group_stats(&group_name(run_id))?,
        _ => None,
    };
    let stopped = match process.as_mut() {
        Some(Running::Single(p)) => p.stop(),
        Some(Running::Cluster(c)) => c.stop(),
        None => Ok(()),
    };
    if let Err(e) = stopped {
        eprintln!("warning: {e}");
    }
    let ratios = baselines
        .as_ref()
        .map(|b| model::ratios(Some(&measured), search.as_ref(), b, w.record_bytes, w.flush))
        .unwrap_or_default();
    Ok(RunReport {
        tool: "shoal-bench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at,
        command_line: settings.command_line.clone(),
        workload: w.clone(),
        durability: Durability::of(w),
        machine,
        broker,
        placement,
        baselines,
        search,
        trials,
        measured: Some(measured),
        group_stats,
        ratios,
    })
}

fn measure_baselines(settings: &RunSettings, each: Duration) -> Result<Baselines, BenchError> {
    eprintln!("measuring baselines ({:.1} s each)", each.as_secs_f64());
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|e| BenchError::io(format!("create {}", settings.data_dir.display()), e))?;
    Ok(Baselines {
        loopback: baseline::loopback::measure(each)?,
        disk: baseline::disk::measure(&settings.data_dir, each)?,
    })
}

/// What the load produced: the search and its trials, the measured phase, where its threads ran, its run id.
struct Loaded {
    search: Option<SearchOutcome>,
    trials: Vec<TrialPhase>,
    measured: PhaseResult,
    placement: Placement,
    run_id: u32,
}

/// The search (max mode), then the measured phase.
fn load(
    connector: &Arc<dyn Connector>,
    settings: &RunSettings,
    control: Option<&mut dyn BrokerControl>,
) -> Result<Loaded, BenchError> {
    let w = &settings.workload;
    let mut run_id = 0u32;
    let mut trials = Vec::new();
    let (search, rate) = match w.rate_mode {
        RateMode::Target => (None, w.rate_per_s),
        // The schedule only sets the phase's length: closed-loop producers
        // send whenever they have room, not when a record is due.
        RateMode::Closed => (None, 1.0),
        RateMode::Max => {
            let outcome = search(connector, w, &mut run_id, &mut trials)?;
            let rate = outcome.sustainable_rate_per_s * w.measure_share;
            if rate <= 0.0 {
                return Err(BenchError::Driver("the search found no sustainable rate".into()));
            }
            (Some(outcome), rate)
        }
    };
    let sec = |s: f64| (s * 1e9).round() as u64;
    let opts = PhaseOptions {
        label: "measured".into(),
        run: run_id + 1,
        rate_per_s: rate,
        phases: w.phases(rate),
        measure_from_ns: sec(w.warmup_s),
        measure_until_ns: sec(w.warmup_s + w.duration_s),
        consumers: w.consumers,
        closed_window: w.closed_window_records(),
        drain: settings.drain,
        burst: (w.scenario == Scenario::Burst).then(|| {
            (
                sec(w.warmup_s + w.burst_start_s),
                sec(w.warmup_s + w.burst_start_s + w.burst_duration_s),
            )
        }),
        restart: (w.scenario == Scenario::Restart).then(|| {
            (
                sec(w.warmup_s + w.restart_at_s),
                Duration::from_millis(w.restart_down_ms),
            )
        }),
    };
    match opts.closed_window {
        Some(window) => eprintln!(
            "measured phase: closed loop, {window} records in flight per producer, for {:.0} s after {:.0} s warm-up",
            w.duration_s, w.warmup_s
        ),
        None => eprintln!(
            "measured phase: {rate:.0} rec/s for {:.0} s after {:.0} s warm-up",
            w.duration_s, w.warmup_s
        ),
    }
    let (measured, placement) = run_phase(connector, w, &opts, control)?;
    Ok(Loaded {
        search,
        trials,
        measured,
        placement,
        run_id: opts.run,
    })
}

/// Producer-only trials until the search settles.
fn search(
    connector: &Arc<dyn Connector>,
    w: &Workload,
    run_id: &mut u32,
    trials: &mut Vec<TrialPhase>,
) -> Result<SearchOutcome, BenchError> {
    let trial_ns = (w.search_trial_s * 1e9).round() as u64;
    let mut search = RateSearch::new(RateSearchConfig {
        rate_start_per_s: w.search_rate_start_per_s,
        rate_max_per_s: w.search_rate_max_per_s,
        rate_min_per_s: SEARCH_RATE_MIN_PER_S,
        trial_ns,
        settle_fraction: SEARCH_SETTLE_FRACTION,
        slope_tolerance: w.search_slope_tolerance,
        precision: w.search_precision,
        trials_max: SEARCH_TRIALS_MAX,
    });
    loop {
        let rate = match search.step() {
            SearchStep::Done(outcome) => return Ok(outcome),
            SearchStep::Trial { rate_per_s } => rate_per_s,
        };
        *run_id += 1;
        let opts = PhaseOptions {
            label: format!("trial {}", *run_id),
            run: *run_id,
            rate_per_s: rate,
            phases: vec![Phase {
                rate_per_s: rate,
                duration_ns: trial_ns,
            }],
            measure_from_ns: 0,
            measure_until_ns: trial_ns,
            consumers: 0,
            closed_window: None,
            drain: TRIAL_DRAIN,
            burst: None,
            restart: None,
        };
        // A trial that stalls yields no samples, which the search judges unsustainable.
        let summary = match run_phase(connector, w, &opts, None) {
            Ok((trial, _)) => {
                for &(t, backlog) in &trial.backlog.samples {
                    if (trial.measure_start_ns..trial.measure_end_ns).contains(&t) {
                        search.observe(t - trial.measure_start_ns, backlog);
                    }
                }
                TrialPhase::of(&trial, None)
            }
            Err(e) => TrialPhase {
                rate_per_s: rate,
                error: Some(e.to_string()),
                ..TrialPhase::default()
            },
        };
        search.finish_trial();
        let last = search.trials().last().expect("a trial was just judged");
        eprintln!(
            "  trial at {rate:.0} rec/s: backlog slope {:.0} rec/s, ack p99 {}, send lag p99 {} -> {}{}",
            last.backlog_slope_per_s,
            crate::report::summary::ns(summary.ack_latency.p99_ns),
            crate::report::summary::ns(summary.send_lag.p99_ns),
            if last.sustainable { "flat" } else { "grows" },
            summary
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
        trials.push(summary);
    }
}
