//! Producer state travels in the replicated log: records carrying message
//! ids, acknowledged by the leader with `acks = quorum`, then sent again to
//! the new leader after kill -9 of the old one (a producer retrying after
//! failover), are answered as duplicates of their first copies and not
//! stored again; a batch mixing old and new ids stores only the new ones.

mod cluster_support;

use std::sync::Arc;

use cluster_support::*;
use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, Producer, ProducerConfig, RecordAck};
use shoal_protocol::messages::produce::{Acks, Durability};

fn with_ids(ids: std::ops::Range<u32>) -> Vec<NewRecord> {
    ids.map(|i| NewRecord {
        timestamp_ms: 0,
        key: None,
        value: Some(format!("value-{i}").into_bytes()),
        headers: Vec::new(),
        message_id: Some(format!("id-{i}")),
    })
    .collect()
}

fn send(client: Arc<Client>, records: Vec<NewRecord>) -> Vec<RecordAck> {
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks: Acks::Quorum,
            timeout_ms: 5_000,
            ..ProducerConfig::default()
        },
    )
    .expect("producer");
    let acks = producer.send_all(TOPIC, records).expect("produce");
    producer.close();
    acks
}

#[test]
fn a_batch_retried_at_the_new_leader_is_not_stored_twice() {
    let mut cluster = Cluster::start();
    cluster.create_topic(replicated_topic());
    let all = [0, 1, 2];
    let old = cluster.wait_leader(&all);
    let first = send(pinned_client(&cluster.nodes[old]), with_ids(0..10));
    assert_eq!(first.len(), 10, "one ack per record: {first:?}");
    let offsets: Vec<u64> = first.iter().map(|a| a.offset.expect("an offset")).collect();
    assert!(first
        .iter()
        .all(|a| a.duplicate_of.is_none() && a.durability == Durability::Replicated));

    cluster.nodes[old].kill();
    let new = cluster.wait_leader(&others(old));
    let follow = following_client(&cluster.nodes[new]);
    let retried = send(follow.clone(), with_ids(0..10));
    assert_eq!(
        retried.len(),
        offsets.len(),
        "one ack per retried record: {retried:?}"
    );
    for (ack, &offset) in retried.iter().zip(&offsets) {
        assert_eq!(
            ack.duplicate_of,
            Some(offset),
            "a retried record was stored again: {ack:?}"
        );
        assert_eq!(ack.offset, Some(offset));
        assert_eq!(ack.durability, Durability::Replicated);
    }

    // Five old ids and five new: only the new are stored, right after the first ten.
    let mixed = send(follow, with_ids(5..15));
    assert_eq!(mixed.len(), 10, "one ack per record: {mixed:?}");
    for (i, ack) in mixed.iter().enumerate() {
        if i < 5 {
            assert_eq!(ack.duplicate_of, Some(offsets[5 + i]), "{ack:?}");
        } else {
            assert_eq!(ack.duplicate_of, None, "{ack:?}");
        }
    }
    let stored = read_all(&cluster.nodes[new]);
    let values: Vec<&String> = stored.values().collect();
    let expected: Vec<String> = (0..15).map(|i| format!("value-{i}")).collect();
    assert_eq!(
        values,
        expected.iter().collect::<Vec<_>>(),
        "each record stored once, in order"
    );
    cluster.stop();
}
