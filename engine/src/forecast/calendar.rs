//! `calendar-qr`: quantile regression on calendar features.
//!
//! Features: the position in the day (hour of day for hourly data) crossed with weekday /
//! weekend once the history holds two weeks. With one-hot features and their interaction the
//! quantile-regression fit is, exactly, the weighted quantile of the samples in each calendar
//! cell; weights decay with age (one-week half-life) so the profile follows slow drift. The
//! point forecast is the cell median plus the current departure from it: the median residual
//! of the last season (kept, so level shifts are adopted) plus that of the last quarter season
//! beyond it (decaying with a quarter-season half-life). Intervals come from
//! rolling-origin residuals, with the profile refitted every seven seasons of origins using only
//! data before them.

use super::{calibrate, vpa::WeightedSample, Body, Ctx};
use crate::series::{day_of_week, DAY};

/// Half-life of a sample's weight in the profile, in seasons.
const HALF_LIFE_SEASONS: f64 = 7.0;
/// During calibration the profile is refitted every this many seasons of origins.
const REFIT_SEASONS: usize = 7;

/// The calendar cell of index `t`.
#[derive(Debug, Clone)]
struct Cells {
    season: usize,
    /// Cell of every index of the history and the horizon after it.
    map: Vec<u32>,
    /// Whether the season is a calendar day (then slots follow the clock, else `t mod season`).
    daily: bool,
    weekend: bool,
}

impl Cells {
    fn new(ctx: &Ctx<'_>, n: usize) -> Self {
        // A season longer than the history cannot be estimated; cap it (and the cell table).
        let season = ctx.season.clamp(1, n.max(1));
        let daily = season as i64 * ctx.step == DAY;
        let mut cells = Self {
            season,
            map: Vec::new(),
            daily,
            weekend: daily && n >= 14 * season,
        };
        cells.map = (0..n + ctx.horizon)
            .map(|t| cells.compute(ctx, t) as u32)
            .collect();
        cells
    }

    fn count(&self) -> usize {
        self.season * if self.weekend { 2 } else { 1 }
    }

    fn of(&self, _ctx: &Ctx<'_>, t: usize) -> usize {
        self.map[t] as usize
    }

    fn compute(&self, ctx: &Ctx<'_>, t: usize) -> usize {
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

/// Median of the residuals `y - profile` over `y[origin - k .. origin]`.
fn departure(ctx: &Ctx<'_>, cells: &Cells, prof: &[f64], origin: usize, k: usize) -> f64 {
    let k = k.max(1).min(origin);
    if k == 0 {
        return 0.0;
    }
    let mut r: Vec<f64> = (origin - k..origin)
        .map(|t| ctx.y[t] - prof[cells.of(ctx, t)])
        .collect();
    r.sort_by(f64::total_cmp);
    calibrate::quantile_sorted(&r, 0.5)
}

/// The point path from `origin` given a profile fitted before it: the profile, shifted by the
/// departure of the last season (which persists: a level shift is adopted within a season),
/// plus the extra departure of the last quarter season, which decays.
fn path(ctx: &Ctx<'_>, cells: &Cells, prof: &[f64], origin: usize, out: &mut [f64]) {
    let long = departure(ctx, cells, prof, origin, cells.season);
    let short = departure(ctx, cells, prof, origin, cells.season / 4) - long;
    let decay = 0.5f64.powf(1.0 / (cells.season as f64 / 4.0).max(1.0));
    let mut d = short;
    for (j, o) in out.iter_mut().enumerate() {
        d *= decay;
        *o = prof[cells.of(ctx, origin + j)] + long + d;
    }
}

pub(super) fn fit(ctx: &Ctx<'_>) -> Body {
    let n = ctx.y.len();
    let cells = Cells::new(ctx, n);
    let origins = calibrate::origins(ctx, cells.season.min(n.saturating_sub(1)).max(1));
    let mut prof = Vec::new();
    let mut fitted_at = usize::MAX;
    let residuals = calibrate::collect(ctx, &origins, |_, o, out| {
        if fitted_at == usize::MAX || o >= fitted_at + REFIT_SEASONS * cells.season {
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
