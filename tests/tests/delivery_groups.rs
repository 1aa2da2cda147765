//! Consumer groups against a real `shoald`: rebalances with real consumer
//! processes (join, clean leave, kill -9), fencing of an expelled member,
//! and lag in time.

mod delivery_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use delivery_support::*;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::delivery::*;
use shoal_protocol::messages::group::*;
use shoal_tests::BrokerProcess;

/// A `delivery_consumer` child process and the lines it printed.
struct ConsumerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    /// Reads the child's stdout into `lines`; ends when the child exits.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ConsumerProcess {
    fn start(broker: &BrokerProcess, group: &str, topic: &str, hold_ms: u64) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_delivery_consumer"))
            .args([&broker.addr_string(), group, topic, "1500", &hold_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn delivery_consumer");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stdin = child.stdin.take();
        ConsumerProcess {
            child,
            stdin,
            lines,
            reader: Some(reader),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Closing stdin asks for a clean leave; waits for the exit.
    fn leave(&mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait consumer");
        assert!(status.success(), "consumer exited with {status}");
        // Its last lines may still be in the pipe: read them all first.
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stdout reader");
        }
        assert_eq!(self.lines().last().map(String::as_str), Some("left"));
    }

    fn kill(&mut self) {
        self.child.kill().expect("kill -9 consumer");
        let _ = self.child.wait();
    }
}

/// `(partition, offset)` of every `acked` line.
fn acked(procs: &[&ConsumerProcess]) -> BTreeSet<(u32, u64)> {
    procs
        .iter()
        .flat_map(|p| p.lines())
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0] == "acked").then(|| (f[1].parse().unwrap(), f[2].parse().unwrap()))
        })
        .collect()
}

/// A parsed `got` line.
struct Got {
    member: String,
    generation: u32,
    partition: u32,
    offset: u64,
    count: u32,
}

fn gots(p: &ConsumerProcess) -> Vec<Got> {
    p.lines()
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0] == "got").then(|| Got {
                member: f[1].to_string(),
                generation: f[2].parse().unwrap(),
                partition: f[3].parse().unwrap(),
                offset: f[4].parse().unwrap(),
                count: f[5].parse().unwrap(),
            })
        })
        .collect()
}

/// Members join, one is killed with -9 while it holds records, one leaves
/// cleanly, another joins: at every generation each partition has one
/// owner, every record is processed, committed offsets never go back, and
/// the killed member's unacked records are redelivered to another member.
#[test]
fn rebalance_with_consumer_processes() {
    let broker = BrokerProcess::start();
    let c = client(&broker);
    create_topic(&c, "events", 4, retry(10, 100, 1000, false));
    let batch = |from: usize| {
        (from..from + 300)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect::<Vec<_>>()
    };
    let mut produced: BTreeSet<(u32, u64)> = produce(&c, "events", &batch(0)).into_iter().collect();
    // Committed offsets sampled while the group changes: never backwards.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, c) = (stop.clone(), c.clone());
        std::thread::spawn(move || {
            let mut last: BTreeMap<u32, u64> = BTreeMap::new();
            let mut samples = 0;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(s) = c.group_stats("workers") {
                    for p in s.partitions {
                        let prev = last.insert(p.partition, p.committed_offset).unwrap_or(0);
                        assert!(
                            p.committed_offset >= prev,
                            "partition {} went back {prev} -> {}",
                            p.partition,
                            p.committed_offset
                        );
                    }
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            samples
        })
    };
    let mut slow = ConsumerProcess::start(&broker, "workers", "events", 2_000);
    let mut c2 = ConsumerProcess::start(&broker, "workers", "events", 20);
    until(Duration::from_secs(20), "first records", || {
        acked(&[&slow, &c2]).len() >= 50
    });
    let mut c3 = ConsumerProcess::start(&broker, "workers", "events", 20);
    // Kill the slow member right after it received records (it holds them
    // for 2 s before acking).
    until(Duration::from_secs(20), "slow member holding records", || {
        std::thread::sleep(Duration::from_millis(5));
        slow.lines().last().is_some_and(|l| l.starts_with("got"))
    });
    slow.kill();
    let acked_by_slow = acked(&[&slow]);
    let held: Vec<Got> = gots(&slow)
        .into_iter()
        .filter(|g| !acked_by_slow.contains(&(g.partition, g.offset)))
        .collect();
    assert!(!held.is_empty(), "the killed member held records");
    produced.extend(produce(&c, "events", &batch(300)));
    c2.leave();
    let mut c4 = ConsumerProcess::start(&broker, "workers", "events", 20);
    until(Duration::from_secs(40), "every record acked", || {
        std::thread::sleep(Duration::from_millis(20));
        produced.is_subset(&acked(&[&slow, &c2, &c3, &c4]))
    });
    c3.leave();
    c4.leave();
    stop.store(true, Ordering::SeqCst);
    assert!(sampler.join().expect("sampler") > 0);
    // One owner per partition per generation.
    let mut owners: BTreeMap<(u32, u32), BTreeSet<String>> = BTreeMap::new();
    for p in [&slow, &c2, &c3, &c4] {
        for g in gots(p).into_iter().filter(|g| g.generation > 0) {
            owners
                .entry((g.generation, g.partition))
                .or_default()
                .insert(g.member);
        }
    }
    for ((generation, partition), members) in &owners {
        assert_eq!(
            members.len(),
            1,
            "generation {generation} partition {partition}: {members:?}"
        );
    }
    // The killed member's records went to another member with a higher count.
    let later: Vec<Got> = [&c2, &c3, &c4].iter().flat_map(|p| gots(p)).collect();
    for h in &held {
        assert!(
            later
                .iter()
                .any(|g| (g.partition, g.offset) == (h.partition, h.offset) && g.count > h.count),
            "record {}/{} held by the killed member was not redelivered",
            h.partition,
            h.offset
        );
    }
}

/// A member expelled for missing its session timeout cannot ack, nack or
/// commit afterwards; its records go to the next member.
#[test]
fn expelled_member_is_fenced() {
    let broker = BrokerProcess::start();
    let c = client(&broker);
    create_topic(&c, "fence", 1, retry(5, 100, 1000, false));
    produce(&c, "fence", &[("k".into(), "a".into()), ("k".into(), "b".into())]);
    let join = JoinGroupRequest {
        group: "fenced".into(),
        member_name: "zombie".into(),
        member_id: None,
        topics: vec!["fence".into()],
        session_timeout_ms: 300,
    };
    let joined = call(&c, "fenced", &join).expect("join");
    assert_eq!(joined.error, 0, "{}", joined.message);
    let poll = PollRequest {
        group: "fenced".into(),
        member_id: joined.member_id.clone(),
        generation: joined.generation,
        max_records: 10,
        max_bytes: 1 << 20,
        max_wait_ms: 1_000,
    };
    let polled = call(&c, "fenced", &poll).expect("poll");
    assert_eq!(polled.error, 0, "{}", polled.message);
    let offsets: Vec<u64> = polled
        .batches
        .iter()
        .flat_map(|b| b.deliveries.iter().map(|d| d.offset))
        .collect();
    assert_eq!(offsets, vec![0, 1]);
    // No heartbeat: wait until the broker has expelled the member for its
    // 300 ms session timeout.
    until(Duration::from_secs(10), "the silent member expelled", || {
        std::thread::sleep(Duration::from_millis(20));
        stats(&c, "fenced").members.is_empty()
    });
    let records = vec![PartitionOffsets {
        topic: "fence".into(),
        partition: 0,
        offsets: offsets.clone(),
    }];
    let ack = AckRequest {
        group: "fenced".into(),
        member_id: joined.member_id.clone(),
        generation: joined.generation,
        records: records.clone(),
    };
    let nack = NackRequest {
        group: "fenced".into(),
        member_id: joined.member_id.clone(),
        generation: joined.generation,
        records,
        reason: "late".into(),
        delay_ms: None,
        reject: false,
    };
    let commit = CommitOffsetRequest {
        group: "fenced".into(),
        member_id: joined.member_id.clone(),
        generation: joined.generation,
        offsets: vec![PartitionCommit {
            topic: "fence".into(),
            partition: 0,
            offset: 2,
        }],
    };
    let unknown = ErrorCode::UnknownMember.to_wire();
    assert_eq!(
        call(&c, "fenced", &ack).unwrap().error,
        unknown,
        "ack after expulsion"
    );
    assert_eq!(
        call(&c, "fenced", &nack).unwrap().error,
        unknown,
        "nack after expulsion"
    );
    assert_eq!(
        call(&c, "fenced", &commit).unwrap().error,
        unknown,
        "commit after expulsion"
    );
    let s = stats(&c, "fenced");
    assert_eq!(
        s.partitions[0].committed_offset, 0,
        "nothing was committed by the zombie"
    );
    // The records go to the next member, delivered a second time.
    let next = consumer(&c, "fenced", "fence", 5_000);
    let mut got = Vec::new();
    until(Duration::from_secs(10), "redelivery", || {
        let records = next.poll().expect("poll");
        next.ack(&records).expect("ack");
        got.extend(records.into_iter().map(|r| (r.offset, r.delivery_count)));
        got.len() >= 2
    });
    assert_eq!(got, vec![(0, 2), (1, 2)]);
    next.close().expect("leave");
}

/// Lag in time is 0 for a caught-up group and grows with the age of the
/// oldest unprocessed record for a stalled one.
#[test]
fn lag_in_time() {
    let broker = BrokerProcess::start();
    let c = client(&broker);
    create_topic(&c, "lagging", 1, retry(5, 100, 1000, false));
    produce(
        &c,
        "lagging",
        &(0..10)
            .map(|i| (format!("k{i}"), format!("{i}")))
            .collect::<Vec<_>>(),
    );
    let member = consumer(&c, "tail", "lagging", 5_000);
    let mut done = 0;
    until(Duration::from_secs(10), "caught up", || {
        let records = member.poll().expect("poll");
        member.ack(&records).expect("ack");
        done += records.len();
        done == 10
    });
    let caught_up = &stats(&c, "tail").partitions[0];
    assert_eq!((caught_up.lag_records, caught_up.lag_ms), (0, 0));
    // Stalled: a record arrives and the member does not poll.
    produce(&c, "lagging", &[("k".into(), "late".into())]);
    std::thread::sleep(Duration::from_millis(1_200));
    let first = stats(&c, "tail").partitions[0].clone();
    assert_eq!(first.lag_records, 1);
    assert!(first.lag_ms >= 1_200, "lag {} ms", first.lag_ms);
    let topic = c.topic_stats("lagging").expect("topic stats");
    assert_eq!(topic.partitions[0].high_watermark, 11);
    assert!(topic.partitions[0].last_append_at_ms.is_some());
    let lag = topic
        .groups
        .iter()
        .find(|g| g.group == "tail")
        .expect("group lag in topic stats");
    assert_eq!(lag.lag_records, 1);
    assert!(lag.lag_ms >= 1_200, "topic lag {} ms", lag.lag_ms);
    std::thread::sleep(Duration::from_millis(800));
    let second = stats(&c, "tail").partitions[0].clone();
    assert!(
        second.lag_ms >= first.lag_ms + 800,
        "lag went {} -> {} ms",
        first.lag_ms,
        second.lag_ms
    );
    until(Duration::from_secs(10), "caught up again", || {
        let records = member.poll().expect("poll");
        member.ack(&records).expect("ack");
        !records.is_empty()
    });
    let again = &stats(&c, "tail").partitions[0];
    assert_eq!((again.lag_records, again.lag_ms), (0, 0));
    member.close().expect("leave");
}
