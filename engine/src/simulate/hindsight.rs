//! Hindsight references for the allocation benchmark: how little slack an allocation reaches at
//! a given shortfall rate when it knows the distribution of a series' usage in advance.
//!
//! They are not policies (they read the scored steps themselves), so no causal policy can be
//! expected to beat them on series whose distribution does not move. They tell how far a
//! benchmark target is from what the series allow.
//!
//! - [`frontier`]: for one series, the allocations (slack against shortfall rate) open to one
//!   that knows the usage's distribution, either unconditionally ([`Knowledge::Constant`]) or
//!   given what was visible `lead` steps earlier ([`Knowledge::Recent`]), read from the scored
//!   steps themselves ([`Fit::InSample`]) or from the other days ([`Fit::CrossFit`]).
//! - [`best_mean`]: the least *mean* slack over series at a given mean shortfall rate, each
//!   series at one of its allocations, the misses spread over the series where they save most
//!   (the form of the protocol's targets).

use super::baselines::Geometry;
use crate::forecast::quantile_sorted as quantile;
use serde::Serialize;

/// What the reference allocation knows of the usage at each scored step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knowledge {
    /// Its distribution over the scored period: one quantile of it, held constant.
    Constant,
    /// Its distribution given what was visible `lead` steps earlier: the last value
    /// ([`VALUE_CLASSES`] classes by quantile) and the mean of the [`MEAN_WINDOW`] values up to
    /// it ([`MEAN_CLASSES`] classes). Each cell gets its own quantile, so the misses go where
    /// covering the tail costs most.
    Recent,
}

/// Where a cell's distribution is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// From the scored steps themselves: optimistic, a cell's quantile has seen the values it
    /// covers (with few values per cell it covers them all).
    InSample,
    /// From the other days: the scored days alternate between two folds, and each fold is
    /// allocated with the quantiles the other fold's cells give.
    CrossFit,
}

/// Classes of the last visible value in [`Knowledge::Recent`].
pub const VALUE_CLASSES: usize = 8;
/// Classes of the recent mean in [`Knowledge::Recent`].
pub const MEAN_CLASSES: usize = 4;
/// Values in the recent mean in [`Knowledge::Recent`] (an hour at 5-minute steps).
pub const MEAN_WINDOW: usize = 12;

/// One point of a frontier, or the mean over series of one point each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrontierPoint {
    /// `Σ max(a − u, 0) / Σ a`.
    pub slack: f64,
    /// Share of the scored steps with `u > a`.
    pub shortfall_steps: f64,
    /// `Σ a / Σ u`.
    pub cost_vs_oracle: f64,
}

/// The allocations one series may take, each as its sums per scored step.
#[derive(Debug, Clone, PartialEq)]
pub struct Frontier {
    /// Mean usage over the scored steps.
    mean_usage: f64,
    /// Unused allocation, allocation and steps short, per scored step: one per price of a
    /// shortfall step, then one per quantile level with every cell at that level.
    points: Vec<Tally>,
}

impl Frontier {
    /// What allocation `t` gives on this series.
    fn point(&self, t: &Tally) -> FrontierPoint {
        FrontierPoint {
            slack: t.over / t.alloc,
            shortfall_steps: t.short,
            cost_vs_oracle: t.alloc / self.mean_usage,
        }
    }
}

/// Quantile levels a cell may be allocated at: 0.2 to 0.9 by 0.05, then to 1 by 0.0025.
fn levels() -> Vec<f64> {
    let coarse = (0..15).map(|k| 0.2 + 0.05 * f64::from(k));
    let fine = (1..=40).map(|k| 0.9 + 0.0025 * f64::from(k));
    coarse.chain(fine).collect()
}

/// `n` points from `lo` to `hi`, evenly spaced in logarithm.
fn geometric(lo: f64, hi: f64, n: u32) -> impl Iterator<Item = f64> {
    let ratio = (hi / lo).ln() / f64::from(n - 1);
    (0..n).map(move |k| lo * (ratio * f64::from(k)).exp())
}

/// Class of each of `xs` among `classes` equally filled classes of their own distribution.
fn classes(xs: &[f64], classes: usize) -> Vec<usize> {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let edges: Vec<f64> = (1..classes)
        .map(|k| quantile(&sorted, k as f64 / classes as f64))
        .collect();
    xs.iter()
        .map(|x| edges.iter().filter(|e| **e <= *x).count())
        .collect()
}

/// The cell of every scored step `from..n`.
fn cells(usage: &[f64], from: usize, lead: usize, knowledge: Knowledge) -> (Vec<usize>, usize) {
    let n = usage.len();
    match knowledge {
        Knowledge::Constant => (vec![0; n - from], 1),
        Knowledge::Recent => {
            let last: Vec<f64> = (from..n).map(|t| usage[t - lead]).collect();
            let mean: Vec<f64> = (from..n)
                .map(|t| {
                    let window = &usage[(t + 1).saturating_sub(lead + MEAN_WINDOW)..=t - lead];
                    window.iter().sum::<f64>() / window.len() as f64
                })
                .collect();
            let cell = classes(&last, VALUE_CLASSES)
                .into_iter()
                .zip(classes(&mean, MEAN_CLASSES))
                .map(|(v, m)| v * MEAN_CLASSES + m)
                .collect();
            (cell, VALUE_CLASSES * MEAN_CLASSES)
        }
    }
}

/// What an allocation costs: unused allocation, allocation, steps short (summed, or per step).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tally {
    over: f64,
    alloc: f64,
    short: f64,
}

impl Tally {
    /// `over / alloc`: the share of the allocation left unused.
    fn slack(&self) -> f64 {
        self.over / self.alloc
    }

    fn add(self, other: &Tally) -> Tally {
        Tally {
            over: self.over + other.over,
            alloc: self.alloc + other.alloc,
            short: self.short + other.short,
        }
    }

    fn scale(self, k: f64) -> Tally {
        Tally {
            over: self.over * k,
            alloc: self.alloc * k,
            short: self.short * k,
        }
    }
}

/// The frontier of one series: for each price of a shortfall step (90 prices from 10⁻⁴ to 10³
/// mean usages), every cell takes the level minimising `unused − ρ × allocation + price ×
/// mean usage × steps short`, with `ρ` iterated to the slack it gives (Dinkelbach's method for
/// the ratio `Σ unused / Σ allocation`); then every cell at one quantile level, for each level
/// (for [`Knowledge::Constant`] the whole curve). An allocation of nothing gives no point (its
/// slack is undefined). Scored steps are `max(warmup, lead)..`.
///
/// `None` when nothing can be scored: no scored step, a non-finite value, no usage, or (cross
/// fit) fewer than two scored days.
pub fn frontier(
    usage: &[f64],
    geometry: Geometry,
    knowledge: Knowledge,
    fit: Fit,
) -> Option<Frontier> {
    let lead = geometry.lead.max(1);
    let from = geometry.warmup.max(lead);
    let n = usage.len();
    if from >= n || usage.iter().any(|u| !u.is_finite()) {
        return None;
    }
    let scored = &usage[from..];
    let total: f64 = scored.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let (cell, n_cells) = cells(usage, from, lead, knowledge);
    let day = geometry.day.max(1);
    let fold = |i: usize| match fit {
        Fit::InSample => 0,
        Fit::CrossFit => (i / day) % 2,
    };
    let folds = match fit {
        Fit::InSample => 1,
        Fit::CrossFit => 2,
    };
    // Values per fold and cell.
    let mut groups = vec![vec![Vec::new(); n_cells]; folds];
    for (i, u) in scored.iter().enumerate() {
        groups[fold(i)][cell[i]].push(*u);
    }
    if groups.iter().any(|g| g.iter().all(Vec::is_empty)) {
        return None;
    }
    let levels = levels();
    let mut tally = vec![vec![Tally::default(); levels.len()]; n_cells];
    for f in 0..folds {
        let source = &groups[match fit {
            Fit::InSample => f,
            Fit::CrossFit => 1 - f,
        }];
        // A cell the other fold never saw takes that fold's values as a whole.
        let mut pooled: Vec<f64> = match fit {
            Fit::InSample => Vec::new(),
            Fit::CrossFit => source.iter().flatten().copied().collect(),
        };
        pooled.sort_by(f64::total_cmp);
        for c in 0..n_cells {
            let covered = &groups[f][c];
            if covered.is_empty() {
                continue;
            }
            let mut own = source[c].clone();
            own.sort_by(f64::total_cmp);
            let reference = if own.is_empty() { &pooled } else { &own };
            for (l, level) in levels.iter().enumerate() {
                let a = quantile(reference, *level);
                let t = &mut tally[c][l];
                for u in covered {
                    t.over += (a - u).max(0.0);
                    t.alloc += a;
                    t.short += f64::from(u8::from(*u > a));
                }
            }
        }
    }
    let steps = scored.len() as f64;
    let mean_usage = total / steps;
    let priced = geometric(1e-4, 1e3, 90).filter_map(|price| {
        let mut rho = 0.5;
        let mut sums = Tally::default();
        for _ in 0..8 {
            let value = |t: &Tally| t.over - rho * t.alloc + price * mean_usage * t.short;
            sums = tally.iter().fold(Tally::default(), |sum, row| {
                let best = row
                    .iter()
                    .min_by(|a, b| value(a).total_cmp(&value(b)))
                    .expect("levels are not empty");
                sum.add(best)
            });
            if sums.alloc <= 0.0 {
                return None;
            }
            rho = sums.over / sums.alloc;
        }
        Some(sums)
    });
    let uniform = (0..levels.len())
        .map(|l| {
            tally
                .iter()
                .fold(Tally::default(), |sum, row| sum.add(&row[l]))
        })
        .filter(|sums| sums.alloc > 0.0);
    let points: Vec<Tally> = priced
        .chain(uniform)
        .map(|t| t.scale(1.0 / steps))
        .collect();
    (!points.is_empty()).then_some(Frontier { mean_usage, points })
}

/// The points of `points` that no other beats on both shortfall and slack, least shortfall
/// first.
fn pareto(points: &[Tally]) -> Vec<Tally> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| {
        a.short
            .total_cmp(&b.short)
            .then(a.slack().total_cmp(&b.slack()))
    });
    let mut front: Vec<Tally> = Vec::new();
    for p in sorted {
        if front.last().is_none_or(|last| p.slack() < last.slack()) {
            front.push(p);
        }
    }
    front
}

/// Resolution of the shortfall budget in [`best_mean`]: a series' shortfall rate is counted in
/// whole units of this, rounded up.
pub const BUDGET_UNIT: f64 = 1e-4;

/// The least mean slack over `frontiers` whose mean shortfall rate is at most
/// `max_shortfall_steps`, each series at one of its points: a multiple-choice knapsack solved
/// exactly by dynamic programming over the budget in units of [`BUDGET_UNIT`] (each series'
/// shortfall rounded up, so the budget always holds). Returns the means; `None` when
/// `frontiers` is empty or even the fewest shortfall steps exceed the budget.
pub fn best_mean(frontiers: &[Frontier], max_shortfall_steps: f64) -> Option<FrontierPoint> {
    if frontiers.is_empty() || max_shortfall_steps.is_nan() || max_shortfall_steps < 0.0 {
        return None;
    }
    let fronts: Vec<Vec<Tally>> = frontiers.iter().map(|f| pareto(&f.points)).collect();
    let k = fronts.len() as f64;
    let cap = ((max_shortfall_steps * k / BUDGET_UNIT) + 1e-6).floor() as usize;
    let units = |t: &Tally| ((t.short / BUDGET_UNIT) - 1e-6).ceil().max(0.0) as usize;
    // best[b]: the least total slack of the series so far within b units; choice[s][b]: the
    // point series s takes there.
    let mut best = vec![0.0f64; cap + 1];
    let mut choice: Vec<Vec<u16>> = Vec::with_capacity(fronts.len());
    for front in &fronts {
        let mut next = vec![f64::INFINITY; cap + 1];
        let mut picked = vec![u16::MAX; cap + 1];
        for (i, t) in front.iter().enumerate() {
            let (cost, slack) = (units(t), t.slack());
            for b in cost..=cap {
                let value = best[b - cost] + slack;
                if value < next[b] {
                    next[b] = value;
                    picked[b] = u16::try_from(i).expect("a frontier has few points");
                }
            }
        }
        best = next;
        choice.push(picked);
    }
    if !best[cap].is_finite() {
        return None;
    }
    let mut b = cap;
    let mut chosen = vec![Tally::default(); fronts.len()];
    for s in (0..fronts.len()).rev() {
        let t = fronts[s][usize::from(choice[s][b])];
        chosen[s] = t;
        b -= units(&t);
    }
    let points: Vec<FrontierPoint> = frontiers
        .iter()
        .zip(&chosen)
        .map(|(f, t)| f.point(t))
        .collect();
    let mean = |f: fn(&FrontierPoint) -> f64| points.iter().map(f).sum::<f64>() / k;
    Some(FrontierPoint {
        slack: mean(|p| p.slack),
        shortfall_steps: mean(|p| p.shortfall_steps),
        cost_vs_oracle: mean(|p| p.cost_vs_oracle),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(warmup: usize) -> Geometry {
        Geometry {
            lead: 3,
            warmup,
            day: 288,
        }
    }

    /// Uniform values in `[0, 1)` from a fixed linear congruential sequence.
    fn uniform(seed: u64, n: usize) -> Vec<f64> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    #[test]
    fn a_constant_reference_without_misses_should_hold_the_maximum() {
        // Scored steps 3..13 carry 1..=10; covering them all takes the maximum, 10.
        let mut usage = vec![5.0, 5.0, 5.0];
        usage.extend((1..=10).map(f64::from));
        let f = frontier(&usage, geometry(0), Knowledge::Constant, Fit::InSample).unwrap();
        let best = best_mean(&[f], 0.0).unwrap();
        // Σ(10 − u) = 45 of Σa = 100; Σu = 55.
        assert!((best.slack - 0.45).abs() < 1e-12, "{best:?}");
        assert_eq!(best.shortfall_steps, 0.0);
        assert!((best.cost_vs_oracle - 100.0 / 55.0).abs() < 1e-12);
    }

    #[test]
    fn a_series_its_recent_past_predicts_should_need_far_less_slack_when_that_is_known() {
        // A daily wave between 1 and 11 with a little noise: the value three steps back says
        // almost where the next one is, the whole series does not.
        let noise = uniform(7, 288 * 20);
        let usage: Vec<f64> = noise
            .iter()
            .enumerate()
            .map(|(t, e)| {
                let phase = std::f64::consts::TAU * t as f64 / 288.0;
                6.0 + 5.0 * phase.sin() + 0.2 * e
            })
            .collect();
        let at = |knowledge| {
            let f = frontier(&usage, geometry(288 * 2), knowledge, Fit::CrossFit).unwrap();
            best_mean(&[f], 0.05).unwrap()
        };
        let constant = at(Knowledge::Constant);
        let recent = at(Knowledge::Recent);
        assert!(recent.shortfall_steps <= 0.05 && constant.shortfall_steps <= 0.05);
        assert!(constant.slack > 0.3, "{constant:?}");
        assert!(
            recent.slack < 0.5 * constant.slack,
            "{recent:?} vs {constant:?}"
        );
    }

    #[test]
    fn noise_without_memory_should_gain_nothing_from_the_recent_past_out_of_sample() {
        // Independent values: the recent past says nothing about the next one, so the reference
        // that conditions on it, fitted on other days, is no better than the constant one.
        for seed in [1, 2, 3] {
            let usage: Vec<f64> = uniform(seed, 288 * 20).iter().map(|e| 1.0 + e).collect();
            let at = |knowledge| {
                let f = frontier(&usage, geometry(288 * 2), knowledge, Fit::CrossFit).unwrap();
                best_mean(&[f], 0.05).unwrap()
            };
            let (constant, recent) = (at(Knowledge::Constant), at(Knowledge::Recent));
            assert!(
                recent.slack > constant.slack - 0.02,
                "seed {seed}: {recent:?} vs {constant:?}"
            );
        }
    }

    #[test]
    fn the_mean_should_keep_to_its_shortfall_budget_and_spend_it_where_it_saves_most() {
        // A flat series covers its tail for nothing; a spiky one (mostly 1, every 20th step 20)
        // saves most by letting its spikes through.
        let flat = vec![4.0; 2000];
        let spiky: Vec<f64> = (0..2000)
            .map(|t| if t % 20 == 0 { 20.0 } else { 1.0 })
            .collect();
        let g = geometry(100);
        let frontiers: Vec<Frontier> = [&flat, &spiky]
            .iter()
            .map(|u| frontier(u, g, Knowledge::Constant, Fit::InSample).unwrap())
            .collect();
        let tight = best_mean(&frontiers, 0.0).unwrap();
        let loose = best_mean(&frontiers, 0.03).unwrap();
        assert_eq!(tight.shortfall_steps, 0.0);
        assert!(loose.shortfall_steps <= 0.03);
        // Letting the spikes through (5 % of the spiky series' steps, 2.5 % on the mean) leaves
        // no slack on either series.
        assert!(loose.slack < 1e-9, "{loose:?}");
        assert!(tight.slack > 0.4, "{tight:?}");
        // Alone, with half the spiky series' misses to spend, it cannot let half its spikes
        // through (one allocation for the whole period): it covers them all.
        let half = best_mean(&frontiers[1..], 0.025).unwrap();
        assert_eq!(half.shortfall_steps, 0.0);
        assert!((half.slack - 18.05 / 20.0).abs() < 1e-9, "{half:?}");
        assert!(best_mean(&frontiers, -1.0).is_none());
        assert!(best_mean(&[], 0.1).is_none());
    }

    #[test]
    fn nothing_scored_should_give_no_frontier() {
        let g = geometry(10);
        assert!(frontier(&[1.0; 10], g, Knowledge::Constant, Fit::InSample).is_none());
        assert!(frontier(&[0.0; 50], g, Knowledge::Constant, Fit::InSample).is_none());
        let mut bad = vec![1.0; 50];
        bad[20] = f64::NAN;
        assert!(frontier(&bad, g, Knowledge::Recent, Fit::InSample).is_none());
        // Cross fit needs two scored days.
        assert!(frontier(&[1.0; 200], g, Knowledge::Constant, Fit::CrossFit).is_none());
        // Usage on 3 steps of 2000: every level below the maximum allocates nothing, so the one
        // point is the maximum held throughout.
        let mut rare = vec![0.0; 2000];
        for t in [500, 900, 1500] {
            rare[t] = 2.0;
        }
        let f = frontier(&rare, g, Knowledge::Constant, Fit::InSample).unwrap();
        let best = best_mean(&[f], 0.1).unwrap();
        assert_eq!(best.shortfall_steps, 0.0);
        assert!(
            (best.slack - (1.0 - 6.0 / (2.0 * 1990.0))).abs() < 1e-12,
            "{best:?}"
        );
    }
}
