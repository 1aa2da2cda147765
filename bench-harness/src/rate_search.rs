//! Max-rate search: the highest offered rate at which the backlog stays flat.
//!
//! "Max throughput" measured by blasting records as fast as possible is the
//! rate at which queues grow without bound, not a rate anyone can run at.
//! The sustainable rate is the highest open-loop rate whose backlog (records
//! due by the schedule but not yet acknowledged, or produced but not yet
//! consumed) does not grow over a trial.
//!
//! [`RateSearch`] is sans-IO: the driver runs a trial at the rate it is told,
//! feeds `(time, backlog)` samples, and asks for the next step. A trial is
//! sustainable when the least-squares slope of the backlog, over the trial
//! minus its settling head, is at most `slope_tolerance` of the offered rate.
//! The search doubles the rate until a trial fails, then bisects between the
//! last sustainable and the first unsustainable rate until they are within
//! `precision` of each other (or `trials_max` is spent), and answers the last
//! sustainable rate.

use serde::Serialize;

/// Settings of a search.
#[derive(Clone, Debug, Serialize)]
pub struct RateSearchConfig {
    /// First rate tried, records per second.
    pub rate_start_per_s: f64,
    /// Never offer more than this; reaching it sustainably ends the search.
    pub rate_max_per_s: f64,
    /// Below this rate the search gives up and reports 0.
    pub rate_min_per_s: f64,
    /// Length of one trial.
    pub trial_ns: u64,
    /// Share of each trial (from its start) ignored while queues settle.
    pub settle_fraction: f64,
    /// Largest backlog growth, as a share of the offered rate, still "flat".
    pub slope_tolerance: f64,
    /// Stop when `(bad - good) / bad` is at most this.
    pub precision: f64,
    /// Upper bound on trials, whatever the precision reached.
    pub trials_max: u32,
}

/// What the driver should do next.
#[derive(Clone, Debug, PartialEq)]
pub enum SearchStep {
    /// Run a trial offering this many records per second.
    Trial { rate_per_s: f64 },
    /// The search is over.
    Done(SearchOutcome),
}

/// The answer of a search and how it got there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchOutcome {
    /// Highest rate found sustainable; 0 if none was.
    pub sustainable_rate_per_s: f64,
    /// True when `rate_max_per_s` itself was sustainable (the true limit is higher).
    pub capped_by_rate_max: bool,
    pub trials: Vec<TrialVerdict>,
}

/// One finished trial.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrialVerdict {
    pub rate_per_s: f64,
    /// Backlog growth in records per second over the judged part of the trial.
    pub backlog_slope_per_s: f64,
    pub samples: usize,
    pub sustainable: bool,
}

/// The search state machine.
#[derive(Clone, Debug)]
pub struct RateSearch {
    config: RateSearchConfig,
    rate_per_s: f64,
    good_per_s: Option<f64>,
    bad_per_s: Option<f64>,
    samples: Vec<(u64, f64)>,
    trials: Vec<TrialVerdict>,
    done: Option<SearchOutcome>,
}

impl RateSearch {
    pub fn new(config: RateSearchConfig) -> Self {
        let rate_per_s = config.rate_start_per_s.min(config.rate_max_per_s);
        Self {
            config,
            rate_per_s,
            good_per_s: None,
            bad_per_s: None,
            samples: Vec::new(),
            trials: Vec::new(),
            done: None,
        }
    }

    /// The step the driver should take now.
    pub fn step(&self) -> SearchStep {
        match &self.done {
            Some(outcome) => SearchStep::Done(outcome.clone()),
            None => SearchStep::Trial {
                rate_per_s: self.rate_per_s,
            },
        }
    }

    /// Trials judged so far.
    pub fn trials(&self) -> &[TrialVerdict] {
        &self.trials
    }

    /// Records the backlog observed `at_ns` after the current trial started.
    pub fn observe(&mut self, at_ns: u64, backlog_records: u64) {
        self.samples.push((at_ns, backlog_records as f64));
    }

    /// Judges the current trial from its samples and decides the next step.
    pub fn finish_trial(&mut self) -> SearchStep {
        if self.done.is_some() {
            return self.step();
        }
        let verdict = self.judge();
        self.samples.clear();
        let sustainable = verdict.sustainable;
        self.trials.push(verdict);
        if sustainable {
            self.good_per_s = Some(self.rate_per_s);
        } else {
            self.bad_per_s = Some(self.rate_per_s);
        }
        self.advance();
        self.step()
    }

    fn judge(&self) -> TrialVerdict {
        let settle_ns = (self.config.trial_ns as f64 * self.config.settle_fraction) as u64;
        let judged: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|(t, _)| *t >= settle_ns)
            .map(|(t, b)| (*t as f64 / 1e9, *b))
            .collect();
        // Fewer than three points cannot tell growth from noise: count it as a failure.
        let slope = least_squares_slope(&judged).unwrap_or(f64::INFINITY);
        let sustainable = judged.len() >= 3 && slope <= self.config.slope_tolerance * self.rate_per_s;
        TrialVerdict {
            rate_per_s: self.rate_per_s,
            backlog_slope_per_s: slope,
            samples: judged.len(),
            sustainable,
        }
    }

    fn advance(&mut self) {
        let c = &self.config;
        let next = match (self.good_per_s, self.bad_per_s) {
            (Some(good), None) if good >= c.rate_max_per_s => return self.finish(good, true),
            (Some(good), None) => (good * 2.0).min(c.rate_max_per_s),
            (None, Some(bad)) if bad / 2.0 < c.rate_min_per_s => return self.finish(0.0, false),
            (None, Some(bad)) => bad / 2.0,
            (Some(good), Some(bad)) if (bad - good) / bad <= c.precision => return self.finish(good, false),
            (Some(good), Some(bad)) => (good + bad) / 2.0,
            (None, None) => unreachable!("advance runs after a trial was judged"),
        };
        if self.trials.len() as u32 >= c.trials_max {
            return self.finish(self.good_per_s.unwrap_or(0.0), false);
        }
        self.rate_per_s = next;
    }

    fn finish(&mut self, rate: f64, capped: bool) {
        self.done = Some(SearchOutcome {
            sustainable_rate_per_s: rate,
            capped_by_rate_max: capped,
            trials: self.trials.clone(),
        });
    }
}

/// Slope of the least-squares line through `points` (x, y); `None` for
/// fewer than two points or when every x is the same.
pub fn least_squares_slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    if sxx == 0.0 {
        return None;
    }
    Some(sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn config() -> RateSearchConfig {
        RateSearchConfig {
            rate_start_per_s: 1_000.0,
            rate_max_per_s: 10_000_000.0,
            rate_min_per_s: 10.0,
            trial_ns: 2_000_000_000,
            settle_fraction: 0.25,
            slope_tolerance: 0.02,
            precision: 0.02,
            trials_max: 40,
        }
    }

    /// Drives `search` against a model system that completes `capacity` records/s:
    /// its backlog grows at `rate - capacity` when over capacity, plus bounded noise.
    fn run_against(mut search: RateSearch, capacity: f64, seed: u64) -> SearchOutcome {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        loop {
            match search.step() {
                SearchStep::Done(outcome) => return outcome,
                SearchStep::Trial { rate_per_s } => {
                    let standing = rate_per_s * 0.001; // records in flight at ~1 ms latency
                    for i in 0..=40u64 {
                        let t_s = i as f64 * 0.05;
                        let growth = (rate_per_s - capacity).max(0.0) * t_s;
                        let noise = rng.gen_range(0.0..=standing.max(1.0));
                        search.observe((t_s * 1e9) as u64, (standing + growth + noise) as u64);
                    }
                    search.finish_trial();
                }
            }
        }
    }

    #[test]
    fn finds_the_capacity_of_a_model_system() {
        // Proves the search lands within 4% below a known capacity, and above it by no more
        // than the slope tolerance allows.
        let seed = 0x5eed_0001;
        println!("seed {seed:#x}");
        let ceiling = 1.0 / (1.0 - config().slope_tolerance) * 1.001;
        for capacity in [3_000.0, 47_000.0, 250_000.0, 1_234_567.0] {
            let outcome = run_against(RateSearch::new(config()), capacity, seed);
            let found = outcome.sustainable_rate_per_s;
            assert!(found <= capacity * ceiling, "capacity {capacity}: found {found}");
            assert!(found >= capacity * 0.96, "capacity {capacity}: found {found}");
            assert!(!outcome.capped_by_rate_max);
        }
    }

    #[test]
    fn stops_at_rate_max_when_everything_is_sustainable() {
        // Proves a system faster than rate_max yields rate_max, flagged as capped.
        let mut c = config();
        c.rate_max_per_s = 20_000.0;
        let outcome = run_against(RateSearch::new(c), 1e9, 7);
        assert_eq!(outcome.sustainable_rate_per_s, 20_000.0);
        assert!(outcome.capped_by_rate_max);
        let rates: Vec<f64> = outcome.trials.iter().map(|t| t.rate_per_s).collect();
        assert_eq!(
            rates,
            vec![1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0, 20_000.0]
        );
    }

    #[test]
    fn reports_zero_when_nothing_is_sustainable() {
        // Proves a system slower than rate_min yields 0 rather than a made-up rate.
        let outcome = run_against(RateSearch::new(config()), 1.0, 9);
        assert_eq!(outcome.sustainable_rate_per_s, 0.0);
        assert!(outcome.trials.iter().all(|t| !t.sustainable));
    }

    #[test]
    fn a_trial_without_enough_samples_is_a_failure() {
        // Proves a trial judged on fewer than three settled samples is not called sustainable.
        let mut search = RateSearch::new(config());
        search.observe(1_900_000_000, 5);
        search.finish_trial();
        assert!(!search.trials[0].sustainable);
    }

    #[test]
    fn least_squares_of_a_known_line() {
        // Proves the slope of y = 3x + 2 is 3, and degenerate inputs give None.
        let pts: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 2.0)).collect();
        assert!((least_squares_slope(&pts).unwrap() - 3.0).abs() < 1e-12);
        assert_eq!(least_squares_slope(&[(1.0, 1.0)]), None);
        assert_eq!(least_squares_slope(&[(1.0, 1.0), (1.0, 5.0)]), None);
    }
}
