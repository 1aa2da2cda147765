//! Burst figures: how far consumers fell behind and how long they took to catch up.
//!
//! The driver samples consumer lag (records acknowledged to producers but not
//! yet received by consumers) over the run. Given the burst window, this
//! module answers the peak lag, when it happened, and the drain time: from
//! the end of the burst until the lag is back at or under the threshold
//! (normally the highest lag seen in steady state before the burst). Lag in
//! seconds — the business delay — comes from the end-to-end latency of the
//! records consumed after the burst began, measured elsewhere.

use serde::Serialize;

/// A lag sample: `(ns since the run's epoch, lag in records)`.
pub type LagSample = (u64, u64);

/// What a burst did to the consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BurstFigures {
    pub peak_lag_records: u64,
    pub peak_lag_at_ns: u64,
    /// The lag level counted as drained.
    pub drain_threshold_records: u64,
    /// From the end of the burst to the first sample at or under the threshold;
    /// `None` when the run ended first.
    pub drain_ns: Option<u64>,
}

/// Highest lag among samples taken before `until_ns` (the steady baseline).
pub fn steady_lag_max(samples: &[LagSample], from_ns: u64, until_ns: u64) -> u64 {
    samples
        .iter()
        .filter(|(t, _)| (from_ns..until_ns).contains(t))
        .map(|s| s.1)
        .max()
        .unwrap_or(0)
}

/// Peak lag from the burst's start on and the drain time after its end.
pub fn analyse(
    samples: &[LagSample],
    burst_start_ns: u64,
    burst_end_ns: u64,
    threshold: u64,
) -> BurstFigures {
    let (peak_lag_at_ns, peak_lag_records) = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= burst_start_ns)
        .fold((burst_start_ns, 0), |best, s| if s.1 > best.1 { s } else { best });
    if peak_lag_records <= threshold {
        // The burst never pushed the lag above its steady level: nothing to drain.
        return BurstFigures {
            peak_lag_records,
            peak_lag_at_ns,
            drain_threshold_records: threshold,
            drain_ns: Some(0),
        };
    }
    let drained_at = samples
        .iter()
        .filter(|(t, _)| *t >= burst_end_ns.max(peak_lag_at_ns))
        .find(|(_, lag)| *lag <= threshold)
        .map(|(t, _)| *t);
    BurstFigures {
        peak_lag_records,
        peak_lag_at_ns,
        drain_threshold_records: threshold,
        drain_ns: drained_at.map(|t| t - burst_end_ns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Lag, sampled every ms, of consumers that take 1 record/ms while producers
    /// send 1/ms, except 3/ms between 1 s and 2 s; with a backlog the consumers
    /// take 2/ms, so they drain 1 record/ms after the burst. The floor is 5.
    fn model() -> Vec<LagSample> {
        let mut lag: i64 = 5;
        let mut out = Vec::new();
        for ms in 0..6_000u64 {
            let (produced, consumed) = match ms {
                1_000..=1_999 => (3, 1),
                _ if lag > 5 => (1, 2),
                _ => (1, 1),
            };
            lag = (lag + produced - consumed).max(5);
            out.push((ms * MS, lag as u64));
        }
        out
    }

    #[test]
    fn peak_and_drain_of_a_known_burst() {
        // Proves a 2000-record burst backlog drained at 1 record/ms reports a 1.999 s drain.
        let samples = model();
        let threshold = steady_lag_max(&samples, 0, 1_000 * MS);
        assert_eq!(threshold, 5);
        let f = analyse(&samples, 1_000 * MS, 2_000 * MS, threshold);
        assert_eq!(f.peak_lag_records, 2_005);
        assert_eq!(f.peak_lag_at_ns, 1_999 * MS);
        assert_eq!(f.drain_ns, Some(1_999 * MS));
    }

    #[test]
    fn a_burst_absorbed_without_backlog_drains_in_zero() {
        // Proves a burst whose lag never rises above the steady level reports a zero drain time.
        let samples: Vec<LagSample> = (0..100u64).map(|ms| (ms * MS, 3 + ms % 3)).collect();
        let f = analyse(&samples, 40 * MS, 60 * MS, 5);
        assert_eq!(f.drain_ns, Some(0));
        assert_eq!(f.peak_lag_records, 5);
    }

    #[test]
    fn a_burst_that_never_drains_has_no_drain_time() {
        // Proves a run that ends before the lag recovers reports no drain time.
        let samples = model();
        let f = analyse(&samples[..3_000], 1_000 * MS, 2_000 * MS, 5);
        assert_eq!(f.drain_ns, None);
        assert_eq!(f.peak_lag_records, 2_005);
    }
}
