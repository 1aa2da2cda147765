//! A shard's state: one pinned executor and what it owns.
//!
//! The shard is shared-nothing. It holds its config, its copy of the topic
//! registry, its partition and delivery services, its mesh endpoint, its
//! counters and its in-flight byte budget. Everything lives in one
//! `Rc<Shard>` touched only by this executor's tasks, so no locks. Fields
//! are private; the logic that uses them lives in the services and in the
//! shard's routing ([`super::route`]), which sends work for a partition or
//! group owned elsewhere over the mesh (counted).

use std::cell::{Cell, Ref, RefCell};
use std::rc::{Rc, Weak};

use glommio::sync::Semaphore;
use shoal_config::Config;
use shoal_protocol::partitioner::{shard_for_group, shard_for_partition};

use super::call::{ShardCall, ShardReply};
use super::metadata_log::ClusterMetadata;
use crate::cluster::ClusterNode;
use crate::delivery::Delivery;
use crate::ids::{PartitionId, ShardId};
use crate::mesh::Mesh;
use crate::metadata::security::{SecurityService, ShardView};
use crate::metadata::{Catalogue, TopicMeta, TopicRegistry};
use crate::metrics::ShardMetrics;
use crate::partition::PartitionService;

/// This shard's end of the mesh.
pub type ShardMesh = Mesh<ShardCall, ShardReply>;

/// The ports a broker listens on, known to every shard (for metadata).
#[derive(Debug, Clone)]
pub struct Ports {
    pub host: String,
    pub shared: u16,
    pub shard_ports: Vec<u16>,
    pub http: u16,
    /// The Kafka listener's, when it is on.
    pub kafka: Option<KafkaPorts>,
}

/// Where Kafka clients reach the broker: the host advertised in Metadata,
/// the shared port, and shard `i`'s own port (Kafka broker id `i`).
#[derive(Debug, Clone)]
pub struct KafkaPorts {
    pub host: String,
    pub shared: u16,
    pub shard_ports: Vec<u16>,
}

/// Delivery's handle to partition data: this shard, held weakly (the shard
/// owns the delivery service). Its `PartitionSource` impl, which routes each
/// read to the partition's owner, is in `shard::source`.
pub struct ShardSource(pub(super) Weak<Shard>);

/// One shard's state.
pub struct Shard {
    id: ShardId,
    count: u32,
    config: Rc<Config>,
    ports: Ports,
    mesh: ShardMesh,
    metrics: ShardMetrics,
    topics: RefCell<TopicRegistry>,
    partitions: PartitionService,
    delivery: Rc<Delivery<ShardSource>>,
    /// Request bytes in flight on this shard ([`shoal_config::LimitsConfig`]).
    inflight: Rc<Semaphore>,
    /// Memory for large request frames, reserved when their header arrives
    /// (`limits.receive_pool_bytes_max`).
    receive_pool: Rc<Semaphore>,
    shutting_down: Cell<bool>,
    /// Set once the shard loaded its topics and opened its partitions.
    started: Cell<bool>,
    /// Set on shard 0 only: the durable topic catalogue.
    catalogue: Option<Catalogue>,
    /// On shard 0: one topic change at a time (see `topic_admin`).
    admin_turn: Semaphore,
    /// Users, tokens, ACLs: this shard's view of the process-wide service.
    security: ShardView,
    /// This shard's node links; `None` on a single node.
    cluster: Option<Rc<ClusterNode>>,
    /// On shard 0 of a cluster node, once open: the metadata log.
    cluster_metadata: RefCell<Option<Rc<ClusterMetadata>>>,
}

impl Shard {
    /// Runs on the shard's executor (it creates the log task queue there).
    pub fn new(
        id: ShardId,
        config: Rc<Config>,
        ports: Ports,
        mesh: ShardMesh,
        security: std::sync::Arc<SecurityService>,
    ) -> Rc<Shard> {
        let count = mesh.shard_count();
        let catalogue = (id == ShardId(0)).then(|| Catalogue::new(&config.server.data_dir));
        let inflight = Rc::new(Semaphore::new(config.limits.shard_inflight_bytes_max as u64));
        let receive_pool = Rc::new(Semaphore::new(config.limits.receive_pool_bytes_max as u64));
        // The logs' writers and syncers get a task queue of their own, so a
        // completed disk write gets the writer scheduled ahead of the
        // request handlers that are copying the next batches in.
        let log_queue = crate::runtime::io_queue("log-flush");
        let cluster = ClusterNode::new(
            &config,
            id.get(),
            count,
            format!("{}:{}", ports.host, ports.shared),
        );
        let partitions = PartitionService::new(id, count, config.clone(), log_queue, cluster.clone());
        let settings = config.delivery.clone();
        Rc::new_cyclic(|me: &Weak<Shard>| Shard {
            id,
            count,
            config,
            ports,
            mesh,
            metrics: ShardMetrics::default(),
            topics: RefCell::new(TopicRegistry::default()),
            partitions,
            delivery: Rc::new(Delivery::new(id.get(), settings, ShardSource(me.clone()))),
            inflight,
            receive_pool,
            shutting_down: Cell::new(false),
            started: Cell::new(false),
            catalogue,
            admin_turn: Semaphore::new(1),
            security: ShardView::new(security),
            cluster,
            cluster_metadata: RefCell::new(None),
        })
    }

    /// Authentication, tokens and ACLs (the gate in `shard::access` uses it).
    pub fn security(&self) -> &ShardView {
        &self.security
    }

    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Number of shards of this broker.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This shard's node links, on a cluster member.
    pub fn cluster(&self) -> Option<&Rc<ClusterNode>> {
        self.cluster.as_ref()
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    pub fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }

    pub(super) fn mesh(&self) -> &ShardMesh {
        &self.mesh
    }

    pub fn partitions(&self) -> &PartitionService {
        &self.partitions
    }

    pub(super) fn delivery(&self) -> &Rc<Delivery<ShardSource>> {
        &self.delivery
    }

    pub(super) fn catalogue(&self) -> Option<&Catalogue> {
        self.catalogue.as_ref()
    }

    /// The metadata log, on shard 0 of a cluster node once it is open.
    pub fn cluster_metadata(&self) -> Option<Rc<ClusterMetadata>> {
        self.cluster_metadata.borrow().clone()
    }

    pub(super) fn set_cluster_metadata(&self, cm: Rc<ClusterMetadata>) {
        *self.cluster_metadata.borrow_mut() = Some(cm);
    }

    /// The turn a topic change on the catalogue shard waits for.
    pub(super) fn admin_turn(&self) -> &Semaphore {
        &self.admin_turn
    }

    /// The shard's in-flight request byte budget.
    pub fn inflight(&self) -> &Rc<Semaphore> {
        &self.inflight
    }

    /// The shard's memory for large request frames being received.
    pub fn receive_pool(&self) -> &Rc<Semaphore> {
        &self.receive_pool
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    pub(super) fn set_shutting_down(&self) {
        self.shutting_down.set(true);
    }

    /// Whether this shard finished starting: topics loaded, every owned
    /// partition recovered, delivery state restored.
    pub fn is_started(&self) -> bool {
        self.started.get() && self.partitions.all_open()
    }

    pub(super) fn set_started(&self) {
        self.started.set(true);
    }

    /// This shard's copy of the topic registry (never hold it across an await).
    pub fn topics(&self) -> Ref<'_, TopicRegistry> {
        self.topics.borrow()
    }

    /// A topic's metadata, if it exists.
    pub fn topic(&self, name: &str) -> Option<Rc<TopicMeta>> {
        self.topics.borrow().get(name).cloned()
    }

    pub(super) fn topics_mut(&self) -> std::cell::RefMut<'_, TopicRegistry> {
        self.topics.borrow_mut()
    }

    /// The shard that owns `partition` of `topic`.
    pub fn owner(&self, topic: &str, partition: PartitionId) -> ShardId {
        ShardId(shard_for_partition(topic, partition.get(), self.count))
    }

    /// The shard coordinating `group`.
    pub fn coordinator(&self, group: &str) -> ShardId {
        ShardId(shard_for_group(group, self.count))
    }
}
