//! Human-readable renderings of probes, bench reports, recommendations and
//! check results. `--json` prints the same structs through serde instead.

use std::fmt::Write;

use crate::config_check::{Problem, Severity};
use crate::device_bench::{format_bytes, BenchReport, LatencySummary};
use crate::host_probe::HostProbe;
use crate::process_limits::LimitValue;
use crate::recommend::Recommendation;

fn limit_bytes(v: LimitValue) -> String {
    match v {
        LimitValue::Unlimited => "unlimited".into(),
        LimitValue::Value(b) => format_bytes(b),
    }
}

fn or_unknown<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".into(), |v| v.to_string())
}

/// The probe as an operator reads it.
pub fn probe_text(probe: &HostProbe) -> String {
    let f = &probe.facts;
    let mut out = String::new();
    let _ = write!(out, "data dir     {}", probe.requested_dir.display());
    if probe.requested_dir != f.data_dir {
        let _ = write!(
            out,
            " (probed at {}, its nearest existing ancestor)",
            f.data_dir.display()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "kernel       {}", f.kernel.release);
    file_system_text(probe, &mut out);
    device_text(probe, &mut out);
    resources_text(probe, &mut out);
    sysctl_text(probe, &mut out);
    uring_text(probe, &mut out);
    out
}

fn file_system_text(probe: &HostProbe, out: &mut String) {
    let (f, l) = (&probe.facts, &probe.live);
    match &f.mount {
        Some(m) => {
            let _ = writeln!(
                out,
                "file system  {} on {} (mounted at {}, dev {})",
                m.fs_type, m.source, m.mount_point, m.device
            );
            let _ = writeln!(out, "  options    {}", m.super_options.join(","));
        }
        None => {
            let _ = writeln!(out, "file system  no mount found");
        }
    }
    match (&l.dio_alignment, &l.dio_error) {
        (Some(a), _) => {
            let _ = writeln!(
                out,
                "O_DIRECT     memory align {} B, offset/length align {} B ({:?})",
                a.mem_align_bytes, a.offset_align_bytes, a.source
            );
        }
        (None, e) => {
            let _ = writeln!(out, "O_DIRECT     unusable: {}", or_unknown(e.as_ref()));
        }
    }
    if let Some(s) = l.free_space {
        let _ = writeln!(
            out,
            "free space   {} of {}",
            format_bytes(s.available_bytes),
            format_bytes(s.total_bytes)
        );
    }
}

fn resources_text(probe: &HostProbe, out: &mut String) {
    let (f, l) = (&probe.facts, &probe.live);
    let cpu = &f.cpu;
    let _ = writeln!(
        out,
        "cpu          {} logical, {} cores, {} sockets, {} available to this process; {}",
        cpu.logical_cpus(),
        cpu.physical_cores,
        cpu.sockets,
        l.available_cpus,
        or_unknown(cpu.model_name.as_ref())
    );
    for node in &cpu.numa_nodes {
        let _ = writeln!(out, "  numa node{} cpus {:?}", node.id, node.cpus);
    }
    if let Some(g) = &cpu.frequency_governor {
        let _ = writeln!(out, "  governor   {g}");
    }
    let _ = writeln!(
        out,
        "memory       {} total, {} available, swap {}",
        format_bytes(f.memory.total_bytes),
        format_bytes(f.memory.available_bytes),
        format_bytes(f.memory.swap_total_bytes)
    );
    let _ = writeln!(
        out,
        "memlock      soft {}, hard {}, CAP_IPC_LOCK {}",
        limit_bytes(f.limits.memlock_soft_bytes),
        limit_bytes(f.limits.memlock_hard_bytes),
        if f.limits.cap_ipc_lock {
            "yes (limit does not apply)"
        } else {
            "no"
        }
    );
    let _ = writeln!(
        out,
        "open files   soft {}, hard {}",
        f.limits.open_files_soft, f.limits.open_files_hard
    );
}

fn device_text(probe: &HostProbe, out: &mut String) {
    let Some(d) = &probe.facts.device else {
        let _ = writeln!(out, "device       no block device behind the data dir");
        return;
    };
    let q = &d.queue;
    let _ = writeln!(
        out,
        "device       {}{} ({:?}{}), {} hw queues, numa node {}",
        d.disk,
        d.partition
            .as_ref()
            .map_or(String::new(), |p| format!(" partition {p}")),
        d.kind,
        d.model.as_ref().map_or(String::new(), |m| format!(", {m}")),
        d.hw_queue_count,
        or_unknown(d.numa_node)
    );
    let _ = writeln!(
        out,
        "  queue      logical block {} B, physical block {} B, rotational {}, nr_requests {}, max request {} KiB",
        q.logical_block_size_bytes,
        q.physical_block_size_bytes,
        q.rotational,
        q.nr_requests,
        or_unknown(q.max_sectors_kb)
    );
    let _ = writeln!(
        out,
        "  scheduler  {} (available: {})",
        or_unknown(q.scheduler.active.as_ref()),
        q.scheduler.available.join(" ")
    );
    let _ = writeln!(out, "  cache      {:?}, FUA {}", q.write_cache, or_unknown(q.fua));
}

fn sysctl_text(probe: &HostProbe, out: &mut String) {
    let s = &probe.facts.sysctls;
    let triple = |t: Option<[u64; 3]>| t.map_or("unknown".into(), |[a, b, c]| format!("{a} {b} {c}"));
    let _ = writeln!(
        out,
        "net          somaxconn {}, tcp_max_syn_backlog {}, netdev_max_backlog {}, busy_poll {}",
        or_unknown(s.somaxconn),
        or_unknown(s.tcp_max_syn_backlog),
        or_unknown(s.netdev_max_backlog),
        or_unknown(s.busy_poll_us)
    );
    let _ = writeln!(
        out,
        "  buffers    rmem_max {}, wmem_max {}, tcp_rmem {}, tcp_wmem {}",
        or_unknown(s.rmem_max_bytes),
        or_unknown(s.wmem_max_bytes),
        triple(s.tcp_rmem_bytes),
        triple(s.tcp_wmem_bytes)
    );
    let _ = writeln!(
        out,
        "vm/kernel    swappiness {}, io_uring_disabled {}, file-max {}",
        or_unknown(s.swappiness),
        or_unknown(s.io_uring_disabled),
        or_unknown(s.file_max)
    );
}

fn uring_text(probe: &HostProbe, out: &mut String) {
    let u = &probe.live.uring;
    if !u.available {
        let _ = writeln!(out, "io_uring     UNAVAILABLE: {}", or_unknown(u.error.as_ref()));
        return;
    }
    let names = |flags: &[crate::uring_support::NamedFlag], supported: bool| {
        flags
            .iter()
            .filter(|f| f.supported == supported)
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = writeln!(out, "io_uring     available");
    let _ = writeln!(out, "  features   {}", names(&u.features, true));
    let _ = writeln!(out, "  opcodes    {}", names(&u.opcodes, true));
    let missing = names(&u.opcodes, false);
    let _ = writeln!(
        out,
        "  missing    {}",
        if missing.is_empty() {
            "none".into()
        } else {
            missing
        }
    );
    let needed = u.missing_needed();
    if !needed.is_empty() {
        let _ = writeln!(out, "  BROKER NEEDS {}", needed.join(" "));
    }
}

fn latency_line(s: &LatencySummary) -> String {
    format!(
        "p50 {:>9.1} us  p99 {:>9.1} us  p99.9 {:>9.1} us  max {:>9.1} us  ({} samples)",
        s.p50_us, s.p99_us, s.p999_us, s.max_us, s.samples
    )
}

/// The bench report as a table, with the run's context first.
pub fn bench_text(report: &BenchReport, probe: Option<&HostProbe>) -> String {
    let mut out = String::new();
    let device = probe
        .and_then(|p| p.facts.device.as_ref())
        .map_or("unknown device".into(), |d| {
            format!(
                "{} ({:?}{})",
                d.disk,
                d.kind,
                d.model.as_ref().map_or(String::new(), |m| format!(", {m}"))
            )
        });
    let fs = probe
        .and_then(|p| p.facts.mount.as_ref())
        .map_or("unknown".into(), |m| m.fs_type.clone());
    let _ = writeln!(
        out,
        "bench in {} on {device}, {fs}; O_DIRECT via io_uring (registered buffer); limits {} / {:?}; took {:.1} s",
        report.dir.display(),
        format_bytes(report.limits.file_bytes_max),
        report.limits.time_max,
        report.elapsed_ms / 1000.0
    );
    let _ = writeln!(
        out,
        "\nsequential write (file written once beforehand, then overwritten in a ring)"
    );
    let _ = writeln!(out, "  {:>8} {:>4} {:>12} {:>12}", "block", "qd", "MiB/s", "IOPS");
    for r in &report.seq_write {
        let _ = writeln!(
            out,
            "  {:>8} {:>4} {:>12.1} {:>12.0}",
            format_bytes(u64::from(r.block_bytes)),
            r.queue_depth,
            r.bandwidth_mib_per_sec,
            r.iops
        );
    }
    let _ = writeln!(
        out,
        "\n4 KiB write latency, queue depth 1\n  {}",
        latency_line(&report.write_latency)
    );
    let _ = writeln!(
        out,
        "\nfdatasync after each append (io_uring FSYNC with DATASYNC)"
    );
    for f in &report.fsync {
        let _ = writeln!(
            out,
            "  {:>6} {:<13} sync  {}",
            format_bytes(u64::from(f.append_bytes)),
            if f.preallocated { "preallocated" } else { "growing" },
            latency_line(&f.sync)
        );
        let _ = writeln!(out, "  {:>6} {:<13} write {}", "", "", latency_line(&f.write));
    }
    out
}

/// Recommended host changes, one block each.
pub fn host_changes_text(rec: &Recommendation) -> String {
    let mut out = String::new();
    if rec.host_changes.is_empty() {
        let _ = writeln!(out, "host changes: none needed");
        return out;
    }
    let _ = writeln!(out, "host changes to consider ({}):", rec.host_changes.len());
    for c in &rec.host_changes {
        let _ = writeln!(out, "\n- {}: {} -> {}", c.setting, c.current, c.suggested);
        let _ = writeln!(out, "  why: {}", c.reason);
        if let Some(cmd) = &c.command {
            let _ = writeln!(out, "  how: {cmd}");
        }
    }
    out
}

/// Check results, errors first.
pub fn problems_text(problems: &[Problem]) -> String {
    let mut out = String::new();
    if problems.is_empty() {
        let _ = writeln!(out, "ok: no problems found");
        return out;
    }
    let mut sorted: Vec<&Problem> = problems.iter().collect();
    sorted.sort_by_key(|p| p.severity != Severity::Error);
    for p in sorted {
        let _ = writeln!(out, "{:?} {}: {}", p.severity, p.key, p.explanation);
    }
    out
}
