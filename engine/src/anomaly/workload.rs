//! Several metrics of one workload watched together: CPU, memory and network.
//!
//! Each metric has its own [`Detector`]. The workload verdict is the most anomalous metric's,
//! except that CPU and network surging together (both bursts or level shifts upwards within
//! [`JOINT_LAG`] steps of each other) is reported as [`AnomalyKind::MalwareLike`], and a memory
//! climb as [`AnomalyKind::Leak`].
//!
//! "Off-pattern" comes from each metric's own detector: a surge only counts when the metric's
//! raw score (before event suppression) reaches the joint threshold, that is when the value is
//! unusual against the metric's own history and, with a season, against the same hour of past
//! days. CPU and network that rise together every day at the same time are the pattern, not
//! malware.

use super::detector::num;
use super::{AnomalyKind, Detector, ValidDetectorParams, Verdict};

/// One step of a workload's metrics; absent metrics are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WorkloadSample {
    /// CPU usage (any unit).
    pub cpu: Option<f64>,
    /// Memory usage (any unit).
    pub memory: Option<f64>,
    /// Network throughput (any unit).
    pub network: Option<f64>,
}

/// The verdict for one workload step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct WorkloadVerdict {
    /// Score in `[0, 1]`: the highest of the metrics' scores.
    pub score: f64,
    /// The workload-level kind.
    pub kind: Option<AnomalyKind>,
    /// Per-metric verdicts (`None` when the metric was absent).
    pub cpu: Option<Verdict>,
    /// Memory verdict.
    pub memory: Option<Verdict>,
    /// Network verdict.
    pub network: Option<Verdict>,
}

impl WorkloadVerdict {
    /// The verdict of the most anomalous metric, with the workload-level kind, for [`super::decide`].
    pub fn as_verdict(&self) -> Verdict {
        let best = [self.cpu, self.memory, self.network]
            .into_iter()
            .flatten()
            .max_by(|a, b| a.score.total_cmp(&b.score));
        match best {
            Some(v) => Verdict {
                score: self.score,
                kind: self.kind,
                evidence: v.evidence,
            },
            None => Verdict {
                score: 0.0,
                kind: None,
                evidence: Default::default(),
            },
        }
    }
}

/// Steps by which a CPU surge and a network surge may be apart and still count as together
/// (metrics are often scraped a step apart).
pub const JOINT_LAG: usize = 2;

/// Detectors for the metrics of one workload.
#[derive(Debug, Clone)]
pub struct WorkloadDetector {
    cpu: Detector,
    memory: Detector,
    network: Detector,
    joint: JointRule,
}

/// The rule that makes one workload verdict of its metrics' verdicts, for callers that run the
/// metrics' detectors themselves (the controller watches a workload's own resource and the
/// metrics beside it): CPU and network surging within [`JOINT_LAG`] steps of each other are
/// malware-like, a memory leak is a leak, otherwise the most anomalous metric speaks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JointRule {
    /// Raw score from which a metric's surge counts towards moving together.
    joint_threshold: f64,
    /// Steps since the last CPU surge and the last network surge (`usize::MAX`: never). A
    /// stored rule leaves them out: they matter for [`JOINT_LAG`] steps, not across a restart.
    #[serde(skip, default = "never")]
    since_cpu_surge: usize,
    #[serde(skip, default = "never")]
    since_net_surge: usize,
}

fn never() -> usize {
    usize::MAX
}

impl JointRule {
    /// A rule under which a surge counts from a raw score of `joint_threshold` (in `[0, 1]`).
    pub fn new(joint_threshold: f64) -> Self {
        Self {
            joint_threshold: joint_threshold.clamp(0.0, 1.0),
            since_cpu_surge: usize::MAX,
            since_net_surge: usize::MAX,
        }
    }

    /// The workload verdict of one step's metric verdicts (`None`: the metric is not watched
    /// or has no sample at this step).
    pub fn combine(
        &mut self,
        cpu: Option<Verdict>,
        memory: Option<Verdict>,
        network: Option<Verdict>,
    ) -> WorkloadVerdict {
        let joint_threshold = self.joint_threshold;
        let surging = |v: &Option<Verdict>| {
            v.is_some_and(|v| {
                v.evidence.raw_score >= joint_threshold
                    && v.evidence.value > v.evidence.expected
                    && matches!(v.kind, Some(AnomalyKind::Burst | AnomalyKind::LevelShift))
            })
        };
        let all = [cpu, memory, network];
        let score = all.iter().flatten().map(|v| v.score).fold(0.0, f64::max);
        let step = |since: usize, now: bool| if now { 0 } else { since.saturating_add(1) };
        self.since_cpu_surge = step(self.since_cpu_surge, surging(&cpu));
        self.since_net_surge = step(self.since_net_surge, surging(&network));
        let joint = (self.since_cpu_surge == 0 || self.since_net_surge == 0)
            && self.since_cpu_surge <= JOINT_LAG
            && self.since_net_surge <= JOINT_LAG;
        let kind = if joint {
            Some(AnomalyKind::MalwareLike)
        } else if memory.is_some_and(|v| v.kind == Some(AnomalyKind::Leak)) {
            Some(AnomalyKind::Leak)
        } else {
            all.iter()
                .flatten()
                .max_by(|a, b| a.score.total_cmp(&b.score))
                .and_then(|v| v.kind)
        };
        WorkloadVerdict {
            score,
            kind,
            cpu,
            memory,
            network,
        }
    }
}

impl WorkloadVerdict {
    /// One sentence naming the kind and the numbers behind it, for alerts and audit logs. A
    /// malware-like verdict names both the CPU and the network numbers.
    pub fn explain(&self) -> String {
        match (self.kind, self.cpu, self.network) {
            (Some(AnomalyKind::MalwareLike), Some(c), Some(n)) => format!(
                "malware_like: cpu {} and network {} up together, above their bands [{}, {}] and [{}, {}] (expected {} and {}); score {:.3}",
                num(c.evidence.value),
                num(n.evidence.value),
                num(c.evidence.lower),
                num(c.evidence.upper),
                num(n.evidence.lower),
                num(n.evidence.upper),
                num(c.evidence.expected),
                num(n.evidence.expected),
                self.score
            ),
            _ => self.as_verdict().explain(),
        }
    }
}

impl WorkloadDetector {
    /// Detectors sharing one set of settings; `joint_threshold` (in `[0, 1]`) is the score both CPU
    /// and network must reach in the same step to be called malware-like.
    pub fn new(params: ValidDetectorParams, joint_threshold: f64) -> Self {
        Self {
            cpu: Detector::new(params.clone()),
            memory: Detector::new(params.clone()),
            network: Detector::new(params),
            joint: JointRule::new(joint_threshold),
        }
    }

    /// Scores one step, then learns from it.
    pub fn observe(&mut self, s: WorkloadSample) -> WorkloadVerdict {
        let cpu = s.cpu.map(|x| self.cpu.observe(x));
        let memory = s.memory.map(|x| self.memory.observe(x));
        let network = s.network.map(|x| self.network.observe(x));
        self.joint.combine(cpu, memory, network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::{DetectorParams, ALERT_THRESHOLD, JOINT_LAG};
    use crate::noise::XorShift;

    fn warmed(seed: &mut XorShift) -> WorkloadDetector {
        let mut d =
            WorkloadDetector::new(DetectorParams::default().check().unwrap(), ALERT_THRESHOLD);
        for _ in 0..2000 {
            d.observe(WorkloadSample {
                cpu: Some(30.0 + 10.0 * seed.uniform()),
                memory: Some(4.0 + seed.uniform()),
                network: Some(100.0 + 20.0 * seed.uniform()),
            });
        }
        d
    }

    #[test]
    fn cpu_and_network_surging_together_should_look_like_malware() {
        let mut seed = XorShift::new(3);
        let mut d = warmed(&mut seed);
        let v = d.observe(WorkloadSample {
            cpu: Some(95.0),
            memory: Some(4.5),
            network: Some(900.0),
        });
        assert_eq!(v.kind, Some(AnomalyKind::MalwareLike));
        assert!(v.score >= ALERT_THRESHOLD);
        assert_eq!(v.as_verdict().kind, Some(AnomalyKind::MalwareLike));
    }

    #[test]
    fn a_surge_a_step_apart_should_still_look_like_malware() {
        let mut seed = XorShift::new(4);
        let mut d = warmed(&mut seed);
        let v = d.observe(WorkloadSample {
            cpu: Some(95.0),
            memory: Some(4.5),
            network: Some(110.0),
        });
        assert_eq!(v.kind, Some(AnomalyKind::Burst));
        // The network surges one step after the CPU did.
        let v = d.observe(WorkloadSample {
            cpu: Some(35.0),
            memory: Some(4.5),
            network: Some(900.0),
        });
        assert_eq!(v.kind, Some(AnomalyKind::MalwareLike));
        let text = v.explain();
        assert!(
            text.starts_with("malware_like: cpu 35.00 and network 900.0 up together"),
            "{text}"
        );
        // Apart by more than the lag: not together.
        let mut d = warmed(&mut seed);
        d.observe(WorkloadSample {
            cpu: Some(95.0),
            ..Default::default()
        });
        for _ in 0..JOINT_LAG + 2 {
            d.observe(WorkloadSample {
                cpu: Some(35.0),
                network: Some(110.0),
                ..Default::default()
            });
        }
        let v = d.observe(WorkloadSample {
            cpu: Some(35.0),
            network: Some(950.0),
            ..Default::default()
        });
        assert_ne!(v.kind, Some(AnomalyKind::MalwareLike));
    }

    /// CPU and network that peak together every day (a batch job with uploads) are the pattern:
    /// once a few days are learnt, the daily joint peak is never called malware-like.
    #[test]
    fn a_daily_joint_peak_should_not_look_like_malware() {
        let season = 48;
        let params = DetectorParams {
            season,
            ..DetectorParams::default()
        };
        let mut d = WorkloadDetector::new(params.check().unwrap(), ALERT_THRESHOLD);
        let mut seed = XorShift::new(77);
        let mut malware = Vec::new();
        for i in 0..season * 40 {
            let busy = (i % season) >= 30 && (i % season) < 36;
            let cpu = if busy { 80.0 } else { 20.0 } + 10.0 * seed.uniform();
            let net = if busy { 600.0 } else { 100.0 } + 50.0 * seed.uniform();
            let v = d.observe(WorkloadSample {
                cpu: Some(cpu),
                memory: Some(4.0 + seed.uniform()),
                network: Some(net),
            });
            if i >= season * 3 && v.kind == Some(AnomalyKind::MalwareLike) {
                malware.push(i);
            }
        }
        assert!(
            malware.is_empty(),
            "daily peaks called malware-like at {malware:?}"
        );
        // The same surge off-pattern (at night, far above the daily peak) is malware-like.
        let v = d.observe(WorkloadSample {
            cpu: Some(140.0),
            memory: Some(4.5),
            network: Some(2000.0),
        });
        assert_eq!(v.kind, Some(AnomalyKind::MalwareLike));
        assert!(v.score >= ALERT_THRESHOLD);
    }

    #[test]
    fn cpu_alone_should_be_a_burst() {
        let mut seed = XorShift::new(5);
        let mut d = warmed(&mut seed);
        let v = d.observe(WorkloadSample {
            cpu: Some(95.0),
            memory: Some(4.5),
            network: Some(110.0),
        });
        assert_eq!(v.kind, Some(AnomalyKind::Burst));
        assert!(v.cpu.unwrap().score > v.network.unwrap().score);
    }

    #[test]
    fn missing_metrics_should_be_skipped() {
        let mut seed = XorShift::new(9);
        let mut d = warmed(&mut seed);
        let v = d.observe(WorkloadSample {
            cpu: Some(35.0),
            ..Default::default()
        });
        assert!(v.memory.is_none() && v.network.is_none());
        assert!(v.score < ALERT_THRESHOLD);
        let empty = d.observe(WorkloadSample::default());
        assert_eq!(empty.score, 0.0);
        assert_eq!(empty.as_verdict().kind, None);
    }
}
