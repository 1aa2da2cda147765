//! The codec: messages to frames and back.
//!
//! Encoding archives a message's meta straight into the frame buffer after a
//! 24-byte header slot, then fills in the header (length, key, version,
//! correlation id, flags, CRC). The payload is *not* copied in: callers pass
//! the head and the payload slices to a vectored write, so batch bytes go
//! from the producer's buffer (or the broker's cache) to the socket as they
//! are. [`encode`] concatenates them for callers that want one buffer.
//!
//! Decoding checks that the frame is the expected message (key, direction
//! and version), then either returns a validated archived view of the meta
//! ([`view`], zero-copy, for hot paths such as produce and poll) or a
//! deserialized owned value ([`decode`]). Both go through rkyv's validated
//! `access`; nothing here reads untrusted bytes unchecked. An
//! [`ApiKey::Error`] frame arriving where a response was expected turns into
//! [`ProtocolError::Broker`].

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::api::ApiKey;
use crate::batch::BATCH_ALIGN;
use crate::error::ProtocolError;
use crate::frame::{finish_frame_head, Frame, FLAG_RESPONSE, FRAME_HEADER_LEN};
use crate::messages::handshake::ErrorResponse;

/// A request or response struct that travels as a frame's meta section.
/// Implemented for every message type by the `message!` macro in
/// [`crate::messages`].
pub trait Message: Sized + std::fmt::Debug {
    /// The API this message belongs to.
    const API_KEY: ApiKey;
    /// Whether this is the response (true) or the request (false) half.
    const IS_RESPONSE: bool;
    /// Type name, for error messages.
    const NAME: &'static str;
    /// The archived form, read in place through validated access.
    type View;

    /// Archives `self` onto the end of `out` and returns the buffer.
    fn archive_into(&self, out: AlignedVec<16>) -> Result<AlignedVec<16>, rancor::Error>;
    /// Validated access to an archived meta section.
    fn view(meta: &[u8]) -> Result<&Self::View, rancor::Error>;
    /// Validated access, then deserialization into an owned value.
    fn from_meta(meta: &[u8]) -> Result<Self, rancor::Error>;
}

/// A request, tied to the response type the broker answers it with.
pub trait Request: Message {
    type Response: Message;
}

/// Encodes the header and meta of a frame carrying `msg`, to be followed by
/// `payload_len` bytes of payload (a multiple of 8: whole batches).
pub fn encode_head<M: Message>(
    msg: &M,
    correlation_id: u32,
    payload_len: usize,
) -> Result<AlignedVec<16>, ProtocolError> {
    if payload_len % BATCH_ALIGN != 0 {
        return Err(ProtocolError::InvalidArgument(format!(
            "payload length {payload_len} is not a multiple of {BATCH_ALIGN}"
        )));
    }
    let mut slot = AlignedVec::<16>::with_capacity(256);
    slot.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    let mut out = msg.archive_into(slot).map_err(|e| ProtocolError::Encode {
        api: M::NAME,
        reason: e.to_string(),
    })?;
    let flags = if M::IS_RESPONSE { FLAG_RESPONSE } else { 0 };
    let key = M::API_KEY;
    finish_frame_head(
        &mut out,
        key.to_wire(),
        key.version(),
        correlation_id,
        flags,
        payload_len,
    )?;
    Ok(out)
}

/// Encodes a whole frame (head and payload) into one buffer.
pub fn encode<M: Message>(
    msg: &M,
    correlation_id: u32,
    payload: &[&[u8]],
) -> Result<AlignedVec<16>, ProtocolError> {
    let payload_len = payload.iter().map(|p| p.len()).sum();
    let mut out = encode_head(msg, correlation_id, payload_len)?;
    out.reserve(payload_len);
    for part in payload {
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// Encodes the frozen error reply for a request the broker cannot answer
/// with its own response type.
pub fn encode_error(correlation_id: u32, error: u16, message: &str) -> Result<AlignedVec<16>, ProtocolError> {
    let reply = ErrorResponse {
        error,
        message: message.to_string(),
    };
    encode_head(&reply, correlation_id, 0)
}

/// Checks that `frame` carries an `M` in the version this build speaks. An
/// error frame where a response was expected becomes a broker error.
pub fn expect<M: Message>(frame: &Frame) -> Result<(), ProtocolError> {
    let header = frame.header();
    let error_key = ApiKey::Error.to_wire();
    if M::IS_RESPONSE && M::API_KEY != ApiKey::Error && header.is_response() && header.api_key == error_key {
        let reply = decode::<ErrorResponse>(frame)?;
        return Err(ProtocolError::broker(reply.error, reply.message));
    }
    if header.api_key != M::API_KEY.to_wire() || header.is_response() != M::IS_RESPONSE {
        return Err(ProtocolError::UnexpectedFrame {
            expected: M::NAME,
            api_key: header.api_key,
            response: header.is_response(),
        });
    }
    if header.api_version != M::API_KEY.version() {
        return Err(ProtocolError::UnsupportedVersion {
            api: M::API_KEY.name(),
            version: header.api_version,
            supported: M::API_KEY.version(),
        });
    }
    Ok(())
}

/// A validated, zero-copy view of the frame's meta as an `M`.
pub fn view<M: Message>(frame: &Frame) -> Result<&M::View, ProtocolError> {
    expect::<M>(frame)?;
    M::view(frame.meta()).map_err(|e| bad_meta::<M>(e))
}

/// The frame's meta, validated and deserialized into an owned `M`.
pub fn decode<M: Message>(frame: &Frame) -> Result<M, ProtocolError> {
    expect::<M>(frame)?;
    M::from_meta(frame.meta()).map_err(|e| bad_meta::<M>(e))
}

fn bad_meta<M: Message>(e: rancor::Error) -> ProtocolError {
    ProtocolError::BadMeta {
        api: M::NAME,
        reason: e.to_string(),
    }
}

/// Cuts a payload into the batches whose lengths the meta lists, checking
/// that the lengths are 8-aligned and add up to exactly the payload. Does
/// not validate the batches themselves (see [`crate::batch`]).
pub fn split_payload<I>(payload: &[u8], lens: I) -> Result<Vec<&[u8]>, ProtocolError>
where
    I: IntoIterator<Item = u32>,
{
    let mut rest = payload;
    split_with(payload.len(), lens, |len| {
        let (batch, tail) = rest.split_at(len);
        rest = tail;
        batch
    })
}

/// [`split_payload`] on an owned payload: the batches come out as their own
/// buffers, cut from the payload's without copying (see
/// [`crate::frame::Frame::into_payload`]).
pub fn split_payload_owned<I>(
    mut payload: bytes::BytesMut,
    lens: I,
) -> Result<Vec<bytes::BytesMut>, ProtocolError>
where
    I: IntoIterator<Item = u32>,
{
    let payload_len = payload.len();
    split_with(payload_len, lens, |len| payload.split_to(len))
}

/// The checks of [`split_payload`]; `cut(len)` takes the next `len` bytes
/// of the payload (called only when they are there).
fn split_with<I, B>(
    payload_len: usize,
    lens: I,
    mut cut: impl FnMut(usize) -> B,
) -> Result<Vec<B>, ProtocolError>
where
    I: IntoIterator<Item = u32>,
{
    let mut out = Vec::new();
    let mut left = payload_len;
    let mut listed_len = 0usize;
    for len in lens {
        let len = len as usize;
        listed_len = listed_len.saturating_add(len);
        if len % BATCH_ALIGN != 0 || len > left {
            return Err(ProtocolError::PayloadMismatch {
                payload_len,
                listed_len,
            });
        }
        out.push(cut(len));
        left -= len;
    }
    if left != 0 {
        return Err(ProtocolError::PayloadMismatch {
            payload_len,
            listed_len,
        });
    }
    Ok(out)
}

/// Validates the meta of any frame this build knows, whatever its kind:
/// picks the message type from the API key and direction and runs validated
/// access on it. Returns the API key. Used by fuzzing and by callers that
/// want to reject a bad frame before routing it.
pub fn validate_any(frame: &Frame) -> Result<ApiKey, ProtocolError> {
    use crate::messages::{delivery::*, dlq::*, fetch::*, group::*, handshake::*};
    use crate::messages::{leaders::*, metadata::*, offsets::*, produce::*, security::*, stats::*, topic::*};

    macro_rules! pick {
        ($frame:expr, $key:expr, $( $k:ident => $req:ty, $resp:ty );* $(;)?) => {
            match $key {
                ApiKey::Error => view::<ErrorResponse>($frame).map(|_| ()),
                $( ApiKey::$k => if $frame.header().is_response() {
                    view::<$resp>($frame).map(|_| ())
                } else {
                    view::<$req>($frame).map(|_| ())
                }, )*
            }
        };
    }

    let key = ApiKey::from_wire(frame.header().api_key).ok_or_else(|| {
        ProtocolError::broker(
            crate::error::ErrorCode::UnknownApi.to_wire(),
            format!("unknown api key {}", frame.header().api_key),
        )
    })?;
    pick!(frame, key,
        Handshake => HandshakeRequest, HandshakeResponse;
        Metadata => MetadataRequest, MetadataResponse;
        CreateTopic => CreateTopicRequest, CreateTopicResponse;
        DeleteTopic => DeleteTopicRequest, DeleteTopicResponse;
        ListTopics => ListTopicsRequest, ListTopicsResponse;
        DescribeTopic => DescribeTopicRequest, DescribeTopicResponse;
        Produce => ProduceRequest, ProduceResponse;
        Fetch => FetchRequest, FetchResponse;
        ListOffsets => ListOffsetsRequest, ListOffsetsResponse;
        JoinGroup => JoinGroupRequest, JoinGroupResponse;
        Heartbeat => HeartbeatRequest, HeartbeatResponse;
        LeaveGroup => LeaveGroupRequest, LeaveGroupResponse;
        Poll => PollRequest, PollResponse;
        Ack => AckRequest, AckResponse;
        Nack => NackRequest, NackResponse;
        CommitOffset => CommitOffsetRequest, CommitOffsetResponse;
        Seek => SeekRequest, SeekResponse;
        ListGroups => ListGroupsRequest, ListGroupsResponse;
        GroupStats => GroupStatsRequest, GroupStatsResponse;
        TopicStats => TopicStatsRequest, TopicStatsResponse;
        QuarantineBrowse => QuarantineBrowseRequest, QuarantineBrowseResponse;
        QuarantineCounts => QuarantineCountsRequest, QuarantineCountsResponse;
        QuarantineRedrive => QuarantineRedriveRequest, QuarantineRedriveResponse;
        QuarantinePurge => QuarantinePurgeRequest, QuarantinePurgeResponse;
        Authenticate => AuthenticateRequest, AuthenticateResponse;
        SecurityAdmin => SecurityAdminRequest, SecurityAdminResponse;
        Leaders => LeadersRequest, LeadersResponse;
    )?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, NewRecord};
    use crate::error::ErrorCode;
    use crate::frame::{decode_frame, Decoded, FRAME_LEN_MAX};
    use crate::messages::produce::{Acks, ProducePartition, ProduceRequest, ProduceResponse};
    use crate::messages::topic::ListTopicsRequest;

    fn frame_of(bytes: &[u8]) -> Frame {
        match decode_frame(bytes, FRAME_LEN_MAX) {
            Decoded::Frame { frame, .. } => frame,
            other => panic!("not a frame: {other:?}"),
        }
    }

    fn batch(n: usize) -> AlignedVec<16> {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.push(NewRecord {
                value: Some(vec![i as u8; 10]),
                ..NewRecord::default()
            });
        }
        b.finish().expect("batch")
    }

    /// A produce frame carries its batches in the payload, which splits back
    /// by the listed lengths into the same bytes.
    #[test]
    fn produce_payload_round_trip() {
        let (a, b) = (batch(3), batch(5));
        let req = ProduceRequest {
            topic: "t".into(),
            acks: Acks::Leader,
            timeout_ms: 1000,
            partitions: vec![ProducePartition {
                partition: 0,
                batch_lens: vec![a.len() as u32, b.len() as u32],
            }],
        };
        let bytes = encode(&req, 9, &[&a, &b]).expect("encode");
        let frame = frame_of(&bytes);
        let view = view::<ProduceRequest>(&frame).expect("view");
        let lens = view.partitions[0].batch_lens.iter().map(|l| l.to_native());
        let batches = split_payload(frame.payload(), lens).expect("split");
        assert_eq!(batches, vec![a.as_slice(), b.as_slice()]);
        assert!(split_payload(frame.payload(), [a.len() as u32]).is_err());
        assert!(split_payload(frame.payload(), [a.len() as u32, 8, 8]).is_err());
    }

    /// An error frame where a response was expected surfaces as a broker
    /// error with its code; a wrong message kind is rejected, not misread.
    #[test]
    fn error_frames_and_mismatches() {
        let bytes = encode_error(5, ErrorCode::UnsupportedVersion.to_wire(), "old client").unwrap();
        let err = decode::<ProduceResponse>(&frame_of(&bytes)).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::UnsupportedVersion));
        assert!(err.to_string().contains("old client"));

        let bytes = encode(&ListTopicsRequest {}, 1, &[]).unwrap();
        let frame = frame_of(&bytes);
        assert!(matches!(
            decode::<ProduceRequest>(&frame),
            Err(ProtocolError::UnexpectedFrame { .. })
        ));
        assert!(decode::<ListTopicsRequest>(&frame).is_ok());
    }

    /// A frame naming another version of the API is refused before its meta is read.
    #[test]
    fn version_mismatch_rejected() {
        let mut bytes = encode(&ListTopicsRequest {}, 1, &[]).unwrap();
        bytes[6] = 99;
        let frame = frame_of(&bytes);
        assert!(matches!(
            decode::<ListTopicsRequest>(&frame),
            Err(ProtocolError::UnsupportedVersion { version: 99, .. })
        ));
    }

    /// Garbage meta with a valid CRC is a typed BadMeta error, never a panic.
    #[test]
    fn garbage_meta_is_bad_meta() {
        let head = crate::frame::encode_frame_head(
            ApiKey::Produce.to_wire(),
            ApiKey::Produce.version(),
            1,
            0,
            &[0xff; 40],
            0,
        )
        .unwrap();
        let frame = frame_of(&head);
        assert!(matches!(
            decode::<ProduceRequest>(&frame),
            Err(ProtocolError::BadMeta { .. })
        ));
    }
}
