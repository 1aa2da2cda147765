//! # The Kafka front end
//!
//! Lets existing Kafka clients (librdkafka and its bindings, the Java
//! client, franz-go, kcat) produce to and consume from Shoal unchanged
//! (issue 18). Like every front end it decodes a request, calls a service
//! and encodes the answer; it holds no partition or group logic of its own
//! beyond translating Kafka's vocabulary.
//!
//! These modules are the sans-IO parts: bytes, records and `now` in,
//! requests, batches and decisions out, each tested without a runtime. The
//! connection loop and the handlers that call the partition and delivery
//! services plug in on top of them.
//!
//! | module                 | role                                                                  |
//! |------------------------|-----------------------------------------------------------------------|
//! | [`supported_apis`]     | the APIs and version ranges served, and the ApiVersions answer         |
//! | [`codec`]              | frames from a byte stream, request headers and bodies, response frames |
//! | [`request_shape`]      | the schema walk that bounds every length before kafka-protocol decodes |
//! | [`records`]            | Kafka RecordBatch v2 ↔ Shoal batches                                   |
//! | [`record_compression`] | gzip, snappy, lz4 and zstd record sets, with decompressed-size caps    |
//! | [`group_coordinator`]  | the classic consumer-group protocol and committed offsets (sans-IO)   |
//! | [`sample_requests`]    | valid requests of every served API and version (tests, fuzzing)       |
//! | [`error`]              | [`KafkaError`], and its mapping to Kafka error codes                   |
//!
//! # Invariants
//!
//! - No length read from a peer sizes an allocation before it is checked:
//!   frame lengths against [`codec::KafkaLimits`], every length inside a
//!   request by [`request_shape`] (kafka-protocol itself would
//!   `Vec::with_capacity` any array count it reads), decompressed sizes
//!   against [`records::RecordLimits`].
//! - Decoding never panics on any input; every refusal is a [`KafkaError`].
//! - A Kafka record batch is validated (CRC-32C, framing, every record) once,
//!   at the edge, and stored as a Shoal batch; the producer id, epoch and
//!   base sequence travel in the Shoal batch header so the partition service
//!   can deduplicate Kafka idempotent producers with the same state it keeps
//!   for Shoal's own.

pub mod codec;
pub mod error;
pub mod group_coordinator;
pub mod record_compression;
pub mod records;
pub mod request_shape;
pub mod sample_requests;
pub mod supported_apis;

pub use error::KafkaError;
