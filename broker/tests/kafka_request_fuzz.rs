//! A seeded mutation fuzzer for the Kafka request decoder, run as a plain
//! test (issue 18's "bad input" requirement, at the codec level).
//!
//! Feeds 1,000,000 inputs, built from valid requests of every served
//! API and version: truncations, bit flips, hostile lengths and counts
//! written over fields (i32::MAX, -2, 0xffff, five-byte varints), inserted
//! bytes, random api keys and versions, splices, random tails and pure
//! noise. For every input it proves:
//! - nothing panics;
//! - the result is a decoded request or a typed [`KafkaError`] refusal;
//! - the decode's peak live heap stays within 256 KiB plus 64 times the
//!   input's length (measured with a counting global allocator), so no
//!   length inside a request can make the decoder reserve memory it does
//!   not hold;
//! - an accepted request re-encodes with kafka-protocol and decodes back
//!   equal (the walk and kafka-protocol agree on where every field is);
//! - the stream decoder fed in random chunks cuts the same frames.
//!
//! Every strict prefix of every valid request is refused, which shows the
//! schema walk reads every byte. `SHOAL_FUZZ_SEED` (u64) and
//! `SHOAL_FUZZ_INPUTS` (count) override the defaults; the seed is printed so
//! a failure can be replayed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use shoal_broker::frontend::kafka::codec::{decode_request, FrameDecoder, KafkaLimits};
use shoal_broker::frontend::kafka::sample_requests::{all_sample_frames, encode_request_frame};

struct CountingAlloc;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: forwards every call to the system allocator unchanged; the only
// addition is const-initialised thread-local counters, which allocate
// nothing and have no destructors.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as i64));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as i64 - layout.size() as i64);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Peak heap growth on this thread while `f` runs.
fn peak_growth<R>(f: impl FnOnce() -> R) -> (R, i64) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get) - base)
}

const HOSTILE: &[&[u8]] = &[
    &[0x7f, 0xff, 0xff, 0xff],
    &[0xff, 0xff, 0xff, 0xfe],
    &[0x7f, 0xff],
    &[0xff, 0xff],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
    &[0x00, 0x10, 0x00, 0x00],
    &[0xff, 0xff, 0x7f],
];

fn mutate(rng: &mut StdRng, corpus: &[Bytes]) -> Vec<u8> {
    let mut b = corpus[rng.gen_range(0..corpus.len())].to_vec();
    let rounds = rng.gen_range(1..=3);
    for _ in 0..rounds {
        match rng.gen_range(0..9) {
            0 => {
                let at = rng.gen_range(0..=b.len());
                b.truncate(at);
            }
            1 => {
                for _ in 0..rng.gen_range(1..=4) {
                    if !b.is_empty() {
                        let i = rng.gen_range(0..b.len());
                        b[i] ^= 1 << rng.gen_range(0..8);
                    }
                }
            }
            2 | 3 => {
                let h = HOSTILE[rng.gen_range(0..HOSTILE.len())];
                if b.len() > h.len() {
                    let at = rng.gen_range(0..=b.len() - h.len());
                    b[at..at + h.len()].copy_from_slice(h);
                }
            }
            4 => {
                let h = HOSTILE[rng.gen_range(0..HOSTILE.len())];
                let at = rng.gen_range(0..=b.len());
                b.splice(at..at, h.iter().copied());
            }
            5 => {
                if b.len() >= 4 {
                    let key: i16 = rng.gen_range(-2..80);
                    let version: i16 = rng.gen_range(-2..20);
                    b[0..2].copy_from_slice(&key.to_be_bytes());
                    b[2..4].copy_from_slice(&version.to_be_bytes());
                }
            }
            6 => {
                let n = rng.gen_range(1..64);
                let mut tail = vec![0u8; n];
                rng.fill_bytes(&mut tail);
                b.extend_from_slice(&tail);
            }
            7 => {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                let at = rng.gen_range(0..=b.len());
                let from = rng.gen_range(0..=other.len());
                b.truncate(at);
                b.extend_from_slice(&other[from..]);
            }
            _ => {
                let n = rng.gen_range(0..200);
                b = vec![0u8; n];
                rng.fill_bytes(&mut b);
            }
        }
    }
    b
}

fn seed_and_count() -> (u64, usize) {
    let seed = std::env::var("SHOAL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    let count = std::env::var("SHOAL_FUZZ_INPUTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    (seed, count)
}

/// Checks one frame body: no panic, a typed result, bounded allocation, and
/// an accepted request re-encodes to an equal request.
fn check_one(body: &[u8], limits: &KafkaLimits) -> bool {
    let input = Bytes::copy_from_slice(body);
    let (result, peak) = peak_growth(|| decode_request(input, limits));
    let bound = 64 * body.len() as i64 + (256 << 10);
    assert!(
        peak <= bound,
        "decode grew the heap by {peak} B for a {} B input",
        body.len()
    );
    match result {
        Ok(request) => {
            let frame = encode_request_frame(request.api_key, request.api_version, 1, &request.body);
            let again = decode_request(Bytes::from(frame).slice(4..), limits)
                .unwrap_or_else(|r| panic!("re-encoded request refused: {}", r.error));
            assert_eq!(again.body, request.body);
            true
        }
        Err(refusal) => {
            // Typed, with a Kafka code, and a reply only with a kept connection.
            let _ = refusal.error.kafka_code();
            assert!(refusal.reply.is_none() || !refusal.close);
            false
        }
    }
}

/// The fuzz loop described in the header.
#[test]
fn kafka_requests_fuzz() {
    let (seed, count) = seed_and_count();
    println!("kafka request fuzz: seed {seed} ({count} inputs); replay with SHOAL_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let limits = KafkaLimits {
        request_elements_max: 10_000,
        ..KafkaLimits::default()
    };
    let corpus: Vec<Bytes> = all_sample_frames()
        .into_iter()
        .map(|(_, _, f)| Bytes::from(f).slice(4..))
        .collect();
    let mut accepted = 0usize;
    for i in 0..count {
        let body = mutate(&mut rng, &corpus);
        let outcome = std::panic::catch_unwind(|| check_one(&body, &limits));
        match outcome {
            Ok(ok) => accepted += usize::from(ok),
            Err(panic) => {
                eprintln!("input {i} (seed {seed}) failed: {:02x?}", body);
                std::panic::resume_unwind(panic);
            }
        }
        if i % 16 == 0 {
            check_stream(&mut rng, &body, &limits);
        }
    }
    println!("{accepted} of {count} mutated inputs decoded as valid requests; the rest were refused");
    assert!(accepted > 0, "some mutations (a flipped flag, say) stay valid");
    assert!(accepted < count / 2, "most mutations are refused");
}

/// The stream decoder, fed `body` behind its length prefix in random
/// chunks, cuts exactly that frame, or refuses it when it is shorter than a
/// request header or over its cap.
fn check_stream(rng: &mut StdRng, body: &[u8], limits: &KafkaLimits) {
    let mut stream = (body.len() as i32).to_be_bytes().to_vec();
    stream.extend_from_slice(body);
    let mut decoder = FrameDecoder::new(*limits);
    let mut rest = &stream[..];
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let n = rng.gen_range(1..=rest.len().min(97));
        let mut piece = &rest[..n];
        match decoder.decode(&mut piece) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => {}
            Err(_) => {
                assert!(
                    body.len() < 8 || body.len() > limits.frame_len_max,
                    "refused a {} B frame",
                    body.len()
                );
                return;
            }
        }
        rest = &rest[n - piece.len()..];
    }
    assert_eq!(frames, vec![Bytes::copy_from_slice(body)]);
}

/// Every strict prefix of every valid request body is refused: the walk
/// accounts for every byte, so a cut anywhere shows.
#[test]
fn every_prefix_refused() {
    let limits = KafkaLimits::default();
    for (key, version, frame) in all_sample_frames() {
        let body = Bytes::from(frame).slice(4..);
        assert!(decode_request(body.clone(), &limits).is_ok());
        for cut in 0..body.len() {
            let r = decode_request(body.slice(..cut), &limits);
            assert!(
                r.is_err(),
                "{key:?} v{version} accepted a cut at {cut} of {}",
                body.len()
            );
        }
    }
}

/// The largest requests the element cap admits stay bounded: 10,000 empty
/// topic names in a Metadata v0 request decode within the bound, and one
/// more element is refused.
#[test]
fn element_cap_bounds_decoded_size() {
    let limits = KafkaLimits {
        request_elements_max: 10_000,
        ..KafkaLimits::default()
    };
    let request = |n: i32| {
        let mut b = BytesMut::new();
        b.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        for _ in 0..n {
            b.extend_from_slice(&0i16.to_be_bytes());
        }
        b.freeze()
    };
    let (ok, peak) = peak_growth(|| decode_request(request(10_000), &limits));
    assert!(ok.is_ok());
    println!(
        "10,000-topic Metadata v0 request: {} B on the wire, heap peak {peak} B",
        20_014
    );
    assert!(peak < 4 << 20);
    assert!(decode_request(request(10_001), &limits).is_err());
}
