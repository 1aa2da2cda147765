//! How a benchmark run spends its size and time limits (pure).
//!
//! The run is a list of cases; each gets a share of the time limit and never
//! writes past the file-size limit, so `bench` uses at most `file_bytes_max`
//! of disk at any moment and finishes near `time_max`. Sequential cases share
//! one preallocated file that they overwrite in a ring; every fdatasync case
//! gets two fresh files, one growing and one preallocated, each up to half the
//! limit (appends must really extend a file to be measured), and alternates
//! between them so noise from other work on the device hits both alike.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::TuneError;

/// Block sizes of the sequential write cases.
pub const SEQ_BLOCK_BYTES: &[u32] = &[4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20];
/// Queue depths of the sequential write cases.
pub const SEQ_QUEUE_DEPTHS: &[u32] = &[1, 4, 16];
/// Append sizes of the fdatasync cases.
pub const FSYNC_APPEND_BYTES: &[u32] = &[4 << 10, 1 << 20];
/// The latency case writes this much per I/O.
pub const LATENCY_BLOCK_BYTES: u32 = 4 << 10;

/// Smallest file limit: the largest block times the deepest queue, twice over.
pub const FILE_BYTES_MIN: u64 = 32 << 20;
/// Shortest time limit that leaves each case a useful slice.
pub const TIME_MIN: Duration = Duration::from_secs(5);
/// Share of each sequential case spent warming up and not counted.
pub const WARMUP_FRACTION: f64 = 0.1;

/// Limits for one benchmark run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchLimits {
    /// Most disk space the run occupies at once.
    pub file_bytes_max: u64,
    /// Total time the cases may take (setup and cleanup add a little).
    pub time_max: Duration,
}

impl Default for BenchLimits {
    /// About 40 s and 256 MiB: well under a minute on this VM.
    fn default() -> BenchLimits {
        BenchLimits {
            file_bytes_max: 256 << 20,
            time_max: Duration::from_secs(40),
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BenchCase {
    /// Sequential O_DIRECT writes of `block_bytes` with `queue_depth` in flight.
    SeqWrite { block_bytes: u32, queue_depth: u32 },
    /// One write at a time; the latency of each is recorded.
    WriteLatency { block_bytes: u32 },
    /// Append `append_bytes`, then fdatasync, alternating between a growing file and a
    /// preallocated one so both see the same background load; sync latencies are recorded.
    Fsync { append_bytes: u32 },
}

/// A case with its share of the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCase {
    pub case: BenchCase,
    pub time_budget: Duration,
    /// File bytes this case may occupy (the ring for sequential cases).
    pub file_bytes_max: u64,
}

/// Percent of the time limit by case family (sequential, latency, fsync).
const TIME_PERCENT: (u64, u64, u64) = (55, 10, 35);

/// Splits the limits over every case; rejects limits too small to measure.
pub fn plan(limits: &BenchLimits) -> Result<Vec<PlannedCase>, TuneError> {
    if limits.file_bytes_max < FILE_BYTES_MIN {
        return Err(TuneError::Limits(format!(
            "file size limit {} bytes is below the minimum {FILE_BYTES_MIN}",
            limits.file_bytes_max
        )));
    }
    if limits.time_max < TIME_MIN {
        return Err(TuneError::Limits(format!(
            "time limit {:?} is below the minimum {TIME_MIN:?}",
            limits.time_max
        )));
    }
    // Integer nanoseconds, rounded down, so the budgets never add up past the limit.
    let total_ns = limits.time_max.as_nanos() as u64;
    let share = |percent: u64, cases: usize| Duration::from_nanos(total_ns / 100 * percent / cases as u64);
    let seq_time = share(TIME_PERCENT.0, SEQ_BLOCK_BYTES.len() * SEQ_QUEUE_DEPTHS.len());
    let fsync_time = share(TIME_PERCENT.2, FSYNC_APPEND_BYTES.len());
    let mut cases = Vec::new();
    for &block_bytes in SEQ_BLOCK_BYTES {
        for &queue_depth in SEQ_QUEUE_DEPTHS {
            let case = BenchCase::SeqWrite {
                block_bytes,
                queue_depth,
            };
            cases.push(PlannedCase {
                case,
                time_budget: seq_time,
                file_bytes_max: limits.file_bytes_max,
            });
        }
    }
    cases.push(PlannedCase {
        case: BenchCase::WriteLatency {
            block_bytes: LATENCY_BLOCK_BYTES,
        },
        time_budget: share(TIME_PERCENT.1, 1),
        file_bytes_max: limits.file_bytes_max,
    });
    for &append_bytes in FSYNC_APPEND_BYTES {
        cases.push(PlannedCase {
            case: BenchCase::Fsync { append_bytes },
            time_budget: fsync_time,
            // Two files at once, each growing to at most half the limit.
            file_bytes_max: limits.file_bytes_max / 2,
        });
    }
    Ok(cases)
}

/// Largest queue depth and block size any case uses (ring and buffer sizes).
pub fn io_shape_max(cases: &[PlannedCase]) -> (u32, u32) {
    let mut depth = 1;
    let mut block = LATENCY_BLOCK_BYTES;
    for c in cases {
        match c.case {
            BenchCase::SeqWrite {
                block_bytes,
                queue_depth,
            } => {
                depth = depth.max(queue_depth);
                block = block.max(block_bytes);
            }
            BenchCase::WriteLatency { block_bytes } => block = block.max(block_bytes),
            BenchCase::Fsync { append_bytes, .. } => block = block.max(append_bytes),
        }
    }
    (depth, block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    /// The default plan covers every case family and stays inside its limits.
    #[test]
    fn default_plan_fits() {
        let limits = BenchLimits::default();
        let cases = plan(&limits).unwrap();
        assert_eq!(
            cases.len(),
            SEQ_BLOCK_BYTES.len() * SEQ_QUEUE_DEPTHS.len() + 1 + FSYNC_APPEND_BYTES.len()
        );
        let total: Duration = cases.iter().map(|c| c.time_budget).sum();
        assert!(total <= limits.time_max, "{total:?}");
        assert!(
            total.as_secs_f64() > limits.time_max.as_secs_f64() * 0.99,
            "the time is used: {total:?}"
        );
        assert_eq!(io_shape_max(&cases), (16, 1 << 20));
        let (depth, block) = io_shape_max(&cases);
        assert!(u64::from(depth) * u64::from(block) * 2 <= FILE_BYTES_MIN);
        let fsync = cases
            .iter()
            .find(|c| matches!(c.case, BenchCase::Fsync { .. }))
            .unwrap();
        assert_eq!(
            fsync.file_bytes_max * 2,
            limits.file_bytes_max,
            "two files share the size limit"
        );
    }

    /// Limits below the minimums are refused with a reason.
    #[test]
    fn refuses_tiny_limits() {
        let small_file = BenchLimits {
            file_bytes_max: 1 << 20,
            ..BenchLimits::default()
        };
        assert!(plan(&small_file).unwrap_err().to_string().contains("file size"));
        let short = BenchLimits {
            time_max: Duration::from_secs(1),
            ..BenchLimits::default()
        };
        assert!(plan(&short).unwrap_err().to_string().contains("time limit"));
    }

    quickcheck! {
        /// For any accepted limits, budgets sum to at most the time limit and no case exceeds the file limit.
        fn plan_respects_limits(file_mib: u16, time_s: u16) -> bool {
            let limits = BenchLimits {
                file_bytes_max: u64::from(file_mib) << 20,
                time_max: Duration::from_secs(u64::from(time_s)),
            };
            match plan(&limits) {
                Err(_) => limits.file_bytes_max < FILE_BYTES_MIN || limits.time_max < TIME_MIN,
                Ok(cases) => {
                    let total: Duration = cases.iter().map(|c| c.time_budget).sum();
                    total <= limits.time_max && cases.iter().all(|c| c.file_bytes_max <= limits.file_bytes_max)
                }
            }
        }
    }
}
