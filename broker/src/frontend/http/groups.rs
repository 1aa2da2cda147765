//! Consumer groups over HTTP: join, heartbeat, leave, list, and
//! `GET /groups/:group` with per-partition lag in records and seconds.
//!
//! Every call goes through the shard's group routing, which forwards to the
//! group's coordinating shard; this module only translates JSON. A member joins once, then passes its
//! `member` id and `generation` to poll, ack, nack and commit; a stale
//! generation is refused with 409 `stale_generation`.

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use shoal_protocol::messages::group::{
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, TopicPartitions,
};
use shoal_protocol::messages::stats::{GroupStatsRequest, GroupStatsResponse};

use super::common::{circuit_name, state_name, HttpRequest};
use super::json::{ok, parse, HttpError, HttpResponse};
use crate::metadata::security::Caller;
use crate::shard::Shard;

/// Session timeout when a join does not set one.
const SESSION_TIMEOUT_MS_DEFAULT: u32 = 30_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    topics: Vec<String>,
    /// Shown in group stats; defaults to "http".
    member_name: Option<String>,
    /// Rejoin as this member.
    member: Option<String>,
    session_timeout_ms: Option<u32>,
}

#[derive(Serialize)]
struct Membership {
    member: String,
    generation: u32,
    assignment: Vec<TopicPartitions>,
    heartbeat_interval_ms: u32,
}

/// `POST /groups/:group/join`.
pub async fn join(shard: &Rc<Shard>, group: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let body: JoinBody = parse(&req.body)?;
    let resp = shard
        .access(&req.caller)
        .group_join(JoinGroupRequest {
            group: group.to_string(),
            member_name: body.member_name.unwrap_or_else(|| "http".into()),
            member_id: body.member,
            topics: body.topics,
            session_timeout_ms: body.session_timeout_ms.unwrap_or(SESSION_TIMEOUT_MS_DEFAULT),
        })
        .await?;
    Ok(ok(&Membership {
        member: resp.member_id,
        generation: resp.generation,
        assignment: resp.assignment,
        heartbeat_interval_ms: resp.heartbeat_interval_ms,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    member: String,
    generation: Option<u32>,
}

/// `POST /groups/:group/heartbeat`.
pub async fn heartbeat(shard: &Rc<Shard>, group: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let body: MemberBody = parse(&req.body)?;
    let generation = body
        .generation
        .ok_or_else(|| HttpError::invalid("heartbeat needs member and generation"))?;
    let resp = shard
        .access(&req.caller)
        .group_heartbeat(HeartbeatRequest {
            group: group.to_string(),
            member_id: body.member,
            generation,
        })
        .await?;
    #[derive(Serialize)]
    struct Beat {
        generation: u32,
        assignment: Vec<TopicPartitions>,
        added: Vec<TopicPartitions>,
        revoked: Vec<TopicPartitions>,
    }
    Ok(ok(&Beat {
        generation: resp.generation,
        assignment: resp.assignment,
        added: resp.added,
        revoked: resp.revoked,
    }))
}

/// `POST /groups/:group/leave`.
pub async fn leave(shard: &Rc<Shard>, group: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let body: MemberBody = parse(&req.body)?;
    shard
        .access(&req.caller)
        .group_leave(LeaveGroupRequest {
            group: group.to_string(),
            member_id: body.member,
        })
        .await?;
    #[derive(Serialize)]
    struct Left {
        left: bool,
    }
    Ok(ok(&Left { left: true }))
}

/// `GET /groups`.
pub async fn list(shard: &Rc<Shard>, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let resp = shard.access(&req.caller).list_groups().await?;
    #[derive(Serialize)]
    struct Summary {
        group: String,
        state: &'static str,
        generation: u32,
        members: u32,
        topics: Vec<String>,
    }
    #[derive(Serialize)]
    struct List {
        groups: Vec<Summary>,
    }
    let groups = resp
        .groups
        .into_iter()
        .map(|g| Summary {
            group: g.group,
            state: state_name(g.state),
            generation: g.generation,
            members: g.members,
            topics: g.topics,
        })
        .collect();
    Ok(ok(&List { groups }))
}

#[derive(Serialize)]
struct PartitionLag {
    topic: String,
    partition: u32,
    owner: String,
    committed_offset: u64,
    log_end: u64,
    lag_records: u64,
    lag_ms: u64,
    lag_seconds: f64,
    in_flight: u64,
    retry_backlog: u64,
    quarantine_depth: u64,
}

#[derive(Serialize)]
struct MemberView {
    member: String,
    member_name: String,
    assignment: Vec<TopicPartitions>,
    last_heartbeat_age_ms: u64,
}

#[derive(Serialize)]
struct GroupView {
    group: String,
    state: &'static str,
    generation: u32,
    circuit: &'static str,
    members: Vec<MemberView>,
    partitions: Vec<PartitionLag>,
    retry_budget_permille: u32,
    retry_budget_used_permille: u32,
    deliveries_total: u64,
    acks_total: u64,
    nacks_total: u64,
    retries_total: u64,
    quarantined_total: u64,
}

/// The group's stats, or an error (404 for an unknown group).
pub async fn stats(shard: &Rc<Shard>, group: &str, caller: &Caller) -> Result<GroupStatsResponse, HttpError> {
    let resp = shard
        .access(caller)
        .group_stats(GroupStatsRequest {
            group: group.to_string(),
        })
        .await?;
    Ok(resp)
}

/// `GET /groups/:group`.
pub async fn describe(shard: &Rc<Shard>, group: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let s = stats(shard, group, &req.caller).await?;
    let partitions = s
        .partitions
        .into_iter()
        .map(|p| PartitionLag {
            topic: p.topic,
            partition: p.partition,
            owner: p.owner_member_id,
            committed_offset: p.committed_offset,
            log_end: p.log_end,
            lag_records: p.lag_records,
            lag_ms: p.lag_ms,
            lag_seconds: p.lag_ms as f64 / 1000.0,
            in_flight: p.in_flight,
            retry_backlog: p.retry_backlog,
            quarantine_depth: p.quarantine_depth,
        })
        .collect();
    let members = s
        .members
        .into_iter()
        .map(|m| MemberView {
            member: m.member_id,
            member_name: m.member_name,
            assignment: m.assignment,
            last_heartbeat_age_ms: m.last_heartbeat_age_ms,
        })
        .collect();
    Ok(ok(&GroupView {
        group: s.group,
        state: state_name(s.state),
        generation: s.generation,
        circuit: circuit_name(s.circuit),
        members,
        partitions,
        retry_budget_permille: s.retry_budget_permille,
        retry_budget_used_permille: s.retry_budget_used_permille,
        deliveries_total: s.deliveries_total,
        acks_total: s.acks_total,
        nacks_total: s.nacks_total,
        retries_total: s.retries_total,
        quarantined_total: s.quarantined_total,
    }))
}
