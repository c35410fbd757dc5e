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
    if !mean.is_finite() || mean.abs() <= 1e-12 {
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
    /// Members of each cluster at the fit.
    sizes: Vec<usize>,
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
        let profiles: Vec<(Vec<f64>, f64)> = series
            .iter()
            .filter_map(|s| daily_profile(s, season))
            .collect();
        Self::fit_profiles(&profiles, season, k, seed)
    }

    /// Clusters profiles computed beforehand (each as [`daily_profile`] gives it: the
    /// normalised profile and its relative spread), e.g. kept from earlier reads of each
    /// series, so a fleet's profiles need not be recomputed from its whole history at once.
    /// Profiles whose length is not `season`, or with a non-finite value, are left out.
    ///
    /// # Errors
    /// As [`ProfileClusters::fit`].
    pub fn fit_profiles(
        profiles: &[(Vec<f64>, f64)],
        season: usize,
        k: usize,
        seed: u64,
    ) -> Result<Self, ColdError> {
        if k == 0 || season == 0 {
            return Err(ColdError::InvalidParams);
        }
        let (profiles, spreads): (Vec<&[f64]>, Vec<f64>) = profiles
            .iter()
            .filter(|(p, s)| p.len() == season && s.is_finite() && p.iter().all(|v| v.is_finite()))
            .map(|(p, s)| (p.as_slice(), *s))
            .unzip();
        if profiles.is_empty() {
            return Err(ColdError::NoProfiles);
        }
        let k = k.min(profiles.len());
        // The seed is scrambled once so that nearby seeds start far apart.
        let mut rng =
            crate::noise::Mmix::new(seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        let mut next = move || rng.uniform();
        let mut centroids =
            vec![profiles[(next() * profiles.len() as f64) as usize % profiles.len()].to_vec()];
        while centroids.len() < k {
            let d: Vec<f64> = profiles.iter().map(|p| nearest(&centroids, p).1).collect();
            let total: f64 = d.iter().sum();
            // Not a positive number (zero, negative or NaN): nothing left to spread over.
            if total.is_nan() || total <= 0.0 {
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
            centroids.push(profiles[pick].to_vec());
        }
        let mut assign = vec![0usize; profiles.len()];
        let mut sums = vec![vec![0.0; season]; centroids.len()];
        let mut counts = vec![0usize; centroids.len()];
        for _ in 0..50 {
            let new: Vec<usize> = profiles.iter().map(|p| nearest(&centroids, p).0).collect();
            let changed = new != assign;
            assign = new;
            for s in &mut sums {
                s.iter_mut().for_each(|v| *v = 0.0);
            }
            counts.iter_mut().for_each(|c| *c = 0);
            for (p, &a) in profiles.iter().zip(&assign) {
                counts[a] += 1;
                for (acc, v) in sums[a].iter_mut().zip(p.iter()) {
                    *acc += v;
                }
            }
            for ((centroid, sum), &n) in centroids.iter_mut().zip(&sums).zip(&counts) {
                if n > 0 {
                    for (v, s) in centroid.iter_mut().zip(sum) {
                        *v = s / n as f64;
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
        let mut sizes = vec![0usize; centroids.len()];
        for &a in &assign {
            sizes[a] += 1;
        }
        Ok(Self {
            season,
            centroids,
            spreads,
            sizes,
        })
    }

    /// Clusters from stored parts (centroids, spreads and member counts, as
    /// [`ProfileClusters::centroids`], [`ProfileClusters::spreads`] and
    /// [`ProfileClusters::sizes`] return them).
    ///
    /// # Errors
    /// [`ColdError::InvalidParams`] when there is no centroid, a centroid's length is not
    /// `season`, a value is not finite, or the three lists differ in length.
    pub fn from_parts(
        season: usize,
        centroids: Vec<Vec<f64>>,
        spreads: Vec<f64>,
        sizes: Vec<usize>,
    ) -> Result<Self, ColdError> {
        let ok = season > 0
            && !centroids.is_empty()
            && centroids.len() == spreads.len()
            && centroids.len() == sizes.len()
            && centroids
                .iter()
                .all(|c| c.len() == season && c.iter().all(|v| v.is_finite()))
            && spreads.iter().all(|s| s.is_finite() && *s >= 0.0);
        if !ok {
            return Err(ColdError::InvalidParams);
        }
        Ok(Self {
            season,
            centroids,
            spreads,
            sizes,
        })
    }

    /// The centroids (normalised daily profiles).
    pub fn centroids(&self) -> &[Vec<f64>] {
        &self.centroids
    }

    /// Mean relative spread of each cluster's members.
    pub fn spreads(&self) -> &[f64] {
        &self.spreads
    }

    /// Members of each cluster at the fit.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The cluster with the most members (the first of equals).
    pub fn largest(&self) -> usize {
        self.sizes
            .iter()
            .enumerate()
            .fold(
                (0, 0),
                |best, (i, &n)| if n > best.1 { (i, n) } else { best },
            )
            .0
    }

    /// Season (steps per profile).
    pub fn season(&self) -> usize {
        self.season
    }

    /// Squared error of the samples of `series` against each centroid, after scaling the
    /// centroid to the samples' mean over the observed slots.
    fn distances(&self, series: &Series) -> Vec<f64> {
        let m = self.season;
        let mean = series.values().iter().sum::<f64>() / series.len() as f64;
        self.centroids
            .iter()
            .map(|cen| {
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
                series
                    .iter()
                    .map(|(ts, v)| {
                        let e = v - scale * cen[slot(ts, series.step(), m)];
                        e * e
                    })
                    .sum()
            })
            .collect()
    }

    /// The cluster whose centroid best matches the samples of `series` (only the observed
    /// slots are compared, after scaling both to the same mean over those slots).
    pub fn assign(&self, series: &Series) -> usize {
        let mut best = (0, f64::INFINITY);
        for (c, d) in self.distances(series).into_iter().enumerate() {
            if d < best.1 {
                best = (c, d);
            }
        }
        best.0
    }

    /// Like [`ProfileClusters::assign`], but keeps `fallback` unless another cluster matches
    /// the samples clearly better (at most half of `fallback`'s squared error). A few samples
    /// from a flat stretch of the day fit every profile about equally and are no evidence
    /// against the fallback (e.g. [`ProfileClusters::largest`], or the cluster of the workload
    /// a clone copies). An out-of-range `fallback` behaves as [`ProfileClusters::assign`].
    pub fn assign_or(&self, series: &Series, fallback: usize) -> usize {
        let d = self.distances(series);
        let Some(&df) = d.get(fallback) else {
            return self.assign(series);
        };
        let best = self.assign(series);
        if d[best] <= 0.5 * df - 1e-12 {
            best
        } else {
            fallback
        }
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
    shaped(history, shape, params)
}

/// [`forecast_cold`] with the shape of cluster `cluster` of `clusters` (chosen by the caller,
/// e.g. with [`ProfileClusters::assign_or`]); an out-of-range cluster or a season other than
/// the params' falls back to [`super::forecast`], as does three seasons of own history.
///
/// # Errors
/// As [`super::forecast`].
pub fn forecast_in_cluster(
    history: &Series,
    clusters: &ProfileClusters,
    cluster: usize,
    params: &ValidForecastParams,
) -> Result<Forecast> {
    let m = params.season();
    if history.len() >= m.saturating_mul(3) || clusters.season != m {
        return forecast(history, params);
    }
    let shape = clusters
        .centroids
        .get(cluster)
        .map(|c| (c.clone(), clusters.spreads[cluster]));
    shaped(history, shape, params)
}

/// [`forecast_cold`] along a daily `profile` kept from elsewhere (normalised as
/// [`daily_profile`] makes it: mean by time of day over the mean) with its relative `spread`:
/// for example the stored profile of the workload a clone was made from. A profile whose length
/// is not the params' season falls back to [`super::forecast`], as does three seasons of own
/// history.
///
/// # Errors
/// As [`super::forecast`].
pub fn forecast_along(
    history: &Series,
    profile: &[f64],
    spread: f64,
    params: &ValidForecastParams,
) -> Result<Forecast> {
    let m = params.season();
    if history.len() >= m.saturating_mul(3) || profile.len() != m {
        return forecast(history, params);
    }
    shaped(history, Some((profile.to_vec(), spread)), params)
}

/// The cold forecast of `history` along a daily `shape` (normalised profile, relative spread).
fn shaped(
    history: &Series,
    shape: Option<(Vec<f64>, f64)>,
    params: &ValidForecastParams,
) -> Result<Forecast> {
    let m = params.season();
    let n = history.len();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A day of `m` steps: low, with a plateau over the slots `[from, to)`.
    fn plateau(days: usize, m: usize, from: usize, to: usize, level: f64) -> Series {
        let v = (0..days * m)
            .map(|i| {
                let s = i % m;
                level * if (from..to).contains(&s) { 4.0 } else { 1.0 }
                    + (i * 7919 % 13) as f64 * 0.01
            })
            .collect();
        Series::new(0, 3600, v).unwrap()
    }

    #[test]
    fn profiles_fitted_beforehand_give_the_clusters_of_the_series() {
        let fleet: Vec<Series> = (0..5)
            .map(|i| plateau(3, 24, 8, 16, 10.0 + i as f64))
            .chain((0..2).map(|i| plateau(3, 24, 18, 22, 30.0 + i as f64)))
            .collect();
        let direct = ProfileClusters::fit(&fleet, 24, 2, 7).unwrap();
        let profiles: Vec<_> = fleet.iter().filter_map(|s| daily_profile(s, 24)).collect();
        let kept = ProfileClusters::fit_profiles(&profiles, 24, 2, 7).unwrap();
        assert_eq!(direct, kept);
        let mut sizes = kept.sizes().to_vec();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![2, 5]);
        assert_eq!(kept.sizes()[kept.largest()], 5);
        let back = ProfileClusters::from_parts(
            24,
            kept.centroids().to_vec(),
            kept.spreads().to_vec(),
            kept.sizes().to_vec(),
        )
        .unwrap();
        assert_eq!(back, kept);
        assert_eq!(
            ProfileClusters::from_parts(24, vec![vec![1.0; 23]], vec![0.1], vec![1]),
            Err(ColdError::InvalidParams)
        );
        assert_eq!(
            ProfileClusters::fit_profiles(&[(vec![1.0; 12], 0.1)], 24, 2, 7),
            Err(ColdError::NoProfiles)
        );
    }

    #[test]
    fn a_kept_profile_should_shape_the_forecast_and_a_wrong_length_should_not() {
        let source = plateau(3, 24, 18, 22, 10.0);
        let (profile, spread) = daily_profile(&source, 24).unwrap();
        let p = super::super::ForecastParams::new(6)
            .season(24)
            .levels(vec![0.5])
            .check(3600)
            .unwrap();
        // Two hours at the source's level just before its evening plateau (hours 18 to 21):
        // the forecast of hours 18 to 23 rises with it and falls after it.
        let own = Series::new(16 * 3600, 3600, vec![10.0, 10.1]).unwrap();
        let along = forecast_along(&own, &profile, spread, &p).unwrap();
        let med = along.median().unwrap();
        assert!(med[..4].iter().all(|v| *v > 30.0), "{med:?}");
        assert!(med[4] < 20.0 && med[5] < 20.0, "{med:?}");
        let short = forecast_along(&own, &profile[..12], spread, &p).unwrap();
        assert_eq!(short, forecast(&own, &p).unwrap());
    }

    #[test]
    fn a_flat_stretch_keeps_the_fallback_and_a_telling_one_picks_its_cluster() {
        let fleet: Vec<Series> = (0..5)
            .map(|i| plateau(3, 24, 8, 16, 10.0 + i as f64))
            .chain((0..2).map(|i| plateau(3, 24, 18, 22, 30.0 + i as f64)))
            .collect();
        let c = ProfileClusters::fit(&fleet, 24, 2, 7).unwrap();
        let big = c.largest();
        let small = 1 - big;
        // Three night hours fit both shapes: no evidence against the fallback.
        let night = Series::new(2 * 3600, 3600, vec![7.0, 7.1, 6.9]).unwrap();
        assert_eq!(c.assign_or(&night, big), big);
        assert_eq!(c.assign_or(&night, small), small);
        // Hours 16..=19 rise at 18 (the small cluster's evening plateau), not at 16.
        let evening = Series::new(16 * 3600, 3600, vec![5.0, 5.0, 20.0, 20.0]).unwrap();
        assert_eq!(c.assign_or(&evening, big), small);
        // The forecast in the chosen cluster follows its plateau.
        let p = crate::forecast::ForecastParams::new(24)
            .season(24)
            .check(3600)
            .unwrap();
        let f = forecast_in_cluster(&night, &c, big, &p).unwrap();
        let med = f.median().unwrap();
        // History ends at hour 5: step t is hour 5 + t; the plateau is hours 8..16.
        assert!(med[5] > 2.5 * med[0], "{med:?}");
        assert!(
            forecast_in_cluster(&night, &c, 9, &p).is_ok(),
            "an unknown cluster falls back"
        );
    }
}
