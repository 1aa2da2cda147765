//! Compaction, lookups by time, append times and long-poll waits of the
//! partition log, through the real glommio I/O path.

mod common;

use bytes::BytesMut;
use common::{make_batch, run_local, small_config};
use shoal_protocol::batch::{self, BatchBuilder, BatchLimits, BatchRecords, NewRecord};
use shoal_storage::{FlushPolicy, LogConfig, PartitionLog};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

fn keyed(key: &str, value: Option<&str>) -> BytesMut {
    let mut b = BatchBuilder::new();
    b.push(NewRecord {
        timestamp_ms: 1,
        key: Some(key.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
        ..Default::default()
    });
    BytesMut::from(&b.finish().expect("encode")[..])
}

/// Every record of the log as (offset, key, value), via reads.
async fn records(log: &PartitionLog) -> Vec<(u64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let read = log.read(at, 1 << 16).await.expect("read");
        let Some(next) = read.next_offset() else { break };
        for stored in &read.batches {
            let limits = BatchLimits::default();
            let header = batch::validate(&stored.bytes, &limits).expect("valid batch");
            let recs = BatchRecords::open(&stored.bytes, &header, &limits).expect("records");
            for (i, r) in recs.records().expect("archive").iter().enumerate() {
                let key = String::from_utf8(r.key.as_ref().expect("key").to_vec()).expect("utf8");
                let value = r
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8(v.to_vec()).expect("utf8"));
                out.push((header.base_offset + i as u64, key, value));
            }
        }
        at = next;
    }
    out
}

/// Compaction keeps the newest record per key in sealed segments, keeps
/// offsets, keeps young tombstones, drops expired ones, and survives reopen.
#[test]
fn compaction_keeps_latest_per_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run_local(|| async move {
        let config = LogConfig {
            compacted: true,
            tombstone_retention_ms: 60_000,
            ..small_config(FlushPolicy::Always)
        };
        let log = PartitionLog::open(&dir, config.clone()).await.expect("open");
        let mut latest: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
        for i in 0..60u64 {
            let key = format!("k{}", i % 5);
            let value = (i % 13 != 4).then(|| format!("v{i}"));
            let ack = log.append(keyed(&key, value.as_deref())).await.expect("append");
            latest.insert(key, (ack.base_offset, value));
            if i % 10 == 9 {
                log.roll().await.expect("roll");
            }
        }
        let before = records(&log).await;
        let now = shoal_storage_now();
        let rewritten = log.compact(now).await.expect("compact");
        assert!(rewritten > 0, "nothing compacted");
        let after = records(&log).await;
        assert!(after.len() < before.len());
        let newest: Vec<u64> = latest.values().map(|(o, _)| *o).collect();
        for (offset, key, value) in &after {
            let (latest_offset, latest_value) = &latest[key];
            if offset != latest_offset {
                // Only the active segment may still hold superseded records.
                assert!(
                    *offset >= log.segment_bases().last().copied().unwrap(),
                    "stale {key}@{offset}"
                );
            } else {
                assert_eq!(value, latest_value);
            }
        }
        for offset in &newest {
            assert!(
                after.iter().any(|(o, _, _)| o == offset),
                "latest record {offset} lost"
            );
        }
        // Far in the future every tombstone has expired.
        log.compact(now + 3_600_000).await.expect("compact again");
        let later = records(&log).await;
        let active = log.segment_bases().last().copied().unwrap();
        assert!(
            later.iter().all(|(o, _, v)| v.is_some() || *o >= active),
            "expired tombstone kept"
        );
        log.close().await.expect("close");
        drop(log);
        let reopened = PartitionLog::open(&dir, config).await.expect("reopen");
        assert_eq!(records(&reopened).await, later);
    });
}

fn shoal_storage_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Yields until the wall clock (which stamps append times) is past `ms`.
async fn until_clock_passes(ms: i64) {
    while shoal_storage_now() <= ms {
        glommio::executor().yield_now().await;
    }
}

/// Lookups by timestamp return the first batch appended at or after it,
/// from the cache and from disk alike; append times follow the offsets.
#[test]
fn offset_for_timestamp_and_append_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run_local(|| async move {
        let config = small_config(FlushPolicy::Always);
        let log = PartitionLog::open(&dir, config.clone()).await.expect("open");
        let mut acks: Vec<shoal_storage::AppendAck> = Vec::new();
        for i in 0..30u64 {
            acks.push(log.append(make_batch(i, 2, 300)).await.expect("append"));
            if i % 6 == 5 {
                // Groups of batches with distinct append times.
                until_clock_passes(acks.last().unwrap().append_time_ms).await;
            }
        }
        for reopen in [false, true] {
            let log = if reopen {
                log.close().await.expect("close");
                PartitionLog::open(&dir, config.clone()).await.expect("reopen")
            } else {
                log.clone()
            };
            for ack in &acks {
                let first = acks
                    .iter()
                    .find(|a| a.append_time_ms >= ack.append_time_ms)
                    .unwrap();
                let found = log
                    .offset_for_timestamp(ack.append_time_ms)
                    .await
                    .expect("lookup");
                assert_eq!(
                    found,
                    Some(first.base_offset),
                    "ts {} (reopen {reopen})",
                    ack.append_time_ms
                );
                let t = log.append_time_of(ack.last_offset).await.expect("append time");
                assert_eq!(t, Some(ack.append_time_ms));
            }
            let after_all = acks.last().unwrap().append_time_ms + 1;
            assert_eq!(log.offset_for_timestamp(after_all).await.expect("lookup"), None);
        }
    });
}

/// A long-poll waiter blocks while nothing is appended, and wakes when an
/// append moves the high watermark past its offset.
#[test]
fn wait_for_offset_blocks_until_an_append() {
    /// Executor turns the waiter gets before the append: plenty to return
    /// if it were going to return without one.
    const TURNS: usize = 200;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run_local(|| async move {
        let log = PartitionLog::open(&dir, small_config(FlushPolicy::Always))
            .await
            .expect("open");
        let (polled, returned) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
        let waiter = {
            let (log, polled, returned) = (log.clone(), polled.clone(), returned.clone());
            glommio::spawn_local(async move {
                polled.set(true);
                let woken = log.wait_for_offset(0).await;
                returned.set(true);
                woken
            })
        };
        let mut turns = 0;
        while !polled.get() || turns < TURNS {
            glommio::executor().yield_now().await;
            turns += 1;
        }
        assert!(!returned.get(), "wait_for_offset returned with nothing appended");
        assert_eq!(log.high_watermark(), 0);
        log.append(make_batch(1, 1, 10)).await.expect("append");
        waiter.await.expect("woken");
        assert!(returned.get());
        assert_eq!(log.high_watermark(), 1);
    });
}

/// Segments roll by age, and time retention deletes whole old segments
/// (never the active one) and moves the log start.
#[test]
fn age_roll_and_time_retention() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run_local(|| async move {
        let config = LogConfig {
            segment_age_ms_max: Some(5),
            retention_ms: Some(60_000),
            ..small_config(FlushPolicy::Always)
        };
        let log = PartitionLog::open(&dir, config).await.expect("open");
        for i in 0..4u64 {
            let ack = log.append(make_batch(i, 1, 10)).await.expect("append");
            // Each segment ages past its 5 ms before the next append.
            until_clock_passes(ack.append_time_ms + 5).await;
        }
        let bases = log.segment_bases();
        assert_eq!(bases, vec![0, 1, 2, 3], "one segment per aged append");
        let now = shoal_storage_now();
        assert_eq!(
            log.apply_retention(now).await.expect("retention"),
            0,
            "nothing is a minute old"
        );
        let deleted = log.apply_retention(now + 120_000).await.expect("retention");
        assert_eq!(deleted, 3, "all but the active segment");
        assert_eq!(log.log_start_offset(), 3);
        assert!(matches!(
            log.read(0, 100).await,
            Err(shoal_storage::LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.read(3, 100).await.expect("read").batches.len(), 1);
    });
}

/// The stats count every fdatasync once in the latency buckets, and tell
/// reads served from the tail cache from reads that went to disk.
#[test]
fn stats_count_sync_latency_and_cache_reads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run_local(|| async move {
        let log = PartitionLog::open(&dir, small_config(FlushPolicy::Always))
            .await
            .expect("open");
        for tag in 0..40 {
            log.append(make_batch(tag, 2, 300)).await.expect("append");
        }
        let stats = log.stats();
        assert!(stats.fdatasyncs > 0);
        assert_eq!(stats.sync_latency_buckets.iter().sum::<u64>(), stats.fdatasyncs);
        assert_eq!((stats.cache_reads, stats.disk_reads), (0, 0));

        // The newest batch is in the 6 KiB tail cache; the first is not.
        let last = log.log_end_offset() - 2;
        let read = log.read(last, 1 << 16).await.expect("read tail");
        assert_eq!(read.batches.len(), 1);
        assert_eq!((log.stats().cache_reads, log.stats().disk_reads), (1, 0));
        let read = log.read(0, 1 << 16).await.expect("read head");
        assert!(!read.batches.is_empty());
        assert_eq!((log.stats().cache_reads, log.stats().disk_reads), (1, 1));
        // Nothing to read at the end: neither.
        log.read(log.log_end_offset(), 1 << 16).await.expect("read end");
        assert_eq!((log.stats().cache_reads, log.stats().disk_reads), (1, 1));
        log.close().await.expect("close");
    });
}

/// `reset_to` empties a log and restarts it at a later offset (a follower
/// installing a snapshot): reads below it are out of range, the next
/// batch is placed there, and a reopen finds the log starting there.
#[test]
fn reset_to_restarts_an_emptied_log_at_a_later_offset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run_local(|| async move {
        let log = PartitionLog::open(&dir, small_config(FlushPolicy::Always))
            .await
            .expect("open");
        for i in 0..40u64 {
            log.append(make_batch(i, 2, 500)).await.expect("append");
        }
        assert!(log.segment_bases().len() > 1, "several segments to remove");
        assert_eq!(log.log_end_offset(), 80);
        log.reset_to(500).await.expect("reset");
        assert_eq!(log.segment_bases(), vec![500]);
        let b = log.bounds();
        assert_eq!(
            (b.log_start_offset, b.high_watermark, b.log_end_offset),
            (500, 500, 500)
        );
        assert!(matches!(
            log.read(79, 100).await,
            Err(shoal_storage::LogError::OffsetOutOfRange { .. })
        ));
        let mut next = make_batch(1000, 3, 10);
        batch::patch(&mut next, 500, 1, 1_700_000_000_000);
        let ack = log
            .append_replicated(vec![next], shoal_storage::Durability::Fsynced)
            .await
            .expect("append at the new start");
        assert_eq!(ack[0].base_offset, 500);
        log.close().await.expect("close");

        let log = PartitionLog::open(&dir, small_config(FlushPolicy::Always))
            .await
            .expect("reopen");
        let b = log.bounds();
        assert_eq!((b.log_start_offset, b.log_end_offset), (500, 503));
        assert_eq!(log.read(500, 1 << 16).await.expect("read").batches.len(), 1);
    });
}
