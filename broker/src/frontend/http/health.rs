//! `GET /healthz` (the process serves HTTP) and `GET /readyz` (every shard
//! has recovered every partition it owns and none is draining).

use std::rc::Rc;

use hyper::StatusCode;
use serde::Serialize;

use super::json::{json_response, ok, ErrorTag, HttpResponse};
use crate::shard::Shard;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    shard: u32,
}

/// Liveness: answered by the shard itself, without touching other shards.
pub fn healthz(shard: &Shard) -> HttpResponse {
    ok(&Health {
        status: "ok",
        shard: shard.id().get(),
    })
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    shutting_down: bool,
    shards: u32,
    shards_answering: u32,
    /// Shards that answered and serve every partition they own.
    shards_ready: u32,
    /// Why a shard is not ready yet ("recovering partitions", "draining").
    waiting: Vec<Waiting>,
    /// Partitions fenced after a storage error: the broker still serves the
    /// others, so they do not make it unready, but operators must see them.
    fenced_partitions: Vec<FencedPartition>,
}

#[derive(Serialize)]
struct Waiting {
    shard: u32,
    reason: String,
}

#[derive(Serialize)]
struct FencedPartition {
    topic: String,
    partition: u32,
    reason: String,
}

/// Readiness: 200 when every shard answers, has recovered every partition
/// it owns (so a request for any partition is served at once, never
/// `not_owner` or `partition_recovering`) and none is draining; 503
/// otherwise.
pub async fn readyz(shard: &Rc<Shard>) -> HttpResponse {
    let shutting_down = shard.is_shutting_down();
    let r = shard.readiness_of_all().await;
    let fenced_partitions = r
        .partitions
        .iter()
        .filter_map(|p| {
            p.figures.fenced.as_ref().map(|reason| FencedPartition {
                topic: p.topic.clone(),
                partition: p.partition,
                reason: reason.clone(),
            })
        })
        .collect();
    let ready = !shutting_down && r.waiting.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let waiting = r
        .waiting
        .into_iter()
        .map(|(shard, reason)| Waiting {
            shard: shard.get(),
            reason: reason.to_string(),
        })
        .collect();
    let mut resp = json_response(
        status,
        &Readiness {
            ready,
            shutting_down,
            shards: r.shards,
            shards_answering: r.shards_answering,
            shards_ready: r.shards_ready,
            waiting,
            fenced_partitions,
        },
    );
    if !ready {
        resp.extensions_mut().insert(ErrorTag("not_ready"));
    }
    resp
}
