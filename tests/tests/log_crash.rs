//! Kill -9 test of the partition log: a child appends with flush `always`
//! and prints every acknowledged offset; the parent SIGKILLs it at random
//! moments, reopens the log and checks that every acknowledged record is
//! present and intact. Cycles: `SHOAL_CRASH_CYCLES` (default 50); seed:
//! `SHOAL_TEST_SEED`.

use glommio::{LocalExecutorBuilder, Placement};
use rand::{rngs::StdRng, Rng, SeedableRng};
use shoal_storage::PartitionLog;
use shoal_tests::log_crash::{self, Ack};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CYCLES_DEFAULT: u64 = 50;
/// Kill moments are drawn from this range after spawning the child.
const KILL_AFTER_MS_MIN: u64 = 20;
const KILL_AFTER_MS_MAX: u64 = 400;

/// Runs the child for a random time, kills it, and returns the acks it printed.
fn run_child_once(dir: &Path, kill_after: Duration) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_log_crash_child"))
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn log_crash_child");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        // Only complete lines count: a line cut by the kill was never fully
        // reported, so it is not an acknowledgement the parent saw.
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            if let Some(ack) = std::str::from_utf8(&line).ok().and_then(Ack::parse) {
                acks.push(ack);
            }
        }
        acks
    });
    std::thread::sleep(kill_after);
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let status = child.wait().expect("wait for child");
    assert!(
        !status.success(),
        "the child must die by the signal, not exit: {status}"
    );
    reader.join().expect("reader thread")
}

/// Reopens the log and checks every acknowledged batch; returns records checked.
fn verify(dir: &Path, acked: &BTreeMap<u64, Ack>) -> usize {
    let dir = dir.to_path_buf();
    let acked = acked.clone();
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(log_crash::IO_MEMORY_BYTES)
        .make()
        .expect("executor");
    ex.run(async move {
        let log = PartitionLog::open(&dir, log_crash::config())
            .await
            .expect("reopen after kill");
        let end = acked.values().map(|a| a.last + 1).max().unwrap_or(0);
        assert!(
            log.log_end_offset() >= end,
            "log end {} below acked end {end}",
            log.log_end_offset()
        );
        let mut checked = 0;
        let mut at = acked.keys().next().copied().unwrap_or(0);
        let mut pending = acked.values().peekable();
        while pending.peek().is_some() {
            let read = log.read(at, 1 << 20).await.expect("read");
            assert!(!read.is_empty(), "nothing readable at {at}");
            for stored in &read.batches {
                if let Some(ack) = pending.peek().filter(|a| a.base == stored.base_offset) {
                    checked += log_crash::check(ack, &stored.bytes).unwrap_or_else(|e| panic!("{e}"));
                    pending.next();
                } else if let Some(ack) = pending.peek() {
                    assert!(ack.base > stored.base_offset, "acked batch {ack:?} missing");
                }
            }
            at = read.next_offset().expect("non-empty");
        }
        log.close().await.expect("close");
        // glommio closes a dropped file through its ring: give the executor
        // one more turn, or every cycle would leak the log's fds.
        drop(log);
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        checked
    })
}

/// Every acknowledged append survives SIGKILL at random moments.
#[test]
fn acknowledged_appends_survive_sigkill() {
    let cycles = std::env::var("SHOAL_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CYCLES_DEFAULT);
    let seed = std::env::var("SHOAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("log crash test: {cycles} cycles, seed {seed} (SHOAL_CRASH_CYCLES, SHOAL_TEST_SEED)");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let mut acked: BTreeMap<u64, Ack> = BTreeMap::new();
    let mut checked = 0;
    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(rng.gen_range(KILL_AFTER_MS_MIN..=KILL_AFTER_MS_MAX));
        let acks = run_child_once(&dir, kill_after);
        for ack in acks {
            let previous = acked.insert(ack.base, ack);
            assert!(previous.is_none(), "offset {} acknowledged twice", ack.base);
        }
        checked = verify(&dir, &acked);
        if cycle % 10 == 9 {
            println!("cycle {}: {} batches acknowledged so far", cycle + 1, acked.len());
        }
    }
    assert!(!acked.is_empty(), "the child never acknowledged anything");
    println!(
        "log crash test: {cycles} kill cycles, {} acknowledged batches, {checked} acknowledged records checked",
        acked.len()
    );
}
