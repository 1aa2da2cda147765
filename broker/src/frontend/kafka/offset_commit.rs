//! OffsetCommit: a Kafka group's positions, fenced by member and generation
//! on the group's coordinator, written to the coordinator shard's state log
//! (fsynced) and only then answered. They survive a restart and show in
//! `shoal group describe` and `GET /groups/:g` with the group's lag.
//!
//! A partition of a topic that does not exist is refused
//! (UNKNOWN_TOPIC_OR_PARTITION) before anything is stored.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::context::KafkaConn;
use super::group_coordinator::{CommitRequest, TopicPartition};
use super::group_registry;
use crate::metadata::acl::Resource;
use shoal_protocol::messages::security::Operation;

pub async fn handle(conn: &Rc<KafkaConn>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let caller = conn.caller();
    let access = conn.shard.access(&caller);
    let mut results: Vec<(TopicPartition, i16)> = Vec::new();
    let mut offsets = Vec::new();
    for topic in &req.topics {
        let name = topic.name.0.to_string();
        let count = conn.shard.topic(&name).map(|m| m.config.partitions);
        for p in &topic.partitions {
            let tp = TopicPartition {
                topic: name.clone(),
                partition: p.partition_index,
            };
            if !access.allows(Resource::Topic(&name), Operation::Consume) {
                results.push((tp, ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let known = count.is_some_and(|n| u32::try_from(p.partition_index).is_ok_and(|i| i < n));
            if !known {
                results.push((tp, ResponseError::UnknownTopicOrPartition.code()));
                continue;
            }
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
            offsets.push((tp, p.committed_offset, p.committed_leader_epoch, metadata));
        }
    }
    if !offsets.is_empty() {
        let request = CommitRequest {
            member_id: req.member_id.to_string(),
            generation_id: req.generation_id_or_member_epoch,
            offsets,
        };
        let named: Vec<TopicPartition> = request.offsets.iter().map(|(tp, ..)| tp.clone()).collect();
        let answer = access
            .group_submit(&group.clone(), Operation::Consume, move |shard| {
                group_registry::commit(shard, group, request)
            })
            .await;
        match answer {
            Ok(r) => results.extend(r),
            Err(e) => {
                let code = super::group_membership::refused_code(&e);
                results.extend(named.into_iter().map(|tp| (tp, code)));
            }
        }
    }
    OffsetCommitResponse::default().with_topics(by_topic(&req, results))
}

/// The results in the request's topic order.
fn by_topic(
    req: &OffsetCommitRequest,
    results: Vec<(TopicPartition, i16)>,
) -> Vec<OffsetCommitResponseTopic> {
    req.topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = results
                        .iter()
                        .find(|(tp, _)| tp.topic == t.name.0.as_str() && tp.partition == p.partition_index)
                        .map_or(ResponseError::UnknownServerError.code(), |(_, c)| *c);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(t.name.0.to_string())))
                .with_partitions(partitions)
        })
        .collect()
}
