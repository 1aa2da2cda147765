//! HDR latency histograms: recording, merging and the percentiles we report.
//!
//! Values are nanoseconds. A [`LatencyHistogram`] keeps 3 significant digits
//! between 1 ns and [`LATENCY_NS_MAX`]; a value above the range is recorded as
//! the range's maximum and counted in `saturated`, so an outlier is never
//! dropped silently. Each producer or consumer thread owns its own histogram
//! and the run merges them at the end: merging is exact (bucket counts add),
//! so the merged percentiles equal those of one histogram fed every sample.
//!
//! Coordinated omission: an open-loop driver records `completed - intended`
//! (see [`crate::schedule`]), which needs no correction. A closed-loop
//! measurement (one request at a time, next one sent when the previous
//! returns) hides the requests that *would* have been sent while a slow
//! one was outstanding; [`LatencyHistogram::record_closed_loop`] fills them in
//! the way HdrHistogram's `recordValueWithExpectedInterval` does.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram tracks exactly: one hour.
pub const LATENCY_NS_MAX: u64 = 3_600 * 1_000_000_000;
/// Significant decimal digits kept by full-precision histograms.
pub const SIGFIG_FULL: u8 = 3;
/// Significant decimal digits kept by per-second histograms (smaller memory).
pub const SIGFIG_COARSE: u8 = 2;

/// A latency histogram in nanoseconds that never loses a sample.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
    saturated: u64,
}

impl LatencyHistogram {
    /// A histogram keeping [`SIGFIG_FULL`] significant digits.
    pub fn new() -> Self {
        Self::with_sigfig(SIGFIG_FULL)
    }

    /// A histogram keeping `sigfig` (1..=5) significant digits.
    pub fn with_sigfig(sigfig: u8) -> Self {
        let inner = Histogram::new_with_bounds(1, LATENCY_NS_MAX, sigfig)
            .expect("bounds 1..LATENCY_NS_MAX with sigfig 1..=5 are valid");
        Self { inner, saturated: 0 }
    }

    /// Records one latency. Zero is recorded as 1 ns (the lowest bucket).
    pub fn record(&mut self, latency_ns: u64) {
        let value = self.clamp(latency_ns);
        self.inner.saturating_record(value);
    }

    /// Records one latency measured in a closed loop whose requests were meant
    /// to go out every `expected_interval_ns`, and back-fills the samples the
    /// loop could not send while this one was outstanding: `latency - k *
    /// interval` for every `k >= 1` while that stays at least one interval.
    pub fn record_closed_loop(&mut self, latency_ns: u64, expected_interval_ns: u64) {
        let value = self.clamp(latency_ns);
        if self.inner.record_correct(value, expected_interval_ns).is_err() {
            self.inner.saturating_record(value);
        }
    }

    /// Adds every sample of `other` to this histogram.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        self.inner
            .add(&other.inner)
            .expect("histograms with identical bounds always add");
        self.saturated += other.saturated;
    }

    /// Number of samples recorded (including back-filled ones).
    pub fn count(&self) -> u64 {
        self.inner.len()
    }

    /// Latency at `quantile` (0.0..=1.0), in nanoseconds; 0 when empty.
    pub fn quantile_ns(&self, quantile: f64) -> u64 {
        if self.inner.is_empty() {
            return 0;
        }
        self.inner.value_at_quantile(quantile)
    }

    /// Forgets every sample.
    pub fn reset(&mut self) {
        self.inner.reset();
        self.saturated = 0;
    }

    /// The reported percentiles of this histogram.
    pub fn summary(&self) -> LatencySummary {
        if self.inner.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.inner.len(),
            mean_ns: self.inner.mean().round() as u64,
            p50_ns: self.inner.value_at_quantile(0.50),
            p90_ns: self.inner.value_at_quantile(0.90),
            p99_ns: self.inner.value_at_quantile(0.99),
            p999_ns: self.inner.value_at_quantile(0.999),
            p9999_ns: self.inner.value_at_quantile(0.9999),
            max_ns: self.inner.max(),
            saturated: self.saturated,
        }
    }

    fn clamp(&mut self, latency_ns: u64) -> u64 {
        if latency_ns > LATENCY_NS_MAX {
            self.saturated += 1;
            return LATENCY_NS_MAX;
        }
        latency_ns.max(1)
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The percentiles every latency figure is reported with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    /// Samples above [`LATENCY_NS_MAX`], recorded as that maximum.
    pub saturated: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two histograms within 0.1% of a value count as equal at 3 digits.
    fn close(actual: u64, expected: u64) -> bool {
        let tolerance = expected / 1000 + 1;
        actual.abs_diff(expected) <= tolerance
    }

    #[test]
    fn percentiles_of_one_to_ten_thousand() {
        // Proves the reported percentiles match the ranks of a known uniform input.
        let mut h = LatencyHistogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1_000);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert!(close(s.p50_ns, 5_000_000), "p50 {}", s.p50_ns);
        assert!(close(s.p90_ns, 9_000_000), "p90 {}", s.p90_ns);
        assert!(close(s.p99_ns, 9_900_000), "p99 {}", s.p99_ns);
        assert!(close(s.p999_ns, 9_990_000), "p99.9 {}", s.p999_ns);
        assert!(close(s.p9999_ns, 9_999_000), "p99.99 {}", s.p9999_ns);
        assert!(close(s.max_ns, 10_000_000), "max {}", s.max_ns);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        // Proves merging per-thread histograms gives exactly the histogram of all samples.
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        let mut all = LatencyHistogram::new();
        for v in 0..5_000u64 {
            let x = 1_000 + v * 37 % 9_001;
            let y = 50_000 + v * 101 % 1_000_003;
            a.record(x);
            b.record(y);
            all.record(x);
            all.record(y);
        }
        a.merge(&b);
        assert_eq!(a.summary(), all.summary());
        assert_eq!(a.count(), 10_000);
    }

    #[test]
    fn merging_keeps_the_slow_tail_of_one_thread() {
        // Proves a slow tail seen by one thread dominates the merged p99.9.
        let mut fast = LatencyHistogram::new();
        let mut slow = LatencyHistogram::new();
        for _ in 0..999 {
            fast.record(10_000);
        }
        slow.record(50_000_000);
        fast.merge(&slow);
        let s = fast.summary();
        assert!(close(s.p99_ns, 10_000));
        assert!(close(s.max_ns, 50_000_000));
        assert_eq!(s.count, 1_000);
    }

    #[test]
    fn closed_loop_correction_backfills_the_stall() {
        // Proves a 100 ms stall in a 1 ms closed loop is back-filled with 99 missing samples.
        let mut h = LatencyHistogram::new();
        for _ in 0..900 {
            h.record_closed_loop(1_000_000, 1_000_000);
        }
        h.record_closed_loop(100_000_000, 1_000_000);
        // 900 normal samples, the stall itself, and 99 synthetic ones: 99 ms, 98 ms, ... 1 ms.
        assert_eq!(h.count(), 1_000);
        let s = h.summary();
        assert!(close(s.max_ns, 100_000_000));
        // Without correction p99 would be 1 ms; the 100 back-filled samples lift it.
        assert!(s.p99_ns >= 89_000_000, "p99 {}", s.p99_ns);
        assert!(close(s.p90_ns, 1_000_000), "p90 {}", s.p90_ns);
    }

    #[test]
    fn values_beyond_the_range_are_counted_not_dropped() {
        // Proves an out-of-range latency is kept (as the maximum) and counted as saturated.
        let mut h = LatencyHistogram::new();
        h.record(LATENCY_NS_MAX * 4);
        h.record(0);
        let s = h.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.saturated, 1);
        assert!(close(s.max_ns, LATENCY_NS_MAX));
    }
}
