//! One load phase: consumers ready, producers on schedule, sampling, merge.
//!
//! Order of events: consumer threads open their clients and report ready
//! (positioned at the partitions' ends or joined to a fresh group), then the
//! schedule starts at `t0` and producer threads run it. Every
//! [`SAMPLE_EVERY`] the engine samples the produce backlog (due by the
//! schedule, not yet acked) and the consumer lag (acked, not yet received),
//! and performs the broker restart when the scenario asks for one. When the
//! schedule is over and every acked record has been received — or the drain
//! deadline has passed — consumers are stopped and every thread's
//! histograms, series and ledgers are merged into a [`PhaseResult`].
//!
//! All times are ns since the phase's epoch (`Shared::now_ns`, in `shared.rs`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::burst;
use crate::cpu::CpuReading;
use crate::distribution::{KeySampler, SizeSampler};
use crate::driver::consumer::{self, ConsumerOutcome, ConsumerPlan};
use crate::driver::producer::{self, ProducerOutcome, ProducerPlan};
use crate::driver::shared::{Shared, Window};
use crate::driver::{BrokerControl, Connector};
use crate::error::BenchError;
use crate::histogram::LatencyHistogram;
use crate::ledger::DeliveryLedger;
use crate::report::model::{BurstReport, PhaseResult, Placement, RestartReport, Throughput};
use crate::schedule::{OpenLoopSchedule, Phase};
use crate::stamp::Stamp;
use crate::timeseries::{GaugeSeries, TimeSeries};
use crate::workload::{Consumption, Workload};

/// Backlog and lag sampling period.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How long past the drain deadline a producer may stay blocked in the
/// client before the phase is declared stalled.
pub const STALL_GRACE: Duration = Duration::from_secs(10);
/// Longest wait for consumers to open and position their clients.
pub const CONSUMER_READY_MAX: Duration = Duration::from_secs(30);
use crate::driver::shared::NONE;
/// How often the drain check asks the broker for the quarantine depth.
pub const QUARANTINE_POLL: Duration = Duration::from_millis(500);

/// What to run in one phase.
#[derive(Clone, Debug)]
pub struct PhaseOptions {
    pub label: String,
    /// Distinguishes this phase's records from earlier ones in the same topics.
    pub run: u32,
    pub rate_per_s: f64,
    /// Offered load, starting at the phase's `t0`.
    pub phases: Vec<Phase>,
    /// Measured window relative to `t0`.
    pub measure_from_ns: u64,
    pub measure_until_ns: u64,
    pub consumers: u32,
    /// Closed loop: records each producer keeps in flight (the schedule
    /// then only sets when the load ends).
    pub closed_window: Option<usize>,
    /// After the load ends, how long acks and consumers get to catch up.
    pub drain: Duration,
    /// Burst window relative to `t0`.
    pub burst: Option<(u64, u64)>,
    /// Kill the broker at this offset from `t0`, restart it after the pause.
    pub restart: Option<(u64, Duration)>,
}

struct Clock {
    t0: u64,
    load_end: u64,
    deadline: u64,
}

/// Runs one phase and merges what every thread measured.
pub fn run_phase(
    connector: &Arc<dyn Connector>,
    workload: &Workload,
    opts: &PhaseOptions,
    control: Option<&mut (dyn BrokerControl + '_)>,
) -> Result<(PhaseResult, Placement), BenchError> {
    let shared = Arc::new(Shared::new());
    let workload = Arc::new(workload.clone());
    let redirects_before = connector.redirects();
    // Whatever way this function returns, the threads it spawned must wind
    // down: the guard raises the abort flag.
    let _stop_threads = AbortOnDrop(shared.clone());
    let ready = Arc::new(AtomicU32::new(0));
    let consumers: Vec<_> = (0..opts.consumers)
        .map(|i| {
            let plan = consumer_plan(&workload, opts, i);
            let (connector, workload, shared, ready) =
                (connector.clone(), workload.clone(), shared.clone(), ready.clone());
            thread::spawn(move || {
                let signal = || {
                    ready.fetch_add(1, Ordering::Release);
                };
                let result = consumer::run(connector.as_ref(), &workload, plan, &shared, signal);
                if result.is_err() {
                    shared.abort.store(true, Ordering::Relaxed);
                }
                result
            })
        })
        .collect();
    wait_ready(&shared, &ready, opts.consumers)?;
    let t0 = shared.now_ns();
    let window = Window {
        measure_start_ns: t0 + opts.measure_from_ns,
        measure_end_ns: t0 + opts.measure_until_ns,
        burst_start_ns: opts.burst.map(|(start, _)| t0 + start),
    };
    shared
        .window
        .set(window)
        .expect("the window is published once per phase");
    let schedules = OpenLoopSchedule::split(&opts.phases, workload.producers as usize, t0)?;
    let load_end = schedules.iter().map(|s| s.end_ns()).max().unwrap_or(t0);
    let clock = Clock {
        t0,
        load_end,
        deadline: load_end + opts.drain.as_nanos() as u64,
    };
    let producers: Vec<_> = schedules
        .iter()
        .enumerate()
        .map(|(i, schedule)| {
            let plan = producer_plan(&workload, opts, &clock, i as u32, schedule.clone())?;
            let (connector, workload, shared) = (connector.clone(), workload.clone(), shared.clone());
            Ok(thread::spawn(move || {
                let result = producer::run(connector.as_ref(), &workload, plan, &shared);
                if result.is_err() {
                    shared.abort.store(true, Ordering::Relaxed);
                }
                result
            }))
        })
        .collect::<Result<_, BenchError>>()?;
    // Records whose deliveries kept failing end in the group's quarantine:
    // they count toward the drain and are not lost.
    let group = (workload.consumption == Consumption::Group && opts.consumers > 0)
        .then(|| crate::driver::group_name(opts.run));
    let mut quarantined = || match &group {
        Some(group) => connector
            .quarantine_count(&workload, group)
            .ok()
            .flatten()
            .unwrap_or(0),
        None => 0,
    };
    let watched = watch(
        &shared,
        opts,
        &clock,
        &schedules,
        &producers,
        control,
        &mut quarantined,
    );
    shared.stop_consumers.store(true, Ordering::Release);
    if let Err(e) = watched {
        // A producer stuck inside the client is left behind (it cannot be
        // interrupted); the consumers stop on the abort flag.
        shared.abort.store(true, Ordering::Relaxed);
        let _ = join_all(consumers);
        return Err(e);
    }
    let produced = join_all(producers);
    let consumed = join_all(consumers);
    let offered = match opts.closed_window {
        Some(_) => Vec::new(),
        None => offered_per_second(&schedules),
    };
    let mut quarantine = DeliveryLedger::new();
    if let Some(group) = &group {
        for value in connector.quarantine_values(&workload, group)?.unwrap_or_default() {
            if let Some(stamp) = Stamp::read(&value).filter(|s| s.run == opts.run) {
                quarantine.quarantine(stamp.producer, stamp.sequence);
            }
        }
    }
    let (mut result, placement) = merge(
        &workload, opts, &clock, &shared, watched?, produced?, consumed?, offered, quarantine,
    );
    result.redirects = connector.redirects().saturating_sub(redirects_before);
    Ok((result, placement))
}

/// Raises the abort flag when dropped.
struct AbortOnDrop(Arc<Shared>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort.store(true, Ordering::Relaxed);
    }
}

fn wait_ready(shared: &Shared, ready: &AtomicU32, consumers: u32) -> Result<(), BenchError> {
    let start = Instant::now();
    while ready.load(Ordering::Acquire) < consumers {
        if shared.aborted() || start.elapsed() > CONSUMER_READY_MAX {
            shared.abort.store(true, Ordering::Relaxed);
            return Err(BenchError::Driver("consumers did not become ready".into()));
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn consumer_plan(workload: &Workload, opts: &PhaseOptions, index: u32) -> ConsumerPlan {
    ConsumerPlan {
        index,
        of: opts.consumers,
        run: opts.run,
        group: crate::driver::group_name(opts.run),
        seed: workload.seed,
        pin: workload
            .pin_threads
            .then_some((workload.producers + index) as usize),
    }
}

fn producer_plan(
    workload: &Workload,
    opts: &PhaseOptions,
    clock: &Clock,
    index: u32,
    schedule: OpenLoopSchedule,
) -> Result<ProducerPlan, BenchError> {
    Ok(ProducerPlan {
        index,
        run: opts.run,
        schedule,
        measure_start_ns: clock.t0 + opts.measure_from_ns,
        measure_end_ns: clock.t0 + opts.measure_until_ns,
        ack_deadline_ns: clock.deadline,
        sizes: SizeSampler::new(
            workload.size_distribution,
            workload.record_bytes_min,
            workload.record_bytes,
        ),
        keys: KeySampler::new(workload.key_distribution, workload.keys, workload.zipf_exponent)?,
        seed: workload.seed,
        pin: workload.pin_threads.then_some(index as usize),
        closed_window: opts.closed_window,
    })
}

#[derive(Default)]
struct Watch {
    backlog: GaugeSeries,
    lag: GaugeSeries,
    /// CPU readings at the measured window's start and end.
    cpu: (Option<CpuReading>, Option<CpuReading>),
    drained: bool,
    /// (killed at, restarted at), ns since the epoch.
    restart: Option<(u64, u64)>,
}

/// Samples backlog and lag until the phase is over; restarts the broker
/// when asked. The phase has drained once every acked record was received
/// or sits in the consumer group's quarantine (`quarantined` asks the
/// broker, at most every [`QUARANTINE_POLL`]).
fn watch<T>(
    shared: &Shared,
    opts: &PhaseOptions,
    clock: &Clock,
    schedules: &[OpenLoopSchedule],
    producers: &[thread::JoinHandle<T>],
    mut control: Option<&mut (dyn BrokerControl + '_)>,
    quarantined: &mut dyn FnMut() -> u64,
) -> Result<Watch, BenchError> {
    let mut w = Watch::default();
    let mut asked: Option<(Instant, u64)> = None;
    loop {
        let now = shared.now_ns();
        let due: u64 = match opts.closed_window {
            Some(_) => shared.sent.load(Ordering::Relaxed),
            None => schedules.iter().map(|s| s.due_count(now)).sum(),
        };
        let acked = shared.acked.load(Ordering::Relaxed);
        let received = shared.received.load(Ordering::Relaxed);
        w.backlog.push(now, due.saturating_sub(acked));
        if opts.consumers > 0 {
            w.lag.push(now, acked.saturating_sub(received));
        }
        let pid = control.as_deref().and_then(|c| c.pid());
        let at_s = now as f64 / 1e9;
        if w.cpu.0.is_none() && now >= clock.t0 + opts.measure_from_ns {
            w.cpu.0 = CpuReading::take(at_s, pid);
        }
        if w.cpu.1.is_none() && now >= clock.t0 + opts.measure_until_ns {
            w.cpu.1 = CpuReading::take(at_s, pid);
        }
        if let (Some((at, down)), None) = (opts.restart, w.restart) {
            if now >= clock.t0 + at {
                let control = control.as_deref_mut().ok_or_else(|| {
                    BenchError::Driver("the restart scenario needs a broker the harness started".into())
                })?;
                w.restart = Some(restart(shared, control, down)?);
            }
        }
        if now >= clock.load_end {
            shared.draining.store(true, Ordering::Relaxed);
        }
        let producers_done = producers.iter().all(|p| p.is_finished());
        if !producers_done && now >= clock.deadline + STALL_GRACE.as_nanos() as u64 {
            return Err(BenchError::Driver(format!(
                "a producer is still blocked inside the client {:.0} s after the load ended \
                 ({} of {due} due records acked): the broker or client stalled",
                (now - clock.load_end) as f64 / 1e9,
                acked
            )));
        }
        if producers_done {
            if opts.consumers == 0 || received >= acked {
                w.drained = true;
                return Ok(w);
            }
            if asked.is_none_or(|(at, _)| at.elapsed() >= QUARANTINE_POLL) {
                asked = Some((Instant::now(), quarantined()));
            }
            if asked.is_some_and(|(_, q)| received + q >= acked) {
                w.drained = true;
                return Ok(w);
            }
            if now >= clock.deadline || shared.aborted() {
                return Ok(w);
            }
        }
        thread::sleep(SAMPLE_EVERY);
    }
}

fn restart(
    shared: &Shared,
    control: &mut dyn BrokerControl,
    down: Duration,
) -> Result<(u64, u64), BenchError> {
    let killed_at = shared.now_ns();
    shared.kill_at_ns.store(killed_at, Ordering::Relaxed);
    control.kill()?;
    thread::sleep(down);
    control.start()?;
    Ok((killed_at, shared.now_ns()))
}

fn join_all<T>(handles: Vec<thread::JoinHandle<Result<T, BenchError>>>) -> Result<Vec<T>, BenchError> {
    let mut out = Vec::with_capacity(handles.len());
    let mut first_error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(BenchError::Driver("a load thread panicked".into()));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Records the schedules made due in each second since the epoch.
fn offered_per_second(schedules: &[OpenLoopSchedule]) -> Vec<u64> {
    const SEC: u64 = 1_000_000_000;
    let end = schedules.iter().map(|s| s.end_ns()).max().unwrap_or(0);
    let due_by = |t: u64| -> u64 { schedules.iter().map(|s| s.due_count(t)).sum() };
    (0..end.div_ceil(SEC))
        .map(|s| due_by((s + 1) * SEC - 1) - if s == 0 { 0 } else { due_by(s * SEC - 1) })
        .collect()
}

#[allow(clippy::too_many_arguments)] // one call site; the pieces are the phase's parts
fn merge(
    workload: &Workload,
    opts: &PhaseOptions,
    clock: &Clock,
    shared: &Shared,
    watch: Watch,
    produced: Vec<ProducerOutcome>,
    consumed: Vec<ConsumerOutcome>,
    offered_series: Vec<u64>,
    quarantine: DeliveryLedger,
) -> (PhaseResult, Placement) {
    let mut placement = Placement::default();
    let (mut ack, mut lag, mut series, mut ledger) = (
        LatencyHistogram::new(),
        LatencyHistogram::new(),
        TimeSeries::new(),
        quarantine,
    );
    let (mut errors, mut unanswered, mut records, mut bytes) = (0, 0, 0, 0);
    let mut ack_durability = std::collections::BTreeMap::new();
    for p in &produced {
        ack.merge(&p.ack_latency);
        lag.merge(&p.send_lag);
        series.merge(&p.series);
        ledger.merge(&p.ledger);
        (errors, unanswered) = (errors + p.errors, unanswered + p.unacked_at_deadline);
        (records, bytes) = (records + p.window_records, bytes + p.window_bytes);
        placement.producer_cores.push(p.core);
        for (durability, n) in &p.ack_durability {
            *ack_durability.entry(durability.to_string()).or_insert(0) += n;
        }
    }
    let (mut e2e, mut c_series) = (LatencyHistogram::new(), TimeSeries::new());
    let (mut c_records, mut c_bytes, mut peak_burst_delay) = (0, 0, 0);
    let (mut nacked, mut redelivered) = (0, 0);
    for c in &consumed {
        (nacked, redelivered) = (nacked + c.nacked, redelivered + c.redelivered);
        e2e.merge(&c.end_to_end);
        c_series.merge(&c.series);
        ledger.merge(&c.ledger);
        (c_records, c_bytes) = (c_records + c.window_records, c_bytes + c.window_bytes);
        peak_burst_delay = peak_burst_delay.max(c.peak_burst_delay_ns);
        placement.consumer_cores.push(c.core);
    }
    let (start, end) = (clock.t0 + opts.measure_from_ns, clock.t0 + opts.measure_until_ns);
    let seconds = (end - start) as f64 / 1e9;
    let burst = opts.burst.map(|(from, to)| {
        let threshold = burst::steady_lag_max(&watch.lag.samples, start, clock.t0 + from);
        let figures = burst::analyse(&watch.lag.samples, clock.t0 + from, clock.t0 + to, threshold);
        BurstReport {
            figures,
            peak_end_to_end_ns: peak_burst_delay,
        }
    });
    let restart = watch.restart.map(|(killed_at_ns, restarted_at_ns)| {
        let first = shared.first_ack_after_kill_ns.load(Ordering::Relaxed);
        RestartReport {
            killed_at_ns,
            restarted_at_ns,
            unavailable_ns: (first != NONE).then(|| first.saturating_sub(killed_at_ns)),
            longest_wait_ns: shared.longest_wait_after_kill_ns.load(Ordering::Relaxed),
            produce_errors_during: shared.errors_after_kill.load(Ordering::Relaxed),
        }
    });
    let result = PhaseResult {
        label: opts.label.clone(),
        offered_rate_per_s: if opts.closed_window.is_some() {
            0.0
        } else {
            opts.rate_per_s
        },
        closed_window: opts.closed_window,
        measure_start_ns: start,
        measure_end_ns: end,
        produce: Throughput::over(records, bytes, seconds),
        consume: Throughput::over(c_records, c_bytes, seconds),
        ack_latency: ack.summary(),
        end_to_end: e2e.summary(),
        send_lag: lag.summary(),
        produce_errors: errors,
        redirects: 0,
        unanswered,
        nacked,
        redelivered,
        ack_durability,
        offered_series,
        produce_series: series.points(),
        consume_series: c_series.points(),
        backlog: watch.backlog,
        consumer_lag: watch.lag,
        burst,
        restart,
        delivery: (opts.consumers > 0).then(|| ledger.verdict(workload.delivery)),
        drained: watch.drained,
        cpu: match watch.cpu {
            (Some(start), Some(end)) => start.share_until(&end),
            _ => None,
        },
    };
    (result, placement)
}
