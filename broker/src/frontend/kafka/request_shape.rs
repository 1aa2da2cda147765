//! The shape check: walks a request body against its schema before
//! kafka-protocol decodes it, so that no length read from the wire is
//! trusted for an allocation.
//!
//! kafka-protocol 0.18 decodes an array by reading its element count and
//! calling `Vec::with_capacity(count)` before it reads a single element. A
//! ten-byte request that declares two billion elements makes it ask for
//! hundreds of gigabytes, and a failed allocation aborts the process (it is
//! not a panic, so nothing can catch it). Strings and byte fields are
//! zero-copy slices of the frame and are safe. So, before any request is
//! handed to kafka-protocol, this module walks it field by field, by the
//! schema of its API and version (the tables below, transcribed from
//! kafka-protocol's generated decoders, which follow Kafka's JSON schemas),
//! and checks that:
//!
//! - every length (string, bytes, array count, tagged field) fits in the
//!   bytes that remain, and every element of every array is really there;
//! - the elements of all arrays together stay under the caller's
//!   `elements_max`, which bounds what the decoded request can occupy;
//! - varints are at most 5 bytes, tagged fields come in increasing tag order,
//!   a known tagged field fills exactly its declared size, and the body
//!   ends exactly where the schema does.
//!
//! A body that passes has the structure kafka-protocol will read: every
//! `Vec::with_capacity` it performs is for elements that exist. The walk is
//! one pass over the bytes and allocates nothing. Being stricter than
//! kafka-protocol is safe (a refusal); being looser is not, which is why a
//! test encodes a populated request of every served API and version with
//! kafka-protocol and requires the walk to end exactly at its last byte.

use kafka_protocol::messages::ApiKey;

use super::error::KafkaError;

/// A field's wire type.
#[derive(Clone, Copy)]
enum Ty {
    I8,
    I16,
    I32,
    I64,
    Uuid,
    Bool,
    /// A string, nullable or not: i16 length, or compact (varint length + 1).
    Str,
    /// Bytes (also record sets), nullable or not: i32 length, or compact.
    Bytes,
    /// An array of int32.
    I32s,
    /// An array of strings.
    Strs,
    /// An array of structs with these fields.
    Structs(&'static [Field]),
}

/// One field, present in versions `min..=max`.
#[derive(Clone, Copy)]
struct Field {
    ty: Ty,
    min: i16,
    max: i16,
}

const fn all(ty: Ty) -> Field {
    Field {
        ty,
        min: 0,
        max: i16::MAX,
    }
}
const fn since(min: i16, ty: Ty) -> Field {
    Field {
        ty,
        min,
        max: i16::MAX,
    }
}
const fn until(max: i16, ty: Ty) -> Field {
    Field { ty, min: 0, max }
}
const fn between(min: i16, max: i16, ty: Ty) -> Field {
    Field { ty, min, max }
}

/// A tagged field kafka-protocol reads by type (not as opaque bytes), so
/// the walk must read it the same way.
struct KnownTag {
    tag: u32,
    min: i16,
    ty: Ty,
}

/// The schema of one request.
struct Schema {
    key: ApiKey,
    /// First flexible version: compact lengths and tagged fields from here.
    flexible_since: i16,
    fields: &'static [Field],
    /// Known tagged fields of the top-level struct (nested structs in the
    /// served versions have none).
    tags: &'static [KnownTag],
}

use Ty::*;

const METADATA: &[Field] = &[
    all(Structs(&[since(10, Uuid), all(Str)])),
    since(4, Bool),
    between(8, 10, Bool),
    since(8, Bool),
];
const PRODUCE: &[Field] = &[
    all(Str),
    all(I16),
    all(I32),
    all(Structs(&[
        until(12, Str),
        since(13, Uuid),
        all(Structs(&[all(I32), all(Bytes)])),
    ])),
];
const FETCH_PARTITION: &[Field] = &[
    all(I32),
    since(9, I32),
    all(I64),
    since(12, I32),
    since(5, I64),
    all(I32),
];
const FETCH: &[Field] = &[
    until(14, I32),
    all(I32),
    all(I32),
    since(3, I32),
    since(4, I8),
    since(7, I32),
    since(7, I32),
    all(Structs(&[
        until(12, Str),
        since(13, Uuid),
        all(Structs(FETCH_PARTITION)),
    ])),
    since(
        7,
        Structs(&[between(7, 12, Str), since(13, Uuid), since(7, I32s)]),
    ),
    since(11, Str),
];
const LIST_OFFSETS: &[Field] = &[
    all(I32),
    since(2, I8),
    all(Structs(&[
        all(Str),
        all(Structs(&[all(I32), since(4, I32), all(I64)])),
    ])),
    since(10, I32),
];
const INIT_PRODUCER_ID: &[Field] = &[all(Str), all(I32), since(3, I64), since(3, I16)];
const FIND_COORDINATOR: &[Field] = &[until(3, Str), since(1, I8), since(4, Strs)];
const JOIN_GROUP: &[Field] = &[
    all(Str),
    all(I32),
    since(1, I32),
    all(Str),
    since(5, Str),
    all(Str),
    all(Structs(&[all(Str), all(Bytes)])),
    since(8, Str),
];
const SYNC_GROUP: &[Field] = &[
    all(Str),
    all(I32),
    all(Str),
    since(3, Str),
    since(5, Str),
    since(5, Str),
    all(Structs(&[all(Str), all(Bytes)])),
];
const HEARTBEAT: &[Field] = &[all(Str), all(I32), all(Str), since(3, Str)];
const LEAVE_GROUP: &[Field] = &[
    all(Str),
    until(2, Str),
    since(3, Structs(&[since(3, Str), since(3, Str), since(5, Str)])),
];
const OFFSET_COMMIT: &[Field] = &[
    all(Str),
    all(I32),
    all(Str),
    since(7, Str),
    between(2, 4, I64),
    all(Structs(&[
        all(Str),
        all(Structs(&[all(I32), all(I64), since(6, I32), all(Str)])),
    ])),
];
const OFFSET_FETCH: &[Field] = &[
    until(7, Str),
    until(7, Structs(&[until(7, Str), until(7, I32s)])),
    since(
        8,
        Structs(&[
            since(8, Str),
            since(9, Str),
            since(9, I32),
            since(8, Structs(&[since(8, Str), since(8, I32s)])),
        ]),
    ),
    since(7, Bool),
];
const CREATE_TOPICS: &[Field] = &[
    all(Structs(&[
        all(Str),
        all(I32),
        all(I16),
        all(Structs(&[all(I32), all(I32s)])),
        all(Structs(&[all(Str), all(Str)])),
    ])),
    all(I32),
    since(1, Bool),
];
const DELETE_TOPICS: &[Field] = &[
    since(6, Structs(&[since(6, Str), since(6, Uuid)])),
    until(5, Strs),
    all(I32),
];
const DESCRIBE_GROUPS: &[Field] = &[all(Strs), since(3, Bool)];
const LIST_GROUPS: &[Field] = &[since(4, Strs), since(5, Strs)];
const API_VERSIONS: &[Field] = &[since(3, Str), since(3, Str)];
const SASL_HANDSHAKE: &[Field] = &[all(Str)];
const SASL_AUTHENTICATE: &[Field] = &[all(Bytes)];

const SCHEMAS: &[Schema] = &[
    Schema {
        key: ApiKey::Produce,
        flexible_since: 9,
        fields: PRODUCE,
        tags: &[],
    },
    Schema {
        key: ApiKey::Fetch,
        flexible_since: 12,
        fields: FETCH,
        // cluster_id (tag 0); tag 1 (replica state) is v15+ and kafka-protocol
        // refuses it below that, so it may stay opaque here.
        tags: &[KnownTag {
            tag: 0,
            min: 12,
            ty: Str,
        }],
    },
    Schema {
        key: ApiKey::ListOffsets,
        flexible_since: 6,
        fields: LIST_OFFSETS,
        tags: &[],
    },
    Schema {
        key: ApiKey::Metadata,
        flexible_since: 9,
        fields: METADATA,
        tags: &[],
    },
    Schema {
        key: ApiKey::OffsetCommit,
        flexible_since: 8,
        fields: OFFSET_COMMIT,
        tags: &[],
    },
    Schema {
        key: ApiKey::OffsetFetch,
        flexible_since: 6,
        fields: OFFSET_FETCH,
        tags: &[],
    },
    Schema {
        key: ApiKey::FindCoordinator,
        flexible_since: 3,
        fields: FIND_COORDINATOR,
        tags: &[],
    },
    Schema {
        key: ApiKey::JoinGroup,
        flexible_since: 6,
        fields: JOIN_GROUP,
        tags: &[],
    },
    Schema {
        key: ApiKey::Heartbeat,
        flexible_since: 4,
        fields: HEARTBEAT,
        tags: &[],
    },
    Schema {
        key: ApiKey::LeaveGroup,
        flexible_since: 4,
        fields: LEAVE_GROUP,
        tags: &[],
    },
    Schema {
        key: ApiKey::SyncGroup,
        flexible_since: 4,
        fields: SYNC_GROUP,
        tags: &[],
    },
    Schema {
        key: ApiKey::DescribeGroups,
        flexible_since: 5,
        fields: DESCRIBE_GROUPS,
        tags: &[],
    },
    Schema {
        key: ApiKey::ListGroups,
        flexible_since: 3,
        fields: LIST_GROUPS,
        tags: &[],
    },
    Schema {
        key: ApiKey::SaslHandshake,
        flexible_since: i16::MAX,
        fields: SASL_HANDSHAKE,
        tags: &[],
    },
    Schema {
        key: ApiKey::ApiVersions,
        flexible_since: 3,
        fields: API_VERSIONS,
        tags: &[],
    },
    Schema {
        key: ApiKey::CreateTopics,
        flexible_since: 5,
        fields: CREATE_TOPICS,
        tags: &[],
    },
    Schema {
        key: ApiKey::DeleteTopics,
        flexible_since: 4,
        fields: DELETE_TOPICS,
        tags: &[],
    },
    Schema {
        key: ApiKey::InitProducerId,
        flexible_since: 2,
        fields: INIT_PRODUCER_ID,
        tags: &[],
    },
    Schema {
        key: ApiKey::SaslAuthenticate,
        flexible_since: 2,
        fields: SASL_AUTHENTICATE,
        tags: &[],
    },
];

/// Whether `version` of `key` uses flexible (compact, tagged) encoding, for
/// the APIs this module has a schema for.
pub fn is_flexible(key: ApiKey, version: i16) -> Option<bool> {
    schema(key).map(|s| version >= s.flexible_since)
}

fn schema(key: ApiKey) -> Option<&'static Schema> {
    SCHEMAS.iter().find(|s| s.key == key)
}

/// What the walk learned about a body that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestShape {
    /// Array elements in the request, all arrays together.
    pub elements: u64,
}

/// Walks `body` (the request after its header) as `key` at `version`.
/// Returns the shape, or the first place where the body leaves its schema.
pub fn check_request_shape(
    key: ApiKey,
    version: i16,
    body: &[u8],
    elements_max: u32,
) -> Result<RequestShape, KafkaError> {
    let Some(schema) = schema(key) else {
        return Err(KafkaError::UnknownApi(key as i16));
    };
    let mut walk = Walk {
        buf: body,
        pos: 0,
        version,
        flexible: version >= schema.flexible_since,
        elements: 0,
        elements_max,
    };
    let bad = |at: usize, reason: &'static str| KafkaError::MalformedRequest {
        api_key: key as i16,
        version,
        at,
        reason,
    };
    walk.fields(schema.fields)
        .and_then(|()| walk.tags(schema.tags))
        .map_err(|e| e.into_error(bad, elements_max))?;
    if walk.pos != body.len() {
        return Err(bad(walk.pos, "bytes after the end of the request"));
    }
    Ok(RequestShape {
        elements: walk.elements,
    })
}

/// Why a walk stopped: at which byte, and why.
enum Stop {
    At(usize, &'static str),
    TooManyElements,
}

impl Stop {
    fn into_error(self, bad: impl Fn(usize, &'static str) -> KafkaError, max: u32) -> KafkaError {
        match self {
            Stop::At(at, reason) => bad(at, reason),
            Stop::TooManyElements => KafkaError::TooManyElements { max },
        }
    }
}

struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
    version: i16,
    flexible: bool,
    elements: u64,
    elements_max: u32,
}

impl Walk<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn skip(&mut self, n: usize, reason: &'static str) -> Result<(), Stop> {
        if n > self.remaining() {
            return Err(Stop::At(self.pos, reason));
        }
        self.pos += n;
        Ok(())
    }

    fn int(&mut self, width: usize) -> Result<i64, Stop> {
        if width > self.remaining() {
            return Err(Stop::At(self.pos, "truncated integer"));
        }
        let bytes = &self.buf[self.pos..self.pos + width];
        self.pos += width;
        Ok(bytes.iter().fold(0i64, |acc, b| (acc << 8) | i64::from(*b)))
    }

    /// An unsigned varint of at most 5 bytes that fits a u32 (stricter than
    /// kafka-protocol, which ignores the excess bits of a fifth byte).
    fn uvarint(&mut self) -> Result<u32, Stop> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..5 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(Stop::At(start, "truncated varint"));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| Stop::At(start, "varint over u32"));
            }
        }
        Err(Stop::At(start, "varint longer than 5 bytes"))
    }

    /// A length prefix: `None` for null, else the length. Classic lengths
    /// are i16 (strings) or i32 (bytes, arrays), -1 for null; compact ones
    /// are varint length + 1, 0 for null.
    fn length(&mut self, classic_width: usize) -> Result<Option<usize>, Stop> {
        let at = self.pos;
        if self.flexible {
            let n = self.uvarint()?;
            return Ok(n.checked_sub(1).map(|n| n as usize));
        }
        let n = self.int(classic_width)?;
        let n = if classic_width == 2 {
            n as u16 as i16 as i64
        } else {
            n as u32 as i32 as i64
        };
        match n {
            -1 => Ok(None),
            n if n < -1 => Err(Stop::At(at, "negative length")),
            n => Ok(Some(n as usize)),
        }
    }

    fn fields(&mut self, fields: &[Field]) -> Result<(), Stop> {
        for f in fields {
            if (f.min..=f.max).contains(&self.version) {
                self.value(f.ty)?;
            }
        }
        Ok(())
    }

    fn value(&mut self, ty: Ty) -> Result<(), Stop> {
        match ty {
            I8 | Bool => self.skip(1, "truncated field"),
            I16 => self.skip(2, "truncated field"),
            I32 => self.skip(4, "truncated field"),
            I64 => self.skip(8, "truncated field"),
            Uuid => self.skip(16, "truncated field"),
            Str => {
                let len = self.length(2)?;
                self.skip(len.unwrap_or(0), "string runs past the end")
            }
            Bytes => {
                let len = self.length(4)?;
                self.skip(len.unwrap_or(0), "bytes run past the end")
            }
            I32s => self.array(4, |w| w.skip(4, "truncated array element")),
            Strs => self.array(1, |w| w.value(Str)),
            Structs(fields) => self.array(1, |w| {
                w.fields(fields)?;
                w.tags(&[])
            }),
        }
    }

    /// An array whose elements are each at least `element_len_min` bytes:
    /// the count must fit in the bytes left before any element is walked.
    fn array(
        &mut self,
        element_len_min: usize,
        mut element: impl FnMut(&mut Self) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        let at = self.pos;
        let Some(count) = self.length(4)? else {
            return Ok(());
        };
        if count.saturating_mul(element_len_min) > self.remaining() {
            return Err(Stop::At(at, "array count larger than the bytes left"));
        }
        self.elements += count as u64;
        if self.elements > u64::from(self.elements_max) {
            return Err(Stop::TooManyElements);
        }
        for _ in 0..count {
            element(self)?;
        }
        Ok(())
    }

    /// The tagged-field section of a flexible struct (nothing otherwise).
    fn tags(&mut self, known: &[KnownTag]) -> Result<(), Stop> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint()?;
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let at = self.pos;
            let tag = self.uvarint()?;
            if previous.is_some_and(|p| tag <= p) {
                return Err(Stop::At(at, "tagged fields out of order"));
            }
            previous = Some(tag);
            let size = self.uvarint()? as usize;
            if size > self.remaining() {
                return Err(Stop::At(at, "tagged field runs past the end"));
            }
            let end = self.pos + size;
            match known.iter().find(|k| k.tag == tag && self.version >= k.min) {
                Some(k) => {
                    self.value(k.ty)?;
                    if self.pos != end {
                        return Err(Stop::At(at, "tagged field does not fill its size"));
                    }
                }
                None => self.pos = end,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::kafka::supported_apis::SUPPORTED_APIS;

    /// Every served API has a schema, and the flexible thresholds agree with
    /// kafka-protocol's header versions (flexible requests use header v2).
    #[test]
    fn schema_for_every_served_api() {
        for s in SUPPORTED_APIS {
            let schema = schema(s.key).unwrap_or_else(|| panic!("{:?} has no schema", s.key));
            for v in s.min..=s.max {
                let header_v2 = s.key.request_header_version(v) >= 2;
                assert_eq!(header_v2, v >= schema.flexible_since, "{:?} v{v}", s.key);
            }
        }
    }

    /// A Metadata v0 request of 10 bytes declaring 2^31 - 1 topics is refused
    /// at the count, before anything else is read.
    #[test]
    fn hostile_count_refused() {
        let body = [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0];
        let err = check_request_shape(ApiKey::Metadata, 0, &body, 1 << 20).unwrap_err();
        assert!(
            matches!(err, KafkaError::MalformedRequest { at: 0, reason, .. } if reason.contains("count")),
            "{err}"
        );
    }

    /// A compact count that fits the bytes left but whose elements are not
    /// all there is refused where the elements run out.
    #[test]
    fn short_elements_refused() {
        // DescribeGroups v5: groups = compact array of 3 strings, but only
        // two one-byte (empty) strings follow, then the tag section.
        let body = [4, 1, 1, 0];
        let err = check_request_shape(ApiKey::DescribeGroups, 5, &body, 1 << 20).unwrap_err();
        assert!(matches!(err, KafkaError::MalformedRequest { .. }), "{err}");
    }

    /// The element cap counts all arrays together.
    #[test]
    fn element_cap() {
        // DescribeGroups v0: 5 empty strings, include_authorized_operations
        // absent (v3+).
        let mut body = 5i32.to_be_bytes().to_vec();
        for _ in 0..5 {
            body.extend_from_slice(&0i16.to_be_bytes());
        }
        assert_eq!(
            check_request_shape(ApiKey::DescribeGroups, 0, &body, 5)
                .unwrap()
                .elements,
            5
        );
        assert_eq!(
            check_request_shape(ApiKey::DescribeGroups, 0, &body, 4).unwrap_err(),
            KafkaError::TooManyElements { max: 4 }
        );
    }

    /// Trailing bytes, overlong varints and unordered tags are refused.
    #[test]
    fn strictness() {
        let mut body = 0i32.to_be_bytes().to_vec();
        body.push(0);
        assert!(check_request_shape(ApiKey::DescribeGroups, 0, &body, 10).is_err());
        // ListGroups v3: empty tag section = [0]; overlong varint.
        assert!(check_request_shape(ApiKey::ListGroups, 3, &[0], 10).is_ok());
        assert!(check_request_shape(ApiKey::ListGroups, 3, &[0x80, 0x80, 0x80, 0x80, 0x80, 0], 10).is_err());
        // Two tags, 5 then 3.
        assert!(check_request_shape(ApiKey::ListGroups, 3, &[2, 5, 0, 3, 0], 10).is_err());
        assert!(check_request_shape(ApiKey::ListGroups, 3, &[2, 3, 0, 5, 0], 10).is_ok());
    }
}
