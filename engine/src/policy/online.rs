//! A cheap online quantile forecaster for the allocation policy.
//!
//! Refitting a statistical model at every step of a 3-month 5-minute replay is far too slow, so
//! the policy forecasts the near future with a handful of simple point predictors (persistence,
//! short means, a short max, daily seasonal persistence) and turns each into quantiles with the
//! empirical distribution of its own recent errors at that horizon (a split-conformal wrapper).
//! The predictor with the lowest recent pinball loss at the policy's confidence wins, per horizon.
//! Every update costs O(candidates × horizon × log window) plus a bounded memmove.

use std::collections::VecDeque;

/// A window of the most recent values that answers quantile queries.
#[derive(Debug, Clone)]
pub struct RollingQuantile {
    ring: VecDeque<f64>,
    sorted: Vec<f64>,
    capacity: usize,
}

impl RollingQuantile {
    /// An empty window holding at most `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            ring: VecDeque::with_capacity(capacity),
            sorted: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds `v`, evicting the oldest value when full. Non-finite values are ignored.
    pub fn push(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.ring.len() == self.capacity {
            if let Some(old) = self.ring.pop_front() {
                let i = self.sorted.partition_point(|x| *x < old);
                self.sorted.remove(i);
            }
        }
        self.ring.push_back(v);
        let i = self.sorted.partition_point(|x| *x < v);
        self.sorted.insert(i, v);
    }

    /// Number of values held.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The `q`-quantile (linear interpolation between order statistics); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(n - 1);
        let frac = pos - lo as f64;
        Some(self.sorted[lo] * (1.0 - frac) + self.sorted[hi] * frac)
    }
}

/// The point predictors the forecaster chooses among.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predictor {
    /// The latest value.
    Last,
    /// The mean of the last 3 values.
    Mean3,
    /// The mean of the last 12 values.
    Mean12,
    /// The maximum of the last 6 values.
    Max6,
    /// The value one day before the target step, shifted by today's change in level.
    SeasonalDay,
}

impl Predictor {
    /// All predictors.
    pub const ALL: [Predictor; 5] = [
        Predictor::Last,
        Predictor::Mean3,
        Predictor::Mean12,
        Predictor::Max6,
        Predictor::SeasonalDay,
    ];

    /// A short name for explanations.
    pub fn name(self) -> &'static str {
        match self {
            Predictor::Last => "last",
            Predictor::Mean3 => "mean-3",
            Predictor::Mean12 => "mean-12",
            Predictor::Max6 => "max-6",
            Predictor::SeasonalDay => "seasonal-day",
        }
    }
}

/// Settings of the [`OnlineForecaster`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnlineSettings {
    /// Steps ahead to forecast. Errors are tracked at this horizon only (the provisioning
    /// delay, the one step the decision depends on); nearer steps are interpolated.
    pub horizon: usize,
    /// Steps in a day (for the seasonal predictor).
    pub day: usize,
    /// Errors remembered per predictor and horizon.
    pub window: usize,
    /// Quantile level used to rank predictors by pinball loss.
    pub rank_level: f64,
    /// Smoothing of the pinball-loss ranking (weight of the newest loss).
    pub rank_smoothing: f64,
}

/// One horizon step's forecast: a point and quantiles at the requested levels.
#[derive(Debug, Clone, PartialEq)]
pub struct StepForecast {
    /// The chosen predictor's point forecast.
    pub point: f64,
    /// Quantile values, in the order of the requested levels.
    pub quantiles: Vec<f64>,
    /// The predictor that produced them.
    pub predictor: Predictor,
}

#[derive(Debug, Clone)]
struct Track {
    errors: RollingQuantile,
    /// Predictions waiting for their target step: (target index, point, scale, quantile at
    /// rank level).
    pending: VecDeque<(u64, f64, f64, f64)>,
    loss: f64,
}

/// Online multi-predictor conformal forecaster. Feed it one observation per step.
#[derive(Debug, Clone)]
pub struct OnlineForecaster {
    settings: OnlineSettings,
    history: VecDeque<f64>,
    capacity: usize,
    /// Index of the next observation.
    next: u64,
    /// One error track per predictor, at the horizon.
    tracks: Vec<Track>,
    /// Recent absolute errors of the chosen predictor at the last horizon, short and long EWMA.
    surprise_short: f64,
    surprise_long: f64,
    chosen_pending: VecDeque<(u64, f64)>,
    /// Long-run mean absolute value (a day-long EWMA): the floor of the error scale.
    typical_abs: f64,
}

impl OnlineForecaster {
    /// A forecaster with no history yet.
    pub fn new(settings: OnlineSettings) -> Self {
        let horizon = settings.horizon.max(1);
        let settings = OnlineSettings {
            horizon,
            ..settings
        };
        let track = Track {
            errors: RollingQuantile::new(settings.window),
            pending: VecDeque::new(),
            loss: 0.0,
        };
        Self {
            settings,
            history: VecDeque::new(),
            capacity: settings.day + horizon + 16,
            next: 0,
            tracks: vec![track; Predictor::ALL.len()],
            surprise_short: 0.0,
            surprise_long: 0.0,
            chosen_pending: VecDeque::new(),
            typical_abs: 0.0,
        }
    }

    /// Number of observations seen so far.
    pub fn seen(&self) -> u64 {
        self.next
    }

    /// The latest observation, if any.
    pub fn last(&self) -> Option<f64> {
        self.history.back().copied()
    }

    /// Recent surprise: short-term over long-term mean absolute error of the forecasts at the
    /// last horizon step; 1 when errors are as usual, above 1 when the series misbehaves.
    pub fn surprise(&self) -> f64 {
        if self.surprise_long <= 0.0 {
            1.0
        } else {
            self.surprise_short / self.surprise_long
        }
    }

    /// Local error scale: the mean absolute deviation of the last 12 values from their mean,
    /// floored at 5 % of the typical level. Errors are stored divided by it, so bursts widen the
    /// quantiles and quiet spells narrow them (volatility clusters).
    fn scale(&self) -> f64 {
        let k = self.history.len().min(12);
        let floor = (0.05 * self.typical_abs).max(1e-12);
        if k == 0 {
            return floor;
        }
        let mean = self.history.iter().rev().take(k).sum::<f64>() / k as f64;
        let mad = self
            .history
            .iter()
            .rev()
            .take(k)
            .map(|x| (x - mean).abs())
            .sum::<f64>()
            / k as f64;
        mad.max(floor)
    }

    fn point(&self, p: Predictor, h: usize) -> Option<f64> {
        let n = self.history.len();
        let last = *self.history.back()?;
        let mean = |k: usize| {
            let k = k.min(n);
            self.history.iter().rev().take(k).sum::<f64>() / k as f64
        };
        Some(match p {
            Predictor::Last => last,
            Predictor::Mean3 => mean(3),
            Predictor::Mean12 => mean(12),
            Predictor::Max6 => self
                .history
                .iter()
                .rev()
                .take(6)
                .copied()
                .fold(f64::MIN, f64::max),
            Predictor::SeasonalDay => {
                let day = self.settings.day;
                // Target index = now + h; a day before it is now + h - day, i.e. day - h back.
                if day <= h || n < day + 1 {
                    return None;
                }
                let then = self.history[n - 1 - (day - h)];
                let base_then = self.history[n - 1 - day];
                then + (last - base_then)
            }
        })
    }

    /// Records observation `u` (the value of the step after the previous one).
    pub fn observe(&mut self, u: f64) {
        let t = self.next;
        // Resolve predictions that targeted this step.
        let level = self.settings.rank_level;
        let alpha = self.settings.rank_smoothing;
        for track in self.tracks.iter_mut() {
            while let Some(&(target, point, scale, q)) = track.pending.front() {
                if target > t {
                    break;
                }
                track.pending.pop_front();
                if target == t {
                    track.errors.push((u - point) / scale);
                    let diff = u - q;
                    let loss = if diff >= 0.0 {
                        level * diff
                    } else {
                        (level - 1.0) * diff
                    };
                    track.loss = (1.0 - alpha) * track.loss + alpha * loss;
                }
            }
        }
        while let Some(&(target, point)) = self.chosen_pending.front() {
            if target > t {
                break;
            }
            self.chosen_pending.pop_front();
            if target == t {
                let e = (u - point).abs();
                self.surprise_short = 0.7 * self.surprise_short + 0.3 * e;
                self.surprise_long = 0.995 * self.surprise_long + 0.005 * e;
            }
        }
        self.history.push_back(u);
        if self.history.len() > self.capacity {
            self.history.pop_front();
        }
        self.next += 1;
        let alpha = (1.0 / self.next as f64).max(1.0 / self.settings.day.max(1) as f64);
        self.typical_abs += alpha * (u.abs() - self.typical_abs);
        let scale = self.scale();
        // Register this step's predictions of every predictor.
        let h = self.settings.horizon;
        for (i, p) in Predictor::ALL.iter().enumerate() {
            if let Some(point) = self.point(*p, h) {
                let q = self.tracks[i]
                    .errors
                    .quantile(level)
                    .map_or(point, |e| point + e * scale);
                self.tracks[i]
                    .pending
                    .push_back((t + h as u64, point, scale, q));
            }
        }
        if let Some(f) = self.forecast_step(h, &[]) {
            self.chosen_pending.push_back((t + h as u64, f.point));
        }
    }

    /// The forecast `h` steps after the latest observation, with quantiles at `levels`; `None`
    /// before any observation or when `h` is outside `1..=horizon`.
    ///
    /// At the horizon the quantiles are the chosen predictor's point plus the empirical
    /// quantiles of its recent errors; nearer steps interpolate linearly between the latest
    /// observation and the horizon's values.
    pub fn forecast_step(&self, h: usize, levels: &[f64]) -> Option<StepForecast> {
        let horizon = self.settings.horizon;
        if h == 0 || h > horizon {
            return None;
        }
        // Rank predictors with enough error history by their smoothed pinball loss; fall back
        // to persistence while everything is new.
        let min_errors = 12;
        let mut best: Option<(usize, f64)> = None;
        for (i, track) in self.tracks.iter().enumerate() {
            if track.errors.len() < min_errors || self.point(Predictor::ALL[i], horizon).is_none() {
                continue;
            }
            if best.is_none_or(|(_, l)| track.loss < l) {
                best = Some((i, track.loss));
            }
        }
        let i = best.map_or(0, |(i, _)| i);
        let predictor = Predictor::ALL[i];
        let point = self.point(predictor, horizon)?;
        let last = self.last()?;
        let w = h as f64 / horizon as f64;
        let errors = &self.tracks[i].errors;
        let scale = self.scale();
        let quantiles = levels
            .iter()
            .map(|&q| last + w * (point + scale * errors.quantile(q).unwrap_or(0.0) - last))
            .collect();
        Some(StepForecast {
            point: last + w * (point - last),
            quantiles,
            predictor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_quantile_should_forget_the_oldest_values() {
        let mut r = RollingQuantile::new(3);
        for v in [10.0, 1.0, 2.0, 3.0] {
            r.push(v);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.quantile(1.0), Some(3.0));
        assert_eq!(r.quantile(0.0), Some(1.0));
        assert_eq!(r.quantile(0.5), Some(2.0));
    }

    #[test]
    fn forecaster_should_cover_a_noisy_constant_at_the_requested_level() {
        let settings = OnlineSettings {
            horizon: 3,
            day: 24,
            window: 500,
            rank_level: 0.9,
            rank_smoothing: 0.05,
        };
        let mut f = OnlineForecaster::new(settings);
        // Deterministic pseudo-noise in [0, 10).
        let mut x = 12345u64;
        let mut covered = 0;
        let mut total = 0;
        let mut pending: VecDeque<f64> = VecDeque::new();
        for _ in 0..3000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = 100.0 + (x >> 33) as f64 / (1u64 << 31) as f64 * 10.0;
            if pending.len() == 3 {
                let q = pending.pop_front().unwrap();
                total += 1;
                if u <= q {
                    covered += 1;
                }
            }
            f.observe(u);
            pending.push_back(f.forecast_step(3, &[0.9]).unwrap().quantiles[0]);
        }
        let coverage = covered as f64 / total as f64;
        assert!((0.85..=0.95).contains(&coverage), "coverage {coverage}");
    }
}
