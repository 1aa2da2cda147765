//! O_DIRECT alignment of the data directory's file system, and its free space.
//!
//! The kernel reports DIO alignment through statx(STATX_DIOALIGN) since 6.1,
//! but only for regular files, so the probe creates a small non-empty file in
//! the directory and asks about it. Where statx does not say (older kernels,
//! file systems that do not fill it in), the alignment is measured: O_DIRECT
//! writes of growing size and address alignment until the kernel accepts one.
//! The probe file is removed on every path (tempfile deletes it on drop).

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::aligned_buffer::AlignedBuffer;
use crate::error::TuneError;

/// Largest alignment the measured check tries; above it O_DIRECT is treated as unusable.
pub const DIO_ALIGN_MAX_BYTES: u32 = 64 * 1024;

/// Where an alignment figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlignmentSource {
    Statx,
    Measured,
}

/// O_DIRECT requirements: buffer address alignment and file offset/length alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DioAlignment {
    pub mem_align_bytes: u32,
    pub offset_align_bytes: u32,
    pub source: AlignmentSource,
}

/// Space on the data directory's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeSpace {
    pub total_bytes: u64,
    /// Space an unprivileged writer may still use.
    pub available_bytes: u64,
}

/// Finds the DIO alignment in `dir` (statx, else measured).
pub fn probe_dio_alignment(dir: &Path) -> Result<DioAlignment, TuneError> {
    let io_err = |op, source| TuneError::Io {
        op,
        path: dir.to_path_buf(),
        source,
    };
    let mut probe_file = tempfile::Builder::new()
        .prefix(".shoal-tune-dio-")
        .tempfile_in(dir)
        .map_err(|e| io_err("create probe file in", e))?;
    // Non-empty on purpose: a DIO probe against an empty new file can pass where
    // real reads later fail (seen with glommio on this class of machine).
    probe_file
        .write_all(&[0x5a; 8192])
        .map_err(|e| io_err("write probe file in", e))?;
    probe_file
        .as_file()
        .sync_all()
        .map_err(|e| io_err("sync probe file in", e))?;
    if let Some(alignment) = statx_dio_alignment(probe_file.path())? {
        return Ok(alignment);
    }
    measure_dio_alignment(probe_file.path())
}

/// Asks statx for STATX_DIOALIGN; `None` when the kernel or file system does not answer.
fn statx_dio_alignment(path: &Path) -> Result<Option<DioAlignment>, TuneError> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| TuneError::Limits(format!("path with a NUL byte: {e}")))?;
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stx a valid out-pointer for the call.
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c_path.as_ptr(), 0, libc::STATX_DIOALIGN, &mut stx) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOSYS) {
            return Ok(None);
        }
        return Err(TuneError::Io {
            op: "statx",
            path: path.to_path_buf(),
            source: err,
        });
    }
    if stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_offset_align == 0 {
        return Ok(None);
    }
    Ok(Some(DioAlignment {
        mem_align_bytes: stx.stx_dio_mem_align,
        offset_align_bytes: stx.stx_dio_offset_align,
        source: AlignmentSource::Statx,
    }))
}

/// Tries O_DIRECT writes at growing alignments; the smallest accepted one is the answer.
pub fn measure_dio_alignment(path: &Path) -> Result<DioAlignment, TuneError> {
    let io_err = |op, source| TuneError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| io_err("open with O_DIRECT (file system may not support direct I/O)", e))?;
    let buffer_len = 2 * DIO_ALIGN_MAX_BYTES as usize;
    let buffer = AlignedBuffer::new(2 * buffer_len, 2 * buffer_len)?;
    let candidates: Vec<u32> = (9..=16).map(|shift| 1u32 << shift).collect();
    let accepted = |mem_offset: usize, size: u32| -> Result<bool, TuneError> {
        let bytes = &buffer.as_slice()[mem_offset..mem_offset + size as usize];
        match file.write_at(bytes, u64::from(size)) {
            Ok(n) if n == size as usize => Ok(true),
            Ok(n) => Err(TuneError::Completion {
                op: "probe write",
                offset: u64::from(size),
                detail: format!("short write of {n}"),
            }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) => Err(io_err("O_DIRECT probe write", e)),
        }
    };
    let mut offset_align = None;
    for &size in &candidates {
        if accepted(0, size)? {
            offset_align = Some(size);
            break;
        }
    }
    let offset_align_bytes = offset_align.ok_or_else(|| {
        TuneError::Limits(format!(
            "no O_DIRECT write up to {DIO_ALIGN_MAX_BYTES} bytes was accepted"
        ))
    })?;
    let mut mem_align_bytes = offset_align_bytes;
    // An address that is a multiple of `align` but not of `2 * align` tests exactly `align`.
    for align in [1u32, 2, 4, 8, 16, 32, 64, 128, 256]
        .into_iter()
        .chain(candidates.iter().copied())
    {
        if align >= offset_align_bytes || accepted(align as usize, offset_align_bytes)? {
            mem_align_bytes = align.min(offset_align_bytes);
            break;
        }
    }
    Ok(DioAlignment {
        mem_align_bytes,
        offset_align_bytes,
        source: AlignmentSource::Measured,
    })
}

/// statvfs of the directory.
pub fn probe_free_space(dir: &Path) -> Result<FreeSpace, TuneError> {
    let c_path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| TuneError::Limits(format!("path with a NUL byte: {e}")))?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and st a valid out-pointer.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(TuneError::Io {
            op: "statvfs",
            path: dir.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    let fragment = st.f_frsize as u64;
    Ok(FreeSpace {
        total_bytes: st.f_blocks as u64 * fragment,
        available_bytes: st.f_bavail as u64 * fragment,
    })
}

/// Opens a file for O_DIRECT writing; shared by the probe and the benchmark.
pub fn open_direct(path: &Path, create: bool) -> Result<std::fs::File, TuneError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|source| TuneError::Io {
            op: "open with O_DIRECT",
            path: path.to_path_buf(),
            source,
        })?;
    debug_assert!(file.as_raw_fd() >= 0);
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both methods give a power-of-two alignment no larger than a page on this host's temp dir.
    #[test]
    fn finds_alignment_in_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let found = match probe_dio_alignment(dir.path()) {
            Ok(found) => found,
            Err(e) => {
                eprintln!("temp dir does not support O_DIRECT here: {e}");
                return;
            }
        };
        assert!(found.offset_align_bytes.is_power_of_two());
        assert!(found.mem_align_bytes.is_power_of_two());
        let file = dir.path().join("m");
        std::fs::write(&file, [1u8; 8192]).unwrap();
        let measured = measure_dio_alignment(&file).unwrap();
        assert!(measured.offset_align_bytes <= 4096, "{measured:?}");
        assert!(
            measured.mem_align_bytes <= measured.offset_align_bytes,
            "{measured:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "the probe file was removed"
        );
    }

    /// statvfs reports some space with available <= total.
    #[test]
    fn reports_free_space() {
        let space = probe_free_space(Path::new("/")).unwrap();
        assert!(space.total_bytes > 0);
        assert!(space.available_bytes <= space.total_bytes);
    }
}
