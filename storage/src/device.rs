//! The storage device seam: everything the log does to files.
//!
//! The log never calls the file system itself. It goes through a
//! [`Device`] (directory operations) and its [`DeviceFile`]s (positional
//! reads and aligned writes, fdatasync, preallocation, truncation), so the
//! same code runs on glommio's DMA files in production
//! ([`DmaDevice`](crate::dma_device::DmaDevice)) and on a simulated disk in
//! the tests, one that loses, keeps or tears unsynced writes at a power cut
//! (`tests/common/sim_disk.rs`).
//!
//! Dispatch is static: `PartitionLog<D: Device>` is generic (defaulting to
//! the DMA device), so production code calls glommio directly with no
//! boxed future or virtual call per write, and writes keep their aligned
//! DMA buffers ([`Device::Buffer`]).
//!
//! What the log relies on, and what a simulated device must honour:
//! - a write is whole blocks at an aligned position; its completion means
//!   the device has it (reads see it), not that it survives a power loss;
//! - `fdatasync` returning Ok means every write that completed before it
//!   was called survives a power loss, and so does the file size;
//! - creating, renaming and removing a file survive a power loss only once
//!   the directory was synced (`sync_dir`);
//! - a failed write or fdatasync leaves the outcome unknown (the log
//!   fences; it never retries).
//!
//! Every method returns a `std::io::Result`; the log turns failures into
//! [`LogError`](crate::LogError)s or a fence, never ignores them.

use std::ffi::OsString;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Directory-level operations and the types of one kind of storage.
// The log runs on one executor and never sends these futures to another
// thread, so the auto-trait bounds `async fn` cannot spell are not needed.
#[allow(async_fn_in_trait)]
pub trait Device: Clone + 'static {
    type File: DeviceFile<Buffer = Self::Buffer>;
    /// An aligned buffer that writes take (a DMA buffer in production).
    type Buffer: IoBuffer;

    /// Creates `dir` if needed, readies it for use on this executor, and
    /// returns the (absolute) path to use from then on.
    async fn prepare_dir(&self, dir: &Path) -> io::Result<PathBuf>;

    /// Opens a file for reading and writing. `create` makes it new and
    /// empty (truncating one that exists); otherwise it must exist.
    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;

    /// Renames a file (durable once the directory is synced).
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file; Ok if there is none. Open handles stay readable.
    async fn remove(&self, path: &Path) -> io::Result<()>;

    /// Makes the directory's entries (creates, renames, removes) durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// The names of the entries of `dir`.
    async fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
}

/// One open file.
#[allow(async_fn_in_trait)]
pub trait DeviceFile: 'static {
    type Buffer: IoBuffer;
    /// What a read returns: the bytes read, possibly fewer than asked for
    /// at the end of the file.
    type Bytes: Deref<Target = [u8]>;

    /// Positions and lengths of writes must be multiples of this.
    fn alignment(&self) -> usize;

    /// A buffer of `len` bytes (contents unspecified) that writes to this
    /// file accept.
    fn alloc_buffer(&self, len: usize) -> Self::Buffer;

    /// Reads up to `len` bytes at `pos` (any alignment).
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Self::Bytes>;

    /// Writes all of `buf` at the aligned position `pos`; returns the bytes
    /// written (fewer means a short write).
    async fn write_at(&self, buf: Rc<Self::Buffer>, pos: u64) -> io::Result<usize>;

    async fn fdatasync(&self) -> io::Result<()>;

    /// Grows the file to `len` bytes of allocated space reading as zeros,
    /// so later writes within it do not extend the file.
    async fn preallocate(&self, len: u64) -> io::Result<()>;

    /// Cuts (or extends with zeros) the file to `len` bytes.
    async fn truncate(&self, len: u64) -> io::Result<()>;

    async fn size(&self) -> io::Result<u64>;

    /// End of the last region ever written (preallocated space that was
    /// never written does not count); at most `size`. Bounds recovery scans
    /// to what was written instead of the whole preallocation.
    async fn data_end(&self) -> io::Result<u64>;

    async fn close(self) -> io::Result<()>;
}

/// A buffer for aligned writes.
pub trait IoBuffer: 'static {
    fn as_bytes(&self) -> &[u8];
    fn as_bytes_mut(&mut self) -> &mut [u8];
    /// Shortens the buffer to its first `len` bytes (what a write submits).
    fn trim_to_size(&mut self, len: usize);
    fn len(&self) -> usize {
        self.as_bytes().len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
