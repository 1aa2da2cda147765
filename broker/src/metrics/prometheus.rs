//! The Prometheus text exposition (format 0.0.4) of a [`BrokerSnapshot`].
//!
//! Every metric family is one row of [`FAMILIES`]: its name, type, help and
//! a function that emits its samples from the snapshot. The renderer walks
//! the table; adding a metric is adding a row. Samples carry a `shard`
//! label where they are per shard.
//!
//! Histograms come from two sources: HDR histograms (produce ack latency,
//! rendered over [`BUCKETS_S`]) and storage's fixed fdatasync buckets
//! (`shoal_storage::SYNC_LATENCY_BOUNDS_US`), written by one bucket writer.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use shoal_protocol::api::ApiKey;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::stats::{CircuitState, GroupPartitionStats, GroupStatsResponse};
use shoal_storage::LogStats;

use super::snapshot::{BrokerSnapshot, PartitionSample, ShardSnapshot};
use crate::partition::PartitionFigures;

/// Histogram bucket bounds in seconds, as Prometheus `le` labels.
pub const BUCKETS_S: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One sample's value.
pub enum Sample<'a> {
    Value(f64),
    /// An HDR histogram of microseconds.
    Hdr(&'a Histogram<u64>),
    /// Cumulative `(upper bound in seconds, count)` pairs, the total count
    /// and the sum in seconds.
    Buckets {
        cumulative: Vec<(f64, u64)>,
        count: u64,
        sum_s: f64,
    },
}

/// Where a family's samples go: labels and a value.
pub type Emit<'e> = dyn FnMut(&[(&str, &str)], Sample<'_>) + 'e;

/// One metric family: a row of the table.
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    samples: fn(&BrokerSnapshot, &mut Emit<'_>),
}

/// Every family `/metrics` exports, in output order.
pub const FAMILIES: &[Family] = &[
    // Per partition, on its owner.
    Family {
        name: "shoal_partition_log_end_offset",
        kind: Kind::Gauge,
        help: "Offset the next appended record gets.",
        samples: |s, e| per_partition(s, e, |f| f.log_end as f64),
    },
    Family {
        name: "shoal_partition_high_watermark",
        kind: Kind::Gauge,
        help: "Records below this offset are readable.",
        samples: |s, e| per_partition(s, e, |f| f.high_watermark as f64),
    },
    Family {
        name: "shoal_partition_log_start_offset",
        kind: Kind::Gauge,
        help: "First retained offset.",
        samples: |s, e| per_partition(s, e, |f| f.log_start as f64),
    },
    Family {
        name: "shoal_partition_size_bytes",
        kind: Kind::Gauge,
        help: "Bytes of segment data on disk.",
        samples: |s, e| per_partition(s, e, |f| f.size_bytes as f64),
    },
    Family {
        name: "shoal_partition_fenced",
        kind: Kind::Gauge,
        help: "1 when the partition is fenced read-only after a storage error.",
        samples: |s, e| per_partition(s, e, |f| f64::from(u8::from(f.fenced.is_some()))),
    },
    Family {
        name: "shoal_partition_appends_total",
        kind: Kind::Counter,
        help: "Appends to the partition log.",
        samples: |s, e| per_log(s, e, |l| Some(l.appends as f64)),
    },
    Family {
        name: "shoal_partition_bytes_in_total",
        kind: Kind::Counter,
        help: "Batch bytes written to the partition log.",
        samples: |s, e| per_log(s, e, |l| Some(l.bytes_written as f64)),
    },
    Family {
        name: "shoal_partition_writes_total",
        kind: Kind::Counter,
        help: "DMA writes to the partition log.",
        samples: |s, e| per_log(s, e, |l| Some(l.writes as f64)),
    },
    Family {
        name: "shoal_partition_cache_reads_total",
        kind: Kind::Counter,
        help: "Reads answered from the tail batch cache.",
        samples: |s, e| per_log(s, e, |l| Some(l.cache_reads as f64)),
    },
    Family {
        name: "shoal_partition_disk_reads_total",
        kind: Kind::Counter,
        help: "Reads that went to the segment files.",
        samples: |s, e| per_log(s, e, |l| Some(l.disk_reads as f64)),
    },
    Family {
        name: "shoal_partition_batch_cache_hit_ratio",
        kind: Kind::Gauge,
        help: "Share of reads answered from the tail batch cache since the broker started (absent before the first read).",
        samples: |s, e| per_log(s, e, cache_hit_ratio),
    },
    Family {
        name: "shoal_partition_fsync_seconds",
        kind: Kind::Histogram,
        help: "fdatasync latency of the partition log.",
        samples: fsync_histograms,
    },
    // Per shard.
    Family {
        name: "shoal_records_in_total",
        kind: Kind::Counter,
        help: "Records appended by partitions on this shard.",
        samples: |s, e| per_shard(s, e, |x| x.records_in),
    },
    Family {
        name: "shoal_records_out_total",
        kind: Kind::Counter,
        help: "Records read from partitions on this shard.",
        samples: |s, e| per_shard(s, e, |x| x.records_out),
    },
    Family {
        name: "shoal_native_bytes_in_total",
        kind: Kind::Counter,
        help: "Bytes read from native-protocol sockets.",
        samples: |s, e| per_shard(s, e, |x| x.bytes_in),
    },
    Family {
        name: "shoal_native_bytes_out_total",
        kind: Kind::Counter,
        help: "Bytes written to native-protocol sockets.",
        samples: |s, e| per_shard(s, e, |x| x.bytes_out),
    },
    Family {
        name: "shoal_throttle_time_ms_total",
        kind: Kind::Counter,
        help: "Quota throttle time handed to clients, in ms.",
        samples: |s, e| per_shard(s, e, |x| x.throttle_ms),
    },
    Family {
        name: "shoal_cross_core_hops_in_total",
        kind: Kind::Counter,
        help: "Mesh calls received from other shards.",
        samples: |s, e| per_shard(s, e, |x| x.hops_in),
    },
    Family {
        name: "shoal_native_connections_rejected_total",
        kind: Kind::Counter,
        help: "Native connections closed for malformed input.",
        samples: |s, e| per_shard(s, e, |x| x.native_connections_rejected),
    },
    Family {
        name: "shoal_native_connections_expired_total",
        kind: Kind::Counter,
        help: "Native connections closed by the frame-read or idle deadline.",
        samples: |s, e| per_shard(s, e, |x| x.native_connections_expired),
    },
    Family {
        name: "shoal_connections_refused_total",
        kind: Kind::Counter,
        help: "Client connections refused by the per-shard or per-address limit.",
        samples: |s, e| per_shard(s, e, |x| x.connections_refused),
    },
    Family {
        name: "shoal_receive_pool_free_bytes",
        kind: Kind::Gauge,
        help: "Unreserved bytes of the shard's receive pool for large request frames.",
        samples: |s, e| per_shard(s, e, |x| x.receive_pool_free_bytes),
    },
    Family {
        name: "shoal_inflight_free_bytes",
        kind: Kind::Gauge,
        help: "Unreserved bytes of the shard's in-flight request budget.",
        samples: |s, e| per_shard(s, e, |x| x.inflight_free_bytes),
    },
    Family {
        name: "shoal_cross_core_calls_total",
        kind: Kind::Counter,
        help: "Mesh calls sent to another shard, by kind (produce, fetch, list_offsets, admin, stats, delivery, submitted).",
        samples: cross_core_calls,
    },
    Family {
        name: "shoal_native_requests_total",
        kind: Kind::Counter,
        help: "Native-protocol requests served, by API.",
        samples: native_requests,
    },
    Family {
        name: "shoal_cross_core_hops_out_total",
        kind: Kind::Counter,
        help: "Mesh calls sent to another shard.",
        samples: hops_out,
    },
    Family {
        name: "shoal_connections_open",
        kind: Kind::Gauge,
        help: "Open client connections.",
        samples: |s, e| {
            per_front_door(
                s,
                e,
                [
                    |x| x.native_connections_open,
                    |x| x.http.connections_open,
                    |x| x.kafka.connections_open,
                ],
            )
        },
    },
    Family {
        name: "shoal_connections_total",
        kind: Kind::Counter,
        help: "Client connections accepted.",
        samples: |s, e| {
            per_front_door(
                s,
                e,
                [
                    |x| x.native_connections_total,
                    |x| x.http.connections_total,
                    |x| x.kafka.connections_total,
                ],
            )
        },
    },
    Family {
        name: "shoal_request_errors_total",
        kind: Kind::Counter,
        help: "Error replies by front door and error code.",
        samples: request_errors,
    },
    Family {
        name: "shoal_produce_ack_latency_seconds",
        kind: Kind::Histogram,
        help: "Produce latency from request decode to ack, by front door (http: by durability reached; kafka: acks=1 and acks=all).",
        samples: produce_latency,
    },
    // The HTTP front door.
    Family {
        name: "shoal_http_requests_total",
        kind: Kind::Counter,
        help: "HTTP requests received.",
        samples: |s, e| per_shard(s, e, |x| x.http.requests),
    },
    Family {
        name: "shoal_http_responses_total",
        kind: Kind::Counter,
        help: "HTTP replies by status and error code.",
        samples: http_responses,
    },
    Family {
        name: "shoal_http_deadline_closes_total",
        kind: Kind::Counter,
        help: "HTTP connections closed by the header-read or idle deadline.",
        samples: |s, e| per_shard(s, e, |x| x.http.deadline_closes),
    },
    // The Kafka front door.
    Family {
        name: "shoal_kafka_requests_total",
        kind: Kind::Counter,
        help: "Kafka-protocol requests received, by API.",
        samples: kafka_requests,
    },
    Family {
        name: "shoal_kafka_errors_total",
        kind: Kind::Counter,
        help: "Kafka error codes answered, by API and Kafka error name (api=\"unknown\": refused before the API was known).",
        samples: kafka_errors,
    },
    Family {
        name: "shoal_kafka_bytes_in_total",
        kind: Kind::Counter,
        help: "Bytes read from Kafka-protocol sockets.",
        samples: |s, e| per_shard(s, e, |x| x.kafka.bytes_in),
    },
    Family {
        name: "shoal_kafka_bytes_out_total",
        kind: Kind::Counter,
        help: "Bytes written to Kafka-protocol sockets.",
        samples: |s, e| per_shard(s, e, |x| x.kafka.bytes_out),
    },
    Family {
        name: "shoal_kafka_connections_rejected_total",
        kind: Kind::Counter,
        help: "Kafka connections closed for a malformed, oversized or unserved request.",
        samples: |s, e| per_shard(s, e, |x| x.kafka.connections_rejected),
    },
    Family {
        name: "shoal_kafka_connections_expired_total",
        kind: Kind::Counter,
        help: "Kafka connections closed by the frame-read or idle deadline.",
        samples: |s, e| per_shard(s, e, |x| x.kafka.connections_expired),
    },
    // Per consumer group partition, from the group's coordinator.
    Family {
        name: "shoal_group_lag_records",
        kind: Kind::Gauge,
        help: "Records not yet processed (acked) by the group.",
        samples: |s, e| per_group_partition(s, e, |p| p.lag_records as f64),
    },
    Family {
        name: "shoal_group_lag_seconds",
        kind: Kind::Gauge,
        help: "Age of the oldest record the group has not processed; 0 when caught up.",
        samples: |s, e| per_group_partition(s, e, |p| p.lag_ms as f64 / 1000.0),
    },
    Family {
        name: "shoal_group_in_flight",
        kind: Kind::Gauge,
        help: "Records delivered and leased, not yet acked or nacked.",
        samples: |s, e| per_group_partition(s, e, |p| p.in_flight as f64),
    },
    Family {
        name: "shoal_group_retry_backlog",
        kind: Kind::Gauge,
        help: "Records waiting for a retry.",
        samples: |s, e| per_group_partition(s, e, |p| p.retry_backlog as f64),
    },
    Family {
        name: "shoal_quarantine_depth",
        kind: Kind::Gauge,
        help: "Quarantined entries of the group and partition.",
        samples: |s, e| per_group_partition(s, e, |p| p.quarantine_depth as f64),
    },
    // Per consumer group.
    Family {
        name: "shoal_group_circuit_state",
        kind: Kind::Gauge,
        help: "Circuit breaker: 0 closed, 1 half-open, 2 open.",
        samples: |s, e| per_group(s, e, |g| circuit_value(g.circuit)),
    },
    Family {
        name: "shoal_group_retry_budget_used_permille",
        kind: Kind::Gauge,
        help: "Retries per 1000 deliveries in the budget window.",
        samples: |s, e| per_group(s, e, |g| f64::from(g.retry_budget_used_permille)),
    },
    Family {
        name: "shoal_group_deliveries_total",
        kind: Kind::Counter,
        help: "Records delivered to members.",
        samples: |s, e| per_group(s, e, |g| g.deliveries_total as f64),
    },
    Family {
        name: "shoal_group_acks_total",
        kind: Kind::Counter,
        help: "Records acked.",
        samples: |s, e| per_group(s, e, |g| g.acks_total as f64),
    },
    Family {
        name: "shoal_group_nacks_total",
        kind: Kind::Counter,
        help: "Records nacked.",
        samples: |s, e| per_group(s, e, |g| g.nacks_total as f64),
    },
    Family {
        name: "shoal_group_retries_total",
        kind: Kind::Counter,
        help: "Redeliveries scheduled (rate = retry rate).",
        samples: |s, e| per_group(s, e, |g| g.retries_total as f64),
    },
    Family {
        name: "shoal_group_quarantined_total",
        kind: Kind::Counter,
        help: "Records quarantined (rate = quarantine inflow).",
        samples: |s, e| per_group(s, e, |g| g.quarantined_total as f64),
    },
];

/// Renders the whole snapshot, family by family.
pub fn render(snapshot: &BrokerSnapshot) -> String {
    let mut out = String::new();
    for family in FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.name());
        let name = family.name;
        (family.samples)(snapshot, &mut |labels, sample| {
            write_sample(&mut out, name, labels, sample)
        });
    }
    out
}

fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], sample: Sample<'_>) {
    match sample {
        Sample::Value(v) => write_line(out, name, labels, v),
        Sample::Hdr(hist) => {
            let cumulative = BUCKETS_S
                .iter()
                .map(|&le| (le, hist.count_between(0, (le * 1e6) as u64)))
                .collect();
            let sum_s = hist.mean() * hist.len() as f64 / 1e6;
            write_buckets(out, name, labels, cumulative, hist.len(), sum_s);
        }
        Sample::Buckets {
            cumulative,
            count,
            sum_s,
        } => write_buckets(out, name, labels, cumulative, count, sum_s),
    }
}

/// Bucket lines, then `+Inf` (= `count`), `_sum` and `_count`.
fn write_buckets(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    cumulative: Vec<(f64, u64)>,
    count: u64,
    sum_s: f64,
) {
    let bucket = format!("{name}_bucket");
    for (le, n) in cumulative {
        let le = le.to_string();
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        write_line(out, &bucket, &with_le, n as f64);
    }
    let mut inf = labels.to_vec();
    inf.push(("le", "+Inf"));
    write_line(out, &bucket, &inf, count as f64);
    write_line(out, &format!("{name}_sum"), labels, sum_s);
    write_line(out, &format!("{name}_count"), labels, count as f64);
}

fn write_line(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Calls `f` with the labels of every partition sample.
fn each_partition(s: &BrokerSnapshot, mut f: impl FnMut(&[(&str, &str)], &PartitionSample)) {
    for shard in &s.shards {
        let id = shard.shard.to_string();
        for p in &shard.partitions {
            let partition = p.partition.to_string();
            let labels = [
                ("topic", p.topic.as_str()),
                ("partition", &partition),
                ("shard", &id),
            ];
            f(&labels, p);
        }
    }
}

fn per_partition(s: &BrokerSnapshot, e: &mut Emit<'_>, pick: fn(&PartitionFigures) -> f64) {
    each_partition(s, |labels, p| e(labels, Sample::Value(pick(&p.figures))));
}

/// Storage counters of every open partition log (`None` skips a sample).
fn per_log(s: &BrokerSnapshot, e: &mut Emit<'_>, pick: fn(&LogStats) -> Option<f64>) {
    each_partition(s, |labels, p| {
        if let Some(v) = p.log.as_ref().and_then(pick) {
            e(labels, Sample::Value(v));
        }
    });
}

fn cache_hit_ratio(l: &LogStats) -> Option<f64> {
    let reads = l.cache_reads + l.disk_reads;
    (reads > 0).then(|| l.cache_reads as f64 / reads as f64)
}

fn fsync_histograms(s: &BrokerSnapshot, e: &mut Emit<'_>) {
    each_partition(s, |labels, p| {
        let Some(stats) = &p.log else { return };
        let mut running = 0;
        let cumulative = shoal_storage::SYNC_LATENCY_BOUNDS_US
            .iter()
            .zip(stats.sync_latency_buckets)
            .map(|(&us, n)| {
                running += n;
                (us as f64 / 1e6, running)
            })
            .collect();
        let sample = Sample::Buckets {
            cumulative,
            count: stats.fdatasyncs,
            sum_s: stats.sync_wait_us as f64 / 1e6,
        };
        e(labels, sample);
    });
}

fn per_shard(s: &BrokerSnapshot, e: &mut Emit<'_>, pick: fn(&ShardSnapshot) -> u64) {
    for shard in &s.shards {
        e(
            &[("shard", &shard.shard.to_string())],
            Sample::Value(pick(shard) as f64),
        );
    }
}

/// One sample per shard and front door; `picks` are native, HTTP, Kafka.
fn per_front_door(s: &BrokerSnapshot, e: &mut Emit<'_>, picks: [fn(&ShardSnapshot) -> u64; 3]) {
    for shard in &s.shards {
        let id = shard.shard.to_string();
        for (door, pick) in ["native", "http", "kafka"].into_iter().zip(picks) {
            let labels = [("shard", id.as_str()), ("front_door", door)];
            e(&labels, Sample::Value(pick(shard) as f64));
        }
    }
}

fn cross_core_calls(s: &BrokerSnapshot, e: &mut Emit<'_>) {
    for shard in &s.shards {
        let id = shard.shard.to_string();
        for (kind, n) in &shard.hops_by_kind {
            e(&[("shard", &id), ("kind", kind)], Sample::Value(*n as f64));
        }
    }
}

fn native_requests(s: &BrokerSnapshot, e: &mut Emit<'_>) {
    for shard in &s.shards {
        let id = shard.shard.to_string();
        for (key, n) in shard.native_requests.iter().enumerate().filter(|(_, n)| **n > 0) {
            let api = ApiKey::from_wire(key as u16).map_or("unknown", |k| k.name());
            e(&[("shard", &id), ("api", api)], Sample::Value(*n as f64));
        }
    }
}

fn hops_out(s: &BrokerSnapshot, e: &mut Emit<'_>) {
    for shard in &s.shards {
        let id = shard.shard.to_string();
        for (to, n) in shard.hops_out.iter().enumerate() {
            if to as u32 != shard.shard {
                e(
                    &[("shard", &id), ("to", &to.to_string())],
                    Sample::Value(*n as f64),
                );
            }
        }
    }
}

fn request_errors(s: &BrokerSnapshot, e: &mut Emit<'_>) {
    for shard in &s.shards {
        let id = shard.shard.to_string();
        for (code, n) in &shard.native_errors {
            let name = ErrorCode::from_wire(*code).name();
            let labels = [("shard", id.as_str()), ("front_door", "native"), ("code", name)];
            e(&labels, Sample::Value(*n as f64));
        }
        for (_, code, n) in shard.http.responses.iter().filter(|(st, _, _)| *st >= 400) {
            let labels = [
                ("shard", id.as_str()),
                ("front_door", "http"),
                ("code", code.as_str()),
            ];
            e(&labels, Sample::Value(*n as f64));
        }
        let mut kafka: BTreeMap<i16, u64> = BTreeMap::new();
        for (_, code, n) in &shard.kafka.errors {
            *kafka.entry(*code).or_insert(0) += n;
        }
        for (code, n) in kafka {
            let name = kafka_error_name(code);
            let labels = [("shard", id.as_str()), ("front_door", "kafka"), ("code", &name)];
            e(&labels, Sample::Value(n as f64));
        }
    }
}

/// A Kafka API key's name as Kafka's documentation spells it (`Produce`).
fn kafka_api_name(key: i16) -> String {
    kafka_protocol::messages::ApiKey::try_from(key)
        .map_or_else(|_| "unknown".to_string(), |k| format!("{k:?}"))
}

/// A Kafka error code's name as Kafka's documentation spells it
/// (`UNKNOWN_TOPIC_OR_PARTITION`), or its number when unknown.
fn kafka_error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(kafka_protocol::ResponseError::Unknown(n)) => n.to_string(),
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

fn kafka_requests(s: &BrokerSnapshot, e: &mut Emit<'_>) {
    for shard in &s.shards {
        let id = shard.shard.to_string();
        for (key, n) in &shard.kafka.requests {
            let api = kafka_api_name(*key);
            e(&[("shard", &id), ("api", &api)], Sample::Value(*n as f64));
        }
    }
}

fn kafka_errors(s: &BrokerSnapshot, e: &mut Emit<'_>) {
    for shard in &s.shards {
        let id = shard.shard.to_string();
        for (key, code, n) in &shard.kafka.errors {
            let (api, name) = (kafka_api_name(*key), kafka_error_name(*code));
            e(
                &[("shard", &id), ("api", &api), ("code", &name)],
                Sample::Value(*n as f64),
            );
        }
    }
}

fn produce_latency(s: &BrokerSnapshot, e: &mut Emit<'_>) {
    for shard in &s.shards {
        let id = shard.shard.to_string();
        let native = [
            ("shard", id.as_str()),
            ("front_door", "native"),
            ("durability", "any"),
        ];
        e(&native, Sample::Hdr(&shard.native_produce_latency_us));
        if let Some(hist) = &shard.kafka.produce_latency_us {
            let labels = [
                ("shard", id.as_str()),
                ("front_door", "kafka"),
                ("durability", "any"),
            ];
            e(&labels, Sample::Hdr(hist));
        }
        for (durability, hist) in &shard.http.produce_ack_us {
            let labels = [
                ("shard", id.as_str()),
                ("front_door", "http"),
                ("durability", durability),
            ];
            e(&labels, Sample::Hdr(hist));
        }
    }
}

fn http_responses(s: &BrokerSnapshot, e: &mut Emit<'_>) {
    for shard in &s.shards {
        let id = shard.shard.to_string();
        for (status, code, n) in &shard.http.responses {
            let status = status.to_string();
            let labels = [
                ("shard", id.as_str()),
                ("status", &status),
                ("code", code.as_str()),
            ];
            e(&labels, Sample::Value(*n as f64));
        }
    }
}

fn per_group_partition(s: &BrokerSnapshot, e: &mut Emit<'_>, pick: fn(&GroupPartitionStats) -> f64) {
    for g in &s.groups {
        for p in &g.partitions {
            let partition = p.partition.to_string();
            let labels = [
                ("group", g.group.as_str()),
                ("topic", p.topic.as_str()),
                ("partition", &partition),
            ];
            e(&labels, Sample::Value(pick(p)));
        }
    }
}

fn per_group(s: &BrokerSnapshot, e: &mut Emit<'_>, pick: fn(&GroupStatsResponse) -> f64) {
    for g in &s.groups {
        e(&[("group", g.group.as_str())], Sample::Value(pick(g)));
    }
}

fn circuit_value(c: CircuitState) -> f64 {
    match c {
        CircuitState::Closed => 0.0,
        CircuitState::HalfOpen => 1.0,
        CircuitState::Open => 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family is named once, and a histogram writes buckets, `+Inf`,
    /// `_sum` and `_count` with its labels.
    #[test]
    fn table_and_histograms() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a family is listed twice");
        let mut out = String::new();
        let sample = Sample::Buckets {
            cumulative: vec![(0.001, 2), (0.01, 3)],
            count: 4,
            sum_s: 0.5,
        };
        write_sample(&mut out, "x_seconds", &[("shard", "0")], sample);
        assert_eq!(
            out,
            "x_seconds_bucket{shard=\"0\",le=\"0.001\"} 2\n\
             x_seconds_bucket{shard=\"0\",le=\"0.01\"} 3\n\
             x_seconds_bucket{shard=\"0\",le=\"+Inf\"} 4\n\
             x_seconds_sum{shard=\"0\"} 0.5\n\
             x_seconds_count{shard=\"0\"} 4\n"
        );
    }

    /// Kafka's API and error names come out as Kafka spells them.
    #[test]
    fn kafka_names() {
        assert_eq!(kafka_api_name(0), "Produce");
        assert_eq!(kafka_api_name(-7), "unknown");
        assert_eq!(kafka_error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(kafka_error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(kafka_error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(kafka_error_name(9999), "9999");
    }

    /// Label values are escaped.
    #[test]
    fn escapes_labels() {
        let mut out = String::new();
        write_line(&mut out, "m", &[("topic", "a\"b\\c")], 1.0);
        assert_eq!(out, "m{topic=\"a\\\"b\\\\c\"} 1\n");
    }
}
