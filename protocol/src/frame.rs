//! Framing: how requests and responses are cut out of a byte stream.
//!
//! # Layout
//!
//! All integers are little-endian. Every frame starts with a fixed
//! [`FRAME_HEADER_LEN`] = 24 byte header:
//!
//! | off | len | field            | notes                                                         |
//! |----:|----:|------------------|---------------------------------------------------------------|
//! |   0 |   4 | `frame_len`      | total frame bytes including this header; a multiple of 8,     |
//! |     |     |                  | at least 24, at most the reader's cap (≤ [`FRAME_LEN_MAX`])   |
//! |   4 |   2 | `api_key`        | which request/response kind ([`crate::api::ApiKey`])          |
//! |   6 |   2 | `api_version`    | version of that API's meta layout                             |
//! |   8 |   4 | `correlation_id` | chosen by the client, echoed in the response                  |
//! |  12 |   2 | `flags`          | bit 0 = response ([`FLAG_RESPONSE`]); other bits must be 0    |
//! |  14 |   2 | reserved         | must be 0                                                     |
//! |  16 |   4 | `meta_len`       | length of the rkyv meta section, before padding               |
//! |  20 |   4 | `crc32c`         | CRC-32C (Castagnoli) of the `meta_len` meta bytes             |
//! |  24 |   … | meta             | rkyv archive of the message struct, zero-padded to a multiple |
//! |     |     |                  | of 8                                                          |
//! |   … |   … | payload          | the rest of the frame: record batches laid end to end         |
//!
//! The payload carries raw record batches (see [`crate::batch`]; each is
//! 8-aligned and has its own CRC), so batch bytes are never re-encoded: a
//! producer's batches travel as they were built, and the broker answers a
//! fetch by writing a header and meta followed by its cached batch bytes.
//! The meta lists each batch's length, so the payload needs no framing of its
//! own. Because the header is 24 bytes, the meta is padded to 8 and every
//! batch is a multiple of 8 long, a frame read into an 8-aligned buffer has an
//! 8-aligned meta and 8-aligned batches: both can be read in place.
//!
//! # Decoding untrusted bytes
//!
//! [`FrameDecoder`] is sans-IO: bytes in, frames out. It parses the 24-byte
//! header first and checks every header field, the length cap first of all,
//! before it allocates anything for the body; the body buffer then grows only
//! as bytes actually arrive, so a peer that announces a large frame and sends
//! nothing costs nothing (a reader that has reserved memory for the whole
//! frame asks for its buffer at once with [`FrameDecoder::reserve_pending`]
//! and can then read the rest of the body straight into it, see
//! [`FrameDecoder::body_spare`]). A complete frame is in a 16-aligned buffer
//! of exactly `frame_len` bytes; the meta CRC and the zero padding are
//! checked before the frame is handed out. The buffer is a `BytesMut`, so a
//! broker can hand the payload's batches on without copying them
//! ([`Frame::into_payload`]). The meta itself is read only through
//! rkyv's validated `access` (see [`crate::codec`]). The decoder never
//! panics: every reject is a [`FrameError`], after which the stream is
//! unusable (there is no way to find the next frame boundary) and the
//! connection should be closed, after an error reply where possible.

use bytes::{Buf, BytesMut};
use rkyv::util::AlignedVec;

use crate::batch::BATCH_LEN_MAX;

/// Size of the fixed frame header in bytes.
pub const FRAME_HEADER_LEN: usize = 24;
/// Alignment of the meta section and of the payload within a frame.
pub const FRAME_ALIGN: usize = 8;
/// Absolute cap on one frame: room for a maximal batch plus a generous meta
/// section. Readers may configure a smaller cap, never a larger one.
pub const FRAME_LEN_MAX: usize = BATCH_LEN_MAX + META_LEN_MAX;
/// Absolute cap on the meta section (stats of a group with thousands of
/// partitions, or a page of quarantine entries, stays well under it).
pub const META_LEN_MAX: usize = 8 << 20;
/// Flag bit 0: the frame is a response (clear for requests).
pub const FLAG_RESPONSE: u16 = 1;
/// The flag bits this version defines; any other set bit is rejected.
pub const FLAGS_KNOWN: u16 = FLAG_RESPONSE;
/// The body buffer starts at most this large and grows as bytes arrive.
const BODY_INITIAL_CAPACITY_MAX: usize = 64 << 10;
/// How much of a reserved frame's buffer [`FrameDecoder::body_spare`]
/// offers for one read.
const SPARE_STEP: usize = 256 << 10;
/// Alignment of the start of every frame buffer.
const BUFFER_ALIGN: usize = 16;

/// An empty buffer of at least `capacity` bytes whose start is
/// [`BUFFER_ALIGN`]-aligned; it stays aligned while it is filled within
/// that capacity (never grow it past it: [`grow_aligned`]).
fn aligned_buffer(capacity: usize) -> BytesMut {
    let mut bytes = BytesMut::with_capacity(capacity + BUFFER_ALIGN - 1);
    let pad = (BUFFER_ALIGN - bytes.as_ptr().addr() % BUFFER_ALIGN) % BUFFER_ALIGN;
    bytes.resize(pad, 0);
    bytes.advance(pad);
    bytes
}

/// Makes room for `additional` more bytes in an aligned buffer, moving its
/// contents into a new aligned one (at least twice as large, at most
/// `limit`) when its capacity is short.
fn grow_aligned(bytes: &mut BytesMut, additional: usize, limit: usize) {
    let need = bytes.len() + additional;
    if need <= bytes.capacity() {
        return;
    }
    let mut grown = aligned_buffer(need.max(bytes.capacity() * 2).min(limit.max(need)));
    grown.extend_from_slice(bytes);
    *bytes = grown;
}

fn is_aligned(bytes: &[u8]) -> bool {
    bytes.as_ptr().addr() % BUFFER_ALIGN == 0
}

/// Why bytes are not a valid frame. Every variant is terminal for the
/// connection: the stream cannot be resynchronised after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {len} is shorter than the {FRAME_HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("frame length {len} is over the limit {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame length {len} is not a multiple of {FRAME_ALIGN}")]
    Misaligned { len: usize },
    #[error("frame flags {flags:#06x} set reserved bits")]
    ReservedFlags { flags: u16 },
    #[error("frame reserved field is {value:#06x}, must be 0")]
    ReservedNotZero { value: u16 },
    #[error("meta length {meta_len} is over the limit {max}")]
    MetaTooLarge { meta_len: usize, max: usize },
    #[error("meta length {meta_len} (padded) does not fit frame length {frame_len}")]
    MetaOverflow { meta_len: usize, frame_len: usize },
    #[error("meta CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("meta padding byte at {at} is not zero")]
    PaddingNotZero { at: usize },
}

/// Rounds `len` up to the frame alignment.
pub fn padded_len(len: usize) -> usize {
    len.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// The parsed fixed header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub frame_len: u32,
    pub api_key: u16,
    pub api_version: u16,
    pub correlation_id: u32,
    pub flags: u16,
    pub reserved: u16,
    pub meta_len: u32,
    pub crc32c: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl FrameHeader {
    /// Reads the header fields; checks nothing (see [`FrameHeader::check`]).
    pub fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            frame_len: u32_at(bytes, 0),
            api_key: u16_at(bytes, 4),
            api_version: u16_at(bytes, 6),
            correlation_id: u32_at(bytes, 8),
            flags: u16_at(bytes, 12),
            reserved: u16_at(bytes, 14),
            meta_len: u32_at(bytes, 16),
            crc32c: u32_at(bytes, 20),
        }
    }

    /// The header's 24 bytes.
    pub fn to_bytes(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut out = [0u8; FRAME_HEADER_LEN];
        out[0..4].copy_from_slice(&self.frame_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.api_key.to_le_bytes());
        out[6..8].copy_from_slice(&self.api_version.to_le_bytes());
        out[8..12].copy_from_slice(&self.correlation_id.to_le_bytes());
        out[12..14].copy_from_slice(&self.flags.to_le_bytes());
        out[14..16].copy_from_slice(&self.reserved.to_le_bytes());
        out[16..20].copy_from_slice(&self.meta_len.to_le_bytes());
        out[20..24].copy_from_slice(&self.crc32c.to_le_bytes());
        out
    }

    /// Checks every header field against the format and `frame_len_max`.
    /// Runs before anything is allocated for the body.
    pub fn check(&self, frame_len_max: usize) -> Result<(), FrameError> {
        let len = self.frame_len as usize;
        if len < FRAME_HEADER_LEN {
            return Err(FrameError::TooShort { len });
        }
        let max = frame_len_max.min(FRAME_LEN_MAX);
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        if len % FRAME_ALIGN != 0 {
            return Err(FrameError::Misaligned { len });
        }
        if self.flags & !FLAGS_KNOWN != 0 {
            return Err(FrameError::ReservedFlags { flags: self.flags });
        }
        if self.reserved != 0 {
            return Err(FrameError::ReservedNotZero { value: self.reserved });
        }
        let meta_len = self.meta_len as usize;
        if meta_len > META_LEN_MAX {
            return Err(FrameError::MetaTooLarge {
                meta_len,
                max: META_LEN_MAX,
            });
        }
        if FRAME_HEADER_LEN + padded_len(meta_len) > len {
            return Err(FrameError::MetaOverflow {
                meta_len,
                frame_len: len,
            });
        }
        Ok(())
    }

    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// Where the payload starts within the frame.
    pub fn payload_start(&self) -> usize {
        FRAME_HEADER_LEN + padded_len(self.meta_len as usize)
    }

    /// Payload length in bytes (valid once [`FrameHeader::check`] passed).
    pub fn payload_len(&self) -> usize {
        (self.frame_len as usize).saturating_sub(self.payload_start())
    }
}

/// One complete, checked frame in a 16-aligned buffer of exactly
/// `frame_len` bytes (header included, so it can be forwarded as is).
#[derive(Debug, Clone)]
pub struct Frame {
    header: FrameHeader,
    bytes: BytesMut,
}

impl Frame {
    pub fn header(&self) -> &FrameHeader {
        &self.header
    }

    /// The meta section, exactly `meta_len` bytes, 8-aligned.
    pub fn meta(&self) -> &[u8] {
        &self.bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + self.header.meta_len as usize]
    }

    /// The payload: record batches laid end to end, 8-aligned.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.header.payload_start()..]
    }

    /// The whole frame, header included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The payload, without copying it: its batches can be cut apart with
    /// `split_to` and handed on as they are.
    pub fn into_payload(self) -> BytesMut {
        let mut bytes = self.bytes;
        bytes.advance(self.header.payload_start());
        bytes
    }

    /// Checks a complete frame buffer (header already checked) and wraps it.
    fn finish(header: FrameHeader, bytes: BytesMut) -> Result<Frame, FrameError> {
        // Every frame buffer comes from `aligned_buffer` and is never grown
        // past its capacity (`grow_aligned` moves it to a new aligned one).
        debug_assert!(is_aligned(&bytes), "frame buffers start 16-aligned");
        let meta_end = FRAME_HEADER_LEN + header.meta_len as usize;
        let actual = crc32c::crc32c(&bytes[FRAME_HEADER_LEN..meta_end]);
        if actual != header.crc32c {
            return Err(FrameError::CrcMismatch {
                expected: header.crc32c,
                actual,
            });
        }
        if let Some(at) = bytes[meta_end..header.payload_start()]
            .iter()
            .position(|&b| b != 0)
        {
            return Err(FrameError::PaddingNotZero { at: meta_end + at });
        }
        Ok(Frame { header, bytes })
    }
}

/// The result of [`decode_frame`] on a buffer.
#[derive(Debug)]
pub enum Decoded {
    /// The buffer holds a valid prefix; at least this many more bytes are needed.
    NeedMore(usize),
    /// A complete frame, taken from the first `consumed` bytes of the buffer.
    Frame { frame: Frame, consumed: usize },
    /// The bytes can never become a valid frame.
    Invalid(FrameError),
}

/// Decodes the frame at the start of `buf`, without keeping state: the
/// caller keeps the bytes until a frame completes. Copies the frame into an
/// aligned buffer (exactly `frame_len` bytes).
pub fn decode_frame(buf: &[u8], frame_len_max: usize) -> Decoded {
    let Some(head) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
        return Decoded::NeedMore(FRAME_HEADER_LEN - buf.len());
    };
    let header = FrameHeader::parse(head);
    if let Err(e) = header.check(frame_len_max) {
        return Decoded::Invalid(e);
    }
    let len = header.frame_len as usize;
    if buf.len() < len {
        return Decoded::NeedMore(len - buf.len());
    }
    let mut bytes = aligned_buffer(len);
    bytes.extend_from_slice(&buf[..len]);
    match Frame::finish(header, bytes) {
        Ok(frame) => Decoded::Frame { frame, consumed: len },
        Err(e) => Decoded::Invalid(e),
    }
}

/// Stream decoder: feed it bytes as they arrive, take frames out.
///
/// Keeps at most one partial header (24 bytes) and one partial frame body.
/// After an error it stays failed and returns that error again.
#[derive(Debug)]
pub struct FrameDecoder {
    frame_len_max: usize,
    head: [u8; FRAME_HEADER_LEN],
    head_filled: usize,
    body: Option<Body>,
    failed: Option<FrameError>,
}

/// The frame being assembled.
#[derive(Debug)]
struct Body {
    header: FrameHeader,
    /// The frame's bytes: `filled` received, then (once the reader asked
    /// for [`FrameDecoder::body_spare`]) zeroes up to `frame_len`.
    bytes: BytesMut,
    filled: usize,
    /// The whole frame's buffer is allocated ([`FrameDecoder::reserve_pending`]).
    reserved: bool,
}

impl Body {
    fn len(&self) -> usize {
        self.header.frame_len as usize
    }
}

impl FrameDecoder {
    /// A decoder that rejects frames over `frame_len_max` (clamped to
    /// [`FRAME_LEN_MAX`]).
    pub fn new(frame_len_max: usize) -> Self {
        FrameDecoder {
            frame_len_max: frame_len_max.min(FRAME_LEN_MAX),
            head: [0; FRAME_HEADER_LEN],
            head_filled: 0,
            body: None,
            failed: None,
        }
    }

    /// Bytes buffered for the frame in progress (for in-flight accounting).
    pub fn buffered_len(&self) -> usize {
        match &self.body {
            Some(body) => body.filled,
            None => self.head_filled,
        }
    }

    /// True when no partial frame is buffered (a clean point to close at).
    pub fn is_idle(&self) -> bool {
        self.head_filled == 0 && self.body.is_none()
    }

    /// The announced length of the frame being assembled, once its header
    /// has been read and checked (so a reader can reserve memory for the
    /// whole frame before it takes more of the body).
    pub fn pending_frame_len(&self) -> Option<usize> {
        self.body.as_ref().map(Body::len)
    }

    /// Allocates the rest of the pending frame's buffer at once (exactly its
    /// length), so a large frame is not grown by doubling as it arrives, and
    /// lets the reader read the rest of it in place ([`Self::body_spare`]).
    /// Call only once memory for the whole frame has been reserved.
    pub fn reserve_pending(&mut self) {
        if let Some(body) = self.body.as_mut() {
            let len = body.len();
            let missing = len - body.bytes.len();
            grow_aligned(&mut body.bytes, missing, len);
            body.reserved = true;
        }
    }

    /// Where the rest of a reserved frame's body goes: a reader fills a
    /// prefix of this slice straight from its socket and reports how much
    /// with [`Self::body_filled`], so a large frame is not copied out of a
    /// read buffer. `None` unless a body is pending and reserved.
    pub fn body_spare(&mut self) -> Option<&mut [u8]> {
        if self.failed.is_some() {
            return None;
        }
        let body = self.body.as_mut().filter(|b| b.reserved)?;
        let len = body.len();
        if body.bytes.len() < len && body.bytes.len() - body.filled < SPARE_STEP / 2 {
            // Zeroed a step at a time, as bytes arrive: a peer that stalls
            // mid-frame costs the memory it sent, not its announced length.
            // Within the reserved capacity, so the buffer does not move.
            body.bytes.resize(len.min(body.filled + SPARE_STEP), 0);
        }
        Some(&mut body.bytes[body.filled..])
    }

    /// Counts `n` bytes a reader wrote at the start of [`Self::body_spare`];
    /// returns the frame when that completed it.
    pub fn body_filled(&mut self, n: usize) -> Result<Option<Frame>, FrameError> {
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        body.filled = (body.filled + n).min(body.bytes.len());
        self.take_if_complete()
    }

    /// Consumes bytes from the front of `input` until one frame completes
    /// (returned) or `input` is empty (`Ok(None)`). Call again with the rest
    /// of `input` to get further frames.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.decode_inner(input);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn decode_inner(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        if self.body.is_none() {
            let take = (FRAME_HEADER_LEN - self.head_filled).min(input.len());
            self.head[self.head_filled..self.head_filled + take].copy_from_slice(&input[..take]);
            self.head_filled += take;
            *input = &input[take..];
            if self.head_filled < FRAME_HEADER_LEN {
                return Ok(None);
            }
            let header = FrameHeader::parse(&self.head);
            header.check(self.frame_len_max)?;
            let len = header.frame_len as usize;
            let mut bytes = aligned_buffer(len.min(BODY_INITIAL_CAPACITY_MAX));
            bytes.extend_from_slice(&self.head);
            self.head_filled = 0;
            self.body = Some(Body {
                header,
                bytes,
                filled: FRAME_HEADER_LEN,
                reserved: false,
            });
        }
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        let len = body.len();
        let take = (len - body.filled).min(input.len());
        let at = body.filled;
        if body.bytes.len() >= at + take {
            body.bytes[at..at + take].copy_from_slice(&input[..take]);
        } else {
            grow_aligned(&mut body.bytes, take, len);
            body.bytes.extend_from_slice(&input[..take]);
        }
        body.filled += take;
        *input = &input[take..];
        self.take_if_complete()
    }

    fn take_if_complete(&mut self) -> Result<Option<Frame>, FrameError> {
        match &self.body {
            Some(body) if body.filled == body.len() => {}
            _ => return Ok(None),
        }
        let body = self.body.take().expect("body present");
        let result = Frame::finish(body.header, body.bytes);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result.map(Some)
    }
}

/// Writes a frame header followed by `meta` and its padding into a fresh
/// aligned buffer; the caller sends `payload_len` bytes of payload after it.
pub fn encode_frame_head(
    api_key: u16,
    api_version: u16,
    correlation_id: u32,
    flags: u16,
    meta: &[u8],
    payload_len: usize,
) -> Result<AlignedVec<16>, FrameError> {
    let mut out = AlignedVec::<16>::with_capacity(FRAME_HEADER_LEN + padded_len(meta.len()));
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    out.extend_from_slice(meta);
    finish_frame_head(&mut out, api_key, api_version, correlation_id, flags, payload_len)?;
    Ok(out)
}

/// Completes a buffer that holds 24 placeholder header bytes followed by the
/// meta: pads the meta and fills in the header. Lets the codec archive the
/// meta straight into the frame buffer without a copy.
pub fn finish_frame_head(
    out: &mut AlignedVec<16>,
    api_key: u16,
    api_version: u16,
    correlation_id: u32,
    flags: u16,
    payload_len: usize,
) -> Result<(), FrameError> {
    assert!(
        out.len() >= FRAME_HEADER_LEN,
        "the buffer starts with a header slot"
    );
    let meta_len = out.len() - FRAME_HEADER_LEN;
    let frame_len = FRAME_HEADER_LEN + padded_len(meta_len) + payload_len;
    let header = FrameHeader {
        frame_len: u32::try_from(frame_len).unwrap_or(u32::MAX),
        api_key,
        api_version,
        correlation_id,
        flags,
        reserved: 0,
        meta_len: u32::try_from(meta_len).unwrap_or(u32::MAX),
        crc32c: crc32c::crc32c(&out[FRAME_HEADER_LEN..]),
    };
    header.check(FRAME_LEN_MAX)?;
    out.resize(FRAME_HEADER_LEN + padded_len(meta_len), 0);
    out[..FRAME_HEADER_LEN].copy_from_slice(&header.to_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, TestResult};

    fn frame_bytes(meta: &[u8], payload: &[u8], cid: u32) -> Vec<u8> {
        let head = encode_frame_head(7, 1, cid, FLAG_RESPONSE, meta, payload.len()).expect("encode");
        let mut all = head.to_vec();
        all.extend_from_slice(payload);
        all
    }

    /// Whole frames, fed in arbitrary chunk sizes, decode to the same parts.
    #[test]
    fn stream_decoder_handles_any_split() {
        let meta = b"hello meta";
        let payload = [9u8; 16];
        let mut stream = frame_bytes(meta, &payload, 1);
        stream.extend(frame_bytes(b"", &[], 2));
        for chunk in 1..stream.len() + 1 {
            let mut dec = FrameDecoder::new(FRAME_LEN_MAX);
            let mut frames = Vec::new();
            for piece in stream.chunks(chunk) {
                let mut input = piece;
                while let Some(f) = dec.decode(&mut input).expect("valid") {
                    frames.push(f);
                }
                assert!(input.is_empty());
            }
            assert_eq!(frames.len(), 2, "chunk size {chunk}");
            assert_eq!(frames[0].meta(), meta);
            assert_eq!(frames[0].payload(), &payload);
            assert_eq!(frames[0].header().correlation_id, 1);
            assert!(frames[0].header().is_response());
            assert_eq!(frames[1].meta(), b"");
            assert!(dec.is_idle());
        }
    }

    /// The length cap is enforced from the header alone.
    /// A large frame read the way a broker reads it (header and a first
    /// piece through `decode`, then reserved, the rest straight into
    /// `body_spare` in uneven reads) comes out equal to a plainly decoded
    /// one, 16-aligned, and its payload splits into batches without a copy.
    #[test]
    fn reserved_frame_reads_in_place_and_hands_its_payload_on() {
        let meta = b"meta of a large frame";
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let stream = frame_bytes(meta, &payload, 9);
        for first in [FRAME_HEADER_LEN, 100, 70_000] {
            for step in [1usize, 4_096, 65_536, 1 << 20] {
                let mut dec = FrameDecoder::new(FRAME_LEN_MAX);
                let mut input = &stream[..first];
                assert!(dec.decode(&mut input).expect("valid").is_none());
                assert_eq!(dec.pending_frame_len(), Some(stream.len()));
                assert!(dec.body_spare().is_none(), "not before the reservation");
                dec.reserve_pending();
                let mut at = first;
                let frame = loop {
                    let spare = dec.body_spare().expect("reserved");
                    assert!(
                        !spare.is_empty() && spare.len() <= (stream.len() - at).min(SPARE_STEP),
                        "at {at}"
                    );
                    let n = step.min(spare.len());
                    spare[..n].copy_from_slice(&stream[at..at + n]);
                    at += n;
                    if let Some(f) = dec.body_filled(n).expect("valid") {
                        break f;
                    }
                    assert_eq!(dec.buffered_len(), at);
                };
                assert!(dec.is_idle());
                assert_eq!(frame.as_bytes().as_ptr().addr() % 16, 0);
                assert_eq!(frame.meta(), meta);
                assert_eq!(frame.payload(), &payload[..]);
                let start = frame.payload().as_ptr();
                let batches =
                    crate::codec::split_payload_owned(frame.into_payload(), [8, 299_992]).expect("split");
                assert_eq!(batches[0].as_ptr(), start, "no copy");
                assert_eq!(&batches[1][..], &payload[8..]);
            }
        }
    }

    /// Frames decoded from any chunking start 16-aligned, however the body
    /// buffer grew.
    #[test]
    fn decoded_frames_are_aligned() {
        for len in [0usize, 8, 65_536, 200_000] {
            let stream = frame_bytes(b"m", &vec![3u8; len], 1);
            for chunk in [7usize, 4_096, 65_536] {
                let mut dec = FrameDecoder::new(FRAME_LEN_MAX);
                let mut got = None;
                for piece in stream.chunks(chunk) {
                    let mut input = piece;
                    if let Some(f) = dec.decode(&mut input).expect("valid") {
                        got = Some(f);
                    }
                }
                let frame = got.expect("frame");
                assert_eq!(
                    frame.as_bytes().as_ptr().addr() % 16,
                    0,
                    "len {len} chunk {chunk}"
                );
                assert_eq!(frame.payload().len(), len);
            }
        }
    }

    #[test]
    fn oversized_frame_rejected_before_body() {
        let mut head = FrameHeader {
            frame_len: 1 << 20,
            api_key: 1,
            api_version: 1,
            correlation_id: 0,
            flags: 0,
            reserved: 0,
            meta_len: 0,
            crc32c: 0,
        }
        .to_bytes();
        let mut dec = FrameDecoder::new(4096);
        let mut input: &[u8] = &head;
        assert!(matches!(dec.decode(&mut input), Err(FrameError::TooLarge { .. })));
        head[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_frame(&head, FRAME_LEN_MAX),
            Decoded::Invalid(FrameError::TooLarge { .. })
        ));
    }

    /// A flipped meta byte fails the CRC; a dirty padding byte is rejected.
    #[test]
    fn corruption_detected() {
        let good = frame_bytes(b"abc", &[], 3);
        let mut bad = good.clone();
        bad[FRAME_HEADER_LEN] ^= 1;
        assert!(matches!(
            decode_frame(&bad, FRAME_LEN_MAX),
            Decoded::Invalid(FrameError::CrcMismatch { .. })
        ));
        let mut pad = good.clone();
        pad[FRAME_HEADER_LEN + 5] = 1;
        assert!(matches!(
            decode_frame(&pad, FRAME_LEN_MAX),
            Decoded::Invalid(FrameError::PaddingNotZero { at: 29 })
        ));
        assert!(matches!(
            decode_frame(&good[..10], FRAME_LEN_MAX),
            Decoded::NeedMore(14)
        ));
    }

    quickcheck! {
        fn round_trip(meta: Vec<u8>, payload_words: Vec<u64>, cid: u32, version: u16) -> bool {
            let payload: Vec<u8> = payload_words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let head = encode_frame_head(3, version, cid, 0, &meta, payload.len()).expect("encode");
            let mut all = head.to_vec();
            all.extend_from_slice(&payload);
            match decode_frame(&all, FRAME_LEN_MAX) {
                Decoded::Frame { frame, consumed } => {
                    consumed == all.len()
                        && frame.meta() == meta.as_slice()
                        && frame.payload() == payload.as_slice()
                        && frame.header().correlation_id == cid
                        && frame.header().api_version == version
                        && !frame.header().is_response()
                }
                _ => false,
            }
        }

        fn never_panics(bytes: Vec<u8>) -> TestResult {
            let _ = decode_frame(&bytes, FRAME_LEN_MAX);
            let mut dec = FrameDecoder::new(FRAME_LEN_MAX);
            let mut input: &[u8] = &bytes;
            while let Ok(Some(_)) = dec.decode(&mut input) {}
            TestResult::passed()
        }
    }
}
