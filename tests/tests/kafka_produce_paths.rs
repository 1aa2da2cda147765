//! Kafka produce as the broker answers it, byte for byte: an idempotent
//! producer's retried batch gets its original offsets and no error, an
//! older one DUPLICATE_SEQUENCE_NUMBER, a gap OUT_OF_ORDER_SEQUENCE_NUMBER;
//! acks=0 gets no response (and a failed one closes the connection); acks
//! out of range, unknown topics and a fenced partition get Kafka's codes.

mod kafka_support;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, MetadataRequest, ProduceRequest, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_support::raw::{batch, RawKafka};
use shoal_protocol::client::Client;
use shoal_protocol::messages::topic::TopicConfig;
use shoal_tests::{BrokerOptions, BrokerProcess};

const PRODUCE_V: i16 = 9;
const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_REQUIRED_ACKS: i16 = 21;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
const KAFKA_STORAGE_ERROR: i16 = 56;

fn produce(topic: &str, acks: i16, records: bytes::Bytes) -> RequestKind {
    let partition = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(records));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(vec![partition]);
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![topic]),
    )
}

/// (error code, base offset) of the only partition of a produce response.
fn outcome(response: ResponseKind) -> (i16, i64) {
    let ResponseKind::Produce(r) = response else {
        panic!("not a produce response: {response:?}")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn topic(broker: &BrokerProcess, name: &str) -> Client {
    let client = Client::connect(&broker.addr_string()).unwrap();
    client.create_topic(name, TopicConfig::default()).unwrap();
    client
}

fn log_end(client: &Client, topic: &str) -> u64 {
    client.topic_stats(topic).unwrap().partitions[0].log_end
}

#[test]
fn idempotent_retries_duplicates_and_gaps() {
    let broker = BrokerProcess::start();
    let client = topic(&broker, "idem");
    let mut k = RawKafka::connect(&broker.kafka_bootstrap());
    let ResponseKind::InitProducerId(init) = k.call(
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        ),
    ) else {
        panic!("not an InitProducerId response")
    };
    assert_eq!(init.error_code, NONE);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(pid >= 0 && epoch == 0, "{init:?}");

    let first = batch(&["a", "b", "c"], Some((pid, epoch, 0)));
    assert_eq!(
        outcome(k.call(ApiKey::Produce, PRODUCE_V, produce("idem", -1, first.clone()))),
        (NONE, 0)
    );
    let second = batch(&["d", "e"], Some((pid, epoch, 3)));
    assert_eq!(
        outcome(k.call(ApiKey::Produce, PRODUCE_V, produce("idem", -1, second))),
        (NONE, 3)
    );
    // The retry of a batch among the last five: its original offset, no error.
    assert_eq!(
        outcome(k.call(ApiKey::Produce, PRODUCE_V, produce("idem", -1, first.clone()))),
        (NONE, 0)
    );
    assert_eq!(log_end(&client, "idem"), 5, "the retry stored nothing");
    for seq in 5..10 {
        let one = batch(&["x"], Some((pid, epoch, seq)));
        let (code, _) = outcome(k.call(ApiKey::Produce, PRODUCE_V, produce("idem", 1, one)));
        assert_eq!(code, NONE);
    }
    // Now older than the five batches remembered.
    let (code, _) = outcome(k.call(ApiKey::Produce, PRODUCE_V, produce("idem", -1, first)));
    assert_eq!(code, DUPLICATE_SEQUENCE_NUMBER);
    let gap = batch(&["late"], Some((pid, epoch, 20)));
    let (code, _) = outcome(k.call(ApiKey::Produce, PRODUCE_V, produce("idem", -1, gap)));
    assert_eq!(code, OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_eq!(log_end(&client, "idem"), 10, "neither stored anything");
    // A bumped epoch (KIP-360) starts its sequences over.
    let ResponseKind::InitProducerId(bumped) = k.call(
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(pid.into())
                .with_producer_epoch(epoch),
        ),
    ) else {
        panic!("not an InitProducerId response")
    };
    assert_eq!((bumped.producer_id.0, bumped.producer_epoch), (pid, epoch + 1));
    let fresh = batch(&["y"], Some((pid, epoch + 1, 0)));
    assert_eq!(
        outcome(k.call(ApiKey::Produce, PRODUCE_V, produce("idem", -1, fresh))),
        (NONE, 10)
    );
}

#[test]
fn acks_unknown_topics_and_silent_produce() {
    let broker = BrokerProcess::start();
    let client = topic(&broker, "plain");
    let mut k = RawKafka::connect(&broker.kafka_bootstrap());
    let (code, _) = outcome(k.call(
        ApiKey::Produce,
        PRODUCE_V,
        produce("nope", -1, batch(&["v"], None)),
    ));
    assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION);
    let (code, _) = outcome(k.call(
        ApiKey::Produce,
        PRODUCE_V,
        produce("plain", 2, batch(&["v"], None)),
    ));
    assert_eq!(code, INVALID_REQUIRED_ACKS);
    // acks=0: no response; the next request's response comes first.
    k.send(ApiKey::Produce, 3, &produce("plain", 0, batch(&["quiet"], None)));
    let id = k.send(
        ApiKey::Metadata,
        9,
        &RequestKind::Metadata(MetadataRequest::default()),
    );
    assert!(matches!(
        k.receive(ApiKey::Metadata, 9, id),
        ResponseKind::Metadata(_)
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log_end(&client, "plain") < 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(log_end(&client, "plain"), 1, "the acks=0 record was stored");
    // acks=0 that fails closes the connection (the client reads no response).
    k.send(ApiKey::Produce, 3, &produce("nope", 0, batch(&["lost"], None)));
    assert!(
        k.is_closed_by_peer(),
        "a failed acks=0 produce closes the connection"
    );
}

/// The kernel refuses the partition's writes (a file-size limit, as a full
/// disk would): Kafka producers get KAFKA_STORAGE_ERROR, not a retryable
/// error, and what was acknowledged before stays readable.
#[test]
fn fenced_partition_is_kafka_storage_error() {
    let broker = BrokerProcess::start_with(BrokerOptions {
        config_toml: "[storage]\npreallocate_bytes = 0\n".into(),
        file_size_limit: Some(2 << 20),
        ..BrokerOptions::default()
    });
    let client = topic(&broker, "full");
    let mut k = RawKafka::connect(&broker.kafka_bootstrap());
    let value = "v".repeat(64 << 10);
    let values: Vec<&str> = vec![value.as_str(); 8];
    let mut acked = 0;
    let mut refused = None;
    for _ in 0..200 {
        match outcome(k.call(
            ApiKey::Produce,
            PRODUCE_V,
            produce("full", -1, batch(&values, None)),
        )) {
            (NONE, _) => acked += values.len() as u64,
            (code, _) => {
                refused = Some(code);
                break;
            }
        }
    }
    assert_eq!(refused, Some(KAFKA_STORAGE_ERROR), "after {acked} records");
    assert!(acked > 0);
    let (code, _) = outcome(k.call(
        ApiKey::Produce,
        PRODUCE_V,
        produce("full", -1, batch(&["again"], None)),
    ));
    assert_eq!(code, KAFKA_STORAGE_ERROR, "the partition stays fenced");
    let fetched = client.fetch("full", 0, 0, 1 << 20, 0).unwrap();
    assert!(!fetched.records.is_empty(), "acknowledged records stay readable");
}
