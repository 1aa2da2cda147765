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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, Producer, ProducerConfig};
use shoal_protocol::messages::produce::{Acks, Durability};
use shoal_protocol::messages::topic::TopicConfig;
use shoal_tests::{free_port, BrokerOptions, BrokerProcess};

const TOPIC: &str = "replicated";
const CLUSTER: &str = "replication-test";
/// Bound on waiting for a leader or a catch-up.
const WAIT_MS_MAX: u64 = 30_000;

struct Cluster {
    nodes: Vec<BrokerProcess>,
}

impl Cluster {
    fn start() -> Cluster {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = (0..3)
            .map(|i| {
                let mut args = vec![
                    "--node-id".to_string(),
                    (i + 1).to_string(),
                    "--cluster-id".into(),
                    CLUSTER.into(),
                    "--node-listen".into(),
                    format!("127.0.0.1:{}", ports[i]),
                ];
                for (j, port) in ports.iter().enumerate().filter(|&(j, _)| j != i) {
                    args.push("--peer".into());
                    args.push(format!("{}@127.0.0.1:{port}", j + 1));
                }
                BrokerProcess::start_with(BrokerOptions {
                    shards: 1,
                    args,
                    ..BrokerOptions::default()
                })
            })
            .collect();
        Cluster { nodes }
    }

    /// The index of the node whose replica leads, per its own `/cluster`.
    fn leader(&mut self, alive: &[usize]) -> Option<usize> {
        alive.iter().copied().find(|&i| {
            let url = format!("http://127.0.0.1:{}/cluster", self.nodes[i].http_port);
            let Ok(reply) = ureq::get(&url).timeout(Duration::from_secs(2)).call() else {
                return false;
            };
            let doc: serde_json::Value = reply.into_json().unwrap_or_default();
            doc["partitions"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["topic"] == TOPIC && p["role"] == "leader"))
        })
    }

    fn wait_leader(&mut self, alive: &[usize]) -> usize {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        loop {
            if let Some(i) = self.leader(alive) {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader among {alive:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn client(node: &BrokerProcess) -> Arc<Client> {
    Arc::new(Client::connect(&node.addr_string()).expect("connect"))
}

/// Produces `values` to `node` with acks quorum; returns (offset, value)
/// per record, or the error.
fn produce(node: &BrokerProcess, values: &[String]) -> Result<Vec<(u64, String)>, String> {
    let producer = Producer::new(
        client(node),
        ProducerConfig {
            acks: Acks::Quorum,
            timeout_ms: 2_000,
            ..ProducerConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let records = values
        .iter()
        .map(|v| NewRecord {
            timestamp_ms: 0,
            key: None,
            value: Some(v.clone().into_bytes()),
            headers: Vec::new(),
            message_id: None,
        })
        .collect();
    let acks = producer.send_all(TOPIC, records).map_err(|e| e.to_string())?;
    producer.close();
    acks.into_iter()
        .zip(values)
        .map(|(a, v)| {
            if a.durability != Durability::Replicated {
                return Err(format!("acked with durability {:?}", a.durability));
            }
            Ok((a.offset.expect("an offset"), v.clone()))
        })
        .collect()
}

/// Every record of the topic on `node` below its high watermark.
fn read_all(node: &BrokerProcess) -> BTreeMap<u64, String> {
    let c = client(node);
    let mut out = BTreeMap::new();
    let mut offset = 0;
    for _ in 0..10_000 {
        let f = c.fetch(TOPIC, 0, offset, 1 << 20, 0).expect("fetch");
        if f.records.is_empty() {
            break;
        }
        for r in f.records {
            out.insert(r.offset, String::from_utf8(r.value.unwrap()).unwrap());
        }
        offset = f.next_offset;
    }
    out
}

fn assert_has_acked(on: &BTreeMap<u64, String>, acked: &BTreeMap<u64, String>, what: &str) {
    for (offset, value) in acked {
        assert_eq!(
            on.get(offset),
            Some(value),
            "{what}: acknowledged offset {offset}"
        );
    }
}

fn batch(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

#[test]
fn quorum_produce_survives_leader_kill_and_full_restart() {
    let mut cluster = Cluster::start();
    for node in &cluster.nodes {
        let config = TopicConfig {
            partitions: 1,
            replication_factor: 3,
            ..TopicConfig::default()
        };
        client(node)
            .create_topic(TOPIC, config)
            .expect("create on every node");
    }
    let all = [0, 1, 2];
    let leader = cluster.wait_leader(&all);
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
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
        let c = client(&cluster.nodes[leader]);
        if c.fetch(TOPIC, 0, 0, 1, 0).is_ok_and(|f| f.high_watermark >= end) {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted node did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let views: Vec<BTreeMap<u64, String>> = cluster.nodes.iter().map(read_all).collect();
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
