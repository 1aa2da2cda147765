//! Recovery of the partition log from damaged files, through the real
//! glommio I/O path: torn tails are cut to whole batches, corruption is
//! reported with its offset and never truncated away.

mod common;

use common::{make_batch, run_local, seed, small_config};
use rand::{rngs::StdRng, Rng, SeedableRng};
use shoal_storage::{FlushPolicy, LogConfig, LogError, PartitionLog, VerifyOnOpen};
use std::path::Path;

/// One appended batch as it must read back.
#[derive(Clone)]
struct Written {
    base: u64,
    next: u64,
    bytes: Vec<u8>,
}

fn one_segment_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1 << 20,
        preallocate_bytes: 1 << 20,
        ..small_config(FlushPolicy::Always)
    }
}

/// Appends `count` batches of mixed sizes and returns them as stored.
async fn fill(log: &PartitionLog, first_tag: u64, count: usize) -> Vec<Written> {
    let mut out = Vec::new();
    for i in 0..count as u64 {
        let tag = first_tag + i;
        let ack = log
            .append(make_batch(
                tag,
                1 + (tag % 3) as usize,
                60 + (tag as usize * 37) % 200,
            ))
            .await
            .expect("append");
        let read = log.read(ack.base_offset, 1).await.expect("read back");
        let b = &read.batches[0];
        assert_eq!(b.base_offset, ack.base_offset);
        out.push(Written {
            base: b.base_offset,
            next: b.next_offset,
            bytes: b.bytes.to_vec(),
        });
    }
    out
}

/// Reads the whole log and checks it is exactly `expected`.
async fn assert_log_is(log: &PartitionLog, expected: &[Written]) {
    let end = expected.last().map_or(0, |w| w.next);
    assert_eq!(log.log_end_offset(), end, "log end");
    let mut at = log.log_start_offset();
    let mut got = Vec::new();
    while at < end {
        let read = log.read(at, 1 << 16).await.expect("read");
        assert!(
            !read.is_empty(),
            "read at {at} below the end {end} returned nothing"
        );
        at = read.next_offset().expect("non-empty");
        got.extend(read.batches);
    }
    assert_eq!(got.len(), expected.len(), "batch count");
    for (g, w) in got.iter().zip(expected) {
        assert_eq!((g.base_offset, g.next_offset), (w.base, w.next));
        assert_eq!(&g.bytes[..], &w.bytes[..], "bytes of batch at {}", w.base);
    }
}

fn segment_path(dir: &Path, base: u64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Cutting the last segment at every byte of its last three batches keeps
/// exactly the whole batches before the cut, and the log stays appendable.
#[test]
fn cut_at_every_byte_of_last_three_batches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    run_local(|| async move {
        let src = root.join("src");
        let log = PartitionLog::open(&src, one_segment_config())
            .await
            .expect("open");
        let batches = fill(&log, 0, 8).await;
        log.close().await.expect("close");
        drop(log);
        let data = std::fs::read(segment_path(&src, 0)).expect("read segment");
        let mut starts = vec![0usize];
        for b in &batches {
            starts.push(starts.last().unwrap() + b.bytes.len());
        }
        let (first_cut, end) = (starts[batches.len() - 3], starts[batches.len()]);
        let mut cuts = 0;
        for cut in first_cut..=end {
            let dir = root.join(format!("cut-{cut}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(segment_path(&dir, 0), &data[..cut]).unwrap();
            let whole = starts.iter().skip(1).take_while(|&&s| s <= cut).count();
            let log = PartitionLog::open(&dir, one_segment_config())
                .await
                .expect("open after cut");
            assert_log_is(&log, &batches[..whole]).await;
            if cut % 97 == 0 {
                let more = fill(&log, 100 + cut as u64, 2).await;
                log.close().await.unwrap();
                drop(log);
                let again = PartitionLog::open(&dir, one_segment_config())
                    .await
                    .expect("reopen");
                let mut expected = batches[..whole].to_vec();
                expected.extend(more);
                assert_log_is(&again, &expected).await;
                again.close().await.unwrap();
            } else {
                log.close().await.unwrap();
            }
            std::fs::remove_dir_all(&dir).unwrap();
            cuts += 1;
        }
        println!(
            "checked {cuts} cuts over the last 3 batches ({} bytes)",
            end - first_cut
        );
    });
}

/// A flipped byte inside a batch that is not the tail makes open fail with
/// corruption naming that batch's offset; the file is left untouched.
#[test]
fn flipped_byte_in_non_tail_batch_is_corruption() {
    let seed = seed("flipped_byte_in_non_tail_batch_is_corruption");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    run_local(|| async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let src = root.join("src");
        let log = PartitionLog::open(&src, one_segment_config())
            .await
            .expect("open");
        let batches = fill(&log, 0, 6).await;
        log.close().await.unwrap();
        drop(log);
        let data = std::fs::read(segment_path(&src, 0)).unwrap();
        let mut pos = 0;
        let starts: Vec<usize> = batches
            .iter()
            .map(|b| {
                pos += b.bytes.len();
                pos - b.bytes.len()
            })
            .collect();
        for trial in 0..24 {
            let k = rng.gen_range(0..batches.len() - 1);
            // Bytes 12..24 (leader epoch, append time) are not covered by the
            // batch CRC; see shoal_protocol::batch.
            let within = loop {
                let i = rng.gen_range(0..batches[k].bytes.len());
                if !(12..24).contains(&i) {
                    break i;
                }
            };
            let mut damaged = data.clone();
            damaged[starts[k] + within] ^= 1 << rng.gen_range(0..8);
            let dir = root.join(format!("flip-{trial}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(segment_path(&dir, 0), &damaged).unwrap();
            match PartitionLog::open(&dir, one_segment_config()).await {
                Err(LogError::Corrupt { offset, position, .. }) => {
                    assert_eq!(offset, batches[k].base, "trial {trial}: batch {k}, byte {within}");
                    assert_eq!(position, starts[k] as u64);
                }
                Err(other) => panic!("trial {trial}: expected corruption, got {other}"),
                Ok(_) => panic!("trial {trial}: a flip in batch {k} at byte {within} was not detected"),
            }
            let after = std::fs::read(segment_path(&dir, 0)).unwrap();
            assert_eq!(after, damaged, "recovery must not touch a corrupt segment");
        }
    });
}

/// A flip in a sealed segment: a full verify on open names the offset, and
/// the default open defers detection to the read of that batch.
#[test]
fn flipped_byte_in_sealed_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    run_local(|| async move {
        let config = small_config(FlushPolicy::Always);
        let log = PartitionLog::open(&root, config.clone()).await.expect("open");
        let batches = fill(&log, 0, 120).await;
        let bases = log.segment_bases();
        assert!(bases.len() >= 3, "expected several segments, got {bases:?}");
        log.close().await.unwrap();
        drop(log);
        let victim = batches
            .iter()
            .find(|b| b.base > bases[1])
            .expect("batch in segment 1")
            .clone();
        let prior: usize = batches
            .iter()
            .filter(|b| b.base >= bases[1] && b.base < victim.base)
            .map(|b| b.bytes.len())
            .sum();
        let path = segment_path(&root, bases[1]);
        let mut data = std::fs::read(&path).unwrap();
        data[prior + 40] ^= 0x20;
        std::fs::write(&path, &data).unwrap();
        let verify_all = LogConfig {
            verify_on_open: VerifyOnOpen::AllSegments,
            ..config.clone()
        };
        match PartitionLog::open(&root, verify_all).await {
            Err(LogError::Corrupt { offset, .. }) => assert_eq!(offset, victim.base),
            other => panic!("expected corruption, got {:?}", other.map(|_| ())),
        }
        let log = PartitionLog::open(&root, config)
            .await
            .expect("default open trusts sealed index");
        match log.read(victim.base, 1).await {
            Err(LogError::Corrupt { offset, .. }) => assert_eq!(offset, victim.base),
            other => panic!(
                "expected corruption on read, got {:?}",
                other.map(|r| r.batches.len())
            ),
        }
    });
}

/// Many concurrent appends under `always` share writes and fdatasyncs, and
/// every ack says `Fsynced`.
#[test]
fn group_commit_coalesces_fdatasyncs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    run_local(|| async move {
        let log = PartitionLog::open(&root, one_segment_config())
            .await
            .expect("open");
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let log = log.clone();
                glommio::spawn_local(async move { log.append(make_batch(i, 2, 100)).await })
            })
            .collect();
        let mut bases = Vec::new();
        for t in tasks {
            let ack = t.await.expect("append");
            assert_eq!(ack.durability, shoal_storage::Durability::Fsynced);
            bases.push(ack.base_offset);
        }
        bases.sort_unstable();
        assert_eq!(bases, (0..64).map(|i| i * 2).collect::<Vec<_>>());
        let stats = log.stats();
        println!("{stats:?}");
        assert_eq!(stats.appends, 64);
        assert!(stats.fdatasyncs < 64, "no coalescing: {stats:?}");
        assert_eq!(log.high_watermark(), 128);
    });
}
