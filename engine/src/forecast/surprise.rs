//! Surprise factor: widening a forecast whose intervals the data has been breaking.

use super::Forecast;

/// Compares what a forecast promised with what happened since, and says how much to widen.
///
/// The outermost interval (lowest to highest level) promises a coverage `c`. Among the `n`
/// steps observed so far, `k` fell outside. If `k` exceeds the expected `n (1 - c)` by more
/// than two binomial standard deviations plus one, the factor is the `c`-quantile of how far
/// each observation lay from the median relative to the interval's half-width on its side, so
/// the widened interval would have covered `c` of them. Apply it with [`Forecast::widen`] until
/// the model is refitted.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Surprise {
    /// Observations compared.
    pub observed: usize,
    /// Observations outside the outermost interval.
    pub misses: usize,
    /// The widening factor (1 = no surprise).
    pub factor: f64,
}

impl Surprise {
    /// Compares `forecast` with the `actual` values of its first steps (extra values are
    /// ignored; non-finite ones are skipped).
    pub fn measure(forecast: &Forecast, actual: &[f64]) -> Self {
        let levels = forecast.levels().as_slice();
        let (lo_q, hi_q) = (levels[0], levels[levels.len() - 1]);
        let coverage = (hi_q - lo_q).max(0.0);
        let vals = forecast.values();
        let lo = &vals[0];
        let hi = &vals[vals.len() - 1];
        let mid = forecast
            .median()
            .map(<[f64]>::to_vec)
            .unwrap_or_else(|| lo.iter().zip(hi).map(|(a, b)| (a + b) / 2.0).collect());
        let mut ratios = Vec::new();
        let mut misses = 0;
        for (i, &y) in actual.iter().enumerate().take(forecast.horizon()) {
            if !y.is_finite() {
                continue;
            }
            if y < lo[i] || y > hi[i] {
                misses += 1;
            }
            let half = if y >= mid[i] {
                hi[i] - mid[i]
            } else {
                mid[i] - lo[i]
            };
            let dist = (y - mid[i]).abs();
            ratios.push(if half > 0.0 {
                dist / half
            } else if dist > 0.0 {
                f64::MAX
            } else {
                0.0
            });
        }
        let n = ratios.len();
        let p = 1.0 - coverage;
        let expected = n as f64 * p;
        let tolerance = 2.0 * (n as f64 * p * (1.0 - p)).sqrt() + 1.0;
        let factor = if n > 0 && misses as f64 > expected + tolerance {
            ratios.sort_by(f64::total_cmp);
            let q = super::calibrate::quantile_sorted(&ratios, coverage);
            q.clamp(1.0, 1e6)
        } else {
            1.0
        };
        Self {
            observed: n,
            misses,
            factor,
        }
    }

    /// Whether the forecast should be widened.
    pub fn is_surprised(&self) -> bool {
        self.factor > 1.0
    }
}
