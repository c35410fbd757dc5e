//! Rolling-origin residual quantiles: the calibration shared by the point-path models.
//!
//! A model forecasts from many origins inside its history, each time using only data before
//! the origin; the errors `actual - point` are kept per lead. The `q`-quantile at lead `h` is
//! then the point forecast plus the empirical `q`-quantile of the errors at leads near `h`
//! (leads within `h / 8` are pooled, so late leads borrow strength from their neighbours).

use super::Ctx;

/// Origins used for calibration: at most this many seasons back from the end.
const WINDOW_SEASONS: usize = 14;
/// Nor fewer points back than this (for short seasons).
const WINDOW_MIN: usize = 336;
/// At most this many origins (longer windows are strided).
const MAX_ORIGINS: usize = 400;
/// At most this many errors are kept per lead after pooling (evenly strided).
const MAX_POOLED: usize = 800;
/// Below this many errors for a lead, the normal fallback is used.
const MIN_ERRORS: usize = 8;

/// Per-lead sorted errors plus a normal fallback for leads without enough of them.
#[derive(Debug, Clone)]
pub(crate) struct Residuals {
    /// `pooled[lead]`: sorted errors (0-based lead).
    pooled: Vec<Vec<f64>>,
    /// Standard deviation of one-step changes, for the fallback (grows with sqrt(lead)).
    sigma: f64,
}

impl Residuals {
    /// Builds from raw `errors[lead]`.
    pub(crate) fn from_errors(errors: Vec<Vec<f64>>, sigma: f64) -> Self {
        let h = errors.len();
        let pooled = (0..h)
            .map(|t| {
                let r = t / 8;
                let lo = t.saturating_sub(r);
                let hi = (t + r).min(h - 1);
                let total: usize = errors[lo..=hi].iter().map(Vec::len).sum();
                let stride = total.div_ceil(MAX_POOLED).max(1);
                let mut v: Vec<f64> = errors[lo..=hi]
                    .iter()
                    .flatten()
                    .copied()
                    .step_by(stride)
                    .collect();
                v.retain(|x| x.is_finite());
                v.sort_by(f64::total_cmp);
                v
            })
            .collect();
        Self { pooled, sigma }
    }

    /// The `q`-quantile of the error at 0-based lead `t` (the last lead's beyond the end).
    pub(crate) fn quantile(&self, t: usize, q: f64) -> f64 {
        let t = t.min(self.pooled.len().saturating_sub(1));
        match self.pooled.get(t) {
            Some(v) if v.len() >= MIN_ERRORS => quantile_sorted(v, q),
            _ => self.sigma * ((t + 1) as f64).sqrt() * normal_quantile(q),
        }
    }

    /// Number of errors behind lead `t`.
    #[cfg(test)]
    pub(crate) fn count(&self, t: usize) -> usize {
        self.pooled.get(t).map_or(0, Vec::len)
    }
}

/// Origins `>= min_origin` (and `>= 1`) in the calibration window, ascending.
pub(crate) fn origins(ctx: &Ctx<'_>, min_origin: usize) -> Vec<usize> {
    let n = ctx.y.len();
    let window = WINDOW_SEASONS.saturating_mul(ctx.season).max(WINDOW_MIN);
    let lo = min_origin.max(n.saturating_sub(window)).max(1);
    if lo >= n {
        return Vec::new();
    }
    let stride = (n - lo).div_ceil(MAX_ORIGINS).max(1);
    (lo..n).step_by(stride).collect()
}

/// Runs `path(origin, out)` (which must use only `y[..origin]`) from the calibration
/// [`origins`] `>= min_origin` and collects the errors per lead.
pub(crate) fn rolling(
    ctx: &Ctx<'_>,
    min_origin: usize,
    mut path: impl FnMut(usize, &mut [f64]),
) -> Residuals {
    let os = origins(ctx, min_origin);
    collect(ctx, &os, |_, o, out| path(o, out))
}

/// Like [`rolling`] over given `origins`; `path(i, origins[i], out)`.
pub(crate) fn collect(
    ctx: &Ctx<'_>,
    origins: &[usize],
    mut path: impl FnMut(usize, usize, &mut [f64]),
) -> Residuals {
    let y = ctx.y;
    let n = y.len();
    let mut errors = vec![Vec::new(); ctx.horizon];
    let mut buf = vec![0.0; ctx.horizon];
    for (i, &o) in origins.iter().enumerate() {
        path(i, o, &mut buf);
        for (k, (e, p)) in errors.iter_mut().zip(&buf).enumerate().take(n - o) {
            e.push(y[o + k] - p);
        }
    }
    Residuals::from_errors(errors, step_sigma(y))
}

/// Standard deviation of one-step changes, floored so that intervals never collapse to a
/// point on constant data.
pub(crate) fn step_sigma(y: &[f64]) -> f64 {
    let n = y.len();
    let sd = if n >= 3 {
        let d: Vec<f64> = y.windows(2).map(|w| w[1] - w[0]).collect();
        let m = d.iter().sum::<f64>() / d.len() as f64;
        (d.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (d.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    let scale = y.iter().map(|v| v.abs()).sum::<f64>() / n.max(1) as f64;
    let sd = if sd.is_finite() { sd } else { f64::MAX.sqrt() };
    sd.max(0.05 * scale).max(1e-9)
}

/// Linear-interpolation quantile (type 7) of a sorted, non-empty slice.
pub(crate) fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let i = pos.floor() as usize;
    let j = (i + 1).min(v.len() - 1);
    let w = pos - i as f64;
    v[i] * (1.0 - w) + v[j] * w
}

/// Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
pub(crate) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let pl = 0.02425;
    if p < pl {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - pl {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantile_should_match_tables() {
        for (p, z) in [
            (0.5, 0.0),
            (0.9, 1.281_551_6),
            (0.95, 1.644_853_6),
            (0.01, -2.326_347_9),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-6, "{p}");
        }
    }

    #[test]
    fn quantile_sorted_should_interpolate() {
        assert_eq!(quantile_sorted(&[0.0, 10.0], 0.25), 2.5);
        assert_eq!(quantile_sorted(&[3.0], 0.9), 3.0);
    }

    #[test]
    fn residuals_should_pool_neighbouring_leads_and_fall_back_when_few() {
        let errs = (0..16).map(|t| vec![t as f64; 10]).collect();
        let r = Residuals::from_errors(errs, 1.0);
        assert_eq!(r.count(0), 10);
        assert_eq!(r.count(15), 20); // lead 16 pools leads 15..16 (radius 1)
        let few = Residuals::from_errors(vec![vec![1.0]], 2.0);
        assert!((few.quantile(0, 0.9) - 2.0 * 1.281_551_6).abs() < 1e-6);
    }
}
