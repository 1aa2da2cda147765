//! Issue 14, must-show 4: a follower down for a long time, while retention
//! removes on the other nodes the segments it never received, catches up
//! after its restart. Three `shoald` processes, 1 MiB segments, a topic
//! that keeps 2 MiB: the follower is killed, ~6 MiB are produced (acks
//! quorum), retention moves the leader's log start past everything the
//! follower holds, and the follower is restarted. The leader then sends it
//! a snapshot (the last removed entry and the log start after it); the
//! follower empties its log, restarts it at the leader's log start and
//! takes the entries after it. It must reach the leader's high watermark
//! and hold every acknowledged record the leader still holds, at its
//! acknowledged offset.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::*;
use shoal_protocol::messages::offsets::OffsetSpec;
use shoal_protocol::messages::topic::TopicConfig;
use shoal_tests::BrokerProcess;

const NODE_CONFIG: &str =
    "[storage]\nsegment_bytes_max = 1048576\npreallocate_bytes = 1048576\nmaintenance_interval_ms = 100\n";
/// Produce rounds while the follower is down, of 100 records of ~1 KiB.
const ROUNDS_DOWN: usize = 60;

/// (log start, high watermark) of the topic on `node`, by its own view.
fn bounds(node: &BrokerProcess) -> Option<(u64, u64)> {
    let c = pinned_client(node);
    let (start, _) = c.list_offset(TOPIC, 0, OffsetSpec::Earliest).ok()?;
    let (end, _) = c.list_offset(TOPIC, 0, OffsetSpec::Latest).ok()?;
    Some((start, end))
}

#[test]
fn a_follower_behind_the_leaders_log_start_catches_up_after_restart() {
    let mut cluster = Cluster::start_with(false, NODE_CONFIG);
    cluster.create_topic(TopicConfig {
        retention_bytes: Some(2 << 20),
        ..replicated_topic()
    });
    let leader = cluster.wait_leader(&[0, 1, 2]);
    let down = others(leader)[0];
    let client = following_client(&cluster.nodes[leader]);
    let pad = "x".repeat(1000);
    let values = |tag: &str| -> Vec<String> { (0..100).map(|i| format!("{tag}-{i}-{pad}")).collect() };

    let mut acked = Acked::new();
    for round in 0..3 {
        let got = produce_with(client.clone(), &values(&format!("before{round}")), 5_000).expect("produce");
        record_acks(&mut acked, got);
    }
    let held = acked.keys().last().unwrap() + 1;
    cluster.wait_caught_up(down, held);
    cluster.nodes[down].kill();

    let producing = Instant::now();
    for round in 0..ROUNDS_DOWN {
        let got = produce_with(client.clone(), &values(&format!("down{round}")), 5_000)
            .unwrap_or_else(|e| panic!("round {round} with a follower down: {e}"));
        record_acks(&mut acked, got);
    }
    let end = acked.keys().last().unwrap() + 1;
    let produced_in = producing.elapsed();
    let leader_node = cluster.wait_leader(&others(down));
    let moved = shoal_tests::wait_until(Duration::from_millis(WAIT_MS_MAX), || {
        bounds(&cluster.nodes[leader_node]).is_some_and(|(start, _)| start > held)
    });
    assert!(
        moved,
        "retention did not move the leader's log start past the follower's end"
    );
    let (leader_start, _) = bounds(&cluster.nodes[leader_node]).unwrap();
    println!(
        "produced {} records in {produced_in:?} with the follower down; retention after {:?}",
        end - held,
        producing.elapsed()
    );

    let restarted = Instant::now();
    cluster.nodes[down].restart();
    cluster.wait_caught_up(down, end);
    let caught_up = restarted.elapsed();
    let (down_start, down_hw) = bounds(&cluster.nodes[down]).unwrap();
    println!(
        "follower held {held} records, leader's log start {leader_start}, end {end}; \
         after restart the follower starts at {down_start}, high watermark {down_hw}, caught up in {caught_up:?}"
    );
    assert!(
        down_start >= leader_start,
        "the follower's log starts at {down_start}, below the leader's {leader_start}: it cannot have installed the leader's start"
    );

    // Every acknowledged record the follower and the leader still hold is
    // at its acknowledged offset on both, and they agree offset by offset.
    let on_follower = read_all(&cluster.nodes[down]);
    let on_leader = read_all(&cluster.nodes[leader_node]);
    let retained: Acked = acked.range(down_start..).map(|(o, v)| (*o, v.clone())).collect();
    assert_has_acked(&on_follower, &retained, "the restarted follower");
    for (offset, value) in &on_follower {
        if let Some(v) = on_leader.get(offset) {
            assert_eq!(v, value, "offset {offset} differs between leader and follower");
        }
    }

    // It replicates on from there.
    let got = produce_with(client, &values("after"), 5_000).expect("produce after");
    record_acks(&mut acked, got);
    let end = acked.keys().last().unwrap() + 1;
    cluster.wait_caught_up(down, end);
    cluster.stop();
}
