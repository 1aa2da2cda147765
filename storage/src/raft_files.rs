//! The raft files of a replicated partition, beside its segments: the
//! sidecar index ([`crate::raft_index`], `raft.idx`) and the hard state
//! (`raft.state`). Both go through the [`Device`] seam.
//!
//! **The sidecar** keeps every record in memory (32 bytes per entry) and
//! its last partial 4 KiB block as the file tail. [`RaftIndexFile::append`]
//! only stages records; [`RaftIndexFile::sync`] writes the blocks touched
//! since the last sync (rewriting the partial block, so earlier records in
//! it stay intact) and fdatasyncs. The caller runs `sync` in the same
//! storage round as the log's group commit and sends raft's persisted
//! messages only after both returned Ok. [`RaftIndexFile::truncate_from`]
//! cuts the records from an index on (a follower's diverged tail) and is
//! durable when it returns. A failed write or fdatasync is returned and the
//! file must not be used again (the caller fences the partition): it is
//! never retried and trusted.
//!
//! **The hard state** (term, vote, commit, voters, and the installed
//! snapshot's base when there is one) is one small file written atomically
//! (temporary file, fdatasync, rename, directory sync) with a CRC; a
//! missing file is the initial state. A file without a snapshot base has
//! the layout it had before snapshots existed.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::device::{Device, DeviceFile, IoBuffer};
use crate::error::LogError;
use crate::raft_index::{scan, EntryRecord, Scan, ScanStop, ENTRY_RECORD_BYTES, RAFT_INDEX_FILE};
use crate::segment::{sync_dir, write_file_atomic};

pub use crate::raft_index::RAFT_STATE_FILE;
/// Sidecar writes are whole blocks of this size.
const BLOCK_BYTES: usize = 4096;
/// Cap on the voters recorded in the hard state.
pub const VOTERS_MAX: usize = 64;

/// raft's HardState and the group's voters, as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardStateRecord {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    pub voters: Vec<u64>,
    /// The last snapshot this replica installed: its log starts there.
    pub snapshot: Option<SnapshotBase>,
}

/// Where a replica's raft log starts after it installed a leader's
/// snapshot: entry `index` (of `term`) is the last one it does not hold,
/// and the log's first offset is `offset` (the leader's log start then).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotBase {
    pub index: u64,
    pub term: u64,
    pub offset: u64,
}

impl HardStateRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 8 * self.voters.len() + 4);
        out.extend_from_slice(b"SRHS");
        out.extend_from_slice(&self.term.to_le_bytes());
        out.extend_from_slice(&self.vote.to_le_bytes());
        out.extend_from_slice(&self.commit.to_le_bytes());
        out.extend_from_slice(&(self.voters.len() as u32).to_le_bytes());
        for v in &self.voters {
            out.extend_from_slice(&v.to_le_bytes());
        }
        if let Some(base) = &self.snapshot {
            for v in [base.index, base.term, base.offset] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<HardStateRecord, String> {
        let body_len = bytes.len().checked_sub(4).ok_or("too short")?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err("CRC mismatch".into());
        }
        if body.len() < 32 || &body[..4] != b"SRHS" {
            return Err("not a hard-state file".into());
        }
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(body[28..32].try_into().expect("4 bytes")) as usize;
        let voters_end = 32 + 8 * count;
        if count > VOTERS_MAX || (body.len() != voters_end && body.len() != voters_end + 24) {
            return Err(format!("bad voter count {count}"));
        }
        let snapshot = (body.len() > voters_end).then(|| SnapshotBase {
            index: u64_at(voters_end),
            term: u64_at(voters_end + 8),
            offset: u64_at(voters_end + 16),
        });
        Ok(HardStateRecord {
            term: u64_at(4),
            vote: u64_at(12),
            commit: u64_at(20),
            voters: (0..count).map(|i| u64_at(32 + 8 * i)).collect(),
            snapshot,
        })
    }
}

/// Reads the hard state of the partition in `dir`; `None` when absent.
pub async fn load_hard_state<D: Device>(device: &D, dir: &Path) -> Result<Option<HardStateRecord>, LogError> {
    let path = dir.join(RAFT_STATE_FILE);
    let file = match device.open(&path, false).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(format!("opening {}", path.display()), e)),
    };
    let read = async {
        let size = file.size().await? as usize;
        let bytes = file.read_at(0, size).await?.to_vec();
        Ok::<_, std::io::Error>(bytes)
    }
    .await;
    let _ = file.close().await;
    let bytes = read.map_err(|e| LogError::io(format!("reading {}", path.display()), e))?;
    HardStateRecord::decode(&bytes).map(Some).map_err(|reason| {
        LogError::io(
            format!("reading {}", path.display()),
            std::io::Error::other(reason),
        )
    })
}

/// Writes the hard state atomically; durable when it returns Ok.
pub async fn store_hard_state<D: Device>(
    device: &D,
    dir: &Path,
    state: &HardStateRecord,
) -> Result<(), LogError> {
    write_file_atomic(device, dir, RAFT_STATE_FILE, &state.encode()).await
}

/// The sidecar index file of one replicated partition.
pub struct RaftIndexFile<D: Device> {
    path: PathBuf,
    file: D::File,
    records: Vec<EntryRecord>,
    /// Records already written and fdatasynced.
    synced: usize,
}

impl<D: Device> RaftIndexFile<D> {
    /// Opens (or creates) the sidecar in `dir` and scans it. A torn tail
    /// is returned in the scan for the caller to reconcile; nothing is cut
    /// here.
    pub async fn open(device: &D, dir: &Path) -> Result<(Self, ScanStop), LogError> {
        let path = dir.join(RAFT_INDEX_FILE);
        let ctx = |what: &str, e| LogError::io(format!("{what} {}", path.display()), e);
        // `open(.., true)` truncates: create only a file that is not there,
        // and make its directory entry durable before anything relies on it.
        let file = match device.open(&path, false).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let file = device.open(&path, true).await.map_err(|e| ctx("creating", e))?;
                sync_dir(device, dir).await?;
                file
            }
            Err(e) => return Err(ctx("opening", e)),
        };
        let size = file.size().await.map_err(|e| ctx("sizing", e))? as usize;
        let bytes = if size == 0 {
            Vec::new()
        } else {
            file.read_at(0, size)
                .await
                .map_err(|e| ctx("reading", e))?
                .to_vec()
        };
        let Scan { records, stop } = scan(&bytes);
        let synced = records.len();
        Ok((
            RaftIndexFile {
                path,
                file,
                records,
                synced,
            },
            stop,
        ))
    }

    /// Every record, oldest first.
    pub fn records(&self) -> &[EntryRecord] {
        &self.records
    }

    pub fn last(&self) -> Option<&EntryRecord> {
        self.records.last()
    }

    /// Stages a record; it must follow the last one (index + 1, term not
    /// lower, contiguous offsets). Durable after the next [`Self::sync`].
    pub fn append(&mut self, record: EntryRecord) -> Result<(), LogError> {
        if let Some(last) = self.records.last() {
            if !last.precedes(&record) {
                return Err(LogError::io(
                    format!("appending to {}", self.path.display()),
                    std::io::Error::other(format!("entry {record:?} does not follow {last:?}")),
                ));
            }
        }
        self.records.push(record);
        Ok(())
    }

    /// Writes the staged records and fdatasyncs.
    pub async fn sync(&mut self) -> Result<(), LogError> {
        if self.synced == self.records.len() {
            return Ok(());
        }
        self.write_from(self.synced).await?;
        self.file
            .fdatasync()
            .await
            .map_err(|e| LogError::io(format!("syncing {}", self.path.display()), e))?;
        self.synced = self.records.len();
        Ok(())
    }

    /// Writes the blocks holding records `from..` (the first one whole,
    /// so records before `from` in it are rewritten as they were), zero
    /// padded to the block.
    async fn write_from(&self, from: usize) -> Result<(), LogError> {
        let per_block = BLOCK_BYTES / ENTRY_RECORD_BYTES;
        let first_block = from / per_block;
        let start = first_block * per_block;
        let bytes: Vec<u8> = self.records[start..].iter().flat_map(|r| r.encode()).collect();
        let padded = bytes.len().next_multiple_of(BLOCK_BYTES).max(BLOCK_BYTES);
        let mut buf = self.file.alloc_buffer(padded);
        buf.as_bytes_mut()[..bytes.len()].copy_from_slice(&bytes);
        buf.as_bytes_mut()[bytes.len()..].fill(0);
        let pos = (first_block * BLOCK_BYTES) as u64;
        let written = self
            .file
            .write_at(Rc::new(buf), pos)
            .await
            .map_err(|e| LogError::io(format!("writing {}", self.path.display()), e))?;
        if written != padded {
            return Err(LogError::io(
                format!("writing {}", self.path.display()),
                std::io::Error::other("short write"),
            ));
        }
        Ok(())
    }

    /// Removes the records from raft index `index` on (a diverged tail),
    /// durably: the block holding the cut is rewritten with zeros after
    /// it, the file is cut at that block's end, then fdatasynced.
    pub async fn truncate_from(&mut self, index: u64) -> Result<(), LogError> {
        let keep = self.records.iter().take_while(|r| r.index < index).count();
        if keep == self.records.len() {
            return Ok(());
        }
        self.records.truncate(keep);
        self.synced = self.synced.min(keep);
        let per_block = BLOCK_BYTES / ENTRY_RECORD_BYTES;
        self.write_from(keep).await?;
        let end = ((keep / per_block) + 1) * BLOCK_BYTES;
        let ctx = |what: &str, e| LogError::io(format!("{what} {}", self.path.display()), e);
        self.file
            .truncate(end as u64)
            .await
            .map_err(|e| ctx("truncating", e))?;
        self.file.fdatasync().await.map_err(|e| ctx("syncing", e))?;
        self.synced = keep;
        Ok(())
    }

    /// Closes the file (what is not synced is lost, as on a crash).
    pub async fn close(self) -> Result<(), LogError> {
        self.file
            .close()
            .await
            .map_err(|e| LogError::io(format!("closing {}", self.path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hard state round-trips; damage and truncation are errors.
    #[test]
    fn hard_state_codec() {
        let plain = HardStateRecord {
            term: 7,
            vote: 2,
            commit: 99,
            voters: vec![1, 2, 3],
            snapshot: None,
        };
        let installed = HardStateRecord {
            snapshot: Some(SnapshotBase {
                index: 90,
                term: 6,
                offset: 12_345,
            }),
            ..plain.clone()
        };
        // Without a snapshot base the layout is the one before snapshots.
        assert_eq!(plain.encode().len(), 32 + 3 * 8 + 4);
        for hs in [plain, installed] {
            let bytes = hs.encode();
            assert_eq!(HardStateRecord::decode(&bytes), Ok(hs));
            for cut in 0..bytes.len() {
                assert!(HardStateRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut bad = bytes.clone();
            bad[9] ^= 1;
            assert!(HardStateRecord::decode(&bad).is_err());
        }
    }
}
