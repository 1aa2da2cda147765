//! The `[cluster]` section: static membership of a replicated cluster
//! (issue 14, `docs/replication.md`).
//!
//! Left empty (the default) the broker is a single node exactly as
//! before: no node listener, no peers. Setting any membership key makes it
//! a cluster member, and then `node_id`, `cluster_id` and `node_listen` are
//! all required (`[cluster.tls]` alone does not: it is unused on a single
//! node, and a file may carry it while flags give the membership). Shard `i` listens for peers on `node_listen.port + i` and
//! dials `peer.port + i`: the replicas of a partition live on the same
//! shard index on every node, so every node must run the same number of
//! shards (the link's hello checks it).
//!
//! `[cluster.tls]` makes every node link mutual TLS (TLS 1.3) with a
//! cluster CA:
//!
//! ```toml
//! [cluster.tls]
//! cert_file = "/etc/shoal/tls/node1.pem"   # chain, leaf first, signed by the cluster CA
//! key_file = "/etc/shoal/tls/node1.key"
//! ca_file = "/etc/shoal/tls/cluster-ca.pem"
//! ```
//!
//! The dialling node presents its certificate and checks the peer's
//! against the cluster CA and the peer's host as written in `peers` (an
//! IP address or a DNS name); the accepting node requires a certificate
//! signed by the cluster CA. So a node's certificate names (SAN) the host
//! its peers dial it by and is usable for both server and client
//! authentication (both extended key usages, or none). Every node of a
//! cluster has the section or none does: a node with it and one without
//! refuse each other's links.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Cap on the nodes of one cluster (this node included).
pub const CLUSTER_NODES_MAX: usize = 64;
/// Cap on the length of a cluster id.
pub const CLUSTER_ID_LEN_MAX: usize = 128;

/// Static cluster membership.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id, unique in the cluster and > 0; 0 = not a cluster.
    pub node_id: u32,
    /// Every node of one cluster has the same id; a peer with another is
    /// refused (two clusters wired together by mistake never mix data).
    pub cluster_id: String,
    /// Where this node listens for its peers; shard `i` on port + i.
    pub node_listen: Option<SocketAddr>,
    /// The other nodes, as `id@host:port` (their `node_listen`).
    pub peers: Vec<String>,
    /// Mutual TLS on every node link; plaintext links when absent.
    pub tls: Option<NodeTlsConfig>,
}

/// `[cluster.tls]`: this node's certificate and the cluster CA (PEM files,
/// re-read on SIGHUP with the listeners' certificates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTlsConfig {
    /// This node's certificate chain, leaf first, signed by the cluster CA
    /// and naming the host the peers dial this node by.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The cluster CA: a peer's certificate must chain to it, in both
    /// directions. Sign only node certificates with it: any holder of one
    /// can open node links.
    pub ca_file: PathBuf,
}

/// One peer, parsed from `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    pub node_id: u32,
    /// `host:port` as given (a name is resolved when dialling).
    pub host: String,
    pub port: u16,
}

impl PeerAddr {
    /// Parses `id@host:port`.
    pub fn parse(s: &str) -> Result<PeerAddr, String> {
        let (id, addr) = s
            .split_once('@')
            .ok_or_else(|| format!("peer {s:?} is not id@host:port"))?;
        let node_id: u32 = id
            .parse()
            .map_err(|_| format!("peer {s:?}: node id {id:?} is not a number"))?;
        if node_id == 0 {
            return Err(format!("peer {s:?}: node id 0 is reserved"));
        }
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("peer {s:?} has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("peer {s:?}: port {port:?} is not a port number"))?;
        if host.is_empty() || port == 0 {
            return Err(format!("peer {s:?} needs a host and a non-zero port"));
        }
        Ok(PeerAddr {
            node_id,
            host: host.to_string(),
            port,
        })
    }

    /// The name a node-link TLS handshake checks this peer's certificate
    /// against: the host as given, an IPv6 address without its brackets.
    pub fn tls_name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// `host:port+shard`: where shard `shard` of this peer listens.
    pub fn shard_addr(&self, shard: u32) -> String {
        format!("{}:{}", self.host, u32::from(self.port) + shard)
    }
}

impl ClusterConfig {
    /// The node-link address when this node is in a cluster and binds a
    /// non-loopback address without `[cluster.tls]`: serving plaintext node
    /// links there needs `security.insecure = true`.
    pub fn exposed_node_listen(&self) -> Option<SocketAddr> {
        self.node_listen
            .filter(|a| self.node_id > 0 && self.tls.is_none() && !a.ip().is_loopback())
    }

    /// Whether this node is a cluster member at all: any membership key
    /// set. `[cluster.tls]` alone is not one (a file may carry it while the
    /// flags give the membership); a single node has no links to secure.
    pub fn enabled(&self) -> bool {
        let membership = ClusterConfig {
            tls: None,
            ..self.clone()
        };
        membership != ClusterConfig::default()
    }

    /// The peers, parsed (valid once [`ClusterConfig::validate`] passed).
    pub fn peer_addrs(&self) -> Result<Vec<PeerAddr>, String> {
        self.peers.iter().map(|p| PeerAddr::parse(p)).collect()
    }

    /// Checks the section; returns the key at fault and why.
    pub fn validate(&self, shards: u32) -> Result<(), (&'static str, String)> {
        if !self.enabled() {
            return Ok(());
        }
        if self.node_id == 0 {
            return Err(("cluster.node_id", "must be > 0 in a cluster".into()));
        }
        if self.cluster_id.is_empty() || self.cluster_id.len() > CLUSTER_ID_LEN_MAX {
            return Err((
                "cluster.cluster_id",
                format!("must be 1 to {CLUSTER_ID_LEN_MAX} bytes in a cluster"),
            ));
        }
        let Some(listen) = self.node_listen else {
            return Err(("cluster.node_listen", "is required in a cluster".into()));
        };
        if listen.port() == 0 || u32::from(listen.port()) + shards > 65_536 {
            return Err((
                "cluster.node_listen",
                format!("needs a fixed port with room for {shards} shard ports after it"),
            ));
        }
        let peers = self.peer_addrs().map_err(|e| ("cluster.peers", e))?;
        if peers.len() + 1 > CLUSTER_NODES_MAX {
            return Err(("cluster.peers", format!("at most {CLUSTER_NODES_MAX} nodes")));
        }
        let mut ids: Vec<u32> = peers.iter().map(|p| p.node_id).collect();
        ids.push(self.node_id);
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(("cluster.peers", format!("node id {} appears twice", w[0])));
        }
        match &self.tls {
            Some(tls) => tls.validate(&peers),
            None => Ok(()),
        }
    }
}

impl NodeTlsConfig {
    /// Every file is named, and every peer's host can be checked against
    /// a certificate (an IP address or a DNS name).
    fn validate(&self, peers: &[PeerAddr]) -> Result<(), (&'static str, String)> {
        for (key, path) in [
            ("cluster.tls.cert_file", &self.cert_file),
            ("cluster.tls.key_file", &self.key_file),
            ("cluster.tls.ca_file", &self.ca_file),
        ] {
            if path.as_os_str().is_empty() {
                return Err((key, "must name a PEM file".into()));
            }
        }
        for peer in peers {
            if rustls_pki_types::ServerName::try_from(peer.tls_name()).is_err() {
                return Err((
                    "cluster.peers",
                    format!(
                        "peer {}: host {:?} is neither an IP address nor a DNS name, so cluster.tls \
                         cannot check its certificate against it",
                        peer.node_id, peer.host
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> ClusterConfig {
        ClusterConfig {
            node_id: 1,
            cluster_id: "c1".into(),
            node_listen: Some("127.0.0.1:9500".parse().unwrap()),
            peers: vec!["2@127.0.0.1:9600".into(), "3@localhost:9700".into()],
            tls: None,
        }
    }

    fn node_tls() -> NodeTlsConfig {
        NodeTlsConfig {
            cert_file: "/etc/shoal/node1.pem".into(),
            key_file: "/etc/shoal/node1.key".into(),
            ca_file: "/etc/shoal/cluster-ca.pem".into(),
        }
    }

    /// `[cluster.tls]` validates with IP, DNS and bracketed IPv6 peers;
    /// an empty path or a peer host no certificate can name is refused
    /// with the key at fault.
    #[test]
    fn node_tls_rules() {
        let with_tls = |peers: Vec<&str>, tls: NodeTlsConfig| ClusterConfig {
            peers: peers.into_iter().map(String::from).collect(),
            tls: Some(tls),
            ..member()
        };
        let ok = with_tls(
            vec!["2@127.0.0.1:9600", "3@node3.example:9700", "4@[::1]:9800"],
            node_tls(),
        );
        assert_eq!(ok.validate(1), Ok(()));
        assert_eq!(ok.peer_addrs().unwrap()[2].tls_name(), "::1");
        let key = |c: ClusterConfig| c.validate(1).unwrap_err().0;
        let no_ca = NodeTlsConfig {
            ca_file: PathBuf::new(),
            ..node_tls()
        };
        assert_eq!(
            key(with_tls(vec!["2@127.0.0.1:9600"], no_ca)),
            "cluster.tls.ca_file"
        );
        let no_cert = NodeTlsConfig {
            cert_file: PathBuf::new(),
            ..node_tls()
        };
        assert_eq!(
            key(with_tls(vec!["2@127.0.0.1:9600"], no_cert)),
            "cluster.tls.cert_file"
        );
        let bad_host = with_tls(vec!["2@bad_host!:9600"], node_tls());
        let (k, why) = bad_host.validate(1).unwrap_err();
        assert_eq!(k, "cluster.peers");
        assert!(why.contains("bad_host!"), "{why}");
        let alone = ClusterConfig {
            tls: Some(node_tls()),
            ..ClusterConfig::default()
        };
        assert!(
            !alone.enabled(),
            "[cluster.tls] alone (membership from flags) is no member"
        );
        assert_eq!(alone.validate(1), Ok(()));
    }

    /// A non-loopback node address is exposed (needs `security.insecure`)
    /// only without `[cluster.tls]`.
    #[test]
    fn node_tls_protects_an_exposed_node_listen() {
        let exposed = ClusterConfig {
            node_listen: Some("0.0.0.0:9500".parse().unwrap()),
            ..member()
        };
        assert!(exposed.exposed_node_listen().is_some());
        let protected = ClusterConfig {
            tls: Some(node_tls()),
            ..exposed
        };
        assert_eq!(protected.exposed_node_listen(), None);
        assert_eq!(member().exposed_node_listen(), None, "loopback");
    }

    /// The empty section is a single node; a full one validates.
    #[test]
    fn empty_is_single_node_and_member_validates() {
        assert!(!ClusterConfig::default().enabled());
        assert!(ClusterConfig::default().validate(2).is_ok());
        assert!(member().validate(2).is_ok());
        let peers = member().peer_addrs().unwrap();
        assert_eq!(peers[1].node_id, 3);
        assert_eq!(peers[1].shard_addr(1), "localhost:9701");
    }

    /// Each missing or bad key is named.
    #[test]
    fn rejects_incomplete_membership() {
        let key = |c: ClusterConfig| c.validate(1).unwrap_err().0;
        assert_eq!(
            key(ClusterConfig {
                node_id: 0,
                ..member()
            }),
            "cluster.node_id"
        );
        assert_eq!(
            key(ClusterConfig {
                cluster_id: String::new(),
                ..member()
            }),
            "cluster.cluster_id"
        );
        assert_eq!(
            key(ClusterConfig {
                node_listen: None,
                ..member()
            }),
            "cluster.node_listen"
        );
        for bad in ["2", "x@h:1", "0@h:1", "2@h", "2@h:0", "2@:5", "1@h:5"] {
            let c = ClusterConfig {
                peers: vec![bad.into()],
                ..member()
            };
            assert_eq!(key(c), "cluster.peers", "{bad}");
        }
    }
}
