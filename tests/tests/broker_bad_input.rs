//! Hostile input over real connections: at least 100,000 random and mutated
//! frames (`SHOAL_BAD_FRAMES` for more; seed printed, `SHOAL_BAD_SEED` to
//! repeat) are written to a live broker from several threads. The broker
//! must never crash, its peak RSS must stay under a fixed bound, and a
//! well-behaved client on its own connection must keep getting correct
//! answers throughout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use shoal_protocol::batch::{BatchBuilder, NewRecord};
use shoal_protocol::client::{Client, Producer, ProducerConfig};
use shoal_protocol::codec;
use shoal_protocol::messages::fetch::{FetchPartition, FetchRequest};
use shoal_protocol::messages::metadata::MetadataRequest;
use shoal_protocol::messages::produce::{Acks, ProducePartition, ProduceRequest};
use shoal_protocol::messages::topic::{CreateTopicRequest, TopicConfig};
use shoal_tests::BrokerProcess;

const FRAMES_DEFAULT: u64 = 100_000;
const SENDER_THREADS: u64 = 4;
/// Peak RSS the broker may reach during the test.
const RSS_KIB_MAX: u64 = 768 * 1024;

fn valid_frames() -> Vec<Vec<u8>> {
    let mut b = BatchBuilder::new();
    b.push(NewRecord {
        key: Some(b"k".to_vec()),
        value: Some(vec![7; 300]),
        ..NewRecord::default()
    });
    let batch = b.finish().unwrap();
    let produce = ProduceRequest {
        topic: "victim".into(),
        acks: Acks::Leader,
        timeout_ms: 1000,
        partitions: vec![ProducePartition {
            partition: 0,
            batch_lens: vec![batch.len() as u32],
        }],
    };
    let fetch = FetchRequest {
        topic: "victim".into(),
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 4096,
        partitions: vec![FetchPartition {
            partition: 0,
            offset: 0,
            max_bytes: 4096,
        }],
    };
    let create = CreateTopicRequest {
        name: "fuzz-made".into(),
        config: TopicConfig::default(),
    };
    vec![
        codec::encode(&produce, 1, &[&batch]).unwrap().to_vec(),
        codec::encode(&fetch, 2, &[]).unwrap().to_vec(),
        codec::encode(&MetadataRequest { topics: vec![] }, 3, &[])
            .unwrap()
            .to_vec(),
        codec::encode(&create, 4, &[]).unwrap().to_vec(),
    ]
}

/// One hostile frame: random bytes, or a valid frame with bytes flipped,
/// cut short, extended, or with header fields replaced.
fn hostile(rng: &mut impl Rng, valid: &[Vec<u8>]) -> Vec<u8> {
    let mut f = valid[rng.gen_range(0..valid.len())].clone();
    match rng.gen_range(0..6) {
        0 => (0..rng.gen_range(1..512)).map(|_| rng.gen()).collect(),
        1 => {
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..f.len());
                f[i] ^= rng.gen_range(1..=255u8);
            }
            f
        }
        2 => {
            f.truncate(rng.gen_range(0..f.len()));
            f
        }
        3 => {
            f.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>()));
            f
        }
        4 => {
            // A header field replaced: length, key, version or flags.
            let at = [0usize, 4, 6, 12, 16][rng.gen_range(0..5)];
            f[at] = rng.gen();
            f[at + 1] = rng.gen();
            f
        }
        _ => {
            // Valid header, meta bytes scrambled but CRC recomputed would be
            // too kind; scramble the payload (batch) only.
            let len = f.len();
            if len > 64 {
                let i = rng.gen_range(len - 64..len);
                f[i] ^= 0x5a;
            }
            f
        }
    }
}

/// The broker survives 100k hostile frames with bounded memory while a
/// good client keeps getting correct answers.
#[test]
fn hostile_frames_never_hurt_other_clients() {
    let frames_total: u64 = std::env::var("SHOAL_BAD_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FRAMES_DEFAULT);
    let seed: u64 = std::env::var("SHOAL_BAD_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("bad-input test: seed {seed}, {frames_total} frames");
    let mut broker = BrokerProcess::start();
    let good = Arc::new(Client::connect(&broker.addr_string()).unwrap());
    good.create_topic("victim", TopicConfig::default()).unwrap();
    good.create_topic("good", TopicConfig::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let good_rounds = Arc::new(AtomicU64::new(0));
    let good_thread = {
        let (good, stop, rounds) = (good.clone(), stop.clone(), good_rounds.clone());
        std::thread::spawn(move || well_behaved(good, stop, rounds))
    };
    let sent = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..SENDER_THREADS)
        .map(|t| {
            let (addr, sent) = (broker.addr, sent.clone());
            let quota = frames_total / SENDER_THREADS;
            std::thread::spawn(move || send_hostile(addr, seed ^ t, quota, sent))
        })
        .collect();
    for s in senders {
        s.join().expect("sender thread");
    }
    stop.store(true, Ordering::SeqCst);
    good_thread
        .join()
        .expect("the well-behaved client saw a wrong answer");
    assert!(broker.is_alive(), "the broker died");
    let peak = broker.peak_rss_kib();
    let frames = sent.load(Ordering::SeqCst);
    println!(
        "bad-input test: {frames} hostile frames written, {} good rounds, broker peak RSS {} MiB",
        good_rounds.load(Ordering::SeqCst),
        peak / 1024
    );
    assert!(
        frames >= frames_total - SENDER_THREADS,
        "fewer frames than planned were written"
    );
    assert!(good_rounds.load(Ordering::SeqCst) > 0);
    assert!(
        peak < RSS_KIB_MAX,
        "peak RSS {peak} KiB over the bound {RSS_KIB_MAX} KiB"
    );
    assert!(broker.terminate().success(), "graceful stop after the storm");
}

fn send_hostile(addr: std::net::SocketAddr, seed: u64, quota: u64, sent: Arc<AtomicU64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let valid = valid_frames();
    let mut done = 0;
    let mut reply = [0u8; 4096];
    while done < quota {
        let Ok(mut conn) = TcpStream::connect(addr) else {
            continue;
        };
        conn.set_nodelay(true).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        // A few frames per connection: the first malformed one closes it.
        for _ in 0..rng.gen_range(1..16) {
            let frame = hostile(&mut rng, &valid);
            if conn.write_all(&frame).is_err() {
                break;
            }
            done += 1;
            sent.fetch_add(1, Ordering::Relaxed);
            if done >= quota {
                break;
            }
        }
        // Read whatever the broker answered; do not wait long.
        let _ = conn.read(&mut reply);
    }
}

/// Produces and reads back on its own connection until told to stop,
/// panicking on any wrong answer.
fn well_behaved(client: Arc<Client>, stop: Arc<AtomicBool>, rounds: Arc<AtomicU64>) {
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            linger_ms: 0,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let mut expected = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let value = format!("good-{expected}");
        let rec = NewRecord {
            value: Some(value.clone().into_bytes()),
            ..NewRecord::default()
        };
        let ack = producer.send_all("good", vec![rec]).expect("good produce");
        assert_eq!(
            ack[0].offset,
            Some(expected),
            "offsets of the good topic are dense"
        );
        let fetched = client.fetch("good", 0, expected, 4096, 0).expect("good fetch");
        assert_eq!(fetched.records[0].value.as_deref(), Some(value.as_bytes()));
        expected += 1;
        rounds.fetch_add(1, Ordering::SeqCst);
    }
}
