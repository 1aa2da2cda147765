//! Retry timing and storm protection, sans-IO: every function takes `now`.
//!
//! - [`backoff_ms`]: exponential backoff with "equal jitter": the delay
//!   before redelivery after the `n`th failure is drawn from
//!   `[d/2, d]` where `d = min(backoff_max, base * 2^(n-1))`. Half the delay
//!   is guaranteed (so a burst of failures spreads out but never retries
//!   sooner than the policy promises), half is random (so consumers that
//!   failed together do not retry together).
//! - [`RetryBudget`]: retries may be at most `permille / 1000` of all
//!   deliveries over a sliding window, plus a small reserve so a quiet group
//!   can still retry. Over budget, a due retry simply waits (it is re-checked
//!   on the next poll): records are delayed, never dropped. A retry that is
//!   acked is refunded: the budget caps retry load while retries keep
//!   failing, and stops limiting as soon as they succeed (so a recovered
//!   group drains its retry backlog at full speed).
//! - [`CircuitBreaker`]: when failures are more than `failure_permille` of
//!   the outcomes (acks + failures) in the window, with at least
//!   `volume_min` outcomes, the breaker opens and the group gets no records
//!   for `open_ms`; then it lets `probes_max` records through (half-open).
//!   The first acked probe closes it; a failed probe opens it again.

use shoal_protocol::messages::stats::CircuitState;
use shoal_protocol::messages::topic::RetryPolicy;

/// Sliding window over which the budget and breaker count, in ms.
pub const STORM_WINDOW_MS: i64 = 10_000;
/// Buckets the window is split into (it slides one bucket at a time).
const WINDOW_BUCKETS: usize = 10;
pub use shoal_config::{BREAKER_FAILURE_PERMILLE_DEFAULT, RETRY_BUDGET_PERMILLE_DEFAULT};
/// Retries allowed per window regardless of the share (the reserve).
pub const RETRY_BUDGET_RESERVE_PER_WINDOW: u64 = 10;
/// Outcomes needed in the window before the breaker may open.
pub const BREAKER_VOLUME_MIN: u64 = 20;
/// How long an open breaker pauses delivery before probing.
pub const BREAKER_OPEN_MS_DEFAULT: i64 = shoal_config::BREAKER_OPEN_MS_DEFAULT as i64;
/// Records delivered while half-open before an outcome is required.
pub const BREAKER_PROBES_MAX: u32 = 5;

/// The delay before redelivering a record that has failed `failures` times
/// (`failures >= 1`); `jitter` in `[0, 1)` picks the point in `[d/2, d]`.
pub fn backoff_ms(policy: &RetryPolicy, failures: u32, jitter: f64) -> u64 {
    let full = backoff_full_ms(policy, failures);
    let half = full / 2;
    half + ((full - half) as f64 * jitter.clamp(0.0, 1.0)) as u64
}

/// `min(backoff_max, base * 2^(failures-1))`: the upper end of the delay.
pub fn backoff_full_ms(policy: &RetryPolicy, failures: u32) -> u64 {
    let exponent = failures.saturating_sub(1).min(32);
    let base = u64::from(policy.backoff_base_ms);
    base.saturating_mul(1u64 << exponent)
        .min(u64::from(policy.backoff_max_ms))
}

/// Two counters per time bucket over a sliding window.
#[derive(Debug, Clone)]
struct Window {
    bucket_ms: i64,
    /// (bucket start, [a, b]) oldest first.
    buckets: std::collections::VecDeque<(i64, [u64; 2])>,
}

impl Window {
    fn new(window_ms: i64) -> Self {
        Window {
            bucket_ms: (window_ms / WINDOW_BUCKETS as i64).max(1),
            buckets: std::collections::VecDeque::with_capacity(WINDOW_BUCKETS + 1),
        }
    }

    fn add(&mut self, now: i64, which: usize, n: u64) {
        self.expire(now);
        let start = now - now.rem_euclid(self.bucket_ms);
        match self.buckets.back_mut() {
            Some((s, counts)) if *s == start => counts[which] += n,
            _ => {
                let mut counts = [0; 2];
                counts[which] = n;
                self.buckets.push_back((start, counts));
            }
        }
    }

    fn expire(&mut self, now: i64) {
        let oldest = now - self.bucket_ms * WINDOW_BUCKETS as i64;
        while self.buckets.front().is_some_and(|(s, _)| *s <= oldest) {
            self.buckets.pop_front();
        }
    }

    /// Takes one back from the newest bucket that has one.
    fn take(&mut self, now: i64, which: usize) {
        self.expire(now);
        if let Some((_, counts)) = self.buckets.iter_mut().rev().find(|(_, c)| c[which] > 0) {
            counts[which] -= 1;
        }
    }

    fn totals(&mut self, now: i64) -> [u64; 2] {
        self.expire(now);
        self.buckets
            .iter()
            .fold([0, 0], |acc, (_, c)| [acc[0] + c[0], acc[1] + c[1]])
    }

    fn clear(&mut self) {
        self.buckets.clear();
    }
}

/// Caps retries at a share of deliveries over a sliding window.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    pub permille: u32,
    /// [deliveries (first and retries), retries]
    window: Window,
}

impl RetryBudget {
    pub fn new(permille: u32) -> Self {
        RetryBudget {
            permille,
            window: Window::new(STORM_WINDOW_MS),
        }
    }

    /// Counts one delivery; `retry` when it is a redelivery.
    pub fn record_delivery(&mut self, now: i64, retry: bool) {
        self.window.add(now, 0, 1);
        if retry {
            self.window.add(now, 1, 1);
        }
    }

    /// An acked retry no longer counts against the budget.
    pub fn refund(&mut self, now: i64) {
        self.window.take(now, 1);
    }

    /// True if one more retry stays within the budget.
    pub fn allows_retry(&mut self, now: i64) -> bool {
        let [deliveries, retries] = self.window.totals(now);
        if retries < RETRY_BUDGET_RESERVE_PER_WINDOW {
            return true;
        }
        (retries + 1) * 1000 <= u64::from(self.permille) * (deliveries + 1)
    }

    /// Retries per 1000 deliveries in the current window.
    pub fn used_permille(&mut self, now: i64) -> u32 {
        let [deliveries, retries] = self.window.totals(now);
        (retries * 1000).checked_div(deliveries).unwrap_or(0) as u32
    }
}

/// What the breaker lets a poll deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Deliver normally.
    All,
    /// Half-open: deliver at most this many records.
    Probe(u32),
    /// Deliver nothing; ask again after this many ms.
    Paused { retry_in_ms: u32 },
}

/// Pauses delivery to a group whose failure rate spikes.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    pub failure_permille: u32,
    pub open_ms: i64,
    state: CircuitState,
    opened_at: i64,
    probes_left: u32,
    /// [successes, failures]
    window: Window,
    pub opened_total: u64,
}

impl CircuitBreaker {
    pub fn new(failure_permille: u32, open_ms: i64) -> Self {
        CircuitBreaker {
            failure_permille,
            open_ms,
            state: CircuitState::Closed,
            opened_at: 0,
            probes_left: 0,
            window: Window::new(STORM_WINDOW_MS),
            opened_total: 0,
        }
    }

    /// The state at `now` (an open breaker turns half-open after `open_ms`).
    pub fn state(&mut self, now: i64) -> CircuitState {
        if self.state == CircuitState::Open && now - self.opened_at >= self.open_ms {
            self.state = CircuitState::HalfOpen;
            self.probes_left = BREAKER_PROBES_MAX;
        }
        self.state
    }

    pub fn admission(&mut self, now: i64) -> Admission {
        match self.state(now) {
            CircuitState::Closed => Admission::All,
            CircuitState::HalfOpen if self.probes_left > 0 => Admission::Probe(self.probes_left),
            CircuitState::HalfOpen => Admission::Paused { retry_in_ms: 100 },
            CircuitState::Open => Admission::Paused {
                retry_in_ms: (self.open_ms - (now - self.opened_at)).clamp(1, i64::from(u32::MAX)) as u32,
            },
        }
    }

    /// Counts records handed out while half-open.
    pub fn record_deliveries(&mut self, n: u32) {
        if self.state == CircuitState::HalfOpen {
            self.probes_left = self.probes_left.saturating_sub(n);
        }
    }

    /// Counts an outcome: an ack (`success`) or a failure (nack, reject,
    /// lease expiry).
    pub fn record_outcome(&mut self, now: i64, success: bool) {
        match (self.state(now), success) {
            (CircuitState::HalfOpen, true) => {
                self.state = CircuitState::Closed;
                self.window.clear();
            }
            (CircuitState::HalfOpen, false) => self.open(now),
            (CircuitState::Open, _) => {}
            (CircuitState::Closed, _) => {
                self.window.add(now, usize::from(!success), 1);
                let [ok, failed] = self.window.totals(now);
                let total = ok + failed;
                if total >= BREAKER_VOLUME_MIN && failed * 1000 > u64::from(self.failure_permille) * total {
                    self.open(now);
                }
            }
        }
    }

    fn open(&mut self, now: i64) {
        self.state = CircuitState::Open;
        self.opened_at = now;
        self.opened_total += 1;
        self.window.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn policy(base: u32, max: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            backoff_base_ms: base,
            backoff_max_ms: max,
            dead_letter: true,
            ordered_retry: false,
        }
    }

    /// The delay doubles per failure, is capped, and jitter stays in [d/2, d].
    #[test]
    fn backoff_doubles_and_caps() {
        let p = policy(100, 1000);
        let full: Vec<u64> = (1..=6).map(|n| backoff_full_ms(&p, n)).collect();
        assert_eq!(full, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff_ms(&p, 1, 0.0), 50);
        assert_eq!(backoff_ms(&p, 3, 0.999_999), 399);
    }

    quickcheck! {
        /// For any policy, failure count and jitter the delay is within [d/2, d].
        fn backoff_within_bounds(base: u16, max: u16, failures: u8, jitter: f64) -> bool {
            let p = policy(u32::from(base), u32::from(max));
            let d = backoff_full_ms(&p, u32::from(failures));
            let got = backoff_ms(&p, u32::from(failures), if jitter.is_finite() { jitter.abs().fract() } else { 0.0 });
            got >= d / 2 && got <= d
        }
    }

    /// Past the reserve, retries are held to the share of deliveries.
    #[test]
    fn budget_caps_retries() {
        let mut b = RetryBudget::new(200);
        let now = 1_000_000;
        for _ in 0..100 {
            b.record_delivery(now, false);
        }
        let mut retries = 0;
        while b.allows_retry(now) {
            b.record_delivery(now, true);
            retries += 1;
            assert!(retries < 1000, "budget never closed");
        }
        // 25 retries out of 125 deliveries is exactly 200 permille.
        assert_eq!(retries, 25);
        assert_eq!(b.used_permille(now), 200);
        // Acked retries are refunded.
        b.refund(now);
        assert!(b.allows_retry(now));
        // The window slides: later the old deliveries no longer count.
        assert!(b.allows_retry(now + STORM_WINDOW_MS + 1));
    }

    /// The breaker opens on a failure spike, pauses, probes, and closes on success.
    #[test]
    fn breaker_cycle() {
        let mut c = CircuitBreaker::new(500, 1000);
        let t = 50_000;
        for _ in 0..BREAKER_VOLUME_MIN - 1 {
            c.record_outcome(t, false);
        }
        assert_eq!(c.admission(t), Admission::All, "below the volume minimum");
        c.record_outcome(t, false);
        assert!(matches!(c.admission(t), Admission::Paused { .. }));
        assert_eq!(c.admission(t + 1000), Admission::Probe(BREAKER_PROBES_MAX));
        c.record_deliveries(BREAKER_PROBES_MAX);
        assert!(matches!(c.admission(t + 1000), Admission::Paused { .. }));
        c.record_outcome(t + 1001, false);
        assert_eq!(c.state(t + 1001), CircuitState::Open, "a failed probe reopens");
        c.record_outcome(t + 2001, true);
        assert_eq!(c.state(t + 2001), CircuitState::Closed, "an acked probe closes");
        assert_eq!(c.opened_total, 2);
    }

    /// Mostly successful traffic never opens the breaker.
    #[test]
    fn breaker_stays_closed_under_threshold() {
        let mut c = CircuitBreaker::new(500, 1000);
        for i in 0..1000 {
            c.record_outcome(i, i % 3 != 0);
        }
        assert_eq!(c.state(1000), CircuitState::Closed);
    }
}
