//! Runs the benchmark plan against a directory and reports every figure.
//!
//! All files live in a fresh hidden directory inside the target directory and
//! are removed when the run ends, whether it succeeds or fails (the directory
//! is a `TempDir`). Before writing, the run checks that the file system has
//! room for the size limit plus a margin. Latencies are closed-loop (one I/O
//! at a time), so there is no coordinated omission to correct: each sample
//! is the full service time of one request.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::bench_plan::{io_shape_max, plan, BenchCase, BenchLimits, PlannedCase, WARMUP_FRACTION};
use crate::dio_alignment::{probe_dio_alignment, probe_free_space, DioAlignment};
use crate::error::TuneError;
use crate::uring_file::UringFile;

/// fdatasync iterations discarded at the start of each sync case.
pub const FSYNC_WARMUP_ITERATIONS: u32 = 3;
/// Free space required beyond the size limit, as a fraction of it.
pub const FREE_SPACE_MARGIN_FRACTION: f64 = 0.1;
/// Largest latency recorded; slower samples are clamped to it (60 s).
const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// Sequential write throughput at one block size and queue depth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeqWriteResult {
    pub block_bytes: u32,
    pub queue_depth: u32,
    pub bytes_written: u64,
    pub elapsed_ms: f64,
    pub bandwidth_mib_per_sec: f64,
    pub iops: f64,
}

/// A latency distribution in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl LatencySummary {
    /// Summarises a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencySummary {
            samples: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// fdatasync latency after each append of `append_bytes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsyncResult {
    pub append_bytes: u32,
    /// Whether the file was fallocated up front (appends then fill reserved space).
    pub preallocated: bool,
    pub sync: LatencySummary,
    /// The append write itself, for comparison.
    pub write: LatencySummary,
}

/// Everything one `shoal-tune bench` run measured, with what it ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub dir: PathBuf,
    pub limits: BenchLimits,
    pub dio_alignment: DioAlignment,
    pub seq_write: Vec<SeqWriteResult>,
    /// 4 KiB writes at queue depth 1.
    pub write_latency: LatencySummary,
    pub fsync: Vec<FsyncResult>,
    pub elapsed_ms: f64,
}

impl BenchReport {
    /// Highest sequential bandwidth of any case.
    pub fn peak_bandwidth_mib_per_sec(&self) -> f64 {
        self.seq_write
            .iter()
            .map(|r| r.bandwidth_mib_per_sec)
            .fold(0.0, f64::max)
    }

    /// Best bandwidth at `block_bytes` with at most `depth_max` in flight.
    pub fn bandwidth_mib_per_sec(&self, block_bytes: u32, depth_max: u32) -> Option<f64> {
        self.seq_write
            .iter()
            .filter(|r| r.block_bytes == block_bytes && r.queue_depth <= depth_max)
            .map(|r| r.bandwidth_mib_per_sec)
            .reduce(f64::max)
    }

    /// The fdatasync case for one append size and preallocation choice.
    pub fn fsync_case(&self, append_bytes: u32, preallocated: bool) -> Option<&FsyncResult> {
        self.fsync
            .iter()
            .find(|f| f.append_bytes == append_bytes && f.preallocated == preallocated)
    }
}

/// Runs every planned case in a fresh directory under `dir`; `progress` hears each case as it starts.
pub fn run_bench(
    dir: &Path,
    limits: &BenchLimits,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport, TuneError> {
    let started = Instant::now();
    let cases = plan(limits)?;
    ensure_free_space(dir, limits)?;
    let dio_alignment = probe_dio_alignment(dir)?;
    let work = tempfile::Builder::new()
        .prefix(".shoal-tune-bench-")
        .tempdir_in(dir)
        .map_err(|source| TuneError::Io {
            op: "create bench directory in",
            path: dir.to_path_buf(),
            source,
        })?;
    let (depth_max, block_max) = io_shape_max(&cases);
    let mut seq_file = UringFile::create(
        &work.path().join("seq.dat"),
        depth_max,
        block_max,
        dio_alignment.mem_align_bytes,
    )?;
    progress(&format!(
        "conditioning: writing the {} ring once",
        format_bytes(limits.file_bytes_max)
    ));
    condition(&mut seq_file, limits, (depth_max, block_max))?;
    let mut report = BenchReport {
        dir: dir.to_path_buf(),
        limits: *limits,
        dio_alignment,
        seq_write: Vec::new(),
        write_latency: LatencySummary::from_histogram(&new_histogram()),
        fsync: Vec::new(),
        elapsed_ms: 0.0,
    };
    for (index, planned) in cases.iter().enumerate() {
        progress(&format!(
            "[{}/{}] {}",
            index + 1,
            cases.len(),
            describe_case(&planned.case)
        ));
        run_case(planned, &mut seq_file, work.path(), index, &mut report)?;
        if crate::interrupt::requested() {
            return Err(TuneError::Interrupted);
        }
    }
    drop(seq_file);
    work.close().map_err(|source| TuneError::Io {
        op: "remove bench directory in",
        path: dir.to_path_buf(),
        source,
    })?;
    report.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(report)
}

/// Refuses to start unless the size limit plus a margin is free.
fn ensure_free_space(dir: &Path, limits: &BenchLimits) -> Result<(), TuneError> {
    let space = probe_free_space(dir)?;
    let needed = limits.file_bytes_max + (limits.file_bytes_max as f64 * FREE_SPACE_MARGIN_FRACTION) as u64;
    if space.available_bytes < needed {
        return Err(TuneError::Limits(format!(
            "{} has {} bytes free; the run needs {needed} (lower --file-mib)",
            dir.display(),
            space.available_bytes
        )));
    }
    Ok(())
}

/// Preallocates the ring and writes it once, untimed: the first pass over
/// preallocated space converts unwritten extents, which would otherwise slow
/// whichever case ran first.
fn condition(
    file: &mut UringFile,
    limits: &BenchLimits,
    (depth, block): (u32, u32),
) -> Result<(), TuneError> {
    let region = limits.file_bytes_max;
    file.preallocate(region)?;
    file.write_sequential(block, depth, region, limits.time_max, Duration::ZERO, region)?;
    Ok(())
}

fn run_case(
    planned: &PlannedCase,
    seq_file: &mut UringFile,
    work: &Path,
    index: usize,
    report: &mut BenchReport,
) -> Result<(), TuneError> {
    match planned.case {
        BenchCase::SeqWrite {
            block_bytes,
            queue_depth,
        } => {
            let warmup = planned.time_budget.mul_f64(WARMUP_FRACTION);
            let region = planned.file_bytes_max;
            let sample = seq_file.write_sequential(
                block_bytes,
                queue_depth,
                region,
                planned.time_budget,
                warmup,
                u64::MAX,
            )?;
            report
                .seq_write
                .push(seq_result(block_bytes, queue_depth, sample.bytes, sample.elapsed));
        }
        BenchCase::WriteLatency { block_bytes } => {
            report.write_latency = write_latency(seq_file, block_bytes, planned)?;
        }
        BenchCase::Fsync { append_bytes } => {
            let paths = [
                work.join(format!("sync-{index}-growing.dat")),
                work.join(format!("sync-{index}-prealloc.dat")),
            ];
            let results = fsync_pair(&paths, append_bytes, planned, report.dio_alignment)?;
            for path in paths {
                std::fs::remove_file(&path).map_err(|source| TuneError::Io {
                    op: "remove",
                    path,
                    source,
                })?;
            }
            report.fsync.extend(results);
        }
    }
    Ok(())
}

/// Figures for one sequential case (pure).
pub fn seq_result(block_bytes: u32, queue_depth: u32, bytes: u64, elapsed: Duration) -> SeqWriteResult {
    let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    SeqWriteResult {
        block_bytes,
        queue_depth,
        bytes_written: bytes,
        elapsed_ms: seconds * 1000.0,
        bandwidth_mib_per_sec: bytes as f64 / seconds / (1 << 20) as f64,
        iops: bytes as f64 / f64::from(block_bytes) / seconds,
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("static histogram bounds are valid")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_nanos() as u64).clamp(1, LATENCY_NS_MAX));
}

fn write_latency(
    file: &mut UringFile,
    block_bytes: u32,
    planned: &PlannedCase,
) -> Result<LatencySummary, TuneError> {
    let slots = planned.file_bytes_max / u64::from(block_bytes);
    let stop_at = Instant::now() + planned.time_budget;
    let mut h = new_histogram();
    let mut slot = 0u64;
    while Instant::now() < stop_at && !crate::interrupt::requested() {
        record(
            &mut h,
            file.write_once((slot % slots) * u64::from(block_bytes), block_bytes)?,
        );
        slot += 1;
    }
    Ok(LatencySummary::from_histogram(&h))
}

/// Append-then-fdatasync latency of a growing file and of a preallocated one,
/// measured in alternation so background load on a shared device hits both alike.
fn fsync_pair(
    paths: &[PathBuf; 2],
    append_bytes: u32,
    planned: &PlannedCase,
    alignment: DioAlignment,
) -> Result<[FsyncResult; 2], TuneError> {
    let mut growing = UringFile::create(&paths[0], 1, append_bytes, alignment.mem_align_bytes)?;
    let mut preallocated = UringFile::create(&paths[1], 1, append_bytes, alignment.mem_align_bytes)?;
    preallocated.preallocate(planned.file_bytes_max)?;
    let stop_at = Instant::now() + planned.time_budget;
    let mut histograms = [
        [new_histogram(), new_histogram()],
        [new_histogram(), new_histogram()],
    ];
    let mut offset = 0u64;
    let mut iteration = 0u32;
    let more = |offset: u64| offset + u64::from(append_bytes) <= planned.file_bytes_max;
    while Instant::now() < stop_at && more(offset) && !crate::interrupt::requested() {
        for (file, [sync, write]) in [&mut growing, &mut preallocated]
            .into_iter()
            .zip(histograms.iter_mut())
        {
            let write_time = file.write_once(offset, append_bytes)?;
            let sync_time = file.fdatasync()?;
            if iteration >= FSYNC_WARMUP_ITERATIONS {
                record(write, write_time);
                record(sync, sync_time);
            }
        }
        offset += u64::from(append_bytes);
        iteration += 1;
    }
    let result = |index: usize| FsyncResult {
        append_bytes,
        preallocated: index == 1,
        sync: LatencySummary::from_histogram(&histograms[index][0]),
        write: LatencySummary::from_histogram(&histograms[index][1]),
    };
    Ok([result(0), result(1)])
}

/// One line naming a case, for progress output.
pub fn describe_case(case: &BenchCase) -> String {
    match case {
        BenchCase::SeqWrite {
            block_bytes,
            queue_depth,
        } => {
            format!(
                "sequential write, {} blocks, queue depth {queue_depth}",
                format_bytes(u64::from(*block_bytes))
            )
        }
        BenchCase::WriteLatency { block_bytes } => {
            format!(
                "{} write latency, queue depth 1",
                format_bytes(u64::from(*block_bytes))
            )
        }
        BenchCase::Fsync { append_bytes } => format!(
            "fdatasync after {} appends, growing and preallocated files in alternation",
            format_bytes(u64::from(*append_bytes))
        ),
    }
}

/// `4 KiB`, `1 MiB`, `1.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bandwidth and IOPS follow from bytes, block size and time.
    #[test]
    fn computes_throughput() {
        let r = seq_result(4096, 4, 100 << 20, Duration::from_secs(2));
        assert_eq!(r.bandwidth_mib_per_sec, 50.0);
        assert_eq!(r.iops, 12800.0);
        assert_eq!(format_bytes(4096), "4 KiB");
        assert_eq!(format_bytes(1536 << 20), "1.5 GiB");
    }

    /// A short real run in a temp dir writes, measures and leaves nothing behind.
    #[test]
    fn short_run_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let limits = BenchLimits {
            file_bytes_max: 32 << 20,
            time_max: Duration::from_secs(5),
        };
        let mut lines = Vec::new();
        let report = match run_bench(dir.path(), &limits, &mut |l| lines.push(l.to_string())) {
            Ok(r) => r,
            Err(TuneError::Io { op, .. }) if op.contains("O_DIRECT") => return,
            Err(e) => panic!("bench failed: {e}"),
        };
        assert_eq!(report.seq_write.len(), 15);
        assert_eq!(report.fsync.len(), 4);
        assert_eq!(lines.len(), 19, "conditioning and 18 cases: {lines:?}");
        assert!(report.peak_bandwidth_mib_per_sec() > 0.0);
        assert!(report.write_latency.samples > 0);
        assert!(
            report.fsync.iter().all(|f| f.sync.samples > 0),
            "{:?}",
            report.fsync
        );
        assert!(report.bandwidth_mib_per_sec(1 << 20, 16).is_some());
        assert!(report.fsync_case(4096, true).is_some());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the run removed its files"
        );
    }
}
