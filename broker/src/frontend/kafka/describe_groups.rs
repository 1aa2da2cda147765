//! DescribeGroups: each group as its coordinator sees it. A Kafka group
//! with members reports its state, protocol and members (with their
//! metadata and assignments); one known only by committed offsets is
//! `Empty`; a Shoal-protocol group is reported with protocol type `shoal`
//! and its state, without members (they are not Kafka members); an
//! unknown group is `Dead`, as Kafka reports it.

use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::context::KafkaConn;
use super::group_registry::{self, Described};
use shoal_protocol::messages::security::Operation;

pub async fn handle(conn: &Rc<KafkaConn>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let caller = conn.caller();
    let mut groups = Vec::with_capacity(req.groups.len());
    for id in req.groups {
        let name = id.0.to_string();
        let asked = name.clone();
        let described = conn
            .shard
            .access(&caller)
            .group_submit(&name, Operation::Describe, move |shard| async move {
                group_registry::describe(shard, asked)
            })
            .await;
        let group = DescribedGroup::default().with_group_id(id);
        groups.push(match described {
            Err(e) => group.with_error_code(super::group_membership::refused_code(&e)),
            Ok(d) => describe(group, d),
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

fn describe(group: DescribedGroup, described: Described) -> DescribedGroup {
    let s = |v: &str| StrBytes::from_string(v.to_string());
    match described {
        Described::Kafka(d) => {
            let members = d
                .members
                .into_iter()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                        .with_client_id(StrBytes::from_string(m.client_id))
                        .with_client_host(StrBytes::from_string(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment)
                })
                .collect();
            group
                .with_group_state(s(d.state.name()))
                .with_protocol_type(StrBytes::from_string(d.protocol_type))
                .with_protocol_data(StrBytes::from_string(d.protocol_name))
                .with_members(members)
        }
        Described::Shoal(state) => group.with_group_state(s(state)).with_protocol_type(s("shoal")),
        Described::OffsetsOnly => group.with_group_state(s("Empty")),
        Described::Unknown => group.with_group_state(s("Dead")),
    }
}
