//! Copies of a series as another collector could have recorded it: with gaps, with samples
//! lost here and there, with late or early timestamps, at irregular intervals, with missed
//! samples written as `nan`, or with a large constant part. Scoring such copies of a labelled
//! corpus checks that the detector's defaults hold on series shaped unlike the ones they were
//! chosen on (`bench anomaly --perturb`).
//!
//! | perturbation | what changes | labels |
//! |---|---|---|
//! | `gaps` | from each sample, a 1 % chance that it and up to 23 more are cut out (about 10 % of the rows) | unchanged |
//! | `sparse` | every sample after the first 60 lost with a 30 % chance (a collector that drops samples at random) | unchanged |
//! | `jitter` | every timestamp moved by up to ±40 % of the median interval, the order kept | unchanged |
//! | `irregular` | every interval redrawn from an exponential distribution of the same mean (a Poisson process) | moved with their rows |
//! | `nan` | from each sample after the first 60, a 0.4 % chance that it and up to 11 more values become `nan` | unchanged |
//! | `offset` | 10⁶ added to every value | unchanged |
//!
//! Every copy is a function of the series and a seed alone.

use crate::noise::XorShift;

/// How a copy departs from the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perturbation {
    /// Runs of samples cut out.
    Gaps,
    /// Samples lost one by one at random.
    Sparse,
    /// Timestamps moved by up to ±40 % of the step.
    Jitter,
    /// Intervals redrawn at random with the same mean.
    Irregular,
    /// Runs of values replaced by `nan`.
    Nan,
    /// A large constant added.
    Offset,
}

/// Chance per sample that a run of changes starts there (`gaps`).
const GAP_CHANCE: f64 = 0.01;
/// Longest run of samples cut out.
const GAP_RUN: u64 = 24;
/// Chance per sample that a run of `nan` values starts there.
const NAN_CHANCE: f64 = 0.004;
/// Longest run of `nan` values.
const NAN_RUN: u64 = 12;
/// Samples left whole at the start of a `nan` or `sparse` copy (the detector reads its step
/// from them).
const CLEAN_START: usize = 60;
/// Chance per sample after [`CLEAN_START`] that a `sparse` copy loses it.
const SPARSE_LOSS: f64 = 0.3;
/// Largest move of a jittered timestamp, as a share of the median interval.
const JITTER_SHARE: f64 = 0.4;
/// What `offset` adds.
const OFFSET: f64 = 1e6;

impl Perturbation {
    /// Every perturbation, in a fixed order.
    pub const ALL: [Perturbation; 6] = [
        Perturbation::Gaps,
        Perturbation::Sparse,
        Perturbation::Jitter,
        Perturbation::Irregular,
        Perturbation::Nan,
        Perturbation::Offset,
    ];

    /// Its name on the command line (`gaps`, `jitter`, `irregular`, `nan`, `offset`).
    pub fn name(self) -> &'static str {
        match self {
            Perturbation::Gaps => "gaps",
            Perturbation::Sparse => "sparse",
            Perturbation::Jitter => "jitter",
            Perturbation::Irregular => "irregular",
            Perturbation::Nan => "nan",
            Perturbation::Offset => "offset",
        }
    }

    /// Whether the copy's timestamps differ from the series', so windows must move with rows.
    pub fn moves_time(self) -> bool {
        self == Perturbation::Irregular
    }
}

impl std::str::FromStr for Perturbation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Perturbation::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Perturbation::ALL.iter().map(|p| p.name()).collect();
                format!("unknown perturbation `{s}` (one of {})", names.join(", "))
            })
    }
}

/// A perturbed copy of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Perturbed {
    /// Timestamps of the copy, in unix seconds.
    pub timestamps: Vec<i64>,
    /// Values of the copy.
    pub values: Vec<f64>,
    /// For each row of the copy, the row of the series it comes from.
    pub rows: Vec<usize>,
}

impl Perturbed {
    /// A window of the series (inclusive unix seconds) as it falls on the copy: from the copy's
    /// time of the first row inside it to that of the last; `None` when no row of the copy
    /// falls inside. `timestamps` are the series' own.
    pub fn move_window(&self, timestamps: &[i64], window: (i64, i64)) -> Option<(i64, i64)> {
        let inside = |&(_, &r): &(usize, &usize)| {
            timestamps
                .get(r)
                .is_some_and(|t| (window.0..=window.1).contains(t))
        };
        let first = self.rows.iter().enumerate().find(inside)?.0;
        let last = self.rows.iter().enumerate().rev().find(inside)?.0;
        Some((self.timestamps[first], self.timestamps[last]))
    }

    /// Appends row `row` of the series, at `t` with value `v`.
    fn push(&mut self, row: usize, t: i64, v: f64) {
        self.timestamps.push(t);
        self.values.push(v);
        self.rows.push(row);
    }
}

/// Median of the positive intervals between timestamps (1 when there is none).
fn median_interval(timestamps: &[i64]) -> i64 {
    let mut d: Vec<i64> = timestamps
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0)
        .collect();
    if d.is_empty() {
        return 1;
    }
    let mid = d.len() / 2;
    *d.select_nth_unstable(mid).1
}

/// A whole number in `1..=most`.
fn run_length(rng: &mut XorShift, most: u64) -> usize {
    usize::try_from(1 + rng.next_u64() % most).unwrap_or(1)
}

/// A copy of the series (`timestamps` and `values` of equal length) with `kind` applied,
/// drawn from `seed`.
pub fn perturb(timestamps: &[i64], values: &[f64], kind: Perturbation, seed: u64) -> Perturbed {
    let n = timestamps.len().min(values.len());
    let mut rng = XorShift::new(seed);
    let mut out = Perturbed {
        timestamps: Vec::with_capacity(n),
        values: Vec::with_capacity(n),
        rows: Vec::with_capacity(n),
    };
    match kind {
        Perturbation::Gaps => {
            let mut i = 0;
            while i < n {
                if rng.uniform() < GAP_CHANCE {
                    i += run_length(&mut rng, GAP_RUN);
                    continue;
                }
                out.push(i, timestamps[i], values[i]);
                i += 1;
            }
        }
        Perturbation::Sparse => {
            for i in 0..n {
                if i < CLEAN_START || rng.uniform() >= SPARSE_LOSS {
                    out.push(i, timestamps[i], values[i]);
                }
            }
        }
        Perturbation::Nan => {
            out.timestamps.extend_from_slice(&timestamps[..n]);
            out.values.extend_from_slice(&values[..n]);
            out.rows.extend(0..n);
            let mut i = CLEAN_START;
            while i < n {
                if rng.uniform() < NAN_CHANCE {
                    let end = (i + run_length(&mut rng, NAN_RUN)).min(n);
                    out.values[i..end].fill(f64::NAN);
                    i = end;
                } else {
                    i += 1;
                }
            }
        }
        Perturbation::Jitter => {
            let most = (JITTER_SHARE * median_interval(&timestamps[..n]) as f64).floor();
            let mut last = i64::MIN;
            for i in 0..n {
                let moved = timestamps[i] + ((2.0 * rng.uniform() - 1.0) * most).round() as i64;
                // The order is kept: a move never passes the row before.
                let t = moved.max(last.saturating_add(1));
                out.push(i, t, values[i]);
                last = t;
            }
        }
        Perturbation::Irregular => {
            for i in 0..n {
                let t = if i == 0 {
                    timestamps[0]
                } else {
                    let mean = (timestamps[i] - timestamps[i - 1]).max(0) as f64;
                    // Exponential with that mean, at least a second.
                    let draw = -mean * (1.0 - rng.uniform()).ln();
                    out.timestamps[i - 1] + (draw.round() as i64).max(1)
                };
                out.push(i, t, values[i]);
            }
        }
        Perturbation::Offset => {
            out.timestamps.extend_from_slice(&timestamps[..n]);
            out.values.extend(values[..n].iter().map(|v| v + OFFSET));
            out.rows.extend(0..n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize) -> (Vec<i64>, Vec<f64>) {
        let ts = (0..n as i64).map(|i| 1_000_000 + 300 * i).collect();
        let vs = (0..n).map(|i| (i % 17) as f64).collect();
        (ts, vs)
    }

    #[test]
    fn names_should_read_back_and_a_bad_one_should_be_named() {
        for p in Perturbation::ALL {
            assert_eq!(p.name().parse::<Perturbation>(), Ok(p));
        }
        let e = "holes".parse::<Perturbation>().unwrap_err();
        assert!(e.contains("`holes`") && e.contains("irregular"), "{e}");
    }

    #[test]
    fn gaps_should_cut_about_a_tenth_of_the_rows_and_keep_the_rest() {
        let (ts, vs) = series(20_000);
        let p = perturb(&ts, &vs, Perturbation::Gaps, 7);
        let kept = p.rows.len() as f64 / ts.len() as f64;
        assert!((0.8..0.95).contains(&kept), "kept {kept}");
        for (j, &r) in p.rows.iter().enumerate() {
            assert_eq!((p.timestamps[j], p.values[j]), (ts[r], vs[r]));
        }
        assert!(p.rows.windows(2).all(|w| w[0] < w[1]));
        // Some gap is longer than one step.
        assert!(p.timestamps.windows(2).any(|w| w[1] - w[0] > 300));
    }

    #[test]
    fn sparse_should_lose_about_three_in_ten_rows_one_by_one() {
        let (ts, vs) = series(20_000);
        let p = perturb(&ts, &vs, Perturbation::Sparse, 3);
        assert_eq!(p.rows[..CLEAN_START], (0..CLEAN_START).collect::<Vec<_>>());
        let lost = 1.0 - p.rows.len() as f64 / ts.len() as f64;
        assert!((0.28..0.32).contains(&lost), "lost {lost}");
        for (j, &r) in p.rows.iter().enumerate() {
            assert_eq!((p.timestamps[j], p.values[j]), (ts[r], vs[r]));
        }
        // Lost one by one: most gaps are a single step, some are longer.
        let gaps: Vec<i64> = p.timestamps.windows(2).map(|w| w[1] - w[0]).collect();
        let single = gaps.iter().filter(|&&g| g == 600).count();
        let longer = gaps.iter().filter(|&&g| g > 600).count();
        assert!(
            single > 2 * longer && longer > 0,
            "{single} single, {longer} longer"
        );
    }

    #[test]
    fn jitter_should_move_timestamps_within_the_share_and_keep_the_order() {
        let (ts, vs) = series(5_000);
        let p = perturb(&ts, &vs, Perturbation::Jitter, 11);
        assert_eq!(p.values, vs);
        let moves: Vec<i64> = p.timestamps.iter().zip(&ts).map(|(a, b)| a - b).collect();
        assert!(
            moves.iter().all(|m| m.abs() <= 120),
            "{:?}",
            moves.iter().max()
        );
        assert!(moves.iter().any(|m| m.abs() > 90));
        assert!(p.timestamps.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn irregular_intervals_should_keep_their_mean_and_vary() {
        let (ts, vs) = series(20_000);
        let p = perturb(&ts, &vs, Perturbation::Irregular, 23);
        assert_eq!(p.values, vs);
        let d: Vec<f64> = p
            .timestamps
            .windows(2)
            .map(|w| (w[1] - w[0]) as f64)
            .collect();
        assert!(d.iter().all(|x| *x >= 1.0));
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        assert!((mean - 300.0).abs() < 10.0, "mean interval {mean}");
        // An exponential's standard deviation equals its mean.
        let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
        assert!((sd / mean - 1.0).abs() < 0.1, "sd {sd}");
        // A window moves with its rows.
        let w = p.move_window(&ts, (ts[100], ts[200])).unwrap();
        assert_eq!(w, (p.timestamps[100], p.timestamps[200]));
        assert_eq!(p.move_window(&ts, (0, 10)), None);
    }

    #[test]
    fn nan_runs_should_replace_values_and_not_rows() {
        let (ts, vs) = series(20_000);
        let p = perturb(&ts, &vs, Perturbation::Nan, 5);
        assert_eq!(p.timestamps, ts);
        let nan = p.values.iter().filter(|v| v.is_nan()).count();
        assert!((300..2_000).contains(&nan), "{nan} nan values");
        assert!(p.values[..CLEAN_START].iter().all(|v| v.is_finite()));
        for (a, b) in p.values.iter().zip(&vs) {
            assert!(a.is_nan() || a == b);
        }
    }

    #[test]
    fn offset_should_add_a_constant_and_the_same_seed_the_same_copy() {
        let (ts, vs) = series(100);
        let p = perturb(&ts, &vs, Perturbation::Offset, 1);
        assert!(p.values.iter().zip(&vs).all(|(a, b)| *a == b + OFFSET));
        for kind in Perturbation::ALL {
            // Compared as printed: `nan` is not equal to itself.
            assert_eq!(
                format!("{:?}", perturb(&ts, &vs, kind, 9)),
                format!("{:?}", perturb(&ts, &vs, kind, 9))
            );
        }
        assert_ne!(
            perturb(&ts, &vs, Perturbation::Jitter, 9),
            perturb(&ts, &vs, Perturbation::Jitter, 10)
        );
    }
}
