//! Mounts, parsed from `/proc/self/mountinfo`.
//!
//! mountinfo is used rather than `/proc/mounts` because it carries each mount's
//! device number (`major:minor`): that finds the block device even when the
//! source is `/dev/root`, a device-mapper name or a bind mount, by matching the
//! `dev` files under `/sys/block`.

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::error::TuneError;

/// A block device number as the kernel prints it (`254:0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNumber {
    pub major: u32,
    pub minor: u32,
}

impl DeviceNumber {
    /// Parses `major:minor`.
    pub fn parse(text: &str) -> Result<DeviceNumber, TuneError> {
        let text = text.trim();
        let (major, minor) = text
            .split_once(':')
            .ok_or_else(|| TuneError::parse("device number", text))?;
        let number = |s: &str| {
            s.parse::<u32>()
                .map_err(|e| TuneError::parse("device number", format!("{text}: {e}")))
        };
        Ok(DeviceNumber {
            major: number(major)?,
            minor: number(minor)?,
        })
    }
}

impl std::fmt::Display for DeviceNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    pub mount_point: String,
    pub device: DeviceNumber,
    pub fs_type: String,
    pub source: String,
    /// Per-mount options (`rw,relatime`).
    pub mount_options: Vec<String>,
    /// Per-superblock options (`rw,discard,...`), where file-system flags such as `discard` live.
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// Whether the mount or its superblock carries `option`.
    pub fn has_option(&self, option: &str) -> bool {
        self.mount_options
            .iter()
            .chain(&self.super_options)
            .any(|o| o == option)
    }
}

/// Parses the whole of mountinfo; every line must parse.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>, TuneError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Result<MountEntry, TuneError> {
    let bad = || TuneError::parse("mountinfo line", line);
    let (head, tail) = line.split_once(" - ").ok_or_else(bad)?;
    let head: Vec<&str> = head.split_whitespace().collect();
    let tail: Vec<&str> = tail.split_whitespace().collect();
    if head.len() < 6 || tail.len() < 3 {
        return Err(bad());
    }
    Ok(MountEntry {
        mount_point: unescape(head[4]),
        device: DeviceNumber::parse(head[2])?,
        fs_type: tail[0].to_string(),
        source: unescape(tail[1]),
        mount_options: head[5].split(',').map(String::from).collect(),
        super_options: tail[2].split(',').map(String::from).collect(),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space) in paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path` (absolute, already canonical): the longest
/// mount point that is a prefix of it; of equal ones the last (it is on top).
pub fn mount_for_path<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    let wanted: Vec<Component> = path.components().collect();
    let mut best: Option<(&MountEntry, usize)> = None;
    for mount in mounts {
        let point: Vec<Component> = Path::new(&mount.mount_point).components().collect();
        let is_prefix = point.len() <= wanted.len() && point.iter().zip(&wanted).all(|(a, b)| a == b);
        if is_prefix && best.is_none_or(|(_, len)| point.len() >= len) {
            best = Some((mount, point.len()));
        }
    }
    best.map(|(m, _)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict
22 27 0:21 / /proc rw,relatime - proc proc rw
40 27 259:2 / /var/lib/shoal\\040data rw,noatime shared:1 - xfs /dev/nvme0n1p2 rw,attr2,inode64
41 27 259:3 / /var/lib/shoal\\040data rw,noatime - xfs /dev/nvme1n1 rw
";

    /// Fields, optional tags and octal escapes are parsed; the topmost, longest mount wins.
    #[test]
    fn parses_and_finds_mounts() {
        let mounts = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[0].device, DeviceNumber { major: 254, minor: 0 });
        assert!(mounts[0].has_option("discard"));
        assert_eq!(mounts[2].mount_point, "/var/lib/shoal data");
        assert_eq!(mounts[2].fs_type, "xfs");
        let m = mount_for_path(&mounts, Path::new("/var/lib/shoal data/topic-0")).unwrap();
        assert_eq!(
            m.source, "/dev/nvme1n1",
            "the later mount on the same point is on top"
        );
        let m = mount_for_path(&mounts, Path::new("/var/lib/shoaldata")).unwrap();
        assert_eq!(m.mount_point, "/", "a prefix must match whole components");
        assert!(parse_mountinfo("not a mountinfo line").is_err());
    }
}
