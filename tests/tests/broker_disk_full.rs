//! A partition whose writes the kernel refuses is fenced: produce gets
//! `partition_fenced` (HTTP 503), every record acknowledged before the fault
//! stays readable, other partitions keep serving, and a restart with room
//! again recovers the partition with nothing acknowledged lost.
//!
//! The fault is real: the broker runs under a file-size limit
//! (`RLIMIT_FSIZE`), so the kernel refuses its O_DIRECT writes past that
//! size (EFBIG), as it would on a full disk (ENOSPC). Preallocation is off
//! so that the writes themselves grow the segment file.

use serde_json::{json, Value};
use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, ClientConfig, Producer, ProducerConfig};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::topic::{FlushPolicy, TopicConfig};
use shoal_tests::{BrokerOptions, BrokerProcess};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The largest file the broker may write while the fault is on.
const FILE_SIZE_LIMIT: u64 = 2 << 20;
const RECORDS_PER_ROUND: usize = 100;
const VALUE_BYTES: usize = 1000;
/// Far more than fits under the limit: the loop must end in a refusal.
const ROUNDS_MAX: usize = 200;

fn topic(partitions: u32) -> TopicConfig {
    TopicConfig {
        partitions,
        flush: FlushPolicy::Always,
        ..TopicConfig::default()
    }
}

fn value(i: usize) -> Vec<u8> {
    format!("{i:0width$}", width = VALUE_BYTES).into_bytes()
}

fn record(i: usize) -> NewRecord {
    NewRecord {
        timestamp_ms: 1_700_000_000_000,
        key: Some(b"k".to_vec()),
        value: Some(value(i)),
        ..NewRecord::default()
    }
}

fn client(broker: &BrokerProcess) -> Arc<Client> {
    Arc::new(Client::with_config(&broker.addr_string(), ClientConfig::default()).expect("connect"))
}

/// Every record of partition 0 of `topic` as offset → value.
fn read_all(client: &Client, topic: &str) -> BTreeMap<u64, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut offset = 0;
    loop {
        let fetched = client.fetch(topic, 0, offset, 1 << 20, 0).expect("fetch");
        if fetched.records.is_empty() {
            return out;
        }
        offset = fetched.next_offset;
        for r in fetched.records {
            out.insert(r.offset, r.value.expect("value"));
        }
    }
}

fn check_acked(client: &Client, acked: &BTreeMap<u64, usize>) {
    let stored = read_all(client, "full");
    for (offset, i) in acked {
        assert_eq!(
            stored.get(offset),
            Some(&value(*i)),
            "acked record {i} at offset {offset}"
        );
    }
}

fn readyz(broker: &BrokerProcess) -> Value {
    let url = format!("http://127.0.0.1:{}/readyz", broker.http_port);
    ureq::get(&url).call().expect("readyz").into_json().expect("json")
}

fn http_publish(broker: &BrokerProcess, topic: &str) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{}/topics/{topic}/messages", broker.http_port);
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let resp = match agent.post(&url).send_json(json!({"key": "k", "value": "v"})) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {url}: {e}"),
    };
    let status = resp.status();
    (status, resp.into_json().expect("json reply"))
}

#[test]
fn full_disk_fences_the_partition_and_loses_nothing_acknowledged() {
    let mut broker = BrokerProcess::start_with(BrokerOptions {
        config_toml: "[storage]\npreallocate_bytes = 0\n".into(),
        file_size_limit: Some(FILE_SIZE_LIMIT),
        ..BrokerOptions::default()
    });
    let c = client(&broker);
    c.create_topic("full", topic(1)).expect("create full");
    c.create_topic("other", topic(1)).expect("create other");
    let producer = Producer::new(c.clone(), ProducerConfig::default()).expect("producer");

    let mut acked = BTreeMap::new();
    let mut refusal = None;
    for round in 0..ROUNDS_MAX {
        let records = (round * RECORDS_PER_ROUND..(round + 1) * RECORDS_PER_ROUND).map(record);
        match producer.send_all("full", records.collect()) {
            Ok(acks) => {
                for (k, ack) in acks.iter().enumerate() {
                    acked.insert(ack.offset.expect("offset"), round * RECORDS_PER_ROUND + k);
                }
            }
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let refusal = refusal.expect("the limit was never reached");
    println!(
        "{} records acknowledged before the fault; then: {refusal}",
        acked.len()
    );
    assert!(!acked.is_empty());
    assert_eq!(refusal.code(), Some(ErrorCode::PartitionFenced), "{refusal}");

    // The broker serves on: the fenced partition is read-only, the others
    // take writes.
    assert!(broker.is_alive());
    let again = producer.send_all("full", vec![record(0)]).expect_err("fenced");
    assert_eq!(again.code(), Some(ErrorCode::PartitionFenced), "{again}");
    let (status, body) = http_publish(&broker, "full");
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("partition_fenced")),
        "{body}"
    );
    let other = producer
        .send_all("other", vec![record(1)])
        .expect("other partition");
    assert_eq!(other[0].offset, Some(0));
    check_acked(&c, &acked);
    // Readiness stays green (the rest of the broker serves) but names it.
    let ready = readyz(&broker);
    assert_eq!(ready["ready"], true, "{ready}");
    let fenced = ready["fenced_partitions"].as_array().expect("list");
    assert_eq!(fenced.len(), 1, "{ready}");
    assert_eq!(
        (fenced[0]["topic"].as_str(), fenced[0]["partition"].as_u64()),
        (Some("full"), Some(0))
    );

    // Room again: the restarted broker recovers the partition intact.
    broker.set_file_size_limit(None);
    broker.restart();
    let c = client(&broker);
    check_acked(&c, &acked);
    let producer = Producer::new(c.clone(), ProducerConfig::default()).expect("producer");
    let after = producer
        .send_all("full", vec![record(7)])
        .expect("produce after recovery");
    let next = acked.keys().last().expect("acked") + 1;
    assert!(after[0].offset.expect("offset") >= next);
    let (status, body) = http_publish(&broker, "full");
    assert_eq!(status, 200, "{body}");
    assert_eq!(readyz(&broker)["fenced_partitions"], json!([]));
}
