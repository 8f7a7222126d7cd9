//! Order statistics of a handful of samples.

use std::time::Duration;

use serde::Serialize;

/// min / median / p95 / p99 / max of a sample set, in the samples' unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    /// The middle sample; the mean of the two middle ones for an even count.
    pub median: f64,
    /// Nearest rank: the smallest sample with at least 95 % of the samples at or below it.
    pub p95: f64,
    /// Nearest rank, like `p95`: with fewer than 100 samples, the largest.
    pub p99: f64,
    pub max: f64,
    /// Every sample, in the order it was taken.
    pub samples: Vec<f64>,
}

impl Summary {
    /// `None` for an empty set.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        let nearest_rank = |percent: usize| sorted[(n * percent).div_ceil(100).max(1) - 1];
        Some(Summary {
            n,
            min: sorted[0],
            median,
            p95: nearest_rank(95),
            p99: nearest_rank(99),
            max: sorted[n - 1],
            samples: samples.to_vec(),
        })
    }

    /// Durations in milliseconds.
    pub fn of_ms(durations: &[Duration]) -> Option<Summary> {
        Summary::of(&durations.iter().map(|d| ms(*d)).collect::<Vec<_>>())
    }
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Shuffles `items` in place, the same way for the same `seed` (Fisher–Yates on splitmix64):
/// an order for measurements that varies from round to round, yet is the same in every run.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_counts() {
        let odd = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((odd.min, odd.median, odd.max), (1.0, 3.0, 5.0));
        assert_eq!(odd.samples, vec![5.0, 1.0, 3.0], "samples keep their order");
        let even = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(even.median, 2.5);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn p95_and_p99_are_the_nearest_rank() {
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(Summary::of(&twenty).unwrap().p95, 19.0);
        let seven: Vec<f64> = (1..=7).map(f64::from).collect();
        assert_eq!(Summary::of(&seven).unwrap().p95, 7.0);
        assert_eq!(Summary::of(&[42.0]).unwrap().p95, 42.0);
        let two_hundred: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(Summary::of(&two_hundred).unwrap().p99, 198.0);
        assert_eq!(Summary::of(&twenty).unwrap().p99, 20.0);
    }

    #[test]
    fn a_shuffle_depends_on_its_seed_only() {
        let shuffled = |seed| {
            let mut items: Vec<u32> = (0..10).collect();
            shuffle(&mut items, seed);
            items
        };
        assert_eq!(shuffled(3), shuffled(3));
        assert_ne!(shuffled(3), shuffled(4));
        let mut sorted = shuffled(3);
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn durations_become_milliseconds() {
        let summary = Summary::of_ms(&[Duration::from_micros(1500), Duration::from_millis(3)]).unwrap();
        assert_eq!(summary.median, 2.25);
    }
}
