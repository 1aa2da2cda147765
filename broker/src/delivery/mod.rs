//! Consumer groups, acknowledgements, bounded retries and the quarantine.
//!
//! | module                | role                                                     |
//! |-----------------------|----------------------------------------------------------|
//! | [`assignment`]        | sticky assignor (sans-IO, quickcheck-tested)             |
//! | [`member`]            | membership, generations, drain-before-revoke (sans-IO)   |
//! | [`delivery_state`]    | per group partition: window, leases, ack floor (sans-IO) |
//! | [`key_lanes`]         | per-key ordered retry (sans-IO)                          |
//! | [`retry_policy`]      | backoff with jitter, retry budget, breaker (sans-IO)     |
//! | [`quarantine`]        | one shard's quarantine entries (sans-IO)                 |
//! | [`failure`]           | what a failed delivery does: retry or quarantine (sans-IO) |
//! | [`state_log`]         | the durable compacted internal log, replayed on start    |
//! | [`replicated_state`]  | on a cluster: the state as a replicated partition        |
//! | [`service`]           | [`Delivery`]: one shard's groups, quarantine, timer      |
//! | [`source`]            | [`PartitionSource`]: the narrow handle to partition data |
//! | [`group_coordinator`] | join, heartbeat, leave, commit, seek, restore, expiry    |
//! | [`poll`]              | poll: choosing, leasing and reading records              |
//! | [`outcome`]           | ack, nack, and the glue of every failure                 |
//! | [`records`]           | reading delivered and quarantined records                |
//! | [`redrive`]           | quarantine browse, counts, redrive, purge                |
//! | [`lag`]               | group stats and topic lag, in records and time           |
//! | [`external_group`]    | groups Shoal does not deliver to (Kafka's): their state  |
//! | [`external_offsets`]  | their durable commits, offsets, membership, seek, lag    |
//!
//! Ownership: a group is coordinated by shard `shard_for_group(group)`. That
//! shard owns the group's membership, assignment and delivery state, its
//! retry schedule, breaker and budget, and the quarantine entries of its
//! failures, and writes them to its own internal log; on a cluster, to its
//! replicated state partition, and only on the node whose replica of it
//! leads (the others answer `not_coordinator`; [`replicated_state`]). The shard routes a
//! group request to its coordinator before calling this service (counted in
//! `forwarded`); everything here works on this shard's groups. Records are
//! read from the partitions' owners through the [`PartitionSource`] handle,
//! as shared batch bytes that are never re-encoded. Delivery imports no
//! front end and no shard internals.
//!
//! Every operation takes a protocol request and returns
//! `Result<response, BrokerError>`; the front ends encode both.
//!
//! Refinements of the first design, and why:
//! - The lease is the record-level fence. A live member one generation
//!   behind may still ack or nack what is leased to it (it must, to drain a
//!   revoked partition); it cannot poll until it heartbeats, and explicit
//!   commits need the current generation. Expelled members are unknown ids.
//! - The retry schedule is the `Waiting { ready_at }` records of each
//!   bounded window, scanned on poll and on the 25 ms timer, rather than a
//!   separate timer wheel: the window is capped at 4096 records per group
//!   partition, so the scan is bounded and there is one source of truth.
//! - Quarantine entries live on the failing group's coordinator (which
//!   decides both quarantine and redrive); topic-wide reads fan out to all
//!   shards and merge by entry id.
//! - Acked retries are refunded to the retry budget, so the budget limits
//!   retry load only while retries keep failing.
//! - Acks above the ack floor and deliveries themselves are not written to
//!   the state log (only failures, the floor, quarantine and redrive are),
//!   to keep one fsync per ack request: after a broker crash those records
//!   are delivered again (at-least-once), with the count of their stored
//!   failures plus one.

pub mod assignment;
pub mod delivery_state;
pub mod external_group;
pub mod external_offsets;
pub mod failure;
pub mod group_coordinator;
pub mod key_lanes;
pub mod lag;
pub mod member;
pub mod outcome;
pub mod poll;
pub mod quarantine;
pub mod records;
pub mod redrive;
pub mod replicated_state;
pub mod retry_policy;
pub mod service;
pub mod source;
pub mod state_log;

pub use external_group::{ExternalMember, ExternalMembership, ExternalOffset};
pub use lag::TopicLag;
pub use poll::Polled;
pub use replicated_state::ReplicatedState;
pub use service::Delivery;
pub use source::PartitionSource;
