//! The client against an in-process fake broker: pipelining, correlation
//! matching with out-of-order replies, timeouts, closed connections, and
//! the producer/consumer mechanics (batching, partitioning, offsets).
//!
//! The fake broker speaks the real frame format and message types but keeps
//! partitions as in-memory lists of batches; it exists only to exercise the
//! client's mechanics. End-to-end tests against `shoald` live in `tests/`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rkyv::util::AlignedVec;
use shoal_protocol::api::ApiKey;
use shoal_protocol::batch::{self, BatchBuilder, BatchLimits, Compression, NewRecord};
use shoal_protocol::client::{
    Client, ClientConfig, Connection, ConnectionConfig, PartitionConsumer, Producer, ProducerConfig,
};
use shoal_protocol::codec::{self, Message};
use shoal_protocol::frame::{Frame, FrameDecoder, FRAME_LEN_MAX};
use shoal_protocol::messages::fetch::*;
use shoal_protocol::messages::handshake::*;
use shoal_protocol::messages::metadata::*;
use shoal_protocol::messages::offsets::*;
use shoal_protocol::messages::produce::*;
use shoal_protocol::messages::topic::*;
use shoal_protocol::partitioner::partition_for_key;
use shoal_protocol::{ErrorCode, ProtocolError};

const PARTITIONS: u32 = 3;

/// In-memory partitions: the stored batches (patched with offsets).
#[derive(Default)]
struct Log {
    partitions: HashMap<u32, Vec<AlignedVec<16>>>,
    next_offset: HashMap<u32, u64>,
}

struct FakeBroker {
    addr: SocketAddr,
}

impl FakeBroker {
    fn start() -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(stream, log));
            }
        });
        FakeBroker { addr }
    }
}

fn serve(mut stream: TcpStream, log: Arc<Mutex<Log>>) {
    stream.set_nodelay(true).unwrap();
    let writer = Arc::new(Mutex::new(stream.try_clone().unwrap()));
    let mut decoder = FrameDecoder::new(FRAME_LEN_MAX);
    let mut buf = vec![0u8; 64 << 10];
    let mut seq = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut input = &buf[..n];
        while let Some(frame) = decoder.decode(&mut input).expect("client sent a valid frame") {
            seq += 1;
            // Work is done in arrival order; replies leave after a varying
            // delay, so they overtake each other on the wire.
            let Some(reply) = handle(&frame, &log) else {
                continue;
            };
            let writer = Arc::clone(&writer);
            let delay = Duration::from_micros((seq * 7919) % 3000);
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = writer.lock().unwrap().write_all(&reply);
            });
        }
    }
}

fn reply<M: Message>(msg: &M, frame: &Frame, payload: &[&[u8]]) -> Option<Vec<u8>> {
    Some(
        codec::encode(msg, frame.header().correlation_id, payload)
            .unwrap()
            .to_vec(),
    )
}

fn handle(frame: &Frame, log: &Mutex<Log>) -> Option<Vec<u8>> {
    match ApiKey::from_wire(frame.header().api_key)? {
        ApiKey::Handshake => reply(
            &HandshakeResponse {
                error: 0,
                message: String::new(),
                broker_software: "fake".into(),
                // A single node that serves none of the optional APIs
                // (a broker built before them): it must not list them, or
                // the client would rightly call them.
                api_versions: supported_versions()
                    .into_iter()
                    .filter(|v| ApiKey::from_wire(v.api_key).is_some_and(|k| !k.is_optional()))
                    .collect(),
                shard_id: 0,
                shard_count: 1,
                frame_len_max: FRAME_LEN_MAX as u32,
            },
            frame,
            &[],
        ),
        ApiKey::Metadata => reply(&metadata(), frame, &[]),
        ApiKey::DescribeTopic => {
            let req: DescribeTopicRequest = codec::decode(frame).unwrap();
            if req.name == "silent" {
                return None;
            }
            let resp = DescribeTopicResponse {
                error: 0,
                message: String::new(),
                name: req.name,
                config: TopicConfig::default(),
                partitions: Vec::new(),
            };
            reply(&resp, frame, &[])
        }
        ApiKey::Produce => reply(&produce(frame, log), frame, &[]),
        ApiKey::Fetch => fetch(frame, log),
        ApiKey::ListOffsets => {
            let req: ListOffsetsRequest = codec::decode(frame).unwrap();
            let log = log.lock().unwrap();
            let partitions = req
                .partitions
                .iter()
                .map(|p| ListOffsetsPartitionResponse {
                    partition: p.partition,
                    error: 0,
                    offset: match p.spec {
                        OffsetSpec::Latest => *log.next_offset.get(&p.partition).unwrap_or(&0),
                        _ => 0,
                    },
                    timestamp_ms: None,
                })
                .collect();
            let resp = ListOffsetsResponse {
                error: 0,
                message: String::new(),
                partitions,
            };
            reply(&resp, frame, &[])
        }
        _ => Some(
            codec::encode_error(
                frame.header().correlation_id,
                ErrorCode::UnknownApi.to_wire(),
                "fake",
            )
            .unwrap()
            .to_vec(),
        ),
    }
}

fn metadata() -> MetadataResponse {
    MetadataResponse {
        host: String::new(),
        shared_port: 0,
        shard_count: 1,
        shards: Vec::new(),
        topics: vec![TopicMetadata {
            name: "t".into(),
            error: 0,
            partitions: (0..PARTITIONS)
                .map(|p| PartitionMetadata {
                    partition: p,
                    shard: 0,
                    shard_port: 0,
                    error: 0,
                })
                .collect(),
        }],
    }
}

fn produce(frame: &Frame, log: &Mutex<Log>) -> ProduceResponse {
    let req: ProduceRequest = codec::decode(frame).unwrap();
    let lens = req.partitions.iter().flat_map(|p| p.batch_lens.iter().copied());
    let mut batches = codec::split_payload(frame.payload(), lens).unwrap().into_iter();
    let mut log = log.lock().unwrap();
    let mut out = Vec::new();
    for part in &req.partitions {
        let base = *log.next_offset.get(&part.partition).unwrap_or(&0);
        let mut next = base;
        for _ in &part.batch_lens {
            let bytes = batches.next().unwrap();
            let header = batch::validate(bytes, &BatchLimits::default()).expect("valid batch");
            let mut stored = AlignedVec::<16>::new();
            stored.extend_from_slice(bytes);
            batch::patch(&mut stored, next, 0, 1_000);
            next += u64::from(header.record_count);
            log.partitions.entry(part.partition).or_default().push(stored);
        }
        log.next_offset.insert(part.partition, next);
        out.push(ProducePartitionResponse {
            partition: part.partition,
            error: 0,
            message: String::new(),
            base_offset: base,
            last_offset: next - 1,
            log_start: 0,
            append_time_ms: 1_000,
            durability: Durability::Written,
            duplicates: Vec::new(),
        });
    }
    ProduceResponse {
        throttle_time_ms: 0,
        partitions: out,
    }
}

fn fetch(frame: &Frame, log: &Mutex<Log>) -> Option<Vec<u8>> {
    let req: FetchRequest = codec::decode(frame).unwrap();
    let log = log.lock().unwrap();
    let mut payload: Vec<&[u8]> = Vec::new();
    let mut partitions = Vec::new();
    for p in &req.partitions {
        let stored = log.partitions.get(&p.partition).map(Vec::as_slice).unwrap_or(&[]);
        let mut lens = Vec::new();
        for b in stored {
            let h = batch::BatchHeader::parse(b).unwrap();
            if h.next_offset() > p.offset {
                lens.push(b.len() as u32);
                payload.push(b);
            }
        }
        let end = *log.next_offset.get(&p.partition).unwrap_or(&0);
        partitions.push(FetchPartitionResponse {
            partition: p.partition,
            error: 0,
            message: String::new(),
            high_watermark: end,
            log_start: 0,
            log_end: end,
            batch_lens: lens,
        });
    }
    let resp = FetchResponse {
        throttle_time_ms: 0,
        partitions,
    };
    reply(&resp, frame, &payload)
}

fn quick_config() -> ConnectionConfig {
    ConnectionConfig {
        request_timeout_ms: 2_000,
        ..ConnectionConfig::default()
    }
}

/// 500 requests in flight on one connection, answered out of order, each
/// reach the caller that sent them.
#[test]
fn pipelined_replies_match_their_requests() {
    let broker = FakeBroker::start();
    let conn = Connection::connect(broker.addr, quick_config()).expect("connect");
    let pending: Vec<_> = (0..500)
        .map(|i| {
            let req = DescribeTopicRequest {
                name: format!("topic-{i}"),
            };
            (i, conn.send(&req, &[], 0).expect("send"))
        })
        .collect();
    for (i, p) in pending {
        assert_eq!(p.wait().expect("reply").message.name, format!("topic-{i}"));
    }
}

/// Many threads share one connection; each gets its own answers.
#[test]
fn connection_is_shared_between_threads() {
    let broker = FakeBroker::start();
    let conn = Arc::new(Connection::connect(broker.addr, quick_config()).expect("connect"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let conn = Arc::clone(&conn);
            std::thread::spawn(move || {
                for i in 0..100 {
                    let name = format!("{t}-{i}");
                    let req = DescribeTopicRequest { name: name.clone() };
                    assert_eq!(conn.call(&req, &[], 0).unwrap().message.name, name);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
}

/// An unanswered request times out without breaking the connection, and
/// its late slot does not leak into other replies.
#[test]
fn timeout_leaves_connection_usable() {
    let broker = FakeBroker::start();
    let config = ConnectionConfig {
        request_timeout_ms: 200,
        ..ConnectionConfig::default()
    };
    let conn = Connection::connect(broker.addr, config).expect("connect");
    let silent = DescribeTopicRequest {
        name: "silent".into(),
    };
    let err = conn.call(&silent, &[], 0).unwrap_err();
    assert!(matches!(err, ProtocolError::Timeout { .. }), "{err}");
    let ok = DescribeTopicRequest { name: "after".into() };
    assert_eq!(conn.call(&ok, &[], 0).unwrap().message.name, "after");
}

/// A request the broker cannot serve comes back as a typed broker error.
#[test]
fn error_frame_becomes_broker_error() {
    let broker = FakeBroker::start();
    let conn = Connection::connect(broker.addr, quick_config()).expect("connect");
    let err = conn.call(&ListTopicsRequest {}, &[], 0).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownApi), "{err}");
}

/// A peer that closes the socket fails the waiting callers with `Closed`.
#[test]
fn closed_connection_fails_pending_calls() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut decoder = FrameDecoder::new(FRAME_LEN_MAX);
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let frame = decoder.decode(&mut &buf[..n]).unwrap().unwrap();
        let hs = handle(&frame, &Mutex::new(Log::default())).unwrap();
        s.write_all(&hs).unwrap();
        let _ = s.read(&mut buf);
        drop(s);
    });
    let conn = Connection::connect(addr, quick_config()).expect("connect");
    let err = conn
        .call(&DescribeTopicRequest { name: "x".into() }, &[], 0)
        .unwrap_err();
    assert!(matches!(err, ProtocolError::Closed(_)), "{err}");
    assert!(conn.is_closed());
}

/// The producer batches keyed and keyless records, keyed records land on
/// murmur2's partition, offsets per partition are dense and unique, and a
/// partition consumer reads every record back intact, with lz4 and with
/// zstd batches.
#[test]
fn producer_and_partition_consumer_round_trip() {
    for compression in [Compression::Lz4, Compression::Zstd] {
        producer_round_trip(compression);
    }
}

fn producer_round_trip(compression: Compression) {
    let broker = FakeBroker::start();
    let client = Arc::new(Client::with_config(&broker.addr.to_string(), ClientConfig::default()).unwrap());
    let producer = Producer::new(
        Arc::clone(&client),
        ProducerConfig {
            linger_ms: 2,
            batch_bytes_max: 4096,
            compression,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let records: Vec<NewRecord> = (0..1000)
        .map(|i| NewRecord {
            timestamp_ms: 1_700_000_000_000 + i,
            key: (i % 3 != 0).then(|| format!("key-{}", i % 17).into_bytes()),
            value: Some(format!("value-{i}").into_bytes()),
            ..NewRecord::default()
        })
        .collect();
    let acks = producer.send_all("t", records.clone()).expect("produce");
    let mut by_partition: HashMap<u32, Vec<u64>> = HashMap::new();
    for (record, ack) in records.iter().zip(&acks) {
        if let Some(key) = &record.key {
            assert_eq!(ack.partition, partition_for_key(key, PARTITIONS));
        }
        assert_eq!(ack.durability, Durability::Written);
        by_partition
            .entry(ack.partition)
            .or_default()
            .push(ack.offset.unwrap());
    }
    assert_eq!(by_partition.len(), PARTITIONS as usize, "keyless records spread");
    for offsets in by_partition.values_mut() {
        offsets.sort_unstable();
        let expected: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(*offsets, expected);
    }
    for p in 0..PARTITIONS {
        let mut consumer = PartitionConsumer::new(Arc::clone(&client), "t", p, OffsetSpec::Earliest).unwrap();
        let got = consumer.poll().unwrap();
        assert_eq!(got.len(), by_partition[&p].len());
        for r in &got {
            let i = acks
                .iter()
                .position(|a| a.partition == p && a.offset == Some(r.offset))
                .expect("acked record");
            assert_eq!(r.value, records[i].value);
            assert_eq!(r.key, records[i].key);
            assert_eq!(r.timestamp_ms, records[i].timestamp_ms);
        }
        assert_eq!(consumer.position(), by_partition[&p].len() as u64);
    }
    producer.close();
}

/// A batch built by hand and fetched back skips records before the offset.
#[test]
fn fetch_skips_records_before_offset() {
    let broker = FakeBroker::start();
    let client = Client::connect(&broker.addr.to_string()).unwrap();
    let mut b = BatchBuilder::new();
    for i in 0..10u8 {
        b.push(NewRecord {
            value: Some(vec![i]),
            ..NewRecord::default()
        });
    }
    let bytes = b.finish().unwrap();
    let req = ProduceRequest {
        topic: "t".into(),
        acks: Acks::Leader,
        timeout_ms: 1000,
        partitions: vec![ProducePartition {
            partition: 1,
            batch_lens: vec![bytes.len() as u32],
        }],
    };
    client
        .shared_connection()
        .unwrap()
        .call(&req, &[&bytes], 0)
        .unwrap();
    let fetched = client.fetch("t", 1, 4, 1 << 20, 0).unwrap();
    let values: Vec<u8> = fetched
        .records
        .iter()
        .map(|r| r.value.as_ref().unwrap()[0])
        .collect();
    assert_eq!(values, (4..10).collect::<Vec<u8>>());
    assert_eq!(fetched.next_offset, 10);
    assert_eq!(fetched.log_end, 10);
}

/// The `shoal` binary produces stdin lines (split into key and value) and
/// reads them back as JSON lines; a refused connection exits 1 with a
/// JSON error.
#[test]
fn cli_produce_then_consume() {
    use std::process::{Command, Stdio};
    let broker = FakeBroker::start();
    let shoal = env!("CARGO_BIN_EXE_shoal");
    let addr = broker.addr.to_string();
    let mut child = Command::new(shoal)
        .args([
            "--broker",
            &addr,
            "--json",
            "produce",
            "t",
            "--key-sep",
            ":",
            "--header",
            "src=cli",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn shoal");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a:one\nb:two\nc:three\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "produce failed: {out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["produced"], 3);
    let partition_of_b = partition_for_key(b"b", PARTITIONS);
    let out = Command::new(shoal)
        .args(["--broker", &addr, "--json", "consume", "t", "--partition"])
        .arg(partition_of_b.to_string())
        .args(["--from", "earliest", "--timeout-ms", "300"])
        .output()
        .unwrap();
    assert!(out.status.success(), "consume failed: {out:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let b = lines.iter().find(|l| l["key"] == "b").expect("record b");
    assert_eq!(b["value"], "two");
    assert_eq!(b["headers"]["src"], "cli");
    assert_eq!(b["partition"], partition_of_b);

    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = Command::new(shoal)
        .args(["--broker", &dead.to_string(), "--json", "topic", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json error");
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("refused"),
        "{doc}"
    );
}
