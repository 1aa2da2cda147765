//! Storm protection and redrive against a real `shoald`: a handler that
//! fails everything trips the breaker and stays within the retry budget
//! without draining the topic into the quarantine, then recovers; redrive
//! goes to the failing group only, paced, resumable, with a dry run and a
//! loop guard.

mod delivery_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use delivery_support::*;
use shoal_protocol::client::Client;
use shoal_protocol::messages::dlq::*;
use shoal_protocol::messages::stats::CircuitState;
use shoal_tests::BrokerProcess;

/// A handler failing 100% of records: the breaker opens, retries stay
/// within the budget (200 permille plus the reserve of 10 per 10 s window),
/// and few records reach the quarantine; once the handler recovers the
/// group drains every record.
#[test]
fn storm_trips_breaker_then_drains() {
    let broker = BrokerProcess::start();
    let c = client(&broker);
    create_topic(&c, "storm", 2, retry(3, 50, 200, false));
    let records: Vec<(String, String)> = (0..300).map(|i| (format!("k{i}"), format!("{i}"))).collect();
    let produced: BTreeSet<(u32, u64)> = produce(&c, "storm", &records).into_iter().collect();
    assert_eq!(produced.len(), 300, "every record has its own place");
    let member = consumer(&c, "fragile", "storm", 5_000);
    let started = Instant::now();
    let mut saw_open = false;
    while started.elapsed() < Duration::from_secs(7) {
        let polled = member.poll().expect("poll");
        if !polled.is_empty() {
            member
                .nack(&polled, "downstream unavailable", None, false)
                .expect("nack");
        }
        saw_open |= stats(&c, "fragile").circuit == CircuitState::Open;
    }
    let s = stats(&c, "fragile");
    assert!(saw_open, "the breaker never opened: {s:?}");
    let windows = started.elapsed().as_secs() / 10 + 1;
    assert!(
        s.retries_total <= s.deliveries_total / 5 + 10 * windows,
        "retries {} over budget for {} deliveries",
        s.retries_total,
        s.deliveries_total
    );
    assert!(
        s.quarantined_total <= 30,
        "the quarantine swallowed {} records",
        s.quarantined_total
    );
    // The handler recovers: the group resumes and drains.
    let mut acked = BTreeSet::new();
    until(Duration::from_secs(45), "drained", || {
        let polled = member.poll().expect("poll");
        member.ack(&polled).expect("ack");
        acked.extend(polled.iter().map(|r| (r.partition, r.offset)));
        let s = stats(&c, "fragile");
        s.partitions.iter().all(|p| p.lag_records == 0) && s.partitions.len() == 2
    });
    let s = stats(&c, "fragile");
    assert_eq!(s.circuit, CircuitState::Closed);
    // Every record acked or quarantined, never both, never neither: losses
    // and duplicates are counted apart, so one cannot hide the other.
    let quarantine = quarantined(&c, "storm");
    let quarantined: BTreeSet<(u32, u64)> = quarantine.iter().copied().collect();
    assert_eq!(quarantine.len(), quarantined.len(), "a record quarantined twice");
    assert_eq!(
        s.quarantined_total,
        quarantined.len() as u64,
        "the group's quarantine count matches its entries"
    );
    let lost: Vec<_> = produced
        .iter()
        .filter(|r| !acked.contains(r) && !quarantined.contains(r))
        .collect();
    let both: Vec<_> = acked.intersection(&quarantined).collect();
    let strangers: Vec<_> = acked
        .union(&quarantined)
        .filter(|r| !produced.contains(r))
        .collect();
    assert!(lost.is_empty(), "records neither acked nor quarantined: {lost:?}");
    assert!(both.is_empty(), "records acked and quarantined: {both:?}");
    assert!(
        strangers.is_empty(),
        "acked or quarantined, never produced: {strangers:?}"
    );
    member.close().expect("leave");
}

/// `(partition, offset)` of every quarantine entry of `topic`, in entry
/// order (a record quarantined twice appears twice).
fn quarantined(c: &Client, topic: &str) -> Vec<(u32, u64)> {
    shoal_tests::quarantine_entries(c, topic, QuarantineFilter::default())
        .iter()
        .map(|e| (e.partition, e.offset))
        .collect()
}

fn redrive(
    c: &Client,
    dry_run: bool,
    rate_per_sec: u32,
    max_entries: u32,
    cursor: Option<u64>,
) -> QuarantineRedriveResponse {
    c.dlq_redrive(&QuarantineRedriveRequest {
        topic: "payments".into(),
        group: "failing".into(),
        filter: QuarantineFilter::default(),
        rate_per_sec,
        dry_run,
        max_entries,
        cursor,
        timeout_ms: 20_000,
    })
    .expect("redrive")
}

fn entries(c: &Client) -> Vec<QuarantineEntry> {
    c.dlq_browse(&QuarantineBrowseRequest {
        topic: "payments".into(),
        filter: QuarantineFilter::default(),
        limit: 100,
        cursor: None,
    })
    .expect("browse")
    .entries
}

/// Redrive hands entries back to the failing group only, at the asked
/// rate; a dry run moves nothing; a cursor resumes; the loop guard refuses
/// entries redriven too often.
#[test]
fn redrive_goes_to_the_failing_group_only() {
    let broker = broker_without_storm_limits();
    let c = client(&broker);
    create_topic(&c, "payments", 1, retry(2, 50, 100, false));
    let records: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("k{i}"),
                format!("{}-{i}", if i % 2 == 0 { "poison" } else { "fine" }),
            )
        })
        .collect();
    produce(&c, "payments", &records);
    let failing = consumer(&c, "failing", "payments", 5_000);
    let auditing = consumer(&c, "auditing", "payments", 5_000);
    // failing rejects poison records (straight to the quarantine); auditing takes all.
    let rejected_round = |expect: usize| {
        let mut seen = Vec::new();
        until(Duration::from_secs(20), "poison rejected", || {
            let polled = failing.poll().expect("poll");
            let (bad, good): (Vec<_>, Vec<_>) =
                polled.into_iter().partition(|r| value(r).starts_with("poison"));
            failing.ack(&good).expect("ack");
            if !bad.is_empty() {
                failing.nack(&bad, "bad payload", None, true).expect("reject");
            }
            seen.extend(bad.iter().map(|r| r.offset));
            seen.len() >= expect && entries(&c).len() == expect
        });
        seen
    };
    assert_eq!(rejected_round(10).len(), 10);
    let mut audited = 0;
    until(Duration::from_secs(10), "auditing consumed", || {
        let polled = auditing.poll().expect("poll");
        auditing.ack(&polled).expect("ack");
        audited += polled.len();
        audited == 20
    });
    // Dry run: counts, moves nothing.
    let dry = redrive(&c, true, 0, 0, None);
    assert_eq!((dry.matched, dry.redriven), (10, 0));
    assert_eq!(entries(&c).len(), 10);
    // Paced redrive: 10 entries at 5 per second take at least 9 gaps of 200 ms.
    let started = Instant::now();
    let paced = redrive(&c, false, 5, 0, None);
    assert_eq!(paced.redriven, 10);
    assert!(
        started.elapsed() >= Duration::from_millis(1_800),
        "redrive took {:?}",
        started.elapsed()
    );
    assert!(entries(&c).is_empty());
    // Back to the failing group, rejected again; resume with a cursor.
    let again = rejected_round(10);
    assert_eq!(again.iter().collect::<BTreeSet<_>>().len(), 10);
    let first = redrive(&c, false, 0, 4, None);
    assert_eq!(first.redriven, 4);
    let rest = redrive(&c, false, 0, 0, first.next_cursor);
    assert_eq!(rest.redriven, 6);
    rejected_round(10);
    assert_eq!(redrive(&c, false, 0, 0, None).redriven, 10);
    rejected_round(10);
    // Three redrives so far: the loop guard refuses a fourth.
    let guarded = redrive(&c, false, 0, 0, None);
    assert_eq!((guarded.redriven, guarded.skipped_loop_guard), (0, 10));
    assert!(entries(&c)
        .iter()
        .all(|e| e.redrive_count == 3 && e.group == "failing"));
    // The other group never saw the redriven records again.
    let polled = auditing.poll().expect("poll");
    assert!(
        polled.is_empty(),
        "auditing got {} redriven records",
        polled.len()
    );
    failing.close().expect("leave");
    auditing.close().expect("leave");
}
