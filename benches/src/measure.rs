//! Batch timing with [`Instant`], calibration, and the statistics the report shows.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Runs `n` operations of one subject in one case.
pub type Batch<'a> = Box<dyn FnMut(u64) + 'a>;

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Repetitions; each runs every subject once, round-robin.
    pub reps: usize,
    /// The time one timed batch should take (its size is calibrated to it).
    pub batch_time: Duration,
    /// The time one subject's samples in one repetition should take.
    pub rep_time: Duration,
    /// Fewest samples per subject and repetition.
    pub min_samples: usize,
    /// Most samples per subject and repetition.
    pub max_samples: usize,
    /// Largest batch (operations).
    pub max_batch: u64,
    /// Untimed warm-up per subject before the first repetition.
    pub warmup: Duration,
    /// How long both sides of a contended case run flat out, per repetition.
    pub contended_time: Duration,
    /// Untimed contended warm-up run per subject.
    pub contended_warmup: Duration,
    /// Samples per subject and repetition of a sampled case (`takeover_after_kill`).
    pub sampled: usize,
}

impl Plan {
    /// `--quick`: finishes the whole harness in about a minute on 2 cores (CI runs it).
    pub fn quick() -> Self {
        Self {
            reps: 5,
            batch_time: Duration::from_micros(500),
            rep_time: Duration::from_millis(25),
            min_samples: 3,
            max_samples: 25,
            max_batch: 1_000_000,
            warmup: Duration::from_millis(20),
            contended_time: Duration::from_millis(200),
            contended_warmup: Duration::from_millis(50),
            sampled: 3,
        }
    }

    /// The default, full run.
    pub fn full() -> Self {
        Self {
            reps: 9,
            batch_time: Duration::from_millis(1),
            rep_time: Duration::from_millis(100),
            min_samples: 5,
            max_samples: 101,
            max_batch: 10_000_000,
            warmup: Duration::from_millis(100),
            contended_time: Duration::from_millis(1000),
            contended_warmup: Duration::from_millis(200),
            sampled: 7,
        }
    }
}

/// Times one batch of `n` operations; returns nanoseconds per operation.
pub fn time_batch(run: &mut Batch<'_>, n: u64) -> f64 {
    let start = Instant::now();
    run(black_box(n));
    let elapsed = start.elapsed();
    elapsed.as_nanos() as f64 / n.max(1) as f64
}

/// Warms `run` up for about `warmup`, then finds the batch size whose run takes about
/// `plan.batch_time`. Returns the batch size and its estimated time per operation (ns).
pub fn calibrate(run: &mut Batch<'_>, plan: &Plan) -> (u64, f64) {
    let started = Instant::now();
    let mut n: u64 = 1;
    let mut per_op;
    loop {
        per_op = time_batch(run, n);
        let took = per_op * n as f64;
        let target = plan.batch_time.as_nanos() as f64;
        if took >= target || n >= plan.max_batch {
            if started.elapsed() >= plan.warmup {
                break;
            }
            continue;
        }
        let grow = if took <= 0.0 {
            100.0
        } else {
            (target / took).clamp(2.0, 100.0)
        };
        n = ((n as f64 * grow).ceil() as u64).min(plan.max_batch);
    }
    (n, per_op)
}

/// How many samples one repetition of a subject takes, given its batch's time.
pub fn samples_per_rep(plan: &Plan, batch: u64, per_op_ns: f64) -> usize {
    let batch_ns = (batch as f64 * per_op_ns).max(1.0);
    let fit = (plan.rep_time.as_nanos() as f64 / batch_ns) as usize;
    fit.clamp(plan.min_samples, plan.max_samples)
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// A result: the median of the repetition medians and their spread (min–max).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The median of the repetition medians.
    pub median: f64,
    /// The smallest repetition median.
    pub lo: f64,
    /// The largest repetition median.
    pub hi: f64,
    /// How many repetitions went into it.
    pub reps: usize,
}

impl Summary {
    /// Summarises the per-repetition medians; `None` when there are none.
    pub fn of(rep_medians: &[f64]) -> Option<Self> {
        let valid: Vec<f64> = rep_medians
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        if valid.is_empty() {
            return None;
        }
        Some(Self {
            median: median(&valid),
            lo: valid.iter().copied().fold(f64::INFINITY, f64::min),
            hi: valid.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            reps: valid.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let s = Summary::of(&[5.0, 1.0, 3.0]).expect("non-empty");
        assert_eq!((s.median, s.lo, s.hi, s.reps), (3.0, 1.0, 5.0, 3));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn calibration_reaches_the_batch_time() {
        let plan = Plan {
            batch_time: Duration::from_micros(200),
            warmup: Duration::ZERO,
            ..Plan::quick()
        };
        let mut x = 0u64;
        let mut run: Batch<'_> = Box::new(|n| {
            for i in 0..n {
                x = black_box(x.wrapping_add(i));
            }
        });
        let (n, per_op) = calibrate(&mut run, &plan);
        assert!(n > 1);
        assert!(per_op > 0.0);
        assert!(samples_per_rep(&plan, n, per_op) >= plan.min_samples);
    }
}
