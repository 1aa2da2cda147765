//! One segment file on a [`Device`], and the file-level I/O the log needs:
//! create with preallocation, chunked recovery scan, reads, and the small
//! atomically written index files.

use crate::config::LogConfig;
use crate::device::{Device, DeviceFile, IoBuffer};
use crate::error::LogError;
use crate::index::SegmentIndex;
use crate::recovery::{classify, find_valid_batch, ScanEnd, Scanner, Step};
use crate::segment_name::{file_name, temporary_name, FileKind};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A segment of the log: its file, its index and how much of it is on disk.
pub(crate) struct Segment<D: Device> {
    pub base_offset: u64,
    pub file: D::File,
    pub path: PathBuf,
    /// Batches appended to this segment (on disk or still buffered).
    pub index: RefCell<SegmentIndex>,
    /// Bytes of this segment known to be written to the file.
    pub written_len: Cell<u64>,
}

impl<D: Device> Segment<D> {
    /// Creates a new, empty segment file, preallocates it and makes its
    /// directory entry durable.
    pub async fn create(
        device: &D,
        dir: &Path,
        base_offset: u64,
        config: &LogConfig,
    ) -> Result<Rc<Self>, LogError> {
        let path = dir.join(file_name(base_offset, FileKind::Log));
        let file = device
            .open(&path, true)
            .await
            .map_err(|e| LogError::io(format!("creating {}", path.display()), e))?;
        if config.preallocate_bytes > 0 {
            file.preallocate(config.preallocate_bytes)
                .await
                .map_err(|e| LogError::io(format!("preallocating {}", path.display()), e))?;
        }
        sync_dir(device, dir).await?;
        Ok(Rc::new(Segment {
            base_offset,
            file,
            path,
            index: RefCell::new(SegmentIndex::new(base_offset, config.index_interval_bytes)),
            written_len: Cell::new(0),
        }))
    }

    /// Opens an existing segment file for reading and writing.
    pub async fn open(
        device: &D,
        dir: &Path,
        base_offset: u64,
        index: SegmentIndex,
    ) -> Result<Rc<Self>, LogError> {
        let path = dir.join(file_name(base_offset, FileKind::Log));
        let file = device
            .open(&path, false)
            .await
            .map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
        let written = index.data_len;
        Ok(Rc::new(Segment {
            base_offset,
            file,
            path,
            index: RefCell::new(index),
            written_len: Cell::new(written),
        }))
    }

    /// End of the last written region of the file (see
    /// [`DeviceFile::data_end`]).
    pub async fn data_end(&self) -> Result<u64, LogError> {
        self.file
            .data_end()
            .await
            .map_err(|e| LogError::io(format!("sizing {}", self.path.display()), e))
    }

    /// Reads `len` bytes at `pos` (any alignment); short at end of file.
    pub async fn read(&self, pos: u64, len: usize) -> Result<<D::File as DeviceFile>::Bytes, LogError> {
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
                .preallocate(config.preallocate_bytes)
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
    pub async fn write_index_files(&self, device: &D, dir: &Path) -> Result<(), LogError> {
        let (offsets, times) = {
            let index = self.index.borrow();
            (index.encode_offsets(), index.encode_times())
        };
        let name = |kind| file_name(self.base_offset, kind);
        write_file_atomic(device, dir, &name(FileKind::OffsetIndex), &offsets).await?;
        write_file_atomic(device, dir, &name(FileKind::TimeIndex), &times).await
    }

    /// Removes the segment's files; the open file stays readable until dropped.
    pub async fn remove_files(&self, device: &D, dir: &Path) -> Result<(), LogError> {
        for kind in [FileKind::OffsetIndex, FileKind::TimeIndex] {
            remove_if_exists(device, &dir.join(file_name(self.base_offset, kind))).await?;
        }
        remove_if_exists(device, &self.path).await
    }
}

/// Loads a sealed segment's index files; `None` if missing or damaged.
pub(crate) async fn load_index<D: Device>(
    device: &D,
    dir: &Path,
    base_offset: u64,
    config: &LogConfig,
) -> Option<SegmentIndex> {
    let offsets = read_file(device, &dir.join(file_name(base_offset, FileKind::OffsetIndex))).await?;
    let times = read_file(device, &dir.join(file_name(base_offset, FileKind::TimeIndex))).await?;
    match SegmentIndex::decode(base_offset, config.index_interval_bytes, &offsets, &times) {
        Ok(index) => Some(index),
        Err(e) => {
            tracing::warn!(base_offset, error = %e, "index files rejected; rebuilding from the log");
            None
        }
    }
}

/// The whole content of a small file; `None` if it cannot be read whole.
async fn read_file<D: Device>(device: &D, path: &Path) -> Option<Vec<u8>> {
    let file = device.open(path, false).await.ok()?;
    let size = file.size().await.ok()? as usize;
    let bytes = file.read_at(0, size).await.ok()?;
    let out = bytes.to_vec();
    file.close().await.ok()?;
    (out.len() == size).then_some(out)
}

/// Writes `bytes` to `dir/name` so that the name only ever holds the whole
/// content: write a temporary file, fdatasync it, rename, sync the directory.
pub(crate) async fn write_file_atomic<D: Device>(
    device: &D,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), LogError> {
    let tmp = dir.join(temporary_name(name));
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let file = device
        .open(&tmp, true)
        .await
        .map_err(|e| LogError::io(ctx("creating"), e))?;
    let alignment = file.alignment();
    let padded = bytes.len().next_multiple_of(alignment).max(alignment);
    let mut buf = file.alloc_buffer(padded);
    buf.as_bytes_mut()[..bytes.len()].copy_from_slice(bytes);
    buf.as_bytes_mut()[bytes.len()..].fill(0);
    let written = file
        .write_at(Rc::new(buf), 0)
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
    file.close().await.map_err(|e| LogError::io(ctx("closing"), e))?;
    device
        .rename(&tmp, &dir.join(name))
        .await
        .map_err(|e| LogError::io(ctx("renaming"), e))?;
    sync_dir(device, dir).await
}

/// Makes directory entries (creates, renames, deletes) durable.
pub(crate) async fn sync_dir<D: Device>(device: &D, dir: &Path) -> Result<(), LogError> {
    device
        .sync_dir(dir)
        .await
        .map_err(|e| LogError::io(format!("syncing directory {}", dir.display()), e))
}

pub(crate) async fn remove_if_exists<D: Device>(device: &D, path: &Path) -> Result<(), LogError> {
    device
        .remove(path)
        .await
        .map_err(|e| LogError::io(format!("removing {}", path.display()), e))
}
