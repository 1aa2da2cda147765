//! From a probe and a bench report to a broker config, each setting with its reason (pure).
//!
//! Every rule reads only its inputs, so the same probe and report always give
//! the same config, and the tests run them on the fixture hosts. Without a
//! bench report the device-driven settings keep the broker's defaults and say
//! so. Durability is never weakened silently: `flush = "always"` unless the
//! operator asks for [`Priority::Latency`], and then the reason states how
//! much acknowledged data a power loss can take.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shoal_config::{Config, FlushMode};

use crate::device_bench::{format_bytes, BenchReport};
use crate::host_changes::{host_changes, HostChange};
use crate::host_probe::HostProbe;

/// What the operator favours when durability and latency pull apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Every ack waits for the fdatasync that covers it.
    Durability,
    /// Acks after the write; a timer syncs. A power loss can lose the last interval.
    Latency,
}

/// A setting and why it has its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingReason {
    /// `section.key` as in the TOML.
    pub key: String,
    pub reason: String,
}

/// The recommended config, the reasons behind it and changes to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub config: Config,
    pub reasons: Vec<SettingReason>,
    pub host_changes: Vec<HostChange>,
}

impl Recommendation {
    /// The reason recorded for `key`, if any.
    pub fn reason(&self, key: &str) -> Option<&str> {
        self.reasons
            .iter()
            .find(|r| r.key == key)
            .map(|r| r.reason.as_str())
    }
}

/// Seconds of peak sequential bandwidth one segment should hold.
pub const SEGMENT_FILL_S: f64 = 8.0;
pub const SEGMENT_BYTES_FLOOR: u64 = 64 << 20;
pub const SEGMENT_BYTES_CEILING: u64 = 1 << 30;
/// Free space should hold this many full segments per shard.
pub const SEGMENTS_PER_SHARD_MIN: u64 = 32;
/// Seconds of peak bandwidth one fallocate step should cover.
pub const PREALLOCATE_FILL_S: f64 = 1.0;
pub const PREALLOCATE_BYTES_FLOOR: u64 = 16 << 20;
/// Every partition's active segment reserves one step, so the step stays modest
/// whatever the device speed (a 512 MiB step over 4 partitions reserved 2 GiB in a run here).
pub const PREALLOCATE_BYTES_CEILING: u64 = 64 << 20;
/// Preallocation is turned off when a small append into preallocated space syncs this much slower.
pub const PREALLOCATED_SYNC_RATIO_MAX: f64 = 1.5;
/// A write chunk must reach this share of the best bandwidth at low queue depth.
pub const CHUNK_BANDWIDTH_SHARE: f64 = 0.9;
/// The appender keeps only a few writes in flight; chunks are judged at this depth or less.
pub const CHUNK_QUEUE_DEPTH_MAX: u32 = 4;
/// Chunks of io memory per shard: double-buffered writes for a few partitions.
pub const IO_MEMORY_CHUNKS: u64 = 8;
pub const IO_MEMORY_BYTES_FLOOR: u64 = 2 << 20;
pub const IO_MEMORY_BYTES_CEILING: u64 = 64 << 20;
/// Share of available memory all batch caches together may take (1/8).
pub const BATCH_CACHE_MEMORY_DIVISOR: u64 = 8;
pub const BATCH_CACHE_BYTES_FLOOR: u64 = 4 << 20;
pub const BATCH_CACHE_BYTES_CEILING: u64 = 1 << 30;
/// fdatasync p99 under which flushing on every ack is cheap.
pub const FSYNC_CHEAP_P99_US: f64 = 2_000.0;
/// With flush = "interval", the interval spans this many p99 fdatasyncs.
pub const FLUSH_INTERVAL_FSYNCS: f64 = 4.0;
pub const FLUSH_INTERVAL_MS_FLOOR: u64 = 5;
pub const FLUSH_INTERVAL_MS_CEILING: u64 = 1_000;
/// Spinning before parking only pays when shards do not need every core.
pub const SPIN_CPUS_MIN: u32 = 4;
pub const SPIN_BEFORE_PARK_US: u64 = 50;

/// Largest power of two <= `v` (1 for 0).
pub fn pow2_floor(v: u64) -> u64 {
    if v <= 1 {
        1
    } else {
        1 << (63 - v.leading_zeros())
    }
}

struct Builder<'a> {
    probe: &'a HostProbe,
    bench: Option<&'a BenchReport>,
    config: Config,
    reasons: Vec<SettingReason>,
}

impl Builder<'_> {
    fn because(&mut self, key: &str, reason: String) {
        self.reasons.push(SettingReason {
            key: key.to_string(),
            reason,
        });
    }
}

/// Builds the recommendation for `data_dir` on the probed host.
pub fn recommend(
    probe: &HostProbe,
    bench: Option<&BenchReport>,
    data_dir: PathBuf,
    priority: Priority,
) -> Recommendation {
    let mut b = Builder {
        probe,
        bench,
        config: Config::default(),
        reasons: Vec::new(),
    };
    b.config.server.data_dir = data_dir;
    b.because("server.data_dir", "the directory probed and benchmarked".into());
    shards_and_spin(&mut b);
    shard_ports(&mut b);
    write_chunk(&mut b);
    segment_and_preallocation(&mut b);
    flush_policy(&mut b, priority);
    memory(&mut b);
    let host_changes = host_changes(probe, &b.config);
    Recommendation {
        config: b.config,
        reasons: b.reasons,
        host_changes,
    }
}

fn shards_and_spin(b: &mut Builder) {
    let cpus = b.probe.default_shards();
    b.config.server.shards = cpus;
    let mut reason = format!("one shard per CPU this process may use ({cpus}); each is a pinned executor");
    if let Some(d) = &b.probe.facts.device {
        if d.hw_queue_count > 0 && d.hw_queue_count < cpus {
            reason += &format!(
                "; {} has {} hardware queue{}, fewer than shards, so shards share them",
                d.disk,
                d.hw_queue_count,
                if d.hw_queue_count == 1 { "" } else { "s" }
            );
        }
    }
    b.because("server.shards", reason);
    b.config.runtime.pin_cores = true;
    b.because(
        "runtime.pin_cores",
        "keeps each shard's caches and io_uring on one core".into(),
    );
    if cpus >= SPIN_CPUS_MIN {
        b.config.runtime.spin_before_park_us = SPIN_BEFORE_PARK_US;
        b.because(
            "runtime.spin_before_park_us",
            format!("bridges the ~40 us wake-up of a parked executor (~5 us spinning) at the cost of idle CPU; set 0 if the {cpus} CPUs are shared with other services"),
        );
    } else {
        b.config.runtime.spin_before_park_us = 0;
        b.because(
            "runtime.spin_before_park_us",
            format!("only {cpus} CPUs: a spinning shard would take the core the other shard and the kernel's I/O completions need"),
        );
    }
}

/// Moves the shard port range past the other ports when it would cover them
/// (the defaults collide from 80 shards: 9401 + 79 = 9480, the HTTP port).
fn shard_ports(b: &mut Builder) {
    let server = &b.config.server;
    let first = u32::from(server.shard_port_base);
    let range = first..first + server.shards.max(1);
    let (listen, http) = (
        u32::from(server.listen.port()),
        u32::from(server.http_listen.port()),
    );
    if first == 0 || (!range.contains(&listen) && !range.contains(&http)) {
        return;
    }
    let shards = server.shards;
    b.config.server.shard_port_base = (listen.max(http) + 1) as u16;
    b.because(
        "server.shard_port_base",
        format!("moved above the listen and HTTP ports: {shards} shard ports from the default base would include one of them"),
    );
}

fn write_chunk(b: &mut Builder) {
    let align = u64::from(b.probe.dio_offset_align_bytes()).max(4096);
    let Some(bench) = b.bench else {
        b.because(
            "storage.write_chunk_bytes",
            "broker default; run with a bench to size it to the device".into(),
        );
        return;
    };
    let best = crate::bench_plan::SEQ_BLOCK_BYTES
        .iter()
        .filter_map(|&block| {
            bench
                .bandwidth_mib_per_sec(block, CHUNK_QUEUE_DEPTH_MAX)
                .map(|bw| (block, bw))
        })
        .collect::<Vec<_>>();
    let peak = best.iter().map(|(_, bw)| *bw).fold(0.0, f64::max);
    let Some(&(block, bw)) = best
        .iter()
        .find(|(block, bw)| u64::from(*block) >= align && *bw >= peak * CHUNK_BANDWIDTH_SHARE)
    else {
        b.because(
            "storage.write_chunk_bytes",
            "broker default; the bench had no usable sequential case".into(),
        );
        return;
    };
    b.config.storage.write_chunk_bytes = block as usize;
    b.because(
        "storage.write_chunk_bytes",
        format!(
            "smallest write reaching {:.0}% of the best bandwidth at queue depth <= {CHUNK_QUEUE_DEPTH_MAX}: {} at {bw:.0} MiB/s (best {peak:.0} MiB/s); smaller chunks keep single-write latency low",
            CHUNK_BANDWIDTH_SHARE * 100.0,
            format_bytes(u64::from(block))
        ),
    );
}

fn segment_and_preallocation(b: &mut Builder) {
    let shards = u64::from(b.config.server.shards.max(1));
    let chunk = b.config.storage.write_chunk_bytes as u64;
    let peak_bytes_per_s = b
        .bench
        .map(|r| r.peak_bandwidth_mib_per_sec() * f64::from(1 << 20));
    let mut segment = match peak_bytes_per_s {
        Some(bw) => {
            pow2_floor((bw * SEGMENT_FILL_S) as u64).clamp(SEGMENT_BYTES_FLOOR, SEGMENT_BYTES_CEILING)
        }
        None => b.config.storage.segment_bytes_max,
    };
    let mut reason = match peak_bytes_per_s {
        Some(bw) => format!(
            "~{SEGMENT_FILL_S:.0} s of the measured peak {:.0} MiB/s, so rolls are rare while retention stays fine-grained",
            bw / f64::from(1 << 20)
        ),
        None => "broker default (no bench)".into(),
    };
    if let Some(space) = b.probe.live.free_space {
        let cap = pow2_floor(space.available_bytes / (SEGMENTS_PER_SHARD_MIN * shards)).max(chunk);
        if cap < segment {
            segment = cap;
            reason += &format!(
                "; capped so {} free holds {SEGMENTS_PER_SHARD_MIN} segments per shard",
                format_bytes(space.available_bytes)
            );
        }
    }
    b.config.storage.segment_bytes_max = segment.max(shoal_config::SEGMENT_BYTES_MIN).max(chunk);
    b.because("storage.segment_bytes_max", reason);
    preallocation(b, peak_bytes_per_s);
}

fn preallocation(b: &mut Builder, peak_bytes_per_s: Option<f64>) {
    let segment = b.config.storage.segment_bytes_max;
    let physical = u64::from(
        b.probe
            .facts
            .device
            .as_ref()
            .map_or(4096, |d| d.queue.physical_block_size_bytes),
    );
    let fsyncs = b
        .bench
        .and_then(|r| Some((r.fsync_case(4096, false)?, r.fsync_case(4096, true)?)));
    let large = b
        .bench
        .and_then(|r| Some((r.fsync_case(1 << 20, false)?, r.fsync_case(1 << 20, true)?)));
    let evidence = match (fsyncs, large) {
        (Some((g, p)), Some((lg, lp))) => format!(
            "measured fdatasync p50 after 4 KiB appends {:.0} us growing vs {:.0} us preallocated, after 1 MiB appends {:.0} vs {:.0} us",
            g.sync.p50_us, p.sync.p50_us, lg.sync.p50_us, lp.sync.p50_us
        ),
        _ => "no bench".into(),
    };
    if let Some((growing, prealloc)) =
        fsyncs.filter(|(g, p)| p.sync.p50_us > g.sync.p50_us * PREALLOCATED_SYNC_RATIO_MAX)
    {
        b.config.storage.preallocate_bytes = 0;
        b.because(
            "storage.preallocate_bytes",
            format!(
                "off: {evidence}. On this file system a small append into preallocated (unwritten) space costs {:.1}x a growing append at sync time, and small group commits are the latency-critical case; expect more fragmentation with many partitions",
                prealloc.sync.p50_us / growing.sync.p50_us
            ),
        );
        return;
    }
    let step = match peak_bytes_per_s {
        Some(bw) => pow2_floor((bw * PREALLOCATE_FILL_S) as u64)
            .clamp(PREALLOCATE_BYTES_FLOOR, PREALLOCATE_BYTES_CEILING)
            .min(segment),
        None => b.config.storage.preallocate_bytes.min(segment),
    };
    b.config.storage.preallocate_bytes = step.max(physical).min(segment);
    b.because(
        "storage.preallocate_bytes",
        format!(
            "fallocate step of ~{PREALLOCATE_FILL_S:.0} s at peak bandwidth, at most {}: fewer extent allocations on the append path and less fragmentation, while each partition's active segment reserves only one step; {evidence}",
            format_bytes(PREALLOCATE_BYTES_CEILING)
        ),
    );
}

fn flush_policy(b: &mut Builder, priority: Priority) {
    let preallocated = b.config.storage.preallocate_bytes > 0;
    let measured = b.bench.and_then(|r| {
        r.fsync_case(4096, preallocated)
            .or(r.fsync_case(4096, !preallocated))
    });
    let Some(fsync) = measured else {
        b.config.storage.flush = FlushMode::Always;
        b.because(
            "storage.flush",
            "every ack waits for its fdatasync (no bench to weigh the cost)".into(),
        );
        return;
    };
    let (p50, p99) = (fsync.sync.p50_us, fsync.sync.p99_us);
    let interval_ms = ((p99 / 1000.0 * FLUSH_INTERVAL_FSYNCS).ceil() as u64)
        .clamp(FLUSH_INTERVAL_MS_FLOOR, FLUSH_INTERVAL_MS_CEILING);
    b.config.storage.flush_interval_ms = interval_ms;
    b.because(
        "storage.flush_interval_ms",
        format!(
            "{FLUSH_INTERVAL_FSYNCS:.0} x the p99 fdatasync, so interval syncs never queue behind each other"
        ),
    );
    let cost = format!("measured fdatasync after a 4 KiB append: p50 {p50:.0} us, p99 {p99:.0} us");
    let (flush, reason) = match priority {
        Priority::Latency => (
            FlushMode::Interval,
            format!("{cost}; acks no longer wait for it, and a power loss can lose up to {interval_ms} ms of acknowledged appends"),
        ),
        Priority::Durability if p99 <= FSYNC_CHEAP_P99_US => (
            FlushMode::Always,
            format!("{cost}: cheap enough to sync before every ack; group commit shares each sync among concurrent appends"),
        ),
        Priority::Durability => (
            FlushMode::Always,
            format!("{cost}: every ack waits at least this long, shared by group commit; `--priority latency` would switch to flush = \"interval\" ({interval_ms} ms) at the risk of losing that much acknowledged data on power loss"),
        ),
    };
    b.config.storage.flush = flush;
    b.because("storage.flush", reason);
}

fn memory(b: &mut Builder) {
    let shards = u64::from(b.config.server.shards.max(1));
    let chunk = b.config.storage.write_chunk_bytes as u64;
    let limits = &b.probe.facts.limits;
    let wanted = (chunk * IO_MEMORY_CHUNKS).clamp(IO_MEMORY_BYTES_FLOOR, IO_MEMORY_BYTES_CEILING);
    let mut io_memory = wanted;
    let mut reason = format!("{IO_MEMORY_CHUNKS} write chunks per shard for double-buffered DMA writes");
    match limits.memlock_soft_bytes {
        crate::process_limits::LimitValue::Value(limit) if !limits.cap_ipc_lock => {
            let share = (limit / shards) >> 20 << 20;
            if share >= (1 << 20) && share < wanted {
                io_memory = share;
                reason += &format!(
                    "; cut to fit the {} memlock limit across {shards} shards",
                    format_bytes(limit)
                );
            } else if share < (1 << 20) {
                reason += &format!(
                    "; the {} memlock limit is too small: raise it (see host changes)",
                    format_bytes(limit)
                );
            }
        }
        _ => reason += "; memlock does not limit this process (CAP_IPC_LOCK or unlimited)",
    }
    b.config.runtime.io_memory_bytes = io_memory as usize;
    b.because("runtime.io_memory_bytes", reason);
    let available = b.probe.facts.memory.available_bytes;
    let cache = pow2_floor(available / BATCH_CACHE_MEMORY_DIVISOR / shards)
        .clamp(BATCH_CACHE_BYTES_FLOOR, BATCH_CACHE_BYTES_CEILING);
    b.config.storage.batch_cache_bytes_max = cache as usize;
    b.because(
        "storage.batch_cache_bytes_max",
        format!(
            "direct I/O bypasses the page cache, so consumers that keep up are served from this cache; all shards together take about 1/{BATCH_CACHE_MEMORY_DIVISOR} of the {} available",
            format_bytes(available)
        ),
    );
}

/// Test helpers: synthetic bench reports shaped like real devices.
#[cfg(test)]
pub mod fixtures {
    use std::time::Duration;

    use crate::bench_plan::{BenchLimits, SEQ_BLOCK_BYTES, SEQ_QUEUE_DEPTHS};
    use crate::device_bench::{seq_result, BenchReport, FsyncResult, LatencySummary};
    use crate::dio_alignment::{AlignmentSource, DioAlignment};

    /// Latency summary with the given p50 and p99 in microseconds.
    pub fn latency(p50_us: f64, p99_us: f64) -> LatencySummary {
        LatencySummary {
            samples: 1000,
            p50_us,
            p99_us,
            p999_us: p99_us * 1.5,
            max_us: p99_us * 3.0,
            mean_us: p50_us,
        }
    }

    /// A report whose bandwidth is `mib_per_s(block, depth)` and whose fsyncs take (p50, p99)
    /// growing and preallocated.
    pub fn bench(
        mib_per_s: impl Fn(u32, u32) -> f64,
        growing: (f64, f64),
        preallocated: (f64, f64),
    ) -> BenchReport {
        let mut seq_write = Vec::new();
        for &block in SEQ_BLOCK_BYTES {
            for &depth in SEQ_QUEUE_DEPTHS {
                let bytes = (mib_per_s(block, depth) * f64::from(1 << 20)) as u64;
                seq_write.push(seq_result(block, depth, bytes, Duration::from_secs(1)));
            }
        }
        let fsync = [
            (4096, false, growing),
            (4096, true, preallocated),
            (1 << 20, false, growing),
            (1 << 20, true, preallocated),
        ]
        .into_iter()
        .map(|(append_bytes, pre, (p50, p99))| FsyncResult {
            append_bytes,
            preallocated: pre,
            sync: latency(p50, p99),
            write: latency(20.0, 40.0),
        })
        .collect();
        BenchReport {
            dir: "/var/lib/shoal".into(),
            limits: BenchLimits::default(),
            dio_alignment: DioAlignment {
                mem_align_bytes: 4,
                offset_align_bytes: 4096,
                source: AlignmentSource::Statx,
            },
            seq_write,
            write_latency: latency(15.0, 30.0),
            fsync,
            elapsed_ms: 40_000.0,
        }
    }

    /// A PCIe 4 datacentre drive: ~4 GB/s once blocks reach 256 KiB, sync in tens of microseconds.
    pub fn nvme_bench() -> BenchReport {
        bench(
            |block, depth| {
                let per_io = f64::from(block) / f64::from(1 << 20) * 30_000.0; // ~30k IOPS per queue slot
                (per_io * f64::from(depth)).min(3950.0)
            },
            (45.0, 90.0),
            (30.0, 60.0),
        )
    }

    /// A virtio disk: ~400 MiB/s, syncs of a few milliseconds.
    pub fn virtio_bench() -> BenchReport {
        bench(
            |block, depth| (f64::from(block) / f64::from(1 << 20) * 3_000.0 * f64::from(depth)).min(400.0),
            (4_000.0, 9_000.0),
            (3_000.0, 7_000.0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::host_probe::fixtures::{nvme_probe, virtio_probe};

    /// On the NVMe host every device-driven setting follows the measured figures.
    #[test]
    fn nvme_host_recommendation() {
        let rec = recommend(
            &nvme_probe(),
            Some(&nvme_bench()),
            "/var/lib/shoal/data".into(),
            Priority::Durability,
        );
        let c = &rec.config;
        c.validate().unwrap();
        assert_eq!(c.server.shards, 32);
        assert_eq!(
            c.server.shard_port_base, 9401,
            "32 shard ports stay clear of 9480"
        );
        assert_eq!(c.runtime.spin_before_park_us, SPIN_BEFORE_PARK_US);
        // 16 KiB peaks at 1875 MiB/s by QD4; 64 KiB reaches the 3950 MiB/s ceiling there.
        assert_eq!(
            c.storage.write_chunk_bytes,
            64 << 10,
            "{:?}",
            rec.reason("storage.write_chunk_bytes")
        );
        assert_eq!(c.storage.segment_bytes_max, SEGMENT_BYTES_CEILING);
        assert_eq!(
            c.storage.preallocate_bytes, PREALLOCATE_BYTES_CEILING,
            "1 s at 3950 MiB/s, capped"
        );
        assert_eq!(c.storage.flush, FlushMode::Always);
        assert!(rec.reason("storage.flush").unwrap().contains("cheap enough"));
        assert_eq!(c.storage.flush_interval_ms, FLUSH_INTERVAL_MS_FLOOR);
        assert_eq!(c.runtime.io_memory_bytes as u64, IO_MEMORY_BYTES_FLOOR);
        assert!(rec
            .reason("runtime.io_memory_bytes")
            .unwrap()
            .contains("too small"));
        assert_eq!(c.storage.batch_cache_bytes_max, 512 << 20);
        assert_eq!(c.server.data_dir, PathBuf::from("/var/lib/shoal/data"));
    }

    /// On the 2-vCPU virtio host: no spinning, smaller segments, slow syncs explained.
    #[test]
    fn virtio_host_recommendation() {
        let rec = recommend(
            &virtio_probe(),
            Some(&virtio_bench()),
            "/work/shoal-data".into(),
            Priority::Durability,
        );
        let c = &rec.config;
        c.validate().unwrap();
        assert_eq!(c.server.shards, 2);
        assert_eq!(c.runtime.spin_before_park_us, 0);
        assert!(rec
            .reason("runtime.spin_before_park_us")
            .unwrap()
            .contains("only 2 CPUs"));
        // 400 MiB/s peak: 64 KiB reaches it at QD2+, so the 90% rule picks 64 KiB at QD4 (750 capped to 400).
        assert_eq!(c.storage.write_chunk_bytes, 64 << 10);
        assert_eq!(
            c.storage.segment_bytes_max,
            1 << 30,
            "8 s x 400 MiB/s = 3200 MiB -> 2 GiB -> 1 GiB ceiling"
        );
        assert_eq!(
            c.storage.preallocate_bytes, PREALLOCATE_BYTES_CEILING,
            "1 s x 400 MiB/s, capped at 64 MiB"
        );
        assert_eq!(c.storage.flush, FlushMode::Always);
        let why = rec.reason("storage.flush").unwrap();
        assert!(
            why.contains("p99 7000 us") && why.contains("--priority latency"),
            "{why}"
        );
        assert_eq!(c.storage.flush_interval_ms, 28, "4 x 7 ms");
        assert_eq!(
            c.runtime.io_memory_bytes,
            2 << 20,
            "8 x 64 KiB = 512 KiB, raised to the 2 MiB floor"
        );
        assert!(rec
            .reason("runtime.io_memory_bytes")
            .unwrap()
            .contains("CAP_IPC_LOCK"));
    }

    /// With latency first, flush goes to an interval and the reason states the possible loss.
    #[test]
    fn latency_priority_uses_interval_flush() {
        let rec = recommend(
            &virtio_probe(),
            Some(&virtio_bench()),
            "/d".into(),
            Priority::Latency,
        );
        assert_eq!(rec.config.storage.flush, FlushMode::Interval);
        assert!(rec.reason("storage.flush").unwrap().contains("lose up to 28 ms"));
        rec.config.validate().unwrap();
    }

    /// Without a bench, device-driven settings are the broker's defaults and say so.
    #[test]
    fn without_bench_keeps_defaults() {
        let rec = recommend(&virtio_probe(), None, "/d".into(), Priority::Durability);
        let defaults = Config::default();
        assert_eq!(
            rec.config.storage.write_chunk_bytes,
            defaults.storage.write_chunk_bytes
        );
        assert_eq!(
            rec.config.storage.segment_bytes_max,
            defaults.storage.segment_bytes_max
        );
        assert_eq!(rec.config.storage.flush, FlushMode::Always);
        assert!(rec
            .reason("storage.write_chunk_bytes")
            .unwrap()
            .contains("default"));
        rec.config.validate().unwrap();
    }

    /// Little free space caps segments so a shard still holds many of them.
    #[test]
    fn free_space_caps_segments() {
        let mut probe = virtio_probe();
        probe.live.free_space.as_mut().unwrap().available_bytes = 4 << 30;
        let rec = recommend(&probe, Some(&virtio_bench()), "/d".into(), Priority::Durability);
        assert_eq!(
            rec.config.storage.segment_bytes_max,
            64 << 20,
            "4 GiB / (32 x 2 shards)"
        );
        assert!(rec.config.storage.preallocate_bytes <= rec.config.storage.segment_bytes_max);
        assert!(rec
            .reason("storage.segment_bytes_max")
            .unwrap()
            .contains("capped"));
    }

    /// Unprivileged with room in memlock: io memory is cut to the per-shard share.
    #[test]
    fn memlock_share_limits_io_memory() {
        let mut probe = nvme_probe();
        probe.facts.limits.memlock_soft_bytes = crate::process_limits::LimitValue::Value(64 << 20);
        probe.live.available_cpus = 16;
        let rec = recommend(&probe, Some(&virtio_bench()), "/d".into(), Priority::Durability);
        // 8 x 64 KiB = 512 KiB -> floor 2 MiB wanted; share is 4 MiB, so 2 MiB stays.
        assert_eq!(rec.config.runtime.io_memory_bytes, 2 << 20);
        probe.live.available_cpus = 64;
        let rec = recommend(&probe, Some(&nvme_bench()), "/d".into(), Priority::Durability);
        assert_eq!(rec.config.runtime.io_memory_bytes, 1 << 20, "64 MiB / 64 shards");
        assert!(rec
            .reason("runtime.io_memory_bytes")
            .unwrap()
            .contains("cut to fit"));
        assert!(!rec.host_changes.iter().any(|c| c.setting == "RLIMIT_MEMLOCK"));
    }

    /// For random hosts and device figures, the recommendation is a valid broker config, renders
    /// and parses back unchanged, and its only possible check error is the memlock limit, which
    /// then appears among the host changes. Re-run a failure with SHOAL_TEST_SEED=<seed>.
    #[test]
    fn random_hosts_get_valid_configs() {
        use rand::{Rng, SeedableRng};
        let seed = std::env::var("SHOAL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random::<u64>);
        println!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..300 {
            let mut probe = if rng.gen() { nvme_probe() } else { virtio_probe() };
            probe.live.available_cpus = rng.gen_range(1..=128);
            probe.facts.memory.available_bytes = rng.gen_range(2u64..=512) << 30;
            probe.facts.memory.total_bytes = probe.facts.memory.available_bytes + (1 << 30);
            probe.live.free_space.as_mut().unwrap().available_bytes = rng.gen_range(1u64..=10_000) << 30;
            probe.live.dio_alignment.as_mut().unwrap().offset_align_bytes = [512, 4096][rng.gen_range(0..2)];
            probe.facts.limits.cap_ipc_lock = rng.gen();
            probe.facts.limits.memlock_soft_bytes = [
                crate::process_limits::LimitValue::Value(64 << 10),
                crate::process_limits::LimitValue::Value(8 << 20),
                crate::process_limits::LimitValue::Value(1 << 30),
                crate::process_limits::LimitValue::Unlimited,
            ][rng.gen_range(0..4)];
            let ceiling = rng.gen_range(50.0..8000.0);
            let iops = rng.gen_range(1_000.0..200_000.0);
            let p99 = rng.gen_range(10.0..50_000.0);
            let prealloc_ratio = rng.gen_range(0.3..3.0);
            let report = bench(
                |block, depth| (f64::from(block) / f64::from(1 << 20) * iops * f64::from(depth)).min(ceiling),
                (p99 / 2.0, p99),
                (p99 / 2.0 * prealloc_ratio, p99 * prealloc_ratio),
            );
            let priority = if rng.gen() {
                Priority::Durability
            } else {
                Priority::Latency
            };
            let rec = recommend(&probe, Some(&report), "/d".into(), priority);
            let c = &rec.config;
            c.validate().unwrap_or_else(|e| panic!("seed {seed}: {e}: {c:?}"));
            assert!(
                c.storage.preallocate_bytes <= c.storage.segment_bytes_max,
                "seed {seed}: {c:?}"
            );
            let text = crate::config_toml::render_toml(&rec, &[]);
            assert_eq!(&Config::from_toml_str(&text).unwrap(), c, "seed {seed}");
            for problem in crate::config_check::check_config(c, &probe) {
                if problem.severity == crate::config_check::Severity::Error {
                    assert_eq!(problem.key, "runtime.io_memory_bytes", "seed {seed}: {problem:?}");
                    assert!(
                        rec.host_changes.iter().any(|h| h.setting == "RLIMIT_MEMLOCK"),
                        "seed {seed}"
                    );
                }
            }
        }
    }

    /// When appends into preallocated space sync much slower, preallocation is off and the reason says why.
    #[test]
    fn slow_preallocated_syncs_turn_preallocation_off() {
        let report = bench(|_, _| 400.0, (2_000.0, 9_000.0), (4_000.0, 12_000.0));
        let rec = recommend(&virtio_probe(), Some(&report), "/d".into(), Priority::Durability);
        assert_eq!(rec.config.storage.preallocate_bytes, 0);
        assert!(rec
            .reason("storage.preallocate_bytes")
            .unwrap()
            .starts_with("off: measured"));
        assert!(
            rec.reason("storage.flush").unwrap().contains("p50 2000 us"),
            "flush quotes the growing case"
        );
        let report = bench(|_, _| 400.0, (2_000.0, 9_000.0), (2_500.0, 12_000.0));
        let rec = recommend(&virtio_probe(), Some(&report), "/d".into(), Priority::Durability);
        assert_eq!(rec.config.storage.preallocate_bytes, PREALLOCATE_BYTES_CEILING);
        let slow = bench(|_, _| 20.0, (2_000.0, 9_000.0), (2_000.0, 9_000.0));
        let rec = recommend(&virtio_probe(), Some(&slow), "/d".into(), Priority::Durability);
        assert_eq!(
            rec.config.storage.preallocate_bytes, PREALLOCATE_BYTES_FLOOR,
            "1 s of 20 MiB/s, raised to the floor"
        );
    }

    /// From 80 shards the default shard ports would reach the HTTP port, so the range moves above it.
    #[test]
    fn shard_ports_move_clear_of_other_ports() {
        let mut probe = nvme_probe();
        probe.live.available_cpus = 100;
        let rec = recommend(&probe, Some(&nvme_bench()), "/d".into(), Priority::Durability);
        assert_eq!(rec.config.server.shard_port_base, 9481);
        assert!(rec
            .reason("server.shard_port_base")
            .unwrap()
            .contains("100 shard ports"));
    }

    /// pow2_floor rounds down and never returns 0.
    #[test]
    fn rounds_to_powers_of_two() {
        assert_eq!(pow2_floor(0), 1);
        assert_eq!(pow2_floor(1), 1);
        assert_eq!(pow2_floor(3200 << 20), 2048 << 20);
        assert_eq!(pow2_floor(4096), 4096);
    }
}
