//! Helpers shared by the `delivery_*` tests: topics with a retry policy,
//! producing keyed records, group consumers with short timeouts, and raw
//! group requests (for fencing, where the test must control heartbeats).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{
    Client, ConsumedRecord, GroupConsumer, GroupConsumerConfig, Producer, ProducerConfig,
};
use shoal_protocol::codec::Request;
use shoal_protocol::error::ProtocolError;
use shoal_protocol::messages::stats::GroupStatsResponse;
use shoal_protocol::messages::topic::{RetryPolicy, TopicConfig};
use shoal_tests::{BrokerOptions, BrokerProcess};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A broker without storm protection: the breaker never opens and the retry
/// budget allows every retry (for tests that fail records on purpose and
/// are not about storms).
pub fn broker_without_storm_limits() -> BrokerProcess {
    BrokerProcess::start_with(BrokerOptions {
        config_toml: "[delivery]\nbreaker_failure_permille = 1000\nretry_budget_permille = 1000\n".into(),
        ..BrokerOptions::default()
    })
}

pub fn client(broker: &BrokerProcess) -> Arc<Client> {
    Arc::new(Client::connect(&broker.addr_string()).expect("connect"))
}

pub fn retry(max_attempts: u32, base_ms: u32, max_ms: u32, ordered: bool) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff_base_ms: base_ms,
        backoff_max_ms: max_ms,
        dead_letter: true,
        ordered_retry: ordered,
    }
}

pub fn create_topic(client: &Client, name: &str, partitions: u32, retry: RetryPolicy) {
    let config = TopicConfig {
        partitions,
        retry,
        ..TopicConfig::default()
    };
    client.create_topic(name, config).expect("create topic");
}

/// Produces `(key, value)` records; returns `(partition, offset)` of each, in order.
pub fn produce(client: &Arc<Client>, topic: &str, records: &[(String, String)]) -> Vec<(u32, u64)> {
    let producer = Producer::new(client.clone(), ProducerConfig::default()).expect("producer");
    let acks = producer
        .send_all(
            topic,
            records
                .iter()
                .map(|(k, v)| NewRecord {
                    timestamp_ms: now_ms(),
                    key: Some(k.as_bytes().to_vec()),
                    value: Some(v.as_bytes().to_vec()),
                    ..NewRecord::default()
                })
                .collect(),
        )
        .expect("produce");
    producer.close();
    acks.into_iter()
        .map(|a| (a.partition, a.offset.expect("offset")))
        .collect()
}

pub fn consumer(client: &Arc<Client>, group: &str, topic: &str, session_ms: u32) -> GroupConsumer {
    let mut config = GroupConsumerConfig::new(group, &[topic]);
    config.session_timeout_ms = session_ms;
    config.max_wait_ms = 200;
    GroupConsumer::join(client.clone(), config).expect("join")
}

pub fn value(r: &ConsumedRecord) -> String {
    String::from_utf8(r.value.clone().unwrap_or_default()).expect("utf8 value")
}

pub fn stats(client: &Client, group: &str) -> GroupStatsResponse {
    client.group_stats(group).expect("group stats")
}

/// Sends one request to the group's coordinator.
pub fn call<R: Request>(client: &Client, group: &str, request: &R) -> Result<R::Response, ProtocolError> {
    Ok(client.group_connection(group)?.call(request, &[], 2_000)?.message)
}

/// Runs `step` until it returns true or `timeout` passes; panics with `what` on timeout.
pub fn until(timeout: Duration, what: &str, mut step: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if step() {
            return;
        }
    }
    panic!("timed out waiting for {what}");
}
