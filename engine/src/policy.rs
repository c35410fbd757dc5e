//! `policy`: the predictive allocation policy.
//!
//! [`plan`] is a pure function from a [`Snapshot`] of the present, a [`QuantileForecast`] of the
//! next steps and a checked [`ValidPolicy`] to a [`Plan`]: the capacity to request now so that it
//! is ready one provisioning delay later, and why.
//!
//! How the capacity is chosen:
//! 1. **Confidence threshold.** The desired capacity of each horizon step is the forecast quantile
//!    at the policy's confidence level (the smallest forecast level at or above it).
//! 2. **Safety margin.** On top of it goes a margin proportional to the forecast spread (that
//!    quantile minus the median), scaled up by the surprise factor (how much worse recent
//!    forecasts did than usual).
//! 3. **Pre-provisioning.** The capacity requested now is the desired capacity of the step one
//!    provisioning delay ahead (`lead`), so that it is ready when demand arrives.
//! 4. **Deviation threshold.** When the latest usage exceeds what was predicted for it by more
//!    than the threshold, the policy corrects at once: capacity rises to at least that usage plus
//!    the spread.
//! 5. **Asymmetric changes.** Scale-up happens at once; scale-down only to the highest desired
//!    capacity of the stabilisation window, and only when the reduction beats the churn penalty.
//! 6. **Bounds.** The result always lies within `[min, max]`.
//!
//! [`Allocator`] drives the policy online over a usage stream with the cheap
//! [`online::OnlineForecaster`]; it is what the benchmark and the simulator replay.

pub mod budget;
pub mod clone;
pub mod online;
pub mod purchase;

use std::collections::VecDeque;
use std::fmt;

use serde::Serialize;

use online::{OnlineForecaster, OnlineSettings, Predictor};

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is outside its allowed range.
    #[error("invalid policy parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The forecast handed to [`plan`] has no step or no level.
    #[error("forecast is empty: it needs at least one step and one quantile level")]
    EmptyForecast,
    /// The forecast's rows do not all hold one value per level.
    #[error("forecast step {step} holds {got} values for {expected} levels")]
    RaggedForecast {
        /// The offending step (1-based).
        step: usize,
        /// Values found.
        got: usize,
        /// Levels declared.
        expected: usize,
    },
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Unchecked policy parameters; [`PolicyParams::check`] turns them into a [`ValidPolicy`].
///
/// The defaults are the ones the benchmark runs; they are not tuned per trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyParams {
    /// Confidence threshold: the highest quantile level the desired capacity uses, in (0, 1).
    pub confidence: f64,
    /// The lowest quantile level the cost trade-off may fall back to, in (0, `confidence`].
    pub min_confidence: f64,
    /// Cost of one step of shortfall, in steps of typical usage. The level used is the one in
    /// `[min_confidence, confidence]` minimising `quantile + penalty × typical × (1 − level)`:
    /// where covering the tail is cheap the policy covers it, where one rare spike would cost
    /// many times the usual usage it lets the spike through.
    pub shortfall_penalty: f64,
    /// Margin as a share of the forecast spread (quantile minus median), at least 0.
    pub spread_margin: f64,
    /// How strongly the surprise factor widens the margin, at least 0.
    pub surprise_gain: f64,
    /// Provisioning delay in steps: capacity requested now is ready `lead` steps later (≥ 1).
    pub lead: usize,
    /// Relative excess of actual over predicted usage that triggers an immediate correction.
    pub deviation_threshold: f64,
    /// Steps a lower desired capacity must persist before a scale-down.
    pub stabilisation: usize,
    /// Minimum relative reduction worth a scale-down (each change has a cost), in [0, 1).
    pub churn_penalty: f64,
    /// Lower bound of the capacity, at least 0.
    pub min: f64,
    /// Upper bound of the capacity, at least `min`.
    pub max: f64,
}

impl Default for PolicyParams {
    fn default() -> Self {
        Self {
            confidence: 0.99,
            min_confidence: 0.5,
            shortfall_penalty: 7.0,
            spread_margin: 0.0,
            surprise_gain: 0.25,
            lead: 3,
            deviation_threshold: 0.25,
            stabilisation: 3,
            churn_penalty: 0.02,
            min: 0.0,
            max: f64::INFINITY,
        }
    }
}

impl PolicyParams {
    /// The default parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the provisioning delay in steps.
    pub fn lead(mut self, lead: usize) -> Self {
        self.lead = lead;
        self
    }

    /// Sets the confidence level.
    pub fn confidence(mut self, confidence: f64) -> Self {
        self.confidence = confidence;
        self
    }

    /// Sets the capacity bounds.
    pub fn bounds(mut self, min: f64, max: f64) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    /// Validates every parameter.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first parameter out of range.
    pub fn check(self) -> Result<ValidPolicy> {
        let bad = |name, reason: &str| {
            Err(Error::InvalidParameter {
                name,
                reason: reason.into(),
            })
        };
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return bad("confidence", "must lie strictly between 0 and 1");
        }
        if !(self.min_confidence > 0.0 && self.min_confidence <= self.confidence) {
            return bad("min_confidence", "must lie in (0, confidence]");
        }
        if !(self.shortfall_penalty >= 0.0 && self.shortfall_penalty.is_finite()) {
            return bad("shortfall_penalty", "must be a finite number at least 0");
        }
        if !(self.spread_margin >= 0.0 && self.spread_margin.is_finite()) {
            return bad("spread_margin", "must be a finite number at least 0");
        }
        if !(self.surprise_gain >= 0.0 && self.surprise_gain.is_finite()) {
            return bad("surprise_gain", "must be a finite number at least 0");
        }
        if self.lead == 0 {
            return bad("lead", "must be at least 1 step");
        }
        if !(self.deviation_threshold >= 0.0 && self.deviation_threshold.is_finite()) {
            return bad("deviation_threshold", "must be a finite number at least 0");
        }
        if !(0.0..1.0).contains(&self.churn_penalty) {
            return bad("churn_penalty", "must lie in [0, 1)");
        }
        if !(self.min >= 0.0 && self.min.is_finite()) {
            return bad("min", "must be a finite number at least 0");
        }
        if self.max.is_nan() || self.max < self.min {
            return bad("max", "must be at least min");
        }
        Ok(ValidPolicy(self))
    }
}

/// Checked policy parameters: the only form [`plan`] accepts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidPolicy(PolicyParams);

impl ValidPolicy {
    /// The checked parameters.
    pub fn params(&self) -> &PolicyParams {
        &self.0
    }
}

impl Default for ValidPolicy {
    fn default() -> Self {
        PolicyParams::default()
            .check()
            .expect("the default parameters are valid")
    }
}

/// Quantile forecasts for steps `1..=steps()` after the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantileForecast {
    /// Quantile levels, increasing, each in (0, 1).
    pub levels: Vec<f64>,
    /// `values[h - 1][i]` = quantile `levels[i]` of usage `h` steps ahead.
    pub values: Vec<Vec<f64>>,
    /// Name of the model that produced it (for explanations).
    pub model: String,
}

impl QuantileForecast {
    /// Number of forecast steps.
    pub fn steps(&self) -> usize {
        self.values.len()
    }

    fn check(&self) -> Result<()> {
        if self.levels.is_empty() || self.values.is_empty() {
            return Err(Error::EmptyForecast);
        }
        for (i, row) in self.values.iter().enumerate() {
            if row.len() != self.levels.len() {
                return Err(Error::RaggedForecast {
                    step: i + 1,
                    got: row.len(),
                    expected: self.levels.len(),
                });
            }
        }
        Ok(())
    }

    /// Index of the smallest level at or above `q` (the highest level when none is).
    pub fn level_index(&self, q: f64) -> usize {
        self.levels
            .iter()
            .position(|&l| l >= q - 1e-12)
            .unwrap_or(self.levels.len() - 1)
    }

    /// Index of the level closest to the median.
    pub fn median_index(&self) -> usize {
        let mut best = 0;
        for (i, l) in self.levels.iter().enumerate() {
            if (l - 0.5).abs() < (self.levels[best] - 0.5).abs() {
                best = i;
            }
        }
        best
    }
}

/// What the policy knows about the present.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Capacity currently requested (the last plan's capacity).
    pub current: f64,
    /// The latest observed usage.
    pub latest_usage: f64,
    /// What the forecast said, when it was made, for the latest step (at the policy's
    /// confidence); `None` when no forecast covered it.
    pub predicted_latest: Option<f64>,
    /// Surprise factor: recent over usual forecast error (1 = as usual).
    pub surprise: f64,
    /// Typical usage (a long-run mean): the unit in which shortfall is priced.
    pub typical_usage: f64,
    /// Desired capacities of the previous plans, oldest first (the stabilisation window).
    pub recent_desired: Vec<f64>,
}

/// The kind of change a plan makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    /// Capacity rises.
    ScaleUp,
    /// Capacity falls.
    ScaleDown,
    /// Capacity stays.
    Hold,
}

/// Why the plan's capacity is what it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The quantile level used.
    pub quantile: f64,
    /// That quantile's forecast for the step one provisioning delay ahead.
    pub forecast: f64,
    /// Forecast spread at that step (quantile minus median).
    pub spread: f64,
    /// Surprise factor applied.
    pub surprise: f64,
    /// Safety margin added.
    pub margin: f64,
    /// Whether the deviation threshold fired.
    pub deviation: bool,
    /// Whether a scale-down was held back by the stabilisation window or the churn penalty.
    pub held_back: bool,
    /// Whether the min or max bound changed the result.
    pub clamped: bool,
    /// The forecasting model.
    pub model: String,
    /// What changed and why, written out as one sentence (the `Display` of the explanation,
    /// `reason` in JSON) only when asked for: the loop plans every step it replays, and reads
    /// the sentence of the last.
    #[serde(rename = "reason", serialize_with = "serialize_display")]
    why: Why,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.why.fmt(f)
    }
}

fn serialize_display<S: serde::Serializer>(
    v: &impl fmt::Display,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The numbers behind a plan's sentence.
#[derive(Debug, Clone, PartialEq)]
enum Why {
    /// Usage beat the prediction by more than the deviation threshold.
    Deviation {
        usage: f64,
        predicted: f64,
        threshold: f64,
        from: f64,
        to: f64,
    },
    /// The forecast plus the margin exceeds the capacity.
    Up {
        level: f64,
        forecast: f64,
        margin: f64,
        lead: usize,
        from: f64,
        to: f64,
    },
    /// The desire stayed below the capacity for the stabilisation window.
    Down { from: f64, to: f64 },
    /// A lower desire held back by the stabilisation window or the churn penalty.
    HeldBack { target: f64, current: f64 },
    /// The forecast plus the margin fits the capacity.
    Hold {
        level: f64,
        forecast: f64,
        margin: f64,
        current: f64,
    },
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Why::Deviation {
                usage,
                predicted,
                threshold,
                from,
                to,
            } => write!(
                f,
                "usage {usage:.4} exceeded the prediction {predicted:.4} by more than {:.0} %: scale up at once from {from:.4} to {to:.4}",
                threshold * 100.0
            ),
            Why::Up {
                level,
                forecast,
                margin,
                lead,
                from,
                to,
            } => write!(
                f,
                "q{level} forecast {forecast:.4} + margin {margin:.4} in {lead} steps exceeds {from:.4}: scale up to {to:.4}"
            ),
            Why::Down { from, to } => write!(
                f,
                "desired capacity stayed below {from:.4} for the stabilisation window: scale down to {to:.4}"
            ),
            Why::HeldBack { target, current } => write!(
                f,
                "desired {target:.4} is below {current:.4}, held by the stabilisation window or churn penalty"
            ),
            Why::Hold {
                level,
                forecast,
                margin,
                current,
            } => write!(
                f,
                "q{level} forecast {forecast:.4} + margin {margin:.4} fits {current:.4}: hold"
            ),
        }
    }
}

/// The decision for one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Capacity to request now; it is ready one provisioning delay later.
    pub capacity: f64,
    /// What the capacity was before.
    pub previous: f64,
    /// Desired capacity (quantile plus margin, within bounds) for each forecast step.
    pub desired: Vec<f64>,
    /// The desired capacity of the step one provisioning delay ahead, before stabilisation.
    pub desired_at_lead: f64,
    /// The kind of change.
    pub action: Action,
    /// Inputs, quantile used, what changed and why.
    pub explanation: Explanation,
}

/// Decides the capacity to request now.
///
/// # Errors
/// [`Error::EmptyForecast`] or [`Error::RaggedForecast`] when the forecast is malformed.
///
/// # Guarantees
/// `min <= capacity <= max` for every input, including non-finite forecast values (which are
/// treated as "no information" and leave the current capacity in place).
pub fn plan(
    snapshot: &Snapshot,
    forecast: &QuantileForecast,
    policy: &ValidPolicy,
) -> Result<Plan> {
    forecast.check()?;
    let p = policy.params();
    let clamp = |x: f64| x.max(p.min).min(p.max);
    let mi = forecast.median_index();
    let at = p.lead.min(forecast.steps()) - 1;
    let qi = choose_level(forecast, at, snapshot.typical_usage, p);
    let surprise = if snapshot.surprise.is_finite() {
        snapshot.surprise.max(1.0)
    } else {
        1.0
    };
    let factor = p.spread_margin + p.surprise_gain * (surprise - 1.0).min(4.0);
    let desired: Vec<f64> = forecast
        .values
        .iter()
        .map(|row| {
            let spread = (row[qi] - row[mi]).max(0.0);
            clamp(row[qi] + factor * spread)
        })
        .collect();
    let row = &forecast.values[at];
    let quantile_value = row[qi];
    let spread = (row[qi] - row[mi]).max(0.0);
    let margin = factor * spread;
    let current = if snapshot.current.is_finite() {
        snapshot.current
    } else {
        p.min
    };
    let mut raw = quantile_value + margin;
    let mut deviation = false;
    if let Some(pred) = snapshot.predicted_latest {
        let actual = snapshot.latest_usage;
        if actual.is_finite()
            && pred.is_finite()
            && actual > pred + p.deviation_threshold * pred.abs()
        {
            deviation = true;
            raw = raw.max(actual + spread);
        }
    }
    if !raw.is_finite() {
        raw = current;
    }
    let unclamped = raw;
    let target = clamp(raw);
    let mut clamped = target != unclamped;
    let mut held_back = false;
    let capacity = if target > current {
        target
    } else {
        // Scale down only to the highest desire of the stabilisation window.
        let window = snapshot.recent_desired.iter().rev().take(p.stabilisation);
        let stabilised = window.fold(target, |m, &d| if d.is_finite() { m.max(d) } else { m });
        let stabilised = clamp(stabilised.min(current));
        if stabilised < current * (1.0 - p.churn_penalty) {
            held_back = stabilised > target;
            stabilised
        } else {
            held_back = target < current;
            current
        }
    };
    // Bounds always hold, even when the current capacity came from outside them.
    let bounded = clamp(capacity);
    clamped |= bounded != capacity;
    let action = if bounded > current {
        Action::ScaleUp
    } else if bounded < current {
        Action::ScaleDown
    } else {
        Action::Hold
    };
    let level = forecast.levels[qi];
    let why = match action {
        Action::ScaleUp if deviation => Why::Deviation {
            usage: snapshot.latest_usage,
            predicted: snapshot.predicted_latest.unwrap_or(f64::NAN),
            threshold: p.deviation_threshold,
            from: current,
            to: bounded,
        },
        Action::ScaleUp => Why::Up {
            level,
            forecast: quantile_value,
            margin,
            lead: p.lead,
            from: current,
            to: bounded,
        },
        Action::ScaleDown => Why::Down {
            from: current,
            to: bounded,
        },
        _ if held_back => Why::HeldBack { target, current },
        _ => Why::Hold {
            level,
            forecast: quantile_value,
            margin,
            current,
        },
    };
    Ok(Plan {
        capacity: bounded,
        previous: current,
        desired_at_lead: target,
        desired,
        action,
        explanation: Explanation {
            quantile: level,
            forecast: quantile_value,
            spread,
            surprise,
            margin,
            deviation,
            held_back,
            clamped,
            model: forecast.model.clone(),
            why,
        },
    })
}

/// Index of the quantile level to use at step `at`: the confidence threshold, or a lower level
/// in `[min_confidence, confidence]` when covering the tail costs more than the shortfall it
/// avoids (a newsvendor trade-off priced in steps of typical usage).
fn choose_level(forecast: &QuantileForecast, at: usize, typical: f64, p: &PolicyParams) -> usize {
    let top = forecast.level_index(p.confidence);
    let unit = if typical.is_finite() && typical > 0.0 {
        typical
    } else {
        return top;
    };
    let row = &forecast.values[at];
    let mut best = top;
    let mut best_cost = f64::INFINITY;
    for i in (0..=top).rev() {
        let level = forecast.levels[i];
        if level < p.min_confidence - 1e-12 {
            break;
        }
        let cost = row[i] + p.shortfall_penalty * unit * (1.0 - level);
        if cost.is_finite() && cost < best_cost {
            best = i;
            best_cost = cost;
        }
    }
    best
}

/// Quantile levels the [`Allocator`] asks its forecaster for.
pub const ALLOCATOR_LEVELS: [f64; 16] = [
    0.1, 0.5, 0.7, 0.8, 0.85, 0.875, 0.9, 0.925, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.995,
];

/// Quantile level at which the [`Allocator`]'s forecaster ranks its predictors (by smoothed
/// pinball loss). The shortfall price makes the policy use levels between about 0.9 and the
/// confidence threshold; ranking in the middle of that range picks predictors whose bands are
/// right where the decision is taken (0.95 left less slack at fewer shortfall steps than ranking
/// at 0.99 on Bitbrains CPU and memory and on NAB; see docs/policy.md).
pub const RANK_LEVEL: f64 = 0.95;

/// Settings of an [`Allocator`] beyond the policy itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllocatorSettings {
    /// Steps in one day (seasonal predictor).
    pub day: usize,
    /// Forecast errors remembered per predictor and horizon (the calibration window).
    pub window: usize,
}

impl AllocatorSettings {
    /// Settings for a series sampled every `step_seconds`: a one-day seasonal period and a
    /// seven-day calibration window.
    pub fn for_step(step_seconds: u64) -> Self {
        let day = (86_400 / step_seconds.max(1)).max(1) as usize;
        Self {
            day,
            window: (7 * day).clamp(64, 4032),
        }
    }
}

/// Runs the policy online: feed one usage value per step, get the plan for `lead` steps later.
#[derive(Debug, Clone)]
pub struct Allocator {
    policy: ValidPolicy,
    forecaster: OnlineForecaster,
    current: Option<f64>,
    typical: f64,
    day: usize,
    recent_desired: VecDeque<f64>,
    /// Predictions at the confidence level for upcoming steps: (target index, value).
    predicted: VecDeque<(u64, f64)>,
}

impl Allocator {
    /// A new allocator with no history.
    pub fn new(policy: ValidPolicy, settings: AllocatorSettings) -> Self {
        let p = policy.params();
        let forecaster = OnlineForecaster::new(OnlineSettings {
            horizon: p.lead,
            day: settings.day,
            window: settings.window,
            rank_level: RANK_LEVEL,
            rank_smoothing: 0.02,
        });
        Self {
            policy,
            forecaster,
            current: None,
            typical: f64::NAN,
            day: settings.day.max(1),
            recent_desired: VecDeque::new(),
            predicted: VecDeque::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &ValidPolicy {
        &self.policy
    }

    /// The current forecast for steps `1..=lead` after the latest observation (`None` before
    /// the first). [`Self::step_with_forecast`] hands over the one its plan was made on.
    pub fn forecast(&self) -> Option<QuantileForecast> {
        let lead = self.policy.params().lead;
        let mut values = Vec::with_capacity(lead);
        let mut model = Predictor::Last;
        for h in 1..=lead {
            let f = self.forecaster.forecast_step(h, &ALLOCATOR_LEVELS)?;
            model = f.predictor;
            values.push(f.quantiles);
        }
        Some(QuantileForecast {
            levels: ALLOCATOR_LEVELS.to_vec(),
            values,
            model: model.name().into(),
        })
    }

    /// Observes the usage of the next step and plans the capacity for `lead` steps later.
    pub fn step(&mut self, usage: f64) -> Plan {
        self.step_with_forecast(usage).0
    }

    /// [`Self::step`], with the forecast the plan was made on (what [`Self::forecast`] would
    /// compute again).
    pub fn step_with_forecast(&mut self, usage: f64) -> (Plan, QuantileForecast) {
        let t = self.forecaster.seen();
        let mut predicted_latest = None;
        while let Some(&(target, v)) = self.predicted.front() {
            if target > t {
                break;
            }
            self.predicted.pop_front();
            if target == t {
                predicted_latest = Some(v);
            }
        }
        self.forecaster.observe(usage);
        if usage.is_finite() {
            let n = self.forecaster.seen() as f64;
            let alpha = (1.0 / n).max(1.0 / self.day as f64);
            self.typical = if self.typical.is_finite() {
                self.typical + alpha * (usage - self.typical)
            } else {
                usage
            };
        }
        let p = self.policy.params().clone();
        let forecast = self
            .forecast()
            .expect("a forecast exists after one observation");
        let snapshot = Snapshot {
            current: self.current.unwrap_or(usage),
            latest_usage: usage,
            predicted_latest,
            surprise: self.forecaster.surprise(),
            typical_usage: self.typical,
            recent_desired: self.recent_desired.iter().copied().collect(),
        };
        let plan = plan(&snapshot, &forecast, &self.policy)
            .expect("the allocator's forecast is well formed");
        let qi = forecast.level_index(plan.explanation.quantile);
        self.predicted
            .push_back((t + p.lead as u64, forecast.values[p.lead - 1][qi]));
        self.recent_desired.push_back(plan.desired_at_lead);
        while self.recent_desired.len() > p.stabilisation.max(1) {
            self.recent_desired.pop_front();
        }
        self.current = Some(plan.capacity);
        (plan, forecast)
    }
}

/// Allocations of the `predictive` policy for every step of `usage`, in the benchmark's terms:
/// `a[t]` is the capacity planned after observing `usage[t - lead]`. Steps before the first
/// plan lands get the first usage value (they fall in the warm-up).
pub fn replay(usage: &[f64], policy: &ValidPolicy, settings: AllocatorSettings) -> Vec<f64> {
    let lead = policy.params().lead;
    let mut alloc = vec![usage.first().copied().unwrap_or(0.0); usage.len()];
    let mut allocator = Allocator::new(policy.clone(), settings);
    for (s, &u) in usage.iter().enumerate() {
        let plan = allocator.step(u);
        if s + lead < usage.len() {
            alloc[s + lead] = plan.capacity;
        }
    }
    alloc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn forecast(rows: &[[f64; 3]]) -> QuantileForecast {
        QuantileForecast {
            levels: vec![0.5, 0.9, 0.99],
            values: rows.iter().map(|r| r.to_vec()).collect(),
            model: "test".into(),
        }
    }

    fn snapshot(current: f64, recent: &[f64]) -> Snapshot {
        Snapshot {
            current,
            latest_usage: 10.0,
            predicted_latest: None,
            surprise: 1.0,
            typical_usage: f64::NAN,
            recent_desired: recent.to_vec(),
        }
    }

    fn policy() -> ValidPolicy {
        let mut p = PolicyParams::default().lead(2).confidence(0.9);
        p.min_confidence = 0.9;
        p.surprise_gain = 0.0;
        p.check().unwrap()
    }

    #[test]
    fn plan_should_follow_the_table() {
        // (name, current, recent desired, forecast rows, expected capacity, expected action)
        let f = forecast(&[[5.0, 8.0, 20.0], [10.0, 12.0, 30.0]]);
        let cases: [(&str, f64, &[f64], f64, Action); 4] = [
            (
                "scale up at once to the lead step's q0.9",
                5.0,
                &[],
                12.0,
                Action::ScaleUp,
            ),
            (
                "hold when within the churn penalty",
                12.1,
                &[],
                12.1,
                Action::Hold,
            ),
            (
                "scale down to the stabilisation window's max",
                20.0,
                &[15.0, 14.0, 13.0],
                15.0,
                Action::ScaleDown,
            ),
            (
                "hold while the window wants the current capacity",
                20.0,
                &[20.0, 14.0],
                20.0,
                Action::Hold,
            ),
        ];
        for (name, current, recent, want, action) in cases {
            let plan = plan(&snapshot(current, recent), &f, &policy()).unwrap();
            assert!(
                (plan.capacity - want).abs() < 1e-9,
                "{name}: {}",
                plan.capacity
            );
            assert_eq!(plan.action, action, "{name}");
            assert_eq!(plan.explanation.quantile, 0.9, "{name}");
            let reason = plan.explanation.to_string();
            let says = match action {
                Action::ScaleUp => reason.ends_with("scale up to 12.0000"),
                Action::ScaleDown => reason.contains(": scale down to "),
                Action::Hold => reason.contains("held by") || reason.ends_with(": hold"),
            };
            assert!(says, "{name}: {reason}");
            // The JSON form carries the sentence as `reason`.
            let json = serde_json::to_value(&plan.explanation).unwrap();
            assert_eq!(json["reason"], reason.as_str(), "{name}");
        }
    }

    #[test]
    fn deviation_should_trigger_an_immediate_scale_up() {
        let f = forecast(&[[5.0, 8.0, 20.0], [10.0, 12.0, 30.0]]);
        let mut s = snapshot(12.0, &[]);
        s.latest_usage = 20.0;
        s.predicted_latest = Some(12.0);
        let plan = plan(&s, &f, &policy()).unwrap();
        assert!(plan.explanation.deviation);
        assert_eq!(plan.action, Action::ScaleUp);
        // 20 + spread (12 - 10) = 22.
        assert!((plan.capacity - 22.0).abs() < 1e-9);
    }

    #[test]
    fn shortfall_penalty_should_pick_a_lower_level_when_the_tail_is_expensive() {
        let mut p = PolicyParams::default().lead(1).confidence(0.99);
        p.min_confidence = 0.5;
        p.shortfall_penalty = 10.0;
        let p = p.check().unwrap();
        let mut s = snapshot(0.0, &[]);
        s.typical_usage = 10.0;
        // cost(0.99) = 100 + 10·10·0.01 = 101; cost(0.9) = 12 + 10 = 22; cost(0.5) = 10 + 50 = 60.
        let plan = plan(&s, &forecast(&[[10.0, 12.0, 100.0]]), &p).unwrap();
        assert_eq!(plan.explanation.quantile, 0.9);
        // A cheap tail is covered: cost(0.99) = 13 + 1 = 14 < cost(0.9) = 22.
        let plan = plan_for(&s, &forecast(&[[10.0, 12.0, 13.0]]), &p);
        assert_eq!(plan.explanation.quantile, 0.99);
    }

    fn plan_for(s: &Snapshot, f: &QuantileForecast, p: &ValidPolicy) -> Plan {
        plan(s, f, p).unwrap()
    }

    #[test]
    fn malformed_forecasts_and_parameters_should_be_named() {
        let e = plan(&snapshot(1.0, &[]), &forecast(&[]), &policy()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "forecast is empty: it needs at least one step and one quantile level"
        );
        let mut f = forecast(&[[1.0, 2.0, 3.0]]);
        f.values[0].pop();
        let e = plan(&snapshot(1.0, &[]), &f, &policy()).unwrap_err();
        assert_eq!(e.to_string(), "forecast step 1 holds 2 values for 3 levels");
        let e = PolicyParams::default()
            .bounds(5.0, 1.0)
            .check()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid policy parameter `max`: must be at least min"
        );
        let e = PolicyParams::default().confidence(1.0).check().unwrap_err();
        assert!(e.to_string().contains("`confidence`"));
    }

    #[test]
    fn replay_should_decide_from_usage_lead_steps_earlier_only() {
        let policy = PolicyParams::default().check().unwrap();
        let settings = AllocatorSettings::for_step(300);
        let mut u: Vec<f64> = (0..600).map(|i| 10.0 + (i % 7) as f64).collect();
        let a = replay(&u, &policy, settings);
        // Changing usage at step 500 cannot change allocations up to step 500 + lead - 1 = 502.
        u[500] = 1000.0;
        let b = replay(&u, &policy, settings);
        assert_eq!(a[..503], b[..503]);
        assert!(b[503] > a[503]);
    }

    /// 12 days of a real Bitbrains VM's CPU usage in MHz (tests/data/allocate/SOURCE.md).
    fn bitbrains_excerpt() -> Vec<f64> {
        include_str!("../../tests/data/allocate/bitbrains_rnd_72_cpu_12d.csv")
            .lines()
            .skip(1)
            .enumerate()
            .map(|(i, l)| {
                let v = l.split(';').nth(1).map(str::trim);
                v.and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("excerpt line {}: no usage value in `{l}`", i + 2))
            })
            .collect()
    }

    #[test]
    fn predictive_should_beat_vpa_on_a_real_excerpt() {
        use crate::simulate::baselines::{allocate, Baseline, Geometry};
        use crate::simulate::metrics::AllocationMetrics;
        let usage = bitbrains_excerpt();
        assert_eq!(usage.len(), 12 * 288);
        // The benchmark's geometry with a two-day warm-up: 10 days are scored.
        let g = Geometry {
            lead: 3,
            warmup: 2 * 288,
            day: 288,
        };
        let score = |a: &[f64]| AllocationMetrics::score(&usage, a, g.warmup, 288.0).unwrap();
        let policy = PolicyParams::default().lead(g.lead).check().unwrap();
        let ours = score(&replay(&usage, &policy, AllocatorSettings::for_step(300)));
        let vpa = score(&allocate(Baseline::Vpa, &usage, g));
        let window_max = score(&allocate(Baseline::WindowMax, &usage, g));
        assert!(
            ours.slack < vpa.slack,
            "slack {} vs vpa {}",
            ours.slack,
            vpa.slack
        );
        assert!(
            ours.shortfall_steps <= vpa.shortfall_steps,
            "shortfall steps {} vs vpa {}",
            ours.shortfall_steps,
            vpa.shortfall_steps
        );
        assert!(ours.cost_vs_oracle < vpa.cost_vs_oracle);
        assert!(ours.slack < window_max.slack);
    }

    proptest! {
        #[test]
        fn allocator_should_stay_within_bounds_and_be_deterministic(
            usage in proptest::collection::vec(
                prop_oneof![
                    8 => 0.0f64..1e4,
                    1 => -1e3f64..0.0,
                    1 => proptest::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e12]),
                ],
                1..400,
            ),
            min in 0.0f64..100.0,
            span in 0.0f64..1e4,
            lead in 1usize..5,
        ) {
            let policy = PolicyParams::default().lead(lead).bounds(min, min + span).check().unwrap();
            let settings = AllocatorSettings { day: 24, window: 64 };
            let mut allocator = Allocator::new(policy.clone(), settings);
            for &u in &usage {
                let plan = allocator.step(u);
                prop_assert!(plan.capacity >= min && plan.capacity <= min + span, "{}", plan.capacity);
                for d in &plan.desired {
                    prop_assert!(*d >= min && *d <= min + span, "desired {d}");
                }
            }
            let a = replay(&usage, &policy, settings);
            let b = replay(&usage, &policy, settings);
            prop_assert_eq!(a.len(), usage.len());
            // Deterministic: the same input gives bit-identical allocations.
            prop_assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
            // Every planned step (after the first lead steps) lies within the bounds.
            for x in a.iter().skip(lead) {
                prop_assert!(*x >= min && *x <= min + span, "replayed {x}");
            }
        }

        #[test]
        fn plan_should_never_leave_the_bounds(
            rows in proptest::collection::vec((-1e6f64..1e6, 0.0f64..1e6, 0.0f64..1e6), 1..6),
            current in -1e6f64..1e7,
            latest in -1e6f64..1e7,
            predicted in proptest::option::of(-1e6f64..1e7),
            surprise in 0.0f64..100.0,
            typical in 0.0f64..1e6,
            recent in proptest::collection::vec(-1e6f64..1e7, 0..8),
            min in 0.0f64..1e5,
            span in 0.0f64..1e6,
            lead in 1usize..8,
        ) {
            let f = QuantileForecast {
                levels: vec![0.5, 0.9, 0.99],
                values: rows.iter().map(|&(m, a, b)| vec![m, m + a, m + a + b]).collect(),
                model: "prop".into(),
            };
            let s = Snapshot { current, latest_usage: latest, predicted_latest: predicted, surprise, typical_usage: typical, recent_desired: recent };
            let p = PolicyParams::default().lead(lead).bounds(min, min + span).check().unwrap();
            let plan = plan(&s, &f, &p).unwrap();
            prop_assert!(plan.capacity >= min && plan.capacity <= min + span, "{}", plan.capacity);
            for d in &plan.desired {
                prop_assert!(*d >= min && *d <= min + span);
            }
        }

        #[test]
        fn plan_should_hold_bounds_with_non_finite_inputs(current in proptest::sample::select(vec![f64::NAN, f64::INFINITY, -1.0, 3.0])) {
            let f = forecast(&[[f64::NAN, f64::INFINITY, f64::NAN]]);
            let s = Snapshot { current, latest_usage: f64::NAN, predicted_latest: Some(f64::NAN), surprise: f64::NAN, typical_usage: f64::NAN, recent_desired: vec![f64::NAN] };
            let p = PolicyParams::default().lead(1).bounds(1.0, 2.0).check().unwrap();
            let plan = plan(&s, &f, &p).unwrap();
            prop_assert!(plan.capacity >= 1.0 && plan.capacity <= 2.0);
        }
    }
}
