//! Topic administration across shards: shard 0 is the catalogue's single
//! writer; it validates a change, makes it durable, then applies it on
//! every shard (each opens or drops the partitions it owns). On a cluster,
//! shard 0 proposes the change to the metadata log instead, and applies it
//! when the log commits it (`cluster_metadata`), like every other node.
//!
//! Changes run one at a time: each is applied on every shard before the
//! next one starts. Opening a topic's partitions awaits recovery, and a
//! delete and re-create of the same name in that window made the opening
//! land in the new topic's partition slots (a panic when the new topic had
//! fewer partitions, the old topic's data served as the new one's
//! otherwise; found by `tests/tests/http_bad_input.rs`).

use std::rc::Rc;

use shoal_protocol::messages::topic::TopicConfig;

use super::call::{ShardCall, ShardReply};
use super::state::Shard;
use crate::error::{BrokerError, BrokerResult};
use crate::ids::ShardId;
use crate::metadata::{validate_config, validate_name, Catalogue, TopicError, TopicMeta, TOPICS_MAX};

/// The shard that writes the topic catalogue.
pub const CATALOGUE_SHARD: ShardId = ShardId(0);

impl Shard {
    /// Loads the catalogue into this shard's registry and opens the local
    /// partitions of every topic. Every topic is registered (its owned
    /// partitions marked recovering) before the first one opens.
    /// Returns the next cluster-metadata offset the catalogue has not
    /// applied (0 on a single node).
    pub async fn load_topics(self: &Rc<Self>) -> Result<u64, TopicError> {
        let (topics, metadata_applied) = Catalogue::new(&self.config().server.data_dir).load_state()?;
        for meta in &topics {
            self.topics_mut().insert(meta.clone());
            self.partitions().expect_topic(meta);
        }
        for meta in topics {
            if let Some(meta) = self.topic(&meta.name) {
                self.partitions().open_topic(meta).await;
            }
        }
        Ok(metadata_applied)
    }

    /// Adds a topic to the registry and opens the partitions this shard owns.
    /// A partition that fails to open is kept as fenced (its error is
    /// reported on every request) rather than taking the broker down.
    pub(super) async fn apply_create(&self, meta: TopicMeta) {
        let name = meta.name.clone();
        self.topics_mut().insert(meta);
        let meta = self.topic(&name).expect("just inserted");
        self.partitions().open_topic(meta).await;
    }

    /// Removes a topic: closes and deletes the local partitions' data.
    pub(super) async fn apply_delete(&self, name: &str) {
        self.topics_mut().remove(name);
        self.partitions().drop_topic(name).await;
    }

    /// Creates a topic (on shard 0, forwarded when this is another shard).
    pub(super) async fn create_topic(&self, name: String, config: TopicConfig) -> BrokerResult<()> {
        if self.id() != CATALOGUE_SHARD {
            return self.admin_call(ShardCall::CreateTopic { name, config }).await;
        }
        if self.partitions().replication().is_some() {
            return self.create_through_log(TopicMeta { name, config }).await;
        }
        self.create_on_catalogue(TopicMeta { name, config }).await
    }

    /// Deletes a topic (on shard 0, forwarded when this is another shard).
    pub(super) async fn delete_topic(&self, name: String) -> BrokerResult<()> {
        if self.id() != CATALOGUE_SHARD {
            return self.admin_call(ShardCall::DeleteTopic { name }).await;
        }
        if self.partitions().replication().is_some() {
            return self.delete_through_log(name).await;
        }
        self.delete_on_catalogue(&name).await
    }

    async fn admin_call(&self, call: ShardCall) -> BrokerResult<()> {
        match self.mesh().call(CATALOGUE_SHARD, call).await {
            Ok(ShardReply::Admin(r)) => r,
            Ok(_) => Err(BrokerError::internal("mesh reply mismatch")),
            Err(_) => Err(BrokerError::shard_stopped(CATALOGUE_SHARD)),
        }
    }

    /// Shard 0: validates and durably records a new topic, then applies it
    /// on every shard. Returns once every shard has it.
    pub(super) async fn create_on_catalogue(&self, meta: TopicMeta) -> BrokerResult<()> {
        let _turn = self.wait_admin_turn().await?;
        self.validate_new_topic(&meta)?;
        self.commit_create(meta, 0).await?
    }

    /// Shard 0: removes a topic from the catalogue, then from every shard.
    pub(super) async fn delete_on_catalogue(&self, name: &str) -> BrokerResult<()> {
        let _turn = self.wait_admin_turn().await?;
        self.commit_delete(name, 0).await?
    }

    /// Checks a new topic with what this node knows alone: its name, its
    /// configuration, and a replication factor the cluster can hold.
    pub(super) fn validate_new_topic(&self, meta: &TopicMeta) -> BrokerResult<()> {
        validate_name(&meta.name)?;
        validate_config(&meta.config)?;
        let nodes = self
            .partitions()
            .replication()
            .map_or(1, |r| r.nodes().len() as u32);
        if meta.config.replication_factor > nodes {
            return Err(BrokerError::invalid(format!(
                "replication_factor {} needs a cluster of at least that many nodes (this one has {nodes})",
                meta.config.replication_factor
            )));
        }
        Ok(())
    }

    /// Shard 0, on its admin turn: adds `meta` to the catalogue (stored
    /// with `metadata_applied`, the next metadata-log offset; 0 on a single
    /// node), then to every shard. The outer error is the catalogue's
    /// write (nothing changed); the inner result the topic's own outcome.
    pub(super) async fn commit_create(
        &self,
        meta: TopicMeta,
        metadata_applied: u64,
    ) -> Result<BrokerResult<()>, TopicError> {
        let mut next = self.topics().clone();
        if next.get(&meta.name).is_some() {
            return Ok(Err(BrokerError::TopicExists { topic: meta.name }));
        }
        if next.len() >= TOPICS_MAX {
            return Ok(Err(TopicError::TooMany.into()));
        }
        next.insert(meta.clone());
        self.catalogue()
            .expect("topic changes are committed on shard 0")
            .store(&next, metadata_applied)?;
        self.broadcast(|| ShardCall::ApplyCreate(meta.clone())).await;
        self.apply_create(meta).await;
        Ok(Ok(()))
    }

    /// Shard 0, on its admin turn: removes a topic from the catalogue, then
    /// from every shard (errors as [`Shard::commit_create`]).
    pub(super) async fn commit_delete(
        &self,
        name: &str,
        metadata_applied: u64,
    ) -> Result<BrokerResult<()>, TopicError> {
        let mut next = self.topics().clone();
        if next.remove(name).is_none() {
            return Ok(Err(BrokerError::unknown_topic(name)));
        }
        self.catalogue()
            .expect("topic changes are committed on shard 0")
            .store(&next, metadata_applied)?;
        self.broadcast(|| ShardCall::ApplyDelete(name.to_string())).await;
        self.apply_delete(name).await;
        Ok(Ok(()))
    }

    /// Waits until no other topic change is in progress (module docs).
    pub(super) async fn wait_admin_turn(&self) -> BrokerResult<glommio::sync::Permit<'_>> {
        self.admin_turn()
            .acquire_permit(1)
            .await
            .map_err(|_| BrokerError::shard_stopped(self.id()))
    }

    pub(super) async fn broadcast(&self, call: impl Fn() -> ShardCall) {
        for peer in (0..self.count()).map(ShardId).filter(|&s| s != self.id()) {
            if let Err(e) = self.mesh().call(peer, call()).await {
                tracing::warn!(shard = %peer, error = %e, "broadcast to a stopped shard");
            }
        }
    }
}
