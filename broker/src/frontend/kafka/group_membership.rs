//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: the classic consumer
//! group protocol with client-side assignors. Each request is translated
//! into the sans-IO coordinator's terms and run on the group's coordinating
//! shard ([`super::group_registry`]), then translated back for the
//! request's version.
//!
//! Shoal's broker-side delivery (leases, acks, retries with backoff, the
//! dead-letter quarantine, the circuit breaker) does not apply to these
//! groups: Kafka consumers fetch and commit positions themselves. A group
//! name is used over one protocol only; a Kafka join for a Shoal group is
//! answered INCONSISTENT_GROUP_PROTOCOL (and logged with the reason).

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::context::KafkaConn;
use super::group_coordinator::{JoinRequest, Leaving, SyncRequest};
use super::group_registry;
use crate::error::BrokerError;
use shoal_protocol::messages::security::Operation;

fn text(s: &StrBytes) -> String {
    s.as_str().to_string()
}

fn str_bytes(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

/// The error a group call gets when it is refused before it runs:
/// GROUP_AUTHORIZATION_FAILED when the caller may not use the group,
/// else COORDINATOR_NOT_AVAILABLE (the coordinator shard is stopping).
pub fn refused_code(e: &BrokerError) -> i16 {
    match e {
        BrokerError::AuthorizationFailed { .. } => ResponseError::GroupAuthorizationFailed.code(),
        _ => ResponseError::CoordinatorNotAvailable.code(),
    }
}

pub async fn join(
    conn: &Rc<KafkaConn>,
    version: i16,
    client_id: &str,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    let group = text(&req.group_id.0);
    let request = JoinRequest {
        member_id: text(&req.member_id),
        group_instance_id: req.group_instance_id.as_ref().map(text),
        client_id: client_id.to_string(),
        client_host: conn.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            -1
        },
        protocol_type: text(&req.protocol_type),
        protocols: req
            .protocols
            .iter()
            .map(|p| (text(&p.name), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let caller = conn.caller();
    let answer = conn
        .shard
        .access(&caller)
        .group_submit(&group.clone(), Operation::Consume, move |shard| {
            group_registry::join(shard, group, request)
        })
        .await;
    let j = match answer {
        Ok(j) => j,
        Err(e) => {
            return JoinGroupResponse::default()
                .with_error_code(refused_code(&e))
                .with_generation_id(-1)
                .with_member_id(req.member_id);
        }
    };
    let members = j
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_group_instance_id(if version >= 5 {
                    m.group_instance_id.map(str_bytes)
                } else {
                    None
                })
                .with_metadata(m.metadata)
        })
        .collect();
    // Before v7 the protocol name is a non-null string.
    let protocol_name = match (version >= 7, j.protocol_name) {
        (true, name) => name.map(str_bytes),
        (false, name) => Some(str_bytes(name.unwrap_or_default())),
    };
    JoinGroupResponse::default()
        .with_error_code(j.error_code)
        .with_generation_id(j.generation_id)
        .with_protocol_type(if version >= 7 {
            j.protocol_type.map(str_bytes)
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(j.leader))
        .with_member_id(str_bytes(j.member_id))
        .with_members(members)
}

pub async fn sync(conn: &Rc<KafkaConn>, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
    let group = text(&req.group_id.0);
    let request = SyncRequest {
        member_id: text(&req.member_id),
        generation_id: req.generation_id,
        protocol_type: req.protocol_type.as_ref().map(text),
        protocol_name: req.protocol_name.as_ref().map(text),
        assignments: req
            .assignments
            .iter()
            .map(|a| (text(&a.member_id), a.assignment.clone()))
            .collect(),
    };
    let caller = conn.caller();
    let answer = conn
        .shard
        .access(&caller)
        .group_submit(&group.clone(), Operation::Consume, move |shard| {
            group_registry::sync(shard, group, request)
        })
        .await;
    let s = match answer {
        Ok(s) => s,
        Err(e) => return SyncGroupResponse::default().with_error_code(refused_code(&e)),
    };
    let response = SyncGroupResponse::default()
        .with_error_code(s.error_code)
        .with_assignment(s.assignment);
    if version >= 5 {
        response
            .with_protocol_type(s.protocol_type.map(str_bytes))
            .with_protocol_name(s.protocol_name.map(str_bytes))
    } else {
        response
    }
}

pub async fn heartbeat(conn: &Rc<KafkaConn>, req: HeartbeatRequest) -> HeartbeatResponse {
    let group = text(&req.group_id.0);
    let member = text(&req.member_id);
    let generation = req.generation_id;
    let caller = conn.caller();
    let code = conn
        .shard
        .access(&caller)
        .group_submit(&group.clone(), Operation::Consume, move |shard| async move {
            group_registry::heartbeat(shard, group, member, generation)
        })
        .await
        .unwrap_or_else(|e| refused_code(&e));
    HeartbeatResponse::default().with_error_code(code)
}

pub async fn leave(conn: &Rc<KafkaConn>, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let group = text(&req.group_id.0);
    let leaving: Vec<Leaving> = if version >= 3 {
        req.members
            .iter()
            .map(|m| Leaving {
                member_id: text(&m.member_id),
                group_instance_id: m.group_instance_id.as_ref().map(text),
            })
            .collect()
    } else {
        vec![Leaving {
            member_id: text(&req.member_id),
            group_instance_id: None,
        }]
    };
    let named = leaving.clone();
    let caller = conn.caller();
    let codes = conn
        .shard
        .access(&caller)
        .group_submit(&group.clone(), Operation::Consume, move |shard| async move {
            group_registry::leave(shard, group, leaving)
        })
        .await
        .unwrap_or_else(|e| vec![refused_code(&e); named.len()]);
    if version < 3 {
        return LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0));
    }
    let members = named
        .into_iter()
        .zip(codes)
        .map(|(l, code)| {
            MemberResponse::default()
                .with_member_id(str_bytes(l.member_id))
                .with_group_instance_id(l.group_instance_id.map(str_bytes))
                .with_error_code(code)
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
