//! `shadow`: the shadow pool of ready capacity and its decay-based release rule.
//!
//! Booting capacity takes minutes; starting a stopped (or resuming a hibernated) instance takes
//! seconds and costs only its disks while it waits. The shadow pool keeps such *ready* units
//! ahead of predicted peaks and right after scale-downs, promotes them to *active* when demand
//! arrives, and releases them by a decay rule:
//!
//! - every unit carries a **retention score**, 1 when it enters the pool or when a forecast says
//!   it will be needed again soon;
//! - each step an unused unit's score decays with a configurable **half-life**:
//!   `score(age) = 0.5^(age / half_life)`;
//! - a unit whose score falls below the **release threshold** is released (terminated).
//!
//! So a unit survives `half_life × log2(1 / threshold)` steps without reinforcement. The pool
//! records what it cost (ready unit-steps) and what it saved (promotions instead of cold boots,
//! i.e. boot delay avoided); [`crate::simulate`] turns those into dollars and shortfall avoided.

use serde::Serialize;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is outside its allowed range.
    #[error("invalid shadow pool parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Unchecked shadow pool parameters; [`ShadowParams::check`] validates them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowParams {
    /// Steps after which an unused unit's retention score has halved (> 0).
    pub half_life: f64,
    /// Score below which a unit is released, in (0, 1).
    pub release_threshold: f64,
    /// Most units the pool may hold.
    pub max_units: usize,
}

impl Default for ShadowParams {
    fn default() -> Self {
        // 12 steps (1 h at 5 min) half-life, release at 0.25: an idle unit lives two hours.
        Self {
            half_life: 12.0,
            release_threshold: 0.25,
            max_units: 64,
        }
    }
}

impl ShadowParams {
    /// Validates the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the parameter out of range.
    pub fn check(self) -> Result<ValidShadow> {
        if !(self.half_life > 0.0 && self.half_life.is_finite()) {
            return Err(Error::InvalidParameter {
                name: "half_life",
                reason: "must be a positive number of steps",
            });
        }
        if !(self.release_threshold > 0.0 && self.release_threshold < 1.0) {
            return Err(Error::InvalidParameter {
                name: "release_threshold",
                reason: "must lie strictly between 0 and 1",
            });
        }
        Ok(ValidShadow(self))
    }
}

/// Checked shadow pool parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidShadow(ShadowParams);

impl ValidShadow {
    /// The checked parameters.
    pub fn params(&self) -> &ShadowParams {
        &self.0
    }

    /// Steps an unused unit survives: the age at which its score drops below the threshold.
    pub fn lifetime(&self) -> f64 {
        self.0.half_life * (1.0 / self.0.release_threshold).log2()
    }
}

impl Default for ValidShadow {
    fn default() -> Self {
        ShadowParams::default()
            .check()
            .expect("the defaults are valid")
    }
}

/// What a ready unit costs and what it is worth: the inputs of the keep and top-up rules
/// ([`ValidEconomics::keep_threshold`], [`ValidEconomics::top_up`]). Unchecked;
/// [`EconomicsParams::check`] validates it.
///
/// A promoted unit spares the workload a cold boot: while demand exceeds the active capacity,
/// it serves after a resume instead of after `minutes_saved` more minutes. The pool is worth it
/// when the shortfall minutes it is expected to avoid, valued at `value_per_shortfall_minute`,
/// exceed what its units are billed while they wait.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EconomicsParams {
    /// Dollars one minute of shortfall (usage above running capacity) is worth avoiding.
    pub value_per_shortfall_minute: f64,
    /// Shortfall minutes a promotion avoids when the unit is needed: the cold boot minus the
    /// resume.
    pub minutes_saved: f64,
    /// Dollars one unit is billed per step while ready (stopped or hibernated).
    pub ready_cost_per_step: f64,
    /// Dollars to bring one new unit into the pool by launching it (its boot, billed at the
    /// running price, before it is stopped).
    pub launch_cost: f64,
    /// Most ready units as a share of the active allocation (at least one unit is allowed);
    /// the pool's own `max_units` applies too.
    pub max_share_of_active: f64,
}

impl EconomicsParams {
    /// Validates the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the parameter out of range.
    pub fn check(self) -> Result<ValidEconomics> {
        let fields = [
            (
                "value_per_shortfall_minute",
                self.value_per_shortfall_minute,
            ),
            ("minutes_saved", self.minutes_saved),
            ("ready_cost_per_step", self.ready_cost_per_step),
            ("launch_cost", self.launch_cost),
            ("max_share_of_active", self.max_share_of_active),
        ];
        for (name, v) in fields {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::InvalidParameter {
                    name,
                    reason: "must be a non-negative number",
                });
            }
        }
        Ok(ValidEconomics(self))
    }
}

/// Checked [`EconomicsParams`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidEconomics(EconomicsParams);

impl ValidEconomics {
    /// The checked parameters.
    pub fn params(&self) -> &EconomicsParams {
        &self.0
    }

    /// Dollars of shortfall one promotion avoids when the unit is needed.
    pub fn value_of_promotion(&self) -> f64 {
        self.0.value_per_shortfall_minute * self.0.minutes_saved
    }

    /// The retention score below which a unit no longer pays for itself.
    ///
    /// A unit's score is read as the chance it is promoted before the decay forgets it; kept,
    /// it waits on average `half_life / ln 2` more steps (the mean life of the decay). It is
    /// worth keeping while `score × value_of_promotion ≥ ready_cost_per_step × half_life / ln 2`,
    /// so the threshold is the right-hand side over the value (1 when a promotion is worth
    /// nothing: nothing is kept). The pool releases below the larger of this and its own
    /// `release_threshold`.
    pub fn keep_threshold(&self, half_life: f64) -> f64 {
        let v = self.value_of_promotion();
        let wait_cost = self.0.ready_cost_per_step * half_life / std::f64::consts::LN_2;
        if v <= 0.0 {
            1.0
        } else {
            (wait_cost / v).min(1.0)
        }
    }

    /// Most ready units for an active allocation of `active` units: `max_share_of_active` of
    /// it, at least one, at most the pool's `max_units`.
    pub fn cap(&self, active: usize, max_units: usize) -> usize {
        ((active as f64 * self.0.max_share_of_active).ceil() as usize)
            .max(1)
            .min(max_units)
    }

    /// How many ready units a forecast justifies above an active allocation: the `k`-th unit
    /// counts when the chance that usage needs it, `P(usage > (active + k − 1) × unit)` read
    /// off the forecast's quantiles ([`exceedance`]), times the value of a promotion covers
    /// its cost: the wait (`ready_cost_per_step × half_life / ln 2`) for the `have` units
    /// already ready or warming, plus `launch_cost` for each new one. Capped by
    /// [`cap`](Self::cap).
    ///
    /// # Guarantees
    /// At most `cap(active, max_units)`; 0 for non-finite or empty forecasts.
    // Public API used by the replay as is: each argument is a distinct quantity of the rule.
    #[allow(clippy::too_many_arguments)]
    pub fn top_up(
        &self,
        levels: &[f64],
        quantiles: &[f64],
        active: usize,
        unit_capacity: f64,
        have: usize,
        half_life: f64,
        max_units: usize,
    ) -> usize {
        if !(unit_capacity > 0.0 && unit_capacity.is_finite()) {
            return 0;
        }
        let v = self.value_of_promotion();
        let wait = self.0.ready_cost_per_step * half_life / std::f64::consts::LN_2;
        let cap = self.cap(active, max_units);
        let mut k = 0;
        while k < cap {
            let x = (active + k) as f64 * unit_capacity;
            let p = exceedance(levels, quantiles, x);
            let cost = wait + if k < have { 0.0 } else { self.0.launch_cost };
            if p * v < cost || p <= 0.0 {
                break;
            }
            k += 1;
        }
        k
    }
}

impl ValidEconomics {
    /// The same economics with a promotion worth `factor` times as much (clamped to
    /// `[0, 1]`): what [`PoolRecord::factor`] makes of the stated value when the pool's own
    /// record says its promotions avoid less than the rule expects.
    pub fn discounted(&self, factor: f64) -> ValidEconomics {
        let f = if factor.is_finite() {
            factor.clamp(0.0, 1.0)
        } else {
            1.0
        };
        ValidEconomics(EconomicsParams {
            value_per_shortfall_minute: self.0.value_per_shortfall_minute * f,
            ..self.0.clone()
        })
    }
}

/// The pool's own running record of what it bought and what it paid, so the keep and top-up
/// rules hold out of sample: a rule priced on one set of series keeps paying only if, on the
/// series at hand, its promotions avoid as much shortfall as it expects.
///
/// Every step the shell adds the dollars of shortfall the pool's promotions avoided in that
/// step (shortfall minutes that would have happened had the promoted units been booted cold,
/// valued at the stated price) and the dollars the pool was billed. Both sums decay with a
/// half-life of `memory` steps, so an old record is forgotten and a pool that stopped paying
/// gets tried again later. [`pay_ratio`](Self::pay_ratio) is value over cost, shrunk toward 1
/// by `prior` dollars on each side (a young record trusts the rule);
/// [`factor`](Self::factor) is that ratio capped at 1: the share of the stated value the
/// rules use ([`ValidEconomics::discounted`]). A pool that pays keeps the full value; one that
/// does not shrinks toward no pool as the evidence grows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PoolRecord {
    value: f64,
    cost: f64,
    prior: f64,
    keep: f64,
}

impl PoolRecord {
    /// An empty record with `prior` dollars of pseudo-evidence on each side (at least 0) and a
    /// memory half-life of `memory` steps (infinite or non-positive: never forgets).
    pub fn new(prior: f64, memory: f64) -> Self {
        let keep = if memory.is_finite() && memory > 0.0 {
            0.5f64.powf(1.0 / memory)
        } else {
            1.0
        };
        Self {
            value: 0.0,
            cost: 0.0,
            prior: if prior.is_finite() {
                prior.max(0.0)
            } else {
                0.0
            },
            keep,
        }
    }

    /// Ends one step: the record decays by one step, then adds `avoided_value` dollars of
    /// avoided shortfall and `cost` dollars billed (negative or non-finite amounts count as 0).
    pub fn record(&mut self, avoided_value: f64, cost: f64) {
        let clean = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
        self.value = self.value * self.keep + clean(avoided_value);
        self.cost = self.cost * self.keep + clean(cost);
    }

    /// Decayed dollars of avoided shortfall.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Decayed dollars billed.
    pub fn cost(&self) -> f64 {
        self.cost
    }

    /// `(value + prior) / (cost + prior)`: above 1 the pool pays for itself. 1 for an empty
    /// record; with no prior and no cost, 1 as well.
    pub fn pay_ratio(&self) -> f64 {
        let (v, c) = (self.value + self.prior, self.cost + self.prior);
        if c > 0.0 {
            v / c
        } else {
            1.0
        }
    }

    /// Whether the pool pays for itself on its record (`pay_ratio() >= 1`). A shell launches
    /// new units into the pool only while it does: launching costs a boot at the running
    /// price, the dearest thing the pool buys, and a pool that does not pay should shrink to
    /// the units it keeps at scale-down (which cost their storage only) until its record says
    /// otherwise.
    pub fn pays(&self) -> bool {
        self.pay_ratio() >= 1.0
    }

    /// The pay ratio capped at 1: the share of the stated value of a promotion the keep and
    /// top-up rules should use.
    ///
    /// # Guarantees
    /// In `[0, 1]`.
    pub fn factor(&self) -> f64 {
        self.pay_ratio().clamp(0.0, 1.0)
    }
}

/// `P(X > x)` from a quantile forecast (`levels` increasing in (0, 1), `quantiles` their
/// values): linear between quantiles, `1 − levels[0]` below the first, 0 above the last (the
/// forecast says nothing beyond it, and the pool should not pay for it). Non-finite or
/// mismatched inputs give 0.
///
/// # Guarantees
/// In [0, 1] and non-increasing in `x`.
pub fn exceedance(levels: &[f64], quantiles: &[f64], x: f64) -> f64 {
    if levels.is_empty()
        || levels.len() != quantiles.len()
        || !x.is_finite()
        || quantiles.iter().any(|q| !q.is_finite())
    {
        return 0.0;
    }
    if x < quantiles[0] {
        return (1.0 - levels[0]).clamp(0.0, 1.0);
    }
    let n = quantiles.len();
    if x >= quantiles[n - 1] {
        return 0.0;
    }
    // The last quantile not above x (quantiles are sorted: a tie takes the highest level).
    let j = quantiles.partition_point(|&q| q <= x) - 1;
    let (q0, q1) = (quantiles[j], quantiles[j + 1]);
    let (l0, l1) = (levels[j], levels[j + 1]);
    let level = if q1 > q0 {
        l0 + (l1 - l0) * (x - q0) / (q1 - q0)
    } else {
        l1
    };
    (1.0 - level).clamp(0.0, 1.0)
}

/// A decay half-life (in steps) from the spacing of a series' peaks: an idle unit should live
/// about as long as the usual gap between two peaks, so a unit kept after one is still there
/// for the next.
///
/// Peaks are the starts of episodes above the series' `level` quantile (episodes closer than
/// `min_gap` steps merge); the spacing is the median gap between starts. The half-life is that
/// spacing over `log2(1 / release_threshold)` (so the unit's lifetime equals it), clamped to
/// `[min, max]`. `None` when the series has fewer than three peaks.
pub fn half_life_from_peaks(
    series: &[f64],
    level: f64,
    min_gap: usize,
    release_threshold: f64,
    min: f64,
    max: f64,
) -> Option<f64> {
    let mut v: Vec<f64> = series.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 3 || !(release_threshold > 0.0 && release_threshold < 1.0) {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let idx = ((v.len() - 1) as f64 * level.clamp(0.0, 1.0)).round() as usize;
    let thr = v[idx];
    let mut starts: Vec<usize> = Vec::new();
    let mut last_above: Option<usize> = None;
    for (i, &x) in series.iter().enumerate() {
        if x.is_finite() && x > thr {
            if last_above.is_none_or(|l| i - l > min_gap) {
                starts.push(i);
            }
            last_above = Some(i);
        }
    }
    if starts.len() < 3 {
        return None;
    }
    let mut gaps: Vec<usize> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2] as f64;
    let hl = median / (1.0 / release_threshold).log2();
    Some(hl.clamp(min, max.max(min)))
}

/// Retention score of a unit unused for `age` steps: `0.5^(age / half_life)`.
///
/// # Guarantees
/// In (0, 1] for `age >= 0`, and non-increasing in `age`.
pub fn retention_score(age: f64, half_life: f64) -> f64 {
    (-age.max(0.0) / half_life).exp2()
}

/// One ready unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShadowUnit {
    /// Key of the unit, unique within its pool: lets a shell map units to cloud instances.
    pub key: u64,
    /// Step at which its score was last reset to 1.
    pub refreshed_at: u64,
    /// Step at which it entered the pool.
    pub since: u64,
}

/// What the pool did and cost, cumulatively.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct PoolStats {
    /// Unit-steps spent ready (the pool's cost driver).
    pub ready_unit_steps: u64,
    /// Units that entered the pool (kept at scale-down or provisioned ahead of a peak).
    pub admitted: u64,
    /// Units promoted to active instead of booted cold.
    pub promoted: u64,
    /// Units released by the decay rule.
    pub released: u64,
}

/// The shadow pool: ready units with decaying retention scores.
#[derive(Debug, Clone)]
pub struct ShadowPool {
    params: ValidShadow,
    units: Vec<ShadowUnit>,
    stats: PoolStats,
    next_key: u64,
}

impl ShadowPool {
    /// An empty pool.
    pub fn new(params: ValidShadow) -> Self {
        Self {
            params,
            units: Vec::new(),
            stats: PoolStats::default(),
            next_key: 0,
        }
    }

    /// The pool's parameters.
    pub fn params(&self) -> &ValidShadow {
        &self.params
    }

    /// Units ready now.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Statistics so far.
    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// The units, oldest first.
    pub fn units(&self) -> &[ShadowUnit] {
        &self.units
    }

    /// Retention scores of the units at step `now`.
    pub fn scores(&self, now: u64) -> Vec<f64> {
        let hl = self.params.params().half_life;
        self.units
            .iter()
            .map(|u| retention_score(now.saturating_sub(u.refreshed_at) as f64, hl))
            .collect()
    }

    /// Adds up to `n` units at step `now` (capped by `max_units`); returns how many entered.
    pub fn admit(&mut self, n: usize, now: u64) -> usize {
        self.admit_keys(n, now).len()
    }

    /// Adds up to `n` units at step `now` (capped by `max_units`) and returns their keys, so a
    /// shell can remember which cloud instance each one is. Keys are never reused.
    pub fn admit_keys(&mut self, n: usize, now: u64) -> Vec<u64> {
        let room = self
            .params
            .params()
            .max_units
            .saturating_sub(self.units.len());
        let k = n.min(room);
        let first = self.next_key;
        self.next_key += k as u64;
        self.units
            .extend((first..first + k as u64).map(|key| ShadowUnit {
                key,
                refreshed_at: now,
                since: now,
            }));
        self.stats.admitted += k as u64;
        (first..first + k as u64).collect()
    }

    /// Takes up to `n` units out of the pool to become active (the freshest first, since they
    /// were kept for exactly this); returns how many were promoted.
    pub fn promote(&mut self, n: usize) -> usize {
        self.promote_keys(n).len()
    }

    /// [`promote`](Self::promote), returning the keys of the promoted units.
    pub fn promote_keys(&mut self, n: usize) -> Vec<u64> {
        let k = n.min(self.units.len());
        self.units.sort_by_key(|u| (u.refreshed_at, u.key));
        let keys = self.units[self.units.len() - k..]
            .iter()
            .map(|u| u.key)
            .collect();
        self.units.truncate(self.units.len() - k);
        self.stats.promoted += k as u64;
        keys
    }

    /// Takes the unit `key` out of the pool without counting a promotion or a release (its
    /// instance was lost, for example). Returns whether it was there.
    pub fn remove(&mut self, key: u64) -> bool {
        let before = self.units.len();
        self.units.retain(|u| u.key != key);
        self.units.len() != before
    }

    /// Releases the stalest units beyond `cap` (least recently refreshed first) and returns
    /// their keys; counted as releases.
    ///
    /// # Guarantees
    /// Afterwards the pool holds at most `cap` units.
    pub fn release_over(&mut self, cap: usize) -> Vec<u64> {
        if self.units.len() <= cap {
            return Vec::new();
        }
        self.units
            .sort_by_key(|u| (std::cmp::Reverse(u.refreshed_at), u.key));
        let out: Vec<u64> = self.units[cap..].iter().map(|u| u.key).collect();
        self.units.truncate(cap);
        self.stats.released += out.len() as u64;
        out
    }

    /// Replaces the parameters (a half-life learnt from the series, for example); the units
    /// and their scores stay, and the new `max_units` applies from the next admission.
    pub fn retune(&mut self, params: ValidShadow) {
        self.params = params;
    }

    /// Resets the score of up to `n` units to 1 (a forecast says they will be needed soon).
    pub fn refresh(&mut self, n: usize, now: u64) {
        self.units
            .sort_by_key(|u| std::cmp::Reverse(u.refreshed_at));
        for u in self.units.iter_mut().take(n) {
            u.refreshed_at = now;
        }
    }

    /// Ends step `now`: charges one ready step per unit, then releases every unit whose score
    /// fell below the threshold. Returns how many were released.
    pub fn tick(&mut self, now: u64) -> usize {
        self.tick_released(now).len()
    }

    /// [`tick`](Self::tick), returning the keys of the released units (the shell terminates
    /// their instances).
    pub fn tick_released(&mut self, now: u64) -> Vec<u64> {
        self.tick_released_below(now, 0.0)
    }

    /// [`tick_released`](Self::tick_released) with a release threshold of at least
    /// `threshold` (for example [`ValidEconomics::keep_threshold`]: units that no longer pay
    /// for themselves go too).
    ///
    /// # Guarantees
    /// After it returns, every unit's score at `now` is at least
    /// `max(threshold, release_threshold)`.
    pub fn tick_released_below(&mut self, now: u64, threshold: f64) -> Vec<u64> {
        self.stats.ready_unit_steps += self.units.len() as u64;
        let p = self.params.params();
        let (hl, thr) = (p.half_life, p.release_threshold.max(threshold));
        let mut released = Vec::new();
        self.units.retain(|u| {
            let keep = retention_score(now.saturating_sub(u.refreshed_at) as f64, hl) >= thr;
            if !keep {
                released.push(u.key);
            }
            keep
        });
        self.stats.released += released.len() as u64;
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn record_should_shrink_the_value_when_the_pool_does_not_pay_and_forget_it_later() {
        let econ = EconomicsParams {
            value_per_shortfall_minute: 0.02,
            minutes_saved: 10.0,
            ready_cost_per_step: 0.001,
            launch_cost: 0.01,
            max_share_of_active: 0.5,
        }
        .check()
        .unwrap();
        let mut r = PoolRecord::new(0.2, 100.0);
        assert_eq!(r.factor(), 1.0, "a young record trusts the rule");
        // The pool pays $0.01 a step and avoids nothing for 200 steps.
        for _ in 0..200 {
            r.record(0.0, 0.01);
        }
        let f = r.factor();
        assert!(f < 0.2, "factor {f}");
        let d = econ.discounted(f);
        assert!(d.value_of_promotion() < 0.2 * econ.value_of_promotion());
        assert!(d.keep_threshold(12.0) > econ.keep_threshold(12.0));
        // A pool that avoids more than it costs keeps the full value.
        let mut good = PoolRecord::new(0.2, 100.0);
        for _ in 0..200 {
            good.record(0.05, 0.01);
        }
        assert!(good.pay_ratio() > 1.0 && good.factor() == 1.0 && good.pays());
        assert!(!r.pays());
        // With nothing recorded the old evidence decays and the factor returns toward 1.
        for _ in 0..2000 {
            r.record(0.0, 0.0);
        }
        assert!(r.factor() > 0.99, "factor {}", r.factor());
        // Bad amounts count as nothing; a never-forgetting record keeps its sums.
        let mut z = PoolRecord::new(f64::NAN, f64::INFINITY);
        z.record(f64::NAN, -1.0);
        z.record(1.0, 2.0);
        z.record(1.0, 2.0);
        assert_eq!((z.value(), z.cost(), z.pay_ratio()), (2.0, 4.0, 0.5));
        assert_eq!(econ.discounted(f64::NAN), econ);
    }

    #[test]
    fn unit_should_live_half_life_times_log2_of_inverse_threshold() {
        let params = ShadowParams {
            half_life: 4.0,
            release_threshold: 0.25,
            max_units: 10,
        }
        .check()
        .unwrap();
        assert_eq!(params.lifetime(), 8.0);
        let mut pool = ShadowPool::new(params);
        assert_eq!(pool.admit(2, 0), 2);
        // Score at age 8 is exactly 0.25: kept; at age 9 below: released.
        for now in 0..=8 {
            assert_eq!(pool.tick(now), 0, "step {now}");
        }
        assert_eq!(pool.tick(9), 2);
        assert!(pool.is_empty());
        assert_eq!(pool.stats().ready_unit_steps, 2 * 10);
        assert_eq!(pool.stats().released, 2);
    }

    #[test]
    fn refresh_should_reset_the_decay() {
        let params = ShadowParams {
            half_life: 1.0,
            release_threshold: 0.5,
            max_units: 10,
        }
        .check()
        .unwrap();
        let mut pool = ShadowPool::new(params);
        pool.admit(1, 0);
        pool.refresh(1, 1);
        assert_eq!(pool.tick(2), 0);
        assert_eq!(pool.tick(3), 1);
    }

    #[test]
    fn promote_and_admit_should_respect_the_pool() {
        let params = ShadowParams {
            half_life: 1.0,
            release_threshold: 0.5,
            max_units: 3,
        }
        .check()
        .unwrap();
        let mut pool = ShadowPool::new(params);
        assert_eq!(pool.admit(5, 0), 3);
        assert_eq!(pool.promote(2), 2);
        assert_eq!(pool.promote(2), 1);
        assert_eq!(pool.stats().promoted, 3);
    }

    #[test]
    fn keys_should_follow_units_through_admit_promote_and_release() {
        let params = ShadowParams {
            half_life: 1.0,
            release_threshold: 0.5,
            max_units: 4,
        }
        .check()
        .unwrap();
        let mut pool = ShadowPool::new(params);
        assert_eq!(pool.admit_keys(2, 0), vec![0, 1]);
        assert_eq!(pool.admit_keys(5, 1), vec![2, 3]); // capped at 4 units
                                                       // The freshest units (admitted at step 1) are promoted first.
        let mut promoted = pool.promote_keys(2);
        promoted.sort();
        assert_eq!(promoted, vec![2, 3]);
        assert!(pool.remove(1));
        assert!(!pool.remove(1));
        // Unit 0 is 2 steps old at step 2: score 0.25 < 0.5, released.
        assert_eq!(pool.tick_released(2), vec![0]);
        assert!(pool.is_empty());
        assert_eq!(pool.admit_keys(1, 3), vec![4], "keys are never reused");
        assert_eq!(pool.stats().released, 1);
        assert_eq!(pool.stats().promoted, 2);
    }

    #[test]
    fn invalid_parameters_should_be_named() {
        let e = ShadowParams {
            half_life: 0.0,
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid shadow pool parameter `half_life`: must be a positive number of steps"
        );
        let e = ShadowParams {
            release_threshold: 1.0,
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(e.to_string().contains("release_threshold"));
    }

    fn economics(value: f64) -> ValidEconomics {
        EconomicsParams {
            value_per_shortfall_minute: value,
            minutes_saved: 15.0,
            ready_cost_per_step: 0.001,
            launch_cost: 0.02,
            max_share_of_active: 0.5,
        }
        .check()
        .unwrap()
    }

    #[test]
    fn exceedance_should_read_the_quantiles() {
        let levels = [0.5, 0.9, 0.99];
        let q = [10.0, 20.0, 40.0];
        let cases = [
            ("below the first quantile", 5.0, 0.5),
            ("at the median", 10.0, 0.5),
            ("halfway to the 0.9 quantile", 15.0, 0.3),
            ("at the 0.9 quantile", 20.0, 0.1),
            ("halfway to the top", 30.0, 0.055),
            ("beyond the top", 40.0, 0.0),
        ];
        for (name, x, want) in cases {
            let p = exceedance(&levels, &q, x);
            assert!((p - want).abs() < 1e-12, "{name}: {p} vs {want}");
        }
        assert_eq!(exceedance(&levels, &[1.0, f64::NAN, 2.0], 1.5), 0.0);
        assert_eq!(exceedance(&[], &[], 1.0), 0.0);
    }

    #[test]
    fn top_up_should_stop_where_a_unit_no_longer_pays() {
        let levels = [0.5, 0.9, 0.99];
        let q = [10.0, 20.0, 40.0];
        // Units of 5, 2 active (10): unit k covers usage above 10 + 5(k-1).
        // P = 0.5, 0.3, 0.1, 0.0775, 0.055, ... Value of a promotion: 15 min x $0.01 = $0.15.
        // Waiting costs 0.001 x 12 / ln 2 = $0.0173; a new unit $0.02 more.
        let e = economics(0.01);
        // 0.5 x 0.15 = 0.075, 0.3 x 0.15 = 0.045 pass, 0.1 x 0.15 = 0.015 < 0.0373: 2 units;
        // but the cap is ceil(2 x 0.5) = 1.
        assert_eq!(e.top_up(&levels, &q, 2, 5.0, 0, 12.0, 64), 1);
        assert_eq!(e.top_up(&levels, &q, 4, 2.5, 0, 12.0, 64), 2);
        // 6 active of 2.5 (cap 3): P = 0.3, 0.2, 0.1. A new unit needs 0.0373 (one passes);
        // units already ready only pay for their wait, 0.0173 (two pass).
        assert_eq!(e.top_up(&levels, &q, 6, 2.5, 0, 12.0, 64), 1);
        assert_eq!(e.top_up(&levels, &q, 6, 2.5, 3, 12.0, 64), 2);
        assert_eq!(
            e.top_up(&levels, &q, 8, 2.5, 3, 12.0, 64),
            0,
            "8 x 2.5 = 20: P(X > 20) = 0.1"
        );
        assert_eq!(economics(0.0).top_up(&levels, &q, 2, 5.0, 0, 12.0, 64), 0);
        assert_eq!(e.top_up(&levels, &q, 2, 0.0, 0, 12.0, 64), 0);
    }

    #[test]
    fn keep_threshold_should_weigh_the_wait_against_the_value() {
        let e = economics(0.01);
        // 0.001 x 12 / ln 2 / 0.15
        let want = 0.001 * 12.0 / std::f64::consts::LN_2 / 0.15;
        assert!((e.keep_threshold(12.0) - want).abs() < 1e-12);
        assert_eq!(economics(0.0).keep_threshold(12.0), 1.0);
        assert!(EconomicsParams {
            launch_cost: -1.0,
            ..e.params().clone()
        }
        .check()
        .unwrap_err()
        .to_string()
        .contains("launch_cost"));
    }

    #[test]
    fn half_life_should_follow_the_peak_spacing() {
        // A peak of 3 steps every 48 steps: lifetime 48 steps, threshold 0.25 -> half-life 24.
        let series: Vec<f64> = (0..480)
            .map(|i| if i % 48 < 3 { 10.0 } else { 1.0 })
            .collect();
        let hl = half_life_from_peaks(&series, 0.9, 3, 0.25, 1.0, 1000.0).unwrap();
        assert_eq!(hl, 24.0);
        assert_eq!(
            half_life_from_peaks(&series, 0.9, 3, 0.25, 1.0, 10.0),
            Some(10.0)
        );
        assert_eq!(
            half_life_from_peaks(&[1.0; 100], 0.9, 3, 0.25, 1.0, 100.0),
            None
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Admit(usize),
        Promote(usize),
        Refresh(usize),
        Tick(f64),
        Cap(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..6).prop_map(Op::Admit),
            (0usize..6).prop_map(Op::Promote),
            (0usize..6).prop_map(Op::Refresh),
            (0.0f64..1.0).prop_map(Op::Tick),
            (0usize..8).prop_map(Op::Cap),
        ]
    }

    proptest! {
        /// Whatever happens, after each tick no unit is below the decay threshold, the pool
        /// never holds more than its cap, and its counts never go negative.
        #[test]
        fn pool_should_respect_threshold_cap_and_counts(
            half_life in 0.5f64..50.0,
            threshold in 0.01f64..0.99,
            max_units in 0usize..10,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let params = ShadowParams { half_life, release_threshold: threshold, max_units }
                .check()
                .unwrap();
            let mut pool = ShadowPool::new(params);
            let mut removed_by_cap = 0u64;
            let mut cap = max_units;
            for (now, op) in ops.into_iter().enumerate() {
                let now = now as u64;
                match op {
                    Op::Admit(n) => { pool.admit_keys(n, now); }
                    Op::Promote(n) => { pool.promote_keys(n); }
                    Op::Refresh(n) => pool.refresh(n, now),
                    Op::Tick(econ) => {
                        pool.tick_released_below(now, econ);
                        let floor = threshold.max(econ);
                        for sc in pool.scores(now) {
                            prop_assert!(sc >= floor, "score {} below {}", sc, floor);
                        }
                    }
                    Op::Cap(c) => {
                        cap = c.min(max_units);
                        removed_by_cap += pool.release_over(cap).len() as u64;
                    }
                }
                prop_assert!(pool.len() <= max_units);
                prop_assert!(removed_by_cap <= pool.stats().released);
                let st = pool.stats();
                // admitted = promoted + released + held: nothing is lost or counted twice.
                prop_assert_eq!(st.admitted, st.promoted + st.released + pool.len() as u64);
                if let Op::Cap(_) = op { prop_assert!(pool.len() <= cap); }
            }
        }

        #[test]
        fn exceedance_should_be_a_probability_non_increasing_in_x(
            mut q in proptest::collection::vec(-100.0f64..100.0, 1..8),
            a in -200.0f64..200.0, b in -200.0f64..200.0,
        ) {
            q.sort_by(f64::total_cmp);
            let n = q.len();
            let levels: Vec<f64> = (1..=n).map(|i| i as f64 / (n + 1) as f64).collect();
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let (pl, ph) = (exceedance(&levels, &q, lo), exceedance(&levels, &q, hi));
            prop_assert!((0.0..=1.0).contains(&pl) && (0.0..=1.0).contains(&ph));
            prop_assert!(ph <= pl + 1e-12);
        }

        #[test]
        fn shadow_scores_should_decay_monotonically(half_life in 0.1f64..1000.0, a in 0.0f64..1e4, b in 0.0f64..1e4) {
            let (young, old) = if a <= b { (a, b) } else { (b, a) };
            let s_young = retention_score(young, half_life);
            let s_old = retention_score(old, half_life);
            prop_assert!(s_old <= s_young);
            prop_assert!(s_young <= 1.0 && s_old >= 0.0);
        }

        #[test]
        fn pool_scores_should_never_rise_without_refresh(steps in 1u64..200, n in 1usize..5) {
            let mut pool = ShadowPool::new(ValidShadow::default());
            pool.admit(n, 0);
            let mut prev = pool.scores(0);
            for now in 1..steps {
                let cur = pool.scores(now);
                for (c, p) in cur.iter().zip(&prev) {
                    prop_assert!(c <= p);
                }
                prev = cur;
            }
        }
    }
}
