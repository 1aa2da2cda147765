//! The cluster metadata log (issues 14 and 20): a topic created or deleted,
//! a user, token or ACL changed through any one node reaches every node; the same name created twice fails the
//! same way everywhere; a node that was down applies what it missed when
//! it returns; without a quorum of nodes no topic change happens.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::*;
use shoal_protocol::messages::security::{AclEntry, Operation, PatternKind, ResourceKind};
use shoal_protocol::messages::topic::TopicConfig;
use shoal_protocol::ErrorCode;

fn topic(rf: u32) -> TopicConfig {
    TopicConfig {
        partitions: 2,
        replication_factor: rf,
        ..TopicConfig::default()
    }
}

#[test]
fn topic_changes_reach_every_node_through_the_metadata_log() {
    let mut cluster = Cluster::start();
    let all = [0, 1, 2];

    // Created through node 2: every node serves it, and a replicated
    // produce through a leader-following client works on it.
    admin_client(&cluster.nodes[1])
        .create_topic("orders", topic(3))
        .expect("create through node 2");
    cluster.wait_topic(&all, "orders", true);

    // The same name again, through another node: refused, nowhere changed.
    let again = admin_client(&cluster.nodes[2]).create_topic("orders", topic(1));
    let err = again.expect_err("a second create of the same name fails");
    assert_eq!(err.code(), Some(ErrorCode::TopicExists), "{err}");

    // Node 3 goes down; a create and a delete still commit (2 of 3).
    cluster.nodes[2].kill();
    admin_client(&cluster.nodes[0])
        .create_topic("late", topic(3))
        .expect("create with one node down");
    admin_client(&cluster.nodes[1])
        .delete_topic("orders")
        .expect("delete with one node down");
    cluster.wait_topic(&[0, 1], "late", true);
    cluster.wait_topic(&[0, 1], "orders", false);

    // Node 3 returns with the old catalogue and catches up from the log.
    cluster.nodes[2].restart();
    cluster.wait_topic(&all, "late", true);
    cluster.wait_topic(&all, "orders", false);

    // Users, tokens and ACLs go through the metadata log too: changed
    // through three different nodes, identical on all of them.
    admin_client(&cluster.nodes[1])
        .upsert_user("alice", "alice-password", true)
        .expect("user create through node 2");
    let (token, info) = admin_client(&cluster.nodes[2])
        .create_token("alice")
        .expect("token through node 3");
    assert!(token.len() > 20, "the caller gets the token itself");
    let acl = AclEntry {
        principal: "User:alice".into(),
        kind: ResourceKind::Topic,
        pattern_kind: PatternKind::Prefix,
        pattern: "late".into(),
        operation: Operation::Produce,
    };
    admin_client(&cluster.nodes[0])
        .add_acl(acl.clone())
        .expect("ACL through node 1");
    let agreed = shoal_tests::wait_until(Duration::from_millis(WAIT_MS_MAX), || {
        all.iter().all(|&i| {
            let c = admin_client(&cluster.nodes[i]);
            c.list_users().is_ok_and(|u| u.contains(&"alice".to_string()))
                && c.list_tokens().is_ok_and(|t| t.iter().any(|t| t.id == info.id))
                && c.list_acls().is_ok_and(|a| a.contains(&acl))
        })
    });
    assert!(agreed, "users, tokens and ACLs did not reach every node");
    let again = admin_client(&cluster.nodes[2]).upsert_user("alice", "other", true);
    assert!(again.is_err(), "a second create of a user fails");

    // With two nodes down there is no quorum: the change is refused with
    // a retryable timeout and never applied.
    cluster.nodes[1].kill();
    cluster.nodes[2].kill();
    let started = Instant::now();
    let err = admin_client(&cluster.nodes[0])
        .create_topic("no-quorum", topic(1))
        .expect_err("no quorum, no topic");
    println!("without a quorum: {err} after {:?}", started.elapsed());
    assert_eq!(err.code(), Some(ErrorCode::Timeout), "{err}");
    assert_eq!(cluster.lists_topic(0, "no-quorum"), Some(false));

    // Back to three: the stuck proposal may still commit, but identically
    // on every node.
    cluster.nodes[1].restart();
    cluster.nodes[2].restart();
    // Time for a proposal still in the leader's log to commit.
    std::thread::sleep(Duration::from_secs(2));
    let agree = || {
        let seen: Vec<Option<bool>> = all.iter().map(|&i| cluster.lists_topic(i, "no-quorum")).collect();
        seen[0].is_some() && seen.iter().all(|s| *s == seen[0])
    };
    assert!(
        shoal_tests::wait_until(Duration::from_millis(WAIT_MS_MAX), agree),
        "nodes disagree on a topic: {:?}",
        all.iter()
            .map(|&i| cluster.lists_topic(i, "no-quorum"))
            .collect::<Vec<_>>()
    );
    cluster.wait_topic(&all, "late", true);
    cluster.stop();
}
