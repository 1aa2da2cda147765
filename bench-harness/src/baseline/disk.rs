//! The data directory's device: direct-I/O write bandwidth and fdatasync latency.
//!
//! Sync latency is measured first, while the device is otherwise idle: a
//! 4 MiB region is written and synced, then a 4 KiB O_DIRECT overwrite of a
//! block in it followed by fdatasync is repeated for up to `duration` or
//! [`DISK_SYNCS_MAX`] times, into an HDR histogram. No file-system metadata
//! changes, so this is the device's own floor under a `flush = always`
//! acknowledgement (a log that grows its file pays more). Bandwidth comes
//! second: sequential 1 MiB O_DIRECT appends for up to `duration` or
//! [`DISK_BYTES_MAX`], closed by one fdatasync that the timing includes.
//! On a file system without O_DIRECT (tmpfs) the writes fall back to
//! buffered I/O and the report says so. The scratch file is removed
//! afterwards; a failed write or fdatasync fails the baseline rather than
//! producing a figure for I/O that did not happen.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::baseline::AlignedBuf;
use crate::error::BenchError;
use crate::histogram::{LatencyHistogram, LatencySummary};

/// Most bytes the bandwidth test writes.
pub const DISK_BYTES_MAX: u64 = 1 << 30;
/// Most write + fdatasync rounds.
pub const DISK_SYNCS_MAX: u64 = 5_000;
const WRITE_CHUNK_BYTES: usize = 1 << 20;
const SYNC_WRITE_BYTES: usize = 4096;
const DIRECT_ALIGN: usize = 4096;
/// The sync test overwrites this many 1 MiB chunks, written and synced first.
const SYNC_REGION_CHUNKS: usize = 4;

/// What the data directory's device did.
#[derive(Clone, Debug, Serialize)]
pub struct DiskBaseline {
    pub path: PathBuf,
    /// False when O_DIRECT was refused and buffered writes were measured.
    pub direct_io: bool,
    pub write_bytes_per_s: f64,
    pub bytes_written: u64,
    /// A 4 KiB overwrite plus fdatasync, per round.
    pub write_fdatasync: LatencySummary,
}

/// Measures bandwidth for `duration`, then sync latency for `duration`, in `dir`.
pub fn measure(dir: &Path, duration: Duration) -> Result<DiskBaseline, BenchError> {
    let path = dir.join(format!(".shoal-bench-disk-{}", std::process::id()));
    let result = measure_at(&path, duration);
    // The scratch file is removed even when a measurement failed; a failed removal
    // leaves a stray file but does not change a figure, so it is reported only.
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("warning: cannot remove {}: {e}", path.display());
        }
    }
    result
}

fn measure_at(path: &Path, duration: Duration) -> Result<DiskBaseline, BenchError> {
    let (mut file, direct_io) = open_scratch(path)?;
    // Sync latency first, on a small region written and synced beforehand, so
    // the bandwidth test's gigabytes are not still being written back under it.
    let chunk = AlignedBuf::new(WRITE_CHUNK_BYTES, DIRECT_ALIGN, 0xa5);
    for _ in 0..SYNC_REGION_CHUNKS {
        file.write_all(chunk.as_slice())
            .map_err(|e| BenchError::io("disk baseline write", e))?;
    }
    file.sync_data()
        .map_err(|e| BenchError::io("disk baseline fdatasync", e))?;
    let write_fdatasync = sync_latency(&file, duration)?;
    let (write_bytes_per_s, bytes_written) = bandwidth(&mut file, &chunk, duration)?;
    Ok(DiskBaseline {
        path: path.parent().unwrap_or(path).to_path_buf(),
        direct_io,
        write_bytes_per_s,
        bytes_written,
        write_fdatasync,
    })
}

/// 4 KiB overwrites of the synced region, each followed by fdatasync.
fn sync_latency(file: &File, duration: Duration) -> Result<LatencySummary, BenchError> {
    let small = AlignedBuf::new(SYNC_WRITE_BYTES, DIRECT_ALIGN, 0x3c);
    let region = (SYNC_REGION_CHUNKS * WRITE_CHUNK_BYTES) as u64;
    let mut hist = LatencyHistogram::new();
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < duration && rounds < DISK_SYNCS_MAX {
        // Overwriting written blocks changes no size or extent, so fdatasync
        // flushes data only: the device's floor.
        let offset = (rounds * SYNC_WRITE_BYTES as u64) % region;
        let t = Instant::now();
        file.write_all_at(small.as_slice(), offset)
            .map_err(|e| BenchError::io("disk baseline sync write", e))?;
        file.sync_data()
            .map_err(|e| BenchError::io("disk baseline fdatasync", e))?;
        hist.record(t.elapsed().as_nanos() as u64);
        rounds += 1;
    }
    Ok(hist.summary())
}

/// Sequential 1 MiB appends for `duration`, closed by one fdatasync; answers (bytes/s, bytes).
fn bandwidth(file: &mut File, chunk: &AlignedBuf, duration: Duration) -> Result<(f64, u64), BenchError> {
    let start = Instant::now();
    let mut written = 0u64;
    while start.elapsed() < duration && written < DISK_BYTES_MAX {
        file.write_all(chunk.as_slice())
            .map_err(|e| BenchError::io("disk baseline write", e))?;
        written += WRITE_CHUNK_BYTES as u64;
    }
    file.sync_data()
        .map_err(|e| BenchError::io("disk baseline fdatasync", e))?;
    Ok((written as f64 / start.elapsed().as_secs_f64().max(1e-9), written))
}

/// Opens the scratch file with O_DIRECT, or buffered when the file system refuses it.
fn open_scratch(path: &Path) -> Result<(File, bool), BenchError> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    match options.clone().custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let f = options
                .open(path)
                .map_err(|e| BenchError::io(format!("open {}", path.display()), e))?;
            Ok((f, false))
        }
        Err(e) => Err(BenchError::io(
            format!("open {} with O_DIRECT", path.display()),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_temporary_directory_and_cleans_up() {
        // Proves a short disk baseline writes, syncs, reports both figures and leaves no file.
        let dir = tempfile::tempdir().unwrap();
        let b = measure(dir.path(), Duration::from_millis(100)).unwrap();
        assert!(b.bytes_written > 0);
        assert!(b.write_bytes_per_s > 0.0);
        assert!(b.write_fdatasync.count > 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
