//! Engine tests against an in-memory log: they prove the driver's own
//! accounting (open-loop latency through a stall, delivery verification,
//! windows and counts) without a broker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::engine::{run_phase, PhaseOptions};
use super::*;
use crate::schedule::Phase;
use crate::workload::{WorkloadLayer, WorkloadSource};

const SEC: u64 = 1_000_000_000;

/// An in-memory "broker": one shared log; acks are immediate unless told otherwise.
#[derive(Default)]
struct MemLog {
    log: Mutex<Vec<Vec<u8>>>,
    /// Sleep this long inside the send of this token (a stalled broker).
    stall: Option<(u64, Duration)>,
    /// Ack this token but never store it (a broker that loses an acked record).
    lose: Option<u64>,
    /// Most acks a producer held back at once (records in flight).
    most_pending: std::sync::atomic::AtomicUsize,
}

struct MemProducer {
    log: Arc<MemLog>,
    acks: Vec<AckEvent>,
}

impl ProduceClient for MemProducer {
    fn send(&mut self, record: OutRecord) -> Result<(), BenchError> {
        if let Some((token, pause)) = self.log.stall {
            if token == record.token && record.value[8..12] == [0, 0, 0, 0] {
                std::thread::sleep(pause);
            }
        }
        if self.log.lose != Some(record.token) {
            self.log.log.lock().unwrap().push(record.value);
        }
        self.acks.push(AckEvent {
            token: record.token,
            result: Ok("Memory"),
            at: std::time::Instant::now(),
        });
        self.log
            .most_pending
            .fetch_max(self.acks.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn poll_acks(&mut self, wait: Duration, out: &mut Vec<AckEvent>) -> Result<(), BenchError> {
        if self.acks.is_empty() {
            std::thread::sleep(wait);
        }
        out.append(&mut self.acks);
        Ok(())
    }
}

struct MemConsumer {
    log: Arc<MemLog>,
    next: usize,
    index: usize,
    of: usize,
}

impl ConsumeClient for MemConsumer {
    fn poll(&mut self, wait: Duration, out: &mut Vec<InRecord>) -> Result<(), BenchError> {
        let log = self.log.log.lock().unwrap();
        let before = out.len();
        for (at, value) in log.iter().enumerate().skip(self.next) {
            if at % self.of == self.index {
                out.push(InRecord {
                    value: value.clone(),
                    handle: at as u64,
                    delivery_count: 1,
                });
            }
        }
        self.next = log.len();
        drop(log);
        if out.len() == before {
            std::thread::sleep(wait.min(Duration::from_millis(1)));
        }
        Ok(())
    }

    fn settle(&mut self, _record: &InRecord, _ok: bool) -> Result<(), BenchError> {
        Ok(())
    }
}

struct MemConnector(Arc<MemLog>);

impl Connector for MemConnector {
    fn prepare(&self, _workload: &Workload) -> Result<(), BenchError> {
        Ok(())
    }

    fn producer(&self, _w: &Workload, _index: u32) -> Result<Box<dyn ProduceClient>, BenchError> {
        Ok(Box::new(MemProducer {
            log: self.0.clone(),
            acks: Vec::new(),
        }))
    }

    fn consumer(
        &self,
        _w: &Workload,
        index: u32,
        of: u32,
        _g: &str,
    ) -> Result<Box<dyn ConsumeClient>, BenchError> {
        let next = self.0.log.lock().unwrap().len();
        Ok(Box::new(MemConsumer {
            log: self.0.clone(),
            next,
            index: index as usize,
            of: of as usize,
        }))
    }
}

fn workload(producers: u32) -> Workload {
    let flags = WorkloadLayer {
        producers: Some(producers),
        pin_threads: Some(false),
        ..Default::default()
    };
    Workload::resolve(WorkloadSource::Preset("quick"), &flags).unwrap()
}

fn options(rate: f64, seconds: u64, consumers: u32) -> PhaseOptions {
    PhaseOptions {
        closed_window: None,
        label: "test".into(),
        run: 1,
        rate_per_s: rate,
        phases: vec![Phase {
            rate_per_s: rate,
            duration_ns: seconds * SEC,
        }],
        measure_from_ns: 0,
        measure_until_ns: seconds * SEC,
        consumers,
        drain: Duration::from_secs(5),
        burst: None,
        restart: None,
    }
}

#[test]
fn every_record_is_acked_consumed_and_counted() {
    // Proves a clean 1 s run at 2000/s with 2 producers and 2 consumers accounts for all 2000 records.
    let connector: Arc<dyn Connector> = Arc::new(MemConnector(Arc::new(MemLog::default())));
    let (r, placement) = run_phase(&connector, &workload(2), &options(2000.0, 1, 2), None).unwrap();
    assert_eq!(r.ack_latency.count, 2000);
    assert_eq!(r.end_to_end.count, 2000);
    let v = r.delivery.unwrap();
    assert_eq!(
        (v.acked, v.consumed_distinct, v.lost, v.duplicates),
        (2000, 2000, 0, 0)
    );
    assert!(v.ok && r.drained);
    assert_eq!(r.produce_errors + r.unanswered, 0);
    assert_eq!(r.offered_series.iter().sum::<u64>(), 2000);
    assert_eq!(r.ack_durability.get("Memory"), Some(&2000));
    assert_eq!(placement.producer_cores.len(), 2);
    assert_eq!(placement.consumer_cores.len(), 2);
    assert!(r.produce.records <= 2000 && r.produce.records > 0);
}

#[test]
fn a_stall_shows_in_the_latency_of_every_record_due_during_it() {
    // Proves open-loop timing: a 300 ms stall at 2000/s puts ~600 records' latency between 0 and 300 ms.
    let log = MemLog {
        stall: Some((500, Duration::from_millis(300))),
        ..Default::default()
    };
    let connector: Arc<dyn Connector> = Arc::new(MemConnector(Arc::new(log)));
    let (r, _) = run_phase(&connector, &workload(1), &options(2000.0, 2, 0), None).unwrap();
    assert_eq!(r.ack_latency.count, 4000);
    // A closed-loop client would have recorded one slow sample; here 15% of 4000 are over 45 ms.
    assert!(
        r.ack_latency.max_ns >= 290_000_000,
        "max {}",
        r.ack_latency.max_ns
    );
    assert!(r.ack_latency.p90_ns >= 45_000_000, "p90 {}", r.ack_latency.p90_ns);
    assert!(r.send_lag.max_ns >= 290_000_000, "send lag {}", r.send_lag.max_ns);
    assert!(r.delivery.is_none());
}

#[test]
fn an_acked_record_that_was_not_stored_is_reported_lost() {
    // Proves the ledger catches a broker that acks a record and then loses it.
    let log = MemLog {
        lose: Some(100),
        ..Default::default()
    };
    let connector: Arc<dyn Connector> = Arc::new(MemConnector(Arc::new(log)));
    let mut opts = options(1000.0, 1, 1);
    opts.drain = Duration::from_millis(500);
    let (r, _) = run_phase(&connector, &workload(1), &opts, None).unwrap();
    let v = r.delivery.unwrap();
    assert_eq!(v.lost, 1);
    assert_eq!(v.lost_examples, vec![(0, 100)]);
    assert!(!v.ok);
    assert!(!r.drained, "one record short, the consumers never caught up");
}

#[test]
fn closed_loop_keeps_its_window_and_sends_as_fast_as_acks_return() {
    // Proves closed loop: the schedule's nominal 1 rec/s does not pace it,
    // and no more than the window is ever in flight.
    let log = Arc::new(MemLog::default());
    let connector: Arc<dyn Connector> = Arc::new(MemConnector(log.clone()));
    let mut opts = options(1.0, 1, 1);
    opts.closed_window = Some(50);
    let (r, _) = run_phase(&connector, &workload(1), &opts, None).unwrap();
    assert!(
        r.produce.records > 10_000,
        "closed loop sent only {}",
        r.produce.records
    );
    let most = log.most_pending.load(std::sync::atomic::Ordering::Relaxed);
    assert!((1..=50).contains(&most), "{most} records in flight, window 50");
    assert_eq!(r.closed_window, Some(50));
    assert!(r.offered_series.is_empty());
    let v = r.delivery.unwrap();
    assert!(v.ok && v.lost == 0 && v.duplicates == 0, "{v:?}");
}

#[test]
fn a_stall_in_closed_loop_is_one_slow_sample() {
    // Proves the difference the summary warns about: the same 300 ms stall
    // that slows every due record in open loop is one slow send here.
    let log = MemLog {
        stall: Some((500, Duration::from_millis(300))),
        ..Default::default()
    };
    let connector: Arc<dyn Connector> = Arc::new(MemConnector(Arc::new(log)));
    let mut opts = options(1.0, 2, 0);
    opts.closed_window = Some(10);
    let (r, _) = run_phase(&connector, &workload(1), &opts, None).unwrap();
    assert!(
        r.ack_latency.max_ns >= 290_000_000,
        "max {}",
        r.ack_latency.max_ns
    );
    assert!(r.ack_latency.p90_ns < 45_000_000, "p90 {}", r.ack_latency.p90_ns);
}
