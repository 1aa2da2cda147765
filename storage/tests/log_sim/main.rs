//! Seeded power-cut simulation of the real `PartitionLog` on a simulated
//! disk (`common/sim_disk.rs`: unsynced writes dropped, kept or torn per
//! sector at a cut, unsynced directory operations lost, bit rot and
//! misdirected writes on demand).
//!
//! Each seed picks a configuration (every flush policy, small segments,
//! with or without preallocation, retention, compaction, full or partial
//! verification on open), then runs a few epochs: concurrent appenders and
//! a driver doing reads, flushes, rolls, retention, compaction and
//! `truncate_suffix`, ended by a power cut at a random moment (or a clean
//! close), then a reopen checked against the model (`model.rs`). The last
//! epoch of half the seeds damages the disk: a flipped bit in an
//! acknowledged batch, or a misdirected write.
//!
//! Invariants, per reopen:
//! - without damage, recovery never reports corruption (torn, unacknowledged
//!   writes are cut silently), and every batch that was acknowledged
//!   `Fsynced`, or appended before a flush, roll or close returned Ok, is
//!   there at its offset with its bytes; every batch read back is one the
//!   test appended, at its offset;
//! - with damage, the log never returns a batch that is not genuine, and a
//!   damaged or missing acknowledged batch is reported (`LogError::Corrupt`
//!   at open or on the read) unless it lies in the window the crate header
//!   allows: the active segment, not settled by a flush, roll or close, and
//!   not followed by two completed fdatasyncs of its segment.
//!
//! Seeds: `SHOAL_SIM_SEEDS` (default [`SEEDS_DEFAULT`], 10 to 30 seconds
//! on two busy cores) starting at `SHOAL_SIM_FIRST_SEED` (default 0);
//! `SHOAL_SIM_SEED=N` runs only seed N (`SHOAL_SIM_VERBOSE=1` prints its
//! every event and disk operation). Every failing seed is printed with the
//! command that replays it.
//!
//! With the `mutations` feature, `mutations_are_caught` runs the default
//! seeds against deliberately broken builds (acknowledging before the
//! fdatasync returns, never calling fdatasync, ignoring the checkpoint, not
//! syncing a new segment's directory entry) and requires each to fail.

#[path = "../common/mod.rs"]
mod common;
mod model;

use common::sim_disk::{CutReport, SimDisk};
use common::sim_epoch::{seeds_from_env, yield_turns, EpochTasks};
use common::TEST_IO_MEMORY_BYTES;
use glommio::{LocalExecutorBuilder, Placement};
use model::{build, Model};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_storage::checkpoint::SEGMENT_HEADER_BYTES;
use shoal_storage::{Durability, FlushPolicy, LogConfig, LogError, PartitionLog, StoredBatch, VerifyOnOpen};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Seeds a plain `cargo test` runs.
const SEEDS_DEFAULT: u64 = 4000;
/// With at least this many seeds, a run must have torn writes at cuts and
/// reported damage at least once, or it proved nothing.
const SEEDS_FOR_COVERAGE: usize = 500;
const LOG_DIR: &str = "/sim/log";

type Log = PartitionLog<SimDisk>;

/// The seed being run, printed by the panic hook if the log panics.
static CURRENT_SEED: AtomicU64 = AtomicU64::new(u64::MAX);

/// Prints the run's events when `SHOAL_SIM_VERBOSE` is set (with the
/// disk's operations), for replaying one seed.
fn verbose() -> bool {
    std::env::var_os("SHOAL_SIM_VERBOSE").is_some()
}

macro_rules! note {
    ($($arg:tt)*) => {
        if verbose() {
            println!($($arg)*);
        }
    };
}

/// How a seed's damage (if any) was answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    cuts: u64,
    clean_closes: u64,
    acked: u64,
    /// Writes a power cut tore or dropped.
    writes_lost: u64,
    damage: Option<Damage>,
    verdict: Option<Verdict>,
    trace: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    Rot,
    Misdirect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Open failed with `LogError::Corrupt`.
    ReportedAtOpen,
    /// A read (or another operation) failed with `LogError::Corrupt`.
    ReportedOnRead,
    /// The damaged batch was cut as a torn tail: allowed in the window.
    CutInWindow,
    /// Nothing acknowledged was hit (a misdirected write into free space).
    Harmless,
}

/// Every acknowledged batch survives random power cuts at its offset with
/// its bytes; torn writes are never reported as corruption; damage to an
/// acknowledged batch is reported, never cut silently (outside the window).
#[test]
fn power_cuts_keep_every_acknowledged_batch() {
    let seeds = seeds_from_env(SEEDS_DEFAULT);
    install_seed_reporter();
    let started = std::time::Instant::now();
    let results = run_deterministic(move || async move {
        let mut results = Vec::new();
        for seed in seeds {
            CURRENT_SEED.store(seed, Ordering::Relaxed);
            results.push((seed, run_seed(seed).await));
        }
        CURRENT_SEED.store(u64::MAX, Ordering::Relaxed);
        results
    });
    let failures: Vec<&(u64, Result<Outcome, String>)> = results.iter().filter(|(_, r)| r.is_err()).collect();
    for (seed, result) in &failures {
        println!(
            "seed {seed} FAILED: {}\n  replay: SHOAL_SIM_SEED={seed} cargo test -p shoal-storage --test log_sim -- --nocapture",
            result.as_ref().expect_err("a failure")
        );
    }
    print_summary(&results, started.elapsed());
    check_coverage(&results);
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed",
        failures.len(),
        results.len()
    );
}

/// Fails unless the run tore or dropped writes at cuts and saw damage
/// reported: otherwise it proved nothing.
fn check_coverage(results: &[(u64, Result<Outcome, String>)]) {
    if results.len() < SEEDS_FOR_COVERAGE {
        return;
    }
    let ok: Vec<&Outcome> = results.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    let lost: u64 = ok.iter().map(|o| o.writes_lost).sum();
    let reported = ok
        .iter()
        .filter(|o| matches!(o.verdict, Some(Verdict::ReportedAtOpen | Verdict::ReportedOnRead)))
        .count();
    assert!(
        lost > 0,
        "no power cut tore or dropped a write: the cuts tested nothing"
    );
    assert!(
        reported > 0,
        "no damage was ever reported: the damage checks tested nothing"
    );
}

/// Each deliberately broken build fails the default seeds (run in a child
/// process each: the mutation is chosen once per process).
#[cfg(feature = "mutations")]
#[test]
fn mutations_are_caught() {
    for mutation in [
        "ack-before-sync",
        "skip-fdatasync",
        "ignore-checkpoint",
        "skip-dir-sync",
    ] {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "power_cuts_keep_every_acknowledged_batch",
                "--exact",
                "--nocapture",
            ])
            .env("SHOAL_STORAGE_MUTATION", mutation)
            .env_remove("SHOAL_SIM_SEED")
            .output()
            .expect("run the simulation");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let first = stdout.lines().find(|l| l.contains("FAILED:")).unwrap_or("");
        let failed = stdout.lines().filter(|l| l.contains("FAILED:")).count();
        println!("{mutation}: {failed} failing seeds; first: {first}");
        assert!(!out.status.success(), "the simulation did not catch {mutation}");
        assert!(failed > 0, "{mutation}: no failing seed printed");
    }
}

/// The same seed twice gives the same run, operation for operation.
#[test]
fn a_seed_replays_exactly() {
    let seeds = [3, 17, 101];
    let twice = run_deterministic(move || async move {
        let mut out = Vec::new();
        for seed in seeds {
            out.push((run_seed(seed).await, run_seed(seed).await));
        }
        out
    });
    for (seed, (first, second)) in seeds.iter().zip(twice) {
        let (first, second) = (first.expect("first run"), second.expect("second run"));
        assert!(
            first.cuts > 0 || first.clean_closes > 0,
            "seed {seed} did nothing"
        );
        assert_eq!(first, second, "seed {seed} did not replay exactly");
    }
}

/// Runs `f` on an executor whose scheduling depends on nothing but the
/// tasks: the simulated disk completes I/O after a number of turns, and the
/// preemption timer (which would make `yield_if_needed` yield at moments
/// set by the wall clock) is pushed out of reach, so a seed replays exactly.
fn run_deterministic<F, T>(f: impl FnOnce() -> F) -> T
where
    F: std::future::Future<Output = T> + 'static,
    T: 'static,
{
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(TEST_IO_MEMORY_BYTES)
        .preempt_timer(std::time::Duration::from_secs(24 * 3600))
        .make()
        .expect("executor");
    ex.run(f())
}

fn install_seed_reporter() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let seed = CURRENT_SEED.load(Ordering::Relaxed);
        if seed != u64::MAX {
            eprintln!("panic while running seed {seed}; replay: SHOAL_SIM_SEED={seed} cargo test -p shoal-storage --test log_sim -- --nocapture");
        }
        default(info);
    }));
}

fn print_summary(results: &[(u64, Result<Outcome, String>)], took: std::time::Duration) {
    let ok: Vec<&Outcome> = results.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    let count = |v: Verdict| ok.iter().filter(|o| o.verdict == Some(v)).count();
    println!(
        "log_sim: {} seeds in {:.1} s: {} power cuts, {} clean closes, {} acknowledged batches; damage: {} rot, {} misdirected; \
         reported at open {}, on read {}, cut in the window {}, harmless {}",
        results.len(),
        took.as_secs_f64(),
        ok.iter().map(|o| o.cuts).sum::<u64>(),
        ok.iter().map(|o| o.clean_closes).sum::<u64>(),
        ok.iter().map(|o| o.acked).sum::<u64>(),
        ok.iter().filter(|o| o.damage == Some(Damage::Rot)).count(),
        ok.iter().filter(|o| o.damage == Some(Damage::Misdirect)).count(),
        count(Verdict::ReportedAtOpen),
        count(Verdict::ReportedOnRead),
        count(Verdict::CutInWindow),
        count(Verdict::Harmless),
    );
}

/// One seed's world: the disk, the configuration, the model.
struct Sim {
    disk: SimDisk,
    config: LogConfig,
    model: RefCell<Model>,
    rng: RefCell<StdRng>,
    next_tag: Cell<u64>,
    acked: Cell<u64>,
    /// A fault was injected: corruption reports are expected from now on.
    damaged: Cell<bool>,
    /// An operation reported corruption while running.
    reported: Cell<bool>,
}

fn random_config(rng: &mut StdRng) -> LogConfig {
    let segment = rng.gen_range(8..=32u64) << 10;
    LogConfig {
        flush: match rng.gen_range(0..10) {
            0..=4 => FlushPolicy::Always,
            5..=6 => FlushPolicy::IntervalMs(3_600_000),
            _ => FlushPolicy::Never,
        },
        segment_bytes_max: segment,
        preallocate_bytes: if rng.gen_bool(0.5) { segment } else { 0 },
        write_chunk_bytes: if rng.gen_bool(0.5) { 4096 } else { 8192 },
        write_depth_max: rng.gen_range(1..=4),
        pending_bytes_max: 32 << 10,
        cache_bytes_max: rng.gen_range(2..=16) << 10,
        index_interval_bytes: 512,
        read_chunk_bytes: 4096,
        retention_bytes: rng.gen_bool(0.3).then(|| rng.gen_range(16..=64u64) << 10),
        compacted: rng.gen_bool(0.2),
        verify_on_open: if rng.gen_bool(0.3) {
            VerifyOnOpen::AllSegments
        } else {
            VerifyOnOpen::ActiveSegment
        },
        ..LogConfig::default()
    }
}

async fn run_seed(seed: u64) -> Result<Outcome, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let config = random_config(&mut rng);
    let epochs = rng.gen_range(2..=4);
    let damage = match rng.gen_range(0..10) {
        0..=3 => Some(Damage::Rot),
        4..=5 => Some(Damage::Misdirect),
        _ => None,
    };
    note!("seed {seed}: {config:?}, {epochs} epochs, damage {damage:?}");
    let sim = Rc::new(Sim {
        disk: SimDisk::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5eed),
        model: RefCell::new(Model::new(config.compacted)),
        config,
        rng: RefCell::new(rng),
        next_tag: Cell::new(1),
        acked: Cell::new(0),
        damaged: Cell::new(false),
        reported: Cell::new(false),
    });
    let mut outcome = Outcome {
        damage,
        ..Outcome::default()
    };
    for epoch in 0..epochs {
        let last = epoch + 1 == epochs;
        let log = sim
            .open_checked()
            .await
            .map_err(|e| format!("epoch {epoch}: {e}"))?;
        if last && damage == Some(Damage::Misdirect) {
            let (countdown, shift) = sim.with_rng(|r| (r.gen_range(0..12), r.gen_range(1..=16i64) * 512));
            let shift = if sim.with_rng(|r| r.gen_bool(0.5)) {
                shift
            } else {
                -shift
            };
            // Aimed at data: a misdirected header write would damage two
            // regions at once (the checkpoint it fails to update, and the
            // data it lands on), outside the fault model the log claims.
            sim.disk.misdirect_write(countdown, shift, SEGMENT_HEADER_BYTES);
            sim.damaged.set(true);
        }
        let cut = sim
            .run_epoch(log, last && damage.is_some())
            .await
            .map_err(|e| format!("epoch {epoch}: {e}"))?;
        if cut {
            let report: CutReport = sim.disk.power_on();
            note!("epoch {epoch}: power cut: {report:?}");
            outcome.cuts += 1;
            outcome.writes_lost += (report.writes_torn + report.writes_dropped) as u64;
        } else {
            outcome.clean_closes += 1;
        }
    }
    outcome.verdict = match damage {
        None => {
            let log = sim.open_checked().await.map_err(|e| format!("final open: {e}"))?;
            log.close().await.map_err(|e| format!("final close: {e}"))?;
            None
        }
        Some(Damage::Rot) => Some(sim.rot_and_judge().await?),
        Some(Damage::Misdirect) => Some(sim.judge_damaged(None).await?),
    };
    if sim.reported.get() && outcome.verdict == Some(Verdict::Harmless) {
        outcome.verdict = Some(Verdict::ReportedOnRead);
    }
    outcome.acked = sim.acked.get();
    outcome.trace = sim.disk.trace_digest();
    Ok(outcome)
}

impl Sim {
    fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.rng.borrow_mut())
    }

    async fn open(&self) -> Result<Rc<Log>, LogError> {
        PartitionLog::open_on(self.disk.clone(), LOG_DIR, self.config.clone()).await
    }

    /// Opens with no damage on the disk: recovery must succeed, and the
    /// log must agree with the model.
    async fn open_checked(&self) -> Result<Rc<Log>, String> {
        let log = self.open().await.map_err(|e| format!("open: {e}"))?;
        let read = read_all(&log)
            .await
            .map_err(|e| format!("reading after open: {e}"))?;
        note!(
            "opened: [{}, {}), segments {:?}, batches {:?}",
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_bases(),
            read.iter()
                .map(|b| (b.base_offset, b.next_offset))
                .collect::<Vec<_>>()
        );
        self.model
            .borrow_mut()
            .reconcile(&read, log.log_start_offset(), log.log_end_offset())
            .map_err(|e| format!("after open: {e}"))?;
        Ok(log)
    }

    /// One epoch: appenders and a driver until a power cut at a random
    /// moment (returns true) or a clean close once their work is done.
    async fn run_epoch(self: &Rc<Self>, log: Rc<Log>, must_cut: bool) -> Result<bool, String> {
        let (appenders, cut_in, close_cleanly) = self.with_rng(|r| {
            (
                r.gen_range(1..=4),
                r.gen_range(10..800u64),
                !must_cut && r.gen_bool(0.25),
            )
        });
        let cut_at = self.disk.now() + cut_in;
        let mut tasks = EpochTasks::default();
        for _ in 0..appenders {
            let appends = self.with_rng(|r| r.gen_range(2..=16));
            tasks.spawn(append_task(self.clone(), log.clone(), appends));
        }
        let ops = self.with_rng(|r| r.gen_range(0..=10));
        tasks.spawn(driver_task(self.clone(), log.clone(), ops));
        let mut cut = tasks.run(&self.disk, (!close_cleanly).then_some(cut_at)).await?;
        if !cut && close_cleanly {
            let end = log.log_end_offset();
            log.close().await.map_err(|e| format!("close: {e}"))?;
            self.model.borrow_mut().settle(end);
        } else if !cut {
            self.disk.power_cut();
            cut = true;
        }
        drop(log);
        yield_turns(8).await;
        Ok(cut)
    }

    /// An error from the log is a failure while the disk has power,
    /// unless it reports corruption after a fault was injected.
    fn failure(&self, what: &str, e: LogError) -> Result<(), String> {
        let reports_damage = match &e {
            LogError::Corrupt { .. } => true,
            // An operation that met the damage fenced the log.
            LogError::Fenced { cause, .. } => cause.contains("corrupt"),
            _ => false,
        };
        if self.damaged.get() && reports_damage {
            self.reported.set(true);
            return Ok(());
        }
        if self.disk.is_powered() {
            Err(format!("{what} failed with the power on: {e}"))
        } else {
            Ok(())
        }
    }

    fn new_batch(&self) -> (u64, bytes::BytesMut) {
        let tag = self.next_tag.get();
        self.next_tag.set(tag + 1);
        let (records, len) = self.with_rng(|r| (r.gen_range(1..=3), r.gen_range(0..=1500)));
        let (bytes, source) = build(tag, records, len);
        self.model.borrow_mut().add_source(tag, source);
        (tag, bytes)
    }

    /// Records an acknowledgement after checking it claims no less than
    /// the policy promises.
    fn record_ack(&self, tag: u64, ack: &shoal_storage::AppendAck, wanted: Durability) -> Result<(), String> {
        if ack.durability < wanted {
            return Err(format!("ack {ack:?} below the requested {wanted:?}"));
        }
        self.acked.set(self.acked.get() + 1);
        let fsynced = ack.durability == Durability::Fsynced;
        note!(
            "ack tag {tag}: [{}, {}] {:?} at disk {}",
            ack.base_offset,
            ack.last_offset,
            ack.durability,
            self.disk.now()
        );
        self.model.borrow_mut().ack(
            tag,
            ack.base_offset,
            ack.last_offset + 1,
            ack.append_time_ms,
            fsynced,
            self.disk.now(),
        )
    }

    /// Flips a bit of an acknowledged, durable batch on the medium, then
    /// judges the reopen.
    async fn rot_and_judge(&self) -> Result<Verdict, String> {
        let Some(target) = self.pick_rot_target() else {
            // Nothing acknowledged and durable to damage: check plainly.
            let log = self
                .open_checked()
                .await
                .map_err(|e| format!("final open: {e}"))?;
            log.close().await.map_err(|e| format!("final close: {e}"))?;
            return Ok(Verdict::Harmless);
        };
        self.disk.rot(&target.path, target.position, target.mask);
        self.damaged.set(true);
        self.judge_damaged(Some(target)).await
    }

    fn pick_rot_target(&self) -> Option<RotTarget> {
        let model = self.model.borrow();
        let candidates: Vec<(u64, u64, Vec<u8>, u64)> = model
            .batches
            .range(model.start..)
            .filter(|(&base, p)| {
                p.next <= model.durable_end() && !(model.compacted && base < model.compacted_below)
            })
            .filter_map(|(&base, p)| Some((base, p.next, p.exact.clone()?, p.acked_at?)))
            .collect();
        drop(model);
        if candidates.is_empty() {
            return None;
        }
        let (base, next, bytes, acked_at) =
            candidates[self.with_rng(|r| r.gen_range(0..candidates.len()))].clone();
        let segments = segment_files(&self.disk);
        let (seg_base, path) = segments.iter().rev().find(|(b, _)| *b <= base)?.clone();
        let content = self.disk.contents(&path)?;
        let at = find(&content, &bytes)?;
        let sealed = segments.last().is_some_and(|(b, _)| *b > seg_base);
        let protected = self.is_protected(sealed, next, &path, acked_at);
        let only_crc_covered =
            !protected || (sealed && self.config.verify_on_open == VerifyOnOpen::ActiveSegment);
        let offset_in_batch = self.with_rng(|r| loop {
            let i = r.gen_range(0..bytes.len());
            if !(only_crc_covered && (12..24).contains(&i)) {
                break i;
            }
        });
        Some(RotTarget {
            path,
            position: (at + offset_in_batch) as u64,
            mask: 1 << self.with_rng(|r| r.gen_range(0..8)),
            base,
            protected,
        })
    }

    /// Whether the log must report damage to the batch ending at `next`
    /// (acknowledged at disk time `acked_at`, in the segment file `path`):
    /// it is in a sealed segment, or a flush, roll or close returned after
    /// it, or two fdatasyncs of its file started after it and returned.
    fn is_protected(&self, sealed: bool, next: u64, path: &Path, acked_at: u64) -> bool {
        sealed || self.model.borrow().settled >= next || self.disk.syncs_since(path, acked_at) >= 2
    }

    /// Reopens a damaged disk: the damage must be reported, or the log must
    /// return only genuine batches and miss only unprotected ones.
    async fn judge_damaged(&self, rot: Option<RotTarget>) -> Result<Verdict, String> {
        let log = match self.open().await {
            Err(LogError::Corrupt { .. }) => return Ok(Verdict::ReportedAtOpen),
            Err(e) => return Err(format!("damaged open failed with a non-corruption error: {e}")),
            Ok(log) => log,
        };
        let read = match read_all(&log).await {
            Err(LogError::Corrupt { .. }) => return Ok(Verdict::ReportedOnRead),
            Err(e) => return Err(format!("damaged read failed with a non-corruption error: {e}")),
            Ok(read) => read,
        };
        let model = self.model.borrow();
        for stored in &read {
            model
                .check_batch(stored)
                .map_err(|e| format!("damage went unreported, a read returned a wrong batch: {e}"))?;
        }
        let present: std::collections::BTreeSet<u64> = read.iter().map(|b| b.base_offset).collect();
        let segments = segment_files(&self.disk);
        let mut verdict = Verdict::Harmless;
        // Retention cut short by the power cut may have taken a prefix.
        let start = if model.retaining {
            model.start.max(log.log_start_offset())
        } else {
            model.start
        };
        for (&base, placed) in model.batches.range(start..) {
            if placed.next > model.durable_end()
                || present.contains(&base)
                || (model.compacted && base < model.compacted_below)
            {
                continue;
            }
            let Some((seg_base, path)) = segments.iter().rev().find(|(b, _)| *b <= base) else {
                return Err(format!("durable batch at {base} lost with its segment file"));
            };
            let sealed = segments.last().is_some_and(|(b, _)| b > seg_base);
            let acked_at = placed.acked_at.unwrap_or(0);
            if self.is_protected(sealed, placed.next, path, acked_at) {
                let hit = rot.as_ref().map_or(String::new(), |t| {
                    format!(" (bit flipped in the batch at {})", t.base)
                });
                return Err(format!(
                    "protected batch at {base} (tag {}) cut silently after damage{hit}",
                    placed.tag
                ));
            }
            verdict = Verdict::CutInWindow;
        }
        if let Some(target) = &rot {
            if present.contains(&target.base) {
                return Err(format!(
                    "the batch at {} was damaged yet read back as genuine",
                    target.base
                ));
            }
            if target.protected {
                return Err(format!("protected damaged batch at {} cut silently", target.base));
            }
        }
        Ok(verdict)
    }
}

struct RotTarget {
    path: PathBuf,
    position: u64,
    mask: u8,
    base: u64,
    protected: bool,
}

/// The segment files on the disk, by base offset.
fn segment_files(disk: &SimDisk) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = disk
        .files()
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let base = name.strip_suffix(".log")?.parse().ok()?;
            Some((base, p))
        })
        .collect();
    out.sort();
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Every batch from the log start to the log end.
async fn read_all(log: &Log) -> Result<Vec<StoredBatch>, LogError> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let read = log.read_uncommitted(at, 1 << 16).await?;
        let Some(next) = read.next_offset() else { break };
        out.extend(read.batches);
        at = next;
    }
    Ok(out)
}

/// Appends `appends` batches (sometimes two in one `append_all`).
async fn append_task(sim: Rc<Sim>, log: Rc<Log>, appends: u32) -> Result<(), String> {
    let wanted = log.default_durability();
    for _ in 0..appends {
        let pause = sim.with_rng(|r| r.gen_range(0..4));
        for _ in 0..pause {
            glommio::executor().yield_now().await;
        }
        let run = if sim.with_rng(|r| r.gen_bool(0.15)) { 2 } else { 1 };
        let (tags, batches): (Vec<u64>, Vec<bytes::BytesMut>) = (0..run).map(|_| sim.new_batch()).unzip();
        match log.append_all(batches, wanted).await {
            Ok(acks) => {
                for (tag, ack) in tags.iter().zip(&acks) {
                    sim.record_ack(*tag, ack, wanted)?;
                }
            }
            Err(e) => return sim.failure("append", e),
        }
    }
    Ok(())
}

/// Runs `ops` random operations beside the appenders.
async fn driver_task(sim: Rc<Sim>, log: Rc<Log>, ops: u32) -> Result<(), String> {
    for _ in 0..ops {
        let pause = sim.with_rng(|r| r.gen_range(0..20));
        for _ in 0..pause {
            glommio::executor().yield_now().await;
        }
        let pick = sim.with_rng(|r| r.gen_range(0..10));
        note!("driver op {pick} at disk {}", sim.disk.now());
        let done = match pick {
            0..=2 => read_some(&sim, &log).await,
            3 => settle_with(&sim, &log, "flush", log.flush()).await,
            4 => settle_with(&sim, &log, "roll", log.roll()).await,
            5 => retention(&sim, &log).await,
            6 if sim.config.compacted => compact(&sim, &log).await,
            7 => truncate(&sim, &log).await,
            _ => Ok(true),
        }?;
        if !done {
            return Ok(());
        }
    }
    Ok(())
}

/// Ok(false): the operation failed after the power cut; the driver stops.
type Step = Result<bool, String>;

fn stop_or_fail(sim: &Sim, what: &str, e: LogError) -> Step {
    sim.failure(what, e).map(|()| false)
}

async fn read_some(sim: &Sim, log: &Log) -> Step {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let at = sim.with_rng(|r| r.gen_range(start..=end));
    let max = sim.with_rng(|r| r.gen_range(1..=20_000));
    match log.read(at, max).await {
        Ok(read) => {
            let model = sim.model.borrow();
            for stored in &read.batches {
                model
                    .check_batch(stored)
                    .map_err(|e| format!("read at {at}: {e}"))?;
            }
            Ok(true)
        }
        Err(e) => stop_or_fail(sim, "read", e),
    }
}

/// A flush or roll: once it returns Ok, everything appended before it is
/// durable and settled.
async fn settle_with(
    sim: &Sim,
    log: &Log,
    what: &str,
    op: impl std::future::Future<Output = Result<(), LogError>>,
) -> Step {
    let end = log.log_end_offset();
    match op.await {
        Ok(()) => {
            sim.model.borrow_mut().settle(end);
            Ok(true)
        }
        Err(e) => stop_or_fail(sim, what, e),
    }
}

async fn retention(sim: &Sim, log: &Log) -> Step {
    let before = log.log_start_offset();
    sim.model.borrow_mut().retaining = true;
    match log.apply_retention(i64::MAX).await {
        Ok(deleted) => {
            let start = log.log_start_offset();
            if (deleted > 0) != (start > before) {
                return Err(format!(
                    "retention deleted {deleted} segments, start {before} -> {start}"
                ));
            }
            sim.model.borrow_mut().retain_from(start);
            Ok(true)
        }
        Err(e) => stop_or_fail(sim, "retention", e),
    }
}

async fn compact(sim: &Sim, log: &Log) -> Step {
    let result = log.compact(i64::MAX / 2).await;
    // Segments rolled while compaction waited its turn may have been
    // compacted too, and one interrupted by a cut may have replaced some
    // segments already: everything before the active segment may be.
    let sealed_end = log.segment_bases().last().copied().unwrap_or(0);
    {
        let mut model = sim.model.borrow_mut();
        model.compacted_below = model.compacted_below.max(sealed_end);
    }
    match result {
        Ok(_) => Ok(true),
        Err(e) => stop_or_fail(sim, "compaction", e),
    }
}

async fn truncate(sim: &Sim, log: &Log) -> Step {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let back = sim.with_rng(|r| r.gen_range(0..12));
    // A compacted log is truncated only above the high watermark, as a
    // replica's log is (raft never cuts committed entries): compaction may
    // have used the records below it to drop older ones.
    let floor = if sim.config.compacted {
        log.high_watermark()
    } else {
        start
    };
    let target = end.saturating_sub(back).max(floor);
    sim.model.borrow_mut().truncating = Some(target);
    match log.truncate_suffix(target).await {
        Ok(new_end) if new_end > target => Err(format!("truncate_suffix({target}) kept up to {new_end}")),
        Ok(new_end) => {
            sim.model.borrow_mut().truncate(new_end);
            Ok(true)
        }
        Err(e) => stop_or_fail(sim, "truncate_suffix", e),
    }
}
