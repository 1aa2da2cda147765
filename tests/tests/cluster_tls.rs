//! Mutual TLS on the node links (`[cluster.tls]`, issue 20), with
//! certificates made at test time by rcgen; three `shoald` processes on
//! loopback (`--shards 1` each):
//! - nodes whose certificates the cluster CA signed bring every link up
//!   and replicate a topic (RF 3, acks quorum) to all three;
//! - a node whose certificate another CA signed is refused both ways: its
//!   links never come up, the others count the refusal and say why, and it
//!   holds none of the records the other two acknowledge;
//! - a plaintext node and TLS nodes refuse each other, each saying why;
//! - with `[cluster.tls]` a node may bind its node port to a non-loopback
//!   address (plaintext there needs `security.insecure`).

mod cluster_support;
mod security_support;

use std::time::Duration;

use cluster_support::*;
use security_support::{Ca, Pki};
use shoal_tests::{free_port, wait_until, BrokerOptions, BrokerProcess};

/// The `[cluster.tls]` section for a node whose certificate `ca` signs,
/// trusting the cluster CA (`pki`'s).
fn node_tls_toml(pki: &Pki, ca: &Ca, name: &str) -> String {
    let (cert, key) = ca.node(name, &["127.0.0.1", "localhost"]);
    format!(
        "[cluster.tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n",
        pki.write(&format!("{name}.pem"), &cert),
        pki.write(&format!("{name}.key"), &key),
        pki.path("ca.pem")
    )
}

fn status(node: &BrokerProcess) -> serde_json::Value {
    ureq::get(&format!("http://127.0.0.1:{}/cluster", node.http_port))
        .timeout(Duration::from_secs(5))
        .call()
        .expect("GET /cluster")
        .into_json()
        .expect("JSON")
}

/// `node`'s link to node `peer_id` (1-based): its state and the refusal.
fn link(node: &BrokerProcess, peer_id: u64) -> (String, String) {
    let doc = status(node);
    let peer = doc["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node_id"] == peer_id)
        .unwrap_or_else(|| panic!("node {peer_id} listed: {doc}"))
        .clone();
    (
        peer["link"].as_str().unwrap_or("").to_string(),
        peer["refused"].as_str().unwrap_or("").to_string(),
    )
}

/// Waits (bounded) until `node`'s link to `peer_id` is `state` with a
/// refusal containing `reason`; panics with the last state seen.
fn wait_link(node: &BrokerProcess, peer_id: u64, state: &str, reason: &str, what: &str) {
    let mut last = (String::new(), String::new());
    let reached = wait_until(Duration::from_millis(WAIT_MS_MAX), || {
        last = link(node, peer_id);
        last.0 == state && last.1.contains(reason)
    });
    assert!(reached, "{what}: wanted {state} ({reason:?}), last saw {last:?}");
}

/// Waits (bounded) until `node` counted a refused inbound connection
/// whose reason contains `reason`.
fn wait_refusal_counted(node: &BrokerProcess, reason: &str, what: &str) {
    let mut last = serde_json::Value::Null;
    let counted = wait_until(Duration::from_millis(WAIT_MS_MAX), || {
        last = status(node);
        last["hellos_refused"].as_u64().unwrap_or(0) >= 1
            && last["last_inbound_refusal"]
                .as_str()
                .is_some_and(|r| r.contains(reason))
    });
    assert!(counted, "{what}: no refusal {reason:?} counted: {last}");
}

/// Three nodes with certificates from the cluster CA: every link comes up
/// over mutual TLS and a quorum produce reaches all three.
#[test]
fn mutual_tls_cluster_replicates_a_quorum_produce() {
    let pki = Pki::new();
    let mut cluster =
        Cluster::start_with_each(false, |i| node_tls_toml(&pki, &pki.ca, &format!("node{}", i + 1)));
    let all = [0, 1, 2];
    for i in all {
        for j in others(i) {
            wait_link(&cluster.nodes[i], j as u64 + 1, "up", "", "a cluster-CA link");
        }
    }
    cluster.create_topic(replicated_topic());
    let leader = cluster.wait_leader(&all);
    let mut acked = Acked::new();
    produce_rounds(&following_client(&cluster.nodes[leader]), &mut acked, "tls", 10);
    assert_eq!(acked.len(), 100);
    cluster.check_invariants(&all, &acked);
    for node in &cluster.nodes {
        let doc = status(node);
        assert_eq!(doc["hellos_refused"], 0, "{doc}");
    }
    cluster.stop();
}

/// Node 3's certificate is signed by another CA (it trusts the cluster
/// CA): nodes 1 and 2 refuse it in both directions and replicate without it.
#[test]
fn a_node_signed_by_another_ca_is_refused() {
    let pki = Pki::new();
    let rogue = Ca::new("another CA");
    let mut cluster = Cluster::start_with_each(false, |i| {
        let ca = if i == 2 { &rogue } else { &pki.ca };
        node_tls_toml(&pki, ca, &format!("node{}", i + 1))
    });
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    wait_link(n1, 2, "up", "", "node 1 to node 2");
    wait_link(n2, 1, "up", "", "node 2 to node 1");
    // Dialling node 3, nodes 1 and 2 refuse its server certificate.
    for (node, what) in [(n1, "node 1 to node 3"), (n2, "node 2 to node 3")] {
        wait_link(node, 3, "refused", "not signed by the cluster CA", what);
    }
    // Node 3 dialling them: its client certificate is refused; they count it.
    for peer in [1, 2] {
        wait_link(
            n3,
            peer,
            "refused",
            "refused this node's certificate",
            "node 3's links",
        );
    }
    wait_refusal_counted(n1, "not signed by the cluster CA", "node 1");
    wait_refusal_counted(n2, "not signed by the cluster CA", "node 2");

    cluster.create_topic_on(&[0, 1], replicated_topic());
    let leader = cluster.wait_leader(&[0, 1]);
    let mut acked = Acked::new();
    produce_rounds(&following_client(&cluster.nodes[leader]), &mut acked, "two", 5);
    cluster.check_invariants(&[0, 1], &acked);
    // Not even the topic reached it (the metadata log is replicated over
    // the same links), so it holds no records either.
    assert_eq!(
        cluster.lists_topic(2, TOPIC),
        Some(false),
        "the refused node got the topic"
    );
    assert!(cluster.leader(&[2]).is_none(), "the refused node leads");
    for peer in [1, 2] {
        let (state, reason) = link(n3, peer);
        assert_eq!(state, "refused", "node 3's link to node {peer} came up: {reason}");
        let view = status(&cluster.nodes[peer as usize - 1]);
        let node3 = view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node_id"] == 3)
            .cloned();
        assert_eq!(
            node3.unwrap()["alive"],
            false,
            "node {peer} heard from node 3: {view}"
        );
    }
    cluster.stop();
}

/// Node 3 has no `[cluster.tls]`: the TLS nodes refuse its plaintext hello
/// with a reason its status shows, and it refuses their handshakes.
#[test]
fn plaintext_and_tls_nodes_refuse_each_other() {
    let pki = Pki::new();
    let mut cluster = Cluster::start_with_each(false, |i| match i {
        2 => String::new(),
        _ => node_tls_toml(&pki, &pki.ca, &format!("node{}", i + 1)),
    });
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    wait_link(n1, 2, "up", "", "node 1 to node 2");
    for peer in [1, 2] {
        wait_link(
            n3,
            peer,
            "refused",
            "require mutual TLS",
            "plaintext node 3's links",
        );
    }
    for (node, what) in [(n1, "node 1 to node 3"), (n2, "node 2 to node 3")] {
        wait_link(node, 3, "refused", "[cluster.tls]", what);
    }
    wait_refusal_counted(n1, "plaintext on a TLS node port", "node 1");
    wait_refusal_counted(n3, "TLS handshake on a plaintext node port", "node 3");
    cluster.stop();
}

/// With `[cluster.tls]` a node binds its node port to 0.0.0.0 without
/// `security.insecure` (the config test covers the refusal without it).
#[test]
fn node_tls_allows_a_non_loopback_node_port() {
    let pki = Pki::new();
    let node = BrokerProcess::start_with(BrokerOptions {
        shards: 1,
        args: vec![
            "--node-id".into(),
            "1".into(),
            "--cluster-id".into(),
            "exposed".into(),
            "--node-listen".into(),
            format!("0.0.0.0:{}", free_port()),
            "--peer".into(),
            format!("2@127.0.0.1:{}", free_port()),
        ],
        config_toml: node_tls_toml(&pki, &pki.ca, "node1"),
        ..BrokerOptions::default()
    });
    assert_eq!(status(&node)["enabled"], true);
}
