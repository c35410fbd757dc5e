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
        self.stats.ready_unit_steps += self.units.len() as u64;
        let p = self.params.params();
        let (hl, thr) = (p.half_life, p.release_threshold);
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

    proptest! {
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
