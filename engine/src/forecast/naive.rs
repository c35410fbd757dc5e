//! Seasonal naive: the last season, repeated.

use super::{calibrate, Body, Ctx};

/// The season actually used: the configured one when the history holds more than one season,
/// else 1 (plain naive: the last value).
fn effective_season(ctx: &Ctx<'_>) -> usize {
    if ctx.y.len() > ctx.season {
        ctx.season
    } else {
        1
    }
}

/// Writes the seasonal-naive path from `origin` (uses `y[origin - m .. origin]`).
pub(super) fn path(y: &[f64], m: usize, origin: usize, out: &mut [f64]) {
    for (k, o) in out.iter_mut().enumerate() {
        *o = y[origin - m + k % m];
    }
}

pub(super) fn fit(ctx: &Ctx<'_>) -> Body {
    let m = effective_season(ctx);
    let y = ctx.y;
    let residuals = calibrate::rolling(ctx, m, |o, out| path(y, m, o, out));
    let mut point = vec![0.0; ctx.horizon];
    path(y, m, y.len(), &mut point);
    Body::Calibrated { point, residuals }
}
