//! Kafka's admin and group-listing requests through real clients:
//! librdkafka's AdminClient creates topics (what Shoal can honour is
//! mapped, the rest refused with Kafka's codes) and deletes them; its
//! group listing (ListGroups to every broker, then DescribeGroups) sees
//! each Kafka and Shoal group once, for what it is; Metadata auto-creates
//! only when the broker allows it; OffsetFetch answers a Kafka group's
//! commit and refuses a Shoal group.

mod kafka_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, ListGroupsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest,
    RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_support::raw::RawKafka;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use shoal_protocol::client::{Client, GroupConsumer, GroupConsumerConfig};
use shoal_protocol::messages::topic::TopicConfig;
use shoal_tests::{BrokerOptions, BrokerProcess};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const TIMEOUT: Duration = Duration::from_secs(30);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

/// Runs an admin future to completion (librdkafka completes it from its
/// own thread; any executor will do).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Each topic's outcome: Ok, or the error code librdkafka reports.
fn outcomes(
    results: Vec<Result<String, (String, RDKafkaErrorCode)>>,
) -> Vec<(String, Option<RDKafkaErrorCode>)> {
    results
        .into_iter()
        .map(|r| match r {
            Ok(name) => (name, None),
            Err((name, code)) => (name, Some(code)),
        })
        .collect()
}

#[test]
fn admin_client_creates_and_deletes_topics() {
    let broker = BrokerProcess::start();
    let client = Client::connect(&broker.addr_string()).unwrap();
    let admin = admin(&broker.kafka_bootstrap());
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));

    let dry = block_on(
        admin.create_topics(
            &[NewTopic::new("dry", 2, TopicReplication::Fixed(1))],
            &AdminOptions::new()
                .operation_timeout(Some(TIMEOUT))
                .validate_only(true),
        ),
    )
    .expect("create_topics (validate only)");
    assert_eq!(outcomes(dry), vec![("dry".into(), None)]);
    assert!(
        client.describe_topic("dry").is_err(),
        "validate_only created the topic"
    );

    let made = NewTopic::new("made", 3, TopicReplication::Fixed(-1))
        .set("retention.ms", "60000")
        .set("cleanup.policy", "compact");
    let results = block_on(admin.create_topics(
        &[
            made,
            NewTopic::new("bad-rf", 1, TopicReplication::Fixed(3)),
            NewTopic::new("bad-config", 1, TopicReplication::Fixed(1)).set("segment.bytes", "1024"),
            NewTopic::new("bad name!", 1, TopicReplication::Fixed(1)),
        ],
        &options,
    ))
    .expect("create_topics");
    assert_eq!(
        outcomes(results),
        vec![
            ("made".into(), None),
            ("bad-rf".into(), Some(RDKafkaErrorCode::InvalidReplicationFactor)),
            ("bad-config".into(), Some(RDKafkaErrorCode::InvalidConfig)),
            ("bad name!".into(), Some(RDKafkaErrorCode::InvalidTopic)),
        ]
    );
    let described = client.describe_topic("made").expect("made exists");
    assert_eq!(
        (
            described.config.partitions,
            described.config.retention_ms,
            described.config.compacted
        ),
        (3, Some(60_000), true)
    );
    for refused in ["bad-rf", "bad-config"] {
        assert!(client.describe_topic(refused).is_err(), "{refused} was created");
    }
    let again =
        block_on(admin.create_topics(&[NewTopic::new("made", 3, TopicReplication::Fixed(1))], &options))
            .expect("create_topics again");
    assert_eq!(
        outcomes(again),
        vec![("made".into(), Some(RDKafkaErrorCode::TopicAlreadyExists))]
    );

    let deleted = block_on(admin.delete_topics(&["made"], &options)).expect("delete_topics");
    assert_eq!(outcomes(deleted), vec![("made".into(), None)]);
    assert!(client.describe_topic("made").is_err(), "made still exists");
    let twice = block_on(admin.delete_topics(&["made"], &options)).expect("delete_topics again");
    assert_eq!(
        outcomes(twice),
        vec![("made".into(), Some(RDKafkaErrorCode::UnknownTopicOrPartition))]
    );
}

fn metadata_for(k: &mut RawKafka, topic: &str) -> (i16, usize) {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))))
        ]))
        .with_allow_auto_topic_creation(true);
    let ResponseKind::Metadata(m) = k.call(ApiKey::Metadata, 9, RequestKind::Metadata(req)) else {
        panic!("not a Metadata response")
    };
    (m.topics[0].error_code, m.topics[0].partitions.len())
}

/// Off by default: a client asking is told the topic is unknown, and
/// nothing is created. On, the topic is created with
/// `kafka.default_partitions`, and a name Shoal refuses is
/// INVALID_TOPIC_EXCEPTION.
#[test]
fn auto_create_only_when_the_broker_allows_it() {
    let off = BrokerProcess::start();
    let mut k = RawKafka::connect(&off.kafka_bootstrap());
    assert_eq!(metadata_for(&mut k, "auto"), (UNKNOWN_TOPIC_OR_PARTITION, 0));
    let client = Client::connect(&off.addr_string()).unwrap();
    assert!(
        client.describe_topic("auto").is_err(),
        "created with auto-create off"
    );

    let on = BrokerProcess::start_with(BrokerOptions {
        config_toml: "[kafka]\nauto_create_topics = true\ndefault_partitions = 3\n".into(),
        ..BrokerOptions::default()
    });
    let mut k = RawKafka::connect(&on.kafka_bootstrap());
    assert_eq!(metadata_for(&mut k, "auto"), (0, 3));
    let client = Client::connect(&on.addr_string()).unwrap();
    assert_eq!(
        client
            .describe_topic("auto")
            .expect("auto created")
            .config
            .partitions,
        3
    );
    assert_eq!(metadata_for(&mut k, "bad name!"), (INVALID_TOPIC_EXCEPTION, 0));
}

/// Polls `consumer` until its group has given it partitions.
fn wait_assigned(consumer: &BaseConsumer) {
    let deadline = Instant::now() + TIMEOUT;
    while consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no assignment within {TIMEOUT:?}");
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            panic!("consumer error: {e}");
        }
    }
}

/// The groups ListGroups names on one connection.
fn listed(k: &mut RawKafka) -> Vec<(String, String)> {
    let ResponseKind::ListGroups(l) = k.call(
        ApiKey::ListGroups,
        4,
        RequestKind::ListGroups(ListGroupsRequest::default()),
    ) else {
        panic!("not a ListGroups response")
    };
    assert_eq!(l.error_code, 0);
    let mut groups: Vec<(String, String)> = l
        .groups
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.protocol_type.to_string()))
        .collect();
    groups.sort();
    groups
}

/// A live Kafka consumer group, a Shoal group and a Kafka group known only
/// by a committed offset, side by side on a two-shard broker:
/// librdkafka's group listing (ListGroups to each advertised broker, then
/// DescribeGroups) sees each once with its protocol type, state and
/// members; the shared port lists all of them, each shard's port the ones
/// it coordinates; OffsetFetch answers the Kafka group's durable commit
/// and refuses the Shoal group.
#[test]
fn kafka_and_shoal_groups_side_by_side() {
    let broker = BrokerProcess::start();
    assert_eq!(broker.kafka_shard_ports.len(), 2);
    let client = Arc::new(Client::connect(&broker.addr_string()).unwrap());
    client
        .create_topic(
            "orders",
            TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let _native = GroupConsumer::join(
        client.clone(),
        GroupConsumerConfig::new("native-billing", &["orders"]),
    )
    .unwrap();
    let bootstrap = broker.kafka_bootstrap();
    let live = kafka_support::group_consumer(&bootstrap, "kafka-live");
    live.subscribe(&["orders"]).unwrap();
    wait_assigned(&live);

    let mut k = RawKafka::connect(&bootstrap);
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("kafka-tool")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(1)
                .with_committed_offset(0)
                .with_committed_metadata(Some(s("from a tool")))])]);
    let ResponseKind::OffsetCommit(r) = k.call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit))
    else {
        panic!("not an OffsetCommit response")
    };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    // The shared port: every group once. Each shard's port: the groups it
    // coordinates, so that together they name each group exactly once.
    let all = listed(&mut k);
    assert_eq!(
        all,
        vec![
            ("kafka-live".into(), "consumer".into()),
            ("kafka-tool".into(), String::new()),
            ("native-billing".into(), "shoal".into()),
        ]
    );
    let mut per_broker: Vec<(String, String)> = broker
        .kafka_shard_ports
        .iter()
        .flat_map(|port| listed(&mut RawKafka::connect(&format!("127.0.0.1:{port}"))))
        .collect();
    per_broker.sort();
    assert_eq!(per_broker, all);

    // librdkafka's listing, from a client that is in no group.
    let lister = kafka_support::plain_consumer(&bootstrap);
    let groups = lister.fetch_group_list(None, TIMEOUT).expect("fetch_group_list");
    let mut seen: Vec<(String, String, String, usize)> = groups
        .groups()
        .iter()
        .map(|g| {
            (
                g.name().to_string(),
                g.protocol_type().to_string(),
                g.state().to_string(),
                g.members().len(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("kafka-live".into(), "consumer".into(), "Stable".into(), 1),
            ("kafka-tool".into(), String::new(), "Empty".into(), 0),
            ("native-billing".into(), "shoal".into(), "Stable".into(), 0),
        ]
    );
    let one = lister
        .fetch_group_list(Some("kafka-live"), TIMEOUT)
        .expect("fetch_group_list kafka-live");
    let [live_group] = one.groups() else {
        panic!("kafka-live listed {} times", one.groups().len())
    };
    assert_eq!(live_group.protocol(), "range");
    let member = &live_group.members()[0];
    assert!(
        member.client_host().starts_with("/127.0.0.1"),
        "{}",
        member.client_host()
    );
    assert!(
        member.assignment().is_some_and(|a| !a.is_empty()),
        "the member's assignment is described"
    );

    let fetch = |group: &str| {
        RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(None),
        )
    };
    let ResponseKind::OffsetFetch(f) = k.call(ApiKey::OffsetFetch, 7, fetch("kafka-tool")) else {
        panic!("not an OffsetFetch response")
    };
    assert_eq!(f.error_code, 0);
    let p = &f.topics[0].partitions[0];
    assert_eq!(
        (p.partition_index, p.committed_offset, p.metadata.as_deref()),
        (1, 0, Some("from a tool"))
    );
    let ResponseKind::OffsetFetch(f) = k.call(ApiKey::OffsetFetch, 7, fetch("native-billing")) else {
        panic!("not an OffsetFetch response")
    };
    assert_eq!(f.error_code, INCONSISTENT_GROUP_PROTOCOL);
    let stats = client.group_stats("kafka-tool").unwrap();
    assert_eq!(
        stats
            .partitions
            .iter()
            .map(|p| (p.partition, p.committed_offset))
            .collect::<Vec<_>>(),
        vec![(1, 0)]
    );
}
