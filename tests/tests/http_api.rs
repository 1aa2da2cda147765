//! The HTTP/JSON API of a running `shoald`, driven with a real HTTP client
//! (ureq) and raw sockets: topic admin, publish (single, batch, keyed,
//! base64, dedup), partition poll with long-poll, replay by offset and by
//! timestamp, health, Prometheus `/metrics` through a text-format parser,
//! and the error contract (bad JSON, unknown topic/route, oversized bodies,
//! slow request heads).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, Producer, ProducerConfig};
use shoal_protocol::partitioner::partition_for_key;
use shoal_tests::{wait_until, BrokerOptions, BrokerProcess, Metrics};

/// The HTTP body cap the broker enforces (`shoal_broker::http::HTTP_BODY_BYTES_MAX`).
const BODY_BYTES_MAX: usize = 8 << 20;

struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    fn new(broker: &BrokerProcess) -> Http {
        Http {
            base: format!("http://127.0.0.1:{}", broker.http_port),
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build(),
        }
    }

    /// Sends `body` (JSON, or raw text when it is a string starting with `RAW:`)
    /// and returns the status and the parsed JSON reply.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = self.agent.request(method, &format!("{}{path}", self.base));
        let result = match body {
            Some(Value::String(s)) if s.starts_with("RAW:") => req
                .set("content-type", "application/json")
                .send_string(&s["RAW:".len()..]),
            Some(v) => req.send_json(v),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().expect("reply body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    fn text(&self, path: &str) -> String {
        self.agent
            .get(&format!("{}{path}", self.base))
            .call()
            .expect("GET")
            .into_string()
            .expect("body")
    }
}

fn create_topic(http: &Http, name: &str, partitions: u32) {
    let (status, body) = http.post("/topics", json!({"name": name, "partitions": partitions}));
    assert_eq!(status, 201, "{body}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Topics can be created, listed, described and deleted; conflicts and
/// unknown names get their documented status and code.
#[test]
fn topic_admin() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    create_topic(&http, "orders", 3);
    let (status, body) = http.post("/topics", json!({"name": "orders", "partitions": 1}));
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("topic_exists")),
        "{body}"
    );
    let (status, body) = http.get("/topics");
    assert_eq!(status, 200);
    assert_eq!(body["topics"][0]["name"], "orders");
    assert_eq!(body["topics"][0]["partitions"], 3);
    let (status, body) = http.get("/topics/orders");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(body["config"]["flush"], "always");
    let (status, body) = http.call("DELETE", "/topics/orders", None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = http.get("/topics/orders");
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_topic")));
    assert_eq!(body["error_code"], 1);
    let (status, body) = http.post("/topics", json!({"name": "x", "partitions": 1, "bogus": 1}));
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_json")), "{body}");
    let (status, body) = http.post("/topics", json!({"name": "x", "flush": "sometimes"}));
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}

/// Publish places records by explicit partition, key hash or round robin,
/// replies with offsets and durability per record, stores message ids once,
/// and poll returns exactly what was published (UTF-8 and base64).
#[test]
fn publish_and_poll() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    create_topic(&http, "events", 4);
    let (status, body) = http.post(
        "/topics/events/messages",
        json!({"key": "user-7", "value": "hello", "headers": {"trace": "t1"}}),
    );
    assert_eq!(status, 200, "{body}");
    let first = &body["records"][0];
    let p = partition_for_key(b"user-7", 4);
    assert_eq!(first["partition"], p);
    assert_eq!(first["offset"], 0);
    assert_eq!(first["durability"], "fsynced");

    let records: Vec<Value> = (0..10)
        .map(|i| json!({"key": "user-7", "value": format!("v{i}"), "message_id": format!("m{i}")}))
        .collect();
    let (status, body) = http.post("/topics/events/messages", json!({ "records": records }));
    assert_eq!(status, 200, "{body}");
    let offsets: Vec<u64> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, (1..=10).collect::<Vec<_>>());

    // The same message id again is a duplicate at its original offset.
    let (status, body) = http.post(
        "/topics/events/messages",
        json!({"key": "user-7", "value": "again", "message_id": "m3"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["records"][0]["offset"], 4);
    assert_eq!(body["records"][0]["duplicate"], true);

    let (status, body) = http.get(&format!("/topics/events/poll?partition={p}&offset=0&max=100"));
    assert_eq!(status, 200, "{body}");
    let got = body["records"].as_array().unwrap();
    assert_eq!(got.len(), 11, "{body}");
    assert_eq!(got[0]["value"], "hello");
    assert_eq!(got[0]["headers"]["trace"], "t1");
    assert_eq!(got[10]["value"], "v9");
    assert_eq!(got[10]["message_id"], "m9");
    assert_eq!(body["next_offset"], 11);
    let (_, body) = http.get(&format!("/topics/events/poll?partition={p}&offset=5&max=2"));
    let vals: Vec<&str> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    assert_eq!(vals, ["v4", "v5"]);
    assert_eq!(body["next_offset"], 7);

    // Binary values travel as base64 both ways; explicit partitions are kept.
    let (status, body) = http.post(
        "/topics/events/messages",
        json!({"partition": 2, "value": "AP8Q", "encoding": "base64"}),
    );
    assert_eq!(status, 200, "{body}");
    let off = body["records"][0]["offset"].as_u64().unwrap();
    let (_, body) = http.get(&format!("/topics/events/poll?partition=2&offset={off}"));
    assert_eq!(
        body["records"][0]["encoding"], "base64",
        "not UTF-8, so base64: {body}"
    );
    assert_eq!(body["records"][0]["value"], "AP8Q");

    // Unkeyed records spread over partitions.
    let unkeyed: Vec<Value> = (0..8).map(|i| json!({"value": format!("u{i}")})).collect();
    let (_, body) = http.post("/topics/events/messages", json!({ "records": unkeyed }));
    let mut parts: Vec<u64> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["partition"].as_u64().unwrap())
        .collect();
    parts.sort();
    parts.dedup();
    assert_eq!(parts, [0, 1, 2, 3], "{body}");
}

/// A poll at the log end waits for the next record instead of returning
/// empty, and returns it once it is published.
#[test]
fn poll_long_polls() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    create_topic(&http, "wait", 1);
    let base = http.base.clone();
    // Every scrape counts itself among the HTTP requests received.
    let requests = || {
        Metrics::scrape(broker.http_port)
            .expect("scrape")
            .sum("shoal_http_requests_total")
    };
    let before = requests();
    let poller = std::thread::spawn(move || {
        let url = format!("{base}/topics/wait/poll?partition=0&offset=0&wait_ms=20000");
        ureq::get(&url)
            .call()
            .expect("poll")
            .into_json::<Value>()
            .expect("json")
    });
    // Publish only once the broker has the poll (it is then waiting at the
    // log end), so the record can only reach the poller through the wait.
    let mut scrapes = 0.0;
    let arrived = wait_until(Duration::from_secs(10), || {
        scrapes += 1.0;
        requests() - before - scrapes >= 1.0
    });
    assert!(arrived, "the poll never reached the broker");
    assert!(
        !poller.is_finished(),
        "the poll returned before anything was published"
    );
    let (status, _) = http.post("/topics/wait/messages", json!({"value": "late"}));
    assert_eq!(status, 200);
    let body = poller.join().unwrap();
    assert_eq!(body["records"][0]["value"], "late", "{body}");
}

/// Replay re-reads from an offset or from a timestamp, for one partition or all.
#[test]
fn replay_by_offset_and_timestamp() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    create_topic(&http, "audit", 2);
    let early: Vec<Value> = (0..5)
        .map(|i| json!({"partition": 0, "value": format!("early{i}")}))
        .collect();
    http.post("/topics/audit/messages", json!({ "records": early }));
    // The early records were stamped by now: the cut is the next millisecond.
    let cut = shoal_tests::wall_ms_after(now_ms());
    let late: Vec<Value> = (0..3)
        .map(|i| json!({"partition": i % 2, "value": format!("late{i}")}))
        .collect();
    http.post("/topics/audit/messages", json!({ "records": late }));

    let (status, body) = http.post("/topics/audit/replay", json!({"partition": 0, "offset": 3}));
    assert_eq!(status, 200, "{body}");
    let vals: Vec<&str> = body["partitions"][0]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    assert_eq!(vals, ["early3", "early4", "late0", "late2"]);

    let (status, body) = http.post("/topics/audit/replay", json!({"timestamp_ms": cut}));
    assert_eq!(status, 200, "{body}");
    let mut vals: Vec<String> = body["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["value"].as_str().unwrap().to_string())
        })
        .collect();
    vals.sort();
    assert_eq!(vals, ["late0", "late1", "late2"], "{body}");

    let (status, body) = http.post("/topics/audit/replay", json!({"offset": 1, "timestamp_ms": cut}));
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")));
}

/// Malformed input gets a JSON error with a stable code and the right
/// status, and never takes the connection's shard down.
#[test]
fn errors_are_json_with_stable_codes() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    create_topic(&http, "t", 2);
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/topics/t/messages",
            Some(json!("RAW:{\"value\": ")),
            400,
            "bad_json",
        ),
        ("POST", "/topics/t/messages", Some(json!("RAW:")), 400, "bad_json"),
        (
            "POST",
            "/topics/t/messages",
            Some(json!({"value": "x", "vaule": "typo"})),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/topics/t/messages",
            Some(json!({"value": "x", "acks": "all"})),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/topics/t/messages",
            Some(json!({"value": "!", "encoding": "base64"})),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/topics/t/messages",
            Some(json!({"records": []})),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/topics/t/messages",
            Some(json!({"partition": 9, "value": "x"})),
            404,
            "unknown_partition",
        ),
        (
            "POST",
            "/topics/nope/messages",
            Some(json!({"value": "x"})),
            404,
            "unknown_topic",
        ),
        (
            "GET",
            "/topics/nope/poll?partition=0&offset=0",
            None,
            404,
            "unknown_topic",
        ),
        ("GET", "/topics/t/poll?partition=0", None, 400, "invalid_request"),
        (
            "GET",
            "/topics/t/poll?partition=0&offset=abc",
            None,
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/topics/t/poll?partition=5&offset=0",
            None,
            404,
            "unknown_partition",
        ),
        (
            "GET",
            "/topics/t/poll?partition=0&offset=99",
            None,
            400,
            "offset_out_of_range",
        ),
        ("DELETE", "/topics/nope", None, 404, "unknown_topic"),
        ("GET", "/no/such/route", None, 404, "unknown_route"),
        (
            "PUT",
            "/topics/t/messages",
            Some(json!({})),
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, want_status, want_code) in cases {
        let (status, reply) = http.call(method, path, body.clone());
        assert_eq!(status, want_status, "{method} {path} {body:?}: {reply}");
        assert_eq!(reply["code"], want_code, "{method} {path} {body:?}: {reply}");
        assert!(reply["error_code"].is_u64(), "{reply}");
        assert!(!reply["message"].as_str().unwrap_or("").is_empty(), "{reply}");
    }
    let (status, _) = http.get("/healthz");
    assert_eq!(status, 200, "the broker still serves after bad input");
}

/// A connection over its publish byte rate gets its throttle time in the
/// reply, and a publish sent before that time passes is refused with 429.
#[test]
fn publish_quota_throttles_with_429() {
    let broker = BrokerProcess::start_with(BrokerOptions {
        config_toml: "[limits]\nproduce_bytes_per_sec_max = 1000\n".into(),
        ..BrokerOptions::default()
    });
    let http = Http::new(&broker);
    create_topic(&http, "q", 1);
    let big = json!({"value": "x".repeat(2000)});
    let (status, body) = http.post("/topics/q/messages", big.clone());
    assert_eq!(status, 200, "the publish over the rate is still served: {body}");
    assert!(body["throttle_time_ms"].as_u64().unwrap() > 0, "{body}");
    let resp = http
        .agent
        .post(&format!("{}/topics/q/messages", http.base))
        .send_json(big);
    match resp {
        Err(ureq::Error::Status(429, r)) => {
            assert!(r.header("retry-after").is_some(), "429 carries Retry-After");
            let body: Value = r.into_json().unwrap();
            assert_eq!(body["code"], "throttled", "{body}");
            assert_eq!(body["error_code"], 11, "{body}");
        }
        other => panic!("expected 429, got {other:?}"),
    }
}

/// A request without a body reserves nothing from the shard's receive
/// pool. Regression: every bodiless request (health probes, `/metrics`,
/// long polls) used to reserve the 8 MiB body cap, so with a pool smaller
/// than that none was ever answered, and with a larger one a few parked
/// long polls held the pool that large native frames need.
#[test]
fn bodiless_requests_reserve_no_receive_pool() {
    let broker = BrokerProcess::start_with(BrokerOptions {
        shards: 1,
        config_toml: "[limits]\nframe_bytes_max = 2097152\nconnection_inflight_bytes_max = 2097152\n\
                      shard_inflight_bytes_max = 4194304\nreceive_pool_bytes_max = 4194304\n"
            .into(),
        ..BrokerOptions::default()
    });
    let http = Http {
        agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build(),
        ..Http::new(&broker)
    };
    assert_eq!(http.get("/healthz").0, 200);
    assert!(http.text("/metrics").contains("shoal_receive_pool_free_bytes"));
    create_topic(&http, "idle", 1);
    let base = http.base.clone();
    let poller = std::thread::spawn(move || {
        let url = format!("{base}/topics/idle/poll?partition=0&offset=0&wait_ms=4000");
        ureq::get(&url)
            .call()
            .expect("poll")
            .into_json::<Value>()
            .expect("json")
    });
    // A native produce of a frame over one read chunk (it reserves from the
    // pool) is served while the long poll waits, and wakes it.
    let started = Instant::now();
    let client = std::sync::Arc::new(Client::connect(&broker.addr_string()).expect("connect"));
    let producer = Producer::new(
        client,
        ProducerConfig {
            linger_ms: 0,
            ..ProducerConfig::default()
        },
    )
    .expect("producer");
    let record = NewRecord {
        value: Some(vec![b'x'; 200 << 10]),
        ..NewRecord::default()
    };
    producer.send_all("idle", vec![record]).expect("large produce");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the large produce waited {:?}",
        started.elapsed()
    );
    let body = poller.join().expect("poller");
    assert_eq!(body["records"].as_array().map(Vec::len), Some(1), "{body}");
}

/// Reads one HTTP response head and body from a raw socket (Content-Length framed).
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).expect("read response");
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + len {
                let status = text[9..12].parse().unwrap();
                return (status, text[head_end + 4..head_end + 4 + len].to_string());
            }
        }
    }
}

/// A body over the cap is refused with 413, whether its length is declared
/// up front or only discovered while a chunked body streams in.
#[test]
fn oversized_bodies_are_refused() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    create_topic(&http, "big", 1);
    let addr = format!("127.0.0.1:{}", broker.http_port);

    let mut s = TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /topics/big/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        BODY_BYTES_MAX + 1
    );
    s.write_all(head.as_bytes()).unwrap();
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"code\":\"body_too_large\""), "{body}");

    let mut s = TcpStream::connect(&addr).unwrap();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let head = "POST /topics/big/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let _ = writer.write_all(head.as_bytes());
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..(BODY_BYTES_MAX >> 20) + 2 {
            // The broker stops reading once over the cap; later writes may fail.
            if writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || writer.write_all(&chunk).is_err()
                || writer.write_all(b"\r\n").is_err()
            {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 413, "{body}");
    sender.join().unwrap();

    // A body just under the cap is parsed (and here rejected as JSON, not as size).
    let (status, body) = http.post(
        "/topics/big/messages",
        json!(format!("RAW:{}", " ".repeat(1 << 20))),
    );
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_json")));
}

/// A client that trickles a request head is disconnected by the broker's
/// header deadline instead of holding the connection forever.
#[test]
fn slow_request_heads_are_cut_off() {
    let broker = BrokerProcess::start();
    let mut s = TcpStream::connect(format!("127.0.0.1:{}", broker.http_port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut closed = false;
    while Instant::now() < give_up {
        // One header byte at a time keeps the socket busy but never ends the head.
        if s.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the broker kept a never-ending request head open");
    let http = Http::new(&broker);
    assert_eq!(http.get("/healthz").0, 200);
}

/// Health and readiness answer, and `/metrics` parses as Prometheus text
/// with per-partition offsets that match what was published.
#[test]
fn health_and_metrics() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    assert_eq!(http.get("/healthz").0, 200);
    let (status, body) = http.get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["shards_answering"], 2);
    create_topic(&http, "m", 3);
    let records: Vec<Value> = (0..30)
        .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
        .collect();
    let (_, body) = http.post("/topics/m/messages", json!({ "records": records }));
    let mut per_partition = [0u64; 3];
    for r in body["records"].as_array().unwrap() {
        per_partition[r["partition"].as_u64().unwrap() as usize] += 1;
    }
    http.get("/topics/nope");
    // Records just published are in the tail cache: this read is a hit.
    let busiest = (0..3).max_by_key(|&p| per_partition[p]).expect("partition");
    let (status, body) = http.get(&format!("/topics/m/poll?partition={busiest}&offset=0&max=100"));
    assert_eq!(status, 200, "{body}");

    let text = http.text("/metrics");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let value = |s: &prometheus_parse::Sample| match s.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    };
    // The value of `metric` for partition `p` of topic m.
    let of_partition = |metric: &str, p: usize| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == metric
                    && s.labels.get("topic") == Some("m")
                    && s.labels.get("partition") == Some(&p.to_string())
            })
            .map(value)
    };
    for (p, want) in per_partition.iter().enumerate() {
        let got = of_partition("shoal_partition_log_end_offset", p);
        assert_eq!(got, Some(*want as f64), "log end of m/{p}\n{text}");
    }
    let errors: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "shoal_request_errors_total" && s.labels.get("code") == Some("unknown_topic"))
        .map(value)
        .sum();
    assert!(errors >= 1.0, "the unknown-topic error is counted\n{text}");
    let acks = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "shoal_produce_ack_latency_seconds" && s.labels.get("front_door") == Some("http")
        })
        .expect("http produce ack histogram");
    match &acks.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let total = buckets.last().map(|b| b.count).unwrap_or(0.0);
            assert!(total >= 1.0, "{buckets:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    let total = |metric: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && s.labels.get("topic") == Some("m"))
            .map(value)
            .sum()
    };
    assert!(
        total("shoal_partition_bytes_in_total") > 30.0,
        "bytes in per partition\n{text}"
    );
    let fsyncs: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "shoal_partition_fsync_seconds" && s.labels.get("topic") == Some("m"))
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            other => panic!("fsync latency is not a histogram: {other:?}"),
        })
        .sum();
    assert!(fsyncs >= 1.0, "flush always fsyncs\n{text}");
    let hit_ratio = of_partition("shoal_partition_batch_cache_hit_ratio", busiest);
    assert_eq!(hit_ratio, Some(1.0), "the tail read was a cache hit\n{text}");
    assert_eq!(total("shoal_partition_cache_reads_total"), 1.0, "{text}");
    for name in [
        "shoal_cross_core_hops_in_total",
        "shoal_connections_open",
        "shoal_throttle_time_ms_total",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == name),
            "{name} missing\n{text}"
        );
    }
}

/// SIGTERM with an idle keep-alive HTTP connection open still drains and
/// exits 0: the connection is closed by the broker, not waited on forever.
#[test]
fn shutdown_closes_idle_http_connections() {
    let mut broker = BrokerProcess::start();
    let mut s = TcpStream::connect(format!("127.0.0.1:{}", broker.http_port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (status, _) = read_response(&mut s);
    assert_eq!(status, 200);
    let exit = broker.terminate();
    assert!(exit.success(), "shoald exited with {exit:?}");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 16];
    let closed = matches!(s.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "the keep-alive connection is closed after shutdown");
}
