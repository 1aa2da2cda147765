//! Shared by the Kafka end-to-end tests: librdkafka producers and consumers
//! (through the `rdkafka` crate) configured for a test broker, and the
//! bookkeeping of what was produced and consumed.

#![allow(dead_code)]

pub mod raw;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

/// An acknowledged record: (partition, offset, payload).
pub type Acked = (i32, i64, Vec<u8>);

/// Delivery reports of a producer: every acknowledged record, and the
/// errors.
#[derive(Default, Clone)]
pub struct Deliveries {
    pub acked: Arc<Mutex<Vec<Acked>>>,
    pub errors: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => self.acked.lock().unwrap().push((
                m.partition(),
                m.offset(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Err((e, _)) => self.errors.lock().unwrap().push(e.to_string()),
        }
    }
}

/// A producer for `bootstrap`: idempotent, acks=all, the given codec.
pub fn producer(bootstrap: &str, compression: &str) -> BaseProducer<Deliveries> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.codec", compression)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create_with_context(Deliveries::default())
        .expect("producer")
}

/// Sends every record (retrying while librdkafka's queue is full) and
/// waits until each is acknowledged or failed; panics on a failure.
pub fn produce_all(producer: &BaseProducer<Deliveries>, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) {
    for (key, value) in records {
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "send: {e}"
                    );
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(90)).expect("flush");
    let ctx = producer.context();
    let errors = ctx.errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "delivery errors: {:?}",
        &errors[..errors.len().min(5)]
    );
}

/// A consumer in `group` (no auto commit; earliest when nothing committed).
pub fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer")
}

/// A consumer outside any group (assign, no commits).
pub fn plain_consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-no-commits")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// One consumed record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp_ms: Option<i64>,
}

pub fn own<M: Message>(m: &M) -> Consumed {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    Consumed {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: m.timestamp().to_millis(),
    }
}

/// Polls until `n` records arrived or `timeout` passed; panics on an error.
pub fn consume_n(consumer: &BaseConsumer, n: usize, timeout: Duration) -> Vec<Consumed> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(own(&m)),
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}
