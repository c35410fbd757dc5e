//! `series`: usage time series with a fixed step.
//!
//! A [`Series`] is a start timestamp (unix seconds, UTC), a fixed step in seconds and one finite
//! value per step. Raw samples from metrics sources or trace files become a [`Series`] through
//! [`Series::from_samples`], which resamples them onto the fixed grid.
//!
//! # Rules for bad samples
//!
//! Raw samples are never dropped or changed silently: every rule below is counted in the
//! [`SampleReport`] returned next to the series, and the one case that cannot be repaired is an
//! [`Error`] naming the offending sample by its index (readers turn it into a file and line).
//!
//! | case | rule |
//! |------|------|
//! | NaN or ±∞ value | the sample is dropped (`non_finite`); its bucket is then treated as a gap |
//! | out-of-order timestamp | samples are sorted by timestamp, stably (`out_of_order`) |
//! | duplicate timestamp | the first sample in input order is kept, later ones are dropped (`duplicates`) |
//! | gap (a step with no sample) | filled by linear interpolation between its neighbours (`gaps_filled`) |
//! | negative value | kept as it is (`negatives`); [`Series::is_non_negative`] is then `false` and forecasts are not clamped at zero |
//! | no finite sample at all | [`Error::Empty`] |
//! | a timestamp so far from the others that the grid would exceed [`MAX_POINTS`] | [`Error::SpanTooLarge`] naming the sample |
//!
//! Buckets are aligned on multiples of the step since the unix epoch (an hourly series starts on
//! the hour), which is what `pandas.Series.resample` does for steps that divide a day.
//!
//! # Example
//! ```no_run
//! use predictive_engine::series::{Aggregation, Series};
//! let samples = [(0, 1.0), (300, 3.0), (3600, 5.0)];
//! let (hourly, report) = Series::from_samples(samples, 3600, Aggregation::Mean).unwrap();
//! assert_eq!(hourly.values(), &[2.0, 5.0]);
//! assert_eq!(report.gaps_filled, 0);
//! ```

use serde::{Deserialize, Serialize};

/// The largest number of grid points a series may have (guards against a stray timestamp).
pub const MAX_POINTS: usize = 20_000_000;

/// Seconds in a day, the period of the daily calendar.
pub const DAY: i64 = 86_400;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The step is zero or negative.
    #[error("step must be a positive number of seconds, got {step}")]
    InvalidStep {
        /// The rejected step.
        step: i64,
    },
    /// No finite sample was given.
    #[error("series has no finite sample")]
    Empty,
    /// A value handed to [`Series::new`] is NaN or infinite.
    #[error("value at index {index} is not finite")]
    NonFinite {
        /// Index of the value.
        index: usize,
    },
    /// A sample lies so far from the first one that the grid would be too long.
    #[error("sample {index} at timestamp {timestamp} lies more than {max} steps from the earliest sample")]
    SpanTooLarge {
        /// Index of the sample in input order.
        index: usize,
        /// Its timestamp (unix seconds).
        timestamp: i64,
        /// [`MAX_POINTS`].
        max: usize,
    },
    /// Two series that should share a grid do not.
    #[error("series do not share a step or are not contiguous")]
    NotContiguous,
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How samples falling into one step are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// Arithmetic mean (what the benchmark protocol uses).
    #[default]
    Mean,
    /// Maximum (what capacity decisions use: the peak inside the step must fit).
    Max,
}

/// What [`Series::from_samples`] did to the raw samples; see the module docs for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SampleReport {
    /// Samples read.
    pub samples: usize,
    /// Samples dropped because their value was NaN or infinite.
    pub non_finite: usize,
    /// Samples whose timestamp was earlier than that of some sample before them (they were sorted).
    pub out_of_order: usize,
    /// Samples dropped because an earlier sample had the same timestamp.
    pub duplicates: usize,
    /// Grid steps without any sample, filled by linear interpolation.
    pub gaps_filled: usize,
    /// Samples with a negative value (kept).
    pub negatives: usize,
}

impl SampleReport {
    /// Whether any rule had to be applied (anything other than plain, ordered, gap-free data).
    pub fn is_clean(&self) -> bool {
        self.non_finite == 0
            && self.out_of_order == 0
            && self.duplicates == 0
            && self.gaps_filled == 0
            && self.negatives == 0
    }
}

/// A time series on a fixed grid: `values[i]` is the value of the step starting at
/// `start + i * step` (unix seconds).
///
/// # Guarantees
/// The step is positive, there is at least one value and every value is finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    start: i64,
    step: i64,
    values: Vec<f64>,
}

impl Series {
    /// Builds a series from values already on a grid.
    ///
    /// # Errors
    /// [`Error::InvalidStep`] if `step <= 0`, [`Error::Empty`] if `values` is empty,
    /// [`Error::NonFinite`] naming the first NaN or infinite value.
    pub fn new(start: i64, step: i64, values: Vec<f64>) -> Result<Self> {
        if step <= 0 {
            return Err(Error::InvalidStep { step });
        }
        if values.is_empty() {
            return Err(Error::Empty);
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite { index });
        }
        Ok(Self {
            start,
            step,
            values,
        })
    }

    /// Resamples raw `(timestamp, value)` samples onto a grid of `step` seconds, applying the
    /// rules of the module docs.
    ///
    /// # Errors
    /// [`Error::InvalidStep`], [`Error::Empty`] (no finite sample) or [`Error::SpanTooLarge`]
    /// naming the sample (index in input order) that stretches the grid beyond [`MAX_POINTS`].
    pub fn from_samples<I>(samples: I, step: i64, agg: Aggregation) -> Result<(Self, SampleReport)>
    where
        I: IntoIterator<Item = (i64, f64)>,
    {
        if step <= 0 {
            return Err(Error::InvalidStep { step });
        }
        let mut report = SampleReport::default();
        let mut pts: Vec<(i64, usize, f64)> = Vec::new();
        let mut last_t = i64::MIN;
        for (index, (t, v)) in samples.into_iter().enumerate() {
            report.samples += 1;
            if !v.is_finite() {
                report.non_finite += 1;
                continue;
            }
            if t < last_t {
                report.out_of_order += 1;
            }
            last_t = last_t.max(t);
            if v < 0.0 {
                report.negatives += 1;
            }
            pts.push((t, index, v));
        }
        if pts.is_empty() {
            return Err(Error::Empty);
        }
        if report.out_of_order > 0 {
            // Stable by construction: ties are broken by input index, so "first wins" below.
            pts.sort_unstable_by_key(|&(t, i, _)| (t, i));
        }
        let first = pts[0].0.div_euclid(step);
        let mut max_seen = (0usize, first);
        for &(t, index, _) in &pts {
            let b = t.div_euclid(step);
            let off = b.checked_sub(first).unwrap_or(i64::MAX);
            if off < 0 || off as u64 >= MAX_POINTS as u64 {
                return Err(Error::SpanTooLarge {
                    index,
                    timestamp: t,
                    max: MAX_POINTS,
                });
            }
            if b > max_seen.1 {
                max_seen = (index, b);
            }
        }
        let n = (max_seen.1 - first + 1) as usize;
        let mut acc = vec![f64::NAN; n];
        let mut count = vec![0u32; n];
        let mut prev_t = None;
        for &(t, _, v) in &pts {
            if prev_t == Some(t) {
                report.duplicates += 1;
                continue;
            }
            prev_t = Some(t);
            let b = (t.div_euclid(step) - first) as usize;
            let c = &mut count[b];
            let a = &mut acc[b];
            // A running mean cannot overflow where a sum of large finite values would.
            let k = f64::from(*c);
            *a = match (agg, *c) {
                (_, 0) => v,
                (Aggregation::Mean, _) => *a * (k / (k + 1.0)) + v / (k + 1.0),
                (Aggregation::Max, _) => a.max(v),
            };
            *c += 1;
        }
        report.gaps_filled = interpolate_gaps(&mut acc);
        Ok((
            Self {
                start: first * step,
                step,
                values: acc,
            },
            report,
        ))
    }

    /// Resamples this series onto a grid of `step` seconds.
    ///
    /// Each value counts as one sample at the start of its step, so going to a coarser step
    /// aggregates and going to a finer one interpolates.
    ///
    /// # Errors
    /// [`Error::InvalidStep`] if `step <= 0`.
    pub fn resample(&self, step: i64, agg: Aggregation) -> Result<Self> {
        let samples = self.iter();
        Self::from_samples(samples, step, agg).map(|(s, _)| s)
    }

    /// Timestamp (unix seconds) of the first step.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// Step in seconds.
    pub fn step(&self) -> i64 {
        self.step
    }

    /// Values, one per step.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Consumes the series and returns its values.
    pub fn into_values(self) -> Vec<f64> {
        self.values
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Always `false`: a series holds at least one value. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Timestamp of step `i` (which may lie beyond the end, for forecasts).
    pub fn timestamp(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    /// Timestamp just after the last step (where a forecast starts).
    pub fn end(&self) -> i64 {
        self.timestamp(self.values.len())
    }

    /// Whether no value is negative (usage, which forecasts then never put below zero).
    pub fn is_non_negative(&self) -> bool {
        self.values.iter().all(|&v| v >= 0.0)
    }

    /// `(timestamp, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.values
            .iter()
            .enumerate()
            .map(|(i, &v)| (self.timestamp(i), v))
    }

    /// The first `n` steps (all of them if `n >= len`), or `None` if `n == 0`.
    pub fn head(&self, n: usize) -> Option<Self> {
        let n = n.min(self.len());
        (n > 0).then(|| Self {
            start: self.start,
            step: self.step,
            values: self.values[..n].to_vec(),
        })
    }

    /// The last `n` steps (all of them if `n >= len`), or `None` if `n == 0`.
    pub fn tail(&self, n: usize) -> Option<Self> {
        let n = n.min(self.len());
        let k = self.len() - n;
        (n > 0).then(|| Self {
            start: self.timestamp(k),
            step: self.step,
            values: self.values[k..].to_vec(),
        })
    }

    /// Splits into the first `at` steps and the rest; `None` if either part would be empty.
    pub fn split_at(&self, at: usize) -> Option<(Self, Self)> {
        if at == 0 || at >= self.len() {
            return None;
        }
        let a = self.head(at)?;
        let b = self.tail(self.len() - at)?;
        Some((a, b))
    }

    /// Appends values that continue the grid.
    ///
    /// # Errors
    /// [`Error::NonFinite`] (index into `values`) for a NaN or infinite value; nothing is
    /// appended then.
    pub fn extend_from_slice(&mut self, values: &[f64]) -> Result<()> {
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite { index });
        }
        self.values.extend_from_slice(values);
        Ok(())
    }

    /// Seconds since midnight UTC of step `i`.
    pub fn second_of_day(&self, i: usize) -> i64 {
        self.timestamp(i).rem_euclid(DAY)
    }

    /// Day of week of step `i`, 0 = Monday … 6 = Sunday (UTC).
    pub fn day_of_week(&self, i: usize) -> u8 {
        day_of_week(self.timestamp(i))
    }
}

/// Day of week of a unix timestamp, 0 = Monday … 6 = Sunday (UTC). 1970-01-01 was a Thursday.
pub fn day_of_week(timestamp: i64) -> u8 {
    (timestamp.div_euclid(DAY) + 3).rem_euclid(7) as u8
}

/// Fills NaN runs by linear interpolation between the nearest finite neighbours (ends are
/// finite by construction) and returns how many were filled.
fn interpolate_gaps(v: &mut [f64]) -> usize {
    let mut filled = 0;
    let mut i = 0;
    while i < v.len() {
        if v[i].is_nan() {
            let lo = i.checked_sub(1);
            let mut j = i;
            while j < v.len() && v[j].is_nan() {
                j += 1;
            }
            let (a, b) = match (lo, j < v.len()) {
                (Some(l), true) => (v[l], v[j]),
                (Some(l), false) => (v[l], v[l]),
                (None, true) => (v[j], v[j]),
                (None, false) => (0.0, 0.0),
            };
            let span = (j - i + 1) as f64;
            for (k, x) in v[i..j].iter_mut().enumerate() {
                let w = (k + 1) as f64 / span;
                *x = a * (1.0 - w) + b * w;
            }
            filled += j - i;
            i = j;
        } else {
            i += 1;
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn from_samples_should_average_per_step_and_align_on_the_epoch() {
        let (s, r) = Series::from_samples(
            [(3601, 1.0), (3900, 3.0), (7300, 5.0)],
            3600,
            Aggregation::Mean,
        )
        .unwrap();
        assert_eq!(s.start(), 3600);
        assert_eq!(s.values(), &[2.0, 5.0]);
        assert!(r.is_clean());
    }

    #[test]
    fn from_samples_should_take_the_max_when_asked() {
        let (s, _) =
            Series::from_samples([(0, 1.0), (10, 3.0), (20, 2.0)], 60, Aggregation::Max).unwrap();
        assert_eq!(s.values(), &[3.0]);
    }

    #[test]
    fn rules_table_should_be_applied_and_counted() {
        /// One rule: (name, input samples, expected values, expected report).
        type Case = (&'static str, Vec<(i64, f64)>, Vec<f64>, SampleReport);
        let cases: [Case; 5] = [
            (
                "nan dropped then gap filled",
                vec![(0, 1.0), (60, f64::NAN), (120, 3.0)],
                vec![1.0, 2.0, 3.0],
                SampleReport {
                    samples: 3,
                    non_finite: 1,
                    gaps_filled: 1,
                    ..Default::default()
                },
            ),
            (
                "out of order sorted",
                vec![(120, 3.0), (0, 1.0), (60, 2.0)],
                vec![1.0, 2.0, 3.0],
                SampleReport {
                    samples: 3,
                    out_of_order: 2,
                    ..Default::default()
                },
            ),
            (
                "duplicate keeps first",
                vec![(0, 1.0), (0, 9.0), (60, 2.0)],
                vec![1.0, 2.0],
                SampleReport {
                    samples: 3,
                    duplicates: 1,
                    ..Default::default()
                },
            ),
            (
                "negatives kept",
                vec![(0, -1.0), (60, 2.0)],
                vec![-1.0, 2.0],
                SampleReport {
                    samples: 2,
                    negatives: 1,
                    ..Default::default()
                },
            ),
            (
                "long gap interpolated",
                vec![(0, 0.0), (240, 4.0)],
                vec![0.0, 1.0, 2.0, 3.0, 4.0],
                SampleReport {
                    samples: 2,
                    gaps_filled: 3,
                    ..Default::default()
                },
            ),
        ];
        for (name, input, want, report) in cases {
            let (s, r) = Series::from_samples(input, 60, Aggregation::Mean).unwrap();
            assert_eq!(s.values(), &want[..], "{name}");
            assert_eq!(r, report, "{name}");
        }
    }

    #[test]
    fn bad_input_should_be_rejected_with_a_named_sample() {
        assert_eq!(
            Series::from_samples([(0, f64::NAN)], 60, Aggregation::Mean).unwrap_err(),
            Error::Empty
        );
        assert_eq!(
            Series::from_samples([(0, 1.0)], 0, Aggregation::Mean).unwrap_err(),
            Error::InvalidStep { step: 0 }
        );
        let err = Series::from_samples(
            [(0, 1.0), (60, 1.0), (i64::MAX / 2, 1.0)],
            60,
            Aggregation::Mean,
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::SpanTooLarge { index: 2, .. }),
            "{err:?}"
        );
        assert_eq!(
            Series::new(0, 60, vec![1.0, f64::INFINITY]).unwrap_err(),
            Error::NonFinite { index: 1 }
        );
    }

    #[test]
    fn calendar_helpers_should_match_known_dates() {
        // 2013-07-01 00:00:00 UTC was a Monday.
        assert_eq!(day_of_week(1_372_636_800), 0);
        // 1970-01-01 was a Thursday.
        assert_eq!(day_of_week(0), 3);
        assert_eq!(day_of_week(-1), 2);
    }

    #[test]
    fn split_and_tail_should_keep_the_grid() {
        let s = Series::new(100, 10, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let (a, b) = s.split_at(3).unwrap();
        assert_eq!(a.values(), &[1.0, 2.0, 3.0]);
        assert_eq!(b.start(), 130);
        assert_eq!(s.end(), 140);
        assert!(s.split_at(0).is_none());
        assert_eq!(
            s.resample(20, Aggregation::Max).unwrap().values(),
            &[2.0, 4.0]
        );
    }

    proptest! {
        #[test]
        fn from_samples_should_never_panic_and_stay_finite(
            raw in proptest::collection::vec((-100_000i64..100_000, proptest::num::f64::ANY), 0..200),
            step in 1i64..5000,
        ) {
            match Series::from_samples(raw.clone(), step, Aggregation::Mean) {
                Ok((s, r)) => {
                    prop_assert!(s.values().iter().all(|v| v.is_finite()));
                    prop_assert_eq!(r.samples, raw.len());
                    prop_assert_eq!(s.start().rem_euclid(step), 0);
                }
                Err(e) => prop_assert_eq!(e, Error::Empty),
            }
        }
    }
}
