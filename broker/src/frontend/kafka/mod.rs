//! # The Kafka front end
//!
//! Lets existing Kafka clients (librdkafka and its bindings, the Java
//! client, franz-go, kcat) produce to and consume from Shoal unchanged
//! (issue 18). Like every front end it decodes a request, calls a service
//! and encodes the answer; it holds no partition or group logic of its own
//! beyond translating Kafka's vocabulary.
//!
//! Every shard serves Kafka on the shared Kafka port (SO_REUSEPORT) and on
//! its own Kafka port, and Metadata advertises each shard as Kafka broker
//! `shard id` at its own port, leading the partitions it owns: Kafka
//! clients send produce and fetch to a partition's leader, so they reach
//! the owning core without a hop. A request that lands on another shard is
//! served by forwarding through the shard's routing, as for the native
//! protocol. Group requests run on the group's coordinating shard (the one
//! FindCoordinator names).
//!
//! The sans-IO parts (bytes, records and `now` in; requests, batches and
//! decisions out, each tested without a runtime):
//!
//! | module                 | role                                                                  |
//! |------------------------|-----------------------------------------------------------------------|
//! | [`supported_apis`]     | the APIs and version ranges served, and the ApiVersions answer         |
//! | [`codec`]              | frames from a byte stream, request headers and bodies, response frames |
//! | [`request_shape`]      | the schema walk that bounds every length before kafka-protocol decodes |
//! | [`records`]            | Kafka RecordBatch v2 ↔ Shoal batches                                   |
//! | [`record_compression`] | gzip, snappy, lz4 and zstd record sets, with decompressed-size caps    |
//! | [`group_coordinator`]  | the classic consumer-group protocol for one group (sans-IO)           |
//! | [`consumer_assignment`]| the partitions in a `consumer` assignment (for group stats)           |
//! | [`sample_requests`]    | valid requests of every served API and version (tests, fuzzing)       |
//! | [`error`]              | [`KafkaError`], and the mapping of every error to Kafka's codes        |
//!
//! The serving parts:
//!
//! | module                 | role                                                                  |
//! |------------------------|-----------------------------------------------------------------------|
//! | [`listener`]           | accepting connections (the shared admission limits)                   |
//! | [`connection`]         | one connection: budgets, deadlines, pipelining, in-order responses    |
//! | [`context`]            | what a connection's handlers share                                     |
//! | [`dispatch`]           | a request to its handler, the response to a frame, error counting      |
//! | [`metadata`]           | Metadata: shards as brokers, owners as leaders, auto-create            |
//! | [`produce`]            | Produce: batches converted at the edge, acks mapped to durability      |
//! | [`fetch`]              | Fetch: long poll, stored batches as Kafka batches                      |
//! | [`list_offsets`]       | ListOffsets: earliest, latest, by time                                 |
//! | [`init_producer_id`]   | InitProducerId: ids for idempotent producers                           |
//! | [`find_coordinator`]   | FindCoordinator: a group's coordinating shard                          |
//! | [`group_membership`]   | JoinGroup, SyncGroup, Heartbeat, LeaveGroup                            |
//! | [`offset_commit`]      | OffsetCommit: durable in the delivery service before the answer        |
//! | [`offset_fetch`]       | OffsetFetch                                                            |
//! | [`describe_groups`]    | DescribeGroups                                                         |
//! | [`list_groups`]        | ListGroups: Kafka and Shoal groups                                     |
//! | [`topic_admin`]        | CreateTopics, DeleteTopics                                             |
//! | [`sasl`]               | SaslHandshake, SaslAuthenticate: PLAIN and SCRAM-SHA-256               |
//! | [`group_registry`]     | the groups a shard coordinates, parked requests, the group timer       |
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
pub mod connection;
pub mod consumer_assignment;
pub mod context;
pub mod describe_groups;
pub mod dispatch;
pub mod error;
pub mod fetch;
pub mod find_coordinator;
pub mod group_coordinator;
pub mod group_membership;
pub mod group_registry;
pub mod init_producer_id;
pub mod list_groups;
pub mod list_offsets;
pub mod listener;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod produce;
pub mod record_compression;
pub mod records;
pub mod request_shape;
pub mod sample_requests;
pub mod sasl;
pub mod supported_apis;
pub mod topic_admin;

pub use context::Door;
pub use error::KafkaError;
pub use listener::accept_loop;
