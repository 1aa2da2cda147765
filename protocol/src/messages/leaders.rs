//! Partition leaders: which node leads each replicated partition, and the
//! native address of every node of the cluster (issue 14).
//!
//! A separate API rather than a new version of [`super::metadata`], so that
//! it is wire-compatible both ways: a client built before it never asks,
//! and a client talking to a broker built before it sees the key missing
//! from the broker's handshake ranges and routes as on a single node
//! ([`crate::api::ApiKey::is_optional`]). The shard-aware client asks the
//! node it talks to; that node answers for the partitions its shards own
//! (every node owns every partition's replica on the same shard index).
//!
//! A partition that is not replicated has no `replicas` and `leader` 0. A
//! replicated partition with `leader` 0 is electing: retry shortly.
//!
//! Asked for [`GROUP_STATE_TOPIC`], a cluster node answers the leaders of
//! the group state partitions: where each shard's groups are coordinated
//! (the client's `not_coordinator` redirect).

use crate::api::ApiKey;
use crate::messages::message_pair;

/// The internal topic of a cluster's replicated group state: partition `i`
/// holds the state of the groups shard `i` coordinates, and its leader's
/// node coordinates them. `Leaders` answers it by name (it is in no topic
/// list); a single node answers it `unknown_topic`.
pub const GROUP_STATE_TOPIC: &str = "__group_state";

/// Ask for the leaders of `topics` (empty: every topic).
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct LeadersRequest {
    pub topics: Vec<String>,
}

/// One node of the cluster and its native-protocol address.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct NodeAddress {
    pub node_id: u32,
    /// "host:port" of its shared port; empty while the answering node has
    /// not heard it (the address travels in the node link's hello).
    pub addr: String,
}

/// The leader of one partition, as the answering node knows it.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct PartitionLeader {
    pub partition: u32,
    /// Node ids holding a replica; empty when the partition is not replicated.
    pub replicas: Vec<u32>,
    /// The leader's node id; 0 when not replicated or during an election.
    pub leader: u32,
    /// The raft term the answering replica is in (0 when not replicated).
    pub term: u64,
}

/// One topic's partitions, in partition order.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct TopicLeaders {
    pub name: String,
    /// [`crate::error::ErrorCode`]: `UnknownTopic` for a topic that does not exist.
    pub error: u16,
    pub partitions: Vec<PartitionLeader>,
}

/// The answering node, the cluster's nodes, and the leaders.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct LeadersResponse {
    /// The answering node's id; 0 on a single node (no cluster).
    pub node_id: u32,
    /// Every node of the cluster, the answering one included, by id.
    pub nodes: Vec<NodeAddress>,
    pub topics: Vec<TopicLeaders>,
}

message_pair!(LeadersRequest => LeadersResponse, ApiKey::Leaders);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{arbitrary_struct, round_trip_tests};

    arbitrary_struct!(LeadersRequest { topics });
    arbitrary_struct!(NodeAddress { node_id, addr });
    arbitrary_struct!(PartitionLeader {
        partition,
        replicas,
        leader,
        term
    });
    arbitrary_struct!(TopicLeaders {
        name,
        error,
        partitions
    });
    arbitrary_struct!(LeadersResponse {
        node_id,
        nodes,
        topics
    });

    round_trip_tests! {
        leaders_request: LeadersRequest,
        leaders_response: LeadersResponse,
    }
}
