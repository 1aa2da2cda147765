//! A consumer group survives kill -9 of its coordinator's node: two
//! members consume a replicated topic (RF 3) with acks and nacks, some
//! records reach the quarantine (three deliveries at most), and mid-way the
//! node leading the group's state partition dies. The members carry on
//! through the client (its `not_coordinator` redirects counted), and
//! afterwards: committed offsets the clients saw never went backwards,
//! every quarantine entry seen before the kill is still there, every
//! acknowledged produce was acked by the group or quarantined (a poison
//! record is never acked, a good one never quarantined), and no record's
//! delivery count ever went down.

mod cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::*;
use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, GroupConsumer, GroupConsumerConfig, Producer, ProducerConfig};
use shoal_protocol::messages::dlq::{QuarantineEntry, QuarantineFilter};
use shoal_protocol::messages::produce::{Acks, Durability};
use shoal_protocol::messages::topic::{RetryPolicy, TopicConfig};

const GROUP: &str = "survivors";
const PARTITIONS: u32 = 2;
/// Deliveries of a record before it is quarantined.
const MAX_ATTEMPTS: u32 = 3;
/// Records produced, in batches, while the group consumes (the kill falls
/// in the middle).
const RECORDS: usize = 600;
const BATCH: usize = 10;
/// Every this many records, one is poison: always nacked.
const POISON_EVERY: usize = 10;
/// Before the kill: acks and quarantine entries the group must have made.
const ACKED_BEFORE_KILL_MIN: usize = 60;
const QUARANTINED_BEFORE_KILL_MIN: usize = 3;
/// Bound on every wait of the test.
const WAIT_MS: u64 = 60_000;

/// (partition, offset) of a record.
type Coord = (u32, u64);

/// What the members saw.
#[derive(Default)]
struct Seen {
    /// Records whose ack the coordinator confirmed.
    acked: BTreeSet<Coord>,
    /// Highest delivery count seen per record.
    counts: BTreeMap<Coord, u32>,
    /// Highest committed offset seen per partition (ack replies).
    committed: BTreeMap<u32, u64>,
    /// Violations: a count or a committed offset that went down.
    violations: Vec<String>,
    /// Calls that failed and were retried by the member loop.
    errors: u64,
}

impl Seen {
    fn delivered(&mut self, at: Coord, count: u32) {
        let before = self.counts.entry(at).or_insert(0);
        if count < *before {
            self.violations.push(format!(
                "record {at:?} delivered with count {count} after {before}"
            ));
        }
        *before = (*before).max(count);
    }

    fn committed(&mut self, partition: u32, offset: u64, by: &str) {
        let before = self.committed.entry(partition).or_insert(0);
        if offset < *before {
            self.violations.push(format!(
                "partition {partition}: committed offset {offset} ({by}) after {before}"
            ));
        }
        *before = (*before).max(offset);
    }
}

fn is_poison(value: &[u8]) -> bool {
    value.starts_with(b"poison")
}

fn topic_config() -> TopicConfig {
    TopicConfig {
        partitions: PARTITIONS,
        replication_factor: 3,
        retry: RetryPolicy {
            max_attempts: MAX_ATTEMPTS,
            backoff_base_ms: 20,
            backoff_max_ms: 100,
            ..RetryPolicy::default()
        },
        ..TopicConfig::default()
    }
}

/// Produces records `from..to` (acks quorum, message ids, so a retried
/// batch is stored once); returns each acknowledged record's coordinates
/// and whether it is poison.
fn produce_range(client: &Arc<Client>, from: usize, to: usize) -> BTreeMap<Coord, bool> {
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: Acks::Quorum,
            timeout_ms: 5_000,
            ..ProducerConfig::default()
        },
    )
    .expect("producer");
    let records = (from..to)
        .map(|i| {
            let kind = if i % POISON_EVERY == 0 { "poison" } else { "good" };
            NewRecord {
                timestamp_ms: 0,
                key: Some(format!("k{i}").into_bytes()),
                value: Some(format!("{kind}-{i}").into_bytes()),
                headers: Vec::new(),
                message_id: Some(format!("m{i}")),
            }
        })
        .collect::<Vec<_>>();
    let acks = producer.send_all(TOPIC, records).expect("produce");
    producer.close();
    acks.iter()
        .zip(from..to)
        .map(|(a, i)| {
            assert_eq!(a.durability, Durability::Replicated, "record {i}");
            let at = (a.partition, a.offset.expect("an offset"));
            (at, i % POISON_EVERY == 0)
        })
        .collect()
}

/// One member: polls, acks good records, nacks poison ones, until `stop`.
fn member(client: Arc<Client>, name: &str, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let mut config = GroupConsumerConfig::new(GROUP, &[TOPIC]);
    config.member_name = name.to_string();
    config.session_timeout_ms = 3_000;
    config.max_records = 20;
    config.max_wait_ms = 200;
    let consumer = loop {
        match GroupConsumer::join(client.clone(), config.clone()) {
            Ok(c) => break c,
            Err(_) if !stop.load(Ordering::SeqCst) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("{name} could not join: {e}"),
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let records = match consumer.poll() {
            Ok(records) => records,
            Err(_) => {
                seen.lock().unwrap().errors += 1;
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        for r in &records {
            seen.lock()
                .unwrap()
                .delivered((r.partition, r.offset), r.delivery_count);
        }
        let (poison, good): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|r| is_poison(r.value.as_deref().unwrap_or_default()));
        if !good.is_empty() {
            match consumer.ack(&good) {
                Ok(reply) => {
                    let mut seen = seen.lock().unwrap();
                    seen.acked.extend(good.iter().map(|r| (r.partition, r.offset)));
                    for p in &reply.partitions {
                        seen.committed(p.partition, p.committed_offset, name);
                    }
                }
                Err(_) => seen.lock().unwrap().errors += 1,
            }
        }
        if !poison.is_empty() && consumer.nack(&poison, "poison record", None, false).is_err() {
            seen.lock().unwrap().errors += 1;
        }
    }
    let _ = consumer.close();
}

/// Every quarantine entry of the topic, as the node `client` asks sees it.
fn quarantine(client: &Client) -> Vec<QuarantineEntry> {
    shoal_tests::quarantine_entries(client, TOPIC, QuarantineFilter::default())
}

/// The node whose replica of the group state partition leads (per its own
/// `GET /cluster`), and whether it is that partition's preferred leader
/// (leader balancing moves a leadership there while it is alive).
fn coordinator(cluster: &Cluster, among: &[usize]) -> Option<(usize, bool)> {
    among.iter().copied().find_map(|i| {
        let url = format!("http://127.0.0.1:{}/cluster", cluster.nodes[i].http_port);
        let reply = ureq::get(&url).timeout(Duration::from_secs(2)).call().ok()?;
        let doc: serde_json::Value = reply.into_json().unwrap_or_default();
        let p = doc["partitions"]
            .as_array()?
            .iter()
            .find(|p| p["topic"] == "__group_state" && p["role"] == "leader")?
            .clone();
        Some((i, p["preferred_leader"].as_u64() == Some(i as u64 + 1)))
    })
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    assert!(
        shoal_tests::wait_until(Duration::from_millis(WAIT_MS), &mut done),
        "{what} within {WAIT_MS} ms"
    );
}

#[test]
fn a_group_survives_the_loss_of_its_coordinator() {
    let mut cluster = Cluster::start();
    cluster.create_topic(topic_config());
    // The coordinator to kill: the preferred leader, so leader balancing
    // does not move it away before the kill.
    let mut coordinator_at = None;
    wait_for("the group coordinator on its preferred node", || {
        coordinator_at = coordinator(&cluster, &[0, 1, 2]).filter(|(_, preferred)| *preferred);
        coordinator_at.is_some()
    });
    let doomed = coordinator_at.expect("a coordinator").0;
    let survivor = others(doomed)[0];
    println!("the group's coordinator is node {}", doomed + 1);

    // The producer keeps going through the kill (its client follows the
    // partition leaders).
    let produced: Arc<Mutex<BTreeMap<Coord, bool>>> = Arc::default();
    let producer = {
        let (client, produced) = (following_client(&cluster.nodes[survivor]), produced.clone());
        std::thread::spawn(move || {
            for from in (0..RECORDS).step_by(BATCH) {
                let acked = produce_range(&client, from, from + BATCH);
                produced.lock().unwrap().extend(acked);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // One member bootstrapped on the doomed node, one elsewhere.
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = [
        following_client(&cluster.nodes[doomed]),
        following_client(&cluster.nodes[survivor]),
    ];
    let members: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let (client, seen, stop) = (client.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || member(client, &format!("member-{i}"), seen, stop))
        })
        .collect();

    let observer = following_client(&cluster.nodes[survivor]);
    let mut before_kill = Vec::new();
    wait_for("acks and quarantine entries before the kill", || {
        before_kill = quarantine(&observer);
        seen.lock().unwrap().acked.len() >= ACKED_BEFORE_KILL_MIN
            && before_kill.len() >= QUARANTINED_BEFORE_KILL_MIN
    });
    let acked_at_kill = seen.lock().unwrap().acked.len();
    let produced_at_kill = produced.lock().unwrap().len();
    cluster.nodes[doomed].kill();
    let killed_at = Instant::now();

    producer
        .join()
        .expect("every produce acknowledged through the kill");
    let produced = std::mem::take(&mut *produced.lock().unwrap());
    let up = others(doomed);
    let new_coordinator = {
        let mut found = None;
        wait_for("a new coordinator", || {
            found = coordinator(&cluster, &up).map(|(i, _)| i);
            found.is_some()
        });
        found.expect("a new coordinator")
    };

    // Until every record was acked by the group or quarantined.
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    let done = shoal_tests::wait_until(Duration::from_millis(WAIT_MS), || {
        entries = quarantine(&observer);
        let quarantined: BTreeSet<Coord> = entries.iter().map(|e| (e.partition, e.offset)).collect();
        let seen = seen.lock().unwrap();
        missing = produced
            .keys()
            .filter(|at| !seen.acked.contains(at) && !quarantined.contains(at))
            .copied()
            .collect();
        missing.is_empty()
    });
    let drained_after = killed_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    for m in members {
        m.join().expect("a member panicked");
    }
    assert!(done, "records neither acked nor quarantined: {missing:?}");

    let seen = seen.lock().unwrap();
    let redirects: Vec<u64> = clients.iter().map(|c| c.redirects()).collect();
    let poison = produced.values().filter(|p| **p).count();
    println!(
        "coordinator node {} killed after {produced_at_kill} records produced, {acked_at_kill} acks and {} quarantine \
         entries; node {} took over; \
         {} records produced ({poison} poison), {} acked by the group, {} quarantined, drained {drained_after:?} \
         after the kill; member redirects {redirects:?}, member calls retried {}; committed offsets {:?}; \
         highest delivery count {}",
        doomed + 1,
        before_kill.len(),
        new_coordinator + 1,
        produced.len(),
        seen.acked.len(),
        entries.len(),
        seen.errors,
        seen.committed,
        seen.counts.values().max().copied().unwrap_or(0),
    );
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
    assert!(
        redirects.iter().sum::<u64>() > 0,
        "the members must have followed the coordinator"
    );
    let after: BTreeMap<u64, &QuarantineEntry> = entries.iter().map(|e| (e.entry_id, e)).collect();
    for e in &before_kill {
        assert_eq!(
            after.get(&e.entry_id),
            Some(&e),
            "quarantine entry {} lost or changed by the failover",
            e.entry_id
        );
    }
    for e in &entries {
        let at = (e.partition, e.offset);
        assert_eq!(
            produced.get(&at),
            Some(&true),
            "a good record {at:?} was quarantined"
        );
        assert_eq!(e.attempts, MAX_ATTEMPTS, "entry {} attempts", e.entry_id);
        assert!(!seen.acked.contains(&at), "quarantined record {at:?} was acked");
    }
    for (at, is_poison) in &produced {
        if *is_poison {
            assert!(!seen.acked.contains(at), "poison record {at:?} was acked");
        }
    }
    let committed_total: u64 = seen.committed.values().sum();
    assert!(committed_total > 0, "the group committed nothing");
    cluster.stop();
}
