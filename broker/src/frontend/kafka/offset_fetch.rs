//! OffsetFetch: a Kafka group's committed offsets, read on its coordinator
//! from the delivery service (so they are the durable ones, after a
//! restart too). A partition with none answers offset −1; `topics = null`
//! (v2+) asks for every partition with a committed offset. A Shoal-protocol
//! group of that name is refused (INCONSISTENT_GROUP_PROTOCOL): a group is
//! used over one protocol only. `require_stable` (v7) needs nothing: with
//! no transactions every committed offset is stable.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::context::KafkaConn;
use super::group_coordinator::TopicPartition;
use super::group_registry::{self, Fetched};
use crate::metadata::acl::Resource;
use shoal_protocol::messages::security::Operation;

pub async fn handle(conn: &Rc<KafkaConn>, version: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let group = req.group_id.0.to_string();
    let wanted: Option<Vec<TopicPartition>> = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes.iter().map(|p| TopicPartition {
                    topic: t.name.0.to_string(),
                    partition: *p,
                })
            })
            .collect()
    });
    let asked = wanted.clone();
    let caller = conn.caller();
    let access = conn.shard.access(&caller);
    let answer = access
        .group_submit(&group.clone(), Operation::Describe, move |shard| async move {
            group_registry::fetch_offsets(shard, group, wanted)
        })
        .await
        .unwrap_or_else(|e| Err(super::group_membership::refused_code(&e)));
    match answer {
        // Positions of topics the caller may not describe are left out.
        Ok(fetched) => {
            let fetched = fetched
                .into_iter()
                .filter(|(tp, ..)| access.allows(Resource::Topic(&tp.topic), Operation::Describe))
                .collect();
            OffsetFetchResponse::default().with_topics(by_topic(fetched))
        }
        Err(code) if version >= 2 => OffsetFetchResponse::default().with_error_code(code),
        // v1 has no group-level error: every asked partition carries it.
        Err(code) => {
            let fetched = asked
                .unwrap_or_default()
                .into_iter()
                .map(|tp| (tp, -1, -1, None))
                .collect();
            let mut topics = by_topic(fetched);
            for p in topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                p.error_code = code;
            }
            OffsetFetchResponse::default().with_topics(topics)
        }
    }
}

fn by_topic(fetched: Vec<Fetched>) -> Vec<OffsetFetchResponseTopic> {
    let mut topics: BTreeMap<String, Vec<OffsetFetchResponsePartition>> = BTreeMap::new();
    for (tp, offset, leader_epoch, metadata) in fetched {
        let partition = OffsetFetchResponsePartition::default()
            .with_partition_index(tp.partition)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(leader_epoch)
            .with_metadata(Some(StrBytes::from_string(metadata.unwrap_or_default())));
        topics.entry(tp.topic).or_default().push(partition);
    }
    topics
        .into_iter()
        .map(|(name, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect()
}
