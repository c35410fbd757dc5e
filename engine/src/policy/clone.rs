//! Initial allocation of clones: the source's profile plus predicted drift, learned from earlier
//! clones and replaced by the clone's own history as it grows.
//!
//! A clone starts with no history of its own. Its first allocation is the source's allocation
//! times a **drift ratio**: how much earlier clones of the same kind used relative to their
//! source's allocation, at the same age. The features are the four the clone is known by when it
//! is created: time since cloning (age buckets), app type, user role and the source allocation
//! (its size class, a power of two). Drift is learned per (app type, user role, size class) and
//! per age bucket; when that group has no data the model falls back to (app type, user role),
//! then to the app type alone, then to all clones, then to no drift (ratio 1).
//!
//! As the clone accumulates observations its own quantile takes over with weight
//! `n / (n + prior_strength)`, so after a day or two of 5-minute samples the prior hardly matters.

use std::collections::BTreeMap;

use serde::Serialize;

/// Upper ends (hours since cloning) of the age buckets; the last bucket is open-ended.
pub const AGE_BUCKETS_HOURS: [f64; 5] = [1.0, 6.0, 24.0, 72.0, 168.0];

/// Size class of a source allocation: `floor(log2(allocation))`, clamped to `[-16, 32]`, so
/// sources within a factor of two of each other share a class whatever the unit.
pub fn size_class(source_allocation: f64) -> i32 {
    if source_allocation.is_finite() && source_allocation > 0.0 {
        (source_allocation.log2().floor() as i32).clamp(-16, 32)
    } else {
        -16
    }
}

fn bucket(age_hours: f64) -> usize {
    AGE_BUCKETS_HOURS
        .iter()
        .position(|&b| age_hours < b)
        .unwrap_or(AGE_BUCKETS_HOURS.len())
}

const NB: usize = AGE_BUCKETS_HOURS.len() + 1;

/// What is known about a clone when it is sized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloneFeatures {
    /// Hours since the clone was created.
    pub age_hours: f64,
    /// Application type (`web`, `db`, `batch`, …).
    pub app_type: String,
    /// Role of the user who cloned it (`dev`, `qa`, `analyst`, …).
    pub user_role: String,
    /// The source's allocation when it was cloned.
    pub source_allocation: f64,
}

/// The usage history of one earlier clone, for learning drift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloneHistory {
    /// Application type.
    pub app_type: String,
    /// Role of the user who cloned it.
    pub user_role: String,
    /// The source's allocation when it was cloned (> 0 to be learned from).
    pub source_allocation: f64,
    /// `(hours since cloning, usage)` observations.
    pub observations: Vec<(f64, f64)>,
}

/// Per-bucket drift ratios (usage / source allocation): medians of what earlier clones did.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DriftModel {
    by_size: BTreeMap<(String, String, i32), [Option<f64>; NB]>,
    by_group: BTreeMap<(String, String), [Option<f64>; NB]>,
    by_app: BTreeMap<String, [Option<f64>; NB]>,
    all: [Option<f64>; NB],
}

fn medians(ratios: [Vec<f64>; NB]) -> [Option<f64>; NB] {
    ratios.map(|mut v| {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        })
    })
}

impl DriftModel {
    /// Learns drift ratios from earlier clones. Histories with a non-positive source allocation
    /// and non-finite observations are skipped.
    pub fn fit(history: &[CloneHistory]) -> Self {
        let mut sized: BTreeMap<(String, String, i32), [Vec<f64>; NB]> = BTreeMap::new();
        let mut group: BTreeMap<(String, String), [Vec<f64>; NB]> = BTreeMap::new();
        let mut app: BTreeMap<String, [Vec<f64>; NB]> = BTreeMap::new();
        let mut all: [Vec<f64>; NB] = Default::default();
        for h in history
            .iter()
            .filter(|h| h.source_allocation > 0.0 && h.source_allocation.is_finite())
        {
            for &(age, u) in h
                .observations
                .iter()
                .filter(|(a, u)| a.is_finite() && u.is_finite() && *a >= 0.0)
            {
                let (b, r) = (bucket(age), u / h.source_allocation);
                sized
                    .entry((
                        h.app_type.clone(),
                        h.user_role.clone(),
                        size_class(h.source_allocation),
                    ))
                    .or_default()[b]
                    .push(r);
                group
                    .entry((h.app_type.clone(), h.user_role.clone()))
                    .or_default()[b]
                    .push(r);
                app.entry(h.app_type.clone()).or_default()[b].push(r);
                all[b].push(r);
            }
        }
        Self {
            by_size: sized.into_iter().map(|(k, v)| (k, medians(v))).collect(),
            by_group: group.into_iter().map(|(k, v)| (k, medians(v))).collect(),
            by_app: app.into_iter().map(|(k, v)| (k, medians(v))).collect(),
            all: medians(all),
        }
    }

    /// The drift ratio for a clone and where it came from (`size`: same app type, user role and
    /// source size class; `group`: same app type and role; `app`; `all`; or `none`).
    pub fn ratio(&self, f: &CloneFeatures) -> (f64, &'static str) {
        let b = bucket(f.age_hours.max(0.0));
        if let Some(r) = self
            .by_size
            .get(&(
                f.app_type.clone(),
                f.user_role.clone(),
                size_class(f.source_allocation),
            ))
            .and_then(|v| v[b])
        {
            return (r, "size");
        }
        if let Some(r) = self
            .by_group
            .get(&(f.app_type.clone(), f.user_role.clone()))
            .and_then(|v| v[b])
        {
            return (r, "group");
        }
        if let Some(r) = self.by_app.get(&f.app_type).and_then(|v| v[b]) {
            return (r, "app");
        }
        if let Some(r) = self.all[b] {
            return (r, "all");
        }
        (1.0, "none")
    }
}

/// Weight of a clone's own history after `n` observations against a prior worth
/// `prior_strength` observations: `n / (n + prior_strength)`, 0 without observations. Callers
/// whose samples are coarser than 5 minutes count each one as the 5-minute samples it spans, so
/// that `prior_strength` 288 stays one day of history.
pub fn own_weight(n: f64, prior_strength: f64) -> f64 {
    if n > 0.0 && n.is_finite() {
        n / (n + prior_strength.max(0.0))
    } else {
        0.0
    }
}

/// The prior blended with the clone's own estimate: `(1 - w) prior + w own` with
/// `w = `[`own_weight`]`(n, prior_strength)`; the prior alone without an own estimate.
/// Returns the blend and `w`.
pub fn blend(prior: f64, own: Option<f64>, n: f64, prior_strength: f64) -> (f64, f64) {
    match own {
        Some(o) => {
            let w = own_weight(n, prior_strength);
            ((1.0 - w) * prior + w * o, w)
        }
        None => (prior, 0.0),
    }
}

/// A clone's allocation and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloneAllocation {
    /// Capacity to allocate.
    pub capacity: f64,
    /// The prior: source allocation × drift ratio × headroom.
    pub prior: f64,
    /// The clone's own estimate (its usage quantile × headroom), when it has history.
    pub own: Option<f64>,
    /// Weight of the clone's own history in `capacity`, in [0, 1].
    pub own_weight: f64,
    /// One sentence explaining the result.
    pub reason: String,
}

/// Sizes a clone: the prior from the source allocation and learned drift, blended with the
/// clone's own usage history (`own_usage`) with weight `n / (n + prior_strength)`. Both are
/// multiplied by `headroom` (for example 1.15) and the result is kept within `[min, max]`.
///
/// # Guarantees
/// `min <= capacity <= max` whenever `min <= max`.
pub fn size_clone(
    model: &DriftModel,
    features: &CloneFeatures,
    own_usage: &[f64],
    prior_strength: f64,
    headroom: f64,
    min: f64,
    max: f64,
) -> CloneAllocation {
    let (ratio, from) = model.ratio(features);
    let prior = features.source_allocation.max(0.0) * ratio * headroom;
    let mut own_vals: Vec<f64> = own_usage
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    own_vals.sort_by(f64::total_cmp);
    let own = (!own_vals.is_empty()).then(|| {
        let i = ((own_vals.len() - 1) as f64 * 0.95).round() as usize;
        own_vals[i] * headroom
    });
    let (raw, w) = blend(prior, own, own_vals.len() as f64, prior_strength);
    let capacity = if raw.is_finite() {
        raw.max(min).min(max)
    } else {
        min
    };
    let reason = format!(
        "source allocation {:.4} × drift {ratio:.3} ({from}, {:.0} h old) × headroom {headroom} = {prior:.4}; own history {} points, weight {w:.2}",
        features.source_allocation, features.age_hours, own_vals.len()
    );
    CloneAllocation {
        capacity,
        prior,
        own,
        own_weight: w,
        reason,
    }
}

/// Errors of clone sizing parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is outside its allowed range.
    #[error("invalid clone sizing parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Unchecked clone sizing parameters; [`CloneParams::check`] validates them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloneParams {
    /// Observations of its own at which a clone's history weighs as much as the prior (288:
    /// one day of 5-minute samples).
    pub prior_strength: f64,
    /// Multiplier on both the prior and the clone's own quantile (> 0).
    pub headroom: f64,
    /// Only the latest `own_window` observations of the clone count (its usage drifts with age).
    pub own_window: usize,
    /// Smallest capacity.
    pub min: f64,
    /// Largest capacity.
    pub max: f64,
}

impl Default for CloneParams {
    fn default() -> Self {
        CloneParams {
            prior_strength: 288.0,
            headroom: 1.15,
            own_window: 7 * 288,
            min: 0.0,
            max: f64::INFINITY,
        }
    }
}

impl CloneParams {
    /// Validates the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first parameter out of range.
    pub fn check(self) -> Result<ValidClone, Error> {
        let bad = |name, reason| Err(Error::InvalidParameter { name, reason });
        if !(self.prior_strength >= 0.0 && self.prior_strength.is_finite()) {
            return bad("prior_strength", "must be a finite number at least 0");
        }
        if !(self.headroom > 0.0 && self.headroom.is_finite()) {
            return bad("headroom", "must be a positive number");
        }
        if self.own_window == 0 {
            return bad("own_window", "must be at least 1");
        }
        if !(self.min >= 0.0 && self.min.is_finite()) {
            return bad("min", "must be a finite number at least 0");
        }
        if self.max.is_nan() || self.max < self.min {
            return bad("max", "must be at least min");
        }
        Ok(ValidClone(self))
    }
}

/// Checked clone sizing parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidClone(CloneParams);

impl ValidClone {
    /// The checked parameters.
    pub fn params(&self) -> &CloneParams {
        &self.0
    }

    /// Sizes a clone with these parameters: [`size_clone`] over the latest `own_window`
    /// observations of its own history.
    ///
    /// # Guarantees
    /// `min <= capacity <= max`.
    pub fn size(
        &self,
        model: &DriftModel,
        features: &CloneFeatures,
        own_usage: &[f64],
    ) -> CloneAllocation {
        let p = &self.0;
        let recent = &own_usage[own_usage.len().saturating_sub(p.own_window)..];
        size_clone(
            model,
            features,
            recent,
            p.prior_strength,
            p.headroom,
            p.min,
            p.max,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hist(app: &str, role: &str, src: f64, obs: &[(f64, f64)]) -> CloneHistory {
        CloneHistory {
            app_type: app.into(),
            user_role: role.into(),
            source_allocation: src,
            observations: obs.to_vec(),
        }
    }

    fn feat(app: &str, role: &str, age: f64) -> CloneFeatures {
        CloneFeatures {
            age_hours: age,
            app_type: app.into(),
            user_role: role.into(),
            source_allocation: 8.0,
        }
    }

    #[test]
    fn drift_should_fall_back_from_group_to_app_to_all_to_none() {
        let m = DriftModel::fit(&[
            hist("web", "dev", 4.0, &[(0.5, 1.0), (0.5, 2.0), (0.5, 3.0)]), // ratios .25 .5 .75
            hist("db", "qa", 10.0, &[(0.5, 9.0), (30.0, 5.0)]),
        ]);
        assert_eq!(m.ratio(&feat("web", "dev", 0.2)), (0.5, "group"));
        assert_eq!(m.ratio(&feat("web", "qa", 0.2)), (0.5, "app"));
        // All clones in bucket 0: .25 .5 .75 .9 -> median .625.
        assert_eq!(m.ratio(&feat("batch", "x", 0.2)), (0.625, "all"));
        assert_eq!(m.ratio(&feat("batch", "x", 30.0)), (0.5, "all"));
        assert_eq!(m.ratio(&feat("batch", "x", 10.0)), (1.0, "none"));
    }

    #[test]
    fn own_history_should_take_over_as_it_grows() {
        let m = DriftModel::fit(&[hist("web", "dev", 4.0, &[(0.5, 2.0)])]);
        let f = feat("web", "dev", 0.5);
        let cold = size_clone(&m, &f, &[], 288.0, 1.0, 0.0, 100.0);
        assert_eq!(cold.capacity, 4.0); // 8 × 0.5
        let own = vec![1.0; 288 * 10];
        let warm = size_clone(&m, &f, &own, 288.0, 1.0, 0.0, 100.0);
        assert!((warm.own_weight - 10.0 / 11.0).abs() < 1e-12);
        assert!(
            warm.capacity < 1.3 && warm.capacity > 1.0,
            "{}",
            warm.capacity
        );
    }

    #[test]
    fn source_size_should_separate_big_sources_from_small_ones() {
        let m = DriftModel::fit(&[
            hist("db", "dev", 4.0, &[(2.0, 3.0)]), // small source: ratio .75
            hist("db", "dev", 64.0, &[(2.0, 8.0)]), // big source: ratio .125
        ]);
        let mut f = feat("db", "dev", 2.0);
        f.source_allocation = 5.0; // class 2, like 4
        assert_eq!(m.ratio(&f), (0.75, "size"));
        f.source_allocation = 100.0; // class 6, like 64
        assert_eq!(m.ratio(&f), (0.125, "size"));
        f.source_allocation = 16.0; // no clone of that size: the group's median
        assert_eq!(m.ratio(&f), (0.4375, "group"));
    }

    /// Synthetic clone histories with a known drift: analysts use 80 % of the source, developers
    /// 15 % in their first hour and 35 % later, big sources (64) half as much as small ones (4),
    /// with ±20 % noise per clone. A deterministic generator stands in for a fleet's history.
    fn fleet(n: usize, seed: u64) -> Vec<CloneHistory> {
        let mut g = crate::noise::Mmix::new(seed);
        let mut rnd = move || g.uniform();
        (0..n)
            .map(|i| {
                let role = if i % 2 == 0 { "analyst" } else { "dev" };
                let src = if i % 3 == 0 { 64.0 } else { 4.0 };
                let noise = 0.8 + 0.4 * rnd();
                let obs = (0..48)
                    .map(|k| {
                        let age = k as f64 * 0.5;
                        let base = match (role, age < 1.0) {
                            ("analyst", _) => 0.8,
                            (_, true) => 0.15,
                            _ => 0.35,
                        };
                        let size = if src > 10.0 { 0.5 } else { 1.0 };
                        (age, src * base * size * noise)
                    })
                    .collect::<Vec<_>>();
                hist("web", role, src, &obs)
            })
            .collect()
    }

    #[test]
    fn learned_drift_should_size_new_clones_closer_than_the_source_allocation() {
        let train = fleet(200, 1);
        let test = fleet(50, 2);
        let learned = DriftModel::fit(&train);
        let none = DriftModel::default();
        let sizer = CloneParams {
            headroom: 1.0,
            ..CloneParams::default()
        }
        .check()
        .unwrap();
        let (mut err_learned, mut err_none) = (0.0, 0.0);
        for h in &test {
            for &(age, usage) in &h.observations {
                let f = CloneFeatures {
                    age_hours: age,
                    app_type: h.app_type.clone(),
                    user_role: h.user_role.clone(),
                    source_allocation: h.source_allocation,
                };
                err_learned += (sizer.size(&learned, &f, &[]).capacity - usage).abs() / usage;
                err_none += (sizer.size(&none, &f, &[]).capacity - usage).abs() / usage;
            }
        }
        // No drift over-allocates 1.25× to 13×; the learned prior is within the noise.
        assert!(
            err_learned < 0.15 * err_none,
            "learned {err_learned} none {err_none}"
        );
        let n = (test.len() * 48) as f64;
        assert!(
            err_learned / n < 0.2,
            "mean relative error {}",
            err_learned / n
        );
    }

    #[test]
    fn own_window_should_forget_old_observations() {
        let sizer = CloneParams {
            prior_strength: 0.0,
            headroom: 1.0,
            own_window: 10,
            ..CloneParams::default()
        }
        .check()
        .unwrap();
        let mut own = vec![100.0; 50];
        own.extend([1.0; 10]);
        let r = sizer.size(&DriftModel::default(), &feat("a", "b", 30.0), &own);
        assert_eq!(r.capacity, 1.0);
        let e = CloneParams {
            max: -1.0,
            ..CloneParams::default()
        }
        .check()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid clone sizing parameter `max`: must be at least min"
        );
    }

    #[test]
    fn own_weight_should_be_half_at_the_prior_strength() {
        assert_eq!(own_weight(0.0, 288.0), 0.0);
        assert_eq!(own_weight(288.0, 288.0), 0.5);
        assert_eq!(own_weight(f64::NAN, 288.0), 0.0);
        assert_eq!(blend(4.0, None, 100.0, 288.0), (4.0, 0.0));
        assert_eq!(blend(4.0, Some(2.0), 288.0, 288.0), (3.0, 0.5));
    }

    proptest! {
        #[test]
        fn clone_size_should_stay_within_bounds(src in 0.0f64..1e6, u in proptest::collection::vec(0.0f64..1e6, 0..50), lo in 0.0f64..10.0, span in 0.0f64..1e5) {
            let m = DriftModel::default();
            let mut f = feat("a", "b", 1.0);
            f.source_allocation = src;
            let r = size_clone(&m, &f, &u, 20.0, 1.15, lo, lo + span);
            prop_assert!(r.capacity >= lo && r.capacity <= lo + span);
        }
    }
}
