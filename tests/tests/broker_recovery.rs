//! Coming back from a crash: `/readyz` turns 200 only once every partition
//! is recovered and served (a read right after it never gets `not_owner`
//! or `partition_recovering`); a broker restarted at once after SIGKILL on
//! the same fixed ports comes up, many times over; and a produce whose
//! records were all duplicates never claims more durability than the
//! originals reached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, Producer, ProducerConfig};
use shoal_protocol::messages::produce::Durability;
use shoal_protocol::messages::topic::{FlushPolicy, TopicConfig};
use shoal_protocol::partitioner::{partition_for_key, shard_for_partition};
use shoal_tests::{BrokerOptions, BrokerProcess, FixedPorts};

fn record(key: &str, value: &str, message_id: Option<&str>) -> NewRecord {
    NewRecord {
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        message_id: message_id.map(str::to_string),
        ..NewRecord::default()
    }
}

fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Restarts a broker holding many partitions (each with data) and, as a
/// supervisor would, polls `/readyz` from the moment the process starts,
/// then reads every partition as soon as it says ready: every read
/// succeeds and sees its records. Before readiness meant "recovered", a
/// shard that finished its own start answered 200 while another was still
/// opening logs, and a read right after got `not_owner`.
#[test]
fn ready_means_every_partition_is_served() {
    let topics = ["ra", "rb", "rc", "rd"];
    let partitions = 48u32;
    let ports = FixedPorts::pick(2);
    let mut broker = BrokerProcess::start_with(BrokerOptions {
        fixed_ports: Some(ports),
        ..BrokerOptions::default()
    });
    {
        let client = Arc::new(Client::connect(&broker.addr_string()).expect("connect"));
        let producer = Producer::new(client.clone(), ProducerConfig::default()).expect("producer");
        for t in topics {
            client
                .create_topic(
                    t,
                    TopicConfig {
                        partitions,
                        ..TopicConfig::default()
                    },
                )
                .expect("create");
            let records = (0..partitions * 8)
                .map(|i| record(&format!("k{i}"), "v", None))
                .collect();
            producer.send_all(t, records).expect("produce");
        }
        // One partition, owned by shard 1, with a large active segment:
        // recovery scans it, so shard 1 finishes starting well after shard 0.
        client
            .create_topic(
                "rbig",
                TopicConfig {
                    partitions: 2,
                    ..TopicConfig::default()
                },
            )
            .expect("create");
        let slow = (0..2)
            .find(|&p| shard_for_partition("rbig", p, 2) == 1)
            .expect("a partition of shard 1");
        let key = (0..)
            .map(|i| format!("big{i}"))
            .find(|k| partition_for_key(k.as_bytes(), 2) == slow)
            .expect("a key of that partition");
        let value = "x".repeat(64 << 10);
        for _ in 0..16 {
            let records = (0..64).map(|_| record(&key, &value, None)).collect();
            producer.send_all("rbig", records).expect("produce big");
        }
    }
    for cycle in 0..6 {
        let started_line = broker.restart_without_waiting();
        let url = format!("http://127.0.0.1:{}/readyz", ports.http);
        let started = Instant::now();
        loop {
            match ureq::get(&url).timeout(Duration::from_secs(2)).call() {
                Ok(r) if r.status() == 200 => break,
                _ if started.elapsed() > Duration::from_secs(60) => panic!("never ready"),
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        // Shard-unaware: every read lands on the shared port and is
        // forwarded, so it meets whichever shard is slowest to recover.
        let config = shoal_protocol::client::ClientConfig {
            shard_aware: false,
            retries_max: 0,
            ..Default::default()
        };
        let addr = format!("127.0.0.1:{}", ports.shared);
        let client = Client::with_config(&addr, config).expect("connect");
        let mut records = 0;
        for t in topics {
            for p in 0..partitions {
                let fetched = client
                    .fetch(t, p, 0, 1 << 20, 0)
                    .unwrap_or_else(|e| panic!("cycle {cycle}: {t}/{p} right after ready: {e}"));
                records += fetched.records.len();
            }
        }
        assert_eq!(records, topics.len() * (partitions * 8) as usize);
        for p in 0..2 {
            client
                .fetch("rbig", p, 0, 1 << 20, 0)
                .unwrap_or_else(|e| panic!("cycle {cycle}: rbig/{p} right after ready: {e}"));
        }
        broker.wait_started(started_line);
    }
}

/// SIGKILL and restart at once on the same fixed ports, many times: every
/// start comes up (the ports of the killed process may still be held for a
/// moment; the broker waits for them instead of exiting) and serves what
/// was acknowledged before the kill. `SHOAL_RESTART_AT_ONCE_CYCLES` sets
/// the count (default 30).
#[test]
fn restart_right_after_kill_comes_up() {
    let cycles = env_u32("SHOAL_RESTART_AT_ONCE_CYCLES").unwrap_or(30);
    let options = BrokerOptions {
        shards: 2,
        fixed_ports: Some(FixedPorts::pick(2)),
        ..BrokerOptions::default()
    };
    let mut broker = BrokerProcess::start_with(options);
    let client = Arc::new(Client::connect(&broker.addr_string()).expect("connect"));
    client
        .create_topic(
            "again",
            TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            },
        )
        .expect("create");
    drop(client);
    let mut acked = 0usize;
    for cycle in 0..cycles {
        let client = Arc::new(Client::connect(&broker.addr_string()).expect("connect after restart"));
        let producer = Producer::new(client.clone(), ProducerConfig::default()).expect("producer");
        let records = (0..10)
            .map(|i| record(&format!("k{i}"), &format!("c{cycle}"), None))
            .collect();
        acked += producer.send_all("again", records).expect("produce").len();
        let stored: usize = (0..2)
            .map(|p| {
                client
                    .fetch("again", p, 0, 8 << 20, 0)
                    .expect("fetch")
                    .records
                    .len()
            })
            .sum();
        assert_eq!(stored, acked, "cycle {cycle}: every acknowledged record is there");
        drop(producer);
        drop(client);
        // restart() kills with SIGKILL and starts at once on the same ports.
        broker.restart();
    }
}

/// Under `flush never` a record's first copy is acknowledged at `memory`;
/// a produce of only its duplicate must not claim `written` (the broker
/// used to say `written` for an all-duplicate reply whatever the original
/// reached). Under `flush always` the duplicate reports `fsynced`.
#[test]
fn all_duplicate_produce_reports_the_originals_durability() {
    let broker = BrokerProcess::start();
    let client = Arc::new(Client::connect(&broker.addr_string()).expect("connect"));
    for (topic, flush, expected) in [
        ("dup-never", FlushPolicy::Never, Durability::Memory),
        ("dup-always", FlushPolicy::Always, Durability::Fsynced),
    ] {
        client
            .create_topic(
                topic,
                TopicConfig {
                    partitions: 1,
                    flush,
                    dedup_window_ms: 60_000,
                    ..TopicConfig::default()
                },
            )
            .expect("create");
        let producer = Producer::new(client.clone(), ProducerConfig::default()).expect("producer");
        let first = producer
            .send_all(topic, vec![record("k", "v", Some("id-1"))])
            .expect("first");
        assert_eq!(first[0].durability, expected, "{topic}: the original");
        let again = producer
            .send_all(topic, vec![record("k", "v", Some("id-1"))])
            .expect("again");
        assert_eq!(
            again[0].duplicate_of, first[0].offset,
            "{topic}: recognised as a duplicate of the original"
        );
        assert_eq!(
            again[0].durability, expected,
            "{topic}: a duplicate reports what its original reached"
        );
    }
}
