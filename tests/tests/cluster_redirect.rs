//! A client bootstrapped on the leader's node keeps producing (acks
//! quorum) and consuming a replicated partition through kill -9 of that
//! node: it sees no error, only redirects, which it counts; it finds the
//! new leader although its bootstrap node is gone; and its consumer reads
//! every acknowledged record at its acknowledged offset.

mod cluster_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::*;

/// Produce rounds before and after the kill.
const ROUNDS_BEFORE: usize = 10;
const ROUNDS_AFTER: usize = 30;

#[test]
fn client_follows_the_leader_through_a_kill() {
    let mut cluster = Cluster::start();
    cluster.create_topic(replicated_topic());
    let leader = cluster.wait_leader(&[0, 1, 2]);
    let client = following_client(&cluster.nodes[leader]);

    // The consumer: fetches from offset 0 until told to stop; any error fails.
    let stop = Arc::new(AtomicBool::new(false));
    let consumed: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let consumer = {
        let (client, stop, consumed) = (client.clone(), stop.clone(), consumed.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let mut offset = 0;
            while !stop.load(Ordering::SeqCst) {
                let f = client
                    .fetch(TOPIC, 0, offset, 1 << 20, 200)
                    .map_err(|e| format!("fetch at {offset}: {e}"))?;
                let mut seen = consumed.lock().unwrap();
                for r in f.records {
                    seen.insert(r.offset, String::from_utf8(r.value.unwrap()).unwrap());
                }
                offset = f.next_offset;
            }
            Ok(())
        })
    };

    let mut acked = Acked::new();
    let mut killed_at = None;
    let mut first_ack_after_kill = None;
    for round in 0..ROUNDS_BEFORE + ROUNDS_AFTER {
        if round == ROUNDS_BEFORE {
            cluster.nodes[leader].kill();
            killed_at = Some(Instant::now());
        }
        let got = produce_with(client.clone(), &batch(&format!("r{round}"), 10), 5_000)
            .unwrap_or_else(|e| panic!("round {round}: the client saw an error: {e}"));
        record_acks(&mut acked, got);
        if let (Some(at), None) = (killed_at, first_ack_after_kill) {
            first_ack_after_kill = Some(at.elapsed());
        }
    }
    let first_ack = first_ack_after_kill.expect("acks after the kill");
    let redirects = client.redirects();
    println!(
        "first acknowledged produce {first_ack:?} after kill -9 of the leader; {redirects} redirects followed"
    );
    assert!(redirects > 0, "the kill must have caused redirects");
    assert!(first_ack < Duration::from_secs(10), "failover took {first_ack:?}");

    // The consumer catches up to every acknowledged record, bounded.
    let end = acked.keys().last().unwrap() + 1;
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while consumed.lock().unwrap().range(end - 1..).next().is_none() {
        assert!(
            Instant::now() < deadline,
            "the consumer did not reach offset {end}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    consumer.join().unwrap().expect("the consumer saw no error");
    assert_has_acked(&consumed.lock().unwrap(), &acked, "the consumer");
    cluster.check_invariants(&others(leader), &acked);
    cluster.stop();
}
