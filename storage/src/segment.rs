//! One segment file on a glommio DMA file, and the file-level I/O the log
//! needs: create with preallocation, chunked recovery scan, reads, and the
//! small atomically written index files.

use crate::config::LogConfig;
use crate::error::LogError;
use crate::index::SegmentIndex;
use crate::recovery::{classify, find_valid_batch, ScanEnd, Scanner, Step};
use crate::segment_name::{file_name, temporary_name, FileKind};
use glommio::io::{Directory, DmaFile, OpenOptions};
use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A segment of the log: its file, its index and how much of it is on disk.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    pub file: Rc<DmaFile>,
    pub path: PathBuf,
    /// Batches appended to this segment (on disk or still buffered).
    pub index: RefCell<SegmentIndex>,
    /// Bytes of this segment known to be written to the file.
    pub written_len: Cell<u64>,
}

impl Segment {
    /// Creates a new, empty segment file, preallocates it and makes its
    /// directory entry durable.
    pub async fn create(dir: &Path, base_offset: u64, config: &LogConfig) -> Result<Rc<Segment>, LogError> {
        let path = dir.join(file_name(base_offset, FileKind::Log));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&path)
            .await
            .map_err(|e| LogError::io(format!("creating {}", path.display()), e))?;
        if config.preallocate_bytes > 0 {
            file.pre_allocate(config.preallocate_bytes, false)
                .await
                .map_err(|e| LogError::io(format!("preallocating {}", path.display()), e))?;
        }
        sync_dir(dir).await?;
        Ok(Rc::new(Segment {
            base_offset,
            file: Rc::new(file),
            path,
            index: RefCell::new(SegmentIndex::new(base_offset, config.index_interval_bytes)),
            written_len: Cell::new(0),
        }))
    }

    /// Opens an existing segment file for reading and writing.
    pub async fn open(dir: &Path, base_offset: u64, index: SegmentIndex) -> Result<Rc<Segment>, LogError> {
        let path = dir.join(file_name(base_offset, FileKind::Log));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(&path)
            .await
            .map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
        let written = index.data_len;
        Ok(Rc::new(Segment {
            base_offset,
            file: Rc::new(file),
            path,
            index: RefCell::new(index),
            written_len: Cell::new(written),
        }))
    }

    pub async fn file_size(&self) -> Result<u64, LogError> {
        self.file
            .file_size()
            .await
            .map_err(|e| LogError::io(format!("sizing {}", self.path.display()), e))
    }

    /// End of the last written region of the file. Preallocated space is
    /// unwritten (reported as a hole by SEEK_DATA/SEEK_HOLE, and read as
    /// zeros), so this bounds recovery scans to what was ever written instead
    /// of the whole preallocation. Falls back to the file size where the
    /// file system cannot tell.
    pub async fn data_end(&self) -> Result<u64, LogError> {
        let size = self.file_size().await?;
        Ok(last_data_end(self.file.as_raw_fd(), size).unwrap_or(size))
    }

    /// Reads `len` bytes at `pos` (any alignment); short at end of file.
    pub async fn read(&self, pos: u64, len: usize) -> Result<glommio::io::ReadResult, LogError> {
        self.file
            .read_at(pos, len)
            .await
            .map_err(|e| LogError::io(format!("reading {} at {pos}", self.path.display()), e))
    }

    /// Scans the segment from its start; see [`crate::recovery`] for the
    /// rules. `keep_below` ends the scan before the first batch holding an
    /// offset at or above it (used by `truncate_suffix`).
    pub async fn scan(
        &self,
        config: &LogConfig,
        valid_until: u64,
        keep_below: Option<u64>,
    ) -> Result<(SegmentIndex, ScanEnd), LogError> {
        let size = self.data_end().await?;
        let mut scanner = Scanner::new(
            self.base_offset,
            config.index_interval_bytes,
            !config.compacted,
            config.batch_limits,
        );
        scanner.keep_below = keep_below;
        let mut want = config.read_chunk_bytes;
        loop {
            let pos = scanner.position;
            if pos >= size {
                return Ok((scanner.index, ScanEnd::Clean));
            }
            let len = (want as u64).min(size - pos) as usize;
            let bytes = self.read(pos, len).await?;
            let at_eof = pos + bytes.len() as u64 >= size;
            match scanner.feed(&bytes, at_eof) {
                Step::End | Step::Stopped => return Ok((scanner.index, ScanEnd::Clean)),
                Step::NeedMore { need } => want = config.read_chunk_bytes.max(need),
                Step::Bad { position, reason } => {
                    let expected = scanner.expected_offset;
                    let end = self
                        .classify_bad(config, size, position, expected, reason, valid_until)
                        .await?;
                    return Ok((scanner.index, end));
                }
            }
        }
    }

    /// Looks past a bad batch at `position` for zeros or further valid data,
    /// in windows that overlap by the largest batch so none is missed.
    async fn classify_bad(
        &self,
        config: &LogConfig,
        size: u64,
        position: u64,
        expected_offset: u64,
        reason: String,
        valid_until: u64,
    ) -> Result<ScanEnd, LogError> {
        let chunk = config.read_chunk_bytes as u64;
        let overlap = config.batch_limits.batch_len_max as u64;
        let (mut follows, mut zero) = (false, true);
        let mut start = position;
        while start < size && !follows {
            let window_end = size.min(start + chunk + overlap);
            let bytes = self.read(start, (window_end - start) as usize).await?;
            let search_end = if window_end == size {
                bytes.len()
            } else {
                chunk as usize
            };
            let searched = &bytes[..search_end.min(bytes.len())];
            zero = zero && searched.iter().all(|&b| b == 0);
            let from = usize::from(start == position);
            follows =
                find_valid_batch(&bytes, from, search_end, expected_offset, &config.batch_limits).is_some();
            start += chunk;
        }
        Ok(classify(
            position,
            expected_offset,
            reason,
            valid_until,
            follows,
            zero,
        ))
    }

    /// Cuts the file to `len` bytes (zeroing anything after in the last
    /// block), keeps the preallocation, and makes it durable.
    pub async fn truncate(&self, len: u64, config: &LogConfig) -> Result<(), LogError> {
        let ctx = |what: &str| format!("{what} {} to {len}", self.path.display());
        self.file
            .truncate(len)
            .await
            .map_err(|e| LogError::io(ctx("truncating"), e))?;
        if config.preallocate_bytes > len {
            self.file
                .pre_allocate(config.preallocate_bytes, false)
                .await
                .map_err(|e| LogError::io(ctx("preallocating"), e))?;
        }
        self.file
            .fdatasync()
            .await
            .map_err(|e| LogError::io(ctx("syncing"), e))?;
        self.written_len.set(self.written_len.get().min(len));
        Ok(())
    }

    /// Writes this segment's index files (after its data is durable).
    pub async fn write_index_files(&self, dir: &Path) -> Result<(), LogError> {
        let (offsets, times) = {
            let index = self.index.borrow();
            (index.encode_offsets(), index.encode_times())
        };
        write_file_atomic(dir, &file_name(self.base_offset, FileKind::OffsetIndex), &offsets).await?;
        write_file_atomic(dir, &file_name(self.base_offset, FileKind::TimeIndex), &times).await
    }

    /// Removes the segment's files; the open file stays readable until dropped.
    pub async fn remove_files(&self, dir: &Path) -> Result<(), LogError> {
        for kind in [FileKind::OffsetIndex, FileKind::TimeIndex] {
            remove_if_exists(&dir.join(file_name(self.base_offset, kind)))?;
        }
        remove_if_exists(&self.path)
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

/// Loads a sealed segment's index files; `None` if missing or damaged.
pub(crate) async fn load_index(dir: &Path, base_offset: u64, config: &LogConfig) -> Option<SegmentIndex> {
    let offsets = read_file(&dir.join(file_name(base_offset, FileKind::OffsetIndex))).await?;
    let times = read_file(&dir.join(file_name(base_offset, FileKind::TimeIndex))).await?;
    match SegmentIndex::decode(base_offset, config.index_interval_bytes, &offsets, &times) {
        Ok(index) => Some(index),
        Err(e) => {
            tracing::warn!(base_offset, error = %e, "index files rejected; rebuilding from the log");
            None
        }
    }
}

async fn read_file(path: &Path) -> Option<Vec<u8>> {
    let file = DmaFile::open(path).await.ok()?;
    let size = file.file_size().await.ok()? as usize;
    let bytes = file.read_at(0, size).await.ok()?;
    let out = bytes.to_vec();
    file.close().await.ok()?;
    (out.len() == size).then_some(out)
}

/// Writes `bytes` to `dir/name` so that the name only ever holds the whole
/// content: write a temporary file, fdatasync it, rename, sync the directory.
pub(crate) async fn write_file_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), LogError> {
    let tmp = dir.join(temporary_name(name));
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let file = DmaFile::create(&tmp)
        .await
        .map_err(|e| LogError::io(ctx("creating"), e))?;
    let padded = file.align_up(bytes.len() as u64).max(file.alignment()) as usize;
    let mut buf = file.alloc_dma_buffer(padded);
    buf.as_bytes_mut()[..bytes.len()].copy_from_slice(bytes);
    buf.as_bytes_mut()[bytes.len()..].fill(0);
    let written = file
        .write_at(buf, 0)
        .await
        .map_err(|e| LogError::io(ctx("writing"), e))?;
    if written != padded {
        return Err(LogError::io(ctx("writing"), std::io::Error::other("short write")));
    }
    file.truncate(bytes.len() as u64)
        .await
        .map_err(|e| LogError::io(ctx("truncating"), e))?;
    file.fdatasync()
        .await
        .map_err(|e| LogError::io(ctx("syncing"), e))?;
    file.rename(dir.join(name))
        .await
        .map_err(|e| LogError::io(ctx("renaming"), e))?;
    file.close().await.map_err(|e| LogError::io(ctx("closing"), e))?;
    sync_dir(dir).await
}

/// Makes directory entries (creates, renames, deletes) durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<(), LogError> {
    let ctx = || format!("syncing directory {}", dir.display());
    let handle = Directory::open(dir).await.map_err(|e| LogError::io(ctx(), e))?;
    handle.sync().await.map_err(|e| LogError::io(ctx(), e))?;
    handle.close().await.map_err(|e| LogError::io(ctx(), e))
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(format!("removing {}", path.display()), e)),
    }
}
