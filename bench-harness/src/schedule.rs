//! The open-loop send schedule: when each record is *meant* to be sent.
//!
//! A schedule is a list of [`Phase`]s, each a constant rate for a duration
//! (a burst is a phase at several times the base rate). Record `k` of a phase
//! is due at `phase_start + floor(k * interval_ps / 1000)` ns, where
//! `interval_ps` is the inter-send gap in picoseconds; integer arithmetic
//! keeps [`OpenLoopSchedule::next_due_ns`] and [`OpenLoopSchedule::due_count`]
//! in exact agreement and free of drift over long runs.
//!
//! Open loop is what makes latency honest: the producer sends record `k` at
//! its due time whether or not earlier records have been acknowledged, and the
//! latency recorded is `ack_time - due_time`. A broker stall therefore shows up
//! in every record that was due during the stall (coordinated omission is
//! avoided by construction), and a producer that falls behind its schedule
//! is visible as send lag, never hidden as a lower offered rate.
//!
//! Times are nanoseconds since the run's epoch; the schedule never reads a
//! clock.

use crate::error::BenchError;

/// Highest rate a phase may ask for (records per second, per schedule).
pub const RATE_PER_S_MAX: f64 = 100_000_000.0;
const PS_PER_S: f64 = 1e12;

/// A constant offered rate for a duration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    /// Records per second; 0 means a pause (nothing due).
    pub rate_per_s: f64,
    pub duration_ns: u64,
}

#[derive(Clone, Debug)]
struct CompiledPhase {
    start_ns: u64,
    duration_ns: u64,
    /// Gap between sends in picoseconds; 0 for a pause.
    interval_ps: u64,
    /// Records due in this phase.
    records: u64,
}

/// An iterator over due times, plus "how many were due by `t`".
#[derive(Clone, Debug)]
pub struct OpenLoopSchedule {
    phases: Vec<CompiledPhase>,
    phase: usize,
    k_in_phase: u64,
}

impl OpenLoopSchedule {
    /// Builds a schedule that starts `offset_ns` after the epoch (used to
    /// interleave producers that share a rate).
    pub fn new(phases: &[Phase], offset_ns: u64) -> Result<Self, BenchError> {
        let mut compiled = Vec::with_capacity(phases.len());
        let mut start_ns = offset_ns;
        for phase in phases {
            compiled.push(compile(phase, start_ns)?);
            start_ns += phase.duration_ns;
        }
        Ok(Self {
            phases: compiled,
            phase: 0,
            k_in_phase: 0,
        })
    }

    /// Splits `phases`, starting at `start_ns`, among `producers` schedules
    /// whose sends interleave: producer `i` runs at `rate / producers`,
    /// shifted by `i / rate`.
    pub fn split(phases: &[Phase], producers: usize, start_ns: u64) -> Result<Vec<Self>, BenchError> {
        if producers == 0 {
            return Err(BenchError::InvalidWorkload("producers must be at least 1".into()));
        }
        let n = producers as f64;
        let share: Vec<Phase> = phases
            .iter()
            .map(|p| Phase {
                rate_per_s: p.rate_per_s / n,
                duration_ns: p.duration_ns,
            })
            .collect();
        let base_rate = phases
            .iter()
            .map(|p| p.rate_per_s)
            .find(|r| *r > 0.0)
            .unwrap_or(1.0);
        (0..producers)
            .map(|i| Self::new(&share, start_ns + (i as f64 * 1e9 / base_rate) as u64))
            .collect()
    }

    /// Due time of the next record, or `None` when the schedule is over.
    pub fn next_due_ns(&mut self) -> Option<u64> {
        while let Some(phase) = self.phases.get(self.phase) {
            if self.k_in_phase < phase.records {
                let due = phase.start_ns + offset_ns(self.k_in_phase, phase.interval_ps);
                self.k_in_phase += 1;
                return Some(due);
            }
            self.phase += 1;
            self.k_in_phase = 0;
        }
        None
    }

    /// Number of records due at or before `now_ns`, whatever has been taken.
    pub fn due_count(&self, now_ns: u64) -> u64 {
        let mut total = 0;
        for phase in &self.phases {
            if now_ns < phase.start_ns {
                break;
            }
            total += due_in_phase(phase, now_ns - phase.start_ns);
        }
        total
    }

    /// Every record the schedule will ever make due.
    pub fn total_records(&self) -> u64 {
        self.phases.iter().map(|p| p.records).sum()
    }

    /// End of the last phase, in ns since the epoch.
    pub fn end_ns(&self) -> u64 {
        self.phases.last().map_or(0, |p| p.start_ns + p.duration_ns)
    }
}

fn compile(phase: &Phase, start_ns: u64) -> Result<CompiledPhase, BenchError> {
    let rate = phase.rate_per_s;
    if !(0.0..=RATE_PER_S_MAX).contains(&rate) {
        return Err(BenchError::InvalidWorkload(format!(
            "rate {rate}/s is outside 0..={RATE_PER_S_MAX}"
        )));
    }
    if rate == 0.0 {
        return Ok(CompiledPhase {
            start_ns,
            duration_ns: phase.duration_ns,
            interval_ps: 0,
            records: 0,
        });
    }
    // Rounding the gap up keeps the offered rate at or just below the target.
    let interval_ps = (PS_PER_S / rate).ceil().max(1.0) as u64;
    // k is due in the phase while floor(k * ips / 1000) < duration, i.e. k * ips < 1000 * duration.
    let span_ps = u128::from(phase.duration_ns) * 1000;
    let records = span_ps.div_ceil(u128::from(interval_ps)) as u64;
    Ok(CompiledPhase {
        start_ns,
        duration_ns: phase.duration_ns,
        interval_ps,
        records,
    })
}

fn offset_ns(k: u64, interval_ps: u64) -> u64 {
    (u128::from(k) * u128::from(interval_ps) / 1000) as u64
}

/// Records `k` of the phase with `floor(k * ips / 1000) <= elapsed`, i.e.
/// `k * ips <= 1000 * elapsed + 999`.
fn due_in_phase(phase: &CompiledPhase, elapsed_ns: u64) -> u64 {
    if phase.interval_ps == 0 {
        return 0;
    }
    let reach_ps = u128::from(elapsed_ns) * 1000 + 999;
    let due = (reach_ps / u128::from(phase.interval_ps)) as u64 + 1;
    due.min(phase.records)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn steady_rate_spaces_sends_evenly() {
        // Proves 1000/s for one second yields 1000 sends exactly 1 ms apart, starting at 0.
        let mut s = OpenLoopSchedule::new(
            &[Phase {
                rate_per_s: 1000.0,
                duration_ns: SEC,
            }],
            0,
        )
        .unwrap();
        let dues: Vec<u64> = std::iter::from_fn(|| s.next_due_ns()).collect();
        assert_eq!(dues.len(), 1000);
        assert_eq!(dues[0], 0);
        assert_eq!(dues[1], 1_000_000);
        assert_eq!(dues[999], 999_000_000);
    }

    #[test]
    fn burst_phase_multiplies_the_rate_then_returns() {
        // Proves a 1 s x4 burst between two 1 s phases at 100/s sends 100 + 400 + 100 records.
        let phases = [
            Phase {
                rate_per_s: 100.0,
                duration_ns: SEC,
            },
            Phase {
                rate_per_s: 400.0,
                duration_ns: SEC,
            },
            Phase {
                rate_per_s: 100.0,
                duration_ns: SEC,
            },
        ];
        let mut s = OpenLoopSchedule::new(&phases, 0).unwrap();
        assert_eq!(s.total_records(), 600);
        let dues: Vec<u64> = std::iter::from_fn(|| s.next_due_ns()).collect();
        let in_burst = dues.iter().filter(|d| (SEC..2 * SEC).contains(*d)).count();
        assert_eq!(in_burst, 400);
        assert_eq!(dues[100], SEC);
        assert_eq!(dues[101], SEC + 2_500_000);
        assert_eq!(*dues.last().unwrap(), 3 * SEC - 10_000_000);
    }

    #[test]
    fn due_count_agrees_with_the_iterator() {
        // Proves due_count(t) equals the number of iterated due times <= t, for awkward rates.
        let phases = [
            Phase {
                rate_per_s: 333.0,
                duration_ns: SEC / 3,
            },
            Phase {
                rate_per_s: 0.0,
                duration_ns: SEC / 7,
            },
            Phase {
                rate_per_s: 7777.7,
                duration_ns: SEC / 2,
            },
        ];
        let s = OpenLoopSchedule::new(&phases, 12_345).unwrap();
        let mut it = s.clone();
        let dues: Vec<u64> = std::iter::from_fn(|| it.next_due_ns()).collect();
        assert_eq!(dues.len() as u64, s.total_records());
        for t in (0..s.end_ns() + 10).step_by(99_991) {
            let expected = dues.iter().filter(|d| **d <= t).count() as u64;
            assert_eq!(s.due_count(t), expected, "at t={t}");
        }
        for &d in &dues {
            assert_eq!(s.due_count(d), dues.iter().filter(|x| **x <= d).count() as u64);
        }
    }

    #[test]
    fn no_drift_over_a_long_run() {
        // Proves a non-integer interval (3 per s) does not accumulate rounding error over an hour.
        let s = OpenLoopSchedule::new(
            &[Phase {
                rate_per_s: 3.0,
                duration_ns: 3600 * SEC,
            }],
            0,
        )
        .unwrap();
        assert_eq!(s.total_records(), 10_800);
        assert_eq!(s.due_count(3600 * SEC - 1), 10_800);
        assert_eq!(s.due_count(1800 * SEC), 5_400);
        let mut it = s.clone();
        let last = std::iter::from_fn(|| it.next_due_ns()).last().unwrap();
        assert!(last.abs_diff(3600 * SEC - SEC / 3) < 1_000, "last due {last}");
    }

    #[test]
    fn split_producers_interleave_and_keep_the_total_rate() {
        // Proves 4 producers sharing 1000/s each send 250/s, offset by 1 ms from each other.
        let phases = [Phase {
            rate_per_s: 1000.0,
            duration_ns: SEC,
        }];
        let mut parts = OpenLoopSchedule::split(&phases, 4, 7).unwrap();
        let firsts: Vec<u64> = parts.iter_mut().map(|p| p.next_due_ns().unwrap()).collect();
        assert_eq!(firsts, vec![7, 1_000_007, 2_000_007, 3_000_007]);
        let total: u64 = parts.iter().map(|p| p.total_records()).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn rejects_negative_and_absurd_rates() {
        // Proves rates outside 0..=RATE_PER_S_MAX are refused as invalid workloads.
        assert!(OpenLoopSchedule::new(
            &[Phase {
                rate_per_s: -1.0,
                duration_ns: SEC
            }],
            0
        )
        .is_err());
        assert!(OpenLoopSchedule::new(
            &[Phase {
                rate_per_s: 1e12,
                duration_ns: SEC
            }],
            0
        )
        .is_err());
        assert!(OpenLoopSchedule::split(&[], 0, 0).is_err());
    }
}
