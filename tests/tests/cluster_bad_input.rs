//! Bad input on the node-to-node port closes that connection and nothing
//! else: garbage, an oversized frame, a bad CRC, a hello from another
//! cluster or an unknown node, an unknown message type, a second hello and
//! silence each end their own connection, while a well-behaved peer's link
//! stays up and clients keep being served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_broker::cluster::wire::{Hello, LinkMessage, Ping};
use shoal_protocol::frame::{encode_frame_head, FrameDecoder};
use shoal_tests::{free_port, shoal_cli, BrokerOptions, BrokerProcess};

const CLUSTER: &str = "bad-input-test";
/// Longest a refused or bad connection may stay open (the broker's hello
/// deadline is 5 s; everything else closes at once).
const CLOSE_WAIT_MS_MAX: u64 = 8_000;

fn hello(cluster: &str, node: u32) -> Vec<u8> {
    LinkMessage::Hello(Hello {
        cluster_id: cluster.into(),
        node_id: node,
        shard: 0,
        shard_count: 1,
        client_addr: "127.0.0.1:1".into(),
    })
    .encode()
    .unwrap()
    .to_vec()
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the node port");
    s.set_read_timeout(Some(Duration::from_millis(CLOSE_WAIT_MS_MAX)))
        .unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads one node-link message from `s`.
fn read_message(s: &mut TcpStream) -> LinkMessage {
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read a reply");
        assert!(n > 0, "the broker closed instead of replying");
        let mut input = &buf[..n];
        if let Some(frame) = decoder.decode(&mut input).expect("a valid frame") {
            return LinkMessage::decode(&frame).expect("a node-link message");
        }
    }
}

/// Asserts the broker closes `s` (EOF or reset) within the bound, and
/// returns how long it took.
fn assert_closed(mut s: TcpStream, what: &str) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("{what}: the connection is still open after {CLOSE_WAIT_MS_MAX} ms")
            }
            Err(_) => return start.elapsed(),
        }
    }
}

fn cluster_status(http_port: u16) -> serde_json::Value {
    ureq::get(&format!("http://127.0.0.1:{http_port}/cluster"))
        .timeout(Duration::from_secs(5))
        .call()
        .expect("GET /cluster")
        .into_json()
        .expect("JSON")
}

#[test]
fn bad_input_on_the_node_port_closes_only_that_connection() {
    let node_port = free_port();
    let absent_peer_port = free_port();
    let mut broker = BrokerProcess::start_with(BrokerOptions {
        shards: 1,
        args: vec![
            "--node-id".into(),
            "1".into(),
            "--cluster-id".into(),
            CLUSTER.into(),
            "--peer".into(),
            format!("2@127.0.0.1:{absent_peer_port}"),
            "--node-listen".into(),
            format!("127.0.0.1:{node_port}"),
        ],
        ..BrokerOptions::default()
    });

    // A well-behaved peer: node 2 says hello and pings, from a thread.
    let mut good = connect(node_port);
    good.write_all(&hello(CLUSTER, 2)).unwrap();
    assert_eq!(
        read_message(&mut good),
        LinkMessage::Welcome(shoal_broker::cluster::wire::Welcome { node_id: 1 })
    );
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = {
        let stop = stop.clone();
        let mut good = good.try_clone().unwrap();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let ping = LinkMessage::Ping(Ping { sent_ms: 0 }).encode().unwrap();
                good.write_all(&ping).expect("the good link stays open");
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    // Refused hellos get the reason, then the connection closes.
    for (cluster, node, reason) in [
        ("another-cluster", 2, "cluster id"),
        (CLUSTER, 9, "not a configured peer"),
        (CLUSTER, 1, "not a configured peer"),
    ] {
        let mut s = connect(node_port);
        s.write_all(&hello(cluster, node)).unwrap();
        match read_message(&mut s) {
            LinkMessage::Refused(r) => assert!(r.reason.contains(reason), "{}", r.reason),
            other => panic!("hello from {cluster}/{node} was answered {other:?}"),
        }
        assert_closed(s, "refused hello");
    }

    // Garbage, oversized and damaged frames, unknown types, a second
    // hello: each closes its connection.
    let mut garbage = vec![0u8; 4096];
    rand::Rng::fill(&mut rand::thread_rng(), &mut garbage[..]);
    // Not a TLS record's first byte: a plaintext node port counts what looks
    // like a TLS handshake as refused (a node with [cluster.tls]), not bad.
    garbage[0] = 0;
    let mut oversized = encode_frame_head(1, 1, 0, 0, &[0u8; 8], 0).unwrap().to_vec();
    oversized[0..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
    let mut bad_crc = hello(CLUSTER, 2);
    bad_crc[20] ^= 0xff;
    let unknown = encode_frame_head(77, 1, 0, 0, &[0u8; 8], 0).unwrap().to_vec();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage", garbage, false),
        ("oversized frame", oversized, false),
        ("bad meta CRC", bad_crc, false),
        ("unknown message type first", unknown.clone(), false),
        ("unknown message type after the hello", unknown, true),
        ("second hello", hello(CLUSTER, 2), true),
    ];
    for (what, bytes, after_hello) in cases {
        let mut s = connect(node_port);
        if after_hello {
            s.write_all(&hello(CLUSTER, 2)).unwrap();
            assert!(matches!(read_message(&mut s), LinkMessage::Welcome(_)), "{what}");
        }
        let _ = s.write_all(&bytes);
        let took = assert_closed(s, what);
        assert!(
            took < Duration::from_millis(2_000),
            "{what}: closed only after {took:?}"
        );
    }
    // A peer that says nothing is closed at the hello deadline.
    let silent = connect(node_port);
    let took = assert_closed(silent, "silent connection");
    assert!(
        took >= Duration::from_millis(4_000),
        "closed after {took:?}, before the hello deadline"
    );

    // The good link is still up and the broker still serves clients.
    let status = cluster_status(broker.http_port);
    let node2 = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == 2)
        .expect("node 2 listed")
        .clone();
    assert_eq!(node2["alive"], true, "{status}");
    assert_eq!(status["hellos_refused"], 3, "{status}");
    assert!(status["bad_connections"].as_u64().unwrap() >= 7, "{status}");
    assert!(!pinger.is_finished(), "the good link failed");
    // (Node 2 is this test, not a broker: without its vote no topic change
    // commits, so the check is a read.)
    let (ok, out, err) = shoal_cli(&broker, &["topic", "list"], "");
    assert!(ok, "{out} {err}");
    stop.store(true, Ordering::Relaxed);
    pinger.join().unwrap();

    // `shoal cluster status` shows the same nodes.
    let http = format!("127.0.0.1:{}", broker.http_port);
    let (ok, out, err) = shoal_cli(&broker, &["cluster", "status", "--http", &http], "");
    assert!(ok, "{err}");
    assert!(out.contains(CLUSTER) && out.lines().count() == 4, "{out}");
    broker.terminate();
}

/// Without cluster flags the broker is a single node: no node port,
/// `GET /cluster` says so.
#[test]
fn single_node_has_no_cluster() {
    let broker = BrokerProcess::start_with(BrokerOptions {
        shards: 1,
        ..BrokerOptions::default()
    });
    let status = cluster_status(broker.http_port);
    assert_eq!(status["enabled"], false, "{status}");
    let (ok, out, _) = shoal_cli(
        &broker,
        &[
            "cluster",
            "status",
            "--http",
            &format!("127.0.0.1:{}", broker.http_port),
        ],
        "",
    );
    assert!(ok && out.contains("not a cluster"), "{out}");
}
