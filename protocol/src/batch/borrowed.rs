//! Batches built from borrowed records, into one pre-sized buffer.
//!
//! A front end that converts another wire format (Kafka's RecordBatch v2)
//! already holds every key, value and header in the request's bytes.
//! [`build_borrowed`] archives [`RecordRef`]s that point into those bytes
//! straight into the batch's own buffer: the batch header's room first,
//! then the rkyv archive, then the padding, in a `Vec` whose capacity
//! ([`batch_len_max`]) is an upper bound of the result, so the buffer never
//! regrows and no record is copied into an owned intermediate.
//!
//! It is the one builder of the format: [`BatchBuilder`](super::BatchBuilder)
//! borrows its owned records and calls it. The archive is byte for byte the
//! one rkyv derives for [`Record`](super::Record)s: the borrowed types below
//! archive as [`ArchivedRecord`] and [`ArchivedRecordHeader`] themselves
//! (their `Archive` impls resolve into those types), so readers see no
//! difference. The unit tests compare the body, decompressed where the
//! codec compresses, with rkyv's own archive of the same records.
//!
//! The result is a `Vec<u8>`, which a broker hands on as a `BytesMut`
//! without a copy. Its start is as aligned as the allocator makes it (16
//! bytes with glibc's malloc); a reader that finds it otherwise copies the
//! body to an aligned buffer ([`BatchRecords::open`](super::BatchRecords::open)),
//! so alignment is a matter of speed, never of correctness.

use rkyv::munge::munge;
use rkyv::rancor::{self, Fallible, Source};
use rkyv::ser::{Allocator, Writer};
use rkyv::string::{ArchivedString, StringResolver};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{Archive, Place, Serialize};

use super::{
    padded_len, seal, ArchivedRecord, ArchivedRecordHeader, BatchError, Compression, ProducerInfo,
    BATCH_HEADER_LEN, BATCH_LEN_MAX, BATCH_RECORDS_MAX,
};

/// One record whose bytes live elsewhere (a request being converted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Create time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    pub headers: &'a [HeaderRef<'a>],
    pub message_id: Option<&'a str>,
}

/// A record header whose bytes live elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
}

/// Builds one batch holding `records`: offsets, leader epoch and append
/// time zero until the broker patches them, as [`BatchBuilder::finish`](super::BatchBuilder::finish).
pub fn build_borrowed(
    records: &[RecordRef<'_>],
    compression: Compression,
    producer: ProducerInfo,
) -> Result<Vec<u8>, BatchError> {
    let count = records.len();
    if count == 0 || count > BATCH_RECORDS_MAX as usize {
        return Err(BatchError::BadRecordCount {
            count: count as u32,
            max: BATCH_RECORDS_MAX,
        });
    }
    let first_ts = records.iter().map(|r| r.timestamp_ms).min().unwrap_or(0);
    let max_ts = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
    let archivable: Vec<Archivable<'_>> = records
        .iter()
        .map(|r| Archivable {
            timestamp_delta_ms: u32::try_from(r.timestamp_ms - first_ts).unwrap_or(u32::MAX),
            key: r.key.map(Slice),
            value: r.value.map(Slice),
            headers: Slice(r.headers),
            message_id: r.message_id.map(Str),
        })
        .collect();
    let archive = archive_after_header(&archivable, archive_len_max(records))?;
    let mut out = match compression {
        Compression::None => archive,
        Compression::Lz4 => compressed_after_header(&archive[BATCH_HEADER_LEN..], LZ4_BLOCK)?,
        Compression::Zstd => compressed_after_header(&archive[BATCH_HEADER_LEN..], ZSTD_FRAME)?,
    };
    let body_len = out.len() - BATCH_HEADER_LEN;
    let batch_len = padded_len(out.len());
    if batch_len > BATCH_LEN_MAX {
        return Err(BatchError::BadLength {
            len: batch_len,
            max: BATCH_LEN_MAX,
        });
    }
    out.resize(batch_len, 0);
    seal(
        &mut out,
        compression,
        count as u32,
        body_len,
        (first_ts, max_ts),
        producer,
    );
    Ok(out)
}

/// An upper bound of the batch [`build_borrowed`] makes of `records`
/// uncompressed, header and padding included: every record's and header's
/// archived struct with its alignment slack, every byte they point to, the
/// root and the padding.
pub fn batch_len_max(records: &[RecordRef<'_>]) -> usize {
    BATCH_HEADER_LEN + archive_len_max(records)
}

fn archive_len_max(records: &[RecordRef<'_>]) -> usize {
    let record = size_of::<ArchivedRecord>();
    let header = size_of::<ArchivedRecordHeader>();
    let slack = align_of::<ArchivedRecordHeader>().max(align_of::<ArchivedRecord>());
    let per_record: usize = records
        .iter()
        .map(|r| {
            let headers: usize = r
                .headers
                .iter()
                .map(|h| header + h.key.len() + h.value.len())
                .sum();
            record
                + r.key.map_or(0, <[u8]>::len)
                + r.value.map_or(0, <[u8]>::len)
                + r.message_id.map_or(0, str::len)
                + headers
                + slack
        })
        .sum();
    per_record + size_of::<ArchivedVec<ArchivedRecord>>() + 4 * slack + super::BATCH_ALIGN
}

/// A buffer of zeros for the batch header, then the archive of `records`.
fn archive_after_header(records: &[Archivable<'_>], archive_max: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + archive_max);
    out.resize(BATCH_HEADER_LEN, 0);
    // The header's 72 bytes are a multiple of every alignment in the
    // archive, so the positions rkyv pads to are the same as in an archive
    // of its own: the body is the archive rkyv derives for the records.
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(&Slice(records), out)
        .map_err(|e| BatchError::BadArchive(e.to_string()))
}

/// A codec writing `archive` into a buffer of at least its bound: returns
/// the bytes written.
struct Codec {
    bound: fn(usize) -> usize,
    compress: fn(&[u8], &mut [u8]) -> Result<usize, BatchError>,
}

/// The lz4 block of the codec-1 body.
const LZ4_BLOCK: Codec = Codec {
    bound: lz4_flex::block::get_maximum_output_size,
    compress: |archive, out| {
        lz4_flex::block::compress_into(archive, out).map_err(|e| BatchError::Compress(format!("lz4: {e}")))
    },
};

/// The zstd frame of the codec-2 body, at [`ZSTD_LEVEL`](super::ZSTD_LEVEL).
const ZSTD_FRAME: Codec = Codec {
    bound: zstd::zstd_safe::compress_bound,
    compress: |archive, out| {
        zstd::bulk::compress_to_buffer(archive, out, super::ZSTD_LEVEL)
            .map_err(|e| BatchError::Compress(format!("zstd: {e}")))
    },
};

/// A buffer of zeros for the batch header, then `u32 LE archive length ‖
/// compressed archive` (the body layout of codecs 1 and 2).
fn compressed_after_header(archive: &[u8], codec: Codec) -> Result<Vec<u8>, BatchError> {
    let len = u32::try_from(archive.len()).map_err(|_| BatchError::BodyTooLarge {
        len: archive.len(),
        max: u32::MAX as usize,
    })?;
    let data_at = BATCH_HEADER_LEN + 4;
    let mut out = vec![0u8; data_at + (codec.bound)(archive.len())];
    out[BATCH_HEADER_LEN..data_at].copy_from_slice(&len.to_le_bytes());
    let written = (codec.compress)(archive, &mut out[data_at..])?;
    out.truncate(data_at + written);
    Ok(out)
}

/// A record in the shape rkyv archives as [`ArchivedRecord`]: the fields of
/// [`Record`](super::Record), borrowed.
struct Archivable<'a> {
    timestamp_delta_ms: u32,
    key: Option<Slice<'a, u8>>,
    value: Option<Slice<'a, u8>>,
    headers: Slice<'a, HeaderRef<'a>>,
    message_id: Option<Str<'a>>,
}

/// Where an [`Archivable`]'s out-of-line parts went.
struct ArchivableResolver {
    key: Option<VecResolver>,
    value: Option<VecResolver>,
    headers: VecResolver,
    message_id: Option<StringResolver>,
}

impl Archive for Archivable<'_> {
    type Archived = ArchivedRecord;
    type Resolver = ArchivableResolver;

    fn resolve(&self, resolver: ArchivableResolver, out: Place<ArchivedRecord>) {
        munge!(let ArchivedRecord { timestamp_delta_ms, key, value, headers, message_id } = out);
        self.timestamp_delta_ms.resolve((), timestamp_delta_ms);
        self.key.resolve(resolver.key, key);
        self.value.resolve(resolver.value, value);
        self.headers.resolve(resolver.headers, headers);
        self.message_id.resolve(resolver.message_id, message_id);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for Archivable<'_>
where
    S::Error: Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<ArchivableResolver, S::Error> {
        Ok(ArchivableResolver {
            key: self.key.serialize(serializer)?,
            value: self.value.serialize(serializer)?,
            headers: self.headers.serialize(serializer)?,
            message_id: self.message_id.serialize(serializer)?,
        })
    }
}

/// A borrowed string archived as an `ArchivedString`.
struct Str<'a>(&'a str);

impl Archive for Str<'_> {
    type Archived = ArchivedString;
    type Resolver = StringResolver;

    fn resolve(&self, resolver: StringResolver, out: Place<ArchivedString>) {
        ArchivedString::resolve_from_str(self.0, resolver, out);
    }
}

impl<S: Fallible + Writer + ?Sized> Serialize<S> for Str<'_>
where
    S::Error: Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<StringResolver, S::Error> {
        ArchivedString::serialize_from_str(self.0, serializer)
    }
}

/// A borrowed slice archived as the `ArchivedVec` a `Vec` of its items
/// becomes (the records of a batch, the headers of a record).
struct Slice<'a, T>(&'a [T]);

impl<T: Archive> Archive for Slice<'_, T> {
    type Archived = ArchivedVec<T::Archived>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: VecResolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_slice(self.0, resolver, out);
    }
}

impl<T, S> Serialize<S> for Slice<'_, T>
where
    T: Serialize<S>,
    S: Fallible + Allocator + Writer + ?Sized,
{
    fn serialize(&self, serializer: &mut S) -> Result<VecResolver, S::Error> {
        ArchivedVec::<T::Archived>::serialize_from_slice(self.0, serializer)
    }
}

/// The resolver of a [`HeaderRef`]: where its key and value went.
pub struct HeaderRefResolver {
    key: StringResolver,
    value: VecResolver,
}

impl Archive for HeaderRef<'_> {
    type Archived = ArchivedRecordHeader;
    type Resolver = HeaderRefResolver;

    fn resolve(&self, resolver: HeaderRefResolver, out: Place<ArchivedRecordHeader>) {
        munge!(let ArchivedRecordHeader { key, value } = out);
        ArchivedString::resolve_from_str(self.key, resolver.key, key);
        ArchivedVec::resolve_from_slice(self.value, resolver.value, value);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for HeaderRef<'_>
where
    S::Error: Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<HeaderRefResolver, S::Error> {
        Ok(HeaderRefResolver {
            key: ArchivedString::serialize_from_str(self.key, serializer)?,
            value: ArchivedVec::<u8>::serialize_from_slice(self.value, serializer)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{validate, BatchLimits, Record, RecordHeader};
    use super::*;
    use quickcheck::{quickcheck, Arbitrary, Gen, TestResult};

    /// A record as a test writes it: owned, so it can be borrowed for the
    /// builder and archived by rkyv's derive for the reference.
    #[derive(Debug, Clone)]
    struct Owned {
        timestamp_ms: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        message_id: Option<String>,
    }

    impl Arbitrary for Owned {
        fn arbitrary(g: &mut Gen) -> Self {
            let mut headers: Vec<(String, Vec<u8>)> = Vec::arbitrary(g);
            headers.truncate(4);
            Owned {
                timestamp_ms: 1_700_000_000_000 + i64::from(u16::arbitrary(g)),
                key: Option::arbitrary(g),
                value: Option::arbitrary(g),
                headers,
                message_id: Option::arbitrary(g),
            }
        }
    }

    /// rkyv's derived archive of `recs` as the batch's `Record`s.
    fn reference_archive(recs: &[Owned]) -> Vec<u8> {
        let first_ts = recs.iter().map(|r| r.timestamp_ms).min().unwrap_or(0);
        let records: Vec<Record> = recs
            .iter()
            .map(|r| Record {
                timestamp_delta_ms: u32::try_from(r.timestamp_ms - first_ts).unwrap(),
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| RecordHeader {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                message_id: r.message_id.clone(),
            })
            .collect();
        rkyv::to_bytes::<rancor::Error>(&records).unwrap().to_vec()
    }

    /// The borrowed batch of `recs`, and its length bound.
    fn borrowed_batch(recs: &[Owned], compression: Compression, producer: ProducerInfo) -> (Vec<u8>, usize) {
        let headers: Vec<Vec<HeaderRef<'_>>> = recs
            .iter()
            .map(|r| {
                r.headers
                    .iter()
                    .map(|(k, v)| HeaderRef { key: k, value: v })
                    .collect()
            })
            .collect();
        let refs: Vec<RecordRef<'_>> = recs
            .iter()
            .zip(&headers)
            .map(|(r, h)| RecordRef {
                timestamp_ms: r.timestamp_ms,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: h,
                message_id: r.message_id.as_deref(),
            })
            .collect();
        let built = build_borrowed(&refs, compression, producer).expect("borrowed batch");
        (built, batch_len_max(&refs))
    }

    /// The archive inside a batch body: the body itself, or decompressed
    /// from `u32 LE length ‖ compressed`.
    fn archive_of(body: &[u8], compression: Compression) -> Vec<u8> {
        let len = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
        match compression {
            Compression::None => body.to_vec(),
            Compression::Lz4 => lz4_flex::block::decompress(&body[4..], len).unwrap(),
            Compression::Zstd => zstd::bulk::decompress(&body[4..], len).unwrap(),
        }
    }

    quickcheck! {
        /// Under every codec, the batch validates, its header names the
        /// records' count, time span and producer, and its archive is byte
        /// for byte rkyv's derived archive of the same records; the
        /// uncompressed batch fits its length bound, so its buffer never
        /// regrew.
        fn the_archive_is_rkyvs_own(recs: Vec<Owned>, codec: u8, idempotent: bool) -> TestResult {
            if recs.is_empty() {
                return TestResult::discard();
            }
            let compression = [Compression::None, Compression::Lz4, Compression::Zstd][usize::from(codec) % 3];
            let producer = if idempotent {
                ProducerInfo { producer_id: 9, producer_epoch: 2, base_sequence: 40 }
            } else {
                ProducerInfo::default()
            };
            let (built, bound) = borrowed_batch(&recs, compression, producer);
            if compression == Compression::None && built.len() > bound {
                return TestResult::error(format!("{} bytes over the bound {bound}", built.len()));
            }
            let header = match validate(&built, &BatchLimits::default()) {
                Ok(header) => header,
                Err(e) => return TestResult::error(format!("does not validate: {e}")),
            };
            let times = (
                recs.iter().map(|r| r.timestamp_ms).min().unwrap(),
                recs.iter().map(|r| r.timestamp_ms).max().unwrap(),
            );
            let body = &built[BATCH_HEADER_LEN..BATCH_HEADER_LEN + header.body_len as usize];
            TestResult::from_bool(
                header.record_count as usize == recs.len()
                    && (header.first_timestamp_ms, header.max_timestamp_ms) == times
                    && (header.producer_id, header.producer_epoch, header.base_sequence)
                        == (producer.producer_id, producer.producer_epoch, producer.base_sequence)
                    && archive_of(body, compression) == reference_archive(&recs),
            )
        }
    }

    /// An empty record list is refused.
    #[test]
    fn empty_refused() {
        assert!(matches!(
            build_borrowed(&[], Compression::None, ProducerInfo::default()),
            Err(BatchError::BadRecordCount { count: 0, .. })
        ));
    }
}
