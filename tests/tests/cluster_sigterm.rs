//! SIGTERM of the leader under `acks = quorum` load hands its leadership
//! to a caught-up follower before the process exits: another node already
//! leads when the old one is gone (an election would first need 300-500 ms
//! of silence), a leader-following client sees no error, and nothing
//! acknowledged is lost.

mod cluster_support;

use std::time::Instant;

use cluster_support::*;

#[test]
fn sigterm_transfers_leadership_before_exit() {
    let mut cluster = Cluster::start();
    cluster.create_topic(replicated_topic());
    let all = [0, 1, 2];
    let old = cluster.wait_leader(&all);
    let others = others(old);
    let follow = following_client(&cluster.nodes[others[0]]);
    let mut acked = Acked::new();
    produce_rounds(&follow, &mut acked, "before", 10);
    let status = cluster.nodes[old].terminate();
    let exited = Instant::now();
    assert!(status.success(), "shoald exits cleanly on SIGTERM: {status:?}");
    let leader_at_exit = cluster.leader(&others);
    println!(
        "after SIGTERM of the leader: {:?} leads at its exit (looked up in {:?})",
        leader_at_exit.map(|i| i + 1),
        exited.elapsed()
    );
    assert!(
        leader_at_exit.is_some(),
        "no leader when the old one exited: no transfer"
    );
    produce_rounds(&follow, &mut acked, "after-sigterm", 10);
    println!("{} redirects", follow.redirects());
    cluster.check_invariants(&others, &acked);
    cluster.stop();
}
