//! Storage benchmark: the partition log's append throughput against the raw
//! direct-I/O write bandwidth of the same device, in one run.
//!
//! 1. Raw: sequential aligned 1 MiB writes to a preallocated DMA file with
//!    as many in flight as the log's writer may have (and a profile at
//!    queue depths 1 and 4), fdatasync at the end; fdatasync latency after
//!    64 KiB writes.
//! 2. Log: 1 KiB records in batches of 64 records (~66 KiB) appended by
//!    concurrent tasks in a `Latency::Matters` queue (as the broker's
//!    request handlers run), with flush `always` and with flush `never`;
//!    the `never` figure includes the final flush, so it counts bytes on
//!    disk.
//!
//! Every log phase runs between two raw phases and is compared with their
//! mean: the device here is shared and drifts between seconds. Each phase
//! also prints the share of its time the device was busy (from
//! `/sys/dev/block/M:m/stat`) and the executor's CPU share, which tell an
//! idle device from a slow one.
//!
//! Usage: `cargo bench -p shoal-storage --bench log_append [-- DIR]`
//! Settings (env): `SHOAL_BENCH_DIR` (default `./shoal-bench-data`, removed
//! afterwards), `SHOAL_BENCH_MIB` (bytes per phase, default 512),
//! `SHOAL_BENCH_APPENDERS` (concurrent appenders, default 128),
//! `SHOAL_BENCH_ROUNDS` (rounds of never + always, default 5),
//! `SHOAL_BENCH_WRITE_DEPTH` (the log's and the raw phases' writes in flight,
//! default the log's).

use bytes::BytesMut;
use glommio::io::{DmaFile, OpenOptions};
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares, TaskQueueHandle};
use hdrhistogram::Histogram;
use shoal_protocol::batch::{BatchBuilder, NewRecord};
use shoal_storage::config::{IO_QUEUE_LATENCY, WRITE_DEPTH_MAX_DEFAULT};
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
const ROUNDS_DEFAULT: usize = 5;

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

/// The log's writes in flight, which the raw phases use too.
fn write_depth() -> usize {
    env_usize("SHOAL_BENCH_WRITE_DEPTH", WRITE_DEPTH_MAX_DEFAULT).max(1)
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

/// Milliseconds the data directory's block device has been busy (field 10
/// of `/sys/dev/block/M:m/stat`), if the kernel exposes it.
fn device_busy_ms(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let stat = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/stat")).ok()?;
    stat.split_whitespace().nth(9)?.parse().ok()
}

fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64()
}

/// Sequential aligned writes of `WRITE_CHUNK_BYTES` with `depth` in flight,
/// then one fdatasync; returns MiB/s including that fdatasync, and the
/// share of that time the device was busy.
async fn raw_write(dir: &Path, bytes: usize, depth: usize) -> (f64, Option<f64>) {
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
    let busy_start = device_busy_ms(dir);
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
    let busy = busy_start
        .zip(device_busy_ms(dir))
        .map(|(a, b)| (b - a) as f64 / 1000.0 / elapsed.as_secs_f64());
    std::fs::remove_file(&path).expect("remove raw file");
    (mib_per_s(chunks * WRITE_CHUNK_BYTES, elapsed), busy)
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
    /// Share of the phase the device was busy (`None` if not exposed).
    device_busy: Option<f64>,
}

/// The task queues of a log phase, laid out as in a broker shard: the log's
/// writer and syncer in one, the appenders (the request handlers there) in
/// another, both `Latency::Matters(IO_QUEUE_LATENCY)`, so the executor reaps
/// disk completions (and the writer submits the next writes) at that
/// interval while appenders copy, instead of after the 100 ms default slice.
struct Queues {
    flush: TaskQueueHandle,
    appenders: TaskQueueHandle,
}

impl Queues {
    fn new() -> Self {
        let queue = |name| {
            glommio::executor().create_task_queue(Shares::default(), Latency::Matters(IO_QUEUE_LATENCY), name)
        };
        Queues {
            flush: queue("log-flush"),
            appenders: queue("appenders"),
        }
    }
}

/// Appends `bytes` worth of batches from concurrent tasks; the batches are
/// built before the clock starts, so only the log is measured.
async fn log_append(
    dir: &Path,
    flush: FlushPolicy,
    bytes: usize,
    appenders: usize,
    queues: &Queues,
) -> LogResult {
    let config = LogConfig {
        flush,
        segment_bytes_max: (bytes as u64 + 64 * MIB as u64).min(1 << 30),
        preallocate_bytes: (bytes as u64 + 64 * MIB as u64).min(1 << 30),
        write_chunk_bytes: WRITE_CHUNK_BYTES,
        write_depth_max: write_depth(),
        task_queue: Some(queues.flush),
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir, config).await.expect("open log");
    let template = template_batch();
    let count = bytes / template.len();
    let per_task: Vec<Vec<BytesMut>> = (0..appenders)
        .map(|t| (t..count).step_by(appenders).map(|_| template.clone()).collect())
        .collect();
    let cpu_start = thread_cpu();
    let busy_start = device_busy_ms(dir);
    let start = Instant::now();
    let tasks: Vec<_> = per_task
        .into_iter()
        .map(|batches| {
            let log = log.clone();
            glommio::spawn_local_into(
                async move {
                    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                    for batch in batches {
                        let t = Instant::now();
                        log.append(batch).await.expect("append");
                        hist.record(t.elapsed().as_micros().max(1) as u64)
                            .expect("record");
                    }
                    hist
                },
                queues.appenders,
            )
            .expect("spawn appender")
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
    let device_busy = busy_start
        .zip(device_busy_ms(dir))
        .map(|(a, b)| (b - a) as f64 / 1000.0 / on_disk.as_secs_f64());
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
        device_busy,
    }
}

fn print_log(name: &str, r: &LogResult, raw: f64) {
    println!(
        "log append, flush {name:<6}: {:>8.1} MiB/s acked, {:>8.1} MiB/s on disk = {:>5.1}% of the raw phases around it | \
         ack latency p50 {} us, p99 {} us, max {} us | {} writes ({} ms), {} fdatasyncs ({} ms) | cpu {:.0}%, device busy {}",
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
        100.0 * r.cpu_share,
        busy(r.device_busy)
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn busy(b: Option<f64>) -> String {
    b.map_or_else(|| "n/a".to_string(), |b| format!("{:.0}%", 100.0 * b))
}

/// The device here is shared and its speed drifts from second to second,
/// so every log phase is bracketed by two raw phases (raw, never, raw,
/// always, raw, ...) at the log's own write depth, and its ratio is taken
/// against the mean of its two neighbours. The verdict is the median of
/// those per-phase ratios.
async fn run(s: Settings) {
    let depth = write_depth();
    println!("# shoal-storage log_append benchmark");
    println!("{}", machine(&s.dir));
    println!(
        "config: {} MiB per phase, {} rounds; every log phase between two raw phases (sequential {} KiB writes into \
         preallocated space, {depth} in flight like the log's writer, fdatasync at the end); log batches of {} x {} B \
         records ({} B); {} concurrent appenders; write chunk {} KiB; glommio io_memory {} MiB; release build",
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
    // Warm-up, and the device's profile at queue depths 1 and 4.
    raw_write(&s.dir, 64 * MIB, 4).await;
    for qd in [1, 4] {
        let (mib_s, b) = raw_write(&s.dir, s.phase_bytes / 2, qd).await;
        println!(
            "raw profile: {mib_s:.1} MiB/s at queue depth {qd} (device busy {})",
            busy(b)
        );
    }
    let raw_phase = |n: usize| {
        let dir = s.dir.clone();
        async move {
            let (mib_s, b) = raw_write(&dir, s.phase_bytes, depth).await;
            (
                mib_s,
                format!(
                    "raw {n:>2}: {mib_s:8.1} MiB/s at queue depth {depth} (device busy {})",
                    busy(b)
                ),
            )
        }
    };
    let (first, line) = raw_phase(0).await;
    println!("{line}");
    let mut raws = vec![first];
    let queues = Queues::new();
    let (mut never, mut always) = (Vec::new(), Vec::new());
    for round in 0..s.rounds {
        for (flush, name) in [(FlushPolicy::Never, "never"), (FlushPolicy::Always, "always")] {
            let dir = s.dir.join(format!("log-{name}-{round}"));
            let r = log_append(&dir, flush, s.phase_bytes, s.appenders, &queues).await;
            let (after, line) = raw_phase(raws.len()).await;
            let around = (raws[raws.len() - 1] + after) / 2.0;
            raws.push(after);
            print_log(&format!("{name:<6} (round {round})"), &r, around);
            println!("{line}");
            let ratio = r.on_disk_mib_s / around;
            match flush {
                FlushPolicy::Never => never.push((r.on_disk_mib_s, ratio)),
                _ => always.push((r.on_disk_mib_s, ratio)),
            }
        }
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
    let list = |v: &[(f64, f64)]| {
        v.iter()
            .map(|(_, r)| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "medians: raw DMA write {:.1} MiB/s ({} phases, {:.1}..{:.1}); log never {:.1} MiB/s; log always {:.1} MiB/s",
        median(raws.clone()),
        raws.len(),
        raws.iter().copied().fold(f64::INFINITY, f64::min),
        raws.iter().copied().fold(0.0, f64::max),
        median(never.iter().map(|x| x.0).collect()),
        median(always.iter().map(|x| x.0).collect())
    );
    println!(
        "per-phase ratios log/raw: never [{}], always [{}]",
        list(&never),
        list(&always)
    );
    println!(
        "ratios log/raw (median of per-phase): never {:.2} (target >= 0.80), always {:.2} (target >= 0.60)",
        median(never.iter().map(|x| x.1).collect()),
        median(always.iter().map(|x| x.1).collect())
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
