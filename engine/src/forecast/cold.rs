//! Cold start: forecasts for series with little history of their own.
//!
//! A new series borrows the *shape* of its day from a prior and takes its *level* from its own
//! samples. The prior is either the centroid of its cluster ([`ProfileClusters`]: k-means on
//! daily profiles normalised by their mean) or a named source series (a clone of an existing
//! workload). Intervals are normal around that path, with a spread taken from the prior, and
//! widened by `1 + 2 (1 - n / 3m)` for `n` own samples and season `m`: wide on the first sample,
//! narrowing as history grows. From three seasons of own history on, [`forecast_cold`] is the
//! ordinary calibrated [`super::forecast`].
//!
//! ```no_run
//! use predictive_engine::forecast::{cold, ForecastParams};
//! use predictive_engine::series::Series;
//! let fleet: Vec<Series> = vec![/* existing workloads */];
//! let clusters = cold::ProfileClusters::fit(&fleet, 24, 4, 7).unwrap();
//! let newcomer = Series::new(0, 3600, vec![3.0, 4.0, 5.0]).unwrap();
//! let params = ForecastParams::new(48).check(3600).unwrap();
//! let f = cold::forecast_cold(&newcomer, cold::Prior::Cluster(&clusters), &params).unwrap();
//! ```

use super::{calibrate, forecast, Forecast, ModelKind, Result, ValidForecastParams};
use crate::series::Series;

/// Errors of cold starts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ColdError {
    /// No series had a full season with a non-zero mean.
    #[error("no series has a full season with a non-zero mean to build a profile from")]
    NoProfiles,
    /// `k` or the season is zero.
    #[error("cluster count and season must be at least 1")]
    InvalidParams,
}

/// Calendar slot of a timestamp for a season of `m` steps of `step` seconds.
fn slot(ts: i64, step: i64, m: usize) -> usize {
    ts.div_euclid(step).rem_euclid(m as i64) as usize
}

/// The daily profile of a series: mean by slot divided by the overall mean, and the relative
/// spread (root mean square of `(y - profile * mean) / mean`). `None` without a full season or
/// with a mean of zero.
pub fn daily_profile(series: &Series, season: usize) -> Option<(Vec<f64>, f64)> {
    if season == 0 || series.len() < season {
        return None;
    }
    let mut sum = vec![0.0; season];
    let mut cnt = vec![0usize; season];
    for (ts, v) in series.iter() {
        let s = slot(ts, series.step(), season);
        sum[s] += v;
        cnt[s] += 1;
    }
    let mean = series.values().iter().sum::<f64>() / series.len() as f64;
    if !(mean.abs() > 1e-12) || !mean.is_finite() {
        return None;
    }
    let prof: Vec<f64> = sum
        .iter()
        .zip(&cnt)
        .map(|(s, &c)| s / c.max(1) as f64 / mean)
        .collect();
    let ss: f64 = series
        .iter()
        .map(|(ts, v)| {
            let r = (v - prof[slot(ts, series.step(), season)] * mean) / mean;
            r * r
        })
        .sum();
    let spread = (ss / series.len() as f64).sqrt();
    prof.iter().all(|v| v.is_finite()).then_some((prof, spread))
}

/// Clusters of normalised daily profiles (k-means, deterministic seeding).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileClusters {
    season: usize,
    centroids: Vec<Vec<f64>>,
    /// Mean relative spread of the members of each cluster.
    spreads: Vec<f64>,
}

impl ProfileClusters {
    /// Clusters the daily profiles of `series` into at most `k` groups.
    ///
    /// Seeding is k-means++ driven by a fixed-seed generator (`seed`), so equal inputs give
    /// equal clusters; 50 Lloyd iterations at most.
    ///
    /// # Errors
    /// [`ColdError::InvalidParams`] for `k == 0` or `season == 0`, [`ColdError::NoProfiles`]
    /// when no series yields a profile.
    pub fn fit(series: &[Series], season: usize, k: usize, seed: u64) -> Result<Self, ColdError> {
        if k == 0 || season == 0 {
            return Err(ColdError::InvalidParams);
        }
        let (profiles, spreads): (Vec<Vec<f64>>, Vec<f64>) = series
            .iter()
            .filter_map(|s| daily_profile(s, season))
            .unzip();
        if profiles.is_empty() {
            return Err(ColdError::NoProfiles);
        }
        let k = k.min(profiles.len());
        let mut rng = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let mut next = move || {
            rng = rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut centroids =
            vec![profiles[(next() * profiles.len() as f64) as usize % profiles.len()].clone()];
        while centroids.len() < k {
            let d: Vec<f64> = profiles.iter().map(|p| nearest(&centroids, p).1).collect();
            let total: f64 = d.iter().sum();
            if !(total > 0.0) {
                break;
            }
            let mut target = next() * total;
            let mut pick = profiles.len() - 1;
            for (i, di) in d.iter().enumerate() {
                if target < *di {
                    pick = i;
                    break;
                }
                target -= di;
            }
            centroids.push(profiles[pick].clone());
        }
        let mut assign = vec![0usize; profiles.len()];
        for _ in 0..50 {
            let new: Vec<usize> = profiles.iter().map(|p| nearest(&centroids, p).0).collect();
            let changed = new != assign;
            assign = new;
            for (c, centroid) in centroids.iter_mut().enumerate() {
                let members: Vec<&Vec<f64>> = profiles
                    .iter()
                    .zip(&assign)
                    .filter(|(_, &a)| a == c)
                    .map(|(p, _)| p)
                    .collect();
                if !members.is_empty() {
                    for (j, v) in centroid.iter_mut().enumerate() {
                        *v = members.iter().map(|p| p[j]).sum::<f64>() / members.len() as f64;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let spreads = (0..centroids.len())
            .map(|c| {
                let (s, n) = spreads
                    .iter()
                    .zip(&assign)
                    .filter(|(_, &a)| a == c)
                    .fold((0.0, 0usize), |(s, n), (v, _)| (s + v, n + 1));
                if n == 0 {
                    0.5
                } else {
                    s / n as f64
                }
            })
            .collect();
        Ok(Self {
            season,
            centroids,
            spreads,
        })
    }

    /// The centroids (normalised daily profiles).
    pub fn centroids(&self) -> &[Vec<f64>] {
        &self.centroids
    }

    /// Season (steps per profile).
    pub fn season(&self) -> usize {
        self.season
    }

    /// The cluster whose centroid best matches the samples of `series` (only the observed
    /// slots are compared, after scaling both to the same mean over those slots).
    pub fn assign(&self, series: &Series) -> usize {
        let m = self.season;
        let mean = series.values().iter().sum::<f64>() / series.len() as f64;
        let mut best = (0, f64::INFINITY);
        for (c, cen) in self.centroids.iter().enumerate() {
            let cm = series
                .iter()
                .map(|(ts, _)| cen[slot(ts, series.step(), m)])
                .sum::<f64>()
                / series.len() as f64;
            let scale = if cm.abs() > 1e-12 && mean.abs() > 1e-12 {
                mean / cm
            } else {
                1.0
            };
            let d: f64 = series
                .iter()
                .map(|(ts, v)| {
                    let e = v - scale * cen[slot(ts, series.step(), m)];
                    e * e
                })
                .sum();
            if d < best.1 {
                best = (c, d);
            }
        }
        best.0
    }
}

fn nearest(centroids: &[Vec<f64>], p: &[f64]) -> (usize, f64) {
    centroids
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                i,
                c.iter().zip(p).map(|(a, b)| (a - b) * (a - b)).sum::<f64>(),
            )
        })
        .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a })
}

/// Where a cold series borrows its daily shape from.
#[derive(Debug, Clone, Copy)]
pub enum Prior<'a> {
    /// The centroid of the nearest cluster.
    Cluster(&'a ProfileClusters),
    /// A named source series (the workload this one clones).
    Source(&'a Series),
}

/// How much wider than the prior's spread a cold forecast is after `n` own samples.
pub fn cold_widening(n: usize, season: usize) -> f64 {
    let full = 3.0 * season.max(1) as f64;
    1.0 + 2.0 * (1.0 - n as f64 / full).max(0.0)
}

/// Forecasts `history` with the prior's daily shape while it holds fewer than three seasons;
/// from then on this is [`super::forecast`].
///
/// # Errors
/// As [`super::forecast`]; a prior without a usable profile falls back to that too.
pub fn forecast_cold(
    history: &Series,
    prior: Prior<'_>,
    params: &ValidForecastParams,
) -> Result<Forecast> {
    let m = params.season();
    let n = history.len();
    if n >= m.saturating_mul(3) {
        return forecast(history, params);
    }
    let shape = match prior {
        Prior::Cluster(c) if c.season == m => {
            let i = c.assign(history);
            Some((c.centroids[i].clone(), c.spreads[i]))
        }
        Prior::Cluster(_) => None,
        Prior::Source(s) => daily_profile(s, m),
    };
    let Some((prof, spread)) = shape else {
        return forecast(history, params);
    };
    let step = history.step();
    let mean = history.values().iter().sum::<f64>() / n as f64;
    let pm = history
        .iter()
        .map(|(ts, _)| prof[slot(ts, step, m)])
        .sum::<f64>()
        / n as f64;
    let level = if pm.abs() > 1e-12 { mean / pm } else { mean };
    let own = calibrate::step_sigma(history.values());
    let sigma = (spread * level.abs()).max(own) * cold_widening(n, m);
    let h = params.horizon();
    let start = history.end();
    let values = params
        .levels()
        .as_slice()
        .iter()
        .map(|&q| {
            let z = calibrate::normal_quantile(q);
            (0..h)
                .map(|t| level * prof[slot(start + t as i64 * step, step, m)] + z * sigma)
                .collect()
        })
        .collect();
    Forecast::new(
        start,
        step,
        ModelKind::SeasonalNaive,
        params.levels().clone(),
        values,
        history.is_non_negative().then_some(0.0),
    )
}
