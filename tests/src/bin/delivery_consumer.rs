//! A real consumer process for the delivery tests: joins a group, polls,
//! prints every delivered record, waits `hold_ms`, acks, prints the acks.
//!
//! Usage: `delivery_consumer <broker> <group> <topic> <session_ms> <hold_ms>`.
//! Lines on stdout (flushed one by one, so a SIGKILL loses none printed):
//! `joined <member>`, `got <member> <generation> <partition> <offset> <count>`
//! (`<generation>` is 0 when a rebalance raced the poll), `acked <partition>
//! <offset>` once the broker confirmed the ack, `left` after a clean leave.
//! Closing stdin asks for a clean leave.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal_protocol::client::{Client, GroupConsumer, GroupConsumerConfig};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert_eq!(
        args.len(),
        6,
        "usage: delivery_consumer <broker> <group> <topic> <session_ms> <hold_ms>"
    );
    let (broker, group, topic) = (&args[1], &args[2], &args[3]);
    let session_ms: u32 = args[4].parse().expect("session_ms");
    let hold_ms: u64 = args[5].parse().expect("hold_ms");
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if line.is_err() {
                    break;
                }
            }
            stop.store(true, Ordering::SeqCst);
        });
    }
    let client = Arc::new(Client::connect(broker).expect("connect"));
    let mut config = GroupConsumerConfig::new(group, &[topic.as_str()]);
    config.session_timeout_ms = session_ms;
    config.max_wait_ms = 200;
    config.max_records = 50;
    let consumer = GroupConsumer::join(client, config).expect("join");
    let member = consumer.member_id();
    say(&format!("joined {member}"));
    while !stop.load(Ordering::SeqCst) {
        let before = consumer.generation();
        let records = match consumer.poll() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("poll: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let generation = if consumer.generation() == before {
            before
        } else {
            0
        };
        let member = consumer.member_id();
        for r in &records {
            say(&format!(
                "got {member} {generation} {} {} {}",
                r.partition, r.offset, r.delivery_count
            ));
        }
        if records.is_empty() {
            continue;
        }
        std::thread::sleep(Duration::from_millis(hold_ms));
        match consumer.ack(&records) {
            Ok(_) => {
                for r in &records {
                    say(&format!("acked {} {}", r.partition, r.offset));
                }
            }
            Err(e) => eprintln!("ack: {e}"),
        }
    }
    consumer.close().expect("leave");
    say("left");
}
