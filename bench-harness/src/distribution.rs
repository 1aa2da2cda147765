//! Record sizes and keys: the shapes of a workload's data.
//!
//! Both are pure functions of a random source so a run is reproducible from
//! its seed. Zipf keys use a precomputed CDF over `keys` ranks (rank 1 the
//! hottest, probability proportional to `1 / rank^exponent`) and a binary
//! search, so drawing a key costs O(log keys) and no allocation. At most
//! [`KEYS_MAX`] distinct keys.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// Largest key space a workload may ask for.
pub const KEYS_MAX: u64 = 10_000_000;

/// How record sizes vary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SizeDistribution {
    /// Every record is `record_bytes`.
    Fixed,
    /// Uniform between `record_bytes_min` and `record_bytes`.
    Uniform,
    /// Exponential with mean `record_bytes`, clamped to `[record_bytes_min, 8 x mean]`.
    Exponential,
}

/// How keys are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KeyDistribution {
    /// No key: the producer spreads records over partitions.
    None,
    /// Uniform over `keys` distinct keys.
    Uniform,
    /// Zipf over `keys` distinct keys with `zipf_exponent`.
    Zipf,
}

/// Draws record sizes.
#[derive(Clone, Debug)]
pub struct SizeSampler {
    distribution: SizeDistribution,
    min: usize,
    mean: usize,
}

impl SizeSampler {
    pub fn new(distribution: SizeDistribution, min: usize, mean: usize) -> Self {
        Self {
            distribution,
            min: min.min(mean),
            mean,
        }
    }

    /// The size of the next record.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        match self.distribution {
            SizeDistribution::Fixed => self.mean,
            SizeDistribution::Uniform => rng.gen_range(self.min..=self.mean),
            SizeDistribution::Exponential => {
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                let x = -(self.mean as f64) * u.ln();
                (x.round() as usize).clamp(self.min, self.mean * 8)
            }
        }
    }
}

/// Draws keys.
#[derive(Clone, Debug)]
pub struct KeySampler {
    distribution: KeyDistribution,
    keys: u64,
    /// Zipf only: `cdf[i]` = P(rank <= i + 1).
    cdf: Vec<f64>,
}

impl KeySampler {
    pub fn new(distribution: KeyDistribution, keys: u64, exponent: f64) -> Result<Self, BenchError> {
        if distribution != KeyDistribution::None && !(1..=KEYS_MAX).contains(&keys) {
            return Err(BenchError::InvalidWorkload(format!(
                "keys must be in 1..={KEYS_MAX}, got {keys}"
            )));
        }
        let cdf = match distribution {
            KeyDistribution::Zipf => zipf_cdf(keys, exponent)?,
            _ => Vec::new(),
        };
        Ok(Self {
            distribution,
            keys,
            cdf,
        })
    }

    /// The next key as a zero-based index, or `None` for keyless records.
    pub fn sample_index(&self, rng: &mut impl Rng) -> Option<u64> {
        match self.distribution {
            KeyDistribution::None => None,
            KeyDistribution::Uniform => Some(rng.gen_range(0..self.keys)),
            KeyDistribution::Zipf => Some(self.zipf_index(rng.gen_range(0.0..1.0))),
        }
    }

    /// The key bytes for an index: stable across runs (`k<index>`).
    pub fn key_bytes(index: u64) -> Vec<u8> {
        format!("k{index}").into_bytes()
    }

    /// The zero-based rank whose CDF interval holds `u` in `[0, 1)`.
    pub fn zipf_index(&self, u: f64) -> u64 {
        let at = self.cdf.partition_point(|c| *c <= u);
        (at as u64).min(self.keys - 1)
    }
}

fn zipf_cdf(keys: u64, exponent: f64) -> Result<Vec<f64>, BenchError> {
    if !(exponent > 0.0 && exponent <= 10.0) {
        return Err(BenchError::InvalidWorkload(format!(
            "zipf_exponent must be in (0, 10], got {exponent}"
        )));
    }
    let weights: Vec<f64> = (1..=keys).map(|rank| (rank as f64).powf(-exponent)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    Ok(weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zipf_cdf_intervals_match_known_probabilities() {
        // Proves Zipf(s=1) over 3 keys gives ranks with probabilities 6/11, 3/11, 2/11.
        let s = KeySampler::new(KeyDistribution::Zipf, 3, 1.0).unwrap();
        assert_eq!(s.zipf_index(0.0), 0);
        assert_eq!(s.zipf_index(6.0 / 11.0 - 1e-9), 0);
        assert_eq!(s.zipf_index(6.0 / 11.0 + 1e-9), 1);
        assert_eq!(s.zipf_index(9.0 / 11.0 + 1e-9), 2);
        assert_eq!(s.zipf_index(0.999_999), 2);
    }

    #[test]
    fn zipf_sampling_is_skewed_as_expected() {
        // Proves the hottest of 100 keys at s=1 gets about 1/H(100) = 19.3% of draws.
        let seed = 42;
        println!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let s = KeySampler::new(KeyDistribution::Zipf, 100, 1.0).unwrap();
        let n = 100_000;
        let hot = (0..n).filter(|_| s.sample_index(&mut rng) == Some(0)).count();
        let share = hot as f64 / n as f64;
        assert!((share - 0.1928).abs() < 0.01, "share {share}");
    }

    #[test]
    fn sizes_stay_within_their_bounds() {
        // Proves every distribution draws sizes inside its documented range.
        let seed = 7;
        println!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let fixed = SizeSampler::new(SizeDistribution::Fixed, 24, 1024);
        let uniform = SizeSampler::new(SizeDistribution::Uniform, 100, 200);
        let exp = SizeSampler::new(SizeDistribution::Exponential, 24, 1024);
        let mut exp_sum = 0;
        for _ in 0..10_000 {
            assert_eq!(fixed.sample(&mut rng), 1024);
            assert!((100..=200).contains(&uniform.sample(&mut rng)));
            let e = exp.sample(&mut rng);
            assert!((24..=8192).contains(&e));
            exp_sum += e;
        }
        let mean = exp_sum as f64 / 10_000.0;
        assert!((mean - 1024.0).abs() < 60.0, "mean {mean}");
    }

    #[test]
    fn bad_key_settings_are_rejected() {
        // Proves an empty key space and a non-positive exponent are invalid workloads.
        assert!(KeySampler::new(KeyDistribution::Uniform, 0, 1.0).is_err());
        assert!(KeySampler::new(KeyDistribution::Zipf, 10, 0.0).is_err());
        assert!(KeySampler::new(KeyDistribution::None, 0, 0.0).is_ok());
    }
}
