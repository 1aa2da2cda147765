//! HTTP publish throughput next to the native protocol's, in the same run,
//! against one real `shoald` (release build).
//!
//! `cargo build --release -p shoal-broker --bin shoald &&
//!  cargo bench -p shoal-tests --bench http_vs_native [-- SECONDS CLIENTS]`
//!
//! Both front doors get the same work: `CLIENTS` threads, each on its own
//! keep-alive connection to the shared port (so the kernel spreads them over
//! shards and some requests are forwarded, for both), each sending one
//! request of 100 records x 100-byte values at a time to a fixed partition,
//! acks `leader`, closed loop. It runs once per flush policy: `always`
//! (fdatasync before every ack, group-committed) and `never` (no fsync on
//! the ack path, which exposes the front door's own cost). After a warm-up,
//! it prints records/s and the request latency percentiles (closed loop,
//! so no coordinated-omission correction: these are service times).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_protocol::batch::{BatchBuilder, NewRecord};
use shoal_protocol::client::{Connection, ConnectionConfig};
use shoal_protocol::messages::produce::{Acks, ProducePartition, ProduceRequest};
use shoal_tests::{BrokerOptions, BrokerProcess};

const RECORDS_PER_REQUEST: usize = 100;
const VALUE_BYTES: usize = 100;
const PARTITIONS: u32 = 2;
const WARMUP: Duration = Duration::from_secs(1);

/// One client's view of a front door.
trait Publisher: Send {
    /// Publishes one request of `RECORDS_PER_REQUEST` records; panics on failure.
    fn publish(&mut self, partition: u32);
}

struct HttpPublisher {
    agent: ureq::Agent,
    url: String,
    body: String,
}

impl HttpPublisher {
    fn new(port: u16, topic: &str, partition: u32) -> Self {
        let value = "x".repeat(VALUE_BYTES);
        let records: Vec<Value> = (0..RECORDS_PER_REQUEST)
            .map(|_| json!({"partition": partition, "value": value}))
            .collect();
        HttpPublisher {
            agent: ureq::AgentBuilder::new().max_idle_connections_per_host(1).build(),
            url: format!("http://127.0.0.1:{port}/topics/{topic}/messages"),
            body: json!({ "records": records }).to_string(),
        }
    }
}

impl Publisher for HttpPublisher {
    fn publish(&mut self, _partition: u32) {
        let resp = self
            .agent
            .post(&self.url)
            .set("content-type", "application/json")
            .send_string(&self.body)
            .expect("HTTP publish");
        let _ = resp.into_string().expect("HTTP reply");
    }
}

struct NativePublisher {
    conn: Connection,
    topic: String,
}

impl Publisher for NativePublisher {
    fn publish(&mut self, partition: u32) {
        let mut b = BatchBuilder::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for _ in 0..RECORDS_PER_REQUEST {
            b.push(NewRecord {
                timestamp_ms: now,
                value: Some(vec![b'x'; VALUE_BYTES]),
                ..NewRecord::default()
            });
        }
        let batch = b.finish().expect("batch");
        let req = ProduceRequest {
            topic: self.topic.clone(),
            acks: Acks::Leader,
            timeout_ms: 30_000,
            partitions: vec![ProducePartition {
                partition,
                batch_lens: vec![batch.len() as u32],
            }],
        };
        let reply = self
            .conn
            .call(&req, &[&batch], 0)
            .expect("native produce")
            .message;
        assert_eq!(reply.partitions[0].error, 0, "{}", reply.partitions[0].message);
    }
}

/// Records/s and request latencies of one run.
struct Outcome {
    records_per_sec: f64,
    latencies_us: Vec<u64>,
}

fn run(clients: usize, seconds: u64, make: impl Fn(usize) -> Box<dyn Publisher>) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for i in 0..clients {
        let mut publisher = make(i);
        let (stop, measuring) = (stop.clone(), measuring.clone());
        threads.push(std::thread::spawn(move || {
            let partition = i as u32 % PARTITIONS;
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                publisher.publish(partition);
                if measuring.load(Ordering::Relaxed) {
                    lat.push(t.elapsed().as_micros() as u64);
                }
            }
            lat
        }));
    }
    std::thread::sleep(WARMUP);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client"))
        .collect();
    latencies_us.sort_unstable();
    Outcome {
        records_per_sec: (latencies_us.len() * RECORDS_PER_REQUEST) as f64 / elapsed.as_secs_f64(),
        latencies_us,
    }
}

fn pct(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn report(door: &str, flush: &str, o: &Outcome) {
    let l = &o.latencies_us;
    println!(
        "{door:<7} flush={flush:<6} {:>10.0} records/s  {:>7} requests  latency ms p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        o.records_per_sec,
        l.len(),
        pct(l, 0.50),
        pct(l, 0.99),
        pct(l, 0.999),
        l.last().map_or(f64::NAN, |m| *m as f64 / 1000.0),
    );
}

fn create_topic(port: u16, name: &str, flush: &str) {
    let url = format!("http://127.0.0.1:{port}/topics");
    ureq::post(&url)
        .send_json(json!({"name": name, "partitions": PARTITIONS, "flush": flush, "dedup_window_ms": 0}))
        .expect("create topic");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let clients: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let broker = BrokerProcess::start_with(BrokerOptions::default());
    println!(
        "http_vs_native: {cores} cores, shoald 2 shards (unpinned), {clients} clients x 1 request in flight, \
         {RECORDS_PER_REQUEST} records x {VALUE_BYTES} B per request, acks leader, {PARTITIONS} partitions, \
         warm-up {WARMUP:?}, {seconds} s measured, broker {}",
        bin_kind()
    );
    for flush in ["always", "never"] {
        let (http_topic, native_topic) = (format!("http-{flush}"), format!("native-{flush}"));
        create_topic(broker.http_port, &http_topic, flush);
        create_topic(broker.http_port, &native_topic, flush);
        let port = broker.http_port;
        let http = run(clients, seconds, |i| {
            Box::new(HttpPublisher::new(port, &http_topic, i as u32 % PARTITIONS))
        });
        let addr = broker.addr;
        let native = run(clients, seconds, |_| {
            let conn = Connection::connect(addr, ConnectionConfig::default()).expect("connect");
            Box::new(NativePublisher {
                conn,
                topic: native_topic.clone(),
            })
        });
        report("http", flush, &http);
        report("native", flush, &native);
        println!(
            "        flush={flush:<6} http/native throughput ratio {:.2}",
            http.records_per_sec / native.records_per_sec
        );
    }
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
