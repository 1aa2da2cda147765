//! Valid, populated requests of every served API and version, encoded the
//! way a Kafka client would: the corpus for the codec's tests, its fuzzer
//! and later end-to-end checks.
//!
//! Every array holds two elements (nested arrays too), strings are
//! non-empty, optional fields are set in the versions that carry them, and
//! flexible versions carry an unknown tagged field, so a walk or decode that
//! gets a field's presence, width or nesting wrong cannot pass.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::request_shape::is_flexible;
use super::supported_apis::SUPPORTED_APIS;

fn s(v: &'static str) -> StrBytes {
    StrBytes::from_static_str(v)
}

/// A populated request body for `key` at `version`.
pub fn sample_request(key: ApiKey, version: i16) -> RequestKind {
    let v = version;
    match key {
        ApiKey::Produce => RequestKind::Produce(produce()),
        ApiKey::Fetch => RequestKind::Fetch(fetch(v)),
        ApiKey::ListOffsets => RequestKind::ListOffsets(list_offsets(v)),
        ApiKey::Metadata => RequestKind::Metadata(metadata(v)),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(offset_commit(v)),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(offset_fetch(v)),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(find_coordinator(v)),
        ApiKey::JoinGroup => RequestKind::JoinGroup(join_group(v)),
        ApiKey::Heartbeat => RequestKind::Heartbeat(heartbeat(v)),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(leave_group(v)),
        ApiKey::SyncGroup => RequestKind::SyncGroup(sync_group(v)),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(s("g1")), GroupId(s("g2"))])
                .with_include_authorized_operations(v >= 3),
        ),
        ApiKey::ListGroups => {
            RequestKind::ListGroups(ListGroupsRequest::default().with_states_filter(if v >= 4 {
                vec![s("Stable"), s("Empty")]
            } else {
                vec![]
            }))
        }
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(if v >= 3 { s("shoal-test") } else { s("") })
                .with_client_software_version(if v >= 3 { s("1.0") } else { s("") }),
        ),
        ApiKey::CreateTopics => RequestKind::CreateTopics(create_topics(v)),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(delete_topics(v)),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(if v >= 3 { 7 } else { -1 }))
                .with_producer_epoch(if v >= 3 { 2 } else { -1 }),
        ),
        ApiKey::SaslHandshake => {
            RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256")))
        }
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default()
                .with_auth_bytes(bytes::Bytes::from_static(b"n,,n=alice,r=abc")),
        ),
        other => panic!("no sample for {other:?}"),
    }
}

fn produce() -> ProduceRequest {
    let partition = |i| {
        kafka_protocol::messages::produce_request::PartitionProduceData::default()
            .with_index(i)
            .with_records(Some(Bytes::from_static(b"opaque record batch bytes")))
    };
    let topic = |name| {
        kafka_protocol::messages::produce_request::TopicProduceData::default()
            .with_name(TopicName(s(name)))
            .with_partition_data(vec![partition(0), partition(1)])
    };
    ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![topic("orders"), topic("events")])
}

fn fetch(v: i16) -> FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    let partition = |i| {
        FetchPartition::default()
            .with_partition(i)
            .with_current_leader_epoch(if v >= 9 { 3 } else { -1 })
            .with_fetch_offset(1000 + i64::from(i))
            .with_last_fetched_epoch(if v >= 12 { 2 } else { -1 })
            .with_log_start_offset(if v >= 5 { 0 } else { -1 })
            .with_partition_max_bytes(1 << 20)
    };
    let topic = |name| {
        FetchTopic::default()
            .with_topic(TopicName(s(name)))
            .with_partitions(vec![partition(0), partition(1)])
    };
    let mut r = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_isolation_level(0)
        .with_topics(vec![topic("orders"), topic("events")]);
    if v >= 7 {
        r = r
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_forgotten_topics_data(vec![
                ForgottenTopic::default()
                    .with_topic(TopicName(s("old")))
                    .with_partitions(vec![4, 5]),
                ForgottenTopic::default()
                    .with_topic(TopicName(s("older")))
                    .with_partitions(vec![6]),
            ]);
    }
    if v >= 11 {
        r = r.with_rack_id(s("rack-a"));
    }
    if v >= 12 {
        r = r.with_cluster_id(Some(s("shoal-cluster")));
    }
    r
}

fn list_offsets(v: i16) -> ListOffsetsRequest {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let partition = |i| {
        ListOffsetsPartition::default()
            .with_partition_index(i)
            .with_current_leader_epoch(if v >= 4 { 1 } else { -1 })
            .with_timestamp(-2)
    };
    let topic = |name| {
        ListOffsetsTopic::default()
            .with_name(TopicName(s(name)))
            .with_partitions(vec![partition(0), partition(1)])
    };
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(if v >= 2 { 1 } else { 0 })
        .with_topics(vec![topic("orders"), topic("events")])
}

fn metadata(v: i16) -> MetadataRequest {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let topic = |name| MetadataRequestTopic::default().with_name(Some(TopicName(s(name))));
    MetadataRequest::default()
        .with_topics(Some(vec![topic("orders"), topic("events")]))
        .with_allow_auto_topic_creation(v < 4)
        .with_include_topic_authorized_operations(v >= 8)
}

fn offset_commit(v: i16) -> OffsetCommitRequest {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let partition = |i| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(i)
            .with_committed_offset(500 + i64::from(i))
            .with_committed_leader_epoch(if v >= 6 { 1 } else { -1 })
            .with_committed_metadata(Some(s("meta")))
    };
    let topic = |name| {
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(name)))
            .with_partitions(vec![partition(0), partition(1)])
    };
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s("group-1")))
        .with_generation_id_or_member_epoch(4)
        .with_member_id(s("member-1"))
        .with_group_instance_id(if v >= 7 { Some(s("instance-1")) } else { None })
        .with_retention_time_ms(if v <= 4 { 86_400_000 } else { -1 })
        .with_topics(vec![topic("orders"), topic("events")])
}

fn offset_fetch(v: i16) -> OffsetFetchRequest {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let topic = |name| {
        OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(name)))
            .with_partition_indexes(vec![0, 1])
    };
    OffsetFetchRequest::default()
        .with_group_id(GroupId(s("group-1")))
        .with_topics(Some(vec![topic("orders"), topic("events")]))
        .with_require_stable(v >= 7)
}

fn find_coordinator(v: i16) -> FindCoordinatorRequest {
    let r = FindCoordinatorRequest::default().with_key_type(0);
    if v >= 4 {
        r.with_coordinator_keys(vec![s("group-1"), s("group-2")])
    } else {
        r.with_key(s("group-1"))
    }
}

fn join_group(v: i16) -> JoinGroupRequest {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    let protocol = |name| {
        JoinGroupRequestProtocol::default()
            .with_name(s(name))
            .with_metadata(Bytes::from_static(b"\x00\x01subscription"))
    };
    JoinGroupRequest::default()
        .with_group_id(GroupId(s("group-1")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(if v >= 1 { 30_000 } else { -1 })
        .with_member_id(s(""))
        .with_group_instance_id(if v >= 5 { Some(s("instance-1")) } else { None })
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol("range"), protocol("roundrobin")])
        .with_reason(if v >= 8 { Some(s("joining")) } else { None })
}

fn sync_group(v: i16) -> SyncGroupRequest {
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    let assignment = |member| {
        SyncGroupRequestAssignment::default()
            .with_member_id(s(member))
            .with_assignment(Bytes::from_static(b"\x00\x01assignment"))
    };
    SyncGroupRequest::default()
        .with_group_id(GroupId(s("group-1")))
        .with_generation_id(3)
        .with_member_id(s("member-1"))
        .with_group_instance_id(if v >= 3 { Some(s("instance-1")) } else { None })
        .with_protocol_type(if v >= 5 { Some(s("consumer")) } else { None })
        .with_protocol_name(if v >= 5 { Some(s("range")) } else { None })
        .with_assignments(vec![assignment("member-1"), assignment("member-2")])
}

fn heartbeat(v: i16) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(s("group-1")))
        .with_generation_id(3)
        .with_member_id(s("member-1"))
        .with_group_instance_id(if v >= 3 { Some(s("instance-1")) } else { None })
}

fn leave_group(v: i16) -> LeaveGroupRequest {
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    let r = LeaveGroupRequest::default().with_group_id(GroupId(s("group-1")));
    if v <= 2 {
        return r.with_member_id(s("member-1"));
    }
    let member = |id| {
        MemberIdentity::default()
            .with_member_id(s(id))
            .with_group_instance_id(Some(s("instance-1")))
            .with_reason(if v >= 5 { Some(s("bye")) } else { None })
    };
    r.with_members(vec![member("member-1"), member("member-2")])
}

fn create_topics(v: i16) -> CreateTopicsRequest {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
    };
    let topic = |name| {
        CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(vec![
                CreatableReplicaAssignment::default()
                    .with_partition_index(0)
                    .with_broker_ids(vec![BrokerId(0), BrokerId(1)]),
                CreatableReplicaAssignment::default()
                    .with_partition_index(1)
                    .with_broker_ids(vec![BrokerId(1), BrokerId(0)]),
            ])
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("60000"))),
                CreatableTopicConfig::default()
                    .with_name(s("cleanup.policy"))
                    .with_value(None),
            ])
    };
    CreateTopicsRequest::default()
        .with_topics(vec![topic("orders"), topic("events")])
        .with_timeout_ms(30_000)
        .with_validate_only(v >= 1)
}

fn delete_topics(v: i16) -> DeleteTopicsRequest {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    let r = DeleteTopicsRequest::default().with_timeout_ms(30_000);
    if v >= 6 {
        r.with_topics(vec![
            DeleteTopicState::default().with_name(Some(TopicName(s("orders")))),
            DeleteTopicState::default().with_name(Some(TopicName(s("events")))),
        ])
    } else {
        r.with_topic_names(vec![TopicName(s("orders")), TopicName(s("events"))])
    }
}

/// `body` as a complete request frame (length prefix, header, body), with
/// an unknown tagged field in flexible versions.
pub fn encode_request_frame(key: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> BytesMut {
    let mut header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("shoal-sample")));
    let flexible = is_flexible(key, version).unwrap_or(false);
    if flexible {
        header = header.with_unknown_tagged_field(9, Bytes::from_static(b"tag"));
    }
    let mut out = BytesMut::new();
    out.put_i32(0);
    header
        .encode(&mut out, key.request_header_version(version))
        .expect("sample header encodes");
    body.encode(&mut out, version)
        .unwrap_or_else(|e| panic!("sample {key:?} v{version} encodes: {e}"));
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// A frame for every served API at every served version, with its key and
/// version.
pub fn all_sample_frames() -> Vec<(ApiKey, i16, BytesMut)> {
    let mut out = Vec::new();
    for api in SUPPORTED_APIS {
        for version in api.min..=api.max {
            let body = sample_request(api.key, version);
            let frame = encode_request_frame(api.key, version, 1000 + version as i32, &body);
            out.push((api.key, version, frame));
        }
    }
    out
}
