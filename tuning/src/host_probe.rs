//! The whole host probe: file-backed facts plus live kernel answers.
//!
//! [`HostFacts`] is everything read from /proc and /sys, so it is gathered
//! the same way from the live host or a fixture tree. [`LiveFacts`] holds what
//! only the running kernel can answer (io_uring probe, statx/measured DIO
//! alignment, statvfs, the CPU affinity mask). Recommendation and check take a
//! [`HostProbe`] as plain data, so their tests build one from fixtures.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::block_device::{find_block_device, BlockDevice};
use crate::cpu_topology::{read_cpu_topology, CpuTopology};
use crate::dio_alignment::{probe_dio_alignment, probe_free_space, DioAlignment, FreeSpace};
use crate::error::TuneError;
use crate::host_root::HostRoot;
use crate::kernel::KernelVersion;
use crate::mountinfo::{mount_for_path, parse_mountinfo, MountEntry};
use crate::process_limits::{parse_meminfo, parse_process_limits, MemInfo, ProcessLimits};
use crate::sysctl::{read_sysctls, Sysctls};
use crate::uring_support::{probe_uring, UringSupport};

/// Facts read from /proc and /sys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    /// The data directory probed (or the nearest existing ancestor of it).
    pub data_dir: PathBuf,
    pub kernel: KernelVersion,
    pub mount: Option<MountEntry>,
    pub device: Option<BlockDevice>,
    pub cpu: CpuTopology,
    pub memory: MemInfo,
    pub limits: ProcessLimits,
    pub sysctls: Sysctls,
}

/// Answers only the running kernel can give. A probe that failed keeps its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveFacts {
    pub uring: UringSupport,
    pub dio_alignment: Option<DioAlignment>,
    pub dio_error: Option<String>,
    pub free_space: Option<FreeSpace>,
    /// CPUs this process may run on (affinity mask and cgroup quota).
    pub available_cpus: u32,
}

/// A complete probe of one host for one data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostProbe {
    /// The data directory asked about; `facts.data_dir` is where it was probed.
    pub requested_dir: PathBuf,
    pub facts: HostFacts,
    pub live: LiveFacts,
}

impl HostFacts {
    /// Reads every file-backed fact under `root`; `data_dir` is an absolute
    /// path in the root's namespace.
    pub fn gather(root: &HostRoot, data_dir: &Path) -> Result<HostFacts, TuneError> {
        let mounts = parse_mountinfo(&root.read("/proc/self/mountinfo")?)?;
        let mount = mount_for_path(&mounts, data_dir).cloned();
        let device = match &mount {
            Some(m) => find_block_device(root, m.device)?,
            None => None,
        };
        Ok(HostFacts {
            data_dir: data_dir.to_path_buf(),
            kernel: KernelVersion::parse(&root.read("/proc/sys/kernel/osrelease")?)?,
            mount,
            device,
            cpu: read_cpu_topology(root)?,
            memory: parse_meminfo(&root.read("/proc/meminfo")?)?,
            limits: parse_process_limits(&root.read("/proc/self/limits")?, &root.read("/proc/self/status")?)?,
            sysctls: read_sysctls(root),
        })
    }
}

impl LiveFacts {
    /// Asks the running kernel; `dir` must exist.
    pub fn gather(dir: &Path) -> LiveFacts {
        let (dio_alignment, dio_error) = match probe_dio_alignment(dir) {
            Ok(a) => (Some(a), None),
            Err(e) => (None, Some(e.to_string())),
        };
        LiveFacts {
            uring: probe_uring(),
            dio_alignment,
            dio_error,
            free_space: probe_free_space(dir).ok(),
            available_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        }
    }
}

impl HostProbe {
    /// Probes the live host for a data directory that may not exist yet: the
    /// nearest existing ancestor stands in for it (same file system).
    pub fn gather_live(data_dir: &Path) -> Result<HostProbe, TuneError> {
        let existing = existing_ancestor(data_dir)?;
        let facts = HostFacts::gather(&HostRoot::live(), &existing)?;
        let live = LiveFacts::gather(&existing);
        Ok(HostProbe {
            requested_dir: data_dir.to_path_buf(),
            facts,
            live,
        })
    }

    /// Shards the broker would run with `shards = 0`.
    pub fn default_shards(&self) -> u32 {
        self.live.available_cpus.max(1)
    }

    /// The DIO offset alignment, falling back to the device's logical block size, then 4 KiB.
    pub fn dio_offset_align_bytes(&self) -> u32 {
        self.live
            .dio_alignment
            .map(|a| a.offset_align_bytes)
            .or(self
                .facts
                .device
                .as_ref()
                .map(|d| d.queue.logical_block_size_bytes))
            .unwrap_or(4096)
    }
}

/// Canonical form of `path` or of its nearest existing ancestor.
pub fn existing_ancestor(path: &Path) -> Result<PathBuf, TuneError> {
    let absolute = std::path::absolute(path).map_err(|source| TuneError::Io {
        op: "resolve",
        path: path.to_path_buf(),
        source,
    })?;
    let mut candidate = absolute.as_path();
    loop {
        if let Ok(found) = candidate.canonicalize() {
            return Ok(found);
        }
        candidate = candidate.parent().ok_or_else(|| TuneError::Io {
            op: "find an existing ancestor of",
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    }
}

/// Test helpers: the shipped fixture hosts, with live facts filled in by hand.
#[cfg(test)]
pub mod fixtures {
    use super::*;
    use crate::dio_alignment::AlignmentSource;
    use crate::uring_support::{NamedFlag, OPCODES_NEEDED};

    /// The fixture tree `name` under tuning/testdata.
    pub fn root(name: &str) -> HostRoot {
        HostRoot::at(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name))
    }

    /// A kernel whose io_uring has every opcode the broker needs.
    pub fn full_uring() -> UringSupport {
        UringSupport {
            available: true,
            error: None,
            features: vec![NamedFlag {
                name: "nodrop".into(),
                supported: true,
            }],
            opcodes: OPCODES_NEEDED
                .iter()
                .map(|n| NamedFlag {
                    name: n.to_string(),
                    supported: true,
                })
                .collect(),
        }
    }

    /// The NVMe fixture host probed for /var/lib/shoal, 3.2 TB free.
    pub fn nvme_probe() -> HostProbe {
        let facts = HostFacts::gather(&root("nvme-host"), Path::new("/var/lib/shoal/data")).unwrap();
        let live = LiveFacts {
            uring: full_uring(),
            dio_alignment: Some(DioAlignment {
                mem_align_bytes: 4,
                offset_align_bytes: 4096,
                source: AlignmentSource::Statx,
            }),
            dio_error: None,
            free_space: Some(FreeSpace {
                total_bytes: 3_840_000_000_000,
                available_bytes: 3_200_000_000_000,
            }),
            available_cpus: 32,
        };
        HostProbe {
            requested_dir: "/var/lib/shoal/data".into(),
            facts,
            live,
        }
    }

    /// The virtio fixture host probed for /work/shoal-data, 79 GiB free.
    pub fn virtio_probe() -> HostProbe {
        let facts = HostFacts::gather(&root("virtio-host"), Path::new("/work/shoal-data")).unwrap();
        let live = LiveFacts {
            uring: full_uring(),
            dio_alignment: Some(DioAlignment {
                mem_align_bytes: 512,
                offset_align_bytes: 512,
                source: AlignmentSource::Statx,
            }),
            dio_error: None,
            free_space: Some(FreeSpace {
                total_bytes: 270_000_000_000,
                available_bytes: 84_000_000_000,
            }),
            available_cpus: 2,
        };
        HostProbe {
            requested_dir: "/work/shoal-data".into(),
            facts,
            live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use crate::block_device::{DeviceKind, WriteCache};
    use crate::process_limits::LimitValue;

    /// The NVMe fixture resolves /var/lib/shoal to the whole-disk XFS on nvme1n1 and reads its queue.
    #[test]
    fn nvme_host_fixture() {
        let facts = nvme_probe().facts;
        assert_eq!((facts.kernel.major, facts.kernel.minor), (5, 15));
        let mount = facts.mount.as_ref().unwrap();
        assert_eq!(
            (mount.mount_point.as_str(), mount.fs_type.as_str()),
            ("/var/lib/shoal", "xfs")
        );
        let dev = facts.device.as_ref().unwrap();
        assert_eq!(dev.disk, "nvme1n1");
        assert_eq!(dev.partition, None);
        assert_eq!(dev.kind, DeviceKind::Nvme);
        assert_eq!(dev.model.as_deref(), Some("SAMSUNG MZQL23T8HCLS-00A07"));
        assert_eq!(dev.hw_queue_count, 32);
        assert_eq!(dev.numa_node, Some(1));
        let q = &dev.queue;
        assert_eq!(
            (q.logical_block_size_bytes, q.physical_block_size_bytes),
            (4096, 4096)
        );
        assert!(!q.rotational);
        assert_eq!(q.scheduler.active.as_deref(), Some("mq-deadline"));
        assert_eq!(q.nr_requests, 1023);
        assert_eq!(q.write_cache, WriteCache::WriteThrough);
        assert_eq!(q.max_sectors_kb, Some(512));
        assert_eq!(q.fua, Some(false));
        assert_eq!(
            (
                facts.cpu.logical_cpus(),
                facts.cpu.physical_cores,
                facts.cpu.sockets
            ),
            (32, 16, 2)
        );
        assert!(facts.cpu.has_smt());
        assert_eq!(facts.cpu.numa_nodes.len(), 2);
        assert_eq!(facts.cpu.numa_nodes[1].cpus[..3], [8, 9, 10]);
        assert_eq!(facts.cpu.frequency_governor.as_deref(), Some("powersave"));
        assert_eq!(facts.limits.memlock_soft_bytes, LimitValue::Value(65536));
        assert_eq!(facts.limits.open_files_soft, LimitValue::Value(1024));
        assert!(!facts.limits.cap_ipc_lock);
        assert_eq!(facts.memory.swap_total_bytes, 8_589_930_496);
        assert_eq!(facts.sysctls.tcp_max_syn_backlog, Some(1024));
        assert_eq!(facts.sysctls.tcp_wmem_bytes, Some([4096, 16384, 4194304]));
        assert_eq!(
            facts.sysctls.io_uring_disabled, None,
            "5.15 has no io_uring_disabled sysctl"
        );
    }

    /// A path on the boot drive resolves through the partition to its disk.
    #[test]
    fn nvme_host_partition_lookup() {
        let facts = super::HostFacts::gather(&root("nvme-host"), std::path::Path::new("/srv/shoal")).unwrap();
        let dev = facts.device.unwrap();
        assert_eq!(
            (dev.disk.as_str(), dev.partition.as_deref()),
            ("nvme0n1", Some("nvme0n1p2"))
        );
        assert_eq!(dev.model.as_deref(), Some("Micron_7450_MTFDKBA480TFR"));
        assert_eq!(dev.queue.write_cache, WriteCache::WriteBack);
    }

    /// The virtio fixture (this VM) finds vda behind / with its real queue settings.
    #[test]
    fn virtio_host_fixture() {
        let facts = virtio_probe().facts;
        let mount = facts.mount.as_ref().unwrap();
        assert_eq!(
            (mount.mount_point.as_str(), mount.fs_type.as_str()),
            ("/", "ext4")
        );
        assert!(mount.has_option("discard"));
        let dev = facts.device.as_ref().unwrap();
        assert_eq!((dev.disk.as_str(), &dev.kind), ("vda", &DeviceKind::Virtio));
        assert_eq!(dev.model, None);
        assert_eq!(dev.hw_queue_count, 1);
        assert_eq!(
            (
                dev.queue.logical_block_size_bytes,
                dev.queue.physical_block_size_bytes
            ),
            (512, 4096)
        );
        assert!(dev.queue.rotational, "virtio-blk reports rotational by default");
        assert_eq!(
            dev.queue.scheduler.available,
            ["none", "mq-deadline", "kyber", "bfq"]
        );
        assert_eq!(dev.queue.write_cache, WriteCache::WriteBack);
        assert_eq!(
            (
                facts.cpu.logical_cpus(),
                facts.cpu.physical_cores,
                facts.cpu.sockets
            ),
            (2, 2, 1)
        );
        assert_eq!(facts.cpu.frequency_governor, None);
        assert!(facts.limits.cap_ipc_lock);
        assert_eq!(facts.limits.memlock_soft_bytes, LimitValue::Value(8 << 20));
        assert_eq!(facts.sysctls.somaxconn, Some(4096));
        assert_eq!(facts.sysctls.io_uring_disabled, Some(0));
        assert_eq!(facts.memory.swap_total_bytes, 0);
    }
}
