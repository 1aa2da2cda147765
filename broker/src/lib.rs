//! # shoal-broker
//!
//! `shoald`, the Shoal broker: a thread-per-core, shared-nothing server.
//!
//! | module          | role                                                        |
//! |-----------------|-------------------------------------------------------------|
//! | [`config`]      | TOML file + flags, every setting with unit and default      |
//! | [`runtime`]     | the only glommio-facing layer: executors, queues, listeners |
//! | [`server`]      | binding, starting shards, draining on shutdown              |
//! | [`shard`]       | one core's state: registry, partitions, mesh, metrics       |
//! | [`mesh`]        | bounded cross-shard request/reply with hop counters         |
//! | [`connection`]  | framing, pipelining, backpressure, bad-input handling       |
//! | [`handlers`]    | one file per request kind                                   |
//! | [`delivery`]    | consumer groups, acks, retries, quarantine, lag             |
//! | [`http`]        | HTTP/JSON API and Prometheus `/metrics` (hyper over glommio) |
//! | [`partition`]   | a partition on its owner: log, dedup, produce               |
//! | [`topics`]      | names, configs, the durable catalogue                       |
//! | [`dedup`]       | message-id window and idempotent-producer sequences         |
//! | [`quota`]       | byte-rate quotas with throttle times                        |
//! | [`metrics`]     | per-shard counters and histograms                           |
//!
//! Ownership: partition `p` of topic `t` lives on shard
//! `(murmur2(t) + p) % shards`; only that shard touches its log, cache and
//! dedup state. Requests that land elsewhere are forwarded over the mesh and
//! counted; the shard-aware client sends them to the owner's port instead.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod config;
pub mod connection;
pub mod dedup;
pub mod delivery;
pub mod handlers;
pub mod http;
pub mod mesh;
pub mod metrics;
pub mod partition;
pub mod quota;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod topics;
