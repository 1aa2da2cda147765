//! The block device behind the data directory and its queue settings, from sysfs.
//!
//! Parsers take the text of single sysfs files; [`find_block_device`] walks
//! `/sys/block` under a [`HostRoot`] to find the disk (and partition) whose
//! `dev` file matches a mount's device number, then reads its `queue/` files,
//! model and hardware queue count (`mq/*`).

use serde::{Deserialize, Serialize};

use crate::error::TuneError;
use crate::host_root::HostRoot;
use crate::mountinfo::DeviceNumber;

/// What kind of device this is, which decides the scheduler advice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Nvme,
    Virtio,
    Scsi,
    DeviceMapper,
    Other,
}

/// The I/O scheduler line: `none [mq-deadline] kyber bfq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduler {
    pub active: Option<String>,
    pub available: Vec<String>,
}

impl Scheduler {
    /// Parses the `queue/scheduler` file; the bracketed name is the active one.
    pub fn parse(text: &str) -> Scheduler {
        let mut active = None;
        let mut available = Vec::new();
        for word in text.split_whitespace() {
            let name = word.trim_start_matches('[').trim_end_matches(']').to_string();
            if word.starts_with('[') {
                active = Some(name.clone());
            }
            available.push(name);
        }
        Scheduler { active, available }
    }
}

/// How the device reports its volatile write cache (`queue/write_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteCache {
    /// Volatile cache: every fdatasync also sends a device flush.
    WriteBack,
    /// No volatile cache (or power-loss protected): a completed write is durable.
    WriteThrough,
}

impl WriteCache {
    pub fn parse(text: &str) -> Result<WriteCache, TuneError> {
        match text.trim() {
            "write back" => Ok(WriteCache::WriteBack),
            "write through" => Ok(WriteCache::WriteThrough),
            other => Err(TuneError::parse("queue/write_cache", other)),
        }
    }
}

/// The block layer queue settings that matter to direct I/O.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockQueue {
    pub logical_block_size_bytes: u32,
    pub physical_block_size_bytes: u32,
    pub rotational: bool,
    pub scheduler: Scheduler,
    pub nr_requests: u32,
    pub write_cache: WriteCache,
    /// Largest request the block layer sends down; bigger writes are split.
    pub max_sectors_kb: Option<u32>,
    pub optimal_io_size_bytes: Option<u32>,
    /// Whether the device honours FUA writes (a flush per write is avoided).
    pub fua: Option<bool>,
}

/// The disk (and partition) that holds the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// Whole-disk name under /sys/block (`nvme0n1`, `vda`).
    pub disk: String,
    /// Partition name when the file system sits on one (`nvme0n1p2`).
    pub partition: Option<String>,
    pub kind: DeviceKind,
    /// Model string (NVMe, SCSI); virtio disks have none.
    pub model: Option<String>,
    /// Hardware submission queues (`mq/*`); NVMe usually has one per core.
    pub hw_queue_count: u32,
    /// NUMA node the controller hangs off, when the platform says.
    pub numa_node: Option<u32>,
    pub queue: BlockQueue,
}

/// Parses a sysfs number file.
pub fn parse_number<T: std::str::FromStr>(what: &'static str, text: &str) -> Result<T, TuneError>
where
    T::Err: std::fmt::Display,
{
    text.trim()
        .parse::<T>()
        .map_err(|e| TuneError::parse(what, format!("{:?}: {e}", text.trim())))
}

/// Finds the disk or partition whose `dev` file is `device`; `None` for
/// devices with no block device behind them (tmpfs, overlay, NFS).
pub fn find_block_device(root: &HostRoot, device: DeviceNumber) -> Result<Option<BlockDevice>, TuneError> {
    let matches = |path: &str| {
        root.read_optional(path)
            .and_then(|t| DeviceNumber::parse(&t).ok())
            .is_some_and(|d| d == device)
    };
    for disk in root.list_dir("/sys/block") {
        if matches(&format!("/sys/block/{disk}/dev")) {
            return read_block_device(root, &disk, None).map(Some);
        }
        let partitions = root.list_dir(&format!("/sys/block/{disk}"));
        for part in partitions.iter().filter(|p| p.starts_with(disk.as_str())) {
            if matches(&format!("/sys/block/{disk}/{part}/dev")) {
                return read_block_device(root, &disk, Some(part.clone())).map(Some);
            }
        }
    }
    Ok(None)
}

/// Reads one disk's identity and queue settings.
pub fn read_block_device(
    root: &HostRoot,
    disk: &str,
    partition: Option<String>,
) -> Result<BlockDevice, TuneError> {
    let base = format!("/sys/block/{disk}");
    let uevent = root
        .read_optional(&format!("{base}/device/uevent"))
        .unwrap_or_default();
    let model = root
        .read_optional(&format!("{base}/device/model"))
        .map(|m| m.trim().to_string());
    let numa_node = [
        format!("{base}/device/numa_node"),
        format!("{base}/device/device/numa_node"),
    ]
    .iter()
    .filter_map(|p| root.read_optional(p))
    .find_map(|t| t.trim().parse::<u32>().ok());
    Ok(BlockDevice {
        disk: disk.to_string(),
        partition,
        kind: device_kind(disk, &uevent),
        model: model.filter(|m| !m.is_empty()),
        hw_queue_count: root.list_dir(&format!("{base}/mq")).len() as u32,
        numa_node,
        queue: read_queue(root, &format!("{base}/queue"))?,
    })
}

fn read_queue(root: &HostRoot, dir: &str) -> Result<BlockQueue, TuneError> {
    let file = |name: &str| root.read(&format!("{dir}/{name}"));
    let optional = |name: &str| root.read_optional(&format!("{dir}/{name}"));
    Ok(BlockQueue {
        logical_block_size_bytes: parse_number("queue/logical_block_size", &file("logical_block_size")?)?,
        physical_block_size_bytes: parse_number("queue/physical_block_size", &file("physical_block_size")?)?,
        rotational: parse_number::<u8>("queue/rotational", &file("rotational")?)? != 0,
        scheduler: Scheduler::parse(&file("scheduler")?),
        nr_requests: parse_number("queue/nr_requests", &file("nr_requests")?)?,
        write_cache: WriteCache::parse(&file("write_cache")?)?,
        max_sectors_kb: optional("max_sectors_kb").and_then(|t| t.trim().parse().ok()),
        optimal_io_size_bytes: optional("optimal_io_size").and_then(|t| t.trim().parse().ok()),
        fua: optional("fua")
            .and_then(|t| t.trim().parse::<u8>().ok())
            .map(|v| v != 0),
    })
}

/// Classifies a disk by its driver (`DRIVER=` in the device uevent) or name.
pub fn device_kind(disk: &str, device_uevent: &str) -> DeviceKind {
    let driver = device_uevent
        .lines()
        .find_map(|l| l.strip_prefix("DRIVER="))
        .unwrap_or("");
    match (driver, disk) {
        ("virtio_blk", _) => DeviceKind::Virtio,
        ("nvme", _) => DeviceKind::Nvme,
        ("sd", _) => DeviceKind::Scsi,
        (_, d) if d.starts_with("nvme") => DeviceKind::Nvme,
        (_, d) if d.starts_with("vd") => DeviceKind::Virtio,
        (_, d) if d.starts_with("sd") => DeviceKind::Scsi,
        (_, d) if d.starts_with("dm-") => DeviceKind::DeviceMapper,
        _ => DeviceKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bracketed scheduler is active; all names are listed.
    #[test]
    fn parses_scheduler_line() {
        let s = Scheduler::parse("none [mq-deadline] kyber bfq \n");
        assert_eq!(s.active.as_deref(), Some("mq-deadline"));
        assert_eq!(s.available, ["none", "mq-deadline", "kyber", "bfq"]);
        assert_eq!(
            Scheduler::parse("[none] mq-deadline\n").active.as_deref(),
            Some("none")
        );
        assert_eq!(Scheduler::parse("none\n").active, None);
    }

    /// Both write cache spellings parse; anything else is an error.
    #[test]
    fn parses_write_cache() {
        assert_eq!(WriteCache::parse("write back\n").unwrap(), WriteCache::WriteBack);
        assert_eq!(
            WriteCache::parse("write through\n").unwrap(),
            WriteCache::WriteThrough
        );
        assert!(WriteCache::parse("sometimes").is_err());
    }

    /// The driver wins over the name; the name is the fallback.
    #[test]
    fn classifies_devices() {
        assert_eq!(
            device_kind("vda", "DRIVER=virtio_blk\nMODALIAS=virtio:d00000002v00001AF4\n"),
            DeviceKind::Virtio
        );
        assert_eq!(device_kind("nvme0n1", ""), DeviceKind::Nvme);
        assert_eq!(device_kind("dm-0", ""), DeviceKind::DeviceMapper);
        assert_eq!(device_kind("mmcblk0", ""), DeviceKind::Other);
    }
}
