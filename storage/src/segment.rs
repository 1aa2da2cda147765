//! One segment file on a [`Device`], and the file-level I/O the log needs:
//! create with preallocation, chunked recovery scan, reads, the header
//! checkpoint, and the small atomically written index files.
//!
//! A segment file is a header block ([`crate::checkpoint`]) followed by the
//! batches. Everything here but the header methods speaks in *data
//! positions* (0 = the first batch); the file position is
//! `SEGMENT_HEADER_BYTES` further.

use crate::checkpoint::{Checkpoint, SEGMENT_HEADER_BYTES};
use crate::config::LogConfig;
use crate::device::{Device, DeviceFile, IoBuffer};
use crate::error::LogError;
use crate::index::SegmentIndex;
use crate::mutation::{self, Mutation};
use crate::recovery::{finish, ScanEnd, Scanner, Step};
use crate::segment_name::{file_name, temporary_name, FileKind};
use std::cell::{Cell, RefCell};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What a segment holds beyond its durable point, for a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Only appends (the active segment): contiguous offsets, even in a
    /// compacted log.
    Appends,
    /// Whatever compaction left (a sealed or rewritten segment).
    Any,
}

/// A segment of the log: its file, its index and how much of it is on disk.
pub(crate) struct Segment<D: Device> {
    pub base_offset: u64,
    pub file: D::File,
    pub path: PathBuf,
    /// Batches appended to this segment (on disk or still buffered).
    pub index: RefCell<SegmentIndex>,
    /// Bytes of data known to be written to the file.
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
        if !mutation::active(Mutation::SkipDirSync) {
            sync_dir(device, dir).await?;
        }
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

    /// End of the last written data (see [`DeviceFile::data_end`]).
    pub async fn data_end(&self) -> Result<u64, LogError> {
        let end = self
            .file
            .data_end()
            .await
            .map_err(|e| LogError::io(format!("sizing {}", self.path.display()), e))?;
        Ok(end.saturating_sub(SEGMENT_HEADER_BYTES))
    }

    /// Reads `len` bytes of data at `pos` (any alignment); short at the end.
    pub async fn read(&self, pos: u64, len: usize) -> Result<<D::File as DeviceFile>::Bytes, LogError> {
        self.file
            .read_at(SEGMENT_HEADER_BYTES + pos, len)
            .await
            .map_err(|e| LogError::io(format!("reading {} at {pos}", self.path.display()), e))
    }

    /// Writes an aligned buffer of data at the aligned data position `pos`.
    pub async fn write_data(&self, buf: Rc<D::Buffer>, pos: u64) -> io::Result<usize> {
        self.file.write_at(buf, SEGMENT_HEADER_BYTES + pos).await
    }

    /// Writes the header block holding `checkpoint` (and `previous` in the
    /// other slot). The caller makes sure what it claims is durable.
    pub async fn write_checkpoint(
        &self,
        checkpoint: &Checkpoint,
        previous: Option<&Checkpoint>,
    ) -> io::Result<()> {
        let mut block = self.file.alloc_buffer(SEGMENT_HEADER_BYTES as usize);
        checkpoint.encode_block(previous, block.as_bytes_mut());
        let written = self.file.write_at(Rc::new(block), 0).await?;
        if written != SEGMENT_HEADER_BYTES as usize {
            return Err(io::Error::other(format!(
                "short write: {written} of {SEGMENT_HEADER_BYTES} bytes"
            )));
        }
        Ok(())
    }

    /// The checkpoint in the header (`None` if none was written yet); a
    /// damaged header is corruption.
    pub async fn read_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
        if mutation::active(Mutation::IgnoreCheckpoint) {
            return Ok(None);
        }
        let block = self
            .file
            .read_at(0, SEGMENT_HEADER_BYTES as usize)
            .await
            .map_err(|e| LogError::io(format!("reading the header of {}", self.path.display()), e))?;
        Checkpoint::decode_block(&block, self.base_offset).map_err(|damage| LogError::Corrupt {
            segment_base: self.base_offset,
            offset: self.base_offset,
            position: 0,
            reason: format!("segment header: {damage}"),
        })
    }

    pub async fn fdatasync(&self) -> Result<(), LogError> {
        self.file
            .fdatasync()
            .await
            .map_err(|e| LogError::io(format!("syncing {}", self.path.display()), e))
    }

    /// Scans the segment's data from its start; see [`crate::recovery`] for
    /// the rules. `checkpoint` is verified on the way, and nothing before
    /// `valid_until` or its `data_len` may be torn. `keep_below` ends the
    /// scan before the first batch holding an offset at or above it (used
    /// by `truncate_suffix`).
    pub async fn scan(
        &self,
        config: &LogConfig,
        valid_until: u64,
        keep_below: Option<u64>,
        checkpoint: Option<Checkpoint>,
        tail: Tail,
    ) -> Result<(Scanner, ScanEnd), LogError> {
        let size = self.data_end().await?;
        let mut scanner = Scanner::new(
            self.base_offset,
            config.index_interval_bytes,
            !config.compacted,
            config.batch_limits,
        );
        scanner.keep_below = keep_below;
        scanner.checkpoint = checkpoint;
        let valid_until = valid_until.max(checkpoint.map_or(0, |cp| cp.data_len));
        if tail == Tail::Appends {
            scanner.contiguous_from = Some(valid_until);
        }
        let mut want = config.read_chunk_bytes;
        let step = loop {
            let pos = scanner.position;
            if pos >= size {
                break scanner.feed(&[], true);
            }
            let len = (want as u64).min(size - pos) as usize;
            let bytes = self.read(pos, len).await?;
            let at_eof = bytes.len() < len || pos + bytes.len() as u64 >= size;
            match scanner.feed(&bytes, at_eof) {
                Step::NeedMore { need } => want = config.read_chunk_bytes.max(need),
                other => break other,
            }
        };
        let rest_is_zero = match &step {
            Step::Bad { position, .. } => self.is_zero(*position, size, config.read_chunk_bytes).await?,
            _ => true,
        };
        let end = finish(&scanner, step, valid_until, |_| rest_is_zero);
        Ok((scanner, end))
    }

    /// Whether the data from `from` to `size` is all zeros.
    async fn is_zero(&self, from: u64, size: u64, chunk: usize) -> Result<bool, LogError> {
        let mut at = from;
        while at < size {
            let len = (chunk as u64).min(size - at) as usize;
            let bytes = self.read(at, len).await?;
            if bytes.is_empty() {
                break;
            }
            if bytes.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += bytes.len() as u64;
        }
        Ok(true)
    }

    /// Cuts the data to `len` bytes (zeroing anything after in the last
    /// block), keeps the preallocation, and makes it durable.
    pub async fn truncate(&self, len: u64, config: &LogConfig) -> Result<(), LogError> {
        let ctx = |what: &str| format!("{what} {} to {len}", self.path.display());
        let file_len = SEGMENT_HEADER_BYTES + len;
        self.file
            .truncate(file_len)
            .await
            .map_err(|e| LogError::io(ctx("truncating"), e))?;
        if config.preallocate_bytes > file_len {
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
