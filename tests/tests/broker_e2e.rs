//! End-to-end produce and consume against a real `shoald`: shared port and
//! shard ports, forwarding from a non-owning shard, per-partition ordering
//! over 100,000 keyed records, replay by offset and by timestamp, and
//! message_id dedup.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shoal_protocol::batch::{BatchBuilder, NewRecord};
use shoal_protocol::client::{Client, ClientConfig, Connection, ConnectionConfig, Producer, ProducerConfig};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::offsets::OffsetSpec;
use shoal_protocol::messages::produce::{Acks, Durability, ProducePartition, ProduceRequest};
use shoal_protocol::messages::topic::{FlushPolicy, TopicConfig};
use shoal_protocol::partitioner::shard_for_partition;
use shoal_tests::BrokerProcess;

fn topic_config(partitions: u32, flush: FlushPolicy) -> TopicConfig {
    TopicConfig {
        partitions,
        flush,
        ..TopicConfig::default()
    }
}

fn record(key: &str, value: String) -> NewRecord {
    NewRecord {
        timestamp_ms: now_ms(),
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.into_bytes()),
        ..NewRecord::default()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn client(broker: &BrokerProcess, shard_aware: bool) -> Arc<Client> {
    let config = ClientConfig {
        shard_aware,
        ..ClientConfig::default()
    };
    Arc::new(Client::with_config(&broker.addr_string(), config).expect("connect"))
}

/// Reads a whole partition from `from` up to its high watermark.
fn read_all(
    client: &Client,
    topic: &str,
    partition: u32,
    from: u64,
) -> Vec<shoal_protocol::client::ConsumedRecord> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let fetched = client.fetch(topic, partition, offset, 1 << 20, 0).expect("fetch");
        if fetched.records.is_empty() {
            assert_eq!(
                offset, fetched.high_watermark,
                "stopped before the high watermark"
            );
            return out;
        }
        offset = fetched.next_offset;
        out.extend(fetched.records);
    }
}

/// Records produced through the shared port and through shard ports are
/// read back identically through either.
#[test]
fn produce_and_consume_through_shared_and_shard_ports() {
    let broker = BrokerProcess::start();
    for (topic, aware) in [("via-shard-ports", true), ("via-shared-port", false)] {
        let c = client(&broker, aware);
        c.create_topic(topic, topic_config(4, FlushPolicy::Always))
            .unwrap();
        let producer = Producer::new(c.clone(), ProducerConfig::default()).unwrap();
        let records: Vec<_> = (0..200)
            .map(|i| record(&format!("k{}", i % 7), format!("v{i}")))
            .collect();
        let acks = producer.send_all(topic, records).unwrap();
        assert!(
            acks.iter().all(|a| a.durability == Durability::Fsynced),
            "flush always must ack fsynced"
        );
        for reader_aware in [true, false] {
            let reader = client(&broker, reader_aware);
            let mut seen = 0;
            for p in 0..4 {
                for r in read_all(&reader, topic, p, 0) {
                    let ack = acks
                        .iter()
                        .find(|a| a.partition == p && a.offset == Some(r.offset))
                        .expect("acked");
                    assert_eq!(&*ack.topic, topic);
                    seen += 1;
                }
            }
            assert_eq!(seen, 200);
        }
    }
}

/// A produce sent to a shard port that does not own the partition is
/// forwarded to the owner and answered correctly; the record is readable.
#[test]
fn request_to_non_owning_shard_is_forwarded() {
    let broker = BrokerProcess::start();
    let c = client(&broker, true);
    c.create_topic("fwd", topic_config(2, FlushPolicy::Always))
        .unwrap();
    let shards = broker.shard_ports.len() as u32;
    for partition in 0..2 {
        let owner = shard_for_partition("fwd", partition, shards);
        let other = (owner + 1) % shards;
        let addr = format!("127.0.0.1:{}", broker.shard_ports[other as usize])
            .parse()
            .unwrap();
        let conn = Connection::connect(addr, ConnectionConfig::default()).unwrap();
        assert_eq!(
            conn.handshake().shard_id,
            other,
            "connected to the non-owning shard"
        );
        let mut b = BatchBuilder::new();
        b.push(record("k", format!("forwarded-{partition}")));
        let batch = b.finish().unwrap();
        let req = ProduceRequest {
            topic: "fwd".into(),
            acks: Acks::Leader,
            timeout_ms: 10_000,
            partitions: vec![ProducePartition {
                partition,
                batch_lens: vec![batch.len() as u32],
            }],
        };
        let reply = conn.call(&req, &[&batch], 0).unwrap().message;
        let part = &reply.partitions[0];
        assert_eq!(part.error, 0, "{}", part.message);
        assert_eq!(part.base_offset, 0);
        assert_eq!(part.durability, Durability::Fsynced);
        let got = read_all(&c, "fwd", partition, 0);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].value.as_deref(),
            Some(format!("forwarded-{partition}").as_bytes())
        );
    }
}

/// 100,000 keyed records over 16 partitions: every partition returns its
/// records in production order, and each key stays on one partition.
#[test]
fn ordering_within_partition_holds_for_100k_keyed_records() {
    let broker = BrokerProcess::start();
    let c = client(&broker, true);
    c.create_topic("ordered", topic_config(16, FlushPolicy::Never))
        .unwrap();
    let config = ProducerConfig {
        linger_ms: 2,
        batch_bytes_max: 256 << 10,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(c.clone(), config).unwrap();
    let total = 100_000u32;
    let keys = 500u32;
    let mut handles = Vec::with_capacity(total as usize);
    for i in 0..total {
        let key = format!("key-{}", i % keys);
        handles.push(
            producer
                .send("ordered", record(&key, format!("{}:{i}", i % keys)))
                .unwrap(),
        );
    }
    producer.flush();
    let acks: Vec<_> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    let mut key_partition: HashMap<u32, u32> = HashMap::new();
    for (i, ack) in acks.iter().enumerate() {
        let k = i as u32 % keys;
        assert_eq!(
            *key_partition.entry(k).or_insert(ack.partition),
            ack.partition,
            "key moved partitions"
        );
    }
    let mut seen = 0;
    for p in 0..16 {
        let mut last_seq_per_key: HashMap<u32, u32> = HashMap::new();
        let mut last_offset = None;
        for r in read_all(&c, "ordered", p, 0) {
            assert!(
                last_offset.is_none_or(|o| r.offset == o + 1),
                "offsets are dense and increasing"
            );
            last_offset = Some(r.offset);
            let text = String::from_utf8(r.value.unwrap()).unwrap();
            let (k, i) = text.split_once(':').unwrap();
            let (k, i): (u32, u32) = (k.parse().unwrap(), i.parse().unwrap());
            if let Some(prev) = last_seq_per_key.insert(k, i) {
                assert!(i > prev, "partition {p}: key {k} record {i} came after {prev}");
            }
            seen += 1;
        }
    }
    assert_eq!(seen, total);
}

/// Replay from an offset returns exactly the records from there; replay
/// from a timestamp starts at the first record appended at or after it.
#[test]
fn replay_from_offset_and_timestamp() {
    let broker = BrokerProcess::start();
    let c = client(&broker, true);
    c.create_topic("replay", topic_config(1, FlushPolicy::Always))
        .unwrap();
    let producer = Producer::new(
        c.clone(),
        ProducerConfig {
            linger_ms: 0,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let first = producer
        .send_all("replay", (0..50).map(|i| record("k", format!("a{i}"))).collect())
        .unwrap();
    // Every record of the first burst was stamped by now: the cut is the
    // first millisecond after it, and the second burst is stamped after that.
    let cut = shoal_tests::wall_ms_after(now_ms());
    let second = producer
        .send_all("replay", (0..50).map(|i| record("k", format!("b{i}"))).collect())
        .unwrap();
    let from_offset = read_all(&c, "replay", 0, 20);
    assert_eq!(from_offset.len(), 80);
    assert_eq!(from_offset[0].offset, 20);
    assert_eq!(from_offset[0].value.as_deref(), Some(&b"a20"[..]));
    let (at, ts) = c.list_offset("replay", 0, OffsetSpec::Timestamp(cut)).unwrap();
    assert_eq!(
        Some(at),
        second[0].offset,
        "first offset at or after the cut is the first of the second burst"
    );
    assert!(ts.unwrap() >= cut);
    let from_time = read_all(&c, "replay", 0, at);
    assert_eq!(from_time.len(), 50);
    assert!(from_time
        .iter()
        .all(|r| r.value.as_ref().unwrap().starts_with(b"b")));
    let (earliest, _) = c.list_offset("replay", 0, OffsetSpec::Earliest).unwrap();
    let (latest, _) = c.list_offset("replay", 0, OffsetSpec::Latest).unwrap();
    assert_eq!((earliest, latest), (first[0].offset.unwrap(), 100));
}

/// A message_id sent twice within the window is stored once, and the second
/// reply names the first copy's offset.
#[test]
fn message_id_dedup_within_window() {
    let broker = BrokerProcess::start();
    let c = client(&broker, true);
    c.create_topic("dedup", topic_config(1, FlushPolicy::Always))
        .unwrap();
    let producer = Producer::new(
        c.clone(),
        ProducerConfig {
            linger_ms: 0,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let with_id = |id: &str, v: &str| NewRecord {
        message_id: Some(id.into()),
        ..record("k", v.into())
    };
    let a = producer
        .send_all("dedup", vec![with_id("m-1", "first"), with_id("m-2", "other")])
        .unwrap();
    let b = producer
        .send_all(
            "dedup",
            vec![with_id("m-1", "second copy"), with_id("m-3", "new")],
        )
        .unwrap();
    assert_eq!(a[0].duplicate_of, None);
    assert_eq!(
        b[0].duplicate_of, a[0].offset,
        "second reply names the first offset"
    );
    assert_eq!(b[0].offset, a[0].offset);
    assert_eq!(b[1].duplicate_of, None);
    let stored = read_all(&c, "dedup", 0, 0);
    let values: Vec<_> = stored
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(values, ["first", "other", "new"]);
}

/// Retention by size runs on its own: once a partition holds more than
/// `retention_bytes` in whole older segments, they are deleted and the log
/// start moves forward; the retained tail stays readable.
#[test]
fn retention_by_size_deletes_old_segments() {
    let options = shoal_tests::BrokerOptions {
        config_toml: "[storage]\nsegment_bytes_max = 1048576\npreallocate_bytes = 1048576\nmaintenance_interval_ms = 100\n".into(),
        ..Default::default()
    };
    let broker = BrokerProcess::start_with(options);
    let c = client(&broker, true);
    let config = TopicConfig {
        partitions: 1,
        retention_bytes: Some(1 << 20),
        ..topic_config(1, FlushPolicy::Never)
    };
    c.create_topic("retained", config).unwrap();
    let producer = Producer::new(c.clone(), ProducerConfig::default()).unwrap();
    // Ten separate rounds of about 0.5 MiB: one produce request is one
    // contiguous append run and is never split across segments, so a
    // single 5 MB round would fill a single segment and leave nothing
    // that retention may delete.
    for round in 0..10 {
        let records: Vec<_> = (round * 500..(round + 1) * 500)
            .map(|i| record("k", format!("{i:01000}")))
            .collect();
        producer.send_all("retained", records).unwrap();
    }
    let moved = shoal_tests::wait_until(Duration::from_secs(10), || {
        c.list_offset("retained", 0, OffsetSpec::Earliest)
            .map(|(o, _)| o > 0)
            .unwrap_or(false)
    });
    assert!(moved, "log start never moved past 0");
    // Retention may still be deleting (one maintenance pass every 100 ms):
    // a read that starts at a log start deleted meanwhile is answered
    // offset_out_of_range, and is repeated from the new log start.
    let (start, tail) = (0..20)
        .find_map(|_| {
            let (start, _) = c.list_offset("retained", 0, OffsetSpec::Earliest).unwrap();
            let mut tail = Vec::new();
            let mut offset = start;
            loop {
                match c.fetch("retained", 0, offset, 1 << 20, 0) {
                    Ok(f) if f.records.is_empty() => {
                        assert_eq!(offset, f.high_watermark, "stopped before the high watermark");
                        return Some((start, tail));
                    }
                    Ok(f) => {
                        offset = f.next_offset;
                        tail.extend(f.records);
                    }
                    Err(e) if e.code() == Some(ErrorCode::OffsetOutOfRange) => return None,
                    Err(e) => panic!("fetch: {e}"),
                }
            }
        })
        .expect("the retained tail was read whole within 20 attempts");
    assert_eq!(tail.len() as u64, 5_000 - start);
    assert_eq!(tail.last().unwrap().value.as_deref().map(|v| v.len()), Some(1000));
}

/// Sums a counter family's samples whose labels contain `label` in the
/// broker's `/metrics` text.
fn metric_sum(broker: &BrokerProcess, family: &str, label: &str) -> f64 {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", broker.http_port)).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with(family) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// With the shard-aware client no produce or fetch crosses cores; through
/// the shared port, requests for partitions of the other shard do (the
/// counters are real, not constant).
#[test]
fn shard_aware_client_keeps_the_hot_path_on_one_core() {
    let broker = BrokerProcess::start();
    let aware = client(&broker, true);
    aware
        .create_topic("local", topic_config(8, FlushPolicy::Never))
        .unwrap();
    let producer = Producer::new(aware.clone(), ProducerConfig::default()).unwrap();
    let records: Vec<_> = (0..2_000)
        .map(|i| record(&format!("k{i}"), format!("v{i}")))
        .collect();
    producer.send_all("local", records).unwrap();
    let read: usize = (0..8).map(|p| read_all(&aware, "local", p, 0).len()).sum();
    assert_eq!(read, 2_000);
    let hot = |b: &BrokerProcess| {
        metric_sum(b, "shoal_cross_core_calls_total", "kind=\"produce\"")
            + metric_sum(b, "shoal_cross_core_calls_total", "kind=\"fetch\"")
    };
    assert_eq!(
        hot(&broker),
        0.0,
        "the shard-aware client's produce/fetch crossed cores"
    );
    let requests = metric_sum(&broker, "shoal_native_requests_total", "api=\"produce\"")
        + metric_sum(&broker, "shoal_native_requests_total", "api=\"fetch\"");
    assert!(requests > 0.0);
    let shared = client(&broker, false);
    let producer = Producer::new(shared.clone(), ProducerConfig::default()).unwrap();
    let records: Vec<_> = (0..200)
        .map(|i| record(&format!("k{i}"), format!("w{i}")))
        .collect();
    producer.send_all("local", records).unwrap();
    assert!(
        hot(&broker) > 0.0,
        "shared-port produce to the other shard's partitions must be forwarded"
    );
}

/// A topic deleted and created again, with fewer partitions, while its
/// first creation is still opening partitions: the broker survives, and
/// the topic ends with the partitions of its last creation, each serving.
/// Regression: a shard's opening of the first topic used to land in the
/// second one's partition slots (a panic here; the old data served as the
/// new topic's otherwise).
#[test]
fn topic_recreated_while_its_creation_opens() {
    const ROUNDS: usize = 10;
    let mut broker = BrokerProcess::start();
    let admin = client(&broker, true);
    for round in 0..ROUNDS {
        let creator = {
            let admin = admin.clone();
            std::thread::spawn(move || admin.create_topic("churn", topic_config(16, FlushPolicy::Always)))
        };
        // As soon as the topic exists on shard 0, delete it and create it
        // again with one partition (bounded: the first create ends).
        let churner = client(&broker, true);
        let mut deleted = false;
        for _ in 0..10_000 {
            if churner.delete_topic("churn").is_ok() {
                deleted = true;
                break;
            }
            if creator.is_finished() {
                deleted = churner.delete_topic("churn").is_ok();
                break;
            }
        }
        assert!(
            deleted,
            "round {round}: the first topic was never there to delete"
        );
        churner
            .create_topic("churn", topic_config(1, FlushPolicy::Always))
            .expect("create again");
        assert!(
            creator.join().expect("creator").is_ok(),
            "round {round}: first create failed"
        );
        assert!(broker.is_alive(), "round {round}: the broker died");
        let described = churner.describe_topic("churn").expect("describe");
        assert_eq!(described.partitions.len(), 1, "round {round}: {described:?}");
        let producer = Producer::new(churner.clone(), ProducerConfig::default()).expect("producer");
        let acks = producer
            .send_all("churn", vec![record("k", format!("r{round}"))])
            .expect("produce to the new topic");
        assert_eq!(
            acks[0].offset,
            Some(0),
            "round {round}: the new topic starts empty"
        );
        producer.close();
        churner.delete_topic("churn").expect("clean up");
    }
}
