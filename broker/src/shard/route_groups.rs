//! Routing consumer-group work: requests for a group go to its
//! coordinating shard (`shard_for_group`); topic-wide questions (list
//! groups, topic stats, quarantine browse, counts, purge) ask every shard
//! for its part and merge.
//!
//! On a cluster, the coordinating shard serves a group request only while
//! this node's replica of that shard's group state partition leads
//! (`Delivery::check_coordinator`); otherwise the request is answered
//! `not_coordinator` with the leader's address, and the client sends it
//! there. Topic-wide reads answer on any node: list groups and lag for the
//! groups this node coordinates, quarantine browse and counts from every
//! shard's committed copy of its state (a follower's is as fresh as its
//! replication); a purge of entries another node coordinates is refused.

use std::rc::Rc;

use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::delivery::*;
use shoal_protocol::messages::dlq::*;
use shoal_protocol::messages::group::*;
use shoal_protocol::messages::stats::*;

use super::call::{GroupCall, GroupReply, ShardCall, ShardReply};
use super::state::Shard;
use crate::delivery::redrive::{merge_browse, merge_count_parts};
use crate::delivery::{Polled, TopicLag};
use crate::error::{BrokerError, BrokerResult};
use crate::ids::{Offset, PartitionId, ShardId};

/// Sends a group call to shard `to` and unwraps the reply variant.
macro_rules! forward {
    ($shard:expr, $to:expr, $variant:ident, $req:expr) => {{
        match $shard.group_call($to, GroupCall::$variant($req)).await {
            Ok(GroupReply::$variant(r)) => r,
            Ok(_) => Err(BrokerError::internal("mesh reply mismatch")),
            Err(e) => Err(e),
        }
    }};
}

/// Runs `$local` on the group's coordinating shard: here, or forwarded.
/// On a cluster that shard refuses with `not_coordinator` unless this
/// node's replica of its group state partition leads.
macro_rules! on_coordinator {
    ($shard:expr, $group:expr, $variant:ident, $req:expr, $local:expr) => {{
        let to = $shard.coordinator($group);
        if to == $shard.id() {
            $shard.delivery().check_coordinator()?;
            $local
        } else {
            forward!($shard, to, $variant, $req)
        }
    }};
}

impl Shard {
    /// Sends a group call over the mesh.
    async fn group_call(&self, to: ShardId, call: GroupCall) -> BrokerResult<GroupReply> {
        match self.mesh().call(to, ShardCall::Group(Box::new(call))).await {
            Ok(ShardReply::Group(reply)) => Ok(*reply),
            Ok(_) => Err(BrokerError::internal("mesh reply mismatch")),
            Err(_) => Err(BrokerError::shard_stopped(to)),
        }
    }

    pub(super) async fn group_join(&self, req: JoinGroupRequest) -> BrokerResult<JoinGroupResponse> {
        let group = req.group.clone();
        on_coordinator!(self, &group, Join, req, self.delivery().join(req).await)
    }

    pub(super) async fn group_heartbeat(&self, req: HeartbeatRequest) -> BrokerResult<HeartbeatResponse> {
        let group = req.group.clone();
        on_coordinator!(self, &group, Heartbeat, req, self.delivery().heartbeat(req))
    }

    pub(super) async fn group_leave(&self, req: LeaveGroupRequest) -> BrokerResult<LeaveGroupResponse> {
        let group = req.group.clone();
        on_coordinator!(self, &group, Leave, req, self.delivery().leave(req).await)
    }

    /// A poll's reply and the batches of its payload, in order.
    pub(super) async fn group_poll(&self, req: PollRequest) -> BrokerResult<Polled> {
        let group = req.group.clone();
        on_coordinator!(self, &group, Poll, req, self.delivery().poll(req).await)
    }

    pub(super) async fn group_ack(&self, req: AckRequest) -> BrokerResult<AckResponse> {
        let group = req.group.clone();
        on_coordinator!(self, &group, Ack, req, self.delivery().ack(req).await)
    }

    pub(super) async fn group_nack(&self, req: NackRequest) -> BrokerResult<NackResponse> {
        let group = req.group.clone();
        on_coordinator!(self, &group, Nack, req, self.delivery().nack(req).await)
    }

    pub(super) async fn group_commit(&self, req: CommitOffsetRequest) -> BrokerResult<CommitOffsetResponse> {
        let group = req.group.clone();
        on_coordinator!(self, &group, Commit, req, self.delivery().commit(req).await)
    }

    pub(super) async fn group_seek(&self, req: SeekRequest) -> BrokerResult<SeekResponse> {
        let group = req.group.clone();
        on_coordinator!(self, &group, Seek, req, self.delivery().seek(req).await)
    }

    pub(super) async fn group_stats(&self, req: GroupStatsRequest) -> BrokerResult<GroupStatsResponse> {
        let group = req.group.clone();
        on_coordinator!(
            self,
            &group,
            GroupStats,
            req,
            self.delivery().group_stats(req).await
        )
    }

    pub(super) async fn quarantine_redrive(
        &self,
        req: QuarantineRedriveRequest,
    ) -> BrokerResult<QuarantineRedriveResponse> {
        let group = req.group.clone();
        on_coordinator!(self, &group, Redrive, req, self.delivery().redrive(req).await)
    }

    /// Every shard's answer to `call()`, this shard's included (`local()`).
    async fn fan_out<T>(
        &self,
        call: impl Fn() -> GroupCall,
        local: impl AsyncFnOnce() -> T,
        unwrap: impl Fn(GroupReply) -> Option<T>,
    ) -> BrokerResult<Vec<T>> {
        let mut out = vec![local().await];
        for peer in (0..self.count()).map(ShardId).filter(|&s| s != self.id()) {
            let reply = self.group_call(peer, call()).await?;
            out.push(unwrap(reply).ok_or_else(|| BrokerError::internal("mesh reply mismatch"))?);
        }
        Ok(out)
    }

    /// Every group of the broker, by name.
    pub(super) async fn list_groups(&self) -> BrokerResult<ListGroupsResponse> {
        let parts = self
            .fan_out(
                || GroupCall::LocalGroups,
                async || self.delivery().local_groups(),
                |r| match r {
                    GroupReply::Groups(g) => Some(g),
                    _ => None,
                },
            )
            .await?;
        let mut groups: Vec<GroupSummary> = parts.into_iter().flatten().collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(ListGroupsResponse { groups })
    }

    fn known_topic(&self, topic: &str) -> BrokerResult<u32> {
        self.topic(topic)
            .map(|m| m.config.partitions)
            .ok_or_else(|| BrokerError::unknown_topic(topic))
    }

    pub(super) async fn quarantine_browse(
        &self,
        req: QuarantineBrowseRequest,
    ) -> BrokerResult<QuarantineBrowseResponse> {
        self.known_topic(&req.topic)?;
        let parts = self
            .fan_out(
                || GroupCall::LocalBrowse(req.clone()),
                async || self.delivery().local_browse(&req),
                |r| match r {
                    GroupReply::Browse(b) => Some(b),
                    _ => None,
                },
            )
            .await?;
        Ok(merge_browse(parts, req.limit))
    }

    pub(super) async fn quarantine_counts(
        &self,
        req: QuarantineCountsRequest,
    ) -> BrokerResult<QuarantineCountsResponse> {
        self.known_topic(&req.topic)?;
        let parts = self
            .fan_out(
                || GroupCall::LocalCounts(req.clone()),
                async || self.delivery().local_counts(&req),
                |r| match r {
                    GroupReply::Counts(c) => Some(c),
                    _ => None,
                },
            )
            .await?;
        Ok(merge_count_parts(parts))
    }

    pub(super) async fn quarantine_purge(
        &self,
        req: QuarantinePurgeRequest,
    ) -> BrokerResult<QuarantinePurgeResponse> {
        self.known_topic(&req.topic)?;
        let parts = self
            .fan_out(
                || GroupCall::LocalPurge(req.clone()),
                async || self.delivery().local_purge(&req).await,
                |r| match r {
                    GroupReply::Purge(p) => Some(p),
                    _ => None,
                },
            )
            .await?;
        let mut purged = 0;
        for part in parts {
            purged += part?;
        }
        Ok(QuarantinePurgeResponse {
            error: 0,
            message: String::new(),
            purged,
        })
    }

    /// A topic's partitions (bounds, size, quarantine depth) and every
    /// group's lag on it.
    pub(super) async fn topic_stats(&self, req: TopicStatsRequest) -> BrokerResult<TopicStatsResponse> {
        let count = self.known_topic(&req.topic)?;
        let topic = req.topic.clone();
        let parts = self
            .fan_out(
                || GroupCall::LocalTopicLag(topic.clone()),
                async || self.delivery().local_topic_lag(&topic).await,
                |r| match r {
                    GroupReply::TopicLag(l) => Some(l),
                    _ => None,
                },
            )
            .await?;
        let mut depth = vec![0u64; count as usize];
        let mut groups = Vec::new();
        for TopicLag {
            groups: g,
            quarantine_depth,
        } in parts
        {
            groups.extend(g);
            for (p, n) in quarantine_depth {
                depth[p as usize] += n;
            }
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        let mut partitions = Vec::with_capacity(count as usize);
        for p in (0..count).map(PartitionId) {
            let (view, error) = match self.view(&req.topic, p, Offset(u64::MAX)).await {
                Ok(v) if v.fenced => (v, ErrorCode::PartitionFenced.to_wire()),
                Ok(v) => (v, ErrorCode::None.to_wire()),
                Err(e) => (Default::default(), e.code().to_wire()),
            };
            partitions.push(TopicPartitionStats {
                partition: p.get(),
                shard: self.owner(&req.topic, p).get(),
                log_start: view.log_start,
                high_watermark: view.high_watermark,
                log_end: view.log_end,
                size_bytes: view.size_bytes,
                segments: view.segments,
                last_append_at_ms: view.last_append_ms,
                quarantine_depth: depth[p.index()],
                error,
            });
        }
        Ok(TopicStatsResponse {
            error: 0,
            message: String::new(),
            topic: req.topic,
            partitions,
            groups,
        })
    }

    /// Serves a group call that arrived over the mesh.
    pub(super) async fn serve_group_call(self: &Rc<Self>, call: GroupCall) -> GroupReply {
        use GroupCall as C;
        use GroupReply as R;
        let d = self.delivery();
        // A call for one group runs only while this shard coordinates.
        macro_rules! coordinated {
            ($variant:ident, $call:expr) => {
                R::$variant(match d.check_coordinator() {
                    Ok(()) => $call,
                    Err(e) => Err(e),
                })
            };
        }
        match call {
            C::Join(r) => coordinated!(Join, d.join(r).await),
            C::Heartbeat(r) => coordinated!(Heartbeat, d.heartbeat(r)),
            C::Leave(r) => coordinated!(Leave, d.leave(r).await),
            C::Poll(r) => coordinated!(Poll, d.poll(r).await),
            C::Ack(r) => coordinated!(Ack, d.ack(r).await),
            C::Nack(r) => coordinated!(Nack, d.nack(r).await),
            C::Commit(r) => coordinated!(Commit, d.commit(r).await),
            C::Seek(r) => coordinated!(Seek, d.seek(r).await),
            C::GroupStats(r) => coordinated!(GroupStats, d.group_stats(r).await),
            C::Redrive(r) => coordinated!(Redrive, d.redrive(r).await),
            C::LocalGroups => R::Groups(d.local_groups()),
            C::LocalBrowse(r) => R::Browse(d.local_browse(&r)),
            C::LocalCounts(r) => R::Counts(d.local_counts(&r)),
            C::LocalPurge(r) => R::Purge(d.local_purge(&r).await),
            C::LocalTopicLag(topic) => R::TopicLag(d.local_topic_lag(&topic).await),
        }
    }
}
