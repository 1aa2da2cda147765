//! ListGroups: the groups a Kafka broker coordinates, Kafka and Shoal alike.
//! On a shard's own Kafka port (Kafka broker `shard id` in Metadata) that is
//! the groups this shard coordinates, as each Kafka broker answers: clients
//! (librdkafka's `rd_kafka_list_groups`, Java's `listConsumerGroups`) ask
//! every broker of the cluster and put the answers together, so listing
//! every group on every broker would repeat each group once per shard. On
//! the shared port, which Metadata does not advertise as a broker, it is
//! every group of every shard. Kafka groups report their protocol type
//! (`consumer` for Kafka consumers; empty for a group known only by
//! committed offsets), Shoal groups `shoal`. v4 filters by state
//! (case-insensitive, as Kafka). Groups the caller may not describe are
//! left out.

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::context::{Door, KafkaConn};
use super::group_registry;
use crate::ids::ShardId;
use shoal_protocol::messages::security::Operation;

pub async fn handle(conn: &Rc<KafkaConn>, req: ListGroupsRequest) -> ListGroupsResponse {
    let filter: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut groups = Vec::new();
    let shards: Vec<ShardId> = match conn.door {
        Door::Broker => vec![conn.shard.id()],
        Door::Shared => (0..conn.shard.count()).map(ShardId).collect(),
    };
    let caller = conn.caller();
    let access = conn.shard.access(&caller);
    for shard in shards {
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
            // Groups the caller may not describe are left out, as in Kafka.
            if access.require_group(&id, Operation::Describe).is_err() {
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
