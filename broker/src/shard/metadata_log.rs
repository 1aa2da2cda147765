//! Shard 0's end of the cluster metadata log (its state, apart from the
//! shard that drives it in `cluster_metadata`): the metadata partition's
//! replica, the next offset to apply, the proposers waiting for their
//! commands, and the leader's handling of forwarded proposals.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::BytesMut;

use crate::cluster::NodeId;
use crate::error::BrokerResult;
use crate::metadata::cluster_log;
use crate::partition::replica::Replica;
use crate::partition::replication::Replication;
use crate::runtime::now_ms;

/// Forwarded proposals being appended at once on the leader; past it they
/// are dropped (the asking node resends).
const FORWARDS_INFLIGHT_MAX: usize = 64;

/// Shard 0's end of the metadata log on a cluster node.
pub struct ClusterMetadata {
    pub(super) replica: Rc<Replica>,
    pub(super) replication: Rc<Replication>,
    /// The next offset to apply.
    pub(super) next: Cell<u64>,
    pub(super) waiters: RefCell<HashMap<String, flume::Sender<BrokerResult<()>>>>,
    /// Request ids: this node, its start time, a counter.
    id_prefix: String,
    id_seq: Cell<u64>,
    forwards_inflight: Cell<usize>,
}

impl ClusterMetadata {
    /// Shard 0's end, resuming at offset `applied`.
    pub(super) fn new(replica: Rc<Replica>, replication: Rc<Replication>, applied: u64) -> ClusterMetadata {
        ClusterMetadata {
            id_prefix: format!("n{}-{}", replication.me(), now_ms()),
            replica,
            replication,
            next: Cell::new(applied),
            waiters: RefCell::new(HashMap::new()),
            id_seq: Cell::new(0),
            forwards_inflight: Cell::new(0),
        }
    }

    pub(super) fn next_request_id(&self) -> String {
        let seq = self.id_seq.get() + 1;
        self.id_seq.set(seq);
        format!("{}-{seq}", self.id_prefix)
    }

    pub(super) fn leader(&self) -> u64 {
        self.replica.raft().map_or(0, |g| g.leader())
    }

    /// On the leader: appends a proposal another node forwarded. A
    /// non-leader drops it (the asking node resends to the new leader).
    pub(super) async fn append_forwarded(&self, from: NodeId, batch: Vec<u8>) {
        if !cluster_log::is_batch(&batch) {
            tracing::warn!(from = %from, "forwarded metadata proposal is not a valid batch; dropped");
            return;
        }
        if self.forwards_inflight.get() >= FORWARDS_INFLIGHT_MAX {
            return;
        }
        self.forwards_inflight.set(self.forwards_inflight.get() + 1);
        let result = self.replica.append(vec![BytesMut::from(&batch[..])]).await;
        self.forwards_inflight.set(self.forwards_inflight.get() - 1);
        if let Err(e) = result {
            tracing::debug!(from = %from, error = %e, "forwarded metadata proposal not appended");
        }
    }
}
