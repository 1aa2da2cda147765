//! Codec micro-benchmark: `cargo bench -p shoal-protocol --bench codec`.
//!
//! Measures, for a batch of 1,000 records with 1 KiB values:
//! - batch encode (rkyv archive + CRC-32C, `BatchBuilder::finish`), plain and lz4;
//! - batch validated decode (length checks, CRC-32C, validated rkyv access
//!   over every record: `batch::validate`), plain and lz4;
//! - frame encode of a produce request carrying the batch (header + meta,
//!   payload appended) and frame decode (stream decoder + meta CRC +
//!   validated meta view + payload split).
//!
//! Each figure is the median (and p90) of `SHOAL_BENCH_ITERS` timed runs
//! (default 300) after 30 warm-up runs, in µs per batch and GB/s of batch
//! bytes. The machine is shared; read the numbers as orders of magnitude.

use std::hint::black_box;
use std::time::Instant;

use shoal_protocol::batch::{self, BatchBuilder, BatchLimits, BatchRecords, Compression, NewRecord};
use shoal_protocol::codec;
use shoal_protocol::frame::{FrameDecoder, FRAME_LEN_MAX};
use shoal_protocol::messages::produce::{Acks, ProducePartition, ProduceRequest};

const RECORDS: usize = 1_000;
const VALUE_BYTES: usize = 1_024;
const WARMUP: usize = 30;

fn records() -> Vec<NewRecord> {
    (0..RECORDS)
        .map(|i| NewRecord {
            timestamp_ms: 1_700_000_000_000 + i as i64,
            key: Some(format!("key-{i:06}").into_bytes()),
            value: Some(value(i)),
            headers: Vec::new(),
            message_id: None,
        })
        .collect()
}

/// Half pseudo-random bytes, half a repeating pattern: lz4 roughly halves
/// it, as it does typical JSON-ish payloads (an all-pattern value would
/// flatter lz4; an all-random one would make it pointless).
fn value(i: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..VALUE_BYTES)
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

fn build(records: &[NewRecord], compression: Compression) -> rkyv::util::AlignedVec<16> {
    let mut b = BatchBuilder::new().compression(compression);
    for r in records {
        b.push(r.clone());
    }
    b.finish().expect("encode")
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

/// Prints one row; `bytes` is what GB/s is computed over (`None` for rows
/// whose cost does not scale with the data, like encoding a frame head).
fn report(name: &str, bytes: Option<usize>, (median_us, p90_us): (f64, f64)) {
    let rate = match bytes {
        Some(b) => format!("{:>7.2} GB/s", b as f64 / (median_us * 1e-6) / 1e9),
        None => "      (n/a)".to_string(),
    };
    println!("{name:<34} {median_us:>10.2} µs  (p90 {p90_us:>9.2} µs)  {rate}");
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

fn main() {
    let iters: usize = std::env::var("SHOAL_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
        .max(10);
    let input = records();
    let limits = BatchLimits::default();
    let plain = build(&input, Compression::None);
    let lz4 = build(&input, Compression::Lz4);
    let payload_bytes = RECORDS * VALUE_BYTES;
    println!("machine: {}", machine());
    println!(
        "batch: {RECORDS} records x {VALUE_BYTES} B values; plain {} B, lz4 {} B; {iters} iterations",
        plain.len(),
        lz4.len()
    );
    println!("GB/s is of the plain batch size for batch rows and of the frame size for frame rows\n");

    report(
        "batch encode (plain)",
        Some(plain.len()),
        time(iters, || {
            black_box(build(black_box(&input), Compression::None));
        }),
    );
    report(
        "batch encode (lz4)",
        Some(plain.len()),
        time(iters, || {
            black_box(build(black_box(&input), Compression::Lz4));
        }),
    );
    report(
        "batch validated decode (plain)",
        Some(plain.len()),
        time(iters, || {
            decode(black_box(&plain), &limits);
        }),
    );
    report(
        "batch validated decode (lz4)",
        Some(plain.len()),
        time(iters, || {
            decode(black_box(&lz4), &limits);
        }),
    );
    frames(&plain, iters);
    println!("\n(value bytes per batch: {payload_bytes})");
}

/// Validates a batch and touches every record through the validated view.
fn decode(bytes: &[u8], limits: &BatchLimits) {
    let header = batch::validate(bytes, limits).expect("valid");
    let body = BatchRecords::open(bytes, &header, limits).expect("open");
    let records = body.records().expect("records");
    let total: usize = records
        .iter()
        .map(|r| r.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    black_box(total);
}

fn frames(batch_bytes: &[u8], iters: usize) {
    let request = ProduceRequest {
        topic: "bench".into(),
        acks: Acks::Leader,
        timeout_ms: 30_000,
        partitions: vec![ProducePartition {
            partition: 0,
            batch_lens: vec![batch_bytes.len() as u32],
        }],
    };
    let frame = codec::encode(&request, 1, &[batch_bytes]).expect("frame");
    report(
        "frame encode (head + copy payload)",
        Some(frame.len()),
        time(iters, || {
            black_box(codec::encode(black_box(&request), 1, &[batch_bytes]).expect("frame"));
        }),
    );
    report(
        "frame head encode (writev style)",
        None,
        time(iters, || {
            black_box(codec::encode_head(black_box(&request), 1, batch_bytes.len()).expect("head"));
        }),
    );
    report(
        "frame decode + validated view",
        Some(frame.len()),
        time(iters, || {
            let mut decoder = FrameDecoder::new(FRAME_LEN_MAX);
            let mut input: &[u8] = black_box(&frame);
            let f = decoder.decode(&mut input).expect("valid").expect("whole frame");
            let view = codec::view::<ProduceRequest>(&f).expect("view");
            let lens = view.partitions[0].batch_lens.iter().map(|l| l.to_native());
            black_box(codec::split_payload(f.payload(), lens).expect("split"));
        }),
    );
}
