//! `calendar-qr`: quantile regression on calendar features.
//!
//! Features: the position in the day (hour of day for hourly data) crossed with weekday /
//! weekend once the history holds two weeks. With one-hot features and their interaction the
//! quantile-regression fit is, exactly, the weighted quantile of the samples in each calendar
//! cell; weights decay with age (one-week half-life) so the profile follows slow drift. The
//! point forecast is the cell median plus the current departure from it (mean of the last
//! quarter season of residuals), decaying with a quarter-season half-life. Intervals come from
//! rolling-origin residuals, with the profile refitted once per season of origins using only
//! data before them.

use super::{calibrate, vpa::WeightedSample, Body, Ctx};
use crate::series::{day_of_week, DAY};

/// Half-life of a sample's weight in the profile, in seasons.
const HALF_LIFE_SEASONS: f64 = 7.0;

/// The calendar cell of index `t`.
#[derive(Debug, Clone, Copy)]
struct Cells {
    season: usize,
    /// Whether the season is a calendar day (then slots follow the clock, else `t mod season`).
    daily: bool,
    weekend: bool,
}

impl Cells {
    fn new(ctx: &Ctx<'_>, n: usize) -> Self {
        let daily = ctx.season as i64 * ctx.step == DAY;
        Self {
            season: ctx.season.max(1),
            daily,
            weekend: daily && n >= 14 * ctx.season,
        }
    }

    fn count(&self) -> usize {
        self.season * if self.weekend { 2 } else { 1 }
    }

    fn of(&self, ctx: &Ctx<'_>, t: usize) -> usize {
        let ts = ctx.ts(t);
        let slot = if self.daily {
            (ts.rem_euclid(DAY) / ctx.step) as usize % self.season
        } else {
            t % self.season
        };
        if self.weekend && day_of_week(ts) >= 5 {
            slot + self.season
        } else {
            slot
        }
    }
}

/// Cell medians fitted on `y[..end]`; cells without data take the overall median.
fn profile(ctx: &Ctx<'_>, cells: &Cells, end: usize) -> Vec<f64> {
    let half = HALF_LIFE_SEASONS * cells.season as f64;
    let mut per: Vec<Vec<(f64, f64)>> = vec![Vec::new(); cells.count()];
    let mut all = Vec::with_capacity(end);
    for (t, &v) in ctx.y[..end].iter().enumerate() {
        let w = (-((end - 1 - t) as f64) / half * std::f64::consts::LN_2)
            .exp()
            .max(1e-300);
        per[cells.of(ctx, t)].push((v, w));
        all.push((v, w));
    }
    let overall = WeightedSample::new(all).quantile(0.5);
    per.into_iter()
        .map(|c| {
            if c.is_empty() {
                overall
            } else {
                WeightedSample::new(c).quantile(0.5)
            }
        })
        .collect()
}

/// The point path from `origin` given a profile fitted before it.
fn path(ctx: &Ctx<'_>, cells: &Cells, prof: &[f64], origin: usize, out: &mut [f64]) {
    let k = (cells.season / 4).max(1).min(origin);
    let dep = if k == 0 {
        0.0
    } else {
        (origin - k..origin)
            .map(|t| ctx.y[t] - prof[cells.of(ctx, t)])
            .sum::<f64>()
            / k as f64
    };
    let decay = 0.5f64.powf(1.0 / (cells.season as f64 / 4.0).max(1.0));
    let mut d = dep;
    for (j, o) in out.iter_mut().enumerate() {
        d *= decay;
        *o = prof[cells.of(ctx, origin + j)] + d;
    }
}

pub(super) fn fit(ctx: &Ctx<'_>) -> Body {
    let n = ctx.y.len();
    let cells = Cells::new(ctx, n);
    let origins = calibrate::origins(ctx, cells.season.min(n.saturating_sub(1)).max(1));
    let mut prof = Vec::new();
    let mut fitted_at = usize::MAX;
    let residuals = calibrate::collect(ctx, &origins, |_, o, out| {
        if fitted_at == usize::MAX || o >= fitted_at + cells.season {
            prof = profile(ctx, &cells, o);
            fitted_at = o;
        }
        path(ctx, &cells, &prof, o, out);
    });
    let prof = profile(ctx, &cells, n);
    let mut point = vec![0.0; ctx.horizon];
    path(ctx, &cells, &prof, n, &mut point);
    Body::Calibrated { point, residuals }
}
