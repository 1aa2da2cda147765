//! The raft sidecar and hard-state files on real DMA files: what `sync`
//! returned Ok for is read back after a reopen, a cut tail stays cut, and
//! appends after a cut continue from it.

mod common;

use common::run_local;
use shoal_storage::device::Device;
use shoal_storage::raft_files::{load_hard_state, store_hard_state, HardStateRecord, RaftIndexFile};
use shoal_storage::raft_index::{EntryRecord, ScanStop};
use shoal_storage::DmaDevice;

fn entry(index: u64, term: u64, base_offset: u64, record_count: u32) -> EntryRecord {
    EntryRecord {
        index,
        term,
        base_offset,
        record_count,
    }
}

#[test]
fn sidecar_survives_reopen_and_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run_local(move || async move {
        let device = DmaDevice;
        let dir = device.prepare_dir(&dir).await.unwrap();
        let (mut file, stop) = RaftIndexFile::open(&device, &dir).await.unwrap();
        assert_eq!(stop, ScanStop::Clean);
        assert!(file.records().is_empty());
        // 300 entries cross two 4 KiB blocks; every fifth one is empty.
        let mut offset = 0;
        let mut expected = Vec::new();
        for i in 1..=300u64 {
            let count = if i % 5 == 0 { 0 } else { 3 };
            let e = entry(i, 1 + i / 100, offset, count);
            offset += u64::from(count);
            file.append(e).unwrap();
            expected.push(e);
            if i % 7 == 0 {
                file.sync().await.unwrap();
            }
        }
        file.sync().await.unwrap();
        // A record that does not follow is refused.
        assert!(file.append(entry(302, 9, offset, 1)).is_err());
        file.close().await.unwrap();
        let (mut file, stop) = RaftIndexFile::open(&device, &dir).await.unwrap();
        assert_eq!(stop, ScanStop::Clean);
        assert_eq!(file.records(), &expected[..]);
        // Cut from entry 130 (inside the second block), append again.
        file.truncate_from(130).await.unwrap();
        expected.truncate(129);
        let next = expected.last().unwrap().end_offset();
        let e = entry(130, 9, next, 2);
        file.append(e).unwrap();
        expected.push(e);
        file.sync().await.unwrap();
        file.close().await.unwrap();
        let (file, stop) = RaftIndexFile::open(&device, &dir).await.unwrap();
        assert_eq!(stop, ScanStop::Clean);
        assert_eq!(file.records(), &expected[..]);
        // A cut at a block boundary leaves the earlier block whole.
        let (mut file, _) = (file, ());
        file.truncate_from(129).await.unwrap();
        file.truncate_from(128).await.unwrap();
        file.close().await.unwrap();
        let (file, _) = RaftIndexFile::open(&device, &dir).await.unwrap();
        assert_eq!(file.records(), &expected[..127]);
        file.close().await.unwrap();
    });
}

#[test]
fn hard_state_is_replaced_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run_local(move || async move {
        let device = DmaDevice;
        let dir = device.prepare_dir(&dir).await.unwrap();
        assert_eq!(load_hard_state(&device, &dir).await.unwrap(), None);
        for term in 1..=3 {
            let hs = HardStateRecord {
                term,
                vote: term % 3 + 1,
                commit: term * 10,
                voters: vec![1, 2, 3],
                snapshot: None,
            };
            store_hard_state(&device, &dir, &hs).await.unwrap();
            assert_eq!(load_hard_state(&device, &dir).await.unwrap(), Some(hs));
        }
        std::fs::write(dir.join("raft.state"), b"SRHS garbage").unwrap();
        assert!(load_hard_state(&device, &dir).await.is_err());
    });
}
