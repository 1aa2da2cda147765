//! Consumer groups over HTTP against a running `shoald`: join, member poll
//! with delivery counts, ack, nack with redelivery, commit with generation
//! fencing, group replay by offset and by timestamp, quarantine browse /
//! counts / redrive / purge, and lag in seconds for a stalled group, checked
//! both in `GET /groups/:group` and in `/metrics` through a Prometheus parser.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_tests::BrokerProcess;

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

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = self.agent.request(method, &format!("{}{path}", self.base));
        let result = match body {
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
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    /// Asserts a 200 and returns the body.
    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, reply) = self.call(method, path, body.clone());
        assert_eq!(status, 200, "{method} {path} {body:?}: {reply}");
        reply
    }
}

/// A joined member: its id and generation.
struct Member {
    id: String,
    generation: u64,
}

fn join(http: &Http, group: &str, topic: &str) -> Member {
    let body = http.ok(
        "POST",
        &format!("/groups/{group}/join"),
        Some(json!({"topics": [topic]})),
    );
    Member {
        id: body["member"].as_str().unwrap().to_string(),
        generation: body["generation"].as_u64().unwrap(),
    }
}

/// Polls as `m` until `want` records arrived or `timeout` passed.
fn poll_n(http: &Http, topic: &str, group: &str, m: &Member, want: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let path = format!(
            "/topics/{topic}/poll?group={group}&member={}&generation={}&max=100&wait_ms=500",
            m.id, m.generation
        );
        let body = http.ok("GET", &path, None);
        got.extend(body["records"].as_array().unwrap().iter().cloned());
    }
    got
}

fn publish(http: &Http, topic: &str, values: &[&str]) {
    let records: Vec<Value> = values
        .iter()
        .map(|v| json!({"partition": 0, "value": v}))
        .collect();
    http.ok(
        "POST",
        &format!("/topics/{topic}/messages"),
        Some(json!({ "records": records })),
    );
}

fn create(http: &Http, topic: &str, extra: Value) {
    let mut body = json!({"name": topic, "partitions": 1});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, reply) = http.post("/topics", body);
    assert_eq!(status, 201, "{reply}");
}

/// Poll, ack, nack and redelivery, commit, and fencing of a stale generation.
#[test]
fn poll_ack_nack_commit_and_fencing() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    create(
        &http,
        "jobs",
        json!({"retry": {"max_attempts": 5, "backoff_base_ms": 100, "backoff_max_ms": 200}}),
    );
    publish(&http, "jobs", &["a", "b", "c"]);
    let m = join(&http, "workers", "jobs");
    let got = poll_n(&http, "jobs", "workers", &m, 3, Duration::from_secs(15));
    let vals: Vec<&str> = got.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(vals, ["a", "b", "c"]);
    assert!(got
        .iter()
        .all(|r| r["delivery_count"] == 1 && r["topic"] == "jobs"));

    let ack =
        json!({"group": "workers", "member": m.id, "generation": m.generation, "partition": 0, "offset": 0});
    let body = http.ok("POST", "/topics/jobs/ack", Some(ack));
    assert_eq!(body["partitions"][0]["committed_offset"], 1, "{body}");
    let nack = json!({"group": "workers", "member": m.id, "generation": m.generation,
        "partition": 0, "offset": 1, "reason": "db down", "delay_ms": 100});
    let body = http.ok("POST", "/topics/jobs/nack", Some(nack));
    assert_eq!(body["partitions"][0]["retries_scheduled"], 1, "{body}");
    let again = poll_n(&http, "jobs", "workers", &m, 1, Duration::from_secs(15));
    assert_eq!(again[0]["offset"], 1, "{again:?}");
    assert_eq!(again[0]["delivery_count"], 2, "a redelivery counts: {again:?}");

    // An offset that was never leased to this member is refused per partition.
    let bad =
        json!({"group": "workers", "member": m.id, "generation": m.generation, "partition": 0, "offset": 99});
    let (status, body) = http.post("/topics/jobs/ack", bad);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_offset", "{body}");

    let commit = json!({"group": "workers", "member": m.id, "generation": m.generation,
        "topic": "jobs", "partition": 0, "offset": 3});
    http.ok("POST", "/offsets/commit", Some(commit));
    let g = http.ok("GET", "/groups/workers", None);
    assert_eq!(g["partitions"][0]["committed_offset"], 3, "{g}");
    assert_eq!(g["partitions"][0]["lag_records"], 0, "{g}");

    // A second member bumps the generation: the first one's old generation is fenced.
    let _m2 = join(&http, "workers", "jobs");
    let stale = json!({"group": "workers", "member": m.id, "generation": m.generation,
        "topic": "jobs", "partition": 0, "offset": 3});
    let (status, body) = http.post("/offsets/commit", stale);
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("stale_generation")),
        "{body}"
    );
    let (status, body) = http.get("/groups/nobody");
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown_group")),
        "{body}"
    );
    let (status, body) = http.post("/groups/workers/join", json!({"topics": ["missing"]}));
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown_topic")),
        "{body}"
    );
    let listed = http.ok("GET", "/groups", None);
    assert_eq!(listed["groups"][0]["group"], "workers", "{listed}");

    // Heartbeat tells the member the current generation; after leaving, the
    // member is unknown to the group.
    let beat = http.ok(
        "POST",
        "/groups/workers/heartbeat",
        Some(json!({"member": m.id, "generation": m.generation})),
    );
    assert!(beat["generation"].as_u64().unwrap() > m.generation, "{beat}");
    http.ok("POST", "/groups/workers/leave", Some(json!({"member": m.id})));
    let gone = json!({"group": "workers", "member": m.id, "generation": beat["generation"],
        "topic": "jobs", "partition": 0, "offset": 3});
    let (status, body) = http.post("/offsets/commit", gone);
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("unknown_member")),
        "{body}"
    );
}

/// Group replay moves the group's position back by offset or by timestamp,
/// so the records from there are delivered again.
#[test]
fn group_replay_by_offset_and_timestamp() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    create(&http, "feed", json!({}));
    publish(&http, "feed", &["r0", "r1", "r2"]);
    // The first records were stamped by now: the cut is the next millisecond.
    let cut = shoal_tests::wall_ms_after(now_ms());
    publish(&http, "feed", &["r3", "r4"]);
    let m = join(&http, "readers", "feed");
    let got = poll_n(&http, "feed", "readers", &m, 5, Duration::from_secs(15));
    let records: Vec<Value> = got
        .iter()
        .map(|r| json!({"partition": 0, "offset": r["offset"]}))
        .collect();
    http.ok(
        "POST",
        "/topics/feed/ack",
        Some(json!({"group": "readers", "member": m.id, "generation": m.generation, "records": records})),
    );
    let g = http.ok("GET", "/groups/readers", None);
    assert_eq!(g["partitions"][0]["committed_offset"], 5, "{g}");

    let body = http.ok(
        "POST",
        "/topics/feed/replay",
        Some(json!({"group": "readers", "offset": 1})),
    );
    assert_eq!(body["partitions"][0]["offset"], 1, "{body}");
    let again = poll_n(&http, "feed", "readers", &m, 4, Duration::from_secs(15));
    let vals: Vec<&str> = again.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(vals, ["r1", "r2", "r3", "r4"]);
    let records: Vec<Value> = again
        .iter()
        .map(|r| json!({"partition": 0, "offset": r["offset"]}))
        .collect();
    http.ok(
        "POST",
        "/topics/feed/ack",
        Some(json!({"group": "readers", "member": m.id, "generation": m.generation, "records": records})),
    );

    let body = http.ok(
        "POST",
        "/topics/feed/replay",
        Some(json!({"group": "readers", "timestamp_ms": cut})),
    );
    assert_eq!(body["partitions"][0]["offset"], 3, "{body}");
    let again = poll_n(&http, "feed", "readers", &m, 2, Duration::from_secs(15));
    let vals: Vec<&str> = again.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(vals, ["r3", "r4"]);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Rejected records land in the quarantine, can be browsed and counted
/// without consuming them, redriven (dry run first) back to the group, and purged.
#[test]
fn quarantine_browse_counts_redrive_purge() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    create(&http, "pay", json!({}));
    publish(&http, "pay", &["p0", "p1", "p2"]);
    let m = join(&http, "billing", "pay");
    let got = poll_n(&http, "pay", "billing", &m, 3, Duration::from_secs(15));
    assert_eq!(got.len(), 3);
    let reject = |offset: u64, reason: &str| {
        json!({"group": "billing", "member": m.id, "generation": m.generation,
            "partition": 0, "offset": offset, "reason": reason, "reject": true})
    };
    let body = http.ok("POST", "/topics/pay/nack", Some(reject(0, "bad card")));
    assert_eq!(body["partitions"][0]["quarantined"], 1, "{body}");
    http.ok("POST", "/topics/pay/nack", Some(reject(1, "bad card")));
    http.ok("POST", "/topics/pay/nack", Some(reject(2, "timeout")));

    let page = http.ok("GET", "/topics/pay/quarantine?limit=10", None);
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{page}");
    assert_eq!(entries[0]["value"], "p0");
    assert_eq!(entries[0]["group"], "billing");
    assert_eq!(
        entries[0]["reason"].as_str().map(|r| r.contains("bad card")),
        Some(true),
        "{page}"
    );
    let again = http.ok("GET", "/topics/pay/quarantine?limit=10", None);
    assert_eq!(
        again["entries"].as_array().unwrap().len(),
        3,
        "browsing does not consume"
    );

    let counts = http.ok("GET", "/topics/pay/quarantine/counts", None);
    assert_eq!(counts["total"], 3, "{counts}");
    let by_reason = counts["by_reason"].as_array().unwrap();
    let bad_card = by_reason
        .iter()
        .find(|c| c["reason"].as_str().unwrap().contains("bad card"))
        .unwrap();
    assert_eq!(bad_card["count"], 2, "{counts}");

    let dry = http.ok(
        "POST",
        "/topics/pay/quarantine/redrive",
        Some(json!({"group": "billing", "reason_contains": "timeout", "dry_run": true})),
    );
    assert_eq!(
        (dry["matched"].as_u64(), dry["redriven"].as_u64()),
        (Some(1), Some(0)),
        "{dry}"
    );
    let done = http.ok(
        "POST",
        "/topics/pay/quarantine/redrive",
        Some(json!({"group": "billing", "reason_contains": "timeout", "rate_per_sec": 100})),
    );
    assert_eq!(done["redriven"], 1, "{done}");
    let redelivered = poll_n(&http, "pay", "billing", &m, 1, Duration::from_secs(15));
    assert_eq!(redelivered[0]["value"], "p2", "{redelivered:?}");

    let purged = http.ok(
        "POST",
        "/topics/pay/quarantine/purge",
        Some(json!({"reason_contains": "bad card"})),
    );
    assert_eq!(purged["purged"], 2, "{purged}");
    let counts = http.ok("GET", "/topics/pay/quarantine/counts", None);
    assert_eq!(counts["total"], 0, "{counts}");
    let (status, body) = http.get("/topics/nope/quarantine");
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_topic")));
}

/// A group that stops processing shows lag in seconds equal to the age of
/// its oldest unprocessed record, in `GET /groups/:group` and in `/metrics`.
#[test]
fn stalled_group_lag_seconds() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    create(&http, "slow", json!({}));
    let published_at = Instant::now();
    publish(&http, "slow", &["stuck"]);
    let _m = join(&http, "stalled", "slow");
    let stall = Duration::from_secs(2);
    std::thread::sleep(stall);

    let g = http.ok("GET", "/groups/stalled", None);
    let elapsed = published_at.elapsed().as_secs_f64();
    let p = &g["partitions"][0];
    assert_eq!(p["lag_records"], 1, "{g}");
    let lag = p["lag_seconds"].as_f64().unwrap();
    assert!(
        lag >= stall.as_secs_f64() - 0.05 && lag <= elapsed + 0.05,
        "lag {lag} s, stalled {stall:?}, elapsed {elapsed} s"
    );

    let text = http
        .agent
        .get(&format!("{}/metrics", http.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition");
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == "shoal_group_lag_seconds" && s.labels.get("group") == Some("stalled"))
        .unwrap_or_else(|| panic!("no lag sample\n{text}"));
    let metric_lag = match sample.value {
        prometheus_parse::Value::Gauge(v) => v,
        ref other => panic!("{other:?}"),
    };
    let elapsed = published_at.elapsed().as_secs_f64();
    assert!(
        metric_lag >= lag && metric_lag <= elapsed + 0.05,
        "metrics lag {metric_lag} s after stats lag {lag} s, elapsed {elapsed} s"
    );
    let records = scrape
        .samples
        .iter()
        .find(|s| s.metric == "shoal_group_lag_records" && s.labels.get("group") == Some("stalled"))
        .map(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 1.0));
    assert_eq!(records, Some(true), "{text}");
}
