//! ListOffsets: the earliest offset (timestamp −2), the latest (−1, the
//! high watermark: the next offset a consumer will see), or the first
//! offset at or after a timestamp, each resolved on the partition's owner.
//!
//! Shoal indexes time by append time, so a timestamp query finds the first
//! record *appended* at or after it (Kafka looks at record timestamps,
//! which are the append time only for topics with log-append time). A
//! timestamp past the last record answers offset −1, timestamp −1, as
//! Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::context::KafkaConn;
use super::error::partition_error_code;
use crate::ids::PartitionId;
use crate::partition::OffsetQuery;

/// Kafka's "latest" and "earliest" timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub async fn handle(conn: &Rc<KafkaConn>, _version: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            partitions.push(one(conn, name, p.partition_index, p.timestamp).await);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

async fn one(conn: &KafkaConn, topic: &str, index: i32, timestamp: i64) -> ListOffsetsPartitionResponse {
    let resp = ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_leader_epoch(-1);
    let Ok(partition) = u32::try_from(index) else {
        return resp
            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
            .with_offset(-1)
            .with_timestamp(-1);
    };
    let query = match timestamp {
        LATEST => OffsetQuery::Latest,
        EARLIEST => OffsetQuery::Earliest,
        ts if ts >= 0 => OffsetQuery::Timestamp(ts),
        // −3 (max timestamp) and other special values are v7+ queries.
        _ => {
            return resp
                .with_error_code(ResponseError::UnsupportedVersion.code())
                .with_offset(-1)
                .with_timestamp(-1)
        }
    };
    let caller = conn.caller();
    match conn
        .shard
        .access(&caller)
        .list_offset(topic, PartitionId(partition), query)
        .await
    {
        Ok(listed) => {
            if let OffsetQuery::Timestamp(_) = query {
                // No record at or after the time: Kafka's "none" answer.
                match listed.timestamp_ms {
                    Some(ts) => resp.with_offset(listed.offset.get() as i64).with_timestamp(ts),
                    None => resp.with_offset(-1).with_timestamp(-1),
                }
            } else {
                resp.with_offset(listed.offset.get() as i64).with_timestamp(-1)
            }
        }
        Err(e) => resp
            .with_error_code(partition_error_code(&e))
            .with_offset(-1)
            .with_timestamp(-1),
    }
}
