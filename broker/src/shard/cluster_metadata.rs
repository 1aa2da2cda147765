//! The cluster metadata log on shard 0 of a cluster node (issue 14): topic
//! creation and deletion, and users, tokens and ACLs (issue 20), are
//! commands in one raft group over every node (`metadata::cluster_log` has
//! the commands and their records).
//!
//! - **Proposing.** A create or delete lands on shard 0 (every shard
//!   forwards it there, as on a single node). Shard 0 checks what it can
//!   alone (name, config, replication factor against the cluster size),
//!   encodes the command with a fresh request id and registers a waiter
//!   under that id. If this node leads the metadata group it appends the
//!   command itself; otherwise it forwards the record batch to the leader
//!   over the node link, and resends it every [`RESEND_MS`] (to whichever
//!   node leads then) until the command is applied here or
//!   [`PROPOSE_MS_MAX`] passed. The partition's dedup window stores a
//!   request id once, so a resent command is never applied twice.
//! - **Applying.** Every node, leader or not, runs one applier: a reader of
//!   the metadata partition from the next unapplied offset, long-polling
//!   the committed end. Each command is applied in log order, one at a
//!   time (the admin turn), with the single-node rules: a create of an
//!   existing name fails with `topic_exists`, a delete of an unknown one
//!   with `unknown_topic`, on every node alike. A command that changes the
//!   topics is stored in `topics.meta` together with the next offset to
//!   apply (one atomic write), then applied on every shard. A node that was
//!   down or cut off applies what it missed when it returns; a new node
//!   applies the whole log.
//! - **Answering.** The outcome reaches the waiter with the command's
//!   request id on the node that asked, when that node applies it; a caller
//!   whose command was not applied within [`PROPOSE_MS_MAX`] gets a
//!   retryable timeout (the change may still apply later: a retried create
//!   then answers `topic_exists`).
//!
//! A storage failure while applying (the catalogue cannot be written) stops
//! the applier at that command, logged, and it retries every
//! [`APPLY_RETRY_MS`]: later commands never apply ahead of it.

use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use futures_lite::future;

use super::call::ShardCall;
use super::metadata_log::ClusterMetadata;
use super::state::Shard;
use super::topic_admin::CATALOGUE_SHARD;
use crate::cluster::NodeId;
use crate::error::{BrokerError, BrokerResult};
use crate::ids::Offset;
use crate::metadata::cluster_log::{self, LoggedCommand, MetaCommand};
use crate::metadata::TopicMeta;
use crate::runtime::{now_ms, sleep};

/// A proposal not applied within this is sent again (to the leader then).
pub const RESEND_MS: u64 = 1_000;
/// A proposal not applied within this answers a retryable timeout.
pub const PROPOSE_MS_MAX: u64 = 15_000;
/// The applier's long poll, and its pause after a failure.
const APPLY_WAIT_MS: u64 = 500;
pub const APPLY_RETRY_MS: u64 = 1_000;
/// Bytes the applier reads at once.
const READ_BYTES_MAX: u32 = 1 << 20;
impl Shard {
    /// Shard 0 of a cluster node: opens the metadata partition and starts
    /// applying it from where `topics.meta` says this node stopped.
    pub(super) async fn open_cluster_metadata(self: &Rc<Self>, applied: u64) {
        let Some(replication) = self.partitions().replication().cloned() else {
            return;
        };
        if self.id() != CATALOGUE_SHARD {
            return;
        }
        let dir = self.config().server.data_dir.join("cluster").join("metadata");
        let meta = cluster_log::metadata_topic(replication.nodes().len() as u32);
        let replica = self
            .partitions()
            .open_internal(meta, crate::ids::PartitionId(0), dir)
            .await;
        let cm = Rc::new(ClusterMetadata::new(replica, replication.clone(), applied));
        let weak = Rc::downgrade(&cm);
        replication.set_forward_sink(Rc::new(move |from, batch| {
            if let Some(cm) = weak.upgrade() {
                glommio::spawn_local(async move { cm.append_forwarded(from, batch).await }).detach();
            }
        }));
        self.set_cluster_metadata(cm);
        glommio::spawn_local(apply_loop(Rc::downgrade(self))).detach();
    }

    /// Creates a topic through the metadata log (shard 0 of a cluster).
    pub(super) async fn create_through_log(&self, meta: TopicMeta) -> BrokerResult<()> {
        self.validate_new_topic(&meta)?;
        if self.topics().get(&meta.name).is_some() {
            return Err(BrokerError::TopicExists { topic: meta.name });
        }
        self.propose(MetaCommand::CreateTopic(
            shoal_protocol::messages::topic::CreateTopicRequest {
                name: meta.name,
                config: meta.config,
            },
        ))
        .await
    }

    /// Deletes a topic through the metadata log (shard 0 of a cluster).
    pub(super) async fn delete_through_log(&self, name: String) -> BrokerResult<()> {
        if self.topics().get(&name).is_none() {
            return Err(BrokerError::unknown_topic(&name));
        }
        self.propose(MetaCommand::DeleteTopic { name }).await
    }

    /// Proposes a command from any shard (it runs on shard 0) and waits
    /// until this node applied it.
    pub async fn propose_meta(&self, command: MetaCommand) -> BrokerResult<()> {
        if self.id() == CATALOGUE_SHARD {
            return self.propose(command).await;
        }
        match self
            .mesh()
            .call(CATALOGUE_SHARD, ShardCall::ProposeMeta(command))
            .await
        {
            Ok(super::call::ShardReply::Admin(r)) => r,
            Ok(_) => Err(BrokerError::internal("mesh reply mismatch")),
            Err(_) => Err(BrokerError::shard_stopped(CATALOGUE_SHARD)),
        }
    }

    /// Proposes a command and waits until this node applied it (module
    /// header): appended here when this node leads, else forwarded.
    pub(super) async fn propose(&self, command: MetaCommand) -> BrokerResult<()> {
        // Until shard 0 opened the metadata partition (start-up).
        let cm = self
            .cluster_metadata()
            .ok_or_else(|| BrokerError::PartitionRecovering {
                topic: cluster_log::METADATA_TOPIC.to_string(),
                partition: crate::ids::PartitionId(0),
            })?;
        let id = cm.next_request_id();
        let batch = cluster_log::encode(&id, &command, now_ms()).map_err(BrokerError::invalid)?;
        let (tx, rx) = flume::bounded(1);
        cm.waiters.borrow_mut().insert(id.clone(), tx);
        let deadline = Instant::now() + Duration::from_millis(PROPOSE_MS_MAX);
        let outcome = loop {
            let leader = cm.leader();
            let me = cm.replication.me();
            let resend =
                Duration::from_millis(RESEND_MS).min(deadline.saturating_duration_since(Instant::now()));
            // One attempt lasts `resend` at most: an append stuck without
            // a quorum is abandoned and tried again (the request id keeps
            // a late first copy from applying twice).
            let work = async {
                if leader == me {
                    // Committed is not yet applied: the waiter answers.
                    if let Err(e) = cm.replica.append(vec![batch.clone()]).await {
                        tracing::debug!(error = %e, "metadata proposal not appended; trying again");
                    }
                } else if let Ok(to @ 1..) = u32::try_from(leader) {
                    cm.replication.forward(NodeId(to), batch.to_vec());
                }
                future::pending::<()>().await;
            };
            let attempt = async {
                future::or(work, sleep(resend)).await;
                None
            };
            let applied = async { Some(rx.recv_async().await) };
            match future::or(applied, attempt).await {
                Some(Ok(outcome)) => break outcome,
                Some(Err(_)) => break Err(BrokerError::internal("the metadata applier stopped")),
                None if Instant::now() >= deadline => {
                    break Err(BrokerError::Timeout(format!(
                    "the cluster did not apply the change within {PROPOSE_MS_MAX} ms (no metadata leader, \
                         or no quorum of nodes); it may still apply: check before retrying"
                )))
                }
                None => continue,
            }
        };
        cm.waiters.borrow_mut().remove(&id);
        outcome
    }

    /// Applies one logged command here; the outer error is a storage
    /// failure (retried), the inner result the command's outcome.
    async fn apply_logged(&self, cmd: &LoggedCommand) -> BrokerResult<BrokerResult<()>> {
        let next = cmd.offset + 1;
        let command = match &cmd.command {
            Ok(command) => command,
            Err(reason) => {
                tracing::error!(offset = cmd.offset, %reason, "metadata record skipped: not a command");
                return Ok(Err(BrokerError::internal(reason.clone())));
            }
        };
        let _turn = self.wait_admin_turn().await?;
        match command {
            MetaCommand::CreateTopic(req) => {
                let meta = TopicMeta {
                    name: req.name.clone(),
                    config: req.config.clone(),
                };
                if let Err(e) = self.validate_new_topic(&meta) {
                    return Ok(Err(e));
                }
                let outcome = self.commit_create(meta, next).await?;
                if outcome.is_ok() {
                    tracing::info!(topic = %req.name, offset = cmd.offset, "topic created (cluster metadata)");
                }
                Ok(outcome)
            }
            MetaCommand::DeleteTopic { name } => {
                let outcome = self.commit_delete(name, next).await?;
                if outcome.is_ok() {
                    tracing::info!(topic = %name, offset = cmd.offset, "topic deleted (cluster metadata)");
                }
                Ok(outcome)
            }
            MetaCommand::Security(change) => {
                let outcome =
                    self.security().service().commit(change).map_err(|e| {
                        BrokerError::Internal(format!("storing the security file failed: {e}"))
                    })?;
                if outcome.is_ok() {
                    // `security.meta` and `topics.meta` are two files: a
                    // crash between the two writes applies this change
                    // again on restart, which leaves the same state (every
                    // security change sets its key to one value).
                    let catalogue = self.catalogue().expect("the metadata log is applied on shard 0");
                    catalogue.store(&self.topics(), next)?;
                }
                Ok(outcome)
            }
        }
    }
}

/// Applies the metadata log on shard 0 until the shard shuts down.
async fn apply_loop(shard: Weak<Shard>) {
    loop {
        let Some(shard) = shard.upgrade() else { return };
        if shard.is_shutting_down() {
            return;
        }
        let Some(cm) = shard.cluster_metadata() else {
            return;
        };
        let from = cm.next.get();
        let read = cm
            .replica
            .read(Offset(from), READ_BYTES_MAX, Duration::from_millis(APPLY_WAIT_MS))
            .await;
        let commands = match read.map(|r| cluster_log::decode(&r.batches, from, &cluster_log::limits())) {
            Ok(Ok(commands)) => commands,
            Ok(Err(reason)) => {
                tracing::error!(offset = from, %reason, "metadata log unreadable; retrying");
                sleep(Duration::from_millis(APPLY_RETRY_MS)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(offset = from, error = %e, "reading the metadata log; retrying");
                sleep(Duration::from_millis(APPLY_RETRY_MS)).await;
                continue;
            }
        };
        for cmd in commands {
            if cmd.offset != cm.next.get() {
                break;
            }
            match shard.apply_logged(&cmd).await {
                Ok(outcome) => {
                    cm.next.set(cmd.offset + 1);
                    let waiter = cmd
                        .request_id
                        .as_ref()
                        .and_then(|id| cm.waiters.borrow_mut().remove(id));
                    if let Some(waiter) = waiter {
                        let _ = waiter.try_send(outcome);
                    }
                }
                Err(e) => {
                    tracing::error!(offset = cmd.offset, error = %e, "applying a metadata command failed; retrying");
                    sleep(Duration::from_millis(APPLY_RETRY_MS)).await;
                    break;
                }
            }
        }
    }
}
