//! A seeded mutation fuzzer for the frame decoder, run as a plain test.
//!
//! Feeds at least 1,000,000 inputs (random bytes, random bytes behind a
//! plausible header, and valid frames with flipped bits, overwritten header
//! fields, cuts, extensions and splices) to both decoders and proves, for
//! every input:
//! - nothing panics;
//! - every reject is a typed [`FrameError`] (or, for the meta, a typed
//!   [`ProtocolError`]);
//! - `NeedMore` (one-shot) or `None` (stream, after every chunk) is only
//!   claimed for a valid prefix: a whole header that passes every header
//!   rule (restated here from the layout table, not taken from the decoder)
//!   and announces more bytes than are there, asking for exactly the
//!   missing ones; and every cut of an unmutated frame is such a prefix;
//! - the one-shot decoder and the stream decoder fed in random chunks agree
//!   exactly (same frame bytes, or the same error);
//! - an accepted frame is self-consistent, and every unmutated frame decodes.
//!
//! `SHOAL_FUZZ_SEED` (u64) and `SHOAL_FUZZ_FRAMES` (count) override the
//! defaults; the seed is printed so a failure can be replayed.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use shoal_protocol::batch::{self, BatchBuilder, BatchLimits, Compression, NewRecord, RecordHeader};
use shoal_protocol::codec::{self, split_payload, validate_any};
use shoal_protocol::frame::{
    decode_frame, Decoded, Frame, FrameDecoder, FrameError, FRAME_LEN_MAX, META_LEN_MAX,
};
use shoal_protocol::messages::delivery::{Delivery, PollResponse, PolledBatch};
use shoal_protocol::messages::fetch::{FetchPartitionResponse, FetchResponse};
use shoal_protocol::messages::group::{JoinGroupRequest, TopicPartitions};
use shoal_protocol::messages::handshake::{supported_versions, HandshakeRequest};
use shoal_protocol::messages::produce::{Acks, ProducePartition, ProduceRequest};
use shoal_protocol::messages::topic::{CreateTopicRequest, TopicConfig};
use shoal_protocol::{ApiKey, ErrorCode, ProtocolError};

/// Valid frames to mutate: small and large metas, with and without payload.
fn corpus() -> Vec<Vec<u8>> {
    let mut b = BatchBuilder::new();
    for i in 0..4u8 {
        b.push(NewRecord {
            timestamp_ms: 1_700_000_000_000,
            key: Some(vec![i; 3]),
            value: Some(vec![i; 40]),
            headers: vec![RecordHeader {
                key: "h".into(),
                value: vec![1, 2],
            }],
            message_id: Some(format!("m{i}")),
        });
    }
    let plain = b.finish().unwrap();
    let mut b = BatchBuilder::new().compression(Compression::Lz4);
    b.push(NewRecord {
        value: Some(vec![7; 300]),
        ..NewRecord::default()
    });
    let lz4 = b.finish().unwrap();
    let lens = vec![plain.len() as u32, lz4.len() as u32];
    let produce = ProduceRequest {
        topic: "orders".into(),
        acks: Acks::Leader,
        timeout_ms: 1000,
        partitions: vec![ProducePartition {
            partition: 3,
            batch_lens: lens.clone(),
        }],
    };
    let fetch = FetchResponse {
        throttle_time_ms: 0,
        partitions: vec![FetchPartitionResponse {
            partition: 0,
            error: 0,
            message: String::new(),
            high_watermark: 9,
            log_start: 0,
            log_end: 9,
            batch_lens: lens,
        }],
    };
    let poll = PollResponse {
        error: 0,
        message: String::new(),
        generation: 4,
        throttle_time_ms: 0,
        lease_ms: 30_000,
        batches: vec![PolledBatch {
            topic: "orders".into(),
            partition: 1,
            batch_len: plain.len() as u32,
            deliveries: vec![Delivery {
                offset: 2,
                delivery_count: 3,
            }],
        }],
    };
    let join = JoinGroupRequest {
        group: "billing".into(),
        member_name: "m".into(),
        member_id: Some("id".into()),
        topics: vec!["orders".into(), "refunds".into()],
        session_timeout_ms: 10_000,
    };
    let assignment = TopicPartitions {
        topic: "orders".into(),
        partitions: vec![0, 1, 2],
    };
    let pair: [&[u8]; 2] = [&plain, &lz4];
    vec![
        codec::encode(&produce, 1, &pair).unwrap().to_vec(),
        codec::encode(&fetch, 2, &pair).unwrap().to_vec(),
        codec::encode(&poll, 3, &[&plain]).unwrap().to_vec(),
        codec::encode(&join, 4, &[]).unwrap().to_vec(),
        codec::encode(
            &HandshakeRequest {
                client_software: "fuzz".into(),
                api_versions: supported_versions(),
            },
            5,
            &[],
        )
        .unwrap()
        .to_vec(),
        codec::encode(
            &CreateTopicRequest {
                name: format!("{assignment:?}"),
                config: TopicConfig::default(),
            },
            6,
            &[],
        )
        .unwrap()
        .to_vec(),
        codec::encode_error(7, ErrorCode::CorruptFrame.to_wire(), "bad")
            .unwrap()
            .to_vec(),
    ]
}

/// One input: random, random behind a plausible header, or a mutated frame.
fn generate(rng: &mut StdRng, corpus: &[Vec<u8>]) -> (Vec<u8>, bool) {
    match rng.gen_range(0..10) {
        0 => {
            let mut bytes = vec![0u8; rng.gen_range(0..200)];
            rng.fill_bytes(&mut bytes);
            (bytes, false)
        }
        1 => {
            let mut bytes = vec![0u8; rng.gen_range(24..400)];
            rng.fill_bytes(&mut bytes);
            let len = bytes.len() as u32 & !7;
            bytes[0..4].copy_from_slice(&len.to_le_bytes());
            bytes[12..16].fill(0);
            (bytes, false)
        }
        2 => (corpus[rng.gen_range(0..corpus.len())].clone(), true),
        _ => {
            let mut bytes = corpus[rng.gen_range(0..corpus.len())].clone();
            for _ in 0..rng.gen_range(1..4) {
                mutate(rng, &mut bytes, corpus);
            }
            (bytes, false)
        }
    }
}

fn mutate(rng: &mut StdRng, bytes: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    if bytes.is_empty() {
        bytes.push(rng.gen());
        return;
    }
    let at = rng.gen_range(0..bytes.len());
    match rng.gen_range(0..8) {
        0 => bytes[at] ^= 1 << rng.gen_range(0..8),
        1 => bytes[at] = rng.gen(),
        2 => bytes.truncate(at),
        3 => bytes.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>())),
        4 => {
            // Overwrite a header field with an interesting value.
            let field = [0usize, 4, 6, 12, 14, 16, 20][rng.gen_range(0..7)];
            let value: u32 =
                [0, 1, 7, 8, 24, 25, u32::MAX, rng.gen(), bytes.len() as u32][rng.gen_range(0..9)];
            if bytes.len() >= field + 4 {
                bytes[field..field + 4].copy_from_slice(&value.to_le_bytes());
            }
        }
        5 => {
            // Splice: our head, another frame's tail.
            let other = &corpus[rng.gen_range(0..corpus.len())];
            let cut = rng.gen_range(0..other.len());
            bytes.truncate(at);
            bytes.extend_from_slice(&other[cut..]);
        }
        6 => {
            // Flip a meta byte and fix the CRC, so the damage reaches rkyv.
            if bytes.len() > 24 {
                let meta_len = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
                if meta_len > 0 && 24 + meta_len <= bytes.len() {
                    let i = 24 + rng.gen_range(0..meta_len);
                    bytes[i] = rng.gen();
                    let crc = crc32c::crc32c(&bytes[24..24 + meta_len]);
                    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
                }
            }
        }
        _ => {
            // Damage the payload only (batches carry their own CRC).
            let len = bytes.len();
            bytes[len - 1 - at % len.min(64)] ^= 0x55;
        }
    }
}

/// The stream decoder over `bytes` in random chunks: the first frame or error.
/// Every time it asks for more (returns `None`), the bytes fed so far must
/// be a valid prefix ([`missing_after_valid_prefix`]).
fn stream_decode(rng: &mut StdRng, bytes: &[u8], frame_len_max: usize) -> Result<Option<Frame>, FrameError> {
    let mut decoder = FrameDecoder::new(frame_len_max);
    let mut fed = 0;
    while fed < bytes.len() {
        let take = rng.gen_range(1..=(bytes.len() - fed).min(97));
        let mut input = &bytes[fed..fed + take];
        fed += take;
        if let Some(frame) = decoder.decode(&mut input)? {
            return Ok(Some(frame));
        }
        assert!(input.is_empty(), "decoder returned None with input left");
        if let Err(why) = missing_after_valid_prefix(&bytes[..fed], frame_len_max) {
            panic!("the stream decoder asked for more after {fed} bytes that are no valid prefix: {why}");
        }
    }
    Ok(None)
}

/// How many bytes are missing when `bytes` is a valid prefix of a frame
/// under `frame_len_max`, or why it is not one. The rules are restated
/// from the layout table in `protocol/src/frame.rs`, not taken from the
/// decoder, so a decoder that asks for more bytes after a header it should
/// have rejected is caught. Below 24 bytes only the header's own length is
/// missing (the decoder judges the header whole); from 24 bytes on every
/// header field must be valid and the frame must announce more bytes than
/// are there. (The meta CRC and padding can only be judged once the frame
/// is complete, which is when the decoder checks them.)
fn missing_after_valid_prefix(bytes: &[u8], frame_len_max: usize) -> Result<usize, String> {
    const HEADER: usize = 24;
    if bytes.len() < HEADER {
        return Ok(HEADER - bytes.len());
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let (frame_len, flags, reserved, meta_len) = (u32_at(0), u16_at(12), u16_at(14), u32_at(16));
    let cap = frame_len_max.min(FRAME_LEN_MAX);
    let padded_meta = meta_len.div_ceil(8) * 8;
    let broken = [
        (frame_len < HEADER, "frame_len under the header length"),
        (frame_len > cap, "frame_len over the cap"),
        (frame_len % 8 != 0, "frame_len not a multiple of 8"),
        (flags & !1 != 0, "a reserved flag bit set"),
        (reserved != 0, "reserved field not zero"),
        (meta_len > META_LEN_MAX, "meta_len over its cap"),
        (
            HEADER + padded_meta > frame_len,
            "padded meta longer than the frame",
        ),
        (bytes.len() >= frame_len, "the frame is already complete"),
    ];
    match broken.iter().find(|(bad, _)| *bad) {
        Some((_, why)) => Err(format!(
            "{why} (frame_len {frame_len}, meta_len {meta_len}, {} bytes)",
            bytes.len()
        )),
        None => Ok(frame_len - bytes.len()),
    }
}

#[derive(Default, Debug)]
struct Tally {
    frames: u64,
    need_more: u64,
    /// `NeedMore` with the whole header there (so the header was judged).
    need_more_after_header: u64,
    /// Cuts of unmutated frames, each of which must ask for more.
    valid_prefixes: u64,
    frame_errors: std::collections::BTreeMap<String, u64>,
    meta_ok: u64,
    meta_errors: u64,
    batches_ok: u64,
    batch_errors: u64,
}

/// Checks what an accepted frame contains; counts, never panics on bad content.
fn inspect(frame: &Frame, consumed: usize, tally: &mut Tally) {
    let h = frame.header();
    assert_eq!(consumed, h.frame_len as usize);
    assert_eq!(frame.as_bytes().len(), h.frame_len as usize);
    assert_eq!(frame.meta().len(), h.meta_len as usize);
    assert_eq!(frame.meta().as_ptr() as usize % 8, 0, "meta is 8-aligned");
    assert_eq!(frame.payload().as_ptr() as usize % 8, 0, "payload is 8-aligned");
    match validate_any(frame) {
        Ok(key) => {
            tally.meta_ok += 1;
            check_payload(frame, key, tally);
        }
        Err(
            ProtocolError::BadMeta { .. }
            | ProtocolError::UnexpectedFrame { .. }
            | ProtocolError::UnsupportedVersion { .. }
            | ProtocolError::Broker { .. },
        ) => tally.meta_errors += 1,
        Err(other) => panic!("untyped meta reject: {other:?}"),
    }
}

fn check_payload(frame: &Frame, key: ApiKey, tally: &mut Tally) {
    let lens: Vec<u32> = match key {
        ApiKey::Produce if !frame.header().is_response() => {
            let v = codec::view::<ProduceRequest>(frame).unwrap();
            v.partitions
                .iter()
                .flat_map(|p| p.batch_lens.iter().map(|l| l.to_native()))
                .collect()
        }
        ApiKey::Fetch if frame.header().is_response() => {
            let v = codec::view::<FetchResponse>(frame).unwrap();
            v.partitions
                .iter()
                .flat_map(|p| p.batch_lens.iter().map(|l| l.to_native()))
                .collect()
        }
        _ => return,
    };
    let Ok(batches) = split_payload(frame.payload(), lens) else {
        tally.batch_errors += 1;
        return;
    };
    for b in batches {
        match batch::validate(b, &BatchLimits::default()) {
            Ok(_) => tally.batches_ok += 1,
            Err(_) => tally.batch_errors += 1,
        }
    }
}

fn run_one(rng: &mut StdRng, bytes: &[u8], pristine: bool, tally: &mut Tally) {
    let frame_len_max = if rng.gen_bool(0.1) { 256 } else { FRAME_LEN_MAX };
    if pristine && frame_len_max == FRAME_LEN_MAX {
        // The other direction: every cut of a valid frame is a valid prefix,
        // and the decoder must ask for exactly the missing bytes.
        let cut = rng.gen_range(0..bytes.len());
        let missing = if cut < 24 { 24 - cut } else { bytes.len() - cut };
        match decode_frame(&bytes[..cut], frame_len_max) {
            Decoded::NeedMore(n) => assert_eq!(n, missing, "a valid frame cut at {cut}"),
            other => panic!("a valid frame cut at {cut} of {} bytes: {other:?}", bytes.len()),
        }
        tally.valid_prefixes += 1;
    }
    let oneshot = decode_frame(bytes, frame_len_max);
    let streamed = stream_decode(rng, bytes, frame_len_max);
    match (&oneshot, &streamed) {
        (Decoded::Frame { frame, consumed }, Ok(Some(s))) => {
            assert_eq!(frame.as_bytes(), s.as_bytes(), "decoders disagree on the frame");
            tally.frames += 1;
            inspect(frame, *consumed, tally);
        }
        (Decoded::NeedMore(n), Ok(None)) => {
            assert!(*n > 0, "NeedMore(0)");
            assert!(!pristine, "an unmutated frame needs more bytes");
            match missing_after_valid_prefix(bytes, frame_len_max) {
                Ok(missing) => assert_eq!(*n, missing, "NeedMore names the bytes missing"),
                Err(why) => panic!(
                    "NeedMore({n}) for {} bytes that are no valid prefix: {why}",
                    bytes.len()
                ),
            }
            tally.need_more += 1;
            tally.need_more_after_header += u64::from(bytes.len() >= 24);
        }
        (Decoded::Invalid(a), Err(b)) => {
            assert_eq!(a, b, "decoders disagree on the error");
            assert!(
                !pristine || frame_len_max < FRAME_LEN_MAX,
                "an unmutated frame was rejected: {a}"
            );
            *tally.frame_errors.entry(error_kind(a)).or_default() += 1;
        }
        _ => panic!("decoders disagree: one-shot {oneshot:?}, stream {streamed:?}"),
    }
}

fn error_kind(e: &FrameError) -> String {
    format!("{e:?}")
        .split([' ', '{', '('])
        .next()
        .unwrap_or("")
        .to_string()
}

/// At least a million random and mutated frames: no panic, typed rejects,
/// both decoders agree.
#[test]
fn million_mutated_frames() {
    let seed: u64 = std::env::var("SHOAL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let count: u64 = std::env::var("SHOAL_FUZZ_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    println!("frame fuzz: seed {seed} (SHOAL_FUZZ_SEED), {count} inputs (SHOAL_FUZZ_FRAMES)");
    let mut rng = StdRng::seed_from_u64(seed);
    let corpus = corpus();
    let mut tally = Tally::default();
    for _ in 0..count {
        let (bytes, pristine) = generate(&mut rng, &corpus);
        run_one(&mut rng, &bytes, pristine, &mut tally);
    }
    println!("frame fuzz: {tally:#?}");
    assert!(tally.frames > 0 && tally.meta_ok > 0, "the corpus decodes");
    assert!(
        tally.need_more_after_header > 0 && tally.valid_prefixes > 0,
        "NeedMore was judged on whole headers and on cuts of valid frames"
    );
    assert!(tally.meta_errors > 0, "meta damage reached validated access");
    assert!(
        tally.batch_errors > 0 && tally.batches_ok > 0,
        "payload damage reached batch validation"
    );
    assert!(
        tally.frame_errors.len() >= 6,
        "many reject classes seen: {:?}",
        tally.frame_errors
    );
}
