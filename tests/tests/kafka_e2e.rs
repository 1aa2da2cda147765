//! Existing Kafka clients work against Shoal unchanged: librdkafka (through
//! the `rdkafka` crate) produces with idempotence and compression, consumes
//! in a group with committed offsets that survive a broker restart, and
//! records cross between the Kafka and native protocols both ways.

mod kafka_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use kafka_support::*;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use shoal_protocol::batch::{NewRecord, RecordHeader};
use shoal_protocol::client::{
    Client, GroupConsumer, GroupConsumerConfig, Producer as NativeProducer, ProducerConfig,
};
use shoal_protocol::messages::topic::TopicConfig;
use shoal_tests::{BrokerOptions, BrokerProcess};

const RECORDS: usize = 100_000;

fn broker(extra_toml: &str) -> BrokerProcess {
    BrokerProcess::start_with(BrokerOptions {
        config_toml: format!("[kafka]\n{extra_toml}\n"),
        ..BrokerOptions::default()
    })
}

fn create_topic(broker: &BrokerProcess, name: &str, partitions: u32) -> Client {
    let client = Client::connect(&broker.addr_string()).expect("native client");
    let config = TopicConfig {
        partitions,
        ..TopicConfig::default()
    };
    client.create_topic(name, config).expect("create topic");
    client
}

/// 100k records from two idempotent producers (lz4 and zstd) land once
/// each at dense offsets; a group of two consumers that formed together
/// reads every one exactly once, the two splitting the partitions, and the
/// offsets they commit are the group's position (lag 0) in Shoal's stats.
#[test]
fn idempotent_compressed_produce_then_group_of_two_reads_each_record_once() {
    let started = Instant::now();
    let broker = broker("group_initial_rebalance_delay_ms = 2000");
    let client = create_topic(&broker, "events", 4);
    let bootstrap = broker.kafka_bootstrap();
    let mut produced = 0;
    for (codec, range) in [("lz4", 0..RECORDS / 2), ("zstd", RECORDS / 2..RECORDS)] {
        let records: Vec<(Vec<u8>, Vec<u8>)> = range
            .map(|i| {
                (
                    format!("key-{}", i % 997).into_bytes(),
                    format!("{i:08}-{}", "v".repeat(64)).into_bytes(),
                )
            })
            .collect();
        let p = producer(&bootstrap, codec);
        produce_all(&p, "events", &records);
        produced += p.context().acked.lock().unwrap().len();
    }
    assert_eq!(produced, RECORDS);
    println!("produced {RECORDS} in {:?}", started.elapsed());
    let stats = client.topic_stats("events").unwrap();
    let per_partition: BTreeMap<u32, u64> = stats
        .partitions
        .iter()
        .map(|p| (p.partition, p.log_end))
        .collect();
    assert_eq!(
        per_partition.values().sum::<u64>(),
        RECORDS as u64,
        "no record stored twice"
    );

    let seen = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(2));
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (bootstrap, seen, barrier) = (bootstrap.clone(), seen.clone(), barrier.clone());
            std::thread::spawn(move || consume_share(&bootstrap, &seen, &barrier))
        })
        .collect();
    let shares: Vec<Vec<(i32, i64, String)>> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
    let mut ids = BTreeSet::new();
    for share in &shares {
        assert!(!share.is_empty(), "both members consumed");
        for (_, _, id) in share {
            assert!(ids.insert(id.clone()), "record {id} consumed twice");
        }
    }
    assert_eq!(ids.len(), RECORDS, "every record consumed");
    let partitions = |s: &Vec<(i32, i64, String)>| s.iter().map(|r| r.0).collect::<BTreeSet<_>>();
    assert!(
        partitions(&shares[0]).is_disjoint(&partitions(&shares[1])),
        "each partition had one owner"
    );
    let stats = client
        .group_stats("e2e")
        .expect("the Kafka group is in Shoal's stats");
    assert_eq!(stats.partitions.len(), 4, "{stats:?}");
    for p in &stats.partitions {
        assert_eq!(p.committed_offset, per_partition[&p.partition], "{p:?}");
        assert_eq!(p.lag_records, 0, "{p:?}");
    }
    println!("done in {:?}", started.elapsed());
}

/// One member of group `e2e`: consumes until the two members together saw
/// every record, committing as it goes and synchronously at the end.
fn consume_share(bootstrap: &str, seen: &AtomicUsize, barrier: &Barrier) -> Vec<(i32, i64, String)> {
    let consumer = group_consumer(bootstrap, "e2e");
    barrier.wait();
    consumer.subscribe(&["events"]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.load(Ordering::SeqCst) < RECORDS && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let c = own(&m);
                let id = String::from_utf8_lossy(&c.value.unwrap_or_default()[..8]).to_string();
                out.push((c.partition, c.offset, id));
                seen.fetch_add(1, Ordering::SeqCst);
                if out.len() % 5_000 == 0 {
                    consumer.commit_consumer_state(CommitMode::Async).unwrap();
                }
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    // A member whose positions were all committed already (by the last
    // asynchronous commit, or because it ended up with no partition) has
    // nothing to commit: librdkafka answers NoOffset, which is no failure.
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => panic!("final commit: {e}"),
    }
    out
}

/// A consumer stopped mid-way resumes, in a new process of the group, from
/// what it committed, and that commit survives a kill -9 of the broker
/// (Shoal's stats show it with the lag that remains).
#[test]
fn restarted_consumer_resumes_from_its_commit_across_a_broker_crash() {
    let mut broker = broker("group_initial_rebalance_delay_ms = 0");
    create_topic(&broker, "resume", 1);
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..1_000)
        .map(|i| (b"k".to_vec(), format!("{i:04}").into_bytes()))
        .collect();
    produce_all(&producer(&broker.kafka_bootstrap(), "none"), "resume", &records);

    let first = group_consumer(&broker.kafka_bootstrap(), "resume-group");
    first.subscribe(&["resume"]).unwrap();
    let got = consume_n(&first, 400, Duration::from_secs(30));
    assert_eq!(got.len(), 400);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("resume", 0, Offset::Offset(400))
        .unwrap();
    first.commit(&tpl, CommitMode::Sync).unwrap();
    drop(first);

    broker.kill();
    broker.restart();
    let client = Client::connect(&broker.addr_string()).unwrap();
    let stats = client.group_stats("resume-group").expect("stats after the crash");
    let p = &stats.partitions[0];
    assert_eq!((p.committed_offset, p.lag_records), (400, 600), "{p:?}");
    assert!(p.lag_ms > 0, "lag in time while behind: {p:?}");

    let second = group_consumer(&broker.kafka_bootstrap(), "resume-group");
    second.subscribe(&["resume"]).unwrap();
    let rest = consume_n(&second, 600, Duration::from_secs(30));
    assert_eq!(rest.len(), 600);
    assert_eq!(rest[0].offset, 400, "resumed at the commit");
    let values: Vec<String> = rest
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    let want: Vec<String> = (400..1_000).map(|i| format!("{i:04}")).collect();
    assert_eq!(values, want, "each remaining record once, in order");
}

/// Keys, values (null included), headers and create timestamps survive
/// Kafka → native and native → Kafka.
#[test]
fn records_cross_between_kafka_and_native_both_ways() {
    let broker = broker("");
    let client = Arc::new(create_topic(&broker, "cross", 1));
    let bootstrap = broker.kafka_bootstrap();
    let t0 = 1_700_000_000_000i64;

    // Kafka → native.
    let p = producer(&bootstrap, "snappy");
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "trace",
            value: Some("t-1"),
        })
        .insert(Header {
            key: "empty",
            value: Some(""),
        });
    p.send(
        BaseRecord::to("cross")
            .key("k1")
            .payload("v1")
            .headers(headers)
            .timestamp(t0),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    p.send(BaseRecord::<(), ()>::to("cross").timestamp(t0 + 1))
        .map_err(|(e, _)| e)
        .unwrap();
    p.send(
        BaseRecord::<str, ()>::to("cross")
            .key("tombstone")
            .timestamp(t0 + 2),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    p.flush(Duration::from_secs(30)).unwrap();
    let fetched = client.fetch("cross", 0, 0, 1 << 20, 1_000).unwrap().records;
    assert_eq!(fetched.len(), 3);
    assert_eq!(fetched[0].key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(fetched[0].value.as_deref(), Some(&b"v1"[..]));
    assert_eq!(
        fetched[0].headers,
        vec![
            ("trace".to_string(), b"t-1".to_vec()),
            ("empty".to_string(), Vec::new())
        ]
    );
    assert_eq!(fetched[0].timestamp_ms, t0);
    assert_eq!((fetched[1].key.clone(), fetched[1].value.clone()), (None, None));
    assert_eq!(fetched[1].timestamp_ms, t0 + 1);
    assert_eq!(
        (fetched[2].key.as_deref(), fetched[2].value.clone()),
        (Some(&b"tombstone"[..]), None)
    );

    // Native → Kafka.
    let native = NativeProducer::new(client.clone(), ProducerConfig::default()).unwrap();
    let sent = vec![
        NewRecord {
            timestamp_ms: t0 + 10,
            key: Some(b"n1".to_vec()),
            value: Some(b"from native".to_vec()),
            headers: vec![RecordHeader {
                key: "origin".into(),
                value: b"shoal".to_vec(),
            }],
            message_id: None,
        },
        NewRecord {
            timestamp_ms: t0 + 11,
            key: Some(b"n2".to_vec()),
            value: None,
            headers: Vec::new(),
            message_id: None,
        },
    ];
    native.send_all("cross", sent).unwrap();
    let consumer = plain_consumer(&bootstrap);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("cross", 0, Offset::Offset(3)).unwrap();
    consumer.assign(&tpl).unwrap();
    let got = consume_n(&consumer, 2, Duration::from_secs(30));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].offset, 3);
    assert_eq!(got[0].key.as_deref(), Some(&b"n1"[..]));
    assert_eq!(got[0].value.as_deref(), Some(&b"from native"[..]));
    assert_eq!(
        got[0].headers,
        vec![("origin".to_string(), Some(b"shoal".to_vec()))]
    );
    assert_eq!(got[0].timestamp_ms, Some(t0 + 10));
    assert_eq!(
        (got[1].key.as_deref(), got[1].value.clone()),
        (Some(&b"n2"[..]), None)
    );
    assert_eq!(got[1].timestamp_ms, Some(t0 + 11));
}

/// A group is used over one protocol: a Kafka consumer cannot join a Shoal
/// group (INCONSISTENT_GROUP_PROTOCOL), and a native member cannot join a
/// group a Kafka consumer committed for (a message naming Kafka).
#[test]
fn one_group_one_protocol() {
    let broker = broker("group_initial_rebalance_delay_ms = 0");
    let client = Arc::new(create_topic(&broker, "mixed", 2));
    let _native =
        GroupConsumer::join(client.clone(), GroupConsumerConfig::new("shoal-side", &["mixed"])).unwrap();
    let kafka = group_consumer(&broker.kafka_bootstrap(), "shoal-side");
    kafka.subscribe(&["mixed"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused = None;
    while refused.is_none() && Instant::now() < deadline {
        if let Some(Err(e)) = kafka.poll(Duration::from_millis(100)) {
            refused = Some(e.to_string());
        }
    }
    let refused = refused.expect("the Kafka join is refused");
    assert!(refused.contains("Inconsistent group protocol"), "{refused}");

    let committer = group_consumer(&broker.kafka_bootstrap(), "kafka-side");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("mixed", 0, Offset::Offset(0)).unwrap();
    committer.commit(&tpl, CommitMode::Sync).unwrap();
    let err = GroupConsumer::join(client, GroupConsumerConfig::new("kafka-side", &["mixed"]))
        .err()
        .expect("the native join is refused");
    assert!(err.to_string().contains("Kafka protocol"), "{err}");
}
