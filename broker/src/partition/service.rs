//! The partition service of one shard: the partitions this shard owns and
//! the only API through which front ends and delivery reach partition data.
//!
//! Every method works on a partition owned here; routing a request to the
//! owning shard is the shard's job (`shard::route`), done before the call.
//! A lookup tells apart an unknown topic, a partition number outside the
//! topic, and a partition this shard does not own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use glommio::TaskQueueHandle;
use shoal_config::Config;
use shoal_protocol::partitioner::shard_for_partition;

use super::append::Appended;
use super::read::{ListedOffset, OffsetQuery, PartitionView, ReadBatches};
use super::replica::{OpenContext, PartitionFigures, Replica};
use super::replication::Replication;
use crate::cluster::ClusterNode;
use crate::error::{BrokerError, BrokerResult};
use crate::ids::{Offset, PartitionId, ShardId};
use crate::metadata::TopicMeta;

/// One partition number of a topic, as this shard sees it.
#[derive(Clone)]
enum Slot {
    /// Another shard owns it.
    Remote,
    /// This shard owns it and is still opening it (recovery runs).
    Recovering,
    Open(Rc<Replica>),
}

/// Longest a shutdown waits for this shard's leaderships to move.
pub const TRANSFER_MS_MAX: u64 = 2_000;

/// The partitions one shard owns, by topic (index = partition number).
pub struct PartitionService {
    shard: ShardId,
    shard_count: u32,
    config: Rc<Config>,
    log_queue: TaskQueueHandle,
    topics: RefCell<HashMap<String, Vec<Slot>>>,
    /// Raft groups of the replicated partitions here (cluster members).
    replication: Option<Rc<Replication>>,
    /// Internal partitions (the cluster metadata log, the shard's group
    /// state partition): outside the topic
    /// registry, closed, maintained and handed over like the others.
    internal: RefCell<Vec<Rc<Replica>>>,
}

impl PartitionService {
    /// `log_queue` is the task queue of every local log's writer and syncer.
    pub fn new(
        shard: ShardId,
        shard_count: u32,
        config: Rc<Config>,
        log_queue: TaskQueueHandle,
        cluster: Option<Rc<ClusterNode>>,
    ) -> Self {
        PartitionService {
            shard,
            shard_count,
            config,
            log_queue,
            topics: RefCell::new(HashMap::new()),
            replication: cluster.map(Replication::new),
            internal: RefCell::new(Vec::new()),
        }
    }

    fn open_context(&self) -> OpenContext<'_> {
        OpenContext {
            config: &self.config,
            shard_count: self.shard_count,
            log_queue: self.log_queue,
            replication: self.replication.clone(),
        }
    }

    /// Opens an internal partition (`partition` of `meta`) in `dir`, outside
    /// the topic registry: no client request reaches it by name.
    pub async fn open_internal(&self, meta: TopicMeta, partition: PartitionId, dir: PathBuf) -> Rc<Replica> {
        let replica = Replica::open(&self.open_context(), Rc::new(meta), partition, dir).await;
        self.internal.borrow_mut().push(replica.clone());
        replica
    }

    /// This shard's replica of the internal topic `name`, if it opened one.
    pub fn internal(&self, name: &str) -> Option<Rc<Replica>> {
        self.internal
            .borrow()
            .iter()
            .find(|r| r.topic().name == name)
            .cloned()
    }

    /// The registered partitions and the internal ones.
    fn every_replica(&self) -> Vec<Rc<Replica>> {
        let mut all = self.replicas();
        all.extend(self.internal.borrow().iter().cloned());
        all
    }

    async fn transfer_leaderships(&self) {
        let Some(replication) = &self.replication else {
            return;
        };
        let leading: Vec<_> = self
            .every_replica()
            .iter()
            .filter_map(|r| r.raft().cloned())
            .filter(|g| g.is_leader())
            .collect();
        if leading.is_empty() {
            return;
        }
        for group in &leading {
            group.ask_transfer();
        }
        replication.wake();
        let started = std::time::Instant::now();
        while leading.iter().any(|g| g.is_leader())
            && started.elapsed() < std::time::Duration::from_millis(TRANSFER_MS_MAX)
        {
            crate::runtime::sleep(std::time::Duration::from_millis(10)).await;
        }
        let kept = leading.iter().filter(|g| g.is_leader()).count();
        tracing::info!(
            transferred = leading.len() - kept,
            kept,
            "leaderships handed over before shutdown"
        );
    }

    /// This shard's replication driver, on a cluster member.
    pub fn replication(&self) -> Option<&Rc<Replication>> {
        self.replication.as_ref()
    }

    /// Directory of one partition's log.
    pub fn partition_dir(&self, topic: &str, partition: PartitionId) -> PathBuf {
        self.config
            .server
            .data_dir
            .join("logs")
            .join(topic)
            .join(partition.to_string())
    }

    fn owns(&self, topic: &str, partition: PartitionId) -> bool {
        ShardId(shard_for_partition(topic, partition.get(), self.shard_count)) == self.shard
    }

    /// Marks the partitions of `topic` this shard owns as recovering, so a
    /// request that arrives before [`open_topic`](Self::open_topic) finished
    /// gets a retryable `partition_recovering`, never `not_owner`.
    pub fn expect_topic(&self, meta: &TopicMeta) {
        let slots = (0..meta.config.partitions)
            .map(|p| match self.owns(&meta.name, PartitionId(p)) {
                true => Slot::Recovering,
                false => Slot::Remote,
            })
            .collect();
        self.topics.borrow_mut().insert(meta.name.clone(), slots);
    }

    /// Opens the partitions of `topic` this shard owns (recovery runs here),
    /// each served as soon as it is open.
    pub async fn open_topic(&self, meta: Rc<TopicMeta>) {
        if !self.topics.borrow().contains_key(&meta.name) {
            self.expect_topic(&meta);
        }
        let ctx = self.open_context();
        for p in (0..meta.config.partitions).map(PartitionId) {
            if !self.owns(&meta.name, p) {
                continue;
            }
            let dir = self.partition_dir(&meta.name, p);
            let replica = Replica::open(&ctx, meta.clone(), p, dir).await;
            if let Some(slots) = self.topics.borrow_mut().get_mut(&meta.name) {
                slots[p.index()] = Slot::Open(replica);
            }
        }
    }

    /// Whether every partition this shard owns is open (recovered).
    pub fn all_open(&self) -> bool {
        self.topics
            .borrow()
            .values()
            .flatten()
            .all(|slot| !matches!(slot, Slot::Recovering))
    }

    /// Closes the local partitions of `topic` and deletes their data.
    pub async fn drop_topic(&self, name: &str) {
        let removed = self.topics.borrow_mut().remove(name);
        if let Some(replication) = &self.replication {
            replication.remove_topic(name);
        }
        let open = removed.into_iter().flatten().filter_map(|slot| match slot {
            Slot::Open(replica) => Some(replica),
            _ => None,
        });
        for replica in open {
            replica.close().await;
            if let Err(e) = std::fs::remove_dir_all(replica.dir()) {
                tracing::warn!(topic = name, partition = %replica.id(), error = %e, "removing partition data");
            }
        }
    }

    /// The local partition, or why it is not here.
    pub fn replica(&self, topic: &str, partition: PartitionId) -> BrokerResult<Rc<Replica>> {
        let topics = self.topics.borrow();
        let Some(slots) = topics.get(topic) else {
            return Err(BrokerError::unknown_topic(topic));
        };
        match slots.get(partition.index()) {
            None => Err(BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                count: slots.len() as u32,
            }),
            Some(Slot::Remote) => Err(BrokerError::NotOwner {
                shard: self.shard,
                topic: topic.to_string(),
                partition,
            }),
            Some(Slot::Recovering) => Err(BrokerError::PartitionRecovering {
                topic: topic.to_string(),
                partition,
            }),
            Some(Slot::Open(replica)) => Ok(replica.clone()),
        }
    }

    /// Every local partition (shutdown, maintenance, metrics).
    pub fn replicas(&self) -> Vec<Rc<Replica>> {
        self.topics
            .borrow()
            .values()
            .flatten()
            .filter_map(|slot| match slot {
                Slot::Open(replica) => Some(replica.clone()),
                _ => None,
            })
            .collect()
    }

    /// Appends the batches of one request (see [`super::append`]).
    pub async fn append(
        &self,
        topic: &str,
        partition: PartitionId,
        batches: Vec<BytesMut>,
    ) -> BrokerResult<Appended> {
        self.replica(topic, partition)?.append(batches).await
    }

    /// Reads from `offset`, long-polling up to `max_wait` when caught up.
    pub async fn read(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
        max_bytes: u32,
        max_wait: Duration,
    ) -> BrokerResult<ReadBatches> {
        self.replica(topic, partition)?
            .read(offset, max_bytes, max_wait)
            .await
    }

    pub async fn list_offset(
        &self,
        topic: &str,
        partition: PartitionId,
        query: OffsetQuery,
    ) -> BrokerResult<ListedOffset> {
        self.replica(topic, partition)?.list_offset(query).await
    }

    pub fn figures(&self, topic: &str, partition: PartitionId) -> BrokerResult<PartitionFigures> {
        Ok(self.replica(topic, partition)?.figures())
    }

    pub async fn view(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
    ) -> BrokerResult<PartitionView> {
        self.replica(topic, partition)?.view(offset).await
    }

    /// Cuts a partition's log back to `offset`.
    pub async fn truncate(&self, topic: &str, partition: PartitionId, offset: Offset) -> BrokerResult<()> {
        self.replica(topic, partition)?.truncate(offset.get()).await
    }

    /// Retention and compaction on every local partition; stops early when
    /// `stop()` turns true (shutdown).
    pub async fn maintain_all(&self, now_ms: i64, stop: impl Fn() -> bool) {
        for replica in self.every_replica() {
            if stop() {
                return;
            }
            replica.maintain(now_ms).await;
        }
    }

    /// Flushes and closes every local partition (shutdown). A replicated
    /// partition this node leads first hands its leadership to a caught-up
    /// follower (bounded by [`TRANSFER_MS_MAX`]; the replication loop still
    /// runs), so its clients' next attempt finds a leader already elected.
    pub async fn close_all(&self) {
        self.transfer_leaderships().await;
        for replica in self.every_replica() {
            replica.close().await;
        }
    }
}
