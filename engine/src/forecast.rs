//! `forecast`: calibrated quantile forecasts of a [`Series`].
//!
//! # Using it
//! Most callers need one call: [`forecast`] with a history and [`ValidForecastParams`] (built by
//! [`ForecastParams::check`]) returns a [`Forecast`]: for each quantile level (sorted ascending)
//! one value per step of the horizon. Quantiles are ordered at every step (`q0.05 <= q0.1 <= …`),
//! and when the history is non-negative ([`Series::is_non_negative`]) no quantile is negative.
//!
//! ```no_run
//! use predictive_engine::forecast::{forecast, ForecastParams, ModelKind};
//! use predictive_engine::series::Series;
//! let history = Series::new(0, 3600, (0..24 * 14).map(|i| (i % 24) as f64).collect()).unwrap();
//! let params = ForecastParams::new(48).model(ModelKind::Auto).check(history.step()).unwrap();
//! let f = forecast(&history, &params).unwrap();
//! let p95 = f.quantile(0.95).unwrap(); // 48 values, one per hour ahead
//! assert_eq!(p95.len(), 48);
//! ```
//!
//! The model traits follow linfa: [`Fit::fit`] on validated parameters returns a fitted
//! [`Model`], and [`Predict::predict`] on it returns the [`Forecast`].
//!
//! # Models ([`ModelKind`])
//! - `snaive` — seasonal naive: the last season repeated.
//! - `ets` — additive exponential smoothing (level + daily season, plus a weekly season when
//!   the history holds at least three weeks), parameters chosen on multi-step errors.
//! - `vpa-hist` — percentiles of an exponentially decaying histogram of all past samples
//!   (24 h half-life), the Kubernetes VPA recommender's method; flat over the horizon.
//! - `calendar-qr` — quantile regression on calendar features (hour of day × weekday/weekend):
//!   decay-weighted conditional quantiles per calendar cell, plus a decaying level correction.
//! - `auto` — picks one of the above per series by rolling-origin cross-validation inside the
//!   history, scored by mean pinball loss over the provisioning quantiles, and falls back to
//!   `snaive` when the winner misbehaves (non-finite output, exploding intervals, failed fit).
//!
//! # Calibration
//! Except for `vpa-hist` (whose histogram already is a distribution), every model's intervals
//! come from its own out-of-sample errors: the model forecasts from many origins inside the
//! history using only data before each origin, and the quantile `q` at lead `h` is the point
//! forecast plus the empirical `q`-quantile of the errors observed at leads near `h`
//! (rolling-origin residual quantiles, i.e. split conformal prediction per lead).
//!
//! # Surprise and cold start
//! [`Surprise`] widens a forecast when the errors seen since it was fitted exceed what its
//! intervals promised. [`cold`] gives a prior for series with little history.

mod auto;
mod calendar;
mod calibrate;
pub mod cold;
mod ets;
mod naive;
mod surprise;
mod vpa;

pub(crate) use calibrate::quantile_sorted;
pub use surprise::Surprise;

use crate::series::{Series, DAY};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The quantile levels used for provisioning decisions, and the default of [`ForecastParams`].
pub const PROVISIONING_LEVELS: [f64; 6] = [0.05, 0.10, 0.5, 0.9, 0.95, 0.99];

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The horizon is zero.
    #[error("horizon must be at least one step")]
    InvalidHorizon,
    /// A quantile level is not strictly between 0 and 1.
    #[error("quantile level {level} is not strictly between 0 and 1")]
    InvalidLevel {
        /// The rejected level.
        level: f64,
    },
    /// No quantile level was given.
    #[error("at least one quantile level is needed")]
    NoLevels,
    /// The season is zero.
    #[error("season must be at least one step")]
    InvalidSeason,
    /// The step of the series differs from the one the parameters were checked against.
    #[error("series step is {got} s but the parameters were checked for {expected} s")]
    StepMismatch {
        /// Step the parameters were checked for.
        expected: i64,
        /// Step of the series.
        got: i64,
    },
    /// A forecast was asked for more steps than the model was fitted for.
    #[error("asked for {asked} steps but the model was fitted for {fitted}")]
    HorizonBeyondFit {
        /// Steps asked.
        asked: usize,
        /// Horizon of the fit.
        fitted: usize,
    },
    /// The model produced non-finite or exploding values.
    #[error("model {model} diverged")]
    ForecastDiverged {
        /// The model.
        model: ModelKind,
    },
    /// An unknown model name.
    #[error("unknown model `{name}` (expected snaive, ets, vpa-hist, calendar-qr or auto)")]
    UnknownModel {
        /// The rejected name.
        name: String,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which forecaster to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ModelKind {
    /// Seasonal naive.
    SeasonalNaive,
    /// Exponential smoothing with daily (and weekly) seasonality.
    Ets,
    /// Decaying-histogram percentiles (VPA recommender).
    VpaHist,
    /// Quantile regression on calendar features.
    CalendarQr,
    /// Per-series choice by rolling-origin cross-validation.
    #[default]
    Auto,
}

impl ModelKind {
    /// Every model, `auto` last.
    pub const ALL: [ModelKind; 5] = [
        ModelKind::SeasonalNaive,
        ModelKind::Ets,
        ModelKind::VpaHist,
        ModelKind::CalendarQr,
        ModelKind::Auto,
    ];

    /// The name used on the command line and in benchmark output.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::SeasonalNaive => "snaive",
            ModelKind::Ets => "ets",
            ModelKind::VpaHist => "vpa-hist",
            ModelKind::CalendarQr => "calendar-qr",
            ModelKind::Auto => "auto",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ModelKind::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::UnknownModel { name: s.to_owned() })
    }
}

/// Quantile levels, strictly inside (0, 1), sorted ascending, without duplicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Levels(Vec<f64>);

impl Levels {
    /// Validates, sorts and deduplicates levels.
    ///
    /// # Errors
    /// [`Error::NoLevels`] for an empty list, [`Error::InvalidLevel`] for a level outside (0, 1).
    pub fn new(levels: impl IntoIterator<Item = f64>) -> Result<Self> {
        let mut v: Vec<f64> = levels.into_iter().collect();
        if let Some(&level) = v.iter().find(|&&l| !(l > 0.0 && l < 1.0)) {
            return Err(Error::InvalidLevel { level });
        }
        if v.is_empty() {
            return Err(Error::NoLevels);
        }
        v.sort_by(f64::total_cmp);
        v.dedup();
        Ok(Self(v))
    }

    /// [`PROVISIONING_LEVELS`].
    pub fn provisioning() -> Self {
        Self(PROVISIONING_LEVELS.to_vec())
    }

    /// The levels, ascending.
    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }

    /// Position of `level` (compared with a 1e-9 tolerance).
    pub fn position(&self, level: f64) -> Option<usize> {
        self.0.iter().position(|&l| (l - level).abs() < 1e-9)
    }
}

impl Default for Levels {
    fn default() -> Self {
        Self::provisioning()
    }
}

/// A quantile forecast: for each level, one value per step of the horizon.
///
/// # Guarantees
/// All values are finite; at every step the values are non-decreasing in the level; when the
/// history was non-negative no value is negative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    start: i64,
    step: i64,
    model: ModelKind,
    levels: Levels,
    /// `values[level][step]`.
    values: Vec<Vec<f64>>,
}

impl Forecast {
    /// Builds a forecast from `values[level][step]`, sorting each step across levels and
    /// clamping at `floor` when given.
    ///
    /// # Errors
    /// [`Error::ForecastDiverged`] if a value is not finite or the shape does not match.
    pub fn new(
        start: i64,
        step: i64,
        model: ModelKind,
        levels: Levels,
        mut values: Vec<Vec<f64>>,
        floor: Option<f64>,
    ) -> Result<Self> {
        let h = values.first().map_or(0, Vec::len);
        if values.len() != levels.0.len()
            || h == 0
            || values
                .iter()
                .any(|r| r.len() != h || r.iter().any(|v| !v.is_finite()))
        {
            return Err(Error::ForecastDiverged { model });
        }
        let mut col = vec![0.0; values.len()];
        for t in 0..h {
            for (c, row) in col.iter_mut().zip(&values) {
                *c = row[t];
            }
            col.sort_by(f64::total_cmp);
            for (c, row) in col.iter().zip(values.iter_mut()) {
                row[t] = floor.map_or(*c, |f| c.max(f));
            }
        }
        Ok(Self {
            start,
            step,
            model,
            levels,
            values,
        })
    }

    /// Timestamp (unix seconds) of the first forecast step.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// Step in seconds.
    pub fn step(&self) -> i64 {
        self.step
    }

    /// Number of steps.
    pub fn horizon(&self) -> usize {
        self.values[0].len()
    }

    /// The model that produced it (for `auto`, the one it chose).
    pub fn model(&self) -> ModelKind {
        self.model
    }

    /// The quantile levels, ascending.
    pub fn levels(&self) -> &Levels {
        &self.levels
    }

    /// The values of one level, one per step, if that level was asked for.
    pub fn quantile(&self, level: f64) -> Option<&[f64]> {
        self.levels.position(level).map(|i| &self.values[i][..])
    }

    /// The median if 0.5 was asked for.
    pub fn median(&self) -> Option<&[f64]> {
        self.quantile(0.5)
    }

    /// All values, `[level][step]`.
    pub fn values(&self) -> &[Vec<f64>] {
        &self.values
    }

    /// Timestamp of step `i`.
    pub fn timestamp(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    /// Scales every quantile's distance from the centre (the median, or the middle level) by
    /// `factor` (values below 1 are treated as 1), keeping the zero floor when `non_negative`.
    pub fn widen(&mut self, factor: f64, non_negative: bool) {
        let factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.0
        };
        let mid = self.levels.position(0.5).unwrap_or(self.levels.0.len() / 2);
        let centre = self.values[mid].clone();
        for row in &mut self.values {
            for (v, c) in row.iter_mut().zip(&centre) {
                let w = c + (*v - c) * factor;
                *v = if non_negative { w.max(0.0) } else { w };
            }
        }
    }
}

/// Unchecked forecasting parameters; [`ForecastParams::check`] makes them usable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastParams {
    /// Steps to forecast.
    pub horizon: usize,
    /// Steps per season; `None` means one day (86 400 s / step, at least 1).
    pub season: Option<usize>,
    /// Quantile levels.
    pub levels: Vec<f64>,
    /// The model.
    pub model: ModelKind,
}

impl ForecastParams {
    /// Parameters for `horizon` steps, daily season, [`PROVISIONING_LEVELS`], `auto`.
    pub fn new(horizon: usize) -> Self {
        Self {
            horizon,
            season: None,
            levels: PROVISIONING_LEVELS.to_vec(),
            model: ModelKind::Auto,
        }
    }

    /// Sets the model.
    pub fn model(mut self, model: ModelKind) -> Self {
        self.model = model;
        self
    }

    /// Sets the season in steps.
    pub fn season(mut self, season: usize) -> Self {
        self.season = Some(season);
        self
    }

    /// Sets the quantile levels.
    pub fn levels(mut self, levels: impl IntoIterator<Item = f64>) -> Self {
        self.levels = levels.into_iter().collect();
        self
    }

    /// Validates against the step (seconds) of the series to forecast.
    ///
    /// # Errors
    /// [`Error::InvalidHorizon`], [`Error::InvalidSeason`], [`Error::InvalidLevel`],
    /// [`Error::NoLevels`].
    pub fn check(&self, step: i64) -> Result<ValidForecastParams> {
        if self.horizon == 0 {
            return Err(Error::InvalidHorizon);
        }
        let season = match self.season {
            Some(0) => return Err(Error::InvalidSeason),
            Some(s) => s,
            None => (DAY / step.max(1)).max(1) as usize,
        };
        Ok(ValidForecastParams {
            horizon: self.horizon,
            season,
            step: step.max(1),
            levels: Levels::new(self.levels.iter().copied())?,
            model: self.model,
        })
    }
}

/// Validated forecasting parameters; implements [`Fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidForecastParams {
    horizon: usize,
    season: usize,
    step: i64,
    levels: Levels,
    model: ModelKind,
}

impl ValidForecastParams {
    /// Steps to forecast.
    pub fn horizon(&self) -> usize {
        self.horizon
    }
    /// Steps per season.
    pub fn season(&self) -> usize {
        self.season
    }
    /// The quantile levels.
    pub fn levels(&self) -> &Levels {
        &self.levels
    }
    /// The model.
    pub fn model(&self) -> ModelKind {
        self.model
    }
    /// The same parameters with another model.
    pub fn with_model(&self, model: ModelKind) -> Self {
        Self {
            model,
            ..self.clone()
        }
    }
}

/// Fitting a model to a history (linfa's `Fit`).
pub trait Fit {
    /// The fitted model.
    type Model: Predict;
    /// Fits on `history`.
    ///
    /// # Errors
    /// [`Error::StepMismatch`] if the history's step is not the one the parameters were checked
    /// for. Models that cannot fit a short history fall back to simpler ones instead of failing.
    fn fit(&self, history: &Series) -> Result<Self::Model>;
}

/// Forecasting with a fitted model (linfa's `Predict`).
pub trait Predict {
    /// Forecasts `horizon` steps after the history at `levels`.
    ///
    /// # Errors
    /// [`Error::HorizonBeyondFit`] if `horizon` exceeds the fitted horizon,
    /// [`Error::ForecastDiverged`] if the model produced non-finite values.
    fn predict(&self, horizon: usize, levels: &Levels) -> Result<Forecast>;
}

/// How a fitted model turns levels into values.
#[derive(Debug, Clone)]
enum Body {
    /// Point path plus per-lead residual quantiles.
    Calibrated {
        point: Vec<f64>,
        residuals: calibrate::Residuals,
    },
    /// One weighted sample, flat over the horizon.
    Histogram(vpa::WeightedSample),
    /// `auto`'s mix: level `levels[i]` (and the requested levels nearest to it) comes from
    /// `parts[pick[i]]`.
    PerLevel {
        levels: Vec<f64>,
        parts: Vec<Body>,
        pick: Vec<usize>,
    },
}

impl Body {
    /// The `q`-quantile at 0-based step `t`, its distance from the median scaled by `widen`.
    fn value(&self, t: usize, q: f64, widen: f64) -> f64 {
        match self {
            Body::Calibrated { point, residuals } => {
                let c = point[t] + residuals.quantile(t, 0.5);
                let v = point[t] + residuals.quantile(t, q);
                c + (v - c) * widen
            }
            Body::Histogram(w) => {
                let c = w.quantile(0.5);
                c + (w.quantile(q) - c) * widen
            }
            Body::PerLevel {
                levels,
                parts,
                pick,
            } => {
                let i = levels
                    .iter()
                    .enumerate()
                    .min_by(|a, b| (a.1 - q).abs().total_cmp(&(b.1 - q).abs()))
                    .map_or(0, |(i, _)| i);
                parts[pick[i]].value(t, q, widen)
            }
        }
    }
}

/// A fitted forecaster (any [`ModelKind`]); see [`Fit`] and [`Predict`].
#[derive(Debug, Clone)]
pub struct Model {
    kind: ModelKind,
    start: i64,
    step: i64,
    horizon: usize,
    non_negative: bool,
    /// Extra widening, e.g. for cold starts (1 = none).
    widen: f64,
    body: Body,
}

impl Model {
    /// The model kind (for `auto`, the one it chose).
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Horizon the model was fitted for.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Multiplies the width of every interval by `factor` (at least 1) from now on.
    pub fn widen(&mut self, factor: f64) {
        if factor.is_finite() && factor > 1.0 {
            self.widen *= factor;
        }
    }
}

impl Fit for ValidForecastParams {
    type Model = Model;

    fn fit(&self, history: &Series) -> Result<Model> {
        if history.step() != self.step {
            return Err(Error::StepMismatch {
                expected: self.step,
                got: history.step(),
            });
        }
        let ctx = Ctx {
            y: history.values(),
            start: history.start(),
            step: history.step(),
            season: self.season,
            horizon: self.horizon,
        };
        let body = match self.model {
            ModelKind::Auto => return auto::fit(history, self),
            kind => fit_kind(kind, &ctx),
        };
        Ok(Model {
            kind: self.model,
            start: history.end(),
            step: history.step(),
            horizon: self.horizon,
            non_negative: history.is_non_negative(),
            widen: 1.0,
            body,
        })
    }
}

/// What every model's fitting sees.
#[derive(Debug, Clone, Copy)]
struct Ctx<'a> {
    y: &'a [f64],
    start: i64,
    step: i64,
    season: usize,
    horizon: usize,
}

impl Ctx<'_> {
    /// Timestamp of index `i` (may be beyond the data).
    fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

fn fit_kind(kind: ModelKind, ctx: &Ctx<'_>) -> Body {
    match kind {
        ModelKind::SeasonalNaive | ModelKind::Auto => naive::fit(ctx),
        ModelKind::Ets => ets::fit(ctx),
        ModelKind::VpaHist => vpa::fit(ctx),
        ModelKind::CalendarQr => calendar::fit(ctx),
    }
}

impl Predict for Model {
    fn predict(&self, horizon: usize, levels: &Levels) -> Result<Forecast> {
        if horizon > self.horizon {
            return Err(Error::HorizonBeyondFit {
                asked: horizon,
                fitted: self.horizon,
            });
        }
        if horizon == 0 {
            return Err(Error::InvalidHorizon);
        }
        let values: Vec<Vec<f64>> = levels
            .as_slice()
            .iter()
            .map(|&q| {
                (0..horizon)
                    .map(|t| self.body.value(t, q, self.widen))
                    .collect()
            })
            .collect();
        Forecast::new(
            self.start,
            self.step,
            self.kind,
            levels.clone(),
            values,
            self.non_negative.then_some(0.0),
        )
    }
}

/// Fits the model of `params` on `history` and forecasts its horizon at its levels.
///
/// # Errors
/// As [`Fit::fit`] and [`Predict::predict`].
pub fn forecast(history: &Series, params: &ValidForecastParams) -> Result<Forecast> {
    params.fit(history)?.predict(params.horizon, &params.levels)
}

/// Pinball (quantile) loss of predicting `pred` for the `q`-quantile when `y` happened.
pub fn pinball(q: f64, y: f64, pred: f64) -> f64 {
    let d = y - pred;
    (q * d).max((q - 1.0) * d)
}

#[cfg(test)]
mod tests;
