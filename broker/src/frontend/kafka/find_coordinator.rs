//! FindCoordinator: a group's coordinator is the shard `murmur2(group) %
//! shards`, advertised as Kafka broker `shard id` at its own Kafka port,
//! so a client's group requests reach the core that owns the group. v4
//! answers several keys at once. Transaction coordinators do not exist
//! (Shoal has no transactions): INVALID_REQUEST. A caller that may not
//! describe the group gets GROUP_AUTHORIZATION_FAILED.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::context::KafkaConn;
use shoal_protocol::messages::security::Operation;

/// Kafka's key type for a consumer group (1 is a transactional id).
const KEY_TYPE_GROUP: i8 = 0;

pub fn handle(conn: &Rc<KafkaConn>, version: i16, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let caller = conn.caller();
    let resolve = |key: &str| -> Result<(i32, String, i32), (i16, String)> {
        if req.key_type != KEY_TYPE_GROUP {
            return Err((
                ResponseError::InvalidRequest.code(),
                "Shoal has no transactions, so no transaction coordinator".into(),
            ));
        }
        let shard = &conn.shard;
        if shard
            .access(&caller)
            .require_group(key, Operation::Describe)
            .is_err()
        {
            return Err((
                ResponseError::GroupAuthorizationFailed.code(),
                format!("not authorized to describe group {key:?}"),
            ));
        }
        let kafka = shard.ports().kafka.as_ref().ok_or((
            ResponseError::CoordinatorNotAvailable.code(),
            "the Kafka listener is off".to_string(),
        ))?;
        let id = shard.coordinator(key);
        Ok((
            id.get() as i32,
            kafka.host.clone(),
            i32::from(kafka.shard_ports[id.index()]),
        ))
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match resolve(key) {
                    Ok((node, host, port)) => c
                        .with_node_id(BrokerId(node))
                        .with_host(StrBytes::from_string(host))
                        .with_port(port),
                    Err((code, message)) => c
                        .with_error_code(code)
                        .with_error_message(Some(StrBytes::from_string(message)))
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match resolve(&req.key) {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(StrBytes::from_string(host))
            .with_port(port),
        Err((code, message)) => FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message((version >= 1).then(|| StrBytes::from_string(message)))
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    }
}
