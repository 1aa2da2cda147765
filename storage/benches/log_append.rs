//! Storage benchmark: the partition log's append throughput against the raw
//! direct-I/O write bandwidth of the same device, in one run.
//!
//! 1. Raw: sequential aligned 1 MiB writes to a preallocated DMA file
//!    (queue depth 1 and 4), and fdatasync latency after 64 KiB writes.
//! 2. Log: 1 KiB records in batches of 64 records (~66 KiB) appended by
//!    concurrent tasks, with flush `always` and with flush `never`; the
//!    `never` figure includes the final flush, so it counts bytes on disk.
//!
//! Usage: `cargo bench -p shoal-storage --bench log_append [-- DIR]`
//! Settings (env): `SHOAL_BENCH_DIR` (default `./shoal-bench-data`, removed
//! afterwards), `SHOAL_BENCH_MIB` (bytes per phase, default 512),
//! `SHOAL_BENCH_APPENDERS` (concurrent appenders, default 128),
//! `SHOAL_BENCH_ROUNDS` (interleaved raw/log rounds, default 3),
//! `SHOAL_BENCH_WRITE_DEPTH` (the log's writes in flight, default the log's).

use bytes::BytesMut;
use glommio::io::{DmaFile, OpenOptions};
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use hdrhistogram::Histogram;
use shoal_protocol::batch::{BatchBuilder, NewRecord};
use shoal_storage::config::WRITE_DEPTH_MAX_DEFAULT;
use shoal_storage::{FlushPolicy, LogConfig, PartitionLog};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 64;
const WRITE_CHUNK_BYTES: usize = MIB;
const SYNC_SAMPLES: usize = 400;
const SYNC_WRITE_BYTES: usize = 64 << 10;
const IO_MEMORY_BYTES: usize = 64 * MIB;
const PHASE_MIB_DEFAULT: usize = 512;
const APPENDERS_DEFAULT: usize = 128;
const ROUNDS_DEFAULT: usize = 3;

struct Settings {
    dir: PathBuf,
    phase_bytes: usize,
    appenders: usize,
    rounds: usize,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn settings() -> Settings {
    let arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let dir = arg
        .or_else(|| std::env::var("SHOAL_BENCH_DIR").ok())
        .map_or_else(|| PathBuf::from("shoal-bench-data"), PathBuf::from);
    Settings {
        dir,
        phase_bytes: env_usize("SHOAL_BENCH_MIB", PHASE_MIB_DEFAULT) * MIB,
        appenders: env_usize("SHOAL_BENCH_APPENDERS", APPENDERS_DEFAULT).max(1),
        rounds: env_usize("SHOAL_BENCH_ROUNDS", ROUNDS_DEFAULT).max(1),
    }
}

fn machine(dir: &Path) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mount = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && canonical.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} {} on {}", f[0], f[2], f[1])))
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, m)| m);
    format!(
        "cpu: {cpu} x {cores}; kernel {}; data dir {} ({mount})",
        kernel.trim(),
        canonical.display()
    )
}

/// CPU time (user + system) this thread has used so far.
fn thread_cpu() -> Duration {
    // SAFETY: rusage is plain integers, for which all-zero is valid, and
    // getrusage only writes into the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64()
}

/// Sequential aligned writes of `WRITE_CHUNK_BYTES` with `depth` in flight,
/// then one fdatasync; returns MiB/s including that fdatasync.
async fn raw_write(dir: &Path, bytes: usize, depth: usize) -> f64 {
    let path = dir.join(format!("raw-qd{depth}.dat"));
    let file = Rc::new(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&path)
            .await
            .expect("create raw file"),
    );
    file.pre_allocate(bytes as u64, false).await.expect("preallocate");
    let chunks = bytes / WRITE_CHUNK_BYTES;
    let start = Instant::now();
    let lanes: Vec<_> = (0..depth)
        .map(|lane| {
            let file = file.clone();
            glommio::spawn_local(async move {
                for i in (lane..chunks).step_by(depth) {
                    let mut buf = file.alloc_dma_buffer(WRITE_CHUNK_BYTES);
                    buf.as_bytes_mut().fill(i as u8);
                    let n = file
                        .write_at(buf, (i * WRITE_CHUNK_BYTES) as u64)
                        .await
                        .expect("raw write");
                    assert_eq!(n, WRITE_CHUNK_BYTES);
                }
            })
        })
        .collect();
    for lane in lanes {
        lane.await;
    }
    file.fdatasync().await.expect("raw fdatasync");
    let elapsed = start.elapsed();
    std::fs::remove_file(&path).expect("remove raw file");
    mib_per_s(chunks * WRITE_CHUNK_BYTES, elapsed)
}

/// fdatasync latency after each sequential 64 KiB write.
async fn raw_sync_latency(dir: &Path) -> Histogram<u64> {
    let path = dir.join("raw-sync.dat");
    let file = DmaFile::create(&path).await.expect("create sync file");
    file.pre_allocate((SYNC_SAMPLES * SYNC_WRITE_BYTES) as u64, false)
        .await
        .expect("preallocate");
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for i in 0..SYNC_SAMPLES {
        let mut buf = file.alloc_dma_buffer(SYNC_WRITE_BYTES);
        buf.as_bytes_mut().fill(i as u8);
        file.write_at(buf, (i * SYNC_WRITE_BYTES) as u64)
            .await
            .expect("write");
        let t = Instant::now();
        file.fdatasync().await.expect("fdatasync");
        hist.record(t.elapsed().as_micros().max(1) as u64)
            .expect("record");
    }
    file.close().await.expect("close");
    std::fs::remove_file(&path).expect("remove sync file");
    hist
}

fn template_batch() -> BytesMut {
    let mut b = BatchBuilder::new();
    for i in 0..RECORDS_PER_BATCH {
        b.push(NewRecord {
            timestamp_ms: 1_700_000_000_000,
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(vec![(i * 7) as u8; RECORD_BYTES]),
            ..Default::default()
        });
    }
    BytesMut::from(&b.finish().expect("encode")[..])
}

struct LogResult {
    acked_mib_s: f64,
    on_disk_mib_s: f64,
    latency_us: Histogram<u64>,
    fdatasyncs: u64,
    writes: u64,
    write_wait_ms: u64,
    sync_wait_ms: u64,
    /// CPU time of the executor thread over the phase, as a share of its
    /// wall time: near 100% means the log is CPU-bound, not I/O-bound.
    cpu_share: f64,
}

/// Appends `bytes` worth of batches from concurrent tasks; the batches are
/// built before the clock starts, so only the log is measured.
async fn log_append(dir: &Path, flush: FlushPolicy, bytes: usize, appenders: usize) -> LogResult {
    let queue = glommio::executor().create_task_queue(
        Shares::default(),
        Latency::Matters(Duration::from_millis(1)),
        "log-flush",
    );
    let config = LogConfig {
        flush,
        segment_bytes_max: (bytes as u64 + 64 * MIB as u64).min(1 << 30),
        preallocate_bytes: (bytes as u64 + 64 * MIB as u64).min(1 << 30),
        write_chunk_bytes: WRITE_CHUNK_BYTES,
        write_depth_max: env_usize("SHOAL_BENCH_WRITE_DEPTH", WRITE_DEPTH_MAX_DEFAULT).max(1),
        task_queue: Some(queue),
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir, config).await.expect("open log");
    let template = template_batch();
    let count = bytes / template.len();
    let per_task: Vec<Vec<BytesMut>> = (0..appenders)
        .map(|t| (t..count).step_by(appenders).map(|_| template.clone()).collect())
        .collect();
    let cpu_start = thread_cpu();
    let start = Instant::now();
    let tasks: Vec<_> = per_task
        .into_iter()
        .map(|batches| {
            let log = log.clone();
            glommio::spawn_local(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                for batch in batches {
                    let t = Instant::now();
                    log.append(batch).await.expect("append");
                    hist.record(t.elapsed().as_micros().max(1) as u64)
                        .expect("record");
                }
                hist
            })
        })
        .collect();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for t in tasks {
        latency_us.add(t.await).expect("merge");
    }
    let acked = start.elapsed();
    log.flush().await.expect("flush");
    let on_disk = start.elapsed();
    let cpu_share = (thread_cpu() - cpu_start).as_secs_f64() / on_disk.as_secs_f64();
    let total = count * template.len();
    let stats = log.stats();
    log.close().await.expect("close");
    LogResult {
        acked_mib_s: mib_per_s(total, acked),
        on_disk_mib_s: mib_per_s(total, on_disk),
        latency_us,
        fdatasyncs: stats.fdatasyncs,
        writes: stats.writes,
        write_wait_ms: stats.write_wait_us / 1000,
        sync_wait_ms: stats.sync_wait_us / 1000,
        cpu_share,
    }
}

fn print_log(name: &str, r: &LogResult, raw: f64) {
    println!(
        "log append, flush {name:<6}: {:>8.1} MiB/s acked, {:>8.1} MiB/s on disk = {:>5.1}% of raw | \
         ack latency p50 {} us, p99 {} us, max {} us | {} writes ({} ms), {} fdatasyncs ({} ms) | cpu {:.0}%",
        r.acked_mib_s,
        r.on_disk_mib_s,
        100.0 * r.on_disk_mib_s / raw,
        r.latency_us.value_at_quantile(0.5),
        r.latency_us.value_at_quantile(0.99),
        r.latency_us.max(),
        r.writes,
        r.write_wait_ms,
        r.fdatasyncs,
        r.sync_wait_ms,
        100.0 * r.cpu_share
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The device here is shared and its speed drifts between seconds, so raw
/// and log phases are interleaved over several rounds and compared by
/// their medians.
async fn run(s: Settings) {
    println!("# shoal-storage log_append benchmark");
    println!("{}", machine(&s.dir));
    println!(
        "config: {} MiB per phase, {} rounds (raw and log phases interleaved, medians compared); raw writes of {} KiB \
         into preallocated space; log batches of {} x {} B records ({} B); {} concurrent appenders; write chunk {} KiB; \
         glommio io_memory {} MiB; release build",
        s.phase_bytes / MIB,
        s.rounds,
        WRITE_CHUNK_BYTES >> 10,
        RECORDS_PER_BATCH,
        RECORD_BYTES,
        template_batch().len(),
        s.appenders,
        WRITE_CHUNK_BYTES >> 10,
        IO_MEMORY_BYTES / MIB
    );
    // Warm-up: a short raw pass so the first figure is not the cold one.
    raw_write(&s.dir, 64 * MIB, 4).await;
    let (mut raw1, mut raw4, mut never, mut always) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..s.rounds {
        raw1.push(raw_write(&s.dir, s.phase_bytes / 4, 1).await);
        raw4.push(raw_write(&s.dir, s.phase_bytes, 4).await);
        let n = log_append(
            &s.dir.join(format!("log-never-{round}")),
            FlushPolicy::Never,
            s.phase_bytes,
            s.appenders,
        )
        .await;
        print_log(&format!("never  (round {round})"), &n, raw4[round]);
        never.push(n.on_disk_mib_s);
        let a = log_append(
            &s.dir.join(format!("log-always-{round}")),
            FlushPolicy::Always,
            s.phase_bytes,
            s.appenders,
        )
        .await;
        print_log(&format!("always (round {round})"), &a, raw4[round]);
        always.push(a.on_disk_mib_s);
        println!(
            "raw round {round}: {:.1} MiB/s at queue depth 1, {:.1} MiB/s at depth 4",
            raw1[round], raw4[round]
        );
    }
    let sync = raw_sync_latency(&s.dir).await;
    println!(
        "raw fdatasync after a {} KiB write: p50 {} us, p99 {} us, max {} us ({} samples)",
        SYNC_WRITE_BYTES >> 10,
        sync.value_at_quantile(0.5),
        sync.value_at_quantile(0.99),
        sync.max(),
        sync.len()
    );
    let raw = median(raw1.clone()).max(median(raw4.clone()));
    let (never, always) = (median(never), median(always));
    println!(
        "medians: raw DMA write {raw:.1} MiB/s (depth 1: {:.1}, depth 4: {:.1}); log never {never:.1} MiB/s; \
         log always {always:.1} MiB/s",
        median(raw1),
        median(raw4)
    );
    println!(
        "ratios log/raw: never {:.2} (target >= 0.80), always {:.2} (target >= 0.60)",
        never / raw,
        always / raw
    );
}

fn main() {
    let s = settings();
    let created = !s.dir.exists();
    std::fs::create_dir_all(&s.dir).expect("create bench dir");
    // Probe file first: glommio's device probe must not see a new empty file.
    std::fs::write(s.dir.join("probe.shoal"), vec![b'S'; 4096]).expect("probe file");
    let dir = s.dir.clone();
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(IO_MEMORY_BYTES)
        .make()
        .expect("executor");
    ex.run(async move {
        let probe = DmaFile::open(s.dir.join("probe.shoal"))
            .await
            .expect("open probe");
        probe.close().await.expect("close probe");
        run(s).await;
    });
    if created {
        std::fs::remove_dir_all(&dir).expect("remove bench dir");
    } else {
        for entry in std::fs::read_dir(&dir).expect("list bench dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("log-") {
                std::fs::remove_dir_all(entry.path()).expect("remove log dir");
            } else if name == "probe.shoal" {
                std::fs::remove_file(entry.path()).expect("remove probe");
            }
        }
    }
}
