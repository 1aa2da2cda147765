//! A shard: one pinned executor that owns a fixed set of partitions.
//!
//! The shard is shared-nothing. It holds its copy of the topic registry, the
//! partitions it owns (`shard_for_partition(topic, p, shards) == id`), its
//! mesh endpoint, its counters and its in-flight byte budget. Everything
//! lives in one `Rc<Shard>` touched only by this executor's tasks, so no
//! locks. Work for a partition owned elsewhere goes through [`Shard::on`]
//! (a cross-shard call, counted); work for a local one is a method call.
//!
//! Startup: every shard opens its own partitions of every topic in the
//! catalogue (storage recovery runs here; a corrupt partition is fenced,
//! not fatal for the broker), then starts its listeners and its inbox loop.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::sync::Semaphore;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::partitioner::shard_for_partition;

use crate::config::Config;
use crate::mesh::{Envelope, Mesh, MeshError, ShardCall, ShardReply};
use crate::metrics::ShardMetrics;
use crate::partition::Partition;
use crate::topics::{Catalogue, TopicMeta, TopicRegistry};

/// The ports a broker listens on, known to every shard (for metadata).
#[derive(Debug, Clone)]
pub struct Ports {
    pub host: String,
    pub shared: u16,
    pub shard_ports: Vec<u16>,
    pub http: u16,
}

/// One shard's state.
pub struct Shard {
    pub id: u32,
    pub count: u32,
    pub config: Rc<Config>,
    pub ports: Ports,
    pub mesh: Mesh,
    pub metrics: ShardMetrics,
    pub topics: RefCell<TopicRegistry>,
    partitions: RefCell<HashMap<String, Vec<Option<Rc<Partition>>>>>,
    /// Request bytes in flight on this shard ([`crate::config::LimitsConfig`]).
    pub inflight: Rc<Semaphore>,
    pub shutting_down: Cell<bool>,
    /// Set on shard 0 only: the durable topic catalogue.
    catalogue: Option<Catalogue>,
    /// Consumer groups coordinated here and their quarantine.
    pub delivery: crate::delivery::Delivery,
    /// The task queue of every local log's writer and syncer: a queue of
    /// their own, so a completed disk write gets the writer scheduled ahead
    /// of the request handlers that are copying the next batches in.
    pub log_queue: glommio::TaskQueueHandle,
}

impl Shard {
    /// Runs on the shard's executor (it creates the log task queue there).
    pub fn new(id: u32, config: Rc<Config>, ports: Ports, mesh: Mesh) -> Rc<Shard> {
        let count = mesh.shard_count();
        let catalogue = (id == 0).then(|| Catalogue::new(&config.server.data_dir));
        let inflight = Rc::new(Semaphore::new(config.limits.shard_inflight_bytes_max as u64));
        Rc::new(Shard {
            id,
            count,
            config,
            ports,
            mesh,
            metrics: ShardMetrics::default(),
            topics: RefCell::new(TopicRegistry::default()),
            partitions: RefCell::new(HashMap::new()),
            inflight,
            shutting_down: Cell::new(false),
            catalogue,
            delivery: crate::delivery::Delivery::new(id),
            log_queue: crate::runtime::io_queue("log-flush"),
        })
    }

    /// The shard that owns `partition` of `topic`.
    pub fn owner(&self, topic: &str, partition: u32) -> u32 {
        shard_for_partition(topic, partition, self.count)
    }

    /// The local partition, if this shard owns it and it is open.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(topic)?
            .get(partition as usize)?
            .clone()
    }

    /// Local partitions, for shutdown, retention and metrics.
    pub fn local_partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions
            .borrow()
            .values()
            .flatten()
            .flatten()
            .cloned()
            .collect()
    }

    /// Directory of one partition's log.
    pub fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.config
            .server
            .data_dir
            .join("logs")
            .join(topic)
            .join(partition.to_string())
    }

    /// Sends a call to shard `to` (which must not be this shard).
    pub async fn on(&self, to: u32, call: ShardCall) -> Result<ShardReply, MeshError> {
        debug_assert_ne!(to, self.id, "local work must not cross the mesh");
        // The mesh counts the hop (per destination and per kind).
        self.mesh.call(to, call).await
    }

    /// Loads the catalogue into this shard's registry and opens the local
    /// partitions of every topic.
    pub async fn load_topics(self: &Rc<Self>) -> Result<(), crate::topics::TopicError> {
        let topics = Catalogue::new(&self.config.server.data_dir).load()?;
        for meta in topics {
            self.apply_create(meta).await;
        }
        Ok(())
    }

    /// Adds a topic to the registry and opens the partitions this shard owns.
    /// A partition that fails to open is kept as fenced (its error is
    /// reported on every request) rather than taking the broker down.
    pub async fn apply_create(self: &Rc<Self>, meta: TopicMeta) {
        let name = meta.name.clone();
        let count = meta.config.partitions;
        let meta = {
            let mut topics = self.topics.borrow_mut();
            topics.insert(meta);
            topics.get(&name).cloned().expect("just inserted")
        };
        let mut opened = vec![None; count as usize];
        for p in 0..count {
            if self.owner(&name, p) != self.id {
                continue;
            }
            let dir = self.partition_dir(&name, p);
            opened[p as usize] = Some(Partition::open(self, meta.clone(), p, dir).await);
        }
        self.partitions.borrow_mut().insert(name, opened);
    }

    /// Removes a topic: closes and deletes the local partitions' data.
    pub async fn apply_delete(self: &Rc<Self>, name: &str) {
        self.topics.borrow_mut().remove(name);
        let removed = self.partitions.borrow_mut().remove(name);
        for partition in removed.into_iter().flatten().flatten() {
            partition.close().await;
            let dir = self.partition_dir(name, partition.id);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(topic = name, partition = partition.id, error = %e, "removing partition data");
            }
        }
    }

    /// Shard 0: validates and durably records a new topic, then applies it on
    /// every shard. Replies once every shard has it.
    pub async fn create_topic(self: &Rc<Self>, meta: TopicMeta) -> (ErrorCode, String) {
        let catalogue = self.catalogue.as_ref().expect("create_topic runs on shard 0");
        if let Err(e) = crate::topics::validate_name(&meta.name) {
            return (ErrorCode::InvalidRequest, e.to_string());
        }
        if let Err(e) = crate::topics::validate_config(&meta.config) {
            return (ErrorCode::InvalidRequest, e.to_string());
        }
        let mut next = self.topics.borrow().clone();
        if next.get(&meta.name).is_some() {
            return (
                ErrorCode::TopicExists,
                format!("topic {:?} already exists", meta.name),
            );
        }
        if next.len() >= crate::topics::TOPICS_MAX {
            return (
                ErrorCode::InvalidRequest,
                crate::topics::TopicError::TooMany.to_string(),
            );
        }
        next.insert(meta.clone());
        if let Err(e) = catalogue.store(&next) {
            return (ErrorCode::Internal, e.to_string());
        }
        self.broadcast(|| ShardCall::ApplyCreate(meta.clone())).await;
        self.apply_create(meta).await;
        (ErrorCode::None, String::new())
    }

    /// Shard 0: removes a topic from the catalogue, then from every shard.
    pub async fn delete_topic(self: &Rc<Self>, name: &str) -> (ErrorCode, String) {
        let catalogue = self.catalogue.as_ref().expect("delete_topic runs on shard 0");
        let mut next = self.topics.borrow().clone();
        if next.remove(name).is_none() {
            return (ErrorCode::UnknownTopic, format!("topic {name:?} does not exist"));
        }
        if let Err(e) = catalogue.store(&next) {
            return (ErrorCode::Internal, e.to_string());
        }
        self.broadcast(|| ShardCall::ApplyDelete(name.to_string())).await;
        self.apply_delete(name).await;
        (ErrorCode::None, String::new())
    }

    async fn broadcast(&self, call: impl Fn() -> ShardCall) {
        for peer in (0..self.count).filter(|&s| s != self.id) {
            if let Err(e) = self.on(peer, call()).await {
                tracing::warn!(shard = peer, error = %e, "broadcast to a stopped shard");
            }
        }
    }

    /// Serves calls from other shards until every sender is gone.
    pub async fn serve_inbox(self: Rc<Self>, inbox: flume::Receiver<Envelope>) {
        while let Ok(envelope) = inbox.recv_async().await {
            self.mesh.count_in();
            let shard = self.clone();
            glommio::spawn_local(async move {
                let reply = shard.handle_call(envelope.call).await;
                // The caller may have given up (its connection closed); a
                // dropped reply is harmless.
                let _ = envelope.reply.send_async(reply).await;
            })
            .detach();
        }
    }

    async fn handle_call(self: &Rc<Self>, call: ShardCall) -> ShardReply {
        use crate::handlers::local;
        match call {
            ShardCall::Produce {
                topic,
                partition,
                acks,
                batches,
            } => ShardReply::Produce(local::produce(self, &topic, partition, acks, batches).await),
            ShardCall::Fetch {
                topic,
                partition,
                offset,
                max_bytes,
                max_wait_ms,
            } => {
                let (resp, batches) =
                    local::fetch(self, &topic, partition, offset, max_bytes, max_wait_ms).await;
                ShardReply::Fetch(resp, batches)
            }
            ShardCall::ListOffsets {
                topic,
                partition,
                spec,
            } => ShardReply::ListOffsets(local::list_offsets(self, &topic, partition, spec).await),
            ShardCall::CreateTopic { name, config } => {
                let (code, msg) = self.create_topic(TopicMeta { name, config }).await;
                ShardReply::Admin(code.to_wire(), msg)
            }
            ShardCall::DeleteTopic { name } => {
                let (code, msg) = self.delete_topic(&name).await;
                ShardReply::Admin(code.to_wire(), msg)
            }
            ShardCall::ApplyCreate(meta) => {
                self.apply_create(meta).await;
                ShardReply::Done
            }
            ShardCall::ApplyDelete(name) => {
                self.apply_delete(&name).await;
                ShardReply::Done
            }
            ShardCall::PartitionStats { topic, partition } => {
                ShardReply::Stats(self.partition(&topic, partition).map(|p| p.figures()))
            }
            ShardCall::MetricsSnapshot => ShardReply::Metrics(Box::new(crate::http::metrics::snapshot(self))),
            ShardCall::Delivery(call) => {
                ShardReply::Delivery(Box::new(crate::delivery::handle_call(self, *call).await))
            }
            ShardCall::Shutdown => {
                self.shutdown().await;
                ShardReply::Done
            }
        }
    }

    /// Applies retention (by time and size, whole segments) and compaction
    /// to every local partition, every `storage.maintenance_interval_ms`,
    /// until the shard shuts down. A failure is logged for that partition
    /// only (a fenced log reports itself on every request).
    pub async fn maintenance_loop(self: Rc<Self>) {
        let interval = std::time::Duration::from_millis(self.config.storage.maintenance_interval_ms);
        while !self.shutting_down.get() {
            crate::runtime::sleep(interval).await;
            for partition in self.local_partitions() {
                if self.shutting_down.get() {
                    return;
                }
                partition.maintain(crate::runtime::now_ms()).await;
            }
        }
    }

    /// Stops accepting work and flushes every local partition.
    pub async fn shutdown(&self) {
        self.shutting_down.set(true);
        for partition in self.local_partitions() {
            partition.close().await;
        }
        self.delivery.close().await;
    }
}
