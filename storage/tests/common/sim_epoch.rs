//! One epoch of a seeded power-cut simulation on a [`SimDisk`]: the
//! epoch's tasks (the writers and the driver of the log under test) run on
//! this executor until every one has returned, and the power is cut once
//! the disk's clock reaches the moment the seed chose. Shared by the
//! partition log's simulation (`log_sim`) and the broker's delivery state
//! log simulation (`broker/tests/state_log_sim.rs`, which includes this
//! file and `sim_disk.rs` by path), so both drive their epochs alike.
//!
//! Also the seeds a simulation runs, from the environment:
//! `SHOAL_SIM_SEED=N` runs only seed N; otherwise `SHOAL_SIM_SEEDS` seeds
//! (the test's default when unset) from `SHOAL_SIM_FIRST_SEED` (default 0).
#![allow(dead_code)]

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use glommio::task::JoinHandle;

use super::sim_disk::SimDisk;

/// Executor turns the tasks of an epoch may take to stop after a cut; a
/// task still running then is waiting for something that never comes.
pub const STOP_TURNS_MAX: u64 = 200_000;

/// The seeds to run (see the module header).
pub fn seeds_from_env(seeds_default: u64) -> Vec<u64> {
    let env_u64 = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    match env_u64("SHOAL_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env_u64("SHOAL_SIM_FIRST_SEED").unwrap_or(0);
            (first..first + env_u64("SHOAL_SIM_SEEDS").unwrap_or(seeds_default)).collect()
        }
    }
}

/// The tasks of one epoch, counted while they run.
#[derive(Default)]
pub struct EpochTasks {
    running: Rc<Cell<u32>>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
}

impl EpochTasks {
    /// Spawns `task` on this executor as one of the epoch's tasks.
    pub fn spawn(&mut self, task: impl Future<Output = Result<(), String>> + 'static) {
        self.running.set(self.running.get() + 1);
        let running = self.running.clone();
        let handle = glommio::spawn_local(async move {
            let result = task.await;
            running.set(running.get() - 1);
            result
        })
        .detach();
        self.tasks.push(handle);
    }

    /// Yields until every task has returned, cutting the power once the
    /// disk's clock reaches `cut_at` (never, with `None`). Returns whether
    /// it cut the power, or the first task's error; a task that was
    /// cancelled, or still runs [`STOP_TURNS_MAX`] turns after the cut, is
    /// an error too.
    pub async fn run(self, disk: &SimDisk, cut_at: Option<u64>) -> Result<bool, String> {
        let mut cut = false;
        let mut turns = 0u64;
        while self.running.get() > 0 {
            if !cut && cut_at.is_some_and(|at| disk.now() >= at) {
                disk.power_cut();
                cut = true;
            }
            glommio::executor().yield_now().await;
            turns += 1;
            if cut && turns > STOP_TURNS_MAX {
                return Err("tasks still running long after the power cut".into());
            }
        }
        for task in self.tasks {
            task.await.ok_or("a task of the epoch was cancelled")??;
        }
        Ok(cut)
    }
}

/// Gives the executor `turns` turns: after the log is dropped, its writer
/// and syncer tasks see it gone on their next turn.
pub async fn yield_turns(turns: u32) {
    for _ in 0..turns {
        glommio::executor().yield_now().await;
    }
}
