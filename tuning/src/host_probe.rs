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
        Ok(HostProbe { facts, live })
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
            .or(self.facts.device.as_ref().map(|d| d.queue.logical_block_size_bytes))
            .unwrap_or(4096)
    }
}

/// Canonical form of `path` or of its nearest existing ancestor.
pub fn existing_ancestor(path: &Path) -> Result<PathBuf, TuneError> {
    let absolute = std::path::absolute(path)
        .map_err(|source| TuneError::Io { op: "resolve", path: path.to_path_buf(), source })?;
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
