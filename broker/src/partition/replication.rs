//! Replication on one shard: the raft groups of the replicated partitions
//! this shard owns, driven by one loop (no task per group), talking to the
//! same shard index of every peer through the node links (`cluster`).
//!
//! The loop wakes on a tick ([`TICK_MS`]), when a proposal or a message
//! arrived, or when a group's write finished; it runs a round of every
//! group with work (`raft_group`; the groups' rounds run concurrently, each
//! group's one at a time; a round never waits for a write, each group's
//! writer persists in the background), and hands each group's outgoing
//! messages to the node links as they come (a leader's appends leave
//! before its own fdatasync starts, so leader and followers sync in
//! parallel); the link sends everything queued for one peer as one frame.
//!
//! Besides raft messages, the envelopes of the metadata topic's
//! [`FORWARD_PARTITION`] carry proposals a node forwards to the metadata
//! group's leader (`shard::cluster_metadata`); they go to the forward sink.
//!
//! Leader balancing: every [`BALANCE_INTERVAL_MS`] the loop hands up to
//! [`BALANCE_MOVES_MAX`] leaderships this node holds to their preferred
//! replica (the first of the placement), when that replica is alive and
//! has every entry; so a node that returns after a restart or a failure
//! takes its leaderships back, paced. [`Replication::rebalance`] does the
//! same on demand (`POST /cluster/rebalance-leaders`).
//!
//! Placement is deterministic (interim, `docs/replication.md`): the
//! replicas of partition `p` of topic `t` are `rf` consecutive nodes of the
//! sorted node list, starting at `(murmur2(t) + p) % nodes`, on the same
//! shard index everywhere; raft ids are node ids.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use protobuf::Message as _;
use raft::eraftpb::Message;

use super::raft_group::{Outbox, RaftGroup, TICK_MS};
use crate::cluster::wire::{RaftEnvelope, RaftFrame};
use crate::cluster::{ClusterNode, NodeId};
use crate::metadata::cluster_log::{FORWARD_PARTITION, METADATA_TOPIC};
use crate::runtime::sleep;

/// A replicated partition's key on the node links.
type GroupKey = (String, u32);

/// Where proposals forwarded to this node's metadata leader go: the
/// sending node and the record batch.
pub type ForwardSink = Rc<dyn Fn(NodeId, Vec<u8>)>;

/// The replicas of one partition: node ids, sorted.
pub fn placement(nodes: &[u32], topic: &str, partition: u32, rf: u32) -> Vec<u64> {
    let mut sorted = nodes.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let rf = (rf as usize).min(n);
    let start = shoal_protocol::partitioner::shard_for_partition(topic, partition, n as u32) as usize;
    let mut out: Vec<u64> = (0..rf).map(|i| u64::from(sorted[(start + i) % n])).collect();
    out.sort_unstable();
    out
}

/// The replica that should lead partition `partition` of `topic`: the
/// first of its placement (`(murmur2(topic) + partition) % nodes` of the
/// sorted node list), so leaders spread over the nodes like the replicas.
pub fn preferred_leader(nodes: &[u32], topic: &str, partition: u32) -> u64 {
    let mut sorted = nodes.to_vec();
    sorted.sort_unstable();
    let start =
        shoal_protocol::partitioner::shard_for_partition(topic, partition, sorted.len() as u32) as usize;
    u64::from(sorted[start])
}

/// Leader balancing: how often a shard looks for leaderships to hand back
/// to their preferred replicas, and how many it moves per look (paced, so
/// a returning node takes its leaderships back a few at a time).
pub const BALANCE_INTERVAL_MS: u64 = 5_000;
pub const BALANCE_MOVES_MAX: usize = 4;

/// A leadership this node holds that belongs to another replica.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeaderMove {
    pub topic: String,
    pub partition: u32,
    pub from: u64,
    pub to: u64,
    /// The transfer was asked for (not a dry run, and the preferred
    /// replica is alive and has every entry).
    pub started: bool,
    /// Why not, when it was not.
    pub waiting: Option<&'static str>,
}

/// One replicated partition as `GET /cluster` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupStatus {
    pub topic: String,
    pub partition: u32,
    /// `leader` or `follower` (candidates count as followers).
    pub role: &'static str,
    /// The leader this replica knows (0: none).
    pub leader: u64,
    /// The replica that should lead (leader balancing moves it back there).
    pub preferred_leader: u64,
    pub term: u64,
    /// The last raft index persisted here, and the commit index.
    pub last_index: u64,
    pub commit_index: u64,
    pub fenced: Option<String>,
}

/// One shard's replication driver.
pub struct Replication {
    cluster: Rc<ClusterNode>,
    groups: RefCell<HashMap<GroupKey, Rc<RaftGroup>>>,
    /// This driver, for the groups' outboxes.
    me: std::rc::Weak<Replication>,
    doorbell: LocalSender<()>,
    bell: LocalReceiver<()>,
    stopped: Cell<bool>,
    forward_sink: RefCell<Option<ForwardSink>>,
}

impl Replication {
    /// The driver of this shard; inbound raft frames are routed to it.
    pub fn new(cluster: Rc<ClusterNode>) -> Rc<Replication> {
        let (doorbell, bell) = local_channel::new_bounded(1);
        let me = Rc::new_cyclic(|me| Replication {
            cluster: cluster.clone(),
            groups: RefCell::new(HashMap::new()),
            me: me.clone(),
            doorbell,
            bell,
            stopped: Cell::new(false),
            forward_sink: RefCell::new(None),
        });
        let weak = Rc::downgrade(&me);
        cluster.set_raft_sink(Rc::new(move |from: NodeId, frame: RaftFrame| {
            if let Some(me) = weak.upgrade() {
                me.deliver(from, frame);
            }
        }));
        me
    }

    /// Every node of the cluster (this one included).
    pub fn nodes(&self) -> Vec<u32> {
        let m = &self.cluster.membership;
        let mut nodes: Vec<u32> = m.peers.iter().map(|p| p.id.0).collect();
        nodes.push(m.me.0);
        nodes.sort_unstable();
        nodes
    }

    pub fn me(&self) -> u64 {
        u64::from(self.cluster.membership.me.0)
    }

    pub fn cluster(&self) -> &Rc<ClusterNode> {
        &self.cluster
    }

    pub fn add(&self, topic: &str, partition: u32, group: Rc<RaftGroup>) {
        group.set_outbox(Rc::new(GroupOutbox {
            replication: self.me.clone(),
            topic: topic.to_string(),
            partition,
        }));
        self.groups
            .borrow_mut()
            .insert((topic.to_string(), partition), group);
        self.wake();
    }

    pub fn remove_topic(&self, topic: &str) {
        self.groups.borrow_mut().retain(|(t, _), _| t != topic);
    }

    /// Every replicated partition on this shard, sorted.
    pub fn status(&self) -> Vec<GroupStatus> {
        let nodes = self.nodes();
        let mut out: Vec<GroupStatus> = self
            .groups
            .borrow()
            .iter()
            .map(|((topic, partition), g)| {
                let (last_index, commit_index) = g.indexes();
                GroupStatus {
                    topic: topic.clone(),
                    partition: *partition,
                    role: if g.is_leader() { "leader" } else { "follower" },
                    leader: g.leader(),
                    preferred_leader: preferred_leader(&nodes, topic, *partition),
                    term: g.term(),
                    last_index,
                    commit_index,
                    fenced: g.fenced(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }

    /// The leaderships this node holds whose preferred replica is another
    /// one; unless `dry_run`, asks up to `moves_max` of them to transfer
    /// where the preferred replica is alive and has every entry.
    pub fn rebalance(&self, dry_run: bool, moves_max: usize) -> Vec<LeaderMove> {
        let nodes = self.nodes();
        let me = self.me();
        let mut moves: Vec<LeaderMove> = Vec::new();
        let mut started = 0;
        let groups = self.groups.borrow();
        let mut keys: Vec<&GroupKey> = groups.keys().collect();
        keys.sort();
        for key in keys {
            let group = &groups[key];
            let to = preferred_leader(&nodes, &key.0, key.1);
            if !group.is_leader() || to == me {
                continue;
            }
            let waiting = if !u32::try_from(to).is_ok_and(|id| self.cluster.is_alive(NodeId(id))) {
                Some("the preferred replica is not alive")
            } else if !group.is_caught_up(to) {
                Some("the preferred replica is catching up")
            } else if started >= moves_max {
                Some("paced: moved in a later pass")
            } else {
                None
            };
            let start = waiting.is_none() && !dry_run;
            if start {
                group.ask_transfer_to(to);
                started += 1;
            }
            moves.push(LeaderMove {
                topic: key.0.clone(),
                partition: key.1,
                from: me,
                to,
                started: start,
                waiting,
            });
        }
        drop(groups);
        if started > 0 {
            self.wake();
        }
        moves
    }

    /// Wakes the loop (a proposal was queued).
    pub fn wake(&self) {
        let _ = self.doorbell.try_send(());
    }

    /// Sets where forwarded metadata proposals go (shard 0 of a cluster).
    pub fn set_forward_sink(&self, sink: ForwardSink) {
        *self.forward_sink.borrow_mut() = Some(sink);
    }

    /// Sends a metadata proposal (a record batch) to node `to`, the
    /// metadata group's leader, over the node link.
    pub fn forward(&self, to: NodeId, batch: Vec<u8>) {
        self.cluster.send_raft(
            to,
            vec![RaftEnvelope {
                topic: METADATA_TOPIC.to_string(),
                partition: FORWARD_PARTITION,
                message: batch,
            }],
        );
    }

    fn deliver(&self, from: NodeId, frame: RaftFrame) {
        let groups = self.groups.borrow();
        for env in frame.messages {
            if env.partition == FORWARD_PARTITION && env.topic == METADATA_TOPIC {
                let sink = self.forward_sink.borrow().clone();
                if let Some(sink) = sink {
                    sink(from, env.message);
                }
                continue;
            }
            let Some(group) = groups.get(&(env.topic.clone(), env.partition)) else {
                continue;
            };
            match Message::parse_from_bytes(&env.message) {
                Ok(m) if m.from == u64::from(from.0) => group.deliver(m),
                Ok(m) => {
                    tracing::warn!(from = %from, claimed = m.from, "raft message with a forged sender dropped")
                }
                Err(e) => tracing::warn!(from = %from, error = %e, "undecodable raft message dropped"),
            }
        }
        drop(groups);
        self.wake();
    }

    /// Stops the loop after its current round (shutdown).
    pub fn stop(&self) {
        self.stopped.set(true);
        self.wake();
    }

    /// The loop; runs until [`Replication::stop`].
    pub async fn run(self: Rc<Self>) {
        let mut last_tick = Instant::now();
        let mut last_balance = Instant::now();
        while !self.stopped.get() {
            if last_balance.elapsed() >= Duration::from_millis(BALANCE_INTERVAL_MS) {
                last_balance = Instant::now();
                let moved = self.rebalance(false, BALANCE_MOVES_MAX);
                let started = moved.iter().filter(|m| m.started).count();
                if started > 0 {
                    tracing::info!(
                        started,
                        "leader balancing: leaderships handed to their preferred replicas"
                    );
                }
            }
            let until_tick = Duration::from_millis(TICK_MS).saturating_sub(last_tick.elapsed());
            let rung = async {
                let _ = self.bell.recv().await;
            };
            futures_lite::future::or(rung, sleep(until_tick)).await;
            let tick = last_tick.elapsed() >= Duration::from_millis(TICK_MS);
            if tick {
                last_tick = Instant::now();
            }
            let groups: Vec<Rc<RaftGroup>> = self
                .groups
                .borrow()
                .values()
                .filter(|group| tick || group.has_work())
                .cloned()
                .collect();
            // The groups' rounds run concurrently: a round waits for no
            // write (each group's writer runs on its own), but one may read
            // entries for a follower from the log or install a snapshot,
            // and the others need not wait for that (a round of one group
            // still never overlaps its next: all are awaited).
            let rounds: Vec<_> = groups
                .into_iter()
                .map(|group| glommio::spawn_local(async move { group.round(tick).await }))
                .collect();
            for round in rounds {
                round.await;
            }
        }
    }

    /// Hands messages to the node links, one batch per destination.
    fn send(&self, topic: &str, partition: u32, msgs: Vec<Message>) {
        let mut by_peer: HashMap<u64, Vec<RaftEnvelope>> = HashMap::new();
        for m in msgs {
            let Ok(bytes) = m.write_to_bytes() else { continue };
            by_peer.entry(m.to).or_default().push(RaftEnvelope {
                topic: topic.to_string(),
                partition,
                message: bytes,
            });
        }
        for (to, envs) in by_peer {
            let Ok(to) = u32::try_from(to) else { continue };
            self.cluster.send_raft(NodeId(to), envs);
        }
    }
}

/// A group's way out, set when the group is added: its messages go to the
/// node links, its writer's requests for a round ring this shard's loop
/// (nothing once the driver is gone).
struct GroupOutbox {
    replication: std::rc::Weak<Replication>,
    topic: String,
    partition: u32,
}

impl Outbox for GroupOutbox {
    fn send(&self, messages: Vec<Message>) {
        if let Some(replication) = self.replication.upgrade().filter(|_| !messages.is_empty()) {
            replication.send(&self.topic, self.partition, messages);
        }
    }

    fn wake(&self) {
        if let Some(replication) = self.replication.upgrade() {
            replication.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every partition gets `rf` distinct nodes; with rf = nodes, all.
    #[test]
    fn placement_is_deterministic_and_distinct() {
        let nodes = [3, 1, 2];
        assert_eq!(placement(&nodes, "t", 0, 3), vec![1, 2, 3]);
        for p in 0..20 {
            let r = placement(&nodes, "orders", p, 2);
            assert_eq!(r.len(), 2);
            assert_ne!(r[0], r[1]);
            assert_eq!(r, placement(&[1, 2, 3], "orders", p, 2));
        }
        assert_eq!(placement(&nodes, "t", 0, 5).len(), 3);
    }
}
