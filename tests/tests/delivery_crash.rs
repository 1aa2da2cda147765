//! Group delivery under repeated broker crashes: a consumer group consumes
//! two topics (one with `ordered_retry`) with acks, nacks (poison records
//! are nacked until they are quarantined) and abandoned leases (a member
//! that takes records, never acks them and goes silent), while the broker
//! is killed with SIGKILL 20 times (`SHOAL_CRASH_CYCLES` for more; seed
//! printed, `SHOAL_CRASH_SEED` to repeat) and restarted on its data
//! directory each time. After a final drain with the broker up, the
//! README's delivery contract is checked against everything the clients saw:
//!
//! - every produced (acknowledged) record ends acked or quarantined, never
//!   both, never neither; poison records end quarantined;
//! - an ack answered with the floor past the record is final (never
//!   redelivered, never quarantined); an ack above the floor is not durable,
//!   and its record is delivered again after the crash;
//! - committed offsets observed by the clients (ack replies, group stats)
//!   never move backwards across restarts;
//! - a record in flight at a crash comes back with the count it had; a
//!   nacked record continues from its stored count (one more) across
//!   restarts; counts never pass `max_attempts`;
//! - per-key order on the `ordered_retry` topic: a record is delivered only
//!   once every earlier record of its key was finished (acked or
//!   quarantined) in the broker's current life;
//! - quarantine entries survive restarts (every entry browsed before a
//!   crash, and every record a nack reply said it quarantined).
//!
//! Every loop is bounded in count and time.

mod delivery_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use delivery_support::{create_topic, now_ms, produce, retry};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_protocol::client::{Client, ConsumedRecord, GroupConsumer, GroupConsumerConfig};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::delivery::PollRequest;
use shoal_protocol::messages::dlq::{QuarantineEntry, QuarantineFilter};
use shoal_protocol::messages::group::{HeartbeatRequest, JoinGroupRequest};
use shoal_tests::{BrokerOptions, BrokerProcess};

const CYCLES_DEFAULT: u32 = 20;
const GROUP: &str = "crashers";
/// The two topics: index 0 plain, index 1 with `ordered_retry`.
const TOPICS: [&str; 2] = ["plain", "ordered"];
const PARTITIONS: u32 = 2;
const KEYS: u32 = 5;
/// Records produced per topic at the start of every broker life.
const RECORDS_PER_CYCLE: u32 = 20;
/// One record in this many is poison: its handler always fails.
const POISON_EVERY: u64 = 7;
const MAX_ATTEMPTS: u32 = 4;
const WORKERS: usize = 2;
const SESSION_MS: u32 = 1_500;
/// The abandoner's session: it goes silent after taking records.
const ABANDONER_SESSION_MS: u32 = 600;
/// A worker "processes" a poll's records for up to this long.
const PROCESS_MS_MAX: u64 = 20;
/// Acks a broker life must see before it may be killed.
const ACKS_BEFORE_KILL: u64 = 8;
/// Longest a broker life may take to reach its acks.
const PROGRESS_MS_MAX: u64 = 30_000;
/// Longest the final drain may take.
const DRAIN_MS_MAX: u64 = 90_000;
/// The whole test's time bound.
const TEST_MS_MAX: u64 = 600_000;
/// Storm protection off: the poison records would open the breaker and
/// pause the group, which is not what this test is about.
const BROKER_CONFIG: &str = "[delivery]\nbreaker_failure_permille = 1000\nretry_budget_permille = 1000\n";
/// The nack reason of poison records.
const POISON: &str = "poison";

/// A record's coordinates: (topic index, partition, offset).
type Rec = (usize, u32, u64);

/// What the clients saw happen to one record.
#[derive(Debug, Clone, PartialEq)]
enum What {
    /// Delivered with this count, to a worker or to the abandoner.
    Delivered {
        count: u32,
        abandoner: bool,
    },
    /// An ack is about to be sent.
    AckSent,
    /// The ack was answered; the partition's committed offset after it.
    AckOk {
        committed: u64,
    },
    AckFailed,
    NackSent,
    /// The nack was answered; whether it quarantined this record.
    NackOk {
        quarantined: bool,
    },
    NackFailed,
}

#[derive(Debug, Clone)]
struct Event {
    /// Global order in which events were logged.
    seq: u64,
    /// Which broker life (0, 1, ...).
    life: u32,
    at_ms: i64,
    rec: Rec,
    what: What,
}

/// Everything the clients saw, in logging order; shared by the threads.
#[derive(Default)]
struct Ledger {
    events: Mutex<Vec<Event>>,
    acks_ok: AtomicU64,
}

impl Ledger {
    fn log(&self, life: u32, rec: Rec, what: What) {
        let mut events = self.events.lock().expect("ledger");
        let seq = events.len() as u64;
        if matches!(what, What::AckOk { .. }) {
            self.acks_ok.fetch_add(1, Ordering::SeqCst);
        }
        events.push(Event {
            seq,
            life,
            at_ms: now_ms(),
            rec,
            what,
        });
    }
}

/// A produced record: its key and whether its handler always fails.
#[derive(Debug, Clone, Copy)]
struct Produced {
    key: u32,
    poison: bool,
}

/// What the test learned about each broker life.
#[derive(Debug, Default, Clone)]
struct Life {
    /// Committed offsets read from group stats when the life began.
    committed_at_start: BTreeMap<(usize, u32), u64>,
    /// When the life's broker was gone after a kill (wall ms), if it was.
    killed_at_ms: Option<i64>,
}

fn topic_index(name: &str) -> usize {
    TOPICS
        .iter()
        .position(|t| *t == name)
        .expect("one of the test's topics")
}

/// SIGKILL 20 times while a group consumes with acks, nacks, abandoned
/// leases and ordered retry; the delivery contract holds throughout.
#[test]
fn group_delivery_survives_repeated_crashes() {
    let cycles: u32 = env_or("SHOAL_CRASH_CYCLES", CYCLES_DEFAULT);
    let seed: u64 = env_or("SHOAL_CRASH_SEED", rand::random());
    println!("crash test: seed {seed} (SHOAL_CRASH_SEED), {cycles} kill cycles (SHOAL_CRASH_CYCLES)");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut broker = BrokerProcess::start_with(BrokerOptions {
        config_toml: BROKER_CONFIG.into(),
        ..BrokerOptions::default()
    });
    let admin = Arc::new(Client::connect(&broker.addr_string()).expect("connect"));
    for (i, topic) in TOPICS.iter().enumerate() {
        create_topic(&admin, topic, PARTITIONS, retry(MAX_ATTEMPTS, 20, 200, i == 1));
    }
    drop(admin);
    let mut run = Run::default();
    for life in 0..=cycles {
        assert!(
            started.elapsed() < Duration::from_millis(TEST_MS_MAX),
            "out of time after {life} lives"
        );
        if life > 0 {
            broker.restart();
        }
        let client = Arc::new(Client::connect(&broker.addr_string()).expect("connect after restart"));
        run.begin_life(&client, life);
        if life < cycles {
            run.crash_mid_life(&client, &mut broker, life, &mut rng, seed);
            continue;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let workers = run.spawn_workers(&client, &stop, life, seed);
        drain(&client, &run.produced);
        stop.store(true, Ordering::SeqCst);
        workers
            .into_iter()
            .for_each(|w| w.join().expect("a consumer thread failed"));
        let entries = browse_all(&client);
        let events = run.ledger.events.lock().expect("ledger").clone();
        println!(
            "crash test: {} lives, {} records, {} events, {} quarantine entries, {:.1} s",
            run.lives.len(),
            run.produced.len(),
            events.len(),
            entries.len(),
            started.elapsed().as_secs_f64()
        );
        check_all(
            &run.produced,
            &events,
            &run.lives,
            &entries,
            &committed(&client, true),
        );
    }
    assert!(broker.terminate().success(), "graceful stop at the end");
}

/// The state of a run across broker lives.
#[derive(Default)]
struct Run {
    ledger: Arc<Ledger>,
    produced: BTreeMap<Rec, Produced>,
    lives: Vec<Life>,
    /// Quarantine entries browsed before the kills.
    seen_entries: BTreeMap<u64, Rec>,
    next_seq: u64,
}

impl Run {
    /// A broker life begins: its committed offsets are read, and the
    /// quarantine entries known so far must have survived.
    fn begin_life(&mut self, client: &Client, life: u32) {
        let committed_at_start = committed(client, life > 0);
        check_survivors(client, &self.ledger, &self.seen_entries, life);
        self.lives.push(Life {
            committed_at_start,
            killed_at_ms: None,
        });
    }

    /// Produces, consumes (with an abandoner in every third life) and
    /// kills the broker once this life made progress, at a random moment.
    fn crash_mid_life(
        &mut self,
        client: &Arc<Client>,
        broker: &mut BrokerProcess,
        life: u32,
        rng: &mut StdRng,
        seed: u64,
    ) {
        self.next_seq = produce_chunk(client, &mut self.produced, self.next_seq);
        let stop = Arc::new(AtomicBool::new(false));
        let workers = self.spawn_workers(client, &stop, life, seed);
        let abandoning = (life % 3 == 1).then(|| {
            let (client, ledger) = (client.clone(), self.ledger.clone());
            std::thread::spawn(move || abandoner(&client, &ledger, life))
        });
        wait_for_progress(&self.ledger, broker);
        if let Some(abandoner) = abandoning {
            let held = abandoner.join().expect("the abandoner failed");
            wait_for_redelivery(&self.ledger, broker, life, &held);
        }
        // The fault schedule: a random moment after the progress.
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
        for e in browse_all(client) {
            self.seen_entries
                .insert(e.entry_id, (topic_index(&e.topic), e.partition, e.offset));
        }
        broker.kill();
        // Taken once the process is gone: a request logged after this
        // never reached it.
        self.lives[life as usize].killed_at_ms = Some(now_ms());
        stop.store(true, Ordering::SeqCst);
        workers
            .into_iter()
            .for_each(|w| w.join().expect("a consumer thread failed"));
    }

    fn spawn_workers(
        &self,
        client: &Arc<Client>,
        stop: &Arc<AtomicBool>,
        life: u32,
        seed: u64,
    ) -> Vec<std::thread::JoinHandle<()>> {
        (0..WORKERS)
            .map(|w| {
                let (client, ledger, stop) = (client.clone(), self.ledger.clone(), stop.clone());
                let produced = self.produced.clone();
                let seed = seed ^ (u64::from(life) << 8) ^ w as u64;
                std::thread::spawn(move || worker(&client, &ledger, &stop, &produced, life, seed))
            })
            .collect()
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Produces the next records of both topics (all acknowledged, flush
/// `always`): keys cycle over [`KEYS`], every [`POISON_EVERY`]th is poison.
fn produce_chunk(client: &Arc<Client>, produced: &mut BTreeMap<Rec, Produced>, from: u64) -> u64 {
    for (t, topic) in TOPICS.iter().enumerate() {
        let seqs: Vec<u64> = (from..from + u64::from(RECORDS_PER_CYCLE)).collect();
        let records: Vec<(String, String)> = seqs
            .iter()
            .map(|s| {
                let poison = s % POISON_EVERY == 3;
                (
                    format!("k{}", s % u64::from(KEYS)),
                    format!("{s}:{}", if poison { POISON } else { "ok" }),
                )
            })
            .collect();
        for (seq, (partition, offset)) in seqs.iter().zip(produce(client, topic, &records)) {
            let fresh = produced.insert(
                (t, partition, offset),
                Produced {
                    key: (seq % u64::from(KEYS)) as u32,
                    poison: seq % POISON_EVERY == 3,
                },
            );
            assert!(fresh.is_none(), "offset {topic}/{partition}/{offset} given twice");
        }
    }
    from + u64::from(RECORDS_PER_CYCLE)
}

/// Committed offsets of the group per (topic, partition), from group
/// stats. Before the group's first life it does not exist yet; after that
/// it must (its committed offsets are durable), so an unknown group is
/// retried a while and then is a failure.
fn committed(client: &Client, group_exists: bool) -> BTreeMap<(usize, u32), u64> {
    let mut last = None;
    for _ in 0..100 {
        match client.group_stats(GROUP) {
            Ok(s) => {
                return s
                    .partitions
                    .iter()
                    .map(|p| ((topic_index(&p.topic), p.partition), p.committed_offset))
                    .collect()
            }
            Err(e) if e.code() == Some(ErrorCode::UnknownGroup) && !group_exists => return BTreeMap::new(),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("group stats never answered: {last:?}");
}

/// Every quarantine entry of both topics for the group.
fn browse_all(client: &Client) -> Vec<QuarantineEntry> {
    let filter = QuarantineFilter {
        group: Some(GROUP.into()),
        ..QuarantineFilter::default()
    };
    TOPICS
        .iter()
        .flat_map(|topic| shoal_tests::quarantine_entries(client, topic, filter.clone()))
        .collect()
}

/// Quarantine entries survive restarts: every entry browsed before a kill,
/// and every record a nack reply said it quarantined, is still there.
fn check_survivors(client: &Client, ledger: &Ledger, seen: &BTreeMap<u64, Rec>, life: u32) {
    let now: BTreeMap<u64, Rec> = browse_all(client)
        .into_iter()
        .map(|e| (e.entry_id, (topic_index(&e.topic), e.partition, e.offset)))
        .collect();
    for (id, rec) in seen {
        assert_eq!(
            now.get(id),
            Some(rec),
            "life {life}: quarantine entry {id} ({rec:?}) lost in a crash"
        );
    }
    let present: BTreeSet<Rec> = now.values().copied().collect();
    for e in ledger.events.lock().expect("ledger").iter() {
        if e.what == (What::NackOk { quarantined: true }) {
            assert!(
                present.contains(&e.rec),
                "life {life}: {:?} was quarantined by a nack reply, then lost in a crash",
                e.rec
            );
        }
    }
}

/// Waits (bounded) until this broker life has seen a few acks; fails if
/// the broker died.
fn wait_for_progress(ledger: &Ledger, broker: &mut BrokerProcess) {
    let start = ledger.acks_ok.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_millis(PROGRESS_MS_MAX);
    while ledger.acks_ok.load(Ordering::SeqCst) < start + ACKS_BEFORE_KILL {
        assert!(broker.is_alive(), "the broker died on its own");
        assert!(
            Instant::now() < deadline,
            "no progress within {PROGRESS_MS_MAX} ms"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until a worker got one of the records the abandoner
/// held in this life: its session ran out and the broker redelivered.
fn wait_for_redelivery(ledger: &Ledger, broker: &mut BrokerProcess, life: u32, held: &[Rec]) {
    if held.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(PROGRESS_MS_MAX);
    loop {
        let redelivered = ledger.events.lock().expect("ledger").iter().any(|e| {
            e.life == life
                && held.contains(&e.rec)
                && matches!(e.what, What::Delivered { abandoner: false, .. })
        });
        if redelivered {
            return;
        }
        assert!(broker.is_alive(), "the broker died on its own");
        assert!(
            Instant::now() < deadline,
            "life {life}: the abandoned records {held:?} were not redelivered within {PROGRESS_MS_MAX} ms"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs until the group has finished every produced record (lag 0 on every
/// partition of both topics), bounded by [`DRAIN_MS_MAX`].
fn drain(client: &Client, produced: &BTreeMap<Rec, Produced>) {
    let mut ends: BTreeMap<(usize, u32), u64> = BTreeMap::new();
    for (t, p, o) in produced.keys() {
        let end = ends.entry((*t, *p)).or_default();
        *end = (*end).max(o + 1);
    }
    let deadline = Instant::now() + Duration::from_millis(DRAIN_MS_MAX);
    loop {
        let now = committed(client, true);
        if ends.iter().all(|(tp, end)| now.get(tp) == Some(end)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: committed {now:?}, ends {ends:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A group member: polls, "processes" for a moment, acks good records
/// (per partition), nacks poison ones one by one; logs everything. Stops
/// when told, or at the first error once the broker is gone.
fn worker(
    client: &Arc<Client>,
    ledger: &Ledger,
    stop: &AtomicBool,
    produced: &BTreeMap<Rec, Produced>,
    life: u32,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut config = GroupConsumerConfig::new(GROUP, &TOPICS);
    config.session_timeout_ms = SESSION_MS;
    config.max_wait_ms = 100;
    config.max_records = 8;
    let Ok(consumer) = GroupConsumer::join(client.clone(), config) else {
        assert!(
            stop.load(Ordering::SeqCst),
            "life {life}: a worker could not join a live broker"
        );
        return;
    };
    let deadline = Instant::now() + Duration::from_millis(TEST_MS_MAX);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let records = match consumer.poll() {
            Ok(r) => r,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let rec = |r: &ConsumedRecord| (topic_index(&r.topic), r.partition, r.offset);
        for r in &records {
            assert!(
                produced.contains_key(&rec(r)),
                "delivered a record never produced: {r:?}"
            );
            ledger.log(
                life,
                rec(r),
                What::Delivered {
                    count: r.delivery_count,
                    abandoner: false,
                },
            );
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..=PROCESS_MS_MAX)));
        let (bad, good): (Vec<&ConsumedRecord>, Vec<&ConsumedRecord>) =
            records.iter().partition(|r| produced[&rec(r)].poison);
        for r in bad {
            ledger.log(life, rec(r), What::NackSent);
            let outcome = match consumer.nack(std::slice::from_ref(r), POISON, None, false) {
                Ok(reply) => What::NackOk {
                    quarantined: reply.partitions.iter().any(|p| p.quarantined > 0),
                },
                Err(_) => What::NackFailed,
            };
            ledger.log(life, rec(r), outcome);
        }
        let mut by_partition: BTreeMap<(usize, u32), Vec<ConsumedRecord>> = BTreeMap::new();
        for r in good {
            by_partition
                .entry((topic_index(&r.topic), r.partition))
                .or_default()
                .push(r.clone());
        }
        for batch in by_partition.values() {
            for r in batch {
                ledger.log(life, rec(r), What::AckSent);
            }
            let result = consumer.ack(batch);
            for r in batch {
                let outcome = match &result {
                    Ok(reply) => What::AckOk {
                        committed: reply.partitions[0].committed_offset,
                    },
                    Err(_) => What::AckFailed,
                };
                ledger.log(life, rec(r), outcome);
            }
        }
    }
    // After a kill the leave fails; that is expected.
    let _ = consumer.close();
}

/// A member that joins, takes a few records and goes silent: no ack, no
/// heartbeat. The broker expels it after its session and redelivers.
/// Returns the records it took.
fn abandoner(client: &Client, ledger: &Ledger, life: u32) -> Vec<Rec> {
    let join = JoinGroupRequest {
        group: GROUP.into(),
        member_name: "abandoner".into(),
        member_id: None,
        topics: TOPICS.iter().map(|t| t.to_string()).collect(),
        session_timeout_ms: ABANDONER_SESSION_MS,
    };
    let Ok(conn) = client.group_connection(GROUP) else {
        return Vec::new();
    };
    let Ok(joined) = conn.call(&join, &[], 2_000).map(|r| r.message) else {
        return Vec::new();
    };
    let mut generation = joined.generation;
    // Polls until it holds records (a rebalance may come first), bounded.
    for _ in 0..20 {
        let poll = PollRequest {
            group: GROUP.into(),
            member_id: joined.member_id.clone(),
            generation,
            max_records: 3,
            max_bytes: 1 << 20,
            max_wait_ms: 100,
        };
        let Ok(reply) = conn.call(&poll, &[], 2_000).map(|r| r.message) else {
            return Vec::new();
        };
        if reply.error == ErrorCode::RebalanceInProgress.to_wire() {
            let beat = HeartbeatRequest {
                group: GROUP.into(),
                member_id: joined.member_id.clone(),
                generation,
            };
            let Ok(b) = conn.call(&beat, &[], 2_000).map(|r| r.message) else {
                return Vec::new();
            };
            generation = b.generation;
            continue;
        }
        let held: Vec<Rec> = reply
            .batches
            .iter()
            .flat_map(|b| {
                b.deliveries
                    .iter()
                    .map(move |d| (topic_index(&b.topic), b.partition, d.offset, d.delivery_count))
            })
            .map(|(t, p, o, count)| {
                ledger.log(
                    life,
                    (t, p, o),
                    What::Delivered {
                        count,
                        abandoner: true,
                    },
                );
                (t, p, o)
            })
            .collect();
        if !held.is_empty() {
            return held;
        }
    }
    Vec::new()
}

// ---- The checks --------------------------------------------------------------

/// Runs every check on what the clients saw.
fn check_all(
    produced: &BTreeMap<Rec, Produced>,
    events: &[Event],
    lives: &[Life],
    entries: &[QuarantineEntry],
    final_committed: &BTreeMap<(usize, u32), u64>,
) {
    let mut by_rec: BTreeMap<Rec, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_rec.entry(e.rec).or_default().push(e);
    }
    let quarantined = check_quarantine(produced, entries, &by_rec);
    check_outcomes(produced, &by_rec, &quarantined, lives);
    check_committed(events, lives, final_committed);
    let mut seen = check_counts(&by_rec, lives);
    seen.key_order = check_key_order(produced, events, lives, &quarantined);
    println!("crash test: cases checked: {seen:?}");
    // The cases the contract is about did happen (each is common: several
    // per run), so the checks above were not vacuous.
    assert!(
        seen.in_flight_at_crash > 0,
        "no record was in flight at a crash: {seen:?}"
    );
    assert!(seen.abandoned > 0, "no lease was abandoned: {seen:?}");
    assert!(
        seen.acked_then_crash > 0,
        "no ack above the floor was lost in a crash: {seen:?}"
    );
    assert!(seen.key_order > 0, "no delivery of the ordered topic was checked");
}

/// How often each case of the contract was checked in a run.
#[derive(Debug, Default)]
struct Seen {
    /// In flight at a crash, redelivered with the same count.
    in_flight_at_crash: u32,
    /// Nacked (answered), redelivered after a crash with one more.
    nacked_then_crash: u32,
    /// Acked above the floor, redelivered after a crash.
    acked_then_crash: u32,
    /// Taken by the silent member and redelivered with one more.
    abandoned: u32,
    /// Deliveries of the ordered topic checked for key order.
    key_order: u32,
}

/// The quarantine holds each record at most once, only produced records,
/// every poison record, and good records only for abandoned leases.
fn check_quarantine(
    produced: &BTreeMap<Rec, Produced>,
    entries: &[QuarantineEntry],
    by_rec: &BTreeMap<Rec, Vec<&Event>>,
) -> BTreeMap<Rec, i64> {
    let mut quarantined = BTreeMap::new();
    for e in entries {
        let rec = (topic_index(&e.topic), e.partition, e.offset);
        let p = produced
            .get(&rec)
            .unwrap_or_else(|| panic!("quarantined, never produced: {e:?}"));
        assert!(
            quarantined.insert(rec, e.quarantined_at_ms).is_none(),
            "quarantined twice: {rec:?}"
        );
        assert!(
            e.attempts <= MAX_ATTEMPTS,
            "{rec:?} quarantined after {} attempts",
            e.attempts
        );
        if !p.poison {
            let abandoned = by_rec[&rec]
                .iter()
                .any(|ev| matches!(ev.what, What::Delivered { abandoner: true, .. }));
            assert!(
                abandoned && e.reason != POISON,
                "a good record quarantined ({e:?}) that was never abandoned"
            );
        }
    }
    for (rec, p) in produced {
        assert!(
            !p.poison || quarantined.contains_key(rec),
            "poison record {rec:?} not quarantined"
        );
    }
    quarantined
}

/// Acked or quarantined, never both, never neither; durable acks are final;
/// acks above the floor lost in a crash are delivered again.
fn check_outcomes(
    produced: &BTreeMap<Rec, Produced>,
    by_rec: &BTreeMap<Rec, Vec<&Event>>,
    quarantined: &BTreeMap<Rec, i64>,
    lives: &[Life],
) {
    let no_events = Vec::new();
    for rec in produced.keys() {
        let events = by_rec.get(rec).unwrap_or(&no_events);
        let acks: Vec<&&Event> = events
            .iter()
            .filter(|e| matches!(e.what, What::AckOk { .. }))
            .collect();
        // An ack whose reply a crash cut off may still have been applied
        // (the floor then passed the record before the crash): any ack the
        // broker can have seen counts as the client acking the record.
        let ack_reached = |e: &&&Event| {
            e.what == What::AckSent && lives[e.life as usize].killed_at_ms.is_none_or(|k| e.at_ms <= k)
        };
        match quarantined.get(rec) {
            None => assert!(
                !acks.is_empty() || events.iter().any(|e| ack_reached(&e)),
                "{rec:?} ({:?}) ended neither acked nor quarantined; what the clients saw: {events:#?}",
                produced[rec]
            ),
            Some(&at_ms) => {
                for ack in &acks {
                    // Only an ack lost in a crash may precede a quarantine.
                    let lost = lives[ack.life as usize].killed_at_ms.is_some_and(|k| k < at_ms);
                    assert!(
                        lost && ack.at_ms < at_ms,
                        "{rec:?} acked ({ack:?}) and quarantined at {at_ms}"
                    );
                }
            }
        }
        for ack in acks {
            let What::AckOk { committed } = ack.what else {
                unreachable!()
            };
            let later = events
                .iter()
                .filter(|e| e.seq > ack.seq && matches!(e.what, What::Delivered { .. }));
            if committed > rec.2 {
                assert!(
                    later.count() == 0,
                    "{rec:?} delivered again after a final ack ({ack:?})"
                );
                assert!(
                    !quarantined.contains_key(rec),
                    "{rec:?} quarantined after a final ack"
                );
            } else if let Some(next) = lives.get(ack.life as usize + 1) {
                // Not final: unless the floor passed it before the crash,
                // it comes back in a later life.
                let passed = next
                    .committed_at_start
                    .get(&(rec.0, rec.1))
                    .is_some_and(|c| *c > rec.2);
                let mut later = later;
                assert!(
                    passed || later.any(|e| e.life > ack.life),
                    "{rec:?} acked above the floor before a crash ({ack:?}) and never delivered again"
                );
            }
        }
    }
}

/// Committed offsets never move backwards across restarts: everything
/// observed up to a life's end is at most what every later life observes.
fn check_committed(events: &[Event], lives: &[Life], final_committed: &BTreeMap<(usize, u32), u64>) {
    let mut seen_by_life: Vec<BTreeMap<(usize, u32), (u64, u64)>> = vec![BTreeMap::new(); lives.len()];
    for (life, l) in lives.iter().enumerate() {
        for (tp, c) in &l.committed_at_start {
            let slot = seen_by_life[life].entry(*tp).or_insert((*c, *c));
            *slot = (slot.0.min(*c), slot.1.max(*c));
        }
    }
    for e in events {
        if let What::AckOk { committed } = e.what {
            let slot = seen_by_life[e.life as usize]
                .entry((e.rec.0, e.rec.1))
                .or_insert((committed, committed));
            *slot = (slot.0.min(committed), slot.1.max(committed));
        }
    }
    let mut high: BTreeMap<(usize, u32), (u64, usize)> = BTreeMap::new();
    for (life, seen) in seen_by_life.iter().enumerate() {
        for (tp, (low, top)) in seen {
            if let Some((before, when)) = high.get(tp) {
                assert!(
                    low >= before,
                    "{tp:?}: committed offset {before} seen in life {when}, {low} in life {life}"
                );
            }
            let entry = high.entry(*tp).or_insert((*top, life));
            if *top >= entry.0 {
                *entry = (*top, life);
            }
        }
    }
    for (tp, (before, when)) in &high {
        let last = final_committed.get(tp).copied().unwrap_or(0);
        assert!(
            last >= *before,
            "{tp:?}: committed offset {before} seen in life {when}, {last} at the end"
        );
    }
}

/// Delivery counts: 1 first; after a nack answered, one more; in flight at
/// a crash (and too recent for any failure), the same; after an abandoned
/// lease in the same life, one more; never over `max_attempts`; an acked
/// record comes back only after a crash.
fn check_counts(by_rec: &BTreeMap<Rec, Vec<&Event>>, lives: &[Life]) -> Seen {
    let mut seen = Seen::default();
    for (rec, events) in by_rec {
        let mut last: Option<(&Event, u32, bool)> = None;
        let mut outcome: Option<&What> = None;
        for e in events {
            let What::Delivered { count, abandoner } = e.what else {
                // An ack or nack sent after the broker was gone never
                // reached it: the record was still in flight at the crash.
                let after_kill = lives[e.life as usize].killed_at_ms.is_some_and(|k| e.at_ms > k);
                let sent = matches!(e.what, What::AckSent | What::NackSent);
                if !after_kill && (!sent || outcome.is_none()) {
                    outcome = Some(&e.what);
                }
                continue;
            };
            assert!(
                (1..=MAX_ATTEMPTS).contains(&count),
                "{rec:?} delivered with count {count}"
            );
            let Some((prev, c, by_abandoner)) = last else {
                assert_eq!(count, 1, "{rec:?}: first delivery with count {count}");
                last = Some((e, count, abandoner));
                continue;
            };
            let crashed = e.life > prev.life;
            let allowed: Vec<u32> = match (outcome, crashed) {
                (Some(What::NackOk { .. }), _) => {
                    seen.nacked_then_crash += u32::from(crashed);
                    vec![c + 1]
                }
                (Some(What::AckOk { .. }), false) => {
                    panic!("{rec:?} redelivered in the life it was acked in: {events:#?}")
                }
                (Some(What::AckOk { .. }), true) => {
                    seen.acked_then_crash += 1;
                    (1..=c).collect()
                }
                (Some(What::AckFailed | What::AckSent), _) => (1..=c + 1).collect(),
                (Some(What::NackFailed | What::NackSent), _) => vec![c, c + 1],
                (_, false) => {
                    seen.abandoned += u32::from(by_abandoner);
                    vec![c + 1]
                }
                (_, true) if by_abandoner => vec![c, c + 1],
                (_, true) => {
                    // In flight at the crash: the same count, unless the
                    // delivery was old enough for its member to be expelled.
                    let killed = lives[prev.life as usize]
                        .killed_at_ms
                        .expect("a crash ended the life");
                    if killed - prev.at_ms < i64::from(SESSION_MS / 2) {
                        seen.in_flight_at_crash += 1;
                        vec![c]
                    } else {
                        vec![c, c + 1]
                    }
                }
            };
            assert!(
                allowed.contains(&count),
                "{rec:?}: delivered with {c}, then (after {outcome:?}, crash {crashed}) with {count}, allowed {allowed:?}"
            );
            last = Some((e, count, abandoner));
            outcome = None;
        }
    }
    seen
}

/// Per-key order on the ordered topic: when a record is delivered, every
/// earlier record of its key was finished in this broker life: below the
/// committed offset the life started with, acked (the ack sent before this
/// delivery) in this life, or quarantined (by a nack or an expired lease)
/// at or before the delivery. So a later record of a key is never acked
/// before an earlier one is acked or quarantined.
fn check_key_order(
    produced: &BTreeMap<Rec, Produced>,
    events: &[Event],
    lives: &[Life],
    quarantined: &BTreeMap<Rec, i64>,
) -> u32 {
    // Acks sent: the broker can only have released a later record after it
    // processed the ack, which was sent (and logged) before.
    let mut finished_in_life: BTreeSet<(u32, Rec)> = BTreeSet::new();
    let mut checked = 0;
    for e in events {
        match e.what {
            What::AckSent => {
                finished_in_life.insert((e.life, e.rec));
            }
            What::Delivered { .. } if e.rec.0 == 1 => {
                let key = produced[&e.rec].key;
                let start = lives[e.life as usize]
                    .committed_at_start
                    .get(&(1, e.rec.1))
                    .copied()
                    .unwrap_or(0);
                for (earlier, p) in produced.range((1, e.rec.1, start)..(1, e.rec.1, e.rec.2)) {
                    if p.key != key {
                        continue;
                    }
                    let done = finished_in_life.contains(&(e.life, *earlier))
                        || quarantined.get(earlier).is_some_and(|at| *at <= e.at_ms);
                    assert!(
                        done,
                        "ordered topic, key k{key}: {:?} delivered in life {} while the earlier {earlier:?} was unfinished",
                        e.rec, e.life
                    );
                }
                checked += 1;
            }
            _ => {}
        }
    }
    checked
}
