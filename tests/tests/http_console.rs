//! The HTTP endpoints the web console adds: `GET /` and `/console/:file`
//! (the embedded page, same-origin only), `GET /stats` (per-shard counters
//! and latency histogram, per-group totals) and `GET /topics/:name/stats`,
//! each checked against the broker's other answers about the same scene.

mod console_support;

use console_support::{make_scene, Http, GROUP, INVOICES, ORDERS, QUARANTINED};
use serde_json::Value;
use shoal_tests::BrokerProcess;

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn console_files_are_served_from_the_binary() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    let (status, media, body) = http.raw("GET", "/", None);
    assert_eq!(status, 200);
    assert_eq!(media.as_deref(), Some("text/html; charset=utf-8"));
    assert!(body.contains("<title>Shoal console</title>"), "{body}");
    for (file, media_type) in [
        ("console.js", "text/javascript; charset=utf-8"),
        ("charts.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
    ] {
        assert!(
            body.contains(&format!("/console/{file}")),
            "index does not load {file}"
        );
        let (status, media, text) = http.raw("GET", &format!("/console/{file}"), None);
        assert_eq!((status, media.as_deref()), (200, Some(media_type)), "{file}");
        assert!(text.len() > 500, "{file} is {} bytes", text.len());
    }
    let (status, _, text) = http.raw("GET", "/console/missing.js", None);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("unknown_route"), "{text}");
    let (status, _, _) = http.raw("POST", "/", Some(&Value::Null));
    assert_eq!(status, 405);
}

#[test]
fn stats_agree_with_topics_and_groups() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    make_scene(&http);

    let stats = http.get("/stats");
    let shards = stats["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 2, "{stats}");
    assert_eq!(num(&stats["shards_configured"]), 2);
    assert_eq!(num(&stats["topics"]), 2);

    // Records in, partitions and bytes on disk, per shard, against the
    // topics' own descriptions.
    let mut records = [0u64; 2];
    let mut partitions = [0u64; 2];
    let mut size = [0u64; 2];
    for topic in [ORDERS, INVOICES] {
        let d = http.get(&format!("/topics/{topic}"));
        for p in d["partitions"].as_array().expect("partitions") {
            let shard = num(&p["shard"]) as usize;
            records[shard] += num(&p["log_end"]) - num(&p["log_start"]);
            partitions[shard] += 1;
            size[shard] += num(&p["size_bytes"]);
        }
    }
    for s in shards {
        let i = num(&s["shard"]) as usize;
        assert_eq!(num(&s["records_in"]), records[i], "shard {i}: {s}");
        assert_eq!(num(&s["partitions"]), partitions[i], "shard {i}: {s}");
        assert_eq!(num(&s["size_bytes"]), size[i], "shard {i}: {s}");
        assert_eq!(num(&s["fenced_partitions"]), 0);
        // A cumulative histogram: one count per bound, never decreasing,
        // none above the total.
        let lat = &s["produce_ack_latency"];
        let buckets: Vec<u64> = lat["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(num)
            .collect();
        assert_eq!(buckets.len(), lat["bounds_s"].as_array().expect("bounds").len());
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{lat}");
        assert!(
            buckets.last().copied().unwrap_or(0) <= num(&lat["count"]),
            "{lat}"
        );
    }
    assert_eq!(records.iter().sum::<u64>(), 35);
    // Three HTTP publishes were acked, each counted once on the shard that served it.
    let acked: u64 = shards
        .iter()
        .map(|s| num(&s["produce_ack_latency"]["count"]))
        .sum();
    assert_eq!(acked, 3, "{stats}");

    let group = stats["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["group"] == GROUP)
        .expect("billing in /stats");
    let described = http.get(&format!("/groups/{GROUP}"));
    assert_eq!(num(&group["quarantine_depth"]), QUARANTINED);
    assert_eq!(num(&group["quarantined_total"]), QUARANTINED);
    assert_eq!(group["circuit"], described["circuit"]);
    assert_eq!(group["generation"], described["generation"]);
    assert_eq!(
        num(&group["deliveries_total"]),
        num(&described["deliveries_total"])
    );
}

#[test]
fn topic_stats_add_segments_quarantine_and_group_lag() {
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    make_scene(&http);
    let described = http.get(&format!("/topics/{ORDERS}"));
    let stats = http.get(&format!("/topics/{ORDERS}/stats"));
    let parts = stats["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 3);
    for (s, d) in parts
        .iter()
        .zip(described["partitions"].as_array().expect("partitions"))
    {
        for field in [
            "partition",
            "shard",
            "log_start",
            "high_watermark",
            "log_end",
            "size_bytes",
        ] {
            assert_eq!(s[field], d[field], "{field}: {s} vs {d}");
        }
        assert!(num(&s["segments"]) >= 1, "{s}");
        assert!(s["last_append_at_ms"].as_i64().is_some_and(|t| t > 0), "{s}");
        assert_eq!(s["code"], "none");
    }
    let invoices = http.get(&format!("/topics/{INVOICES}/stats"));
    let depth: u64 = invoices["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| num(&p["quarantine_depth"]))
        .sum();
    assert_eq!(depth, QUARANTINED, "{invoices}");
    let lag = &invoices["groups"][0];
    assert_eq!(lag["group"], GROUP, "{invoices}");
    assert_eq!(
        num(&lag["lag_records"]),
        0,
        "every record was quarantined: {invoices}"
    );

    let (status, _, text) = Http::new(&broker).raw("GET", "/topics/nope/stats", None);
    assert_eq!(status, 404, "{text}");
}
