//! Request and response structs, one module per area.
//!
//! Every struct here is the meta section of a frame (see [`crate::frame`]):
//! an rkyv archive, read by the broker and the client through validated
//! access. Conventions, so the broker and client agree without surprises:
//!
//! - `error: u16` fields hold an [`crate::error::ErrorCode`] (0 = success);
//!   a `message` next to it says why in words (may be empty on success).
//! - Units are the last part of a name: `_ms` milliseconds (durations, or
//!   wall-clock time since the Unix epoch for `*_at_ms`/`timestamp_ms`),
//!   `_bytes` bytes. Offsets are record offsets within a partition (`u64`);
//!   partitions are `u32` numbers from 0; shards are `u32` ids from 0.
//! - Record data never sits in the meta: produce requests, fetch responses
//!   and poll responses list batch lengths (`batch_lens`, in bytes) and the
//!   batches follow in the frame's payload, in the order listed.
//!
//! | module         | APIs                                                         |
//! |----------------|--------------------------------------------------------------|
//! | [`handshake`]  | handshake/versions, the frozen error response                |
//! | [`metadata`]   | topics, partitions, owning shard and its port                |
//! | [`leaders`]    | partition leaders and node addresses (a cluster)             |
//! | [`topic`]      | create / delete / list / describe topic, topic config        |
//! | [`produce`]    | produce                                                      |
//! | [`fetch`]      | fetch (long-poll)                                            |
//! | [`offsets`]    | list offsets (earliest, latest, by timestamp)                |
//! | [`group`]      | join / heartbeat / leave / list groups                       |
//! | [`delivery`]   | poll, ack, nack, commit offset, seek / replay                |
//! | [`dlq`]        | quarantine browse / counts / redrive / purge                 |
//! | [`stats`]      | group and topic stats (lag in records and ms)                |
//! | [`security`]   | authenticate (SASL steps), users, tokens and ACLs            |

pub mod delivery;
pub mod dlq;
pub mod fetch;
pub mod group;
pub mod handshake;
pub mod leaders;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod security;
pub mod stats;
pub mod topic;

/// Implements [`crate::codec::Message`] for a request and its response, and
/// [`crate::codec::Request`] for the request.
macro_rules! message_pair {
    ($req:ident => $resp:ident, $key:expr) => {
        $crate::messages::message!($req, $key, false);
        $crate::messages::message!($resp, $key, true);
        impl $crate::codec::Request for $req {
            type Response = $resp;
        }
    };
}

/// Implements [`crate::codec::Message`] for one struct. A macro rather than
/// a blanket impl because rkyv's serializer and validator bounds do not
/// propagate through a generic trait; here they are checked per type.
macro_rules! message {
    ($ty:ident, $key:expr, $response:expr) => {
        impl $crate::codec::Message for $ty {
            const API_KEY: $crate::api::ApiKey = $key;
            const IS_RESPONSE: bool = $response;
            const NAME: &'static str = stringify!($ty);
            type View = <$ty as rkyv::Archive>::Archived;

            fn archive_into(
                &self,
                out: rkyv::util::AlignedVec<16>,
            ) -> Result<rkyv::util::AlignedVec<16>, rkyv::rancor::Error> {
                rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(self, out)
            }

            fn view(meta: &[u8]) -> Result<&Self::View, rkyv::rancor::Error> {
                rkyv::access::<Self::View, rkyv::rancor::Error>(meta)
            }

            fn from_meta(meta: &[u8]) -> Result<Self, rkyv::rancor::Error> {
                rkyv::from_bytes::<$ty, rkyv::rancor::Error>(meta)
            }
        }
    };
}

pub(crate) use message;
pub(crate) use message_pair;

#[cfg(test)]
pub(crate) mod testing {
    //! Quickcheck support: `Arbitrary` for message structs and a
    //! frame round-trip check used by every module's property tests.

    use crate::codec::{self, Message};
    use crate::frame::{decode_frame, Decoded, FRAME_LEN_MAX};

    /// Implements `quickcheck::Arbitrary` for a struct field by field.
    macro_rules! arbitrary_struct {
        ($ty:ident { $($field:ident),* $(,)? }) => {
            impl quickcheck::Arbitrary for $ty {
                fn arbitrary(g: &mut quickcheck::Gen) -> Self {
                    $ty { $($field: quickcheck::Arbitrary::arbitrary(g)),* }
                }
            }
        };
    }
    pub(crate) use arbitrary_struct;

    /// Generates one quickcheck round-trip property per message type.
    macro_rules! round_trip_tests {
        ($($name:ident: $ty:ty),* $(,)?) => {
            $(
                /// Encoding to a frame and decoding (owned and via the
                /// validated view) gives back the same message.
                #[test]
                fn $name() {
                    fn prop(msg: $ty, cid: u32) -> bool {
                        $crate::messages::testing::round_trips(&msg, cid)
                    }
                    // Size 24 keeps nested vectors (up to 24^3 leaves) far
                    // below the meta cap while still exercising every field.
                    quickcheck::QuickCheck::new()
                        .rng(quickcheck::Gen::new(24))
                        .tests(200)
                        .quickcheck(prop as fn($ty, u32) -> bool);
                }
            )*
        };
    }
    pub(crate) use round_trip_tests;

    /// Encodes `msg`, decodes the frame, and compares both decode paths.
    pub(crate) fn round_trips<M>(msg: &M, cid: u32) -> bool
    where
        M: Message + PartialEq,
        M::View: rkyv::Deserialize<M, rkyv::rancor::Strategy<rkyv::de::Pool, rkyv::rancor::Error>>,
    {
        let bytes = codec::encode(msg, cid, &[]).expect("encode");
        let Decoded::Frame { frame, consumed } = decode_frame(&bytes, FRAME_LEN_MAX) else {
            return false;
        };
        let owned: M = codec::decode(&frame).expect("decode");
        let view = codec::view::<M>(&frame).expect("view");
        let from_view: M = rkyv::deserialize::<M, rkyv::rancor::Error>(view).expect("deserialize");
        consumed == bytes.len()
            && frame.header().correlation_id == cid
            && frame.header().is_response() == M::IS_RESPONSE
            && owned == *msg
            && from_view == *msg
    }

    /// A small arbitrary enum choice.
    pub(crate) fn pick(g: &mut quickcheck::Gen, n: u8) -> u8 {
        u8::arbitrary(g) % n
    }

    use quickcheck::Arbitrary;
}
