//! librdkafka producing and consuming through the Kafka port next to the
//! native client, in the same run, against one real `shoald` (release).
//!
//! `cargo bench -p shoal-tests --bench kafka_vs_native [-- RECORDS ROUNDS]`
//!
//! Both clients do the same work on a fresh 4-partition topic each, with
//! the same number of application threads and the same settings where the
//! two clients have one:
//!
//! | | librdkafka (`rdkafka`) | native client |
//! |-|-|-|
//! | records | `RECORDS` x 100-byte value, 16-byte key | the same |
//! | partitioner | `murmur2_random` (Kafka's) | murmur2 of the key |
//! | produce threads | 1 application thread calling `send` | 1 calling `send` |
//! | batching | `linger.ms=5`, `batch.size` 1 MiB, `batch.num.messages` 1M | linger 5 ms, batches of 1 MiB |
//! | buffer | `queue.buffering.max.kbytes` 64 MiB | `buffer_bytes_max` 64 MiB |
//! | durability | `acks=all`, idempotence off | acks quorum (the same wait on one node) |
//! | compression | none | none |
//! | consume threads | 4: one `BaseConsumer` per partition (`assign`), polled record by record | 4: one fetch loop per partition on one shared client |
//! | fetch size | `max.partition.fetch.bytes` and `fetch.max.bytes` 1 MiB | 1 MiB per fetch |
//! | long poll | `fetch.min.bytes=1`, `fetch.wait.max.ms=500` | min 1 byte, wait 500 ms |
//! | prefetch | `queued.max.messages.kbytes` 64 MiB, `queued.min.messages` 1M | none (one fetch at a time) |
//! | sockets | `socket.nagle.disable=true` | TCP_NODELAY (always) |
//!
//! Produce is timed from the first send to the last acknowledgement;
//! consume from the start of the readers (librdkafka's consumers already
//! created and holding the topic's metadata, assigned their partition at
//! offset 0 on the clock, since librdkafka starts fetching at the
//! assignment; the native client connected) to the last record of every
//! partition (each reader stops at its partition's log end). Each phase
//! runs `ROUNDS` times per flush policy (`always`: fdatasync before every
//! ack; `never`: no fsync on the ack path, which exposes the front end's
//! own cost), the two clients alternating which goes first, and the median
//! of the rounds is reported with the ratio Kafka / native, with every
//! round's rate so the spread shows. The machine, its load average before
//! and after, the build and shoald's pid (for `perf record -p`) are printed
//! with the figures. `KAFKA_VS_NATIVE_ONLY=kafka` (or `native`) runs one
//! side only, for profiling.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, Producer, ProducerConfig};
use shoal_protocol::messages::produce::Acks;
use shoal_protocol::messages::topic::{FlushPolicy, TopicConfig};
use shoal_tests::{BrokerOptions, BrokerProcess};

const PARTITIONS: u32 = 4;
const VALUE_BYTES: usize = 100;
const KEYS: usize = 1024;
/// Batch size of both producers and fetch size of both consumers.
const BATCH_BYTES: usize = 1 << 20;
/// Records both producers may hold unsent before `send` waits.
const BUFFER_BYTES: usize = 64 << 20;
const LINGER_MS: u64 = 5;
/// The consumers' long-poll wait (reached only at the end of a partition).
const FETCH_WAIT_MS: u32 = 500;

fn key(i: usize) -> Vec<u8> {
    format!("key-{:012}", i % KEYS).into_bytes()
}

fn value() -> Vec<u8> {
    vec![b'v'; VALUE_BYTES]
}

/// Counts librdkafka's delivery reports.
#[derive(Clone, Default)]
struct Acked {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Acked {}

impl ProducerContext for Acked {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn kafka_produce(bootstrap: &str, topic: &str, records: usize) -> Duration {
    let acked = Acked::default();
    let producer: BaseProducer<Acked> = KafkaConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.nagle.disable", "true")
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("compression.codec", "none")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", LINGER_MS.to_string())
        .set("batch.size", BATCH_BYTES.to_string())
        .set("batch.num.messages", "1000000")
        // A request holds one batch per partition of a shard.
        .set("message.max.bytes", (4 * BATCH_BYTES).to_string())
        .set("queue.buffering.max.kbytes", (BUFFER_BYTES >> 10).to_string())
        .set("queue.buffering.max.messages", "10000000")
        .create_with_context(acked.clone())
        .expect("producer");
    // Connected and the topic's leaders known before the clock starts, as
    // the native client is.
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let value = value();
    let started = Instant::now();
    for i in 0..records {
        let key = key(i);
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    let elapsed = started.elapsed();
    assert_eq!(acked.failed.load(Ordering::Relaxed), 0, "Kafka deliveries failed");
    assert_eq!(acked.ok.load(Ordering::Relaxed), records as u64);
    elapsed
}

fn native_produce(client: &Arc<Client>, topic: &str, records: usize) -> Duration {
    let config = ProducerConfig {
        acks: Acks::Quorum,
        linger_ms: LINGER_MS,
        batch_bytes_max: BATCH_BYTES,
        buffer_bytes_max: BUFFER_BYTES,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client.clone(), config).expect("producer");
    let value = value();
    let started = Instant::now();
    let mut handles = Vec::with_capacity(records);
    for i in 0..records {
        let record = NewRecord {
            key: Some(key(i)),
            value: Some(value.clone()),
            ..NewRecord::default()
        };
        handles.push(producer.send(topic, record).expect("send"));
    }
    producer.flush();
    for h in handles {
        h.wait().expect("native ack");
    }
    started.elapsed()
}

/// Each partition's log end: where its reader stops.
fn log_ends(client: &Client, topic: &str) -> Vec<u64> {
    let stats = client.topic_stats(topic).expect("topic stats");
    stats.partitions.iter().map(|p| p.log_end).collect()
}

/// A consumer configured for throughput and connected (metadata fetched)
/// before it is timed; [`assign_from_start`] starts it, on the clock.
fn kafka_consumer(bootstrap: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = KafkaConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.nagle.disable", "true")
        .set("group.id", "bench-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.min.bytes", "1")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
        .set("fetch.max.bytes", BATCH_BYTES.to_string())
        .set("max.partition.fetch.bytes", BATCH_BYTES.to_string())
        .set("queued.max.messages.kbytes", (BUFFER_BYTES >> 10).to_string())
        .set("queued.min.messages", "1000000")
        .create()
        .expect("consumer");
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    consumer
}

/// Starts `consumer` on `partition` at offset 0, where the native reader
/// starts. librdkafka fetches (and prefetches) from the moment of the
/// assignment, so it happens on the clock, as the native reader's first
/// fetch does; offset 0 rather than "beginning" spares a ListOffsets
/// round trip the native reader does not make either.
fn assign_from_start(consumer: &BaseConsumer, topic: &str, partition: i32) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(0))
        .unwrap();
    consumer.assign(&tpl).unwrap();
}

fn kafka_consume(bootstrap: &str, client: &Client, topic: &str, records: usize) -> Duration {
    let ends = log_ends(client, topic);
    let consumers: Vec<BaseConsumer> = (0..PARTITIONS)
        .map(|_| kafka_consumer(bootstrap, topic))
        .collect();
    timed_read(&ends, records, "Kafka consumers read everything", |p, end| {
        let consumer = &consumers[p];
        assign_from_start(consumer, topic, p as i32);
        let deadline = Instant::now() + Duration::from_secs(300);
        let (mut next, mut seen) = (0u64, 0u64);
        while next < end && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    next = m.offset() as u64 + 1;
                    seen += 1;
                }
                Some(Err(e)) => panic!("Kafka consume: {e}"),
                None => {}
            }
        }
        seen
    })
}

fn native_consume(client: &Arc<Client>, topic: &str, records: usize) -> Duration {
    let ends = log_ends(client, topic);
    timed_read(&ends, records, "native consumer read everything", |p, end| {
        let (mut offset, mut seen) = (0, 0u64);
        while offset < end {
            let fetched = client
                .fetch(topic, p as u32, offset, BATCH_BYTES as u32, FETCH_WAIT_MS)
                .expect("native fetch");
            seen += fetched.records.len() as u64;
            offset = fetched.next_offset;
        }
        seen
    })
}

/// Reads every partition on a thread of its own, timed from the start of
/// the first to the end of the last: `read(p, end)` reads partition `p` up
/// to its log end `end` and returns how many records it saw. Asserts that
/// `records` were seen in all (`what` says so on failure).
fn timed_read(ends: &[u64], records: usize, what: &str, read: impl Fn(usize, u64) -> u64 + Sync) -> Duration {
    let started = Instant::now();
    let seen: u64 = std::thread::scope(|s| {
        let readers: Vec<_> = ends
            .iter()
            .enumerate()
            .map(|(p, &end)| {
                let read = &read;
                s.spawn(move || read(p, end))
            })
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().expect("a reader panicked"))
            .sum()
    });
    let elapsed = started.elapsed();
    assert_eq!(seen, records as u64, "{what}");
    elapsed
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default()
}

/// Which build of shoald the harness found (the figures mean little for debug).
fn bin_kind() -> String {
    let path = shoal_tests::bin_path("shoald");
    let kind = if path.components().any(|c| c.as_os_str() == "release") {
        "release"
    } else if std::env::var_os("SHOAL_BIN_DIR").is_some() {
        "from SHOAL_BIN_DIR"
    } else {
        "debug"
    };
    format!("{kind} ({})", path.display())
}

type Phase<'a> = Box<dyn Fn(&str) -> Duration + 'a>;

/// Which sides run (`KAFKA_VS_NATIVE_ONLY`): both unless one is named.
fn sides() -> (bool, bool) {
    match std::env::var("KAFKA_VS_NATIVE_ONLY").as_deref() {
        Ok("kafka") => (true, false),
        Ok("native") => (false, true),
        _ => (true, true),
    }
}

/// `median (min-max)` of a phase's rounds, in records per second.
fn summary(rates: &[f64]) -> String {
    if rates.is_empty() {
        return "-".to_string();
    }
    let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rates.iter().copied().fold(0.0, f64::max);
    format!("{:>9.0} ({:.0}-{:.0})", median(rates.to_vec()), lo, hi)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let records: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(500_000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let (run_kafka, run_native) = sides();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let broker = BrokerProcess::start_with(BrokerOptions::default());
    let client = Arc::new(Client::connect(&broker.addr_string()).expect("native client"));
    let bootstrap = broker.kafka_bootstrap();
    println!(
        "kafka_vs_native: {} ({cores} cores), load average {} at start; shoald pid {}, 2 shards (unpinned), broker {}; \
         {records} records x {VALUE_BYTES} B values, {PARTITIONS} partitions, {rounds} rounds per phase \
         (median (min-max) rec/s); 1 producer thread and {PARTITIONS} consumer threads per client",
        cpu_model(),
        loadavg(),
        broker.pid(),
        bin_kind()
    );
    let mut topic_n = 0;
    for flush in [FlushPolicy::Always, FlushPolicy::Never] {
        let flush_name = if flush == FlushPolicy::Always {
            "always"
        } else {
            "never"
        };
        let mut rates: [Vec<f64>; 4] = Default::default();
        for round in 0..rounds {
            let mut produce_topic = |prefix: &str| {
                topic_n += 1;
                let name = format!("{prefix}-{flush_name}-{topic_n}");
                let config = TopicConfig {
                    partitions: PARTITIONS,
                    flush,
                    dedup_window_ms: 0,
                    ..TopicConfig::default()
                };
                client.create_topic(&name, config).expect("create topic");
                name
            };
            let (kt, nt) = (produce_topic("kafka"), produce_topic("native"));
            let phases: [(usize, Phase<'_>, &str); 4] = [
                (0, Box::new(|t| kafka_produce(&bootstrap, t, records)), &kt),
                (1, Box::new(|t| native_produce(&client, t, records)), &nt),
                (
                    2,
                    Box::new(|t| kafka_consume(&bootstrap, &client, t, records)),
                    &kt,
                ),
                (3, Box::new(|t| native_consume(&client, t, records)), &nt),
            ];
            // Produce both, then consume both; alternate who goes first.
            let order: [usize; 4] = if round % 2 == 0 {
                [0, 1, 2, 3]
            } else {
                [1, 0, 3, 2]
            };
            for i in order {
                let (slot, phase, topic) = &phases[i];
                let kafka_side = *slot % 2 == 0;
                if (kafka_side && !run_kafka) || (!kafka_side && !run_native) {
                    continue;
                }
                let took = phase(topic);
                rates[*slot].push(records as f64 / took.as_secs_f64());
            }
        }
        let ratio = |k: &[f64], n: &[f64]| {
            if k.is_empty() || n.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}", median(k.to_vec()) / median(n.to_vec()))
            }
        };
        let [kp, np, kc, nc] = &rates;
        println!(
            "flush={flush_name:<6} produce: kafka {}  native {}  ratio {}",
            summary(kp),
            summary(np),
            ratio(kp, np)
        );
        println!(
            "flush={flush_name:<6} consume: kafka {}  native {}  ratio {}",
            summary(kc),
            summary(nc),
            ratio(kc, nc)
        );
    }
    println!("load average at end {}", loadavg());
}
