//! Retry, quarantine and ordered retry against a real `shoald`: delivery
//! counts and backoff follow the topic's policy, every record ends acked
//! xor quarantined, counts survive a broker restart, and with ordered retry
//! each key is processed in production order.

mod delivery_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use delivery_support::*;
use shoal_protocol::client::{ConsumedRecord, GroupConsumer};
use shoal_protocol::messages::dlq::{QuarantineBrowseRequest, QuarantineCountsRequest, QuarantineFilter};

/// Upper end of the backoff after `failures` failures with base 100 ms, max 400 ms.
fn backoff_full_ms(failures: u32) -> u64 {
    (100u64 << (failures - 1).min(10)).min(400)
}

/// What the test's handler saw.
#[derive(Default)]
struct Ledger {
    /// value -> (delivery count, when) of every delivery, in order.
    deliveries: BTreeMap<String, Vec<(u32, Instant)>>,
    /// value -> delivery count when acked.
    acked: BTreeMap<String, u32>,
}

impl Ledger {
    /// Handles one poll: "ok" acks, "twice" fails twice, "always" always fails.
    fn handle(&mut self, consumer: &GroupConsumer, records: Vec<ConsumedRecord>) {
        let (mut ack, mut transient, mut always) = (Vec::new(), Vec::new(), Vec::new());
        for r in records {
            let v = value(&r);
            self.deliveries
                .entry(v.clone())
                .or_default()
                .push((r.delivery_count, Instant::now()));
            if v.starts_with("always") {
                always.push(r);
            } else if v.starts_with("twice") && r.delivery_count <= 2 {
                transient.push(r);
            } else {
                self.acked.insert(v, r.delivery_count);
                ack.push(r);
            }
        }
        consumer.ack(&ack).expect("ack");
        if !transient.is_empty() {
            consumer.nack(&transient, "transient", None, false).expect("nack");
        }
        if !always.is_empty() {
            consumer.nack(&always, "always fails", None, false).expect("nack");
        }
    }
}

/// A handler that fails some records always and others twice: every record
/// ends either acked or quarantined (never both, never neither), delivery
/// counts and backoff follow the policy, and a broker restart mid-test keeps
/// the counts (the next delivery continues from the stored count).
#[test]
fn acked_xor_quarantined_with_counts_kept_across_restart() {
    let mut broker = broker_without_storm_limits();
    let c = client(&broker);
    create_topic(&c, "orders", 2, retry(4, 100, 400, false));
    let records: Vec<(String, String)> = (0..60)
        .map(|i| {
            (
                format!("k{i}"),
                format!("{}-{i}", ["ok", "twice", "always"][i % 3]),
            )
        })
        .collect();
    produce(&c, "orders", &records);
    let mut ledger = Ledger::default();
    {
        let consumer = consumer(&c, "billing", "orders", 5_000);
        // Run until every "twice" record failed once and no record finished
        // all its failures yet, so the restart lands mid-retry.
        until(Duration::from_secs(30), "first failures", || {
            ledger.handle(&consumer, consumer.poll().expect("poll"));
            (0..60)
                .filter(|i| i % 3 == 1)
                .all(|i| ledger.deliveries.contains_key(&format!("twice-{i}")))
        });
        consumer.close().expect("leave");
    }
    let before: BTreeMap<String, u32> = ledger
        .deliveries
        .iter()
        .filter(|(v, _)| !ledger.acked.contains_key(*v))
        .map(|(v, d)| (v.clone(), d.last().unwrap().0))
        .collect();
    let cut: BTreeMap<String, usize> = ledger
        .deliveries
        .iter()
        .map(|(v, d)| (v.clone(), d.len()))
        .collect();
    broker.restart();
    let c = client(&broker);
    let consumer = consumer(&c, "billing", "orders", 5_000);
    let browse = |c: &shoal_protocol::client::Client| {
        c.dlq_browse(&QuarantineBrowseRequest {
            topic: "orders".into(),
            filter: QuarantineFilter::default(),
            limit: 1000,
            cursor: None,
        })
        .expect("browse")
        .entries
    };
    until(Duration::from_secs(40), "all records finished", || {
        ledger.handle(&consumer, consumer.poll().expect("poll"));
        ledger.acked.len() == 40 && browse(&c).len() == 20
    });
    // Counts continued from the stored ones after the restart.
    for (v, deliveries) in &ledger.deliveries {
        let pre = cut.get(v).copied().unwrap_or(0);
        if let (Some(last), Some((next, _))) = (before.get(v), deliveries.get(pre)) {
            assert_eq!(*next, last + 1, "{v}: first delivery after the restart");
        }
    }
    // Every record ends acked xor quarantined, with the right count.
    let entries = browse(&c);
    let quarantined: BTreeSet<String> = entries
        .iter()
        .map(|e| String::from_utf8(e.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(quarantined.len(), 20, "no entry twice");
    for (_, v) in &records {
        assert!(
            ledger.acked.contains_key(v) != quarantined.contains(v),
            "{v}: acked xor quarantined"
        );
        match v.split('-').next().unwrap() {
            "ok" => assert_eq!(ledger.acked[v], 1),
            "twice" => assert_eq!(ledger.acked[v], 3),
            _ => assert!(quarantined.contains(v)),
        }
    }
    for e in &entries {
        assert_eq!(
            (e.attempts, e.reason.as_str(), e.group.as_str()),
            (4, "always fails", "billing")
        );
        assert!(e.first_failure_at_ms <= e.last_failure_at_ms);
    }
    // Backoff never shorter than the policy's lower bound (half the full delay).
    for (v, deliveries) in &ledger.deliveries {
        for w in deliveries.windows(2) {
            let ((n, t0), (m, t1)) = (w[0], w[1]);
            if m == n + 1 {
                let gap = t1.duration_since(t0).as_millis() as u64;
                assert!(
                    gap >= backoff_full_ms(n) / 2,
                    "{v}: delivery {m} came {gap} ms after {n}"
                );
            }
        }
    }
    let counts = c
        .dlq_counts(&QuarantineCountsRequest {
            topic: "orders".into(),
            filter: QuarantineFilter::default(),
        })
        .expect("counts");
    assert_eq!(counts.total, 20);
    assert_eq!(counts.counts[0].reason, "always fails");
    let s = stats(&c, "billing");
    for p in &s.partitions {
        assert_eq!((p.lag_records, p.lag_ms, p.retry_backlog), (0, 0, 0), "{p:?}");
        assert_eq!(p.committed_offset, p.log_end);
    }
    consumer.close().expect("leave");
}

/// With ordered retry, records of one key are processed in production
/// order even though some are retried; other keys keep flowing.
#[test]
fn ordered_retry_keeps_per_key_order() {
    let broker = broker_without_storm_limits();
    let c = client(&broker);
    create_topic(&c, "ledger", 2, retry(5, 50, 200, true));
    let records: Vec<(String, String)> = (0..200)
        .map(|i| (format!("acct-{}", i % 7), format!("{i}")))
        .collect();
    produce(&c, "ledger", &records);
    let consumer = consumer(&c, "posting", "ledger", 5_000);
    let mut processed: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut attempts: BTreeMap<u32, u32> = BTreeMap::new();
    let mut done = 0;
    until(Duration::from_secs(40), "all records processed", || {
        let mut ok = Vec::new();
        let mut fail = Vec::new();
        for r in consumer.poll().expect("poll") {
            let seq: u32 = value(&r).parse().unwrap();
            *attempts.entry(seq).or_default() += 1;
            // Every fourth record fails on its first two deliveries.
            if seq.is_multiple_of(4) && r.delivery_count <= 2 {
                fail.push(r);
            } else {
                let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
                processed.entry(key).or_default().push(seq);
                ok.push(r);
            }
        }
        done += ok.len();
        consumer.ack(&ok).expect("ack");
        if !fail.is_empty() {
            consumer.nack(&fail, "not yet", None, false).expect("nack");
        }
        done == 200
    });
    for (key, seqs) in &processed {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(
            seqs, &sorted,
            "{key}: processing order differs from production order"
        );
    }
    assert!(attempts.values().any(|&n| n == 3), "some records were retried");
    consumer.close().expect("leave");
}
