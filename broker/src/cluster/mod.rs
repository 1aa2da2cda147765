//! The cluster: static membership and the node-to-node links of one shard
//! (issue 14; the design is `docs/replication.md`).
//!
//! | module         | role                                                     |
//! |----------------|----------------------------------------------------------|
//! | [`membership`] | node ids, peers, which hellos are accepted (sans-IO)     |
//! | [`wire`]       | the node link's messages and frames (sans-IO)            |
//! | [`link`]       | accepting and dialling peers, liveness (glommio I/O)     |
//! | [`node_tls`]   | mutual TLS on the links with the cluster CA (`[cluster.tls]`) |
//!
//! The replicas of a partition live on the same shard index on every node,
//! so shard `i` links only to shard `i` of each peer: replication never
//! crosses cores. A [`ClusterNode`] is one shard's end of those links; a
//! single-node broker has none. Like the mesh, this module is transport:
//! it imports no service, front end or shard (the TLS adapter it shares
//! with the front ends is `crate::tls_stream`, below both).

pub mod link;
pub mod membership;
pub mod node_tls;
pub mod wire;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::task::JoinHandle;
use serde::Serialize;
use shoal_config::Config;

pub use membership::{Membership, NodeId, Peer};
use wire::{RaftEnvelope, RaftFrame};

/// Cap on raft message bytes queued for one peer; past it messages are
/// dropped and counted (raft resends what matters).
pub const OUTBOX_BYTES_MAX: usize = 64 << 20;

/// Where inbound raft frames go (the partition service's replication).
pub type RaftSink = Rc<dyn Fn(NodeId, RaftFrame)>;

/// A peer counts as alive while a frame from it arrived within this.
pub const ALIVE_MS_MAX: u64 = 2_000;

/// The state of this shard's connection to one peer (its sending side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Up {
        since: Instant,
    },
    Down,
    /// The peer refused our hello (the reason it gave), or the TLS
    /// handshake failed (the reason, prefixed `TLS:`).
    Refused(String),
}

/// What this shard knows of one peer.
struct PeerLink {
    outbound: RefCell<LinkState>,
    /// When a frame last arrived from the peer on an accepted connection.
    last_heard: Cell<Option<Instant>>,
    /// The peer's native-protocol address, from its hello.
    client_addr: RefCell<Option<String>>,
    /// Raft messages waiting for the dialler, and their bytes.
    outbox: RefCell<Vec<RaftEnvelope>>,
    outbox_bytes: Cell<usize>,
    /// Rung when the outbox gains messages; the dialler waits on it.
    doorbell: LocalSender<()>,
    bell: Rc<LocalReceiver<()>>,
}

/// One shard's end of the node links.
pub struct ClusterNode {
    pub membership: Membership,
    /// Cap on one node-link frame (`limits.frame_bytes_max`).
    pub frame_bytes_max: usize,
    peers: Vec<PeerLink>,
    refused_total: Cell<u64>,
    bad_input_total: Cell<u64>,
    /// Why the last refused or bad inbound connection was closed.
    last_inbound_refusal: RefCell<Option<String>>,
    raft_dropped_total: Cell<u64>,
    sink: RefCell<Option<RaftSink>>,
}

/// One node as `GET /cluster` and `shoal cluster status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node_id: u32,
    /// Its node-link address (shard 0's port).
    pub address: String,
    /// This node (the one answering).
    pub local: bool,
    /// This node, or a peer heard from within [`ALIVE_MS_MAX`].
    pub alive: bool,
    /// This shard's connection to it: `connecting`, `up`, `down`, `refused`.
    pub link: &'static str,
    pub last_heard_ms_ago: Option<u64>,
    /// Why the peer refused our hello, if it did.
    pub refused: Option<String>,
}

/// The cluster as one shard sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub node_id: u32,
    /// The shard whose links these are (every shard keeps its own).
    pub shard: u32,
    pub nodes: Vec<NodeStatus>,
    /// Hellos refused and connections closed for bad input, on this shard
    /// (failed TLS handshakes count here too: a certificate refused or
    /// plaintext on a TLS port as refused, anything else as bad).
    pub hellos_refused: u64,
    pub bad_connections: u64,
    /// The peer address and reason of the last of those.
    pub last_inbound_refusal: Option<String>,
}

impl ClusterNode {
    /// Shard `shard`'s end of the links, or `None` on a single node.
    pub fn new(
        config: &Config,
        shard: u32,
        shard_count: u32,
        client_addr: String,
    ) -> Option<Rc<ClusterNode>> {
        let membership = Membership::from_config(&config.cluster, shard, shard_count, client_addr)?;
        let peers = membership
            .peers
            .iter()
            .map(|_| {
                let (doorbell, bell) = local_channel::new_bounded(1);
                PeerLink {
                    outbound: RefCell::new(LinkState::Connecting),
                    last_heard: Cell::new(None),
                    client_addr: RefCell::new(None),
                    outbox: RefCell::new(Vec::new()),
                    outbox_bytes: Cell::new(0),
                    doorbell,
                    bell: Rc::new(bell),
                }
            })
            .collect();
        Some(Rc::new(ClusterNode {
            membership,
            frame_bytes_max: config.limits.frame_bytes_max,
            peers,
            refused_total: Cell::new(0),
            bad_input_total: Cell::new(0),
            last_inbound_refusal: RefCell::new(None),
            raft_dropped_total: Cell::new(0),
            sink: RefCell::new(None),
        }))
    }

    /// Starts accepting on `listener` and dialling every peer, over mutual
    /// TLS when `tls` is set (`[cluster.tls]`). The links run until the
    /// returned tasks are dropped (shutdown).
    pub fn start(
        self: &Rc<Self>,
        listener: glommio::net::TcpListener,
        tls: Option<Arc<node_tls::NodeTls>>,
    ) -> Vec<JoinHandle<()>> {
        let accept = link::accept_loop(self.clone(), listener, tls.clone());
        let mut tasks = vec![glommio::spawn_local(accept).detach()];
        for index in 0..self.peers.len() {
            let dial = link::dial_loop(self.clone(), index, tls.clone());
            tasks.push(glommio::spawn_local(dial).detach());
        }
        tasks
    }

    fn peer_index(&self, id: NodeId) -> Option<usize> {
        self.membership.peers.iter().position(|p| p.id == id)
    }

    /// Sets where inbound raft frames go.
    pub fn set_raft_sink(&self, sink: RaftSink) {
        *self.sink.borrow_mut() = Some(sink);
    }

    pub(crate) fn deliver_raft(&self, from: NodeId, frame: RaftFrame) {
        let sink = self.sink.borrow().clone();
        if let Some(sink) = sink {
            sink(from, frame);
        }
    }

    /// Queues raft messages for peer `to`; the link sends everything queued
    /// as one frame. Past [`OUTBOX_BYTES_MAX`] they are dropped (counted).
    pub fn send_raft(&self, to: NodeId, messages: Vec<RaftEnvelope>) {
        let Some(i) = self.peer_index(to) else { return };
        let peer = &self.peers[i];
        let bytes: usize = messages
            .iter()
            .map(|m| m.message.len() + m.topic.len() + 16)
            .sum();
        if peer.outbox_bytes.get() + bytes > OUTBOX_BYTES_MAX {
            self.raft_dropped_total
                .set(self.raft_dropped_total.get() + messages.len() as u64);
            return;
        }
        peer.outbox_bytes.set(peer.outbox_bytes.get() + bytes);
        peer.outbox.borrow_mut().extend(messages);
        let _ = peer.doorbell.try_send(());
    }

    /// Takes up to about `bytes_max` of queued raft messages for peer `index`.
    pub(crate) fn take_outbox(&self, index: usize, bytes_max: usize) -> Vec<RaftEnvelope> {
        let peer = &self.peers[index];
        let mut outbox = peer.outbox.borrow_mut();
        let mut size = 0;
        let n = outbox
            .iter()
            .take_while(|m| {
                size += m.message.len() + m.topic.len() + 16;
                size <= bytes_max
            })
            .count()
            .max(1)
            .min(outbox.len());
        let taken: Vec<RaftEnvelope> = outbox.drain(..n).collect();
        let taken_bytes: usize = taken.iter().map(|m| m.message.len() + m.topic.len() + 16).sum();
        peer.outbox_bytes
            .set(peer.outbox_bytes.get().saturating_sub(taken_bytes));
        taken
    }

    /// Drops what is queued for a peer whose link went down (raft resends).
    pub(crate) fn clear_outbox(&self, index: usize) {
        self.peers[index].outbox.borrow_mut().clear();
        self.peers[index].outbox_bytes.set(0);
    }

    pub(crate) fn bell(&self, index: usize) -> Rc<LocalReceiver<()>> {
        self.peers[index].bell.clone()
    }

    pub(crate) fn set_client_addr(&self, id: NodeId, addr: String) {
        if let Some(i) = self.peer_index(id) {
            *self.peers[i].client_addr.borrow_mut() = Some(addr);
        }
    }

    /// A node's native-protocol address: this node's, or a peer's as its
    /// hello said.
    pub fn client_addr(&self, id: NodeId) -> Option<String> {
        if id == self.membership.me {
            return Some(self.membership.client_addr.clone());
        }
        self.peer_index(id)
            .and_then(|i| self.peers[i].client_addr.borrow().clone())
    }

    /// Raft messages dropped because a peer's outbox was full.
    pub fn raft_dropped(&self) -> u64 {
        self.raft_dropped_total.get()
    }

    pub(crate) fn heard_from(&self, id: NodeId) {
        if let Some(i) = self.peer_index(id) {
            self.peers[i].last_heard.set(Some(Instant::now()));
        }
    }

    pub(crate) fn set_link(&self, index: usize, state: LinkState) {
        *self.peers[index].outbound.borrow_mut() = state;
    }

    pub(crate) fn link_refused(&self, index: usize) -> bool {
        matches!(*self.peers[index].outbound.borrow(), LinkState::Refused(_))
    }

    pub(crate) fn link_was_up(&self, index: usize) -> bool {
        matches!(*self.peers[index].outbound.borrow(), LinkState::Up { .. })
    }

    /// Counts an inbound connection refused (hello or TLS) and keeps why.
    pub(crate) fn count_refused(&self, why: String) {
        self.refused_total.set(self.refused_total.get() + 1);
        *self.last_inbound_refusal.borrow_mut() = Some(why);
    }

    /// Counts an inbound connection closed for bad input and keeps why.
    pub(crate) fn count_bad_input(&self, why: String) {
        self.bad_input_total.set(self.bad_input_total.get() + 1);
        *self.last_inbound_refusal.borrow_mut() = Some(why);
    }

    /// Whether `id` (a peer) was heard from within [`ALIVE_MS_MAX`].
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.peer_index(id)
            .and_then(|i| self.peers[i].last_heard.get())
            .is_some_and(|t| t.elapsed().as_millis() as u64 <= ALIVE_MS_MAX)
    }

    /// Nodes, liveness and link states as this shard sees them.
    pub fn status(&self) -> ClusterStatus {
        let m = &self.membership;
        let mut nodes = vec![NodeStatus {
            node_id: m.me.0,
            address: m.listen.to_string(),
            local: true,
            alive: true,
            link: "local",
            last_heard_ms_ago: Some(0),
            refused: None,
        }];
        for (peer, link) in m.peers.iter().zip(&self.peers) {
            let state = link.outbound.borrow();
            nodes.push(NodeStatus {
                node_id: peer.id.0,
                address: format!("{}:{}", peer.addr.host, peer.addr.port),
                local: false,
                alive: self.is_alive(peer.id),
                link: match &*state {
                    LinkState::Connecting => "connecting",
                    LinkState::Up { .. } => "up",
                    LinkState::Down => "down",
                    LinkState::Refused(_) => "refused",
                },
                last_heard_ms_ago: link.last_heard.get().map(|t| t.elapsed().as_millis() as u64),
                refused: match &*state {
                    LinkState::Refused(r) => Some(r.clone()),
                    _ => None,
                },
            });
        }
        nodes.sort_by_key(|n| n.node_id);
        ClusterStatus {
            cluster_id: m.cluster_id.clone(),
            node_id: m.me.0,
            shard: m.shard,
            nodes,
            hellos_refused: self.refused_total.get(),
            bad_connections: self.bad_input_total.get(),
            last_inbound_refusal: self.last_inbound_refusal.borrow().clone(),
        }
    }
}
