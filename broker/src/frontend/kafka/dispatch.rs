//! Dispatch: one decoded request to the handler of its kind, and the
//! handler's response to a frame. Every error a response carries is
//! counted by API and Kafka error code (`/metrics`), read from the response
//! itself so no handler can forget to count one.

use std::rc::Rc;

use bytes::BytesMut;
use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::codec::{encode_response, KafkaRequest};
use super::context::{Answer, KafkaConn};
use super::describe_groups;
use super::fetch;
use super::find_coordinator;
use super::group_membership;
use super::init_producer_id;
use super::list_groups;
use super::list_offsets;
use super::metadata;
use super::offset_commit;
use super::offset_fetch;
use super::produce;
use super::supported_apis::api_versions_response;
use super::topic_admin;
use crate::metrics::counters::kafka as kafka_metrics;

/// Serves one request and returns what the writer sends for it.
pub async fn serve_request(conn: &Rc<KafkaConn>, request: KafkaRequest) -> Answer {
    let context = request.context();
    let api_key = context.api_key as i16;
    let version = context.api_version;
    kafka_metrics::count_request(api_key);
    if conn.shard.is_shutting_down() {
        // As Kafka's broker in a controlled shutdown: the connection closes
        // and the client reconnects (to this broker once restarted).
        return Answer::Close;
    }
    let client_id = request.header.client_id.as_deref().unwrap_or("").to_string();
    let response = match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions_response(0)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(conn, version, r).await),
        RequestKind::Produce(r) => match produce::handle(conn, version, r).await {
            produce::Outcome::Respond(r) => ResponseKind::Produce(r),
            produce::Outcome::NoResponse(answer) => return answer,
        },
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(conn, version, r).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(conn, version, r).await)
        }
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(init_producer_id::handle(r)),
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(conn, version, r))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(group_membership::join(conn, version, &client_id, r).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(group_membership::sync(conn, version, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(group_membership::heartbeat(conn, r).await),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(group_membership::leave(conn, version, r).await)
        }
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offset_commit::handle(conn, r).await),
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(conn, version, r).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(conn, r).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(conn, r).await),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(topic_admin::create(conn, version, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(topic_admin::delete(conn, version, r).await)
        }
        // The codec decodes only the APIs of the served table, each handled
        // above; anything else here is a bug, answered by closing.
        other => {
            tracing::error!(?context, kind = ?std::mem::discriminant(&other), "kafka request without a handler");
            return Answer::Close;
        }
    };
    for code in error_codes(&response) {
        kafka_metrics::count_error(api_key, code);
    }
    let mut out = BytesMut::new();
    match encode_response(&context, &response, &mut out) {
        Ok(()) => Answer::Reply(out),
        Err(e) => {
            tracing::error!(?context, error = %e, "kafka response does not encode; closing the connection");
            kafka_metrics::count_error(api_key, e.kafka_code());
            Answer::Close
        }
    }
}

/// Every error code a response carries (top level, per topic, partition,
/// group or member), zeros included.
pub fn error_codes(response: &ResponseKind) -> Vec<i16> {
    match response {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::Fetch(r) => std::iter::once(r.error_code)
            .chain(
                r.responses
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
            .collect(),
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::Metadata(r) => r
            .topics
            .iter()
            .flat_map(|t| std::iter::once(t.error_code).chain(t.partitions.iter().map(|p| p.error_code)))
            .collect(),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::OffsetFetch(r) => std::iter::once(r.error_code)
            .chain(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
            .collect(),
        ResponseKind::FindCoordinator(r) => std::iter::once(r.error_code)
            .chain(r.coordinators.iter().map(|c| c.error_code))
            .collect(),
        ResponseKind::JoinGroup(r) => vec![r.error_code],
        ResponseKind::SyncGroup(r) => vec![r.error_code],
        ResponseKind::Heartbeat(r) => vec![r.error_code],
        ResponseKind::LeaveGroup(r) => std::iter::once(r.error_code)
            .chain(r.members.iter().map(|m| m.error_code))
            .collect(),
        ResponseKind::DescribeGroups(r) => r.groups.iter().map(|g| g.error_code).collect(),
        ResponseKind::ListGroups(r) => vec![r.error_code],
        ResponseKind::ApiVersions(r) => vec![r.error_code],
        ResponseKind::CreateTopics(r) => r.topics.iter().map(|t| t.error_code).collect(),
        ResponseKind::DeleteTopics(r) => r.responses.iter().map(|t| t.error_code).collect(),
        ResponseKind::InitProducerId(r) => vec![r.error_code],
        ResponseKind::SaslHandshake(r) => vec![r.error_code],
        ResponseKind::SaslAuthenticate(r) => vec![r.error_code],
        _ => Vec::new(),
    }
}
