//! librdkafka producing and consuming through the Kafka port next to the
//! native client, in the same run, against one real `shoald` (release).
//!
//! `cargo bench -p shoal-tests --bench kafka_vs_native [-- RECORDS ROUNDS]`
//!
//! Both clients do the same work on a fresh 4-partition topic each:
//! produce `RECORDS` records (100-byte values, 16-byte keys spread over
//! the partitions, no compression) as fast as they can with their batching
//! (librdkafka: `linger.ms=5`, `batch.size` 1 MiB, acks=all, idempotence
//! off; native: linger 5 ms, batches of 1 MiB, acks leader: on one node
//! both wait for the same durability), timed from the first send to the
//! last acknowledgement; then read them all back from the start (librdkafka:
//! one consumer assigned every partition, 1 MiB per partition and fetch; native:
//! one thread per partition fetching 1 MiB at a time), timed to the last
//! record. Each phase runs `ROUNDS` times per flush policy (`always`:
//! fdatasync before every ack; `never`: no fsync on the ack path, which
//! exposes the front end's own cost), the two clients alternating which
//! goes first, and the median of the rounds is reported with the ratio
//! Kafka / native. The machine, its load average before and after, and the
//! build are printed with the figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, Producer, ProducerConfig};
use shoal_protocol::messages::produce::Acks;
use shoal_protocol::messages::topic::{FlushPolicy, TopicConfig};
use shoal_tests::{BrokerOptions, BrokerProcess};

const PARTITIONS: u32 = 4;
const VALUE_BYTES: usize = 100;
const KEYS: usize = 1024;

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
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1048576")
        .set("queue.buffering.max.kbytes", "65536")
        .create_with_context(acked.clone())
        .expect("producer");
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
        acks: Acks::Leader,
        linger_ms: 5,
        batch_bytes_max: 1 << 20,
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

fn kafka_consume(bootstrap: &str, topic: &str, records: usize) -> Duration {
    let consumer: BaseConsumer = KafkaConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-unused")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "16777216")
        .set("max.partition.fetch.bytes", "1048576")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    let started = Instant::now();
    consumer.assign(&tpl).unwrap();
    let mut seen = 0;
    let deadline = started + Duration::from_secs(300);
    while seen < records && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => panic!("Kafka consume: {e}"),
            None => {}
        }
    }
    assert_eq!(seen, records, "Kafka consumer read everything");
    started.elapsed()
}

fn native_consume(client: &Arc<Client>, topic: &str, records: usize) -> Duration {
    let seen = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let (client, topic, seen) = (client.clone(), topic.to_string(), seen.clone());
            std::thread::spawn(move || {
                let end = client.topic_stats(&topic).unwrap().partitions[p as usize].log_end;
                let mut offset = 0;
                while offset < end {
                    let fetched = client
                        .fetch(&topic, p, offset, 1 << 20, 500)
                        .expect("native fetch");
                    seen.fetch_add(fetched.records.len() as u64, Ordering::Relaxed);
                    offset = fetched.next_offset;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        seen.load(Ordering::Relaxed),
        records as u64,
        "native consumer read everything"
    );
    started.elapsed()
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
    } else {
        "debug"
    };
    format!("{kind} ({})", path.display())
}

type Phase<'a> = Box<dyn Fn(&str) -> Duration + 'a>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let records: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(500_000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let broker = BrokerProcess::start_with(BrokerOptions::default());
    let client = Arc::new(Client::connect(&broker.addr_string()).expect("native client"));
    let bootstrap = broker.kafka_bootstrap();
    println!(
        "kafka_vs_native: {} ({cores} cores), load average {} at start; shoald 2 shards (unpinned), broker {}; \
         {records} records x {VALUE_BYTES} B values, {PARTITIONS} partitions, {rounds} rounds per phase (median)",
        cpu_model(),
        loadavg(),
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
                (2, Box::new(|t| kafka_consume(&bootstrap, t, records)), &kt),
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
                let took = phase(topic);
                rates[*slot].push(records as f64 / took.as_secs_f64());
            }
        }
        let [kp, np, kc, nc] = rates.map(median);
        println!(
            "flush={flush_name:<6} produce: kafka {kp:>10.0} rec/s  native {np:>10.0} rec/s  ratio {:.2}",
            kp / np
        );
        println!(
            "flush={flush_name:<6} consume: kafka {kc:>10.0} rec/s  native {nc:>10.0} rec/s  ratio {:.2}",
            kc / nc
        );
    }
    println!("load average at end {}", loadavg());
}
