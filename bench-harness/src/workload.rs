//! Workloads: what load to offer, described in TOML and overridable by flags.
//!
//! A workload is resolved from layers, later layers winning field by field:
//! built-in defaults, then a preset or a TOML file, then command-line flags.
//! [`WorkloadLayer`] is both the TOML shape and the flag set (every field is
//! optional in both), so a setting is declared and documented once and
//! `--help` lists every one. [`Workload`] is the resolved, validated result
//! that drives the run and is written into the JSON report.
//!
//! Times are seconds since the run's epoch: `[0, warmup_s)` is warm-up
//! (load offered, nothing measured), `[warmup_s, warmup_s + duration_s)` is
//! measured.

use std::path::Path;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::distribution::{KeyDistribution, SizeDistribution, KEYS_MAX};
use crate::error::BenchError;
use crate::ledger::Delivery;
use crate::schedule::{Phase, RATE_PER_S_MAX};
use crate::stamp::STAMP_LEN;

/// Most batches a closed-loop producer may keep in flight.
pub const IN_FLIGHT_BATCHES_MAX: u32 = 1024;
/// Largest record the harness sends.
pub const RECORD_BYTES_MAX: usize = 1 << 20;
/// Most partitions per topic.
pub const PARTITIONS_MAX: u32 = 4096;
/// Most topics.
pub const TOPICS_MAX: u32 = 256;
/// Most producer or consumer threads.
pub const THREADS_MAX: u32 = 256;
/// Longest measured run.
pub const DURATION_S_MAX: f64 = 24.0 * 3600.0;
/// Cap on replicas per partition (nodes of a cluster).
pub const REPLICATION_FACTOR_MAX: u32 = 7;

/// Acknowledgement level the producers ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Acks {
    /// Fire and forget (at-most-once); latency is time to hand over.
    None,
    /// The partition's leader stored it (per the topic's flush policy).
    Leader,
    /// A majority of the partition's replicas fsynced it (replicated topics).
    Quorum,
}

/// When the broker makes appended records durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Flush {
    /// fdatasync before the ack.
    Always,
    /// fdatasync every `flush_interval_ms`.
    Interval,
    /// Leave it to the OS.
    Never,
}

/// How consumers divide partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Consumption {
    /// One consumer group; the broker assigns partitions.
    Group,
    /// Each consumer reads a fixed share of partitions by offset.
    Partition,
}

/// Whether to offer a fixed rate or search for the highest sustainable one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RateMode {
    /// Offer `rate_per_s`.
    Target,
    /// Find the rate where backlog stays flat, then measure at `measure_share` of it.
    Max,
    /// Closed loop: each producer keeps `in_flight_batches` batches in
    /// flight and sends the next record as soon as there is room (what
    /// other systems' bench tools do); latency counts from the send.
    Closed,
}

/// What happens beyond steady load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Steady,
    /// Producers at `burst_factor` x rate for `burst_duration_s` from `burst_start_s`.
    Burst,
    /// Consumers spend `consumer_delay_us` per record.
    SlowConsumer,
    /// Consumers nack `nack_share` of records (needs group delivery).
    RetryStorm,
    /// The harness kills and restarts the broker at `restart_at_s`.
    Restart,
}

/// One layer of workload settings; every field optional. Doubles as the TOML
/// file format and as the command-line overrides.
#[derive(Args, Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadLayer {
    /// Workload name, shown in reports [default: the preset's or file's name]
    #[arg(long)]
    pub name: Option<String>,
    /// Topics to spread load over (named `<topic_prefix>-<flush>-p<partitions>-<i>`) [default: 1]
    #[arg(long)]
    pub topics: Option<u32>,
    /// Topic name prefix [default: bench]
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// Partitions per topic [default: 4]
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Record value size in bytes (the mean for non-fixed distributions) [default: 1024]
    #[arg(long)]
    pub record_bytes: Option<usize>,
    /// Smallest record value in bytes, for uniform/exponential sizes [default: 32]
    #[arg(long)]
    pub record_bytes_min: Option<usize>,
    /// Record size distribution [default: fixed]
    #[arg(long)]
    pub size_distribution: Option<SizeDistribution>,
    /// Key distribution [default: none]
    #[arg(long)]
    pub key_distribution: Option<KeyDistribution>,
    /// Distinct keys for uniform/zipf keys [default: 10000]
    #[arg(long)]
    pub keys: Option<u64>,
    /// Zipf exponent s (probability of rank r ~ 1/r^s) [default: 1.0]
    #[arg(long)]
    pub zipf_exponent: Option<f64>,
    /// Producer threads; the offered rate is split evenly [default: 1]
    #[arg(long)]
    pub producers: Option<u32>,
    /// Consumer threads (0 = produce only, no end-to-end latency) [default: 1]
    #[arg(long)]
    pub consumers: Option<u32>,
    /// Consumption style [default: partition]
    #[arg(long)]
    pub consumption: Option<Consumption>,
    /// Producer batch size cap in bytes [default: 65536]
    #[arg(long)]
    pub batch_bytes: Option<usize>,
    /// Producer linger in milliseconds: how long a batch waits to fill [default: 1]
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// Producer acks [default: leader]
    #[arg(long)]
    pub acks: Option<Acks>,
    /// Replicas of each partition when the harness creates the topics (needs a cluster, e.g. --cluster 3) [default: 1]
    #[arg(long)]
    pub replication_factor: Option<u32>,
    /// Topic flush policy, set when the harness creates the topics [default: always]
    #[arg(long)]
    pub flush: Option<Flush>,
    /// Flush interval in milliseconds for `--flush interval` [default: 10]
    #[arg(long)]
    pub flush_interval_ms: Option<u64>,
    /// Delivery promise the consumed records are checked against [default: at-least-once]
    #[arg(long)]
    pub delivery: Option<Delivery>,
    /// Target rate or max-rate search [default: target]
    #[arg(long)]
    pub rate_mode: Option<RateMode>,
    /// Offered rate in records per second, all producers together [default: 10000]
    #[arg(long)]
    pub rate_per_s: Option<f64>,
    /// Max mode: share of the sustainable rate the measured phase runs at [default: 0.5]
    #[arg(long)]
    pub measure_share: Option<f64>,
    /// Closed mode: batches (of batch_bytes) each producer keeps in flight [default: 5]
    #[arg(long)]
    pub in_flight_batches: Option<u32>,
    /// Max mode: first rate tried, records per second [default: 5000]
    #[arg(long)]
    pub search_rate_start_per_s: Option<f64>,
    /// Max mode: never offer more than this many records per second [default: 2000000]
    #[arg(long)]
    pub search_rate_max_per_s: Option<f64>,
    /// Max mode: seconds per search trial [default: 4]
    #[arg(long)]
    pub search_trial_s: Option<f64>,
    /// Max mode: backlog growth still counted as flat, as a share of the rate [default: 0.01]
    #[arg(long)]
    pub search_slope_tolerance: Option<f64>,
    /// Max mode: stop when good and bad rates are this close (relative) [default: 0.05]
    #[arg(long)]
    pub search_precision: Option<f64>,
    /// Measured seconds [default: 10]
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Warm-up seconds before measuring (load offered, not recorded) [default: 2]
    #[arg(long)]
    pub warmup_s: Option<f64>,
    /// Scenario [default: steady]
    #[arg(long)]
    pub scenario: Option<Scenario>,
    /// Burst: rate multiplier during the burst [default: 4]
    #[arg(long)]
    pub burst_factor: Option<f64>,
    /// Burst: seconds into the measured window when the burst starts [default: 3]
    #[arg(long)]
    pub burst_start_s: Option<f64>,
    /// Burst: burst length in seconds [default: 2]
    #[arg(long)]
    pub burst_duration_s: Option<f64>,
    /// Consumer work per record in microseconds, slept not spun (caps each consumer at 1e6/this records/s) [default: 0]
    #[arg(long)]
    pub consumer_delay_us: Option<u64>,
    /// Retry storm: share of deliveries the consumers nack [default: 0.2]
    #[arg(long)]
    pub nack_share: Option<f64>,
    /// Restart: seconds into the measured window when the broker is killed [default: 4]
    #[arg(long)]
    pub restart_at_s: Option<f64>,
    /// Restart: milliseconds the broker stays down before it is started again [default: 500]
    #[arg(long)]
    pub restart_down_ms: Option<u64>,
    /// Pin producer and consumer threads to cores (core_affinity) [default: true]
    #[arg(long)]
    pub pin_threads: Option<bool>,
    /// Seed for sizes and keys; the same seed replays the same data [default: 1]
    #[arg(long)]
    pub seed: Option<u64>,
}

/// A resolved, validated workload. Field meanings are documented on
/// [`WorkloadLayer`]; the defaults live in `presets/defaults.toml`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    pub topics: u32,
    pub topic_prefix: String,
    pub partitions: u32,
    pub record_bytes: usize,
    pub record_bytes_min: usize,
    pub size_distribution: SizeDistribution,
    pub key_distribution: KeyDistribution,
    pub keys: u64,
    pub zipf_exponent: f64,
    pub producers: u32,
    pub consumers: u32,
    pub consumption: Consumption,
    pub batch_bytes: usize,
    pub linger_ms: u64,
    pub acks: Acks,
    pub replication_factor: u32,
    pub flush: Flush,
    pub flush_interval_ms: u64,
    pub delivery: Delivery,
    pub rate_mode: RateMode,
    pub rate_per_s: f64,
    pub measure_share: f64,
    pub in_flight_batches: u32,
    pub search_rate_start_per_s: f64,
    pub search_rate_max_per_s: f64,
    pub search_trial_s: f64,
    pub search_slope_tolerance: f64,
    pub search_precision: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub scenario: Scenario,
    pub burst_factor: f64,
    pub burst_start_s: f64,
    pub burst_duration_s: f64,
    pub consumer_delay_us: u64,
    pub nack_share: f64,
    pub restart_at_s: f64,
    pub restart_down_ms: u64,
    pub pin_threads: bool,
    pub seed: u64,
}

/// The defaults every workload starts from.
pub const DEFAULTS_TOML: &str = include_str!("../presets/defaults.toml");

/// The presets shipped in `presets/`, by name.
pub const PRESETS: &[(&str, &str)] = &[
    ("quick", include_str!("../presets/quick.toml")),
    ("steady", include_str!("../presets/steady.toml")),
    ("max-rate", include_str!("../presets/max-rate.toml")),
    ("closed-loop", include_str!("../presets/closed-loop.toml")),
    ("burst", include_str!("../presets/burst.toml")),
    ("slow-consumer", include_str!("../presets/slow-consumer.toml")),
    ("retry-storm", include_str!("../presets/retry-storm.toml")),
    ("restart", include_str!("../presets/restart.toml")),
];

/// Where the middle layer comes from.
#[derive(Clone, Debug)]
pub enum WorkloadSource<'a> {
    Preset(&'a str),
    File(&'a Path),
}

impl Workload {
    /// Resolves defaults, then `source`, then `flags`, and validates the result.
    pub fn resolve(source: WorkloadSource<'_>, flags: &WorkloadLayer) -> Result<Workload, BenchError> {
        let (origin, text, name) = match source {
            WorkloadSource::Preset(name) => (format!("preset {name}"), preset_text(name)?.to_string(), name),
            WorkloadSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| BenchError::io(format!("reading workload {}", path.display()), e))?;
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("workload");
                (path.display().to_string(), text, stem)
            }
        };
        let mut table = parse_table("defaults", DEFAULTS_TOML)?;
        table.insert("name".into(), toml::Value::String(name.to_string()));
        // A layer is checked against the known fields before it is merged.
        let layer = parse_table(&origin, &text)?;
        check_layer(&origin, &layer)?;
        table.extend(layer);
        let flag_table = toml::Table::try_from(flags).map_err(|e| parse_error("flags", e))?;
        table.extend(flag_table);
        let workload: Workload = table.try_into().map_err(|e| parse_error(&origin, e))?;
        workload.validate()?;
        Ok(workload)
    }

    /// The offered-rate phases of a run at `rate_per_s`: warm-up, then the
    /// measured window (with the burst phase for the burst scenario).
    pub fn phases(&self, rate_per_s: f64) -> Vec<Phase> {
        let ns = |s: f64| (s * 1e9).round() as u64;
        let mut phases = vec![Phase {
            rate_per_s,
            duration_ns: ns(self.warmup_s),
        }];
        if self.scenario == Scenario::Burst {
            let after = self.duration_s - self.burst_start_s - self.burst_duration_s;
            phases.push(Phase {
                rate_per_s,
                duration_ns: ns(self.burst_start_s),
            });
            phases.push(Phase {
                rate_per_s: rate_per_s * self.burst_factor,
                duration_ns: ns(self.burst_duration_s),
            });
            phases.push(Phase {
                rate_per_s,
                duration_ns: ns(after),
            });
        } else {
            phases.push(Phase {
                rate_per_s,
                duration_ns: ns(self.duration_s),
            });
        }
        phases.retain(|p| p.duration_ns > 0);
        phases
    }

    /// Start of the measured window, ns since the epoch.
    pub fn measure_start_ns(&self) -> u64 {
        (self.warmup_s * 1e9).round() as u64
    }

    /// End of the offered load, ns since the epoch.
    pub fn load_end_ns(&self) -> u64 {
        ((self.warmup_s + self.duration_s) * 1e9).round() as u64
    }

    /// The load in a few words: "5000 rec/s steady" or "max-rate search".
    pub fn scenario_label(&self) -> String {
        let scenario = serde_json::to_value(self.scenario)
            .ok()
            .and_then(|v| v.as_str().map(String::from));
        let scenario = scenario.unwrap_or_default();
        match self.rate_mode {
            RateMode::Target => format!("{} rec/s {scenario}", self.rate_per_s),
            RateMode::Max => format!("max-rate search, then {scenario} at {} of it", self.measure_share),
            RateMode::Closed => format!(
                "closed loop, {} batches in flight per producer, {scenario}",
                self.in_flight_batches
            ),
        }
    }

    /// Closed mode: records each producer keeps in flight (its batches'
    /// worth of records of the mean size).
    pub fn closed_window_records(&self) -> Option<usize> {
        (self.rate_mode == RateMode::Closed).then(|| {
            let per_batch = (self.batch_bytes / self.record_bytes.max(1)).max(1);
            per_batch * self.in_flight_batches as usize
        })
    }

    /// Checks ranges and combinations; the message names the offending field.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |msg: String| Err(BenchError::InvalidWorkload(msg));
        if !(1..=TOPICS_MAX).contains(&self.topics) {
            return bad(format!("topics must be in 1..={TOPICS_MAX}"));
        }
        if !(1..=PARTITIONS_MAX).contains(&self.partitions) {
            return bad(format!("partitions must be in 1..={PARTITIONS_MAX}"));
        }
        if !(STAMP_LEN..=RECORD_BYTES_MAX).contains(&self.record_bytes) {
            return bad(format!(
                "record_bytes must be in {STAMP_LEN}..={RECORD_BYTES_MAX}"
            ));
        }
        if self.record_bytes_min < STAMP_LEN || self.record_bytes_min > self.record_bytes {
            return bad(format!("record_bytes_min must be in {STAMP_LEN}..=record_bytes"));
        }
        if self.key_distribution != KeyDistribution::None && !(1..=KEYS_MAX).contains(&self.keys) {
            return bad(format!("keys must be in 1..={KEYS_MAX}"));
        }
        if !(1..=THREADS_MAX).contains(&self.producers) || self.consumers > THREADS_MAX {
            return bad(format!(
                "producers must be in 1..={THREADS_MAX}, consumers in 0..={THREADS_MAX}"
            ));
        }
        if !(1..=REPLICATION_FACTOR_MAX).contains(&self.replication_factor) {
            return bad(format!(
                "replication_factor must be in 1..={REPLICATION_FACTOR_MAX}"
            ));
        }
        if self.batch_bytes < self.record_bytes * 8 {
            return bad("batch_bytes must hold at least 8 records of the largest mean size".into());
        }
        self.validate_rates()?;
        self.validate_times()?;
        self.validate_scenario()
    }

    fn validate_rates(&self) -> Result<(), BenchError> {
        let bad = |msg: &str| Err(BenchError::InvalidWorkload(msg.to_string()));
        if !(self.rate_per_s > 0.0 && self.rate_per_s <= RATE_PER_S_MAX) {
            return bad("rate_per_s must be positive and at most 1e8");
        }
        if !(1..=IN_FLIGHT_BATCHES_MAX).contains(&self.in_flight_batches) {
            return bad("in_flight_batches must be in 1..=1024");
        }
        if self.rate_mode == RateMode::Closed && self.scenario != Scenario::Steady {
            return bad("closed mode runs the steady scenario only (the others shape an offered rate)");
        }
        if !(self.measure_share > 0.0 && self.measure_share <= 1.0) {
            return bad("measure_share must be in (0, 1]");
        }
        let start = self.search_rate_start_per_s;
        if !(start > 0.0
            && start <= self.search_rate_max_per_s
            && self.search_rate_max_per_s <= RATE_PER_S_MAX)
        {
            return bad("need 0 < search_rate_start_per_s <= search_rate_max_per_s <= 1e8");
        }
        if !(self.search_slope_tolerance > 0.0 && self.search_slope_tolerance < 0.5) {
            return bad("search_slope_tolerance must be in (0, 0.5)");
        }
        if !(self.search_precision > 0.0 && self.search_precision < 1.0) {
            return bad("search_precision must be in (0, 1)");
        }
        Ok(())
    }

    fn validate_times(&self) -> Result<(), BenchError> {
        let bad = |msg: &str| Err(BenchError::InvalidWorkload(msg.to_string()));
        if !(self.duration_s > 0.0 && self.duration_s <= DURATION_S_MAX) {
            return bad("duration_s must be positive and at most a day");
        }
        if !(self.warmup_s >= 0.0 && self.warmup_s <= DURATION_S_MAX) {
            return bad("warmup_s must be in 0..=86400");
        }
        if !(self.search_trial_s >= 1.0 && self.search_trial_s <= 600.0) {
            return bad("search_trial_s must be in 1..=600");
        }
        Ok(())
    }

    fn validate_scenario(&self) -> Result<(), BenchError> {
        let bad = |msg: &str| Err(BenchError::InvalidWorkload(msg.to_string()));
        match self.scenario {
            Scenario::Burst => {
                let end = self.burst_start_s + self.burst_duration_s;
                if !(self.burst_factor >= 1.0 && self.burst_start_s >= 0.0 && self.burst_duration_s > 0.0) {
                    return bad("burst needs burst_factor >= 1, burst_start_s >= 0, burst_duration_s > 0");
                }
                if end > self.duration_s || self.consumers == 0 {
                    return bad("burst must end within duration_s and needs at least one consumer");
                }
            }
            Scenario::RetryStorm => {
                if !(0.0..=1.0).contains(&self.nack_share) || self.consumption != Consumption::Group {
                    return bad("retry-storm needs nack_share in [0, 1] and consumption = group");
                }
            }
            Scenario::Restart => {
                if !(self.restart_at_s >= 0.0 && self.restart_at_s < self.duration_s) {
                    return bad("restart_at_s must fall within the measured window");
                }
            }
            Scenario::SlowConsumer if self.consumers == 0 => return bad("slow-consumer needs consumers"),
            Scenario::Steady | Scenario::SlowConsumer => {}
        }
        Ok(())
    }
}

/// The text of a shipped preset.
pub fn preset_text(name: &str) -> Result<&'static str, BenchError> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
        .ok_or_else(|| {
            let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            BenchError::UnknownPreset(name.to_string(), known.join(", "))
        })
}

fn parse_table(origin: &str, text: &str) -> Result<toml::Table, BenchError> {
    text.parse::<toml::Table>().map_err(|e| parse_error(origin, e))
}

/// Rejects unknown keys and wrongly typed values in one layer, naming the layer.
fn check_layer(origin: &str, layer: &toml::Table) -> Result<(), BenchError> {
    let _: WorkloadLayer = layer.clone().try_into().map_err(|e| parse_error(origin, e))?;
    Ok(())
}

fn parse_error(origin: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::WorkloadParse {
        path: origin.to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_resolves_and_validates() {
        // Proves each shipped preset parses, knows only real fields and passes validation.
        for (name, _) in PRESETS {
            let w = Workload::resolve(WorkloadSource::Preset(name), &WorkloadLayer::default())
                .unwrap_or_else(|e| panic!("preset {name}: {e}"));
            assert_eq!(w.name, *name);
        }
    }

    #[test]
    fn quick_fits_in_a_minute() {
        // Proves the quick preset's offered load (warm-up + measured) leaves room within 60 s.
        let w = Workload::resolve(WorkloadSource::Preset("quick"), &WorkloadLayer::default()).unwrap();
        assert_eq!(w.rate_mode, RateMode::Target);
        assert!(w.warmup_s + w.duration_s <= 30.0);
    }

    #[test]
    fn flags_override_the_preset_field_by_field() {
        // Proves a flag wins over the preset, and untouched fields keep the preset's value.
        let flags = WorkloadLayer {
            rate_per_s: Some(123.0),
            flush: Some(Flush::Never),
            ..Default::default()
        };
        let w = Workload::resolve(WorkloadSource::Preset("burst"), &flags).unwrap();
        assert_eq!(w.rate_per_s, 123.0);
        assert_eq!(w.flush, Flush::Never);
        assert_eq!(w.burst_start_s, 5.0);
        assert_eq!(w.scenario, Scenario::Burst);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        // Proves a misspelt field and an out-of-range value are reported, not ignored.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo.toml");
        std::fs::write(&path, "rate_per_sec = 5.0\n").unwrap();
        let err = Workload::resolve(WorkloadSource::File(&path), &WorkloadLayer::default()).unwrap_err();
        assert!(err.to_string().contains("rate_per_sec"), "{err}");
        let flags = WorkloadLayer {
            record_bytes: Some(8),
            ..Default::default()
        };
        assert!(Workload::resolve(WorkloadSource::Preset("quick"), &flags).is_err());
        assert!(Workload::resolve(WorkloadSource::Preset("nope"), &WorkloadLayer::default()).is_err());
    }

    #[test]
    fn burst_phases_follow_the_settings() {
        // Proves the burst preset yields warm-up, steady, 4x burst, steady with the right lengths.
        let w = Workload::resolve(WorkloadSource::Preset("burst"), &WorkloadLayer::default()).unwrap();
        let p = w.phases(1000.0);
        let shape: Vec<(f64, u64)> = p
            .iter()
            .map(|p| (p.rate_per_s, p.duration_ns / 1_000_000_000))
            .collect();
        assert_eq!(shape, vec![(1000.0, 2), (1000.0, 5), (4000.0, 3), (1000.0, 22)]);
    }
}
