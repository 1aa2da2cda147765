//! What the Kafka front end's record conversion costs:
//! `cargo bench -p shoal-broker --bench kafka_records`.
//!
//! For batches of 1,000 records (1 KiB values, and 100 B values for the
//! per-record overhead), it times:
//! - produce: a Kafka RecordBatch v2 validated (`open_produced_batch`),
//!   its records decoded and turned into a Shoal batch
//!   (`to_shoal_batch_as`), for uncompressed, lz4 and zstd Kafka batches
//!   (stored with the matching Shoal codec, and zstd also as lz4 and plain);
//! - fetch: a stored Shoal batch encoded as a Kafka batch
//!   (`encode_shoal_batch`), from a plain and an lz4 Shoal batch;
//! - baselines in the same run: the native path's ingest check
//!   (`batch::validate` of a Shoal batch), a CRC-32C over the Kafka batch,
//!   and a plain copy of it.
//!
//! Figures are the median (and p90) of `SHOAL_BENCH_ITERS` timed runs
//! (default 200) after 20 warm-up runs: µs per batch, ns per record, and MB/s
//! of the uncompressed Kafka batch. The machine is shared with other
//! builds; read them as orders of magnitude.

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use shoal_broker::frontend::kafka::record_compression::{compress, KafkaCompression};
use shoal_broker::frontend::kafka::records::{
    encode_shoal_batch, open_produced_batch, KafkaBatchHeader, RecordLimits, TimestampType,
    KAFKA_BATCH_HEADER_LEN,
};
use shoal_protocol::batch::{self, BatchBuilder, BatchLimits, Compression, NewRecord, RecordHeader};

const RECORDS: usize = 1_000;
const WARMUP: usize = 20;

fn records(value_bytes: usize) -> Vec<NewRecord> {
    (0..RECORDS)
        .map(|i| NewRecord {
            timestamp_ms: 1_700_000_000_000 + i as i64,
            key: Some(format!("key-{i:06}").into_bytes()),
            value: Some(value(i, value_bytes)),
            headers: vec![RecordHeader {
                key: "trace-id".into(),
                value: format!("{i:016x}").into_bytes(),
            }],
            message_id: None,
        })
        .collect()
}

/// Half pseudo-random bytes, half a repeating pattern (as the protocol
/// crate's codec bench): compressible about as much as JSON-ish payloads.
fn value(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|j| {
            if j % 32 < 16 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                b"{\"field\": 12345}"[j % 16]
            }
        })
        .collect()
}

fn shoal_batch(records: &[NewRecord], compression: Compression) -> rkyv::util::AlignedVec<16> {
    let mut b = BatchBuilder::new().compression(compression);
    for r in records {
        b.push(r.clone());
    }
    b.finish().expect("shoal batch")
}

/// A Kafka batch of `records`: the uncompressed one is our own fetch
/// encoding; a compressed one has its records section compressed as a
/// producer would, with the attributes and CRC fixed.
fn kafka_batch(records: &[NewRecord], codec: KafkaCompression) -> Vec<u8> {
    let shoal = shoal_batch(records, Compression::None);
    let mut out = BytesMut::new();
    encode_shoal_batch(
        &shoal,
        &BatchLimits::default(),
        TimestampType::CreateTime,
        &mut out,
    )
    .expect("encode");
    if codec == KafkaCompression::None {
        return out.to_vec();
    }
    let mut header = KafkaBatchHeader::parse(&out).expect("header");
    let packed = compress(codec, &out[KAFKA_BATCH_HEADER_LEN..]).expect("compress");
    header.attributes |= codec as i16;
    header.batch_length = (KAFKA_BATCH_HEADER_LEN - 12 + packed.len()) as i32;
    let mut b = header.to_bytes().to_vec();
    b.extend_from_slice(&packed);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Runs `f` warm-up + `iters` times; returns (median, p90) in µs.
fn time(iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..WARMUP {
        f();
    }
    let mut samples: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    (samples[iters / 2], samples[iters * 9 / 10])
}

fn report(name: &str, plain_kafka_bytes: usize, (median_us, p90_us): (f64, f64)) {
    let ns_per_record = median_us * 1e3 / RECORDS as f64;
    let mb_s = plain_kafka_bytes as f64 / (median_us * 1e-6) / 1e6;
    println!("{name:<44} {median_us:>9.1} µs (p90 {p90_us:>8.1})  {ns_per_record:>8.0} ns/record  {mb_s:>8.0} MB/s");
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown cpu")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores available")
}

fn run(value_bytes: usize, iters: usize) {
    let input = records(value_bytes);
    let record_limits = RecordLimits::default();
    let batch_limits = BatchLimits::default();
    let plain = kafka_batch(&input, KafkaCompression::None);
    let lz4 = kafka_batch(&input, KafkaCompression::Lz4);
    let zstd = kafka_batch(&input, KafkaCompression::Zstd);
    let shoal_plain = shoal_batch(&input, Compression::None);
    let shoal_lz4 = shoal_batch(&input, Compression::Lz4);
    let n = plain.len();
    println!(
        "\n{RECORDS} records x {value_bytes} B values (+ 10 B key, one 24 B header): Kafka batch plain {n} B, lz4 {} B, zstd {} B; Shoal plain {} B, lz4 {} B",
        lz4.len(),
        zstd.len(),
        shoal_plain.len(),
        shoal_lz4.len()
    );
    let produce = |bytes: &[u8], codec: Compression| {
        let produced = open_produced_batch(bytes, &record_limits).expect("valid");
        black_box(produced.to_shoal_batch_as(codec).expect("shoal"));
    };
    report(
        "produce: Kafka plain -> Shoal plain",
        n,
        time(iters, || produce(&plain, Compression::None)),
    );
    report(
        "produce: Kafka lz4 -> Shoal lz4",
        n,
        time(iters, || produce(&lz4, Compression::Lz4)),
    );
    report(
        "produce: Kafka zstd -> Shoal zstd",
        n,
        time(iters, || produce(&zstd, Compression::Zstd)),
    );
    report(
        "produce: Kafka zstd -> Shoal lz4",
        n,
        time(iters, || produce(&zstd, Compression::Lz4)),
    );
    report(
        "produce: Kafka zstd -> Shoal plain",
        n,
        time(iters, || produce(&zstd, Compression::None)),
    );
    report(
        "produce: Kafka plain, decode only",
        n,
        time(iters, || {
            let produced = open_produced_batch(&plain, &record_limits).expect("valid");
            black_box(produced.records().expect("records").len());
        }),
    );
    let fetch = |shoal: &[u8]| {
        let mut out = BytesMut::with_capacity(n);
        black_box(
            encode_shoal_batch(shoal, &batch_limits, TimestampType::CreateTime, &mut out).expect("encode"),
        );
    };
    report(
        "fetch: Shoal plain -> Kafka plain",
        n,
        time(iters, || fetch(&shoal_plain)),
    );
    report(
        "fetch: Shoal lz4 -> Kafka plain",
        n,
        time(iters, || fetch(&shoal_lz4)),
    );
    report(
        "baseline: native ingest (batch::validate)",
        n,
        time(iters, || {
            black_box(batch::validate(&shoal_plain, &batch_limits).expect("valid"));
        }),
    );
    report(
        "baseline: CRC-32C of the Kafka batch",
        n,
        time(iters, || {
            black_box(crc32c::crc32c(&plain));
        }),
    );
    report(
        "baseline: copy of the Kafka batch",
        n,
        time(iters, || {
            black_box(plain.to_vec());
        }),
    );
}

fn main() {
    let iters: usize = std::env::var("SHOAL_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .max(10);
    println!("machine: {}; {iters} iterations per row, median", machine());
    println!("MB/s is of the uncompressed Kafka batch; ns/record over {RECORDS} records");
    run(1024, iters);
    run(100, iters);
}
