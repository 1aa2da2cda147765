//! The sysctls that matter to a network broker doing direct I/O.
//!
//! Each is read from `/proc/sys/...` under a [`HostRoot`]; a missing one (a
//! kernel without it, a container that hides it) is `None`, never a guess.

use serde::{Deserialize, Serialize};

use crate::host_root::HostRoot;

/// Selected kernel settings, each as the kernel prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctls {
    /// Cap on every listening socket's accept backlog.
    pub somaxconn: Option<u64>,
    pub tcp_max_syn_backlog: Option<u64>,
    pub netdev_max_backlog: Option<u64>,
    pub rmem_max_bytes: Option<u64>,
    pub wmem_max_bytes: Option<u64>,
    /// min, default, max of TCP receive-buffer autotuning.
    pub tcp_rmem_bytes: Option<[u64; 3]>,
    pub tcp_wmem_bytes: Option<[u64; 3]>,
    pub busy_poll_us: Option<u64>,
    /// 0 = io_uring allowed, 1 = only for a group, 2 = off (kernel 6.6+).
    pub io_uring_disabled: Option<u64>,
    pub swappiness: Option<u64>,
    pub file_max: Option<u64>,
}

/// Parses whitespace-separated integers (`4096\t131072\t33554432`).
pub fn parse_numbers(text: &str) -> Option<Vec<u64>> {
    text.split_whitespace().map(|w| w.parse::<u64>().ok()).collect()
}

fn single(text: Option<String>) -> Option<u64> {
    parse_numbers(&text?).filter(|v| v.len() == 1).map(|v| v[0])
}

fn triple(text: Option<String>) -> Option<[u64; 3]> {
    parse_numbers(&text?).and_then(|v| <[u64; 3]>::try_from(v).ok())
}

/// Reads the sysctls under `root`.
pub fn read_sysctls(root: &HostRoot) -> Sysctls {
    let get = |name: &str| root.read_optional(&format!("/proc/sys/{name}"));
    Sysctls {
        somaxconn: single(get("net/core/somaxconn")),
        tcp_max_syn_backlog: single(get("net/ipv4/tcp_max_syn_backlog")),
        netdev_max_backlog: single(get("net/core/netdev_max_backlog")),
        rmem_max_bytes: single(get("net/core/rmem_max")),
        wmem_max_bytes: single(get("net/core/wmem_max")),
        tcp_rmem_bytes: triple(get("net/ipv4/tcp_rmem")),
        tcp_wmem_bytes: triple(get("net/ipv4/tcp_wmem")),
        busy_poll_us: single(get("net/core/busy_poll")),
        io_uring_disabled: single(get("kernel/io_uring_disabled")),
        swappiness: single(get("vm/swappiness")),
        file_max: single(get("fs/file-max")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tab-separated triples and single values parse; junk is rejected.
    #[test]
    fn parses_values() {
        assert_eq!(
            triple(Some("4096\t131072\t33554432\n".into())),
            Some([4096, 131072, 33554432])
        );
        assert_eq!(single(Some("4096\n".into())), Some(4096));
        assert_eq!(single(Some("1 2".into())), None);
        assert_eq!(single(Some("lots".into())), None);
        assert_eq!(triple(None), None);
    }
}
