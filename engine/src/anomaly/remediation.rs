//! What to do about an anomalous workload: a pure decision the controller applies.
//!
//! The policy is chosen per workload. [`decide`] turns a [`Verdict`] and the workload's situation
//! into a [`Decision`]; the controller executes [`Decision::action`] unless the decision is a dry
//! run, writes the decision to its audit log either way, and clamps any proposed allocation to
//! [`Decision::allocation_cap`].
//!
//! A leak is never fed. Where the allocation is of a resource a leak fills (memory, disk: the
//! caller says so in [`RemediationContext::cap_leaks`]), once a leak is flagged the allocation is
//! capped at its value at that moment, whatever the policy, and the cap is kept (the controller
//! passes it back in [`RemediationContext::held_cap`]) for as long as the usage keeps climbing —
//! even on steps where the detector, having announced the incident once, scores low, or flags
//! the climb as another kind (a new record of the leak named a burst). So a steady climb cannot
//! drive the scaling loop into a runaway. An isolation holds until the controller drops
//! `held_cap` (an operator's release). While held, the cap follows the allocation down and never
//! back up (a property test checks that a leak under `isolate` never grows the allocation).
//!
//! [`AuditRecord`] is the audit-log entry of a decision, for the controller to store.

use super::{AnomalyKind, Evidence, Verdict};

/// Remediation chosen for a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemediationPolicy {
    /// Raise an alert and change nothing else (the default), except that a leak is not grown
    /// where [`RemediationContext::cap_leaks`] says so.
    #[default]
    AlertOnly,
    /// Hold the workload's allocation where it is and stop growing it.
    Isolate,
    /// Stop the workload (it can be started again).
    Stop,
    /// Terminate the workload (irreversible).
    Terminate,
}

impl std::str::FromStr for RemediationPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "alert-only" | "alert_only" | "alert" => Ok(Self::AlertOnly),
            "isolate" => Ok(Self::Isolate),
            "stop" => Ok(Self::Stop),
            "terminate" => Ok(Self::Terminate),
            other => Err(format!(
                "unknown remediation policy `{other}` (expected alert-only, isolate, stop or terminate)"
            )),
        }
    }
}

/// The workload's situation when a verdict arrives.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RemediationContext {
    /// Score at or above which a verdict is acted upon, in `[0, 1]`.
    pub threshold: f64,
    /// The allocation currently in place (any unit: instances, vCPU, GiB).
    pub current_allocation: f64,
    /// When true, the decision is recorded but nothing is executed.
    pub dry_run: bool,
    /// The cap returned by the previous decision for this workload, if any
    /// ([`Decision::allocation_cap`]); `None` when nothing is held.
    pub held_cap: Option<f64>,
    /// True when a flagged leak caps the allocation under any policy: the allocation is of a
    /// resource a leak fills (memory, disk), and a climb of it is a leak to starve, not demand
    /// to follow. False for a resource whose steady climb is more often demand (CPU, network):
    /// a leak verdict is then alerted, capped only under [`RemediationPolicy::Isolate`], and
    /// the scaling stays bounded by the workload's maximum and budget.
    pub cap_leaks: bool,
}

/// Trend statistic (see [`super::Evidence::trend`]) above which a held leak stays held.
pub const LEAK_HOLD_TREND: f64 = 0.5;

/// An action on a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemediationAction {
    /// Nothing to do.
    None,
    /// Alert only.
    Alert,
    /// Keep the allocation at its current value; do not grow it.
    Isolate,
    /// Stop the workload.
    Stop,
    /// Terminate the workload.
    Terminate,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decision {
    /// The action decided (what would be done under dry-run).
    pub action: RemediationAction,
    /// True when the action must only be recorded, not executed.
    pub dry_run: bool,
    /// Upper bound on the allocation while this decision holds (`None`: no cap).
    pub allocation_cap: Option<f64>,
    /// The anomaly kind that triggered the decision.
    pub kind: Option<AnomalyKind>,
    /// The score that triggered the decision.
    pub score: f64,
    /// One line for the audit log.
    pub reason: String,
}

impl Decision {
    /// The action to execute now: the decided action, or [`RemediationAction::None`] under dry-run.
    pub fn effective_action(&self) -> RemediationAction {
        if self.dry_run {
            RemediationAction::None
        } else {
            self.action
        }
    }

    /// Clamps a proposed allocation to the cap (unchanged when there is none).
    pub fn clamp_allocation(&self, proposed: f64) -> f64 {
        match self.allocation_cap {
            Some(cap) if !self.dry_run && proposed > cap => cap,
            _ => proposed,
        }
    }
}

/// One entry of the remediation audit log: what was decided, why, on which numbers, and whether
/// it was executed. The controller stores it as it is (it is `serde` both ways, for example as
/// one JSON object per line or per row).
///
/// # Example
/// ```no_run
/// use predictive_engine::anomaly::*;
/// let mut det = Detector::new(DetectorParams::default().check().unwrap());
/// let verdict = det.observe(42.0);
/// let ctx = RemediationContext { threshold: ALERT_THRESHOLD, current_allocation: 4.0, dry_run: true, held_cap: None, cap_leaks: true };
/// let decision = decide(RemediationPolicy::Isolate, &verdict, &ctx);
/// let record = AuditRecord::new("web", 1_700_000_000, RemediationPolicy::Isolate, &ctx, &verdict, &decision);
/// let line = serde_json::to_string(&record).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// When the decision was taken (unix seconds, from the caller's clock).
    pub at: i64,
    /// The workload.
    pub workload: String,
    /// The policy in force.
    pub policy: RemediationPolicy,
    /// The action decided.
    pub action: RemediationAction,
    /// True when the action was only recorded (dry run).
    pub dry_run: bool,
    /// True when the action is carried out: not a dry run and not [`RemediationAction::None`].
    pub executed: bool,
    /// The anomaly kind, if the verdict was flagged.
    pub kind: Option<AnomalyKind>,
    /// The verdict's score.
    pub score: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// The allocation in place when deciding.
    pub allocation: f64,
    /// The allocation cap that holds after the decision, if any.
    pub allocation_cap: Option<f64>,
    /// The decision's one-line reason.
    pub reason: String,
    /// The verdict's explanation, naming the numbers ([`Verdict::explain`]).
    pub explanation: String,
    /// The numbers themselves.
    pub evidence: Evidence,
}

impl AuditRecord {
    /// The audit record of `decision`, taken at `at` for `workload` under `policy` and `ctx`
    /// about `verdict`.
    pub fn new(
        workload: &str,
        at: i64,
        policy: RemediationPolicy,
        ctx: &RemediationContext,
        verdict: &Verdict,
        decision: &Decision,
    ) -> Self {
        Self {
            at,
            workload: workload.to_owned(),
            policy,
            action: decision.action,
            dry_run: decision.dry_run,
            executed: decision.effective_action() != RemediationAction::None,
            kind: decision.kind,
            score: decision.score,
            threshold: ctx.threshold,
            allocation: ctx.current_allocation,
            allocation_cap: decision.allocation_cap,
            reason: decision.reason.clone(),
            explanation: verdict.explain(),
            evidence: verdict.evidence,
        }
    }

    /// True when the record is worth keeping in an audit log: an action was decided or an
    /// allocation is held.
    pub fn is_notable(&self) -> bool {
        self.action != RemediationAction::None || self.allocation_cap.is_some()
    }
}

/// Decides the remediation of one verdict under a policy.
///
/// # Guarantees
/// Pure and total. Below the threshold the action is `None`. At or above it, the policy's action
/// is chosen; with `cap_leaks`, a flagged [`AnomalyKind::Leak`] caps the allocation at
/// `current_allocation`, whatever the policy, and [`RemediationPolicy::Isolate`] caps any anomaly.
/// A cap already held (`held_cap`) is kept, above or below the threshold and whatever kind the
/// verdict names, while the usage still climbs (trend above [`LEAK_HOLD_TREND`]) if `cap_leaks`,
/// and under [`RemediationPolicy::Isolate`] until released; otherwise there is no cap.
/// `dry_run` is carried into the decision: the controller must then execute nothing.
pub fn decide(policy: RemediationPolicy, verdict: &Verdict, ctx: &RemediationContext) -> Decision {
    let score = if verdict.score.is_finite() {
        verdict.score
    } else {
        0.0
    };
    let flagged = score >= ctx.threshold && verdict.kind.is_some();
    let held = ctx.held_cap.filter(|c| c.is_finite());
    // A held leak stays held while the usage still climbs, whatever the verdict (a burst on
    // top of a leak does not release it); an isolation until released.
    let keep = match (held, policy) {
        (Some(_), RemediationPolicy::Isolate) => true,
        (Some(_), _) => ctx.cap_leaks && verdict.evidence.trend > LEAK_HOLD_TREND,
        (None, _) => false,
    };
    // A hold keeps an existing cap rather than raising it to today's allocation, and the cap
    // follows the allocation down and never back up: a held workload that shrank (a restart,
    // an operator) is not grown again to the older cap.
    let cap_if = |hold: bool| {
        hold.then(|| held.map_or(ctx.current_allocation, |h| h.min(ctx.current_allocation)))
    };
    if !flagged {
        let reason = if keep {
            format!(
                "score {score:.3} below threshold {:.3}; allocation still held",
                ctx.threshold
            )
        } else {
            format!("score {score:.3} below threshold {:.3}", ctx.threshold)
        };
        return Decision {
            action: RemediationAction::None,
            dry_run: ctx.dry_run,
            allocation_cap: cap_if(keep),
            kind: None,
            score,
            reason,
        };
    }
    let kind = verdict.kind;
    let action = match policy {
        RemediationPolicy::AlertOnly => RemediationAction::Alert,
        RemediationPolicy::Isolate => RemediationAction::Isolate,
        RemediationPolicy::Stop => RemediationAction::Stop,
        RemediationPolicy::Terminate => RemediationAction::Terminate,
    };
    let leak = kind == Some(AnomalyKind::Leak);
    let hold = matches!(action, RemediationAction::Isolate) || (leak && ctx.cap_leaks) || keep;
    let allocation_cap = cap_if(hold);
    let kind_name = kind.map(|k| k.to_string()).unwrap_or_default();
    let reason = format!(
        "{kind_name} anomaly (score {score:.3} >= {:.3}, value {:.4}, expected {:.4}, band [{:.4}, {:.4}]): {action:?}{}{}",
        ctx.threshold,
        verdict.evidence.value,
        verdict.evidence.expected,
        verdict.evidence.lower,
        verdict.evidence.upper,
        if hold {
            ", allocation held"
        } else if leak {
            ", allocation not capped (a climb of this resource is followed)"
        } else {
            ""
        },
        if ctx.dry_run { " (dry run)" } else { "" },
    );
    Decision {
        action,
        dry_run: ctx.dry_run,
        allocation_cap,
        kind,
        score,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn verdict(score: f64, kind: Option<AnomalyKind>) -> Verdict {
        Verdict {
            score,
            kind,
            evidence: Evidence::default(),
        }
    }

    fn ctx(dry_run: bool) -> RemediationContext {
        RemediationContext {
            threshold: 0.9,
            current_allocation: 4.0,
            dry_run,
            held_cap: None,
            cap_leaks: true,
        }
    }

    #[test]
    fn decide_should_follow_the_policy_table() {
        let burst = verdict(0.95, Some(AnomalyKind::Burst));
        let cases = [
            (
                "alert",
                RemediationPolicy::AlertOnly,
                RemediationAction::Alert,
                None,
            ),
            (
                "isolate",
                RemediationPolicy::Isolate,
                RemediationAction::Isolate,
                Some(4.0),
            ),
            (
                "stop",
                RemediationPolicy::Stop,
                RemediationAction::Stop,
                None,
            ),
            (
                "terminate",
                RemediationPolicy::Terminate,
                RemediationAction::Terminate,
                None,
            ),
        ];
        for (name, policy, action, cap) in cases {
            let d = decide(policy, &burst, &ctx(false));
            assert_eq!(d.action, action, "{name}");
            assert_eq!(d.effective_action(), action, "{name}");
            assert_eq!(d.allocation_cap, cap, "{name}");
        }
    }

    #[test]
    fn below_threshold_should_do_nothing() {
        let d = decide(
            RemediationPolicy::Terminate,
            &verdict(0.5, Some(AnomalyKind::Burst)),
            &ctx(false),
        );
        assert_eq!(d.action, RemediationAction::None);
        assert_eq!(d.clamp_allocation(10.0), 10.0);
    }

    #[test]
    fn a_leak_should_never_be_grown_even_under_alert_only() {
        let d = decide(
            RemediationPolicy::AlertOnly,
            &verdict(0.99, Some(AnomalyKind::Leak)),
            &ctx(false),
        );
        assert_eq!(d.action, RemediationAction::Alert);
        assert_eq!(d.clamp_allocation(8.0), 4.0);
        assert_eq!(d.clamp_allocation(3.0), 3.0);
    }

    /// Where a climb is more often demand (CPU, network), a leak verdict is alerted and the
    /// allocation follows the usage, unless the policy isolates.
    #[test]
    fn a_leak_of_a_resource_that_is_not_capped_should_only_be_alerted() {
        let mut leak = verdict(0.99, Some(AnomalyKind::Leak));
        leak.evidence.trend = 1.0;
        let c = RemediationContext {
            cap_leaks: false,
            ..ctx(false)
        };
        let d = decide(RemediationPolicy::AlertOnly, &leak, &c);
        assert_eq!(d.action, RemediationAction::Alert);
        assert_eq!(d.allocation_cap, None);
        assert_eq!(d.clamp_allocation(8.0), 8.0);
        assert!(d.reason.contains("not capped"), "{}", d.reason);
        // A cap held from before (the resource's setting changed) is not kept by the climb.
        let held = RemediationContext {
            held_cap: Some(3.0),
            ..c
        };
        assert_eq!(
            decide(RemediationPolicy::AlertOnly, &leak, &held).allocation_cap,
            None
        );
        // Isolation still holds the allocation.
        let d = decide(RemediationPolicy::Isolate, &leak, &c);
        assert_eq!(d.allocation_cap, Some(4.0));
    }

    #[test]
    fn dry_run_should_record_but_not_execute() {
        let d = decide(
            RemediationPolicy::Terminate,
            &verdict(0.99, Some(AnomalyKind::Leak)),
            &ctx(true),
        );
        assert_eq!(d.action, RemediationAction::Terminate);
        assert_eq!(d.effective_action(), RemediationAction::None);
        assert_eq!(d.clamp_allocation(8.0), 8.0);
        assert!(d.reason.contains("dry run"), "{}", d.reason);
    }

    #[test]
    fn policy_should_parse_from_config_words() {
        assert_eq!("isolate".parse(), Ok(RemediationPolicy::Isolate));
        assert_eq!("alert-only".parse(), Ok(RemediationPolicy::AlertOnly));
        assert!("reboot"
            .parse::<RemediationPolicy>()
            .unwrap_err()
            .contains("reboot"));
        assert_eq!(RemediationPolicy::default(), RemediationPolicy::AlertOnly);
    }

    #[test]
    fn a_held_leak_should_stay_held_while_usage_climbs() {
        let mut v = verdict(0.1, None);
        v.evidence.trend = 0.8;
        let c = RemediationContext {
            held_cap: Some(4.0),
            current_allocation: 5.0,
            ..ctx(false)
        };
        let d = decide(RemediationPolicy::AlertOnly, &v, &c);
        assert_eq!(d.action, RemediationAction::None);
        assert_eq!(d.allocation_cap, Some(4.0));
        assert_eq!(d.clamp_allocation(9.0), 4.0);
        // Once the climb stops the hold is released.
        v.evidence.trend = 0.1;
        let d = decide(RemediationPolicy::AlertOnly, &v, &c);
        assert_eq!(d.allocation_cap, None);
        // An isolation is only released by the controller (held_cap: None).
        let d = decide(RemediationPolicy::Isolate, &v, &c);
        assert_eq!(d.allocation_cap, Some(4.0));
        // A new leak flag does not raise an existing hold.
        let leak = verdict(0.99, Some(AnomalyKind::Leak));
        let d = decide(RemediationPolicy::AlertOnly, &leak, &c);
        assert_eq!(d.allocation_cap, Some(4.0));
    }

    #[test]
    fn audit_records_should_round_trip_and_say_what_was_executed() {
        let mut v = verdict(0.95, Some(AnomalyKind::Burst));
        v.evidence.value = 95.0;
        v.evidence.upper = 60.0;
        for (dry, executed) in [(false, true), (true, false)] {
            let c = ctx(dry);
            let d = decide(RemediationPolicy::Stop, &v, &c);
            let r = AuditRecord::new("web", 1_700_000_000, RemediationPolicy::Stop, &c, &v, &d);
            assert_eq!(r.action, RemediationAction::Stop);
            assert_eq!(r.executed, executed);
            assert_eq!(r.dry_run, dry);
            assert!(r.is_notable());
            assert!(r.explanation.contains("95.00"), "{}", r.explanation);
            let json = serde_json::to_string(&r).unwrap();
            assert!(json.contains(r#""action":"stop""#), "{json}");
            let back: AuditRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(back, r);
        }
        let quiet = verdict(0.1, None);
        let c = ctx(false);
        let d = decide(RemediationPolicy::Stop, &quiet, &c);
        let r = AuditRecord::new("web", 0, RemediationPolicy::Stop, &c, &quiet, &d);
        assert!(!r.is_notable() && !r.executed);
    }

    fn kind_strategy() -> impl Strategy<Value = Option<AnomalyKind>> {
        prop_oneof![
            Just(None),
            Just(Some(AnomalyKind::Leak)),
            Just(Some(AnomalyKind::Burst)),
            Just(Some(AnomalyKind::MalwareLike)),
            Just(Some(AnomalyKind::Drop)),
            Just(Some(AnomalyKind::Flatline)),
            Just(Some(AnomalyKind::LevelShift)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Under `isolate`, once a leak is flagged the allocation never grows again, whatever
        /// the later verdicts (quiet, other kinds, more leaks, trend gone) and whatever the
        /// scaler proposes.
        #[test]
        fn a_leak_under_isolate_should_never_grow_the_allocation(
            cap_leaks in any::<bool>(),
            start in 0.5f64..100.0,
            steps in prop::collection::vec(
                (0.0f64..1.0, kind_strategy(), -1.0f64..1.0, 0.0f64..500.0),
                1..120,
            ),
        ) {
            let mut allocation = start;
            let mut held: Option<f64> = None;
            let mut cap_at_leak: Option<f64> = None;
            for (score, kind, trend, proposed) in steps {
                let mut v = verdict(score, kind);
                v.evidence.trend = trend;
                let c = RemediationContext {
                    threshold: 0.5,
                    current_allocation: allocation,
                    dry_run: false,
                    held_cap: held,
                    cap_leaks,
                };
                let d = decide(RemediationPolicy::Isolate, &v, &c);
                if d.kind == Some(AnomalyKind::Leak) && cap_at_leak.is_none() {
                    cap_at_leak = Some(allocation);
                }
                held = d.allocation_cap;
                let next = d.clamp_allocation(proposed);
                if let Some(cap) = cap_at_leak {
                    prop_assert!(held.is_some(), "the hold was released");
                    prop_assert!(next <= allocation + 1e-12, "grew from {allocation} to {next}");
                    prop_assert!(next <= cap + 1e-12, "{next} above the cap {cap}");
                }
                allocation = next;
            }
        }

        /// Whatever the policy, a flagged leak is never fed past the allocation at the flag
        /// while the usage keeps climbing (trend above the hold level), and a dry run never
        /// clamps anything.
        #[test]
        fn a_climbing_leak_should_never_be_fed_under_any_policy(
            policy in prop_oneof![
                Just(RemediationPolicy::AlertOnly),
                Just(RemediationPolicy::Isolate),
                Just(RemediationPolicy::Stop),
                Just(RemediationPolicy::Terminate),
            ],
            dry_run in any::<bool>(),
            start in 0.5f64..100.0,
            proposals in prop::collection::vec(0.0f64..500.0, 1..60),
        ) {
            let mut leak = verdict(0.99, Some(AnomalyKind::Leak));
            leak.evidence.trend = 1.0;
            let c = RemediationContext { threshold: 0.5, current_allocation: start, dry_run, held_cap: None, cap_leaks: true };
            let first = decide(policy, &leak, &c);
            prop_assert_eq!(first.allocation_cap, Some(start));
            let mut held = first.allocation_cap;
            let mut allocation = start;
            for proposed in proposals {
                let mut quiet = verdict(0.1, None);
                quiet.evidence.trend = 0.8;
                let c = RemediationContext { threshold: 0.5, current_allocation: allocation, dry_run, held_cap: held, cap_leaks: true };
                let d = decide(policy, &quiet, &c);
                held = d.allocation_cap;
                allocation = d.clamp_allocation(proposed);
                if dry_run {
                    prop_assert_eq!(allocation, proposed);
                } else {
                    prop_assert!(allocation <= start + 1e-12);
                }
            }
        }
    }

    /// The runaway guard end to end: memory `usage` (one value a step) fed to a
    /// `WorkloadDetector`, a naive scaler that always wants 30 % headroom over usage, and the
    /// decisions (alert-only) applied as the controller would. Checks at every step that the
    /// allocation stays within the cap of the first leak verdict; returns that verdict's step
    /// and cap, if any.
    fn leak_guard(
        params: crate::anomaly::DetectorParams,
        usage: impl IntoIterator<Item = f64>,
        mut allocation: f64,
    ) -> Option<(usize, f64)> {
        use crate::anomaly::{WorkloadDetector, WorkloadSample, ALERT_THRESHOLD};
        let mut det = WorkloadDetector::new(params.check().unwrap(), 0.5);
        let mut held: Option<f64> = None;
        let mut flagged: Option<(usize, f64)> = None;
        for (t, usage) in usage.into_iter().enumerate() {
            let v = det.observe(WorkloadSample {
                memory: Some(usage),
                ..Default::default()
            });
            let c = RemediationContext {
                threshold: ALERT_THRESHOLD,
                current_allocation: allocation,
                dry_run: false,
                held_cap: held,
                cap_leaks: true,
            };
            let d = decide(RemediationPolicy::AlertOnly, &v.as_verdict(), &c);
            if d.kind == Some(AnomalyKind::Leak) && flagged.is_none() {
                flagged = d.allocation_cap.map(|cap| (t, cap));
            }
            held = d.allocation_cap;
            allocation = d.clamp_allocation(usage * 1.3);
            if let Some((_, cap)) = flagged {
                assert!(
                    allocation <= cap + 1e-9,
                    "step {t}: allocation {allocation} above cap {cap}"
                );
            }
        }
        flagged
    }

    #[test]
    fn a_leak_should_never_drive_the_allocation_into_a_runaway() {
        let mut seed = crate::noise::XorShift::new(42);
        // Flat memory around 5 GiB for 3000 steps, then a leak of 0.01 GiB per step.
        let usage =
            (0..6000).map(|t: usize| 5.0 + seed.uniform() + 0.01 * t.saturating_sub(3000) as f64);
        let (_, cap) = leak_guard(crate::anomaly::DetectorParams::default(), usage, 10.0)
            .expect("the leak was never flagged");
        // Without the guard the scaler would have reached (5 + 30) × 1.3 ≈ 45.
        assert!(cap < 20.0, "cap {cap}");
    }

    /// The same guard on a daily pattern, for a leak too slow to leave the band in its first
    /// day (a twentieth of the daily swing a day): it is flagged once it has climbed for a day
    /// and a half, and the allocation stays capped from then on.
    #[test]
    fn a_slow_leak_on_a_daily_pattern_should_be_capped_too() {
        let season = 288;
        let params = crate::anomaly::DetectorParams {
            season,
            ..crate::anomaly::DetectorParams::default()
        };
        let mut seed = crate::noise::XorShift::new(7);
        let start = 14 * season;
        let usage: Vec<f64> = (0..start + 8 * season)
            .map(|t| {
                let phase = (t % season) as f64 / season as f64;
                let leak = t.saturating_sub(start) as f64 / season as f64;
                50.0 + 20.0 * (phase * std::f64::consts::TAU).sin() + 4.0 * seed.uniform() + leak
            })
            .collect();
        let peak = usage.iter().copied().fold(0.0, f64::max);
        let (t, cap) = leak_guard(params, usage, 100.0).expect("the slow leak was never flagged");
        assert!(t > start, "step {t}: a leak before the leak began");
        // Without the guard the scaler follows the climb to the end: 1.3 × the last peak.
        assert!(cap < 1.3 * peak - 5.0, "cap {cap}, peak {peak}");
    }
}
