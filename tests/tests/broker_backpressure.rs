//! Backpressure: producers that can push far faster than the disk syncs
//! (flush `always`, many batches in flight from several connections) must
//! not grow the broker's memory without bound — in-flight bytes per
//! connection and per shard are capped, so the broker stops reading the
//! sockets — and no acknowledged record may be lost.
//!
//! The bound is stated here: with the limits below (16 MiB per connection,
//! 32 MiB per shard, 2 shards) and the default 64 MiB batch cache per shard,
//! peak RSS stays under [`RSS_KIB_MAX`] while 256 MiB are produced.

use std::sync::Arc;

use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, Producer, ProducerConfig};
use shoal_protocol::messages::topic::{FlushPolicy, TopicConfig};
use shoal_tests::{BrokerOptions, BrokerProcess};

const PRODUCERS: usize = 4;
const RECORD_BYTES: usize = 1024;
/// Bytes each producer sends (`SHOAL_BACKPRESSURE_MB` per producer for more).
const PRODUCER_BYTES_DEFAULT: usize = 64 << 20;
/// The stated bound on the broker's peak RSS.
const RSS_KIB_MAX: u64 = 400 * 1024;

/// Four producers with 128 MiB client buffers against 16/32 MiB broker
/// budgets: peak RSS stays bounded and every ack is backed by a record.
#[test]
fn fast_producers_are_held_back_and_nothing_acked_is_lost() {
    let per_producer = std::env::var("SHOAL_BACKPRESSURE_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(PRODUCER_BYTES_DEFAULT, |mb| mb << 20);
    let options = BrokerOptions {
        config_toml:
            "[limits]\nconnection_inflight_bytes_max = 16777216\nshard_inflight_bytes_max = 33554432\n".into(),
        ..BrokerOptions::default()
    };
    let broker = BrokerProcess::start_with(options);
    let admin = Client::connect(&broker.addr_string()).unwrap();
    let topic = TopicConfig {
        partitions: 4,
        flush: FlushPolicy::Always,
        ..TopicConfig::default()
    };
    admin.create_topic("flood", topic).unwrap();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let addr = broker.addr_string();
            std::thread::spawn(move || flood(&addr, t, per_producer))
        })
        .collect();
    let mut acked = Vec::new();
    for t in threads {
        acked.extend(t.join().expect("producer"));
    }
    let peak = broker.peak_rss_kib();
    println!(
        "backpressure test: {} records ({} MiB) acknowledged, broker peak RSS {} MiB (bound {} MiB)",
        acked.len(),
        (acked.len() * RECORD_BYTES) >> 20,
        peak / 1024,
        RSS_KIB_MAX / 1024
    );
    assert!(peak < RSS_KIB_MAX, "peak RSS {peak} KiB over the bound");
    verify(&admin, &acked);
}

/// Sends `bytes` of 1 KiB records as fast as the client allows; returns
/// (partition, offset, producer, sequence) of every acknowledged record.
fn flood(addr: &str, producer_id: usize, bytes: usize) -> Vec<(u32, u64, usize, usize)> {
    let client = Arc::new(Client::connect(addr).unwrap());
    let config = ProducerConfig {
        linger_ms: 2,
        batch_bytes_max: 256 << 10,
        buffer_bytes_max: 128 << 20,
        timeout_ms: 120_000,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config).unwrap();
    let count = bytes / RECORD_BYTES;
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let mut value = format!("{producer_id}:{i}:").into_bytes();
        value.resize(RECORD_BYTES, b'x');
        let key = format!("k{}", i % 64).into_bytes();
        let rec = NewRecord {
            key: Some(key),
            value: Some(value),
            ..NewRecord::default()
        };
        handles.push((i, producer.send("flood", rec).unwrap()));
    }
    producer.flush();
    handles
        .into_iter()
        .map(|(i, h)| {
            let ack = h.wait().expect("ack");
            (ack.partition, ack.offset.expect("offset"), producer_id, i)
        })
        .collect()
}

fn verify(client: &Client, acked: &[(u32, u64, usize, usize)]) {
    let mut stored: Vec<Vec<(usize, usize)>> = vec![Vec::new(); 4];
    for (p, out) in stored.iter_mut().enumerate() {
        let mut offset = 0;
        loop {
            let fetched = client.fetch("flood", p as u32, offset, 8 << 20, 0).unwrap();
            if fetched.records.is_empty() {
                break;
            }
            for r in fetched.records {
                let value = r.value.unwrap();
                let text = std::str::from_utf8(&value[..24.min(value.len())]).unwrap_or("");
                let mut parts = text.split(':');
                let who: usize = parts.next().unwrap().parse().unwrap();
                let seq: usize = parts.next().unwrap().parse().unwrap();
                assert_eq!(r.offset as usize, out.len());
                out.push((who, seq));
            }
            offset = fetched.next_offset;
        }
    }
    for &(p, offset, who, seq) in acked {
        assert_eq!(
            stored[p as usize].get(offset as usize),
            Some(&(who, seq)),
            "acked record {p}/{offset} lost"
        );
    }
}
