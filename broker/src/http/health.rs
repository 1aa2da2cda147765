//! `GET /healthz` (the process serves HTTP) and `GET /readyz` (every shard
//! answers and the broker is not draining).

use std::rc::Rc;

use hyper::StatusCode;
use serde::Serialize;

use super::json::{json_response, ok, ErrorTag, HttpResponse};
use super::metrics;
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
        shard: shard.id,
    })
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    shutting_down: bool,
    shards: u32,
    shards_answering: u32,
    /// Partitions fenced after a storage error: the broker still serves the
    /// others, so they do not make it unready, but operators must see them.
    fenced_partitions: Vec<FencedPartition>,
}

#[derive(Serialize)]
struct FencedPartition {
    topic: String,
    partition: u32,
    reason: String,
}

/// Readiness: 200 when every shard answers over the mesh and none is
/// draining; 503 otherwise.
pub async fn readyz(shard: &Rc<Shard>) -> HttpResponse {
    let shutting_down = shard.shutting_down.get();
    let snaps = if shutting_down {
        Vec::new()
    } else {
        metrics::gather(shard).await
    };
    let fenced_partitions = snaps
        .iter()
        .flat_map(|s| &s.partitions)
        .filter_map(|p| {
            p.figures.fenced.as_ref().map(|reason| FencedPartition {
                topic: p.topic.clone(),
                partition: p.partition,
                reason: reason.clone(),
            })
        })
        .collect();
    let answering = snaps.len() as u32;
    let ready = !shutting_down && answering == shard.count;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = json_response(
        status,
        &Readiness {
            ready,
            shutting_down,
            shards: shard.count,
            shards_answering: answering,
            fenced_partitions,
        },
    );
    if !ready {
        resp.extensions_mut().insert(ErrorTag("not_ready"));
    }
    resp
}
