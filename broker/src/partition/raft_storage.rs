//! raft-rs's `Storage` for a replicated partition, over what the replica
//! persisted: the sidecar's entry records (`shoal_storage::raft_index`), a
//! window of recent entry data, the hard state and the voters
//! (`docs/replication.md`).
//!
//! raft-rs reads its storage synchronously, so everything it asks for is
//! answered from memory: `term`, `first_index` and `last_index` from the
//! entry records (32 bytes per entry, all of them since the log start);
//! `entries` from the window, whose data are the batches' own `Bytes`
//! (shared with the log's tail cache, not copied). The window holds the
//! most recent [`WINDOW_BYTES_MAX`], and never drops an entry not yet
//! applied (raft-rs reads committed entries back from here, and cannot
//! wait for a disk read there).
//!
//! A leader sending to a follower far behind asks for entries below the
//! window: that request is recorded ([`FetchRequest`]) and answered
//! `LogTemporarilyUnavailable`; the group's next round reads those batches
//! from the log ([`RaftMemory::take_fetches`]), hands them over
//! ([`RaftMemory::set_fetched`]) and calls `on_entries_fetched`, which
//! sends them.
//!
//! Entries whose batches retention removed (below the log start) are
//! answered `Compacted`, which makes the leader send a snapshot
//! ([`ReplicaStorage::snapshot`]): no data, only the last removed entry
//! (index, term) and the log start offset after it. The follower installs
//! it by emptying its log and restarting it at that offset
//! ([`RaftMemory::install`]; the group does the I/O), then takes the
//! entries after it as usual. Replicas thus converge on the leader's
//! retained log, as Kafka followers do.
//!
//! Only the replica's own round changes this state. It stages a ready's
//! entries here before they are durable (raft-rs reads them back from
//! storage once the ready is advanced, and sends a leader's entries to
//! followers while they are being written); raft-rs learns what is durable
//! separately (`on_persist_ready`), and counts only that for commits and
//! hands only that out to apply.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use shoal_storage::raft_files::SnapshotBase;
use shoal_storage::raft_index::EntryRecord;

/// Cap on the entry data kept in memory per replica.
pub const WINDOW_BYTES_MAX: usize = 64 << 20;

/// Entries raft-rs asked for below the window, to be read from the log.
#[derive(Debug)]
pub struct FetchRequest {
    pub low: u64,
    pub high: u64,
    pub max_bytes: u64,
    /// Handed back to raft-rs (`on_entries_fetched`) once they are read.
    pub context: GetEntriesContext,
}

/// What a replica persisted, as raft-rs reads it.
#[derive(Debug, Default)]
pub struct RaftMemory {
    pub hard: HardState,
    pub conf: ConfState,
    /// Every entry since the log start (durable or staged), in index order.
    records: Vec<EntryRecord>,
    /// Data of the entries from `window_start` on (empty for empty entries).
    window: VecDeque<Bytes>,
    window_start: u64,
    window_bytes: usize,
    window_bytes_max: usize,
    /// The last entry applied: the window keeps every entry after it.
    applied: u64,
    /// Entries read from the log for the fetch being served (below the
    /// window), by index; empty between rounds.
    fetched: BTreeMap<u64, Bytes>,
    /// Fetches raft-rs asked for since the last round.
    fetches: Vec<FetchRequest>,
    /// The last installed snapshot (all zero without one): the log holds
    /// no entry at or below its index.
    base: SnapshotBase,
    /// The log's first offset: batches below it were removed (retention).
    log_start: u64,
}

impl RaftMemory {
    pub fn new(hard: HardState, conf: ConfState, records: Vec<EntryRecord>, base: SnapshotBase) -> Self {
        let window_start = records.last().map_or(base.index + 1, |r| r.index + 1);
        RaftMemory {
            hard,
            conf,
            records,
            window: VecDeque::new(),
            window_start,
            window_bytes: 0,
            window_bytes_max: WINDOW_BYTES_MAX,
            applied: 0,
            fetched: BTreeMap::new(),
            fetches: Vec::new(),
            base,
            log_start: base.offset,
        }
    }

    /// Changes the window's cap (tests use a small one to reach the
    /// fetch path with little data).
    pub fn set_window_bytes_max(&mut self, bytes: usize) {
        self.window_bytes_max = bytes;
        self.evict();
    }

    /// The first entry whose data is in the window.
    pub fn window_start(&self) -> u64 {
        self.window_start
    }

    /// The last entry handed to the group's apply.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Entries up to `index` are applied; the window may drop them.
    pub fn set_applied(&mut self, index: u64) {
        self.applied = index;
        self.evict();
    }

    /// Drops the oldest applied entries while the window is over its cap.
    fn evict(&mut self) {
        while self.window_bytes > self.window_bytes_max
            && self.window.len() > 1
            && self.window_start <= self.applied
        {
            let dropped = self.window.pop_front().expect("non-empty");
            self.window_bytes -= dropped.len();
            self.window_start += 1;
        }
    }

    /// Whether raft-rs asked for entries the next round must read.
    pub fn has_fetches(&self) -> bool {
        !self.fetches.is_empty()
    }

    pub fn take_fetches(&mut self) -> Vec<FetchRequest> {
        std::mem::take(&mut self.fetches)
    }

    /// The entries read for one fetch; replaced by the next, cleared with
    /// an empty list.
    pub fn set_fetched(&mut self, entries: Vec<(u64, Bytes)>) {
        self.fetched = entries.into_iter().collect();
    }

    /// The log's first offset now (retention moves it).
    pub fn set_log_start(&mut self, offset: u64) {
        self.log_start = offset;
    }

    /// Whether entry `index` holds a batch retention removed.
    fn removed(&self, index: u64) -> bool {
        self.record(index)
            .is_some_and(|r| r.record_count > 0 && r.base_offset < self.log_start)
    }

    /// What a snapshot sent now would hold: the last entry whose batch
    /// ends at or below the log start, if it is committed (or the base
    /// this replica installed itself). `None` while there is none.
    pub fn snapshot_point(&self) -> Option<SnapshotBase> {
        if self.log_start <= self.base.offset {
            // Retention removed nothing past the base.
            return (self.base.index > 0).then_some(self.base);
        }
        let last_removed = self
            .records
            .iter()
            .take_while(|r| r.end_offset() <= self.log_start)
            .last();
        match last_removed {
            Some(r) if r.index <= self.hard.commit => Some(SnapshotBase {
                index: r.index,
                term: r.term,
                offset: r.end_offset(),
            }),
            Some(_) => None,
            None => (self.base.index > 0).then_some(self.base),
        }
    }

    /// The installed snapshot's base (all zero without one).
    pub fn base(&self) -> SnapshotBase {
        self.base
    }

    /// Forgets every entry and starts after `base` (a snapshot installed:
    /// the log was emptied and restarts at `base.offset`).
    pub fn install(&mut self, base: SnapshotBase) {
        self.records.clear();
        self.window.clear();
        self.window_bytes = 0;
        self.window_start = base.index + 1;
        self.fetched.clear();
        self.fetches.clear();
        self.base = base;
        self.log_start = base.offset;
        self.applied = base.index;
        self.hard.commit = self.hard.commit.max(base.index);
    }

    pub fn first_index(&self) -> u64 {
        self.records.first().map_or(self.base.index + 1, |r| r.index)
    }

    pub fn last_index(&self) -> u64 {
        self.records.last().map_or(self.first_index() - 1, |r| r.index)
    }

    pub fn record(&self, index: u64) -> Option<&EntryRecord> {
        let first = self.first_index();
        index
            .checked_sub(first)
            .and_then(|i| self.records.get(i as usize))
    }

    pub fn last_record(&self) -> Option<&EntryRecord> {
        self.records.last()
    }

    /// Adds the data of an entry already in the records below the window
    /// (the window refill on open), oldest first, ending at the window.
    pub fn prepend_data(&mut self, index: u64, data: Bytes) {
        assert_eq!(index + 1, self.window_start, "window refill out of order");
        self.window_bytes += data.len();
        self.window.push_front(data);
        self.window_start = index;
    }

    /// Records a staged entry and keeps its data in the window.
    pub fn push(&mut self, record: EntryRecord, data: Bytes) {
        assert_eq!(record.index, self.last_index() + 1, "entries are pushed in order");
        if self.window.is_empty() {
            self.window_start = record.index;
        }
        assert_eq!(
            self.window_start + self.window.len() as u64,
            record.index,
            "the window ends at the last entry"
        );
        self.records.push(record);
        self.window_bytes += data.len();
        self.window.push_back(data);
        self.evict();
    }

    /// Forgets the entries from `index` on (a diverged tail being cut).
    pub fn truncate_from(&mut self, index: u64) {
        let keep = self.records.iter().take_while(|r| r.index < index).count();
        self.records.truncate(keep);
        let in_window = index.saturating_sub(self.window_start) as usize;
        while self.window.len() > in_window {
            let dropped = self.window.pop_back().expect("non-empty");
            self.window_bytes -= dropped.len();
        }
        if self.window.is_empty() {
            self.window_start = self.last_index() + 1;
        }
    }

    /// The end offset of entry `index` (the high watermark when it is the
    /// commit index): one past its last record, or the end of the last
    /// entry before it that has records.
    pub fn end_offset_of(&self, index: u64) -> Option<u64> {
        self.record(index).map(EntryRecord::end_offset)
    }

    fn entry(&self, index: u64) -> Result<Entry, raft::Error> {
        let record = self
            .record(index)
            .ok_or(raft::Error::Store(StorageError::Unavailable))?;
        let data = if record.record_count == 0 {
            Bytes::new()
        } else if let Some(at) = index.checked_sub(self.window_start) {
            self.window
                .get(at as usize)
                .cloned()
                .ok_or(raft::Error::Store(StorageError::Unavailable))?
        } else {
            self.fetched
                .get(&index)
                .cloned()
                .ok_or(raft::Error::Store(StorageError::Compacted))?
        };
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryNormal);
        e.index = index;
        e.term = record.term;
        e.data = data;
        Ok(e)
    }
}

/// Tags a snapshot's data (the log start offset after it).
const SNAPSHOT_MAGIC: &[u8; 4] = b"SRSN";

fn encode_snapshot_data(log_start: u64) -> Bytes {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&log_start.to_le_bytes());
    Bytes::from(out)
}

/// The base a received snapshot installs, or why it is not one of ours.
pub fn snapshot_base(snap: &Snapshot) -> Result<SnapshotBase, String> {
    let data = &snap.data[..];
    if data.len() != 12 || &data[..4] != SNAPSHOT_MAGIC {
        return Err(format!("a snapshot with {} bytes of unknown data", data.len()));
    }
    let meta = snap.get_metadata();
    Ok(SnapshotBase {
        index: meta.index,
        term: meta.term,
        offset: u64::from_le_bytes(data[4..12].try_into().expect("8 bytes")),
    })
}

/// The `Storage` raft-rs holds; the replica shares the memory.
#[derive(Clone)]
pub struct ReplicaStorage(pub Rc<RefCell<RaftMemory>>);

impl Storage for ReplicaStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let m = self.0.borrow();
        Ok(RaftState::new(m.hard.clone(), m.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let mut m = self.0.borrow_mut();
        if low < m.first_index() || m.removed(low) {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > m.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity(((high - low) as usize).min(1024));
        let mut size = 0u64;
        for index in low..high {
            let e = match m.entry(index) {
                Ok(e) => e,
                // Below the window and not fetched: what is there so far,
                // or a fetch from the log when the caller can wait for it.
                Err(raft::Error::Store(StorageError::Compacted)) if !out.is_empty() => break,
                Err(raft::Error::Store(StorageError::Compacted)) if context.can_async() => {
                    if !m.fetches.iter().any(|f| f.low == low) {
                        m.fetches.push(FetchRequest {
                            low,
                            high,
                            max_bytes: max,
                            context,
                        });
                    }
                    return Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
                }
                Err(e) => return Err(e),
            };
            size += e.data.len() as u64 + 32;
            // raft-rs wants at least one entry, then stops at the limit.
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let m = self.0.borrow();
        let first = m.first_index();
        if index + 1 == first {
            // The entry before the first kept one: known only at the very
            // start (0) or as an installed snapshot's.
            return match index == m.base.index {
                true => Ok(m.base.term),
                false => Err(raft::Error::Store(StorageError::Compacted)),
            };
        }
        if index < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        m.record(index)
            .map(|r| r.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().last_index())
    }

    /// A snapshot of no data: the last removed entry and the log start
    /// after it (module header).
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let m = self.0.borrow();
        let Some(point) = m.snapshot_point() else {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        };
        let mut snap = Snapshot {
            data: encode_snapshot_data(point.offset),
            ..Snapshot::default()
        };
        let meta = snap.mut_metadata();
        meta.index = point.index;
        meta.term = point.term;
        meta.set_conf_state(m.conf.clone());
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(index: u64, term: u64, base: u64, count: u32) -> EntryRecord {
        EntryRecord {
            index,
            term,
            base_offset: base,
            record_count: count,
        }
    }

    /// Indexes, terms and entries follow the records; a cut forgets them.
    #[test]
    fn storage_answers_from_records_and_window() {
        let mem = Rc::new(RefCell::new(RaftMemory::new(
            HardState::default(),
            ConfState::default(),
            Vec::new(),
            SnapshotBase::default(),
        )));
        let s = ReplicaStorage(mem.clone());
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 0));
        assert_eq!(s.term(0).unwrap(), 0);
        mem.borrow_mut().push(rec(1, 1, 0, 0), Bytes::new());
        mem.borrow_mut().push(rec(2, 1, 0, 2), Bytes::from_static(b"ab"));
        mem.borrow_mut().push(rec(3, 2, 2, 1), Bytes::from_static(b"c"));
        assert_eq!(s.last_index().unwrap(), 3);
        assert_eq!(s.term(3).unwrap(), 2);
        let es = s.entries(1, 4, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(es.len(), 3);
        assert_eq!(&es[1].data[..], b"ab");
        assert_eq!(
            s.entries(2, 4, 1, GetEntriesContext::empty(false)).unwrap().len(),
            1
        );
        assert!(s.entries(1, 5, None, GetEntriesContext::empty(false)).is_err());
        assert_eq!(mem.borrow().end_offset_of(3), Some(3));
        mem.borrow_mut().truncate_from(3);
        assert_eq!(s.last_index().unwrap(), 2);
        mem.borrow_mut()
            .push(rec(3, 3, 2, 4), Bytes::from_static(b"dddd"));
        let es = s.entries(3, 4, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!((es[0].term, &es[0].data[..]), (3, &b"dddd"[..]));
    }

    /// Below the window: an asynchronous caller gets a fetch recorded and
    /// `LogTemporarilyUnavailable`, then the fetched data; a synchronous
    /// one gets `Compacted`. Entries not yet applied are never dropped.
    #[test]
    fn entries_below_the_window_are_fetched_and_unapplied_ones_kept() {
        let mem = Rc::new(RefCell::new(RaftMemory::new(
            HardState::default(),
            ConfState::default(),
            Vec::new(),
            SnapshotBase::default(),
        )));
        mem.borrow_mut().set_window_bytes_max(4);
        let s = ReplicaStorage(mem.clone());
        for i in 1..=4u64 {
            mem.borrow_mut()
                .push(rec(i, 1, i - 1, 1), Bytes::from_static(b"abc"));
        }
        assert_eq!(mem.borrow().window_start(), 1, "nothing applied, nothing dropped");
        mem.borrow_mut().set_applied(3);
        assert_eq!(mem.borrow().window_start(), 4);
        let sync = s.entries(1, 5, None, GetEntriesContext::empty(false));
        assert_eq!(sync.unwrap_err(), raft::Error::Store(StorageError::Compacted));
        let wait = s.entries(2, 5, None, GetEntriesContext::empty(true));
        assert_eq!(
            wait.unwrap_err(),
            raft::Error::Store(StorageError::LogTemporarilyUnavailable)
        );
        let fetches = mem.borrow_mut().take_fetches();
        assert_eq!((fetches.len(), fetches[0].low, fetches[0].high), (1, 2, 5));
        mem.borrow_mut().set_fetched(vec![
            (2, Bytes::from_static(b"two")),
            (3, Bytes::from_static(b"3")),
        ]);
        let es = s.entries(2, 5, None, GetEntriesContext::empty(true)).unwrap();
        let data: Vec<&[u8]> = es.iter().map(|e| &e.data[..]).collect();
        assert_eq!(data, [&b"two"[..], b"3", b"abc"]);
        mem.borrow_mut().set_log_start(2);
        let gone = s.entries(2, 5, None, GetEntriesContext::empty(true));
        assert_eq!(gone.unwrap_err(), raft::Error::Store(StorageError::Compacted));
    }

    /// Below the log start entries are `Compacted` and a snapshot names the
    /// last removed committed entry and the offset after it; installed on
    /// another replica, it starts that one's log there.
    #[test]
    fn a_snapshot_names_the_last_removed_entry_and_installs() {
        let hard = HardState {
            commit: 3,
            ..HardState::default()
        };
        let conf = ConfState::from((vec![1, 2, 3], Vec::<u64>::new()));
        let mem = Rc::new(RefCell::new(RaftMemory::new(
            hard,
            conf.clone(),
            Vec::new(),
            SnapshotBase::default(),
        )));
        let s = ReplicaStorage(mem.clone());
        for (i, base, n) in [(1u64, 0u64, 0u32), (2, 0, 5), (3, 5, 5), (4, 10, 5)] {
            mem.borrow_mut()
                .push(rec(i, 2, base, n), Bytes::from(vec![b'x'; n as usize]));
        }
        assert_eq!(
            s.snapshot(0, 2).unwrap_err(),
            raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable),
            "nothing removed yet"
        );
        mem.borrow_mut().set_log_start(10);
        assert_eq!(
            s.entries(3, 5, None, GetEntriesContext::empty(true)).unwrap_err(),
            raft::Error::Store(StorageError::Compacted)
        );
        assert_eq!(
            s.entries(4, 5, None, GetEntriesContext::empty(true))
                .unwrap()
                .len(),
            1
        );
        let snap = s.snapshot(0, 2).unwrap();
        let base = snapshot_base(&snap).unwrap();
        assert_eq!(
            base,
            SnapshotBase {
                index: 3,
                term: 2,
                offset: 10
            }
        );
        assert_eq!(snap.get_metadata().get_conf_state(), &conf);

        let other = Rc::new(RefCell::new(RaftMemory::new(
            HardState::default(),
            conf,
            vec![rec(1, 1, 0, 0), rec(2, 1, 0, 7)],
            SnapshotBase::default(),
        )));
        other.borrow_mut().install(base);
        let t = ReplicaStorage(other.clone());
        assert_eq!((t.first_index().unwrap(), t.last_index().unwrap()), (4, 3));
        assert_eq!(t.term(3).unwrap(), 2);
        assert!(t.term(2).is_err());
        other
            .borrow_mut()
            .push(rec(4, 2, 10, 5), Bytes::from_static(b"yyyyy"));
        assert_eq!(
            t.entries(4, 5, None, GetEntriesContext::empty(false)).unwrap()[0].index,
            4
        );
    }
}
