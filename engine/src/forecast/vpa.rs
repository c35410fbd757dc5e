//! `vpa-hist`: percentiles of an exponentially decaying histogram of all past samples, as the
//! Kubernetes VPA recommender computes its CPU target (24 h half-life). The forecast is flat.
//!
//! VPA keeps buckets growing by 5 %; this keeps the samples themselves (exact weighted
//! percentiles), which is the limit of that histogram for fine buckets.

use super::{Body, Ctx};
use crate::series::DAY;

/// Half-life of a sample's weight, in seconds.
const HALF_LIFE: i64 = DAY;

/// Samples with weights, sorted by value, with cumulative weights.
#[derive(Debug, Clone)]
pub(crate) struct WeightedSample {
    values: Vec<f64>,
    cum: Vec<f64>,
}

impl WeightedSample {
    /// Builds from `(value, weight)` pairs; weights must be positive and finite.
    pub(crate) fn new(mut pairs: Vec<(f64, f64)>) -> Self {
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut acc = 0.0;
        let (values, cum) = pairs
            .into_iter()
            .map(|(v, w)| {
                acc += w;
                (v, acc)
            })
            .unzip();
        Self { values, cum }
    }

    /// The weighted `q`-quantile: the smallest value whose cumulative weight reaches `q` of
    /// the total (0 when empty).
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let Some(&total) = self.cum.last() else {
            return 0.0;
        };
        let target = q.clamp(0.0, 1.0) * total;
        let i = self.cum.partition_point(|&c| c < target);
        self.values[i.min(self.values.len() - 1)]
    }
}

pub(super) fn fit(ctx: &Ctx<'_>) -> Body {
    let n = ctx.y.len();
    let half = (HALF_LIFE as f64 / ctx.step as f64).max(1.0);
    let pairs = ctx
        .y
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            (
                v,
                (-((n - 1 - i) as f64) / half * std::f64::consts::LN_2)
                    .exp()
                    .max(1e-300),
            )
        })
        .collect();
    Body::Histogram(WeightedSample::new(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_quantile_should_follow_the_weights() {
        let w = WeightedSample::new(vec![(1.0, 1.0), (2.0, 1.0), (10.0, 8.0)]);
        assert_eq!(w.quantile(0.1), 1.0);
        assert_eq!(w.quantile(0.5), 10.0);
        assert_eq!(w.quantile(0.15), 2.0);
    }
}
