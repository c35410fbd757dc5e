//! The virtual-time replay of one usage trace through the whole decision loop.
//!
//! Each step: capacity whose boot (or promotion) completes becomes active, the step is scored
//! against that active capacity, the [`Allocator`] observes the usage and plans the capacity for
//! one provisioning delay later, and the plan is carried out on whole units: promote ready units
//! from the [`ShadowPool`] first (fast), boot the rest cold (slow); on a scale-down, active units
//! are stopped into the pool instead of terminated. Ahead of a predicted peak (the forecast's top
//! quantile above the plan) the pool is topped up and its units' retention scores refreshed.
//! Nothing here reads a clock: time is the step index.

use std::collections::VecDeque;

use serde::Serialize;

use crate::policy::{Allocator, AllocatorSettings, ValidPolicy};
use crate::shadow::{PoolStats, ShadowPool, ValidShadow};

/// Errors of the replay.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A simulation parameter is outside its allowed range.
    #[error("invalid simulation parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The trace holds no step.
    #[error("the trace is empty")]
    EmptyTrace,
}

/// Result type of the replay.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Unchecked simulation parameters; [`SimParams::check`] validates them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimParams {
    /// Seconds per step.
    pub step_seconds: u64,
    /// Steps from launching a unit to it being active.
    pub boot_delay: usize,
    /// Steps from promoting a ready unit to it being active (0: within the same step).
    pub promote_delay: usize,
    /// Usage one unit serves (for example vCPUs or MHz per instance), > 0.
    pub unit_capacity: f64,
    /// Price of one running unit per hour.
    pub hourly_price: f64,
    /// Price of one ready (stopped or hibernated) unit per hour.
    pub ready_hourly_price: f64,
    /// Fewest active units.
    pub min_units: usize,
    /// Most active units.
    pub max_units: usize,
    /// Steps at the start that are not scored (warm-up).
    pub warmup: usize,
}

impl SimParams {
    /// Validates the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first parameter out of range.
    pub fn check(self) -> Result<ValidSim> {
        let bad = |name, reason| Err(Error::InvalidParameter { name, reason });
        if self.step_seconds == 0 {
            return bad("step_seconds", "must be at least 1");
        }
        if !(self.unit_capacity > 0.0 && self.unit_capacity.is_finite()) {
            return bad("unit_capacity", "must be a positive number");
        }
        if !(self.hourly_price >= 0.0 && self.hourly_price.is_finite()) {
            return bad("hourly_price", "must be a finite number at least 0");
        }
        if !(self.ready_hourly_price >= 0.0 && self.ready_hourly_price.is_finite()) {
            return bad("ready_hourly_price", "must be a finite number at least 0");
        }
        if self.max_units < self.min_units {
            return bad("max_units", "must be at least min_units");
        }
        if self.promote_delay > self.boot_delay {
            return bad("promote_delay", "must not exceed boot_delay");
        }
        Ok(ValidSim(self))
    }
}

/// Checked simulation parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidSim(SimParams);

impl ValidSim {
    /// The checked parameters.
    pub fn params(&self) -> &SimParams {
        &self.0
    }
}

/// One step of the replay, for plots and tests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimPoint {
    /// Usage.
    pub usage: f64,
    /// Active capacity (units × unit capacity).
    pub active: f64,
    /// Capacity waiting ready in the shadow pool.
    pub shadow: f64,
    /// Low end of the forecast band for this step (q0.1, made one lead earlier); NaN if none.
    pub forecast_low: f64,
    /// High end of the forecast band for this step (the quantile used); NaN if none.
    pub forecast_high: f64,
}

/// What a replay cost and achieved, over the scored steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// Scored steps.
    pub steps: usize,
    /// Total dollars: running units plus ready units.
    pub dollars: f64,
    /// Dollars of running (and booting) units.
    pub running_dollars: f64,
    /// Dollars of the shadow pool's ready units.
    pub shadow_dollars: f64,
    /// `Σ max(active − u, 0) / Σ active`.
    pub slack: f64,
    /// Minutes with usage above active capacity.
    pub shortfall_minutes: f64,
    /// `Σ max(u − active, 0) / Σ u`.
    pub shortfall_volume: f64,
    /// Mean minutes from requesting a unit to it being active.
    pub mean_time_to_capacity_minutes: f64,
    /// Units booted cold.
    pub cold_boots: u64,
    /// Pool statistics (promotions, admissions, releases, ready unit-steps).
    pub pool: PoolStats,
    /// Steps where the active unit count changed, per day.
    pub changes_per_day: f64,
    /// Per-step trace (all steps, warm-up included).
    pub points: Vec<SimPoint>,
}

/// Replays `usage` through the policy, the unit-based cloud model and (when given) the pool.
///
/// # Errors
/// [`Error::EmptyTrace`] when `usage` is empty.
pub fn simulate(
    usage: &[f64],
    policy: &ValidPolicy,
    settings: AllocatorSettings,
    sim: &ValidSim,
    shadow: Option<&ValidShadow>,
) -> Result<SimReport> {
    simulate_with_progress(usage, policy, settings, sim, shadow, &mut |_| {})
}

/// [`simulate`], calling `progress(steps done)` every 1,024 steps and at the end (for progress
/// bars on long replays).
///
/// # Errors
/// [`Error::EmptyTrace`] when `usage` is empty.
pub fn simulate_with_progress(
    usage: &[f64],
    policy: &ValidPolicy,
    settings: AllocatorSettings,
    sim: &ValidSim,
    shadow: Option<&ValidShadow>,
    progress: &mut dyn FnMut(usize),
) -> Result<SimReport> {
    if usage.is_empty() {
        return Err(Error::EmptyTrace);
    }
    let p = sim.params();
    let lead = policy.params().lead;
    let hours = p.step_seconds as f64 / 3600.0;
    let minutes = p.step_seconds as f64 / 60.0;
    let units_for = |c: f64| -> usize {
        let n = if c.is_finite() {
            (c / p.unit_capacity).ceil().max(0.0) as usize
        } else {
            p.max_units
        };
        n.clamp(p.min_units, p.max_units)
    };
    let mut allocator = Allocator::new(policy.clone(), settings);
    let mut pool = shadow.map(|s| ShadowPool::new(s.clone()));
    let mut active = units_for(usage[0]);
    // In-flight units: activation step.
    let mut arriving: VecDeque<u64> = VecDeque::new();
    let mut band: VecDeque<(u64, f64, f64)> = VecDeque::new();
    let (mut running_unit_steps, mut requests, mut request_delay_steps, mut cold) =
        (0u64, 0u64, 0u64, 0u64);
    let (mut over, mut sum_active, mut under, mut sum_u, mut short_steps, mut changes) =
        (0.0, 0.0, 0.0, 0.0, 0usize, 0usize);
    let mut ready_at_scoring = 0u64;
    let mut points = Vec::with_capacity(usage.len());
    let mut prev_active = active;
    for (s, &u) in usage.iter().enumerate() {
        let now = s as u64;
        while arriving.front().is_some_and(|&t| t <= now) {
            arriving.pop_front();
            active += 1;
        }
        let cap = active as f64 * p.unit_capacity;
        let (mut lo, mut hi) = (f64::NAN, f64::NAN);
        while let Some(&(t, l, h)) = band.front() {
            if t > now {
                break;
            }
            band.pop_front();
            if t == now {
                (lo, hi) = (l, h);
            }
        }
        let pool_len = pool.as_ref().map_or(0, |x| x.len());
        points.push(SimPoint {
            usage: u,
            active: cap,
            shadow: pool_len as f64 * p.unit_capacity,
            forecast_low: lo,
            forecast_high: hi,
        });
        if s >= p.warmup {
            sum_active += cap;
            sum_u += u;
            over += (cap - u).max(0.0);
            under += (u - cap).max(0.0);
            if u > cap {
                short_steps += 1;
            }
            if active != prev_active {
                changes += 1;
            }
            running_unit_steps += (active + arriving.len()) as u64;
            ready_at_scoring += pool_len as u64;
        }
        prev_active = active;

        // Decide.
        let (plan, f) = allocator.step_with_forecast(u);
        let row = &f.values[f.steps() - 1];
        let qi = f.level_index(plan.explanation.quantile);
        band.push_back((now + lead as u64, row[0], row[qi]));
        // Ahead of a predicted peak: keep ready units for the top quantile above the plan.
        if let Some(pool) = pool.as_mut() {
            let peak = units_for(row[row.len() - 1]);
            let want = peak.saturating_sub(units_for(plan.capacity));
            if want > 0 {
                pool.refresh(want, now);
                if pool.len() < want {
                    let added = pool.admit(want - pool.len(), now);
                    // Provisioned ahead: each boots (running) before it is stopped.
                    running_unit_steps += (added * p.boot_delay) as u64;
                    cold += added as u64;
                }
            }
        }
        let desired = units_for(plan.capacity);
        let committed = active + arriving.len();
        if desired > committed {
            let mut need = desired - committed;
            if let Some(pool) = pool.as_mut() {
                let k = pool.promote(need);
                for _ in 0..k {
                    insert_sorted(
                        &mut arriving,
                        now + p
                            .promote_delay
                            .max(if p.promote_delay == 0 { 0 } else { 1 })
                            as u64,
                    );
                }
                requests += k as u64;
                request_delay_steps += (k * p.promote_delay) as u64;
                need -= k;
            }
            for _ in 0..need {
                insert_sorted(&mut arriving, now + p.boot_delay as u64);
            }
            requests += need as u64;
            request_delay_steps += (need * p.boot_delay) as u64;
            cold += need as u64;
            // Units promoted with no delay are active at once.
            while arriving.front().is_some_and(|&t| t <= now) {
                arriving.pop_front();
                active += 1;
            }
        } else if desired < committed {
            let mut excess = committed - desired;
            // Cancel the latest launches first, then stop active units into the pool.
            while excess > 0 && arriving.pop_back().is_some() {
                excess -= 1;
            }
            let stop = excess.min(active);
            active -= stop;
            if let Some(pool) = pool.as_mut() {
                pool.admit(stop, now);
            }
        }
        if let Some(pool) = pool.as_mut() {
            pool.tick(now);
        }
        if s % 1024 == 1023 {
            progress(s + 1);
        }
    }
    progress(usage.len());
    let steps = usage.len().saturating_sub(p.warmup);
    let pool_stats = pool.as_ref().map(|x| x.stats()).unwrap_or_default();
    let running_dollars = running_unit_steps as f64 * hours * p.hourly_price;
    let shadow_dollars = ready_at_scoring as f64 * hours * p.ready_hourly_price;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ok(SimReport {
        steps,
        dollars: running_dollars + shadow_dollars,
        running_dollars,
        shadow_dollars,
        slack: ratio(over, sum_active),
        shortfall_minutes: short_steps as f64 * minutes,
        shortfall_volume: ratio(under, sum_u),
        mean_time_to_capacity_minutes: ratio(request_delay_steps as f64, requests as f64) * minutes,
        cold_boots: cold,
        pool: pool_stats,
        changes_per_day: ratio(changes as f64, steps as f64 * hours / 24.0),
        points,
    })
}

fn insert_sorted(q: &mut VecDeque<u64>, t: u64) {
    let i = q.partition_point(|&x| x <= t);
    q.insert(i, t);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyParams;

    fn sim(warmup: usize) -> ValidSim {
        SimParams {
            step_seconds: 300,
            boot_delay: 3,
            promote_delay: 0,
            unit_capacity: 10.0,
            hourly_price: 1.0,
            ready_hourly_price: 0.1,
            min_units: 1,
            max_units: 100,
            warmup,
        }
        .check()
        .unwrap()
    }

    /// A daily square wave: 20 units of usage at night, 80 by day, 288 steps a day.
    fn square(days: usize) -> Vec<f64> {
        (0..days * 288)
            .map(|i| {
                if (i % 288) >= 96 && (i % 288) < 192 {
                    80.0
                } else {
                    20.0
                }
            })
            .collect()
    }

    #[test]
    fn constant_usage_should_cost_exactly_its_units() {
        let u = vec![25.0; 600];
        let policy = PolicyParams::default().check().unwrap();
        let r = simulate(
            &u,
            &policy,
            AllocatorSettings::for_step(300),
            &sim(100),
            None,
        )
        .unwrap();
        // 25 needs 3 units of 10 once the policy has settled; 500 scored steps of 5 minutes.
        assert_eq!(r.shortfall_minutes, 0.0);
        assert!((r.slack - 5.0 / 30.0).abs() < 1e-9, "slack {}", r.slack);
        assert!(
            (r.running_dollars - 3.0 * 500.0 / 12.0).abs() < 1e-9,
            "{}",
            r.running_dollars
        );
    }

    #[test]
    fn shadow_pool_should_shorten_time_to_capacity_on_a_daily_wave() {
        let u = square(10);
        let policy = PolicyParams::default().check().unwrap();
        let settings = AllocatorSettings::for_step(300);
        let without = simulate(&u, &policy, settings, &sim(288), None).unwrap();
        let with = simulate(
            &u,
            &policy,
            settings,
            &sim(288),
            Some(&ValidShadow::default()),
        )
        .unwrap();
        assert!(with.pool.promoted > 0, "{:?}", with.pool);
        assert!(with.mean_time_to_capacity_minutes < without.mean_time_to_capacity_minutes);
        assert!(with.shortfall_minutes <= without.shortfall_minutes);
        assert!(with.shadow_dollars > 0.0);
        assert_eq!(without.shadow_dollars, 0.0);
    }

    /// 10 days of a real RDS CPU trace (NAB; see tests/data/allocate/SOURCE.md).
    fn real_excerpt() -> Vec<f64> {
        include_str!("../../../tests/data/allocate/nab_rds_cpu_utilization_e47b3b_10d.csv")
            .lines()
            .skip(1)
            .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn predictive_should_beat_vpa_slack_and_shortfall_on_a_real_excerpt() {
        use crate::simulate::baselines::{allocate, Baseline, Geometry};
        use crate::simulate::metrics::AllocationMetrics;
        let u = real_excerpt();
        assert_eq!(u.len(), 2880);
        let g = Geometry {
            lead: 3,
            warmup: 3 * 288,
            day: 288,
        };
        let policy = PolicyParams::default().check().unwrap();
        let ours = crate::policy::replay(&u, &policy, AllocatorSettings::for_step(300));
        let ours = AllocationMetrics::score(&u, &ours, g.warmup, 288.0).unwrap();
        let vpa = allocate(Baseline::Vpa, &u, g);
        let vpa = AllocationMetrics::score(&u, &vpa, g.warmup, 288.0).unwrap();
        assert!(ours.slack < 0.85 * vpa.slack, "ours {ours:?} vpa {vpa:?}");
        assert!(
            ours.shortfall_steps <= vpa.shortfall_steps,
            "ours {ours:?} vpa {vpa:?}"
        );
        assert!(ours.cost_vs_oracle < vpa.cost_vs_oracle);
    }

    #[test]
    fn whole_loop_on_a_real_excerpt_should_account_for_the_pool() {
        let u = real_excerpt();
        let policy = PolicyParams::default().check().unwrap();
        let settings = AllocatorSettings::for_step(300);
        let mut p = sim(3 * 288).params().clone();
        p.unit_capacity = 2.0; // percent CPU per unit
        let p = p.check().unwrap();
        let without = simulate(&u, &policy, settings, &p, None).unwrap();
        let with = simulate(&u, &policy, settings, &p, Some(&ValidShadow::default())).unwrap();
        assert_eq!(with.points.len(), u.len());
        assert!(
            with.pool.promoted > 0 && with.pool.released > 0,
            "{:?}",
            with.pool
        );
        assert!(with.mean_time_to_capacity_minutes < without.mean_time_to_capacity_minutes);
        assert!((with.dollars - with.running_dollars - with.shadow_dollars).abs() < 1e-9);
        assert!(with.slack > 0.0 && with.slack < 0.5, "{}", with.slack);
    }

    #[test]
    fn bounds_should_hold_in_every_step() {
        let u = square(3);
        let policy = PolicyParams::default().check().unwrap();
        let mut p = sim(0).params().clone();
        p.min_units = 3;
        p.max_units = 5;
        let r = simulate(
            &u,
            &policy,
            AllocatorSettings::for_step(300),
            &p.check().unwrap(),
            None,
        )
        .unwrap();
        for pt in &r.points[1..] {
            assert!(pt.active >= 30.0 && pt.active <= 50.0, "{pt:?}");
        }
    }
}
