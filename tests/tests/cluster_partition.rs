//! A network partition isolating the leader, made by black-holing every
//! node-to-node link of that node in the test's own TCP proxies, under
//! `acks = quorum` load: the isolated minority acknowledges nothing (its
//! leader steps down: check-quorum), the majority elects a leader and
//! serves; after the links heal the old leader rejoins as a follower,
//! no two nodes ever led one term, and every acknowledged record is on
//! every node at its offset with no offset holding two records.

mod cluster_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::*;

/// How long the leader stays cut off.
const PARTITION_MS: u64 = 4_000;

#[test]
fn isolated_leader_acknowledges_nothing_and_the_majority_serves() {
    let mut cluster = Cluster::start_with(true, "");
    cluster.create_topic(replicated_topic());
    let all = [0, 1, 2];
    let old = cluster.wait_leader(&all);
    let majority = others(old);
    let follow = following_client(&cluster.nodes[majority[0]]);
    let mut acked = Acked::new();
    produce_rounds(&follow, &mut acked, "before", 5);

    cluster.isolate(old);
    let cut_at = Instant::now();
    // The minority side: a client that reaches the isolated node directly
    // (client traffic does not cross the proxies) keeps producing.
    let healed = Arc::new(AtomicBool::new(false));
    let minority = {
        let (pinned, healed) = (pinned_client(&cluster.nodes[old]), healed.clone());
        std::thread::spawn(move || {
            let (mut attempts, mut acks) = (0u32, Vec::new());
            while !healed.load(Ordering::SeqCst) {
                attempts += 1;
                if let Ok(got) =
                    produce_with(pinned.clone(), &batch(&format!("minority{attempts}"), 5), 1_000)
                {
                    acks.push(got);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (attempts, acks)
        })
    };

    let (rounds, first_ack) =
        cluster.produce_through_fault(&follow, &mut acked, &majority, cut_at, PARTITION_MS, "majority");
    let old_still_leads = cluster.leader(&[old]).is_some();
    cluster.reconnect(old);
    healed.store(true, Ordering::SeqCst);
    let (attempts, minority_acks) = minority.join().unwrap();
    println!(
        "leader isolated {PARTITION_MS} ms: majority's first ack {first_ack:?} after the cut, {rounds} rounds, \
         {} redirects; minority: {attempts} attempts, {} acknowledged; old leader still leading at the end: {old_still_leads}",
        follow.redirects(),
        minority_acks.len()
    );
    assert!(attempts > 0, "the minority client made no attempt");
    assert!(
        minority_acks.is_empty(),
        "the isolated minority acknowledged {minority_acks:?}"
    );
    assert!(
        !old_still_leads,
        "the isolated leader did not step down (check-quorum)"
    );

    cluster.wait_stepped_down(old, &all, "the old leader leads after the heal");
    produce_rounds(&follow, &mut acked, "after", 5);
    cluster.assert_one_leader_per_term(&all);
    cluster.check_invariants(&all, &acked);
    cluster.stop();
}
