//! io_uring availability, ring features and supported opcodes, asked of the
//! running kernel through the io-uring crate's `Probe` (IORING_REGISTER_PROBE).
//!
//! This is live-only: there is no file to read it from. Recommendation and
//! check logic take the resulting [`UringSupport`] as plain data.

use io_uring::{opcode, IoUring};
use serde::{Deserialize, Serialize};

/// Opcodes the broker's runtime (glommio 0.9) issues on its storage and network paths.
pub const OPCODES_NEEDED: &[&str] = &[
    "READ",
    "WRITE",
    "READ_FIXED",
    "WRITE_FIXED",
    "FSYNC",
    "FALLOCATE",
    "OPENAT",
    "CLOSE",
    "STATX",
    "ACCEPT",
    "CONNECT",
    "SEND",
    "RECV",
    "POLL_ADD",
    "TIMEOUT",
    "ASYNC_CANCEL",
    "LINK_TIMEOUT",
];

/// Every opcode this tool asks about, by its kernel name.
const OPCODES: &[(&str, u8)] = &[
    ("NOP", opcode::Nop::CODE),
    ("READV", opcode::Readv::CODE),
    ("WRITEV", opcode::Writev::CODE),
    ("FSYNC", opcode::Fsync::CODE),
    ("READ_FIXED", opcode::ReadFixed::CODE),
    ("WRITE_FIXED", opcode::WriteFixed::CODE),
    ("POLL_ADD", opcode::PollAdd::CODE),
    ("POLL_REMOVE", opcode::PollRemove::CODE),
    ("SYNC_FILE_RANGE", opcode::SyncFileRange::CODE),
    ("SENDMSG", opcode::SendMsg::CODE),
    ("RECVMSG", opcode::RecvMsg::CODE),
    ("TIMEOUT", opcode::Timeout::CODE),
    ("ACCEPT", opcode::Accept::CODE),
    ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
    ("LINK_TIMEOUT", opcode::LinkTimeout::CODE),
    ("CONNECT", opcode::Connect::CODE),
    ("FALLOCATE", opcode::Fallocate::CODE),
    ("OPENAT", opcode::OpenAt::CODE),
    ("CLOSE", opcode::Close::CODE),
    ("STATX", opcode::Statx::CODE),
    ("READ", opcode::Read::CODE),
    ("WRITE", opcode::Write::CODE),
    ("FADVISE", opcode::Fadvise::CODE),
    ("SEND", opcode::Send::CODE),
    ("RECV", opcode::Recv::CODE),
    ("SPLICE", opcode::Splice::CODE),
    ("PROVIDE_BUFFERS", opcode::ProvideBuffers::CODE),
    ("SHUTDOWN", opcode::Shutdown::CODE),
    ("RENAMEAT", opcode::RenameAt::CODE),
    ("UNLINKAT", opcode::UnlinkAt::CODE),
    ("MSG_RING", opcode::MsgRingData::CODE),
    ("URING_CMD", opcode::UringCmd16::CODE),
    ("SOCKET", opcode::Socket::CODE),
    ("SEND_ZC", opcode::SendZc::CODE),
    ("SENDMSG_ZC", opcode::SendMsgZc::CODE),
    ("READ_MULTISHOT", opcode::ReadMulti::CODE),
    ("FUTEX_WAIT", opcode::FutexWait::CODE),
    ("FTRUNCATE", opcode::Ftruncate::CODE),
    ("BIND", opcode::Bind::CODE),
    ("LISTEN", opcode::Listen::CODE),
    ("RECV_ZC", opcode::RecvZc::CODE),
    ("READV_FIXED", opcode::ReadvFixed::CODE),
    ("WRITEV_FIXED", opcode::WritevFixed::CODE),
];

/// A named capability and whether the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedFlag {
    pub name: String,
    pub supported: bool,
}

/// What the kernel's io_uring can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UringSupport {
    pub available: bool,
    /// Why setup failed (ENOSYS: not built in; EPERM: disabled by sysctl or seccomp).
    pub error: Option<String>,
    pub features: Vec<NamedFlag>,
    pub opcodes: Vec<NamedFlag>,
}

impl UringSupport {
    /// Opcodes the broker needs that the kernel lacks (all of them if io_uring is unavailable).
    pub fn missing_needed(&self) -> Vec<&'static str> {
        OPCODES_NEEDED
            .iter()
            .copied()
            .filter(|name| !self.opcodes.iter().any(|o| o.name == *name && o.supported))
            .collect()
    }

    /// Support reported by a kernel without io_uring, for fixtures and reports.
    pub fn unavailable(error: impl Into<String>) -> UringSupport {
        UringSupport {
            available: false,
            error: Some(error.into()),
            features: Vec::new(),
            opcodes: Vec::new(),
        }
    }
}

/// Sets up a small ring and asks the kernel what it supports.
pub fn probe_uring() -> UringSupport {
    let ring = match IoUring::new(8) {
        Ok(ring) => ring,
        Err(e) => return UringSupport::unavailable(e.to_string()),
    };
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return UringSupport::unavailable(format!("ring set up but IORING_REGISTER_PROBE failed: {e}"));
    }
    let p = ring.params();
    let features = [
        ("single_mmap", p.is_feature_single_mmap()),
        ("nodrop", p.is_feature_nodrop()),
        ("submit_stable", p.is_feature_submit_stable()),
        ("rw_cur_pos", p.is_feature_rw_cur_pos()),
        ("cur_personality", p.is_feature_cur_personality()),
        ("fast_poll", p.is_feature_fast_poll()),
        ("poll_32bits", p.is_feature_poll_32bits()),
        ("sqpoll_nonfixed", p.is_feature_sqpoll_nonfixed()),
        ("ext_arg", p.is_feature_ext_arg()),
        ("native_workers", p.is_feature_native_workers()),
        ("resource_tagging", p.is_feature_resource_tagging()),
        ("skip_cqe_on_success", p.is_feature_skip_cqe_on_success()),
        ("linked_file", p.is_feature_linked_file()),
        ("recvsend_bundle", p.is_feature_recvsend_bundle()),
        ("min_timeout", p.is_feature_min_timeout()),
        ("no_iowait", p.is_feature_no_iowait()),
    ];
    UringSupport {
        available: true,
        error: None,
        features: features
            .iter()
            .map(|(n, s)| NamedFlag {
                name: n.to_string(),
                supported: *s,
            })
            .collect(),
        opcodes: OPCODES
            .iter()
            .map(|(n, code)| NamedFlag {
                name: n.to_string(),
                supported: probe.is_supported(*code),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every opcode the broker needs is one this tool asks the kernel about.
    #[test]
    fn needed_opcodes_are_probed() {
        for name in OPCODES_NEEDED {
            assert!(
                OPCODES.iter().any(|(n, _)| n == name),
                "{name} is not in the probe table"
            );
        }
        assert_eq!(
            UringSupport::unavailable("ENOSYS").missing_needed().len(),
            OPCODES_NEEDED.len()
        );
    }

    /// On a host with io_uring the probe finds the basic read/write opcodes.
    #[test]
    fn probes_this_kernel() {
        let support = probe_uring();
        if !support.available {
            eprintln!("io_uring unavailable here: {:?}", support.error);
            return;
        }
        let nop = support.opcodes.iter().find(|o| o.name == "NOP").unwrap();
        assert!(nop.supported, "NOP is supported by every kernel with io_uring");
    }
}
