//! CreateTopics and DeleteTopics, through the shard's topic administration
//! (shard 0 writes the catalogue and applies the change on every shard
//! before the answer), as the native and HTTP front ends do.
//!
//! A Kafka topic is a Shoal topic. What Kafka's request can say and Shoal
//! can honour is mapped; anything else is refused with Kafka's code rather
//! than ignored:
//! - partitions: the count given, or `kafka.default_partitions` for −1;
//! - replication factor −1 or 1 (one node); more is
//!   INVALID_REPLICATION_FACTOR; a manual replica assignment is
//!   INVALID_REPLICA_ASSIGNMENT;
//! - configs `retention.ms` and `retention.bytes` (−1: unlimited) and
//!   `cleanup.policy` (`delete` or `compact`); any other key is
//!   INVALID_CONFIG, naming it. Every other setting is Shoal's default
//!   (flush `always`: every acknowledged produce is fsynced).

use std::rc::Rc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use shoal_protocol::messages::topic::TopicConfig;

use super::context::KafkaConn;
use crate::error::BrokerError;

/// A refusal: Kafka's code and the message the client shows.
type Refusal = (i16, String);

pub async fn create(conn: &Rc<KafkaConn>, version: i16, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let caller = conn.caller();
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = match topic_config(conn, topic) {
            Err(refusal) => Err(refusal),
            Ok(config) if req.validate_only => Ok(config),
            Ok(config) => conn
                .shard
                .access(&caller)
                .create_topic(name.clone(), config.clone())
                .await
                .map(|()| config)
                .map_err(|e| create_refusal(&e)),
        };
        match outcome {
            Ok(config) => {
                if version >= 5 {
                    result = result
                        .with_num_partitions(config.partitions as i32)
                        .with_replication_factor(1);
                }
            }
            Err((code, message)) => {
                result = result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)));
            }
        }
        topics.push(result);
    }
    CreateTopicsResponse::default().with_topics(topics)
}

/// The Shoal topic config a CreateTopics entry asks for.
fn topic_config(conn: &KafkaConn, topic: &CreatableTopic) -> Result<TopicConfig, Refusal> {
    let name = topic.name.0.as_str();
    crate::metadata::validate_name(name)
        .map_err(|e| (ResponseError::InvalidTopicException.code(), e.to_string()))?;
    let partitions = match topic.num_partitions {
        -1 => conn.shard.config().kafka.default_partitions,
        n if n >= 1 && n as u32 <= crate::metadata::PARTITIONS_MAX => n as u32,
        n => {
            return Err((
                ResponseError::InvalidPartitions.code(),
                format!("{n} partitions: use 1 to {}", crate::metadata::PARTITIONS_MAX),
            ))
        }
    };
    if !matches!(topic.replication_factor, -1 | 1) {
        return Err((
            ResponseError::InvalidReplicationFactor.code(),
            format!(
                "replication factor {}: this Shoal broker is a single node (use 1)",
                topic.replication_factor
            ),
        ));
    }
    if !topic.assignments.is_empty() {
        return Err((
            ResponseError::InvalidReplicaAssignment.code(),
            "manual replica assignment: Shoal places each partition on its owning shard".into(),
        ));
    }
    let mut config = TopicConfig {
        partitions,
        ..TopicConfig::default()
    };
    for entry in &topic.configs {
        let value = entry.value.as_ref().map(|v| v.as_str()).unwrap_or("");
        apply_config(&mut config, entry.name.as_str(), value)?;
    }
    Ok(config)
}

/// Applies one Kafka topic config to a Shoal topic config.
fn apply_config(config: &mut TopicConfig, key: &str, value: &str) -> Result<(), Refusal> {
    let invalid = |why: String| (ResponseError::InvalidConfig.code(), why);
    let limit = |v: &str| -> Result<Option<u64>, Refusal> {
        match v.parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(n) if n >= 0 => Ok(Some(n as u64)),
            _ => Err(invalid(format!("{key}={v:?}: a number of at least -1"))),
        }
    };
    match key {
        "retention.ms" => config.retention_ms = limit(value)?,
        "retention.bytes" => config.retention_bytes = limit(value)?,
        "cleanup.policy" => {
            config.compacted = match value {
                "delete" => false,
                "compact" => true,
                other => return Err(invalid(format!("cleanup.policy={other:?}: delete or compact"))),
            }
        }
        other => {
            return Err(invalid(format!(
                "topic config {other:?} is not supported by Shoal (retention.ms, retention.bytes, cleanup.policy are)"
            )))
        }
    }
    Ok(())
}

fn create_refusal(e: &BrokerError) -> Refusal {
    let code = match e {
        BrokerError::TopicExists { .. } => ResponseError::TopicAlreadyExists,
        BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        BrokerError::AuthorizationFailed { .. } => ResponseError::TopicAuthorizationFailed,
        BrokerError::ShuttingDown(_) => ResponseError::NotController,
        _ => ResponseError::UnknownServerError,
    };
    (code.code(), e.to_string())
}

pub async fn delete(conn: &Rc<KafkaConn>, version: i16, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (by name or id), earlier versions in
    // `topic_names`.
    let names: Vec<Option<String>> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect()
    } else {
        req.topic_names.iter().map(|n| Some(n.0.to_string())).collect()
    };
    let caller = conn.caller();
    let mut responses = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let Some(name) = name else {
            // Shoal topics have no Kafka topic ids.
            let id = req.topics.get(i).map(|t| t.topic_id).unwrap_or_default();
            responses.push(
                DeletableTopicResult::default()
                    .with_topic_id(id)
                    .with_error_code(ResponseError::UnknownTopicId.code()),
            );
            continue;
        };
        let result =
            DeletableTopicResult::default().with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
        responses.push(match conn.shard.access(&caller).delete_topic(name).await {
            Ok(()) => result,
            Err(e) => {
                let code = match &e {
                    BrokerError::UnknownTopic { .. } => ResponseError::UnknownTopicOrPartition,
                    BrokerError::AuthorizationFailed { .. } => ResponseError::TopicAuthorizationFailed,
                    BrokerError::ShuttingDown(_) => ResponseError::NotController,
                    _ => ResponseError::UnknownServerError,
                };
                let message = (version >= 5).then(|| StrBytes::from_string(e.to_string()));
                result.with_error_code(code.code()).with_error_message(message)
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
