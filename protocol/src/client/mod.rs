//! The thin blocking client (std::net): connections, shard-aware routing,
//! admin calls, a batching [`Producer`] and the consumers.
//!
//! # Routing
//!
//! The client bootstraps on the broker's shared port, where any shard may
//! accept it. It asks for metadata once per topic and caches, per
//! partition, the owning shard and that shard's own port; produce and fetch
//! for a partition then go straight to the owning shard's port (zero
//! cross-core hops on the broker). Group calls go to the group's
//! coordinating shard the same way ([`crate::partitioner::shard_for_group`]);
//! on a cluster, to the node coordinating the group ([`coordinator`]).
//! If a shard port cannot be reached, the request goes to the shared port
//! instead (the broker forwards it); a `NotOwner` reply drops the cached
//! topic so the next call refreshes it. Admin calls use the shared port.
//!
//! # Replicated partitions (a cluster)
//!
//! With `follow_leader` (the default) the client also asks the node it
//! talks to which node leads each replicated partition (the optional
//! `Leaders` API, [`crate::messages::leaders`]) and sends that partition's
//! produce and fetch to the leader's node. A `not_leader` reply, or a lost
//! connection to a leader, drops the cached routes; the next attempt asks
//! again, of the bootstrap node or, when it is down, of any other node
//! learned from earlier answers. These redirects have their own budget
//! (`redirects_max`) and an exponential backoff from `retry_backoff_ms` to
//! `redirect_backoff_ms_max`, so an election (a few hundred ms) is ridden
//! out; each is counted ([`Client::redirects`]). Group calls follow their
//! coordinator the same way, after `not_coordinator` ([`coordinator`]).
//!
//! # Retries
//!
//! A call is retried, up to `retries_max` times with `retry_backoff_ms`
//! between attempts, when the connection failed or the broker answered with
//! a retryable [`crate::ErrorCode`]. Terminal codes are returned at once.
//! The policy is the pure [`RetryPolicy`].
//! Produce retries are at-least-once: set a `message_id` on records (the
//! broker's dedup window) to make a retried produce store each record once.

mod authenticate;
mod connection;
mod consumer;
mod coordinator;
mod producer;
mod records;
mod retry;
mod security_admin;
mod wire;

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use connection::{Connection, ConnectionConfig, PendingReply, Reply};
pub use consumer::{GroupConsumer, GroupConsumerConfig, PartitionConsumer};
pub use coordinator::GroupReply;
pub use producer::{BatchAcks, Producer, ProducerConfig, RecordAck, SendHandle};
pub use records::ConsumedRecord;
pub use retry::{Retries, RetryPolicy};

use crate::api::ApiKey;
use crate::codec::Request;
use crate::error::{check, ErrorCode, ProtocolError};
use crate::messages::delivery::{SeekRequest, SeekResponse, SeekTarget};
use crate::messages::dlq::*;
use crate::messages::fetch::{FetchPartition, FetchRequest};
use crate::messages::group::{GroupSummary, ListGroupsRequest};
use crate::messages::leaders::{LeadersRequest, LeadersResponse};
use crate::messages::metadata::{MetadataRequest, MetadataResponse};
use crate::messages::offsets::{ListOffsetsPartition, ListOffsetsRequest, OffsetSpec};
use crate::messages::stats::{GroupStatsRequest, GroupStatsResponse, TopicStatsRequest, TopicStatsResponse};
use crate::messages::topic::*;
use crate::partitioner::shard_for_group;
use records::{read_batch, Select};

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connection: ConnectionConfig,
    /// Send partition and group traffic to the owning shard's own port.
    pub shard_aware: bool,
    /// Attempts after the first for retryable failures.
    pub retries_max: u32,
    pub retry_backoff_ms: u64,
    /// Send produce and fetch of a replicated partition to its leader's
    /// node (see the module docs). Off: to the node connected to, which
    /// serves reads up to its own high watermark and refuses produce with
    /// `not_leader` unless it leads.
    pub follow_leader: bool,
    /// Attempts after `not_leader` or a lost leader connection, on top of
    /// `retries_max`.
    pub redirects_max: u32,
    /// Cap of the redirect backoff, which doubles from `retry_backoff_ms`.
    pub redirect_backoff_ms_max: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connection: ConnectionConfig::default(),
            shard_aware: true,
            retries_max: 3,
            retry_backoff_ms: 100,
            follow_leader: true,
            redirects_max: 10,
            redirect_backoff_ms_max: 1_000,
        }
    }
}

/// Where one partition lives, from metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRoute {
    pub shard: u32,
    /// The owning shard's own address on the node that answered; `None` if
    /// the broker reported no port.
    pub addr: Option<SocketAddr>,
    /// The partition has a raft group (a replicated topic on a cluster).
    pub replicated: bool,
    /// The leader's node address, when another node than the one that
    /// answered leads (that node forwards to its owning shard).
    pub leader_addr: Option<SocketAddr>,
}

/// The broker's shard layout, from metadata.
#[derive(Debug, Clone, Default)]
struct Layout {
    shard_count: u32,
    shard_addrs: HashMap<u32, SocketAddr>,
}

#[derive(Default)]
struct MetadataCache {
    layout: Option<Layout>,
    topics: HashMap<String, Vec<PartitionRoute>>,
    /// Native addresses of the cluster's nodes, from `Leaders` replies:
    /// where to ask when the bootstrap node is down.
    nodes: Vec<SocketAddr>,
    /// Where each group's requests go ([`coordinator`]).
    coordinators: HashMap<String, coordinator::CoordinatorRoute>,
}

/// The result of a partition fetch.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub records: Vec<ConsumedRecord>,
    pub high_watermark: u64,
    pub log_start: u64,
    pub log_end: u64,
    /// Offset to fetch next: one past the last record returned, or the
    /// requested offset when nothing was returned.
    pub next_offset: u64,
}

/// A connection pool, metadata cache and the admin API. Share it between
/// threads with an `Arc`.
pub struct Client {
    config: ClientConfig,
    bootstrap: SocketAddr,
    shared: Mutex<Option<Arc<Connection>>>,
    shard_conns: Mutex<HashMap<SocketAddr, Arc<Connection>>>,
    metadata: Mutex<MetadataCache>,
    redirects_total: Arc<AtomicU64>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl Client {
    /// Connects to `broker` ("host:port", the shared port) with defaults.
    pub fn connect(broker: &str) -> Result<Client, ProtocolError> {
        Client::with_config(broker, ClientConfig::default())
    }

    pub fn with_config(broker: &str, config: ClientConfig) -> Result<Client, ProtocolError> {
        let bootstrap = resolve(broker)?;
        let client = Client {
            config,
            bootstrap,
            shared: Mutex::new(None),
            shard_conns: Mutex::new(HashMap::new()),
            metadata: Mutex::new(MetadataCache::default()),
            redirects_total: Arc::default(),
        };
        client.shared_connection()?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The retry policy of this client's settings.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries_max: self.config.retries_max,
            redirects_max: self.config.redirects_max,
            backoff_ms: self.config.retry_backoff_ms,
            redirect_backoff_ms_max: self.config.redirect_backoff_ms_max,
        }
    }

    /// Redirects followed so far: `not_leader` and `not_coordinator`
    /// replies, and lost leader or coordinator connections, after which the
    /// client looked the leader or coordinator up again.
    pub fn redirects(&self) -> u64 {
        self.redirects_total.load(Ordering::Relaxed)
    }

    /// The redirect counter itself, for a caller that sums it over many
    /// clients and outlives them (a benchmark's report).
    pub fn redirect_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.redirects_total)
    }

    /// Counts one redirect and drops the cached routes of `topic`.
    pub(crate) fn redirected(&self, topic: &str) {
        self.redirects_total.fetch_add(1, Ordering::Relaxed);
        self.invalidate(topic);
    }

    /// The connection to the shared port, reconnecting if it failed.
    pub fn shared_connection(&self) -> Result<Arc<Connection>, ProtocolError> {
        let mut slot = self.shared.lock().expect("client lock");
        if let Some(conn) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        let conn = Arc::new(Connection::connect(
            self.bootstrap,
            self.config.connection.clone(),
        )?);
        *slot = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// A connection to the bootstrap node or, when it is down, to any
    /// other node learned from `Leaders` replies (for what every node
    /// answers alike: the handshake's limits, administration).
    pub fn any_connection(&self) -> Result<Arc<Connection>, ProtocolError> {
        let first = match self.shared_connection() {
            Ok(conn) => return Ok(conn),
            Err(e) => e,
        };
        let others: Vec<SocketAddr> = self.metadata.lock().expect("client lock").nodes.clone();
        others
            .into_iter()
            .filter(|a| *a != self.bootstrap)
            .find_map(|a| self.connection_to(a).ok())
            .ok_or(first)
    }

    fn connection_to(&self, addr: SocketAddr) -> Result<Arc<Connection>, ProtocolError> {
        if addr == self.bootstrap {
            return self.shared_connection();
        }
        let mut pool = self.shard_conns.lock().expect("client lock");
        if let Some(conn) = pool.get(&addr).filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        let conn = Arc::new(Connection::connect(addr, self.config.connection.clone())?);
        pool.insert(addr, Arc::clone(&conn));
        Ok(conn)
    }

    /// The connection to use for a partition: its owning shard's port when
    /// shard-aware and reachable, else the shared port.
    pub fn partition_connection(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<Connection>, ProtocolError> {
        if !self.config.shard_aware && !self.config.follow_leader {
            return self.shared_connection();
        }
        let route = self.partition_route(topic, partition)?;
        if let (true, Some(leader)) = (self.config.follow_leader, route.leader_addr) {
            // No fallback to the shared port: that node does not lead.
            return self.connection_to(leader);
        }
        if !self.config.shard_aware {
            return self.shared_connection();
        }
        match route.addr.map(|a| self.connection_to(a)) {
            Some(Ok(conn)) => Ok(conn),
            _ => self.shared_connection(),
        }
    }

    /// The connection to a group's coordinating shard on the node
    /// connected to (shared port fallback).
    fn shard_group_connection(&self, group: &str) -> Result<Arc<Connection>, ProtocolError> {
        if !self.config.shard_aware {
            return self.shared_connection();
        }
        let layout = self.layout()?;
        if layout.shard_count == 0 {
            return self.shared_connection();
        }
        let shard = shard_for_group(group, layout.shard_count);
        match layout.shard_addrs.get(&shard).map(|a| self.connection_to(*a)) {
            Some(Ok(conn)) => Ok(conn),
            _ => self.shared_connection(),
        }
    }

    /// The route of one partition, refreshing metadata if it is not cached.
    pub fn partition_route(&self, topic: &str, partition: u32) -> Result<PartitionRoute, ProtocolError> {
        let routes = self.topic_routes(topic)?;
        routes.get(partition as usize).copied().ok_or_else(|| {
            ProtocolError::broker(
                ErrorCode::UnknownPartition.to_wire(),
                format!(
                    "topic {topic} has {} partitions, not {}",
                    routes.len(),
                    partition + 1
                ),
            )
        })
    }

    /// Number of partitions of `topic` (from cached metadata).
    pub fn partition_count(&self, topic: &str) -> Result<u32, ProtocolError> {
        if let Some(routes) = self.metadata.lock().expect("client lock").topics.get(topic) {
            return Ok(routes.len() as u32);
        }
        Ok(self.topic_routes(topic)?.len() as u32)
    }

    fn topic_routes(&self, topic: &str) -> Result<Vec<PartitionRoute>, ProtocolError> {
        if let Some(routes) = self.metadata.lock().expect("client lock").topics.get(topic) {
            return Ok(routes.clone());
        }
        let reply = self.refresh_metadata(&[topic.to_string()])?;
        let cache = self.metadata.lock().expect("client lock");
        cache.topics.get(topic).cloned().ok_or_else(|| {
            // The broker's reason: unknown, or not authorized (a topic the
            // caller has no ACL for is refused by name).
            let code = reply
                .topics
                .iter()
                .find(|t| t.name == topic && t.error != ErrorCode::None.to_wire())
                .map_or(ErrorCode::UnknownTopic.to_wire(), |t| t.error);
            let message = if code == ErrorCode::AuthorizationFailed.to_wire() {
                format!("no ACL allows this principal to use topic {topic}")
            } else {
                format!("unknown topic {topic}")
            };
            ProtocolError::broker(code, message)
        })
    }

    fn layout(&self) -> Result<Layout, ProtocolError> {
        if let Some(layout) = &self.metadata.lock().expect("client lock").layout {
            return Ok(layout.clone());
        }
        self.refresh_metadata(&[])?;
        Ok(self
            .metadata
            .lock()
            .expect("client lock")
            .layout
            .clone()
            .unwrap_or_default())
    }

    /// Drops cached routes for `topic` (after `NotOwner` or a topic change).
    pub fn invalidate(&self, topic: &str) {
        self.metadata.lock().expect("client lock").topics.remove(topic);
    }

    /// Asks the broker for metadata (of `topics`, or of every topic when
    /// empty) and refreshes the cache. Unknown topics are not cached. Asks
    /// the bootstrap node first, then every other node learned from
    /// earlier answers (a cluster whose bootstrap node is down).
    pub fn refresh_metadata(&self, topics: &[String]) -> Result<MetadataResponse, ProtocolError> {
        let first = match self.refresh_from(self.bootstrap, topics) {
            Ok(reply) => return Ok(reply),
            Err(e) => e,
        };
        let others: Vec<SocketAddr> = self.metadata.lock().expect("client lock").nodes.clone();
        for addr in others.into_iter().filter(|a| *a != self.bootstrap) {
            if let Ok(reply) = self.refresh_from(addr, topics) {
                return Ok(reply);
            }
        }
        Err(first)
    }

    /// One metadata (and, in a cluster, leaders) round trip to the node at
    /// `node`, whose answer then routes every partition.
    fn refresh_from(&self, node: SocketAddr, topics: &[String]) -> Result<MetadataResponse, ProtocolError> {
        let request = MetadataRequest {
            topics: topics.to_vec(),
        };
        let conn = self.connection_to(node)?;
        let reply = self.with_retry(None, || Ok(conn.call(&request, &[], 0)?.message))?;
        let leaders = if self.config.follow_leader && conn.speaks(ApiKey::Leaders) {
            let request = LeadersRequest {
                topics: topics.to_vec(),
            };
            Some(self.with_retry(None, || Ok(conn.call(&request, &[], 0)?.message))?)
        } else {
            None
        };
        let host = if reply.host.is_empty() {
            node.ip().to_string()
        } else {
            reply.host.clone()
        };
        let shard_addrs = reply
            .shards
            .iter()
            .filter(|s| s.port != 0)
            .filter_map(|s| resolve(&format!("{host}:{}", s.port)).ok().map(|a| (s.shard, a)))
            .collect::<HashMap<_, _>>();
        let mut cache = self.metadata.lock().expect("client lock");
        if let Some(leaders) = &leaders {
            learn_nodes(&mut cache.nodes, leaders);
        }
        for topic in &reply.topics {
            if topic.error != ErrorCode::None.to_wire() {
                cache.topics.remove(&topic.name);
                continue;
            }
            let routes = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut route = PartitionRoute {
                        shard: p.shard,
                        addr: (p.shard_port != 0)
                            .then(|| resolve(&format!("{host}:{}", p.shard_port)).ok())
                            .flatten(),
                        replicated: false,
                        leader_addr: None,
                    };
                    if let Some(leaders) = &leaders {
                        leader_route(&mut route, leaders, &topic.name, p.partition);
                    }
                    route
                })
                .collect();
            cache.topics.insert(topic.name.clone(), routes);
        }
        cache.layout = Some(Layout {
            shard_count: reply.shard_count,
            shard_addrs,
        });
        Ok(reply)
    }

    /// Runs `attempt` with the client's retry policy. `NotOwner` drops the
    /// cached routes of `topic` before the next attempt; `not_leader`, and
    /// a lost connection on a replicated partition, are redirects.
    pub(crate) fn with_retry<T>(
        &self,
        topic: Option<&str>,
        attempt: impl FnMut() -> Result<T, ProtocolError>,
    ) -> Result<T, ProtocolError> {
        self.retry_loop(
            attempt,
            |err| topic.is_some_and(|t| self.is_redirect(t, err)),
            |err, redirect| match topic {
                Some(topic) if redirect => self.redirected(topic),
                Some(topic) if err.code() == Some(ErrorCode::NotOwner) => self.invalidate(topic),
                _ => {}
            },
        )
    }

    /// The client's retry loop: runs `attempt` until it succeeds or the
    /// retry policy gives up. `is_redirect` says whether a failure means
    /// "look the route up again" (counted against the redirect budget);
    /// `before_retry` gets each retried failure and that verdict, to drop
    /// what it invalidates, before the backoff.
    pub(crate) fn retry_loop<T>(
        &self,
        mut attempt: impl FnMut() -> Result<T, ProtocolError>,
        is_redirect: impl Fn(&ProtocolError) -> bool,
        mut before_retry: impl FnMut(&ProtocolError, bool),
    ) -> Result<T, ProtocolError> {
        let policy = self.retry_policy();
        let mut tries = Retries::default();
        loop {
            let err = match attempt() {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let redirect = is_redirect(&err);
            let Some(backoff) = policy.next(&err, redirect, &mut tries) else {
                return Err(err);
            };
            before_retry(&err, redirect);
            std::thread::sleep(backoff);
        }
    }

    /// Whether `err` on a partition of `topic` means "find the leader
    /// again": `not_leader`, or a lost connection, a timeout or a node that
    /// is shutting down when the topic is replicated (its leader may have
    /// died or be cut off; a draining node handed its leaderships over).
    pub(crate) fn is_redirect(&self, topic: &str, err: &ProtocolError) -> bool {
        if !self.config.follow_leader {
            return false;
        }
        if err.code() == Some(ErrorCode::NotLeader) {
            return true;
        }
        lost_node(err)
            && self
                .metadata
                .lock()
                .expect("client lock")
                .topics
                .get(topic)
                .is_none_or(|routes| routes.iter().any(|r| r.replicated))
    }

    /// One request on the shared port, with retries; returns the reply
    /// message. When the bootstrap node is down, any other node learned
    /// from `Leaders` replies answers (on a cluster every node serves
    /// topic and security administration alike, through the metadata log).
    pub fn call_shared<R: Request>(&self, request: &R) -> Result<R::Response, ProtocolError> {
        self.with_retry(None, || Ok(self.any_connection()?.call(request, &[], 0)?.message))
    }

    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<(), ProtocolError> {
        let reply = self.call_shared(&CreateTopicRequest {
            name: name.to_string(),
            config,
        })?;
        check(reply.error, &reply.message)
    }

    pub fn delete_topic(&self, name: &str) -> Result<(), ProtocolError> {
        let reply = self.call_shared(&DeleteTopicRequest {
            name: name.to_string(),
        })?;
        self.invalidate(name);
        check(reply.error, &reply.message)
    }

    pub fn list_topics(&self) -> Result<Vec<TopicSummary>, ProtocolError> {
        Ok(self.call_shared(&ListTopicsRequest {})?.topics)
    }

    pub fn describe_topic(&self, name: &str) -> Result<DescribeTopicResponse, ProtocolError> {
        let reply = self.call_shared(&DescribeTopicRequest {
            name: name.to_string(),
        })?;
        check(reply.error, &reply.message)?;
        Ok(reply)
    }

    pub fn topic_stats(&self, topic: &str) -> Result<TopicStatsResponse, ProtocolError> {
        let reply = self.call_shared(&TopicStatsRequest {
            topic: topic.to_string(),
        })?;
        check(reply.error, &reply.message)?;
        Ok(reply)
    }

    /// Looks up one offset of a partition; returns it and the timestamp of
    /// the record there (`None` at the log end).
    pub fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<(u64, Option<i64>), ProtocolError> {
        let request = ListOffsetsRequest {
            topic: topic.to_string(),
            partitions: vec![ListOffsetsPartition { partition, spec }],
        };
        let reply = self.with_retry(Some(topic), || {
            let conn = self.partition_connection(topic, partition)?;
            let reply = conn.call(&request, &[], 0)?.message;
            check(reply.error, &reply.message)?;
            let part = reply.partitions.first().cloned().ok_or_else(|| {
                ProtocolError::broker(
                    ErrorCode::Internal.to_wire(),
                    "list offsets reply has no partition",
                )
            })?;
            check(part.error, "")?;
            Ok(part)
        })?;
        Ok((reply.offset, reply.timestamp_ms))
    }

    /// Fetches records of one partition from `offset` (long-polls up to
    /// `max_wait_ms` for data).
    pub fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> Result<Fetched, ProtocolError> {
        let request = FetchRequest {
            topic: topic.to_string(),
            max_wait_ms,
            min_bytes: 1,
            max_bytes,
            partitions: vec![FetchPartition {
                partition,
                offset,
                max_bytes,
            }],
        };
        self.with_retry(Some(topic), || {
            let conn = self.partition_connection(topic, partition)?;
            let reply = conn.call(&request, &[], u64::from(max_wait_ms))?;
            fetched_from(topic, partition, offset, &reply)
        })
    }

    pub fn list_groups(&self) -> Result<Vec<GroupSummary>, ProtocolError> {
        Ok(self.call_shared(&ListGroupsRequest {})?.groups)
    }

    pub fn group_stats(&self, group: &str) -> Result<GroupStatsResponse, ProtocolError> {
        let request = GroupStatsRequest {
            group: group.to_string(),
        };
        let reply = self.call_group(group, &request)?;
        check(reply.error, &reply.message)?;
        Ok(reply)
    }

    /// Moves a group's committed position (replay). Empty `partitions` means all.
    pub fn seek_group(
        &self,
        group: &str,
        topic: &str,
        partitions: Vec<u32>,
        target: SeekTarget,
    ) -> Result<SeekResponse, ProtocolError> {
        let request = SeekRequest {
            group: group.to_string(),
            topic: topic.to_string(),
            partitions,
            target,
        };
        let reply = self.call_group(group, &request)?;
        check(reply.error, &reply.message)?;
        for p in &reply.partitions {
            check(p.error, &format!("partition {}", p.partition))?;
        }
        Ok(reply)
    }

    pub fn dlq_browse(
        &self,
        request: &QuarantineBrowseRequest,
    ) -> Result<QuarantineBrowseResponse, ProtocolError> {
        let reply = self.call_shared(request)?;
        check(reply.error, &reply.message)?;
        Ok(reply)
    }

    pub fn dlq_counts(
        &self,
        request: &QuarantineCountsRequest,
    ) -> Result<QuarantineCountsResponse, ProtocolError> {
        let reply = self.call_shared(request)?;
        check(reply.error, &reply.message)?;
        Ok(reply)
    }

    /// Redrives quarantined entries to their failing group. The reply may
    /// carry a cursor: call again with it to continue.
    pub fn dlq_redrive(
        &self,
        request: &QuarantineRedriveRequest,
    ) -> Result<QuarantineRedriveResponse, ProtocolError> {
        let wait = u64::from(request.timeout_ms);
        let reply = self.call_group_reply(&request.group, request, wait)?.message;
        check(reply.error, &reply.message)?;
        Ok(reply)
    }

    pub fn dlq_purge(
        &self,
        request: &QuarantinePurgeRequest,
    ) -> Result<QuarantinePurgeResponse, ProtocolError> {
        let reply = self.call_shared(request)?;
        check(reply.error, &reply.message)?;
        Ok(reply)
    }
}

/// Turns a fetch reply into records, validating every batch.
fn fetched_from(
    topic: &str,
    partition: u32,
    offset: u64,
    reply: &Reply<crate::messages::fetch::FetchResponse>,
) -> Result<Fetched, ProtocolError> {
    let part = reply.message.partitions.first().ok_or_else(|| {
        ProtocolError::broker(ErrorCode::Internal.to_wire(), "fetch reply has no partition")
    })?;
    check(part.error, &part.message)?;
    let batches = crate::codec::split_payload(reply.frame.payload(), part.batch_lens.iter().copied())?;
    let mut records = Vec::new();
    for bytes in batches {
        read_batch(topic, partition, bytes, Select::From(offset), &mut records)?;
    }
    let next_offset = records.last().map_or(offset, |r| r.offset + 1);
    Ok(Fetched {
        records,
        high_watermark: part.high_watermark,
        log_start: part.log_start,
        log_end: part.log_end,
        next_offset,
    })
}

/// Whether `err` may mean the node answering is gone: a lost connection, a
/// timeout (the client's or the broker's: a frozen or cut off node) or a
/// node that is shutting down (a draining node hands its leaderships
/// over). On a cluster the route is then looked up again.
pub(crate) fn lost_node(err: &ProtocolError) -> bool {
    matches!(
        err,
        ProtocolError::Closed(_) | ProtocolError::Io(_) | ProtocolError::Timeout { .. }
    ) || matches!(err.code(), Some(ErrorCode::Timeout | ErrorCode::ShuttingDown))
}

/// Adds the nodes a `Leaders` reply names to the known node addresses.
fn learn_nodes(known: &mut Vec<SocketAddr>, leaders: &LeadersResponse) {
    for node in leaders.nodes.iter().filter(|n| !n.addr.is_empty()) {
        if let Ok(addr) = resolve(&node.addr) {
            if !known.contains(&addr) {
                known.push(addr);
            }
        }
    }
}

/// Marks `route` replicated and points it at the leader's node when the
/// leader is another node than the one that answered `leaders`.
fn leader_route(route: &mut PartitionRoute, leaders: &LeadersResponse, topic: &str, partition: u32) {
    let Some(p) = leaders
        .topics
        .iter()
        .find(|t| t.name == topic)
        .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
    else {
        return;
    };
    route.replicated = !p.replicas.is_empty();
    if p.leader == 0 || p.leader == leaders.node_id {
        return;
    }
    route.leader_addr = leaders
        .nodes
        .iter()
        .find(|n| n.node_id == p.leader && !n.addr.is_empty())
        .and_then(|n| resolve(&n.addr).ok());
}

/// Resolves "host:port" to the first address.
fn resolve(addr: &str) -> Result<SocketAddr, ProtocolError> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| ProtocolError::InvalidArgument(format!("{addr} resolves to no address")))
}
