//! O_DIRECT writes and fdatasync through the io-uring crate, at a chosen queue depth.
//!
//! One ring per file, one registered, aligned buffer filled with random bytes
//! (so no layer can compress or skip zeroes). Every write in flight points at
//! that same buffer: the kernel only reads it, and it keeps the locked-memory
//! footprint to one block however deep the queue, which matters under a
//! small memlock limit. Every completion is checked: an error or short write
//! ends the case with [`TuneError::Completion`] after the queue is drained,
//! so no I/O is left in flight when the buffer could be freed.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};
use rand::RngCore;

use crate::aligned_buffer::AlignedBuffer;
use crate::dio_alignment::open_direct;
use crate::error::TuneError;

/// Deepest queue a ring is built for.
pub const QUEUE_DEPTH_MAX: u32 = 256;
/// user_data of fdatasync completions (writes carry their offset, which is block-aligned).
const FSYNC_USER_DATA: u64 = u64::MAX;

/// Bytes and time of the measured part of a sequential case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqSample {
    pub bytes: u64,
    pub elapsed: Duration,
}

/// A file opened with O_DIRECT, its ring and its registered buffer.
pub struct UringFile {
    // Field order is drop order: the ring (and its buffer registration) goes
    // before the buffer it points at.
    ring: IoUring,
    buffer: AlignedBuffer,
    file: File,
    path: PathBuf,
}

impl UringFile {
    /// Creates (truncates) `path` for O_DIRECT writes of up to `block_bytes_max`
    /// with up to `queue_depth_max` in flight; `align` is the DIO memory alignment.
    pub fn create(
        path: &Path,
        queue_depth_max: u32,
        block_bytes_max: u32,
        align: u32,
    ) -> Result<UringFile, TuneError> {
        if queue_depth_max == 0 || queue_depth_max > QUEUE_DEPTH_MAX {
            return Err(TuneError::Limits(format!(
                "queue depth {queue_depth_max} is outside 1..={QUEUE_DEPTH_MAX}"
            )));
        }
        let file = open_direct(path, true)?;
        let ring = IoUring::new((queue_depth_max * 2).next_power_of_two())
            .map_err(|source| TuneError::Uring { op: "setup", source })?;
        let mut buffer = AlignedBuffer::new(block_bytes_max as usize, (align as usize).max(4096))?;
        rand::thread_rng().fill_bytes(buffer.as_mut_slice());
        let iovec = libc::iovec {
            iov_base: buffer.as_ptr() as *mut libc::c_void,
            iov_len: buffer.len(),
        };
        // SAFETY: the iovec covers `buffer`, which lives in the same struct as the ring
        // and is dropped after it, so the registration never outlives the memory.
        unsafe { ring.submitter().register_buffers(&[iovec]) }.map_err(|source| TuneError::Uring {
            op: "register_buffers",
            source,
        })?;
        Ok(UringFile {
            ring,
            buffer,
            file,
            path: path.to_path_buf(),
        })
    }

    /// fallocate with FALLOC_FL_KEEP_SIZE: reserves `len` bytes without changing
    /// the file size, as the storage crate's segments do (glommio `pre_allocate(len, true)`),
    /// so appends still extend the size and write into unwritten extents.
    pub fn preallocate(&self, len: u64) -> Result<(), TuneError> {
        let mode = libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: the fd is open for writing for the life of self; fallocate only reads its arguments.
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, 0, len as libc::off_t) };
        if rc != 0 {
            let source = std::io::Error::last_os_error();
            return Err(TuneError::Io {
                op: "fallocate",
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }

    fn write_entry(&self, offset: u64, len: u32) -> io_uring::squeue::Entry {
        debug_assert!(len as usize <= self.buffer.len());
        opcode::WriteFixed::new(types::Fd(self.file.as_raw_fd()), self.buffer.as_ptr(), len, 0)
            .offset(offset)
            .build()
            .user_data(offset)
    }

    /// Pushes one entry; the caller has ensured the queue has room.
    fn push(&mut self, entry: &io_uring::squeue::Entry) -> Result<(), TuneError> {
        // SAFETY: entries point at self.buffer (registered, alive as long as the ring)
        // and self.file; every caller reaps its entries before returning.
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| TuneError::Limits("submission queue full".into()))
    }

    /// Submits what is queued and waits for at least one completion; a signal
    /// interrupting the wait is not an I/O failure, so the wait is repeated.
    fn submit_and_wait_one(&mut self) -> Result<(), TuneError> {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(TuneError::Uring {
                        op: "submit_and_wait",
                        source,
                    })
                }
            }
        }
    }

    /// Submits one entry, waits for it, and returns its latency.
    fn run_one(
        &mut self,
        entry: io_uring::squeue::Entry,
        expect: i32,
        op: &'static str,
    ) -> Result<Duration, TuneError> {
        let started = Instant::now();
        self.push(&entry)?;
        self.submit_and_wait_one()?;
        let elapsed = started.elapsed();
        let cqe = self
            .ring
            .completion()
            .next()
            .ok_or_else(|| TuneError::Limits("no completion after wait".into()))?;
        check_completion(op, cqe.user_data(), cqe.result(), expect)?;
        Ok(elapsed)
    }

    /// One write of `len` bytes at `offset`, alone in the queue.
    pub fn write_once(&mut self, offset: u64, len: u32) -> Result<Duration, TuneError> {
        let entry = self.write_entry(offset, len);
        self.run_one(entry, len as i32, "write")
    }

    /// fdatasync through io_uring (IORING_OP_FSYNC with DATASYNC).
    pub fn fdatasync(&mut self) -> Result<Duration, TuneError> {
        let entry = opcode::Fsync::new(types::Fd(self.file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(FSYNC_USER_DATA);
        self.run_one(entry, 0, "fdatasync")
    }

    /// Writes `block_bytes` blocks round a ring of `region_bytes` with `queue_depth`
    /// in flight for `budget` or until `bytes_max` were issued; the first `warmup` is not counted.
    pub fn write_sequential(
        &mut self,
        block_bytes: u32,
        queue_depth: u32,
        region_bytes: u64,
        budget: Duration,
        warmup: Duration,
        bytes_max: u64,
    ) -> Result<SeqSample, TuneError> {
        let slots = region_bytes / u64::from(block_bytes);
        if slots < u64::from(queue_depth) {
            return Err(TuneError::Limits(format!(
                "region of {region_bytes} bytes cannot hold {queue_depth} blocks"
            )));
        }
        let started = Instant::now();
        let (warm_at, stop_at) = (started + warmup, started + budget);
        let mut next_slot = 0u64;
        let mut inflight = 0u32;
        let mut completed_bytes = 0u64;
        let mut measured_from: Option<(Instant, u64)> = warmup.is_zero().then_some((started, 0));
        let mut first_error: Option<TuneError> = None;
        let mut issuing = true;
        loop {
            while issuing && inflight < queue_depth && next_slot * u64::from(block_bytes) < bytes_max {
                let entry = self.write_entry((next_slot % slots) * u64::from(block_bytes), block_bytes);
                if let Err(e) = self.push(&entry) {
                    first_error = Some(e);
                    break;
                }
                next_slot += 1;
                inflight += 1;
            }
            if inflight == 0 {
                break;
            }
            self.submit_and_wait_one()?;
            let now = Instant::now();
            for cqe in self.ring.completion() {
                inflight -= 1;
                match check_completion("write", cqe.user_data(), cqe.result(), block_bytes as i32) {
                    Ok(()) => completed_bytes += u64::from(block_bytes),
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
            if measured_from.is_none() && now >= warm_at {
                measured_from = Some((now, completed_bytes));
            }
            issuing = now < stop_at && first_error.is_none() && !crate::interrupt::requested();
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let (from, bytes_before) = measured_from.unwrap_or((started, 0));
        Ok(SeqSample {
            bytes: completed_bytes - bytes_before,
            elapsed: from.elapsed(),
        })
    }
}

/// Turns a completion result into an error unless it is exactly `expect`.
fn check_completion(op: &'static str, user_data: u64, result: i32, expect: i32) -> Result<(), TuneError> {
    let offset = if user_data == FSYNC_USER_DATA {
        0
    } else {
        user_data
    };
    if result < 0 {
        let detail = std::io::Error::from_raw_os_error(-result).to_string();
        return Err(TuneError::Completion { op, offset, detail });
    }
    if result != expect {
        return Err(TuneError::Completion {
            op,
            offset,
            detail: format!("completed {result} bytes of {expect}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes reach the file at the offsets asked, and fdatasync completes.
    #[test]
    fn writes_land_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = match UringFile::create(&path, 4, 8192, 4096) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("no O_DIRECT io_uring here: {e}");
                return;
            }
        };
        f.write_once(0, 4096).unwrap();
        f.write_once(8192, 8192).unwrap();
        f.fdatasync().unwrap();
        let sample = f
            .write_sequential(
                4096,
                4,
                64 << 10,
                Duration::from_secs(10),
                Duration::ZERO,
                64 << 10,
            )
            .unwrap();
        assert_eq!(sample.bytes, 64 << 10, "the byte bound ends the case: {sample:?}");
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 64 << 10);
        assert_eq!(
            &data[..4096],
            &data[8192..12288],
            "every write copies the same registered buffer"
        );
        assert!(data.iter().any(|&b| b != 0));
    }

    /// A failing completion is reported with its offset rather than counted.
    #[test]
    fn reports_failed_completions() {
        let err = check_completion("write", 4096, -libc::EIO, 4096).unwrap_err();
        assert!(err.to_string().contains("offset 4096"), "{err}");
        assert!(check_completion("write", 0, 512, 4096)
            .unwrap_err()
            .to_string()
            .contains("512 bytes of 4096"));
        assert!(check_completion("fdatasync", FSYNC_USER_DATA, 0, 0).is_ok());
    }
}
