//! The producer thread: open loop, or closed loop when the plan says so.
//!
//! The loop sends every record whose intended time has come, then waits for
//! acks until the next intended time (at most [`ACK_POLL_MAX`]). It never
//! waits for an ack before sending the next record, so a slow broker cannot
//! slow the offered load down: records due during a stall are sent late and
//! their latency — always `ack time - intended time` — includes the stall.
//! How late each send was against its schedule is kept as `send_lag`; a large
//! send lag means the harness or the client, not only the broker, was behind.
//!
//! At most [`IN_FLIGHT_MAX`] records wait for acks; beyond that the thread
//! stops sending (and keeps counting latency from the intended times) until
//! acks come back. After the schedule ends, acks are awaited until
//! `ack_deadline_ns`; records still unanswered then are counted, not lost.
//!
//! Closed loop ([`run_closed`]) is what other systems' bench tools measure:
//! the thread keeps a fixed window of records in flight and sends the next
//! one as soon as an ack frees room, until the schedule's end. Its latency
//! counts from the send, so a stall slows the offered load down instead of
//! showing in the latency: compare its throughput with peers', and take
//! latency from the open loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::distribution::{KeySampler, SizeSampler};
use crate::driver::shared::Shared;
use crate::driver::{AckEvent, Connector, OutRecord};
use crate::error::BenchError;
use crate::histogram::LatencyHistogram;
use crate::ledger::DeliveryLedger;
use crate::schedule::OpenLoopSchedule;
use crate::stamp::Stamp;
use crate::timeseries::TimeSeries;
use crate::workload::Workload;

/// Records sent and not yet acknowledged, by send token.
type InFlightMap = HashMap<u64, InFlight, ahash::RandomState>;

/// Most records awaiting an ack per producer thread.
pub const IN_FLIGHT_MAX: usize = 1 << 20;
/// Most sends between two collections of acks.
pub const SEND_BURST_MAX: usize = 64;
/// Longest single wait for acks, so due sends are never held back long.
pub const ACK_POLL_MAX: Duration = Duration::from_millis(1);

/// What one producer thread is to do.
pub struct ProducerPlan {
    pub index: u32,
    pub run: u32,
    pub schedule: OpenLoopSchedule,
    pub measure_start_ns: u64,
    pub measure_end_ns: u64,
    /// After the schedule ends, stop waiting for acks at this time.
    pub ack_deadline_ns: u64,
    pub sizes: SizeSampler,
    pub keys: KeySampler,
    pub seed: u64,
    /// Core index to pin to, when pinning.
    pub pin: Option<usize>,
    /// Closed loop: records kept in flight.
    pub closed_window: Option<usize>,
}

/// What one producer thread measured.
#[derive(Default)]
pub struct ProducerOutcome {
    pub ack_latency: LatencyHistogram,
    pub send_lag: LatencyHistogram,
    pub series: TimeSeries,
    pub ledger: DeliveryLedger,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Acks received inside the measured window.
    pub window_records: u64,
    pub window_bytes: u64,
    pub unacked_at_deadline: u64,
    /// Acks counted by the durability the broker reported.
    pub ack_durability: BTreeMap<&'static str, u64>,
    pub core: Option<usize>,
}

struct InFlight {
    intended_ns: u64,
    bytes: u32,
}

/// Runs one producer thread to completion.
pub fn run(
    connector: &dyn Connector,
    workload: &Workload,
    mut plan: ProducerPlan,
    shared: &Shared,
) -> Result<ProducerOutcome, BenchError> {
    let mut out = ProducerOutcome {
        core: plan.pin.and_then(crate::baseline::pin_to),
        ..Default::default()
    };
    let mut client = connector.producer(workload, plan.index)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(plan.seed ^ u64::from(plan.index).rotate_left(32));
    let topics = workload.topics;
    if let Some(window) = plan.closed_window {
        run_closed(
            client.as_mut(),
            &mut plan,
            shared,
            &mut rng,
            topics,
            window,
            &mut out,
        );
        return Ok(out);
    }
    // Keyed by the send token: a fast hasher, as this map sees every record.
    let mut in_flight: InFlightMap = InFlightMap::default();
    let mut acks = Vec::new();
    let mut next = plan.schedule.next_due_ns();
    let mut sequence = 0u64;
    loop {
        let mut now = shared.now_ns();
        let mut burst = 0;
        // A producer behind its schedule still collects acks every SEND_BURST_MAX
        // sends, so the acked count (and the backlog it feeds) stays current.
        while let Some(due) =
            next.filter(|d| *d <= now && in_flight.len() < IN_FLIGHT_MAX && burst < SEND_BURST_MAX)
        {
            burst += 1;
            let record = build(&plan, &mut rng, sequence, due, topics);
            let bytes = record.value.len() as u32;
            if due >= plan.measure_start_ns {
                out.send_lag.record(now - due);
            }
            match client.send(record) {
                Ok(()) => {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    in_flight.insert(
                        sequence,
                        InFlight {
                            intended_ns: due,
                            bytes,
                        },
                    );
                }
                Err(e) => fail(&mut out, shared, e.to_string()),
            }
            sequence += 1;
            next = plan.schedule.next_due_ns();
            now = shared.now_ns();
        }
        if next.is_none() && (in_flight.is_empty() || now >= plan.ack_deadline_ns || shared.aborted()) {
            break;
        }
        let wait = next.map_or(ACK_POLL_MAX, |d| Duration::from_nanos(d.saturating_sub(now)));
        if let Err(e) = client.poll_acks(wait.min(ACK_POLL_MAX), &mut acks) {
            fail(&mut out, shared, e.to_string());
        }
        for ack in acks.drain(..) {
            settle(&mut out, &plan, shared, &mut in_flight, ack);
        }
    }
    out.unacked_at_deadline = in_flight.len() as u64;
    Ok(out)
}

/// The closed loop: keep `window` records in flight until the schedule's
/// end, then wait for the last acks (until `ack_deadline_ns`).
fn run_closed(
    client: &mut dyn crate::driver::ProduceClient,
    plan: &mut ProducerPlan,
    shared: &Shared,
    rng: &mut impl Rng,
    topics: u32,
    window: usize,
    out: &mut ProducerOutcome,
) {
    let end = plan.schedule.end_ns();
    let mut in_flight: InFlightMap = InFlightMap::default();
    let mut acks = Vec::new();
    let mut sequence = 0u64;
    loop {
        let mut now = shared.now_ns();
        let mut burst = 0;
        while now < end && in_flight.len() < window && burst < SEND_BURST_MAX && !shared.aborted() {
            burst += 1;
            let record = build(plan, rng, sequence, now, topics);
            let bytes = record.value.len() as u32;
            match client.send(record) {
                Ok(()) => {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    in_flight.insert(
                        sequence,
                        InFlight {
                            intended_ns: now,
                            bytes,
                        },
                    );
                }
                Err(e) => fail(out, shared, e.to_string()),
            }
            sequence += 1;
            now = shared.now_ns();
        }
        if now >= end && (in_flight.is_empty() || now >= plan.ack_deadline_ns || shared.aborted()) {
            break;
        }
        // Room left: collect what is there and send on; full: wait for acks.
        let wait = if now < end && in_flight.len() < window {
            Duration::ZERO
        } else {
            ACK_POLL_MAX
        };
        if let Err(e) = client.poll_acks(wait, &mut acks) {
            fail(out, shared, e.to_string());
        }
        for ack in acks.drain(..) {
            settle(out, plan, shared, &mut in_flight, ack);
        }
    }
    out.unacked_at_deadline = in_flight.len() as u64;
}

fn build(plan: &ProducerPlan, rng: &mut impl Rng, sequence: u64, due: u64, topics: u32) -> OutRecord {
    let mut value = vec![0u8; plan.sizes.sample(rng)];
    Stamp {
        run: plan.run,
        producer: plan.index,
        sequence,
        intended_ns: due,
    }
    .write(&mut value);
    let key = plan.keys.sample_index(rng).map(KeySampler::key_bytes);
    OutRecord {
        topic: (sequence % u64::from(topics)) as u32,
        key,
        value,
        token: sequence,
    }
}

fn settle(
    out: &mut ProducerOutcome,
    plan: &ProducerPlan,
    shared: &Shared,
    in_flight: &mut InFlightMap,
    ack: AckEvent,
) {
    let Some(sent) = in_flight.remove(&ack.token) else {
        return;
    };
    let now = shared.ns_at(ack.at);
    let durability = match ack.result {
        Ok(durability) => durability,
        Err(reason) => return fail(out, shared, reason),
    };
    *out.ack_durability.entry(durability).or_insert(0) += 1;
    let latency = now.saturating_sub(sent.intended_ns);
    if sent.intended_ns >= plan.measure_start_ns {
        out.ack_latency.record(latency);
    }
    if (plan.measure_start_ns..plan.measure_end_ns).contains(&now) {
        out.window_records += 1;
        out.window_bytes += u64::from(sent.bytes);
    }
    out.series.record(now, u64::from(sent.bytes), Some(latency));
    out.ledger.ack(plan.index, ack.token);
    shared.acked.fetch_add(1, Ordering::Relaxed);
    shared.note_ack(sent.intended_ns, now);
}

fn fail(out: &mut ProducerOutcome, shared: &Shared, reason: String) {
    out.errors += 1;
    out.last_error = Some(reason);
    shared.note_error();
}
