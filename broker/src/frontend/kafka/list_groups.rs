//! ListGroups: every group of the broker, Kafka and Shoal alike, gathered
//! from every shard (each coordinates its own). Kafka groups report their
//! protocol type (`consumer` for Kafka consumers; empty for a group known
//! only by committed offsets), Shoal groups `shoal`. v4 filters by state
//! (case-insensitive, as Kafka).

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::context::KafkaConn;
use super::group_registry;
use crate::ids::ShardId;

pub async fn handle(conn: &Rc<KafkaConn>, req: ListGroupsRequest) -> ListGroupsResponse {
    let filter: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut groups = Vec::new();
    for shard in (0..conn.shard.count()).map(ShardId) {
        let listed = conn
            .shard
            .submit_to(shard, |shard| async move { group_registry::list(shard) })
            .await;
        let Ok(listed) = listed else {
            return ListGroupsResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code());
        };
        for (id, protocol, state) in listed {
            if !filter.is_empty() && !filter.contains(&state.to_lowercase()) {
                continue;
            }
            groups.push(
                ListedGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(id)))
                    .with_protocol_type(StrBytes::from_string(protocol))
                    .with_group_state(StrBytes::from_string(state)),
            );
        }
    }
    ListGroupsResponse::default().with_groups(groups)
}
