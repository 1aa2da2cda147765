//! The three-node cluster the `cluster_*` tests share: three `shoald`
//! processes on loopback (`--shards 1` each), optionally with every
//! node-to-node link through a [`proxy::LinkProxy`] the test can cut; the
//! leader as each node's `GET /cluster` reports it; quorum produce; reads
//! of one node's own view; and the invariants every test checks.

#![allow(dead_code)] // each test binary uses its own part of this

pub mod proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, ClientConfig, ConnectionConfig, Producer, ProducerConfig};
use shoal_protocol::messages::offsets::OffsetSpec;
use shoal_protocol::messages::produce::{Acks, Durability};
use shoal_protocol::messages::topic::TopicConfig;
use shoal_tests::{free_port, BrokerOptions, BrokerProcess, FixedPorts};

use proxy::LinkProxy;

pub const TOPIC: &str = "replicated";
const CLUSTER: &str = "replication-test";
/// Bound on waiting for a leader or a catch-up.
pub const WAIT_MS_MAX: u64 = 30_000;
/// Nodes in every test cluster.
pub const NODES: usize = 3;

/// (offset, value) of every acknowledged record.
pub type Acked = BTreeMap<u64, String>;

pub struct Cluster {
    pub nodes: Vec<BrokerProcess>,
    /// `links[a][b]`: the proxy node `a` dials to reach node `b` (none on
    /// the diagonal, none at all without proxies).
    links: Vec<Vec<Option<LinkProxy>>>,
}

impl Cluster {
    /// Three nodes linked directly.
    pub fn start() -> Cluster {
        Cluster::start_with(false, "")
    }

    /// Three nodes; with `proxied`, every link goes through a proxy.
    /// `config_toml` is added to every node's configuration.
    pub fn start_with(proxied: bool, config_toml: &str) -> Cluster {
        Cluster::start_with_each(proxied, |_| config_toml.to_string())
    }

    /// Three nodes linked directly whose restarts keep their client ports,
    /// as a supervisor restarts a service (clients keep their bootstrap
    /// addresses).
    pub fn start_fixed_ports() -> Cluster {
        Cluster::start_nodes(false, true, |_| String::new())
    }

    /// Three nodes; node `i` (0-based) gets `config_of(i)` added to its
    /// configuration (its own certificate, say).
    pub fn start_with_each(proxied: bool, config_of: impl Fn(usize) -> String) -> Cluster {
        Cluster::start_nodes(proxied, false, config_of)
    }

    fn start_nodes(proxied: bool, fixed_ports: bool, config_of: impl Fn(usize) -> String) -> Cluster {
        let node_ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
        let links: Vec<Vec<Option<LinkProxy>>> = (0..NODES)
            .map(|a| {
                (0..NODES)
                    .map(|b| {
                        let target: SocketAddr = format!("127.0.0.1:{}", node_ports[b]).parse().unwrap();
                        (proxied && a != b).then(|| LinkProxy::start(free_port(), target))
                    })
                    .collect()
            })
            .collect();
        let nodes = (0..NODES)
            .map(|i| {
                let mut args = vec![
                    "--node-id".to_string(),
                    (i + 1).to_string(),
                    "--cluster-id".into(),
                    CLUSTER.into(),
                    "--node-listen".into(),
                    format!("127.0.0.1:{}", node_ports[i]),
                ];
                for j in (0..NODES).filter(|&j| j != i) {
                    let port = links[i][j].as_ref().map_or(node_ports[j], |p| p.addr.port());
                    args.push("--peer".into());
                    args.push(format!("{}@127.0.0.1:{port}", j + 1));
                }
                BrokerProcess::start_with(BrokerOptions {
                    shards: 1,
                    args,
                    config_toml: config_of(i),
                    fixed_ports: fixed_ports.then(|| FixedPorts::pick(1)),
                    ..BrokerOptions::default()
                })
            })
            .collect();
        Cluster { nodes, links }
    }

    /// Creates the replicated topic through one node (the metadata log
    /// takes it to the others) and waits until every node serves it.
    pub fn create_topic(&self, config: TopicConfig) {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.create_topic_on(&all, config);
    }

    /// Creates the replicated topic through node 1 and waits until the
    /// nodes of `among` serve it (the others may be cut off).
    pub fn create_topic_on(&self, among: &[usize], config: TopicConfig) {
        admin_client(&self.nodes[0])
            .create_topic(TOPIC, config)
            .expect("create through node 1");
        self.wait_topic(among, TOPIC, true);
    }

    /// Whether node `i` lists `topic` (`GET /topics`; `None`: no answer).
    pub fn lists_topic(&self, i: usize, topic: &str) -> Option<bool> {
        let url = format!("http://127.0.0.1:{}/topics", self.nodes[i].http_port);
        let doc: serde_json::Value = ureq::get(&url)
            .timeout(Duration::from_secs(2))
            .call()
            .ok()?
            .into_json()
            .ok()?;
        let topics = doc.as_array().or_else(|| doc["topics"].as_array())?;
        Some(topics.iter().any(|t| t["name"] == topic || t == topic))
    }

    /// Waits until every node of `among` lists `topic` (or, with `present`
    /// false, none does); panics after [`WAIT_MS_MAX`].
    pub fn wait_topic(&self, among: &[usize], topic: &str, present: bool) {
        let done = shoal_tests::wait_until(Duration::from_millis(WAIT_MS_MAX), || {
            among.iter().all(|&i| self.lists_topic(i, topic) == Some(present))
        });
        let seen: Vec<_> = among
            .iter()
            .map(|&i| (i + 1, self.lists_topic(i, topic)))
            .collect();
        assert!(
            done,
            "topic {topic} present={present} not reached on every node: {seen:?}"
        );
    }

    /// The index of a node whose replica leads, per its own `/cluster`.
    pub fn leader(&self, among: &[usize]) -> Option<usize> {
        among.iter().copied().find(|&i| {
            let url = format!("http://127.0.0.1:{}/cluster", self.nodes[i].http_port);
            let Ok(reply) = ureq::get(&url).timeout(Duration::from_secs(2)).call() else {
                return false;
            };
            let doc: serde_json::Value = reply.into_json().unwrap_or_default();
            doc["partitions"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["topic"] == TOPIC && p["role"] == "leader"))
        })
    }

    /// Each node's (role, term) of the topic's partition 0, from its own
    /// `/cluster` (`None` for a node that did not answer within 1 s).
    pub fn roles(&self, among: &[usize]) -> Vec<(usize, Option<(String, u64)>)> {
        among
            .iter()
            .map(|&i| {
                let url = format!("http://127.0.0.1:{}/cluster", self.nodes[i].http_port);
                let role = ureq::get(&url)
                    .timeout(Duration::from_secs(1))
                    .call()
                    .ok()
                    .and_then(|r| r.into_json::<serde_json::Value>().ok())
                    .and_then(|doc| {
                        let p = doc["partitions"]
                            .as_array()?
                            .iter()
                            .find(|p| p["topic"] == TOPIC)?
                            .clone();
                        Some((p["role"].as_str()?.to_string(), p["term"].as_u64()?))
                    });
                (i, role)
            })
            .collect()
    }

    /// Asserts no two nodes of `among` lead in the same term (split brain).
    pub fn assert_one_leader_per_term(&self, among: &[usize]) {
        let leaders: Vec<(usize, u64)> = self
            .roles(among)
            .into_iter()
            .filter_map(|(i, r)| r.filter(|(role, _)| role == "leader").map(|(_, t)| (i, t)))
            .collect();
        for (a, ta) in &leaders {
            for (b, tb) in &leaders {
                assert!(
                    a == b || ta != tb,
                    "nodes {} and {} both lead term {ta}",
                    a + 1,
                    b + 1
                );
            }
        }
    }

    /// Waits (bounded) until node `i` no longer leads, asserting at every
    /// look that no two nodes of `among` lead one term.
    pub fn wait_stepped_down(&self, i: usize, among: &[usize], what: &str) {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        while self.leader(&[i]).is_some() {
            self.assert_one_leader_per_term(among);
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Keeps producing batches of 10 records tagged `tag` through `client`
    /// until `fault_ms` have passed since `since` (the fault began): every
    /// batch must be acknowledged, since a majority is up, and after each no
    /// two nodes of `majority` may lead one term. Returns the rounds
    /// produced and how long after `since` the first acknowledgement came.
    pub fn produce_through_fault(
        &self,
        client: &Arc<Client>,
        acked: &mut Acked,
        majority: &[usize],
        since: Instant,
        fault_ms: u64,
        tag: &str,
    ) -> (usize, Duration) {
        let mut first_ack = None;
        let mut rounds = 0;
        while since.elapsed() < Duration::from_millis(fault_ms) {
            let got = produce_with(client.clone(), &batch(&format!("{tag}{rounds}"), 10), 2_000)
                .unwrap_or_else(|e| {
                    panic!("the majority must serve during the fault ({tag} round {rounds}): {e}")
                });
            record_acks(acked, got);
            first_ack.get_or_insert(since.elapsed());
            self.assert_one_leader_per_term(majority);
            rounds += 1;
        }
        (
            rounds,
            first_ack.expect("the majority acknowledged during the fault"),
        )
    }

    pub fn wait_leader(&self, among: &[usize]) -> usize {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        loop {
            if let Some(i) = self.leader(among) {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader among {among:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP: the node freezes with its sockets open.
    pub fn pause(&self, i: usize) {
        signal(self.nodes[i].pid(), libc::SIGSTOP);
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&self, i: usize) {
        signal(self.nodes[i].pid(), libc::SIGCONT);
    }

    /// Black-holes every link to and from node `i`.
    pub fn isolate(&self, i: usize) {
        for (a, b) in self.links_of(i) {
            self.links[a][b].as_ref().expect("a proxied cluster").cut();
        }
    }

    /// Lets every link to and from node `i` through again.
    pub fn reconnect(&self, i: usize) {
        for (a, b) in self.links_of(i) {
            self.links[a][b].as_ref().expect("a proxied cluster").heal();
        }
    }

    fn links_of(&self, i: usize) -> Vec<(usize, usize)> {
        (0..NODES)
            .filter(|&j| j != i)
            .flat_map(|j| [(i, j), (j, i)])
            .collect()
    }

    /// Waits until node `i` reports a high watermark of at least `end`.
    pub fn wait_caught_up(&self, i: usize, end: u64) {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        loop {
            let hw = pinned_client(&self.nodes[i])
                .list_offset(TOPIC, 0, OffsetSpec::Latest)
                .map_or(0, |(hw, _)| hw);
            if hw >= end {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not catch up: high watermark {hw}, acknowledged end {end}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The invariants, once every node in `up` caught up to `acked`:
    /// every acknowledged record sits at its acknowledged offset on each of
    /// them, and no offset holds two different records on any two nodes.
    pub fn check_invariants(&self, up: &[usize], acked: &Acked) {
        let end = acked.keys().last().map_or(0, |o| o + 1);
        for &i in up {
            self.wait_caught_up(i, end);
        }
        let views: Vec<(usize, BTreeMap<u64, String>)> =
            up.iter().map(|&i| (i, read_all(&self.nodes[i]))).collect();
        for (i, view) in &views {
            assert_has_acked(view, acked, &format!("node {}", i + 1));
            for (offset, value) in view {
                for (j, other) in &views {
                    if let Some(v) = other.get(offset) {
                        assert_eq!(
                            v,
                            value,
                            "offset {offset} holds two different records (nodes {} and {})",
                            i + 1,
                            j + 1
                        );
                    }
                }
            }
        }
    }

    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    let rc = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

/// Client settings for a cluster under faults: a paused node must not
/// hold a call for the default 30 s.
pub fn fault_client_config(follow_leader: bool) -> ClientConfig {
    ClientConfig {
        connection: ConnectionConfig {
            connect_timeout_ms: 1_000,
            request_timeout_ms: 1_000,
            ..ConnectionConfig::default()
        },
        follow_leader,
        ..ClientConfig::default()
    }
}

/// A client bootstrapped on `node` that follows the leader (redirects),
/// with the fault timeouts.
pub fn following_client(node: &BrokerProcess) -> Arc<Client> {
    Arc::new(Client::with_config(&node.addr_string(), fault_client_config(true)).expect("connect"))
}

/// A client that talks to `node` only: no redirect to the leader, so
/// reads show that node's own view and produce to a follower is refused.
pub fn pinned_client(node: &BrokerProcess) -> Arc<Client> {
    Arc::new(Client::with_config(&node.addr_string(), fault_client_config(false)).expect("connect"))
}

/// A client for topic changes through `node`: the default 30 s request
/// timeout (a change commits through the metadata log and opens the
/// partitions before it answers) and no retries, so each call is one
/// proposal and its own answer.
pub fn admin_client(node: &BrokerProcess) -> Arc<Client> {
    let config = ClientConfig {
        retries_max: 0,
        follow_leader: false,
        ..ClientConfig::default()
    };
    Arc::new(Client::with_config(&node.addr_string(), config).expect("connect"))
}

pub fn records(values: &[String]) -> Vec<NewRecord> {
    values
        .iter()
        .map(|v| NewRecord {
            timestamp_ms: 0,
            key: None,
            value: Some(v.clone().into_bytes()),
            headers: Vec::new(),
            message_id: None,
        })
        .collect()
}

/// Produces `values` through `client` with acks quorum; returns (offset,
/// value) per record, or the error.
pub fn produce_with(
    client: Arc<Client>,
    values: &[String],
    timeout_ms: u32,
) -> Result<Vec<(u64, String)>, String> {
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks: Acks::Quorum,
            timeout_ms,
            ..ProducerConfig::default()
        },
    )
    .map_err(|e| format!("starting the producer: {e}"))?;
    let acks = producer
        .send_all(TOPIC, records(values))
        .map_err(|e| e.to_string());
    producer.close();
    acks?
        .into_iter()
        .zip(values)
        .map(|(a, v)| {
            if a.durability != Durability::Replicated {
                return Err(format!("acked with durability {:?}", a.durability));
            }
            Ok((a.offset.expect("an offset"), v.clone()))
        })
        .collect()
}

/// Produces to `node` only (no redirect).
pub fn produce(node: &BrokerProcess, values: &[String]) -> Result<Vec<(u64, String)>, String> {
    produce_with(pinned_client(node), values, 2_000)
}

/// Produces `rounds` batches of 10 records tagged `tag` through `client`
/// (acks quorum, 5 s timeout); each must be acknowledged, and is added to
/// `acked`.
pub fn produce_rounds(client: &Arc<Client>, acked: &mut Acked, tag: &str, rounds: usize) {
    for round in 0..rounds {
        let got = produce_with(client.clone(), &batch(&format!("{tag}{round}"), 10), 5_000)
            .unwrap_or_else(|e| panic!("produce ({tag} round {round}): {e}"));
        record_acks(acked, got);
    }
}

/// Adds acknowledged records, asserting no offset was acknowledged twice.
pub fn record_acks(acked: &mut Acked, got: Vec<(u64, String)>) {
    for (offset, value) in got {
        if let Some(before) = acked.insert(offset, value.clone()) {
            panic!("offset {offset} acknowledged twice: {before:?} and {value:?}");
        }
    }
}

/// Every record of the topic on `node` from its log start (retention may
/// have moved it) to its high watermark.
pub fn read_all(node: &BrokerProcess) -> BTreeMap<u64, String> {
    let c = pinned_client(node);
    let mut out = BTreeMap::new();
    let (mut offset, _) = c.list_offset(TOPIC, 0, OffsetSpec::Earliest).expect("log start");
    for _ in 0..100_000 {
        let f = c.fetch(TOPIC, 0, offset, 1 << 20, 0).expect("fetch");
        if f.records.is_empty() {
            break;
        }
        for r in f.records {
            out.insert(r.offset, String::from_utf8(r.value.unwrap()).unwrap());
        }
        offset = f.next_offset;
    }
    out
}

pub fn assert_has_acked(on: &BTreeMap<u64, String>, acked: &Acked, what: &str) {
    for (offset, value) in acked {
        assert_eq!(
            on.get(offset),
            Some(value),
            "{what}: acknowledged offset {offset}"
        );
    }
}

/// Every node of the cluster but `i`.
pub fn others(i: usize) -> Vec<usize> {
    (0..NODES).filter(|&j| j != i).collect()
}

pub fn batch(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

pub fn replicated_topic() -> TopicConfig {
    TopicConfig {
        partitions: 1,
        replication_factor: 3,
        ..TopicConfig::default()
    }
}
