//! Several metrics of one workload watched together: CPU, memory and network.
//!
//! Each metric has its own [`Detector`]. The workload verdict is the most anomalous metric's,
//! except that CPU and network surging together (both bursts or level shifts upwards at the same
//! step) is reported as [`AnomalyKind::MalwareLike`], and a memory climb as [`AnomalyKind::Leak`].

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

/// Detectors for the metrics of one workload.
#[derive(Debug, Clone)]
pub struct WorkloadDetector {
    cpu: Detector,
    memory: Detector,
    network: Detector,
    /// Score from which two metrics moving together count as moving together.
    joint_threshold: f64,
}

impl WorkloadDetector {
    /// Detectors sharing one set of settings; `joint_threshold` (in `[0, 1]`) is the score both CPU
    /// and network must reach in the same step to be called malware-like.
    pub fn new(params: ValidDetectorParams, joint_threshold: f64) -> Self {
        Self {
            cpu: Detector::new(params.clone()),
            memory: Detector::new(params.clone()),
            network: Detector::new(params),
            joint_threshold: joint_threshold.clamp(0.0, 1.0),
        }
    }

    /// Scores one step, then learns from it.
    pub fn observe(&mut self, s: WorkloadSample) -> WorkloadVerdict {
        let cpu = s.cpu.map(|x| self.cpu.observe(x));
        let memory = s.memory.map(|x| self.memory.observe(x));
        let network = s.network.map(|x| self.network.observe(x));
        let surging = |v: &Option<Verdict>| {
            v.is_some_and(|v| {
                v.evidence.raw_score >= self.joint_threshold
                    && v.evidence.value > v.evidence.expected
                    && matches!(v.kind, Some(AnomalyKind::Burst | AnomalyKind::LevelShift))
            })
        };
        let all = [cpu, memory, network];
        let score = all.iter().flatten().map(|v| v.score).fold(0.0, f64::max);
        let kind = if surging(&cpu) && surging(&network) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::{DetectorParams, ALERT_THRESHOLD};

    fn noise(seed: &mut u64) -> f64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    fn warmed(seed: &mut u64) -> WorkloadDetector {
        let mut d =
            WorkloadDetector::new(DetectorParams::default().check().unwrap(), ALERT_THRESHOLD);
        for _ in 0..2000 {
            d.observe(WorkloadSample {
                cpu: Some(30.0 + 10.0 * noise(seed)),
                memory: Some(4.0 + noise(seed)),
                network: Some(100.0 + 20.0 * noise(seed)),
            });
        }
        d
    }

    #[test]
    fn cpu_and_network_surging_together_should_look_like_malware() {
        let mut seed = 3;
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
    fn cpu_alone_should_be_a_burst() {
        let mut seed = 5;
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
        let mut seed = 9;
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
