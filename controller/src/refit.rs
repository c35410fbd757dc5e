//! Scheduled refits: each workload's stored history is cross-validated with rolling origins over
//! the engine's batch models, the model with the lowest pinball loss is chosen, and its forecast
//! of the next day is kept (and stored, so a restart keeps the choice).
//!
//! The work is CPU-bound and runs off the loop (`spawn_blocking`), a bounded number of workloads
//! per tick, each workload about once a day.

use std::collections::VecDeque;

use predictive_engine::forecast::cold::{self, ProfileClusters};
use predictive_engine::forecast::{self, ForecastParams, ModelKind};
use predictive_engine::policy::QuantileForecast;
use predictive_engine::series::Series;
use serde::{Deserialize, Serialize};

use crate::store::Calibration;

/// Loop-state kind under which the choice is stored.
pub const STATE_KIND: &str = "refit";

/// Seconds between two refits of one workload.
pub const EVERY: i64 = 86_400;

/// Rolling origins of the cross-validation.
pub const FOLDS: usize = 3;

/// Models compared by the cross-validation.
pub const CANDIDATES: [ModelKind; 4] = [
    ModelKind::SeasonalNaive,
    ModelKind::Ets,
    ModelKind::VpaHist,
    ModelKind::CalendarQr,
];

/// The outcome of one refit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The chosen model's name (`snaive`, `ets`, `vpa-hist`, `calendar-qr`).
    pub model: String,
    /// Its mean pinball loss (median and planning quantile) over the folds.
    pub score: f64,
    /// Every candidate that could be fitted, with its score.
    pub scores: Vec<(String, f64)>,
    /// When the refit ran.
    pub at: i64,
    /// Time of the forecast's first value.
    pub start: i64,
    /// Step of the forecast.
    pub step: i64,
    /// Forecast median, one value per step.
    pub p50: Vec<f32>,
    /// Forecast planning quantile, one value per step.
    pub upper: Vec<f32>,
}

impl Choice {
    /// The forecast (median, planning quantile) at `ts`, when it covers it.
    pub fn at_time(&self, ts: i64) -> Option<(f64, f64)> {
        if ts < self.start || self.step <= 0 || (ts - self.start) % self.step != 0 {
            return None;
        }
        let i = ((ts - self.start) / self.step) as usize;
        Some((*self.p50.get(i)? as f64, *self.upper.get(i)? as f64))
    }

    /// JSON for the store.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a stored choice (`None` when nothing is stored).
    ///
    /// # Errors
    /// The stored JSON is not a choice.
    pub fn decode(text: Option<&str>) -> Result<Option<Self>, serde_json::Error> {
        text.map(serde_json::from_str).transpose()
    }
}

/// Online calibration and accuracy of a [`Choice`]'s forecast, judged at every observation the
/// forecast covers.
///
/// The planning quantile is calibrated by widening or narrowing the spread above the median
/// (`upper - p50`) by a factor adapted after each observation (adaptive conformal style: up by
/// `GAIN × level` after a miss, down by `GAIN × (1 − level)` after a hit), so its coverage tends
/// to the level. The coverage of the last day of calibrated forecasts is the chosen model's recent
/// accuracy; below the workload's objective, planning falls back to the online forecaster.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracker {
    /// Multiplier of the spread above the median.
    widen: f64,
    /// Whether the last observations fell at or below the calibrated planning quantile.
    hits: VecDeque<bool>,
    /// The calibrated planning quantile the forecast gave for the latest observation.
    last_upper: Option<f64>,
    /// Time of the latest judged observation (`i64::MIN`: none): earlier or equal times are not
    /// judged again, so replaying stored samples over a reloaded calibration is idempotent.
    judged_until: i64,
}

/// Step of the calibration factor (in log space).
const GAIN: f64 = 0.05;

/// Observations before the chosen model's coverage is judged.
pub const MIN_JUDGED: usize = 12;

impl Default for Tracker {
    fn default() -> Self {
        Self {
            widen: 1.0,
            hits: VecDeque::new(),
            last_upper: None,
            judged_until: i64::MIN,
        }
    }
}

impl Tracker {
    /// The calibrated planning quantile for a forecast (median, planning quantile).
    pub fn upper(&self, p50: f64, upper: f64) -> f64 {
        p50 + self.widen * (upper - p50).max(0.0)
    }

    /// The spread multiplier in force.
    pub fn widen(&self) -> f64 {
        self.widen
    }

    /// Judges `usage` at `ts` against `choice` (when its forecast covers `ts`) and adapts the
    /// calibration; keeps the outcomes of the last `window` judged observations.
    pub fn observe(&mut self, choice: &Choice, ts: i64, usage: f64, level: f64, window: usize) {
        if ts <= self.judged_until {
            return; // already judged (a replay after a reload)
        }
        self.last_upper = None;
        let Some((p50, upper)) = choice.at_time(ts) else {
            return;
        };
        if !usage.is_finite() {
            return;
        }
        let cal = self.upper(p50, upper);
        let hit = usage <= cal + 1e-9;
        self.last_upper = Some(cal);
        self.judged_until = ts;
        if self.hits.len() >= window.max(1) {
            self.hits.pop_front();
        }
        if self.hits.capacity() == 0 {
            self.hits.reserve_exact(window.max(1));
        }
        self.hits.push_back(hit);
        let step = if hit {
            -GAIN * (1.0 - level)
        } else {
            GAIN * level
        };
        self.widen = (self.widen * step.exp()).clamp(0.25, 8.0);
    }

    /// Coverage of the judged observations; `None` before [`MIN_JUDGED`] of them.
    pub fn coverage(&self) -> Option<f64> {
        (self.hits.len() >= MIN_JUDGED)
            .then(|| self.hits.iter().filter(|h| **h).count() as f64 / self.hits.len() as f64)
    }

    /// The calibrated planning quantile given for the latest observation, when one covered it.
    pub fn last_upper(&self) -> Option<f64> {
        self.last_upper
    }

    /// Time of the latest judged observation, if any.
    pub fn judged_until(&self) -> Option<i64> {
        (self.judged_until != i64::MIN).then_some(self.judged_until)
    }

    /// The calibration of `choice`'s forecast for the store (`None` before any judged
    /// observation).
    pub fn to_stored(&self, workload: &str, choice: &Choice) -> Option<Calibration> {
        let judged_until = self.judged_until()?;
        Some(Calibration {
            workload: workload.to_string(),
            refit_at: choice.at,
            model: choice.model.clone(),
            widen: self.widen,
            hits: self
                .hits
                .iter()
                .map(|&h| if h { '1' } else { '0' })
                .collect(),
            last_upper: self.last_upper,
            judged_until,
        })
    }

    /// The tracker of a stored calibration, when it calibrates `choice` (same refit time and
    /// model); `window` bounds the outcomes kept. `None` for a stale or malformed calibration
    /// (the caller starts afresh and replays the samples).
    pub fn from_stored(c: &Calibration, choice: &Choice, window: usize) -> Option<Self> {
        if c.refit_at != choice.at
            || c.model != choice.model
            || !c.widen.is_finite()
            || !(0.25..=8.0).contains(&c.widen)
            || !c.hits.bytes().all(|b| b == b'0' || b == b'1')
        {
            return None;
        }
        let window = window.max(1);
        let mut hits = VecDeque::with_capacity(window);
        let skip = c.hits.len().saturating_sub(window);
        hits.extend(c.hits.bytes().skip(skip).map(|b| b == b'1'));
        Some(Self {
            widen: c.widen,
            hits,
            last_upper: c.last_upper.filter(|v| v.is_finite()),
            judged_until: c.judged_until,
        })
    }
}

impl Choice {
    /// The calibrated forecast of steps `1..=lead` after `now` (median and planning quantile
    /// `level`), for the engine's `plan`; `None` unless the choice covers every one of them.
    pub fn quantile_forecast(
        &self,
        now: i64,
        step: i64,
        lead: usize,
        level: f64,
        tracker: &Tracker,
    ) -> Option<QuantileForecast> {
        let median_only = (level - 0.5).abs() < 1e-9;
        let mut values = Vec::with_capacity(lead);
        for h in 1..=lead.max(1) {
            let (p50, upper) = self.at_time(now + h as i64 * step)?;
            let cal = tracker.upper(p50, upper);
            values.push(if median_only {
                vec![p50]
            } else if level < 0.5 {
                vec![upper.min(p50), p50]
            } else {
                vec![p50, cal]
            });
        }
        let levels = if median_only {
            vec![0.5]
        } else if level < 0.5 {
            vec![level, 0.5]
        } else {
            vec![0.5, level]
        };
        Some(QuantileForecast {
            levels,
            values,
            model: self.model.clone(),
        })
    }
}

fn levels(quantile: f64) -> Vec<f64> {
    if (quantile - 0.5).abs() < 1e-9 {
        vec![0.5]
    } else {
        let mut l = vec![0.5, quantile];
        l.sort_by(f64::total_cmp);
        l
    }
}

fn loss(f: &forecast::Forecast, quantile: f64, actual: &[f64]) -> Option<f64> {
    let mut total = 0.0;
    for q in levels(quantile) {
        let pred = f.quantile(q)?;
        for (y, p) in actual.iter().zip(pred) {
            total += forecast::pinball(q, *y, *p);
        }
    }
    Some(total)
}

/// Rolling-origin cross-validation of [`CANDIDATES`] on `series` (season in steps, horizon in
/// steps, planning `quantile`), then the chosen model's forecast of one season ahead.
///
/// `None` when the history is too short: at least two seasons before the first origin.
pub fn choose(
    series: &Series,
    season: usize,
    horizon: usize,
    quantile: f64,
    now: i64,
) -> Option<Choice> {
    let n = series.len();
    let horizon = horizon.max(1);
    if season == 0 || n < 2 * season + FOLDS * horizon {
        return None;
    }
    let mut scores = Vec::new();
    for model in CANDIDATES {
        let Ok(params) = ForecastParams::new(horizon)
            .model(model)
            .season(season)
            .levels(levels(quantile))
            .check(series.step())
        else {
            continue;
        };
        let mut total = 0.0;
        let mut count = 0usize;
        let mut ok = true;
        for k in 1..=FOLDS {
            let origin = n - k * horizon;
            let (Some(train), actual) = (
                series.head(origin),
                &series.values()[origin..origin + horizon],
            ) else {
                ok = false;
                break;
            };
            match forecast::forecast(&train, &params)
                .ok()
                .and_then(|f| loss(&f, quantile, actual))
            {
                Some(l) => {
                    total += l;
                    count += actual.len();
                }
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && count > 0 && total.is_finite() {
            scores.push((model, total / count as f64));
        }
    }
    let (best, score) = scores.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))?;
    let params = ForecastParams::new(season)
        .model(best)
        .season(season)
        .levels(levels(quantile))
        .check(series.step())
        .ok()?;
    let f = forecast::forecast(series, &params).ok()?;
    let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    Some(Choice {
        model: best.name().to_string(),
        score,
        scores: scores
            .iter()
            .map(|(m, s)| (m.name().to_string(), *s))
            .collect(),
        at: now,
        start: f.start(),
        step: f.step(),
        p50: to32(f.median()?),
        upper: to32(f.quantile(quantile)?),
    })
}

/// Loop-state kind of a workload's daily profile, kept by its refits for the cold-start clusters.
pub const PROFILE_KIND: &str = "profile";

/// Fleet-state kind of the cold-start clusters.
pub const CLUSTERS_KIND: &str = "clusters";

/// Most clusters of daily profiles.
pub const MAX_CLUSTERS: usize = 8;

/// A workload's normalised daily profile (mean by time of day over its mean) and the relative
/// spread around it, from its stored history at a refit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// When it was computed.
    pub at: i64,
    /// Step of the history it came from (profiles of another step are not clustered).
    pub step: i64,
    /// One value per step of the day.
    pub profile: Vec<f32>,
    /// Relative spread of the history around `profile × mean`.
    pub spread: f32,
}

impl Profile {
    /// The profile of `series` over a `season` of steps; `None` without a full season or with
    /// a zero mean.
    pub fn of(series: &Series, season: usize, now: i64) -> Option<Self> {
        let (p, spread) = cold::daily_profile(series, season)?;
        Some(Self {
            at: now,
            step: series.step(),
            profile: p.iter().map(|&v| v as f32).collect(),
            spread: spread as f32,
        })
    }

    /// JSON for the store.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The fleet's cold-start clusters: k-means on the workloads' stored daily profiles
/// (`predictive_engine::forecast::cold`), re-fitted on the refit schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetClusters {
    /// The clusters.
    pub clusters: ProfileClusters,
    /// When they were fitted.
    pub at: i64,
    /// Step of the profiles.
    pub step: i64,
    /// Profiles they were fitted on.
    pub profiles: usize,
}

#[derive(Serialize, Deserialize)]
struct StoredClusters {
    at: i64,
    step: i64,
    season: usize,
    profiles: usize,
    centroids: Vec<Vec<f32>>,
    spreads: Vec<f64>,
    sizes: Vec<usize>,
}

impl FleetClusters {
    /// Clusters the `profiles` of step `step` (others are left out) into
    /// `ceil(sqrt(n / 2))` clusters, at most [`MAX_CLUSTERS`], with a fixed seed; `None`
    /// without a usable profile.
    pub fn fit(profiles: &[Profile], step: i64, season: usize, now: i64) -> Option<Self> {
        let usable: Vec<(Vec<f64>, f64)> = profiles
            .iter()
            .filter(|p| p.step == step && p.profile.len() == season)
            .map(|p| {
                (
                    p.profile.iter().map(|&v| f64::from(v)).collect(),
                    f64::from(p.spread),
                )
            })
            .collect();
        let k = ((usable.len() as f64 / 2.0).sqrt().ceil() as usize).clamp(1, MAX_CLUSTERS);
        let clusters = ProfileClusters::fit_profiles(&usable, season, k, 7).ok()?;
        Some(Self {
            clusters,
            at: now,
            step,
            profiles: usable.len(),
        })
    }

    /// JSON for the store (centroids as `f32`).
    pub fn encode(&self) -> String {
        let c = &self.clusters;
        serde_json::to_string(&StoredClusters {
            at: self.at,
            step: self.step,
            season: c.season(),
            profiles: self.profiles,
            centroids: c
                .centroids()
                .iter()
                .map(|v| v.iter().map(|&x| x as f32).collect())
                .collect(),
            spreads: c.spreads().to_vec(),
            sizes: c.sizes().to_vec(),
        })
        .unwrap_or_default()
    }

    /// Reads stored clusters; `Ok(None)` when nothing is stored or the stored parts do not
    /// make clusters (they are fitted again).
    ///
    /// # Errors
    /// The stored JSON is not clusters.
    pub fn decode(text: Option<&str>) -> Result<Option<Self>, serde_json::Error> {
        let Some(text) = text else { return Ok(None) };
        let s: StoredClusters = serde_json::from_str(text)?;
        let centroids = s
            .centroids
            .iter()
            .map(|v| v.iter().map(|&x| f64::from(x)).collect())
            .collect();
        Ok(
            ProfileClusters::from_parts(s.season, centroids, s.spreads, s.sizes)
                .ok()
                .map(|clusters| Self {
                    clusters,
                    at: s.at,
                    step: s.step,
                    profiles: s.profiles,
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(days: usize, f: impl Fn(usize) -> f64) -> Series {
        Series::new(1_400_000_000, 300, (0..days * 288).map(f).collect()).unwrap()
    }

    #[test]
    fn a_strongly_seasonal_series_gets_a_seasonal_model() {
        // Daily wave plus a small deterministic jitter: a seasonal model must beat the histogram.
        let s = series(4, |i| {
            100.0
                + 40.0 * (i as f64 * std::f64::consts::TAU / 288.0).sin()
                + ((i * 7919) % 13) as f64 * 0.1
        });
        let c = choose(&s, 288, 24, 0.9, 0).expect("enough history");
        assert_ne!(c.model, "vpa-hist", "{:?}", c.scores);
        let vpa = c.scores.iter().find(|(m, _)| m == "vpa-hist").map(|x| x.1);
        assert!(vpa.is_some_and(|v| v > c.score), "{:?}", c.scores);
        assert_eq!(c.p50.len(), 288);
        // The forecast covers the next day, starting one step after the history.
        assert_eq!(c.start, s.end());
        assert!(c.at_time(c.start).is_some());
        assert!(c.at_time(c.start + 288 * 300).is_none());
        let back = Choice::decode(Some(&c.encode())).unwrap().unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn the_tracker_calibrates_the_quantile_and_judges_coverage() {
        let c = Choice {
            model: "snaive".into(),
            score: 0.0,
            scores: Vec::new(),
            at: 0,
            start: 0,
            step: 300,
            p50: vec![100.0; 288],
            upper: vec![110.0; 288],
        };
        let mut t = Tracker::default();
        assert_eq!(t.coverage(), None);
        // Usage always at 115: the raw q0.9 (110) misses, so the spread widens until it covers.
        for i in 0..200 {
            t.observe(&c, i * 300, 115.0, 0.9, 288);
        }
        assert!(t.widen() > 1.4, "{}", t.widen());
        assert!(t.upper(100.0, 110.0) >= 115.0);
        let cov = t.coverage().unwrap();
        assert!(cov > 0.5 && cov < 1.0, "{cov}");
        // Outside the forecast's day nothing is judged.
        t.observe(&c, 288 * 300, 1e9, 0.9, 288);
        assert_eq!(t.last_upper(), None);
        // The forecast handed to the policy: median and calibrated quantile per lead step.
        let f = c.quantile_forecast(0, 300, 2, 0.9, &t).unwrap();
        assert_eq!(f.levels, vec![0.5, 0.9]);
        assert_eq!(f.values.len(), 2);
        assert_eq!(f.values[1][0], 100.0);
        assert!((f.values[1][1] - t.upper(100.0, 110.0)).abs() < 1e-12);
        assert!(c.quantile_forecast(287 * 300, 300, 2, 0.9, &t).is_none());
    }

    #[test]
    fn short_history_is_not_refitted() {
        let s = series(1, |i| i as f64);
        assert!(choose(&s, 288, 24, 0.9, 0).is_none());
    }
}
