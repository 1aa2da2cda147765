//! Per-second time series: throughput and latency percentiles over the run.
//!
//! Each thread keeps its own [`TimeSeries`] and records every completion at
//! the second it happened (seconds since the run's epoch); the run merges
//! them. A second's latency histogram keeps [`SIGFIG_COARSE`] digits so a long
//! run stays small; the run's headline percentiles come from full-precision
//! histograms kept separately. A series covers at most [`SERIES_SECONDS_MAX`]
//! seconds; completions later than that are counted in `beyond_range`.
//!
//! [`GaugeSeries`] holds sampled levels (backlog, consumer lag) at whatever
//! times the driver sampled them.

use serde::Serialize;

use crate::histogram::{LatencyHistogram, SIGFIG_COARSE};

/// Longest run a series covers: one day.
pub const SERIES_SECONDS_MAX: usize = 24 * 3600;
const NS_PER_S: u64 = 1_000_000_000;

#[derive(Clone, Debug)]
struct Bucket {
    records: u64,
    bytes: u64,
    latency: LatencyHistogram,
}

impl Bucket {
    fn new() -> Self {
        Self {
            records: 0,
            bytes: 0,
            latency: LatencyHistogram::with_sigfig(SIGFIG_COARSE),
        }
    }
}

/// Completions per second with their latency distribution.
#[derive(Clone, Debug, Default)]
pub struct TimeSeries {
    buckets: Vec<Bucket>,
    beyond_range: u64,
}

/// One second of a series, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Seconds since the run's epoch (this point covers `[second, second + 1)`).
    pub second: u64,
    pub records: u64,
    pub bytes: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

impl TimeSeries {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one completion of `bytes` at `at_ns` with its latency, if any.
    pub fn record(&mut self, at_ns: u64, bytes: u64, latency_ns: Option<u64>) {
        let Some(bucket) = self.bucket_mut((at_ns / NS_PER_S) as usize) else {
            self.beyond_range += 1;
            return;
        };
        bucket.records += 1;
        bucket.bytes += bytes;
        if let Some(latency) = latency_ns {
            bucket.latency.record(latency);
        }
    }

    /// Adds every completion of `other` into this series.
    pub fn merge(&mut self, other: &TimeSeries) {
        for (second, theirs) in other.buckets.iter().enumerate() {
            let ours = self
                .bucket_mut(second)
                .expect("other series obeyed the same bound");
            ours.records += theirs.records;
            ours.bytes += theirs.bytes;
            ours.latency.merge(&theirs.latency);
        }
        self.beyond_range += other.beyond_range;
    }

    /// Completions recorded later than [`SERIES_SECONDS_MAX`].
    pub fn beyond_range(&self) -> u64 {
        self.beyond_range
    }

    /// Every second from 0 to the last one with a completion, empty ones included.
    pub fn points(&self) -> Vec<SeriesPoint> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(second, b)| {
                let s = b.latency.summary();
                SeriesPoint {
                    second: second as u64,
                    records: b.records,
                    bytes: b.bytes,
                    p50_ns: s.p50_ns,
                    p99_ns: s.p99_ns,
                    p999_ns: s.p999_ns,
                    max_ns: s.max_ns,
                }
            })
            .collect()
    }

    fn bucket_mut(&mut self, second: usize) -> Option<&mut Bucket> {
        if second >= SERIES_SECONDS_MAX {
            return None;
        }
        if self.buckets.len() <= second {
            self.buckets.resize_with(second + 1, Bucket::new);
        }
        Some(&mut self.buckets[second])
    }
}

/// Mean records and bytes per second over the seconds `[from_s, to_s)`.
pub fn mean_rate(points: &[SeriesPoint], from_s: u64, to_s: u64) -> (f64, f64) {
    if to_s <= from_s {
        return (0.0, 0.0);
    }
    let window = points.iter().filter(|p| p.second >= from_s && p.second < to_s);
    let (records, bytes) = window.fold((0u64, 0u64), |(r, b), p| (r + p.records, b + p.bytes));
    let seconds = (to_s - from_s) as f64;
    (records as f64 / seconds, bytes as f64 / seconds)
}

/// A level sampled over time, such as a backlog in records.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GaugeSeries {
    /// `(ns since the run's epoch, value)` in the order sampled.
    pub samples: Vec<(u64, u64)>,
}

impl GaugeSeries {
    /// Keeps one sample; callers sample at a bounded rate.
    pub fn push(&mut self, at_ns: u64, value: u64) {
        self.samples.push((at_ns, value));
    }

    /// Largest value and when it was seen, or `None` when empty.
    pub fn peak(&self) -> Option<(u64, u64)> {
        self.samples
            .iter()
            .copied()
            .max_by_key(|&(t, v)| (v, std::cmp::Reverse(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_land_in_their_second() {
        // Proves records are bucketed by the second they completed in, gaps included.
        let mut s = TimeSeries::new();
        s.record(0, 100, Some(1_000));
        s.record(999_999_999, 100, Some(3_000));
        s.record(2_000_000_000, 50, None);
        let p = s.points();
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].records, p[0].bytes), (2, 200));
        assert_eq!((p[1].records, p[1].bytes), (0, 0));
        assert_eq!((p[2].records, p[2].bytes, p[2].max_ns), (1, 50, 0));
        assert!(
            p[0].max_ns >= 2_980 && p[0].max_ns <= 3_020,
            "max {}",
            p[0].max_ns
        );
    }

    #[test]
    fn merging_adds_per_second() {
        // Proves two threads' series merge second by second, keeping the slower latency tail.
        let mut a = TimeSeries::new();
        let mut b = TimeSeries::new();
        for i in 0..100 {
            a.record(i * 10_000_000, 10, Some(1_000_000));
            b.record(1_000_000_000 + i * 10_000_000, 20, Some(9_000_000));
        }
        b.record(500_000_000, 20, Some(70_000_000));
        a.merge(&b);
        let p = a.points();
        assert_eq!(p[0].records, 101);
        assert_eq!(p[1].records, 100);
        assert_eq!(p[1].bytes, 2_000);
        assert!(p[0].max_ns >= 69_000_000);
        assert!(p[0].p50_ns < 1_100_000);
        assert_eq!(mean_rate(&p, 0, 2), (100.5, 1_510.0));
    }

    #[test]
    fn late_completions_are_counted_not_stored() {
        // Proves a completion past SERIES_SECONDS_MAX is counted instead of growing memory.
        let mut s = TimeSeries::new();
        s.record(SERIES_SECONDS_MAX as u64 * NS_PER_S, 1, None);
        assert_eq!(s.beyond_range(), 1);
        assert!(s.points().is_empty());
    }

    #[test]
    fn gauge_peak_is_the_first_highest_sample() {
        // Proves the gauge peak reports the highest value and the earliest time it was seen.
        let mut g = GaugeSeries::default();
        for (t, v) in [(1, 5), (2, 9), (3, 9), (4, 1)] {
            g.push(t, v);
        }
        assert_eq!(g.peak(), Some((2, 9)));
    }
}
