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
//! most recent [`WINDOW_BYTES_MAX`]; an entry below it is answered
//! `Compacted`, which makes a leader send a snapshot (not built yet: such
//! a follower waits, see the design note).
//!
//! Only the replica's own storage round changes this state, after the
//! fdatasync covering it returned: raft-rs never sees an entry as stable
//! before it is durable.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use shoal_storage::raft_index::EntryRecord;

/// Cap on the entry data kept in memory per replica.
pub const WINDOW_BYTES_MAX: usize = 64 << 20;

/// What a replica persisted, as raft-rs reads it.
#[derive(Debug, Default)]
pub struct RaftMemory {
    pub hard: HardState,
    pub conf: ConfState,
    /// Every persisted entry since the log start, in index order.
    records: Vec<EntryRecord>,
    /// Data of the entries from `window_start` on (empty for empty entries).
    window: VecDeque<Bytes>,
    window_start: u64,
    window_bytes: usize,
}

impl RaftMemory {
    pub fn new(hard: HardState, conf: ConfState, records: Vec<EntryRecord>) -> Self {
        let window_start = records.last().map_or(1, |r| r.index + 1);
        RaftMemory {
            hard,
            conf,
            records,
            window: VecDeque::new(),
            window_start,
            window_bytes: 0,
        }
    }

    pub fn first_index(&self) -> u64 {
        self.records.first().map_or(1, |r| r.index)
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

    /// Records a persisted entry and keeps its data in the window.
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
        while self.window_bytes > WINDOW_BYTES_MAX && self.window.len() > 1 {
            let dropped = self.window.pop_front().expect("non-empty");
            self.window_bytes -= dropped.len();
            self.window_start += 1;
        }
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
        } else {
            let at = index
                .checked_sub(self.window_start)
                .ok_or(raft::Error::Store(StorageError::Compacted))?;
            self.window
                .get(at as usize)
                .cloned()
                .ok_or(raft::Error::Store(StorageError::Unavailable))?
        };
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryNormal);
        e.index = index;
        e.term = record.term;
        e.data = data;
        Ok(e)
    }
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
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let m = self.0.borrow();
        if low < m.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > m.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        for index in low..high {
            let e = m.entry(index)?;
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
            // The entry before the first kept one: only the very start is known.
            return match index {
                0 => Ok(0),
                _ => Err(raft::Error::Store(StorageError::Compacted)),
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

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Catch-up below the window is not built (see the module header).
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
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
}
