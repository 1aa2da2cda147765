//! Consumer group membership: join, heartbeat, leave, list.
//!
//! Assignment is computed by the broker (the group's coordinating shard,
//! [`crate::partitioner::shard_for_group`]). A member joins with its
//! subscription and gets a member id, a generation and its partitions;
//! heartbeats keep its session alive and carry assignment changes. A
//! partition is handed to a new owner only after its previous owner acked
//! what it received or its session expired (drain before revoke), so a
//! member told that a partition is `revoked` should finish and ack what it
//! holds from it and stop polling it.

use crate::api::ApiKey;
use crate::messages::message_pair;

/// Partitions of one topic.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<u32>,
}

/// The group's lifecycle state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub enum GroupState {
    /// No members; committed offsets are kept.
    Empty,
    /// Membership changed and partitions are being moved.
    Rebalancing,
    /// Every partition has exactly one owner.
    Stable,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct JoinGroupRequest {
    pub group: String,
    /// Stable name chosen by the client (e.g. host and process), shown in stats.
    pub member_name: String,
    /// The id from an earlier join, to rejoin as the same member; `None` for
    /// a new member.
    pub member_id: Option<String>,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// The member is expelled after this long without a heartbeat.
    pub session_timeout_ms: u32,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct JoinGroupResponse {
    /// [`crate::error::ErrorCode`]: `UnknownTopic`, `InvalidRequest`.
    pub error: u16,
    pub message: String,
    pub member_id: String,
    /// Generation this member's assignment belongs to; every poll, ack, nack
    /// and commit carries it and is rejected (`StaleGeneration`) when it is old.
    pub generation: u32,
    pub assignment: Vec<TopicPartitions>,
    /// Heartbeat at least this often.
    pub heartbeat_interval_ms: u32,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct HeartbeatRequest {
    pub group: String,
    pub member_id: String,
    pub generation: u32,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct HeartbeatResponse {
    /// [`crate::error::ErrorCode`]: `UnknownMember` or `StaleGeneration` mean
    /// the member was expelled and must join again.
    pub error: u16,
    pub message: String,
    /// The current generation (may be newer than the request's).
    pub generation: u32,
    /// The member's full assignment at `generation`.
    pub assignment: Vec<TopicPartitions>,
    /// Partitions newly given to the member since the request's generation.
    pub added: Vec<TopicPartitions>,
    /// Partitions to drain (finish and ack) and give up.
    pub revoked: Vec<TopicPartitions>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct LeaveGroupRequest {
    pub group: String,
    pub member_id: String,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct LeaveGroupResponse {
    /// [`crate::error::ErrorCode`]: `UnknownMember`.
    pub error: u16,
    pub message: String,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ListGroupsRequest {}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct GroupSummary {
    pub group: String,
    pub state: GroupState,
    pub generation: u32,
    pub members: u32,
    pub topics: Vec<String>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ListGroupsResponse {
    /// Sorted by group name.
    pub groups: Vec<GroupSummary>,
}

message_pair!(JoinGroupRequest => JoinGroupResponse, ApiKey::JoinGroup);
message_pair!(HeartbeatRequest => HeartbeatResponse, ApiKey::Heartbeat);
message_pair!(LeaveGroupRequest => LeaveGroupResponse, ApiKey::LeaveGroup);
message_pair!(ListGroupsRequest => ListGroupsResponse, ApiKey::ListGroups);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::messages::testing::{arbitrary_struct, pick, round_trip_tests};
    use quickcheck::{Arbitrary, Gen};

    arbitrary_struct!(TopicPartitions { topic, partitions });
    impl Arbitrary for GroupState {
        fn arbitrary(g: &mut Gen) -> Self {
            [GroupState::Empty, GroupState::Rebalancing, GroupState::Stable][usize::from(pick(g, 3))]
        }
    }
    arbitrary_struct!(JoinGroupRequest {
        group,
        member_name,
        member_id,
        topics,
        session_timeout_ms
    });
    arbitrary_struct!(JoinGroupResponse {
        error,
        message,
        member_id,
        generation,
        assignment,
        heartbeat_interval_ms
    });
    arbitrary_struct!(HeartbeatRequest {
        group,
        member_id,
        generation
    });
    arbitrary_struct!(HeartbeatResponse {
        error,
        message,
        generation,
        assignment,
        added,
        revoked
    });
    arbitrary_struct!(LeaveGroupRequest { group, member_id });
    arbitrary_struct!(LeaveGroupResponse { error, message });
    impl Arbitrary for ListGroupsRequest {
        fn arbitrary(_: &mut Gen) -> Self {
            ListGroupsRequest {}
        }
    }
    arbitrary_struct!(GroupSummary {
        group,
        state,
        generation,
        members,
        topics
    });
    arbitrary_struct!(ListGroupsResponse { groups });

    round_trip_tests! {
        join_group_request: JoinGroupRequest,
        join_group_response: JoinGroupResponse,
        heartbeat_request: HeartbeatRequest,
        heartbeat_response: HeartbeatResponse,
        leave_group_request: LeaveGroupRequest,
        leave_group_response: LeaveGroupResponse,
        list_groups_request: ListGroupsRequest,
        list_groups_response: ListGroupsResponse,
    }
}
