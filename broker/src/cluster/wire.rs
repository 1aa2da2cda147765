//! The node link's messages and their frames (sans-IO).
//!
//! A node link reuses the native protocol's framing (`protocol/src/frame.rs`:
//! 24-byte header, the length cap checked before anything is allocated, a
//! CRC-32C of the meta, a decoder that never panics) with its own message
//! kinds in the header's `api_key` field and [`LINK_VERSION`] in its
//! `api_version`. Metas are rkyv archives read only through validated
//! access. Any frame that is not exactly one of the kinds below, at this
//! version, with a meta that validates, is [`WireError`]: the connection is
//! closed, nothing else is touched.
//!
//! | kind | name       | direction         | meta                                |
//! |-----:|------------|-------------------|-------------------------------------|
//! |    1 | `Hello`    | dialler → accepter | cluster id, node id, shard, shards |
//! |    2 | `Welcome`  | accepter → dialler | the accepter's node id              |
//! |    3 | `Refused`  | accepter → dialler | why, then the connection closes     |
//! |    4 | `Ping`     | dialler → accepter | the sender's wall clock (liveness)  |
//! |    5 | `Raft`     | dialler → accepter | raft messages of one loop round, each with its partition |

use rkyv::rancor;
use rkyv::util::AlignedVec;
use shoal_protocol::frame::{encode_frame_head, Frame, FrameError};

/// The node link protocol version this build speaks (the frame's
/// `api_version`); a hello at another version is refused.
pub const LINK_VERSION: u16 = 1;

/// The kinds of frame on a node link (the frame's `api_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum LinkKind {
    Hello = 1,
    Welcome = 2,
    Refused = 3,
    Ping = 4,
    Raft = 5,
}

impl LinkKind {
    fn from_wire(key: u16) -> Option<LinkKind> {
        [
            LinkKind::Hello,
            LinkKind::Welcome,
            LinkKind::Refused,
            LinkKind::Ping,
            LinkKind::Raft,
        ]
        .into_iter()
        .find(|k| *k as u16 == key)
    }
}

/// The first frame on every connection, from the node that dialled.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Hello {
    pub cluster_id: String,
    pub node_id: u32,
    /// The dialling shard; it must equal the accepting shard's index.
    pub shard: u32,
    pub shard_count: u32,
    /// The dialler's native-protocol address, for clients redirected to it
    /// (`not_leader`).
    pub client_addr: String,
}

/// The accepter took the hello.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Welcome {
    pub node_id: u32,
}

/// The accepter refused the hello; the connection closes after it.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Refused {
    pub reason: String,
}

/// Liveness on an otherwise idle link.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Ping {
    pub sent_ms: i64,
}

/// One raft message for one partition's group (raft-rs's protobuf
/// encoding of `eraftpb::Message`).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RaftEnvelope {
    pub topic: String,
    pub partition: u32,
    pub message: Vec<u8>,
}

/// Every raft message one shard sends one peer in one loop round.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RaftFrame {
    pub messages: Vec<RaftEnvelope>,
}

/// One decoded node-link message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkMessage {
    Hello(Hello),
    Welcome(Welcome),
    Refused(Refused),
    Ping(Ping),
    Raft(RaftFrame),
}

/// Why a frame is not a node-link message. Terminal for the connection.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("unknown node-link message type {0}")]
    UnknownKind(u16),
    #[error("node-link version {got} (this node speaks {LINK_VERSION})")]
    Version { got: u16 },
    #[error("node-link frames carry no payload (got {0} bytes)")]
    Payload(usize),
    #[error("invalid {kind:?} message: {reason}")]
    Meta { kind: LinkKind, reason: String },
    #[error("cannot encode a node-link message: {0}")]
    Encode(String),
}

impl LinkMessage {
    fn kind(&self) -> LinkKind {
        match self {
            LinkMessage::Hello(_) => LinkKind::Hello,
            LinkMessage::Welcome(_) => LinkKind::Welcome,
            LinkMessage::Refused(_) => LinkKind::Refused,
            LinkMessage::Ping(_) => LinkKind::Ping,
            LinkMessage::Raft(_) => LinkKind::Raft,
        }
    }

    /// The whole frame carrying this message.
    pub fn encode(&self) -> Result<AlignedVec<16>, WireError> {
        let meta = match self {
            LinkMessage::Hello(m) => rkyv::to_bytes::<rancor::Error>(m),
            LinkMessage::Welcome(m) => rkyv::to_bytes::<rancor::Error>(m),
            LinkMessage::Refused(m) => rkyv::to_bytes::<rancor::Error>(m),
            LinkMessage::Ping(m) => rkyv::to_bytes::<rancor::Error>(m),
            LinkMessage::Raft(m) => rkyv::to_bytes::<rancor::Error>(m),
        }
        .map_err(|e| WireError::Encode(e.to_string()))?;
        Ok(encode_frame_head(
            self.kind() as u16,
            LINK_VERSION,
            0,
            0,
            &meta,
            0,
        )?)
    }

    /// Reads a frame the decoder completed (its header, length, CRC and
    /// padding are already checked).
    pub fn decode(frame: &Frame) -> Result<LinkMessage, WireError> {
        let header = frame.header();
        let kind = LinkKind::from_wire(header.api_key).ok_or(WireError::UnknownKind(header.api_key))?;
        if header.api_version != LINK_VERSION {
            return Err(WireError::Version {
                got: header.api_version,
            });
        }
        if !frame.payload().is_empty() {
            return Err(WireError::Payload(frame.payload().len()));
        }
        let meta = frame.meta();
        let bad = |e: rancor::Error| WireError::Meta {
            kind,
            reason: e.to_string(),
        };
        Ok(match kind {
            LinkKind::Hello => {
                LinkMessage::Hello(rkyv::from_bytes::<Hello, rancor::Error>(meta).map_err(bad)?)
            }
            LinkKind::Welcome => {
                LinkMessage::Welcome(rkyv::from_bytes::<Welcome, rancor::Error>(meta).map_err(bad)?)
            }
            LinkKind::Refused => {
                LinkMessage::Refused(rkyv::from_bytes::<Refused, rancor::Error>(meta).map_err(bad)?)
            }
            LinkKind::Ping => LinkMessage::Ping(rkyv::from_bytes::<Ping, rancor::Error>(meta).map_err(bad)?),
            LinkKind::Raft => {
                LinkMessage::Raft(rkyv::from_bytes::<RaftFrame, rancor::Error>(meta).map_err(bad)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::frame::FrameDecoder;

    fn round_trip(m: &LinkMessage) -> LinkMessage {
        let bytes = m.encode().unwrap();
        let mut input: &[u8] = &bytes;
        let frame = FrameDecoder::new(1 << 20).decode(&mut input).unwrap().unwrap();
        assert!(input.is_empty());
        LinkMessage::decode(&frame).unwrap()
    }

    /// Every kind survives a frame round trip.
    #[test]
    fn messages_round_trip() {
        let all = [
            LinkMessage::Hello(Hello {
                cluster_id: "c".into(),
                node_id: 2,
                shard: 1,
                shard_count: 2,
                client_addr: "127.0.0.1:9400".into(),
            }),
            LinkMessage::Welcome(Welcome { node_id: 3 }),
            LinkMessage::Refused(Refused { reason: "no".into() }),
            LinkMessage::Ping(Ping { sent_ms: -5 }),
            LinkMessage::Raft(RaftFrame {
                messages: vec![RaftEnvelope {
                    topic: "t".into(),
                    partition: 3,
                    message: vec![1, 2, 3],
                }],
            }),
        ];
        for m in &all {
            assert_eq!(&round_trip(m), m);
        }
    }

    /// An unknown kind, another version and a meta that does not validate
    /// are errors, never panics.
    #[test]
    fn rejects_unknown_kind_version_and_meta() {
        let meta = rkyv::to_bytes::<rancor::Error>(&Ping { sent_ms: 1 }).unwrap();
        let decode = |key, version, meta: &[u8]| {
            let bytes = encode_frame_head(key, version, 0, 0, meta, 0).unwrap();
            let mut input: &[u8] = &bytes;
            let frame = FrameDecoder::new(1 << 20).decode(&mut input).unwrap().unwrap();
            LinkMessage::decode(&frame)
        };
        assert!(matches!(
            decode(99, LINK_VERSION, &meta),
            Err(WireError::UnknownKind(99))
        ));
        assert!(matches!(decode(4, 7, &meta), Err(WireError::Version { got: 7 })));
        assert!(matches!(
            decode(1, LINK_VERSION, &meta),
            Err(WireError::Meta { .. })
        ));
        assert!(matches!(
            decode(4, LINK_VERSION, &[]),
            Err(WireError::Meta { .. })
        ));
    }
}
