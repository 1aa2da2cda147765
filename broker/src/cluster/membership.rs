//! Static membership: who this node is, who its peers are, and which
//! hellos it accepts (sans-IO).

use shoal_config::{ClusterConfig, PeerAddr};

use super::wire::Hello;

/// A node of the cluster (`cluster.node_id`, > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A peer node and where its shard 0 listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: NodeId,
    pub addr: PeerAddr,
}

/// This node's view of the cluster, as one shard holds it.
#[derive(Debug, Clone)]
pub struct Membership {
    pub me: NodeId,
    pub cluster_id: String,
    /// This node's node-link address (shard 0's port).
    pub listen: std::net::SocketAddr,
    pub shard: u32,
    pub shard_count: u32,
    pub peers: Vec<Peer>,
    /// This node's native-protocol address (sent in the hello).
    pub client_addr: String,
}

impl Membership {
    /// The membership of shard `shard`, or `None` for a single node. The
    /// config was validated (`Config::validate`) before the broker started.
    pub fn from_config(
        config: &ClusterConfig,
        shard: u32,
        shard_count: u32,
        client_addr: String,
    ) -> Option<Membership> {
        if !config.enabled() {
            return None;
        }
        let peers = config
            .peer_addrs()
            .expect("peers were validated at start")
            .into_iter()
            .map(|addr| Peer {
                id: NodeId(addr.node_id),
                addr,
            })
            .collect();
        Some(Membership {
            me: NodeId(config.node_id),
            cluster_id: config.cluster_id.clone(),
            listen: config.node_listen.expect("node_listen was validated at start"),
            shard,
            shard_count,
            peers,
            client_addr,
        })
    }

    /// The hello this shard sends when it dials a peer.
    pub fn hello(&self) -> Hello {
        Hello {
            cluster_id: self.cluster_id.clone(),
            node_id: self.me.0,
            shard: self.shard,
            shard_count: self.shard_count,
            client_addr: self.client_addr.clone(),
        }
    }

    /// Whether a peer's hello is accepted on this shard; the reason when not.
    pub fn check_hello(&self, hello: &Hello) -> Result<NodeId, String> {
        if hello.cluster_id != self.cluster_id {
            return Err(format!(
                "cluster id {:?} is not this cluster's ({:?})",
                hello.cluster_id, self.cluster_id
            ));
        }
        let id = NodeId(hello.node_id);
        if !self.peers.iter().any(|p| p.id == id) {
            return Err(format!("node {id} is not a configured peer of node {}", self.me));
        }
        if hello.shard_count != self.shard_count {
            return Err(format!(
                "node {id} runs {} shards, this node {} (every node must run the same count)",
                hello.shard_count, self.shard_count
            ));
        }
        if hello.shard != self.shard {
            return Err(format!(
                "node {id} shard {} dialled shard {} (links join equal shard indexes)",
                hello.shard, self.shard
            ));
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership() -> Membership {
        let config = ClusterConfig {
            node_id: 1,
            cluster_id: "c1".into(),
            node_listen: Some("127.0.0.1:9500".parse().unwrap()),
            peers: vec!["2@127.0.0.1:9600".into()],
            tls: None,
        };
        Membership::from_config(&config, 0, 1, "127.0.0.1:9400".into()).unwrap()
    }

    /// A configured peer of the same cluster is accepted; another cluster,
    /// an unknown node, another shard count or index is refused, named.
    #[test]
    fn hello_rules() {
        let m = membership();
        let good = Hello {
            cluster_id: "c1".into(),
            node_id: 2,
            shard: 0,
            shard_count: 1,
            client_addr: String::new(),
        };
        assert_eq!(m.check_hello(&good), Ok(NodeId(2)));
        let refused = |h: Hello| m.check_hello(&h).unwrap_err();
        assert!(refused(Hello {
            cluster_id: "c2".into(),
            ..good.clone()
        })
        .contains("cluster id"));
        assert!(refused(Hello {
            node_id: 9,
            ..good.clone()
        })
        .contains("not a configured peer"));
        assert!(refused(Hello {
            node_id: 1,
            ..good.clone()
        })
        .contains("not a configured peer"));
        assert!(refused(Hello {
            shard_count: 2,
            ..good.clone()
        })
        .contains("shards"));
        assert!(refused(Hello { shard: 1, ..good }).contains("dialled shard"));
    }

    #[test]
    fn single_node_has_no_membership() {
        assert!(Membership::from_config(&ClusterConfig::default(), 0, 1, String::new()).is_none());
    }
}
