//! The one door from a front end to the services: every call carries its
//! [`Caller`] and is authorized here before it is routed.
//!
//! `shard.access(&caller)` gives an [`Access`] whose methods mirror the
//! routing methods (`route.rs`, `route_groups.rs`, `topic_admin.rs`); those
//! are visible only inside `shard`, so a front end (native, HTTP, Kafka)
//! cannot reach a service without passing through here. Forwarded calls
//! (another shard owns the partition or group) are authorized once, on the
//! shard the request entered; the mesh carries only authorized work.
//!
//! What each call needs (see `metadata::acl` for how grants match):
//!
//! | call                                   | resource | operation  |
//! |----------------------------------------|----------|------------|
//! | produce                                | topic    | produce    |
//! | fetch, read, wait                      | topic    | consume    |
//! | list offsets, figures, view, topic stats, quarantine browse / counts | topic | describe |
//! | create topic                           | topic    | alter      |
//! | delete topic                           | topic    | delete     |
//! | join (and every subscribed topic)      | group (topic) | consume (consume) |
//! | heartbeat, leave, poll, ack, nack, commit | group | consume   |
//! | group stats                            | group    | describe   |
//! | seek, redrive                          | group    | alter      |
//! | Kafka join, sync, heartbeat, leave, offset commit | group (topic) | consume (consume) |
//! | Kafka offset fetch, describe groups, find coordinator | group (topic) | describe (describe) |
//! | purge with a group filter / without    | group / topic | alter |
//! | users, tokens, ACLs                    | cluster  | admin      |
//!
//! Admin actions (topic create and delete, seek, redrive, purge, security
//! changes) are written to the audit log with their outcome, refusals
//! included.

use std::rc::Rc;
use std::time::Duration;

use shoal_protocol::messages::delivery::*;
use shoal_protocol::messages::dlq::*;
use shoal_protocol::messages::group::*;
use shoal_protocol::messages::produce::Acks;
use shoal_protocol::messages::security::{Operation, SecurityAdminResponse, SecurityOp};
use shoal_protocol::messages::stats::*;
use shoal_protocol::messages::topic::TopicConfig;

use super::route::{FetchSpec, Produced};
use super::state::Shard;
use crate::delivery::Polled;
use crate::error::BrokerResult;
use crate::ids::{Offset, PartitionId};
use crate::metadata::acl::Resource;
use crate::metadata::security::Caller;
use crate::partition::{ListedOffset, OffsetQuery, PartitionFigures, PartitionView, ReadBatches};

/// A caller's authorized way into this shard's services.
pub struct Access<'a> {
    shard: &'a Rc<Shard>,
    caller: &'a Caller,
}

impl Shard {
    /// The door every front end goes through.
    pub fn access<'a>(self: &'a Rc<Self>, caller: &'a Caller) -> Access<'a> {
        Access { shard: self, caller }
    }
}

impl Access<'_> {
    pub fn caller(&self) -> &Caller {
        self.caller
    }

    /// Ok when the caller may do `op` on `resource`, else
    /// `authorization_failed` (every call here checks through it; front
    /// ends use it for reads that are not service calls, such as a
    /// topic's configuration).
    pub fn require(&self, resource: Resource<'_>, op: Operation) -> BrokerResult<()> {
        self.shard.security().authorize(self.caller, resource, op)
    }

    /// Whether the caller may do `op` on `resource` (to filter listings).
    pub fn allows(&self, resource: Resource<'_>, op: Operation) -> bool {
        self.shard.security().allows(self.caller, resource, op)
    }

    /// Checks, runs and audits an admin action.
    async fn audited<T>(
        &self,
        action: &str,
        resource: Resource<'_>,
        op: Operation,
        run: impl AsyncFnOnce() -> BrokerResult<T>,
    ) -> BrokerResult<T> {
        let result = match self.require(resource, op) {
            Ok(()) => run().await,
            Err(e) => Err(e),
        };
        let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
        self.shard
            .security()
            .service()
            .audit_action(self.caller, action, &resource.to_string(), &outcome);
        result
    }

    pub async fn produce(
        &self,
        topic: &str,
        partitions: Vec<(PartitionId, Vec<bytes::BytesMut>)>,
        acks: Acks,
        timeout_ms: u32,
    ) -> Vec<(PartitionId, BrokerResult<Produced>)> {
        if let Err(e) = self.require(Resource::Topic(topic), Operation::Produce) {
            return partitions.into_iter().map(|(p, _)| (p, Err(e.clone()))).collect();
        }
        self.shard.produce(topic, partitions, acks, timeout_ms).await
    }

    pub async fn fetch(
        &self,
        topic: &str,
        spec: &FetchSpec,
    ) -> BrokerResult<Vec<(PartitionId, BrokerResult<ReadBatches>)>> {
        self.require(Resource::Topic(topic), Operation::Consume)?;
        self.shard.fetch(topic, spec).await
    }

    pub async fn read(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> BrokerResult<ReadBatches> {
        self.require(Resource::Topic(topic), Operation::Consume)?;
        self.shard
            .read(topic, partition, offset, max_bytes, max_wait_ms)
            .await
    }

    /// Waits until one of `partitions` has data past its offset (or the
    /// wait ends); returns at once when the caller may not consume `topic`.
    pub async fn wait_any(&self, topic: &str, partitions: &[(PartitionId, Offset)], max_wait: Duration) {
        if self.require(Resource::Topic(topic), Operation::Consume).is_ok() {
            self.shard.wait_any(topic, partitions, max_wait).await;
        }
    }

    pub async fn list_offset(
        &self,
        topic: &str,
        partition: PartitionId,
        query: OffsetQuery,
    ) -> BrokerResult<ListedOffset> {
        self.require(Resource::Topic(topic), Operation::Describe)?;
        self.shard.list_offset(topic, partition, query).await
    }

    pub async fn figures(&self, topic: &str, partition: PartitionId) -> BrokerResult<PartitionFigures> {
        self.require(Resource::Topic(topic), Operation::Describe)?;
        self.shard.figures(topic, partition).await
    }

    pub async fn view(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
    ) -> BrokerResult<PartitionView> {
        self.require(Resource::Topic(topic), Operation::Describe)?;
        self.shard.view(topic, partition, offset).await
    }

    /// Whether the caller may see `topic` in listings and metadata.
    pub fn may_describe_topic(&self, topic: &str) -> bool {
        self.allows(Resource::Topic(topic), Operation::Describe)
    }

    pub async fn create_topic(&self, name: String, config: TopicConfig) -> BrokerResult<()> {
        let resource_name = name.clone();
        self.audited(
            "topic.create",
            Resource::Topic(&resource_name),
            Operation::Alter,
            async || self.shard.create_topic(name, config).await,
        )
        .await
    }

    pub async fn delete_topic(&self, name: String) -> BrokerResult<()> {
        let resource_name = name.clone();
        self.audited(
            "topic.delete",
            Resource::Topic(&resource_name),
            Operation::Delete,
            async || self.shard.delete_topic(name).await,
        )
        .await
    }

    pub async fn group_join(&self, req: JoinGroupRequest) -> BrokerResult<JoinGroupResponse> {
        self.require(Resource::Group(&req.group), Operation::Consume)?;
        for topic in &req.topics {
            self.require(Resource::Topic(topic), Operation::Consume)?;
        }
        self.shard.group_join(req).await
    }

    pub async fn group_heartbeat(&self, req: HeartbeatRequest) -> BrokerResult<HeartbeatResponse> {
        self.require(Resource::Group(&req.group), Operation::Consume)?;
        self.shard.group_heartbeat(req).await
    }

    pub async fn group_leave(&self, req: LeaveGroupRequest) -> BrokerResult<LeaveGroupResponse> {
        self.require(Resource::Group(&req.group), Operation::Consume)?;
        self.shard.group_leave(req).await
    }

    pub async fn group_poll(&self, req: PollRequest) -> BrokerResult<Polled> {
        self.require(Resource::Group(&req.group), Operation::Consume)?;
        self.shard.group_poll(req).await
    }

    pub async fn group_ack(&self, req: AckRequest) -> BrokerResult<AckResponse> {
        self.require(Resource::Group(&req.group), Operation::Consume)?;
        self.shard.group_ack(req).await
    }

    pub async fn group_nack(&self, req: NackRequest) -> BrokerResult<NackResponse> {
        self.require(Resource::Group(&req.group), Operation::Consume)?;
        self.shard.group_nack(req).await
    }

    pub async fn group_commit(&self, req: CommitOffsetRequest) -> BrokerResult<CommitOffsetResponse> {
        self.require(Resource::Group(&req.group), Operation::Consume)?;
        self.shard.group_commit(req).await
    }

    pub async fn group_seek(&self, req: SeekRequest) -> BrokerResult<SeekResponse> {
        let group = req.group.clone();
        self.audited(
            "group.seek",
            Resource::Group(&group),
            Operation::Alter,
            async || self.shard.group_seek(req).await,
        )
        .await
    }

    pub async fn group_stats(&self, req: GroupStatsRequest) -> BrokerResult<GroupStatsResponse> {
        self.require(Resource::Group(&req.group), Operation::Describe)?;
        self.shard.group_stats(req).await
    }

    pub async fn quarantine_redrive(
        &self,
        req: QuarantineRedriveRequest,
    ) -> BrokerResult<QuarantineRedriveResponse> {
        let group = req.group.clone();
        self.audited(
            "quarantine.redrive",
            Resource::Group(&group),
            Operation::Alter,
            async || self.shard.quarantine_redrive(req).await,
        )
        .await
    }

    pub async fn quarantine_purge(
        &self,
        req: QuarantinePurgeRequest,
    ) -> BrokerResult<QuarantinePurgeResponse> {
        let (group, topic) = (req.filter.group.clone(), req.topic.clone());
        let resource = match &group {
            Some(g) => Resource::Group(g),
            None => Resource::Topic(&topic),
        };
        self.audited("quarantine.purge", resource, Operation::Alter, async || {
            self.shard.quarantine_purge(req).await
        })
        .await
    }

    pub async fn quarantine_browse(
        &self,
        req: QuarantineBrowseRequest,
    ) -> BrokerResult<QuarantineBrowseResponse> {
        self.require(Resource::Topic(&req.topic), Operation::Describe)?;
        self.shard.quarantine_browse(req).await
    }

    pub async fn quarantine_counts(
        &self,
        req: QuarantineCountsRequest,
    ) -> BrokerResult<QuarantineCountsResponse> {
        self.require(Resource::Topic(&req.topic), Operation::Describe)?;
        self.shard.quarantine_counts(req).await
    }

    /// Every group the caller may describe.
    pub async fn list_groups(&self) -> BrokerResult<ListGroupsResponse> {
        let mut all = self.shard.list_groups().await?;
        all.groups
            .retain(|g| self.allows(Resource::Group(&g.group), Operation::Describe));
        Ok(all)
    }

    pub async fn topic_stats(&self, req: TopicStatsRequest) -> BrokerResult<TopicStatsResponse> {
        self.require(Resource::Topic(&req.topic), Operation::Describe)?;
        self.shard.topic_stats(req).await
    }

    /// Runs a Kafka group's work on its coordinating shard once the caller
    /// may do `op` on the group (the Kafka front end keeps its group
    /// coordinators there). The check runs here, on the shard the request
    /// entered; the submitted work is authorized work.
    pub async fn group_submit<T, F, Fut>(&self, group: &str, op: Operation, work: F) -> BrokerResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        self.require(Resource::Group(group), op)?;
        let coordinator = self.shard.coordinator(group);
        self.shard.submit_to(coordinator, work).await
    }

    /// Ok when the caller may do `op` on `group` (a Kafka FindCoordinator
    /// or a group listing, which reach no service).
    pub fn require_group(&self, group: &str, op: Operation) -> BrokerResult<()> {
        self.require(Resource::Group(group), op)
    }

    /// Leader balancing on demand (`shoal cluster rebalance-leaders`):
    /// cluster `admin`. Every shard of this node hands the leaderships it
    /// holds to their preferred replicas (those alive and caught up), or
    /// with `dry_run` only lists them. Audited unless a dry run.
    pub async fn rebalance_leaders(
        &self,
        dry_run: bool,
    ) -> BrokerResult<Vec<crate::partition::replication::LeaderMove>> {
        self.require(Resource::Cluster, Operation::Admin)?;
        let mut moves = Vec::new();
        for shard in (0..self.shard.count()).map(crate::ids::ShardId) {
            let on_shard = self
                .shard
                .submit_to(shard, move |s| async move {
                    s.partitions()
                        .replication()
                        .map(|r| r.rebalance(dry_run, usize::MAX))
                        .unwrap_or_default()
                })
                .await?;
            moves.extend(on_shard);
        }
        if !dry_run {
            let started = moves.iter().filter(|m| m.started).count();
            let service = self.shard.security().service().clone();
            service.audit_action(
                self.caller,
                "cluster.rebalance-leaders",
                &format!("{started} started"),
                &Ok(()),
            );
        }
        Ok(moves)
    }

    /// Users, tokens and ACLs: cluster `admin` only; changes are audited.
    pub async fn security_admin(&self, op: SecurityOp) -> BrokerResult<SecurityAdminResponse> {
        let (action, target) = describe_op(&op);
        let service = self.shard.security().service().clone();
        let result = match self.require(Resource::Cluster, Operation::Admin) {
            Ok(()) => self.apply_security(&service, op).await,
            Err(e) => Err(e),
        };
        if action != "list" {
            let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
            service.audit_action(self.caller, action, &target, &outcome);
        }
        result
    }

    /// A read from this node's state; a write on a single node directly,
    /// on a cluster through the metadata log (every node applies it).
    async fn apply_security(
        &self,
        service: &std::sync::Arc<crate::metadata::security::SecurityService>,
        op: SecurityOp,
    ) -> BrokerResult<SecurityAdminResponse> {
        if self.shard.partitions().replication().is_none() {
            return service.apply(op, crate::runtime::now_ms());
        }
        if let Some(reply) = service.read(&op) {
            return Ok(reply);
        }
        let (change, reply) = crate::metadata::security::prepare(op, crate::runtime::now_ms());
        self.shard
            .propose_meta(crate::metadata::cluster_log::MetaCommand::Security(change))
            .await
            .map(|()| reply)
    }
}

/// The audit action and resource of a security operation (`list` for reads,
/// which are not audited).
fn describe_op(op: &SecurityOp) -> (&'static str, String) {
    match op {
        SecurityOp::UpsertUser {
            user, create_only, ..
        } => (
            if *create_only {
                "user.create"
            } else {
                "user.passwd"
            },
            format!("user:{user}"),
        ),
        SecurityOp::DeleteUser { user } => ("user.delete", format!("user:{user}")),
        SecurityOp::CreateToken { user } => ("token.create", format!("user:{user}")),
        SecurityOp::RevokeToken { id } => ("token.revoke", format!("token:{id}")),
        SecurityOp::AddAcl(e) => ("acl.add", e.describe()),
        SecurityOp::RemoveAcl(e) => ("acl.remove", e.describe()),
        SecurityOp::ListUsers | SecurityOp::ListTokens | SecurityOp::ListAcls => ("list", String::new()),
    }
}
