//! The shard: one pinned executor, its state, and the routing of work to
//! the shard that owns it.
//!
//! | module             | role                                                     |
//! |--------------------|----------------------------------------------------------|
//! | [`access`]         | the door front ends use: authorize, then route (audited) |
//! | [`state`]          | [`Shard`]: config, registry, services, budgets, metrics  |
//! | [`route`]          | partition work to its owner: produce, fetch, offsets     |
//! | [`route_groups`]   | group work to its coordinator; topic-wide fan-outs       |
//! | [`topic_admin`]    | create and delete topics (shard 0 writes the catalogue)  |
//! | [`cluster_metadata`] | a cluster's topic and security changes through the metadata log |
//! | [`metadata_log`]   | shard 0's end of the metadata log: replica, applied, waiters |
//! | [`call`]           | the calls and replies shards send each other             |
//! | [`inbox`]          | serving calls from other shards                          |
//! | [`source`]         | delivery's handle to partitions (routes to the owner)    |
//! | [`snapshot`]       | metrics snapshots and readiness                          |
//! | [`lifecycle`]      | start, maintenance loop, shutdown                        |
//! | [`submit`]         | running a front end's work on another shard (submit_to)  |
//! | [`route_kafka`]    | Kafka groups' committed offsets in the delivery service  |
//! | [`route_leaders`]  | partition leaders and node addresses (a cluster)         |
//!
//! Ownership: partition `p` of topic `t` lives on shard
//! `(murmur2(t) + p) % shards`, group `g` on `murmur2(g) % shards`. Work
//! for a local partition or group is a method call; work for one owned
//! elsewhere crosses the mesh, counted per kind.

pub mod access;
pub mod call;
pub mod cluster_metadata;
pub mod inbox;
pub mod lifecycle;
pub mod metadata_log;
pub mod route;
pub mod route_groups;
pub mod route_kafka;
pub mod route_leaders;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod submit;
pub mod topic_admin;

pub use access::Access;
pub use route::{FetchSpec, PartitionRead, Produced, FETCH_WAIT_MS_MAX, PRODUCE_TIMEOUT_MS_MAX};
pub use snapshot::Readiness;
pub use state::{KafkaPorts, Ports, Shard, ShardMesh};
