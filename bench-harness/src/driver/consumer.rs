//! The consumer thread: receive, time, verify, ack or nack.
//!
//! Each received value's stamp gives its producer, sequence and intended
//! send time; end-to-end latency is `receipt time - intended time`, so it
//! includes every queue on the way (producer, broker, consumer lag). Records
//! of another run are counted as foreign and ignored. In the slow-consumer
//! scenario each record costs `consumer_delay_us` of simulated work (slept,
//! not spun; see [`WorkClock`]) until the load ends; in the retry-storm scenario a `nack_share` of deliveries is nacked.
//! Only processed (acked) deliveries count as consumed in the ledger and in
//! the end-to-end latency of the main flow (first deliveries); nacks and
//! redeliveries are counted on their own.
//! The thread stops when the engine says so (every acked record received, or
//! the drain deadline passed).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::driver::shared::Shared;
use crate::driver::{Connector, InRecord};
use crate::error::BenchError;
use crate::histogram::LatencyHistogram;
use crate::ledger::DeliveryLedger;
use crate::stamp::Stamp;
use crate::timeseries::TimeSeries;
use crate::workload::{Scenario, Workload};

/// Longest single wait for records, so a stop request is seen promptly.
pub const POLL_WAIT_MAX: Duration = Duration::from_millis(20);

/// What one consumer thread is to do.
pub struct ConsumerPlan {
    pub index: u32,
    pub of: u32,
    pub run: u32,
    pub group: String,
    pub seed: u64,
    pub pin: Option<usize>,
}

/// What one consumer thread measured.
#[derive(Default)]
pub struct ConsumerOutcome {
    pub end_to_end: LatencyHistogram,
    pub series: TimeSeries,
    pub ledger: DeliveryLedger,
    pub window_records: u64,
    pub window_bytes: u64,
    pub nacked: u64,
    /// Deliveries with a delivery count above 1.
    pub redelivered: u64,
    pub peak_burst_delay_ns: u64,
    pub core: Option<usize>,
}

/// Runs one consumer thread until the engine stops it. `ready` is called
/// once the client is open and positioned, before any record is produced.
pub fn run(
    connector: &dyn Connector,
    workload: &Workload,
    plan: ConsumerPlan,
    shared: &Shared,
    ready: impl FnOnce(),
) -> Result<ConsumerOutcome, BenchError> {
    let mut out = ConsumerOutcome {
        core: plan.pin.and_then(crate::baseline::pin_to),
        ..Default::default()
    };
    let opened = connector.consumer(workload, plan.index, plan.of, &plan.group);
    ready();
    let mut client = opened?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(plan.seed ^ 0xc0ff_ee00 ^ u64::from(plan.index));
    let delay = Duration::from_micros(workload.consumer_delay_us);
    let nack_share = if workload.scenario == Scenario::RetryStorm {
        workload.nack_share
    } else {
        0.0
    };
    let mut records = Vec::new();
    let mut work = WorkClock::default();
    while !shared.stop_consumers.load(Ordering::Acquire) && !shared.aborted() {
        client.poll(POLL_WAIT_MAX, &mut records)?;
        for record in records.drain(..) {
            if !delay.is_zero() && !shared.draining.load(Ordering::Relaxed) {
                work.spend(delay);
            }
            out.redelivered += u64::from(record.delivery_count > 1);
            // Nacks stop once the load is over so the retries can drain.
            let storming = nack_share > 0.0 && !shared.draining.load(Ordering::Relaxed);
            let nack = storming && rng.gen_bool(nack_share);
            if nack {
                out.nacked += 1;
            } else {
                receive(&mut out, &plan, shared, &record);
            }
            client.settle(&record, !nack)?;
        }
    }
    Ok(out)
}

/// Times and records one processed delivery.
fn receive(out: &mut ConsumerOutcome, plan: &ConsumerPlan, shared: &Shared, record: &InRecord) {
    let now = shared.now_ns();
    let stamp = Stamp::read(&record.value).filter(|s| s.run == plan.run);
    // The window is published before the first record of this run is produced.
    let (Some(stamp), Some(window)) = (stamp, shared.window()) else {
        out.ledger.receive_foreign();
        return;
    };
    let latency = now.saturating_sub(stamp.intended_ns);
    let bytes = record.value.len() as u64;
    if stamp.intended_ns >= window.measure_start_ns && record.delivery_count <= 1 {
        out.end_to_end.record(latency);
    }
    if (window.measure_start_ns..window.measure_end_ns).contains(&now) {
        out.window_records += 1;
        out.window_bytes += bytes;
    }
    if window.burst_start_ns.is_some_and(|b| stamp.intended_ns >= b) {
        out.peak_burst_delay_ns = out.peak_burst_delay_ns.max(latency);
    }
    out.series.record(now, bytes, Some(latency));
    out.ledger.receive(stamp.producer, stamp.sequence);
    shared.received.fetch_add(1, Ordering::Relaxed);
}

/// Simulated per-record work that caps a consumer at `1 / delay` records per
/// second without burning a core (on a two-core machine a spinning consumer
/// would slow the broker it measures). Work accumulates on a virtual clock;
/// the thread sleeps whenever that clock runs more than [`WORK_SLICE`] ahead.
#[derive(Default)]
struct WorkClock {
    busy_until: Option<Instant>,
}

/// Work owed before the consumer sleeps it off.
const WORK_SLICE: Duration = Duration::from_millis(1);

impl WorkClock {
    fn spend(&mut self, d: Duration) {
        let now = Instant::now();
        let until = self.busy_until.map_or(now, |t| t.max(now)) + d;
        self.busy_until = Some(until);
        if until > now + WORK_SLICE {
            std::thread::sleep(until - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_clock_caps_the_rate() {
        // Proves 2000 records of 100 us work take at least 199 ms (a 10,000/s cap), by sleeping.
        let mut work = WorkClock::default();
        let start = Instant::now();
        for _ in 0..2000 {
            work.spend(Duration::from_micros(100));
        }
        assert!(
            start.elapsed() >= Duration::from_millis(199),
            "{:?}",
            start.elapsed()
        );
    }
}
