//! Host changes worth making for a broker, each with its reason (pure).
//!
//! These are printed, never applied: every one names the current value, the
//! suggested one, why, and the command that would make it.

use serde::{Deserialize, Serialize};
use shoal_config::Config;

use crate::block_device::DeviceKind;
use crate::device_bench::format_bytes;
use crate::host_probe::HostProbe;
use crate::kernel::KERNEL_MIN;
use crate::process_limits::LimitValue;

/// One change to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostChange {
    pub setting: String,
    pub current: String,
    pub suggested: String,
    pub reason: String,
    pub command: Option<String>,
}

/// Accept backlog below which a connection burst is dropped by the kernel.
pub const SOMAXCONN_MIN: u64 = 4096;
/// Open files a broker with many partitions and connections needs.
pub const OPEN_FILES_MIN: u64 = 65_536;
/// Upper TCP buffer autotuning bound that lets one fetch stream fill a fast link.
pub const TCP_BUFFER_MAX_BYTES_MIN: u64 = 16 << 20;
/// Swappiness at or below which cache pages are not traded for swap.
pub const SWAPPINESS_MAX: u64 = 10;

fn change(
    setting: &str,
    current: String,
    suggested: &str,
    reason: &str,
    command: Option<String>,
) -> HostChange {
    HostChange {
        setting: setting.to_string(),
        current,
        suggested: suggested.to_string(),
        reason: reason.to_string(),
        command,
    }
}

/// Every change worth considering on the probed host for `config`.
pub fn host_changes(probe: &HostProbe, config: &Config) -> Vec<HostChange> {
    let mut out = Vec::new();
    kernel_and_uring(probe, &mut out);
    storage_changes(probe, &mut out);
    memlock_and_files(probe, config, &mut out);
    network_changes(probe, &mut out);
    cpu_changes(probe, &mut out);
    out
}

fn kernel_and_uring(probe: &HostProbe, out: &mut Vec<HostChange>) {
    let k = &probe.facts.kernel;
    if !k.at_least(KERNEL_MIN) {
        out.push(change(
            "kernel",
            k.release.clone(),
            &format!(">= {}.{}", KERNEL_MIN.0, KERNEL_MIN.1),
            "the broker's runtime (glommio) needs the io_uring operations of this kernel release",
            None,
        ));
    }
    if let Some(v) = probe.facts.sysctls.io_uring_disabled.filter(|v| *v != 0) {
        out.push(change(
            "kernel.io_uring_disabled",
            v.to_string(),
            "0",
            "the broker does all its I/O through io_uring and cannot start without it",
            Some("sysctl -w kernel.io_uring_disabled=0".into()),
        ));
    }
}

fn storage_changes(probe: &HostProbe, out: &mut Vec<HostChange>) {
    if let Some(d) = &probe.facts.device {
        let active = d.queue.scheduler.active.as_deref().unwrap_or("none");
        let flash_like = !d.queue.rotational || matches!(d.kind, DeviceKind::Nvme | DeviceKind::Virtio);
        if flash_like && active != "none" && d.queue.scheduler.available.iter().any(|s| s == "none") {
            let why = match d.kind {
                DeviceKind::Virtio => "the host's device does its own scheduling; a guest scheduler only adds per-request CPU time and queueing (virtio reports rotational=1 without meaning it)",
                _ => "flash has no seek to optimise; with direct I/O and per-shard queues the scheduler only adds per-request CPU time and latency",
            };
            out.push(change(
                &format!("/sys/block/{}/queue/scheduler", d.disk),
                active.to_string(),
                "none",
                why,
                Some(format!(
                    "echo none > /sys/block/{0}/queue/scheduler  (persist: udev rule ACTION==\"add|change\", KERNEL==\"{0}\", ATTR{{queue/scheduler}}=\"none\")",
                    d.disk
                )),
            ));
        }
    }
    let Some(m) = &probe.facts.mount else { return };
    if m.has_option("discard") {
        out.push(change(
            &format!("mount option discard on {}", m.mount_point),
            "discard".into(),
            "nodiscard + periodic fstrim",
            "online discard sends TRIMs as segments are deleted, which can stall appends on the same device; a weekly fstrim does the same work off the hot path",
            Some(format!("mount -o remount,nodiscard {}; systemctl enable --now fstrim.timer", m.mount_point)),
        ));
    }
    if !matches!(m.fs_type.as_str(), "xfs" | "ext4") {
        out.push(change(
            &format!("file system of {}", m.mount_point),
            m.fs_type.clone(),
            "xfs or ext4",
            "these are the file systems with mature O_DIRECT, fallocate and fdatasync semantics; copy-on-write or memory file systems change the durability and cost of every sync",
            None,
        ));
    }
}

fn memlock_and_files(probe: &HostProbe, config: &Config, out: &mut Vec<HostChange>) {
    let limits = &probe.facts.limits;
    let shards = u64::from(if config.server.shards == 0 {
        probe.default_shards()
    } else {
        config.server.shards
    });
    let needed = shards * config.runtime.io_memory_bytes as u64;
    if !limits.cap_ipc_lock && !limits.memlock_soft_bytes.allows(needed) {
        out.push(change(
            "RLIMIT_MEMLOCK",
            limits.memlock_soft_bytes.to_string(),
            &needed.to_string(),
            &format!(
                "each of {shards} shards locks {} for io_uring buffers; below the limit executors fail to start",
                format_bytes(config.runtime.io_memory_bytes as u64)
            ),
            Some(format!("systemd unit: LimitMEMLOCK={needed}  (or memlock in /etc/security/limits.conf)")),
        ));
    }
    if let LimitValue::Value(soft) = limits.open_files_soft {
        if soft < OPEN_FILES_MIN {
            out.push(change(
                "RLIMIT_NOFILE",
                soft.to_string(),
                &OPEN_FILES_MIN.to_string(),
                "every client connection and every open segment and index file takes a descriptor",
                Some(format!(
                    "systemd unit: LimitNOFILE={OPEN_FILES_MIN}  (or ulimit -n {OPEN_FILES_MIN})"
                )),
            ));
        }
    }
    let swap = probe.facts.memory.swap_total_bytes;
    if let Some(v) = probe
        .facts
        .sysctls
        .swappiness
        .filter(|v| swap > 0 && *v > SWAPPINESS_MAX)
    {
        out.push(change(
            "vm.swappiness",
            v.to_string(),
            "1",
            &format!("with {} of swap the kernel may page out the batch cache and indexes; a swapped-in fetch costs milliseconds", format_bytes(swap)),
            Some("sysctl -w vm.swappiness=1".into()),
        ));
    }
}

fn network_changes(probe: &HostProbe, out: &mut Vec<HostChange>) {
    let s = &probe.facts.sysctls;
    if let Some(v) = s.somaxconn.filter(|v| *v < SOMAXCONN_MIN) {
        out.push(change(
            "net.core.somaxconn",
            v.to_string(),
            &SOMAXCONN_MIN.to_string(),
            "caps each shard's accept backlog; a reconnect storm beyond it is dropped and clients retry after a second",
            Some(format!("sysctl -w net.core.somaxconn={SOMAXCONN_MIN}")),
        ));
    }
    let backlog_target = s.somaxconn.unwrap_or(SOMAXCONN_MIN).max(SOMAXCONN_MIN);
    if let Some(v) = s.tcp_max_syn_backlog.filter(|v| *v < backlog_target) {
        out.push(change(
            "net.ipv4.tcp_max_syn_backlog",
            v.to_string(),
            &backlog_target.to_string(),
            "half-open connections beyond it fall back to SYN cookies or are dropped during a reconnect storm; match the accept backlog",
            Some(format!("sysctl -w net.ipv4.tcp_max_syn_backlog={backlog_target}")),
        ));
    }
    for (name, value) in [
        ("net.ipv4.tcp_wmem", s.tcp_wmem_bytes),
        ("net.ipv4.tcp_rmem", s.tcp_rmem_bytes),
    ] {
        if let Some([min, default, max]) = value.filter(|v| v[2] < TCP_BUFFER_MAX_BYTES_MIN) {
            out.push(change(
                name,
                format!("{min} {default} {max}"),
                &format!("{min} {default} {TCP_BUFFER_MAX_BYTES_MIN}"),
                "the autotuning ceiling bounds one connection's throughput to ceiling / round-trip time; fetches of large batches across a data centre need more than a few MiB",
                Some(format!("sysctl -w {name}=\"{min} {default} {TCP_BUFFER_MAX_BYTES_MIN}\"")),
            ));
        }
    }
}

fn cpu_changes(probe: &HostProbe, out: &mut Vec<HostChange>) {
    let cpu = &probe.facts.cpu;
    if let Some(g) = cpu
        .frequency_governor
        .as_ref()
        .filter(|g| g.as_str() != "performance")
    {
        out.push(change(
            "cpufreq governor",
            g.clone(),
            "performance",
            "idle cores clock down between requests; the first request after a pause pays the ramp-up in latency",
            Some("cpupower frequency-set -g performance".into()),
        ));
    }
    let node = probe.facts.device.as_ref().and_then(|d| d.numa_node);
    if let (Some(node), true) = (node, cpu.numa_nodes.len() > 1) {
        let cpus = cpu
            .numa_nodes
            .iter()
            .find(|n| n.id == node)
            .map(|n| n.cpus.len())
            .unwrap_or(0);
        out.push(change(
            "NUMA placement",
            format!("{} nodes, data device on node {node}", cpu.numa_nodes.len()),
            &format!("run the broker on node {node} ({cpus} CPUs)"),
            "DMA and completion interrupts stay on the device's node; shards on the other node cross the interconnect for every I/O. Set server.shards to that node's CPU count when doing this",
            Some(format!("numactl --cpunodebind={node} --membind={node} shoald --config shoal.toml")),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_probe::fixtures::{nvme_probe, virtio_probe};

    fn settings(changes: &[HostChange]) -> Vec<&str> {
        changes.iter().map(|c| c.setting.as_str()).collect()
    }

    /// The untuned NVMe host gets every change its fixture was written to need, and no others.
    #[test]
    fn nvme_host_changes() {
        let probe = nvme_probe();
        let mut config = Config::default();
        config.server.shards = 32;
        config.runtime.io_memory_bytes = 2 << 20;
        let changes = host_changes(&probe, &config);
        assert_eq!(
            settings(&changes),
            [
                "/sys/block/nvme1n1/queue/scheduler",
                "RLIMIT_MEMLOCK",
                "RLIMIT_NOFILE",
                "vm.swappiness",
                "net.ipv4.tcp_max_syn_backlog",
                "net.ipv4.tcp_wmem",
                "net.ipv4.tcp_rmem",
                "cpufreq governor",
                "NUMA placement",
            ]
        );
        let memlock = &changes[1];
        assert_eq!(
            (memlock.current.as_str(), memlock.suggested.as_str()),
            ("65536", "67108864")
        );
        assert!(changes[0]
            .command
            .as_ref()
            .unwrap()
            .contains("echo none > /sys/block/nvme1n1/queue/scheduler"));
        assert!(changes[8].suggested.contains("node 1 (16 CPUs)"));
        assert!(changes.iter().all(|c| !c.reason.is_empty()));
    }

    /// This VM: scheduler, online discard, file limit, SYN backlog and send buffer; root needs no memlock change.
    #[test]
    fn virtio_host_changes() {
        let changes = host_changes(&virtio_probe(), &Config::default());
        assert_eq!(
            settings(&changes),
            [
                "/sys/block/vda/queue/scheduler",
                "mount option discard on /",
                "RLIMIT_NOFILE",
                "net.ipv4.tcp_max_syn_backlog",
                "net.ipv4.tcp_wmem",
            ]
        );
        assert!(changes[0].reason.contains("virtio"));
    }

    /// A disabled io_uring and an old kernel are reported first.
    #[test]
    fn kernel_blockers() {
        let mut probe = virtio_probe();
        probe.facts.sysctls.io_uring_disabled = Some(2);
        probe.facts.kernel = crate::kernel::KernelVersion::parse("5.4.0").unwrap();
        let changes = host_changes(&probe, &Config::default());
        assert_eq!(settings(&changes)[..2], ["kernel", "kernel.io_uring_disabled"]);
    }
}
