//! A cheap online quantile forecaster for the allocation policy.
//!
//! Refitting a statistical model at every step of a 3-month 5-minute replay is far too slow, so
//! the policy forecasts the near future with a handful of simple point predictors (persistence,
//! short means, a short max, daily seasonal persistence) and turns each into quantiles with the
//! empirical distribution of its own recent errors at that horizon (a split-conformal wrapper).
//! The predictor with the lowest recent pinball loss at the policy's confidence wins, per horizon.
//! Every update costs O(candidates × log window) plus a bounded memmove.
//!
//! # Memory
//! A controller keeps one forecaster per workload, so the state is compact: values and errors
//! are stored as `f32` (7 significant digits, far finer than any usage metric), the predictors'
//! errors share one ring of rows (one row per step: the step is implicit in the row's position)
//! beside one sorted copy per predictor for the quantile queries, the history is a fixed ring of
//! `day + horizon + 16` values, and the predictions waiting for their target step sit in a ring of
//! `horizon` rows indexed by the target step. Every buffer is allocated once at its exact size.
//! [`OnlineForecaster::heap_bytes`] reports the total: about `8 × P × window + 4 × day` bytes with
//! P = 5 predictors.

/// Rounds to `f32`, the storage precision, saturating instead of overflowing to infinity.
fn to_f32(x: f64) -> f32 {
    if x.is_nan() {
        f32::NAN
    } else {
        x.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32
    }
}

/// A fixed-capacity ring of `T`, allocated once at its exact capacity on the first push.
#[derive(Debug, Clone)]
struct Ring<T> {
    buf: Vec<T>,
    /// Index of the oldest value once the ring is full.
    head: usize,
    cap: usize,
}

impl<T: Copy> Ring<T> {
    fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            head: 0,
            cap: cap.max(1),
        }
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    /// Appends `v`; returns the value it evicted when full.
    fn push(&mut self, v: T) -> Option<T> {
        if self.buf.len() < self.cap {
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(self.cap);
            }
            self.buf.push(v);
            return None;
        }
        let old = std::mem::replace(&mut self.buf[self.head], v);
        self.head = (self.head + 1) % self.cap;
        Some(old)
    }

    /// The value `k` steps before the newest (`k = 0`: the newest).
    fn back(&self, k: usize) -> Option<T> {
        let n = self.buf.len();
        if k >= n {
            return None;
        }
        // The newest value sits just before `head` (wrapping); before the ring fills, `head` is 0
        // and the newest is the last element.
        let newest = (self.head + n - 1) % n;
        Some(self.buf[(newest + n - k) % n])
    }

    fn heap_bytes(&self) -> usize {
        self.buf.capacity() * std::mem::size_of::<T>()
    }
}

/// Sorted `f32` values (finite only), allocated once at `cap` on the first insert.
#[derive(Debug, Clone)]
struct Sorted {
    v: Vec<f32>,
    cap: usize,
}

impl Sorted {
    fn new(cap: usize) -> Self {
        Self {
            v: Vec::new(),
            cap: cap.max(1),
        }
    }

    fn len(&self) -> usize {
        self.v.len()
    }

    fn insert(&mut self, x: f32) {
        if self.v.len() == self.v.capacity() {
            // Exact growth: a clone holds only its values, and the window never outgrows `cap`.
            self.v
                .reserve_exact(self.cap.max(self.v.len() + 1) - self.v.len());
        }
        let i = self.v.partition_point(|y| *y < x);
        self.v.insert(i, x);
    }

    fn remove(&mut self, x: f32) {
        let i = self.v.partition_point(|y| *y < x);
        if self.v.get(i) == Some(&x) {
            self.v.remove(i);
        }
    }

    /// Linear interpolation between order statistics; `None` when empty.
    fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.v.len();
        if n == 0 {
            return None;
        }
        let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(n - 1);
        let frac = pos - lo as f64;
        Some(f64::from(self.v[lo]) * (1.0 - frac) + f64::from(self.v[hi]) * frac)
    }

    fn heap_bytes(&self) -> usize {
        self.v.capacity() * std::mem::size_of::<f32>()
    }
}

/// A window of the most recent values that answers quantile queries (stored as `f32`).
#[derive(Debug, Clone)]
pub struct RollingQuantile {
    ring: Ring<f32>,
    sorted: Sorted,
}

impl RollingQuantile {
    /// An empty window holding at most `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: Ring::new(capacity),
            sorted: Sorted::new(capacity),
        }
    }

    /// Adds `v`, evicting the oldest value when full. Non-finite values are ignored.
    pub fn push(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let v = to_f32(v);
        if let Some(old) = self.ring.push(v) {
            self.sorted.remove(old);
        }
        self.sorted.insert(v);
    }

    /// Number of values held.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.sorted.len() == 0
    }

    /// The `q`-quantile (linear interpolation between order statistics); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.sorted.quantile(q)
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.ring.heap_bytes() + self.sorted.heap_bytes()
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

/// Number of predictors.
const P: usize = 5;

impl Predictor {
    /// All predictors.
    pub const ALL: [Predictor; P] = [
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
    /// Errors remembered per predictor and horizon (the last `window` steps that produced one).
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

/// The predictions made at one step for the step `horizon` later (NaN: none).
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The error scale when they were made.
    scale: f32,
    /// The chosen forecast's point.
    chosen: f32,
    /// Each predictor's point.
    point: [f32; P],
    /// Each predictor's quantile at the rank level.
    q: [f32; P],
}

impl Pending {
    const NONE: Pending = Pending {
        scale: f32::NAN,
        chosen: f32::NAN,
        point: [f32::NAN; P],
        q: [f32::NAN; P],
    };
}

/// Online multi-predictor conformal forecaster. Feed it one observation per step.
#[derive(Debug, Clone)]
pub struct OnlineForecaster {
    settings: OnlineSettings,
    /// The latest `day + horizon + 16` observations.
    history: Ring<f32>,
    /// Index of the next observation.
    next: u64,
    /// Each predictor's normalised errors at the horizon, one row per step (NaN: no error).
    errors: Ring<[f32; P]>,
    /// The same errors, sorted, per predictor.
    sorted: [Sorted; P],
    /// Smoothed pinball loss per predictor at the rank level.
    loss: [f64; P],
    /// Predictions waiting for their target step: the one for step `t` sits at `t % horizon`.
    pending: Vec<Pending>,
    /// Recent absolute errors of the chosen predictor at the last horizon, short and long EWMA.
    surprise_short: f64,
    surprise_long: f64,
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
        let window = settings.window.max(1);
        Self {
            settings,
            history: Ring::new(settings.day + horizon + 16),
            next: 0,
            errors: Ring::new(window),
            sorted: std::array::from_fn(|_| Sorted::new(window)),
            loss: [0.0; P],
            pending: vec![Pending::NONE; horizon],
            surprise_short: 0.0,
            surprise_long: 0.0,
            typical_abs: 0.0,
        }
    }

    /// Number of observations seen so far.
    pub fn seen(&self) -> u64 {
        self.next
    }

    /// The latest observation, if any.
    pub fn last(&self) -> Option<f64> {
        self.history.back(0).map(f64::from)
    }

    /// Bytes this forecaster holds on the heap (its windows, history and pending predictions).
    pub fn heap_bytes(&self) -> usize {
        self.history.heap_bytes()
            + self.errors.heap_bytes()
            + self.sorted.iter().map(Sorted::heap_bytes).sum::<usize>()
            + self.pending.capacity() * std::mem::size_of::<Pending>()
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

    /// The latest `k` observations, newest first.
    fn recent(&self, k: usize) -> impl Iterator<Item = f64> + '_ {
        (0..k.min(self.history.len())).filter_map(|j| self.history.back(j).map(f64::from))
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
        let mean = self.recent(k).sum::<f64>() / k as f64;
        let mad = self.recent(k).map(|x| (x - mean).abs()).sum::<f64>() / k as f64;
        mad.max(floor)
    }

    fn point(&self, p: Predictor, h: usize) -> Option<f64> {
        let n = self.history.len();
        let last = self.last()?;
        let mean = |k: usize| {
            let k = k.min(n);
            self.recent(k).sum::<f64>() / k as f64
        };
        Some(match p {
            Predictor::Last => last,
            Predictor::Mean3 => mean(3),
            Predictor::Mean12 => mean(12),
            Predictor::Max6 => self.recent(6).fold(f64::MIN, f64::max),
            Predictor::SeasonalDay => {
                let day = self.settings.day;
                // Target index = now + h; a day before it is now + h - day, i.e. day - h back.
                if day <= h || n < day + 1 {
                    return None;
                }
                let then = f64::from(self.history.back(day - h)?);
                let base_then = f64::from(self.history.back(day)?);
                then + (last - base_then)
            }
        })
    }

    /// Records observation `u` (the value of the step after the previous one).
    pub fn observe(&mut self, u: f64) {
        let t = self.next;
        let h = self.settings.horizon;
        let slot = (t % h as u64) as usize;
        // Resolve the predictions made `horizon` steps ago for this step.
        let due = std::mem::replace(&mut self.pending[slot], Pending::NONE);
        let level = self.settings.rank_level;
        let alpha = self.settings.rank_smoothing;
        let mut row = [f32::NAN; P];
        for (i, r) in row.iter_mut().enumerate() {
            let (point, q) = (f64::from(due.point[i]), f64::from(due.q[i]));
            if point.is_nan() {
                continue;
            }
            let e = (u - point) / f64::from(due.scale);
            if e.is_finite() {
                *r = to_f32(e);
            }
            let diff = u - q;
            let loss = if diff >= 0.0 {
                level * diff
            } else {
                (level - 1.0) * diff
            };
            self.loss[i] = (1.0 - alpha) * self.loss[i] + alpha * loss;
        }
        if row.iter().any(|e| !e.is_nan()) {
            if let Some(old) = self.errors.push(row) {
                for (s, e) in self.sorted.iter_mut().zip(old) {
                    if !e.is_nan() {
                        s.remove(e);
                    }
                }
            }
            for (s, e) in self.sorted.iter_mut().zip(row) {
                if !e.is_nan() {
                    s.insert(e);
                }
            }
        }
        if !due.chosen.is_nan() {
            let e = (u - f64::from(due.chosen)).abs();
            self.surprise_short = 0.7 * self.surprise_short + 0.3 * e;
            self.surprise_long = 0.995 * self.surprise_long + 0.005 * e;
        }
        self.history.push(to_f32(u));
        self.next += 1;
        let alpha = (1.0 / self.next as f64).max(1.0 / self.settings.day.max(1) as f64);
        self.typical_abs += alpha * (u.abs() - self.typical_abs);
        let scale = self.scale();
        // Register this step's predictions of every predictor for step `t + h` (same slot).
        let mut made = Pending {
            scale: to_f32(scale),
            ..Pending::NONE
        };
        for (i, p) in Predictor::ALL.iter().enumerate() {
            if let Some(point) = self.point(*p, h) {
                let q = self.sorted[i]
                    .quantile(level)
                    .map_or(point, |e| point + e * scale);
                made.point[i] = to_f32(point);
                made.q[i] = to_f32(q);
            }
        }
        if let Some(f) = self.forecast_step(h, &[]) {
            made.chosen = to_f32(f.point);
        }
        self.pending[slot] = made;
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
        for i in 0..P {
            if self.sorted[i].len() < min_errors || self.point(Predictor::ALL[i], horizon).is_none()
            {
                continue;
            }
            if best.is_none_or(|(_, l)| self.loss[i] < l) {
                best = Some((i, self.loss[i]));
            }
        }
        let i = best.map_or(0, |(i, _)| i);
        let predictor = Predictor::ALL[i];
        let point = self.point(predictor, horizon)?;
        let last = self.last()?;
        let w = h as f64 / horizon as f64;
        let errors = &self.sorted[i];
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
    use std::collections::VecDeque;

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
        let mut g = crate::noise::Mmix::new(12345);
        let mut covered = 0;
        let mut total = 0;
        let mut pending: VecDeque<f64> = VecDeque::new();
        for _ in 0..3000 {
            let u = 100.0 + (g.next_u64() >> 33) as f64 / (1u64 << 31) as f64 * 10.0;
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
