//! Fault injection: a write the kernel refuses fences the log, and nothing
//! acknowledged before it is lost or altered.
//!
//! The fault is real, not simulated: the test lowers this process's
//! `RLIMIT_FSIZE` below the segment's growth, so the kernel refuses the
//! log's O_DIRECT writes past that size (EFBIG, or a short write for the one
//! that straddles it), exactly as it would refuse them on a full disk
//! (ENOSPC) — the log sees a failed or short write either way. Segments are
//! not preallocated here, so the writes themselves grow the file.
//!
//! It must be its own test binary: the limit is per process.

mod common;

use common::{append_until_refused, check_acked, make_batch, run_local, AppendOutcome};
use shoal_storage::{Durability, FlushPolicy, LogConfig, LogError, PartitionLog};
use std::rc::Rc;

/// The largest file this process may write while the fault is on.
const FILE_SIZE_LIMIT: u64 = 1 << 20;
const APPENDERS: u64 = 8;
const RECORDS_PER_BATCH: usize = 4;
const VALUE_BYTES: usize = 3000;
/// Batches in all: about twice what fits under the limit, so a log that
/// never fences ends the loop with appenders unrefused (and fails) instead
/// of appending forever.
const BATCHES_MAX: u64 = 2 * FILE_SIZE_LIMIT / (RECORDS_PER_BATCH * VALUE_BYTES) as u64;

fn set_file_size_limit(soft: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a stack value this function owns.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0, "getrlimit");
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
    }
}

#[test]
fn refused_write_fences_the_log_and_keeps_every_acked_batch() {
    // The kernel signals SIGXFSZ on a write past the limit; ignored, the
    // write fails with EFBIG instead of killing the process.
    // SAFETY: installs SIG_IGN for one signal before any thread of this
    // test binary writes files.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    run_local(|| async move {
        let config = LogConfig {
            flush: FlushPolicy::Always,
            segment_bytes_max: 8 * FILE_SIZE_LIMIT,
            preallocate_bytes: 0,
            write_chunk_bytes: 64 << 10,
            pending_bytes_max: 256 << 10,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&dir, config.clone()).await.expect("open");
        set_file_size_limit(FILE_SIZE_LIMIT);

        // Concurrent appenders, so the failure lands in the middle of group
        // commits, until each one is refused.
        let AppendOutcome { acked, errors } = append_until_refused(
            &log,
            APPENDERS,
            BATCHES_MAX,
            RECORDS_PER_BATCH,
            VALUE_BYTES,
            Rc::new(|_| ()),
        )
        .await;
        println!(
            "{} batches acknowledged before the fault; {} appenders refused; fenced: {:?}",
            acked.len(),
            errors.len(),
            log.fenced()
        );
        assert!(!acked.is_empty(), "nothing was acknowledged before the limit");
        assert_eq!(errors.len(), APPENDERS as usize);
        for e in &errors {
            assert!(
                matches!(
                    e,
                    LogError::Fenced {
                        operation: "write",
                        ..
                    }
                ),
                "{e}"
            );
        }
        let cause = log.fenced().expect("the log must be fenced");
        assert!(cause.starts_with("write: "), "{cause}");

        // Fenced means read-only: appends are refused, reads still serve
        // everything acknowledged.
        let refused = log.append(make_batch(u64::MAX / 64, 1, 10)).await;
        assert!(matches!(refused, Err(LogError::Fenced { .. })), "{refused:?}");
        let acked_end = acked.keys().last().copied().expect("acked") + RECORDS_PER_BATCH as u64;
        assert!(log.high_watermark() >= acked_end);
        check_acked(&log, &acked, RECORDS_PER_BATCH, VALUE_BYTES).await;
        drop(log);

        // With room again, recovery keeps every acknowledged batch intact
        // and the log takes appends again.
        set_file_size_limit(libc::RLIM_INFINITY);
        let log = PartitionLog::open(&dir, config).await.expect("reopen");
        assert!(log.fenced().is_none());
        assert!(log.log_end_offset() >= acked_end);
        check_acked(&log, &acked, RECORDS_PER_BATCH, VALUE_BYTES).await;
        let ack = log
            .append(make_batch(1, RECORDS_PER_BATCH, VALUE_BYTES))
            .await
            .expect("append after recovery");
        assert_eq!(ack.durability, Durability::Fsynced);
        assert_eq!(ack.base_offset, log.log_end_offset() - RECORDS_PER_BATCH as u64);
        log.close().await.expect("close");
    });
}
