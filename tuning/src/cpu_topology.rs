//! CPU count, topology and NUMA nodes, from `/proc/cpuinfo` and sysfs.
//!
//! Shards are one per core, so the probe counts logical CPUs, physical cores
//! (distinct `physical id`/`core id` pairs; SMT siblings share a core) and
//! sockets, and lists which CPUs each NUMA node owns.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::TuneError;
use crate::host_root::HostRoot;

/// Largest CPU number accepted in a cpulist; larger means a corrupt file.
pub const CPU_ID_MAX: u32 = 65_535;

/// A NUMA node and its CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaNode {
    pub id: u32,
    pub cpus: Vec<u32>,
}

/// The host's CPUs as the kernel reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTopology {
    pub model_name: Option<String>,
    pub online_cpus: Vec<u32>,
    pub physical_cores: u32,
    pub sockets: u32,
    pub numa_nodes: Vec<NumaNode>,
    /// cpufreq governor of cpu0, where cpufreq exists (not in most VMs).
    pub frequency_governor: Option<String>,
}

impl CpuTopology {
    /// Logical CPUs online.
    pub fn logical_cpus(&self) -> u32 {
        self.online_cpus.len() as u32
    }

    /// Whether hyper-threads share cores.
    pub fn has_smt(&self) -> bool {
        self.logical_cpus() > self.physical_cores
    }
}

/// Parses a kernel cpulist (`0-3,8-11`, `0`, or empty).
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, TuneError> {
    let mut cpus = BTreeSet::new();
    for range in text.trim().split(',').filter(|r| !r.is_empty()) {
        let number = |s: &str| -> Result<u32, TuneError> {
            let n = s
                .trim()
                .parse::<u32>()
                .map_err(|e| TuneError::parse("cpulist", format!("{text:?}: {e}")))?;
            if n > CPU_ID_MAX {
                return Err(TuneError::parse(
                    "cpulist",
                    format!("cpu {n} is above {CPU_ID_MAX}"),
                ));
            }
            Ok(n)
        };
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(range)?, number(range)?),
        };
        if first > last {
            return Err(TuneError::parse(
                "cpulist",
                format!("range {range} runs backwards"),
            ));
        }
        cpus.extend(first..=last);
    }
    Ok(cpus.into_iter().collect())
}

/// What /proc/cpuinfo says about processors, cores and sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfoSummary {
    pub model_name: Option<String>,
    pub processors: u32,
    pub physical_cores: u32,
    pub sockets: u32,
}

/// Parses /proc/cpuinfo. Where `physical id`/`core id` are missing (some
/// ARM and VM kernels), every processor counts as its own core and socket 0.
pub fn parse_cpuinfo(text: &str) -> CpuInfoSummary {
    let mut model_name = None;
    let mut processors = 0;
    let mut cores = BTreeSet::new();
    let mut sockets = BTreeSet::new();
    for block in text.split("\n\n").filter(|b| b.contains("processor")) {
        processors += 1;
        let field = |key: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        if model_name.is_none() {
            model_name = field("model name");
        }
        let socket = field("physical id").unwrap_or_else(|| "0".into());
        let core = field("core id").unwrap_or_else(|| format!("p{processors}"));
        cores.insert((socket.clone(), core));
        sockets.insert(socket);
    }
    CpuInfoSummary {
        model_name,
        processors,
        physical_cores: cores.len() as u32,
        sockets: sockets.len() as u32,
    }
}

/// Reads the CPU topology under `root`.
pub fn read_cpu_topology(root: &HostRoot) -> Result<CpuTopology, TuneError> {
    let info = parse_cpuinfo(&root.read("/proc/cpuinfo")?);
    let online_cpus = match root.read_optional("/sys/devices/system/cpu/online") {
        Some(text) => parse_cpu_list(&text)?,
        None => (0..info.processors).collect(),
    };
    let mut numa_nodes = Vec::new();
    for name in root.list_dir("/sys/devices/system/node") {
        let Some(id) = name.strip_prefix("node").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cpus = parse_cpu_list(&root.read(&format!("/sys/devices/system/node/{name}/cpulist"))?)?;
        numa_nodes.push(NumaNode { id, cpus });
    }
    numa_nodes.sort_by_key(|n| n.id);
    if numa_nodes.is_empty() {
        numa_nodes.push(NumaNode {
            id: 0,
            cpus: online_cpus.clone(),
        });
    }
    let frequency_governor = root
        .read_optional("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
        .map(|g| g.trim().to_string());
    Ok(CpuTopology {
        model_name: info.model_name,
        online_cpus,
        physical_cores: info.physical_cores.max(1),
        sockets: info.sockets.max(1),
        numa_nodes,
        frequency_governor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranges, singles and gaps expand; bad or backwards lists are errors.
    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8-9\n").unwrap(), [0, 1, 2, 3, 8, 9]);
        assert_eq!(parse_cpu_list("5").unwrap(), [5]);
        assert!(parse_cpu_list("\n").unwrap().is_empty());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("0-99999999").is_err());
    }

    /// SMT siblings share a core; missing core ids count a core per processor.
    #[test]
    fn counts_cores_and_sockets() {
        let smt = "processor\t: 0\nmodel name\t: X\nphysical id\t: 0\ncore id\t: 0\n\n\
                   processor\t: 1\nphysical id\t: 0\ncore id\t: 0\n\n\
                   processor\t: 2\nphysical id\t: 1\ncore id\t: 0\n\n";
        let s = parse_cpuinfo(smt);
        assert_eq!((s.processors, s.physical_cores, s.sockets), (3, 2, 2));
        assert_eq!(s.model_name.as_deref(), Some("X"));
        let bare = "processor\t: 0\nBogoMIPS\t: 50\n\nprocessor\t: 1\nBogoMIPS\t: 50\n";
        let s = parse_cpuinfo(bare);
        assert_eq!((s.processors, s.physical_cores, s.sockets), (2, 2, 1));
    }
}
