//! libFuzzer target for the frame decoder and everything a frame leads to.
//!
//! The first input byte picks the stream decoder's chunk size and the frame
//! cap; the rest is the byte stream. Every frame either decoder accepts has
//! its meta validated (rkyv `access` for its message type) and, for produce
//! requests and fetch responses, its payload split and every batch
//! validated. The target checks that the one-shot and stream decoders agree;
//! any panic or disagreement is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_protocol::batch::{self, BatchLimits};
use shoal_protocol::codec::{self, split_payload, validate_any};
use shoal_protocol::frame::{decode_frame, Decoded, Frame, FrameDecoder, FRAME_LEN_MAX};
use shoal_protocol::messages::fetch::FetchResponse;
use shoal_protocol::messages::produce::ProduceRequest;
use shoal_protocol::ApiKey;

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control & 0x3f) + 1;
    let frame_len_max = if control & 0x40 != 0 { 512 } else { FRAME_LEN_MAX };

    let mut decoder = FrameDecoder::new(frame_len_max);
    let mut streamed = Vec::new();
    let mut stream_error = None;
    'outer: for piece in stream.chunks(chunk) {
        let mut input = piece;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => streamed.push(frame),
                Ok(None) => break,
                Err(e) => {
                    stream_error = Some(e);
                    break 'outer;
                }
            }
        }
    }

    let mut rest = stream;
    let mut oneshot = Vec::new();
    let oneshot_error = loop {
        match decode_frame(rest, frame_len_max) {
            Decoded::Frame { frame, consumed } => {
                rest = &rest[consumed..];
                oneshot.push(frame);
            }
            Decoded::NeedMore(n) => {
                assert!(n > 0);
                break None;
            }
            Decoded::Invalid(e) => break Some(e),
        }
    };
    assert_eq!(stream_error, oneshot_error, "decoders disagree on the error");
    assert_eq!(
        streamed.len(),
        oneshot.len(),
        "decoders disagree on the frame count"
    );
    for (a, b) in streamed.iter().zip(&oneshot) {
        assert_eq!(a.as_bytes(), b.as_bytes());
        inspect(a);
    }
});

fn inspect(frame: &Frame) {
    let Ok(key) = validate_any(frame) else {
        return;
    };
    let lens: Vec<u32> = match (key, frame.header().is_response()) {
        (ApiKey::Produce, false) => codec::view::<ProduceRequest>(frame)
            .map(|v| {
                v.partitions
                    .iter()
                    .flat_map(|p| p.batch_lens.iter().map(|l| l.to_native()))
                    .collect()
            })
            .unwrap_or_default(),
        (ApiKey::Fetch, true) => codec::view::<FetchResponse>(frame)
            .map(|v| {
                v.partitions
                    .iter()
                    .flat_map(|p| p.batch_lens.iter().map(|l| l.to_native()))
                    .collect()
            })
            .unwrap_or_default(),
        _ => return,
    };
    if let Ok(batches) = split_payload(frame.payload(), lens) {
        for b in batches {
            let _ = batch::validate(b, &BatchLimits::default());
        }
    }
}
