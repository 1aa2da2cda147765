//! A shard's life after construction: start (topics, partitions, delivery
//! state), the maintenance loop, and shutdown.

use std::rc::Rc;
use std::time::Duration;

use super::state::Shard;
use crate::error::BrokerResult;
use crate::runtime::now_ms;

impl Shard {
    /// Loads the topics and opens this shard's partitions (recovery), on
    /// shard 0 of a cluster node also the metadata log (its applier catches
    /// up in the background), then restores the delivery state and starts
    /// its timer. The shard counts as
    /// started (and `/readyz` may turn 200) only after all of it.
    pub async fn start(self: &Rc<Self>) -> BrokerResult<()> {
        let metadata_applied = self.load_topics().await?;
        self.open_cluster_metadata(metadata_applied).await;
        let dir = self
            .config()
            .server
            .data_dir
            .join("internal")
            .join(format!("shard-{}", self.id()));
        self.delivery().start(&dir).await?;
        self.set_started();
        Ok(())
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
