//! The five reference allocation policies of the benchmark protocol (PROTOCOL.md §2).
//!
//! Every baseline decides the allocation `a[t]` from usage up to step `t - lead` only, exactly as
//! the protocol specifies, so that the project's own policy is compared against what users run
//! today under the same provisioning delay.

use std::collections::VecDeque;

/// Target utilisation of the `reactive` baseline (target tracking at 70 %).
pub const REACTIVE_TARGET_UTILISATION: f64 = 0.7;
/// Percentile of the `vpa` baseline's decaying histogram.
pub const VPA_PERCENTILE: f64 = 0.9;
/// Safety factor the `vpa` baseline applies to its percentile.
pub const VPA_SAFETY: f64 = 1.15;
/// Growth ratio between consecutive buckets of the `vpa` histogram (the VPA recommender's 5 %).
pub const VPA_BUCKET_RATIO: f64 = 1.05;

/// One of the protocol's baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Baseline {
    /// The maximum of the warm-up period, held constant (hand-set limits).
    PeakStatic,
    /// Last observed usage divided by 0.7 (target tracking at 70 % utilisation).
    Reactive,
    /// 90th percentile × 1.15 of a histogram of all past samples decaying with a 24 h half-life.
    Vpa,
    /// Maximum over the trailing 24 h (a moving-window max recommender).
    WindowMax,
    /// `a[t] = u[t]`: the physical limit, which no causal policy can reach.
    Oracle,
}

impl Baseline {
    /// All baselines, in the order the benchmark prints them.
    pub const ALL: [Baseline; 5] = [
        Baseline::PeakStatic,
        Baseline::Reactive,
        Baseline::Vpa,
        Baseline::WindowMax,
        Baseline::Oracle,
    ];

    /// The name used in the benchmark's `policy` field.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::PeakStatic => "peak-static",
            Baseline::Reactive => "reactive",
            Baseline::Vpa => "vpa",
            Baseline::WindowMax => "window-max",
            Baseline::Oracle => "oracle",
        }
    }
}

/// Time geometry shared by every policy of one replay, in steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Provisioning delay: `a[t]` may use usage up to `t - lead` only. At least 1.
    pub lead: usize,
    /// Steps of the warm-up period (not scored).
    pub warmup: usize,
    /// Steps in 24 hours (the `vpa` half-life and the `window-max` window).
    pub day: usize,
}

/// Allocations of `baseline` for every step of `usage`.
///
/// Steps before any usage is visible (`t < lead`) get the first sample's value for the causal
/// baselines; they fall inside the warm-up and are never scored.
///
/// # Guarantees
/// `a[t]` depends on `usage[..=t - lead]` only, except for [`Baseline::Oracle`].
pub fn allocate(baseline: Baseline, usage: &[f64], g: Geometry) -> Vec<f64> {
    let lead = g.lead.max(1);
    match baseline {
        Baseline::Oracle => usage.to_vec(),
        Baseline::PeakStatic => peak_static(usage, lead, g.warmup),
        Baseline::Reactive => causal(usage, lead, |u, _| u / REACTIVE_TARGET_UTILISATION),
        Baseline::Vpa => vpa(usage, lead, g.day.max(1)),
        Baseline::WindowMax => window_max(usage, lead, g.day.max(1)),
    }
}

/// Applies `f(latest visible usage, visible index)` at every step with the lead shift.
fn causal(usage: &[f64], lead: usize, f: impl Fn(f64, usize) -> f64) -> Vec<f64> {
    (0..usage.len())
        .map(|t| {
            let s = t.saturating_sub(lead);
            f(usage[s], s)
        })
        .collect()
}

fn peak_static(usage: &[f64], lead: usize, warmup: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(usage.len());
    let mut peak = f64::NEG_INFINITY;
    let mut seen = 0usize; // samples of the warm-up folded into `peak`
    for t in 0..usage.len() {
        // Visible warm-up samples: indices <= t - lead and < warmup.
        let visible = if t >= lead {
            (t - lead + 1).min(warmup)
        } else {
            0
        };
        while seen < visible {
            peak = peak.max(usage[seen]);
            seen += 1;
        }
        out.push(if seen == 0 {
            usage.first().copied().unwrap_or(0.0)
        } else {
            peak
        });
    }
    out
}

fn window_max(usage: &[f64], lead: usize, window: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(usage.len());
    let mut deque: VecDeque<usize> = VecDeque::new(); // indices with decreasing values
    let mut next = 0usize; // next sample index to push
    for t in 0..usage.len() {
        if t < lead {
            out.push(usage.first().copied().unwrap_or(0.0));
            continue;
        }
        let s = t - lead;
        while next <= s {
            while deque.back().is_some_and(|&j| usage[j] <= usage[next]) {
                deque.pop_back();
            }
            deque.push_back(next);
            next += 1;
        }
        while deque.front().is_some_and(|&j| j + window <= s) {
            deque.pop_front();
        }
        out.push(usage[*deque.front().expect("the window holds sample s")]);
    }
    out
}

/// The VPA recommender's decaying histogram: exponentially growing buckets, sample weights that
/// double every half-life, percentile read at the upper end of the bucket that reaches it.
#[derive(Debug, Clone)]
pub struct DecayingHistogram {
    first_bucket: f64,
    ratio: f64,
    half_life: f64,
    weights: Vec<f64>,
    total: f64,
    /// Time whose weight is 1; advanced on renormalisation to keep weights finite.
    reference: f64,
}

impl DecayingHistogram {
    /// An empty histogram whose first bucket spans `[0, first_bucket)` and whose bucket sizes
    /// grow by `ratio`; samples lose half their weight every `half_life` time units.
    pub fn new(first_bucket: f64, ratio: f64, half_life: f64) -> Self {
        Self {
            first_bucket: first_bucket.max(f64::MIN_POSITIVE),
            ratio,
            half_life,
            weights: Vec::new(),
            total: 0.0,
            reference: 0.0,
        }
    }

    fn bucket(&self, value: f64) -> usize {
        let v = value.max(0.0);
        // start_i = first * (ratio^i - 1) / (ratio - 1)
        let i = (1.0 + v * (self.ratio - 1.0) / self.first_bucket).ln() / self.ratio.ln();
        i.floor().max(0.0) as usize
    }

    fn bucket_start(&self, i: usize) -> f64 {
        self.first_bucket * (self.ratio.powi(i as i32) - 1.0) / (self.ratio - 1.0)
    }

    /// Adds a sample observed at `time`; later samples weigh more.
    pub fn add(&mut self, value: f64, time: f64) {
        let mut w = ((time - self.reference) / self.half_life).exp2();
        if w > 1e100 {
            let scale = 1.0 / w;
            self.weights.iter_mut().for_each(|x| *x *= scale);
            self.total *= scale;
            self.reference = time;
            w = 1.0;
        }
        let i = self.bucket(value);
        if i >= self.weights.len() {
            self.weights.resize(i + 1, 0.0);
        }
        self.weights[i] += w;
        self.total += w;
    }

    /// The `p`-percentile: the upper end of the first bucket whose cumulative weight reaches
    /// `p` of the total; `None` while empty.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.total <= 0.0 {
            return None;
        }
        let threshold = p * self.total;
        let mut cumulative = 0.0;
        for (i, w) in self.weights.iter().enumerate() {
            cumulative += w;
            if cumulative >= threshold && *w > 0.0 {
                return Some(self.bucket_start(i + 1));
            }
        }
        Some(self.bucket_start(self.weights.len()))
    }
}

fn vpa(usage: &[f64], lead: usize, day: usize) -> Vec<f64> {
    // Bucket scale: 1/1000 of the first positive sample seen, so that the 5 % bucket geometry
    // holds whatever the unit (MHz, KB, percent, bytes). Chosen from visible data only.
    let mut hist: Option<DecayingHistogram> = None;
    let mut out = Vec::with_capacity(usage.len());
    let mut next = 0usize;
    for t in 0..usage.len() {
        if t >= lead {
            let s = t - lead;
            while next <= s {
                let u = usage[next];
                if hist.is_none() && u > 0.0 {
                    hist = Some(DecayingHistogram::new(
                        u * 1e-3,
                        VPA_BUCKET_RATIO,
                        day as f64,
                    ));
                }
                if let Some(h) = hist.as_mut() {
                    h.add(u, next as f64);
                }
                next += 1;
            }
        }
        let a = hist
            .as_ref()
            .and_then(|h| h.percentile(VPA_PERCENTILE))
            .map_or(0.0, |p| p * VPA_SAFETY);
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Geometry = Geometry {
        lead: 2,
        warmup: 3,
        day: 3,
    };

    #[test]
    fn reactive_should_divide_usage_seen_lead_steps_ago_by_seven_tenths() {
        let u = [7.0, 14.0, 21.0, 7.0, 0.0];
        let a = allocate(Baseline::Reactive, &u, G);
        // a[t] = u[t-2] / 0.7 for t >= 2.
        for (got, want) in a[2..].iter().zip([10.0, 20.0, 30.0]) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
    }

    #[test]
    fn peak_static_should_hold_the_warm_up_maximum() {
        let u = [1.0, 5.0, 2.0, 9.0, 3.0, 1.0];
        let a = allocate(Baseline::PeakStatic, &u, G);
        // warm-up = u[0..3], max 5, fully visible from t = 2 + 2 = 4.
        assert_eq!(&a[4..], &[5.0, 5.0]);
        // t = 3 sees u[0..=1] only.
        assert_eq!(a[3], 5.0);
        assert_eq!(a[2], 1.0);
    }

    #[test]
    fn window_max_should_take_the_trailing_day_before_the_lead() {
        let u = [1.0, 5.0, 2.0, 0.0, 3.0, 1.0, 0.0];
        let a = allocate(Baseline::WindowMax, &u, G);
        // a[t] = max(u[t-2-2 ..= t-2]) with a 3-step day.
        assert_eq!(&a[2..], &[1.0, 5.0, 5.0, 5.0, 3.0]);
    }

    #[test]
    fn oracle_should_equal_usage() {
        let u = [1.0, 2.0, 3.0];
        assert_eq!(allocate(Baseline::Oracle, &u, G), u.to_vec());
    }

    #[test]
    fn vpa_should_return_the_bucket_end_of_the_weighted_percentile_times_safety() {
        // One sample: the percentile is the end of its bucket.
        let u = [100.0, 100.0, 100.0];
        let a = allocate(Baseline::Vpa, &u, G);
        let h = {
            let mut h = DecayingHistogram::new(0.1, VPA_BUCKET_RATIO, 3.0);
            h.add(100.0, 0.0);
            h
        };
        let end = h.percentile(0.9).unwrap();
        assert!(end > 100.0 && end <= 100.0 * 1.05 + 0.1, "bucket end {end}");
        assert!((a[2] - end * 1.15).abs() < 1e-9);
    }

    #[test]
    fn decaying_histogram_should_favour_recent_samples() {
        // 10 old samples at 1.0 (weight 2^0) vs one recent at 10.0, four half-lives later
        // (weight 2^4 = 16 > 0.9 * 26): the 90th percentile is the recent value's bucket.
        let mut h = DecayingHistogram::new(0.01, 1.05, 1.0);
        for _ in 0..10 {
            h.add(1.0, 0.0);
        }
        h.add(10.0, 4.0);
        let p = h.percentile(0.9).unwrap();
        assert!(p > 10.0 && p < 10.6, "{p}");
        // The median sits with the recent sample too (16 of 26).
        assert!(h.percentile(0.5).unwrap() > 10.0);
        // The 30th percentile still reaches the old samples (10 of 26 = 38 %).
        assert!(h.percentile(0.3).unwrap() < 1.1);
    }

    #[test]
    fn decaying_histogram_should_stay_finite_over_long_replays() {
        let mut h = DecayingHistogram::new(0.01, 1.05, 1.0);
        for t in 0..5000 {
            h.add(2.0, t as f64);
        }
        let p = h.percentile(0.9).unwrap();
        assert!(p.is_finite() && p > 2.0 && p < 2.2);
    }
}
