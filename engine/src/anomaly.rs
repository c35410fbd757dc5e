//! `anomaly`: usage anomaly detection, remediation decisions and NAB scoring.
//!
//! - [`Detector`]: an online detector fed one sample at a time; each [`Verdict`] carries a score in
//!   `[0, 1]`, an [`AnomalyKind`] (leak, burst, malware-like, drop, flatline, level shift) and the
//!   [`Evidence`] behind it. [`WorkloadDetector`] watches CPU and network together.
//! - [`RemediationPolicy`] and [`decide`]: what to do about an anomalous workload (alert only by
//!   default, isolate, stop, terminate), honouring dry-run, and never growing a leaking workload.
//! - [`nab`]: the Numenta Anomaly Benchmark scoring method (windows, scaled sigmoid, three
//!   profiles, threshold optimisation, normalisation against the null and perfect detectors).
//! - [`synth`]: anomalies of known kinds injected into real background traces, with NAB-style
//!   windows, to measure detection per kind.
//!
//! Everything here is pure and deterministic: time never enters, samples arrive in order.

mod detector;
pub mod nab;
pub mod perturb;
mod remediation;
pub mod synth;
mod window;
mod workload;

pub use detector::{
    AnomalyKind, Detector, DetectorParams, Evidence, StepClock, ValidDetectorParams, Verdict,
    ALERT_THRESHOLD, DEFAULT_MEMORY, RECORD_MARGIN, REFERENCE_STEP_SECS,
};
pub use remediation::{
    decide, AuditRecord, Decision, RemediationAction, RemediationContext, RemediationPolicy,
    LEAK_HOLD_TREND,
};
pub use workload::{JointRule, WorkloadDetector, WorkloadSample, WorkloadVerdict, JOINT_LAG};

/// Errors of anomaly detection and scoring.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A detector setting is out of range.
    #[error("invalid detector setting `{field}`: {reason}")]
    InvalidParam {
        /// The offending field.
        field: &'static str,
        /// What the field must satisfy.
        reason: &'static str,
    },
    /// A scored series has a different number of timestamps and scores.
    #[error("series `{series}` has {timestamps} timestamps but {scores} scores")]
    LengthMismatch {
        /// Series name.
        series: String,
        /// Number of timestamps.
        timestamps: usize,
        /// Number of scores.
        scores: usize,
    },
    /// Timestamps of a scored series go back in time.
    #[error("series `{series}`: timestamp at index {index} is earlier than the previous one")]
    TimestampsNotIncreasing {
        /// Series name.
        series: String,
        /// Index of the first offending sample.
        index: usize,
    },
    /// An anomaly score lies outside `[0, 1]`.
    #[error("series `{series}`: score {score} at index {index} is outside [0, 1]")]
    ScoreOutOfRange {
        /// Series name.
        series: String,
        /// Index of the offending sample.
        index: usize,
        /// The offending score.
        score: f64,
    },
    /// Anomaly windows of a series overlap, are reversed or are not in time order.
    #[error("series `{series}`: anomaly window {window} is reversed or overlaps the previous one")]
    WindowsOutOfOrder {
        /// Series name.
        series: String,
        /// Index of the offending window in the series' list.
        window: usize,
    },
    /// No labelled window falls after the probationary period, so no score can be normalised.
    #[error("no labelled anomaly window falls after the probationary period of any series")]
    NoWindows,
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;
