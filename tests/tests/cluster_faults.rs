//! A randomized fault loop on three nodes under `acks = quorum` load: each
//! cycle picks a fault (kill -9 and restart, SIGSTOP and SIGCONT, or a
//! network partition through the test's link proxies) and a node (the
//! leader half of the time), produces through a leader-following client
//! while the fault lasts (every produce must succeed: one node down leaves
//! a majority), heals, and checks the invariants on all three nodes:
//! every acknowledged record at its offset, no offset with two different
//! records, no two leaders in one term.
//!
//! 20 cycles by default; `SHOAL_CLUSTER_FAULT_CYCLES=200` for the long
//! run. The seed is printed; `SHOAL_CLUSTER_FAULT_SEED` replays one.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::*;
use rand::{Rng, SeedableRng};

const CYCLES_DEFAULT: u32 = 20;
/// How long each fault lasts (under load).
const FAULT_MS: u64 = 1_200;
/// Pause between produce rounds of 10 records.
const ROUND_PAUSE_MS: u64 = 10;

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Pause,
    Partition,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn randomized_faults_keep_the_invariants() {
    let cycles = env_u64("SHOAL_CLUSTER_FAULT_CYCLES").map_or(CYCLES_DEFAULT, |c| c as u32);
    let seed = env_u64("SHOAL_CLUSTER_FAULT_SEED").unwrap_or_else(rand::random);
    println!("fault loop: {cycles} cycles, seed {seed} (SHOAL_CLUSTER_FAULT_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::start_with(true, "");
    cluster.create_topic(replicated_topic());
    let all = [0, 1, 2];
    let mut acked = Acked::new();
    let started = Instant::now();
    let mut redirects = 0;
    for cycle in 0..cycles {
        let leader = cluster.wait_leader(&all);
        let target = if rng.gen_bool(0.5) {
            leader
        } else {
            rng.gen_range(0..NODES)
        };
        let fault = [Fault::Kill, Fault::Pause, Fault::Partition][rng.gen_range(0..3)];
        let healthy = (0..NODES).find(|&i| i != target).unwrap();
        // A fresh client per cycle, bootstrapped on a node the fault spares.
        let client = following_client(&cluster.nodes[healthy]);
        match fault {
            Fault::Kill => cluster.nodes[target].kill(),
            Fault::Pause => cluster.pause(target),
            Fault::Partition => cluster.isolate(target),
        }
        let at = Instant::now();
        let mut round = 0;
        while at.elapsed() < Duration::from_millis(FAULT_MS) || round == 0 {
            let got = produce_with(client.clone(), &batch(&format!("c{cycle}r{round}"), 10), 2_000)
                .unwrap_or_else(|e| {
                    panic!(
                        "cycle {cycle} ({fault:?} of node {}): produce failed: {e} (seed {seed})",
                        target + 1
                    )
                });
            record_acks(&mut acked, got);
            round += 1;
            // About 100 rounds a cycle: the invariant check reads every
            // record from every node, so the total must stay small for 200.
            std::thread::sleep(Duration::from_millis(ROUND_PAUSE_MS));
        }
        match fault {
            Fault::Kill => cluster.nodes[target].restart(),
            Fault::Pause => cluster.resume(target),
            Fault::Partition => cluster.reconnect(target),
        }
        redirects += client.redirects();
        cluster.check_invariants(&all, &acked);
        cluster.assert_one_leader_per_term(&all);
        println!(
            "cycle {cycle}: {fault:?} of node {} ({}), {round} rounds, {} acknowledged in all, {:?} elapsed",
            target + 1,
            if target == leader {
                "the leader"
            } else {
                "a follower"
            },
            acked.len(),
            started.elapsed()
        );
    }
    println!(
        "fault loop done: {cycles} cycles, {} records acknowledged, {redirects} redirects, {:?}",
        acked.len(),
        started.elapsed()
    );
    cluster.stop();
}
