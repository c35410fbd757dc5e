//! `auto`: per-series model choice by rolling-origin cross-validation inside the history.
//!
//! Folds end at `n - H` and `n - 2H` (`H` = horizon), each keeping at least two seasons before
//! its origin. Every candidate is fitted on the data before the origin (with its own
//! calibration) and its pinball loss is measured at each of the [`PROVISIONING_LEVELS`] on the
//! `H` points after it. The choice is made per series and per level: each level takes the
//! candidate with the lowest loss at that level, summed over folds (the mean pinball loss
//! over the levels of the resulting forecast is then the lowest any mix of candidates
//! reaches). A series whose spikes make the histogram the best median and the calibrated
//! seasonal model the best 95th percentile gets both. Quantiles are re-sorted per step, so the
//! mix never crosses. The chosen candidates are refitted on the whole history.
//!
//! A candidate misbehaves when its fit or forecast fails, yields a non-finite value, or its
//! widest interval is more than [`EXPLODE`] times the range of the history (or its largest
//! magnitude, for flat histories). Misbehaving candidates are skipped in the folds; a chosen
//! candidate that misbehaves on the whole history is replaced by `snaive`, and so is
//! everything when no fold fits in the history.

use super::{
    pinball, Body, Error, Fit, Levels, Model, ModelKind, Predict, Result, ValidForecastParams,
    PROVISIONING_LEVELS,
};
use crate::series::Series;

/// Candidates, in order of preference on ties.
pub(super) const CANDIDATES: [ModelKind; 4] = [
    ModelKind::SeasonalNaive,
    ModelKind::Ets,
    ModelKind::CalendarQr,
    ModelKind::VpaHist,
];

/// Number of cross-validation folds.
const FOLDS: usize = 2;

/// How many times the history's range an interval may span before it counts as exploding.
pub(super) const EXPLODE: f64 = 10.0;

const NL: usize = PROVISIONING_LEVELS.len();

pub(super) fn fit(history: &Series, params: &ValidForecastParams) -> Result<Model> {
    let n = history.len();
    let h = params.horizon();
    let m = params.season();
    let levels = Levels::provisioning();
    let mut scores = [[0.0f64; NL]; CANDIDATES.len()];
    let mut folds = 0;
    for k in 1..=FOLDS {
        let Some(o) = n.checked_sub(k * h) else { break };
        if o < m.max(1).saturating_mul(2).saturating_add(1) {
            break;
        }
        let (Some(train), Some(test)) = (history.head(o), history.tail(n - o)) else {
            break;
        };
        let test = &test.values()[..h];
        folds += 1;
        for (score, &kind) in scores.iter_mut().zip(&CANDIDATES) {
            let s = cv_scores(&train, test, params, kind, &levels);
            for (a, b) in score.iter_mut().zip(s) {
                *a += b;
            }
        }
    }
    // Per level, the best candidate (index into CANDIDATES); snaive when nothing was scored.
    let mut pick = [0usize; NL];
    if folds > 0 {
        for (l, p) in pick.iter_mut().enumerate() {
            let best = (0..CANDIDATES.len())
                .filter(|&c| scores[c][l].is_finite())
                .min_by(|&a, &b| scores[a][l].total_cmp(&scores[b][l]));
            *p = best.unwrap_or(0);
        }
    }
    // Refit each chosen candidate once on the whole history.
    let mut parts: Vec<(usize, Model)> = Vec::new();
    for &c in &pick {
        if parts.iter().any(|(pc, _)| *pc == c) {
            continue;
        }
        if let Ok(model) = fit_checked(history, params, CANDIDATES[c]) {
            parts.push((c, model));
        }
    }
    let snaive = || params.with_model(ModelKind::SeasonalNaive).fit(history);
    if parts.len() < pick.iter().collect::<std::collections::BTreeSet<_>>().len() {
        // A chosen candidate misbehaved on the whole history: it is replaced by snaive.
        if !parts.iter().any(|(c, _)| *c == 0) {
            parts.push((0, snaive()?));
        }
        for p in &mut pick {
            if !parts.iter().any(|(c, _)| c == p) {
                *p = 0;
            }
        }
    }
    let median_pick = pick[PROVISIONING_LEVELS
        .iter()
        .position(|&l| l == 0.5)
        .unwrap_or(NL / 2)];
    let mut base = parts
        .iter()
        .find(|(c, _)| *c == median_pick)
        .map(|(_, m)| m.clone())
        .map_or_else(snaive, Ok)?;
    if parts.len() == 1 {
        return Ok(base);
    }
    let bodies: Vec<Body> = parts.iter().map(|(_, m)| m.body.clone()).collect();
    let pick_idx: Vec<usize> = pick
        .iter()
        .map(|p| parts.iter().position(|(c, _)| c == p).unwrap_or(0))
        .collect();
    base.body = Body::PerLevel {
        levels: PROVISIONING_LEVELS.to_vec(),
        parts: bodies,
        pick: pick_idx,
    };
    Ok(base)
}

/// Mean pinball loss per provisioning level of `kind` fitted on `train` against `test`
/// (infinite on misbehaviour).
fn cv_scores(
    train: &Series,
    test: &[f64],
    params: &ValidForecastParams,
    kind: ModelKind,
    levels: &Levels,
) -> [f64; NL] {
    let bad = [f64::INFINITY; NL];
    let Ok(model) = fit_checked(train, params, kind) else {
        return bad;
    };
    let Ok(f) = model.predict(test.len(), levels) else {
        return bad;
    };
    let mut out = [0.0; NL];
    for ((o, row), &q) in out.iter_mut().zip(f.values()).zip(levels.as_slice()) {
        let loss = row
            .iter()
            .zip(test)
            .map(|(p, &y)| pinball(q, y, *p))
            .sum::<f64>()
            / test.len() as f64;
        *o = if loss.is_finite() {
            loss
        } else {
            f64::INFINITY
        };
    }
    out
}

/// Fits `kind` and checks it for misbehaviour.
fn fit_checked(history: &Series, params: &ValidForecastParams, kind: ModelKind) -> Result<Model> {
    let model = params.with_model(kind).fit(history)?;
    let f = model.predict(params.horizon(), &Levels::provisioning())?;
    let (lo, hi) = history
        .values()
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let range = (hi - lo).max(hi.abs().max(lo.abs())).max(1e-9);
    let vals = f.values();
    let widest = vals[vals.len() - 1]
        .iter()
        .zip(&vals[0])
        .map(|(a, b)| a - b)
        .fold(0.0, f64::max);
    let limit = EXPLODE * range;
    // Diverged when wider than the limit or when either side is NaN (incomparable).
    if widest.is_nan() || limit.is_nan() || widest > limit {
        return Err(Error::ForecastDiverged { model: kind });
    }
    Ok(model)
}
