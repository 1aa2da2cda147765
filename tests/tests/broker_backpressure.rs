//! Backpressure: producers that can push far faster than the disk syncs
//! (flush `always`, many batches in flight from several connections) are
//! held back by the broker's budgets — the broker stops reading their
//! sockets — and a producer over its byte-rate quota is throttled. No
//! acknowledged record may be lost, and memory stays bounded.
//!
//! What is asserted, on the broker's own `/metrics`: while the flood runs,
//! `shoal_inflight_free_bytes` (the shard budget small frames draw on) and
//! `shoal_receive_pool_free_bytes` (the pool large frames reserve from)
//! fall to less than one frame on some shard, so producers were waiting for
//! budget; once every ack is in, both are back at their configured size on
//! every shard (nothing leaked). Under a quota, `shoal_throttle_time_ms_total`
//! rises and the producer's rate stays near the quota.
//!
//! The memory bound is stated here: with the budgets below (per shard 2 MiB
//! in flight, a 2 MiB receive pool and a 16 MiB batch cache, 2 shards),
//! peak RSS stays under [`RSS_KIB_MAX`] while 256 MiB are produced.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, PendingReply, Producer, ProducerConfig};
use shoal_protocol::messages::produce::{Acks, ProducePartition, ProduceRequest, ProduceResponse};
use shoal_protocol::messages::topic::{FlushPolicy, TopicConfig};
use shoal_tests::{wait_until, BrokerOptions, BrokerProcess, Metrics};

const RECORD_BYTES: usize = 1024;
/// Bytes each producer sends (`SHOAL_BACKPRESSURE_MB` per producer for more).
const PRODUCER_BYTES_DEFAULT: usize = 64 << 20;
/// Batch size of the two client producers. The client sends one request
/// per shard at a time, up to the frame cap: frames over the 64 KiB read
/// chunk, which reserve from the receive pool.
const PRODUCER_BATCH_BYTES: usize = 256 << 10;
/// Two pipelining senders keep up to [`PIPELINE_DEPTH`] frames unanswered
/// on their connection: one writes frames of a 16 KiB batch (under the read
/// chunk: they draw on the shard's in-flight budget), one of a 192 KiB
/// batch (they reserve from the receive pool).
const PIPELINE_FRAME_BYTES: [usize; 2] = [16 << 10, 192 << 10];
const PIPELINE_DEPTH: usize = 256;
/// The budgets, as small as the broker's rules allow (connection and pool
/// at least a frame, shard at least a connection), so that one pipelining
/// sender of each kind exhausts them.
const FRAME_BYTES_MAX: u64 = 1 << 20;
const CONNECTION_INFLIGHT_BYTES_MAX: u64 = 2 << 20;
const SHARD_INFLIGHT_BYTES_MAX: u64 = 2 << 20;
const RECEIVE_POOL_BYTES_MAX: u64 = 2 << 20;
const BATCH_CACHE_BYTES_MAX: u64 = 16 << 20;
/// The stated bound on the broker's peak RSS.
const RSS_KIB_MAX: u64 = 128 * 1024;
/// How often the sampler scrapes `/metrics` during the flood.
const SAMPLE_MS: u64 = 10;

/// Two client producers with 128 MiB buffers and two pipelining senders
/// against small broker budgets: the budgets run out (producers wait), come
/// back whole, peak RSS stays bounded, and every ack is backed by a record.
#[test]
fn fast_producers_are_held_back_and_nothing_acked_is_lost() {
    let per_producer = std::env::var("SHOAL_BACKPRESSURE_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(PRODUCER_BYTES_DEFAULT, |mb| mb << 20);
    let options = BrokerOptions {
        config_toml: format!(
            "[limits]\nframe_bytes_max = {FRAME_BYTES_MAX}\n\
             connection_inflight_bytes_max = {CONNECTION_INFLIGHT_BYTES_MAX}\n\
             shard_inflight_bytes_max = {SHARD_INFLIGHT_BYTES_MAX}\n\
             receive_pool_bytes_max = {RECEIVE_POOL_BYTES_MAX}\n\
             [storage]\nbatch_cache_bytes_max = {BATCH_CACHE_BYTES_MAX}\n"
        ),
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
    let idle = Metrics::scrape(broker.http_port).expect("scrape");
    assert_budgets_whole(&idle, "before the flood");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, port) = (done.clone(), broker.http_port);
        std::thread::spawn(move || lowest_free_bytes(port, &done))
    };
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let addr = broker.addr_string();
            std::thread::spawn(move || match t {
                0 | 1 => flood_topic(&addr, "flood", t, PRODUCER_BATCH_BYTES, per_producer),
                _ => pipeline(&addr, t, PIPELINE_FRAME_BYTES[t - 2], per_producer),
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in threads {
        acked.extend(t.join().expect("producer"));
    }
    done.store(true, Ordering::SeqCst);
    let (inflight_low, pool_low, samples) = sampler.join().expect("sampler");
    let peak = broker.peak_rss_kib();
    println!(
        "backpressure test: {} records ({} MiB) acknowledged, broker peak RSS {} MiB (bound {} MiB); \
         over {samples} scrapes the lowest free bytes were {inflight_low} in flight (of {SHARD_INFLIGHT_BYTES_MAX}) \
         and {pool_low} in the receive pool (of {RECEIVE_POOL_BYTES_MAX})",
        acked.len(),
        (acked.len() * RECORD_BYTES) >> 20,
        peak / 1024,
        RSS_KIB_MAX / 1024
    );
    // Less than one frame free: a producer's next frame had to wait.
    let small_frame = PIPELINE_FRAME_BYTES[0] as u64 + (4 << 10);
    let large_frame = PIPELINE_FRAME_BYTES[1] as u64;
    assert!(
        inflight_low < small_frame,
        "the shard in-flight budget never ran out (lowest free {inflight_low} bytes)"
    );
    assert!(
        pool_low < large_frame,
        "the receive pool never ran out (lowest free {pool_low} bytes)"
    );
    // Every reservation is returned once the acks are in.
    let mut last = idle;
    let whole = wait_until(Duration::from_secs(10), || {
        last = Metrics::scrape(broker.http_port).expect("scrape");
        budgets_whole(&last)
    });
    assert!(whole, "budgets not returned after the flood");
    assert_budgets_whole(&last, "after the flood");
    assert!(peak < RSS_KIB_MAX, "peak RSS {peak} KiB over the bound");
    verify(&admin, &acked);
}

/// A producer over its byte-rate quota is throttled: the broker counts
/// throttle time and the producer's rate stays near the quota.
#[test]
fn producer_over_quota_is_throttled() {
    const QUOTA_BYTES_PER_SEC: u64 = 1 << 20;
    const SEND_BYTES: usize = 4 << 20;
    let broker = BrokerProcess::start_with(BrokerOptions {
        config_toml: format!("[limits]\nproduce_bytes_per_sec_max = {QUOTA_BYTES_PER_SEC}\n"),
        ..BrokerOptions::default()
    });
    let admin = Client::connect(&broker.addr_string()).unwrap();
    let topic = TopicConfig {
        partitions: 1,
        ..TopicConfig::default()
    };
    admin.create_topic("metered", topic).unwrap();
    let throttled_ms = || {
        Metrics::scrape(broker.http_port)
            .expect("scrape")
            .sum("shoal_throttle_time_ms_total")
    };
    let before = throttled_ms();
    let started = Instant::now();
    // In steps of 256 KiB, each sent once the last is acked: a throttle
    // earned by one step holds the next back (a single burst would be in
    // the broker before its own throttle could pause the connection).
    let step = 256 << 10;
    let client = Arc::new(Client::connect(&broker.addr_string()).unwrap());
    let mut acked = Vec::new();
    for from in (0..SEND_BYTES).step_by(step) {
        acked.extend(send_records(
            &client,
            "metered",
            0,
            64 << 10,
            from / RECORD_BYTES,
            step / RECORD_BYTES,
        ));
    }
    let took = started.elapsed();
    let after = throttled_ms();
    let rate = SEND_BYTES as f64 / took.as_secs_f64();
    println!(
        "quota test: {} records in {:.2} s ({:.0} KiB/s against a quota of {} KiB/s), throttle time counted {} ms",
        acked.len(),
        took.as_secs_f64(),
        rate / 1024.0,
        QUOTA_BYTES_PER_SEC >> 10,
        after - before
    );
    assert_eq!(acked.len(), SEND_BYTES / RECORD_BYTES, "every record acked");
    // One second of burst, then the quota: at least 3 s for 4 MiB.
    let floor_s = (SEND_BYTES as u64 - QUOTA_BYTES_PER_SEC) as f64 / QUOTA_BYTES_PER_SEC as f64;
    assert!(
        took.as_secs_f64() >= floor_s * 0.9,
        "4 MiB went through in {took:?} under a 1 MiB/s quota"
    );
    assert!(
        after - before >= 1_000.0,
        "throttle time counted went {before} -> {after} ms"
    );
}

/// Whether every shard's in-flight budget and receive pool are whole (the
/// scrape itself holds one unit of its shard's in-flight budget).
fn budgets_whole(m: &Metrics) -> bool {
    let full = |name, max: u64, held: u64| {
        let v = m.values(name);
        v.len() == 2 && v.iter().all(|(_, free)| *free as u64 + held >= max)
    };
    full("shoal_inflight_free_bytes", SHARD_INFLIGHT_BYTES_MAX, 1)
        && full("shoal_receive_pool_free_bytes", RECEIVE_POOL_BYTES_MAX, 0)
}

fn assert_budgets_whole(m: &Metrics, when: &str) {
    assert!(
        budgets_whole(m),
        "budgets {when}: in flight {:?}, receive pool {:?}",
        m.values("shoal_inflight_free_bytes"),
        m.values("shoal_receive_pool_free_bytes")
    );
}

/// Scrapes `/metrics` until `done`; returns the lowest free bytes seen on
/// any shard, in flight and in the receive pool, and the scrape count.
fn lowest_free_bytes(http_port: u16, done: &AtomicBool) -> (u64, u64, u64) {
    let (mut inflight, mut pool, mut samples) = (u64::MAX, u64::MAX, 0);
    let low = |m: &Metrics, name| {
        m.values(name)
            .iter()
            .map(|(_, v)| *v as u64)
            .min()
            .unwrap_or(u64::MAX)
    };
    // Bounded by the producers' own timeouts: they end, and `done` is set.
    while !done.load(Ordering::SeqCst) {
        if let Ok(m) = Metrics::scrape(http_port) {
            inflight = inflight.min(low(&m, "shoal_inflight_free_bytes"));
            pool = pool.min(low(&m, "shoal_receive_pool_free_bytes"));
            samples += 1;
        }
        std::thread::sleep(Duration::from_millis(SAMPLE_MS));
    }
    (inflight, pool, samples)
}

/// Writes `bytes` of 1 KiB records to the partitions of the shard that owns
/// `flood`/0, one batch of `frame_bytes` per frame, keeping
/// [`PIPELINE_DEPTH`] frames unanswered on one connection; returns what was
/// acknowledged.
fn pipeline(
    addr: &str,
    producer_id: usize,
    frame_bytes: usize,
    bytes: usize,
) -> Vec<(u32, u64, usize, usize)> {
    let client = Client::connect(addr).unwrap();
    let shard = client.partition_route("flood", 0).unwrap().shard;
    let partitions: Vec<u32> = (0..4)
        .filter(|p| client.partition_route("flood", *p).unwrap().shard == shard)
        .collect();
    let conn = client.partition_connection("flood", 0).unwrap();
    let per_frame = frame_bytes / RECORD_BYTES;
    let mut window = std::collections::VecDeque::new();
    let mut acked = Vec::new();
    for (n, first) in (0..bytes / RECORD_BYTES).step_by(per_frame).enumerate() {
        let partition = partitions[n % partitions.len()];
        let mut b = shoal_protocol::batch::BatchBuilder::new();
        for i in first..first + per_frame {
            b.push(record(producer_id, i));
        }
        let batch = b.finish().unwrap();
        let request = ProduceRequest {
            topic: "flood".into(),
            acks: Acks::Leader,
            timeout_ms: 120_000,
            partitions: vec![ProducePartition {
                partition,
                batch_lens: vec![batch.len() as u32],
            }],
        };
        window.push_back((conn.send(&request, &[&batch], 120_000).unwrap(), partition, first));
        if window.len() >= PIPELINE_DEPTH {
            settle(window.pop_front().unwrap(), producer_id, per_frame, &mut acked);
        }
    }
    for pending in window {
        settle(pending, producer_id, per_frame, &mut acked);
    }
    acked
}

/// Waits for one pipelined produce and notes its records' offsets.
fn settle(
    (reply, partition, first): (PendingReply<ProduceResponse>, u32, usize),
    producer_id: usize,
    per_frame: usize,
    acked: &mut Vec<(u32, u64, usize, usize)>,
) {
    let reply = reply.wait().expect("pipelined produce").message;
    let p = &reply.partitions[0];
    assert_eq!(p.error, 0, "pipelined produce: {}", p.message);
    for i in 0..per_frame {
        acked.push((partition, p.base_offset + i as u64, producer_id, first + i));
    }
}

/// Record `i` of a producer: its value starts with `producer:i:`.
fn record(producer_id: usize, i: usize) -> NewRecord {
    let mut value = format!("{producer_id}:{i}:").into_bytes();
    value.resize(RECORD_BYTES, b'x');
    NewRecord {
        key: Some(format!("k{}", i % 64).into_bytes()),
        value: Some(value),
        ..NewRecord::default()
    }
}

/// Sends `bytes` of 1 KiB records in batches of `batch_bytes`; returns
/// (partition, offset, producer, sequence) of every acknowledged record.
fn flood_topic(
    addr: &str,
    topic: &str,
    producer_id: usize,
    batch_bytes: usize,
    bytes: usize,
) -> Vec<(u32, u64, usize, usize)> {
    let client = Arc::new(Client::connect(addr).unwrap());
    send_records(&client, topic, producer_id, batch_bytes, 0, bytes / RECORD_BYTES)
}

/// Sends records `first..first + count` of a producer as fast as the
/// client allows and waits for every ack.
fn send_records(
    client: &Arc<Client>,
    topic: &str,
    producer_id: usize,
    batch_bytes: usize,
    first: usize,
    count: usize,
) -> Vec<(u32, u64, usize, usize)> {
    let config = ProducerConfig {
        linger_ms: 2,
        batch_bytes_max: batch_bytes,
        buffer_bytes_max: 128 << 20,
        timeout_ms: 120_000,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client.clone(), config).unwrap();
    let mut handles = Vec::with_capacity(count);
    for i in first..first + count {
        handles.push((i, producer.send(topic, record(producer_id, i)).unwrap()));
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
