//! Topic administration over HTTP: create, list, describe, delete.
//!
//! Create and delete go to shard 0, the topic catalogue's single writer
//! (the shard routes them), exactly as the native `CreateTopic`/`DeleteTopic`
//! requests do.

use std::rc::Rc;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use shoal_protocol::messages::topic::{FlushPolicy, RetryPolicy, TopicConfig};

use super::common::{topic_meta, HttpRequest};
use super::json::{json_response, ok, parse, HttpError, HttpResponse};
use crate::ids::PartitionId;
use crate::metadata::acl::Resource;
use crate::shard::Shard;
use shoal_protocol::messages::security::Operation;

/// `POST /topics` body; every field but `name` defaults as the native API does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    partitions: Option<u32>,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
    compacted: Option<bool>,
    tombstone_retention_ms: Option<u64>,
    /// `always` | `interval` | `never`.
    flush: Option<String>,
    /// With `flush: interval`.
    flush_interval_ms: Option<u32>,
    dedup_window_ms: Option<u64>,
    retry: Option<RetryBody>,
    /// Replicas per partition (a cluster); default 1.
    replication_factor: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    max_attempts: Option<u32>,
    backoff_base_ms: Option<u32>,
    backoff_max_ms: Option<u32>,
    dead_letter: Option<bool>,
    ordered_retry: Option<bool>,
}

fn topic_config(body: &CreateBody) -> Result<TopicConfig, HttpError> {
    let d = TopicConfig::default();
    let flush = match (body.flush.as_deref(), body.flush_interval_ms) {
        (None, None) => d.flush,
        (Some("always"), None) => FlushPolicy::Always,
        (Some("never"), None) => FlushPolicy::Never,
        (Some("interval") | None, Some(ms)) => FlushPolicy::IntervalMs(ms),
        (Some("interval"), None) => {
            return Err(HttpError::invalid("flush \"interval\" needs flush_interval_ms"))
        }
        (Some(other), _) => {
            return Err(HttpError::invalid(format!(
            "flush {other:?} is not one of always | interval | never (flush_interval_ms goes with interval)"
        )))
        }
    };
    let r = body.retry.as_ref();
    let dr = RetryPolicy::default();
    Ok(TopicConfig {
        partitions: body.partitions.unwrap_or(d.partitions),
        retention_ms: body.retention_ms.or(d.retention_ms),
        retention_bytes: body.retention_bytes.or(d.retention_bytes),
        compacted: body.compacted.unwrap_or(d.compacted),
        tombstone_retention_ms: body.tombstone_retention_ms.unwrap_or(d.tombstone_retention_ms),
        flush,
        dedup_window_ms: body.dedup_window_ms.unwrap_or(d.dedup_window_ms),
        retry: RetryPolicy {
            max_attempts: r.and_then(|r| r.max_attempts).unwrap_or(dr.max_attempts),
            backoff_base_ms: r.and_then(|r| r.backoff_base_ms).unwrap_or(dr.backoff_base_ms),
            backoff_max_ms: r.and_then(|r| r.backoff_max_ms).unwrap_or(dr.backoff_max_ms),
            dead_letter: r.and_then(|r| r.dead_letter).unwrap_or(dr.dead_letter),
            ordered_retry: r.and_then(|r| r.ordered_retry).unwrap_or(dr.ordered_retry),
        },
        replication_factor: body.replication_factor.unwrap_or(d.replication_factor),
    })
}

pub async fn create(shard: &Rc<Shard>, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let body: CreateBody = parse(&req.body)?;
    let config = topic_config(&body)?;
    let name = body.name;
    shard
        .access(&req.caller)
        .create_topic(name.clone(), config)
        .await?;
    #[derive(Serialize)]
    struct Created {
        name: String,
        created: bool,
    }
    Ok(json_response(
        StatusCode::CREATED,
        &Created { name, created: true },
    ))
}

pub async fn delete(shard: &Rc<Shard>, name: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    shard.access(&req.caller).delete_topic(name.to_string()).await?;
    #[derive(Serialize)]
    struct Deleted<'a> {
        name: &'a str,
        deleted: bool,
    }
    Ok(ok(&Deleted { name, deleted: true }))
}

#[derive(Serialize)]
struct Summary {
    name: String,
    partitions: u32,
    compacted: bool,
}

pub fn list(shard: &Rc<Shard>, req: &HttpRequest) -> HttpResponse {
    let access = shard.access(&req.caller);
    let topics: Vec<Summary> = shard
        .topics()
        .iter()
        .filter(|t| access.may_describe_topic(&t.name))
        .map(|t| Summary {
            name: t.name.clone(),
            partitions: t.config.partitions,
            compacted: t.config.compacted,
        })
        .collect();
    #[derive(Serialize)]
    struct List {
        topics: Vec<Summary>,
    }
    ok(&List { topics })
}

/// A topic's configuration as JSON shows it (the same keys `POST /topics` takes).
#[derive(Serialize)]
struct ConfigView {
    partitions: u32,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
    compacted: bool,
    tombstone_retention_ms: u64,
    flush: &'static str,
    flush_interval_ms: Option<u32>,
    dedup_window_ms: u64,
    retry: RetryPolicy,
}

impl From<&TopicConfig> for ConfigView {
    fn from(c: &TopicConfig) -> Self {
        let (flush, flush_interval_ms) = match c.flush {
            FlushPolicy::Always => ("always", None),
            FlushPolicy::IntervalMs(ms) => ("interval", Some(ms)),
            FlushPolicy::Never => ("never", None),
        };
        ConfigView {
            partitions: c.partitions,
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            compacted: c.compacted,
            tombstone_retention_ms: c.tombstone_retention_ms,
            flush,
            flush_interval_ms,
            dedup_window_ms: c.dedup_window_ms,
            retry: c.retry,
        }
    }
}

#[derive(Serialize)]
struct PartitionView {
    partition: u32,
    shard: u32,
    log_start: u64,
    high_watermark: u64,
    log_end: u64,
    size_bytes: u64,
    /// Why the partition is fenced read-only; absent when healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    fenced: Option<String>,
}

pub async fn describe(shard: &Rc<Shard>, name: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let access = shard.access(&req.caller);
    access.require(Resource::Topic(name), Operation::Describe)?;
    let meta = topic_meta(shard, name)?;
    let mut partitions = Vec::with_capacity(meta.config.partitions as usize);
    for p in (0..meta.config.partitions).map(PartitionId) {
        let f = access.figures(name, p).await.unwrap_or_default();
        partitions.push(PartitionView {
            partition: p.get(),
            shard: shard.owner(name, p).get(),
            log_start: f.log_start,
            high_watermark: f.high_watermark,
            log_end: f.log_end,
            size_bytes: f.size_bytes,
            fenced: f.fenced,
        });
    }
    #[derive(Serialize)]
    struct Described {
        name: String,
        config: ConfigView,
        partitions: Vec<PartitionView>,
    }
    Ok(ok(&Described {
        name: meta.name.clone(),
        config: ConfigView::from(&meta.config),
        partitions,
    }))
}
