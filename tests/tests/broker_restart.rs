//! Crash-restart durability of the broker: producers write with acks
//! `leader` to topics with flush `always`; the broker is SIGKILLed at a
//! random moment and restarted; every acknowledged record must be readable
//! at the offset its ack named, with its value. At least 20 cycles
//! (`SHOAL_RESTART_CYCLES` for more); the seed is printed
//! (`SHOAL_RESTART_SEED` to repeat a run).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, Producer, ProducerConfig};
use shoal_protocol::messages::produce::Durability;
use shoal_protocol::messages::topic::{FlushPolicy, TopicConfig};
use shoal_tests::BrokerProcess;

const CYCLES_DEFAULT: u32 = 20;
const PARTITIONS: u32 = 4;

struct Acked {
    partition: u32,
    offset: u64,
    value: String,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Produces until the broker dies, recording every acknowledged record.
fn produce_until_error(addr: String, cycle: u32, acked: Arc<Mutex<Vec<Acked>>>) {
    let Ok(client) = Client::connect(&addr) else {
        return;
    };
    let config = ProducerConfig {
        linger_ms: 1,
        timeout_ms: 5_000,
        ..ProducerConfig::default()
    };
    let Ok(producer) = Producer::new(Arc::new(client), config) else {
        return;
    };
    for round in 0u32.. {
        let records: Vec<_> = (0..20)
            .map(|i| NewRecord {
                timestamp_ms: 0,
                key: Some(format!("k{i}").into_bytes()),
                value: Some(format!("c{cycle}-r{round}-{i}").into_bytes()),
                ..NewRecord::default()
            })
            .collect();
        let values: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
            .collect();
        let Ok(acks) = producer.send_all("durable", records) else {
            return;
        };
        let mut out = acked.lock().unwrap();
        for (ack, value) in acks.into_iter().zip(values) {
            assert_eq!(
                ack.durability,
                Durability::Fsynced,
                "flush always acks only after fsync"
            );
            out.push(Acked {
                partition: ack.partition,
                offset: ack.offset.expect("acks leader has offsets"),
                value,
            });
        }
    }
}

/// Every acknowledged record survives SIGKILL + restart at its offset.
#[test]
fn acknowledged_records_survive_kill_and_restart() {
    let cycles = env_u64("SHOAL_RESTART_CYCLES").unwrap_or(u64::from(CYCLES_DEFAULT)) as u32;
    let seed = env_u64("SHOAL_RESTART_SEED").unwrap_or_else(rand::random);
    println!("restart test: seed {seed}, {cycles} cycles");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut broker = BrokerProcess::start();
    let admin = Client::connect(&broker.addr_string()).unwrap();
    let config = TopicConfig {
        partitions: PARTITIONS,
        flush: FlushPolicy::Always,
        ..TopicConfig::default()
    };
    admin.create_topic("durable", config).unwrap();
    drop(admin);
    let acked = Arc::new(Mutex::new(Vec::new()));
    for cycle in 0..cycles {
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let (addr, acked) = (broker.addr_string(), acked.clone());
                std::thread::spawn(move || produce_until_error(addr, cycle, acked))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..300)));
        broker.kill();
        for p in producers {
            p.join().expect("producer thread");
        }
        broker.restart();
        verify(&broker, &acked.lock().unwrap());
    }
    let total = acked.lock().unwrap().len();
    println!(
        "restart test: {cycles} kill cycles, {total} acknowledged records checked after the last restart"
    );
    assert!(total > 0, "the producers got no acknowledgement at all");
}

fn verify(broker: &BrokerProcess, acked: &[Acked]) {
    let client = Client::connect(&broker.addr_string()).unwrap();
    let mut stored: Vec<Vec<Option<String>>> = Vec::new();
    for p in 0..PARTITIONS {
        let mut values = Vec::new();
        let mut offset = 0;
        loop {
            let fetched = client.fetch("durable", p, offset, 4 << 20, 0).unwrap();
            if fetched.records.is_empty() {
                break;
            }
            for r in fetched.records {
                assert_eq!(
                    r.offset as usize,
                    values.len(),
                    "offsets are dense after recovery"
                );
                values.push(r.value.map(|v| String::from_utf8(v).unwrap()));
            }
            offset = fetched.next_offset;
        }
        stored.push(values);
    }
    for a in acked {
        let got = stored[a.partition as usize]
            .get(a.offset as usize)
            .cloned()
            .flatten();
        assert_eq!(
            got.as_deref(),
            Some(a.value.as_str()),
            "acked record {}/{} lost or changed",
            a.partition,
            a.offset
        );
    }
}
