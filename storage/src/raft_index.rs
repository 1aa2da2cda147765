//! The raft sidecar of a replicated partition: which raft entry holds which
//! records (the design is `docs/replication.md`).
//!
//! raft-rs numbers entries 1, 2, 3, … and writes entries with no data (a
//! new leader's empty entry, configuration changes); the log numbers
//! records. One raft entry is one record batch or an empty entry, and this
//! file maps one to the other with one fixed-size record per entry:
//!
//! | off | len | field          | notes                                          |
//! |----:|----:|----------------|------------------------------------------------|
//! |   0 |   8 | `index`        | raft index, > 0, each record's is the previous + 1 |
//! |   8 |   8 | `term`         | raft term, never decreasing                    |
//! |  16 |   8 | `base_offset`  | first offset of the entry's batch (the log end for an empty entry) |
//! |  24 |   4 | `record_count` | 0 for an empty entry                           |
//! |  28 |   4 | `crc32c`       | CRC-32C of bytes 0..28                         |
//!
//! 32-byte records never straddle a 512-byte sector or a 4 KiB block, so a
//! torn write tears whole records. The file is `raft.idx` in the
//! partition's directory, appended in the same storage round as the
//! batches and fdatasynced with them. An all-zero record is the end.
//!
//! Everything here is sans-IO: [`scan`] reads a file image, [`reconcile`]
//! decides what recovery keeps. The glue that writes the file is
//! [`RaftIndexFile`](crate::raft_index_file::RaftIndexFile).

/// The sidecar's file name in a partition directory.
pub const RAFT_INDEX_FILE: &str = "raft.idx";
/// The hard state's file name in a partition directory
/// ([`crate::raft_files`]).
pub const RAFT_STATE_FILE: &str = "raft.state";

/// Whether `name` in a partition directory is one of the raft files (the
/// log's open leaves them alone), including the hard state's temporary.
pub fn is_raft_file(name: &str) -> bool {
    name == RAFT_INDEX_FILE || name == RAFT_STATE_FILE || name.strip_suffix(".tmp") == Some(RAFT_STATE_FILE)
}
/// Bytes per entry record.
pub const ENTRY_RECORD_BYTES: usize = 32;

/// One raft entry as the sidecar records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRecord {
    pub index: u64,
    pub term: u64,
    pub base_offset: u64,
    pub record_count: u32,
}

impl EntryRecord {
    /// One past the entry's last offset (its base offset when empty).
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    pub fn encode(&self) -> [u8; ENTRY_RECORD_BYTES] {
        let mut out = [0u8; ENTRY_RECORD_BYTES];
        out[0..8].copy_from_slice(&self.index.to_le_bytes());
        out[8..16].copy_from_slice(&self.term.to_le_bytes());
        out[16..24].copy_from_slice(&self.base_offset.to_le_bytes());
        out[24..28].copy_from_slice(&self.record_count.to_le_bytes());
        let crc = crc32c::crc32c(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads one record slot.
    pub fn decode(bytes: &[u8; ENTRY_RECORD_BYTES]) -> Slot {
        if bytes.iter().all(|&b| b == 0) {
            return Slot::Empty;
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        if crc32c::crc32c(&bytes[..28]) != u32_at(28) {
            return Slot::Damaged;
        }
        Slot::Entry(EntryRecord {
            index: u64_at(0),
            term: u64_at(8),
            base_offset: u64_at(16),
            record_count: u32_at(24),
        })
    }

    /// Whether `next` may follow `self` in the file.
    pub fn precedes(&self, next: &EntryRecord) -> bool {
        next.index == self.index + 1 && next.term >= self.term && next.base_offset == self.end_offset()
    }
}

/// One 32-byte slot of the sidecar file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// All zeros: never written (the end of the records).
    Empty,
    Entry(EntryRecord),
    /// The CRC does not match: a torn or damaged write.
    Damaged,
}

/// How a scan of the sidecar ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStop {
    /// Zeros (or the end of the file) after the last record.
    Clean,
    /// A record with a bad CRC or out of sequence at this byte position:
    /// everything from it on is a torn (unsynced) tail, unless reconcile
    /// finds committed entries there.
    Torn { position: usize },
}

/// The records of a sidecar image, in order, up to the first that is not
/// valid or does not follow its predecessor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub records: Vec<EntryRecord>,
    pub stop: ScanStop,
}

/// Reads a sidecar file image (sans-IO).
pub fn scan(bytes: &[u8]) -> Scan {
    let mut records: Vec<EntryRecord> = Vec::new();
    for (i, chunk) in bytes.chunks_exact(ENTRY_RECORD_BYTES).enumerate() {
        let chunk: &[u8; ENTRY_RECORD_BYTES] = chunk.try_into().expect("exact chunk");
        let torn = ScanStop::Torn {
            position: i * ENTRY_RECORD_BYTES,
        };
        match EntryRecord::decode(chunk) {
            Slot::Empty => {
                return Scan {
                    records,
                    stop: ScanStop::Clean,
                }
            }
            Slot::Damaged => return Scan { records, stop: torn },
            Slot::Entry(r) => {
                let follows = match records.last() {
                    Some(prev) => prev.precedes(&r),
                    None => r.index > 0,
                };
                if !follows {
                    return Scan { records, stop: torn };
                }
                records.push(r);
            }
        }
    }
    Scan {
        records,
        stop: ScanStop::Clean,
    }
}

/// What recovery keeps of the sidecar and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// Sidecar records kept (a prefix of the scan).
    pub keep_records: usize,
    /// Cut the log back to this offset (`truncate_suffix`), when it runs
    /// past the last kept entry.
    pub cut_log_at: Option<u64>,
}

/// Why recovery cannot reconcile the sidecar with the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    /// A committed entry is missing from the sidecar or its records from
    /// the log: both were fdatasynced before the commit could be known, so
    /// this is damage, never a torn tail. The partition must be fenced.
    #[error("raft entry {committed} is committed but the {what} ends at entry {kept}")]
    CommittedMissing {
        committed: u64,
        kept: u64,
        what: &'static str,
    },
    /// The sidecar's first entry starts past the log's end, or records
    /// start before the log keeps any (retention never cuts below the
    /// sidecar's first data entry without rewriting it).
    #[error("the sidecar's entries start at offset {sidecar} but the log holds {log_start}..{log_end}")]
    Disjoint {
        sidecar: u64,
        log_start: u64,
        log_end: u64,
    },
}

/// Decides what recovery keeps (sans-IO). The log recovered first (its own
/// rules); the sidecar's records are cut back to the last entry whose
/// records the log holds whole, and the log is cut back to the end of that
/// entry. Neither cut may remove an entry at or below `committed_index`
/// (the commit index of the persisted HardState). `base_index` is the
/// last entry before the log's first possible record: the installed
/// snapshot's index, 0 without one (an empty sidecar then keeps it).
pub fn reconcile(
    records: &[EntryRecord],
    log_start: u64,
    log_end: u64,
    committed_index: u64,
    base_index: u64,
) -> Result<Reconciled, ReconcileError> {
    if let Some(first) = records.first() {
        if first.base_offset > log_end {
            return Err(ReconcileError::Disjoint {
                sidecar: first.base_offset,
                log_start,
                log_end,
            });
        }
    }
    let keep_records = records.iter().take_while(|r| r.end_offset() <= log_end).count();
    let kept_index = match keep_records {
        0 => records.first().map_or(base_index, |r| r.index - 1),
        n => records[n - 1].index,
    };
    if kept_index < committed_index {
        let what = if keep_records < records.len() {
            "log"
        } else {
            "sidecar"
        };
        return Err(ReconcileError::CommittedMissing {
            committed: committed_index,
            kept: kept_index,
            what,
        });
    }
    let kept_end = match keep_records {
        0 => records.first().map_or(log_start, |r| r.base_offset),
        n => records[n - 1].end_offset(),
    };
    let cut_log_at = (kept_end < log_end).then_some(kept_end);
    Ok(Reconciled {
        keep_records,
        cut_log_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(counts: &[u32]) -> Vec<EntryRecord> {
        let mut out = Vec::new();
        let mut offset = 0;
        for (i, &c) in counts.iter().enumerate() {
            out.push(EntryRecord {
                index: i as u64 + 1,
                term: 1 + i as u64 / 3,
                base_offset: offset,
                record_count: c,
            });
            offset += u64::from(c);
        }
        out
    }

    fn image(records: &[EntryRecord]) -> Vec<u8> {
        let mut out: Vec<u8> = records.iter().flat_map(|r| r.encode()).collect();
        out.resize(out.len().next_multiple_of(4096), 0);
        out
    }

    /// Records round-trip; zeros are the end; a damaged record is torn.
    #[test]
    fn scan_reads_until_zeros_or_damage() {
        let records = chain(&[0, 3, 5, 0, 1]);
        let bytes = image(&records);
        assert_eq!(
            scan(&bytes),
            Scan {
                records: records.clone(),
                stop: ScanStop::Clean
            }
        );
        let mut damaged = bytes.clone();
        damaged[2 * ENTRY_RECORD_BYTES + 17] ^= 1;
        let s = scan(&damaged);
        assert_eq!(s.records, records[..2]);
        assert_eq!(
            s.stop,
            ScanStop::Torn {
                position: 2 * ENTRY_RECORD_BYTES
            }
        );
    }

    /// A record that does not follow (index gap, offset gap, lower term)
    /// ends the scan as torn.
    #[test]
    fn scan_stops_at_a_record_out_of_sequence() {
        let mut records = chain(&[2, 2, 2]);
        records[2].base_offset += 1;
        assert_eq!(scan(&image(&records)).records.len(), 2);
        let mut records = chain(&[2, 2, 2]);
        records[2].index += 1;
        assert_eq!(scan(&image(&records)).records.len(), 2);
        let mut records = chain(&[2, 2, 2, 2]);
        records[3].term = 0;
        assert_eq!(scan(&image(&records)).records.len(), 3);
    }

    /// The sidecar ahead of the log is cut to the last whole entry; the
    /// log ahead of the sidecar is cut at the last entry's end.
    #[test]
    fn reconcile_cuts_whichever_runs_ahead() {
        let records = chain(&[0, 3, 5, 0, 4]); // ends 0, 3, 8, 8, 12
        let r = reconcile(&records, 0, 12, 5, 0).unwrap();
        assert_eq!(
            r,
            Reconciled {
                keep_records: 5,
                cut_log_at: None
            }
        );
        // The log lost the last batch: the sidecar drops its record.
        let r = reconcile(&records, 0, 8, 3, 0).unwrap();
        assert_eq!(
            r,
            Reconciled {
                keep_records: 4,
                cut_log_at: None
            }
        );
        // The log holds part of the last batch's offsets (impossible for
        // whole batches, but the rule is the same): cut at the entry end.
        let r = reconcile(&records, 0, 10, 2, 0).unwrap();
        assert_eq!(
            r,
            Reconciled {
                keep_records: 4,
                cut_log_at: Some(8)
            }
        );
        // The log runs past the sidecar: cut the log.
        let r = reconcile(&records[..3], 0, 12, 3, 0).unwrap();
        assert_eq!(
            r,
            Reconciled {
                keep_records: 3,
                cut_log_at: Some(8)
            }
        );
        // Nothing in the sidecar: the log must be empty of entries too.
        let r = reconcile(&[], 0, 12, 0, 0).unwrap();
        assert_eq!(
            r,
            Reconciled {
                keep_records: 0,
                cut_log_at: Some(0)
            }
        );
        // An installed snapshot (entry 9 ends at offset 40) and nothing
        // since: the committed index 9 is the snapshot's, not missing.
        let r = reconcile(&[], 40, 40, 9, 9).unwrap();
        assert_eq!(
            r,
            Reconciled {
                keep_records: 0,
                cut_log_at: None
            }
        );
        assert!(reconcile(&[], 40, 40, 9, 0).is_err());
    }

    /// A cut that would remove a committed entry is refused.
    #[test]
    fn reconcile_never_cuts_committed_entries() {
        let records = chain(&[0, 3, 5, 0, 4]);
        let err = reconcile(&records, 0, 8, 5, 0).unwrap_err();
        assert!(matches!(
            err,
            ReconcileError::CommittedMissing {
                committed: 5,
                kept: 4,
                what: "log"
            }
        ));
        let err = reconcile(&records[..2], 0, 12, 3, 0).unwrap_err();
        assert!(matches!(
            err,
            ReconcileError::CommittedMissing {
                committed: 3,
                kept: 2,
                what: "sidecar"
            }
        ));
        let mut late = chain(&[2, 2]);
        for r in &mut late {
            r.base_offset += 100;
        }
        assert!(matches!(
            reconcile(&late, 0, 12, 0, 0),
            Err(ReconcileError::Disjoint { .. })
        ));
    }
}
