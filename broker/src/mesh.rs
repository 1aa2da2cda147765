//! Cross-shard messaging: Seastar-style `submit_to` over bounded channels.
//!
//! Transport only: the mesh moves a call to another shard's inbox and its
//! reply back, and counts every hop. It knows nothing of what the calls
//! mean; the shard's inbox (`shard::inbox`) routes each call to its service.
//!
//! Every shard has one bounded inbox (a flume channel). A call sends an
//! [`Envelope`] holding the request and a one-shot reply channel, and awaits
//! the reply. Nothing is shared between shards but these messages: no locks.
//! Every hop is counted per destination and per kind ([`MeshCall::kind`]),
//! so operators (and the shard-aware client's tests) can see how much work
//! crossed cores.
//!
//! A full inbox is backpressure: the caller waits for room (the inbox depth
//! is [`SHARD_INBOX_MAX`]). A closed inbox means the peer shard stopped; the
//! call fails with [`MeshError::Closed`].

use std::cell::Cell;

use crate::ids::ShardId;

/// Depth of each shard's inbox.
pub const SHARD_INBOX_MAX: usize = 1024;

/// A call the mesh can carry: it names its kind for the hop counters.
pub trait MeshCall {
    /// Names of the kinds, indexed by [`MeshCall::kind`].
    const KINDS: &'static [&'static str];
    /// Index into [`MeshCall::KINDS`].
    fn kind(&self) -> usize;
}

/// A call in flight to another shard.
pub struct Envelope<C, R> {
    pub from: ShardId,
    pub call: C,
    pub reply: flume::Sender<R>,
}

/// Why a cross-shard call failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("shard {0} has stopped")]
    Closed(ShardId),
}

/// This shard's end of the mesh.
pub struct Mesh<C, R> {
    shard: ShardId,
    peers: Vec<flume::Sender<Envelope<C, R>>>,
    hops_out: Vec<Cell<u64>>,
    hops_in: Cell<u64>,
    hops_by_kind: Vec<Cell<u64>>,
}

impl<C: MeshCall, R> Mesh<C, R> {
    pub fn new(shard: ShardId, peers: Vec<flume::Sender<Envelope<C, R>>>) -> Self {
        let hops_out = peers.iter().map(|_| Cell::new(0)).collect();
        Mesh {
            shard,
            peers,
            hops_out,
            hops_in: Cell::new(0),
            hops_by_kind: C::KINDS.iter().map(|_| Cell::new(0)).collect(),
        }
    }

    /// Sends `call` to shard `to` (never this shard) and waits for its reply.
    pub async fn call(&self, to: ShardId, call: C) -> Result<R, MeshError> {
        debug_assert_ne!(to, self.shard, "local work must not cross the mesh");
        let kind = &self.hops_by_kind[call.kind()];
        kind.set(kind.get() + 1);
        let (tx, rx) = flume::bounded(1);
        let envelope = Envelope {
            from: self.shard,
            call,
            reply: tx,
        };
        let peer = &self.peers[to.index()];
        peer.send_async(envelope)
            .await
            .map_err(|_| MeshError::Closed(to))?;
        let cell = &self.hops_out[to.index()];
        cell.set(cell.get() + 1);
        rx.recv_async().await.map_err(|_| MeshError::Closed(to))
    }

    /// Counts a call received from another shard.
    pub fn count_in(&self) {
        self.hops_in.set(self.hops_in.get() + 1);
    }

    /// Calls sent to each shard so far.
    pub fn hops_out(&self) -> Vec<u64> {
        self.hops_out.iter().map(Cell::get).collect()
    }

    /// Calls sent to other shards so far, by [`MeshCall::KINDS`] kind.
    pub fn hops_by_kind(&self) -> Vec<u64> {
        self.hops_by_kind.iter().map(Cell::get).collect()
    }

    /// Calls received from other shards so far.
    pub fn hops_in(&self) -> u64 {
        self.hops_in.get()
    }

    pub fn shard_count(&self) -> u32 {
        self.peers.len() as u32
    }
}

/// The senders to every inbox and each shard's own receiver.
pub type Inboxes<C, R> = (
    Vec<flume::Sender<Envelope<C, R>>>,
    Vec<flume::Receiver<Envelope<C, R>>>,
);

/// Creates the inboxes of `shards` shards: every shard gets the senders to
/// all inboxes (its own included) and its own receiver.
pub fn build<C, R>(shards: u32) -> Inboxes<C, R> {
    (0..shards).map(|_| flume::bounded(SHARD_INBOX_MAX)).unzip()
}
