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
        for (offset, value) in
            produce(&cluster.nodes[leader], &batch(&format!("a{round}"), 10)).expect("quorum produce")
        {
            assert!(
                acked.insert(offset, value).is_none(),
                "offset {offset} acknowledged twice"
            );
        }
    }
    assert_eq!(acked.len(), 200);
    assert_eq!(*acked.keys().last().unwrap(), 199, "offsets are dense");

    // kill -9 the leader; the first acknowledged produce after it is timed.
    cluster.nodes[leader].kill();
    let killed_at = Instant::now();
    let alive: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let mut first_ack = None;
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while first_ack.is_none() {
        assert!(Instant::now() < deadline, "nothing acknowledged after the kill");
        for &i in &alive {
            if let Ok(got) = produce(&cluster.nodes[i], &batch("after-kill", 1)) {
                for (offset, value) in got {
                    assert!(acked.insert(offset, value).is_none(), "offset {offset} reused");
                }
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
        for (offset, value) in produce(&cluster.nodes[new_leader], &batch(&format!("b{round}"), 10))
            .expect("produce to the new leader")
        {
            assert!(acked.insert(offset, value).is_none(), "offset {offset} reused");
        }
    }
    assert_has_acked(&read_all(&cluster.nodes[new_leader]), &acked, "the new leader");

    // The killed node restarts and catches up; all nodes agree.
    cluster.nodes[leader].restart();
    let end = *acked.keys().last().unwrap() + 1;
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    loop {
        let c = pinned_client(&cluster.nodes[leader]);
        if c.fetch(TOPIC, 0, 0, 1, 0).is_ok_and(|f| f.high_watermark >= end) {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted node did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let views: Vec<Acked> = cluster.nodes.iter().map(read_all).collect();
    for (i, view) in views.iter().enumerate() {
        assert_has_acked(view, &acked, &format!("node {}", i + 1));
        for (offset, value) in view {
            for other in &views {
                if let Some(v) = other.get(offset) {
                    assert_eq!(v, value, "offset {offset} holds two different records");
                }
            }
        }
    }

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
