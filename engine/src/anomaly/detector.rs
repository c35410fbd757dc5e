//! The online detector: one sample in, one verdict (score, kind, evidence) out.
//!
//! Each step compares the new value with what the recent past predicts, through four tests that
//! each yield a tail probability:
//!
//! 1. **Quantile band** — the rank of the value among the last `memory` values (the empirical
//!    predictive distribution; its 1 % / 99 % quantiles are the band reported as evidence), plus
//!    how far it lies beyond the whole range seen, in units of that range.
//! 2. **Forecast residual** — the one-step forecast is an exponentially smoothed level; the
//!    residual is ranked among the last `memory` absolute residuals.
//! 3. **Change** — the mean of the last `short_window` values ranked like a single value: a level
//!    shift or a drop moves it even when each value on its own is unremarkable.
//! 4. **Trend** — a Mann–Kendall-style statistic over block means of the last `trend_window`
//!    samples: a steady climb (a leak) scores even while it stays inside the past range.
//!
//! The surprises are combined into one score in `[0, 1]`, then *event-suppressed*: a sustained
//! anomaly is announced once, at its onset, and its later samples are damped until the score
//! exceeds the peak already announced. This keeps alerts (and NAB false positives) to one per
//! incident, and lets a new, larger incident through.

use super::window::SortedWindow;
use super::{Error, Result};

/// What an anomaly looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AnomalyKind {
    /// A steady climb (for example a memory leak): growth that a forecast keeps underestimating.
    Leak,
    /// An off-pattern surge above the predicted band.
    Burst,
    /// CPU and network up together, off-pattern: looks like malware or abuse.
    MalwareLike,
    /// A fall below the predicted band (a crash, lost traffic).
    Drop,
    /// The value stopped moving while it used to vary (stuck, hung or crashed workload).
    Flatline,
    /// A sustained move of the level, up or down.
    LevelShift,
}

impl std::fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AnomalyKind::Leak => "leak",
            AnomalyKind::Burst => "burst",
            AnomalyKind::MalwareLike => "malware_like",
            AnomalyKind::Drop => "drop",
            AnomalyKind::Flatline => "flatline",
            AnomalyKind::LevelShift => "level_shift",
        })
    }
}

/// Unchecked settings of a [`Detector`]; see [`DetectorParams::check`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DetectorParams {
    /// Number of past samples that form the predictive distribution (default 6000).
    pub memory: usize,
    /// Samples seen before any score above zero is emitted (default 50).
    pub warmup: usize,
    /// Smoothing factor of the one-step level forecast, in `(0, 1]` (default 0.3).
    pub level_alpha: f64,
    /// Length of the window whose mean is tested for a change of level (default 24).
    pub short_window: usize,
    /// Samples per block of the trend test (default 24); the test spans 12 blocks.
    pub trend_block: usize,
    /// Decay per sample of the announced peak, in `(0, 1)` (default 0.995): smaller forgets faster.
    pub peak_decay: f64,
    /// Factor applied to samples that do not exceed the announced peak, in `[0, 1]` (default 0.3).
    pub damping: f64,
    /// Season length in samples (for example one day: 288 at a 5-minute step), or 0 for none
    /// (default 0). When set, the recent mean is also compared with the same phase of the last
    /// three seasons.
    pub season: usize,
    /// Length of a second, longer window whose mean is tested for a sustained shift, or 0 for
    /// none (default 72).
    pub long_window: usize,
}

impl Default for DetectorParams {
    fn default() -> Self {
        Self {
            memory: 6000,
            warmup: 50,
            level_alpha: 0.3,
            short_window: 24,
            trend_block: 24,
            peak_decay: 0.995,
            damping: 0.3,
            season: 0,
            long_window: 72,
        }
    }
}

/// Settings that passed [`DetectorParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidDetectorParams(DetectorParams);

impl ValidDetectorParams {
    /// The checked settings.
    pub fn get(&self) -> &DetectorParams {
        &self.0
    }
}

impl DetectorParams {
    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the first field that is out of range.
    pub fn check(self) -> Result<ValidDetectorParams> {
        let bad =
            |field: &'static str, reason: &'static str| Err(Error::InvalidParam { field, reason });
        if self.memory < 10 {
            return bad("memory", "must be at least 10");
        }
        if self.warmup < 2 {
            return bad("warmup", "must be at least 2");
        }
        if !(self.level_alpha > 0.0 && self.level_alpha <= 1.0) {
            return bad("level_alpha", "must be in (0, 1]");
        }
        if self.short_window < 2 || self.short_window > self.memory {
            return bad("short_window", "must be between 2 and memory");
        }
        if self.trend_block < 1 {
            return bad("trend_block", "must be at least 1");
        }
        if !(self.peak_decay > 0.0 && self.peak_decay < 1.0) {
            return bad("peak_decay", "must be in (0, 1)");
        }
        if !(0.0..=1.0).contains(&self.damping) {
            return bad("damping", "must be in [0, 1]");
        }
        if self.season > 100_000 {
            return bad("season", "must be at most 100000 samples");
        }
        if self.long_window == 1 || self.long_window > self.memory {
            return bad("long_window", "must be 0 (off) or between 2 and memory");
        }
        Ok(ValidDetectorParams(self))
    }
}

/// Why a sample scored what it did.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Evidence {
    /// The observed value.
    pub value: f64,
    /// One-step forecast (smoothed level) before seeing the value.
    pub expected: f64,
    /// 1 % quantile of the recent values (lower edge of the predicted band).
    pub lower: f64,
    /// 99 % quantile of the recent values (upper edge of the predicted band).
    pub upper: f64,
    /// Smallest tail probability among the tests (how unlikely the sample is), in `(0, 1]`.
    pub tail_probability: f64,
    /// Distance beyond the whole range seen, in units of that range (0 inside it).
    pub excess: f64,
    /// Mean of the last `short_window` values.
    pub recent_mean: f64,
    /// Trend statistic over the last 12 blocks, in `[-1, 1]` (1 = every block above all earlier ones).
    pub trend: f64,
    /// Number of consecutive identical values up to this one.
    pub flat_run: usize,
    /// Score before event suppression, in `[0, 1]`.
    pub raw_score: f64,
}

/// The detector's answer for one sample.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Verdict {
    /// Anomaly score in `[0, 1]`; higher is more anomalous.
    pub score: f64,
    /// The most likely kind, when the sample departs from the prediction at all.
    pub kind: Option<AnomalyKind>,
    /// The numbers behind the score.
    pub evidence: Evidence,
}

impl Verdict {
    fn quiet(value: f64) -> Self {
        Verdict {
            score: 0.0,
            kind: None,
            evidence: Evidence {
                value,
                tail_probability: 1.0,
                ..Evidence::default()
            },
        }
    }
}

const TREND_BLOCKS: usize = 12;

/// Surprise of a tail probability `p` estimated from `m` past values.
fn surprise(p: f64, m: f64) -> f64 {
    (-p.ln() / (m + 1.0).ln()).clamp(0.0, 1.0)
}

/// The mean of the last `k` values, ranked among past such means.
#[derive(Debug, Clone)]
struct MeanTest {
    k: usize,
    buf: std::collections::VecDeque<f64>,
    sum: f64,
    past: SortedWindow,
    learnt: usize,
}

impl MeanTest {
    fn new(k: usize, memory: usize) -> Self {
        Self {
            k,
            buf: std::collections::VecDeque::with_capacity(k + 1),
            sum: 0.0,
            past: SortedWindow::new(memory),
            learnt: 0,
        }
    }

    /// Surprise of the mean including `x` (0 until `k` past means exist), and that mean.
    fn probe(&self, x: f64, spread: f64) -> (f64, f64) {
        let mut sum = self.sum + x;
        if self.buf.len() == self.k {
            sum -= self.buf.front().copied().unwrap_or(0.0);
        }
        let n = self.buf.len().min(self.k - 1) + 1;
        let mean = sum / n as f64;
        if self.past.len() < self.k {
            return (0.0, mean);
        }
        let m = self.past.len() as f64;
        let p_up = (self.past.count_at_least(mean) as f64 + 1.0) / (m + 1.0);
        let p_down = (self.past.count_at_most(mean) as f64 + 1.0) / (m + 1.0);
        let (lo, hi) = (
            self.past.min().unwrap_or(mean),
            self.past.max().unwrap_or(mean),
        );
        let excess = (mean - hi).max(lo - mean).max(0.0) / spread;
        (surprise(p_up.min(p_down), m) + excess, mean)
    }

    fn learn(&mut self, x: f64) {
        self.buf.push_back(x);
        self.sum += x;
        if self.buf.len() > self.k {
            self.sum -= self.buf.pop_front().unwrap_or(0.0);
        }
        self.learnt += 1;
        if self.learnt % 1024 == 0 {
            self.sum = self.buf.iter().sum();
        }
        if self.buf.len() == self.k {
            self.past.push(self.sum / self.k as f64);
        }
    }
}

/// An online anomaly detector for one metric of one workload. Feed it samples in time order.
///
/// # Example
/// ```no_run
/// use predictive_engine::anomaly::{Detector, DetectorParams};
/// let mut d = Detector::new(DetectorParams::default().check().unwrap());
/// for x in [1.0, 1.1, 0.9, 1.0] {
///     let v = d.observe(x);
///     assert!((0.0..=1.0).contains(&v.score));
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Detector {
    p: DetectorParams,
    seen: usize,
    values: SortedWindow,
    residuals: SortedWindow,
    means: SortedWindow,
    level: Option<f64>,
    short: std::collections::VecDeque<f64>,
    short_sum: f64,
    block_sum: f64,
    block_len: usize,
    blocks: std::collections::VecDeque<f64>,
    last: Option<f64>,
    flat_run: usize,
    longest_flat_run: usize,
    peak: f64,
    long: Option<MeanTest>,
    /// Recent means in arrival order, for the seasonal comparison.
    mean_hist: std::collections::VecDeque<f64>,
    /// Past absolute seasonal deviations.
    seasonal: SortedWindow,
}

impl Detector {
    /// A detector with no history.
    pub fn new(params: ValidDetectorParams) -> Self {
        let p = params.0;
        Self {
            seen: 0,
            values: SortedWindow::new(p.memory),
            residuals: SortedWindow::new(p.memory),
            means: SortedWindow::new(p.memory),
            level: None,
            short: std::collections::VecDeque::with_capacity(p.short_window + 1),
            short_sum: 0.0,
            block_sum: 0.0,
            block_len: 0,
            blocks: std::collections::VecDeque::with_capacity(TREND_BLOCKS + 1),
            last: None,
            flat_run: 0,
            longest_flat_run: 0,
            peak: 0.0,
            long: (p.long_window > 0).then(|| MeanTest::new(p.long_window, p.memory)),
            mean_hist: std::collections::VecDeque::new(),
            seasonal: SortedWindow::new(p.memory),
            p,
        }
    }

    /// Number of finite samples seen so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Scores one sample, then learns from it.
    ///
    /// A non-finite value scores 0, has no kind and is not learnt from.
    ///
    /// # Guarantees
    /// The score is in `[0, 1]` and the call never panics, whatever the value.
    pub fn observe(&mut self, x: f64) -> Verdict {
        if !x.is_finite() {
            return Verdict::quiet(x);
        }
        let verdict = if self.seen >= self.p.warmup {
            self.assess(x)
        } else {
            Verdict::quiet(x)
        };
        self.learn(x);
        verdict
    }

    fn assess(&mut self, x: f64) -> Verdict {
        let m = self.values.len() as f64;
        let (lo, hi) = (
            self.values.min().unwrap_or(x),
            self.values.max().unwrap_or(x),
        );
        let lower = self.values.quantile(0.01).unwrap_or(x);
        let upper = self.values.quantile(0.99).unwrap_or(x);
        let range = hi - lo;
        let spread = if range > 0.0 { range } else { x.abs().max(1.0) };

        // 1. Quantile band: rank of the value among recent values.
        let p_up = (self.values.count_at_least(x) as f64 + 1.0) / (m + 1.0);
        let p_down = (self.values.count_at_most(x) as f64 + 1.0) / (m + 1.0);
        let excess = ((x - hi).max(lo - x)).max(0.0) / spread;

        // 2. Forecast residual against the smoothed level.
        let expected = self.level.unwrap_or(x);
        let residual = x - expected;
        let r = residual.abs();
        let mr = self.residuals.len() as f64;
        let p_res = (self.residuals.count_at_least(r) as f64 + 1.0) / (mr + 1.0);

        // 3. Change of level: the recent mean (with this value) ranked among past recent means.
        let k = self.p.short_window;
        let mut sum = self.short_sum + x;
        if self.short.len() == k {
            sum -= self.short.front().copied().unwrap_or(0.0);
        }
        let n_short = self.short.len().min(k - 1) + 1;
        let recent_mean = sum / n_short as f64;
        let mm = self.means.len() as f64;
        let (p_mean_up, p_mean_down) = if self.means.len() >= k {
            (
                (self.means.count_at_least(recent_mean) as f64 + 1.0) / (mm + 1.0),
                (self.means.count_at_most(recent_mean) as f64 + 1.0) / (mm + 1.0),
            )
        } else {
            (1.0, 1.0)
        };

        // 3b. Seasonal: the recent mean against the same phase of the last three seasons.
        let seasonal_dev = self.seasonal_deviation(recent_mean);
        let (s_season, season_up) = match seasonal_dev {
            Some(d) if self.seasonal.len() >= self.p.short_window => {
                let ms = self.seasonal.len() as f64;
                let a = d.abs();
                let p = (self.seasonal.count_at_least(a) as f64 + 1.0) / (ms + 1.0);
                let top = self.seasonal.max().unwrap_or(0.0);
                let ex = if a > top { (a - top) / spread } else { 0.0 };
                (surprise(p, ms) + ex, d > 0.0)
            }
            _ => (0.0, true),
        };

        // 4. Trend over block means, including the current partial block.
        let trend = self.trend(x);

        // 5. Flatline: identical values in a row while the past varied.
        let flat_run = if self.last == Some(x) {
            self.flat_run + 1
        } else {
            0
        };

        let surprise = |p: f64| surprise(p, m);
        let s_band = surprise(p_up.min(p_down)) + excess;
        let s_mean = surprise(p_mean_up.min(p_mean_down));
        let s_trend = if trend > 0.9 && x > upper {
            trend - 0.9
        } else {
            0.0
        };
        // A flat run longer than any seen before (and at least `short_window` long) while the
        // values used to vary is as surprising as a new extreme.
        let s_flat = if flat_run >= k && flat_run > 2 * self.longest_flat_run && range > 0.0 {
            1.0 + 1.0 / (1.0 + flat_run as f64)
        } else {
            0.0
        };
        let s_long = self.long.as_ref().map_or(0.0, |t| t.probe(x, spread).0);
        // The residual's rank is evidence only (in `tail_probability`): on the NAB corpus adding
        // it to the score costs more false positives than it finds anomalies (docs/anomaly.md).
        let combined = [s_band, s_mean, s_season, s_long, s_trend, s_flat]
            .into_iter()
            .fold(0.0, f64::max);
        // Event suppression in surprise space, where values are not saturated: a sample is
        // announced in full only when it beats the (decaying) peak of the current incident.
        let announced = if combined > self.peak {
            combined
        } else {
            combined * self.p.damping
        };
        self.peak = (self.peak * self.p.peak_decay).max(combined);
        let raw = combined / (1.0 + combined);
        let score = announced / (1.0 + announced);

        let tail = p_up.min(p_down).min(p_res).min(p_mean_up.min(p_mean_down));
        let kind = if combined <= 0.0 {
            None
        } else if s_flat > 0.0 && s_flat >= combined {
            Some(AnomalyKind::Flatline)
        } else if s_trend > 0.0 {
            Some(AnomalyKind::Leak)
        } else if s_band >= combined {
            // A single value outside the band: a surge or a fall.
            Some(if x >= expected {
                AnomalyKind::Burst
            } else {
                AnomalyKind::Drop
            })
        } else {
            // The level moved (recent mean, long mean or seasonal comparison).
            let up = if s_season >= combined {
                season_up
            } else {
                recent_mean >= expected
            };
            if !up && recent_mean <= lower {
                Some(AnomalyKind::Drop)
            } else {
                Some(AnomalyKind::LevelShift)
            }
        };
        Verdict {
            score: if score.is_finite() {
                score.clamp(0.0, 1.0)
            } else {
                0.0
            },
            kind,
            evidence: Evidence {
                value: x,
                expected,
                lower,
                upper,
                tail_probability: tail,
                excess,
                recent_mean,
                trend,
                flat_run,
                raw_score: raw,
            },
        }
    }

    /// Recent mean minus the median of the same phase over the last three seasons.
    fn seasonal_deviation(&self, mean: f64) -> Option<f64> {
        let sn = self.p.season;
        if sn == 0 || self.mean_hist.len() < 3 * sn {
            return None;
        }
        let n = self.mean_hist.len();
        let mut past = [
            self.mean_hist[n - sn],
            self.mean_hist[n - 2 * sn],
            self.mean_hist[n - 3 * sn],
        ];
        past.sort_by(f64::total_cmp);
        Some(mean - past[1])
    }

    fn trend(&self, x: f64) -> f64 {
        let mut b: Vec<f64> = self.blocks.iter().copied().collect();
        if self.block_len > 0 || b.is_empty() {
            b.push((self.block_sum + x) / (self.block_len + 1) as f64);
        }
        if b.len() > TREND_BLOCKS {
            b.drain(..b.len() - TREND_BLOCKS);
        }
        if b.len() < TREND_BLOCKS {
            return 0.0;
        }
        let mut s = 0i32;
        for i in 0..b.len() {
            for j in i + 1..b.len() {
                s += match b[j].total_cmp(&b[i]) {
                    std::cmp::Ordering::Greater => 1,
                    std::cmp::Ordering::Less => -1,
                    std::cmp::Ordering::Equal => 0,
                };
            }
        }
        let pairs = (b.len() * (b.len() - 1) / 2) as f64;
        f64::from(s) / pairs
    }

    fn learn(&mut self, x: f64) {
        self.seen += 1;
        let expected = self.level.unwrap_or(x);
        if self.level.is_some() {
            self.residuals.push((x - expected).abs());
        }
        self.level = Some(expected + self.p.level_alpha * (x - expected));
        self.values.push(x);
        self.short.push_back(x);
        self.short_sum += x;
        if self.short.len() > self.p.short_window {
            self.short_sum -= self.short.pop_front().unwrap_or(0.0);
        }
        if self.short.len() == self.p.short_window {
            // Recompute now and then to keep rounding from drifting.
            if self.seen % 1024 == 0 {
                self.short_sum = self.short.iter().sum();
            }
            let mean = self.short_sum / self.p.short_window as f64;
            self.means.push(mean);
            if self.p.season > 0 {
                if let Some(d) = self.seasonal_deviation(mean) {
                    self.seasonal.push(d.abs());
                }
                self.mean_hist.push_back(mean);
                if self.mean_hist.len() > 3 * self.p.season {
                    self.mean_hist.pop_front();
                }
            }
        }
        if let Some(t) = self.long.as_mut() {
            t.learn(x);
        }
        self.block_sum += x;
        self.block_len += 1;
        if self.block_len == self.p.trend_block {
            self.blocks
                .push_back(self.block_sum / self.block_len as f64);
            if self.blocks.len() > TREND_BLOCKS {
                self.blocks.pop_front();
            }
            self.block_sum = 0.0;
            self.block_len = 0;
        }
        self.flat_run = if self.last == Some(x) {
            self.flat_run + 1
        } else {
            0
        };
        self.longest_flat_run = self.longest_flat_run.max(self.flat_run);
        self.last = Some(x);
    }
}
