//! The shadow pool in the loop: ready instances kept ahead of predicted peaks.
//!
//! A workload with `shadow.max_units > 0` owns a pool of standalone instances (tagged with the
//! controller's owner, the workload and [`ROLE_TAG`]` = shadow`) besides its group:
//!
//! - **warming**: launched ahead of a predicted peak, still booting; stopped once running;
//! - **ready**: stopped (or hibernated when `shadow.hibernate` and the type allows it); costs
//!   storage only and starts in seconds instead of a cold boot;
//! - **ready-running**: ready, but the cloud refused to stop it; counted as shadow and its
//!   compute cost counts against the workload's budget;
//! - **active**: promoted: started to serve demand.
//!
//! The capacity serving the workload is the group's desired count plus the active units, and the
//! loop keeps it equal to the decision's desired count: a scale-up first **promotes** ready units
//! (freshest first), the group covers the rest; a scale-down first **demotes** active units back
//! to ready (kept at scale-down, score reset), the group shrinks by the rest. Ready units are
//! released by the engine's decay rule ([`predictive_engine::shadow::retention_score`]): a unit
//! whose score has fallen below `release_threshold` is terminated, unless a predicted peak within
//! `shadow.horizon` refreshes it.
//!
//! The pool is stored (loop state `shadow`) after every change; launches use an idempotency
//! token derived from the workload and tick, so a tick replayed after a crash launches nothing
//! twice, and [`crate::run::Controller::recover`] adopts tagged units the store does not know.

use serde::{Deserialize, Serialize};

use predictive_engine::shadow::{retention_score, ShadowParams};

use crate::clock::{parse_duration, Timestamp};
use crate::config::ShadowSettings;

/// Tag naming the role of an instance the controller launches outside a group.
pub const ROLE_TAG: &str = "predictive-role";
/// [`ROLE_TAG`] value of shadow pool units.
pub const ROLE_SHADOW: &str = "shadow";
/// Loop state kind under which the pool is stored.
pub const STATE_KIND: &str = "shadow";

/// Where a unit is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitState {
    /// Launched, booting; stopped once running.
    Warming,
    /// Stopped or hibernated.
    Ready,
    /// Ready but still running (the cloud would not stop it).
    ReadyRunning,
    /// Promoted: serving the workload.
    Active,
}

/// One shadow instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// Cloud instance id.
    pub id: String,
    /// Its state.
    pub state: UnitState,
    /// When it entered the pool.
    pub since: Timestamp,
    /// When its retention score was last reset to 1.
    pub refreshed_at: Timestamp,
}

/// A workload's pool with its cumulative counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// The units, in launch order.
    pub units: Vec<Unit>,
    /// Units launched so far.
    pub launched: u64,
    /// Promotions so far.
    pub promoted: u64,
    /// Units released by the decay rule so far.
    pub released: u64,
}

impl Pool {
    /// Units in `state`.
    pub fn count(&self, state: UnitState) -> u32 {
        self.units.iter().filter(|u| u.state == state).count() as u32
    }

    /// Units held ready (stopped or running) or warming: the pool's size.
    pub fn size(&self) -> u32 {
        self.units
            .iter()
            .filter(|u| u.state != UnitState::Active)
            .count() as u32
    }

    /// Whether the pool knows the instance.
    pub fn contains(&self, id: &str) -> bool {
        self.units.iter().any(|u| u.id == id)
    }

    /// Decodes a stored pool (empty when nothing is stored).
    ///
    /// # Errors
    /// The JSON error of a corrupt record.
    pub fn decode(text: Option<&str>) -> Result<Self, serde_json::Error> {
        text.map_or(Ok(Self::default()), serde_json::from_str)
    }

    /// Encodes the pool for the store.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A workload's checked shadow settings, in steps of the loop's interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Most units held (warming and ready).
    pub max_units: u32,
    /// Half-life of the retention score, in steps.
    pub half_life: f64,
    /// Release threshold of the retention score.
    pub release_threshold: f64,
    /// Steps ahead that predicted peaks are prepared for.
    pub horizon: usize,
    /// Hibernate where allowed.
    pub hibernate: bool,
}

impl Settings {
    /// The settings of a workload at the loop's interval; `None` when the pool is off
    /// (`max_units = 0`) or the settings are out of range (the config check rejects those).
    pub fn new(s: &ShadowSettings, interval: i64) -> Option<Self> {
        if s.max_units == 0 || interval <= 0 {
            return None;
        }
        let half_life = parse_duration(&s.half_life).ok()? as f64 / interval as f64;
        let horizon = (parse_duration(&s.horizon).ok()? + interval - 1) / interval;
        // The engine checks the decay parameters; the loop uses its rule.
        let valid = ShadowParams {
            half_life,
            release_threshold: s.release_threshold,
            max_units: s.max_units as usize,
        }
        .check()
        .ok()?;
        Some(Self {
            max_units: s.max_units,
            half_life: valid.params().half_life,
            release_threshold: valid.params().release_threshold,
            horizon: horizon.max(1) as usize,
            hibernate: s.hibernate,
        })
    }

    /// The retention score of an idle unit at `now`.
    pub fn score(&self, u: &Unit, now: Timestamp, interval: i64) -> f64 {
        let age = (now - u.refreshed_at).max(0) as f64 / interval.max(1) as f64;
        retention_score(age, self.half_life)
    }
}

/// What the pool should do this tick, before the cloud calls (which may partly fail).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// Ready units to start, freshest first.
    pub promote: Vec<String>,
    /// Active units to stop back into the pool.
    pub demote: Vec<String>,
    /// Units to launch ahead of the predicted peak.
    pub launch: u32,
    /// Ready units whose score is reset (a peak is predicted within the horizon).
    pub refresh: Vec<String>,
    /// Ready units to release (score below threshold, or above `max_units`).
    pub release: Vec<String>,
}

/// The instance counts a pool step is planned against (see [`plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Instances that must serve.
    pub desired: u32,
    /// Instances the group holds.
    pub group_desired: u32,
    /// The group's minimum.
    pub group_min: u32,
    /// Instances predicted within the horizon.
    pub peak: u32,
    /// The group's maximum.
    pub max: u32,
}

/// Plans the pool's step: `desired` instances must serve, the group holds `group_desired`
/// (at least `group_min`), `peak` instances are predicted within the horizon, and the group may
/// not exceed `max` (all in `sizes`).
///
/// # Guarantees
/// Promotes only ready units, demotes only active ones, never launches beyond `max_units`
/// units or beyond `max - desired`, and never releases a unit it refreshes.
pub fn plan(pool: &Pool, s: &Settings, sizes: Sizes, now: Timestamp, interval: i64) -> Step {
    let Sizes {
        desired,
        group_desired,
        group_min,
        peak,
        max,
    } = sizes;
    let mut step = Step::default();
    let active = pool.count(UnitState::Active);
    let serving = group_desired + active;
    // Ready units by freshness (running ones first: they serve at once).
    let mut ready: Vec<&Unit> = pool
        .units
        .iter()
        .filter(|u| matches!(u.state, UnitState::Ready | UnitState::ReadyRunning))
        .collect();
    ready.sort_by_key(|u| {
        (
            u.state != UnitState::ReadyRunning,
            std::cmp::Reverse(u.refreshed_at),
            u.id.clone(),
        )
    });
    if desired > serving {
        let k = (desired - serving).min(desired.saturating_sub(group_min).saturating_sub(active))
            as usize;
        step.promote = ready.iter().take(k).map(|u| u.id.clone()).collect();
    } else {
        // Scale-down: active units go back to the pool first; the group keeps its minimum.
        let n = (serving - desired)
            .min(active)
            .max(active.saturating_sub(desired.saturating_sub(group_min)));
        let mut act: Vec<&Unit> = pool
            .units
            .iter()
            .filter(|u| u.state == UnitState::Active)
            .collect();
        act.sort_by_key(|u| (std::cmp::Reverse(u.since), u.id.clone()));
        step.demote = act.iter().take(n as usize).map(|u| u.id.clone()).collect();
    }
    let remaining: Vec<&Unit> = ready
        .iter()
        .copied()
        .filter(|u| !step.promote.contains(&u.id))
        .collect();
    let warming = pool.count(UnitState::Warming);
    let held = remaining.len() as u32 + warming + step.demote.len() as u32;
    let want = peak
        .saturating_sub(desired)
        .min(s.max_units)
        .min(max.saturating_sub(desired));
    if want > held {
        step.launch = (want - held).min(s.max_units.saturating_sub(held));
    }
    // A predicted peak refreshes the freshest units it needs; the rest decay.
    step.refresh = remaining
        .iter()
        .take(want as usize)
        .map(|u| u.id.clone())
        .collect();
    let room = s
        .max_units
        .saturating_sub(warming + step.demote.len() as u32) as usize;
    for (i, u) in remaining.iter().enumerate() {
        if step.refresh.contains(&u.id) {
            continue;
        }
        if i >= room || s.score(u, now, interval) < s.release_threshold {
            step.release.push(u.id.clone());
        }
    }
    step
}

/// The idempotency token of the shadow launch of `workload` at tick `ts` (1 to 64 characters of
/// letters, digits, `-` and `_`).
pub fn launch_token(workload: &str, ts: Timestamp) -> String {
    let clean: String = workload
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let suffix = format!("-{ts}-shadow");
    let keep = 64usize.saturating_sub(suffix.len());
    let head: String = clean.chars().take(keep).collect();
    format!("{head}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings() -> Settings {
        Settings::new(
            &ShadowSettings {
                max_units: 4,
                half_life: "1h".into(),
                release_threshold: 0.25,
                horizon: "1h".into(),
                hibernate: false,
            },
            300,
        )
        .unwrap()
    }

    fn unit(id: &str, state: UnitState, at: Timestamp) -> Unit {
        Unit {
            id: id.into(),
            state,
            since: at,
            refreshed_at: at,
        }
    }

    #[test]
    fn settings_convert_durations_to_steps_and_off_means_none() {
        let s = settings();
        assert_eq!((s.half_life, s.horizon), (12.0, 12));
        assert!(Settings::new(&ShadowSettings::default(), 300).is_none());
    }

    /// A group of at least 1 and at most 10 units.
    fn sizes(desired: u32, group_desired: u32, peak: u32) -> Sizes {
        Sizes {
            desired,
            group_desired,
            group_min: 1,
            peak,
            max: 10,
        }
    }

    #[test]
    fn scale_up_promotes_ready_units_before_the_group_grows() {
        let pool = Pool {
            units: vec![
                unit("a", UnitState::Ready, 0),
                unit("b", UnitState::Ready, 600),
            ],
            ..Pool::default()
        };
        let st = plan(&pool, &settings(), sizes(5, 2, 5), 900, 300);
        assert_eq!(st.promote, vec!["b".to_string(), "a".to_string()]);
        assert!(st.demote.is_empty() && st.release.is_empty());
        assert_eq!(st.launch, 0);
    }

    #[test]
    fn scale_down_demotes_active_units_and_a_peak_ahead_launches() {
        let pool = Pool {
            units: vec![
                unit("a", UnitState::Active, 0),
                unit("b", UnitState::Active, 300),
            ],
            ..Pool::default()
        };
        // Serving 3 + 2 = 5, desired 4: one active unit goes back; a peak of 8 wants 4 ready.
        let st = plan(&pool, &settings(), sizes(4, 3, 8), 600, 300);
        assert_eq!(st.demote, vec!["b".to_string()]);
        assert_eq!(st.launch, 3, "4 wanted, the demoted one counts");
    }

    #[test]
    fn idle_units_are_released_by_the_decay_rule_unless_a_peak_refreshes_them() {
        let pool = Pool {
            units: vec![
                unit("old", UnitState::Ready, 0),
                unit("new", UnitState::Ready, 7000),
            ],
            ..Pool::default()
        };
        let s = settings();
        // Two hours (24 steps) at a 1 h half-life scores 0.25: the old unit goes, the new stays.
        let now = 24 * 300 + 1;
        let st = plan(&pool, &s, sizes(2, 2, 0), now, 300);
        assert_eq!(st.release, vec!["old".to_string()]);
        let st = plan(&pool, &s, sizes(2, 2, 4), now, 300);
        assert!(st.release.is_empty(), "a peak ahead keeps both: {st:?}");
        assert_eq!(st.refresh.len(), 2);
    }

    #[test]
    fn tokens_are_valid_cloud_tokens() {
        let t = launch_token("web.api/x", 1_397_174_700);
        assert_eq!(t, "web_api_x-1397174700-shadow");
        assert!(
            predictive_clouds::IdempotencyToken::new(launch_token(&"w".repeat(100), 1)).is_ok()
        );
    }

    proptest! {
        #[test]
        fn plan_respects_its_bounds(
            states in proptest::collection::vec(0u8..4, 0..8), desired in 0u32..20, group in 0u32..20,
            min in 0u32..3, peak in 0u32..30, max in 1u32..30, now in 0i64..100_000,
        ) {
            let s = settings();
            let units: Vec<Unit> = states.iter().enumerate().map(|(i, k)| unit(
                &format!("u{i}"),
                [UnitState::Warming, UnitState::Ready, UnitState::ReadyRunning, UnitState::Active][*k as usize],
                (i as i64) * 600,
            )).collect();
            let pool = Pool { units, ..Pool::default() };
            let st = plan(&pool, &s, Sizes { desired, group_desired: group, group_min: min, peak, max }, now, 300);
            for id in &st.promote {
                let u = pool.units.iter().find(|u| &u.id == id).unwrap();
                prop_assert!(matches!(u.state, UnitState::Ready | UnitState::ReadyRunning));
            }
            for id in &st.demote {
                prop_assert_eq!(pool.units.iter().find(|u| &u.id == id).unwrap().state, UnitState::Active);
            }
            for id in &st.release {
                prop_assert!(!st.refresh.contains(id) && !st.promote.contains(id));
            }
            prop_assert!(st.launch <= s.max_units);
            prop_assert!(st.launch <= max.saturating_sub(desired));
        }
    }
}
