//! The compressed record sets of Kafka batches: gzip, snappy, lz4 and zstd,
//! each decompressed under a cap on its output.
//!
//! A Kafka batch does not state its decompressed size, so every codec runs
//! as a stream into a buffer that grows only as output is actually produced,
//! and stops with [`KafkaError::BatchTooLarge`] one byte past the cap. The
//! buffer starts no larger than a small multiple of the input. The codecs'
//! own working memory is bounded too: gzip's window is 32 KiB, lz4 frames'
//! blocks at most 4 MiB, snappy blocks state their length (checked against
//! the cap before each is decompressed), and zstd's window is limited to the
//! larger of the cap and 8 MiB (see [`zstd_window_log`]).
//!
//! Formats, as Kafka clients write them:
//! - gzip: RFC 1952 members (concatenated members are accepted);
//! - snappy: the Java client's xerial framing (`\x82SNAPPY\0`, version,
//!   compatible version, then big-endian length-prefixed raw blocks), or one
//!   raw snappy block (older librdkafka);
//! - lz4: the LZ4 frame format (RecordBatch v2 always has the correct header
//!   checksum, unlike the magic-0 era);
//! - zstd: zstd frames.

use std::io::Read;

use super::error::KafkaError;

/// Kafka's compression codecs (batch attributes bits 0–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KafkaCompression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl KafkaCompression {
    pub fn from_attributes(attributes: i16) -> Result<Self, KafkaError> {
        Ok(match attributes & 0b111 {
            0 => KafkaCompression::None,
            1 => KafkaCompression::Gzip,
            2 => KafkaCompression::Snappy,
            3 => KafkaCompression::Lz4,
            4 => KafkaCompression::Zstd,
            other => return Err(KafkaError::UnsupportedCompression(other as u8)),
        })
    }
}

/// The xerial snappy stream header: magic, then version 1 and compatible
/// version 1 as big-endian i32s (readers check only the magic).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;
/// The output buffer starts at most this many times the input (and never
/// over the cap); beyond that it grows as output arrives.
const INITIAL_RATIO: usize = 4;
/// zstd's largest window for a decoder that sets no limit (2^27).
const ZSTD_WINDOW_LOG_LIMIT: u32 = 27;
/// The window every zstd level up to 19 may use when the compressor does
/// not know the input size (a streaming producer, like the Java client's):
/// always allowed, whatever the cap, so small batches from such producers
/// are never refused for their window.
const ZSTD_WINDOW_LOG_FLOOR: u32 = 23;

/// Decompresses `data` compressed with `codec`, refusing output over `max`
/// bytes.
pub fn decompress(codec: KafkaCompression, data: &[u8], max: usize) -> Result<Vec<u8>, KafkaError> {
    match codec {
        KafkaCompression::None => Ok(data.to_vec()),
        KafkaCompression::Gzip => read_capped(flate2::read::MultiGzDecoder::new(data), data.len(), max),
        KafkaCompression::Snappy => snappy(data, max),
        KafkaCompression::Lz4 => read_capped(lz4_flex::frame::FrameDecoder::new(data), data.len(), max),
        KafkaCompression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(decompress_error)?;
            decoder
                .window_log_max(zstd_window_log(max))
                .map_err(decompress_error)?;
            read_capped(decoder, data.len(), max)
        }
    }
}

/// Compresses `data` with `codec` as Kafka clients do (tests and any later
/// compressed fetch path).
pub fn compress(codec: KafkaCompression, data: &[u8]) -> Result<Vec<u8>, KafkaError> {
    use std::io::Write;
    let encode_error = |e: std::io::Error| KafkaError::Encode(e.to_string());
    Ok(match codec {
        KafkaCompression::None => data.to_vec(),
        KafkaCompression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).map_err(encode_error)?;
            e.finish().map_err(encode_error)?
        }
        KafkaCompression::Snappy => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(32 << 10) {
                let compressed = encoder
                    .compress_vec(block)
                    .map_err(|e| KafkaError::Encode(e.to_string()))?;
                out.extend_from_slice(&(compressed.len() as i32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            out
        }
        KafkaCompression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(data).map_err(encode_error)?;
            e.finish().map_err(|e| KafkaError::Encode(e.to_string()))?
        }
        KafkaCompression::Zstd => zstd::bulk::compress(data, 3).map_err(encode_error)?,
    })
}

fn decompress_error(e: impl std::fmt::Display) -> KafkaError {
    KafkaError::Decompress(e.to_string())
}

fn too_large(len: usize, max: usize) -> KafkaError {
    KafkaError::BatchTooLarge {
        what: "decompressed records",
        len,
        max,
    }
}

/// The zstd window allowed for output of at most `max` bytes: the next
/// power of two of the cap (a larger window is never needed), at least the
/// 8 MiB streaming producers may use, at most zstd's usual limit. Frames
/// from "ultra" levels (20–22) with a window over both are refused.
fn zstd_window_log(max: usize) -> u32 {
    let log = usize::BITS - max.max(1).saturating_sub(1).leading_zeros();
    log.clamp(ZSTD_WINDOW_LOG_FLOOR, ZSTD_WINDOW_LOG_LIMIT)
}

/// Reads `reader` to its end into a buffer that grows with the output,
/// refusing more than `max` bytes.
fn read_capped(reader: impl Read, input_len: usize, max: usize) -> Result<Vec<u8>, KafkaError> {
    let mut out = Vec::with_capacity(input_len.saturating_mul(INITIAL_RATIO).min(max));
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(decompress_error)?;
    if out.len() > max {
        return Err(too_large(out.len(), max));
    }
    Ok(out)
}

/// Xerial-framed or raw snappy. Every block states its decompressed length,
/// which is checked against what is left of the cap before it is decoded.
fn snappy(data: &[u8], max: usize) -> Result<Vec<u8>, KafkaError> {
    let mut decoder = snap::raw::Decoder::new();
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        append_snappy_block(&mut decoder, data, &mut out, max)?;
        return Ok(out);
    }
    if data.len() < XERIAL_HEADER_LEN {
        return Err(KafkaError::Decompress("snappy: truncated xerial header".into()));
    }
    let mut rest = &data[XERIAL_HEADER_LEN..];
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(KafkaError::Decompress("snappy: truncated block length".into()));
        };
        let len = i32::from_be_bytes(*len);
        let len = usize::try_from(len)
            .map_err(|_| KafkaError::Decompress("snappy: negative block length".into()))?;
        if len > tail.len() {
            return Err(KafkaError::Decompress("snappy: block runs past the end".into()));
        }
        let (block, tail) = tail.split_at(len);
        append_snappy_block(&mut decoder, block, &mut out, max)?;
        rest = tail;
    }
    Ok(out)
}

fn append_snappy_block(
    decoder: &mut snap::raw::Decoder,
    block: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), KafkaError> {
    let len = snap::raw::decompress_len(block).map_err(|e| decompress_error(format!("snappy: {e}")))?;
    let end = out.len().saturating_add(len);
    if end > max {
        return Err(too_large(end, max));
    }
    let start = out.len();
    out.resize(end, 0);
    let written = decoder
        .decompress(block, &mut out[start..])
        .map_err(|e| decompress_error(format!("snappy: {e}")))?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    const CODECS: [KafkaCompression; 5] = [
        KafkaCompression::None,
        KafkaCompression::Gzip,
        KafkaCompression::Snappy,
        KafkaCompression::Lz4,
        KafkaCompression::Zstd,
    ];

    fn sample() -> Vec<u8> {
        (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect()
    }

    /// Every codec round-trips, including data longer than one snappy block.
    #[test]
    fn round_trip() {
        let data = sample();
        for c in CODECS {
            let packed = compress(c, &data).unwrap();
            assert_eq!(decompress(c, &packed, data.len()).unwrap(), data, "{c:?}");
        }
    }

    /// One byte over the cap is refused, for every compressed codec, and a
    /// bomb (16 MiB of zeros) under a 1 MiB cap stops at the cap.
    #[test]
    fn cap_enforced() {
        let data = sample();
        let bomb = vec![0u8; 16 << 20];
        for c in &CODECS[1..] {
            let packed = compress(*c, &data).unwrap();
            let err = decompress(*c, &packed, data.len() - 1).unwrap_err();
            assert!(matches!(err, KafkaError::BatchTooLarge { .. }), "{c:?}: {err}");
            let packed = compress(*c, &bomb).unwrap();
            assert!(packed.len() < 1 << 20, "{c:?} compresses zeros");
            let err = decompress(*c, &packed, 1 << 20).unwrap_err();
            // zstd may refuse the bomb earlier, for its 16 MiB window.
            let window = matches!(&err, KafkaError::Decompress(m) if m.contains("memory"));
            assert!(
                matches!(err, KafkaError::BatchTooLarge { .. }) || window,
                "{c:?}: {err}"
            );
        }
    }

    /// A raw snappy block (no xerial framing) is accepted; a raw block
    /// declaring 4 GiB is refused before anything is allocated for it.
    #[test]
    fn raw_snappy() {
        let data = sample();
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            decompress(KafkaCompression::Snappy, &raw, data.len()).unwrap(),
            data
        );
        let hostile = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let err = decompress(KafkaCompression::Snappy, &hostile, 1 << 20).unwrap_err();
        assert!(
            matches!(err, KafkaError::BatchTooLarge { .. } | KafkaError::Decompress(_)),
            "{err}"
        );
    }

    /// The zstd window limit follows the cap between its floor and zstd's
    /// limit, and a streaming frame (no content size, level 3's 2 MiB
    /// window) of a small batch passes a small cap.
    #[test]
    fn zstd_window() {
        assert_eq!(zstd_window_log(1 << 20), 23);
        assert_eq!(zstd_window_log((1 << 24) + 1), 25);
        assert_eq!(zstd_window_log(1), 23);
        assert_eq!(zstd_window_log(usize::MAX), 27);
        let data = vec![5u8; 10_000];
        let mut streamed = Vec::new();
        {
            use std::io::Write;
            let mut e = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap();
        }
        assert_eq!(
            decompress(KafkaCompression::Zstd, &streamed, 16 << 10).unwrap(),
            data
        );
    }

    quickcheck! {
        /// Random bytes under any codec never panic.
        fn never_panics(data: Vec<u8>, codec: u8) -> bool {
            let c = CODECS[usize::from(codec) % CODECS.len()];
            let _ = decompress(c, &data, 1 << 16);
            let mut framed = XERIAL_MAGIC.to_vec();
            framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
            framed.extend_from_slice(&data);
            let _ = decompress(KafkaCompression::Snappy, &framed, 1 << 16);
            true
        }
    }
}
