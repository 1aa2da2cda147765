//! External groups: consumer groups whose members Shoal does not deliver
//! to. Today these are the Kafka front end's groups: Kafka consumers fetch
//! records themselves and commit their positions; the broker keeps those
//! committed offsets durable and reports the group's lag, but it leases
//! nothing, counts no deliveries, retries nothing and quarantines nothing
//! (a Kafka consumer that fails a record handles it itself).
//!
//! What this service keeps per external group, on the group's coordinating
//! shard:
//! - the committed offsets, each with Kafka's leader epoch, metadata string
//!   and commit time, written to the shard's state log (key
//!   `x/<group>/<topic>/<partition>`, fsynced) *before* they become
//!   visible: the service persists, then applies, and the caller
//!   acknowledges only after that returned `Ok`;
//! - the membership the front end reports after each change (state,
//!   generation, members and their assignments), for `group describe`,
//!   `GET /groups/:g`, list groups and `/metrics`. It is not durable: Kafka
//!   members rejoin after a restart.
//!
//! A group name is used over one protocol only. A Shoal-protocol group (one
//! that joined, committed or was seeked through the native or HTTP API)
//! cannot be claimed as external, and an external group refuses native
//! joins; each side gets a message naming the other protocol.

//!
//! This file holds the state; the service's operations on it are in
//! [`super::external_offsets`].

use std::collections::BTreeMap;

use shoal_protocol::messages::group::GroupState;

use super::assignment::TopicPartition;
use super::state_log::StateKey;

/// Partitions with a committed offset, per external group (Kafka's groups
/// have no such bound; this one keeps a hostile client from growing the
/// state log without limit).
pub const EXTERNAL_PARTITIONS_MAX: usize = 100_000;

/// The protocol of every external group today.
pub const KAFKA_PROTOCOL: &str = "kafka";

/// A committed offset of an external group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalOffset {
    pub offset: u64,
    /// Kafka's committed leader epoch (−1: none).
    pub leader_epoch: i32,
    /// The client's metadata string, kept as given.
    pub metadata: Option<String>,
    /// Wall-clock time of the commit.
    pub commit_ms: i64,
}

/// One member as the front end reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExternalMember {
    pub member_id: String,
    /// The client's name for itself (Kafka's client id).
    pub client_id: String,
    /// The partitions the group's leader assigned it, where the front end
    /// could read the assignment.
    pub assignment: Vec<TopicPartition>,
    /// Wall-clock time the member was last heard from.
    pub last_seen_ms: i64,
}

/// What the front end reports of an external group's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalMembership {
    pub state: GroupState,
    pub generation: u32,
    pub members: Vec<ExternalMember>,
}

impl Default for ExternalMembership {
    fn default() -> Self {
        ExternalMembership {
            state: GroupState::Empty,
            generation: 0,
            members: Vec::new(),
        }
    }
}

/// One external group on its coordinator.
#[derive(Debug, Clone, Default)]
pub struct ExternalGroup {
    pub offsets: BTreeMap<TopicPartition, ExternalOffset>,
    pub membership: ExternalMembership,
    /// Commits issued so far (each takes the next number when it starts).
    pub commits_issued: u64,
    /// The number of the commit that wrote each partition's offset: a
    /// commit whose write completes after a later one's never overwrites it.
    pub written_by: BTreeMap<TopicPartition, u64>,
}

/// Key of an external group's committed offset.
pub fn external_key(group: &str, tp: &TopicPartition) -> StateKey {
    StateKey::ExternalCommitted {
        group: group.to_string(),
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
}
