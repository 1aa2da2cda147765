//! CPU time of the harness itself and of the broker it started, read from
//! `/proc/<pid>/stat`, so a report says what share of the machine the
//! client and the broker used while the figures were measured (on a
//! shared machine, CPU seconds per record stay comparable when wall-clock
//! figures do not).

use serde::Serialize;

/// CPU seconds (user + system) one process has used so far, or `None`
/// when `/proc` cannot tell (another OS, a process that is gone).
pub fn process_cpu_s(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    parse_stat_cpu_ticks(&text).map(|ticks| ticks as f64 / ticks_per_s())
}

/// `/proc` counts CPU time in USER_HZ ticks, which Linux fixes at 100 per
/// second for every architecture's user ABI (`sysconf(_SC_CLK_TCK)`).
fn ticks_per_s() -> f64 {
    100.0
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may hold spaces and parentheses: fields are
/// counted after its last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name, field 3 (state) is the first; utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU used over a measured window, in cores (CPU seconds per second).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CpuShare {
    pub window_s: f64,
    /// The harness process: producers, consumers and their clients.
    pub client_cores: f64,
    /// The embedded broker; `None` for an external one.
    pub broker_cores: Option<f64>,
}

/// A reading at one moment: (seconds since the epoch, client CPU s, broker CPU s).
#[derive(Clone, Copy, Debug)]
pub struct CpuReading {
    pub at_s: f64,
    pub client_s: f64,
    pub broker_s: Option<f64>,
}

impl CpuReading {
    pub fn take(at_s: f64, broker_pid: Option<u32>) -> Option<Self> {
        Some(CpuReading {
            at_s,
            client_s: process_cpu_s(None)?,
            broker_s: broker_pid.and_then(|pid| process_cpu_s(Some(pid))),
        })
    }

    /// The share used between `self` and a later reading.
    pub fn share_until(&self, end: &CpuReading) -> Option<CpuShare> {
        let window_s = end.at_s - self.at_s;
        if window_s <= 0.0 {
            return None;
        }
        Some(CpuShare {
            window_s,
            client_cores: (end.client_s - self.client_s) / window_s,
            broker_cores: match (self.broker_s, end.broker_s) {
                (Some(a), Some(b)) if b >= a => Some((b - a) / window_s),
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_hostile_name() {
        let line = "4242 (sh) (a b) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 1000 0 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    /// Burning CPU in this process shows up in its own reading.
    #[test]
    fn own_cpu_grows_while_busy() {
        let before = CpuReading::take(0.0, None).expect("/proc/self/stat");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = CpuReading::take(start.elapsed().as_secs_f64(), None).expect("/proc/self/stat");
        let share = before.share_until(&after).expect("a window");
        assert!(share.client_cores > 0.0, "{share:?}");
        assert_eq!(share.broker_cores, None);
    }
}
