//! Finding a consumer group's coordinator, and calling it with retries.
//!
//! On a single node a group's coordinator is its coordinating shard
//! ([`crate::partitioner::shard_for_group`]), reached through the shard's
//! own port. On a cluster it is, in addition, one node: the leader of that
//! shard's partition of the group state topic
//! ([`GROUP_STATE_TOPIC`]), which moves on failover. With `follow_leader`
//! the client asks a node for the leaders of that topic (the `Leaders`
//! API), caches the coordinator's address per group and sends the group's
//! requests there (its shared port; the node forwards to the shard). A
//! `not_coordinator` reply, or a lost connection to a cluster coordinator,
//! drops the cached address and counts a redirect ([`Client::redirects`]);
//! the next attempt, after the redirect backoff, looks the coordinator up
//! again, of the bootstrap node or, when it is down, of any node learned
//! from earlier answers. A node that does not know a leader yet (an
//! election) sends the call down the single-node route, which answers
//! `not_coordinator` until one is elected.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::connection::{Connection, Reply};
use super::{learn_nodes, lost_node, resolve, Client};
use crate::api::ApiKey;
use crate::codec::Request;
use crate::error::{ErrorCode, ProtocolError};
use crate::messages::delivery::*;
use crate::messages::dlq::QuarantineRedriveResponse;
use crate::messages::group::*;
use crate::messages::leaders::{LeadersRequest, LeadersResponse, GROUP_STATE_TOPIC};
use crate::messages::stats::GroupStatsResponse;
use crate::partitioner::shard_for_group;

/// A group response: its error code and message fields.
pub trait GroupReply {
    fn error_code(&self) -> u16;
    fn error_message(&self) -> &str;
}

macro_rules! group_replies {
    ($($ty:ty),* $(,)?) => {
        $(impl GroupReply for $ty {
            fn error_code(&self) -> u16 {
                self.error
            }
            fn error_message(&self) -> &str {
                &self.message
            }
        })*
    };
}

group_replies!(
    JoinGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    PollResponse,
    AckResponse,
    NackResponse,
    CommitOffsetResponse,
    SeekResponse,
    GroupStatsResponse,
    QuarantineRedriveResponse,
);

/// Where a group's requests go, as far as the client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CoordinatorRoute {
    /// Not a cluster (or a broker without the `Leaders` API): the
    /// coordinating shard of the node connected to.
    Shard,
    /// The coordinator's node, on a cluster.
    Node(SocketAddr),
}

impl Client {
    /// The connection to a group's coordinator: on a cluster its node
    /// (looked up and cached), else its coordinating shard's port (shared
    /// port fallback).
    pub fn group_connection(&self, group: &str) -> Result<Arc<Connection>, ProtocolError> {
        if self.config.follow_leader {
            if let Some(CoordinatorRoute::Node(addr)) = self.coordinator_route(group)? {
                return self.connection_to(addr);
            }
        }
        self.shard_group_connection(group)
    }

    /// The cached route of `group`, looked up when there is none; `None`
    /// while a cluster has no known coordinator for it (an election).
    fn coordinator_route(&self, group: &str) -> Result<Option<CoordinatorRoute>, ProtocolError> {
        if let Some(route) = self.metadata.lock().expect("client lock").coordinators.get(group) {
            return Ok(Some(*route));
        }
        let shard_count = self.layout()?.shard_count.max(1);
        let mut asked: Vec<SocketAddr> = vec![self.bootstrap];
        let known = self.metadata.lock().expect("client lock").nodes.clone();
        asked.extend(known.into_iter().filter(|a| *a != self.bootstrap));
        for node in asked {
            let Ok(conn) = self.connection_to(node) else {
                continue;
            };
            if !conn.speaks(ApiKey::Leaders) {
                return Ok(Some(self.cache_route(group, CoordinatorRoute::Shard)));
            }
            let request = LeadersRequest {
                topics: vec![GROUP_STATE_TOPIC.to_string()],
            };
            let Ok(reply) = conn.call(&request, &[], 0) else {
                continue;
            };
            let leaders = reply.message;
            learn_nodes(&mut self.metadata.lock().expect("client lock").nodes, &leaders);
            if leaders.node_id == 0 {
                return Ok(Some(self.cache_route(group, CoordinatorRoute::Shard)));
            }
            if let Some(addr) = coordinator_of(&leaders, shard_for_group(group, shard_count)) {
                return Ok(Some(self.cache_route(group, CoordinatorRoute::Node(addr))));
            }
        }
        Ok(None)
    }

    fn cache_route(&self, group: &str, route: CoordinatorRoute) -> CoordinatorRoute {
        self.metadata
            .lock()
            .expect("client lock")
            .coordinators
            .insert(group.to_string(), route);
        route
    }

    /// Counts one redirect and forgets where `group` is coordinated.
    fn redirected_group(&self, group: &str) {
        self.redirects_total.fetch_add(1, Ordering::Relaxed);
        self.metadata
            .lock()
            .expect("client lock")
            .coordinators
            .remove(group);
    }

    /// Whether `err` on a call for `group` means "find the coordinator
    /// again": `not_coordinator`, or a lost connection, a timeout or a
    /// draining node when the group is coordinated on a cluster.
    fn is_group_redirect(&self, group: &str, err: &ProtocolError) -> bool {
        if !self.config.follow_leader {
            return false;
        }
        if err.code() == Some(ErrorCode::NotCoordinator) {
            return true;
        }
        let cache = self.metadata.lock().expect("client lock");
        let on_cluster = !cache.nodes.is_empty()
            && !matches!(cache.coordinators.get(group), Some(CoordinatorRoute::Shard));
        lost_node(err) && on_cluster
    }

    /// One request for `group` at its coordinator, with the client's
    /// retries and redirects (module header); `wait_ms` extends the
    /// request timeout (a long poll). A `not_coordinator` answer in the
    /// reply's error field is a redirect; any other error code there is
    /// the caller's to read.
    pub fn call_group_reply<R: Request>(
        &self,
        group: &str,
        request: &R,
        wait_ms: u64,
    ) -> Result<Reply<R::Response>, ProtocolError>
    where
        R::Response: GroupReply,
    {
        self.retry_loop(
            || {
                let reply = self.group_connection(group)?.call(request, &[], wait_ms)?;
                let code = reply.message.error_code();
                if ErrorCode::from_wire(code) == ErrorCode::NotCoordinator {
                    return Err(ProtocolError::broker(code, reply.message.error_message()));
                }
                Ok(reply)
            },
            |err| self.is_group_redirect(group, err),
            |_, redirect| {
                if redirect {
                    self.redirected_group(group);
                }
            },
        )
    }

    /// [`Client::call_group_reply`] without a long poll, for the message.
    pub(crate) fn call_group<R: Request>(
        &self,
        group: &str,
        request: &R,
    ) -> Result<R::Response, ProtocolError>
    where
        R::Response: GroupReply,
    {
        Ok(self.call_group_reply(group, request, 0)?.message)
    }
}

/// The address of the node leading partition `shard` of the group state
/// topic in a `Leaders` answer, if one leads and its address is known.
fn coordinator_of(leaders: &LeadersResponse, shard: u32) -> Option<SocketAddr> {
    let topic = leaders
        .topics
        .iter()
        .find(|t| t.name == GROUP_STATE_TOPIC && t.error == ErrorCode::None.to_wire())?;
    let leader = topic.partitions.iter().find(|p| p.partition == shard)?.leader;
    if leader == 0 {
        return None;
    }
    let node = leaders
        .nodes
        .iter()
        .find(|n| n.node_id == leader && !n.addr.is_empty())?;
    resolve(&node.addr).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::leaders::{NodeAddress, PartitionLeader, TopicLeaders};

    fn answer(leader_of_shard_1: u32) -> LeadersResponse {
        LeadersResponse {
            node_id: 1,
            nodes: vec![
                NodeAddress {
                    node_id: 1,
                    addr: "127.0.0.1:9001".into(),
                },
                NodeAddress {
                    node_id: 2,
                    addr: "127.0.0.1:9002".into(),
                },
            ],
            topics: vec![TopicLeaders {
                name: GROUP_STATE_TOPIC.into(),
                error: 0,
                partitions: (0..2)
                    .map(|p| PartitionLeader {
                        partition: p,
                        replicas: vec![1, 2],
                        leader: if p == 1 { leader_of_shard_1 } else { 1 },
                        term: 3,
                    })
                    .collect(),
            }],
        }
    }

    /// The coordinator of shard 1's groups is the node leading partition 1;
    /// none while that partition elects.
    #[test]
    fn coordinator_is_the_leader_of_the_shards_partition() {
        assert_eq!(
            coordinator_of(&answer(2), 1),
            Some("127.0.0.1:9002".parse().unwrap())
        );
        assert_eq!(
            coordinator_of(&answer(2), 0),
            Some("127.0.0.1:9001".parse().unwrap())
        );
        assert_eq!(coordinator_of(&answer(0), 1), None);
        assert_eq!(coordinator_of(&answer(2), 7), None);
    }
}
