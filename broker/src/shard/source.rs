//! Delivery's handle to partition data, implemented by routing each call
//! to the partition's owner ([`super::route`]).

use std::rc::Rc;
use std::time::Duration;

use super::state::{Shard, ShardSource};
use crate::delivery::PartitionSource;
use crate::error::{BrokerError, BrokerResult};
use crate::ids::{Offset, PartitionId};
use crate::metadata::TopicMeta;
use crate::partition::{ListedOffset, OffsetQuery, PartitionView, ReadBatches};

impl ShardSource {
    /// The shard, unless it is being dropped (the broker is stopping).
    fn shard(&self) -> BrokerResult<Rc<Shard>> {
        self.0
            .upgrade()
            .ok_or_else(|| BrokerError::ShuttingDown("the shard is stopping".into()))
    }
}

impl PartitionSource for ShardSource {
    fn topic(&self, name: &str) -> Option<Rc<TopicMeta>> {
        self.0.upgrade()?.topic(name)
    }

    async fn read(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
        max_bytes: u32,
        max_wait: Duration,
    ) -> BrokerResult<ReadBatches> {
        let wait_ms = max_wait.as_millis().min(u128::from(u32::MAX)) as u32;
        self.shard()?
            .read(topic, partition, offset, max_bytes, wait_ms)
            .await
    }

    async fn wait_any(&self, topic: &str, partitions: &[(PartitionId, Offset)], max_wait: Duration) {
        match self.shard() {
            Ok(shard) => shard.wait_any(topic, partitions, max_wait).await,
            Err(_) => crate::runtime::sleep(max_wait).await,
        }
    }

    async fn list_offset(
        &self,
        topic: &str,
        partition: PartitionId,
        query: OffsetQuery,
    ) -> BrokerResult<ListedOffset> {
        self.shard()?.list_offset(topic, partition, query).await
    }

    async fn view(&self, topic: &str, partition: PartitionId, offset: Offset) -> BrokerResult<PartitionView> {
        self.shard()?.view(topic, partition, offset).await
    }
}
