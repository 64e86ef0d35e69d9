//! The proxy's seeded randomness: think times, stragglers and stalls.

use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

use crate::config::ThinkTime;

/// One think time drawn for a request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Think {
    pub(crate) time: Duration,
    pub(crate) straggler: bool,
}

/// Draws from one seeded generator shared by every connection.
pub(crate) struct Draws {
    think: ThinkTime,
    lognormal: Option<LogNormal<f64>>,
    rng: Mutex<StdRng>,
}

impl Draws {
    pub(crate) fn new(think: ThinkTime, seed: u64) -> Draws {
        let lognormal = (!think.median.is_zero())
            .then(|| LogNormal::new(think.median.as_secs_f64().ln(), think.sigma).ok())
            .flatten();
        Draws {
            think,
            lognormal,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// The think time of the next request.
    pub(crate) fn think(&self) -> Think {
        let mut rng = self.rng.lock();
        let base = self.lognormal.map_or(0.0, |d| d.sample(&mut *rng));
        let straggler = rng.random_bool(self.think.straggler_fraction);
        let secs = if straggler {
            base * self.think.straggler_factor
        } else {
            base
        };
        Think {
            time: Duration::from_secs_f64(secs),
            straggler,
        }
    }

    /// True with probability `p` (clamped to `0.0..=1.0`).
    pub(crate) fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().random_bool(p.min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(n: usize, think: ThinkTime) -> Vec<Think> {
        let d = Draws::new(think, 7);
        (0..n).map(|_| d.think()).collect()
    }

    #[test]
    fn the_median_and_the_straggler_fraction_are_what_was_asked() {
        let think = ThinkTime::lognormal(Duration::from_millis(10), 0.5).stragglers(0.02, 30.0);
        let all = draws(20_000, think);
        let stragglers = all.iter().filter(|t| t.straggler).count();
        assert!((300..=500).contains(&stragglers), "{stragglers} stragglers");
        let mut normal: Vec<f64> = all
            .iter()
            .filter(|t| !t.straggler)
            .map(|t| t.time.as_secs_f64())
            .collect();
        normal.sort_by(f64::total_cmp);
        let median = normal[normal.len() / 2];
        assert!((0.0095..0.0105).contains(&median), "median {median}");
        // A straggler is 30 times its draw: their median is about 300 ms.
        let mut slow: Vec<f64> = all
            .iter()
            .filter(|t| t.straggler)
            .map(|t| t.time.as_secs_f64())
            .collect();
        slow.sort_by(f64::total_cmp);
        let median = slow[slow.len() / 2];
        assert!((0.24..0.36).contains(&median), "straggler median {median}");
    }

    #[test]
    fn the_same_seed_draws_the_same_times_and_no_think_time_is_zero() {
        let think = ThinkTime::lognormal(Duration::from_millis(10), 1.0).stragglers(0.1, 5.0);
        assert_eq!(draws(100, think), draws(100, think));
        assert!(
            draws(10, ThinkTime::none())
                .iter()
                .all(|t| t.time.is_zero() && !t.straggler)
        );
        let constant = draws(10, ThinkTime::lognormal(Duration::from_millis(3), 0.0));
        assert!(
            constant
                .iter()
                .all(|t| t.time.abs_diff(Duration::from_millis(3)) < Duration::from_micros(1))
        );
    }
}
