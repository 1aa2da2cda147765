//! Shared by the operator-experience tests (console, CLI output, HTTP
//! stats, dashboards): a small JSON-over-HTTP client and a "scene" that
//! gives a live broker something to show: topics with records (one of
//! them binary), and a consumer group whose nacks filled the quarantine.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_tests::BrokerProcess;

pub struct Http {
    pub base: String,
    agent: ureq::Agent,
}

impl Http {
    pub fn new(broker: &BrokerProcess) -> Http {
        Http {
            base: format!("http://127.0.0.1:{}", broker.http_port),
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build(),
        }
    }

    /// The status, headers we care about and the body text of a request.
    pub fn raw(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Option<String>, String) {
        let req = self.agent.request(method, &format!("{}{path}", self.base));
        let result = match body {
            Some(v) => req.send_json(v.clone()),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let media = resp.header("content-type").map(str::to_string);
        (status, media, resp.into_string().expect("reply body"))
    }

    /// The JSON reply of a request that must succeed.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, _, text) = self.raw(method, path, body.as_ref());
        assert!((200..300).contains(&status), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    }

    pub fn get(&self, path: &str) -> Value {
        self.ok("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        self.ok("POST", path, Some(body))
    }
}

/// Topic `orders`: 3 partitions, 7-day retention, 30 keyed text records
/// and one binary record on partition 1 (offset returned).
pub const ORDERS: &str = "orders";
/// Topic `invoices`: 2 partitions, 2 attempts; group `billing` rejected
/// all 4 of its records, so they sit in the quarantine.
pub const INVOICES: &str = "invoices";
pub const GROUP: &str = "billing";
pub const QUARANTINED: u64 = 4;
/// The value of the binary record (not UTF-8), base64.
pub const BINARY_B64: &str = "AP8Q/w==";

pub struct Scene {
    pub binary_offset: u64,
}

pub fn make_scene(http: &Http) -> Scene {
    http.ok(
        "POST",
        "/topics",
        Some(json!({"name": ORDERS, "partitions": 3, "retention_ms": 604_800_000u64})),
    );
    let records: Vec<Value> = (0..30)
        .map(|i| json!({"key": format!("customer-{}", i % 7), "value": format!("{{\"total\": {i}}}"), "headers": {"trace": format!("t-{i}")}}))
        .collect();
    http.post(
        &format!("/topics/{ORDERS}/messages"),
        json!({ "records": records }),
    );
    let binary = http.post(
        &format!("/topics/{ORDERS}/messages"),
        json!({"partition": 1, "value": BINARY_B64, "encoding": "base64"}),
    );
    let binary_offset = binary["records"][0]["offset"].as_u64().expect("offset");

    http.ok(
        "POST",
        "/topics",
        Some(json!({"name": INVOICES, "partitions": 2, "retry": {"max_attempts": 2, "backoff_base_ms": 20, "backoff_max_ms": 50}})),
    );
    let values: Vec<Value> = ["a", "b", "c", "d"]
        .iter()
        .map(|k| json!({"key": k, "value": format!("invoice {k}")}))
        .collect();
    http.post(
        &format!("/topics/{INVOICES}/messages"),
        json!({ "records": values }),
    );
    quarantine_all(http, QUARANTINED);
    Scene { binary_offset }
}

/// Joins `billing` to `invoices`, rejects every record it gets until
/// `count` are quarantined, then leaves the group.
fn quarantine_all(http: &Http, count: u64) {
    let join = http.post(
        &format!("/groups/{GROUP}/join"),
        json!({"topics": [INVOICES], "member_name": "console-test"}),
    );
    let member = join["member"].as_str().expect("member").to_string();
    let generation = join["generation"].as_u64().expect("generation");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rejected = 0;
    while rejected < count {
        assert!(
            Instant::now() < deadline,
            "only {rejected} of {count} records rejected"
        );
        let polled = http.get(&format!(
            "/topics/{INVOICES}/poll?group={GROUP}&member={member}&generation={generation}&max=10&wait_ms=500"
        ));
        for r in polled["records"].as_array().expect("records") {
            http.post(
                &format!("/topics/{INVOICES}/nack"),
                json!({"group": GROUP, "member": member, "generation": generation,
                       "partition": r["partition"], "offset": r["offset"],
                       "reason": "downstream 503: payment gateway unavailable", "reject": true}),
            );
            rejected += 1;
        }
    }
    // Leaving (rather than expiring mid-test) keeps the group's figures
    // still while a test compares them.
    http.post(&format!("/groups/{GROUP}/leave"), json!({"member": member}));
    let counts = http.get(&format!("/topics/{INVOICES}/quarantine/counts"));
    assert_eq!(counts["total"], count, "{counts}");
}
