//! Partition leaders for the native `Leaders` API: the raft leader of each
//! replicated partition as its owning shard's replica knows it, and the
//! native address of every node (`docs/replication.md`, client redirect).
//!
//! The leader lives in the raft group, which the owning shard holds, so a
//! topic's partitions are asked of their owners, one mesh call per owner
//! shard (none on a single-shard node). The group state topic's partition
//! `i` is held by shard `i`: its leader is where that shard's groups are
//! coordinated (`delivery::replicated_state`).

use std::collections::BTreeMap;
use std::rc::Rc;

use shoal_protocol::messages::leaders::{NodeAddress, PartitionLeader};

use super::state::Shard;
use crate::cluster::NodeId;
use crate::delivery::replicated_state::GROUP_STATE_TOPIC;
use crate::ids::{PartitionId, ShardId};
use crate::partition::replication::placement;
use crate::partition::Replica;

impl Shard {
    /// The leaders of every partition of `topic` (partition order), or
    /// `None` when the topic does not exist. On a cluster the group state
    /// topic exists too: partition `i` is shard `i`'s.
    pub async fn partition_leaders(self: &Rc<Self>, topic: &str) -> Option<Vec<PartitionLeader>> {
        if topic == GROUP_STATE_TOPIC && self.cluster().is_some() {
            return Some(self.group_state_leaders().await);
        }
        let partitions = self.topic(topic)?.config.partitions;
        let mut by_owner: BTreeMap<ShardId, Vec<u32>> = BTreeMap::new();
        for p in 0..partitions {
            by_owner
                .entry(self.owner(topic, PartitionId(p)))
                .or_default()
                .push(p);
        }
        let mut out = Vec::with_capacity(partitions as usize);
        for (owner, mine) in by_owner {
            let name = topic.to_string();
            let asked = mine.clone();
            let found = self
                .submit_to(owner, move |s| async move { s.local_leaders(&name, &asked) })
                .await;
            // A stopped owner shard: report its partitions without a leader,
            // and the client finds out on its next attempt.
            out.extend(found.unwrap_or_else(|_| mine.iter().map(|&p| unreplicated(p)).collect()));
        }
        out.sort_by_key(|l| l.partition);
        Some(out)
    }

    /// The leaders of `partitions` of `topic`, which this shard owns.
    fn local_leaders(&self, topic: &str, partitions: &[u32]) -> Vec<PartitionLeader> {
        partitions
            .iter()
            .map(|&p| {
                let replica = self.partitions().replica(topic, PartitionId(p)).ok();
                self.leader_of(replica.as_ref(), p)
            })
            .collect()
    }

    /// The leader of every shard's group state partition, one per shard
    /// (one mesh call per other shard).
    async fn group_state_leaders(self: &Rc<Self>) -> Vec<PartitionLeader> {
        let mut out = Vec::with_capacity(self.count() as usize);
        for shard in (0..self.count()).map(ShardId) {
            let found = self
                .submit_to(shard, move |s| async move {
                    let replica = s.partitions().internal(GROUP_STATE_TOPIC);
                    s.leader_of(replica.as_ref(), s.id().get())
                })
                .await;
            out.push(found.unwrap_or_else(|_| unreplicated(shard.get())));
        }
        out
    }

    /// What this shard's `replica` (partition `p`) knows of its leader.
    fn leader_of(&self, replica: Option<&Rc<Replica>>, p: u32) -> PartitionLeader {
        let nodes = self.partitions().replication().map(|r| r.nodes());
        let (Some(replica), Some(nodes)) = (replica, nodes) else {
            return unreplicated(p);
        };
        let Some(group) = replica.raft() else {
            return unreplicated(p);
        };
        let topic = replica.topic();
        PartitionLeader {
            partition: p,
            replicas: placement(&nodes, &topic.name, p, topic.config.replication_factor)
                .into_iter()
                .filter_map(|n| u32::try_from(n).ok())
                .collect(),
            leader: u32::try_from(group.leader()).unwrap_or(0),
            term: group.term(),
        }
    }

    /// This node's id (0 on a single node) and every node's native address.
    pub fn node_addresses(&self) -> (u32, Vec<NodeAddress>) {
        let Some(cluster) = self.cluster() else {
            return (0, Vec::new());
        };
        let m = &cluster.membership;
        let mut ids: Vec<NodeId> = m.peers.iter().map(|p| p.id).collect();
        ids.push(m.me);
        ids.sort_unstable_by_key(|id| id.0);
        let nodes = ids
            .into_iter()
            .map(|id| NodeAddress {
                node_id: id.0,
                addr: cluster.client_addr(id).unwrap_or_default(),
            })
            .collect();
        (m.me.0, nodes)
    }
}

fn unreplicated(partition: u32) -> PartitionLeader {
    PartitionLeader {
        partition,
        replicas: Vec::new(),
        leader: 0,
        term: 0,
    }
}
