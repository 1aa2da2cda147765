//! Three `shoald` processes on loopback (`--shards 1` each) replicate a
//! topic with replication factor 3 and `acks = quorum`:
//! - every acknowledged produce reports `replicated` durability;
//! - after kill -9 of the leader, a new leader is elected and every
//!   acknowledged record is readable from it at its acknowledged offset;
//!   the first acknowledged produce after the kill is measured (printed,
//!   asserted loosely);
//! - the killed node restarts and catches up, and no offset holds two
//!   different records on any two nodes;
//! - all three killed at once and restarted: every acknowledged record is
//!   still there.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::*;

#[test]
fn quorum_produce_survives_leader_kill_and_full_restart() {
    let mut cluster = Cluster::start();
    cluster.create_topic(replicated_topic());
    let all = [0, 1, 2];
    let leader = cluster.wait_leader(&all);
    let mut acked = Acked::new();
    for round in 0..20 {
        let got = produce(&cluster.nodes[leader], &batch(&format!("a{round}"), 10)).expect("quorum produce");
        record_acks(&mut acked, got);
    }
    assert_eq!(acked.len(), 200);
    assert_eq!(*acked.keys().last().unwrap(), 199, "offsets are dense");

    // kill -9 the leader; the first acknowledged produce after it is timed.
    cluster.nodes[leader].kill();
    let killed_at = Instant::now();
    let alive = others(leader);
    let mut first_ack = None;
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while first_ack.is_none() {
        assert!(Instant::now() < deadline, "nothing acknowledged after the kill");
        for &i in &alive {
            if let Ok(got) = produce(&cluster.nodes[i], &batch("after-kill", 1)) {
                record_acks(&mut acked, got);
                first_ack = Some(killed_at.elapsed());
                break;
            }
        }
    }
    let first_ack = first_ack.unwrap();
    println!("first acknowledged produce {first_ack:?} after kill -9 of the leader");
    assert!(first_ack < Duration::from_secs(10), "failover took {first_ack:?}");
    let new_leader = cluster.wait_leader(&alive);
    for round in 0..10 {
        let got = produce(&cluster.nodes[new_leader], &batch(&format!("b{round}"), 10))
            .expect("produce to the new leader");
        record_acks(&mut acked, got);
    }
    assert_has_acked(&read_all(&cluster.nodes[new_leader]), &acked, "the new leader");

    // The killed node restarts and catches up; all nodes agree.
    cluster.nodes[leader].restart();
    cluster.check_invariants(&all, &acked);

    // All three killed at once and restarted: every acked record is there.
    for node in &mut cluster.nodes {
        node.kill();
    }
    for node in &mut cluster.nodes {
        node.restart();
    }
    let leader = cluster.wait_leader(&all);
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    loop {
        let view = read_all(&cluster.nodes[leader]);
        if acked.keys().all(|o| view.contains_key(o)) {
            assert_has_acked(&view, &acked, "after the full restart");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged records missing after the full restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for node in &mut cluster.nodes {
        node.terminate();
    }
}
