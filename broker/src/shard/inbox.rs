//! The shard's inbox: calls from other shards, each routed to the service
//! it is for. Every call runs in its own task, so a long poll or an fsync
//! wait never holds up the calls behind it.

use std::rc::Rc;

use super::call::{ShardCall, ShardReply};
use super::state::Shard;
use crate::mesh::Envelope;

impl Shard {
    /// Serves calls from other shards until every sender is gone.
    pub async fn serve_inbox(self: Rc<Self>, inbox: flume::Receiver<Envelope<ShardCall, ShardReply>>) {
        while let Ok(envelope) = inbox.recv_async().await {
            self.mesh().count_in();
            let shard = self.clone();
            glommio::spawn_local(async move {
                let reply = shard.serve_call(envelope.call).await;
                // The caller may have given up (its connection closed); a
                // dropped reply is harmless.
                let _ = envelope.reply.send_async(reply).await;
            })
            .detach();
        }
    }

    async fn serve_call(self: &Rc<Self>, call: ShardCall) -> ShardReply {
        match call {
            ShardCall::Produce {
                topic,
                partition,
                batches,
            } => {
                let owned = batches.into_iter().map(owned_from_shared).collect();
                ShardReply::Produce(self.append_local(&topic, partition, owned).await)
            }
            ShardCall::Fetch {
                topic,
                partition,
                offset,
                max_bytes,
                max_wait_ms,
            } => ShardReply::Fetch(
                self.read_local(&topic, partition, offset, max_bytes, max_wait_ms)
                    .await,
            ),
            ShardCall::ListOffsets {
                topic,
                partition,
                query,
            } => ShardReply::ListOffsets(self.partitions().list_offset(&topic, partition, query).await),
            // On shard 0: through the metadata log on a cluster.
            ShardCall::CreateTopic { name, config } => {
                ShardReply::Admin(self.create_topic(name, config).await)
            }
            ShardCall::DeleteTopic { name } => ShardReply::Admin(self.delete_topic(name).await),
            ShardCall::ProposeMeta(command) => ShardReply::Admin(self.propose(command).await),
            ShardCall::ApplyCreate(meta) => {
                self.apply_create(meta).await;
                ShardReply::Done
            }
            ShardCall::ApplyDelete(name) => {
                self.apply_delete(&name).await;
                ShardReply::Done
            }
            ShardCall::PartitionFigures { topic, partition } => {
                ShardReply::Figures(self.partitions().figures(&topic, partition))
            }
            ShardCall::PartitionView {
                topic,
                partition,
                offset,
            } => ShardReply::View(self.partitions().view(&topic, partition, offset).await),
            ShardCall::MetricsSnapshot => ShardReply::Metrics(Box::new(self.snapshot())),
            ShardCall::Ready => ShardReply::Ready(self.readiness()),
            ShardCall::Group(call) => ShardReply::Group(Box::new(self.serve_group_call(*call).await)),
            ShardCall::Shutdown => {
                self.shutdown().await;
                ShardReply::Done
            }
            ShardCall::Submit(work) => ShardReply::Submitted(self.run_submitted(work).await),
        }
    }
}

/// Turns shared batch bytes (from the mesh) into the owned buffer the log
/// takes, without a copy when this was the only reference.
fn owned_from_shared(bytes: bytes::Bytes) -> bytes::BytesMut {
    bytes
        .try_into_mut()
        .unwrap_or_else(|b| bytes::BytesMut::from(&b[..]))
}
