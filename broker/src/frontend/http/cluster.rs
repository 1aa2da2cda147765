//! `GET /cluster`: the nodes of the cluster and their liveness, as the
//! answering shard's node links see them (every shard keeps its own links;
//! `shard` in the reply says whose). A single node answers
//! `{"enabled": false, ...}` with itself as the only node.

use serde::Serialize;

use super::json::{ok, HttpResponse};
use crate::cluster::{ClusterStatus, NodeStatus};
use crate::partition::replication::GroupStatus;
use crate::shard::Shard;

#[derive(Serialize)]
struct ClusterReply {
    enabled: bool,
    #[serde(flatten)]
    status: ClusterStatus,
    /// The replicated partitions on the answering shard: role, leader, term.
    partitions: Vec<GroupStatus>,
}

pub fn status(shard: &Shard) -> HttpResponse {
    match shard.cluster() {
        Some(cluster) => ok(&ClusterReply {
            enabled: true,
            status: cluster.status(),
            partitions: shard
                .partitions()
                .replication()
                .map(|r| r.status())
                .unwrap_or_default(),
        }),
        None => ok(&ClusterReply {
            enabled: false,
            status: ClusterStatus {
                cluster_id: String::new(),
                node_id: 0,
                shard: shard.id().get(),
                nodes: vec![NodeStatus {
                    node_id: 0,
                    address: String::new(),
                    local: true,
                    alive: true,
                    link: "local",
                    last_heard_ms_ago: Some(0),
                    refused: None,
                }],
                hellos_refused: 0,
                bad_connections: 0,
                last_inbound_refusal: None,
            },
            partitions: Vec::new(),
        }),
    }
}
