//! SIGTERM of the leader under `acks = quorum` load hands its leadership
//! to a caught-up follower before the process exits: another node already
//! leads when the old one is gone (an election would first need 300-500 ms
//! of silence), a leader-following client sees no error, and nothing
//! acknowledged is lost.

mod cluster_support;

use std::sync::Arc;
use std::time::Instant;

use cluster_support::*;
use shoal_protocol::client::Client;

#[test]
fn sigterm_transfers_leadership_before_exit() {
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
    for round in 0..10 {
        let got =
            produce_with(follow.clone(), &batch(&format!("before{round}"), 10), 5_000).expect("produce");
        record_acks(&mut acked, got);
    }
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
    for round in 0..10 {
        let got = produce_with(follow.clone(), &batch(&format!("after{round}"), 10), 5_000)
            .unwrap_or_else(|e| panic!("produce after the SIGTERM: {e}"));
        record_acks(&mut acked, got);
    }
    println!("{} redirects", follow.redirects());
    cluster.check_invariants(&others, &acked);
    cluster.stop();
}
