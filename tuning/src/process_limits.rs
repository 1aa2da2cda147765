//! Resource limits, capabilities and memory, from `/proc/self/*` and `/proc/meminfo`.
//!
//! Every shard locks `io_memory_bytes` for io_uring buffers, so the memlock
//! limit (or CAP_IPC_LOCK, which lifts it) decides whether the broker starts.

use serde::{Deserialize, Serialize};

use crate::error::TuneError;

/// One rlimit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitValue {
    Unlimited,
    Value(u64),
}

impl LimitValue {
    fn parse(text: &str) -> Result<LimitValue, TuneError> {
        if text == "unlimited" {
            return Ok(LimitValue::Unlimited);
        }
        text.parse()
            .map(LimitValue::Value)
            .map_err(|e| TuneError::parse("/proc/self/limits", format!("{text}: {e}")))
    }

    /// Whether `amount` fits under this limit.
    pub fn allows(&self, amount: u64) -> bool {
        match self {
            LimitValue::Unlimited => true,
            LimitValue::Value(v) => amount <= *v,
        }
    }
}

impl std::fmt::Display for LimitValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitValue::Unlimited => f.write_str("unlimited"),
            LimitValue::Value(v) => write!(f, "{v}"),
        }
    }
}

/// The limits the broker runs into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLimits {
    pub memlock_soft_bytes: LimitValue,
    pub memlock_hard_bytes: LimitValue,
    pub open_files_soft: LimitValue,
    pub open_files_hard: LimitValue,
    /// CAP_IPC_LOCK in the effective set: memlock limits do not apply.
    pub cap_ipc_lock: bool,
}

/// Parses the memlock and open-files rows of /proc/self/limits and the
/// effective capabilities of /proc/self/status.
pub fn parse_process_limits(limits: &str, status: &str) -> Result<ProcessLimits, TuneError> {
    let row = |name: &str| -> Result<(LimitValue, LimitValue), TuneError> {
        let line = limits
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| TuneError::parse("/proc/self/limits", format!("no {name:?} row")))?;
        let mut values = line[name.len()..].split_whitespace();
        let mut next = || {
            values
                .next()
                .ok_or_else(|| TuneError::parse("/proc/self/limits", line.to_string()))
        };
        Ok((LimitValue::parse(next()?)?, LimitValue::parse(next()?)?))
    };
    let (memlock_soft_bytes, memlock_hard_bytes) = row("Max locked memory")?;
    let (open_files_soft, open_files_hard) = row("Max open files")?;
    Ok(ProcessLimits {
        memlock_soft_bytes,
        memlock_hard_bytes,
        open_files_soft,
        open_files_hard,
        cap_ipc_lock: parse_cap_ipc_lock(status)?,
    })
}

/// Bit of CAP_IPC_LOCK in the capability masks.
const CAP_IPC_LOCK_BIT: u32 = 14;

fn parse_cap_ipc_lock(status: &str) -> Result<bool, TuneError> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or_else(|| TuneError::parse("/proc/self/status", "no CapEff line"))?;
    let mask = u64::from_str_radix(hex.trim(), 16)
        .map_err(|e| TuneError::parse("/proc/self/status", e.to_string()))?;
    Ok(mask & (1 << CAP_IPC_LOCK_BIT) != 0)
}

/// Memory totals from /proc/meminfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemInfo {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
}

/// Parses /proc/meminfo (values are in KiB).
pub fn parse_meminfo(text: &str) -> Result<MemInfo, TuneError> {
    let field = |key: &str| -> Result<u64, TuneError> {
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(key))
            .ok_or_else(|| TuneError::parse("/proc/meminfo", format!("no {key} line")))?;
        let kib = line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok());
        kib.map(|k| k * 1024)
            .ok_or_else(|| TuneError::parse("/proc/meminfo", line.to_string()))
    };
    Ok(MemInfo {
        total_bytes: field("MemTotal")?,
        available_bytes: field("MemAvailable")?,
        swap_total_bytes: field("SwapTotal")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units
Max open files            20000                20000                files
Max locked memory         8388608              unlimited            bytes
";

    /// Rows are found by name, `unlimited` is its own value and CAP_IPC_LOCK is bit 14.
    #[test]
    fn parses_limits_and_capability() {
        let l = parse_process_limits(LIMITS, "Name:\tx\nCapEff:\t000001fffeffffff\n").unwrap();
        assert_eq!(l.memlock_soft_bytes, LimitValue::Value(8 << 20));
        assert_eq!(l.memlock_hard_bytes, LimitValue::Unlimited);
        assert_eq!(l.open_files_soft, LimitValue::Value(20000));
        assert!(l.cap_ipc_lock);
        let l = parse_process_limits(LIMITS, "CapEff:\t0000000000000000\n").unwrap();
        assert!(!l.cap_ipc_lock);
        assert!(parse_process_limits("Limit\n", "CapEff:\t0\n").is_err());
        assert!(LimitValue::Value(10).allows(10));
        assert!(!LimitValue::Value(10).allows(11));
    }

    /// KiB values become bytes.
    #[test]
    fn parses_meminfo() {
        let m = parse_meminfo("MemTotal:  1000 kB\nMemFree: 5 kB\nMemAvailable:  500 kB\nSwapTotal: 0 kB\n")
            .unwrap();
        assert_eq!(
            m,
            MemInfo {
                total_bytes: 1_024_000,
                available_bytes: 512_000,
                swap_total_bytes: 0
            }
        );
        assert!(parse_meminfo("MemTotal: 1 kB\n").is_err());
    }
}
