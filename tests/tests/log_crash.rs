//! Kill -9 test of the partition log: a child appends with flush `always`
//! and prints every acknowledged offset; the parent SIGKILLs it once it has
//! read a random number of acknowledgements in that cycle, reopens the log
//! and checks that every acknowledged record is present and intact. Every
//! cycle must make progress (the child recovered the log, said it was
//! ready, and acknowledged at least that many appends) and the child must
//! die by the signal: a child that panicked or exited fails the test.
//! Cycles: `SHOAL_CRASH_CYCLES` (default 50); seed: `SHOAL_TEST_SEED`.

use glommio::{LocalExecutorBuilder, Placement};
use rand::{rngs::StdRng, Rng, SeedableRng};
use shoal_storage::PartitionLog;
use shoal_tests::log_crash::{self, Ack};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CYCLES_DEFAULT: u64 = 50;
/// The parent kills the child after reading between 1 and this many of
/// its acknowledgements (in that cycle).
const KILL_AFTER_ACKS_MAX: usize = 200;
/// Longest the child may take to recover the log and reach the next ack.
const CHILD_STALL_MAX: Duration = Duration::from_secs(30);

/// What the child's stdout says, line by line.
enum Event {
    Ready,
    Ack(Ack),
}

/// Runs the child until it has acknowledged `kill_after` appends, kills
/// it, and returns every ack it printed (whole lines only: a line cut by
/// the kill was never fully reported).
fn run_child_once(dir: &Path, kill_after: usize) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_log_crash_child"))
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn log_crash_child");
    let stdout = child.stdout.take().expect("stdout");
    let (events, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            let event = match Ack::parse(&line) {
                Some(ack) => Event::Ack(ack),
                None if line.starts_with("ready ") => Event::Ready,
                None => continue,
            };
            if events.send(event).is_err() {
                break;
            }
        }
    });
    let (mut ready, mut acks) = (false, Vec::new());
    while !ready || acks.len() < kill_after {
        match received.recv_timeout(CHILD_STALL_MAX) {
            Ok(Event::Ready) => ready = true,
            Ok(Event::Ack(ack)) => acks.push(ack),
            Err(e) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                panic!(
                    "no progress ({e}): ready {ready}, {} of {kill_after} acks; child status {status:?}",
                    acks.len()
                );
            }
        }
    }
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let status = child.wait().expect("wait for child");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child must die by the signal, not exit or panic: {status}"
    );
    reader.join().expect("reader thread");
    acks.extend(received.try_iter().filter_map(|e| match e {
        Event::Ack(ack) => Some(ack),
        Event::Ready => None,
    }));
    acks
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

/// Every acknowledged append survives SIGKILL at random moments, and every
/// cycle makes progress.
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
        let kill_after = rng.gen_range(1..=KILL_AFTER_ACKS_MAX);
        let acks = run_child_once(&dir, kill_after);
        assert!(
            acks.len() >= kill_after,
            "cycle {cycle}: {} acks, the kill waited for {kill_after}",
            acks.len()
        );
        for ack in acks {
            let previous = acked.insert(ack.base, ack);
            assert!(previous.is_none(), "offset {} acknowledged twice", ack.base);
        }
        checked = verify(&dir, &acked);
        if cycle % 10 == 9 {
            println!("cycle {}: {} batches acknowledged so far", cycle + 1, acked.len());
        }
    }
    println!(
        "log crash test: {cycles} kill cycles, {} acknowledged batches, {checked} acknowledged records checked",
        acked.len()
    );
}
