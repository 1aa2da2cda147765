//! Hostile Kafka input over real connections: 100,000 malformed requests
//! (`SHOAL_KAFKA_BAD_REQUESTS` for more; the seed is printed,
//! `SHOAL_KAFKA_BAD_SEED` repeats a run), each on its own connection, from
//! several threads: frames cut short, lengths over the caps or under a
//! header, unknown API keys, versions not served, and valid requests with
//! hostile lengths and counts written into their bodies. Each must close
//! its own connection (a mutated request that still decodes may be
//! answered first); the broker must not crash, its peak RSS must stay under
//! a fixed bound, and a well-behaved Kafka client on its own connection
//! must keep getting correct answers throughout.

mod kafka_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, GroupId, HeartbeatRequest, InitProducerIdRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, ProduceRequest, RequestKind, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_support::raw::{batch, request_frame, RawKafka};
use rand::{Rng, SeedableRng};
use shoal_protocol::client::Client;
use shoal_protocol::messages::topic::TopicConfig;
use shoal_tests::BrokerProcess;

const REQUESTS_DEFAULT: u64 = 100_000;
const SENDER_THREADS: u64 = 4;
/// Peak RSS the broker may reach: its receive pool (256 MiB, the most that
/// frames being read can hold) plus the rest of a small broker.
const RSS_KIB_MAX: u64 = 512 * 1024;
/// How long a malformed request's connection may stay open.
const CLOSE_WAIT_MAX: Duration = Duration::from_secs(10);

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Valid requests of several APIs and versions, none with a side effect a
/// mutation could make expensive (no topic creation, no group joins).
fn valid_requests() -> Vec<(ApiKey, i16, RequestKind)> {
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name("nope")))
    ]));
    let offsets = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(name("nope"))
        .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]);
    let coordinator = |v: i16| {
        let r = FindCoordinatorRequest::default();
        if v >= 4 {
            r.with_coordinator_keys(vec![StrBytes::from_static_str("g")])
        } else {
            r.with_key(StrBytes::from_static_str("g"))
        }
    };
    let group = || GroupId(StrBytes::from_static_str("nobody"));
    let offset_fetch = OffsetFetchRequest::default()
        .with_group_id(group())
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name("nope"))
            .with_partition_indexes(vec![0, 1])]));
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("nope"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(&["a", "bb", "ccc"], None)))])]);
    let mut out = Vec::new();
    for v in [0, 4, 9] {
        out.push((ApiKey::Metadata, v, RequestKind::Metadata(metadata.clone())));
    }
    for v in [1, 6] {
        out.push((ApiKey::ListOffsets, v, RequestKind::ListOffsets(offsets.clone())));
    }
    for v in [0, 3, 4] {
        out.push((
            ApiKey::FindCoordinator,
            v,
            RequestKind::FindCoordinator(coordinator(v)),
        ));
    }
    for v in [0, 5] {
        let r = DescribeGroupsRequest::default().with_groups(vec![group()]);
        out.push((ApiKey::DescribeGroups, v, RequestKind::DescribeGroups(r)));
    }
    for v in [0, 4] {
        out.push((
            ApiKey::ListGroups,
            v,
            RequestKind::ListGroups(ListGroupsRequest::default()),
        ));
    }
    for v in [1, 7] {
        out.push((
            ApiKey::OffsetFetch,
            v,
            RequestKind::OffsetFetch(offset_fetch.clone()),
        ));
    }
    for v in [0, 4] {
        let r = HeartbeatRequest::default()
            .with_group_id(group())
            .with_member_id(StrBytes::from_static_str("m"));
        out.push((ApiKey::Heartbeat, v, RequestKind::Heartbeat(r)));
    }
    for v in [3, 9] {
        out.push((ApiKey::Produce, v, RequestKind::Produce(produce.clone())));
    }
    for v in [0, 3] {
        out.push((
            ApiKey::ApiVersions,
            v,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ));
    }
    let init = InitProducerIdRequest::default().with_transactional_id(None);
    out.push((ApiKey::InitProducerId, 4, RequestKind::InitProducerId(init)));
    out
}

/// What a malformed request is, for the tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Truncated,
    Oversized,
    UnderHeader,
    UnknownKey,
    UnservedVersion,
    HostileBody,
}

const KINDS: [Kind; 6] = [
    Kind::Truncated,
    Kind::Oversized,
    Kind::UnderHeader,
    Kind::UnknownKey,
    Kind::UnservedVersion,
    Kind::HostileBody,
];

/// One malformed request's bytes, and whether the connection is to be cut
/// after them (a truncated frame: the peer went away mid-frame).
fn malformed(rng: &mut impl Rng, valid: &[Vec<u8>], kind: Kind) -> Vec<u8> {
    let mut f = valid[rng.gen_range(0..valid.len())].clone();
    match kind {
        Kind::Truncated => {
            f.truncate(rng.gen_range(1..f.len()));
            f
        }
        Kind::Oversized => {
            // Over the 16 MiB produce cap, or the 8 MiB cap of the others.
            let len = rng.gen_range((16 << 20) + 1..=i32::MAX);
            f[..4].copy_from_slice(&len.to_be_bytes());
            f.truncate(rng.gen_range(4..f.len()));
            f
        }
        Kind::UnderHeader => {
            let len: i32 = rng.gen_range(i32::MIN..8);
            len.to_be_bytes().to_vec()
        }
        Kind::UnknownKey => {
            let key: i16 = if rng.gen() {
                rng.gen_range(i16::MIN..0)
            } else {
                rng.gen_range(23..i16::MAX)
            };
            let key = if [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22].contains(&key) {
                999
            } else {
                key
            };
            f[4..6].copy_from_slice(&key.to_be_bytes());
            f
        }
        Kind::UnservedVersion => {
            // A served key at a version outside its range (ApiVersions is
            // answered, not closed: left out here).
            let (key, version): (i16, i16) = match rng.gen_range(0..4) {
                0 => (0, rng.gen_range(10..i16::MAX)),
                1 => (1, rng.gen_range(13..i16::MAX)),
                2 => (3, rng.gen_range(10..i16::MAX)),
                _ => (rng.gen_range(0..4), rng.gen_range(i16::MIN..0)),
            };
            f[4..6].copy_from_slice(&key.to_be_bytes());
            f[6..8].copy_from_slice(&version.to_be_bytes());
            f
        }
        Kind::HostileBody => {
            // Lengths and counts inside the body set to hostile values,
            // the frame length kept right.
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(12..f.len());
                let patch: Vec<u8> = match rng.gen_range(0..5) {
                    0 => i32::MAX.to_be_bytes().to_vec(),
                    1 => (-2i32).to_be_bytes().to_vec(),
                    2 => i16::MAX.to_be_bytes().to_vec(),
                    3 => vec![0xff, 0xff, 0xff, 0xff, 0x0f],
                    _ => rng.gen::<u32>().to_be_bytes().to_vec(),
                };
                let end = (at + patch.len()).min(f.len());
                f[at..end].copy_from_slice(&patch[..end - at]);
            }
            f
        }
    }
}

#[test]
fn malformed_kafka_requests_close_only_their_connection() {
    let total: u64 = std::env::var("SHOAL_KAFKA_BAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(REQUESTS_DEFAULT);
    let seed: u64 = std::env::var("SHOAL_KAFKA_BAD_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("kafka bad-input test: seed {seed}, {total} requests");
    let started = Instant::now();
    let broker = BrokerProcess::start();
    let client = Client::connect(&broker.addr_string()).unwrap();
    client.create_topic("good", TopicConfig::default()).unwrap();
    let rss_before = broker.rss_kib();
    let good = GoodClient::start(broker.kafka_bootstrap());
    let answered = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..SENDER_THREADS)
        .map(|t| {
            let (addr, answered) = (broker.kafka_bootstrap(), answered.clone());
            std::thread::spawn(move || send_malformed(&addr, seed ^ t, total / SENDER_THREADS, &answered))
        })
        .collect();
    let mut closed = 0;
    for s in senders {
        closed += s.join().expect("a malformed request's connection stayed open");
    }
    let good_rounds = good.stop();
    let peak = broker.peak_rss_kib();
    println!(
        "kafka bad-input test: {closed} connections closed by the broker ({} of them after answering a \
         still-valid mutation), {} good rounds, RSS {} MiB before, peak {} MiB, {:?}",
        answered.load(Ordering::SeqCst),
        good_rounds,
        rss_before / 1024,
        peak / 1024,
        started.elapsed()
    );
    assert_eq!(closed, total / SENDER_THREADS * SENDER_THREADS);
    assert!(good_rounds > 0);
    assert!(
        peak < RSS_KIB_MAX,
        "peak RSS {peak} KiB over the bound {RSS_KIB_MAX} KiB"
    );
    let metrics = ureq::get(&format!("http://127.0.0.1:{}/metrics", broker.http_port))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let rejected: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("shoal_kafka_connections_rejected_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(rejected >= (total / 2) as f64, "rejections counted: {rejected}");
}

/// Sends `quota` malformed requests, one per connection, and checks that
/// the broker closes each connection. Returns the number closed.
fn send_malformed(addr: &str, seed: u64, quota: u64, answered: &AtomicU64) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let valid: Vec<Vec<u8>> = valid_requests()
        .iter()
        .map(|(key, version, body)| request_frame(*key, *version, 7, body))
        .collect();
    let mut closed = 0;
    for i in 0..quota {
        let kind = KINDS[rng.gen_range(0..KINDS.len())];
        let bytes = malformed(&mut rng, &valid, kind);
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(CLOSE_WAIT_MAX)).unwrap();
        conn.write_all(&bytes).expect("write");
        if kind == Kind::Truncated {
            // The peer goes away mid-frame.
            conn.shutdown(Shutdown::Write).unwrap();
        }
        match await_close(&mut conn) {
            Ok(false) => {}
            Ok(true) => {
                assert_eq!(
                    kind,
                    Kind::HostileBody,
                    "request {i} ({kind:?}, seed {seed}) was answered"
                );
                answered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("request {i} ({kind:?}, seed {seed}): connection not closed: {e}"),
        }
        closed += 1;
    }
    closed
}

/// Reads until the broker closes the connection: `Ok(false)`. A request
/// that (mutated or not) still decoded is answered and its connection
/// stays open: `Ok(true)` once a whole response frame arrived.
fn await_close(conn: &mut TcpStream) -> std::io::Result<bool> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(false),
            Err(e) => return Err(e),
        }
        if got.len() >= 4 {
            let len = i32::from_be_bytes([got[0], got[1], got[2], got[3]]);
            if len >= 0 && got.len() >= 4 + len as usize {
                return Ok(true);
            }
        }
    }
}

/// [`well_behaved`] on a thread of its own, for the length of a test.
struct GoodClient {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl GoodClient {
    fn start(addr: String) -> GoodClient {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            std::thread::spawn(move || well_behaved(&addr, &stop, &rounds))
        };
        GoodClient { stop, rounds, thread }
    }

    /// Stops the client; returns its rounds, each answered correctly.
    /// Panics if it saw a wrong answer.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .expect("the well-behaved client saw a wrong answer");
        self.rounds.load(Ordering::SeqCst)
    }
}

/// A Kafka client on its own connection: produce and read back, checking
/// every answer, until told to stop.
fn well_behaved(addr: &str, stop: &AtomicBool, rounds: &AtomicU64) {
    let mut k = RawKafka::connect(addr);
    let mut expected = 0i64;
    while !stop.load(Ordering::SeqCst) {
        let value = format!("good-{expected}");
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name("good"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&[&value], None)))])]);
        let ResponseKind::Produce(r) = k.call(ApiKey::Produce, 9, RequestKind::Produce(produce)) else {
            panic!("not a produce response")
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, expected), "good produce");
        let metadata = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("good")))
        ]));
        let ResponseKind::Metadata(m) = k.call(ApiKey::Metadata, 9, RequestKind::Metadata(metadata)) else {
            panic!("not a metadata response")
        };
        assert_eq!(
            (m.topics[0].error_code, m.topics[0].partitions.len()),
            (0, 1),
            "good metadata"
        );
        expected += 1;
        rounds.fetch_add(1, Ordering::SeqCst);
    }
}

/// Large Kafka frames reserve their whole length from the shard's receive
/// pool when their prefix arrives, so peers that announce 16 MiB produce
/// frames and stall hold at most the pool per shard, not what they claim;
/// the frame deadline then closes them, and a small-frame client is served
/// throughout.
#[test]
fn stalled_large_frames_stay_within_the_receive_pool() {
    const POOL_BYTES: u64 = 64 << 20;
    const STALLERS: usize = 24;
    const CLAIMED: usize = 16 << 20;
    const SENT: usize = 15 << 20;
    let broker = BrokerProcess::start_with(shoal_tests::BrokerOptions {
        config_toml: format!("[limits]\nreceive_pool_bytes_max = {POOL_BYTES}\nframe_read_ms_max = 4000\n"),
        ..shoal_tests::BrokerOptions::default()
    });
    let client = Client::connect(&broker.addr_string()).unwrap();
    client.create_topic("good", TopicConfig::default()).unwrap();
    let rss_before = broker.rss_kib();
    let good = GoodClient::start(broker.kafka_bootstrap());
    let stallers: Vec<_> = (0..STALLERS)
        .map(|_| {
            let addr = broker.kafka_bootstrap();
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                conn.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut frame = Vec::with_capacity(SENT);
                frame.extend_from_slice(&((CLAIMED - 4) as i32).to_be_bytes());
                frame.extend_from_slice(&0i16.to_be_bytes());
                frame.extend_from_slice(&9i16.to_be_bytes());
                frame.resize(SENT, 0x5a);
                // Blocks once the broker stops reading (its pool is spent).
                let _ = conn.write_all(&frame);
                conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let started = Instant::now();
                let mut b = [0u8; 64];
                // Closed: end of stream or a reset. Not closed: bytes, or
                // the 30 s read timeout (WouldBlock or TimedOut).
                let closed = match conn.read(&mut b) {
                    Ok(n) => n == 0,
                    Err(e) => !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                };
                (closed, started.elapsed())
            })
        })
        .collect();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        peak = peak.max(broker.rss_kib());
        std::thread::sleep(Duration::from_millis(50));
    }
    peak = peak.max(broker.peak_rss_kib());
    for s in stallers {
        let (closed, waited) = s.join().unwrap();
        assert!(
            closed,
            "a stalled frame's connection was closed by the broker (after {waited:?})"
        );
    }
    let good_rounds = good.stop();
    let claimed_mib = (STALLERS * CLAIMED) >> 20;
    let bound_kib = rss_before + 2 * (POOL_BYTES >> 10) + (96 << 10);
    println!(
        "{STALLERS} peers claimed {claimed_mib} MiB; broker RSS {} MiB before, peak {} MiB (bound {} MiB); {} good rounds",
        rss_before >> 10,
        peak >> 10,
        bound_kib >> 10,
        good_rounds
    );
    assert!(good_rounds > 0, "the small-frame client was served");
    assert!(
        peak < bound_kib,
        "peak RSS {peak} KiB over two shards' pools + 96 MiB ({bound_kib} KiB)"
    );
}
