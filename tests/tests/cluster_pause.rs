//! SIGSTOP of the leader for several seconds under `acks = quorum` load,
//! then SIGCONT: the majority elects a new leader and keeps acknowledging
//! (through the client's redirects); a produce sent to the frozen leader
//! is never acknowledged unless it was committed; the old leader steps
//! down once it runs again; no two nodes lead one term; every acknowledged
//! record is on every node at its offset and no offset holds two records.

mod cluster_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::*;
use shoal_protocol::client::Client;

/// How long the leader stays frozen.
const PAUSE_MS: u64 = 6_000;

#[test]
fn paused_leader_steps_down_and_acknowledges_nothing_it_cannot_commit() {
    let mut cluster = Cluster::start();
    cluster.create_topic(replicated_topic());
    let all = [0, 1, 2];
    let old = cluster.wait_leader(&all);
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    let follow = Arc::new(
        Client::with_config(&cluster.nodes[others[0]].addr_string(), fault_client_config(true))
            .expect("connect"),
    );
    let mut acked = Acked::new();
    for round in 0..5 {
        record_acks(
            &mut acked,
            produce_with(follow.clone(), &batch(&format!("before{round}"), 10), 5_000).expect("produce"),
        );
    }

    // A producer pinned to the leader sends while it is frozen: the request
    // waits in the socket and is served after SIGCONT, by a node that no
    // longer leads.
    let pinned = pinned_client(&cluster.nodes[old]);
    cluster.pause(old);
    let paused_at = Instant::now();
    let stale = std::thread::spawn(move || produce_with(pinned, &batch("stale", 10), 10_000));

    let mut first_ack = None;
    let mut round = 0;
    while paused_at.elapsed() < Duration::from_millis(PAUSE_MS) {
        let got = produce_with(follow.clone(), &batch(&format!("during{round}"), 10), 2_000)
            .unwrap_or_else(|e| panic!("the majority must serve while the leader is frozen: {e}"));
        record_acks(&mut acked, got);
        first_ack.get_or_insert(paused_at.elapsed());
        cluster.assert_one_leader_per_term(&others);
        round += 1;
    }
    let first_ack = first_ack.expect("acks while the leader was frozen");
    cluster.resume(old);
    println!(
        "leader frozen {PAUSE_MS} ms: first acknowledged produce {first_ack:?} after SIGSTOP, {round} rounds, {} redirects",
        follow.redirects()
    );

    // The old leader steps down (bounded wait), and never shares a term.
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while cluster.leader(&[old]).is_some() {
        cluster.assert_one_leader_per_term(&all);
        assert!(Instant::now() < deadline, "the old leader did not step down");
        std::thread::sleep(Duration::from_millis(20));
    }
    match stale.join().unwrap() {
        Ok(got) => {
            println!("the frozen leader's produce was committed after all: {got:?}");
            record_acks(&mut acked, got);
        }
        Err(e) => println!("the frozen leader's produce was refused: {e}"),
    }
    for round in 0..5 {
        record_acks(
            &mut acked,
            produce_with(follow.clone(), &batch(&format!("after{round}"), 10), 5_000).expect("produce after"),
        );
    }
    cluster.assert_one_leader_per_term(&all);
    cluster.check_invariants(&all, &acked);
    cluster.stop();
}
