//! Kafka request frames in, responses out: sans-IO, with our caps applied
//! before anything is allocated for the peer.
//!
//! # Wire format
//!
//! | bytes | field                                                                      |
//! |------:|----------------------------------------------------------------------------|
//! |     4 | frame length (big-endian i32), bytes after this field                      |
//! |     2 | request api key                                                            |
//! |     2 | request api version                                                        |
//! |     4 | correlation id                                                             |
//! |     … | client id (i16-length string), tagged fields in header v2, then the body   |
//!
//! The request header's version depends on the API and version (v2, with
//! tagged fields, for an API's flexible versions); the response header's
//! too (v1 for flexible versions, except ApiVersions, whose response header
//! is always v0 so that a client can read it before it knows our versions).
//!
//! # Order of checks
//!
//! 1. [`FrameDecoder`]: the length prefix against [`KafkaLimits`] as soon
//!    as it is in (over the largest cap: refused at once), then against the
//!    API's cap (Produce gets the large cap, every other API the small one)
//!    once the api key is in, before the body buffer exists. The buffer then
//!    grows only as bytes arrive (or is allocated whole once the connection
//!    reserved the frame's memory).
//! 2. [`decode_request`]: api key and version against
//!    [`super::supported_apis`]; the header by kafka-protocol (it holds no
//!    arrays); the body's shape by [`super::request_shape`] (every length,
//!    every array element, the element cap); only then the body by
//!    kafka-protocol.
//!
//! A request that fails is a [`Refusal`]: the error, and what to do about
//! the connection. Kafka's own broker closes the connection on a request it
//! cannot parse or does not serve, and clients expect that; the one
//! exception is an ApiVersions request at a version we do not serve, which is
//! answered in v0 with UNSUPPORTED_VERSION and our ranges so that the client
//! can retry at a version we know. Nothing here panics on any input.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;
use shoal_protocol::frame::{FRAME_LEN_MAX, META_LEN_MAX};

use super::error::KafkaError;
use super::request_shape::{check_request_shape, RequestShape};
use super::supported_apis::{api_versions_response, support};

/// api key, api version, correlation id: the fixed part of every request
/// header, and so the shortest frame body that can be answered.
pub const REQUEST_FIXED_HEADER_LEN: usize = 8;
/// Length prefix plus api key: what the decoder needs to choose a frame's
/// cap.
const FRAME_PEEK_LEN: usize = 4 + 2;
/// The body buffer starts at most this large and grows as bytes arrive.
const BODY_INITIAL_CAPACITY_MAX: usize = 64 << 10;

/// The caps a Kafka connection applies before it trusts a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaLimits {
    /// Largest Produce frame: room for one maximal Shoal batch and the
    /// request around it (Kafka's own default, socket.request.max.bytes, is
    /// 100 MiB).
    pub produce_frame_len_max: usize,
    /// Largest frame of any other API.
    pub frame_len_max: usize,
    /// Most array elements one request may hold, all arrays together: with
    /// the frame caps, this bounds the memory a decoded request occupies
    /// (kafka-protocol's element structs are at most a few hundred bytes).
    pub request_elements_max: u32,
}

impl Default for KafkaLimits {
    fn default() -> Self {
        KafkaLimits {
            produce_frame_len_max: FRAME_LEN_MAX,
            frame_len_max: META_LEN_MAX,
            request_elements_max: 100_000,
        }
    }
}

impl KafkaLimits {
    /// The frame cap for requests with wire api key `api_key`.
    pub fn frame_cap(&self, api_key: i16) -> usize {
        if api_key == ApiKey::Produce as i16 {
            self.produce_frame_len_max
        } else {
            self.frame_len_max
        }
    }
}

/// Cuts request frames out of a byte stream. Sans-IO: the connection feeds
/// what it read, the decoder hands out whole frame bodies.
#[derive(Debug)]
pub struct FrameDecoder {
    limits: KafkaLimits,
    /// The current frame so far, length prefix included.
    buf: BytesMut,
    /// Total bytes of the current frame (prefix included), once known.
    frame_len: Option<usize>,
}

impl FrameDecoder {
    pub fn new(limits: KafkaLimits) -> Self {
        FrameDecoder {
            limits,
            buf: BytesMut::new(),
            frame_len: None,
        }
    }

    /// Bytes of a partial frame held (for in-flight accounting).
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// True between frames.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
    }

    /// The whole length (prefix included) of the frame being read, once its
    /// prefix passed the caps; `None` between frames or before that.
    pub fn pending_frame_len(&self) -> Option<usize> {
        self.frame_len
    }

    /// Allocates the rest of the pending frame at once (the caller has
    /// reserved that memory from its budget), so the buffer does not grow
    /// past the frame by doubling as bytes arrive.
    pub fn reserve_pending(&mut self) {
        if let Some(total) = self.frame_len {
            self.buf.reserve(total.saturating_sub(self.buf.len()));
        }
    }

    /// Takes bytes from `input` (advancing it past what was used) until a
    /// frame is complete, and returns its body (the bytes after the length
    /// prefix). `Ok(None)`: all of `input` was taken and more is needed. An
    /// error is terminal: the stream cannot be resynchronised.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Bytes>, KafkaError> {
        if self.frame_len.is_none() {
            let want = FRAME_PEEK_LEN - self.buf.len();
            let take = want.min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            *input = &input[take..];
            let Some(total) = self.check_prefix()? else {
                return Ok(None);
            };
            self.buf.reserve(total.min(BODY_INITIAL_CAPACITY_MAX));
            self.frame_len = Some(total);
        }
        let total = self.frame_len.unwrap_or(FRAME_PEEK_LEN);
        let take = (total - self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.buf.len() < total {
            return Ok(None);
        }
        self.frame_len = None;
        let mut frame = std::mem::take(&mut self.buf).freeze();
        frame.advance(4);
        Ok(Some(frame))
    }

    /// Checks the length prefix against the caps as soon as the bytes it
    /// needs are in: the length alone for the minimum, the api key for the
    /// API's cap. Returns the frame's total length (prefix included) once
    /// both checks passed, `None` while bytes are missing.
    fn check_prefix(&self) -> Result<Option<usize>, KafkaError> {
        let b = &self.buf;
        if b.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if len < REQUEST_FIXED_HEADER_LEN as i32 {
            return Err(KafkaError::FrameTooShort {
                len: i64::from(len),
                min: REQUEST_FIXED_HEADER_LEN,
            });
        }
        // Over every API's cap: refused without waiting for the api key.
        let any_max = self.limits.produce_frame_len_max.max(self.limits.frame_len_max);
        if len as usize > any_max {
            return Err(KafkaError::FrameTooLarge {
                len: len as usize,
                max: any_max,
                api_key: -1,
            });
        }
        if b.len() < FRAME_PEEK_LEN {
            return Ok(None);
        }
        let api_key = i16::from_be_bytes([b[4], b[5]]);
        let len = len as usize;
        let max = self.limits.frame_cap(api_key);
        if len > max {
            return Err(KafkaError::FrameTooLarge { len, max, api_key });
        }
        Ok(Some(4 + len))
    }
}

/// A decoded request, ready for a handler.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaRequest {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub body: RequestKind,
    pub shape: RequestShape,
}

impl KafkaRequest {
    /// What [`encode_response`] needs to answer this request.
    pub fn context(&self) -> ResponseContext {
        ResponseContext {
            api_key: self.api_key,
            api_version: self.api_version,
            correlation_id: self.header.correlation_id,
        }
    }
}

/// Which request a response answers: its API, version and correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseContext {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// A request the front end will not serve, and what to do about it.
#[derive(Debug)]
pub struct Refusal {
    pub error: KafkaError,
    /// The request's correlation id, where the frame was long enough.
    pub correlation_id: Option<i32>,
    /// A whole response frame to send first, if there is one.
    pub reply: Option<BytesMut>,
    /// Close the connection (after sending `reply`).
    pub close: bool,
}

impl Refusal {
    fn close(error: KafkaError, correlation_id: Option<i32>) -> Self {
        Refusal {
            error,
            correlation_id,
            reply: None,
            close: true,
        }
    }
}

/// Decodes one frame body from [`FrameDecoder`] into a request, or says why
/// not. Never panics; allocates nothing sized by the peer before the shape
/// check has passed.
pub fn decode_request(frame: Bytes, limits: &KafkaLimits) -> Result<KafkaRequest, Refusal> {
    if frame.len() < REQUEST_FIXED_HEADER_LEN {
        let error = KafkaError::FrameTooShort {
            len: frame.len() as i64,
            min: REQUEST_FIXED_HEADER_LEN,
        };
        return Err(Refusal::close(error, None));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Some(served) = support(raw_key) else {
        return Err(Refusal::close(
            KafkaError::UnknownApi(raw_key),
            Some(correlation_id),
        ));
    };
    if !served.contains(version) {
        let error = KafkaError::UnsupportedVersion {
            api_key: raw_key,
            version,
            min: served.min,
            max: served.max,
        };
        if served.key == ApiKey::ApiVersions {
            return Err(Refusal {
                reply: Some(api_versions_refusal(correlation_id)),
                error,
                correlation_id: Some(correlation_id),
                close: false,
            });
        }
        return Err(Refusal::close(error, Some(correlation_id)));
    }
    let key = served.key;
    let mut rest = frame;
    let header = RequestHeader::decode(&mut rest, key.request_header_version(version))
        .map_err(|e| Refusal::close(KafkaError::Decode(format!("header: {e}")), Some(correlation_id)))?;
    let shape = check_request_shape(key, version, &rest, limits.request_elements_max)
        .map_err(|e| Refusal::close(e, Some(correlation_id)))?;
    let body = RequestKind::decode(key, &mut rest, version)
        .map_err(|e| Refusal::close(KafkaError::Decode(e.to_string()), Some(correlation_id)))?;
    if !rest.is_empty() {
        // The shape check ended exactly at the last byte; kafka-protocol
        // stopping elsewhere means the two disagree about the schema.
        let error = KafkaError::Decode(format!("{} bytes left after decoding", rest.len()));
        return Err(Refusal::close(error, Some(correlation_id)));
    }
    Ok(KafkaRequest {
        header,
        api_key: key,
        api_version: version,
        body,
        shape,
    })
}

/// The ApiVersions v0 frame answering a version we do not serve.
fn api_versions_refusal(correlation_id: i32) -> BytesMut {
    let context = ResponseContext {
        api_key: ApiKey::ApiVersions,
        api_version: 0,
        correlation_id,
    };
    let response = ResponseKind::ApiVersions(api_versions_response(ResponseError::UnsupportedVersion.code()));
    let mut out = BytesMut::new();
    // Encoding our own fixed table at v0 cannot fail; if it ever did, the
    // empty reply makes the caller close the connection, as for any refusal.
    if encode_response(&context, &response, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Appends one response frame (length prefix, response header at the
/// version the API and version call for, body) to `out`.
pub fn encode_response(
    context: &ResponseContext,
    response: &ResponseKind,
    out: &mut BytesMut,
) -> Result<(), KafkaError> {
    let kind = response_key(response);
    if kind != Some(context.api_key) {
        return Err(KafkaError::Encode(format!(
            "a {kind:?} response cannot answer a {:?} request",
            context.api_key
        )));
    }
    let start = out.len();
    out.reserve(encoded_len_hint(response));
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(context.correlation_id);
    let header_version = context.api_key.response_header_version(context.api_version);
    let encoded = header
        .encode(out, header_version)
        .and_then(|()| response.encode(out, context.api_version));
    if let Err(e) = encoded {
        out.truncate(start);
        return Err(KafkaError::Encode(e.to_string()));
    }
    let len = out.len() - start - 4;
    let Ok(len) = i32::try_from(len) else {
        out.truncate(start);
        return Err(KafkaError::Encode(format!("response of {len} bytes")));
    };
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Room for a response's frame: a fetch response is mostly the record
/// batches it carries, so their length plus the per-partition fields
/// (bounded by [`FETCH_PARTITION_FIELDS_LEN_MAX`]) keeps the buffer from
/// regrowing, and copying megabytes, as kafka-protocol fills it. Other
/// responses are small; the buffer grows for them as it must.
fn encoded_len_hint(response: &ResponseKind) -> usize {
    let ResponseKind::Fetch(fetch) = response else {
        return 0;
    };
    let per_partition: usize = fetch
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| FETCH_PARTITION_FIELDS_LEN_MAX + p.records.as_ref().map_or(0, Bytes::len))
        .sum();
    let per_topic = fetch.responses.len() * FETCH_TOPIC_FIELDS_LEN_MAX;
    FETCH_RESPONSE_FIELDS_LEN_MAX + per_topic + per_partition
}

/// Upper bounds of a fetch response's fixed fields (frame length, header,
/// throttle, error, session, counts and tags), of one topic's (its name,
/// taken as at most 255 bytes: a longer one only makes the buffer grow, and
/// counts) and of one partition's
/// (index, error, offsets, aborted transactions none, preferred replica,
/// records length prefix and tags); generous by a few bytes.
const FETCH_RESPONSE_FIELDS_LEN_MAX: usize = 64;
const FETCH_TOPIC_FIELDS_LEN_MAX: usize = 16 + 2 + 255 + 8;
const FETCH_PARTITION_FIELDS_LEN_MAX: usize = 64;

/// The API a response belongs to, for the APIs this front end serves.
fn response_key(response: &ResponseKind) -> Option<ApiKey> {
    Some(match response {
        ResponseKind::Produce(_) => ApiKey::Produce,
        ResponseKind::Fetch(_) => ApiKey::Fetch,
        ResponseKind::ListOffsets(_) => ApiKey::ListOffsets,
        ResponseKind::Metadata(_) => ApiKey::Metadata,
        ResponseKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        ResponseKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        ResponseKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        ResponseKind::JoinGroup(_) => ApiKey::JoinGroup,
        ResponseKind::Heartbeat(_) => ApiKey::Heartbeat,
        ResponseKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        ResponseKind::SyncGroup(_) => ApiKey::SyncGroup,
        ResponseKind::DescribeGroups(_) => ApiKey::DescribeGroups,
        ResponseKind::ListGroups(_) => ApiKey::ListGroups,
        ResponseKind::ApiVersions(_) => ApiKey::ApiVersions,
        ResponseKind::CreateTopics(_) => ApiKey::CreateTopics,
        ResponseKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        ResponseKind::InitProducerId(_) => ApiKey::InitProducerId,
        ResponseKind::SaslHandshake(_) => ApiKey::SaslHandshake,
        ResponseKind::SaslAuthenticate(_) => ApiKey::SaslAuthenticate,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::kafka::sample_requests::{all_sample_frames, encode_request_frame, sample_request};
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataResponse};

    fn decode_all(limits: KafkaLimits, mut input: &[u8]) -> Vec<Bytes> {
        let mut decoder = FrameDecoder::new(limits);
        let mut out = Vec::new();
        while let Some(frame) = decoder.decode(&mut input).expect("valid stream") {
            out.push(frame);
        }
        assert!(input.is_empty() && decoder.is_idle());
        out
    }

    /// Every served API at every served version, as a client encodes it,
    /// comes out of the stream decoder and the request decoder equal to
    /// what was encoded.
    #[test]
    fn every_sample_round_trips() {
        let limits = KafkaLimits::default();
        for (key, version, frame) in all_sample_frames() {
            let body = decode_all(limits, &frame).pop().expect("one frame");
            let request =
                decode_request(body, &limits).unwrap_or_else(|r| panic!("{key:?} v{version}: {}", r.error));
            assert_eq!(request.api_key, key);
            assert_eq!(request.api_version, version);
            assert_eq!(request.header.correlation_id, 1000 + version as i32);
            assert_eq!(request.body, sample_request(key, version), "{key:?} v{version}");
        }
    }

    /// Frames split at every possible chunk size decode to the same frames.
    #[test]
    fn chunked_stream() {
        let frames = all_sample_frames();
        let stream: Vec<u8> = frames.iter().flat_map(|(_, _, f)| f.iter().copied()).collect();
        let whole = decode_all(KafkaLimits::default(), &stream);
        assert_eq!(whole.len(), frames.len());
        for chunk in [1, 2, 3, 7, 64, 1000] {
            let mut decoder = FrameDecoder::new(KafkaLimits::default());
            let mut got = Vec::new();
            for mut piece in stream.chunks(chunk) {
                while let Some(f) = decoder.decode(&mut piece).unwrap() {
                    got.push(f);
                }
                assert!(piece.is_empty());
            }
            assert_eq!(got, whole, "chunk {chunk}");
        }
    }

    /// A length over the API's cap is refused after six bytes, before the
    /// body is buffered; Produce has the larger cap; short and negative
    /// lengths are refused after four.
    #[test]
    fn frame_caps() {
        let limits = KafkaLimits {
            produce_frame_len_max: 1 << 20,
            frame_len_max: 1 << 10,
            request_elements_max: 100,
        };
        let prefix = |len: i32, key: i16| {
            let mut b = len.to_be_bytes().to_vec();
            b.extend_from_slice(&key.to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
            b
        };
        let mut d = FrameDecoder::new(limits);
        let err = d
            .decode(&mut &prefix(2048, ApiKey::Metadata as i16)[..])
            .unwrap_err();
        assert_eq!(
            err,
            KafkaError::FrameTooLarge {
                len: 2048,
                max: 1024,
                api_key: 3
            }
        );
        assert!(d.buffered_len() <= FRAME_PEEK_LEN);
        let mut d = FrameDecoder::new(limits);
        assert_eq!(d.decode(&mut &prefix(2048, ApiKey::Produce as i16)[..]), Ok(None));
        for len in [7, 0, -1, i32::MIN] {
            let mut d = FrameDecoder::new(limits);
            let err = d.decode(&mut &len.to_be_bytes()[..]).unwrap_err();
            assert!(matches!(err, KafkaError::FrameTooShort { .. }), "{len}: {err}");
        }
        // Over every cap: refused after four bytes, the api key unread.
        let mut d = FrameDecoder::new(limits);
        let err = d.decode(&mut &((1i32 << 20) + 1).to_be_bytes()[..]).unwrap_err();
        assert!(
            matches!(err, KafkaError::FrameTooLarge { api_key: -1, .. }),
            "{err}"
        );
    }

    /// Unknown keys and unsupported versions close the connection, except
    /// ApiVersions, which is answered in v0 with UNSUPPORTED_VERSION and our
    /// table, and the connection stays open.
    #[test]
    fn refusals() {
        let limits = KafkaLimits::default();
        let mut unknown = BytesMut::new();
        unknown.put_i16(ApiKey::DescribeAcls as i16);
        unknown.put_i16(1);
        unknown.put_i32(77);
        unknown.put_i16(-1);
        let r = decode_request(unknown.freeze(), &limits).unwrap_err();
        assert_eq!(
            (r.close, r.correlation_id, r.reply.is_none()),
            (true, Some(77), true)
        );
        assert_eq!(r.error, KafkaError::UnknownApi(ApiKey::DescribeAcls as i16));

        let frame = encode_request_frame(ApiKey::Metadata, 10, 5, &sample_request(ApiKey::Metadata, 9));
        let r = decode_request(Bytes::from(frame).slice(4..), &limits).unwrap_err();
        assert!(r.close && matches!(r.error, KafkaError::UnsupportedVersion { version: 10, .. }));

        // ApiVersions v4, as the Java 4.x client first sends it.
        let v4 = kafka_protocol::messages::ApiVersionsRequest::default();
        let frame = encode_request_frame(ApiKey::ApiVersions, 4, 9, &RequestKind::ApiVersions(v4));
        let r = decode_request(Bytes::from(frame).slice(4..), &limits).unwrap_err();
        assert!(!r.close);
        let mut reply = r.reply.expect("a reply").freeze();
        let len = reply.get_i32();
        assert_eq!(len as usize, reply.len());
        let header = ResponseHeader::decode(&mut reply, 0).unwrap();
        assert_eq!(header.correlation_id, 9);
        let body = ApiVersionsResponse::decode(&mut reply, 0).unwrap();
        assert_eq!(body.error_code, 35);
        assert_eq!(body, api_versions_response(35));
    }

    /// A ten-byte Metadata v0 request declaring 2^31 - 1 topics is refused
    /// by the shape check (kafka-protocol alone would try to reserve about
    /// 150 GiB for it and abort the process).
    #[test]
    fn hostile_array_count_refused() {
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::Metadata as i16);
        frame.put_i16(0);
        frame.put_i32(1);
        frame.put_i16(-1);
        frame.put_i32(i32::MAX);
        let r = decode_request(frame.freeze(), &KafkaLimits::default()).unwrap_err();
        assert!(r.close);
        assert!(
            matches!(r.error, KafkaError::MalformedRequest { .. }),
            "{}",
            r.error
        );
    }

    /// Responses carry the header version their API and version call for:
    /// ApiVersions v3 keeps header v0, Metadata v9 uses v1 (one tag byte);
    /// both decode back with kafka-protocol.
    #[test]
    fn response_headers() {
        let mut out = BytesMut::new();
        let ctx = |api_key, api_version| ResponseContext {
            api_key,
            api_version,
            correlation_id: 42,
        };
        let api_versions = ResponseKind::ApiVersions(api_versions_response(0));
        encode_response(&ctx(ApiKey::ApiVersions, 3), &api_versions, &mut out).unwrap();
        let mut frame = out.split().freeze();
        assert_eq!(frame.get_i32() as usize, frame.len());
        assert_eq!(ResponseHeader::decode(&mut frame, 0).unwrap().correlation_id, 42);
        assert_eq!(
            ApiVersionsResponse::decode(&mut frame, 3).unwrap(),
            api_versions_response(0)
        );
        assert!(frame.is_empty());

        let metadata = ResponseKind::Metadata(MetadataResponse::default());
        encode_response(&ctx(ApiKey::Metadata, 9), &metadata, &mut out).unwrap();
        let mut frame = out.split().freeze();
        frame.advance(4);
        assert_eq!(ResponseHeader::decode(&mut frame, 1).unwrap().correlation_id, 42);
        assert_eq!(
            MetadataResponse::decode(&mut frame, 9).unwrap(),
            MetadataResponse::default()
        );

        let err = encode_response(&ctx(ApiKey::Fetch, 4), &metadata, &mut out).unwrap_err();
        assert!(matches!(err, KafkaError::Encode(_)));
        assert!(out.is_empty(), "a failed encode leaves nothing behind");
    }
}
