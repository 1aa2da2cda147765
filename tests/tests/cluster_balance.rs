//! Leader balancing (issue 15): leaders spread over the nodes by placement
//! (each partition's preferred replica); a node that dies loses its
//! leaderships to the others, and when it returns it takes them back,
//! paced, by itself; `shoal cluster rebalance-leaders --dry-run` lists
//! what waits and why, and without `--dry-run` starts the moves at once.

mod cluster_support;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_support::*;
use shoal_protocol::messages::topic::TopicConfig;
use shoal_tests::{shoal_cli, wait_until};

const SPREAD: &str = "spread";
const PARTITIONS: u32 = 6;

/// partition -> (leading node, its preferred leader), from the nodes of
/// `among` that say they lead it.
fn leaders(cluster: &Cluster, among: &[usize]) -> BTreeMap<u64, (u64, u64)> {
    let mut out = BTreeMap::new();
    for &i in among {
        let url = format!("http://127.0.0.1:{}/cluster", cluster.nodes[i].http_port);
        let Ok(reply) = ureq::get(&url).timeout(Duration::from_secs(2)).call() else {
            continue;
        };
        let doc: serde_json::Value = reply.into_json().unwrap_or_default();
        for p in doc["partitions"].as_array().into_iter().flatten() {
            if p["topic"] == SPREAD && p["role"] == "leader" {
                let partition = p["partition"].as_u64().unwrap();
                let preferred = p["preferred_leader"].as_u64().unwrap();
                out.insert(partition, (i as u64 + 1, preferred));
            }
        }
    }
    out
}

/// Whether every partition is led, by its preferred replica.
fn all_preferred(cluster: &Cluster, among: &[usize]) -> bool {
    let led = leaders(cluster, among);
    led.len() == PARTITIONS as usize && led.values().all(|(node, preferred)| node == preferred)
}

#[test]
fn leaders_spread_and_return_to_a_node_that_comes_back() {
    let mut cluster = Cluster::start_fixed_ports();
    let all = [0, 1, 2];
    admin_client(&cluster.nodes[0])
        .create_topic(
            SPREAD,
            TopicConfig {
                partitions: PARTITIONS,
                replication_factor: 3,
                ..TopicConfig::default()
            },
        )
        .expect("create");
    cluster.wait_topic(&all, SPREAD, true);

    // Elections pick leaders at random; balancing moves each to its
    // preferred replica, and placement spreads those over the nodes.
    assert!(
        wait_until(Duration::from_secs(40), || all_preferred(&cluster, &all)),
        "leaders not at their preferred replicas: {:?}",
        leaders(&cluster, &all)
    );
    let per_node = leaders(&cluster, &all)
        .values()
        .fold(BTreeMap::new(), |mut m, (node, _)| {
            *m.entry(*node).or_insert(0) += 1;
            m
        });
    println!("leaders per node: {per_node:?}");
    assert_eq!(per_node.len(), 3, "every node leads some partition: {per_node:?}");

    // Node 1 dies: the others take its leaderships.
    let node1_preferred: Vec<u64> = leaders(&cluster, &all)
        .iter()
        .filter(|(_, (_, preferred))| *preferred == 1)
        .map(|(p, _)| *p)
        .collect();
    assert!(!node1_preferred.is_empty(), "node 1 is preferred for none");
    cluster.nodes[0].kill();
    let survivors = [1, 2];
    assert!(
        wait_until(Duration::from_secs(30), || leaders(&cluster, &survivors).len()
            == PARTITIONS as usize),
        "the survivors did not take every leadership: {:?}",
        leaders(&cluster, &survivors)
    );
    // A dry run on a survivor lists the moves back to node 1, waiting.
    let holder = leaders(&cluster, &survivors)[&node1_preferred[0]].0 as usize - 1;
    let http = format!("127.0.0.1:{}", cluster.nodes[holder].http_port);
    let (ok, out, err) = shoal_cli(
        &cluster.nodes[holder],
        &["cluster", "rebalance-leaders", "--dry-run", "--http", &http],
        "",
    );
    println!("{out}");
    assert!(ok, "{out} {err}");
    assert!(out.contains("(dry run)") && out.contains("-> node 1"), "{out}");
    // Node 1 is gone: not alive, or (its last frame under 2 s old) behind.
    assert!(out.contains("waiting:") && !out.contains("(started)"), "{out}");

    // Node 1 returns: it takes its leaderships back by itself, paced.
    cluster.nodes[0].restart();
    assert!(
        wait_until(Duration::from_secs(60), || all_preferred(&cluster, &all)),
        "node 1 did not get its leaderships back: {:?}",
        leaders(&cluster, &all)
    );
    // On demand: nothing is left to move.
    let (ok, out, err) = shoal_cli(
        &cluster.nodes[holder],
        &["cluster", "rebalance-leaders", "--http", &http],
        "",
    );
    assert!(ok, "{out} {err}");
    assert!(out.starts_with("0 of 0"), "{out}");
    cluster.stop();
}
