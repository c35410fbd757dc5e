//! Metrics of a workload watched for anomalies beside its own resource (`watch` in the config).
//!
//! The loop plans on the workload's own resource only. Each watched metric (`cpu`, `memory` or
//! `network`) has its own anomaly detector, fed every tick with the metric's value; the engine's
//! [`JointRule`] then makes one verdict of the workload's own verdict and the watched ones: CPU
//! and network surging together are malware-like, a memory climb is a leak, otherwise the most
//! anomalous metric speaks. That verdict goes to the remediation as the workload's own would.
//! Watched samples are stored under [`key`] (pruned and deleted with the workload); the
//! detectors are stored once a day with the workload's own (loop state [`STATE_KIND`]), and a
//! restart feeds each the samples after its own last value.

use std::sync::Arc;

use predictive_engine::anomaly::{
    AnomalyKind, Detector, JointRule, StepClock, ValidDetectorParams, Verdict,
};

use crate::clock::Timestamp;
use crate::config::WATCHABLE;
use crate::source::MetricsSource;

/// Loop-state kind under which a workload's watched detectors ([`Watch`]) are stored.
pub const STATE_KIND: &str = "watch";

/// The store key of a workload's watched `resource` samples.
pub fn key(workload: &str, resource: &str) -> String {
    format!("watch:{resource}:{workload}")
}

/// A watched metric's source.
#[derive(Debug, Clone)]
pub struct Source {
    /// `cpu`, `memory` or `network`.
    pub resource: String,
    /// Where its values come from.
    pub source: Arc<dyn MetricsSource>,
}

/// One watched metric's detector and its grid of ticks.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Metric {
    resource: String,
    detector: Detector,
    clock: StepClock,
}

/// The watched metrics' detectors of one workload and the rule that joins their verdicts
/// (stored once a day with the workload's own detector, as loop state [`STATE_KIND`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Watch {
    metrics: Vec<Metric>,
    joint: JointRule,
}

/// A joined verdict: the one remediation decides on, and a sentence naming the metrics behind
/// it when they are not (only) the workload's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// The workload's verdict.
    pub verdict: Verdict,
    /// What the watched metrics add, for the audit log and the decision.
    pub note: Option<String>,
}

impl Watch {
    /// Detectors for `resources` (in this order), with `params`, on a grid of `step` seconds;
    /// a surge counts towards moving together from a raw score of `joint_threshold`.
    pub fn new<'a>(
        resources: impl IntoIterator<Item = &'a str>,
        params: &ValidDetectorParams,
        step: i64,
        joint_threshold: f64,
    ) -> Self {
        Self {
            metrics: resources
                .into_iter()
                .map(|r| Metric {
                    resource: r.to_string(),
                    detector: Detector::new(params.clone()),
                    clock: StepClock::new(step),
                })
                .collect(),
            joint: JointRule::new(joint_threshold),
        }
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// Whether `other` (a stored copy) watches the same resources, in the same order, with
    /// detectors of the same settings: only then can it stand in for this one.
    pub fn same_settings(&self, other: &Watch) -> bool {
        self.metrics.len() == other.metrics.len()
            && self.metrics.iter().zip(&other.metrics).all(|(a, b)| {
                a.resource == b.resource && a.detector.params() == b.detector.params()
            })
    }

    /// The watched resources, in order.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.metrics.iter().map(|m| m.resource.as_str())
    }

    /// How many samples each watched metric's detector has learnt, in order.
    pub fn seen(&self) -> Vec<usize> {
        self.metrics.iter().map(|m| m.detector.seen()).collect()
    }

    /// The tick of metric `i`'s last value (`None`: none yet).
    pub fn last_at(&self, i: usize) -> Option<Timestamp> {
        self.metrics.get(i)?.clock.last()
    }

    /// Feeds metric `i` its value at `ts` (ticks with no value are told to its detector as
    /// missing steps) and returns its verdict.
    pub fn observe(&mut self, i: usize, ts: Timestamp, value: f64) -> Option<Verdict> {
        let m = self.metrics.get_mut(i)?;
        m.detector.skip(m.clock.missing_before(ts));
        Some(m.detector.observe(value))
    }

    /// Joins the workload's own verdict (`own`, of its resource `own_resource`) with the watched
    /// metrics' verdicts of the same tick (`watched[i]` for metric `i`; `None`: no value).
    pub fn join(
        &mut self,
        own_resource: &str,
        own: Verdict,
        watched: &[Option<Verdict>],
    ) -> Joined {
        let slot = |r: &str| WATCHABLE.iter().position(|x| *x == r);
        let mut slots: [Option<Verdict>; 3] = [None; 3];
        let mut names: [&str; 3] = [""; 3];
        if let Some(i) = slot(own_resource) {
            slots[i] = Some(own);
            names[i] = own_resource;
        }
        for (m, v) in self.metrics.iter().zip(watched) {
            if let Some(i) = slot(&m.resource) {
                slots[i] = *v;
                names[i] = &m.resource;
            }
        }
        let wv = self.joint.combine(slots[0], slots[1], slots[2]);
        let joined = wv.as_verdict();
        // A resource outside the joint rule's (disk, gpu) speaks for itself when it is the
        // more anomalous.
        if slot(own_resource).is_none() && own.score >= joined.score {
            return Joined {
                verdict: own,
                note: None,
            };
        }
        let top = (0..3).filter(|&i| slots[i].is_some()).max_by(|&a, &b| {
            let s = |i: usize| slots[i].map_or(0.0, |v| v.score);
            s(a).total_cmp(&s(b))
        });
        let note = if joined.kind == Some(AnomalyKind::MalwareLike) {
            Some(wv.explain())
        } else {
            top.filter(|&i| names[i] != own_resource)
                .and_then(|i| slots[i].map(|v| (names[i], v)))
                .filter(|(_, v)| v.kind.is_some())
                .map(|(name, v)| format!("the watched {name}: {}", v.explain()))
        };
        Joined {
            verdict: joined,
            note,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use predictive_engine::anomaly::{DetectorParams, ALERT_THRESHOLD};

    fn params() -> ValidDetectorParams {
        DetectorParams::default().check().unwrap()
    }

    /// A workload planned on CPU that watches its network: two days of both varying a little,
    /// then the given CPU and network values.
    fn after_two_days(cpu: f64, net: f64) -> Joined {
        let p = params();
        let mut own = Detector::new(p.clone());
        let mut w = Watch::new(["network"], &p, 300, ALERT_THRESHOLD);
        let mut joined = None;
        for i in 0..=1000 {
            let wobble = ((i * 7919) % 13) as f64;
            let (c, n) = if i == 1000 {
                (cpu, net)
            } else {
                (30.0 + wobble, 100.0 + 2.0 * wobble)
            };
            let own_v = own.observe(c);
            let net_v = w.observe(0, 300 * i as i64, n);
            joined = Some(w.join("cpu", own_v, &[net_v]));
        }
        joined.unwrap()
    }

    #[test]
    fn cpu_and_a_watched_network_surging_together_should_be_malware_like() {
        let j = after_two_days(95.0, 900.0);
        assert_eq!(j.verdict.kind, Some(AnomalyKind::MalwareLike));
        assert!(j.verdict.score >= ALERT_THRESHOLD);
        let note = j.note.unwrap();
        assert!(note.starts_with("malware_like: cpu 95"), "{note}");
    }

    #[test]
    fn a_surge_of_the_watched_metric_alone_should_name_it() {
        let j = after_two_days(35.0, 900.0);
        assert_eq!(j.verdict.kind, Some(AnomalyKind::Burst));
        let note = j.note.unwrap();
        assert!(note.starts_with("the watched network: burst"), "{note}");
        // The workload's own surge alone needs no note.
        let j = after_two_days(95.0, 110.0);
        assert_eq!(j.verdict.kind, Some(AnomalyKind::Burst));
        assert_eq!(j.note, None);
    }

    #[test]
    fn a_tick_without_a_watched_value_should_be_a_missing_step() {
        let p = params();
        let mut w = Watch::new(["memory"], &p, 300, ALERT_THRESHOLD);
        w.observe(0, 0, 1.0);
        w.observe(0, 3000, 1.0);
        assert_eq!(w.metrics[0].detector.seen(), 2);
        let mut gapped = Detector::new(p);
        gapped.observe(1.0);
        gapped.skip(9);
        gapped.observe(1.0);
        assert_eq!(
            serde_json::to_string(&w.metrics[0].detector).unwrap(),
            serde_json::to_string(&gapped).unwrap()
        );
        assert_eq!(w.resources().collect::<Vec<_>>(), ["memory"]);
    }
}
