//! A rolling restart of every node under `acks = quorum` load (issue 15):
//! each node in turn gets SIGTERM and is started again on its own ports (it hands the leaderships it holds,
//! data and metadata, to caught-up followers before it exits), restarts,
//! and catches up before the next one goes. The producer, a
//! leader-following client, sees no error beyond the redirects it retried
//! (counted and printed), and every acknowledged record is on every node
//! at its offset afterwards.

mod cluster_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::*;
use shoal_protocol::messages::offsets::OffsetSpec;

/// Bounds of the load loop.
const ROUNDS_MAX: usize = 6_000;
const LOAD_MS_MAX: u64 = 120_000;

/// Node `i`'s high watermark of the test topic (0 when it does not answer).
fn high_watermark(cluster: &Cluster, i: usize) -> u64 {
    pinned_client(&cluster.nodes[i])
        .list_offset(TOPIC, 0, OffsetSpec::Latest)
        .map_or(0, |(hw, _)| hw)
}

#[test]
fn rolling_restart_under_load_loses_nothing_and_surfaces_no_error() {
    let mut cluster = Cluster::start_fixed_ports();
    cluster.create_topic(replicated_topic());
    let all = [0, 1, 2];
    cluster.wait_leader(&all);

    let client = following_client(&cluster.nodes[0]);
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let load = {
        let client = client.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut acked = Acked::new();
            let mut errors = Vec::new();
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed)
                && rounds < ROUNDS_MAX
                && started.elapsed() < Duration::from_millis(LOAD_MS_MAX)
            {
                match produce_with(client.clone(), &batch(&format!("r{rounds}-"), 10), 10_000) {
                    Ok(got) => record_acks(&mut acked, got),
                    Err(e) => errors.push(format!("round {rounds} at {:?}: {e}", started.elapsed())),
                }
                rounds += 1;
            }
            (acked, errors, rounds)
        })
    };

    for i in 0..all.len() {
        std::thread::sleep(Duration::from_millis(700));
        println!("SIGTERM to node {} at {:?}", i + 1, began.elapsed());
        let status = cluster.nodes[i].terminate();
        assert!(
            status.success(),
            "node {} exits cleanly on SIGTERM: {status:?}",
            i + 1
        );
        cluster.nodes[i].restart();
        // Caught up to what another node had committed when it returned.
        let end = others(i)
            .into_iter()
            .map(|j| high_watermark(&cluster, j))
            .max()
            .unwrap_or(0);
        cluster.wait_caught_up(i, end);
        println!(
            "node {} restarted and caught up to {end} at {:?}",
            i + 1,
            began.elapsed()
        );
    }
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    let (acked, errors, rounds) = load.join().expect("the load thread");
    println!(
        "{rounds} produce rounds, {} records acknowledged, {} redirects retried, {} errors",
        acked.len(),
        client.redirects(),
        errors.len()
    );
    assert!(errors.is_empty(), "errors surfaced to the producer: {errors:#?}");
    assert!(
        acked.len() >= 100,
        "too little load to mean anything: {}",
        acked.len()
    );
    cluster.check_invariants(&all, &acked);
    cluster.stop();
}
