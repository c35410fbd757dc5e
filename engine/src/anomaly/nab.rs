//! The scoring method of the Numenta Anomaly Benchmark (NAB), implemented from its documented rules.
//!
//! A detector emits one anomaly score in `[0, 1]` per sample. A sample is a *detection* when its
//! score is at or above a threshold. Labelled anomaly *windows* (`[start, end]` timestamps) turn
//! detections into a score:
//!
//! - A detection inside a window earns `tp_weight × σ(p) / σ(−1)`, where `p ∈ [−1, 0)` is the
//!   relative position in the window (`p = −(right − i + 1) / width`, so the left edge earns the full
//!   `tp_weight` and the right edge almost nothing) and `σ(p) = 2 / (1 + e^{5p}) − 1` is NAB's
//!   scaled sigmoid. Only the best (that is, the first) detection of a window counts; later ones
//!   in the same window neither add nor cost.
//! - A window without any detection costs `−fn_weight`.
//! - A detection outside every window costs `fp_weight × σ(p)`, with `p` the distance past the end
//!   of the previous window in units of that window's width minus one (so detections just after a
//!   window cost little, and the cost grows to the full `−fp_weight` three widths later; `σ` is
//!   −1 beyond 3). A detection before the first window of a series costs the full `−fp_weight`.
//! - The probationary period — the first `min(⌊0.15·n⌋, 750)` samples of each series — is not
//!   scored at all: it gives the detector time to learn.
//! - One threshold per profile is chosen to maximise the raw score summed over the whole corpus.
//! - The raw score is normalised against the *null* detector (a constant score, optimised the same
//!   way, which in practice detects nothing) and the *perfect* detector (one detection at the left
//!   edge of every window, worth `tp_weight × windows`):
//!   `normalized = 100 × (raw − null) / (perfect − null)`.
//!
//! The three application profiles and their weights are NAB's published ones
//! (`config/profiles.json`): standard (TP 1.0, FP 0.11, FN 1.0), reward-low-FP (TP 1.0, FP 0.22,
//! FN 1.0) and reward-low-FN (TP 1.0, FP 0.11, FN 2.0).

use super::{Error, Result};

/// Share of each series, from its start, that is not scored (NAB's probationary period).
pub const PROBATION_PERCENT: f64 = 0.15;

/// Upper bound on the probationary period, in samples (`0.15 × 5000`).
pub const PROBATION_MAX: usize = 750;

/// Weights of one NAB application profile.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CostProfile {
    /// Profile name as NAB spells it (`standard`, `reward_low_FP_rate`, `reward_low_FN_rate`).
    pub name: &'static str,
    /// Reward of a detection at the left edge of a window.
    pub tp_weight: f64,
    /// Cost of a detection far from any window (positive number, subtracted).
    pub fp_weight: f64,
    /// Cost of a window without any detection (positive number, subtracted).
    pub fn_weight: f64,
}

impl CostProfile {
    /// NAB's standard profile: TP 1.0, FP 0.11, FN 1.0.
    pub const STANDARD: CostProfile = CostProfile {
        name: "standard",
        tp_weight: 1.0,
        fp_weight: 0.11,
        fn_weight: 1.0,
    };
    /// NAB's reward-low-false-positives profile: TP 1.0, FP 0.22, FN 1.0.
    pub const REWARD_LOW_FP: CostProfile = CostProfile {
        name: "reward_low_FP_rate",
        tp_weight: 1.0,
        fp_weight: 0.22,
        fn_weight: 1.0,
    };
    /// NAB's reward-low-false-negatives profile: TP 1.0, FP 0.11, FN 2.0.
    pub const REWARD_LOW_FN: CostProfile = CostProfile {
        name: "reward_low_FN_rate",
        tp_weight: 1.0,
        fp_weight: 0.11,
        fn_weight: 2.0,
    };

    /// The three profiles in NAB's order: standard, reward-low-FP, reward-low-FN.
    pub fn all() -> [CostProfile; 3] {
        [Self::STANDARD, Self::REWARD_LOW_FP, Self::REWARD_LOW_FN]
    }
}

/// One scored series: timestamps, the detector's scores and the labelled windows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredSeries {
    /// Name used in error messages (for example `realTweets/Twitter_volume_AAPL.csv`).
    pub name: String,
    /// Sample timestamps (any monotone unit, for example unix seconds), never decreasing (NAB files
    /// repeat a timestamp at daylight-saving changes).
    pub timestamps: Vec<i64>,
    /// Anomaly score of each sample, in `[0, 1]`.
    pub scores: Vec<f64>,
    /// Labelled anomaly windows as inclusive `[start, end]` timestamps, in time order.
    pub windows: Vec<(i64, i64)>,
}

/// NAB's scaled sigmoid of a relative position: `2 / (1 + e^{5p}) − 1`, and −1 beyond `p > 3`.
///
/// # Example
/// ```no_run
/// use predictive_engine::anomaly::nab::scaled_sigmoid;
/// assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-5);
/// assert_eq!(scaled_sigmoid(0.0), 0.0);
/// ```
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// Length of the probationary period of a series of `n` samples: `min(⌊0.15·n⌋, 750)`.
pub fn probation_len(n: usize) -> usize {
    ((PROBATION_PERCENT * n as f64).floor() as usize).min(PROBATION_MAX)
}

/// A sample after the probationary period, ready to be swept.
#[derive(Debug, Clone, Copy)]
struct Point {
    score: f64,
    /// Weight of a detection here, before the profile's TP/FP weight is applied.
    unweighted: f64,
    /// Global window index, or `None` outside every window.
    window: Option<usize>,
}

/// Samples of a corpus laid out for sweeping, independent of the profile.
#[derive(Debug, Clone)]
struct Layout {
    points: Vec<Point>,
    windows: usize,
}

/// Index of each window's `[left, right]` samples in `timestamps`.
fn window_indices(series: &ScoredSeries) -> Result<Vec<(usize, usize)>> {
    let ts = &series.timestamps;
    let mut out = Vec::with_capacity(series.windows.len());
    let mut prev_end: Option<i64> = None;
    for (k, &(start, end)) in series.windows.iter().enumerate() {
        if end < start || prev_end.is_some_and(|p| start <= p) {
            return Err(Error::WindowsOutOfOrder {
                series: series.name.clone(),
                window: k,
            });
        }
        prev_end = Some(end);
        let left = ts.partition_point(|&t| t < start);
        let right_excl = ts.partition_point(|&t| t <= end);
        if left >= right_excl {
            // A window over no sample (for example outside the data) cannot be scored.
            continue;
        }
        out.push((left, right_excl - 1));
    }
    Ok(out)
}

fn validate(series: &ScoredSeries) -> Result<()> {
    if series.timestamps.len() != series.scores.len() {
        return Err(Error::LengthMismatch {
            series: series.name.clone(),
            timestamps: series.timestamps.len(),
            scores: series.scores.len(),
        });
    }
    if let Some(i) = series.timestamps.windows(2).position(|w| w[1] < w[0]) {
        return Err(Error::TimestampsNotIncreasing {
            series: series.name.clone(),
            index: i + 1,
        });
    }
    if let Some(i) = series.scores.iter().position(|s| !(0.0..=1.0).contains(s)) {
        return Err(Error::ScoreOutOfRange {
            series: series.name.clone(),
            index: i,
            score: series.scores[i],
        });
    }
    Ok(())
}

fn layout(corpus: &[ScoredSeries]) -> Result<Layout> {
    let mut points = Vec::new();
    let mut windows = 0usize;
    for series in corpus {
        validate(series)?;
        let n = series.timestamps.len();
        let probation = probation_len(n);
        let idx = window_indices(series)?;
        // Per-sample position weights, walking windows left to right as NAB does.
        let mut next = 0usize; // next window to enter
        let mut prev: Option<(usize, usize)> = None; // (right index, width) of the last window left
        let mut scored_windows = std::collections::HashMap::new();
        for i in 0..n {
            let inside = idx.get(next).filter(|&&(l, r)| i >= l && i <= r).copied();
            let (unweighted, window) = match inside {
                Some((l, r)) => {
                    let width = (r - l + 1) as f64;
                    let pos = -((r as f64 - i as f64 + 1.0) / width);
                    let w = scaled_sigmoid(pos) / scaled_sigmoid(-1.0);
                    if i == r {
                        prev = Some((r, r - l + 1));
                        next += 1;
                    }
                    (w, Some(next - usize::from(i == r)))
                }
                None => {
                    let w = match prev {
                        None => -1.0,
                        // After a one-sample window the distance is unbounded, as in NAB.
                        Some((_, 1)) => -1.0,
                        Some((r, width)) => scaled_sigmoid((i - r) as f64 / (width as f64 - 1.0)),
                    };
                    (w, None)
                }
            };
            if i < probation {
                continue;
            }
            let window = window.map(|k| {
                let len = scored_windows.len();
                *scored_windows.entry(k).or_insert(windows + len)
            });
            points.push(Point {
                score: series.scores[i],
                unweighted,
                window,
            });
        }
        windows += scored_windows.len();
    }
    Ok(Layout { points, windows })
}

/// Score of each candidate threshold, highest threshold first, as `(threshold, raw score)`.
fn sweep(layout: &Layout, profile: &CostProfile) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..layout.points.len()).collect();
    order.sort_by(|&a, &b| layout.points[b].score.total_cmp(&layout.points[a].score));
    let mut best = vec![-profile.fn_weight; layout.windows];
    let mut windows_sum = -profile.fn_weight * layout.windows as f64;
    let mut fp_sum = 0.0;
    // Above every score nothing is detected: all windows are missed.
    let mut out = vec![(1.1, windows_sum)];
    let mut k = 0;
    while k < order.len() {
        let threshold = layout.points[order[k]].score;
        while k < order.len() && layout.points[order[k]].score == threshold {
            let p = layout.points[order[k]];
            match p.window {
                Some(w) => {
                    let v = p.unweighted * profile.tp_weight;
                    if v > best[w] {
                        windows_sum += v - best[w];
                        best[w] = v;
                    }
                }
                None => fp_sum += p.unweighted * profile.fp_weight,
            }
            k += 1;
        }
        out.push((threshold, windows_sum + fp_sum));
    }
    out
}

/// Result of one profile over a corpus.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProfileScore {
    /// The profile's name.
    pub profile: &'static str,
    /// The threshold that maximises the raw score over the corpus.
    pub threshold: f64,
    /// Raw score at that threshold.
    pub raw: f64,
    /// Raw score of the null detector (constant score, optimised the same way).
    pub null: f64,
    /// Raw score of the perfect detector (`tp_weight × windows`).
    pub perfect: f64,
    /// `100 × (raw − null) / (perfect − null)`.
    pub normalized: f64,
    /// Windows after the probationary period (the ones that count).
    pub windows: usize,
    /// Windows with at least one detection at the chosen threshold.
    pub detected_windows: usize,
    /// Detections outside every window at the chosen threshold.
    pub false_positives: usize,
}

fn best_of(sweep: &[(f64, f64)]) -> (f64, f64) {
    // The first maximum, that is the highest threshold among equal scores.
    let mut best = sweep[0];
    for &s in &sweep[1..] {
        if s.1 > best.1 {
            best = s;
        }
    }
    best
}

/// Scores a corpus under one profile: threshold optimisation, then normalisation.
///
/// # Errors
/// [`Error::LengthMismatch`], [`Error::TimestampsNotIncreasing`], [`Error::ScoreOutOfRange`],
/// [`Error::WindowsOutOfOrder`] name the series that is wrong; [`Error::NoWindows`] when no
/// window falls after the probationary period (the normalisation is undefined).
pub fn score_corpus(corpus: &[ScoredSeries], profile: &CostProfile) -> Result<ProfileScore> {
    let lay = layout(corpus)?;
    score_layout(&lay, profile)
}

/// Scores a corpus under NAB's three profiles, in the order of [`CostProfile::all`].
///
/// # Errors
/// As [`score_corpus`].
pub fn score_all_profiles(corpus: &[ScoredSeries]) -> Result<Vec<ProfileScore>> {
    let lay = layout(corpus)?;
    CostProfile::all()
        .iter()
        .map(|p| score_layout(&lay, p))
        .collect()
}

/// Scores a corpus under one profile at a *given* threshold instead of the optimised one, still
/// normalised against the null and perfect detectors.
///
/// This is how a threshold chosen on one corpus is judged on another (held-out) corpus: NAB's
/// own procedure optimises the threshold on the data it scores, which flatters the detector.
///
/// # Errors
/// As [`score_corpus`].
pub fn score_corpus_at(
    corpus: &[ScoredSeries],
    profile: &CostProfile,
    threshold: f64,
) -> Result<ProfileScore> {
    let lay = layout(corpus)?;
    score_layout_at(&lay, profile, Some(threshold))
}

fn score_layout(lay: &Layout, profile: &CostProfile) -> Result<ProfileScore> {
    score_layout_at(lay, profile, None)
}

/// Raw score of the detections at or above `threshold`.
fn raw_at(lay: &Layout, profile: &CostProfile, threshold: f64) -> f64 {
    let mut best = vec![-profile.fn_weight; lay.windows];
    let mut fp = 0.0;
    for p in lay.points.iter().filter(|p| p.score >= threshold) {
        match p.window {
            Some(w) => best[w] = best[w].max(p.unweighted * profile.tp_weight),
            None => fp += p.unweighted * profile.fp_weight,
        }
    }
    best.iter().sum::<f64>() + fp
}

fn score_layout_at(
    lay: &Layout,
    profile: &CostProfile,
    fixed: Option<f64>,
) -> Result<ProfileScore> {
    if lay.windows == 0 {
        return Err(Error::NoWindows);
    }
    let (threshold, raw) = match fixed {
        Some(t) => (t, raw_at(lay, profile, t)),
        None => best_of(&sweep(lay, profile)),
    };
    let null_layout = Layout {
        points: lay
            .points
            .iter()
            .map(|p| Point { score: 0.5, ..*p })
            .collect(),
        windows: lay.windows,
    };
    let (_, null) = best_of(&sweep(&null_layout, profile));
    let perfect = profile.tp_weight * lay.windows as f64;
    let mut detected = vec![false; lay.windows];
    let mut false_positives = 0;
    for p in lay.points.iter().filter(|p| p.score >= threshold) {
        match p.window {
            Some(w) => detected[w] = true,
            None => false_positives += 1,
        }
    }
    Ok(ProfileScore {
        profile: profile.name,
        threshold,
        raw,
        null,
        perfect,
        normalized: 100.0 * (raw - null) / (perfect - null),
        windows: lay.windows,
        detected_windows: detected.iter().filter(|d| **d).count(),
        false_positives,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    /// 100 samples at t = 0..100 (probation = 15), one window over samples 40..=49.
    fn series(scores: Vec<f64>) -> ScoredSeries {
        ScoredSeries {
            name: "s".into(),
            timestamps: (0..100).collect(),
            scores,
            windows: vec![(40, 49)],
        }
    }

    #[test]
    fn scaled_sigmoid_should_match_nab_documented_values() {
        // Values stated in NAB's documentation of the scaled sigmoid.
        assert_relative_eq!(scaled_sigmoid(-1.0), 0.98661, epsilon = 1e-5);
        assert_relative_eq!(scaled_sigmoid(-0.5), 0.84828, epsilon = 1e-5);
        assert_relative_eq!(scaled_sigmoid(0.0), 0.0);
        assert_relative_eq!(scaled_sigmoid(1.0), -0.98661, epsilon = 1e-5);
        assert_eq!(scaled_sigmoid(3.5), -1.0);
    }

    #[test]
    fn probation_should_be_fifteen_percent_capped_at_750() {
        assert_eq!(probation_len(100), 15);
        assert_eq!(probation_len(4032), 604);
        assert_eq!(probation_len(15_000), 750);
    }

    #[test]
    fn perfect_detector_should_score_100_and_null_detector_0() {
        let mut s = vec![0.0; 100];
        s[40] = 1.0;
        for p in CostProfile::all() {
            let r = score_corpus(&[series(s.clone())], &p).unwrap();
            assert_relative_eq!(r.normalized, 100.0, epsilon = 1e-9);
            assert_eq!(r.detected_windows, 1);
            let null = score_corpus(&[series(vec![0.5; 100])], &p).unwrap();
            assert_relative_eq!(null.normalized, 0.0, epsilon = 1e-9);
            assert_relative_eq!(null.null, -p.fn_weight);
        }
    }

    #[test]
    fn detection_mid_window_should_earn_the_sigmoid_weight() {
        // Window of width 10 over 40..=49; a detection at 45 sits at p = -(49-45+1)/10 = -0.5.
        let mut s = vec![0.0; 100];
        s[45] = 1.0;
        let r = score_corpus(&[series(s)], &CostProfile::STANDARD).unwrap();
        let tp = scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0);
        assert_relative_eq!(r.raw, tp, epsilon = 1e-12);
        // null = -1 (miss), perfect = 1: normalized = 100 (tp + 1) / 2.
        assert_relative_eq!(r.normalized, 100.0 * (tp + 1.0) / 2.0, epsilon = 1e-9);
    }

    #[test]
    fn only_the_first_detection_in_a_window_should_count() {
        let mut one = vec![0.0; 100];
        one[42] = 1.0;
        let mut many = one.clone();
        for v in &mut many[43..=49] {
            *v = 1.0;
        }
        let a = score_corpus(&[series(one)], &CostProfile::STANDARD).unwrap();
        let b = score_corpus(&[series(many)], &CostProfile::STANDARD).unwrap();
        assert_relative_eq!(a.raw, b.raw, epsilon = 1e-12);
    }

    #[test]
    fn false_positives_should_cost_full_weight_before_and_decay_after_the_window() {
        let p = CostProfile::STANDARD;
        // Before the first window: full -fp_weight, plus the missed window.
        let mut s = vec![0.0; 100];
        s[20] = 1.0;
        let r = score_corpus(&[series(s)], &p).unwrap();
        // The threshold optimisation prefers detecting nothing (-1) over -1 - 0.11.
        assert_relative_eq!(r.raw, -1.0);
        assert_eq!(r.threshold, 1.1);
        // A detection in the window plus one right after it (distance 1 of width-1 = 9).
        let mut s = vec![0.0; 100];
        s[40] = 1.0;
        s[50] = 1.0;
        let r = score_corpus(&[series(s)], &p).unwrap();
        let fp = scaled_sigmoid(1.0 / 9.0) * p.fp_weight;
        assert!(fp < 0.0 && fp > -p.fp_weight);
        assert_relative_eq!(r.raw, 1.0 + fp, epsilon = 1e-12);
        // Far after the window the cost is the full weight.
        let mut s = vec![0.0; 100];
        s[40] = 1.0;
        s[90] = 1.0;
        let r = score_corpus(&[series(s)], &p).unwrap();
        assert_relative_eq!(r.raw, 1.0 - p.fp_weight, epsilon = 1e-12);
    }

    #[test]
    fn probationary_detections_should_not_be_scored() {
        let mut s = vec![0.0; 100];
        s[3] = 1.0; // inside probation: no cost
        s[40] = 1.0;
        let r = score_corpus(&[series(s)], &CostProfile::REWARD_LOW_FP).unwrap();
        assert_relative_eq!(r.raw, 1.0, epsilon = 1e-12);
        assert_eq!(r.false_positives, 0);
    }

    /// As NAB's sweeper: a window wholly inside the probationary period is not scored (no miss,
    /// no detection), but it still ends the "before any window" stretch, so a detection right
    /// after it costs the decayed weight; a window straddling the end of the probationary period
    /// counts, with positions measured over its full width.
    #[test]
    fn probationary_windows_should_be_treated_as_nab_does() {
        let p = CostProfile::STANDARD;
        // 100 samples, probation 15; window A over 5..=9 (inside), window B over 10..=29
        // (straddling: only 15..=29 is scored).
        let mk = |scores: Vec<f64>| ScoredSeries {
            name: "p".into(),
            timestamps: (0..100).collect(),
            scores,
            windows: vec![(5, 9), (10, 29)],
        };
        // Nothing detected: one window counts, so null = −1 and perfect = 1.
        let r = score_corpus(&[mk(vec![0.0; 100])], &p).unwrap();
        assert_eq!(r.windows, 1);
        assert_relative_eq!(r.raw, -1.0, epsilon = 1e-12);
        // A detection at 15 in window B sits at −(29 − 15 + 1)/20 = −0.75 of it.
        let mut s = vec![0.0; 100];
        s[7] = 1.0; // inside A and the probationary period: ignored
        s[15] = 1.0;
        let r = score_corpus(&[mk(s)], &p).unwrap();
        let tp = scaled_sigmoid(-0.75) / scaled_sigmoid(-1.0);
        assert_relative_eq!(r.raw, tp, epsilon = 1e-12);
        assert_eq!(r.false_positives, 0);
        // A lone window inside the probationary period: the false positive just after the
        // probationary period at 16 is 7 samples past its right edge (width 5): σ(7/4) × 0.11.
        let lone = ScoredSeries {
            name: "q".into(),
            timestamps: (0..100).collect(),
            scores: {
                let mut s = vec![0.0; 100];
                s[16] = 1.0;
                s[60] = 1.0;
                s
            },
            windows: vec![(5, 9), (50, 59)],
        };
        let r = score_corpus_at(&[lone], &p, 0.5).unwrap();
        assert_eq!(r.windows, 1);
        let fp = scaled_sigmoid(7.0 / 4.0) * p.fp_weight;
        let after_b = scaled_sigmoid(1.0 / 9.0) * p.fp_weight;
        assert_relative_eq!(r.raw, -1.0 + fp + after_b, epsilon = 1e-12);
        assert_eq!(r.false_positives, 2);
    }

    #[test]
    fn threshold_should_be_optimised_over_the_whole_corpus() {
        // Series a: the window sample scores 0.8, one far false positive at 0.9.
        let mut a = vec![0.0; 100];
        a[40] = 0.8;
        a[95] = 0.9;
        // Series b: the window sample scores 0.7.
        let mut b = vec![0.0; 100];
        b[40] = 0.7;
        let corpus = [series(a), series(b)];
        let r = score_corpus(&corpus, &CostProfile::STANDARD).unwrap();
        // At 0.7 both windows are found and one FP costs 0.11: 2 - 0.11.
        assert_eq!(r.threshold, 0.7);
        assert_relative_eq!(r.raw, 2.0 - 0.11, epsilon = 1e-12);
        assert_relative_eq!(
            r.normalized,
            100.0 * (2.0 - 0.11 + 2.0) / 4.0,
            epsilon = 1e-9
        );
        // Under reward-low-FN the null detector loses 2 per window.
        let r = score_corpus(&corpus, &CostProfile::REWARD_LOW_FN).unwrap();
        assert_relative_eq!(r.null, -4.0);
    }

    /// A case small enough to score by hand (numbers worked out with NAB's formulas on paper):
    /// 20 samples (probation ⌊0.15 × 20⌋ = 3), windows over samples 5..=8 (width 4) and
    /// 14..=15 (width 2).
    /// - sample 1 scores 0.9 but lies in the probationary period: ignored;
    /// - sample 7 scores 0.8, in window 1 at p = −(8 − 7 + 1)/4 = −0.5:
    ///   σ(−0.5)/σ(−1) = 0.848283/0.986614 = 0.859793;
    /// - sample 10 scores 0.6, 2 samples past window 1: p = 2/(4 − 1), σ(2/3) = −0.931110,
    ///   so it costs 0.11 × 0.931110 = 0.102422 under the standard profile;
    /// - sample 15 scores 0.7, in window 2 at p = −(15 − 15 + 1)/2 = −0.5: 0.859793 again.
    ///
    /// Thresholds: above 0.8 both windows are missed (−2); at 0.8 → 0.859793 − 1 = −0.140207;
    /// at 0.7 → 1.719585; at 0.6 → 1.617163; at 0 every zero is a false positive. The optimum
    /// is 0.7 with raw 1.719585.
    ///
    /// The null detector (the same score everywhere) either detects nothing (−2) or everything:
    /// both windows at their left edge (p = −1, weight 1 each) and 11 false positives: samples
    /// 3 and 4 before the first window (−1 each), samples 9..=13 at 1..5 samples past window 1
    /// (σ(d/3): −0.682262, −0.931110, −0.986614, −0.997458, −0.999519) and 16..=19 past window
    /// 2 (σ(d/1): −0.986614, −0.999909, −0.999999, −1), summing to −10.583486. So the null
    /// detector scores 2 − 0.11 × 10.583486 = 0.835817, better than −2, and the normalised
    /// score is 100 × (1.719585 − 0.835817) / (2 − 0.835817) = 75.913.
    #[test]
    fn a_hand_computed_case_should_score_as_worked_out() {
        let mut scores = vec![0.0; 20];
        scores[1] = 0.9;
        scores[7] = 0.8;
        scores[10] = 0.6;
        scores[15] = 0.7;
        let s = ScoredSeries {
            name: "hand".into(),
            timestamps: (0..20).collect(),
            scores,
            windows: vec![(5, 8), (14, 15)],
        };
        let r = score_corpus(std::slice::from_ref(&s), &CostProfile::STANDARD).unwrap();
        assert_eq!(r.threshold, 0.7);
        assert_relative_eq!(r.raw, 1.719585, epsilon = 1e-6);
        assert_relative_eq!(r.null, 0.835817, epsilon = 1e-6);
        assert_relative_eq!(r.perfect, 2.0);
        assert_relative_eq!(r.normalized, 75.9132, epsilon = 1e-4);
        assert_eq!((r.detected_windows, r.false_positives), (2, 0));
        // At the fixed threshold 0.6 the false positive after window 1 counts.
        let r = score_corpus_at(std::slice::from_ref(&s), &CostProfile::STANDARD, 0.6).unwrap();
        assert_relative_eq!(r.raw, 1.617163, epsilon = 1e-6);
        assert_relative_eq!(r.normalized, 67.1154, epsilon = 1e-4);
        assert_eq!((r.detected_windows, r.false_positives), (2, 1));
        // At 0.8 only window 1 is found.
        let r = score_corpus_at(std::slice::from_ref(&s), &CostProfile::STANDARD, 0.8).unwrap();
        assert_relative_eq!(r.raw, -0.140207, epsilon = 1e-6);
        // Reward-low-FP doubles the cost of the false positive: 1.719585 − 0.204844.
        let r =
            score_corpus_at(std::slice::from_ref(&s), &CostProfile::REWARD_LOW_FP, 0.6).unwrap();
        assert_relative_eq!(r.raw, 1.514741, epsilon = 1e-6);
    }

    #[test]
    fn the_fixed_threshold_score_should_equal_the_sweep_at_the_optimum() {
        let mut a = vec![0.0; 100];
        a[40] = 0.8;
        a[95] = 0.9;
        a[60] = 0.75;
        let corpus = [series(a)];
        for p in CostProfile::all() {
            let best = score_corpus(&corpus, &p).unwrap();
            let at = score_corpus_at(&corpus, &p, best.threshold).unwrap();
            assert_relative_eq!(best.raw, at.raw, epsilon = 1e-12);
            assert_relative_eq!(best.normalized, at.normalized, epsilon = 1e-9);
        }
    }

    #[test]
    fn bad_input_should_name_the_series() {
        let mut s = series(vec![0.0; 100]);
        s.scores[7] = 1.5;
        let e = score_corpus(&[s], &CostProfile::STANDARD).unwrap_err();
        assert!(e.to_string().contains("`s`"), "{e}");
        let mut s = series(vec![0.0; 100]);
        s.timestamps[9] = 3; // goes back in time
        assert!(matches!(
            score_corpus(&[s], &CostProfile::STANDARD),
            Err(Error::TimestampsNotIncreasing { index: 9, .. })
        ));
        let s = ScoredSeries {
            windows: vec![],
            ..series(vec![0.0; 100])
        };
        assert!(matches!(
            score_corpus(&[s], &CostProfile::STANDARD),
            Err(Error::NoWindows)
        ));
    }
}
