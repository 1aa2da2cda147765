//! `GET /cluster`: the nodes of the cluster and their liveness, as the
//! answering shard's node links see them (every shard keeps its own links;
//! `shard` in the reply says whose). A single node answers
//! `{"enabled": false, ...}` with itself as the only node.
//! `POST /cluster/rebalance-leaders` hands this node's leaderships back to
//! their preferred replicas (leader balancing on demand).

use serde::Serialize;

use super::common::HttpRequest;
use super::json::{ok, HttpError, HttpResponse};
use crate::cluster::{ClusterStatus, NodeStatus};
use crate::partition::replication::{GroupStatus, LeaderMove};
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

/// `POST /cluster/rebalance-leaders` (`?dry_run=true` to only list):
/// the leaderships this node holds whose preferred replica is another,
/// handed over where that replica is alive and caught up.
pub async fn rebalance_leaders(
    shard: &std::rc::Rc<Shard>,
    req: &HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let dry_run = req.param::<bool>("dry_run")?.unwrap_or(false);
    let moves = shard.access(&req.caller).rebalance_leaders(dry_run).await?;
    #[derive(Serialize)]
    struct Reply {
        dry_run: bool,
        started: usize,
        moves: Vec<LeaderMove>,
    }
    Ok(ok(&Reply {
        dry_run,
        started: moves.iter().filter(|m| m.started).count(),
        moves,
    }))
}
