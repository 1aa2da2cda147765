//! What the phase's threads share: the clock, the measured window, the
//! counters the engine samples and the flags that stop them. Producers and
//! consumers import it; the engine, which starts them, imports them (not
//! the other way round).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// No time recorded yet.
pub(crate) const NONE: u64 = u64::MAX;

/// The phase's measured window and burst start, in ns since the epoch;
/// known once the schedule starts.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub measure_start_ns: u64,
    pub measure_end_ns: u64,
    /// Records intended at or after this time count towards the burst's peak delay.
    pub burst_start_ns: Option<u64>,
}

/// State shared by the engine and its threads.
pub struct Shared {
    pub(crate) epoch: Instant,
    pub(crate) window: OnceLock<Window>,
    /// Records sent (closed loop: its backlog is what is in flight).
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    pub stop_consumers: AtomicBool,
    /// The load is over: consumers stop simulating slow work and catch up.
    pub draining: AtomicBool,
    pub(crate) abort: AtomicBool,
    pub(crate) kill_at_ns: AtomicU64,
    pub(crate) first_ack_after_kill_ns: AtomicU64,
    /// The longest produce->ack wait (from the record's intended send
    /// time) of a record acknowledged after the kill.
    pub(crate) longest_wait_after_kill_ns: AtomicU64,
    pub(crate) errors_after_kill: AtomicU64,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            window: OnceLock::new(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            received: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stop_consumers: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            kill_at_ns: AtomicU64::new(NONE),
            first_ack_after_kill_ns: AtomicU64::new(NONE),
            longest_wait_after_kill_ns: AtomicU64::new(0),
            errors_after_kill: AtomicU64::new(0),
        }
    }

    /// Nanoseconds since the phase's epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Nanoseconds since the epoch at `instant` (0 if before it).
    pub fn ns_at(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// The measured window, once the schedule has started.
    pub fn window(&self) -> Option<Window> {
        self.window.get().copied()
    }

    /// True once any thread failed: the others wind down.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// A record intended at `intended_ns` was acked at `now_ns`.
    pub fn note_ack(&self, intended_ns: u64, now_ns: u64) {
        let kill_at = self.kill_at_ns.load(Ordering::Relaxed);
        if intended_ns >= kill_at {
            self.first_ack_after_kill_ns.fetch_min(now_ns, Ordering::Relaxed);
        }
        if now_ns >= kill_at {
            self.longest_wait_after_kill_ns
                .fetch_max(now_ns.saturating_sub(intended_ns), Ordering::Relaxed);
        }
    }

    /// A send or ack failed.
    pub fn note_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.kill_at_ns.load(Ordering::Relaxed) != NONE {
            self.errors_after_kill.fetch_add(1, Ordering::Relaxed);
        }
    }
}
