//! The machine a run happened on, as the report states it.
//!
//! Read from `/proc` and `/sys` at the start of a run: CPU model, online
//! cores, kernel release, memory, and the device and file system under the
//! data directory (found through `/proc/self/mountinfo`: the mount with the
//! longest mount point that prefixes the directory). The parsers are pure
//! and tested with known text; a missing file yields "unknown", never a
//! failed run.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// What a reader needs to judge the figures.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub cpu_model: String,
    pub cores_online: usize,
    pub kernel: String,
    pub memory_bytes: u64,
    pub data_dir: PathBuf,
    pub data_device: String,
    pub data_fs: String,
    pub data_mount: String,
    /// From `/sys/block/<dev>/queue/rotational`, when the device is found there.
    pub data_rotational: Option<bool>,
}

/// Describes this machine, with `data_dir` as the broker's data directory.
pub fn describe(data_dir: &Path) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let mount = mount_for(&read("/proc/self/mountinfo"), &data_dir);
    let (data_mount, data_device, data_fs) =
        mount.unwrap_or_else(|| ("unknown".into(), "unknown".into(), "unknown".into()));
    let data_rotational = rotational(&data_device);
    Machine {
        hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        cpu_model: cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown".into()),
        cores_online: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        memory_bytes: mem_total_bytes(&read("/proc/meminfo")).unwrap_or(0),
        data_dir,
        data_device,
        data_fs,
        data_mount,
        data_rotational,
    }
}

/// The first `model name` in `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `(mount point, source device, fs type)` of the mount holding `path`.
pub fn mount_for(mountinfo: &str, path: &Path) -> Option<(String, String, String)> {
    mountinfo
        .lines()
        .filter_map(parse_mountinfo_line)
        .filter(|(point, _, _)| path.starts_with(point))
        .max_by_key(|(point, _, _)| point.len())
}

/// Fields 5 (mount point), and after the ` - ` separator fs type and source.
fn parse_mountinfo_line(line: &str) -> Option<(String, String, String)> {
    let (left, right) = line.split_once(" - ")?;
    let point = left.split_whitespace().nth(4)?;
    let mut right = right.split_whitespace();
    let fs = right.next()?;
    let source = right.next()?;
    Some((unescape(point), source.to_string(), fs.to_string()))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn rotational(device: &str) -> Option<bool> {
    let name = device.strip_prefix("/dev/")?;
    // A partition (vda1, nvme0n1p2) has no queue of its own; its disk does.
    let candidates = [
        name.to_string(),
        name.trim_end_matches(|c: char| c.is_ascii_digit()).to_string(),
    ];
    candidates.iter().find_map(|dev| {
        let text = std::fs::read_to_string(format!("/sys/block/{dev}/queue/rotational")).ok()?;
        Some(text.trim() == "1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
35 22 0:30 / /work rw,relatime shared:2 - xfs /dev/nvme0n1p1 rw
36 35 0:31 / /work/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn the_longest_mount_prefix_wins() {
        // Proves a path is attributed to its deepest mount, including escaped names.
        let f = |p: &str| mount_for(MOUNTINFO, Path::new(p)).unwrap();
        assert_eq!(f("/var/lib"), ("/".into(), "/dev/vda".into(), "ext4".into()));
        assert_eq!(
            f("/work/main/data"),
            ("/work".into(), "/dev/nvme0n1p1".into(), "xfs".into())
        );
        assert_eq!(
            f("/work/with space/x"),
            ("/work/with space".into(), "tmpfs".into(), "tmpfs".into())
        );
        // A sibling with a shared string prefix is not inside the mount.
        assert_eq!(f("/workshop").0, "/");
    }

    #[test]
    fn cpu_and_memory_from_proc_text() {
        // Proves the CPU model and MemTotal are read from known /proc text.
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R45\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 9R45"));
        assert_eq!(
            mem_total_bytes("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000 * 1024)
        );
        assert_eq!(cpu_model(""), None);
    }
}
