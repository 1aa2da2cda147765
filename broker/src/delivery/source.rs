//! The narrow handle through which delivery reaches partitions: what it
//! may read, and nothing else.
//!
//! Delivery (groups, leases, retries, quarantine) never calls the request
//! handlers or the shard's internals. The shard implements this trait by
//! routing each call to the partition's owner (a local call, or a mesh hop);
//! tests can implement it over an in-memory log.

use std::rc::Rc;
use std::time::Duration;

use crate::error::BrokerResult;
use crate::ids::{Offset, PartitionId};
use crate::metadata::TopicMeta;
use crate::partition::{ListedOffset, OffsetQuery, PartitionView, ReadBatches};

/// Partition data and topic metadata, as delivery sees them.
///
/// The futures are not `Send`: every caller runs on one shard's executor.
#[allow(async_fn_in_trait)]
pub trait PartitionSource {
    /// A topic's metadata, if the topic exists.
    fn topic(&self, name: &str) -> Option<Rc<TopicMeta>>;

    /// Whole batches from the one holding `offset`, up to about `max_bytes`
    /// (at least one batch), waiting up to `max_wait` when caught up.
    async fn read(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
        max_bytes: u32,
        max_wait: Duration,
    ) -> BrokerResult<ReadBatches>;

    /// Waits until any of `partitions` of `topic` has a record at its offset
    /// (or fails), or `max_wait` passes.
    async fn wait_any(&self, topic: &str, partitions: &[(PartitionId, Offset)], max_wait: Duration);

    /// Resolves an offset query on a partition.
    async fn list_offset(
        &self,
        topic: &str,
        partition: PartitionId,
        query: OffsetQuery,
    ) -> BrokerResult<ListedOffset>;

    /// A partition's figures and the append time at `offset` (lag).
    async fn view(&self, topic: &str, partition: PartitionId, offset: Offset) -> BrokerResult<PartitionView>;
}
