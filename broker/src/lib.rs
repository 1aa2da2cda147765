//! # shoal-broker
//!
//! `shoald`, the Shoal broker: a thread-per-core, shared-nothing server.
//! Data flows one way: **front ends → shard routing → services → storage**.
//!
//! | module         | role                                                           |
//! |----------------|----------------------------------------------------------------|
//! | [`frontend`]   | adapters: the native protocol and HTTP/JSON (decode, call, encode) |
//! | [`shard`]      | one core's state; routing work to the owning shard; the inbox  |
//! | [`partition`]  | the partition service: append, read, long poll, offsets, hwm    |
//! | [`delivery`]   | the delivery service: groups, leases, retries, quarantine, lag |
//! | [`metadata`]   | the metadata service: topics, the durable catalogue            |
//! | [`metrics`]    | counters, snapshots, Prometheus rendering                      |
//! | [`mesh`]       | bounded cross-shard request/reply, transport only, hop counters |
//! | [`cluster`]    | membership and node-to-node links (one per shard index), transport only |
//! | [`tls_stream`] | rustls (server or client session) over glommio's stream, for every listener and the node links |
//! | [`server`]     | binding, starting shards, draining on shutdown                 |
//! | [`runtime`]    | the glommio layer: executors, queues, timers, listeners        |
//! | [`error`]      | [`error::BrokerError`], mapped once to wire codes              |
//! | [`ids`]        | newtypes: partition, shard, offset, generation                 |
//! | [`audit`]      | the audit log (`<data_dir>/audit.log`, JSON lines)             |
//!
//! The configuration is its own crate (`shoal-config`), so `shoal-tune`
//! can read and write it without the runtime.
//!
//! Where things live: produce is `frontend/native/produce.rs` →
//! `shard/route.rs` → `partition/append.rs`; fetch is
//! `frontend/native/fetch.rs` → `shard/route.rs` → `partition/read.rs`; a
//! group poll is `frontend/native/delivery.rs` → `shard/route_groups.rs` →
//! `delivery/poll.rs`; retries are decided in `delivery/failure.rs` (with
//! `delivery/retry_policy.rs`), and the quarantine lives in
//! `delivery/quarantine.rs` and `delivery/redrive.rs`.
//!
//! Ownership: partition `p` of topic `t` lives on shard
//! `(murmur2(t) + p) % shards`; only that shard touches its log, cache and
//! dedup state. Requests that land elsewhere are forwarded over the mesh and
//! counted; the shard-aware client sends them to the owner's port instead.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod audit;
pub mod cluster;
pub mod delivery;
pub mod error;
pub mod frontend;
pub mod ids;
pub mod mesh;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod tls_stream;

/// The broker's configuration (the `shoal-config` crate).
pub use shoal_config as config;
