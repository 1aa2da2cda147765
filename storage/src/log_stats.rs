//! The counters of one partition log (for metrics and benchmarks).

/// Upper bounds (microseconds) of the fdatasync latency buckets in
/// [`LogStats::sync_latency_buckets`]; the last bucket counts the rest.
pub const SYNC_LATENCY_BOUNDS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];

/// Counters of the log since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub appends: u64,
    pub writes: u64,
    pub bytes_written: u64,
    pub fdatasyncs: u64,
    /// Time spent waiting for writes and for fdatasyncs, in microseconds.
    pub write_wait_us: u64,
    pub sync_wait_us: u64,
    /// fdatasync latencies: `[i]` counts calls that took at most
    /// `SYNC_LATENCY_BOUNDS_US[i]` (and more than the bound before); the
    /// last entry counts calls slower than every bound. Not cumulative.
    pub sync_latency_buckets: [u64; SYNC_LATENCY_BOUNDS_US.len() + 1],
    /// Reads answered from the tail batch cache, and reads that went to
    /// the segment files (empty reads at the end of the log count as neither).
    pub cache_reads: u64,
    pub disk_reads: u64,
}

impl LogStats {
    /// Counts one fdatasync that took `us` microseconds.
    pub(crate) fn record_sync(&mut self, us: u64) {
        let bucket = SYNC_LATENCY_BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(SYNC_LATENCY_BOUNDS_US.len());
        self.sync_latency_buckets[bucket] += 1;
        self.fdatasyncs += 1;
        self.sync_wait_us += us;
    }
}
