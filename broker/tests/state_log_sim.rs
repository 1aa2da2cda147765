//! Seeded power-cut simulation of the delivery state log (committed
//! offsets, failure counts, redriven records) on the storage crate's
//! simulated disk (`storage/tests/common/sim_disk.rs`: unsynced writes
//! dropped, kept or torn per sector at a cut, unsynced directory operations
//! lost).
//!
//! Each seed runs a few epochs on one disk: concurrent writers append
//! changes (puts and tombstones over a small key space, as a coordinator
//! does), a driver rolls and compacts the log, and the epoch ends with a
//! power cut at a random moment or a clean close. Every reopen replays the
//! log and checks, against the changes in the order they were issued:
//! - the replayed state is the state after some prefix of the changes
//!   (never a change without an earlier one, never a value nobody wrote);
//! - that prefix holds every change whose append returned Ok (fsynced),
//!   so no acknowledged commit, failure count or redrive is lost, and
//!   compaction (also cut halfway) never resurrects or drops a key.
//!
//! Seeds: `SHOAL_SIM_SEEDS` (default [`SEEDS_DEFAULT`]) from
//! `SHOAL_SIM_FIRST_SEED`; `SHOAL_SIM_SEED=N` runs one seed.

#[path = "../../storage/tests/common/sim_disk.rs"]
mod sim_disk;
#[path = "../../storage/tests/common/sim_epoch.rs"]
mod sim_epoch;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_broker::delivery::state_log::{State, StateKey, StateLog, StateRecord, StateValue};
use sim_disk::SimDisk;
use sim_epoch::{seeds_from_env, yield_turns, EpochTasks};

const SEEDS_DEFAULT: u64 = 3000;
/// Small segments so rolls and compaction have sealed segments to rewrite.
const SEGMENT_BYTES: u64 = 64 << 10;
const DIR: &str = "/sim/internal/shard-0";

type Log = StateLog<SimDisk>;

/// The changes in the order they were issued, and which were acknowledged.
#[derive(Default)]
struct Model {
    changes: Vec<Vec<StateRecord>>,
    /// Changes `[0, acked)` must survive (the last acknowledged one and,
    /// by the log's order, every one issued before it).
    acked: usize,
}

impl Model {
    /// The state after the first `n` changes.
    fn state_after(&self, n: usize) -> State {
        let mut state = State::new();
        for change in &self.changes[..n] {
            apply(&mut state, change);
        }
        state
    }

    /// The prefix length whose state `replayed` is, at least `acked`.
    fn matching_prefix(&self, replayed: &State) -> Option<usize> {
        let mut state = self.state_after(self.acked);
        if &state == replayed {
            return Some(self.acked);
        }
        for n in self.acked..self.changes.len() {
            apply(&mut state, &self.changes[n]);
            if &state == replayed {
                return Some(n + 1);
            }
        }
        None
    }
}

impl Model {
    /// How `replayed` differs from the state after every change, with the
    /// history of each differing key (change index: value).
    fn explain(&self, replayed: &State) -> String {
        let expected = self.state_after(self.changes.len());
        let mut keys: Vec<&StateKey> = expected.keys().chain(replayed.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut out = String::new();
        for key in keys {
            if expected.get(key) == replayed.get(key) {
                continue;
            }
            let history: Vec<String> = self
                .changes
                .iter()
                .enumerate()
                .flat_map(|(i, c)| c.iter().filter(|r| &r.key == key).map(move |r| (i, r)))
                .map(|(i, r)| format!("{i}: {:?}", r.value))
                .collect();
            out += &format!(
                "\n  {key:?}: replayed {:?}, expected {:?}; history [{}]",
                replayed.get(key),
                expected.get(key),
                history.join(", ")
            );
        }
        out
    }
}

fn apply(state: &mut State, change: &[StateRecord]) {
    for r in change {
        match &r.value {
            Some(v) => {
                state.insert(r.key.clone(), v.clone());
            }
            None => {
                state.remove(&r.key);
            }
        }
    }
}

struct Sim {
    disk: SimDisk,
    rng: RefCell<StdRng>,
    model: RefCell<Model>,
    /// Distinct values, so a replayed value names the change that wrote it.
    next_value: Cell<u64>,
}

impl Sim {
    fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.rng.borrow_mut())
    }

    fn now_ms(&self) -> i64 {
        1_700_000_000_000 + self.disk.now() as i64
    }

    fn random_change(&self) -> Vec<StateRecord> {
        let n = self.with_rng(|r| r.gen_range(1..=4));
        (0..n)
            .map(|_| {
                let (kind, k, delete) =
                    self.with_rng(|r| (r.gen_range(0..3), r.gen_range(0..4u32), r.gen_bool(0.2)));
                let v = self.next_value.get();
                self.next_value.set(v + 1);
                let key = match kind {
                    0 => StateKey::Committed {
                        group: "g".into(),
                        topic: "orders".into(),
                        partition: k,
                    },
                    1 => StateKey::Failures {
                        group: "g".into(),
                        topic: "orders".into(),
                        partition: 0,
                        offset: u64::from(k),
                    },
                    _ => StateKey::Redriven {
                        group: "g".into(),
                        topic: "orders".into(),
                        partition: 1,
                        offset: u64::from(k),
                    },
                };
                if delete {
                    return StateRecord::delete(key);
                }
                let value = match &key {
                    StateKey::Committed { .. } => StateValue::Committed(v),
                    StateKey::Failures { .. } => StateValue::Failures {
                        failures: v as u32,
                        first_failure_ms: v as i64,
                        last_failure_ms: v as i64 + 1,
                        reason: format!("failure {v}"),
                    },
                    _ => StateValue::Redriven {
                        redrive_count: v as u32,
                    },
                };
                StateRecord::put(key, value)
            })
            .collect()
    }

    /// Opens the log and checks the replayed state against the model.
    async fn open_checked(&self) -> Result<Log, String> {
        let (log, replayed) = StateLog::open_on(self.disk.clone(), Path::new(DIR), SEGMENT_BYTES)
            .await
            .map_err(|e| format!("open: {e}"))?;
        let mut model = self.model.borrow_mut();
        let Some(n) = model.matching_prefix(&replayed) else {
            return Err(format!(
                "replayed state is no prefix of the changes from {} (acknowledged) to {}; against all of them: {}",
                model.acked,
                model.changes.len(),
                model.explain(&replayed)
            ));
        };
        // What did not survive is gone: the log goes on from the prefix.
        model.changes.truncate(n);
        model.acked = n;
        Ok(log)
    }

    /// Runs one epoch; returns whether it ended in a power cut.
    async fn run_epoch(self: &Rc<Self>, log: Rc<Log>) -> Result<bool, String> {
        let (writers, cut_in, close_cleanly) =
            self.with_rng(|r| (r.gen_range(1..=3), r.gen_range(10..1500u64), r.gen_bool(0.2)));
        let cut_at = self.disk.now() + cut_in;
        let mut tasks = EpochTasks::default();
        for _ in 0..writers {
            let appends = self.with_rng(|r| r.gen_range(5..=60));
            tasks.spawn(writer(self.clone(), log.clone(), appends));
        }
        let ops = self.with_rng(|r| r.gen_range(0..=6));
        tasks.spawn(driver(self.clone(), log.clone(), ops));
        let mut cut = tasks.run(&self.disk, (!close_cleanly).then_some(cut_at)).await?;
        if !cut && close_cleanly {
            log.close().await;
            if let Some(cause) = log.fenced() {
                return Err(format!("fenced with the power on: {cause}"));
            }
        } else if !cut {
            self.disk.power_cut();
            cut = true;
        }
        drop(log);
        yield_turns(8).await;
        Ok(cut)
    }

    fn failure(&self, what: &str, e: impl std::fmt::Display) -> Result<(), String> {
        if self.disk.is_powered() {
            Err(format!("{what} failed with the power on: {e}"))
        } else {
            Ok(())
        }
    }
}

/// Issues `appends` changes, as a coordinator does: the change is decided
/// (and its place in the order taken) right before the append is called.
async fn writer(sim: Rc<Sim>, log: Rc<Log>, appends: u32) -> Result<(), String> {
    for _ in 0..appends {
        if !sim.disk.is_powered() {
            return Ok(());
        }
        let change = sim.random_change();
        let index = {
            let mut model = sim.model.borrow_mut();
            model.changes.push(change.clone());
            model.changes.len() - 1
        };
        match log.append(change, sim.now_ms()).await {
            Ok(()) => {
                let mut model = sim.model.borrow_mut();
                model.acked = model.acked.max(index + 1);
            }
            Err(e) => return sim.failure("append", e),
        }
        if sim.with_rng(|r| r.gen_bool(0.3)) {
            glommio::executor().yield_now().await;
        }
    }
    Ok(())
}

/// Rolls and compacts the log between the writers' appends.
async fn driver(sim: Rc<Sim>, log: Rc<Log>, ops: u32) -> Result<(), String> {
    for _ in 0..ops {
        let turns = sim.with_rng(|r| r.gen_range(0..40));
        for _ in 0..turns {
            glommio::executor().yield_now().await;
        }
        if !sim.disk.is_powered() {
            return Ok(());
        }
        let result = match sim.with_rng(|r| r.gen_range(0..3)) {
            0 => log.roll().await,
            _ => log.compact(sim.now_ms()).await,
        };
        if let Err(e) = result {
            return sim.failure("roll/compact", e);
        }
    }
    Ok(())
}

/// Power cuts and changes surviving at the end, or why the seed failed.
type SeedResult = Result<(u64, usize), String>;

async fn run_seed(seed: u64) -> SeedResult {
    let sim = Rc::new(Sim {
        disk: SimDisk::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x57a7e),
        rng: RefCell::new(StdRng::seed_from_u64(seed)),
        model: RefCell::new(Model::default()),
        next_value: Cell::new(1),
    });
    let epochs = sim.with_rng(|r| r.gen_range(2..=5));
    let mut cuts = 0;
    for epoch in 0..epochs {
        let log = sim
            .open_checked()
            .await
            .map_err(|e| format!("epoch {epoch}: {e}"))?;
        if sim
            .run_epoch(Rc::new(log))
            .await
            .map_err(|e| format!("epoch {epoch}: {e}"))?
        {
            sim.disk.power_on();
            cuts += 1;
        }
    }
    let log = sim.open_checked().await.map_err(|e| format!("final open: {e}"))?;
    log.close().await;
    let acked = sim.model.borrow().acked;
    Ok((cuts, acked))
}

/// Every acknowledged change to the delivery state survives power cuts
/// (also during rolls and compaction), and the replayed state is always
/// the state after a prefix of the changes in issue order.
#[test]
fn power_cuts_keep_every_acknowledged_change() {
    let seeds = seeds_from_env(SEEDS_DEFAULT);
    let started = std::time::Instant::now();
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .preempt_timer(std::time::Duration::from_secs(24 * 3600))
        .make()
        .expect("executor");
    let results: Vec<(u64, SeedResult)> = ex.run(async move {
        let mut results = Vec::new();
        for seed in seeds {
            results.push((seed, run_seed(seed).await));
        }
        results
    });
    let mut failed = 0;
    let (mut cuts, mut changes) = (0u64, 0usize);
    let mut by_value: BTreeMap<bool, usize> = BTreeMap::new();
    for (seed, result) in &results {
        match result {
            Ok((c, n)) => {
                cuts += c;
                changes += n;
                *by_value.entry(*n > 0).or_default() += 1;
            }
            Err(e) => {
                failed += 1;
                println!(
                    "seed {seed} FAILED: {e}\n  replay: SHOAL_SIM_SEED={seed} cargo test -p shoal-broker --test state_log_sim -- --nocapture"
                );
            }
        }
    }
    println!(
        "state_log_sim: {} seeds in {:.1} s: {cuts} power cuts, {changes} changes surviving at the end",
        results.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(failed, 0, "{failed} of {} seeds failed", results.len());
    if results.len() >= 100 {
        assert!(cuts > 0, "no power cut happened: the run tested nothing");
        assert!(
            by_value.get(&true).copied().unwrap_or(0) > results.len() / 2,
            "most seeds ended with nothing stored: the run tested little"
        );
    }
}
