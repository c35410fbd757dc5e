//! Allocation efficiency metrics of the benchmark protocol (PROTOCOL.md §2).

use serde::Serialize;

/// Relative change above which an allocation step counts as a change (5 %).
pub const CHANGE_THRESHOLD: f64 = 0.05;

/// How well an allocation followed usage over the scored steps of one series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AllocationMetrics {
    /// `Σ max(a − u, 0) / Σ a`: share of the allocation left unused.
    pub slack: f64,
    /// Share of steps with `u > a`.
    pub shortfall_steps: f64,
    /// `Σ max(u − a, 0) / Σ u`: share of demand that found no capacity.
    pub shortfall_volume: f64,
    /// Steps where `a` changes by more than 5 % of its previous value, per day.
    pub changes_per_day: f64,
    /// `Σ a / Σ u`: cost relative to the physical limit `a = u`.
    pub cost_vs_oracle: f64,
}

impl AllocationMetrics {
    /// Scores `alloc` against `usage` on the steps `from..` (the steps after the warm-up), where
    /// `steps_per_day` converts step counts into days.
    ///
    /// Returns `None` when nothing can be scored: no steps after `from`, or a total usage or
    /// total allocation of zero (the ratios would be undefined).
    ///
    /// # Panics
    /// When `usage` and `alloc` differ in length.
    pub fn score(usage: &[f64], alloc: &[f64], from: usize, steps_per_day: f64) -> Option<Self> {
        assert_eq!(
            usage.len(),
            alloc.len(),
            "usage and allocation lengths differ"
        );
        let n = usage.len();
        if from >= n {
            return None;
        }
        let (mut sum_a, mut sum_u, mut over, mut under) = (0.0, 0.0, 0.0, 0.0);
        let (mut short, mut changes) = (0usize, 0usize);
        for t in from..n {
            let (u, a) = (usage[t], alloc[t]);
            sum_a += a;
            sum_u += u;
            over += (a - u).max(0.0);
            under += (u - a).max(0.0);
            if u > a {
                short += 1;
            }
            if t > 0 && is_change(alloc[t - 1], a) {
                changes += 1;
            }
        }
        if sum_u <= 0.0 || sum_a <= 0.0 {
            return None;
        }
        let steps = (n - from) as f64;
        Some(Self {
            slack: over / sum_a,
            shortfall_steps: short as f64 / steps,
            shortfall_volume: under / sum_u,
            changes_per_day: changes as f64 / (steps / steps_per_day),
            cost_vs_oracle: sum_a / sum_u,
        })
    }

    /// The mean of each metric over `items` (the protocol aggregates by series); `None` when empty.
    pub fn mean(items: &[Self]) -> Option<Self> {
        if items.is_empty() {
            return None;
        }
        let k = items.len() as f64;
        let avg = |f: fn(&Self) -> f64| items.iter().map(f).sum::<f64>() / k;
        Some(Self {
            slack: avg(|m| m.slack),
            shortfall_steps: avg(|m| m.shortfall_steps),
            shortfall_volume: avg(|m| m.shortfall_volume),
            changes_per_day: avg(|m| m.changes_per_day),
            cost_vs_oracle: avg(|m| m.cost_vs_oracle),
        })
    }
}

/// Whether going from `prev` to `next` is a change of more than 5 %.
pub fn is_change(prev: f64, next: f64) -> bool {
    if prev == 0.0 {
        next != 0.0
    } else {
        (next - prev).abs() > CHANGE_THRESHOLD * prev.abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_should_match_hand_computed_values() {
        let u = [9.0, 2.0, 4.0, 6.0, 2.0];
        let a = [9.0, 4.0, 4.0, 3.0, 3.0];
        // Scored steps 1..5 (one warm-up step), 4 steps per day.
        let m = AllocationMetrics::score(&u, &a, 1, 4.0).unwrap();
        // Σa = 14, Σu = 14, over = 2 + 0 + 0 + 1 = 3, under = 3, short = 1 (step 3).
        assert!((m.slack - 3.0 / 14.0).abs() < 1e-12);
        assert!((m.shortfall_steps - 0.25).abs() < 1e-12);
        assert!((m.shortfall_volume - 3.0 / 14.0).abs() < 1e-12);
        assert!((m.cost_vs_oracle - 1.0).abs() < 1e-12);
        // Changes: 9→4 (yes), 4→4, 4→3 (yes), 3→3: two changes in one day.
        assert!((m.changes_per_day - 2.0).abs() < 1e-12);
    }

    #[test]
    fn score_should_refuse_an_empty_or_all_zero_range() {
        assert!(AllocationMetrics::score(&[1.0], &[1.0], 1, 1.0).is_none());
        assert!(AllocationMetrics::score(&[0.0, 0.0], &[1.0, 1.0], 0, 1.0).is_none());
    }

    #[test]
    fn mean_should_average_each_field() {
        let a = AllocationMetrics {
            slack: 0.2,
            shortfall_steps: 0.0,
            shortfall_volume: 0.0,
            changes_per_day: 2.0,
            cost_vs_oracle: 1.0,
        };
        let b = AllocationMetrics {
            slack: 0.4,
            changes_per_day: 4.0,
            cost_vs_oracle: 2.0,
            ..a
        };
        let m = AllocationMetrics::mean(&[a, b]).unwrap();
        assert!((m.slack - 0.3).abs() < 1e-12);
        assert!((m.changes_per_day - 3.0).abs() < 1e-12);
        assert!((m.cost_vs_oracle - 1.5).abs() < 1e-12);
    }
}
