//! The online detector: one sample in, one verdict (score, kind, evidence) out.
//!
//! Each step compares the new value with what the recent past predicts. Every test yields a
//! *surprise*: the tail probability `p` of the tested quantity among its `m` remembered past
//! values, as `−ln p / ln(m + 1)` (1 = beyond all of them), plus, for a record, how far beyond
//! the range seen it lies, in units of that range.
//!
//! 1. **Quantile band** — the value among those of the last `memory` steps (the empirical
//!    predictive distribution; its 1 % / 99 % quantiles are the band reported as evidence).
//!    Memories span steps, not samples: a step whose sample went missing still counts.
//! 2. **Change** — the mean of the last `short_window` steps, and of the last `long_window`,
//!    among past such means: a level shift or a drop moves them even when each value on its own
//!    is unremarkable. A step missing in a short gap counts at the recent mean.
//! 3. **Seasonal** — with a `season`, the recent mean minus the median of the same phase over the
//!    last three seasons (or the same phase a week earlier when closer, with `weekly`), among
//!    the deviations of the last six weeks: a missing daily peak, a holiday.
//! 4. **Trend** — a Mann–Kendall statistic over 12 block means of `trend_block` samples: a steady
//!    climb past the band is a leak. With a season, a seasonal sign test instead (each of the 12
//!    blocks against the same block one season earlier), so a daily ramp is never a leak.
//! 5. **Flatline** — a run of identical values a quarter longer than any before (and at least
//!    three hours at 5 minutes).
//! 6. **Forecast residual** — the residual of an exponentially smoothed level, ranked among past
//!    residuals. Reported as evidence (expected value, tail probability) but kept out of the
//!    score: on the NAB corpus it added more false positives than detections.
//!
//! The largest surprise `s` becomes the score `s / (1 + s)`, after *event suppression*: a sample
//! is announced in full only when its surprise beats the decaying peak of the current incident,
//! and is damped otherwise. A sustained anomaly is announced once, at its onset, and a new,
//! larger incident still gets through; an incident lasts while its samples are still records,
//! so a leak that goes on climbing is not announced again and again (only the sample that first
//! names it a leak is, for the runaway guard).

use super::window::{to_f32, BlockWindow, Ring};
use super::{Error, Result};

/// Score at and above which a verdict deserves action: a value, mean, seasonal deviation or flat
/// run beyond everything in the detector's memory by at least [`RECORD_MARGIN`] of the range
/// seen (a surprise of `1 + RECORD_MARGIN`). NAB's threshold optimisation picks about the same
/// threshold for this detector on the NAB corpus (0.502, docs/anomaly.md).
pub const ALERT_THRESHOLD: f64 = (1.0 + RECORD_MARGIN) / (2.0 + RECORD_MARGIN);

/// Margin, as a share of the range seen, by which a record must beat it to reach
/// [`ALERT_THRESHOLD`].
pub const RECORD_MARGIN: f64 = 0.01;

/// Values the memory must hold before a new extreme value needs only [`RECORD_MARGIN`]; with
/// fewer, `m`, it must beat the range by `RECORD_MARGIN × YOUNG_RECORD_VALUES / m` (or by
/// `RECORD_MARGIN` once the memory holds all it ever will, when it is shorter). The top of `m`
/// values is about a `1/m` of the range apart: a new extreme 1 % beyond 200 values is two such
/// gaps, beyond 8,000 values eighty.
const YOUNG_RECORD_VALUES: f64 = 1000.0;

/// Default [`DetectorParams::memory`]: four weeks of 5-minute samples.
pub const DEFAULT_MEMORY: usize = 4 * 7 * 288;

/// The sampling step, in seconds, in which the windows of [`DetectorParams`] are stated (five
/// minutes); [`DetectorParams::at_step`] fits them to a coarser one.
pub const REFERENCE_STEP_SECS: i64 = 300;

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
#[serde(default, deny_unknown_fields)]
pub struct DetectorParams {
    /// Number of past steps whose samples form the predictive distribution (default 8064: four
    /// weeks at a 5-minute step, so every phase of a weekly rhythm is remembered four times).
    /// Steps are time: a step whose sample never arrived ([`Detector::skip`]) still counts, so
    /// a series that loses samples remembers the same four weeks, not further back.
    /// A record is judged against this window: shorter, and the peaks of three weeks ago roll
    /// out of it and ordinary values set records again; much longer, and one large early incident
    /// hides the later ones.
    pub memory: usize,
    /// Warm-up in samples (default 600, about two days at five minutes; [`Self::at_step`]
    /// keeps the two days at a coarser step): before it, a tail probability rests on fewer values
    /// than it takes to trust it, and every surprise counts for `ln(m + 1) / ln(warmup + 1)` of
    /// itself (`m` = samples seen), so ordinary early records stay below the alert threshold
    /// and only a departure far beyond the little seen gets through. NAB likewise does not
    /// score the first 15 % of a series (at most 750 samples).
    pub warmup: usize,
    /// Smoothing factor of the one-step level forecast, in `(0, 1]` (default 0.3).
    pub level_alpha: f64,
    /// Length of the window whose mean is tested for a change of level (default 24: two hours
    /// of 5-minute samples). This and the other windows below are stated in 5-minute samples;
    /// [`Self::at_step`] fits them to a coarser step.
    pub short_window: usize,
    /// Samples per block of the trend test (default 24); the test spans 12 blocks.
    pub trend_block: usize,
    /// Decay per 5-minute sample of the announced peak, in `(0, 1)` (default 0.995): smaller
    /// forgets faster.
    pub peak_decay: f64,
    /// Factor applied to samples that do not exceed the announced peak, in `[0, 1]` (default 0.3).
    pub damping: f64,
    /// Season length in samples (for example one day: 288 at a 5-minute step), or 0 for none
    /// (default 0). When set, the recent mean is also compared with the same phase of the last
    /// three seasons.
    pub season: usize,
    /// Length of a second, longer window whose mean is tested for a sustained shift, or 0 for
    /// none (default 72). Both halves of the NAB corpus chose it off, but without it a small
    /// shift inside the band does not alert: the short mean's surprise stops at a bare record.
    pub long_window: usize,
    /// Samples after an announcement during which the incident's peak does not decay: only a
    /// sample more surprising than the one announced opens a new incident (default 72, three
    /// short windows; 0 for none). Every later sample of the incident that is still a record
    /// (a surprise of at least 1) starts the period again, so an incident that goes on is
    /// announced once. NAB, like an operator, counts only the first alarm of an
    /// incident; a chain of near-records (each new mean a little beyond the last) would
    /// otherwise alarm again and again (docs/anomaly.md).
    pub quiet_period: usize,
    /// Allowance of the shift test (Page's CUSUM), in units of the residuals' scale (default
    /// 2): only a persistent deviation beyond it accumulates. Smaller catches smaller shifts
    /// and costs more false alarms.
    pub shift_allowance: f64,
    /// Whether the season is a day and the seasonal test may also compare the recent mean with
    /// the same phase one week (seven seasons) earlier (default true). The smaller of the two
    /// deviations is tested, so a weekly rhythm (quiet weekends, busy Mondays) is not news from
    /// its second week on, while a departure from both the last days and the last week is.
    pub weekly: bool,
}

impl Default for DetectorParams {
    fn default() -> Self {
        Self {
            memory: DEFAULT_MEMORY,
            warmup: 600,
            level_alpha: 0.3,
            short_window: 24,
            trend_block: 24,
            peak_decay: 0.995,
            damping: 0.3,
            season: 0,
            long_window: 72,
            quiet_period: 72,
            shift_allowance: CUSUM_ALLOWANCE,
            weekly: true,
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
    /// The same settings for samples `step_secs` apart. The windows that stand for a stretch
    /// of time (`short_window`, `long_window`, `trend_block`, `quiet_period`, `warmup`) are
    /// stated in samples of [`REFERENCE_STEP_SECS`] (five minutes); at another step each is
    /// fitted to cover the same time (at least 2 samples, 1 for a trend block or a quiet
    /// period, and 0 stays off), and the announced peak decays per sample as much as it did
    /// over the same time. A window of 24 five-minute samples is two hours; kept at 24 hourly
    /// samples it would be a day, and a level shift would be found a day late; kept at 24
    /// one-minute samples it would be 24 minutes, and every busy half hour would be news.
    /// `memory` is never shortened (a record needs many samples to be judged against) but at a
    /// finer step grows to cover the same time (the default's four weeks: a record among the
    /// last 5.6 days of one-minute samples is no record of the month). The season is set from
    /// the step by the caller. Steps within a tenth below five minutes (a 5-minute step read a
    /// little short from jittered timestamps) and an unknown step (0 or less) keep the settings
    /// as they are.
    #[must_use]
    pub fn at_step(mut self, step_secs: i64) -> Self {
        if step_secs <= 0
            || (REFERENCE_STEP_SECS * 9 / 10..=REFERENCE_STEP_SECS).contains(&step_secs)
        {
            return self;
        }
        let k = step_secs as f64 / REFERENCE_STEP_SECS as f64;
        if k < 1.0 {
            self.memory = (self.memory as f64 / k).round() as usize;
        }
        let fit = |n: usize, least: usize| {
            if n == 0 {
                0
            } else {
                ((n as f64 / k).round() as usize).max(least)
            }
        };
        self.short_window = fit(self.short_window, 2);
        self.long_window = fit(self.long_window, 2);
        self.trend_block = fit(self.trend_block, 1);
        self.quiet_period = fit(self.quiet_period, 1);
        self.warmup = fit(self.warmup, 2);
        self.peak_decay = self.peak_decay.powf(k);
        self
    }

    /// Number of past steps whose seasonal deviations the seasonal test ranks a deviation
    /// against: the last [`SEASONAL_MEMORY_WEEKS`] weeks of seasons, or `memory` when that is
    /// shorter. The value tests keep `memory` steps at any step length, which at a coarse step
    /// is months (168 days at 30 minutes); over that long, one large departure (a storm, a
    /// day-long outage) would set the bar for every later day, and a holiday two months after
    /// it would be no record.
    fn seasonal_memory(&self) -> usize {
        let weeks = SEASONAL_MEMORY_WEEKS * WEEK * self.season;
        if self.season == 0 || weeks >= self.memory {
            self.memory
        } else {
            weeks.max(self.short_window)
        }
    }

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
        if !(self.shift_allowance >= 0.0 && self.shift_allowance <= CUSUM_CLIP) {
            return bad("shift_allowance", "must be in [0, 4]");
        }
        if self.long_window == 1 || self.long_window > self.memory {
            return bad("long_window", "must be 0 (off) or between 2 and memory");
        }
        Ok(ValidDetectorParams(self))
    }
}

/// How much longer than the longest run of identical values seen before a run must be to count
/// as a flatline (a record run).
const FLAT_RECORD: f64 = 1.25;

/// Weeks of seasonal deviations the seasonal test remembers (see
/// [`DetectorParams::seasonal_memory`]); the default memory is four weeks at 5 minutes, so this
/// binds only at coarser steps.
const SEASONAL_MEMORY_WEEKS: usize = 6;

/// Seasons per week when the season is a day (the weekly reference of the seasonal test).
const WEEK: usize = 7;

/// Puts a series' timestamps on a grid of its step, counted from its first sample, and says
/// how many steps are missing before each sample (for [`Detector::skip`]).
///
/// Gaps are measured against the grid, not against the previous sample. Collected metrics
/// arrive a little early or late; measured from the previous sample, an early one followed by
/// a late one looks like a gap and the detector's same-phase references slip one step later,
/// for good. On the grid a sample up to half a step off its slot is in its slot. Two samples in
/// one slot count as consecutive steps, and the next gap takes the extra step back. A period a
/// little off the step keeps the phase on the clock, not on the count of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepClock {
    step: i64,
    /// The first sample's timestamp.
    origin: Option<i64>,
    /// The grid slot the detector's last sample stands for.
    slot: i64,
}

impl StepClock {
    /// A clock for samples `step` apart (in the timestamps' unit). A step that is not positive
    /// (unknown) never reports a missing step.
    pub fn new(step: i64) -> Self {
        Self {
            step,
            origin: None,
            slot: 0,
        }
    }

    /// The grid time of the last sample (`None` before the first, or with no step).
    pub fn last(&self) -> Option<i64> {
        let origin = self.origin.filter(|_| self.step > 0)?;
        Some(origin.saturating_add(self.slot.saturating_mul(self.step)))
    }

    /// Steps missing before a sample at `at`: 0 for the first sample, for any sample within
    /// half a step of the slot after the last one, and for a timestamp that goes backwards.
    pub fn missing_before(&mut self, at: i64) -> usize {
        if self.step <= 0 {
            return 0;
        }
        let Some(origin) = self.origin else {
            self.origin = Some(at);
            return 0;
        };
        let slot = at
            .saturating_sub(origin)
            .saturating_add(self.step / 2)
            .div_euclid(self.step);
        let missing = slot.saturating_sub(self.slot).saturating_sub(1).max(0);
        self.slot = slot.max(self.slot.saturating_add(1));
        usize::try_from(missing).unwrap_or(usize::MAX)
    }
}

/// Why a sample scored what it did.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
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
    /// Climb statistic over the last 12 blocks, in `[-1, 1]`. Without a season, Mann–Kendall
    /// (1 = every block above all earlier ones); with one, the seasonal sign test (1 = every
    /// block above the same block one season earlier), so a daily ramp does not count.
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

impl Verdict {
    /// One sentence naming the kind and the numbers behind it, for alerts and audit logs.
    ///
    /// # Example
    /// ```no_run
    /// use predictive_engine::anomaly::{Detector, DetectorParams};
    /// let mut d = Detector::new(DetectorParams::default().check().unwrap());
    /// let v = d.observe(1.0);
    /// println!("{}", v.explain()); // "no anomaly (score 0.000)"
    /// ```
    pub fn explain(&self) -> String {
        let e = &self.evidence;
        let band = format!("[{}, {}]", num(e.lower), num(e.upper));
        let Some(kind) = self.kind else {
            return format!("no anomaly (score {:.3})", self.score);
        };
        let detail = match kind {
            // The shift test can name a climb a leak before the value leaves the band.
            AnomalyKind::Leak => format!(
                "value {} {} the band {band} and climbing: trend {:.2} over the last {TREND_BLOCKS} blocks, recent mean {}",
                num(e.value),
                if e.value > e.upper { "above" } else { "within" },
                e.trend,
                num(e.recent_mean)
            ),
            AnomalyKind::Burst | AnomalyKind::MalwareLike => format!(
                "value {} above the band {band} (expected {}), {:.2} ranges beyond everything seen, tail probability {:.2e}",
                num(e.value),
                num(e.expected),
                e.excess,
                e.tail_probability
            ),
            AnomalyKind::Drop => format!(
                "value {} below the band {band} (expected {}), recent mean {}, {:.2} ranges beyond everything seen",
                num(e.value),
                num(e.expected),
                num(e.recent_mean),
                e.excess
            ),
            AnomalyKind::Flatline => format!(
                "value {} repeated {} times in a row, while the band {band} used to vary",
                num(e.value),
                e.flat_run + 1
            ),
            AnomalyKind::LevelShift => {
                let beyond = if e.excess > 0.0 {
                    format!(", the value {:.2} ranges beyond everything seen", e.excess)
                } else {
                    String::new()
                };
                format!(
                    "recent mean {} moved from the expected {} (value {}, band {band}){beyond}, tail probability {:.2e}",
                    num(e.recent_mean),
                    num(e.expected),
                    num(e.value),
                    e.tail_probability
                )
            }
        };
        format!("{kind}: {detail}; score {:.3}", self.score)
    }
}

/// A number with four significant digits, without noise such as `59.99999999`.
pub(super) fn num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (3 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{x:.digits$}")
}

const TREND_BLOCKS: usize = 12;

/// Seasons for which a series must stay mostly above the season before it
/// (`Detector::climb_run`) before a climb that no longer steepens is called a leak. A level
/// shift is above the season before it for one season; half a season more keeps its noise
/// from reaching this.
const LEAK_CLIMB_SEASONS: f64 = 1.5;

/// Largest tail probability of the seasonal deviation for which a long climb
/// (`LEAK_CLIMB_SEASONS`) counts as a leak: the recent mean must be above the same phase by
/// more than nine in ten past deviations.
const LEAK_PHASE_TAIL: f64 = 0.1;

/// Samples seen before any score above zero (a rank needs something to rank against).
const MIN_SEEN: usize = 2;

/// Mann–Kendall statistic in `[-1, 1]` over the last [`TREND_BLOCKS`] block means: the finished
/// `blocks` plus the current partial block (`partial_sum / partial_len`, where `partial_len`
/// counts the sample being assessed). 0 until enough blocks exist.
fn mann_kendall(
    blocks: &std::collections::VecDeque<f64>,
    partial_sum: f64,
    partial_len: usize,
) -> f64 {
    let mut b: Vec<f64> = blocks.iter().copied().collect();
    if partial_len > 1 || b.is_empty() {
        b.push(partial_sum / partial_len as f64);
    }
    if b.len() > TREND_BLOCKS {
        b.drain(..b.len() - TREND_BLOCKS);
    }
    if b.len() < TREND_BLOCKS {
        return 0.0;
    }
    kendall(&b)
}

/// Mann–Kendall statistic of a sequence, in `[-1, 1]` (0 for fewer than two values).
fn kendall(b: &[f64]) -> f64 {
    if b.len() < 2 {
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

/// Maps a surprise in `[0, ∞]` to a score in `[0, 1]`: `s / (1 + s)`, so a surprise of 1 (a
/// record over the memory) scores 0.5. NaN maps to 0, infinity to 1.
fn squash(s: f64) -> f64 {
    if s.is_nan() || s <= 0.0 {
        0.0
    } else if s.is_infinite() {
        1.0
    } else {
        (s / (1.0 + s)).clamp(0.0, 1.0)
    }
}

/// Surprise of a tail probability `p` estimated from `m` past values.
fn surprise(p: f64, m: f64) -> f64 {
    let v = -p.ln() / (m + 1.0).ln();
    if m >= 1.0 && v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The mean of the last `k` values (read from the detector's shared ring of raw values), ranked
/// among past such means.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct MeanTest {
    k: usize,
    sum: f64,
    past: BlockWindow,
    learnt: usize,
}

impl MeanTest {
    fn new(k: usize, memory: usize) -> Self {
        Self {
            k,
            sum: 0.0,
            past: BlockWindow::new(memory),
            learnt: 0,
        }
    }

    /// Sum and count of the values that share the window with the next one: the last `k − 1`
    /// in the ring (fewer while it fills).
    fn before(&self, raw: &Ring) -> (f64, usize) {
        let mut sum = self.sum;
        if raw.len() >= self.k {
            sum -= raw.back(self.k - 1).map_or(0.0, f64::from);
        }
        (sum, raw.len().min(self.k - 1))
    }

    /// Mean of the last `k` values including `x` (the ring holds the values before `x`).
    fn mean_with(&self, x: f64, raw: &Ring) -> f64 {
        let (sum, n) = self.before(raw);
        (sum + x) / (n + 1) as f64
    }

    /// Surprise of the mean including `x` (0 until `k` past means exist), and that mean.
    fn probe(&self, x: f64, spread: f64, raw: &Ring) -> (f64, f64) {
        let mean = self.mean_with(x, raw);
        if self.past.len() < self.k {
            return (0.0, mean);
        }
        let m = self.past.len() as f64;
        let p_up = (self.past.count_at_least(mean) + 1.0) / (m + 1.0);
        let p_down = (self.past.count_at_most(mean) + 1.0) / (m + 1.0);
        let (lo, hi) = (
            self.past.min().unwrap_or(mean),
            self.past.max().unwrap_or(mean),
        );
        let excess = (mean - hi).max(lo - mean).max(0.0) / spread;
        (surprise(p_up.min(p_down), m) + excess, mean)
    }

    /// Learns `x`, before it is pushed to the ring; returns the new mean once `k` values exist.
    fn learn(&mut self, x: f64, raw: &Ring) -> Option<f64> {
        self.slide(x, raw);
        self.learnt += 1;
        if self.learnt.is_multiple_of(1024) && raw.len() >= self.k {
            // Recompute now and then to keep rounding from drifting.
            self.sum = x
                + (0..self.k - 1)
                    .filter_map(|j| raw.back(j))
                    .map(f64::from)
                    .sum::<f64>();
        }
        (self.learnt >= self.k).then(|| {
            let mean = self.sum / self.k as f64;
            self.past.push(mean);
            mean
        })
    }

    fn heap_bytes(&self) -> usize {
        self.past.heap_bytes()
    }

    /// Moves the window on by `x`, before it is pushed to the ring, without keeping a past mean
    /// (a missing step filled in, not a sample).
    fn slide(&mut self, x: f64, raw: &Ring) {
        self.sum += x;
        if raw.len() >= self.k {
            self.sum -= raw.back(self.k - 1).map_or(0.0, f64::from);
        }
    }

    /// Mean of the last `k` values in the ring (fewer while it fills), if any.
    fn mean(&self, raw: &Ring) -> Option<f64> {
        let n = raw.len().min(self.k);
        (n > 0).then(|| self.sum / n as f64)
    }
}

/// Default allowance of the shift test ([`DetectorParams::shift_allowance`]), in scale units
/// (1.25 × the mean absolute deviation): only a persistent deviation beyond two of them
/// accumulates (Page's CUSUM tuned for a shift of about four).
const CUSUM_ALLOWANCE: f64 = 2.0;

/// Largest standardised residual the shift test takes in, in scale units: one huge spike is the
/// band test's business, and must not fill the accumulator on its own.
const CUSUM_CLIP: f64 = 4.0;

/// Page's two-sided CUSUM on standardised residuals against a slow baseline, judged like every
/// other test: the accumulated deviation ranked among its own past values (a record beyond all
/// of them is an alarm), so no alarm level has to be set per series.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Cusum {
    /// Allowance per sample, in scale units.
    allowance: f64,
    /// Smoothing factor of the baseline and its scale.
    alpha: f64,
    reference: Option<f64>,
    /// Mean absolute deviation from the baseline.
    scale: f64,
    up: f64,
    down: f64,
    past: BlockWindow,
}

impl Cusum {
    fn new(span: usize, memory: usize, allowance: f64) -> Self {
        Self {
            allowance,
            alpha: 1.0 / span.max(2) as f64,
            reference: None,
            scale: 0.0,
            up: 0.0,
            down: 0.0,
            past: BlockWindow::new(memory),
        }
    }

    /// The accumulators after `x`: `(up, down)`.
    fn step(&self, x: f64) -> (f64, f64) {
        let Some(r) = self.reference else {
            return (0.0, 0.0);
        };
        // Mean absolute deviation × 1.25 estimates the standard deviation of normal noise.
        let sd = 1.25 * self.scale;
        let z = if sd > 0.0 {
            ((x - r) / sd).clamp(-CUSUM_CLIP, CUSUM_CLIP)
        } else if x == r {
            0.0
        } else {
            CUSUM_CLIP.copysign(x - r)
        };
        (
            (self.up + z - self.allowance).max(0.0),
            (self.down - z - self.allowance).max(0.0),
        )
    }

    /// Surprise of the accumulated deviation after `x` among its past values (0 until
    /// `min_past` exist), and whether it points up.
    fn probe(&self, x: f64, min_past: usize) -> (f64, bool) {
        let (up, down) = self.step(x);
        let s = up.max(down);
        if self.past.len() < min_past || s <= 0.0 {
            return (0.0, up >= down);
        }
        let m = self.past.len() as f64;
        let p = (self.past.count_at_least(s) + 1.0) / (m + 1.0);
        let top = self.past.max().unwrap_or(0.0);
        let excess = if s > top && top > 0.0 {
            (s - top) / top
        } else {
            0.0
        };
        (surprise(p, m) + excess, up >= down)
    }

    /// Learns `x`; after an alarm the accumulators restart from zero and the baseline from
    /// `level` (the recent mean), so a shift that persists is not announced again and again.
    fn learn(&mut self, x: f64, alarm: bool, level: f64) {
        let (up, down) = self.step(x);
        self.past.push(up.max(down));
        match self.reference {
            None => self.reference = Some(x),
            Some(r) => {
                self.scale += self.alpha * ((x - r).abs() - self.scale);
                self.reference = Some(r + self.alpha * (x - r));
            }
        }
        if alarm {
            self.up = 0.0;
            self.down = 0.0;
            self.reference = Some(level);
        } else {
            self.up = up;
            self.down = down;
        }
    }

    fn heap_bytes(&self) -> usize {
        self.past.heap_bytes()
    }
}

/// An online anomaly detector for one metric of one workload. Feed it samples in time order.
///
/// Its whole state serializes (serde), so a controller can store it and carry on after a restart
/// with everything it remembered, instead of relearning from what history it still has. The
/// form is for the same version of the engine to read back; compare [`Detector::params`] with
/// the settings in force before using a restored detector.
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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Detector {
    p: DetectorParams,
    seen: usize,
    values: BlockWindow,
    residuals: BlockWindow,
    /// The last `max(short_window, long_window)` raw values, shared by the mean tests.
    raw: Ring,
    /// The mean of the last `short_window` values among past such means.
    short: MeanTest,
    level: Option<f64>,
    block_sum: f64,
    block_len: usize,
    blocks: std::collections::VecDeque<f64>,
    last: Option<f64>,
    flat_run: usize,
    longest_flat_run: usize,
    peak: f64,
    since_announce: usize,
    /// Surprise of the last announced sample.
    announced: f64,
    /// Whether the current incident has been announced as a leak.
    leak_named: bool,
    /// Samples in a row (with a season) whose last [`TREND_BLOCKS`] blocks were mostly above the
    /// same blocks one season earlier. A level shift is above the season before it for one
    /// season only, and a busy weekday after a quiet weekend day likewise; a climb that lasts
    /// longer ([`LEAK_CLIMB_SEASONS`]) is a leak even when it no longer steepens.
    climb_run: usize,
    long: Option<MeanTest>,
    /// The accumulating test for small sustained shifts.
    cusum: Cusum,
    /// Whether the last assessed sample raised the shift test's alarm.
    cusum_alarm: bool,
    /// Recent means of the last three seasons (seven with `weekly`) in arrival order, for the
    /// seasonal comparison.
    mean_hist: Ring,
    /// Past absolute seasonal deviations.
    seasonal: BlockWindow,
    /// Samples still to come after a gap before the recent mean spans no missing step again.
    refill: usize,
    /// Missing steps since the last sample (consecutive `skip`s and non-finite samples add up).
    gap_run: usize,
    /// Block means of the last season plus [`TREND_BLOCKS`] blocks, for the seasonal trend
    /// (empty without a season).
    block_hist: std::collections::VecDeque<f64>,
    /// The first value seen. Every value is kept as its difference from it (in `f32`), so a
    /// series far from zero (a byte count near 10⁹ that moves by thousands) keeps its detail;
    /// every test is blind to a constant shift. Verdicts report the values themselves.
    anchor: Option<f64>,
}

impl Detector {
    /// A detector with no history.
    pub fn new(params: ValidDetectorParams) -> Self {
        let p = params.0;
        Self {
            seen: 0,
            values: BlockWindow::new(p.memory),
            residuals: BlockWindow::new(p.memory),
            raw: Ring::new(p.short_window.max(p.long_window)),
            short: MeanTest::new(p.short_window, p.memory),
            level: None,
            block_sum: 0.0,
            block_len: 0,
            blocks: std::collections::VecDeque::with_capacity(TREND_BLOCKS + 1),
            last: None,
            flat_run: 0,
            longest_flat_run: 0,
            peak: 0.0,
            since_announce: usize::MAX,
            announced: 0.0,
            leak_named: false,
            climb_run: 0,
            cusum: Cusum::new(TREND_BLOCKS * p.trend_block, p.memory, p.shift_allowance),
            cusum_alarm: false,
            long: (p.long_window > 0).then(|| MeanTest::new(p.long_window, p.memory)),
            mean_hist: Ring::new(if p.weekly { WEEK } else { 3 } * p.season),
            seasonal: BlockWindow::new(p.seasonal_memory()),
            refill: 0,
            gap_run: 0,
            block_hist: std::collections::VecDeque::with_capacity(if p.season > 0 {
                ((p.season + p.trend_block / 2) / p.trend_block).max(1) + TREND_BLOCKS + 1
            } else {
                0
            }),
            anchor: None,
            p,
        }
    }

    /// Accounts for `missing` samples that never arrived (a gap in the series), so the seasonal
    /// references stay aligned with the clock: the same phase a day or a week earlier is
    /// `season` or `7 × season` *steps* back, not samples. Each missing step takes the recent
    /// mean of the same phase a day earlier (the last recent mean before a day is kept) into
    /// the seasonal history, and for every `trend_block` of them the last block mean goes into
    /// the seasonal trend's history; nothing else learns from a gap, but every memory (values,
    /// residuals, past means, shift statistics, seasonal deviations) moves on by `missing`
    /// steps, so what is older than `memory` steps leaves it as if the samples had arrived: a
    /// series that loses three samples in ten still remembers four weeks, not forty days.
    /// After a gap of at least half the short window, the seasonal test rests until the window
    /// has refilled. Calls with no sample between them (and non-finite samples) add up to one
    /// gap. The missing steps count as time for the current incident: its peak decays and its
    /// quiet period runs on as if they had arrived (an incident two days old is over, whatever
    /// arrived in between). Without a season, or before the first recent mean, that is all it
    /// does.
    pub fn skip(&mut self, missing: usize) {
        // Time passes for the current incident too: its peak decays and its quiet period runs
        // out by the clock, not by the samples that happened to arrive.
        if missing > 0 {
            self.peak *= self
                .p
                .peak_decay
                .powi(i32::try_from(missing).unwrap_or(i32::MAX));
            self.since_announce = self.since_announce.saturating_add(missing);
            // Every memory spans time: what is older than `memory` steps leaves it whether or
            // not the steps in between brought samples.
            for window in [
                &mut self.values,
                &mut self.residuals,
                &mut self.short.past,
                &mut self.cusum.past,
                &mut self.seasonal,
            ] {
                window.skip(missing);
            }
            if let Some(t) = self.long.as_mut() {
                t.past.skip(missing);
            }
        }
        let run_before = self.gap_run;
        self.gap_run = self.gap_run.saturating_add(missing);
        // The mean windows span steps too: a step missing within a gap shorter than half the
        // short window takes the recent mean in their ring, so the recent mean covers
        // `short_window` steps and stays in phase with the same-phase means it is compared
        // with. A longer gap fills only its first steps: the seasonal test then rests anyway.
        let limit = (self.p.short_window - 1) / 2;
        let fills = self
            .gap_run
            .min(limit)
            .saturating_sub(run_before.min(limit));
        if let Some(fill) = (fills > 0).then(|| self.short.mean(&self.raw)).flatten() {
            for _ in 0..fills {
                self.short.slide(fill, &self.raw);
                if let Some(t) = self.long.as_mut() {
                    t.slide(fill, &self.raw);
                }
                self.raw.push(to_f32(fill));
            }
        }
        if self.p.season == 0 {
            return;
        }
        let Some(last) = self.mean_hist.back(0) else {
            return;
        };
        // A recent mean that spans a gap of half its window or more covers a stretch of time a
        // half longer than the same-phase means it would be compared with: until the window
        // has refilled, the seasonal test rests and keeps the day-earlier means as references.
        // A shorter gap is filled in (above).
        if self.gap_run.saturating_mul(2) >= self.p.short_window {
            self.refill = self.p.short_window;
        }
        for _ in 0..missing.min(self.mean_hist.capacity()) {
            // The same phase a day earlier stands in for the missing step once a day is kept.
            let fill = self.same_phase_earlier().unwrap_or(last);
            self.push_seasonal_mean(fill);
        }
        if let Some(&block) = self.block_hist.back() {
            let limit = self.season_blocks() + TREND_BLOCKS;
            // Whole blocks completed by this gap, counted over the run it extends.
            let tb = self.p.trend_block;
            let blocks = self.gap_run / tb - (self.gap_run - missing) / tb;
            for _ in 0..blocks.min(limit) {
                self.block_hist.push_back(block);
                if self.block_hist.len() > limit {
                    self.block_hist.pop_front();
                }
            }
        }
    }

    /// Keeps a recent mean in the seasonal history.
    fn push_seasonal_mean(&mut self, mean: f32) {
        let kept = self.mean_hist.len();
        self.mean_hist.push(mean);
        if self.p.weekly && kept + 1 == WEEK * self.p.season {
            // From here on the deviation may be the weekly one: a different statistic, so the
            // daily-only deviations kept so far are no measure of its surprise.
            self.seasonal = BlockWindow::new(self.p.seasonal_memory());
        }
    }

    /// The recent mean kept for the step one season before the next one.
    fn same_phase_earlier(&self) -> Option<f32> {
        self.mean_hist.back(self.p.season - 1)
    }

    /// The settings the detector was made with.
    pub fn params(&self) -> &DetectorParams {
        &self.p
    }

    /// Number of finite samples seen so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Estimated bytes this detector holds on the heap once its windows are full (they reserve
    /// their final size on first use and never grow beyond it). The value windows take at most
    /// 65 blocks of 16 bytes each whatever `memory` is; the raw values of the mean tests and
    /// the recent means of three seasons (seven with `weekly`) are `f32`.
    pub fn heap_bytes(&self) -> usize {
        let f64s = std::mem::size_of::<f64>();
        self.values.heap_bytes()
            + self.residuals.heap_bytes()
            + self.raw.heap_bytes()
            + self.short.heap_bytes()
            + self.long.as_ref().map_or(0, MeanTest::heap_bytes)
            + self.mean_hist.heap_bytes()
            + self.seasonal.heap_bytes()
            + self.cusum.heap_bytes()
            + (self.blocks.capacity() + self.block_hist.capacity()) * f64s
    }

    /// Scores one sample, then learns from it.
    ///
    /// A non-finite value scores 0, has no kind and is not learnt from: it is a missing sample
    /// (as [`Self::skip`] of one), so the seasonal phase stays on time.
    ///
    /// # Guarantees
    /// The score is in `[0, 1]` and the call never panics, whatever the value.
    pub fn observe(&mut self, x: f64) -> Verdict {
        if !x.is_finite() {
            // A sample that came without a number is a missing sample: the phase moves on.
            self.skip(1);
            return Verdict::quiet(x);
        }
        // Values are kept as `f32` differences from the anchor: judge the value as it will be
        // remembered.
        let anchor = *self.anchor.get_or_insert(x);
        let y = f64::from(to_f32(x - anchor));
        let verdict = if self.seen >= MIN_SEEN {
            let mut v = self.assess(y);
            let e = &mut v.evidence;
            for value in [
                &mut e.value,
                &mut e.expected,
                &mut e.lower,
                &mut e.upper,
                &mut e.recent_mean,
            ] {
                *value += anchor;
            }
            v
        } else {
            Verdict::quiet(anchor + y)
        };
        self.learn(y);
        verdict
    }

    /// Scores `x`, a value less the anchor (the verdict's values are too).
    fn assess(&mut self, x: f64) -> Verdict {
        let m = self.values.len() as f64;
        let (lo, hi) = (
            self.values.min().unwrap_or(x),
            self.values.max().unwrap_or(x),
        );
        let lower = self.values.quantile(0.01).unwrap_or(x);
        let upper = self.values.quantile(0.99).unwrap_or(x);
        let range = hi - lo;
        // Nothing has varied yet: measure a departure against the value's own size.
        let size = (x + self.anchor.unwrap_or(0.0)).abs();
        let spread = if range > 0.0 { range } else { size.max(1.0) };

        // 1. Quantile band: rank of the value among recent values.
        let p_up = (self.values.count_at_least(x) + 1.0) / (m + 1.0);
        let p_down = (self.values.count_at_most(x) + 1.0) / (m + 1.0);
        let excess = ((x - hi).max(lo - x)).max(0.0) / spread;

        // 2. Forecast residual against the smoothed level.
        let expected = self.level.unwrap_or(x);
        let residual = x - expected;
        let r = residual.abs();
        let mr = self.residuals.len() as f64;
        let p_res = (self.residuals.count_at_least(r) + 1.0) / (mr + 1.0);

        // 3. Change of level: the recent mean (with this value) ranked among past recent means.
        let k = self.p.short_window;
        let recent_mean = self.short.mean_with(x, &self.raw);
        let means = &self.short.past;
        let mm = means.len() as f64;
        let (p_mean_up, p_mean_down) = if means.len() >= k {
            (
                (means.count_at_least(recent_mean) + 1.0) / (mm + 1.0),
                (means.count_at_most(recent_mean) + 1.0) / (mm + 1.0),
            )
        } else {
            (1.0, 1.0)
        };

        // 3b. Seasonal: the recent mean against the same phase of the last three seasons.
        // Right after a gap the recent mean straddles it: no same-phase comparison holds.
        let seasonal_dev = if self.refill > 0 {
            None
        } else {
            self.seasonal_deviation(recent_mean)
        };
        let (s_season, season_up, above_phase) = match seasonal_dev {
            Some(d) if self.seasonal.len() >= self.p.short_window => {
                let ms = self.seasonal.len() as f64;
                let a = d.abs();
                let p = (self.seasonal.count_at_least(a) + 1.0) / (ms + 1.0);
                let top = self.seasonal.max().unwrap_or(0.0);
                let ex = if a > top { (a - top) / spread } else { 0.0 };
                // The seasonal test starts three seasons in, with few past deviations: like the
                // warm-up, a record among them counts for only as much evidence as they carry.
                (
                    self.young(self.seasonal.len()) * (surprise(p, ms) + ex),
                    d > 0.0,
                    d > 0.0 && p <= LEAK_PHASE_TAIL,
                )
            }
            _ => (0.0, true, false),
        };
        let (trend, growing) = self.trend(x);
        self.climb_run = if self.p.season > 0 && trend > 0.5 {
            self.climb_run.saturating_add(1)
        } else {
            0
        };
        // A leak climbs: steadily over the last blocks, and either still steepening (its
        // season-over-season differences grow through its first season) or above the season
        // before it for longer than a level shift can be, and above the same phase of the last
        // days and of the week before by more than is usual (a week that builds up from Monday
        // to Friday climbs for days, but no higher than the week before). A slow leak is past
        // the band only after its first season, when its differences no longer grow.
        let climbing = (trend > 0.9 && growing)
            || (above_phase && self.climb_run as f64 > LEAK_CLIMB_SEASONS * self.p.season as f64);
        let leak_shape = climbing && x > upper;

        // 5. Flatline: identical values in a row while the past varied.
        let flat_run = if self.last == Some(x) {
            self.flat_run + 1
        } else {
            0
        };

        let surprise = |p: f64| surprise(p, m);
        // A new extreme among few values must clear a wider margin (see YOUNG_RECORD_VALUES).
        let full = YOUNG_RECORD_VALUES.min(self.p.memory as f64);
        let young_margin = RECORD_MARGIN * (full / m.max(1.0) - 1.0).max(0.0);
        let s_band = surprise(p_up.min(p_down))
            + if excess > 0.0 {
                (excess - young_margin).max(0.0)
            } else {
                0.0
            };
        let s_mean = surprise(p_mean_up.min(p_mean_down));
        // A flat run a quarter longer than any seen before (and at least one and a half short
        // windows: three hours at 5 minutes) while the values used to vary is a record like a
        // new extreme, and scores as one beyond the alert margin however long the run already
        // is. One short window is too short: collectors that stop write two hours of zeros now
        // and then (docs/anomaly.md).
        let s_flat = if 2 * flat_run >= 3 * k
            && flat_run as f64 > FLAT_RECORD * self.longest_flat_run as f64
            && range > 0.0
        {
            1.0 + (1.0 / (1.0 + flat_run as f64)).max(2.0 * RECORD_MARGIN)
        } else {
            0.0
        };
        let s_long = self
            .long
            .as_ref()
            .map_or(0.0, |t| t.probe(x, spread, &self.raw).0);
        // The residual's rank is evidence only (in `tail_probability`): on the NAB corpus adding
        // it to the score costs more false positives than it finds anomalies (docs/anomaly.md).
        // 6. Small sustained shifts: the accumulated standardised deviation from a slow baseline.
        let (s_cusum, cusum_up) = self.cusum.probe(x, k);
        self.cusum_alarm = s_cusum >= 1.0 + RECORD_MARGIN;
        // Warm-up: a tail probability estimated from m < `warmup` values carries only
        // ln(m + 1) / ln(warmup + 1) of the evidence of one from `warmup` values, so early
        // records count for that much; only a departure far beyond the little seen gets through.
        let evidence = if self.seen >= self.p.warmup {
            1.0
        } else {
            ((self.seen + 1) as f64).ln() / ((self.p.warmup + 1) as f64).ln()
        };
        // The trend counts only in a leak's shape, by how steady the climb is beyond 0.9. A
        // climb that sets a record is a leak's record however little it beats the last one: a
        // steady climb passes its own last value by a hair at each step, so by the range it
        // would never clear the alert margin, however far it has climbed. Like a record flat
        // run, it scores beyond the margin.
        let sets_record = [s_band, s_mean, s_season, s_long, s_cusum]
            .into_iter()
            .fold(0.0, f64::max)
            >= 1.0;
        let s_trend = match (leak_shape, sets_record) {
            (false, _) => 0.0,
            (true, false) => (trend - 0.9).max(0.0),
            (true, true) => (trend - 0.9).max(1.0 + 2.0 * RECORD_MARGIN),
        };
        let combined = evidence
            * [s_band, s_mean, s_season, s_long, s_trend, s_flat, s_cusum]
                .into_iter()
                .fold(0.0, f64::max);
        let tail = p_up.min(p_down).min(p_res).min(p_mean_up.min(p_mean_down));
        let top = combined / evidence;
        let kind = if combined <= 0.0 {
            None
        } else if s_flat > 0.0 && s_flat >= top {
            Some(AnomalyKind::Flatline)
        } else if leak_shape {
            Some(AnomalyKind::Leak)
        } else if s_band >= top {
            // A value outside the band: a surge or a fall. A surge on values whose mean had
            // already left the band before it, and that rises above them by less than the band's
            // width, is a record of a level that moved: a level shift. Far above them it is a
            // burst on the new level.
            let before = match self.short.before(&self.raw) {
                (sum, n) if n > 0 => sum / n as f64,
                _ => f64::NEG_INFINITY,
            };
            Some(if x < expected {
                AnomalyKind::Drop
            } else if before > upper && x - before <= upper - lower {
                AnomalyKind::LevelShift
            } else {
                AnomalyKind::Burst
            })
        } else {
            // The level moved (recent mean, long mean, seasonal comparison or accumulated shift).
            let up = if s_season >= top {
                season_up
            } else if s_cusum >= top {
                cusum_up
            } else {
                recent_mean >= expected
            };
            if up && s_cusum >= top && climbing {
                // An accumulated climb that keeps steepening is a leak before it passes the band.
                Some(AnomalyKind::Leak)
            } else if !up && recent_mean <= lower {
                Some(AnomalyKind::Drop)
            } else {
                Some(AnomalyKind::LevelShift)
            }
        };
        // Event suppression in surprise space, where values are not saturated: a sample is
        // announced in full only when it beats the (decaying) peak of the current incident.
        // Within `quiet_period` samples of the incident's last record the bar does not decay
        // below the announced surprise: only a larger departure is a new incident.
        let quiet = self.since_announce < self.p.quiet_period;
        let bar = if quiet {
            self.peak.max(self.announced)
        } else {
            self.peak
        };
        let record = combined >= 1.0;
        let is_leak = kind == Some(AnomalyKind::Leak);
        // The first sample that names an incident a leak is announced while it is still a
        // record beyond the margin, within the incident's quiet period or under the decaying
        // peak of an earlier, larger one alike: the runaway guard (remediation) caps a leak's
        // allocation from that verdict on.
        let names_leak = is_leak && !self.leak_named && combined >= 1.0 + RECORD_MARGIN;
        let announce = combined > bar || names_leak;
        self.since_announce = self.since_announce.saturating_add(1);
        if announce {
            self.leak_named = is_leak || (quiet && self.leak_named);
            self.since_announce = 0;
            // Only a larger departure raises the bar; a leak named inside the incident keeps it.
            if combined > bar {
                self.announced = combined;
            }
        } else if quiet && record {
            // Still beyond everything remembered (a leak that goes on climbing, a shift that
            // keeps accumulating): the same incident, so its quiet period starts again.
            self.since_announce = 0;
        }
        let announced = if announce {
            combined
        } else {
            combined * self.p.damping
        };
        self.peak = (self.peak * self.p.peak_decay).max(combined);
        let raw = squash(combined);
        let score = squash(announced);

        Verdict {
            score,
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

    /// Weight of the seasonal test's surprise when it rests on `m` past deviations:
    /// `ln(m + 1) / ln(w + 1)` below `w`, 1 from it on (the rule the warm-up applies to the
    /// whole detector), where `w` is the warm-up, or the deviations it remembers when that is
    /// shorter: a test that holds all the values it ever will carries its full weight.
    fn young(&self, m: usize) -> f64 {
        let w = self.p.warmup.min(self.p.seasonal_memory());
        if m >= w {
            1.0
        } else {
            ((m + 1) as f64).ln() / ((w + 1) as f64).ln()
        }
    }

    /// Recent mean minus the median of the same phase over the last three seasons, or minus
    /// the same phase one week earlier when that is closer (with `weekly`, once a week is kept).
    fn seasonal_deviation(&self, mean: f64) -> Option<f64> {
        let sn = self.p.season;
        if sn == 0 || self.mean_hist.len() < 3 * sn {
            return None;
        }
        let at = |k: usize| self.mean_hist.back(k).map_or(0.0, f64::from);
        let mut past = [at(sn - 1), at(2 * sn - 1), at(3 * sn - 1)];
        past.sort_by(f64::total_cmp);
        let daily = mean - past[1];
        if self.p.weekly && self.mean_hist.len() >= WEEK * sn {
            let weekly = mean - at(WEEK * sn - 1);
            if weekly.abs() < daily.abs() {
                return Some(weekly);
            }
        }
        Some(daily)
    }

    /// The climb statistic in `[-1, 1]`, and whether the climb is still steepening against the
    /// past season (always true without a season).
    ///
    /// Without a season: Mann–Kendall over the last 12 block means. With one: a seasonal sign
    /// test (after Hirsch's seasonal Kendall test): each of the last 12 block means (the current
    /// partial one included) against the block one season earlier, `(#higher − #lower) / 12`.
    /// A daily ramp climbs within each day but is not higher than the day before, so it scores
    /// about 0; a leak lifts every block above the one a day earlier and scores 1 for as long as
    /// it goes on. A level shift does too, for one season: what tells a leak from it is that the
    /// season-over-season differences themselves keep growing (their Mann–Kendall statistic is
    /// above 0.5), while after a step they are flat.
    fn trend(&self, x: f64) -> (f64, bool) {
        if self.p.season == 0 {
            return (
                mann_kendall(&self.blocks, self.block_sum + x, self.block_len + 1),
                true,
            );
        }
        let sb = self.season_blocks();
        let h = &self.block_hist;
        if h.len() < sb + TREND_BLOCKS {
            return (0.0, false);
        }
        // With a partial block, it is compared with the block one season before it, and the
        // oldest of the 12 finished ones drops out.
        let partial =
            (self.block_len > 0).then(|| (self.block_sum + x) / (self.block_len + 1) as f64);
        let n = h.len();
        let finished = if partial.is_some() {
            TREND_BLOCKS - 1
        } else {
            TREND_BLOCKS
        };
        let mut diffs: Vec<f64> = (n - finished..n).map(|k| h[k] - h[k - sb]).collect();
        if let Some(p) = partial {
            diffs.push(p - h[n - sb]);
        }
        let signs: f64 = diffs
            .iter()
            .map(|d| {
                if *d > 0.0 {
                    1.0
                } else if *d < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            })
            .sum();
        (signs / diffs.len() as f64, kendall(&diffs) > 0.5)
    }

    /// Blocks per season (at least 1).
    fn season_blocks(&self) -> usize {
        ((self.p.season + self.p.trend_block / 2) / self.p.trend_block).max(1)
    }

    /// Learns from `x`, a value less the anchor.
    fn learn(&mut self, x: f64) {
        self.seen += 1;
        self.gap_run = 0;
        // The recent mean including `x`, where the shift test restarts after an alarm.
        let level = self.short.mean_with(x, &self.raw);
        let expected = self.level.unwrap_or(x);
        if self.level.is_some() {
            self.residuals.push((x - expected).abs());
        }
        self.level = Some(expected + self.p.level_alpha * (x - expected));
        self.values.push(x);
        if let Some(mean) = self.short.learn(x, &self.raw) {
            if self.p.season > 0 {
                let mean = if self.refill > 0 {
                    // A mean across a gap is no reference for the days to come.
                    self.refill -= 1;
                    self.same_phase_earlier().unwrap_or(to_f32(mean))
                } else {
                    if let Some(d) = self.seasonal_deviation(mean) {
                        self.seasonal.push(d.abs());
                    }
                    to_f32(mean)
                };
                self.push_seasonal_mean(mean);
            }
        }
        if let Some(t) = self.long.as_mut() {
            t.learn(x, &self.raw);
        }
        self.cusum
            .learn(x, std::mem::take(&mut self.cusum_alarm), level);
        self.raw.push(to_f32(x));
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
            if self.p.season > 0 {
                self.block_hist
                    .push_back(self.blocks.back().copied().unwrap_or(0.0));
                if self.block_hist.len() > self.season_blocks() + TREND_BLOCKS {
                    self.block_hist.pop_front();
                }
            }
        }
        if self.last == Some(x) {
            self.flat_run += 1;
        } else {
            // Only finished runs count: the current one is what the flatline test measures.
            self.longest_flat_run = self.longest_flat_run.max(self.flat_run);
            self.flat_run = 0;
        }
        self.last = Some(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic uniform noise in `[0, 1)`, so tests need no randomness source.
    type Noise = crate::noise::XorShift;

    fn detector() -> Detector {
        Detector::new(DetectorParams::default().check().unwrap())
    }

    /// Feeds `baseline` samples of uniform noise in `[40, 60]`.
    fn warmed(d: &mut Detector, noise: &mut Noise, baseline: usize) {
        for _ in 0..baseline {
            d.observe(40.0 + 20.0 * noise.uniform());
        }
    }

    fn first_alert(vs: &[Verdict]) -> Option<&Verdict> {
        vs.iter().find(|v| v.score >= ALERT_THRESHOLD)
    }

    /// A byte count near 10⁹ that moves by tens: kept as `f32` values, its detail would be
    /// rounded to 64; kept as differences from the first value, it is scored as the same
    /// series near zero is.
    #[test]
    fn a_series_far_from_zero_should_score_as_the_same_series_near_zero() {
        let mut noise = Noise::new(5);
        let values: Vec<f64> = (0..3000)
            .map(|i| {
                let burst = if (2500..2510).contains(&i) { 60.0 } else { 0.0 };
                40.0 + 20.0 * noise.uniform() + burst
            })
            .collect();
        let (mut near, mut far) = (detector(), detector());
        let offset = 1e9;
        let mut alerts = 0;
        for (i, x) in values.iter().enumerate() {
            let (a, b) = (near.observe(*x), far.observe(x + offset));
            assert_eq!(
                a.score >= ALERT_THRESHOLD,
                b.score >= ALERT_THRESHOLD,
                "{a:?} vs {b:?}"
            );
            assert!((a.score - b.score).abs() < 1e-3, "{a:?} vs {b:?}");
            assert!((b.evidence.value - offset - x).abs() < 1e-3);
            if i >= MIN_SEEN {
                // The band is reported in the series' own values.
                assert!((b.evidence.upper - offset - a.evidence.upper).abs() < 1e-3);
            }
            alerts += usize::from(a.score >= ALERT_THRESHOLD);
        }
        assert!(alerts > 0, "the burst should alert");
    }

    #[test]
    fn windows_should_keep_their_time_at_a_coarser_step() {
        let d = DetectorParams::default();
        for step in [-1, 0, 270, 299, 300] {
            assert_eq!(d.clone().at_step(step), d, "step {step} s");
        }
        let minute = d.clone().at_step(60);
        assert_eq!(
            (minute.short_window, minute.long_window, minute.trend_block),
            (120, 360, 120)
        );
        assert_eq!((minute.quiet_period, minute.warmup), (360, 3000));
        assert_eq!((minute.memory, minute.season), (5 * d.memory, d.season));
        assert!((minute.peak_decay - 0.995f64.powf(0.2)).abs() < 1e-12);
        let hourly = d.clone().at_step(3600);
        assert_eq!(
            (hourly.short_window, hourly.long_window, hourly.trend_block),
            (2, 6, 2)
        );
        assert_eq!((hourly.quiet_period, hourly.warmup), (6, 50));
        assert!((hourly.peak_decay - 0.995f64.powi(12)).abs() < 1e-12);
        assert_eq!((hourly.memory, hourly.season), (d.memory, d.season));
        let off = DetectorParams {
            long_window: 0,
            quiet_period: 0,
            ..d.clone()
        }
        .at_step(86_400);
        assert_eq!((off.long_window, off.quiet_period), (0, 0));
        assert_eq!((off.short_window, off.trend_block, off.warmup), (2, 1, 2));
        for step in (1..=300).step_by(7).chain((300..=86_400).step_by(450)) {
            assert!(d.clone().at_step(step).check().is_ok(), "step {step} s");
        }
    }

    /// One-minute samples of a daily wave with a weekly batch (an hour far above the daily
    /// peak). Fitted to the step, the detector judges the batch against four weeks and does not
    /// alert on it from the third week on; with the memory of 8064 samples meant for five
    /// minutes (5.6 days of one-minute samples) every batch is a record again.
    #[test]
    fn a_weekly_batch_at_one_minute_should_not_alert_every_week() {
        let weeks_alerted = |fitted: bool| {
            let mut noise = Noise::new(41);
            let p = DetectorParams {
                season: 1440,
                ..DetectorParams::default()
            };
            let p = if fitted { p.at_step(60) } else { p };
            let mut d = Detector::new(p.check().unwrap());
            let mut alerted = [false; 5];
            for i in 0..5 * 7 * 1440 {
                let (day, minute) = (i / 1440, i % 1440);
                let wave = 30.0 * (std::f64::consts::TAU * minute as f64 / 1440.0).sin();
                let batch = day % 7 == 6 && (600..660).contains(&minute);
                let v = d.observe(
                    100.0 + wave + if batch { 80.0 } else { 0.0 } + 10.0 * noise.uniform(),
                );
                if batch && v.score >= ALERT_THRESHOLD {
                    alerted[day / 7] = true;
                }
            }
            alerted
        };
        let fitted = weeks_alerted(true);
        assert!(fitted[2..].iter().all(|a| !a), "fitted: {fitted:?}");
        let counted = weeks_alerted(false);
        assert!(
            counted[2..].iter().all(|a| *a),
            "counted in 5-minute samples: {counted:?}"
        );
    }

    /// Hourly samples of a daily wave; a level shift on the ninth day. With its windows fitted
    /// to the hour the detector finds it within hours; with windows counted in 5-minute samples
    /// (a day-long mean, a 25-day warm-up) it finds it late or not at all.
    #[test]
    fn an_hourly_level_shift_should_be_found_within_hours() {
        let delay = |hourly: bool| -> Vec<Option<usize>> {
            (1..=10)
                .map(|seed| {
                    let mut noise = Noise::new(seed);
                    let p = DetectorParams {
                        season: 24,
                        ..DetectorParams::default()
                    };
                    let p = if hourly { p.at_step(3600) } else { p };
                    let mut d = Detector::new(p.check().unwrap());
                    let onset = 8 * 24 + 10;
                    (0..12 * 24)
                        .map(|i| {
                            let wave =
                                30.0 * (std::f64::consts::TAU * (i % 24) as f64 / 24.0).sin();
                            let shift = if i >= onset { 25.0 } else { 0.0 };
                            (i, d.observe(100.0 + wave + shift + 10.0 * noise.uniform()))
                        })
                        .find(|(i, v)| *i >= onset && v.score >= ALERT_THRESHOLD)
                        .map(|(i, _)| i - onset)
                })
                .collect()
        };
        let fitted = delay(true);
        let counted = delay(false);
        assert!(
            fitted.iter().all(|d| d.is_some_and(|d| d <= 4)),
            "{fitted:?}"
        );
        assert!(
            counted.iter().filter(|d| d.is_some_and(|d| d <= 4)).count() <= 2,
            "{counted:?}"
        );
    }

    /// Heavy-tailed counts on a daily rhythm (tweet volumes, request counts): `days` days at a
    /// 5-minute step, Pareto noise (tail index 3) times a daily wave.
    fn heavy_tailed_days(seed: u64, days: usize) -> Vec<f64> {
        let mut n = Noise::new(seed);
        (0..days * 288)
            .map(|i| {
                let phase = (i % 288) as f64 / 288.0;
                let wave = 100.0 + 50.0 * (std::f64::consts::TAU * phase).sin();
                wave / (1.0 - n.uniform()).powf(1.0 / 3.0)
            })
            .collect()
    }

    #[test]
    fn a_record_should_be_judged_against_four_weeks_of_time_when_samples_go_missing() {
        // A spike, then 31 days in which every third 5-minute sample is lost: about 6000
        // samples, fewer than the 8064 that four weeks hold. A smaller spike then is beyond
        // everything of the last four weeks, and alerts; were the memory counted in samples,
        // the first spike would still be in it.
        for seed in 1..=5 {
            let mut noise = Noise::new(seed);
            let mut d = detector();
            warmed(&mut d, &mut noise, 700);
            d.observe(200.0);
            let days = 31 * 288;
            for i in 0..days {
                if i % 3 == 0 {
                    d.skip(1);
                } else {
                    d.observe(40.0 + 20.0 * noise.uniform());
                }
            }
            assert!(d.seen() < 700 + DEFAULT_MEMORY, "{}", d.seen());
            let v = d.observe(150.0);
            assert!(v.score >= ALERT_THRESHOLD, "seed {seed}: {}", v.explain());
            assert_eq!(v.kind, Some(AnomalyKind::Burst));
        }
    }

    #[test]
    fn the_recent_mean_should_span_steps_when_every_other_sample_is_missing() {
        // A level of 0, then 100 from one step on, with every other step's sample missing. The
        // recent mean covers `short_window` (24) steps: 23 steps after the jump the old level
        // has left its slots and comes back only through the steps filled in while the new
        // level arrived. Counted in samples, half the window would still hold the old level.
        let mut d = detector();
        for _ in 0..300 {
            d.observe(0.0);
        }
        let mut last = None;
        for step in 0..24 {
            if step % 2 == 0 {
                last = Some(d.observe(100.0));
            } else {
                d.skip(1);
            }
        }
        let mean = last.unwrap().evidence.recent_mean;
        assert!(mean > 60.0 && mean < 100.0, "recent mean {mean}");
    }

    /// With three weeks of memory the peaks of a month ago roll out of the window and ordinary
    /// values of a stationary series set records again (the false positives of NAB's eight-week
    /// tweet series, docs/anomaly.md); the default remembers four weeks. Twenty seeds of eight
    /// weeks, alerts counted in the second month: measured 51 with 6000 values, 34 with 8064.
    #[test]
    fn records_should_be_judged_against_four_weeks_not_three() {
        let alerts_after_a_month = |memory: usize| -> usize {
            (1..=20)
                .map(|seed| {
                    let p = DetectorParams {
                        memory,
                        season: 288,
                        ..DetectorParams::default()
                    };
                    let mut d = Detector::new(p.check().unwrap());
                    heavy_tailed_days(seed, 56)
                        .into_iter()
                        .enumerate()
                        .map(|(i, x)| (i, d.observe(x)))
                        .filter(|(i, v)| *i >= 28 * 288 && v.score >= ALERT_THRESHOLD)
                        .count()
                })
                .sum()
        };
        let three_weeks = alerts_after_a_month(6000);
        let four_weeks = alerts_after_a_month(DEFAULT_MEMORY);
        assert!(
            four_weeks < three_weeks,
            "{four_weeks} alerts with four weeks of memory, {three_weeks} with three"
        );
    }

    #[test]
    fn steady_noise_should_rarely_alert() {
        let mut d = detector();
        let mut n = Noise::new(7);
        warmed(&mut d, &mut n, 500);
        let alerts = (0..3000)
            .map(|_| d.observe(40.0 + 20.0 * n.uniform()))
            .filter(|v| v.score >= ALERT_THRESHOLD)
            .count();
        // Records of uniform noise grow like ln(n): a handful at most.
        assert!(alerts <= 6, "{alerts} alerts on plain noise");
    }

    #[test]
    fn burst_should_alert_at_once_as_a_burst() {
        let mut d = detector();
        let mut n = Noise::new(11);
        warmed(&mut d, &mut n, 2000);
        let v = d.observe(200.0);
        // Seven ranges beyond the past: surprise 1 + 7, score 8/9.
        assert!(v.score >= 0.85, "{v:?}");
        assert_eq!(v.kind, Some(AnomalyKind::Burst));
        assert!(v.evidence.excess > 5.0, "{v:?}");
        assert!(v.evidence.upper < 60.0 && v.evidence.lower > 40.0 - 1e-9);
    }

    /// A record on values whose mean had already left the band is a level that moved, not a
    /// surge: the same record value is a burst on the old level and a level shift on the new.
    #[test]
    fn a_record_after_the_level_moved_should_be_a_level_shift() {
        let record = |shifted: bool, value: f64| {
            let mut d = detector();
            let mut n = Noise::new(19);
            warmed(&mut d, &mut n, 2000);
            let base = if shifted { 66.0 } else { 50.0 };
            for _ in 0..30 {
                d.observe(base + 4.0 * n.uniform());
            }
            d.observe(value)
        };
        let on_old = record(false, 85.0);
        assert_eq!(on_old.kind, Some(AnomalyKind::Burst), "{on_old:?}");
        let on_new = record(true, 85.0);
        assert!(on_new.evidence.excess > 0.5, "a record: {on_new:?}");
        assert_eq!(on_new.kind, Some(AnomalyKind::LevelShift), "{on_new:?}");
        let why = on_new.explain();
        assert!(
            why.starts_with("level_shift: recent mean")
                && why.contains("ranges beyond everything seen"),
            "{why}"
        );
        // Far above the new level (more than the band's width) it is a burst again.
        let far = record(true, 200.0);
        assert_eq!(far.kind, Some(AnomalyKind::Burst), "{far:?}");
    }

    #[test]
    fn fall_to_zero_should_alert_as_a_drop() {
        let mut d = detector();
        let mut n = Noise::new(13);
        warmed(&mut d, &mut n, 2000);
        let v = d.observe(0.0);
        assert!(v.score >= ALERT_THRESHOLD, "{v:?}");
        assert_eq!(v.kind, Some(AnomalyKind::Drop));
    }

    /// 2000 samples of noise in `[40, 60]`, then `len` samples of it climbing by 0.05 a sample.
    fn steady_climb(seed: u64, len: usize) -> Vec<Verdict> {
        let mut d = detector();
        let mut n = Noise::new(seed);
        warmed(&mut d, &mut n, 2000);
        (0..len)
            .map(|i| d.observe(40.0 + 20.0 * n.uniform() + 0.05 * i as f64))
            .collect()
    }

    #[test]
    fn steady_climb_should_alert_as_a_leak() {
        let vs = steady_climb(17, 800);
        let leak = vs
            .iter()
            .find(|v| v.score >= ALERT_THRESHOLD && v.kind == Some(AnomalyKind::Leak));
        assert!(leak.is_some(), "no leak verdict in a steady climb");
        assert!(leak.unwrap().evidence.trend > 0.9);
    }

    /// A leak that goes on climbing keeps setting records. It is one incident:
    /// it should be announced at its start, not again each time the quiet period runs out (NAB
    /// and an operator alike count the later alarms as false).
    #[test]
    fn a_leak_that_goes_on_should_be_announced_once() {
        let vs = steady_climb(29, 3000);
        let alerts: Vec<usize> = (0..vs.len())
            .filter(|&i| vs[i].score >= ALERT_THRESHOLD)
            .collect();
        assert!(!alerts.is_empty(), "the climb was never announced");
        let records = vs.iter().filter(|v| v.evidence.excess > 0.0).count();
        assert!(
            records > 100,
            "only {records} records: not a climb that goes on"
        );
        // Measured: 4 alerts in the first 150 samples (three larger departures, then the one
        // that names the leak); 37 spread over the whole climb when only an announcement
        // restarted the quiet period.
        assert!(
            alerts.len() <= 4,
            "{} alerts at samples {alerts:?}",
            alerts.len()
        );
        assert!(
            alerts.iter().all(|&i| i < 500),
            "alerts at samples {alerts:?}"
        );
        assert!(
            alerts
                .iter()
                .any(|&i| vs[i].kind == Some(AnomalyKind::Leak)),
            "no alert names the leak: {:?}",
            alerts.iter().map(|&i| vs[i].kind).collect::<Vec<_>>()
        );
    }

    /// Disk writes that stop for up to 200 samples at a time (every third pause that long):
    /// a pause of 300 is a record run. It alerts once it is a quarter longer than the longest
    /// before, however long that was; the later pauses up to 200 never do.
    #[test]
    fn a_pause_a_quarter_longer_than_any_before_should_alert() {
        let mut d = detector();
        let mut n = Noise::new(23);
        let mut ordinary = 0;
        for round in 0..30 {
            for _ in 0..60 {
                d.observe(1000.0 + 500.0 * n.uniform());
            }
            let pause = if round % 3 == 0 { 200 } else { 60 + round };
            for _ in 0..pause {
                let alert = d.observe(0.0).score >= ALERT_THRESHOLD;
                // The first pause is a drop never seen before.
                ordinary += usize::from(alert && round > 0);
            }
        }
        assert_eq!(ordinary, 0, "pauses no longer than before alerted");
        let vs: Vec<Verdict> = (0..300).map(|_| d.observe(0.0)).collect();
        let v = first_alert(&vs).expect("a record pause should alert");
        assert_eq!(v.kind, Some(AnomalyKind::Flatline));
        // 200 identical values are 199 repeats; the first run over 1.25 × 199.
        assert_eq!(v.evidence.flat_run, 249, "{}", v.explain());
    }

    #[test]
    fn stuck_value_should_alert_as_a_flatline() {
        let mut d = detector();
        let mut n = Noise::new(19);
        warmed(&mut d, &mut n, 2000);
        let vs: Vec<Verdict> = (0..200).map(|_| d.observe(50.0)).collect();
        let v = first_alert(&vs).expect("a flat run should alert");
        assert_eq!(v.kind, Some(AnomalyKind::Flatline));
        // Within three hours of 5-minute samples, not before one and a half short windows.
        assert!(
            (36..40).contains(&v.evidence.flat_run),
            "alerted after {} identical samples",
            v.evidence.flat_run
        );
    }

    #[test]
    fn shift_inside_the_band_should_alert_as_a_level_shift() {
        let mut d = detector();
        let mut n = Noise::new(23);
        warmed(&mut d, &mut n, 2000);
        // Every value stays inside the past range; only their mean moves.
        let vs: Vec<Verdict> = (0..200)
            .map(|_| d.observe(54.0 + 4.0 * n.uniform()))
            .collect();
        let v = first_alert(&vs).expect("a level shift should alert");
        assert_eq!(v.kind, Some(AnomalyKind::LevelShift));
        assert!(v.evidence.excess == 0.0);
    }

    #[test]
    fn missing_daily_peak_should_alert_with_a_season() {
        let season = 48;
        let params = DetectorParams {
            season,
            ..DetectorParams::default()
        };
        let mut d = Detector::new(params.check().unwrap());
        let mut n = Noise::new(29);
        // A daily square wave: 0..10 at night, 90..100 for a quarter of the day.
        let day = |i: usize, n: &mut Noise| {
            let high = (i % season) >= season / 2 && (i % season) < season / 2 + season / 4;
            if high { 90.0 } else { 0.0 }
        } + 10.0 * n.uniform();
        for i in 0..season * 30 {
            d.observe(day(i, &mut n));
        }
        let start = season * 30;
        let mut vs = Vec::new();
        for i in start..start + season {
            vs.push(d.observe(10.0 * n.uniform() + 0.0 * day(i, &mut Noise::new(1)).min(0.0)));
        }
        let v = first_alert(&vs).expect("a day without its peak should alert");
        assert!(
            matches!(v.kind, Some(AnomalyKind::LevelShift | AnomalyKind::Drop)),
            "{v:?}"
        );
    }

    fn seasonal_detector(season: usize) -> Detector {
        seasonal_detector_with_memory(season, DetectorParams::default().memory)
    }

    fn seasonal_detector_with_memory(season: usize, memory: usize) -> Detector {
        Detector::new(
            DetectorParams {
                season,
                memory,
                ..DetectorParams::default()
            }
            .check()
            .unwrap(),
        )
    }

    /// Step `i` of a daily sine wave (100 ± 60, noise up to 4) whose twelfth day (day 11) has
    /// no peak.
    fn wave_without_the_twelfth_days_peak(i: usize, season: usize, n: &mut Noise) -> f64 {
        let phase = (i % season) as f64 / season as f64 * std::f64::consts::TAU;
        let wave = if i / season == 11 {
            phase.sin().min(0.0)
        } else {
            phase.sin()
        };
        100.0 + 60.0 * wave + 4.0 * n.uniform()
    }

    /// Counts an alert on `day` of [`wave_without_the_twelfth_days_peak`]: on the peakless day
    /// it is a hit, from the fourth day on otherwise an alert on an ordinary day.
    fn tally_peakless_day(score: f64, day: usize, hit: &mut bool, ordinary: &mut usize) {
        if score >= ALERT_THRESHOLD {
            if day == 11 {
                *hit = true;
            } else if day >= 3 {
                *ordinary += 1;
            }
        }
    }

    /// A daily sawtooth: the value climbs from 10 to 90 through each day, then falls back. Within
    /// a day it is as steady a climb as a leak, but it is the pattern.
    #[test]
    fn a_daily_ramp_should_never_be_called_a_leak() {
        for seed in [41, 43, 47] {
            let season = 288; // one day of 5-minute samples
            let mut d = seasonal_detector(season);
            let mut n = Noise::new(seed);
            let mut leaks = 0;
            for i in 0..season * 21 {
                let phase = (i % season) as f64 / season as f64;
                let v = d.observe(10.0 + 80.0 * phase + 4.0 * n.uniform());
                if v.kind == Some(AnomalyKind::Leak) {
                    leaks += 1;
                }
            }
            assert_eq!(leaks, 0, "seed {seed}: a daily ramp was called a leak");
        }
    }

    /// Fourteen days of a daily sine (50 ± 20, noise up to 4) at 5-minute samples, then `days`
    /// more with a leak of `slope` a day on top: the verdicts of those days.
    fn leak_on_a_daily_pattern(seed: u64, slope: f64, days: usize) -> Vec<Verdict> {
        let season = 288;
        let mut d = seasonal_detector(season);
        let mut n = Noise::new(seed);
        let day = |i: usize, n: &mut Noise| {
            let phase = (i % season) as f64 / season as f64;
            50.0 + 20.0 * (phase * std::f64::consts::TAU).sin() + 4.0 * n.uniform()
        };
        for i in 0..season * 14 {
            d.observe(day(i, &mut n));
        }
        let start = season * 14;
        (start..start + season * days)
            .map(|i| d.observe(day(i, &mut n) + slope * (i - start) as f64 / season as f64))
            .collect()
    }

    /// The same kind of background with a real leak on top: the level climbs day after day.
    #[test]
    fn a_leak_on_a_daily_pattern_should_be_called_a_leak() {
        // 20 % of the daily swing per day.
        let vs = leak_on_a_daily_pattern(53, 8.0, 3);
        let leak = vs
            .iter()
            .find(|v| v.score >= ALERT_THRESHOLD && v.kind == Some(AnomalyKind::Leak))
            .expect("no leak verdict on a climbing daily pattern");
        assert!(leak.evidence.trend > 0.9, "{leak:?}");
        assert!(leak.evidence.value > leak.evidence.upper, "{leak:?}");
        let text = leak.explain();
        assert!(text.starts_with("leak: value "), "{text}");
        assert!(text.contains(&num(leak.evidence.value)), "{text}");
        assert!(text.contains(&num(leak.evidence.upper)), "{text}");
        assert!(text.contains("trend"), "{text}");
    }

    /// A leak too slow to leave the band in its first season (a twentieth of the daily swing a
    /// day): by the time it is past the band its season-over-season differences no longer
    /// grow, since every block is now compared with a block that already climbed. It must still
    /// be named, or the runaway guard never caps it.
    #[test]
    fn a_slow_leak_should_be_named_a_leak_once_it_has_climbed_for_longer_than_a_shift_can() {
        let season = 288;
        for seed in [53, 59, 61] {
            let vs = leak_on_a_daily_pattern(seed, 1.0, 5);
            let leak = vs
                .iter()
                .position(|v| v.score >= ALERT_THRESHOLD && v.kind == Some(AnomalyKind::Leak));
            let Some(at) = leak else {
                panic!("seed {seed}: a slow leak was never named a leak in five days");
            };
            // Not before it has climbed for longer than a level shift is above the day before.
            assert!(
                at as f64 > LEAK_CLIMB_SEASONS * season as f64,
                "seed {seed}: {at}"
            );
            assert!(
                vs[at].evidence.value > vs[at].evidence.upper,
                "{:?}",
                vs[at]
            );
        }
    }

    /// A leak that passes a spike of a few days before only when the spike's incident is still
    /// decaying (the spike was 250 daily swings high), and then beats its own last value by a
    /// quarter of a percent of the range at each step. It is announced as a leak all the same,
    /// or the runaway guard never caps it.
    #[test]
    fn a_leak_past_an_earlier_huge_spike_should_still_be_announced_as_a_leak() {
        let season = 288;
        for seed in [53, 59, 61] {
            let mut d = seasonal_detector(season);
            let mut n = Noise::new(seed);
            let day = |i: usize, n: &mut Noise| {
                let phase = (i % season) as f64 / season as f64;
                10.0 + 2.0 * (phase * std::f64::consts::TAU).sin() + n.uniform()
            };
            let start = season * 14;
            for i in 0..start {
                let spike = if i == start - season { 1000.0 } else { 0.0 };
                d.observe(day(i, &mut n) + spike);
            }
            let vs: Vec<Verdict> = (start..start + season * 3)
                .map(|i| d.observe(day(i, &mut n) + 2.5 * (i - start) as f64))
                .collect();
            let leak = vs
                .iter()
                .find(|v| v.score >= ALERT_THRESHOLD && v.kind == Some(AnomalyKind::Leak));
            assert!(
                leak.is_some(),
                "seed {seed}: a leak past an earlier spike was never announced as a leak"
            );
        }
    }

    /// A climb on a daily pattern: its first record that the trend test calls a leak is
    /// announced as one, however little it beats the last value, so the runaway guard caps the
    /// leak from its first leak verdict that is a record.
    #[test]
    fn a_leaks_first_record_should_be_announced_as_a_leak() {
        for slope in [2.0, 4.0, 8.0] {
            for seed in [53, 59, 61] {
                let first = leak_on_a_daily_pattern(seed, slope, 5)
                    .into_iter()
                    .find(|v| v.kind == Some(AnomalyKind::Leak) && v.evidence.raw_score >= 0.5)
                    .expect("no leak record");
                assert!(
                    first.score >= ALERT_THRESHOLD,
                    "slope {slope}, seed {seed}: {first:?}"
                );
            }
        }
    }

    /// A working week that builds up: each weekday busier than the one before, the weekend
    /// quiet. From Monday to Friday every block is above the same block a day earlier, for
    /// days, but the week is no higher than the week before: from the second week on that is
    /// the pattern, not a leak.
    #[test]
    fn a_week_that_builds_up_should_not_be_called_a_leak_after_its_first_week() {
        let season = 288;
        for step in [2.0, 5.0, 10.0] {
            for seed in [53, 59, 61] {
                let mut d = seasonal_detector(season);
                let mut n = Noise::new(seed);
                let (mut alerts, mut verdicts) = (0, 0);
                for i in 0..season * 7 * 8 {
                    let weekday = (i / season) % 7;
                    let phase = (i % season) as f64 / season as f64;
                    let week = if weekday < 5 {
                        step * weekday as f64
                    } else {
                        -10.0
                    };
                    let x = 50.0
                        + week
                        + 20.0 * (phase * std::f64::consts::TAU).sin()
                        + 4.0 * n.uniform();
                    let v = d.observe(x);
                    if i >= season * 7 && v.kind == Some(AnomalyKind::Leak) {
                        verdicts += 1;
                        if v.score >= ALERT_THRESHOLD {
                            alerts += 1;
                        }
                    }
                }
                assert_eq!(alerts, 0, "step {step}, seed {seed}: leak alerts");
                // Below the threshold too, at most one sample in a hundred is called a leak.
                assert!(
                    verdicts * 100 <= season * 7 * 7,
                    "step {step}, seed {seed}: {verdicts} leak verdicts"
                );
            }
        }
    }

    #[test]
    fn a_leak_inside_the_band_should_not_be_explained_as_above_it() {
        let v = Verdict {
            score: 0.6,
            kind: Some(AnomalyKind::Leak),
            evidence: Evidence {
                value: 55.0,
                lower: 40.0,
                upper: 60.0,
                trend: 1.0,
                recent_mean: 54.0,
                ..Evidence::default()
            },
        };
        let text = v.explain();
        assert!(
            text.starts_with("leak: value 55.00 within the band"),
            "{text}"
        );
        let above = Verdict {
            evidence: Evidence {
                value: 65.0,
                ..v.evidence
            },
            ..v
        };
        let text = above.explain();
        assert!(
            text.starts_with("leak: value 65.00 above the band"),
            "{text}"
        );
    }

    /// A detector stored and read back (as the controller does across a restart) carries on
    /// exactly as the one that never stopped: the same verdict at every later step.
    #[test]
    fn a_restored_detector_should_carry_on_as_if_it_had_never_stopped() {
        let season = 288;
        let mut d = seasonal_detector(season);
        let mut n = Noise::new(71);
        let x = |i: usize, n: &mut Noise| {
            let phase = (i % season) as f64 / season as f64;
            let spike = if i == 3000 || i == 4100 { 90.0 } else { 0.0 };
            50.0 + 20.0 * (phase * std::f64::consts::TAU).sin() + 4.0 * n.uniform() + spike
        };
        for i in 0..3500 {
            if i % 97 == 0 {
                d.skip(3);
            } else {
                d.observe(x(i, &mut n));
            }
        }
        let stored = serde_json::to_string(&d).unwrap();
        let mut back: Detector = serde_json::from_str(&stored).unwrap();
        // Every number reads back to the same bits (serde_json's `float_roundtrip`).
        assert_eq!(serde_json::to_string(&back).unwrap(), stored);
        assert_eq!(back.params(), d.params());
        assert_eq!(back.seen(), d.seen());
        let mut alerts = 0;
        for i in 3500..6000 {
            let v = x(i, &mut n);
            let (a, b) = (d.observe(v), back.observe(v));
            assert_eq!(a, b, "step {i}");
            alerts += usize::from(a.score >= ALERT_THRESHOLD);
        }
        assert!(alerts > 0, "the spike after the restore was not alerted");
    }

    #[test]
    fn explanations_should_name_the_numbers() {
        let mut d = detector();
        let mut n = Noise::new(59);
        warmed(&mut d, &mut n, 2000);
        let v = d.observe(200.0);
        let text = v.explain();
        assert!(
            text.starts_with("burst: value 200.0 above the band ["),
            "{text}"
        );
        assert!(text.contains(&num(v.evidence.lower)), "{text}");
        assert!(
            text.contains(&num(v.evidence.excess).chars().take(3).collect::<String>()),
            "{text}"
        );
        assert!(text.contains(&format!("score {:.3}", v.score)), "{text}");
        let mut d = detector();
        warmed(&mut d, &mut n, 2000);
        let flat: Vec<Verdict> = (0..200).map(|_| d.observe(50.0)).collect();
        let v = first_alert(&flat).unwrap();
        let text = v.explain();
        assert!(
            text.contains(&format!("repeated {} times", v.evidence.flat_run + 1)),
            "{text}"
        );
        assert_eq!(num(59.999_999_9), "60.00");
        assert_eq!(num(0.000_123_45), "0.0001234");
        assert_eq!(num(123_456.7), "123457");
        assert!(detector().observe(1.0).explain().starts_with("no anomaly"));
    }

    #[test]
    fn an_incident_should_be_announced_once() {
        let mut d = detector();
        let mut n = Noise::new(31);
        warmed(&mut d, &mut n, 2000);
        // A plateau far above the past: the first sample alerts, the following ones are damped.
        let vs: Vec<Verdict> = (0..50).map(|_| d.observe(150.0 + n.uniform())).collect();
        let alerts = vs.iter().filter(|v| v.score >= ALERT_THRESHOLD).count();
        assert!(vs[0].score >= ALERT_THRESHOLD);
        assert!(alerts <= 3, "{alerts} alerts for one incident");
        // The raw score still says every sample is off.
        assert!(vs.iter().all(|v| v.evidence.raw_score >= 0.3));
    }

    /// An incident's quiet period and the decay of its peak run by the clock: after two days
    /// without a sample, a new record a little beyond the last incident is a new incident,
    /// while the same record a few samples on is still the old one.
    #[test]
    fn a_gap_should_run_out_an_incidents_quiet_period() {
        let next_record = |gap: usize| {
            let mut d = detector();
            let mut n = Noise::new(37);
            warmed(&mut d, &mut n, 2000);
            let first = d.observe(90.0);
            assert!(
                first.score >= ALERT_THRESHOLD,
                "the first incident: {first:?}"
            );
            warmed(&mut d, &mut n, 5);
            d.skip(gap);
            d.observe(92.0)
        };
        let later = next_record(576);
        assert!(later.score >= ALERT_THRESHOLD, "after two days: {later:?}");
        let soon = next_record(0);
        assert!(soon.score < ALERT_THRESHOLD, "five samples on: {soon:?}");
        assert!(soon.evidence.raw_score >= 0.5, "still a record: {soon:?}");
    }

    /// The seasonal test starts three seasons in with a handful of past deviations; a record
    /// among so few is weak evidence and must not alert on an ordinary day. (`warmup` 2 after
    /// construction switches the weighting off: the detector's own warm-up is long past.)
    #[test]
    fn the_seasonal_tests_first_records_should_not_alert_on_ordinary_days() {
        let season = 288;
        let alerts_after_three_seasons = |young_weighted: bool| {
            let mut alerts = 0;
            for seed in 1..=40u64 {
                let mut d = seasonal_detector(season);
                if !young_weighted {
                    d.p.warmup = 2;
                }
                let mut n = Noise::new(seed * 7919);
                for i in 0..5 * season {
                    let phase = (i % season) as f64 / season as f64 * std::f64::consts::TAU;
                    let v = d.observe(50.0 + 10.0 * phase.sin() + 10.0 * n.uniform());
                    if i >= 3 * season && i < 4 * season && v.score >= ALERT_THRESHOLD {
                        alerts += 1;
                    }
                }
            }
            alerts
        };
        let weighted = alerts_after_three_seasons(true);
        let bare = alerts_after_three_seasons(false);
        // Forty ordinary fourth days: a few alerts at most, and far fewer than when the
        // seasonal test's first records count in full.
        assert!(weighted <= 4, "{weighted} alerts on ordinary fourth days");
        assert!(
            bare >= 2 * weighted.max(1),
            "{weighted} alerts weighted against {bare} in full"
        );
    }

    /// Half-hourly usage with quiet weekends: against the last three days alone every Saturday
    /// and Monday departs from the median day, and those deviations set the bar; with the
    /// weekly reference they are the pattern from the second week on. A weekday at weekend
    /// level (a public holiday) departs from both references and alerts.
    #[test]
    fn a_weekly_rhythm_should_not_alert_every_weekend_but_a_holiday_should() {
        let season = 48;
        let week = 7 * season;
        let usage = |i: usize, noise: f64, holiday: bool| {
            let day = i / season;
            let weekend = day % 7 >= 5 || holiday;
            let phase = (i % season) as f64 / season as f64 * std::f64::consts::TAU;
            let level = if weekend { 40.0 } else { 100.0 };
            level + 0.3 * level * phase.sin() + 3.0 * noise
        };
        let run = |weekly: bool, holiday_day: Option<usize>| {
            let (mut ordinary, mut holiday) = (0, 0);
            for seed in 1..=10u64 {
                let mut d = Detector::new(
                    DetectorParams {
                        season,
                        weekly,
                        ..DetectorParams::default()
                    }
                    .check()
                    .unwrap(),
                );
                let mut n = Noise::new(seed * 104_729);
                let mut found = false;
                for i in 0..8 * week {
                    let on_holiday = holiday_day == Some(i / season);
                    let v = d.observe(usage(i, n.uniform(), on_holiday));
                    if v.score >= ALERT_THRESHOLD {
                        if on_holiday {
                            found = true;
                        } else if i >= week {
                            ordinary += 1;
                        }
                    }
                }
                holiday += usize::from(found);
            }
            (ordinary, holiday)
        };
        let (ordinary, _) = run(true, None);
        assert!(
            ordinary <= 2,
            "{ordinary} alerts on ordinary days from the second week on, in 10 runs"
        );
        // A Wednesday in the seventh week at weekend level. Against the last three days alone
        // it is no further off than every Saturday and Monday before it.
        let holiday = Some(6 * 7 + 2);
        let (_, with_week) = run(true, holiday);
        let (_, days_only) = run(false, holiday);
        assert!(
            with_week >= 9,
            "the holiday alerted in {with_week} of 10 runs"
        );
        assert!(
            days_only <= 3,
            "the holiday alerted in {days_only} of 10 runs without the weekly reference"
        );
    }

    /// Half-hourly samples keep months in the value memory. A storm (a quarter of the demand
    /// for a day) in week 6 and a holiday (six tenths of it) eight weeks later: the holiday is
    /// judged against the days of the last six weeks, not against the storm.
    #[test]
    fn a_holiday_long_after_a_storm_should_still_alert() {
        let season = 48;
        let (storm, holiday) = (40, 96);
        let (mut found, mut ordinary) = (0, 0);
        for seed in 1..=10u64 {
            let p = DetectorParams {
                season,
                ..DetectorParams::default()
            }
            .at_step(1800);
            assert_eq!(
                p.memory, DEFAULT_MEMORY,
                "the value memory stays months long"
            );
            let mut d = Detector::new(p.check().unwrap());
            let mut n = Noise::new(seed * 7919);
            let mut hit = false;
            for i in 0..(holiday + 4) * season {
                let day = i / season;
                let phase = (i % season) as f64 / season as f64 * std::f64::consts::TAU;
                let factor = match day {
                    k if k == storm => 0.25,
                    k if k == holiday => 0.6,
                    _ => 1.0,
                };
                let v = d.observe(factor * (100.0 + 30.0 * phase.sin()) + 3.0 * n.uniform());
                if v.score >= ALERT_THRESHOLD {
                    if day == holiday {
                        hit = true;
                    } else if day >= 10 && day != storm + 1 && day != storm && day != holiday + 1 {
                        ordinary += 1;
                    }
                }
            }
            found += usize::from(hit);
        }
        assert!(found >= 9, "the holiday alerted in {found} of 10 runs");
        assert!(
            ordinary <= 2,
            "{ordinary} alerts on ordinary days in 10 runs"
        );
    }

    /// How a gap reaches the detector in `gaps_told_to_the_detector_should_keep_the_seasonal_phase`.
    #[derive(Clone, Copy, PartialEq)]
    enum Gap {
        /// `skip(missing)`.
        Told,
        /// One non-finite sample per missing step, as a collector writes a missed scrape.
        NotANumber,
        /// Nothing: the next sample simply comes.
        Untold,
    }

    /// Samples that never arrived shift the phase when counted in samples: a day's peak is
    /// then compared with another hour of the days before, the deviations this makes set the
    /// bar, and a day without its peak goes unseen. Told of the gaps (by `skip` or as `nan`
    /// samples), the detector keeps the phase (ten seeds, a quarter of the first ten days
    /// missing in gaps of up to 48 steps).
    #[test]
    fn gaps_told_to_the_detector_should_keep_the_seasonal_phase() {
        let season = 288;
        // (alerts on ordinary days from the fourth on, runs whose peakless ninth day alerted)
        let run = |gap: Gap| {
            let (mut ordinary, mut found) = (0, 0);
            for seed in 1..=10u64 {
                let mut d = seasonal_detector(season);
                let mut n = Noise::new(seed * 7_727);
                let mut hit = false;
                let mut i = 0;
                while i < 12 * season {
                    let day = i / season;
                    // About one gap of 1 to 48 steps every hundred steps, none in the last days.
                    let u = n.uniform();
                    if u < 0.01 && day < 10 {
                        let missing = 1 + (u * 4_800.0) as usize;
                        match gap {
                            Gap::Told => d.skip(missing),
                            Gap::NotANumber => {
                                for _ in 0..missing {
                                    assert_eq!(d.observe(f64::NAN).score, 0.0);
                                }
                            }
                            Gap::Untold => {}
                        }
                        i += missing;
                        continue;
                    }
                    let v = d.observe(wave_without_the_twelfth_days_peak(i, season, &mut n));
                    tally_peakless_day(v.score, day, &mut hit, &mut ordinary);
                    i += 1;
                }
                found += usize::from(hit);
            }
            (ordinary, found)
        };
        for gap in [Gap::Told, Gap::NotANumber] {
            let (ordinary, found) = run(gap);
            assert!(
                ordinary <= 2,
                "{ordinary} alerts on ordinary days told of the gaps"
            );
            assert!(found >= 9, "the peakless day alerted in {found} of 10 runs");
        }
        let (_, untold) = run(Gap::Untold);
        assert!(
            untold <= 5,
            "the peakless day alerted in {untold} of 10 runs with the gaps untold"
        );
    }

    /// With one day of memory at a 5-minute step (288 values, less than the warm-up) the
    /// seasonal test holds all the deviations it ever will, and a record among them must count
    /// in full, or a day without its peak never alerts.
    #[test]
    fn a_seasonal_test_with_a_memory_shorter_than_the_warm_up_should_still_alert() {
        let season = 288;
        let mut found = 0;
        for seed in 1..=10u64 {
            let mut d = seasonal_detector_with_memory(season, season);
            let mut n = Noise::new(seed * 7_727);
            let mut hit = false;
            for i in 0..12 * season {
                let v = d.observe(wave_without_the_twelfth_days_peak(i, season, &mut n));
                hit |= i / season == 11 && v.score >= ALERT_THRESHOLD;
            }
            found += usize::from(hit);
        }
        assert!(found >= 9, "the peakless day alerted in {found} of 10 runs");
    }

    #[test]
    fn a_clock_should_count_missing_steps_against_the_grid() {
        let mut c = StepClock::new(300);
        assert_eq!(c.last(), None);
        assert_eq!(c.missing_before(1_000), 0, "the first sample");
        assert_eq!(c.last(), Some(1_000));
        assert_eq!(c.missing_before(1_449), 0, "late, but nearer its slot");
        assert_eq!(c.missing_before(1_451), 0, "early for its slot");
        assert_eq!(c.missing_before(2_200), 1, "a slot with no sample");
        assert_eq!(c.missing_before(3_100), 2, "two empty slots");
        // Two samples in one slot count as consecutive steps (the detector is one step ahead)
        // and the next empty slot takes the extra step back.
        assert_eq!(
            c.missing_before(3_150),
            0,
            "slot 7 again, counted as slot 8"
        );
        assert_eq!(c.missing_before(3_400), 0, "slot 8, counted as slot 9");
        assert_eq!(
            c.missing_before(4_000),
            0,
            "slot 10: the empty slot 9 was the extra step"
        );
        assert_eq!(c.missing_before(4_600), 1, "slot 12: back on the grid");
        assert_eq!(
            c.last(),
            Some(1_000 + 12 * 300),
            "the last slot on the grid"
        );
        assert_eq!(c.missing_before(500), 0, "time going backwards");
        assert_eq!(StepClock::new(0).missing_before(0), 0);
        let mut unknown = StepClock::new(0);
        unknown.missing_before(0);
        assert_eq!(unknown.missing_before(86_400), 0, "no step, no gaps");
        assert_eq!(unknown.last(), None, "no step, no grid");
        let mut far = StepClock::new(1);
        far.missing_before(i64::MIN);
        assert_eq!(
            far.missing_before(i64::MAX),
            usize::try_from(i64::MAX - 1).unwrap()
        );
        // A period 1 % longer than the step: every hundredth slot is empty, so the detector's
        // count of steps stays with the elapsed time.
        let mut slow = StepClock::new(300);
        let missing: usize = (0..10_000).map(|i| slow.missing_before(i * 303)).sum();
        assert!(
            (98..=100).contains(&missing),
            "{missing} steps added over 10,000 samples"
        );
        // Any gap is safe to tell: the detector keeps at most a week of it.
        let mut d = seasonal_detector(288);
        let mut n = Noise::new(5);
        warmed(&mut d, &mut n, 3 * 288);
        d.skip(usize::MAX);
        assert!((0.0..=1.0).contains(&d.observe(50.0).score));
    }

    /// Timestamps that wander by up to 45 % of a step either way (collection jitter): on the
    /// grid no step is added or lost. Measured from the previous sample, one step in ten looks
    /// like a gap and the same-phase references drift a tenth of a day a day.
    #[test]
    fn jittered_timestamps_should_keep_the_seasonal_phase() {
        let (season, step) = (288, 300_i64);
        // (alerts on ordinary days from the fourth on, runs whose peakless twelfth day alerted)
        let run = |grid: bool| {
            let (mut ordinary, mut found) = (0, 0);
            for seed in 1..=10u64 {
                let mut d = seasonal_detector(season);
                let mut n = Noise::new(seed * 7_919);
                let mut clock = StepClock::new(step);
                let mut previous: Option<i64> = None;
                let mut hit = false;
                for i in 0..12 * season {
                    let jitter = ((n.uniform() - 0.5) * 0.9 * step as f64) as i64;
                    let at = i as i64 * step + jitter;
                    let missing = if grid {
                        clock.missing_before(at)
                    } else {
                        // The previous rule: the gap since the last sample, to the nearest step.
                        previous.map_or(0, |p: i64| {
                            usize::try_from(((at - p + step / 2) / step - 1).max(0)).unwrap()
                        })
                    };
                    previous = Some(at);
                    d.skip(missing);
                    let v = d.observe(wave_without_the_twelfth_days_peak(i, season, &mut n));
                    tally_peakless_day(v.score, i / season, &mut hit, &mut ordinary);
                }
                found += usize::from(hit);
            }
            (ordinary, found)
        };
        let (ordinary, found) = run(true);
        assert!(
            ordinary <= 2,
            "{ordinary} alerts on ordinary days on the grid"
        );
        assert!(
            found >= 9,
            "the peakless day alerted in {found} of 10 runs on the grid"
        );
        let (drifted, drifted_found) = run(false);
        assert!(
            drifted > 2 * (ordinary + 1) && drifted_found <= 5,
            "from the previous sample: {drifted} alerts on ordinary days ({ordinary} on the grid), \
             the peakless day found in {drifted_found} of 10 runs"
        );
    }

    /// A chain of near-records (each value a little above the last) is one incident: within
    /// the quiet period it alerts once, while a larger departure still gets through.
    #[test]
    fn a_quiet_period_should_announce_a_chain_of_near_records_once() {
        let run = |quiet_period: usize| {
            let mut d = Detector::new(
                DetectorParams {
                    quiet_period,
                    ..DetectorParams::default()
                }
                .check()
                .unwrap(),
            );
            let mut n = Noise::new(43);
            warmed(&mut d, &mut n, 2000);
            let chain: Vec<Verdict> = (0..60)
                .map(|i| d.observe(60.5 + 0.4 * f64::from(i) + 0.2 * n.uniform()))
                .collect();
            let far = d.observe(200.0);
            (
                chain.iter().filter(|v| v.score >= ALERT_THRESHOLD).count(),
                far,
            )
        };
        let (loud, _) = run(0);
        let (quiet, far) = run(72);
        assert!(quiet >= 1, "the chain was not announced at all");
        assert!(quiet <= 2, "{quiet} alerts with a quiet period");
        assert!(
            loud > quiet,
            "{loud} alerts without a quiet period, {quiet} with"
        );
        assert!(far.score >= ALERT_THRESHOLD, "{far:?}");
        assert_eq!(far.kind, Some(AnomalyKind::Burst));
    }

    #[test]
    fn non_finite_samples_should_score_zero_and_not_be_learnt() {
        let mut d = detector();
        let mut n = Noise::new(37);
        warmed(&mut d, &mut n, 200);
        let seen = d.seen();
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let v = d.observe(x);
            assert_eq!(v.score, 0.0);
            assert_eq!(v.kind, None);
        }
        assert_eq!(d.seen(), seen);
        assert!(d.observe(50.0).score < ALERT_THRESHOLD);
    }

    /// Feeds `n` samples of a daily pattern with noise.
    fn feed(d: &mut Detector, n: usize) {
        let mut noise = Noise::new(61);
        for i in 0..n {
            let phase = (i % 288) as f64 / 288.0;
            d.observe(50.0 + 20.0 * (phase * std::f64::consts::TAU).sin() + 5.0 * noise.uniform());
        }
    }

    #[test]
    fn a_default_detector_should_stay_within_six_kib() {
        let mut d = detector();
        feed(&mut d, 20_000);
        let full = d.heap_bytes();
        assert!(full <= 6 * 1024, "{full} bytes");
        // Its windows reserved their final size: more samples do not grow it.
        feed(&mut d, 10_000);
        assert_eq!(d.heap_bytes(), full);
    }

    #[test]
    fn heap_bytes_should_follow_the_window_sizes() {
        use super::super::window::BLOCKS;
        let block = 16; // min, max, mean as f32 and the number of values
        for (memory, season, long_window) in
            [(6000, 0, 72), (288, 288, 72), (100_000, 288, 0), (50, 0, 0)]
        {
            let p = DetectorParams {
                memory,
                season,
                long_window,
                ..DetectorParams::default()
            };
            let mut d = Detector::new(p.clone().check().unwrap());
            feed(&mut d, 4 * memory.min(20_000) + 4 * season);
            // Value windows: values, residuals, short means, shift statistic, long means,
            // seasonal deviations.
            let windows = 4 + usize::from(long_window > 0) + usize::from(season > 0);
            let blocks = (memory / memory.div_ceil(BLOCKS)).min(BLOCKS) + 1;
            let sb = ((season + p.trend_block / 2) / p.trend_block).max(1);
            let expected = windows * blocks * block
                + 4 * p.short_window.max(long_window)
                + 4 * 7 * season // a week of recent means (`weekly`, the default)
                + 8 * (TREND_BLOCKS + 1)
                + if season > 0 {
                    8 * (sb + TREND_BLOCKS + 1)
                } else {
                    0
                };
            let got = d.heap_bytes();
            // VecDeque may round a reservation up a little; never down.
            assert!(
                got >= expected && got <= expected + expected / 8,
                "{p:?}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn warmup_should_hold_back_early_records_but_not_a_far_departure() {
        let mut d = detector();
        // Every value a new record, each far beyond the short range seen: no alert while the
        // evidence is thin.
        for i in 0..50 {
            let v = d.observe(f64::from(i) * 1000.0);
            assert!(v.score < ALERT_THRESHOLD, "{i}: {v:?}");
        }
        let mut d = detector();
        let mut n = Noise::new(67);
        warmed(&mut d, &mut n, 30);
        // A thousand ranges beyond the 30 values seen gets through all the same.
        let v = d.observe(20_000.0);
        assert!(v.score >= ALERT_THRESHOLD, "{v:?}");
        assert_eq!(v.kind, Some(AnomalyKind::Burst));
    }

    /// With a short warm-up (a coarse step), a new extreme among a few hundred values needs a
    /// wider margin than among thousands: 1.5 % of the range beyond 300 values is no alert,
    /// beyond 1,500 it is, and a far departure is an alert at 300 already.
    #[test]
    fn a_record_among_few_values_should_need_a_wider_margin() {
        let params = DetectorParams {
            warmup: 50,
            ..DetectorParams::default()
        };
        let beyond = |baseline: usize, share: f64| {
            let mut d = Detector::new(params.clone().check().unwrap());
            let mut n = Noise::new(83);
            let mut seen: Vec<f64> = Vec::new();
            for _ in 0..baseline {
                let x = 40.0 + 20.0 * n.uniform();
                seen.push(x);
                d.observe(x);
            }
            let (lo, hi) = seen
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            d.observe(hi + share * (hi - lo))
        };
        let v = beyond(300, 0.015);
        assert!(v.score < ALERT_THRESHOLD, "{v:?}");
        let v = beyond(1500, 0.015);
        assert!(v.score >= ALERT_THRESHOLD, "{v:?}");
        assert_eq!(v.kind, Some(AnomalyKind::Burst));
        let v = beyond(300, 0.2);
        assert!(v.score >= ALERT_THRESHOLD, "{v:?}");
    }

    /// A step of three noise standard deviations inside the range seen: no single value is a
    /// record, but the accumulated deviation is.
    #[test]
    fn a_small_sustained_shift_should_alert_as_a_level_shift() {
        let mut d = detector();
        let mut n = Noise::new(71);
        warmed(&mut d, &mut n, 3000);
        // Uniform noise on [40, 60] has a standard deviation of 5.8.
        let vs: Vec<Verdict> = (0..400)
            .map(|_| d.observe(57.0 + 3.0 * n.uniform()))
            .collect();
        let v = first_alert(&vs).expect("a sustained shift of one standard deviation should alert");
        assert_eq!(v.kind, Some(AnomalyKind::LevelShift), "{v:?}");
        assert!(v.evidence.excess == 0.0, "{v:?}");
        // The accumulator restarts after each alarm from the recent mean, so a persistent shift
        // is announced a few times (7 here) while the slow baseline catches up, not every sample.
        let alerts = vs.iter().filter(|v| v.score >= ALERT_THRESHOLD).count();
        assert!(alerts <= 10, "{alerts} alerts");
    }

    #[test]
    fn bad_params_should_name_the_field() {
        let cases = [
            (
                "memory",
                DetectorParams {
                    memory: 3,
                    ..Default::default()
                },
            ),
            (
                "warmup",
                DetectorParams {
                    warmup: 0,
                    ..Default::default()
                },
            ),
            (
                "level_alpha",
                DetectorParams {
                    level_alpha: 0.0,
                    ..Default::default()
                },
            ),
            (
                "level_alpha",
                DetectorParams {
                    level_alpha: f64::NAN,
                    ..Default::default()
                },
            ),
            (
                "short_window",
                DetectorParams {
                    short_window: 1,
                    ..Default::default()
                },
            ),
            (
                "trend_block",
                DetectorParams {
                    trend_block: 0,
                    ..Default::default()
                },
            ),
            (
                "peak_decay",
                DetectorParams {
                    peak_decay: 1.0,
                    ..Default::default()
                },
            ),
            (
                "damping",
                DetectorParams {
                    damping: 1.5,
                    ..Default::default()
                },
            ),
            (
                "season",
                DetectorParams {
                    season: 1_000_000,
                    ..Default::default()
                },
            ),
            (
                "long_window",
                DetectorParams {
                    long_window: 1,
                    ..Default::default()
                },
            ),
            (
                "shift_allowance",
                DetectorParams {
                    shift_allowance: f64::NAN,
                    ..Default::default()
                },
            ),
        ];
        for (field, p) in cases {
            let e = p.check().unwrap_err();
            assert!(
                matches!(e, Error::InvalidParam { field: f, .. } if f == field),
                "{field}: {e}"
            );
            assert!(e.to_string().contains(field), "{e}");
        }
        assert!(DetectorParams::default().check().is_ok());
    }

    /// The real excerpt: NAB realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv, first 2200 rows,
    /// with its labelled window over rows 1526..=1868 (tests/data/anomaly/SOURCE.md).
    #[test]
    fn real_cloudwatch_excerpt_should_alert_inside_its_labelled_window() {
        let text =
            include_str!("../../../tests/data/anomaly/ec2_cpu_utilization_825cc2_head2200.csv");
        let values: Vec<f64> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(values.len(), 2200);
        let season = 288; // one day of 5-minute samples
        let mut d = Detector::new(
            DetectorParams {
                season,
                ..Default::default()
            }
            .check()
            .unwrap(),
        );
        let scores: Vec<f64> = values.iter().map(|&x| d.observe(x).score).collect();
        let probation = super::super::nab::probation_len(values.len());
        let (left, right) = (1526, 1868);
        let first_in = (left..=right).find(|&i| scores[i] >= ALERT_THRESHOLD);
        assert!(first_in.is_some(), "no alert inside the labelled window");
        // Detected before the window's middle: NAB weight above 0.5 of the maximum.
        assert!(
            first_in.unwrap() < left + (right - left) * 3 / 4,
            "late: {first_in:?}"
        );
        let outside = (probation..values.len())
            .filter(|&i| (i < left || i > right) && scores[i] >= ALERT_THRESHOLD)
            .count();
        // Short spikes before the window are new records too; NAB counts them as false positives.
        assert!(outside <= 8, "{outside} alerts outside the window");
        // And the NAB scorer agrees: far better than the null detector.
        let series = super::super::nab::ScoredSeries {
            name: "825cc2".into(),
            timestamps: (0..values.len() as i64).collect(),
            scores,
            windows: vec![(left as i64, right as i64)],
        };
        let r =
            super::super::nab::score_corpus(&[series], &super::super::nab::CostProfile::STANDARD)
                .unwrap();
        assert!(r.normalized > 60.0, "{r:?}");
    }

    fn params_strategy() -> impl Strategy<Value = DetectorParams> {
        (
            10usize..300,
            2usize..40,
            0.01f64..1.0,
            2usize..10,
            1usize..10,
            0.5f64..0.999,
            0.0f64..1.0,
            0usize..20,
            0usize..30,
        )
            .prop_map(
                |(
                    memory,
                    warmup,
                    level_alpha,
                    short_window,
                    trend_block,
                    peak_decay,
                    damping,
                    season,
                    long,
                )| {
                    DetectorParams {
                        memory,
                        warmup,
                        level_alpha,
                        short_window,
                        trend_block,
                        peak_decay,
                        damping,
                        season,
                        long_window: if long < 2 { 0 } else { long.min(memory) },
                        quiet_period: season,
                        shift_allowance: damping * 3.0,
                        weekly: season % 2 == 0,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the settings, values and gaps (none, a few steps, or more than any memory).
        #[test]
        fn score_should_always_be_in_unit_interval(
            params in params_strategy(),
            xs in prop::collection::vec(
                (prop::num::f64::ANY, prop_oneof![8 => Just(0usize), 3 => 1usize..5, 1 => Just(1_000_000usize)]),
                0..400,
            ),
        ) {
            let mut d = Detector::new(params.check().unwrap());
            for (x, gap) in xs {
                d.skip(gap);
                let v = d.observe(x);
                prop_assert!((0.0..=1.0).contains(&v.score), "score {} for {}", v.score, x);
                prop_assert!((0.0..=1.0).contains(&v.evidence.raw_score));
            }
        }

        #[test]
        fn finite_extremes_should_not_panic(
            xs in prop::collection::vec(prop_oneof![
                Just(f64::MAX), Just(f64::MIN), Just(0.0), Just(-0.0), Just(f64::MIN_POSITIVE),
                -1e300f64..1e300
            ], 60..300),
        ) {
            let mut d = detector();
            for x in xs {
                let v = d.observe(x);
                prop_assert!((0.0..=1.0).contains(&v.score));
            }
        }
    }
}
