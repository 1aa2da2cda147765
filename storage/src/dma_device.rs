//! The production [`Device`]: glommio DMA files (O_DIRECT over io_uring).
//!
//! Two glommio 0.9 facts shape it:
//! - the executor probes the device on its first DMA open and, if that
//!   file is new and empty, breaks every later read (os error 95), so
//!   [`Device::prepare_dir`] opens a small non-empty probe file first;
//! - glommio opens directories relative to no descriptor, so relative paths
//!   fail (EBADF): `prepare_dir` returns the absolute path.
//!
//! glommio's errors carry the operation, path and descriptor in their
//! message; they are turned into `std::io::Error`s that keep that message.

use crate::device::{Device, DeviceFile, IoBuffer};
use crate::segment_name::PROBE_FILE_NAME;
use glommio::io::{Directory, DmaBuffer, DmaFile, OpenOptions, ReadResult};
use glommio::GlommioError;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Files on the local file system through glommio's DMA files.
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaDevice;

/// Size of the probe file: one block, non-empty.
const PROBE_BYTES: usize = 4096;

/// Keeps glommio's message (operation, path, fd) and the error kind.
fn io_error<T>(e: GlommioError<T>) -> io::Error {
    let message = e.to_string();
    let kind = io::Error::from(e).kind();
    io::Error::new(kind, message)
}

impl Device for DmaDevice {
    type File = DmaFile;
    type Buffer = DmaBuffer;

    async fn prepare_dir(&self, dir: &Path) -> io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let dir = std::fs::canonicalize(dir)?;
        let probe = dir.join(PROBE_FILE_NAME);
        let ok = std::fs::metadata(&probe).is_ok_and(|m| m.len() >= PROBE_BYTES as u64);
        if !ok {
            std::fs::write(&probe, vec![b'S'; PROBE_BYTES])?;
        }
        let file = DmaFile::open(&probe).await.map_err(io_error)?;
        file.close().await.map_err(io_error)?;
        Ok(dir)
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<DmaFile> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(create)
            .dma_open(path)
            .await
            .map_err(io_error)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        glommio::io::rename(from, to).await.map_err(io_error)
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let handle = Directory::open(dir).await.map_err(io_error)?;
        handle.sync().await.map_err(io_error)?;
        handle.close().await.map_err(io_error)
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }
}

impl DeviceFile for DmaFile {
    type Buffer = DmaBuffer;
    type Bytes = ReadResult;

    fn alignment(&self) -> usize {
        DmaFile::alignment(self) as usize
    }

    fn alloc_buffer(&self, len: usize) -> DmaBuffer {
        self.alloc_dma_buffer(len)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<ReadResult> {
        DmaFile::read_at(self, pos, len).await.map_err(io_error)
    }

    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> io::Result<usize> {
        self.write_rc_at(buf, pos).await.map_err(io_error)
    }

    async fn fdatasync(&self) -> io::Result<()> {
        DmaFile::fdatasync(self).await.map_err(io_error)
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        self.pre_allocate(len, false).await.map_err(io_error)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        DmaFile::truncate(self, len).await.map_err(io_error)
    }

    async fn size(&self) -> io::Result<u64> {
        self.file_size().await.map_err(io_error)
    }

    /// Preallocated space is unwritten (a hole to SEEK_DATA/SEEK_HOLE, read
    /// as zeros). Falls back to the file size where the file system cannot
    /// tell.
    async fn data_end(&self) -> io::Result<u64> {
        let size = DeviceFile::size(self).await?;
        Ok(last_data_end(self.as_raw_fd(), size).unwrap_or(size))
    }

    async fn close(self) -> io::Result<()> {
        DmaFile::close(self).await.map_err(io_error)
    }
}

impl IoBuffer for DmaBuffer {
    fn as_bytes(&self) -> &[u8] {
        DmaBuffer::as_bytes(self)
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        DmaBuffer::as_bytes_mut(self)
    }

    fn trim_to_size(&mut self, len: usize) {
        DmaBuffer::trim_to_size(self, len);
    }
}

/// Walks the data regions of `fd` with SEEK_DATA/SEEK_HOLE and returns the
/// end of the last one (`None` if the file system does not support it).
fn last_data_end(fd: RawFd, size: u64) -> Option<u64> {
    let mut pos: u64 = 0;
    let mut end: u64 = 0;
    while pos < size {
        // SAFETY: lseek(2) on a descriptor we own only moves its file offset,
        // which nothing else uses (all I/O here is positional).
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let err = std::io::Error::last_os_error();
            return (err.raw_os_error() == Some(libc::ENXIO)).then_some(end);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return None;
        }
        end = (hole as u64).min(size);
        pos = hole as u64;
    }
    Some(end)
}
