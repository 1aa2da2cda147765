//! What this shard reports: its metrics snapshot, its readiness, and the
//! gathering of every shard's (and every group's) figures for `/metrics`
//! and `/readyz`.

use shoal_protocol::messages::stats::GroupStatsRequest;

use super::call::{NotReady, ShardCall, ShardReply};
use super::state::Shard;
use crate::ids::ShardId;
use crate::mesh::MeshCall;
use crate::metrics::counters::{http, kafka};
use crate::metrics::{BrokerSnapshot, PartitionSample, ShardSnapshot};

/// Readiness of the whole broker.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub shards: u32,
    /// Shards that answered (ready or not).
    pub shards_answering: u32,
    /// Shards that answered and have every partition recovered.
    pub shards_ready: u32,
    /// Why a shard is not ready, per shard that is not.
    pub waiting: Vec<(ShardId, NotReady)>,
    /// Every shard's partition samples (for the fenced list).
    pub partitions: Vec<PartitionSample>,
}

impl Shard {
    /// This shard's snapshot (called on the shard itself).
    pub fn snapshot(&self) -> ShardSnapshot {
        let m = self.metrics();
        let mut partitions: Vec<PartitionSample> = self
            .partitions()
            .replicas()
            .iter()
            .map(|p| PartitionSample {
                topic: p.topic().name.clone(),
                partition: p.id().get(),
                figures: p.figures(),
                log: p.log().ok().map(|l| l.stats()),
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let mesh = self.mesh();
        ShardSnapshot {
            shard: self.id().get(),
            records_in: m.records_in.get(),
            records_out: m.records_out.get(),
            bytes_in: m.bytes_in.get(),
            bytes_out: m.bytes_out.get(),
            throttle_ms: m.throttle_ms.get(),
            native_connections_open: m.connections_open.get(),
            native_connections_total: m.connections_total.get(),
            native_connections_rejected: m.connections_rejected.get(),
            native_connections_expired: m.connections_expired.get(),
            connections_refused: m.connections_refused.get(),
            receive_pool_free_bytes: self.receive_pool().available(),
            inflight_free_bytes: self.inflight().available(),
            native_errors: m.errors.borrow().iter().map(|(k, v)| (*k, *v)).collect(),
            native_produce_latency_us: m.produce_latency_us.borrow().clone(),
            hops_out: mesh.hops_out(),
            hops_in: mesh.hops_in(),
            hops_by_kind: ShardCall::KINDS
                .iter()
                .copied()
                .zip(mesh.hops_by_kind())
                .collect(),
            native_requests: m.requests.borrow().clone(),
            http: http::figures(),
            kafka: kafka::figures(),
            partitions,
        }
    }

    /// Ready when started and every owned partition is recovered.
    pub(super) fn readiness(&self) -> Result<(), NotReady> {
        if self.is_shutting_down() {
            return Err(NotReady::Draining);
        }
        if !self.is_started() {
            return Err(NotReady::Recovering);
        }
        Ok(())
    }

    /// Snapshots of every shard, this one included, in shard order. A shard
    /// that does not answer (stopping) is left out.
    pub async fn gather_snapshots(&self) -> Vec<ShardSnapshot> {
        let mut out = Vec::with_capacity(self.count() as usize);
        for id in (0..self.count()).map(ShardId) {
            if id == self.id() {
                out.push(self.snapshot());
                continue;
            }
            match self.mesh().call(id, ShardCall::MetricsSnapshot).await {
                Ok(ShardReply::Metrics(s)) => out.push(*s),
                Ok(_) => tracing::warn!(shard = %id, "metrics: mesh reply mismatch"),
                Err(e) => tracing::debug!(shard = %id, error = %e, "metrics: shard did not answer"),
            }
        }
        out
    }

    /// Every shard's snapshot and every group's stats. A group that vanished
    /// between list and stats is left out.
    pub async fn broker_snapshot(&self) -> BrokerSnapshot {
        let shards = self.gather_snapshots().await;
        let mut groups = Vec::new();
        if let Ok(list) = self.list_groups().await {
            for g in list.groups {
                if let Ok(stats) = self.group_stats(GroupStatsRequest { group: g.group }).await {
                    groups.push(stats);
                }
            }
        }
        BrokerSnapshot { shards, groups }
    }

    /// Asks every shard whether it is ready, and gathers the partitions'
    /// figures (fenced partitions do not make the broker unready, but
    /// operators must see them).
    pub async fn readiness_of_all(&self) -> Readiness {
        let mut waiting = Vec::new();
        let mut answering = 0;
        for id in (0..self.count()).map(ShardId) {
            let answer = if id == self.id() {
                answering += 1;
                self.readiness()
            } else {
                match self.mesh().call(id, ShardCall::Ready).await {
                    Ok(ShardReply::Ready(r)) => {
                        answering += 1;
                        r
                    }
                    Ok(_) => Err(NotReady::Silent("mesh reply mismatch".into())),
                    Err(e) => Err(NotReady::Silent(e.to_string())),
                }
            };
            if let Err(why) = answer {
                waiting.push((id, why));
            }
        }
        let partitions = if waiting.is_empty() {
            self.gather_snapshots()
                .await
                .into_iter()
                .flat_map(|s| s.partitions)
                .collect()
        } else {
            Vec::new()
        };
        Readiness {
            shards: self.count(),
            shards_answering: answering,
            shards_ready: self.count() - waiting.len() as u32,
            waiting,
            partitions,
        }
    }
}
