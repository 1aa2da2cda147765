//! SIGSTOP of the leader for several seconds under `acks = quorum` load,
//! then SIGCONT: the majority elects a new leader and keeps acknowledging
//! (through the client's redirects); a produce sent to the frozen leader
//! is never acknowledged unless it was committed; the old leader steps
//! down once it runs again; no two nodes lead one term; every acknowledged
//! record is on every node at its offset and no offset holds two records.

mod cluster_support;

use std::time::Instant;

use cluster_support::*;

/// How long the leader stays frozen.
const PAUSE_MS: u64 = 6_000;

#[test]
fn paused_leader_steps_down_and_acknowledges_nothing_it_cannot_commit() {
    let mut cluster = Cluster::start();
    cluster.create_topic(replicated_topic());
    let all = [0, 1, 2];
    let old = cluster.wait_leader(&all);
    let others = others(old);
    let follow = following_client(&cluster.nodes[others[0]]);
    let mut acked = Acked::new();
    produce_rounds(&follow, &mut acked, "before", 5);

    // A producer pinned to the leader sends while it is frozen: the request
    // waits in the socket and is served after SIGCONT, by a node that no
    // longer leads.
    let pinned = pinned_client(&cluster.nodes[old]);
    cluster.pause(old);
    let paused_at = Instant::now();
    let stale = std::thread::spawn(move || produce_with(pinned, &batch("stale", 10), 10_000));

    let (round, first_ack) =
        cluster.produce_through_fault(&follow, &mut acked, &others, paused_at, PAUSE_MS, "during");
    cluster.resume(old);
    println!(
        "leader frozen {PAUSE_MS} ms: first acknowledged produce {first_ack:?} after SIGSTOP, {round} rounds, {} redirects",
        follow.redirects()
    );

    // The old leader steps down (bounded wait), and never shares a term.
    cluster.wait_stepped_down(old, &all, "the old leader did not step down");
    match stale.join().unwrap() {
        Ok(got) => {
            println!("the frozen leader's produce was committed after all: {got:?}");
            record_acks(&mut acked, got);
        }
        Err(e) => println!("the frozen leader's produce was refused: {e}"),
    }
    produce_rounds(&follow, &mut acked, "after", 5);
    cluster.assert_one_leader_per_term(&all);
    cluster.check_invariants(&all, &acked);
    cluster.stop();
}
