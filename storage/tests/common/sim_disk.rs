//! A simulated disk under the real `PartitionLog` (through the storage
//! crate's `Device` seam), with power cuts decided by a seed.
//!
//! The model, chosen to be as hostile as a real device may legally be:
//! - Every write and resize (truncate, preallocate) of a file is an
//!   operation in a volatile write cache. Reads see completed operations.
//!   An operation becomes durable only when an fdatasync of its file that
//!   was *called after it completed* returns.
//! - At a power cut ([`SimDisk::power_cut`], then [`SimDisk::power_on`]),
//!   every operation not yet durable (completed or still in flight) is
//!   decided on its own: a write is dropped, kept, or torn (each 512-byte
//!   sector kept or dropped independently: sectors are atomic, nothing
//!   else is), a resize is kept or dropped; the survivors are applied in
//!   the order they were issued, so a sector ends up with one of the
//!   versions written to it since it was last durable.
//! - Creates, renames and removes are directory operations: they survive a
//!   cut only if a `sync_dir` followed them, except that a random prefix of
//!   the ones after the last `sync_dir` survives (a journal commits in
//!   order). A file no name points to after the cut is gone.
//! - Faults on chosen sectors: [`SimDisk::rot`] flips bits of stored bytes,
//!   [`SimDisk::misdirect_write`] makes a chosen future write land at the
//!   wrong place (its own sectors keep their old content).
//! - After a cut every operation fails with EIO until `power_on`; handles
//!   opened before it fail for good.
//!
//! Everything is decided by a seeded RNG, and I/O completes after a random
//! number of executor turns (no timers, no threads), so a run on one seed
//! replays exactly; [`SimDisk::trace_digest`] fingerprints the operation
//! sequence so a test can check that.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_storage::{Device, DeviceFile, IoBuffer};
use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// The unit a power cut tears at.
pub const SECTOR_BYTES: usize = 512;

/// A simulated disk; clones share it.
#[derive(Clone)]
pub struct SimDisk {
    disk: Rc<RefCell<Disk>>,
}

/// What a power cut did to the operations that were not yet durable.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CutReport {
    pub writes_dropped: usize,
    pub writes_kept: usize,
    pub writes_torn: usize,
    pub resizes_lost: usize,
    pub dir_ops_lost: usize,
    pub files_lost: usize,
}

impl CutReport {
    /// Whether the cut lost anything at all.
    pub fn lost_anything(&self) -> bool {
        self.writes_dropped + self.writes_torn + self.resizes_lost + self.dir_ops_lost > 0
    }
}

struct Disk {
    rng: StdRng,
    /// Logical time: one tick per operation event.
    clock: u64,
    /// Power cycles so far; handles from an earlier boot are dead.
    boot: u64,
    powered: bool,
    /// Executor turns an operation may take, at most.
    delay_max: u32,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    next_seq: u64,
    /// The namespace the running system sees.
    names: BTreeMap<PathBuf, u64>,
    /// The namespace as of the last `sync_dir`, and what happened since.
    durable_names: BTreeMap<PathBuf, u64>,
    dir_ops: Vec<DirOp>,
    misdirect: Option<Misdirect>,
    trace: DefaultHasher,
    /// Print every operation (`SHOAL_SIM_VERBOSE=1`), for replaying a seed.
    verbose: bool,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(PathBuf, u64),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf),
}

/// An armed misdirected write: the `countdown`-th next write to a `.log`
/// file lands `shift` bytes away from where it was meant to go.
#[derive(Debug, Clone, Copy)]
struct Misdirect {
    countdown: u64,
    shift: i64,
    /// Only writes at or after this file position count.
    from_pos: u64,
}

#[derive(Default)]
struct Inode {
    /// Content with every folded (durable, in order) operation applied.
    base: Vec<u8>,
    base_data_end: u64,
    /// Operations not yet folded into `base`, in issue order.
    ops: VecDeque<FileOp>,
    /// What reads see.
    volatile: Vec<u8>,
    data_end: u64,
    /// Completed fdatasyncs: (called at, returned at) in clock ticks.
    syncs: Vec<(u64, u64)>,
}

struct FileOp {
    seq: u64,
    kind: OpKind,
    completed: bool,
    durable: bool,
}

#[derive(Clone)]
enum OpKind {
    Write { pos: u64, data: Vec<u8> },
    Truncate(u64),
    Preallocate(u64),
}

impl OpKind {
    fn describe(&self) -> String {
        match self {
            OpKind::Write { pos, data } => format!("write at {pos} len {}", data.len()),
            OpKind::Truncate(len) => format!("truncate to {len}"),
            OpKind::Preallocate(len) => format!("preallocate to {len}"),
        }
    }

    /// Applies the operation to `content`; `keep` says which sectors of a
    /// write land (all when `None`).
    fn apply(&self, content: &mut Vec<u8>, data_end: &mut u64, keep: Option<&[bool]>) {
        match self {
            OpKind::Write { pos, data } => {
                let pos = *pos as usize;
                for (i, sector) in data.chunks(SECTOR_BYTES).enumerate() {
                    if keep.is_some_and(|k| !k[i]) {
                        continue;
                    }
                    let at = pos + i * SECTOR_BYTES;
                    if content.len() < at + sector.len() {
                        content.resize(at + sector.len(), 0);
                    }
                    content[at..at + sector.len()].copy_from_slice(sector);
                    *data_end = (*data_end).max((at + sector.len()) as u64);
                }
            }
            OpKind::Truncate(len) => {
                content.resize(*len as usize, 0);
                *data_end = (*data_end).min(*len);
            }
            OpKind::Preallocate(len) => {
                if content.len() < *len as usize {
                    content.resize(*len as usize, 0);
                }
            }
        }
    }
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated disk: {what}"))
}

impl SimDisk {
    /// A fresh, empty, powered disk whose every decision follows `seed`.
    pub fn new(seed: u64) -> Self {
        SimDisk {
            disk: Rc::new(RefCell::new(Disk {
                rng: StdRng::seed_from_u64(seed),
                clock: 0,
                boot: 0,
                powered: true,
                delay_max: 3,
                inodes: BTreeMap::new(),
                next_inode: 1,
                next_seq: 0,
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                dir_ops: Vec::new(),
                misdirect: None,
                trace: DefaultHasher::new(),
                verbose: std::env::var_os("SHOAL_SIM_VERBOSE").is_some(),
            })),
        }
    }

    /// Logical time (for tests that relate their events to the disk's).
    pub fn now(&self) -> u64 {
        self.disk.borrow().clock
    }

    /// Fingerprint of every operation so far and of what each cut kept, for
    /// replay checks.
    pub fn trace_digest(&self) -> u64 {
        self.disk.borrow().trace.finish()
    }

    pub fn is_powered(&self) -> bool {
        self.disk.borrow().powered
    }

    /// The power fails now: every later operation fails, and nothing that
    /// is not yet durable is safe.
    pub fn power_cut(&self) {
        let mut disk = self.disk.borrow_mut();
        disk.powered = false;
        disk.tick("cut", 0, 0, 0);
    }

    /// Decides what the cut kept (see the module header) and powers on.
    pub fn power_on(&self) -> CutReport {
        let mut disk = self.disk.borrow_mut();
        assert!(!disk.powered, "power_on without a power_cut");
        let mut report = CutReport::default();
        let (names, lost_dir_ops) = disk.surviving_names();
        if disk.verbose {
            println!(
                "  disk power on: names {:?} (lost {lost_dir_ops} directory operations)",
                names.keys().collect::<Vec<_>>()
            );
        }
        report.dir_ops_lost = lost_dir_ops;
        let inode_ids: Vec<u64> = disk.inodes.keys().copied().collect();
        for id in inode_ids {
            if !names.values().any(|&i| i == id) {
                disk.inodes.remove(&id);
                report.files_lost += 1;
                continue;
            }
            disk.settle_inode(id, &mut report);
        }
        disk.names = names.clone();
        disk.durable_names = names;
        disk.dir_ops.clear();
        disk.misdirect = None;
        disk.boot += 1;
        disk.powered = true;
        disk.tick("power-on", 0, 0, 0);
        report
    }

    /// Flips the bits `mask` of the byte at `pos` of the file at `path`, on
    /// the medium (bit rot). Only between operations that are all durable,
    /// i.e. right after `power_on`.
    pub fn rot(&self, path: &Path, pos: u64, mask: u8) {
        let mut disk = self.disk.borrow_mut();
        let id = *disk.names.get(path).expect("rot: no such file");
        let inode = disk.inodes.get_mut(&id).expect("inode");
        assert!(inode.ops.is_empty(), "rot: the file has operations in flight");
        let pos = pos as usize;
        inode.base[pos] ^= mask;
        inode.volatile[pos] ^= mask;
    }

    /// The `countdown`-th next write to a `.log` file at or after file
    /// position `from_pos` (0: the next one) lands `shift` bytes away (a
    /// multiple of the sector; moved the other way if it would start before
    /// the file).
    pub fn misdirect_write(&self, countdown: u64, shift: i64, from_pos: u64) {
        assert_eq!(shift % SECTOR_BYTES as i64, 0, "shift must be whole sectors");
        self.disk.borrow_mut().misdirect = Some(Misdirect {
            countdown,
            shift,
            from_pos,
        });
    }

    /// Whether an armed misdirected write has not happened yet.
    pub fn misdirect_pending(&self) -> bool {
        self.disk.borrow().misdirect.is_some()
    }

    /// What reads of the file at `path` see now.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let disk = self.disk.borrow();
        let id = disk.names.get(path)?;
        Some(disk.inodes[id].volatile.clone())
    }

    /// The names of the live files, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        self.disk.borrow().names.keys().cloned().collect()
    }

    /// How many fdatasyncs of the file now at `path` were called at or
    /// after `since` and returned.
    pub fn syncs_since(&self, path: &Path, since: u64) -> usize {
        let disk = self.disk.borrow();
        let Some(id) = disk.names.get(path) else {
            return 0;
        };
        disk.inodes[id]
            .syncs
            .iter()
            .filter(|&&(called, _)| called >= since)
            .count()
    }

    /// Executor turns an operation takes at most (0: completes at once).
    pub fn set_delay_max(&self, turns: u32) {
        self.disk.borrow_mut().delay_max = turns;
    }

    fn delay(&self) -> Turns {
        let mut disk = self.disk.borrow_mut();
        let max = disk.delay_max;
        Turns(disk.rng.gen_range(0..=max))
    }

    fn check_power(&self) -> io::Result<()> {
        if self.disk.borrow().powered {
            Ok(())
        } else {
            Err(eio("no power"))
        }
    }
}

impl Disk {
    fn tick(&mut self, what: &str, inode: u64, pos: u64, len: u64) {
        self.clock += 1;
        (what, inode, pos, len, self.clock).hash(&mut self.trace);
        if self.verbose {
            let name = self
                .names
                .iter()
                .find(|(_, &i)| i == inode)
                .map(|(p, _)| p.display().to_string());
            println!(
                "  disk {:>6} {what:<11} inode {inode} {} pos {pos} len {len}",
                self.clock,
                name.unwrap_or_default()
            );
        }
    }

    /// The namespace after a cut: the durable one plus a random prefix of
    /// the directory operations since; returns it and how many were lost.
    fn surviving_names(&mut self) -> (BTreeMap<PathBuf, u64>, usize) {
        let kept = self.rng.gen_range(0..=self.dir_ops.len());
        let mut names = self.durable_names.clone();
        for op in &self.dir_ops[..kept] {
            match op {
                DirOp::Link(path, id) => {
                    names.insert(path.clone(), *id);
                }
                DirOp::Unlink(path) => {
                    names.remove(path);
                }
                DirOp::Rename(from, to) => {
                    if let Some(id) = names.remove(from) {
                        names.insert(to.clone(), id);
                    }
                }
            }
        }
        (names, self.dir_ops.len() - kept)
    }

    /// Applies durable operations and the cut's choice for the others to
    /// one file, which then has nothing in flight.
    fn settle_inode(&mut self, id: u64, report: &mut CutReport) {
        let ops: Vec<FileOp> = self.inodes.get_mut(&id).expect("inode").ops.drain(..).collect();
        let inode = &self.inodes[&id];
        let (mut content, mut data_end) = (inode.base.clone(), inode.base_data_end);
        for op in ops {
            if op.durable {
                op.kind.apply(&mut content, &mut data_end, None);
                continue;
            }
            let fate = match &op.kind {
                OpKind::Write { data, .. } => {
                    let sectors = data.len().div_ceil(SECTOR_BYTES);
                    match self.rng.gen_range(0..3) {
                        0 => {
                            report.writes_dropped += 1;
                            "dropped".to_string()
                        }
                        1 => {
                            report.writes_kept += 1;
                            op.kind.apply(&mut content, &mut data_end, None);
                            "kept".to_string()
                        }
                        _ => {
                            report.writes_torn += 1;
                            let keep: Vec<bool> = (0..sectors).map(|_| self.rng.gen_bool(0.5)).collect();
                            op.kind.apply(&mut content, &mut data_end, Some(&keep));
                            format!("torn {keep:?}")
                        }
                    }
                }
                OpKind::Truncate(_) | OpKind::Preallocate(_) => {
                    if self.rng.gen_bool(0.5) {
                        op.kind.apply(&mut content, &mut data_end, None);
                        "kept".to_string()
                    } else {
                        report.resizes_lost += 1;
                        "lost".to_string()
                    }
                }
            };
            fate.hash(&mut self.trace);
            if self.verbose {
                println!(
                    "  disk cut: inode {id} op {} {}: {fate}",
                    op.seq,
                    op.kind.describe()
                );
            }
        }
        let inode = self.inodes.get_mut(&id).expect("inode");
        inode.base = content.clone();
        inode.base_data_end = data_end;
        inode.volatile = content;
        inode.data_end = data_end;
        inode.syncs.clear();
    }

    /// Issues an operation on a file; it takes effect when completed.
    fn issue(&mut self, id: u64, kind: OpKind) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let inode = self.inodes.get_mut(&id).expect("inode");
        inode.ops.push_back(FileOp {
            seq,
            kind,
            completed: false,
            durable: false,
        });
        seq
    }

    /// Completes an issued operation: reads see it from now on.
    fn complete(&mut self, id: u64, seq: u64) {
        let inode = self.inodes.get_mut(&id).expect("inode");
        let Some(op) = inode.ops.iter_mut().find(|op| op.seq == seq) else {
            return;
        };
        op.completed = true;
        let kind = op.kind.clone();
        kind.apply(&mut inode.volatile, &mut inode.data_end, None);
    }

    /// Makes the operations with these sequence numbers durable and folds
    /// the durable prefix into the base content.
    fn make_durable(&mut self, id: u64, seqs: &[u64], called: u64) {
        let clock = self.clock;
        let inode = self.inodes.get_mut(&id).expect("inode");
        for op in inode.ops.iter_mut().filter(|op| seqs.contains(&op.seq)) {
            op.durable = true;
        }
        while inode.ops.front().is_some_and(|op| op.durable) {
            let op = inode.ops.pop_front().expect("checked");
            op.kind.apply(&mut inode.base, &mut inode.base_data_end, None);
        }
        inode.syncs.push((called, clock));
    }

    /// Where the next write to the file lands, counting down an armed
    /// misdirection.
    fn place_write(&mut self, is_log: bool, pos: u64, len: usize) -> u64 {
        let Some(m) = self.misdirect.as_mut().filter(|m| is_log && pos >= m.from_pos) else {
            return pos;
        };
        if m.countdown > 0 {
            m.countdown -= 1;
            return pos;
        }
        let shift = m.shift;
        self.misdirect = None;
        let moved = pos as i64 + shift;
        let target = if moved < 0 { pos as i64 - shift } else { moved };
        debug_assert!(target >= 0 && len > 0);
        target as u64
    }
}

/// Completes after the given number of executor turns.
struct Turns(u32);

impl Future for Turns {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A buffer for the simulated disk's writes.
pub struct SimBuffer(Vec<u8>);

impl IoBuffer for SimBuffer {
    fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    fn trim_to_size(&mut self, len: usize) {
        self.0.truncate(len);
    }
}

/// An open file of the simulated disk.
pub struct SimFile {
    disk: SimDisk,
    inode: u64,
    boot: u64,
    is_log: bool,
}

impl SimFile {
    /// Fails if the power is off or the handle is from an earlier boot.
    fn check(&self) -> io::Result<()> {
        self.disk.check_power()?;
        if self.disk.disk.borrow().boot != self.boot {
            return Err(eio("stale handle from before a power cut"));
        }
        Ok(())
    }

    /// Issues `kind`, waits the device's delay, then completes it.
    async fn run(&self, name: &str, kind: OpKind) -> io::Result<()> {
        self.check()?;
        let seq = {
            let mut disk = self.disk.disk.borrow_mut();
            let (pos, len) = match &kind {
                OpKind::Write { pos, data } => (*pos, data.len() as u64),
                OpKind::Truncate(len) | OpKind::Preallocate(len) => (*len, 0),
            };
            disk.tick(name, self.inode, pos, len);
            disk.issue(self.inode, kind)
        };
        self.disk.delay().await;
        self.check()?;
        let mut disk = self.disk.disk.borrow_mut();
        disk.tick("done", self.inode, seq, 0);
        disk.complete(self.inode, seq);
        Ok(())
    }
}

impl DeviceFile for SimFile {
    type Buffer = SimBuffer;
    type Bytes = Vec<u8>;

    fn alignment(&self) -> usize {
        SECTOR_BYTES
    }

    fn alloc_buffer(&self, len: usize) -> SimBuffer {
        SimBuffer(vec![0; len])
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        self.check()?;
        self.disk.delay().await;
        self.check()?;
        let mut disk = self.disk.disk.borrow_mut();
        disk.tick("read", self.inode, pos, len as u64);
        let content = &disk.inodes[&self.inode].volatile;
        let start = (pos as usize).min(content.len());
        let end = (pos as usize).saturating_add(len).min(content.len());
        Ok(content[start..end].to_vec())
    }

    async fn write_at(&self, buf: Rc<SimBuffer>, pos: u64) -> io::Result<usize> {
        let data = buf.as_bytes().to_vec();
        if !pos.is_multiple_of(SECTOR_BYTES as u64) || !data.len().is_multiple_of(SECTOR_BYTES) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unaligned direct write",
            ));
        }
        self.check()?;
        let target = self
            .disk
            .disk
            .borrow_mut()
            .place_write(self.is_log, pos, data.len());
        let len = data.len();
        self.run("write", OpKind::Write { pos: target, data }).await?;
        Ok(len)
    }

    async fn fdatasync(&self) -> io::Result<()> {
        self.check()?;
        let (covered, called) = {
            let mut disk = self.disk.disk.borrow_mut();
            disk.tick("fdatasync", self.inode, 0, 0);
            let inode = &disk.inodes[&self.inode];
            let covered: Vec<u64> = inode
                .ops
                .iter()
                .filter(|op| op.completed)
                .map(|op| op.seq)
                .collect();
            (covered, disk.clock)
        };
        self.disk.delay().await;
        self.disk.delay().await;
        self.check()?;
        let mut disk = self.disk.disk.borrow_mut();
        disk.tick("synced", self.inode, 0, 0);
        disk.make_durable(self.inode, &covered, called);
        Ok(())
    }

    async fn preallocate(&self, len: u64) -> io::Result<()> {
        self.run("preallocate", OpKind::Preallocate(len)).await
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.run("truncate", OpKind::Truncate(len)).await
    }

    async fn size(&self) -> io::Result<u64> {
        self.check()?;
        Ok(self.disk.disk.borrow().inodes[&self.inode].volatile.len() as u64)
    }

    async fn data_end(&self) -> io::Result<u64> {
        self.check()?;
        Ok(self.disk.disk.borrow().inodes[&self.inode].data_end)
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}

impl Device for SimDisk {
    type File = SimFile;
    type Buffer = SimBuffer;

    async fn prepare_dir(&self, dir: &Path) -> io::Result<PathBuf> {
        self.check_power()?;
        Ok(dir.to_path_buf())
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<SimFile> {
        self.check_power()?;
        self.delay().await;
        self.check_power()?;
        let existing = self.disk.borrow().names.get(path).copied();
        let inode = match (existing, create) {
            (Some(id), false) => id,
            (None, false) => return Err(io::Error::from(io::ErrorKind::NotFound)),
            (Some(id), true) => {
                // O_TRUNC: the same file, emptied (a resize like any other).
                let file = self.handle(id, path);
                file.truncate(0).await?;
                id
            }
            (None, true) => self.link_new(path),
        };
        Ok(self.handle(inode, path))
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check_power()?;
        self.delay().await;
        self.check_power()?;
        let mut disk = self.disk.borrow_mut();
        let id = disk
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        disk.names.insert(to.to_path_buf(), id);
        disk.dir_ops
            .push(DirOp::Rename(from.to_path_buf(), to.to_path_buf()));
        disk.tick("rename", id, 0, 0);
        Ok(())
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.check_power()?;
        self.delay().await;
        self.check_power()?;
        let mut disk = self.disk.borrow_mut();
        if let Some(id) = disk.names.remove(path) {
            disk.dir_ops.push(DirOp::Unlink(path.to_path_buf()));
            disk.tick("remove", id, 0, 0);
        }
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check_power()?;
        self.delay().await;
        self.check_power()?;
        let mut disk = self.disk.borrow_mut();
        let ops: Vec<DirOp> = disk.dir_ops.drain(..).collect();
        for op in ops {
            match op {
                DirOp::Link(path, id) => {
                    disk.durable_names.insert(path, id);
                }
                DirOp::Unlink(path) => {
                    disk.durable_names.remove(&path);
                }
                DirOp::Rename(from, to) => {
                    if let Some(id) = disk.durable_names.remove(&from) {
                        disk.durable_names.insert(to, id);
                    }
                }
            }
        }
        disk.tick("sync_dir", 0, dir.as_os_str().len() as u64, 0);
        Ok(())
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.check_power()?;
        let disk = self.disk.borrow();
        Ok(disk
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
            .collect())
    }
}

impl SimDisk {
    fn handle(&self, inode: u64, path: &Path) -> SimFile {
        SimFile {
            disk: self.clone(),
            inode,
            boot: self.disk.borrow().boot,
            is_log: path.extension().is_some_and(|e| e == "log"),
        }
    }

    /// Creates an empty file named `path` (a directory operation).
    fn link_new(&self, path: &Path) -> u64 {
        let mut disk = self.disk.borrow_mut();
        let id = disk.next_inode;
        disk.next_inode += 1;
        disk.inodes.insert(id, Inode::default());
        disk.names.insert(path.to_path_buf(), id);
        disk.dir_ops.push(DirOp::Link(path.to_path_buf(), id));
        disk.tick("create", id, 0, 0);
        id
    }
}
