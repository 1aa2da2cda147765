//! Kafka RecordBatch v2 (magic 2) ↔ Shoal batches.
//!
//! Produce: a Kafka batch is validated once, at the edge
//! ([`open_produced_batch`]: framing, CRC, attributes, decompression under
//! a cap), its records are decoded as [`RecordRef`]s that borrow every key,
//! value and header from the request's bytes ([`ProducedBatch::records`]),
//! and the Shoal batch is archived from them straight into one pre-sized
//! buffer ([`ProducedRecords::to_shoal_batch`], through
//! [`batch::build_borrowed`]); [`convert_produced_batch`] does the three.
//! Nothing is allocated per record: the batch's records, its headers and the
//! output are one vector each. Fetch: a stored Shoal batch is encoded as
//! one uncompressed Kafka batch ([`encode_shoal_batch`]) into an output
//! reserved once for the batch's exact size, from the validated archive,
//! with no allocation per record. The two formats differ in their record encoding
//! (Kafka's varint records vs Shoal's rkyv archive), so both directions
//! re-encode; `benches/kafka_records.rs` measures what that costs.
//!
//! # Kafka RecordBatch v2
//!
//! Big-endian. The header is [`KAFKA_BATCH_HEADER_LEN`] = 61 bytes:
//!
//! | off | len | field                  | notes                                                     |
//! |----:|----:|------------------------|-----------------------------------------------------------|
//! |   0 |   8 | `base_offset`          | the producer sends 0; the broker assigns                   |
//! |   8 |   4 | `batch_length`         | bytes after this field                                    |
//! |  12 |   4 | `partition_leader_epoch` | we send −1 (no OffsetForLeaderEpoch)                    |
//! |  16 |   1 | `magic`                | 2                                                         |
//! |  17 |   4 | `crc`                  | CRC-32C of bytes `[21, end)`                              |
//! |  21 |   2 | `attributes`           | bits 0–2 codec, 3 log-append time, 4 transactional, 5 control, 6 delete horizon |
//! |  23 |   4 | `last_offset_delta`    | record count − 1                                          |
//! |  27 |   8 | `base_timestamp`       | record timestamps are deltas from it (may be negative)    |
//! |  35 |   8 | `max_timestamp`        | the log-append time when bit 3 is set                     |
//! |  43 |   8 | `producer_id`          | −1 = not idempotent                                        |
//! |  51 |   2 | `producer_epoch`       |                                                           |
//! |  53 |   4 | `base_sequence`        | sequence of the first record                              |
//! |  57 |   4 | `record_count`         |                                                           |
//! |  61 |   … | records                | compressed as a whole when bits 0–2 are set               |
//!
//! A record: `length` (zigzag varint, bytes after it), `attributes` (i8,
//! unused), `timestamp_delta` (zigzag varlong), `offset_delta` (zigzag
//! varint), key and value (zigzag varint length, −1 = null, then bytes),
//! header count (varint) and headers (key: length and UTF-8 bytes; value:
//! length, −1 = null, and bytes).
//!
//! # Mapping
//!
//! - Offsets: record `i` of a Shoal batch has offset `base_offset + i`, so
//!   a produced batch must have `offset_delta == i` for every record (Kafka's
//!   broker requires the same).
//! - Timestamps: Kafka create times become Shoal create times; a Shoal batch
//!   keeps them as u32 millisecond deltas from the smallest, so a batch whose
//!   timestamps span more than about 49.7 days is refused rather than
//!   clamped. Fetch answers in create time, or log-append time (Shoal's
//!   `append_time_ms`) if the caller asks.
//! - Idempotent producers: Kafka's producer id is an i64 with −1 for none,
//!   Shoal's a u64 with 0 for none; Shoal id = Kafka id + 1 (so Kafka's id 0
//!   is representable), epoch and base sequence carried as they are. The
//!   partition service deduplicates on them as it does for Shoal producers.
//! - Kafka header values may be null; Shoal's may not, so a null header
//!   value is stored (and fetched back) as an empty one. Header keys must be
//!   UTF-8, as the Java client requires.
//! - Transactional and control batches are refused (Shoal has no
//!   transactions).
//!
//! Fetch batches are sent uncompressed: the fetch path re-encodes anyway,
//! and compressing again would spend broker CPU on every read to save bytes
//! on the wire; a compressed fetch is a later option ([`record_compression::compress`]
//! exists for it).
//!
//! # Untrusted bytes
//!
//! [`open_produced_batch`] checks the batch length against
//! [`RecordLimits`] and the CRC before it looks at a record and decompresses
//! under a cap; [`ProducedBatch::records`] bounds the record vector by the
//! bytes present and reads every length against the bytes that remain.
//! Neither panics.
//!
//! [`record_compression::compress`]: super::record_compression::compress

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use shoal_protocol::batch::{
    self, BatchHeader, BatchLimits, Compression, HeaderRef, ProducerInfo, RecordRef, BATCH_LEN_MAX,
    BATCH_RECORDS_MAX,
};

use super::error::KafkaError;
use super::record_compression::{decompress, KafkaCompression};

/// Size of the RecordBatch v2 header.
pub const KAFKA_BATCH_HEADER_LEN: usize = 61;
/// The only batch format accepted (produce v3+ carries nothing else).
pub const KAFKA_MAGIC: i8 = 2;
/// Where the CRC-covered bytes start.
const CRC_START: usize = 21;
/// `base_offset` and `batch_length`: the bytes `batch_length` does not count.
const LOG_OVERHEAD: usize = 12;
const ATTR_TIMESTAMP_LOG_APPEND: i16 = 1 << 3;
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;
/// The smallest record: length, attributes, timestamp delta, offset delta,
/// key length, value length and header count, one byte each.
const RECORD_LEN_MIN: usize = 7;
/// Widest span of create times one Shoal batch can hold.
pub const TIMESTAMP_SPAN_MAX_MS: i64 = u32::MAX as i64;

/// Limits applied to a produced Kafka batch before it is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// Largest batch on the wire (compressed), header included.
    pub batch_len_max: usize,
    /// Largest record set once decompressed.
    pub records_len_max: usize,
    /// Most records in one batch.
    pub records_max: u32,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            batch_len_max: BATCH_LEN_MAX,
            records_len_max: BATCH_LEN_MAX,
            records_max: BATCH_RECORDS_MAX,
        }
    }
}

/// The header of a Kafka RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaBatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

impl KafkaBatchHeader {
    /// Reads the header fields from the first 61 bytes; checks nothing.
    pub fn parse(b: &[u8]) -> Result<Self, KafkaError> {
        if b.len() < KAFKA_BATCH_HEADER_LEN {
            return Err(KafkaError::CorruptBatch(format!(
                "{} bytes, shorter than the {KAFKA_BATCH_HEADER_LEN}-byte batch header",
                b.len()
            )));
        }
        Ok(KafkaBatchHeader {
            base_offset: i64::from_be_bytes(be(b, 0)),
            batch_length: i32::from_be_bytes(be(b, 8)),
            partition_leader_epoch: i32::from_be_bytes(be(b, 12)),
            magic: b[16] as i8,
            crc: u32::from_be_bytes(be(b, 17)),
            attributes: i16::from_be_bytes(be(b, 21)),
            last_offset_delta: i32::from_be_bytes(be(b, 23)),
            base_timestamp: i64::from_be_bytes(be(b, 27)),
            max_timestamp: i64::from_be_bytes(be(b, 35)),
            producer_id: i64::from_be_bytes(be(b, 43)),
            producer_epoch: i16::from_be_bytes(be(b, 51)),
            base_sequence: i32::from_be_bytes(be(b, 53)),
            record_count: i32::from_be_bytes(be(b, 57)),
        })
    }

    /// The header's 61 bytes (with the CRC as given).
    pub fn to_bytes(&self) -> [u8; KAFKA_BATCH_HEADER_LEN] {
        let mut out = [0u8; KAFKA_BATCH_HEADER_LEN];
        let mut w = &mut out[..];
        w.put_i64(self.base_offset);
        w.put_i32(self.batch_length);
        w.put_i32(self.partition_leader_epoch);
        w.put_i8(self.magic);
        w.put_u32(self.crc);
        w.put_i16(self.attributes);
        w.put_i32(self.last_offset_delta);
        w.put_i64(self.base_timestamp);
        w.put_i64(self.max_timestamp);
        w.put_i64(self.producer_id);
        w.put_i16(self.producer_epoch);
        w.put_i32(self.base_sequence);
        w.put_i32(self.record_count);
        out
    }

    pub fn compression(&self) -> Result<KafkaCompression, KafkaError> {
        KafkaCompression::from_attributes(self.attributes)
    }
}

/// A produced Kafka batch whose framing, CRC and attributes passed, with
/// its records section ready to decode: borrowed from the request when it
/// was sent uncompressed, decompressed (under the cap) otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducedBatch<'a> {
    pub header: KafkaBatchHeader,
    pub compression: KafkaCompression,
    /// The producer identity mapped to Shoal's (all zero: not idempotent).
    pub producer: ProducerInfo,
    records: Cow<'a, [u8]>,
}

impl ProducedBatch<'_> {
    /// Decodes every record, borrowing its key, value and headers from the
    /// batch: nothing is allocated per record.
    pub fn records(&self) -> Result<ProducedRecords<'_>, KafkaError> {
        let records = decode_records(&self.header, &self.records)?;
        check_timestamp_span(&records.records)?;
        Ok(records)
    }

    /// The Shoal batch holding these records and the producer identity,
    /// compressed as [`shoal_compression_for`] says, built in one buffer.
    pub fn to_shoal_batch(&self) -> Result<Vec<u8>, KafkaError> {
        self.to_shoal_batch_as(shoal_compression_for(self.compression))
    }

    /// [`Self::to_shoal_batch`] with the Shoal codec given.
    pub fn to_shoal_batch_as(&self, compression: Compression) -> Result<Vec<u8>, KafkaError> {
        self.records()?.to_shoal_batch(compression, self.producer)
    }
}

/// The records of a [`ProducedBatch`], pointing into its bytes. The
/// headers of all records share one vector; each record knows its span.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducedRecords<'a> {
    /// Every record, its `headers` left empty (they are in `headers`).
    records: Vec<RecordRef<'a>>,
    headers: Vec<HeaderRef<'a>>,
    /// Each record's headers: `headers[span.0..span.1]`.
    header_spans: Vec<(u32, u32)>,
}

impl ProducedRecords<'_> {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record with its headers.
    pub fn iter(&self) -> impl Iterator<Item = RecordRef<'_>> + '_ {
        self.records
            .iter()
            .zip(&self.header_spans)
            .map(|(r, &(from, to))| RecordRef {
                headers: &self.headers[from as usize..to as usize],
                ..*r
            })
    }

    /// Builds the Shoal batch: one pre-sized buffer, the records archived
    /// from where they lie ([`batch::build_borrowed`]).
    pub fn to_shoal_batch(
        &self,
        compression: Compression,
        producer: ProducerInfo,
    ) -> Result<Vec<u8>, KafkaError> {
        let built = if self.headers.is_empty() {
            batch::build_borrowed(&self.records, compression, producer)
        } else {
            let with_headers: Vec<RecordRef<'_>> = self.iter().collect();
            batch::build_borrowed(&with_headers, compression, producer)
        };
        Ok(built?)
    }
}

/// The Shoal codec a Kafka batch is stored with when the topic does not say:
/// uncompressed stays uncompressed, every compressed codec becomes lz4.
/// The broker has to compress again (Shoal's body is not Kafka's), and on
/// this project's machines zstd level 3 ran at about 220 MB/s of records per
/// core against lz4's 500 MB/s (`benches/kafka_records.rs`), so zstd's
/// smaller footprint (about a sixth here) is left to topics that ask for it.
pub fn shoal_compression_for(codec: KafkaCompression) -> Compression {
    match codec {
        KafkaCompression::None => Compression::None,
        KafkaCompression::Gzip
        | KafkaCompression::Snappy
        | KafkaCompression::Lz4
        | KafkaCompression::Zstd => Compression::Lz4,
    }
}

/// Kafka's producer identity as Shoal's: −1 (none) → all zero; an id `p ≥ 0`
/// → `p + 1`, with a non-negative epoch and base sequence.
pub fn shoal_producer(
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<ProducerInfo, KafkaError> {
    if producer_id == -1 {
        return Ok(ProducerInfo::default());
    }
    if producer_id < -1 || producer_epoch < 0 || base_sequence < 0 {
        return Err(KafkaError::CorruptBatch(format!(
            "producer id {producer_id}, epoch {producer_epoch}, base sequence {base_sequence}"
        )));
    }
    Ok(ProducerInfo {
        producer_id: producer_id as u64 + 1,
        producer_epoch: producer_epoch as u16,
        base_sequence: base_sequence as u32,
    })
}

/// Shoal's producer identity as Kafka's (the inverse of [`shoal_producer`]):
/// `(producer_id, producer_epoch, base_sequence)`, all −1 for none.
pub fn kafka_producer(header: &BatchHeader) -> (i64, i16, i32) {
    if header.producer_id == 0 {
        return (-1, -1, -1);
    }
    (
        header.producer_id.wrapping_sub(1) as i64,
        header.producer_epoch as i16,
        header.base_sequence as i32,
    )
}

/// Validates the records field of one produce partition (exactly one
/// RecordBatch v2, as Kafka requires for produce v3+): framing, CRC,
/// attributes and producer identity, then decompresses its records section
/// under the cap. [`ProducedBatch::records`] decodes the records.
pub fn open_produced_batch<'a>(
    bytes: &'a [u8],
    limits: &RecordLimits,
) -> Result<ProducedBatch<'a>, KafkaError> {
    let header = KafkaBatchHeader::parse(bytes)?;
    check_framing(&header, bytes.len(), limits)?;
    let actual = crc32c::crc32c(&bytes[CRC_START..]);
    if actual != header.crc {
        return Err(KafkaError::CrcMismatch {
            expected: header.crc,
            actual,
        });
    }
    if header.attributes & (ATTR_TRANSACTIONAL | ATTR_CONTROL) != 0 {
        let what = if header.attributes & ATTR_CONTROL != 0 {
            "a control batch"
        } else {
            "a transactional batch"
        };
        return Err(KafkaError::UnsupportedBatch(what));
    }
    let compression = header.compression()?;
    let producer = shoal_producer(header.producer_id, header.producer_epoch, header.base_sequence)?;
    let body = &bytes[KAFKA_BATCH_HEADER_LEN..];
    let records = match compression {
        KafkaCompression::None => Cow::Borrowed(body),
        codec => Cow::Owned(decompress(codec, body, limits.records_len_max)?),
    };
    Ok(ProducedBatch {
        header,
        compression,
        producer,
        records,
    })
}

/// One produce partition's records field as the Shoal batch to append:
/// [`open_produced_batch`], [`ProducedBatch::records`], then
/// [`ProducedRecords::to_shoal_batch`] with the codec
/// [`shoal_compression_for`] picks.
pub fn convert_produced_batch(bytes: &[u8], limits: &RecordLimits) -> Result<Vec<u8>, KafkaError> {
    open_produced_batch(bytes, limits)?.to_shoal_batch()
}

/// Length, magic and record-count checks, before the CRC is computed.
fn check_framing(header: &KafkaBatchHeader, have: usize, limits: &RecordLimits) -> Result<(), KafkaError> {
    if header.magic != KAFKA_MAGIC {
        return Err(KafkaError::UnsupportedMagic(header.magic));
    }
    let len = i64::from(header.batch_length) + LOG_OVERHEAD as i64;
    if len < KAFKA_BATCH_HEADER_LEN as i64 || len as usize != have {
        return Err(KafkaError::CorruptBatch(format!(
            "batch length {} does not match the {have} bytes sent (exactly one batch per partition)",
            header.batch_length
        )));
    }
    if have > limits.batch_len_max {
        return Err(KafkaError::BatchTooLarge {
            what: "batch bytes",
            len: have,
            max: limits.batch_len_max,
        });
    }
    let count = header.record_count;
    if count < 1 || count as u32 > limits.records_max {
        return Err(KafkaError::BatchTooLarge {
            what: "record count",
            len: count.max(0) as usize,
            max: limits.records_max as usize,
        });
    }
    if header.last_offset_delta != count - 1 {
        return Err(KafkaError::CorruptBatch(format!(
            "last offset delta {} with {count} records",
            header.last_offset_delta
        )));
    }
    Ok(())
}

fn check_timestamp_span(records: &[RecordRef<'_>]) -> Result<(), KafkaError> {
    let first = records.iter().map(|r| r.timestamp_ms).min().unwrap_or(0);
    let last = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
    let span_ms = last.saturating_sub(first);
    if span_ms > TIMESTAMP_SPAN_MAX_MS {
        return Err(KafkaError::TimestampSpan {
            span_ms,
            max_ms: TIMESTAMP_SPAN_MAX_MS,
        });
    }
    Ok(())
}

/// Decodes the (uncompressed) records of a batch whose header says
/// `record_count`; every record's offset delta must be its index.
fn decode_records<'a>(header: &KafkaBatchHeader, body: &'a [u8]) -> Result<ProducedRecords<'a>, KafkaError> {
    let count = header.record_count as usize;
    if count > body.len() / RECORD_LEN_MIN {
        return Err(KafkaError::CorruptBatch(format!(
            "{count} records cannot fit in {} bytes",
            body.len()
        )));
    }
    let mut reader = Reader { buf: body, pos: 0 };
    let mut out = ProducedRecords {
        records: Vec::with_capacity(count),
        headers: Vec::new(),
        header_spans: Vec::with_capacity(count),
    };
    for index in 0..count {
        let from = out.headers.len() as u32;
        let record = reader
            .record(header.base_timestamp, index, &mut out.headers)
            .map_err(|e| KafkaError::CorruptBatch(format!("record {index} at byte {}: {e}", reader.pos)))?;
        out.records.push(record);
        out.header_spans.push((from, out.headers.len() as u32));
    }
    if reader.pos != body.len() {
        return Err(KafkaError::CorruptBatch(format!(
            "{} bytes after the last of {count} records",
            body.len() - reader.pos
        )));
    }
    Ok(out)
}

/// A cursor over record bytes; every read checks the bytes that remain.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, &'static str> {
        let b = *self.buf.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(b)
    }

    /// A zigzag varint of at most `max_bytes` bytes.
    fn zigzag(&mut self, max_bytes: u32) -> Result<i64, &'static str> {
        let mut raw: u64 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err("varint too long")
    }

    fn varint(&mut self) -> Result<i32, &'static str> {
        let v = self.zigzag(5)?;
        i32::try_from(v).map_err(|_| "varint over i32")
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        if len > self.buf.len() - self.pos {
            return Err("length runs past the end");
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    /// Length-prefixed bytes; −1 is null.
    fn nullable(&mut self) -> Result<Option<&'a [u8]>, &'static str> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < -1 => Err("negative length"),
            n => self.take(n as usize).map(Some),
        }
    }

    /// One record, its headers appended to `headers` (the record's own
    /// `headers` stay empty: [`ProducedRecords`] keeps the spans).
    fn record(
        &mut self,
        base_timestamp: i64,
        index: usize,
        headers: &mut Vec<HeaderRef<'a>>,
    ) -> Result<RecordRef<'a>, &'static str> {
        let len = self.varint()?;
        if len < 1 || len as usize > self.buf.len() - self.pos {
            return Err("record length out of range");
        }
        let end = self.pos + len as usize;
        let _attributes = self.byte()?;
        let timestamp_delta = self.zigzag(10)?;
        let offset_delta = self.varint()?;
        if offset_delta as i64 != index as i64 {
            return Err("offset delta is not the record's index");
        }
        let key = self.nullable()?;
        let value = self.nullable()?;
        let header_count = self.varint()?;
        if header_count < 0 || header_count as usize > (end.saturating_sub(self.pos)) / 2 {
            return Err("header count out of range");
        }
        for _ in 0..header_count {
            let key = self.nullable()?.ok_or("null header key")?;
            let key = std::str::from_utf8(key).map_err(|_| "header key is not UTF-8")?;
            let value = self.nullable()?.unwrap_or_default();
            headers.push(HeaderRef { key, value });
        }
        if self.pos != end {
            return Err("record length does not match its fields");
        }
        Ok(RecordRef {
            timestamp_ms: base_timestamp
                .checked_add(timestamp_delta)
                .ok_or("timestamp overflows")?,
            key,
            value,
            headers: &[],
            message_id: None,
        })
    }
}

/// Which time a fetched Kafka batch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's create times (Kafka's default).
    #[default]
    CreateTime,
    /// The broker's append time for every record of the batch.
    LogAppendTime,
}

/// What [`encode_shoal_batch`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedBatch {
    pub base_offset: u64,
    pub record_count: u32,
    /// Bytes appended to the output.
    pub len: usize,
}

/// Appends one stored Shoal batch (validated: CRC and archive) to `out` as
/// an uncompressed Kafka RecordBatch v2 with the same offsets. The batch's
/// exact encoded size is reserved in `out` before anything is written, so
/// `out` grows at most once. On error nothing is appended.
pub fn encode_shoal_batch(
    shoal: &[u8],
    limits: &BatchLimits,
    timestamps: TimestampType,
    out: &mut BytesMut,
) -> Result<EncodedBatch, KafkaError> {
    let start = out.len();
    let (header, ()) = batch::validate_with(shoal, limits, |records| {
        let records_len: usize = records
            .iter()
            .enumerate()
            .map(|(i, r)| RecordShape::of(i as i32, r).len_on_wire())
            .sum();
        out.reserve(KAFKA_BATCH_HEADER_LEN + records_len);
        out.put_bytes(0, KAFKA_BATCH_HEADER_LEN);
        for (i, r) in records.iter().enumerate() {
            put_record(out, RecordShape::of(i as i32, r), r);
        }
    })?;
    let len = out.len() - start;
    let Ok(batch_length) = i32::try_from(len - LOG_OVERHEAD) else {
        out.truncate(start);
        return Err(KafkaError::Encode(format!("a Kafka batch of {len} bytes")));
    };
    let (producer_id, producer_epoch, base_sequence) = kafka_producer(&header);
    let (attributes, max_timestamp) = match timestamps {
        TimestampType::CreateTime => (0, header.max_timestamp_ms),
        TimestampType::LogAppendTime => (ATTR_TIMESTAMP_LOG_APPEND, header.append_time_ms),
    };
    let kafka = KafkaBatchHeader {
        base_offset: header.base_offset as i64,
        batch_length,
        partition_leader_epoch: -1,
        magic: KAFKA_MAGIC,
        crc: 0,
        attributes,
        last_offset_delta: header.record_count as i32 - 1,
        base_timestamp: header.first_timestamp_ms,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        record_count: header.record_count as i32,
    };
    let head = &mut out[start..start + KAFKA_BATCH_HEADER_LEN];
    head.copy_from_slice(&kafka.to_bytes());
    let crc = crc32c::crc32c(&out[start + CRC_START..]);
    out[start + 17..start + CRC_START].copy_from_slice(&crc.to_be_bytes());
    Ok(EncodedBatch {
        base_offset: header.base_offset,
        record_count: header.record_count,
        len,
    })
}

/// Appends every Shoal batch laid end to end in `batches` (a fetch read) to
/// `out` as Kafka batches. Returns the batches written. Each batch's CRC is
/// checked once, by [`encode_shoal_batch`]'s validation; the walk over the
/// read only checks framing.
pub fn encode_shoal_batches(
    batches: &[u8],
    limits: &BatchLimits,
    timestamps: TimestampType,
    out: &mut BytesMut,
) -> Result<Vec<EncodedBatch>, KafkaError> {
    let mut written = Vec::new();
    let mut rest = batches;
    while !rest.is_empty() {
        let (_, len) = batch::peek(rest, limits)?;
        let (one, tail) = rest.split_at(len);
        written.push(encode_shoal_batch(one, limits, timestamps, out)?);
        rest = tail;
    }
    Ok(written)
}

/// The varint fields of one record in Kafka's format, and the lengths that
/// follow from them.
#[derive(Clone, Copy)]
struct RecordShape<'r> {
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&'r [u8]>,
    value: Option<&'r [u8]>,
    /// Bytes after the record's length prefix.
    body_len: usize,
}

impl<'r> RecordShape<'r> {
    fn of(offset_delta: i32, r: &'r batch::ArchivedRecord) -> Self {
        let key = r.key.as_ref().map(|k| k.as_slice());
        let value = r.value.as_ref().map(|v| v.as_slice());
        let timestamp_delta = i64::from(r.timestamp_delta_ms.to_native());
        let headers_len: usize = r
            .headers
            .iter()
            .map(|h| nullable_len(Some(h.key.as_bytes())) + nullable_len(Some(h.value.as_slice())))
            .sum();
        let body_len = 1
            + zigzag_len(timestamp_delta)
            + zigzag_len(i64::from(offset_delta))
            + nullable_len(key)
            + nullable_len(value)
            + zigzag_len(r.headers.len() as i64)
            + headers_len;
        RecordShape {
            offset_delta,
            timestamp_delta,
            key,
            value,
            body_len,
        }
    }

    /// The whole record: its length prefix and its body.
    fn len_on_wire(&self) -> usize {
        zigzag_len(self.body_len as i64) + self.body_len
    }
}

/// The longest zigzag varint: a 64-bit value in 7-bit groups.
const ZIGZAG_LEN_MAX: usize = 10;

/// Up to four varints and a byte, gathered on the stack so they reach the
/// output in one copy (a record's length, attributes, timestamp delta,
/// offset delta and key length).
struct Prefix {
    bytes: [u8; 4 * ZIGZAG_LEN_MAX + 1],
    len: usize,
}

impl Prefix {
    fn zigzag(&mut self, v: i64) {
        let mut raw = ((v << 1) ^ (v >> 63)) as u64;
        while raw >= 0x80 {
            self.bytes[self.len] = (raw as u8) | 0x80;
            self.len += 1;
            raw >>= 7;
        }
        self.bytes[self.len] = raw as u8;
        self.len += 1;
    }
}

fn put_zigzag(out: &mut BytesMut, v: i64) {
    let mut prefix = Prefix {
        bytes: [0; 4 * ZIGZAG_LEN_MAX + 1],
        len: 0,
    };
    prefix.zigzag(v);
    out.put_slice(&prefix.bytes[..prefix.len]);
}

fn zigzag_len(v: i64) -> usize {
    let raw = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (raw | 1).leading_zeros() as usize).div_ceil(7)
}

fn nullable_len(b: Option<&[u8]>) -> usize {
    match b {
        None => zigzag_len(-1),
        Some(b) => zigzag_len(b.len() as i64) + b.len(),
    }
}

fn put_nullable(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_zigzag(out, -1),
        Some(b) => {
            put_zigzag(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}

/// Appends one record in Kafka's record format: the fields up to the key's
/// length in one copy, then the key, the value and the headers.
fn put_record(out: &mut BytesMut, shape: RecordShape<'_>, r: &batch::ArchivedRecord) {
    let mut prefix = Prefix {
        bytes: [0; 4 * ZIGZAG_LEN_MAX + 1],
        len: 0,
    };
    prefix.zigzag(shape.body_len as i64);
    prefix.bytes[prefix.len] = 0; // attributes
    prefix.len += 1;
    prefix.zigzag(shape.timestamp_delta);
    prefix.zigzag(i64::from(shape.offset_delta));
    prefix.zigzag(shape.key.map_or(-1, |k| k.len() as i64));
    out.put_slice(&prefix.bytes[..prefix.len]);
    out.put_slice(shape.key.unwrap_or_default());
    put_nullable(out, shape.value);
    put_zigzag(out, r.headers.len() as i64);
    for h in r.headers.iter() {
        put_nullable(out, Some(h.key.as_bytes()));
        put_nullable(out, Some(h.value.as_slice()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression as KpCompression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType as KpTimestampType,
    };
    use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

    const CODECS: [KafkaCompression; 5] = [
        KafkaCompression::None,
        KafkaCompression::Gzip,
        KafkaCompression::Snappy,
        KafkaCompression::Lz4,
        KafkaCompression::Zstd,
    ];

    fn kp_codec(c: KafkaCompression) -> KpCompression {
        match c {
            KafkaCompression::None => KpCompression::None,
            KafkaCompression::Gzip => KpCompression::Gzip,
            KafkaCompression::Snappy => KpCompression::Snappy,
            KafkaCompression::Lz4 => KpCompression::Lz4,
            KafkaCompression::Zstd => KpCompression::Zstd,
        }
    }

    /// One record as a test writes it.
    #[derive(Debug, Clone, PartialEq)]
    struct Rec {
        timestamp: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
    }

    /// Producer identity of a test batch: (id, epoch, base sequence).
    type Producer = Option<(i64, i16, i32)>;

    /// The batch kafka-protocol (an independent implementation, with zlib,
    /// xerial snappy, liblz4 and zstd) encodes for `recs`.
    fn kafka_batch(recs: &[Rec], codec: KafkaCompression, producer: Producer) -> Bytes {
        let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
        let records: Vec<KpRecord> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| KpRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: KpTimestampType::Creation,
                offset: i as i64,
                // kafka-protocol starts a new batch wherever offset minus
                // sequence changes, so a producer without sequences still
                // counts them up (it writes base sequence 0; the id is −1).
                sequence: seq.max(0) + i as i32,
                timestamp: r.timestamp,
                key: r.key.clone().map(Bytes::from),
                value: r.value.clone().map(Bytes::from),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), Some(Bytes::from(v.clone()))))
                    .collect::<IndexMap<_, _>>(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: kp_codec(codec),
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).expect("kafka-protocol encodes");
        buf.freeze()
    }

    /// What kafka-protocol reads back from Kafka batch bytes.
    fn kafka_decode(bytes: &[u8]) -> Vec<KpRecord> {
        let mut buf = Bytes::copy_from_slice(bytes);
        let mut out = Vec::new();
        for set in RecordBatchDecoder::decode_all(&mut buf).expect("kafka-protocol decodes") {
            out.extend(set.records);
        }
        out
    }

    fn as_rec(r: RecordRef<'_>) -> Rec {
        Rec {
            timestamp: r.timestamp_ms,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r
                .headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.to_vec()))
                .collect(),
        }
    }

    /// Everything the produce path checks and decodes, as test records.
    fn decode_all(bytes: &[u8], limits: &RecordLimits) -> Result<Vec<Rec>, KafkaError> {
        let produced = open_produced_batch(bytes, limits)?;
        let records = produced.records()?;
        Ok(records.iter().map(as_rec).collect())
    }

    /// The Shoal batch the produce path makes of `wire`, stored as `codec`.
    fn to_shoal(wire: &[u8], codec: Compression) -> Vec<u8> {
        open_produced_batch(wire, &RecordLimits::default())
            .expect("opens")
            .to_shoal_batch_as(codec)
            .expect("converts")
    }

    fn kp_as_rec(r: &KpRecord) -> Rec {
        Rec {
            timestamp: r.timestamp,
            key: r.key.as_ref().map(|b| b.to_vec()),
            value: r.value.as_ref().map(|b| b.to_vec()),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_ref().map(|b| b.to_vec()).unwrap_or_default()))
                .collect(),
        }
    }

    fn sample(n: usize) -> Vec<Rec> {
        (0..n)
            .map(|i| Rec {
                timestamp: 1_700_000_000_000 + (i as i64 * 7) % 50,
                key: (i % 3 != 0).then(|| format!("key-{i}").into_bytes()),
                value: (i % 5 != 4).then(|| vec![i as u8; 10 + i % 90]),
                headers: (0..i % 3).map(|h| (format!("h{h}"), vec![h as u8; h])).collect(),
            })
            .collect()
    }

    /// Kafka → Shoal → Kafka through one chain: kafka-protocol encodes with
    /// `codec`, we decode and build a Shoal batch with `shoal_codec`, the
    /// broker patches offsets, we encode a Kafka batch, kafka-protocol
    /// decodes it. Returns what came out the far end.
    fn through_shoal(
        recs: &[Rec],
        codec: KafkaCompression,
        shoal_codec: Compression,
        producer: Producer,
    ) -> Vec<KpRecord> {
        let wire = kafka_batch(recs, codec, producer);
        let produced = open_produced_batch(&wire, &RecordLimits::default()).expect("our decoder accepts");
        assert_eq!(produced.compression, codec);
        let decoded = produced.records().expect("records decode");
        assert_eq!(decoded.iter().map(as_rec).collect::<Vec<_>>(), recs);
        let mut shoal = decoded
            .to_shoal_batch(shoal_codec, produced.producer)
            .expect("shoal batch");
        batch::patch(&mut shoal, 1000, 3, 1_800_000_000_000);
        let mut out = BytesMut::new();
        let written = encode_shoal_batch(
            &shoal,
            &BatchLimits::default(),
            TimestampType::CreateTime,
            &mut out,
        )
        .unwrap();
        assert_eq!(written.len, out.len());
        assert_eq!(
            (written.base_offset, written.record_count),
            (1000, recs.len() as u32)
        );
        // Our own decoder reads our own encoding too.
        let again = decode_all(&out, &RecordLimits::default()).expect("our encoding decodes");
        assert_eq!(again, recs);
        kafka_decode(&out)
    }

    /// Every Kafka codec, every Shoal codec, with and without an idempotent
    /// producer: records, offsets, timestamps and producer identity survive.
    #[test]
    fn codecs_and_producers_round_trip() {
        let recs = sample(40);
        for codec in CODECS {
            for shoal_codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
                for producer in [None, Some((0, 0, 0)), Some((41, 3, 1000))] {
                    let out = through_shoal(&recs, codec, shoal_codec, producer);
                    assert_eq!(
                        out.iter().map(kp_as_rec).collect::<Vec<_>>(),
                        recs,
                        "{codec:?} {shoal_codec:?}"
                    );
                    for (i, r) in out.iter().enumerate() {
                        assert_eq!(r.offset, 1000 + i as i64);
                        assert_eq!(r.timestamp_type, KpTimestampType::Creation);
                        let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
                        assert_eq!((r.producer_id, r.producer_epoch), (pid, epoch));
                        if seq >= 0 {
                            assert_eq!(r.sequence, seq + i as i32);
                        }
                    }
                }
            }
        }
    }

    /// The producer identity is what the Shoal header carries: id + 1,
    /// epoch and base sequence; none is all zero.
    #[test]
    fn producer_mapping() {
        assert_eq!(shoal_producer(-1, -1, -1).unwrap(), ProducerInfo::default());
        let p = shoal_producer(0, 0, 0).unwrap();
        assert_eq!((p.producer_id, p.producer_epoch, p.base_sequence), (1, 0, 0));
        let p = shoal_producer(i64::MAX, i16::MAX, i32::MAX).unwrap();
        assert_eq!(p.producer_id, 1 << 63);
        assert!(shoal_producer(-2, 0, 0).is_err());
        assert!(shoal_producer(5, -1, 0).is_err());
        assert!(shoal_producer(5, 0, -1).is_err());
        let wire = kafka_batch(&sample(3), KafkaCompression::None, Some((77, 2, 9)));
        let shoal = to_shoal(&wire, Compression::None);
        let header = BatchHeader::parse(&shoal).unwrap();
        assert_eq!(
            (header.producer_id, header.producer_epoch, header.base_sequence),
            (78, 2, 9)
        );
        assert_eq!(kafka_producer(&header), (77, 2, 9));
    }

    /// Log-append time: the fetched batch says so and carries Shoal's append
    /// time as its max timestamp, which is what Kafka clients then report.
    #[test]
    fn log_append_time() {
        let recs = sample(3);
        let wire = kafka_batch(&recs, KafkaCompression::None, None);
        let mut shoal = to_shoal(&wire, Compression::None);
        batch::patch(&mut shoal, 5, 0, 1_800_000_000_123);
        let mut out = BytesMut::new();
        encode_shoal_batch(
            &shoal,
            &BatchLimits::default(),
            TimestampType::LogAppendTime,
            &mut out,
        )
        .unwrap();
        let header = KafkaBatchHeader::parse(&out).unwrap();
        assert_eq!(
            header.attributes & ATTR_TIMESTAMP_LOG_APPEND,
            ATTR_TIMESTAMP_LOG_APPEND
        );
        assert_eq!(header.max_timestamp, 1_800_000_000_123);
        for r in kafka_decode(&out) {
            assert_eq!(r.timestamp_type, KpTimestampType::LogAppend);
        }
    }

    /// A batch written the way the Java client writes it (base timestamp =
    /// the first record's, so later deltas can be negative), with a null
    /// header value, decodes; the null value becomes empty.
    #[test]
    fn negative_deltas_and_null_header_value() {
        let mut body = BytesMut::new();
        let base = 1_700_000_000_000i64;
        for (i, delta) in [0i64, -5, 12].into_iter().enumerate() {
            let mut rec = BytesMut::new();
            rec.put_u8(0);
            put_zigzag(&mut rec, delta);
            put_zigzag(&mut rec, i as i64);
            put_nullable(&mut rec, Some(b"k"));
            put_nullable(&mut rec, None);
            put_zigzag(&mut rec, 1);
            put_nullable(&mut rec, Some(b"trace"));
            put_nullable(&mut rec, None);
            put_zigzag(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
        let wire = raw_batch(base, 3, 0, &body);
        let produced = decode_all(&wire, &RecordLimits::default()).unwrap();
        let ts: Vec<i64> = produced.iter().map(|r| r.timestamp).collect();
        assert_eq!(ts, vec![base, base - 5, base + 12]);
        assert_eq!(produced[1].value, None);
        assert_eq!(produced[2].headers[0].1, Vec::<u8>::new());
    }

    /// A Kafka batch around `records` (already encoded), with a valid CRC.
    fn raw_batch(base_timestamp: i64, count: i32, attributes: i16, records: &[u8]) -> Vec<u8> {
        let header = KafkaBatchHeader {
            base_offset: 0,
            batch_length: (KAFKA_BATCH_HEADER_LEN - LOG_OVERHEAD + records.len()) as i32,
            partition_leader_epoch: -1,
            magic: KAFKA_MAGIC,
            crc: 0,
            attributes,
            last_offset_delta: count - 1,
            base_timestamp,
            max_timestamp: base_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: count,
        };
        let mut out = header.to_bytes().to_vec();
        out.extend_from_slice(records);
        fix_crc(&mut out);
        out
    }

    fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    /// Any flipped bit in the CRC-covered bytes is caught; so is a changed
    /// magic or length. The base offset and leader epoch are not covered
    /// (the broker assigns them), as in Kafka.
    #[test]
    fn corruption_detected() {
        let wire = kafka_batch(&sample(5), KafkaCompression::None, None).to_vec();
        for i in 8..wire.len() {
            if (12..16).contains(&i) {
                continue;
            }
            let mut b = wire.clone();
            b[i] ^= 0x10;
            assert!(
                decode_all(&b, &RecordLimits::default()).is_err(),
                "flip at {i} accepted"
            );
        }
        let mut b = wire.clone();
        b[17] ^= 1;
        assert!(matches!(
            decode_all(&b, &RecordLimits::default()),
            Err(KafkaError::CrcMismatch { .. })
        ));
    }

    /// Hostile and unsupported batches are refused with the right class,
    /// before anything is allocated for their claims.
    #[test]
    fn hostile_batches_refused() {
        let limits = RecordLimits::default();
        let good = kafka_batch(&sample(4), KafkaCompression::None, None).to_vec();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            fix_crc(&mut b);
            decode_all(&b, &limits).unwrap_err()
        };
        let count = |n: i32| {
            move |b: &mut Vec<u8>| {
                b[57..61].copy_from_slice(&n.to_be_bytes());
                b[23..27].copy_from_slice(&(n.wrapping_sub(1)).to_be_bytes());
            }
        };
        assert!(matches!(with(&count(i32::MAX)), KafkaError::BatchTooLarge { .. }));
        assert!(matches!(with(&count(0)), KafkaError::BatchTooLarge { .. }));
        assert!(matches!(with(&count(1000)), KafkaError::CorruptBatch(_)));
        assert!(matches!(with(&count(3)), KafkaError::CorruptBatch(_)));
        assert!(matches!(
            with(&|b| b[22] |= 1 << 4),
            KafkaError::UnsupportedBatch(_)
        ));
        assert!(matches!(
            with(&|b| b[22] |= 1 << 5),
            KafkaError::UnsupportedBatch(_)
        ));
        assert!(matches!(
            with(&|b| b[22] = (b[22] & !7) | 5),
            KafkaError::UnsupportedCompression(5)
        ));
        assert!(matches!(with(&|b| b[16] = 1), KafkaError::UnsupportedMagic(1)));
        assert!(matches!(
            with(&|b| b[23..27].copy_from_slice(&9i32.to_be_bytes())),
            KafkaError::CorruptBatch(_)
        ));
        // First record's key length rewritten to a huge varint.
        let key_len_at = KAFKA_BATCH_HEADER_LEN + 4;
        assert!(matches!(
            with(&|b| b[key_len_at] = 0x7e),
            KafkaError::CorruptBatch(_)
        ));
        // Two batches where one is allowed.
        let mut two = good.clone();
        two.extend_from_slice(&good);
        assert!(matches!(
            decode_all(&two, &limits),
            Err(KafkaError::CorruptBatch(_))
        ));
        // Over the wire-size cap.
        let small = RecordLimits {
            batch_len_max: good.len() - 1,
            ..limits
        };
        assert!(matches!(
            decode_all(&good, &small),
            Err(KafkaError::BatchTooLarge { .. })
        ));
    }

    /// A compressed batch over the decompressed cap is refused (a gzip
    /// record set of 8 MiB of zeros under a 1 MiB cap).
    #[test]
    fn decompressed_cap() {
        let recs = vec![Rec {
            timestamp: 0,
            key: None,
            value: Some(vec![0; 8 << 20]),
            headers: vec![],
        }];
        let wire = kafka_batch(&recs, KafkaCompression::Gzip, None);
        assert!(wire.len() < 1 << 20);
        let limits = RecordLimits {
            records_len_max: 1 << 20,
            ..RecordLimits::default()
        };
        let err = decode_all(&wire, &limits).unwrap_err();
        assert!(matches!(err, KafkaError::BatchTooLarge { .. }), "{err}");
    }

    /// Timestamps spanning more than a Shoal batch can hold are refused,
    /// not clamped.
    #[test]
    fn timestamp_span() {
        let mut recs = sample(2);
        recs[0].timestamp = 0;
        recs[1].timestamp = TIMESTAMP_SPAN_MAX_MS + 1;
        let wire = kafka_batch(&recs, KafkaCompression::None, None);
        assert!(matches!(
            decode_all(&wire, &RecordLimits::default()),
            Err(KafkaError::TimestampSpan { .. })
        ));
        recs[1].timestamp = TIMESTAMP_SPAN_MAX_MS;
        let wire = kafka_batch(&recs, KafkaCompression::None, None);
        assert!(decode_all(&wire, &RecordLimits::default()).is_ok());
    }

    /// Shoal batches laid end to end become Kafka batches laid end to end.
    #[test]
    fn several_batches() {
        let mut stored = Vec::new();
        let mut offset = 0;
        for n in [1usize, 5, 2] {
            let wire = kafka_batch(&sample(n), KafkaCompression::None, None);
            let mut shoal = to_shoal(&wire, Compression::Lz4);
            batch::patch(&mut shoal, offset, 0, 0);
            offset += n as u64;
            stored.extend_from_slice(&shoal);
        }
        let mut out = BytesMut::new();
        let written = encode_shoal_batches(
            &stored,
            &BatchLimits::default(),
            TimestampType::CreateTime,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            written.iter().map(|w| w.base_offset).collect::<Vec<_>>(),
            vec![0, 1, 6]
        );
        let offsets: Vec<i64> = kafka_decode(&out).iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..8).collect::<Vec<_>>());
    }

    impl Arbitrary for Rec {
        fn arbitrary(g: &mut Gen) -> Self {
            let mut headers: Vec<(String, Vec<u8>)> = Vec::arbitrary(g);
            headers.truncate(4);
            let mut seen = std::collections::HashSet::new();
            headers.retain(|(k, _)| seen.insert(k.clone()));
            Rec {
                timestamp: 1_600_000_000_000 + i64::from(u16::arbitrary(g)),
                key: Option::arbitrary(g),
                value: Option::arbitrary(g),
                headers,
            }
        }
    }

    /// The quickcheck property: Kafka → Shoal → Kafka keeps every record's
    /// key, value (null included), headers and timestamp, in order, for
    /// random records under a random Kafka codec and Shoal codec.
    #[test]
    fn quickcheck_round_trip() {
        fn prop(recs: Vec<Rec>, codec: u8, shoal_codec: u8, idempotent: bool) -> TestResult {
            if recs.is_empty() {
                return TestResult::discard();
            }
            let codec = CODECS[usize::from(codec) % CODECS.len()];
            let shoal_codec =
                [Compression::None, Compression::Lz4, Compression::Zstd][usize::from(shoal_codec) % 3];
            let producer = idempotent.then_some((12, 1, 100));
            let out = through_shoal(&recs, codec, shoal_codec, producer);
            TestResult::from_bool(out.iter().map(kp_as_rec).collect::<Vec<_>>() == recs)
        }
        QuickCheck::new()
            .tests(200)
            .quickcheck(prop as fn(Vec<Rec>, u8, u8, bool) -> TestResult);
    }

    /// Random bytes, and valid batches with random bytes written over their
    /// records (CRC fixed so the records are parsed), never panic.
    #[test]
    fn quickcheck_never_panics() {
        fn prop(noise: Vec<u8>, at: usize, codec: u8) -> bool {
            let _ = decode_all(&noise, &RecordLimits::default());
            let codec = CODECS[usize::from(codec) % CODECS.len()];
            let mut b = kafka_batch(&sample(6), codec, Some((1, 0, 0))).to_vec();
            let body = b.len() - KAFKA_BATCH_HEADER_LEN;
            let at = KAFKA_BATCH_HEADER_LEN + at % body;
            let end = (at + noise.len()).min(b.len());
            b[at..end].copy_from_slice(&noise[..end - at]);
            fix_crc(&mut b);
            let _ = decode_all(&b, &RecordLimits::default());
            true
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<u8>, usize, u8) -> bool);
    }
}
