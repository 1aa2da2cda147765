//! Figures for dashboards that are not Prometheus: `GET /stats` (the whole
//! broker at one moment, per shard) and `GET /topics/:name/stats` (a
//! topic's partitions with segments, last append and quarantine depth, and
//! every group's lag on it).
//!
//! `/stats` carries the same counters as `/metrics` (one snapshot of every
//! shard over the mesh, and every group's stats from its coordinator), as
//! JSON a browser can read without a Prometheus parser. Counters are totals
//! since the broker started: a reader takes two snapshots and divides the
//! difference by `at_ms` elapsed to get a rate, as Prometheus' `rate()`
//! does. The produce ack latency is a cumulative histogram over
//! [`prometheus::BUCKETS_S`] (both front doors, every durability), so a
//! reader can subtract two snapshots and estimate percentiles of the
//! interval between them, not only since start.

use std::rc::Rc;

use hdrhistogram::Histogram;
use serde::Serialize;
use shoal_protocol::messages::stats::TopicStatsRequest;

use shoal_protocol::messages::security::Operation;

use super::common::{circuit_name, code_name, state_name, topic_meta, HttpRequest};
use super::json::{ok, HttpError, HttpResponse};
use crate::metadata::acl::Resource;
use crate::metrics::prometheus::BUCKETS_S;
use crate::metrics::ShardSnapshot;
use crate::runtime::now_ms;
use crate::shard::Shard;

/// A cumulative latency histogram: `buckets[i]` records took at most
/// `bounds_s[i]` seconds; `count` and `sum_s` cover every record.
#[derive(Serialize, Default)]
struct Latency {
    bounds_s: &'static [f64],
    buckets: Vec<u64>,
    count: u64,
    sum_s: f64,
}

impl Latency {
    fn add(&mut self, hist: &Histogram<u64>) {
        if self.buckets.is_empty() {
            self.bounds_s = BUCKETS_S;
            self.buckets = vec![0; BUCKETS_S.len()];
        }
        for (slot, &le) in self.buckets.iter_mut().zip(BUCKETS_S) {
            *slot += hist.count_between(0, (le * 1e6) as u64);
        }
        self.count += hist.len();
        self.sum_s += hist.mean() * hist.len() as f64 / 1e6;
    }
}

#[derive(Serialize)]
struct ShardView {
    shard: u32,
    partitions: u32,
    fenced_partitions: u32,
    size_bytes: u64,
    records_in: u64,
    records_out: u64,
    native_bytes_in: u64,
    native_bytes_out: u64,
    native_connections_open: u64,
    http_connections_open: u64,
    http_requests: u64,
    cross_core_hops_in: u64,
    cross_core_hops_out: u64,
    throttle_ms: u64,
    produce_ack_latency: Latency,
}

fn shard_view(s: &ShardSnapshot) -> ShardView {
    let mut latency = Latency::default();
    latency.add(&s.native_produce_latency_us);
    for (_, hist) in &s.http.produce_ack_us {
        latency.add(hist);
    }
    ShardView {
        shard: s.shard,
        partitions: s.partitions.len() as u32,
        fenced_partitions: s.partitions.iter().filter(|p| p.figures.fenced.is_some()).count() as u32,
        size_bytes: s.partitions.iter().map(|p| p.figures.size_bytes).sum(),
        records_in: s.records_in,
        records_out: s.records_out,
        native_bytes_in: s.bytes_in,
        native_bytes_out: s.bytes_out,
        native_connections_open: s.native_connections_open,
        http_connections_open: s.http.connections_open,
        http_requests: s.http.requests,
        cross_core_hops_in: s.hops_in,
        cross_core_hops_out: s.hops_out.iter().sum(),
        throttle_ms: s.throttle_ms,
        produce_ack_latency: latency,
    }
}

#[derive(Serialize)]
struct GroupView {
    group: String,
    state: &'static str,
    generation: u32,
    members: u32,
    circuit: &'static str,
    lag_records: u64,
    /// The oldest unprocessed record's age over the group's partitions.
    lag_seconds_max: f64,
    retry_backlog: u64,
    quarantine_depth: u64,
    deliveries_total: u64,
    acks_total: u64,
    nacks_total: u64,
    retries_total: u64,
    quarantined_total: u64,
}

/// `GET /stats`: every topic's and group's figures, so cluster `admin`
/// when authentication is on.
pub async fn broker(shard: &Rc<Shard>, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    shard
        .access(&req.caller)
        .require(Resource::Cluster, Operation::Admin)?;
    let snapshot = shard.broker_snapshot().await;
    let groups = snapshot
        .groups
        .iter()
        .map(|g| GroupView {
            group: g.group.clone(),
            state: state_name(g.state),
            generation: g.generation,
            members: g.members.len() as u32,
            circuit: circuit_name(g.circuit),
            lag_records: g.partitions.iter().map(|p| p.lag_records).sum(),
            lag_seconds_max: g.partitions.iter().map(|p| p.lag_ms).max().unwrap_or(0) as f64 / 1000.0,
            retry_backlog: g.partitions.iter().map(|p| p.retry_backlog).sum(),
            quarantine_depth: g.partitions.iter().map(|p| p.quarantine_depth).sum(),
            deliveries_total: g.deliveries_total,
            acks_total: g.acks_total,
            nacks_total: g.nacks_total,
            retries_total: g.retries_total,
            quarantined_total: g.quarantined_total,
        })
        .collect();
    #[derive(Serialize)]
    struct Stats {
        at_ms: i64,
        version: &'static str,
        shards_configured: u32,
        topics: u32,
        shards: Vec<ShardView>,
        groups: Vec<GroupView>,
    }
    Ok(ok(&Stats {
        at_ms: now_ms(),
        version: env!("CARGO_PKG_VERSION"),
        shards_configured: shard.count(),
        topics: shard.topics().iter().count() as u32,
        shards: snapshot.shards.iter().map(shard_view).collect(),
        groups,
    }))
}

/// `GET /topics/:name/stats`.
pub async fn topic(shard: &Rc<Shard>, name: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    topic_meta(shard, name)?;
    let s = shard
        .access(&req.caller)
        .topic_stats(TopicStatsRequest {
            topic: name.to_string(),
        })
        .await?;
    #[derive(Serialize)]
    struct Partition {
        partition: u32,
        shard: u32,
        log_start: u64,
        high_watermark: u64,
        log_end: u64,
        size_bytes: u64,
        segments: u32,
        last_append_at_ms: Option<i64>,
        quarantine_depth: u64,
        code: &'static str,
    }
    #[derive(Serialize)]
    struct Lag {
        group: String,
        lag_records: u64,
        lag_seconds: f64,
    }
    #[derive(Serialize)]
    struct TopicStats {
        topic: String,
        partitions: Vec<Partition>,
        groups: Vec<Lag>,
    }
    Ok(ok(&TopicStats {
        topic: s.topic,
        partitions: s
            .partitions
            .into_iter()
            .map(|p| Partition {
                partition: p.partition,
                shard: p.shard,
                log_start: p.log_start,
                high_watermark: p.high_watermark,
                log_end: p.log_end,
                size_bytes: p.size_bytes,
                segments: p.segments,
                last_append_at_ms: p.last_append_at_ms,
                quarantine_depth: p.quarantine_depth,
                code: code_name(p.error),
            })
            .collect(),
        groups: s
            .groups
            .into_iter()
            .map(|g| Lag {
                group: g.group,
                lag_records: g.lag_records,
                lag_seconds: g.lag_ms as f64 / 1000.0,
            })
            .collect(),
    }))
}
