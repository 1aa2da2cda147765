//! Recovery of the partition log from damaged files, through the real
//! glommio I/O path: torn tails beyond the durable checkpoint are cut to
//! whole batches; below it every cut or flipped byte (the header bytes the
//! batch CRC skips included) is reported as corruption with its offset and
//! never truncated away.

mod common;

use common::{acked_bytes, make_batch, run_local, seed, small_config};
use rand::{rngs::StdRng, Rng, SeedableRng};
use shoal_storage::checkpoint::SEGMENT_HEADER_BYTES;
use shoal_storage::{FlushPolicy, LogConfig, LogError, PartitionLog, VerifyOnOpen};
use std::path::Path;

const HEADER: usize = SEGMENT_HEADER_BYTES as usize;

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

/// Appends `count` batches of mixed sizes and returns them as they must be
/// stored: the bytes appended, patched with what the ack says.
async fn fill(log: &PartitionLog, first_tag: u64, count: usize) -> Vec<Written> {
    let mut out = Vec::new();
    for i in 0..count as u64 {
        let tag = first_tag + i;
        let batch = make_batch(tag, 1 + (tag % 3) as usize, 60 + (tag as usize * 37) % 200);
        let ack = log.append(batch.clone()).await.expect("append");
        out.push(Written {
            base: ack.base_offset,
            next: ack.last_offset + 1,
            bytes: acked_bytes(&batch, &ack),
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

/// File positions where each batch starts (after the segment header), and
/// where the last one ends.
fn starts_in_file(batches: &[Written]) -> Vec<usize> {
    let mut starts = vec![HEADER];
    for b in batches {
        starts.push(starts.last().unwrap() + b.bytes.len());
    }
    starts
}

/// A torn tail: the last three batches were never settled (the header on
/// disk is the one written when only the first five were). Cutting the file
/// at every byte of those three keeps exactly the whole batches before the
/// cut and the log stays appendable; a cut inside the settled five is
/// corruption, reported and left alone.
#[test]
fn cut_at_every_byte_of_the_unsettled_tail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    run_local(|| async move {
        let src = root.join("src");
        let log = PartitionLog::open(&src, one_segment_config())
            .await
            .expect("open");
        let mut batches = fill(&log, 0, 5).await;
        log.flush().await.expect("flush settles the first five");
        let settled_header = std::fs::read(segment_path(&src, 0)).unwrap()[..HEADER].to_vec();
        batches.extend(fill(&log, 5, 3).await);
        log.close().await.expect("close");
        drop(log);
        let mut data = std::fs::read(segment_path(&src, 0)).expect("read segment");
        data[..HEADER].copy_from_slice(&settled_header);
        let starts = starts_in_file(&batches);
        let (first_cut, end) = (starts[5], starts[8]);
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
        for cut in [HEADER, starts[1] + 3, starts[4] + 1, starts[5] - 1] {
            let dir = root.join(format!("settled-cut-{cut}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(segment_path(&dir, 0), &data[..cut]).unwrap();
            match PartitionLog::open(&dir, one_segment_config()).await {
                Err(LogError::Corrupt { .. }) => {}
                Err(other) => panic!("cut at {cut}: expected corruption, got {other}"),
                Ok(_) => panic!("cut at {cut} inside settled batches was not reported"),
            }
            assert_eq!(std::fs::read(segment_path(&dir, 0)).unwrap(), &data[..cut]);
        }
        println!(
            "checked {cuts} cuts over the unsettled 3 batches ({} bytes)",
            end - first_cut
        );
    });
}

/// A flipped bit anywhere in any batch of a closed (settled) segment,
/// the tail batch and the header bytes the batch CRC does not cover
/// included, makes open fail with corruption; the file is left untouched.
/// A flip the CRC or the framing catches names that batch's offset.
#[test]
fn flipped_byte_in_any_settled_batch_is_corruption() {
    let seed = seed("flipped_byte_in_any_settled_batch_is_corruption");
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
        let starts = starts_in_file(&batches);
        let uncovered = 0..24;
        let (mut trials, mut uncovered_trials) = (0, 0);
        while trials < 48 || uncovered_trials < 16 {
            let k = rng.gen_range(0..batches.len());
            // Half the trials hit the bytes the CRC skips: offset, length,
            // leader epoch, append time.
            let within = if trials % 2 == 0 {
                rng.gen_range(uncovered.clone())
            } else {
                rng.gen_range(0..batches[k].bytes.len())
            };
            let mut damaged = data.clone();
            damaged[starts[k] + within] ^= 1 << rng.gen_range(0..8);
            let dir = root.join(format!("flip-{trials}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(segment_path(&dir, 0), &damaged).unwrap();
            let what = format!("trial {trials}: batch {k}, byte {within}");
            match PartitionLog::open(&dir, one_segment_config()).await {
                Err(LogError::Corrupt { offset, position, .. })
                    if within >= 24 || (8..12).contains(&within) =>
                {
                    assert_eq!(offset, batches[k].base, "{what}");
                    assert_eq!(position, (starts[k] - HEADER) as u64, "{what}");
                }
                Err(LogError::Corrupt { offset, .. }) => {
                    assert!(offset <= batches.last().unwrap().next, "{what}: offset {offset}");
                }
                Err(other) => panic!("{what}: expected corruption, got {other}"),
                Ok(_) => panic!("{what}: the flip was not detected"),
            }
            let after = std::fs::read(segment_path(&dir, 0)).unwrap();
            assert_eq!(after, damaged, "recovery must not touch a corrupt segment");
            std::fs::remove_dir_all(&dir).unwrap();
            trials += 1;
            uncovered_trials += usize::from(uncovered.contains(&within));
        }
    });
}

/// A flip in a sealed segment: a full verify on open names the offset (and
/// catches a flipped leader epoch too, which only the segment's checkpoint
/// digest covers), and the default open defers detection to the read of
/// that batch.
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
        let clean = std::fs::read(&path).unwrap();
        let verify_all = LogConfig {
            verify_on_open: VerifyOnOpen::AllSegments,
            ..config.clone()
        };
        // The leader epoch (bytes 12..16) is covered by neither the batch
        // CRC nor any order check.
        let mut epoch_flipped = clean.clone();
        epoch_flipped[HEADER + prior + 13] ^= 0x01;
        std::fs::write(&path, &epoch_flipped).unwrap();
        assert!(
            matches!(
                PartitionLog::open(&root, verify_all.clone()).await,
                Err(LogError::Corrupt { .. })
            ),
            "a flipped leader epoch in a sealed segment must fail a full verify"
        );
        let mut data = clean;
        data[HEADER + prior + 40] ^= 0x20;
        std::fs::write(&path, &data).unwrap();
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

/// Many concurrent appends under `always` share writes and fdatasyncs:
/// every ack says `Fsynced`, at least one fdatasync ran, and fewer ran than
/// there were appends.
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
        assert!(
            stats.fdatasyncs >= 1,
            "Fsynced acks without any fdatasync: {stats:?}"
        );
        assert!(stats.fdatasyncs < 64, "no coalescing: {stats:?}");
        assert_eq!(log.high_watermark(), 128);
    });
}
