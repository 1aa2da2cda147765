//! A shard's life after construction: start (topics, partitions, delivery
//! state: local, or the group state partition on a cluster), the
//! maintenance loop, and shutdown.

use std::rc::Rc;
use std::time::Duration;

use super::state::Shard;
use crate::delivery::replicated_state::group_state_topic;
use crate::delivery::ReplicatedState;
use crate::error::BrokerResult;
use crate::ids::PartitionId;
use crate::partition::replication::Replication;
use crate::runtime::now_ms;

impl Shard {
    /// Loads the topics and opens this shard's partitions (recovery), on
    /// shard 0 of a cluster node also the metadata log (its applier catches
    /// up in the background), then restores the delivery state and starts
    /// its timer: on a single node from the shard's local state log, on a
    /// cluster from its group state partition. The shard counts as
    /// started (and `/readyz` may turn 200) only after all of it.
    pub async fn start(self: &Rc<Self>) -> BrokerResult<()> {
        let metadata_applied = self.load_topics().await?;
        self.open_cluster_metadata(metadata_applied).await;
        if let Some(replication) = self.partitions().replication().cloned() {
            self.open_group_state(&replication).await;
        } else {
            let dir = self
                .config()
                .server
                .data_dir
                .join("internal")
                .join(format!("shard-{}", self.id()));
            self.delivery().start(&dir).await?;
        }
        self.set_started();
        Ok(())
    }

    /// On a cluster node: opens this shard's replica of partition `shard`
    /// of the group state topic and keeps the delivery state there
    /// (`delivery::replicated_state`); this shard coordinates its groups
    /// while that replica leads.
    async fn open_group_state(self: &Rc<Self>, replication: &Rc<Replication>) {
        let dir = self
            .config()
            .server
            .data_dir
            .join("cluster")
            .join("group-state")
            .join(format!("shard-{}", self.id()));
        let meta = group_state_topic(replication.nodes().len() as u32, self.count());
        let replica = self
            .partitions()
            .open_internal(meta, PartitionId(self.id().get()), dir)
            .await;
        let state = ReplicatedState::open(replica, self.id()).await;
        self.delivery().start_replicated(state);
    }

    /// Applies retention (by time and size, whole segments) and compaction
    /// to every local partition, every `storage.maintenance_interval_ms`,
    /// until the shard shuts down. A failure is logged for that partition
    /// only (a fenced log reports itself on every request).
    pub async fn maintenance_loop(self: Rc<Self>) {
        let interval = Duration::from_millis(self.config().storage.maintenance_interval_ms);
        while !self.is_shutting_down() {
            crate::runtime::sleep(interval).await;
            self.partitions()
                .maintain_all(now_ms(), || self.is_shutting_down())
                .await;
        }
    }

    /// Marks the shard as draining: front ends refuse new work, the timer
    /// and the maintenance loop end.
    pub fn begin_drain(&self) {
        self.set_shutting_down();
    }

    /// Stops accepting work and flushes every local partition.
    pub async fn shutdown(&self) {
        self.set_shutting_down();
        self.partitions().close_all().await;
        self.delivery().close().await;
    }
}
