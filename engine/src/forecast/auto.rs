//! `auto`: per-series model choice by rolling-origin cross-validation inside the history.
//!
//! Folds end at `n - H` and `n - 2H` (`H` = horizon), each keeping at least two seasons before
//! its origin. Every candidate is fitted on the data before the origin (with its own
//! calibration) and scored by the mean pinball loss over [`PROVISIONING_LEVELS`] on the `H`
//! points after it. The winner with the lowest total is refitted on the whole history. A
//! candidate misbehaves when its fit or forecast fails, yields a non-finite value, or its
//! widest interval is more than [`EXPLODE`] times the range of the history (or its largest
//! magnitude, for flat histories); misbehaving
//! candidates are skipped, and if the refitted winner misbehaves `snaive` is used instead.

use super::{
    pinball, Error, Fit, Levels, Model, ModelKind, Predict, Result, ValidForecastParams,
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

pub(super) fn fit(history: &Series, params: &ValidForecastParams) -> Result<Model> {
    let n = history.len();
    let h = params.horizon();
    let m = params.season();
    let levels = Levels::provisioning();
    let mut scores = [0.0f64; CANDIDATES.len()];
    let mut folds = 0;
    for k in 1..=FOLDS {
        let Some(o) = n.checked_sub(k * h) else { break };
        if o < 2 * m.max(1) + 1 {
            break;
        }
        let (Some(train), Some(test)) = (history.head(o), history.tail(n - o)) else {
            break;
        };
        let test = &test.values()[..h];
        folds += 1;
        for (score, &kind) in scores.iter_mut().zip(&CANDIDATES) {
            *score += cv_score(&train, test, params, kind, &levels);
        }
    }
    let mut order: Vec<usize> = (0..CANDIDATES.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let winner = order
        .iter()
        .copied()
        .find(|&i| folds > 0 && scores[i].is_finite())
        .map_or(ModelKind::SeasonalNaive, |i| CANDIDATES[i]);
    match fit_checked(history, params, winner) {
        Ok(model) => Ok(model),
        // The last resort is not checked again: seasonal naive is what is left.
        Err(_) => params.with_model(ModelKind::SeasonalNaive).fit(history),
    }
}

/// Mean pinball loss of `kind` fitted on `train` against `test` (infinite on misbehaviour).
fn cv_score(
    train: &Series,
    test: &[f64],
    params: &ValidForecastParams,
    kind: ModelKind,
    levels: &Levels,
) -> f64 {
    let Ok(model) = fit_checked(train, params, kind) else {
        return f64::INFINITY;
    };
    let Ok(f) = model.predict(test.len(), levels) else {
        return f64::INFINITY;
    };
    let mut loss = 0.0;
    for (row, &q) in f.values().iter().zip(levels.as_slice()) {
        for (p, &y) in row.iter().zip(test) {
            loss += pinball(q, y, *p);
        }
    }
    let loss = loss / (test.len() * levels.as_slice().len()) as f64;
    if loss.is_finite() {
        loss
    } else {
        f64::INFINITY
    }
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
    if !(widest <= EXPLODE * range) {
        return Err(Error::ForecastDiverged { model: kind });
    }
    debug_assert_eq!(PROVISIONING_LEVELS.len(), vals.len());
    Ok(model)
}
