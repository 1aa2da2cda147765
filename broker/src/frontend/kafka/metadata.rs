//! Metadata: every shard is a Kafka broker, every partition's leader is its
//! owning shard.
//!
//! Broker `i` is shard `i` at its own Kafka port (`kafka.shard_port_base +
//! i`), so a Kafka client that sends produce and fetch to the partition
//! leader (they all do) reaches the owning core with no cross-core hop.
//! One replica per partition (the leader), in sync; the leader epoch is −1
//! (no OffsetForLeaderEpoch), so clients skip epoch validation.
//!
//! Unknown topics answer UNKNOWN_TOPIC_OR_PARTITION, unless the broker
//! allows auto-creation (`kafka.auto_create_topics`, off by default) and
//! the client asks for it (`allow_auto_topic_creation`, implied before v4):
//! then the topic is created with `kafka.default_partitions` partitions
//! before the answer, and described like any other.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use shoal_protocol::messages::topic::TopicConfig;

use super::context::KafkaConn;
use crate::error::BrokerError;
use crate::ids::PartitionId;
use crate::metadata::TopicMeta;
use crate::shard::{Access, Shard};

/// The cluster id Metadata reports (one node, so a fixed name).
pub const CLUSTER_ID: &str = "shoal";

pub async fn handle(conn: &Rc<KafkaConn>, version: i16, req: MetadataRequest) -> MetadataResponse {
    let shard = &conn.shard;
    let caller = conn.caller();
    let access = shard.access(&caller);
    // All topics: only those the caller may describe, as Kafka's broker
    // lists them. Named ones the caller may not describe are answered
    // TOPIC_AUTHORIZATION_FAILED below (whether they exist or not).
    let all = || -> Vec<String> {
        shard
            .topics()
            .iter()
            .map(|t| t.name.clone())
            .filter(|name| access.may_describe_topic(name))
            .collect()
    };
    let names: Vec<String> = match req.topics {
        None => all(),
        Some(list) if list.is_empty() && version == 0 => all(),
        Some(list) => list
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.0.to_string()))
            .collect(),
    };
    let auto_create =
        shard.config().kafka.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        if !access.may_describe_topic(&name) {
            topics.push(
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
            );
            continue;
        }
        let mut meta = shard.topic(&name);
        let mut error = None;
        if meta.is_none() && auto_create {
            match auto_create_topic(&access, shard, &name).await {
                Ok(()) => meta = shard.topic(&name),
                Err(code) => error = Some(code),
            }
        }
        topics.push(match meta {
            Some(meta) => describe_topic(shard, &meta),
            None => {
                let code = error.unwrap_or_else(|| unknown_topic_code(&name));
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_error_code(code)
            }
        });
    }
    MetadataResponse::default()
        .with_brokers(brokers(shard))
        .with_cluster_id(Some(StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(BrokerId(0))
        .with_topics(topics)
}

/// Every shard as a Kafka broker at its own Kafka port.
pub fn brokers(shard: &Shard) -> Vec<MetadataResponseBroker> {
    let Some(kafka) = shard.ports().kafka.as_ref() else {
        return Vec::new();
    };
    kafka
        .shard_ports
        .iter()
        .enumerate()
        .map(|(id, port)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id as i32))
                .with_host(StrBytes::from_string(kafka.host.clone()))
                .with_port(i32::from(*port))
        })
        .collect()
}

/// A topic's partitions, each led by its owning shard.
fn describe_topic(shard: &Shard, meta: &TopicMeta) -> MetadataResponseTopic {
    let partitions = (0..meta.config.partitions)
        .map(|p| {
            let owner = BrokerId(shard.owner(&meta.name, PartitionId(p)).get() as i32);
            MetadataResponsePartition::default()
                .with_partition_index(p as i32)
                .with_leader_id(owner)
                .with_leader_epoch(-1)
                .with_replica_nodes(vec![owner])
                .with_isr_nodes(vec![owner])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))))
        .with_partitions(partitions)
}

/// UNKNOWN_TOPIC_OR_PARTITION, or INVALID_TOPIC_EXCEPTION for a name no
/// Shoal topic can have.
fn unknown_topic_code(name: &str) -> i16 {
    match crate::metadata::validate_name(name) {
        Ok(()) => ResponseError::UnknownTopicOrPartition.code(),
        Err(_) => ResponseError::InvalidTopicException.code(),
    }
}

/// Creates a topic a client's Metadata request named. A topic created
/// meanwhile by another request counts as success.
async fn auto_create_topic(access: &Access<'_>, shard: &Shard, name: &str) -> Result<(), i16> {
    if crate::metadata::validate_name(name).is_err() {
        return Err(ResponseError::InvalidTopicException.code());
    }
    let config = TopicConfig {
        partitions: shard.config().kafka.default_partitions,
        ..TopicConfig::default()
    };
    match access.create_topic(name.to_string(), config).await {
        Ok(()) | Err(BrokerError::TopicExists { .. }) => {
            tracing::info!(topic = name, "topic auto-created for a Kafka client");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creating a topic failed");
            Err(super::error::partition_error_code(&e))
        }
    }
}
