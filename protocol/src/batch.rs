//! Record batch: the unit of storage and of transfer.
//!
//! A producer builds a batch once; the broker validates it once on ingest
//! (length cap, CRC-32C, validated rkyv access), assigns offsets by patching
//! the header in place, and from then on only moves the bytes: the same bytes
//! are written to the partition log and sent to consumers. Nothing on the
//! fetch path re-encodes records.
//!
//! Two builders write the same bytes: [`BatchBuilder`] from owned
//! [`NewRecord`]s (the clients), and [`build_borrowed`] from
//! [`RecordRef`]s that point into bytes the caller already holds, straight
//! into one pre-sized buffer (a front end converting Kafka batches; see
//! the `borrowed` module).
//!
//! # Layout
//!
//! All integers are little-endian. The header is [`BATCH_HEADER_LEN`] = 72
//! bytes and starts at an 8-byte aligned position, so the body that follows is
//! 8-byte aligned too (rkyv needs that for in-place access).
//!
//! | off | len | field                | notes                                                    |
//! |----:|----:|----------------------|----------------------------------------------------------|
//! |   0 |   8 | `base_offset`        | offset of the first record; patched by the broker        |
//! |   8 |   4 | `batch_len`          | header + body + padding; a multiple of 8                 |
//! |  12 |   4 | `leader_epoch`       | patched by the broker                                    |
//! |  16 |   8 | `append_time_ms`     | broker wall-clock append time (ms since Unix epoch)     |
//! |  24 |   4 | `crc32c`             | CRC-32C (Castagnoli) of bytes `[28, batch_len)`          |
//! |  28 |   1 | `magic`              | [`BATCH_MAGIC`] = 1                                      |
//! |  29 |   1 | reserved             | 0                                                        |
//! |  30 |   2 | `attributes`         | bits 0-2: compression codec (0 none, 1 lz4, 2 zstd); rest 0 |
//! |  32 |   4 | `record_count`       | at least 1                                               |
//! |  36 |   4 | `body_len`           | stored body length, before padding                       |
//! |  40 |   8 | `first_timestamp_ms` | smallest producer create time in the batch               |
//! |  48 |   8 | `max_timestamp_ms`   | largest producer create time in the batch                |
//! |  56 |   8 | `producer_id`        | 0 = not an idempotent producer                           |
//! |  64 |   2 | `producer_epoch`     |                                                          |
//! |  66 |   2 | reserved             | 0                                                        |
//! |  68 |   4 | `base_sequence`      | producer sequence of the first record                   |
//! |  72 |   … | body                 | `body_len` bytes, then zero padding to a multiple of 8   |
//!
//! The fields the broker patches (`base_offset`, `leader_epoch`,
//! `append_time_ms`) sit before the CRC and are not covered by it, so
//! patching never recomputes a checksum; everything the producer wrote is.
//!
//! The body is the rkyv archive of a `Vec<Record>` (codec 0), or that archive
//! compressed, with its uncompressed length prepended as a little-endian u32:
//! as an lz4 block (codec 1) or as one zstd frame (codec 2). Record `i` has
//! offset `base_offset + i`.
//!
//! The prepended length is what a reader checks against
//! [`BatchLimits::body_uncompressed_max`] before it allocates anything for
//! the decompressed body; the decompressor then writes into exactly that many
//! bytes and fails if the data would run past them (a zstd frame whose own
//! header claims a larger content size is refused the same way), so a hostile
//! body can never make a reader allocate more than the cap.
//!
//! # Untrusted bytes
//!
//! [`validate`] is the only way in for bytes from the network or the disk: it
//! checks the length against the caller's limits before touching the body,
//! verifies the CRC, and reads the records only through rkyv's validated
//! `access`. It never panics on any input.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::vec::ArchivedVec;

mod borrowed;

pub use borrowed::{batch_len_max, build_borrowed, HeaderRef, HeaderRefResolver, RecordRef};

/// Size of the fixed batch header in bytes.
pub const BATCH_HEADER_LEN: usize = 72;
/// The only batch format version this build reads and writes.
pub const BATCH_MAGIC: u8 = 1;
/// Batches are padded to this alignment so that batches laid end to end keep
/// every header (and body) 8-byte aligned.
pub const BATCH_ALIGN: usize = 8;
/// Absolute cap on one batch, whatever a broker is configured to accept.
pub const BATCH_LEN_MAX: usize = 64 << 20;
/// Absolute cap on records in one batch.
pub const BATCH_RECORDS_MAX: u32 = 1 << 20;

/// Offset of the CRC field; the CRC covers everything after it.
const CRC_POS: usize = 24;
const CRC_START: usize = 28;
const ATTR_CODEC_MASK: u16 = 0b111;
/// zstd level used by [`BatchBuilder`]: zstd's own default, a good ratio at
/// a few hundred MB/s per core (Kafka producers default to it as well).
pub const ZSTD_LEVEL: i32 = 3;

/// Compression codec of a batch body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: u16) -> Result<Self, BatchError> {
        if attributes & !ATTR_CODEC_MASK != 0 {
            return Err(BatchError::BadAttributes(attributes));
        }
        match attributes & ATTR_CODEC_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            2 => Ok(Compression::Zstd),
            _ => Err(BatchError::BadAttributes(attributes)),
        }
    }

    fn attribute_bits(self) -> u16 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }
}

/// One record as a producer writes it.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Create time minus the batch's `first_timestamp_ms`.
    pub timestamp_delta_ms: u32,
    /// Partitioning and compaction key.
    pub key: Option<Vec<u8>>,
    /// Payload; `None` is a tombstone (compaction deletes the key).
    pub value: Option<Vec<u8>>,
    pub headers: Vec<RecordHeader>,
    /// Idempotency key: the broker stores a message_id once per dedup window.
    pub message_id: Option<String>,
}

/// A record header: a name and opaque bytes.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Vec<u8>,
}

/// Why a batch was rejected. Every variant is terminal for that batch: the
/// same bytes will always be rejected the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or than `batch_len` says; for a stream
    /// parser this means "need more bytes", not corruption.
    #[error("batch truncated: have {have} bytes, need {need}")]
    Truncated { have: usize, need: usize },
    #[error("batch length {len} is invalid (must be >= {BATCH_HEADER_LEN}, a multiple of {BATCH_ALIGN}, and <= {max})")]
    BadLength { len: usize, max: usize },
    #[error("batch magic {0} is not supported (expected {BATCH_MAGIC})")]
    BadMagic(u8),
    #[error("batch attributes {0:#06x} name an unknown codec or flag")]
    BadAttributes(u16),
    #[error("batch body length {body_len} does not fit batch length {batch_len}")]
    BadBodyLength { body_len: usize, batch_len: usize },
    #[error("batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("batch record count {count} is invalid (max {max})")]
    BadRecordCount { count: u32, max: u32 },
    #[error("batch header says {header} records but the body holds {body}")]
    RecordCountMismatch { header: u32, body: usize },
    #[error("batch body decompresses to {len} bytes, over the limit {max}")]
    BodyTooLarge { len: usize, max: usize },
    #[error("batch body does not decompress: {0}")]
    Decompress(String),
    /// Only a builder returns this: the codec failed to compress the body.
    #[error("batch body does not compress: {0}")]
    Compress(String),
    #[error("batch body is not a valid record archive: {0}")]
    BadArchive(String),
    #[error("batch timestamps are inconsistent (first {first} > max {max})")]
    BadTimestamps { first: i64, max: i64 },
}

/// The parsed fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    pub batch_len: u32,
    pub leader_epoch: u32,
    pub append_time_ms: i64,
    pub crc32c: u32,
    pub magic: u8,
    pub attributes: u16,
    pub record_count: u32,
    pub body_len: u32,
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub producer_id: u64,
    pub producer_epoch: u16,
    pub base_sequence: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Parses the fixed header from the first [`BATCH_HEADER_LEN`] bytes.
    /// Checks nothing beyond the presence of the bytes; see [`validate`].
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated {
                have: bytes.len(),
                need: BATCH_HEADER_LEN,
            });
        }
        Ok(BatchHeader {
            base_offset: u64_at(bytes, 0),
            batch_len: u32_at(bytes, 8),
            leader_epoch: u32_at(bytes, 12),
            append_time_ms: u64_at(bytes, 16) as i64,
            crc32c: u32_at(bytes, 24),
            magic: bytes[28],
            attributes: u16_at(bytes, 30),
            record_count: u32_at(bytes, 32),
            body_len: u32_at(bytes, 36),
            first_timestamp_ms: u64_at(bytes, 40) as i64,
            max_timestamp_ms: u64_at(bytes, 48) as i64,
            producer_id: u64_at(bytes, 56),
            producer_epoch: u16_at(bytes, 64),
            base_sequence: u32_at(bytes, 68),
        })
    }

    /// Writes the header into the first [`BATCH_HEADER_LEN`] bytes of `out`.
    fn write(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.base_offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.batch_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.leader_epoch.to_le_bytes());
        out[16..24].copy_from_slice(&self.append_time_ms.to_le_bytes());
        out[24..28].copy_from_slice(&self.crc32c.to_le_bytes());
        out[28] = self.magic;
        out[29] = 0;
        out[30..32].copy_from_slice(&self.attributes.to_le_bytes());
        out[32..36].copy_from_slice(&self.record_count.to_le_bytes());
        out[36..40].copy_from_slice(&self.body_len.to_le_bytes());
        out[40..48].copy_from_slice(&self.first_timestamp_ms.to_le_bytes());
        out[48..56].copy_from_slice(&self.max_timestamp_ms.to_le_bytes());
        out[56..64].copy_from_slice(&self.producer_id.to_le_bytes());
        out[64..66].copy_from_slice(&self.producer_epoch.to_le_bytes());
        out[66..68].copy_from_slice(&0u16.to_le_bytes());
        out[68..72].copy_from_slice(&self.base_sequence.to_le_bytes());
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count.max(1)) - 1
    }

    /// Offset one past the last record: where the next batch starts.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }
}

/// Limits a reader applies before it trusts a batch. The defaults are the
/// protocol's absolute caps; brokers configure smaller ones.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub batch_len_max: usize,
    pub records_max: u32,
    /// Cap on the decompressed body, checked before allocating for it.
    pub body_uncompressed_max: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            batch_len_max: BATCH_LEN_MAX,
            records_max: BATCH_RECORDS_MAX,
            body_uncompressed_max: BATCH_LEN_MAX * 4,
        }
    }
}

/// Rounds `len` up to the batch alignment.
pub fn padded_len(len: usize) -> usize {
    len.div_ceil(BATCH_ALIGN) * BATCH_ALIGN
}

/// Computes the CRC a batch header should carry.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Checks the framing of the batch at the start of `buf` without reading the
/// body: enough bytes for the header, a sane `batch_len`, the magic and the
/// attributes. Returns the header and the batch length. `Truncated` means
/// the buffer ends inside the batch.
pub fn peek(buf: &[u8], limits: &BatchLimits) -> Result<(BatchHeader, usize), BatchError> {
    let header = BatchHeader::parse(buf)?;
    let len = header.batch_len as usize;
    if len < BATCH_HEADER_LEN || len % BATCH_ALIGN != 0 || len > limits.batch_len_max {
        return Err(BatchError::BadLength {
            len,
            max: limits.batch_len_max,
        });
    }
    if header.magic != BATCH_MAGIC {
        return Err(BatchError::BadMagic(header.magic));
    }
    header.compression()?;
    let body_len = header.body_len as usize;
    if BATCH_HEADER_LEN + body_len > len || padded_len(BATCH_HEADER_LEN + body_len) != len {
        return Err(BatchError::BadBodyLength {
            body_len,
            batch_len: len,
        });
    }
    if header.record_count == 0 || header.record_count > limits.records_max {
        return Err(BatchError::BadRecordCount {
            count: header.record_count,
            max: limits.records_max,
        });
    }
    if header.first_timestamp_ms > header.max_timestamp_ms {
        return Err(BatchError::BadTimestamps {
            first: header.first_timestamp_ms,
            max: header.max_timestamp_ms,
        });
    }
    if buf.len() < len {
        return Err(BatchError::Truncated {
            have: buf.len(),
            need: len,
        });
    }
    Ok((header, len))
}

/// Checks framing and the CRC of the batch at the start of `buf`, without
/// reading records. This is what storage recovery runs on every batch.
pub fn check_crc(buf: &[u8], limits: &BatchLimits) -> Result<(BatchHeader, usize), BatchError> {
    let (header, len) = peek(buf, limits)?;
    let actual = compute_crc(&buf[..len]);
    if actual != header.crc32c {
        return Err(BatchError::CrcMismatch {
            expected: header.crc32c,
            actual,
        });
    }
    Ok((header, len))
}

/// Fully validates one batch: `bytes` must be exactly one batch. Checks the
/// framing, the CRC and the record archive (validated rkyv access, record
/// count). Returns the header on success.
pub fn validate(bytes: &[u8], limits: &BatchLimits) -> Result<BatchHeader, BatchError> {
    validate_with(bytes, limits, |_| ()).map(|(header, ())| header)
}

/// [`validate`], then `inspect` on the validated records in the same pass,
/// so a caller that needs to look at the records (dedup ids, say) does not
/// pay for a second validated access.
pub fn validate_with<R>(
    bytes: &[u8],
    limits: &BatchLimits,
    inspect: impl FnOnce(&ArchivedVec<ArchivedRecord>) -> R,
) -> Result<(BatchHeader, R), BatchError> {
    let (header, len) = check_crc(bytes, limits)?;
    if len != bytes.len() {
        return Err(BatchError::BadLength {
            len: bytes.len(),
            max: limits.batch_len_max,
        });
    }
    let opened = BatchRecords::open(bytes, &header, limits)?;
    let records = opened.records()?;
    if records.len() != header.record_count as usize {
        return Err(BatchError::RecordCountMismatch {
            header: header.record_count,
            body: records.len(),
        });
    }
    Ok((header, inspect(records)))
}

/// Writes the broker-assigned fields into a batch in place. The CRC does not
/// cover them, so the batch stays valid.
pub fn patch(batch: &mut [u8], base_offset: u64, leader_epoch: u32, append_time_ms: i64) {
    assert!(batch.len() >= BATCH_HEADER_LEN, "patch needs a whole header");
    batch[0..8].copy_from_slice(&base_offset.to_le_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_le_bytes());
    batch[16..24].copy_from_slice(&append_time_ms.to_le_bytes());
}

/// The records of one batch, ready for validated access. Holds either a
/// borrow of the batch body (uncompressed and aligned) or an owned, aligned
/// copy (compressed, or the caller's buffer was not 8-byte aligned).
pub enum BatchRecords<'a> {
    Borrowed(&'a [u8]),
    Owned(AlignedVec<16>),
}

impl<'a> BatchRecords<'a> {
    /// Prepares the body of `batch` (whose header is `header`) for access.
    /// Decompresses lz4 and zstd bodies after checking the declared size
    /// against `limits.body_uncompressed_max`.
    pub fn open(batch: &'a [u8], header: &BatchHeader, limits: &BatchLimits) -> Result<Self, BatchError> {
        let body_end = BATCH_HEADER_LEN + header.body_len as usize;
        if batch.len() < body_end {
            return Err(BatchError::Truncated {
                have: batch.len(),
                need: body_end,
            });
        }
        let body = &batch[BATCH_HEADER_LEN..body_end];
        match header.compression()? {
            Compression::None => {
                if (body.as_ptr() as usize) % BATCH_ALIGN == 0 {
                    Ok(BatchRecords::Borrowed(body))
                } else {
                    let mut owned = AlignedVec::<16>::with_capacity(body.len());
                    owned.extend_from_slice(body);
                    Ok(BatchRecords::Owned(owned))
                }
            }
            codec => decompress(codec, body, limits).map(BatchRecords::Owned),
        }
    }

    /// The archived records, through rkyv's validated access.
    pub fn records(&self) -> Result<&ArchivedVec<ArchivedRecord>, BatchError> {
        let bytes: &[u8] = match self {
            BatchRecords::Borrowed(b) => b,
            BatchRecords::Owned(v) => v.as_slice(),
        };
        rkyv::access::<ArchivedVec<ArchivedRecord>, rancor::Error>(bytes)
            .map_err(|e| BatchError::BadArchive(e.to_string()))
    }
}

/// Decompresses a body stored as `u32 LE uncompressed length ‖ data`. The
/// length is checked against the cap before the output is allocated, and the
/// codec writes into exactly that many bytes: more data than declared is an
/// error, never a reallocation.
fn decompress(codec: Compression, body: &[u8], limits: &BatchLimits) -> Result<AlignedVec<16>, BatchError> {
    if body.len() < 4 {
        return Err(BatchError::Decompress("missing uncompressed length".into()));
    }
    let len = u32_at(body, 0) as usize;
    if len > limits.body_uncompressed_max {
        return Err(BatchError::BodyTooLarge {
            len,
            max: limits.body_uncompressed_max,
        });
    }
    let mut out = AlignedVec::<16>::with_capacity(len);
    out.resize(len, 0);
    let data = &body[4..];
    let written = match codec {
        Compression::None => return Err(BatchError::Decompress("codec none has no compressed body".into())),
        Compression::Lz4 => lz4_flex::block::decompress_into(data, out.as_mut_slice())
            .map_err(|e| BatchError::Decompress(e.to_string()))?,
        Compression::Zstd => zstd_decompress_into(data, out.as_mut_slice())?,
    };
    if written != len {
        return Err(BatchError::Decompress(format!(
            "got {written} bytes, header said {len}"
        )));
    }
    Ok(out)
}

/// zstd frames into `out`, which is exactly the declared size. Single-shot
/// decompression writes straight into `out` (no window buffer of its own, so
/// a frame's claimed window size allocates nothing), and zstd refuses a
/// frame whose content would not fit, including one whose header claims a
/// larger content size, with "destination buffer too small".
fn zstd_decompress_into(data: &[u8], out: &mut [u8]) -> Result<usize, BatchError> {
    zstd::bulk::decompress_to_buffer(data, out).map_err(|e| BatchError::Decompress(format!("zstd: {e}")))
}

/// Iterates over the whole batches laid end to end in `buf` (a fetch
/// response or a segment read), checking each one's framing and CRC.
/// Stops at the first error; a trailing partial batch yields `Truncated`.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    limits: BatchLimits,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8], limits: BatchLimits) -> Self {
        BatchIter { buf, limits }
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        match check_crc(self.buf, &self.limits) {
            Ok((header, len)) => {
                let (batch, rest) = self.buf.split_at(len);
                self.buf = rest;
                Some(Ok((header, batch)))
            }
            Err(e) => {
                self.buf = &[];
                Some(Err(e))
            }
        }
    }
}

/// A record handed to [`BatchBuilder::push`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<RecordHeader>,
    pub message_id: Option<String>,
}

impl NewRecord {
    /// Rough encoded size, used for batching decisions.
    pub fn approx_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.len() + 16)
            .sum();
        48 + self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self.message_id.as_ref().map_or(0, String::len)
            + headers
    }
}

/// Producer identity for idempotent produce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerInfo {
    pub producer_id: u64,
    pub producer_epoch: u16,
    pub base_sequence: u32,
}

/// Builds one batch from records. Client side; allocation is fine here.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    records: Vec<NewRecord>,
    approx_len: usize,
    compression: Option<Compression>,
    producer: ProducerInfo,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    pub fn producer(mut self, producer: ProducerInfo) -> Self {
        self.producer = producer;
        self
    }

    pub fn push(&mut self, record: NewRecord) {
        self.approx_len += record.approx_len();
        self.records.push(record);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Approximate encoded size of the batch so far.
    pub fn approx_len(&self) -> usize {
        BATCH_HEADER_LEN + self.approx_len
    }

    /// Encodes the batch. Offsets, leader epoch and append time are zero
    /// until the broker patches them.
    pub fn finish(self) -> Result<AlignedVec<16>, BatchError> {
        encode(
            self.records,
            self.compression.unwrap_or(Compression::None),
            self.producer,
        )
    }
}

/// Encodes owned records through the one builder of the format
/// ([`build_borrowed`], which borrows their bytes), into an aligned buffer.
fn encode(
    records: Vec<NewRecord>,
    compression: Compression,
    producer: ProducerInfo,
) -> Result<AlignedVec<16>, BatchError> {
    let headers: Vec<Vec<HeaderRef<'_>>> = records
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .map(|h| HeaderRef {
                    key: &h.key,
                    value: &h.value,
                })
                .collect()
        })
        .collect();
    let refs: Vec<RecordRef<'_>> = records
        .iter()
        .zip(&headers)
        .map(|(r, headers)| RecordRef {
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers,
            message_id: r.message_id.as_deref(),
        })
        .collect();
    let built = build_borrowed(&refs, compression, producer)?;
    let mut out = AlignedVec::<16>::with_capacity(built.len());
    out.extend_from_slice(&built);
    Ok(out)
}

/// Writes the header of a new batch whose body (`body_len` bytes) and
/// padding already fill `batch[BATCH_HEADER_LEN..]`, then its CRC. The
/// broker's fields (offset, leader epoch, append time) are zero.
fn seal(
    batch: &mut [u8],
    compression: Compression,
    record_count: u32,
    body_len: usize,
    (first_timestamp_ms, max_timestamp_ms): (i64, i64),
    producer: ProducerInfo,
) {
    let mut header = BatchHeader {
        base_offset: 0,
        batch_len: batch.len() as u32,
        leader_epoch: 0,
        append_time_ms: 0,
        crc32c: 0,
        magic: BATCH_MAGIC,
        attributes: compression.attribute_bits(),
        record_count,
        body_len: body_len as u32,
        first_timestamp_ms,
        max_timestamp_ms,
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        base_sequence: producer.base_sequence,
    };
    header.write(&mut batch[..BATCH_HEADER_LEN]);
    header.crc32c = compute_crc(batch);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&header.crc32c.to_le_bytes());
}

/// Convenience for readers: the absolute create time of an archived record.
pub fn record_timestamp(header: &BatchHeader, record: &ArchivedRecord) -> i64 {
    header.first_timestamp_ms + i64::from(record.timestamp_delta_ms.to_native())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, TestResult};

    fn sample(n: usize, compression: Compression) -> AlignedVec<16> {
        let mut b = BatchBuilder::new().compression(compression);
        for i in 0..n {
            b.push(NewRecord {
                timestamp_ms: 1_700_000_000_000 + i as i64,
                key: Some(format!("k{i}").into_bytes()),
                value: Some(vec![i as u8; 100]),
                headers: vec![RecordHeader {
                    key: "h".into(),
                    value: b"v".to_vec(),
                }],
                message_id: (i % 2 == 0).then(|| format!("m{i}")),
            });
        }
        b.finish().expect("encode")
    }

    /// A built batch validates and its records read back as written, for
    /// every codec, and the codec is what the header says.
    #[test]
    fn roundtrip_every_codec() {
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let batch = sample(10, c);
            let h = validate(&batch, &BatchLimits::default()).expect("valid");
            assert_eq!(h.record_count, 10);
            let recs = BatchRecords::open(&batch, &h, &BatchLimits::default()).unwrap();
            let r = recs.records().unwrap();
            assert_eq!(r.len(), 10);
            assert_eq!(r[3].key.as_ref().unwrap().as_slice(), b"k3");
            assert_eq!(record_timestamp(&h, &r[3]), 1_700_000_000_003);
            assert_eq!(r[2].message_id.as_ref().unwrap().as_str(), "m2");
            assert_eq!(h.compression(), Ok(c));
        }
    }

    /// zstd actually compresses (the sample's values are runs of one byte),
    /// so the codec is not silently stored plain.
    #[test]
    fn zstd_shrinks_repetitive_bodies() {
        let plain = sample(50, Compression::None);
        let zstd = sample(50, Compression::Zstd);
        assert!(
            zstd.len() * 3 < plain.len(),
            "zstd {} vs plain {}",
            zstd.len(),
            plain.len()
        );
    }

    /// A zstd batch whose body is swapped for hostile bytes (CRC fixed up so
    /// only the body check can catch it) is refused: a declared length over
    /// the cap before any allocation, a frame claiming more content than
    /// declared, a frame giving less, and garbage.
    #[test]
    fn zstd_hostile_bodies_refused() {
        let limits = BatchLimits {
            body_uncompressed_max: 1 << 20,
            ..BatchLimits::default()
        };
        let archive = {
            let batch = sample(3, Compression::None);
            let h = BatchHeader::parse(&batch).unwrap();
            batch[BATCH_HEADER_LEN..BATCH_HEADER_LEN + h.body_len as usize].to_vec()
        };
        let frame = zstd::bulk::compress(&archive, 3).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("declared 4 GiB", [&u32::MAX.to_le_bytes()[..], &frame].concat()),
            (
                "declared just over the cap",
                [&((1u32 << 20) + 1).to_le_bytes()[..], &frame].concat(),
            ),
            (
                "frame claims 1 TiB",
                [&64u32.to_le_bytes()[..], &zstd_frame_claiming(1 << 40, b"abc")].concat(),
            ),
            (
                "frame gives less than declared",
                [&((archive.len() + 8) as u32).to_le_bytes()[..], &frame].concat(),
            ),
            (
                "frame gives more than declared",
                [&((archive.len() - 8) as u32).to_le_bytes()[..], &frame].concat(),
            ),
            ("garbage", [&64u32.to_le_bytes()[..], &[0xAB; 40][..]].concat()),
            ("no length", vec![1, 2]),
        ];
        for (name, body) in cases {
            let batch = with_body(&sample(3, Compression::Zstd), &body);
            let err = validate(&batch, &limits).expect_err(name);
            assert!(
                matches!(err, BatchError::BodyTooLarge { .. } | BatchError::Decompress(_)),
                "{name}: {err}"
            );
            if name.starts_with("declared") {
                assert!(matches!(err, BatchError::BodyTooLarge { .. }), "{name}: {err}");
            }
        }
        // The crafted frame is well formed apart from its claim.
        assert_eq!(
            zstd::bulk::decompress(&zstd_frame_claiming(3, b"abc"), 3).unwrap(),
            b"abc"
        );
        // The untouched body still opens under the same limits.
        let good = with_body(
            &sample(3, Compression::Zstd),
            &[&(archive.len() as u32).to_le_bytes()[..], &frame].concat(),
        );
        assert!(validate(&good, &limits).is_ok());
    }

    /// A single-segment zstd frame whose header claims `content_size` bytes
    /// and whose one raw block holds `data`.
    fn zstd_frame_claiming(content_size: u64, data: &[u8]) -> Vec<u8> {
        let mut f = 0xFD2F_B528u32.to_le_bytes().to_vec();
        f.push(0b1110_0000); // 8-byte content size, single segment, no checksum
        f.extend_from_slice(&content_size.to_le_bytes());
        let block_header = ((data.len() as u32) << 3) | 1; // raw block, last
        f.extend_from_slice(&block_header.to_le_bytes()[..3]);
        f.extend_from_slice(data);
        f
    }

    /// `batch` with its body replaced by `body` and the lengths and CRC
    /// fixed, so that only the body's own checks can refuse it.
    fn with_body(batch: &[u8], body: &[u8]) -> AlignedVec<16> {
        let mut h = BatchHeader::parse(batch).unwrap();
        let len = padded_len(BATCH_HEADER_LEN + body.len());
        let mut out = AlignedVec::<16>::with_capacity(len);
        out.resize(len, 0);
        h.batch_len = len as u32;
        h.body_len = body.len() as u32;
        h.write(&mut out[..BATCH_HEADER_LEN]);
        out[BATCH_HEADER_LEN..BATCH_HEADER_LEN + body.len()].copy_from_slice(body);
        let crc = compute_crc(&out);
        out[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Patching broker fields keeps the CRC valid.
    #[test]
    fn patch_keeps_crc() {
        let mut batch = sample(3, Compression::None);
        patch(&mut batch, 42, 7, 123);
        let h = validate(&batch, &BatchLimits::default()).unwrap();
        assert_eq!((h.base_offset, h.leader_epoch, h.append_time_ms), (42, 7, 123));
        assert_eq!(h.last_offset(), 44);
    }

    /// Any single flipped byte after the patched fields is detected.
    #[test]
    fn flipped_byte_rejected() {
        let batch = sample(4, Compression::None);
        for i in CRC_POS..batch.len() {
            let mut b = batch.clone();
            b[i] ^= 0x40;
            assert!(
                validate(&b, &BatchLimits::default()).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    quickcheck! {
        fn never_panics(bytes: Vec<u8>) -> TestResult {
            let _ = validate(&bytes, &BatchLimits::default());
            let _ = BatchIter::new(&bytes, BatchLimits::default()).count();
            TestResult::passed()
        }

        /// Random bodies behind a valid zstd header never panic and never
        /// open as records unless they really are an archive.
        fn zstd_random_body_never_panics(body: Vec<u8>, declared: u16) -> TestResult {
            let limits = BatchLimits { body_uncompressed_max: 1 << 16, ..BatchLimits::default() };
            let mut b = u32::from(declared).to_le_bytes().to_vec();
            b.extend_from_slice(&body);
            let batch = with_body(&sample(1, Compression::Zstd), &b);
            let _ = validate(&batch, &limits);
            TestResult::passed()
        }
    }

    /// Batches laid end to end iterate in order; a cut tail reports Truncated.
    #[test]
    fn iterate_concatenated() {
        let mut buf = Vec::new();
        for n in 1..4 {
            buf.extend_from_slice(&sample(n, Compression::None));
        }
        let all: Vec<_> = BatchIter::new(&buf, BatchLimits::default())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(all.len(), 3);
        let cut = &buf[..buf.len() - 5];
        let last = BatchIter::new(cut, BatchLimits::default()).last().unwrap();
        assert!(matches!(last, Err(BatchError::Truncated { .. })));
    }
}
