//! The loop: every interval, for each workload, observe usage, update the forecast, plan with the
//! engine's policy and apply the plan through the clouds port.
//!
//! # Guarantees
//! - **Idempotent.** An action is a group's desired capacity, set with `scale_group` (setting the
//!   same number twice is a no-op). It is written to the store as a pending intent, keyed by an
//!   idempotency token `WORKLOAD@TICK`, before the cloud call, and closed after it; after a crash,
//!   [`Controller::recover`] re-applies open intents (still within budget) and sweeps orphans.
//! - **Budget.** The hourly cost of the desired instances never exceeds the workload's budget:
//!   the cap applies after every other rule, the minimum included, and a group above budget is
//!   scaled down.
//! - **Isolation.** A workload whose metrics or cloud fail gets an error naming it; the others
//!   are served in the same tick. Concurrency is bounded by the config's `concurrency`.
//! - **Feedback.** Each tick compares the usage with what was forecast for it: the engine's online
//!   forecaster learns from it, coverage of the planning quantile is tracked, and a workload whose
//!   coverage misses its accuracy objective falls back to a conservative policy (the trailing
//!   24 h maximum) until it recovers.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use predictive_clouds::{CloudError, DynProvider, GroupId, Owner};
use predictive_engine::anomaly::{
    self, Detector, DetectorParams, RemediationAction, RemediationContext, RemediationPolicy,
    StepClock, ValidDetectorParams, Verdict, ALERT_THRESHOLD,
};
use predictive_engine::forecast::{cold as cold_start, ForecastParams};
use predictive_engine::policy::{
    self, Allocator, AllocatorSettings, Plan, PolicyParams, QuantileForecast, Snapshot,
};

use crate::clock::{Clock, Sleep, Timestamp};
use crate::config::{MetricsParams, Mode, ValidConfig, ValidWorkload};
use crate::metrics::{self, Metrics};
use crate::refit;
use crate::remediate::{self, Held};
use crate::shadow::{self, Pool, UnitState};
use crate::source::{MetricsSource, Prometheus, Pushed, Replay};
use crate::store::{Calibration, Decision, ForecastRecord, Intent, Sample, Store};
use crate::watch::{self, Watch};

/// Errors of one workload's tick.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The workload's usage could not be observed.
    #[error("workload `{workload}`: metrics unavailable")]
    MetricsUnavailable {
        /// The workload.
        workload: String,
        /// Why.
        #[source]
        source: crate::source::Error,
    },
    /// A cloud call failed.
    #[error("workload `{workload}`: cloud `{cloud}` call `{call}` failed")]
    CloudFailed {
        /// The workload.
        workload: String,
        /// The cloud's name.
        cloud: String,
        /// The method.
        call: &'static str,
        /// Why.
        #[source]
        source: CloudError,
    },
    /// A cloud call timed out.
    #[error("workload `{workload}`: cloud call `{call}` timed out after {after:?}")]
    CloudTimedOut {
        /// The workload.
        workload: String,
        /// The method.
        call: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// No cloud of that name is configured.
    #[error("workload `{workload}`: field `cloud`: no cloud named `{cloud}` is configured")]
    UnknownCloud {
        /// The workload.
        workload: String,
        /// The name.
        cloud: String,
    },
    /// No price is known for the workload's instance type.
    #[error("workload `{workload}`: field `price_per_hour`: no price known for `{instance_type}`; set it")]
    NoPrice {
        /// The workload.
        workload: String,
        /// The type.
        instance_type: String,
    },
    /// The metrics source could not be built.
    #[error("workload `{workload}`: field `metrics`: source cannot be opened")]
    SourceInvalid {
        /// The workload.
        workload: String,
        /// Why.
        #[source]
        source: crate::source::Error,
    },
    /// The store failed.
    #[error("store failed")]
    Store(#[from] crate::store::Error),
    /// The owner label is not a valid tag value.
    #[error("field `owner`: invalid ownership label")]
    OwnerInvalid(#[source] predictive_clouds::InvalidLabel),
    /// The workload is unknown.
    #[error("workload `{0}` is not registered")]
    UnknownWorkload(String),
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Most samples the online models keep per window (one day at a 5-minute step): each window
/// costs 16 bytes per sample (ring and sorted copy), and the forecaster keeps five, the detector
/// four.
pub const MODEL_WINDOW: usize = 288;

/// Ticks in a row a workload's tick fails because its source answers but not with the history
/// the loop did not observe, before the loop carries on without that history.
const FILL_TRIES: u32 = 3;

/// Tag that names the workload on instances the controller launches.
pub const WORKLOAD_TAG: &str = "predictive-workload";

/// In-memory state of one workload, rebuilt from stored history after a restart.
#[derive(Debug)]
struct State {
    allocator: Allocator,
    /// (target time, median, planning quantile) of forecasts not yet compared with usage.
    pending: VecDeque<(Timestamp, f64, f64)>,
    /// Whether the last observations fell at or below the planning quantile (one day, allocated
    /// once at that size).
    hits: VecDeque<bool>,
    /// Usage of the trailing 24 h (conservative policy, shadow peaks), as `f32`, allocated once.
    recent: VecDeque<f32>,
    fallback: bool,
    last_tick: Option<Timestamp>,
    /// Ticks in a row that failed because the source's history did not answer (see
    /// [`Controller::fill_in`]).
    fill_misses: u32,
    last_plan: Option<Plan>,
    price: Option<f64>,
    /// Online usage anomaly detector (the engine's), fed every observation.
    detector: Detector,
    /// The detector's grid of ticks: an empty slot is told to it as a missing step.
    clock: StepClock,
    /// The latest verdict.
    verdict: Option<Verdict>,
    /// The last observation the detector restored at registration had learnt: the replayed
    /// samples up to it are not fed to it again.
    detector_at: Option<Timestamp>,
    /// Detectors of the metrics watched beside the workload's own resource.
    watch: Watch,
    /// Remediation hold or halt (stored).
    held: Held,
    /// Shadow pool (stored).
    pool: Pool,
    /// The latest scheduled refit: chosen model and its forecast (stored).
    refit: Option<refit::Choice>,
    /// Calibration and recent accuracy of the refit's forecast.
    refit_track: refit::Tracker,
    /// Capacity of the plan in force (whichever forecaster made it).
    current: Option<f64>,
    /// Desired capacities of the latest plans at the lead step (the stabilisation window).
    desired: VecDeque<f64>,
    /// Own history while it is shorter than three days (cold start); `None` from then on.
    cold: Option<Box<Cold>>,
}

impl State {
    /// Time of the stored refit, for [`Workload::refit_at`] (`i64::MIN`: none).
    fn refit_at(&self) -> i64 {
        self.refit.as_ref().map_or(i64::MIN, |c| c.at)
    }
}

/// A cold workload's own history on the tick's grid, and the cluster it was last given.
#[derive(Debug, Default)]
struct Cold {
    start: Timestamp,
    values: Vec<f32>,
    cluster: Option<usize>,
}

impl Cold {
    /// Appends the usage at `ts` (gaps repeat the previous value; times already held are
    /// ignored).
    fn push(&mut self, ts: Timestamp, usage: f64, step: i64) {
        if self.values.is_empty() {
            self.start = ts;
        }
        let next = self.start + self.values.len() as i64 * step;
        if ts < next || !usage.is_finite() {
            return;
        }
        let gap = ((ts - next) / step) as usize;
        let last = self.values.last().copied().unwrap_or(usage as f32);
        self.values.extend(std::iter::repeat_n(last, gap));
        self.values.push(usage as f32);
    }
}

/// Ticks between two stored calibrations of one workload's refit forecast (staggered across
/// workloads); the observations in between are replayed from the stored samples on a reload.
pub const CALIBRATION_EVERY: i64 = 12;

/// Loop-state kind of a workload's stored anomaly detector ([`DetectorSnapshot`]).
pub const DETECTOR_STATE_KIND: &str = "detector";

/// A workload's anomaly detector as stored once a day (at a time of day staggered by the
/// workload's name), so a restart carries on with its four weeks of memory instead of the
/// week of history it replays. `at` is the last observation it learnt; the replay feeds it
/// only the samples after that.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct DetectorSnapshot<D> {
    at: Timestamp,
    clock: StepClock,
    detector: D,
}

/// Model name recorded for forecasts from the cold-start prior of the fleet's clusters.
pub const COLD_MODEL: &str = "cold-cluster";

/// Model name recorded for a clone's forecasts from its source workload's daily profile.
pub const COLD_SOURCE_MODEL: &str = "cold-source";

/// Seconds after which the tick reads the registered clones again even when nothing here
/// changed them: several replicas may share a store, and a clone registered through another
/// replica's API reaches this one within that time.
pub const CLONES_RECHECK: i64 = 3_600;

/// The cold-start prior of a registered clone that runs as a workload: the daily profile of the
/// workload it was made from, as that workload's refit kept it.
#[derive(Debug, Clone)]
struct SourcePrior {
    /// The source workload.
    source: String,
    /// Its daily profile (normalised) and relative spread; `None` while it has none kept.
    profile: Option<(Vec<f64>, f64)>,
    /// When the source's refit kept the profile.
    at: i64,
    /// When the store was last read for the source's profile.
    checked: Timestamp,
    /// Whether the store had no profile of the source then (no refit yet): it is asked for
    /// again at every tick. An unusable one (unreadable, or of another step) waits for the
    /// source's next refit.
    absent: bool,
}

/// A cold-start forecast: the lead steps for the policy, the target's values, the explanation.
#[derive(Debug)]
struct ColdForecast {
    forecast: QuantileForecast,
    p50: f64,
    upper: f64,
    note: String,
}

/// A managed workload: its checked config, its source, its cloud and its state.
#[derive(Debug)]
pub struct Workload {
    cfg: ValidWorkload,
    source: Arc<dyn MetricsSource>,
    /// Sources of the metrics watched beside its own resource (config `watch`, in its order).
    watched: Vec<watch::Source>,
    cloud: DynProvider,
    lead_steps: usize,
    /// Time of the latest refit attempt (`i64::MIN`: never), read by the scheduler without locking.
    refit_at: AtomicI64,
    /// Offset of this workload's calibration writes within [`CALIBRATION_EVERY`] ticks.
    stagger: i64,
    /// Offset of this workload's daily detector snapshot within the day's ticks.
    day_stagger: i64,
    /// Whether `state` is this replica's to carry on: true from registration (read from the
    /// store) while this replica holds the lease; false once another replica led it, so the
    /// next tick that takes the lease reads the state again from the store.
    current: AtomicBool,
    state: tokio::sync::Mutex<State>,
}

impl Workload {
    /// The workload's checked configuration.
    pub fn config(&self) -> &ValidWorkload {
        &self.cfg
    }
}

/// What one workload's tick produced (written to the store in one batch per tick).
#[derive(Debug, Default)]
struct Output {
    samples: Vec<(String, Sample)>,
    forecasts: Vec<ForecastRecord>,
    decisions: Vec<Decision>,
    calibrations: Vec<Calibration>,
}

/// The outcome of one tick over all workloads.
#[derive(Debug, Default)]
pub struct TickReport {
    /// The tick's time.
    pub ts: Timestamp,
    /// Workloads served.
    pub ok: usize,
    /// Workloads skipped because another replica holds their lease.
    pub not_leader: usize,
    /// Workloads that failed, with the full error text (naming the workload).
    pub errors: Vec<(String, String)>,
    /// Refits started off the loop after this tick.
    pub refits: usize,
    /// Wall time of the tick's store round trips made for all workloads at once (leases,
    /// budgets, the batch write), in seconds: the profile of a tick splits into this and the
    /// per-workload work.
    pub store_seconds: f64,
}

/// The controller: workloads, store, clouds, metrics and time.
#[derive(Debug)]
pub struct Controller {
    interval: i64,
    mode: Mode,
    concurrency: usize,
    owner: String,
    /// Seconds of each workload's history the store keeps (`None`: all).
    retention: Option<i64>,
    holder: String,
    store: Arc<dyn Store>,
    clouds: BTreeMap<String, DynProvider>,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
    call_timeout: Duration,
    workloads: RwLock<BTreeMap<String, Arc<Workload>>>,
    /// Most refits started per tick (0: enough to refit every workload once a day).
    refits_per_tick: AtomicUsize,
    /// The running batch of refits, if any.
    refit_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The fleet's cold-start clusters, once fitted (or read from the store).
    clusters: RwLock<Option<Arc<refit::FleetClusters>>>,
    /// Whether stored clusters were looked for.
    clusters_loaded: AtomicBool,
    /// Profiles stored by refits since the clusters were last fitted.
    new_profiles: AtomicUsize,
    /// Registered clones running as workloads here, by name: their sources' daily profiles.
    source_priors: RwLock<Arc<HashMap<String, SourcePrior>>>,
    /// Whether the registered clones must be read again: set at start and whenever a clone or
    /// a workload is registered or removed here, cleared by the read.
    clones_dirty: AtomicBool,
    /// Time of the last read of the registered clones (`i64::MIN`: never).
    clones_read_at: AtomicI64,
    /// Clone sources whose refit kept a new daily profile since their clones' priors were read.
    stale_sources: std::sync::Mutex<HashSet<String>>,
}

/// Full error chain on one line, for reports and logs.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Controller {
    /// A controller over `store`, acting through `clouds` (by name, e.g. `sim`), reading `clock`.
    ///
    /// `holder` identifies this replica in leases (unique per process).
    pub fn new(
        cfg: &ValidConfig,
        store: Arc<dyn Store>,
        clouds: BTreeMap<String, DynProvider>,
        clock: Arc<dyn Clock>,
        holder: &str,
    ) -> Self {
        Self {
            interval: cfg.interval_secs,
            mode: cfg.mode,
            concurrency: cfg.concurrency,
            owner: cfg.owner.clone(),
            retention: cfg.retention_secs,
            holder: holder.to_string(),
            store,
            clouds,
            metrics: Metrics::new(),
            clock,
            call_timeout: Duration::from_secs(30),
            workloads: RwLock::new(BTreeMap::new()),
            refits_per_tick: AtomicUsize::new(0),
            refit_task: std::sync::Mutex::new(None),
            clusters: RwLock::new(None),
            clusters_loaded: AtomicBool::new(false),
            new_profiles: AtomicUsize::new(0),
            source_priors: RwLock::new(Arc::default()),
            clones_dirty: AtomicBool::new(true),
            clones_read_at: AtomicI64::new(i64::MIN),
            stale_sources: std::sync::Mutex::new(HashSet::new()),
        }
    }

    /// The fleet's cold-start clusters in force, if any.
    pub fn clusters(&self) -> Option<Arc<refit::FleetClusters>> {
        self.clusters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the stored clusters once (at the first tick after start).
    async fn load_clusters(&self) -> Result<()> {
        if self.clusters_loaded.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let stored = self.store.fleet_state(refit::CLUSTERS_KIND).await?;
        // The clusters are derived from the stored profiles: an unreadable copy is reported and
        // re-fitted at the next refit instead of stopping every workload's tick.
        let fc = match refit::FleetClusters::decode(stored.as_ref().map(|(s, _)| s.as_str())) {
            Ok(fc) => fc,
            Err(source) => {
                let e = crate::store::Error::Corrupt {
                    what: "cold-start clusters",
                    source,
                };
                tracing::warn!(error = %e, "stored clusters ignored; they are fitted again");
                None
            }
        };
        if let Some(fc) = fc {
            *self.clusters.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(fc));
        }
        Ok(())
    }

    /// Marks the registered clones as changed: the next tick reads them again. Call it after
    /// writing or deleting a clone in the store (the API's `PutClone` and `DeleteClone` do).
    pub fn clones_changed(&self) {
        self.clones_dirty.store(true, Ordering::Release);
    }

    /// How many times the registered clones were read from the store since start (a tick
    /// reads them only after [`Controller::clones_changed`], a workload's registration or
    /// removal, or [`CLONES_RECHECK`] seconds): `predictive_clone_reads_total` on `/metrics`.
    pub fn clone_reads(&self) -> u64 {
        self.metrics.get(metrics::CLONE_READS, "").unwrap_or(0.0) as u64
    }

    /// Keeps the cold-start prior of every registered clone that runs as a workload here: the
    /// daily profile its source's refits keep.
    ///
    /// The clones are read only when they may have changed (see [`Controller::clone_reads`]).
    /// A source's profile is read when its clone is first seen, after a refit here kept a new
    /// one, and a refit period later; while a source has none stored yet (no refit), it is
    /// asked for at every tick, so the clone takes it up at the first tick after the source's
    /// first refit. A tick with nothing to look up makes no store call.
    ///
    /// # Errors
    /// A store failure; what was to be read is read again at the next tick.
    async fn load_source_priors(&self, now: Timestamp) -> Result<()> {
        let reread = self.clones_dirty.swap(false, Ordering::AcqRel)
            || now.saturating_sub(self.clones_read_at.load(Ordering::Relaxed)) >= CLONES_RECHECK;
        let stale: HashSet<String> =
            std::mem::take(&mut *self.stale_sources.lock().unwrap_or_else(|p| p.into_inner()));
        let known = self.source_priors();
        let next = if reread {
            self.read_clones(now, &known, &stale).await
        } else {
            self.refresh_priors(now, &known, &stale).await
        };
        let next = match next {
            Ok(next) => next,
            Err(e) => {
                if reread {
                    self.clones_dirty.store(true, Ordering::Release);
                }
                self.stale_sources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(stale);
                return Err(e);
            }
        };
        if let Some(next) = next {
            *self
                .source_priors
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        }
        Ok(())
    }

    /// Reads the registered clones and builds their priors, keeping the `known` ones whose
    /// source is the same, has a profile that is not `stale` and was read within a refit period.
    async fn read_clones(
        &self,
        now: Timestamp,
        known: &HashMap<String, SourcePrior>,
        stale: &HashSet<String>,
    ) -> Result<Option<HashMap<String, SourcePrior>>> {
        let clones = self.store.clones().await?;
        self.metrics.add(metrics::CLONE_READS, "", 1.0);
        self.clones_read_at.store(now, Ordering::Relaxed);
        let mut next = HashMap::new();
        for c in clones {
            if c.source.is_empty() || c.source == c.name || self.workload(&c.name).is_none() {
                continue;
            }
            let keep = known.get(&c.name).filter(|p| {
                p.source == c.source
                    && !p.absent
                    && !stale.contains(&p.source)
                    && now - p.checked < refit::EVERY
            });
            let prior = match keep {
                Some(p) => p.clone(),
                None => self.read_prior(c.source, now).await?,
            };
            next.insert(c.name, prior);
        }
        Ok(Some(next))
    }

    /// Reads again the source profiles of the `known` priors whose source had none stored or
    /// is `stale`; `None` when there is nothing to read.
    async fn refresh_priors(
        &self,
        now: Timestamp,
        known: &HashMap<String, SourcePrior>,
        stale: &HashSet<String>,
    ) -> Result<Option<HashMap<String, SourcePrior>>> {
        let due = |p: &SourcePrior| p.absent || stale.contains(&p.source);
        if !known.values().any(due) {
            return Ok(None);
        }
        let mut next = known.clone();
        for p in next.values_mut() {
            if due(p) {
                *p = self.read_prior(p.source.clone(), now).await?;
            }
        }
        Ok(Some(next))
    }

    /// Reads the daily profile `source`'s refits keep (none when unreadable or of another step).
    async fn read_prior(&self, source: String, now: Timestamp) -> Result<SourcePrior> {
        let stored = self.store.loop_state(&source, refit::PROFILE_KIND).await?;
        let absent = stored.is_none();
        let kept = stored.and_then(|text| {
            serde_json::from_str::<refit::Profile>(&text)
                .map_err(|e| {
                    tracing::warn!(workload = %source, error = %e, "stored daily profile ignored");
                })
                .ok()
        });
        let kept = kept.filter(|p| p.step == self.interval);
        Ok(SourcePrior {
            at: kept.as_ref().map_or(0, |p| p.at),
            profile: kept.map(|p| {
                (
                    p.profile.iter().map(|&v| f64::from(v)).collect(),
                    f64::from(p.spread),
                )
            }),
            source,
            checked: now,
            absent,
        })
    }

    fn source_priors(&self) -> Arc<HashMap<String, SourcePrior>> {
        self.source_priors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-fits the cold-start clusters on the stored daily profiles when they are due: none
    /// yet and a profile exists, a refit period ([`refit::EVERY`]) since the last fit, or as
    /// many new profiles as the last fit had (early on, while the fleet's history fills).
    /// Returns whether they were re-fitted.
    ///
    /// # Errors
    /// A store failure.
    pub async fn recluster(&self, now: Timestamp) -> Result<bool> {
        let fresh = self.new_profiles.load(Ordering::Relaxed);
        let due = match self.clusters() {
            None => fresh > 0,
            Some(c) => now - c.at >= refit::EVERY || fresh >= c.profiles.max(1),
        };
        if !due {
            return Ok(false);
        }
        let rows = self.store.loop_states(refit::PROFILE_KIND).await?;
        let step = self.interval;
        let season = ticks_per_day(step);
        let fitted = tokio::task::spawn_blocking(move || {
            let profiles: Vec<refit::Profile> = rows
                .iter()
                .filter_map(|(_, text)| serde_json::from_str(text).ok())
                .collect();
            refit::FleetClusters::fit(&profiles, step, season, now)
        })
        .await
        .ok()
        .flatten();
        self.new_profiles.store(0, Ordering::Relaxed);
        let Some(fc) = fitted else {
            return Ok(false);
        };
        self.store
            .put_fleet_state(refit::CLUSTERS_KIND, &fc.encode(), now)
            .await?;
        self.metrics.add(metrics::CLUSTER_FITS, "", 1.0);
        *self.clusters.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(fc));
        Ok(true)
    }

    /// The watched metrics' detectors, as JSON, and how many samples each has learnt (tests).
    #[cfg(test)]
    pub(crate) async fn watched(&self, name: &str) -> Option<(String, Vec<usize>)> {
        let w = self.workload(name)?;
        let st = w.state.lock().await;
        Some((serde_json::to_string(&st.watch).ok()?, st.watch.seen()))
    }

    /// A copy of the workload's anomaly detector (tests).
    #[cfg(test)]
    pub(crate) async fn detector(&self, name: &str) -> Option<Detector> {
        let w = self.workload(name)?;
        let st = w.state.lock().await;
        Some(st.detector.clone())
    }

    /// The refit calibration a workload's loop holds (tests).
    #[cfg(test)]
    pub(crate) async fn refit_tracker(&self, name: &str) -> Option<refit::Tracker> {
        let w = self.workload(name)?;
        let st = w.state.lock().await;
        Some(st.refit_track.clone())
    }

    /// Caps the refits started per tick (0: enough to refit every workload once a day).
    pub fn set_refits_per_tick(&self, n: usize) {
        self.refits_per_tick.store(n, Ordering::Relaxed);
    }

    /// Waits for the running batch of refits, if any (tests, shutdown).
    pub async fn refits_settled(&self) {
        let task = self
            .refit_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    /// Starts, off the loop, the refits due at `now` among `led` (a bounded number, oldest
    /// refit first), unless the previous batch is still running. Returns how many started.
    fn schedule_refits(self: &Arc<Self>, now: Timestamp, led: &[Arc<Workload>]) -> usize {
        let mut slot = self.refit_task.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|t| !t.is_finished()) {
            return 0;
        }
        let day_ticks = (refit::EVERY / self.interval).max(1) as usize;
        let cap = match self.refits_per_tick.load(Ordering::Relaxed) {
            0 => led.len().div_ceil(day_ticks).max(1),
            n => n,
        };
        let mut due: Vec<&Arc<Workload>> = led
            .iter()
            .filter(|w| {
                let at = w.refit_at.load(Ordering::Relaxed);
                at == i64::MIN || now - at >= refit::EVERY
            })
            .collect();
        due.sort_by_key(|w| (w.refit_at.load(Ordering::Relaxed), w.cfg.name().to_string()));
        due.truncate(cap);
        if due.is_empty() {
            return 0;
        }
        let batch: Vec<Arc<Workload>> = due.into_iter().cloned().collect();
        for w in &batch {
            w.refit_at.store(now, Ordering::Relaxed);
        }
        let n = batch.len();
        let me = self.clone();
        *slot = Some(tokio::spawn(async move {
            for w in batch {
                if let Err(e) = me.refit(&w, now).await {
                    tracing::warn!(workload = %w.cfg.name(), error = %chain(&e), "refit failed");
                }
            }
            if let Err(e) = me.recluster(now).await {
                tracing::warn!(error = %chain(&e), "re-clustering the daily profiles failed");
            }
        }));
        n
    }

    /// Refits one workload: cross-validation over its stored week on a blocking thread, then
    /// the choice is stored and used by the loop.
    async fn refit(&self, w: &Workload, now: Timestamp) -> Result<()> {
        let name = w.cfg.name();
        let history = self.store.samples(name, now - 7 * 86_400).await?;
        let step = self.interval;
        // Regular grid on the tick's step; gaps are filled with the previous value.
        let Some(first) = history.first() else {
            return Ok(());
        };
        let start = first.ts - first.ts.rem_euclid(step);
        let mut values: Vec<f64> = Vec::new();
        for s in &history {
            let i = ((s.ts - start) / step) as usize;
            while values.len() < i {
                values.push(values.last().copied().unwrap_or(s.value));
            }
            if values.len() == i {
                values.push(s.value);
            }
        }
        let season = ticks_per_day(step);
        let horizon = w.lead_steps.max(season / 12);
        let quantile = w.cfg.params.quantile;
        let (choice, profile) = tokio::task::spawn_blocking(move || {
            let Ok(series) = predictive_engine::series::Series::new(start, step, values) else {
                return (None, None);
            };
            (
                refit::choose(&series, season, horizon, quantile, now),
                refit::Profile::of(&series, season, now),
            )
        })
        .await
        .unwrap_or((None, None));
        if let Some(p) = profile {
            self.store
                .put_loop_state(name, refit::PROFILE_KIND, &p.encode(), now)
                .await?;
            self.new_profiles.fetch_add(1, Ordering::Relaxed);
            // Its clones take the new profile up at the next tick.
            if self.source_priors().values().any(|c| c.source == name) {
                self.stale_sources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_string());
            }
        }
        let Some(choice) = choice else {
            // Not enough history yet: try again in a quarter of a day.
            w.refit_at
                .store(now - refit::EVERY + refit::EVERY / 4, Ordering::Relaxed);
            return Ok(());
        };
        self.store
            .put_loop_state(name, refit::STATE_KIND, &choice.encode(), now)
            .await?;
        self.metrics
            .add_labelled(metrics::REFITS, name, ("model", &choice.model), 1.0);
        let mut st = w.state.lock().await;
        st.refit = Some(choice);
        st.refit_track = refit::Tracker::default();
        Ok(())
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Seconds between ticks.
    pub fn interval(&self) -> i64 {
        self.interval
    }

    /// The ownership tag value.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Names of the registered workloads.
    pub fn workload_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// A registered workload.
    pub fn workload(&self, name: &str) -> Option<Arc<Workload>> {
        self.read().get(name).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Workload>>> {
        self.workloads.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or replaces) a workload, stores its spec and rebuilds its model from the
    /// stored history.
    ///
    /// # Errors
    /// [`Error::UnknownCloud`], [`Error::SourceInvalid`] or a store error, naming the workload.
    pub async fn upsert(&self, w: ValidWorkload) -> Result<()> {
        let name = w.name().to_string();
        let cloud =
            self.clouds
                .get(&w.params.cloud)
                .cloned()
                .ok_or_else(|| Error::UnknownCloud {
                    workload: name.clone(),
                    cloud: w.params.cloud.clone(),
                })?;
        let source = self
            .make_source(&name, &w.params.metrics)
            .map_err(|source| Error::SourceInvalid {
                workload: name.clone(),
                source,
            })?;
        self.upsert_with_source(w, source, cloud).await
    }

    /// The source a workload's metrics config names (a replay is read here).
    fn make_source(
        &self,
        workload: &str,
        m: &MetricsParams,
    ) -> std::result::Result<Arc<dyn MetricsSource>, crate::source::Error> {
        Ok(match m {
            MetricsParams::Replay { path } => Arc::new(Replay::from_csv(path)?),
            MetricsParams::Prometheus { url, query } => {
                Arc::new(Prometheus::new(url, query, self.call_timeout))
            }
            MetricsParams::Push => Arc::new(Pushed::new(workload, self.store.clone())),
        })
    }

    /// Registers a workload with an explicit source and cloud (tests, benchmarks, the demo);
    /// the metrics it watches come from its config.
    ///
    /// # Errors
    /// [`Error::SourceInvalid`] or a store error.
    pub async fn upsert_with_source(
        &self,
        w: ValidWorkload,
        source: Arc<dyn MetricsSource>,
        cloud: DynProvider,
    ) -> Result<()> {
        let mut watched = Vec::with_capacity(w.params.watch.len());
        for (resource, m) in &w.params.watch {
            let source = self
                .make_source(w.name(), m)
                .map_err(|source| Error::SourceInvalid {
                    workload: w.name().into(),
                    source,
                })?;
            watched.push(watch::Source {
                resource: resource.clone(),
                source,
            });
        }
        self.upsert_watching(w, source, watched, cloud).await
    }

    /// Registers a workload with explicit sources for its own resource and the metrics it
    /// watches (in the order of its config's `watch`).
    ///
    /// # Errors
    /// A store error.
    pub(crate) async fn upsert_watching(
        &self,
        w: ValidWorkload,
        source: Arc<dyn MetricsSource>,
        watched: Vec<watch::Source>,
        cloud: DynProvider,
    ) -> Result<()> {
        let name = w.name().to_string();
        let spec = serde_json::to_string(&w.params).unwrap_or_default();
        let now = self.clock.now();
        self.store.put_workload(&name, &spec, now).await?;
        if let Some(b) = w.params.budget_per_hour {
            if self.store.budget(&name).await?.is_none() {
                self.store.put_budget(&name, b).await?;
            }
        }
        let lead_steps = ((w.lead_secs + self.interval - 1) / self.interval).max(1) as usize;
        let state = self.load_state(&w, lead_steps, now).await?;
        let stagger = name_offset(&name, CALIBRATION_EVERY);
        let day_stagger = name_offset(&name, ticks_per_day(self.interval) as i64);
        let wl = Arc::new(Workload {
            cfg: w,
            source,
            watched,
            cloud,
            lead_steps,
            stagger,
            day_stagger,
            refit_at: AtomicI64::new(state.refit_at()),
            current: AtomicBool::new(true),
            state: tokio::sync::Mutex::new(state),
        });
        self.workloads
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, wl);
        // A workload named as a registered clone takes its source's prior from the next tick.
        self.clones_changed();
        Ok(())
    }

    /// Stores what `source` still holds for the ticks after the workload's last stored sample,
    /// up to a week back and up to the tick before `now`: the history the loop did not observe
    /// because the workload was not registered yet, or no replica ran (a restart, a lease taken
    /// over from a replica that stopped). The models, the refit and the anomaly detector then
    /// learn it as if observed. Returns the samples added, in time order, or the source's
    /// error (nothing stored).
    ///
    /// # Errors
    /// A store error.
    async fn backfill(
        &self,
        name: &str,
        source: &dyn MetricsSource,
        now: Timestamp,
    ) -> Result<std::result::Result<Vec<Sample>, crate::source::Error>> {
        if !source.keeps_history() {
            return Ok(Ok(Vec::new()));
        }
        let step = self.interval;
        let last_tick = now - now.rem_euclid(step) - step;
        let week = last_tick - 7 * 86_400 + step;
        let last = self.store.last_sample_at(name).await?;
        let from = last.map_or(week, |t| t + step).max(week);
        let from = from + (step - from.rem_euclid(step)) % step;
        if from > last_tick {
            return Ok(Ok(Vec::new()));
        }
        let points = match source.history(from, last_tick, step).await {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let mut samples: Vec<Sample> = points
            .into_iter()
            .filter(|&(ts, value)| (from..=last_tick).contains(&ts) && value.is_finite())
            .map(|(ts, value)| Sample { ts, value })
            .collect();
        samples.sort_by_key(|s| s.ts);
        samples.dedup_by_key(|s| s.ts);
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            self.store.put_samples(name, &samples).await?;
            tracing::info!(workload = %name, samples = samples.len(), from = first.ts, to = last.ts, "history filled from the source");
        }
        Ok(Ok(samples))
    }

    /// Fills in the ticks before `now` that `st` has not observed, of its own metric (it is
    /// new, the daemon was down, its source failed, the lease was taken over) and of each
    /// watched metric (the same, or its own source failed), from the sources that keep history,
    /// and feeds them to it: they follow its last tick in time, so the models, the refit and the
    /// detectors carry on as if they had observed them.
    ///
    /// When the workload's own source answers but not with its history, the tick fails with
    /// the source's error, so the next one asks again (the tick's own observation would
    /// otherwise close the gap for good), up to [`FILL_TRIES`] ticks in a row; then it carries
    /// on without the history. A watched metric's history that fails is logged and skipped.
    ///
    /// # Errors
    /// [`Error::MetricsUnavailable`] (the history, to be asked again), or a store error.
    async fn fill_in(&self, w: &Workload, st: &mut State, now: Timestamp) -> Result<()> {
        let name = w.cfg.name();
        let behind = |last: Option<Timestamp>| last.is_none_or(|t| t < now - self.interval);
        if behind(st.last_tick) {
            match self.backfill(name, w.source.as_ref(), now).await? {
                Ok(samples) => {
                    st.fill_misses = 0;
                    for s in samples {
                        self.learn(st, &w.cfg, s.ts, s.value);
                    }
                }
                Err(source) => {
                    self.metrics.add(metrics::SOURCE_ERRORS, name, 1.0);
                    st.fill_misses += 1;
                    if st.fill_misses < FILL_TRIES {
                        return Err(Error::MetricsUnavailable {
                            workload: name.into(),
                            source: crate::source::Error::History(Box::new(source)),
                        });
                    }
                    st.fill_misses = 0;
                    tracing::warn!(workload = %name, error = %chain(&source), tries = FILL_TRIES, "history not filled from the source; the loop carries on without it");
                }
            }
        }
        for (i, m) in w.watched.iter().enumerate() {
            if behind(st.watch.last_at(i)) {
                let key = watch::key(name, &m.resource);
                match self.backfill(&key, m.source.as_ref(), now).await? {
                    Ok(samples) => {
                        for s in samples {
                            st.watch.observe(i, s.ts, s.value);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(workload = %name, resource = %m.resource, error = %chain(&e), "watched history not filled from the source; the loop carries on without it")
                    }
                }
            }
        }
        Ok(())
    }

    /// A workload's loop state as the store holds it: the refit's choice and calibration, the
    /// anomaly detector's last snapshot, the models rebuilt from the stored week, the
    /// remediation hold and the shadow pool.
    async fn load_state(
        &self,
        w: &ValidWorkload,
        lead_steps: usize,
        now: Timestamp,
    ) -> Result<State> {
        let name = w.name();
        let mut state = self.fresh_state(w, lead_steps);
        let corrupt = |what| move |source| crate::store::Error::Corrupt { what, source };
        // The refit's choice and its stored calibration first: replaying the history below
        // judges (only) the observations the stored calibration had not judged yet.
        state.refit = refit::Choice::decode(
            self.store
                .loop_state(name, refit::STATE_KIND)
                .await?
                .as_deref(),
        )
        .map_err(corrupt("refit"))?;
        if let Some(choice) = state.refit.as_ref() {
            if let Some(cal) = self.store.calibration(name).await? {
                let day = ticks_per_day(self.interval);
                if let Some(t) = refit::Tracker::from_stored(&cal, choice, day) {
                    state.refit_track = t;
                }
            }
        }
        // The detector as stored at its last daily snapshot, with its four weeks of memory;
        // the replay below feeds it only what came after. A snapshot that does not decode (an
        // older version) or was made with other settings (another tick) is a cache, not state:
        // it is ignored and the detector relearns from the replayed week.
        if let Some(text) = self.store.loop_state(name, DETECTOR_STATE_KIND).await? {
            match serde_json::from_str::<DetectorSnapshot<Detector>>(&text) {
                Ok(snap) if snap.detector.params() == state.detector.params() => {
                    state.detector = snap.detector;
                    state.clock = snap.clock;
                    state.detector_at = Some(snap.at);
                }
                Ok(_) => tracing::warn!(
                    workload = %name,
                    "stored anomaly detector ignored: made with other settings (another tick or version); it relearns from the stored history"
                ),
                Err(e) => tracing::warn!(
                    workload = %name,
                    error = %e,
                    "stored anomaly detector ignored; it relearns from the stored history"
                ),
            }
        }
        // Rebuild the online model from the downsampled history (bounded to 7 days).
        let history = self.store.samples(name, now - 7 * 86_400).await?;
        for s in &history {
            self.learn(&mut state, w, s.ts, s.value);
        }
        // The watched metrics' detectors as stored at the same daily snapshot (when they watch
        // what the config says, with the same settings), then the stored samples after each
        // one's last value; else they relearn the stored week.
        if !state.watch.is_empty() {
            if let Some(text) = self.store.loop_state(name, watch::STATE_KIND).await? {
                match serde_json::from_str::<Watch>(&text) {
                    Ok(stored) if stored.same_settings(&state.watch) => state.watch = stored,
                    Ok(_) => {
                        tracing::warn!(workload = %name, "stored watched detectors ignored: made for other metrics or settings; they relearn the stored week")
                    }
                    Err(e) => {
                        tracing::warn!(workload = %name, error = %e, "stored watched detectors ignored; they relearn the stored week")
                    }
                }
            }
        }
        // Each from its own last value (a fresh detector has none): a metric whose source was
        // failing at the snapshot had its gap filled in later, before the snapshot's time.
        let watched: Vec<String> = state.watch.resources().map(String::from).collect();
        for (i, resource) in watched.iter().enumerate() {
            let key = watch::key(name, resource);
            let since = state
                .watch
                .last_at(i)
                .map_or(now - 7 * 86_400, |last| last + 1);
            for s in self.store.samples(&key, since).await? {
                state.watch.observe(i, s.ts, s.value);
            }
        }
        state.held = Held::decode(
            self.store
                .loop_state(name, remediate::STATE_KIND)
                .await?
                .as_deref(),
        )
        .map_err(corrupt("remediation state"))?;
        state.pool = Pool::decode(
            self.store
                .loop_state(name, shadow::STATE_KIND)
                .await?
                .as_deref(),
        )
        .map_err(corrupt("shadow pool"))?;
        Ok(state)
    }

    /// Releases a workload's remediation hold or halt (see [`remediate::release`]): in the store,
    /// where the replica that leads it reads it at its next tick, and in this replica's state.
    /// Returns what was released, in words (`None`: nothing was held).
    ///
    /// # Errors
    /// [`Error::UnknownWorkload`] when no replica registered it, or a store error.
    pub async fn release(&self, name: &str) -> Result<Option<String>> {
        let now = self.clock.now();
        let Some(w) = self.workload(name) else {
            if !self.store.has_workload(name).await? {
                return Err(Error::UnknownWorkload(name.into()));
            }
            return Ok(remediate::release(self.store.as_ref(), name, now).await?);
        };
        let mut st = w.state.lock().await;
        let was = remediate::release(self.store.as_ref(), name, now).await?;
        st.held = Held::default();
        if let Some(was) = &was {
            tracing::warn!(workload = %name, %was, "remediation released by an operator");
        }
        Ok(was)
    }

    /// Reads a workload's state again from the store when this replica takes its lease over,
    /// where the replica that led it before left it (its detector snapshot, the samples since,
    /// its hold and shadow pool), and re-applies the intents it left pending. The tick that
    /// follows fills in the ticks no replica observed.
    async fn reload(&self, w: &Workload, now: Timestamp) -> Result<()> {
        let state = self.load_state(&w.cfg, w.lead_steps, now).await?;
        w.refit_at.store(state.refit_at(), Ordering::Relaxed);
        *w.state.lock().await = state;
        tracing::info!(workload = %w.cfg.name(), "lease taken over: state read again from the store");
        // The replica that led it may have stopped between an intent and its cloud call.
        for problem in self.replay_intents(w).await? {
            tracing::warn!(workload = %w.cfg.name(), %problem, "pending intent not re-applied; tried again at the next takeover or restart");
        }
        Ok(())
    }

    /// Unregisters a workload and deletes its state; `false` when it was unknown.
    ///
    /// # Errors
    /// A store error.
    pub async fn remove(&self, name: &str) -> Result<bool> {
        let removed = self
            .workloads
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let had = removed.is_some();
        self.clones_changed();
        let stored = self.store.delete_workload(name).await?;
        // Its pushed and watched samples are kept under keys of their own: every key it can
        // have, since it may have watched other metrics before, or been registered on another
        // replica only.
        let others = std::iter::once(crate::source::push_key(name))
            .chain(crate::config::WATCHABLE.iter().map(|r| watch::key(name, r)));
        for key in others {
            self.store.delete_workload(&key).await?;
        }
        self.metrics.forget(name);
        Ok(had || stored)
    }

    /// The loop's anomaly detector settings at its tick ([`detector_params`]), checked.
    fn valid_detector_params(&self) -> ValidDetectorParams {
        detector_params(self.interval).check().unwrap_or_else(|_| {
            DetectorParams::default()
                .check()
                .expect("default detector params are valid")
        })
    }

    fn fresh_state(&self, w: &ValidWorkload, lead_steps: usize) -> State {
        let detector = self.valid_detector_params();
        let cpi = w.params.capacity_per_instance;
        let policy = PolicyParams::new()
            .lead(lead_steps)
            .confidence(w.params.quantile)
            .bounds(w.params.min as f64 * cpi, w.params.max as f64 * cpi)
            .check()
            .unwrap_or_default();
        State {
            allocator: Allocator::new(policy, {
                // The calibration window is one day (not the engine's default week): the
                // steady-state memory per workload is what bounds a 10,000-workload daemon.
                let s = AllocatorSettings::for_step(self.interval as u64);
                AllocatorSettings {
                    window: s.day.clamp(64, MODEL_WINDOW),
                    ..s
                }
            }),
            pending: VecDeque::new(),
            hits: VecDeque::new(),
            recent: VecDeque::new(),
            refit_track: refit::Tracker::default(),
            current: None,
            desired: VecDeque::new(),
            fallback: false,
            last_tick: None,
            fill_misses: 0,
            last_plan: None,
            price: w.params.price_per_hour,
            detector: Detector::new(detector.clone()),
            clock: StepClock::new(self.interval),
            verdict: None,
            detector_at: None,
            watch: Watch::new(
                w.params.watch.keys().map(String::as_str),
                &detector,
                self.interval,
                ALERT_THRESHOLD,
            ),
            held: Held::default(),
            pool: Pool::default(),
            refit: None,
            cold: Some(Box::default()),
        }
    }

    /// Feeds one observation: feedback against the forecast made for it, then the online update.
    /// Returns (median error, hit) when a forecast covered `ts`.
    fn learn(
        &self,
        st: &mut State,
        w: &ValidWorkload,
        ts: Timestamp,
        usage: f64,
    ) -> Option<(f64, bool)> {
        let day = ticks_per_day(self.interval);
        let mut feedback = None;
        while let Some(&(target, p50, upper)) = st.pending.front() {
            if target > ts {
                break;
            }
            st.pending.pop_front();
            if target == ts {
                let hit = usage <= upper + 1e-9;
                if st.hits.len() >= day {
                    st.hits.pop_front();
                }
                st.hits.push_back(hit);
                feedback = Some(((usage - p50).abs(), hit));
            }
        }
        while st.hits.len() > day {
            st.hits.pop_front();
        }
        if st.hits.capacity() < day {
            st.hits.reserve_exact(day - st.hits.len());
        }
        while st.recent.len() >= day {
            st.recent.pop_front();
        }
        if st.recent.capacity() < day {
            st.recent.reserve_exact(day - st.recent.len());
        }
        st.recent.push_back(usage as f32);
        if let Some(c) = st.cold.as_deref_mut() {
            c.push(ts, usage, self.interval);
            if c.values.len() >= 3 * day {
                st.cold = None; // three days of its own: the prior is no longer needed
            }
        }
        if let Some(c) = st.refit.as_ref() {
            st.refit_track.observe(c, ts, usage, w.params.quantile, day);
        }
        let (plan, forecast) = st.allocator.step_with_forecast(usage);
        st.last_plan = Some(plan);
        // Steps with no observation (the source failed, the controller was down): the
        // detector's same-phase references stay on the clock. A sample a restored detector
        // already learnt is not learnt again.
        if st.detector_at.is_none_or(|at| ts > at) {
            st.detector.skip(st.clock.missing_before(ts));
            st.verdict = Some(st.detector.observe(usage));
        }
        if let Some(row) = forecast.values.last() {
            st.pending.push_back((
                ts + forecast.values.len() as i64 * self.interval,
                row[forecast.median_index()],
                row[forecast.level_index(w.params.quantile)],
            ));
        }
        // The accuracy objective is judged once a few hours of feedback exist.
        let enough = st.hits.len() >= (day / 8).max(6);
        let coverage = coverage(&st.hits);
        st.fallback = enough && coverage < w.params.accuracy_objective;
        st.last_tick = Some(ts);
        feedback
    }

    /// Stores `st`'s anomaly detector as learnt up to `at` ([`DetectorSnapshot`]), and its
    /// watched detectors ([`watch::Snapshot`]) when it watches any.
    async fn store_detector(&self, name: &str, st: &State, at: Timestamp) -> Result<()> {
        let snap = DetectorSnapshot {
            at,
            clock: st.clock,
            detector: &st.detector,
        };
        self.put_json_state(name, DETECTOR_STATE_KIND, &snap, at, "anomaly detector")
            .await?;
        if !st.watch.is_empty() {
            self.put_json_state(name, watch::STATE_KIND, &st.watch, at, "watched detectors")
                .await?;
        }
        Ok(())
    }

    /// Stores `value` as JSON loop state `kind` of `name`; a value that does not encode (`what`)
    /// is logged and not stored: it is a cache the workload can relearn.
    async fn put_json_state(
        &self,
        name: &str,
        kind: &str,
        value: &impl serde::Serialize,
        at: Timestamp,
        what: &str,
    ) -> Result<()> {
        match serde_json::to_string(value) {
            Ok(text) => self.store.put_loop_state(name, kind, &text, at).await?,
            Err(e) => tracing::warn!(workload = %name, error = %e, "{what} not stored"),
        }
        Ok(())
    }

    /// Stores every workload's anomaly detector now, as its daily snapshot does, and returns
    /// how many were stored (a workload that has learnt nothing yet has none to store).
    ///
    /// # Errors
    /// A store failure.
    pub async fn store_detectors(&self) -> Result<usize> {
        let workloads: Vec<(String, Arc<Workload>)> = self
            .read()
            .iter()
            .map(|(n, w)| (n.clone(), w.clone()))
            .collect();
        let mut stored = 0;
        for (name, w) in workloads {
            let st = w.state.lock().await;
            if let Some(at) = st.last_tick {
                self.store_detector(&name, &st, at).await?;
                stored += 1;
            }
        }
        Ok(stored)
    }

    /// Takes or renews this replica's leases on `workloads` until three intervals after `now`,
    /// in one store round trip; whether it leads each, in order.
    ///
    /// # Errors
    /// A store error.
    async fn take_leases(&self, workloads: &[Arc<Workload>], now: Timestamp) -> Result<Vec<bool>> {
        let names: Vec<&str> = workloads.iter().map(|w| w.cfg.name()).collect();
        Ok(self
            .store
            .acquire_leases(&names, &self.holder, now, 3 * self.interval)
            .await?)
    }

    /// Runs one tick at the clock's current time over every workload this replica leads.
    ///
    /// # Errors
    /// Only store failures of the batch write; per-workload failures are in the report.
    pub async fn tick(self: &Arc<Self>) -> Result<TickReport> {
        let now = self.clock.now();
        let now = now - now.rem_euclid(self.interval);
        self.load_clusters().await?;
        self.load_source_priors(now).await?;
        let workloads: Vec<Arc<Workload>> = self.read().values().cloned().collect();
        let mut report = TickReport {
            ts: now,
            ..TickReport::default()
        };
        let sem = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
        let mut set = tokio::task::JoinSet::new();
        let mut led = Vec::with_capacity(workloads.len());
        // Leases and budgets in one store round trip each, not one per workload.
        let store_start = std::time::Instant::now();
        let leaders = self.take_leases(&workloads, now).await?;
        let budgets = Arc::new(self.store.budgets().await?);
        report.store_seconds = store_start.elapsed().as_secs_f64();
        for (w, leader) in workloads.iter().zip(leaders) {
            if !leader {
                // Another replica carries it on: what this one holds goes stale.
                w.current.store(false, Ordering::Relaxed);
                report.not_leader += 1;
                continue;
            }
            let taken_over = !w.current.swap(true, Ordering::Relaxed);
            led.push(w.clone());
            let me = self.clone();
            let sem = sem.clone();
            let budgets = budgets.clone();
            let w = w.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let name = w.cfg.name().to_string();
                let budget = budgets.get(&name).copied();
                if taken_over {
                    if let Err(e) = me.reload(&w, now).await {
                        // Read again at the next tick this replica leads it.
                        w.current.store(false, Ordering::Relaxed);
                        return (name, Err(e));
                    }
                }
                (name, me.tick_workload(&w, now, budget).await)
            });
        }
        let mut out = Output::default();
        while let Some(joined) = set.join_next().await {
            let Ok((name, res)) = joined else { continue };
            match res {
                Ok(o) => {
                    report.ok += 1;
                    out.samples.extend(o.samples);
                    out.forecasts.extend(o.forecasts);
                    out.decisions.extend(o.decisions);
                    out.calibrations.extend(o.calibrations);
                }
                Err(e) => {
                    let text = chain(&e);
                    tracing::warn!(workload = %name, error = %text, "tick failed");
                    report.errors.push((name, text));
                }
            }
        }
        report.errors.sort();
        let store_start = std::time::Instant::now();
        self.store
            .record_tick(
                &out.samples,
                &out.forecasts,
                &out.decisions,
                &out.calibrations,
            )
            .await?;
        report.store_seconds += store_start.elapsed().as_secs_f64();
        self.metrics.add(metrics::TICKS, "", 1.0);
        report.refits = self.schedule_refits(now, &led);
        Ok(report)
    }

    async fn timed<T>(
        &self,
        workload: &str,
        call: &'static str,
        cloud: &DynProvider,
        f: impl std::future::Future<Output = predictive_clouds::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.call_timeout, f).await {
            Err(_) => {
                self.metrics.add(metrics::CLOUD_ERRORS, workload, 1.0);
                Err(Error::CloudTimedOut {
                    workload: workload.into(),
                    call,
                    after: self.call_timeout,
                })
            }
            Ok(Err(source)) => {
                self.metrics.add(metrics::CLOUD_ERRORS, workload, 1.0);
                Err(Error::CloudFailed {
                    workload: workload.into(),
                    cloud: cloud.name().into(),
                    call,
                    source,
                })
            }
            Ok(Ok(v)) => Ok(v),
        }
    }

    async fn price(&self, w: &Workload, st: &mut State) -> Result<f64> {
        if let Some(p) = st.price {
            return Ok(p);
        }
        let name = w.cfg.name();
        let prices = self
            .timed(name, "prices", &w.cloud, w.cloud.prices())
            .await?;
        let p = prices
            .iter()
            .find(|p| p.instance_type.as_str() == w.cfg.params.instance_type)
            .map(|p| p.on_demand_per_hour)
            .ok_or_else(|| Error::NoPrice {
                workload: name.into(),
                instance_type: w.cfg.params.instance_type.clone(),
            })?;
        st.price = Some(p);
        Ok(p)
    }

    /// The watched metrics' values at `now`, in order (`None`: unavailable this tick, counted
    /// as a source error and logged; the workload's own tick goes on).
    async fn observe_watched(&self, w: &Workload, now: Timestamp) -> Vec<Option<f64>> {
        let name = w.cfg.name();
        let mut values = Vec::with_capacity(w.watched.len());
        for m in &w.watched {
            let got = tokio::time::timeout(self.call_timeout, m.source.observe(now, self.interval))
                .await
                .unwrap_or(Err(crate::source::Error::TimedOut(self.call_timeout)));
            values.push(match got {
                Ok(v) => Some(v).filter(|v| v.is_finite()),
                Err(e) => {
                    self.metrics.add(metrics::SOURCE_ERRORS, name, 1.0);
                    tracing::warn!(workload = %name, resource = %m.resource, error = %chain(&e), "watched metric unavailable");
                    None
                }
            });
        }
        values
    }

    /// One workload's tick; `budget` is its stored budget read for this tick.
    async fn tick_workload(
        &self,
        w: &Workload,
        now: Timestamp,
        budget: Option<f64>,
    ) -> Result<Output> {
        let name = w.cfg.name();
        let p = &w.cfg.params;
        let usage =
            match tokio::time::timeout(self.call_timeout, w.source.observe(now, self.interval))
                .await
            {
                Ok(Ok(u)) => u,
                Ok(Err(source)) => {
                    self.metrics.add(metrics::SOURCE_ERRORS, name, 1.0);
                    return Err(Error::MetricsUnavailable {
                        workload: name.into(),
                        source,
                    });
                }
                Err(_) => {
                    self.metrics.add(metrics::SOURCE_ERRORS, name, 1.0);
                    return Err(Error::MetricsUnavailable {
                        workload: name.into(),
                        source: crate::source::Error::TimedOut(self.call_timeout),
                    });
                }
            };
        let watched = self.observe_watched(w, now).await;
        let mut st = w.state.lock().await;
        let mut out = Output::default();
        if st.last_tick.is_some_and(|t| t >= now) {
            return Ok(out); // this tick was already applied (replayed after a restart)
        }
        // Ticks this replica did not observe (the workload is new, the daemon was down, a
        // source failed, the lease was taken over) come first, from a source that keeps them.
        self.fill_in(w, &mut st, now).await?;
        out.samples.push((
            name.to_string(),
            Sample {
                ts: now,
                value: usage,
            },
        ));
        if let Some((err, _)) = self.learn(&mut st, &w.cfg, now, usage) {
            self.metrics.set(metrics::FORECAST_ERROR, name, err);
        }
        // The watched metrics' verdicts join the workload's own.
        let mut watch_note = None;
        if !w.watched.is_empty() {
            let mut verdicts = Vec::with_capacity(watched.len());
            for (i, (m, v)) in w.watched.iter().zip(&watched).enumerate() {
                verdicts.push(v.and_then(|v| {
                    out.samples
                        .push((watch::key(name, &m.resource), Sample { ts: now, value: v }));
                    st.watch.observe(i, now, v)
                }));
            }
            if let Some(own) = st.verdict {
                let joined = st.watch.join(&p.resource, own, &verdicts);
                st.verdict = Some(joined.verdict);
                watch_note = joined.note;
            }
        }
        // Once a day the detector goes to the store, so a restart keeps its four weeks, and
        // the history older than the retention (with pushed samples) leaves it.
        let day = ticks_per_day(self.interval) as i64;
        if (now / self.interval + w.day_stagger).rem_euclid(day) == 0 {
            self.store_detector(name, &st, now).await?;
            if let Some(keep) = self.retention {
                let mut pruned = 0;
                for key in stored_keys(w) {
                    pruned += self.store.prune(&key, now - keep).await?;
                }
                tracing::debug!(workload = %name, rows = pruned, "history past the retention pruned");
            }
        }
        // The refit's calibration goes to the store every CALIBRATION_EVERY judged ticks.
        if let Some(c) = st.refit.as_ref() {
            if st.refit_track.judged_until() == Some(now)
                && (now / self.interval + w.stagger).rem_euclid(CALIBRATION_EVERY) == 0
            {
                out.calibrations.extend(st.refit_track.to_stored(name, c));
            }
        }
        let cov = coverage(&st.hits);
        self.metrics.set(metrics::COVERAGE, name, cov);
        self.metrics
            .set(metrics::FALLBACK, name, if st.fallback { 1.0 } else { 0.0 });
        let (p50, upper) = st
            .pending
            .back()
            .map(|x| (x.1, x.2))
            .unwrap_or((usage, usage));
        let target = now + w.lead_steps as i64 * self.interval;
        // A cold workload (under three days of its own history) whose refit does not cover the
        // target borrows the daily shape of its cluster of the fleet.
        let cold = if st.refit.as_ref().and_then(|c| c.at_time(target)).is_none() {
            self.cold_forecast(&mut st, w)
        } else {
            None
        };
        // The scheduled refit's chosen model, when its forecast covers the target, is the
        // recorded forecast; the cold-start prior's next; the online forecaster's otherwise.
        let refitted = st
            .refit
            .as_ref()
            .and_then(|c| c.at_time(target).map(|v| (c, v)));
        let (p50, upper, model) = match (refitted, &cold) {
            (Some((c, (rp50, rup))), _) => (rp50, st.refit_track.upper(rp50, rup), c.model.clone()),
            (None, Some(c)) => (c.p50, c.upper, c.forecast.model.clone()),
            // The online forecaster's model, which made the latest plan's forecast.
            (None, None) => (
                p50,
                upper,
                st.last_plan
                    .as_ref()
                    .map(|p| p.explanation.model.clone())
                    .unwrap_or_default(),
            ),
        };
        let refit_note = refitted.map(|(c, _)| {
            format!(
                "; refit model {} (rolling-origin CV pinball {:.3}, refitted at {})",
                c.model, c.score, c.at
            )
        });
        let refit_note = refit_note.unwrap_or_default();
        let cold_note = cold.as_ref().map(|c| c.note.as_str()).unwrap_or_default();
        out.forecasts.push(ForecastRecord {
            workload: name.into(),
            ts: now,
            target,
            p50,
            upper,
            quantile: p.quantile,
            model,
        });
        if self.mode == Mode::ForecastOnly {
            out.decisions.push(Decision {
                workload: name.into(),
                ts: now,
                mode: self.mode.as_str().into(),
                observed: usage,
                predicted: upper,
                current: 0,
                desired: 0,
                action: "none".into(),
                cost_per_hour: 0.0,
                explanation: format!(
                    "forecast-only: q{:.2} of usage at +{}s is {upper:.3} (median {p50:.3}){refit_note}{cold_note}",
                    p.quantile,
                    target - now
                ),
            });
            return Ok(out);
        }
        // Plan: the engine's policy over the refit's chosen model (calibrated) while its recent
        // accuracy meets the objective, over the online forecaster otherwise; the conservative
        // fallback when even that misses the objective.
        let (refit_plan, refit_why) = self.plan_refit(&st, w, now, usage);
        let cold_plan = match (&refit_plan, &cold) {
            (None, Some(c)) => Self::plan_on(&st, &c.forecast, usage, None),
            _ => None,
        };
        let (mut capacity, mut why) = match (&refit_plan, &cold_plan, &st.last_plan) {
            (Some(plan), _, _) => (plan.capacity, format!("{}{refit_why}", plan.explanation)),
            (None, Some(plan), _) => (
                plan.capacity,
                format!(
                    "{}; planned on the cold-start prior{cold_note}{refit_why}",
                    plan.explanation
                ),
            ),
            (None, None, Some(plan)) => (
                plan.capacity,
                format!("{}{refit_note}{refit_why}", plan.explanation),
            ),
            (None, None, None) => (usage, "no plan yet: capacity follows usage".to_string()),
        };
        if let Some(plan) = refit_plan
            .as_ref()
            .or(cold_plan.as_ref())
            .or(st.last_plan.as_ref())
        {
            let (cap, at_lead) = (plan.capacity, plan.desired_at_lead);
            let keep = st.allocator.policy().params().stabilisation.max(1);
            st.current = Some(cap);
            while st.desired.len() >= keep {
                st.desired.pop_front();
            }
            st.desired.push_back(at_lead);
        }
        if st.fallback {
            let peak = st
                .recent
                .iter()
                .map(|&x| f64::from(x))
                .fold(0.0_f64, f64::max);
            if peak > capacity {
                capacity = peak;
            }
            why = format!(
                "coverage {:.0}% missed the objective {:.0}%: conservative policy holds the trailing 24 h peak {peak:.3}; {why}",
                cov * 100.0,
                p.accuracy_objective * 100.0
            );
        }
        let gid = GroupId::new(p.group.clone());
        let group = self
            .timed(
                name,
                "describe_group",
                &w.cloud,
                w.cloud.describe_group(&gid),
            )
            .await?;
        let active = st.pool.count(UnitState::Active);
        let current = group.desired + active;
        let price = self.price(w, &mut st).await?;
        let gmin = p.min.max(group.min);
        let gmax = p.max.min(group.max);
        // Shadow units the cloud would not stop are billed: they count against the budget.
        let idle_running = st.pool.count(UnitState::ReadyRunning);
        let budget = budget.map(|b| (b - idle_running as f64 * price).max(0.0));
        let mut d = decide(capacity, p.capacity_per_instance, gmin, gmax, price, budget);
        let live = (group.live() as u32 + active) as f64 * p.capacity_per_instance;
        self.metrics
            .set(metrics::SLACK, name, (live - usage).max(0.0));
        self.metrics
            .set(metrics::SHORTFALL, name, (usage - live).max(0.0));
        if usage > live + 1e-9 {
            self.metrics.add(metrics::SHORTFALL_TICKS, name, 1.0);
        }

        // A hold or halt released from outside (`predictive release`, through any replica or
        // on the store) ends here too: a held workload's stored state is read again each tick.
        if !st.held.is_free() {
            let stored = self.store.loop_state(name, remediate::STATE_KIND).await?;
            match Held::decode(stored.as_deref()) {
                Ok(h) if h != st.held => st.held = h,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(workload = %name, error = %e, "stored remediation state unreadable; the hold in memory stays");
                }
            }
        }

        // Anomaly remediation: the engine decides, the loop audits, holds and executes.
        let dry = p.remediation.dry_run || self.mode == Mode::DryRun;
        let policy: RemediationPolicy = p.remediation.policy.parse().unwrap_or_default();
        let mut remedy = RemediationAction::None;
        let mut remedy_note = String::new();
        if let Some(v) = st.verdict {
            let ctx = RemediationContext {
                threshold: ALERT_THRESHOLD,
                current_allocation: current as f64,
                dry_run: dry,
                held_cap: st.held.cap,
                cap_leaks: p.remediation.caps_leaks(&p.resource),
            };
            let r = anomaly::decide(policy, &v, &ctx);
            if let Some(kind) = r.kind {
                self.metrics.add_labelled(
                    metrics::ANOMALIES,
                    name,
                    ("kind", &kind.to_string()),
                    1.0,
                );
            }
            if let Some(action) = remediate::action_name(r.action, dry) {
                self.metrics
                    .add_labelled(metrics::REMEDIATIONS, name, ("action", &action), 1.0);
                let reason = match &watch_note {
                    Some(n) => format!("{}; {n}", r.reason),
                    None => r.reason.clone(),
                };
                let detail = format!("usage {usage:.3}: {reason}");
                tracing::warn!(workload = %name, %action, %detail, "usage anomaly");
                self.store
                    .audit(&crate::store::AuditEvent {
                        ts: now,
                        workload: name.into(),
                        action: action.clone(),
                        detail: detail.clone(),
                    })
                    .await?;
                remedy_note = format!("; anomaly: {action}: {reason}");
            }
            if r.allocation_cap != st.held.cap {
                let next = remediate::Held {
                    cap: r.allocation_cap,
                    since: r.allocation_cap.map(|_| now),
                    ..st.held.clone()
                };
                match remediate::store_held(&*self.store, name, &st.held, &next, now).await? {
                    None => st.held = next,
                    Some(released) => {
                        tracing::info!(workload = %name, "remediation released during the tick: the new cap is not applied");
                        st.held = released;
                    }
                }
            }
            remedy = r.effective_action();
        }
        self.metrics.set(
            metrics::ANOMALY_SCORE,
            name,
            st.verdict.map_or(0.0, |v| v.score),
        );
        if let (Some(cap), false) = (st.held.cap, dry) {
            let c = remediate::cap_instances(cap, gmin).min(d.desired.max(gmin));
            if d.desired > c {
                d.desired = c;
                d.note.push_str(&format!(
                    ", held at {c} instances by the anomaly remediation"
                ));
            }
        }
        if matches!(
            remedy,
            RemediationAction::Stop | RemediationAction::Terminate
        ) && self.mode == Mode::Act
            && st.held.halted.is_none()
        {
            let halted = self.halt(w, &mut st, &group, remedy, now).await?;
            self.metrics.set(metrics::HELD, name, 1.0);
            out.decisions.push(Decision {
                workload: name.into(),
                ts: now,
                mode: self.mode.as_str().into(),
                observed: usage,
                predicted: capacity,
                current,
                desired: 0,
                action: halted.clone(),
                cost_per_hour: 0.0,
                explanation: format!("remediation: {halted}{remedy_note}"),
            });
            return Ok(out);
        }
        self.metrics.set(
            metrics::HELD,
            name,
            if st.held.is_free() { 0.0 } else { 1.0 },
        );
        if let Some(h) = st.held.halted.clone() {
            out.decisions.push(Decision {
                workload: name.into(),
                ts: now,
                mode: self.mode.as_str().into(),
                observed: usage,
                predicted: capacity,
                current,
                desired: current,
                action: "hold".into(),
                cost_per_hour: current as f64 * price,
                explanation: format!(
                    "halted ({h}) by the anomaly remediation since {}: not scaled until released (`predictive release`){remedy_note}",
                    st.held.since.unwrap_or(now)
                ),
            });
            return Ok(out);
        }

        // Shadow pool: promote ready units before the group grows, demote before it shrinks,
        // prepare for the peak ahead, release by decay.
        let mut group_target = d.desired.saturating_sub(active).max(gmin);
        let mut shadow_note = String::new();
        if let Some(ss) = shadow::Settings::new(&p.shadow, self.interval) {
            let peak = self.peak_ahead(&st, &ss, capacity, usage);
            let peak_n = decide(peak, p.capacity_per_instance, gmin, gmax, price, budget).desired;
            let (g, note) = self
                .shadow_step(w, &mut st, &ss, &group, d.desired, gmin, gmax, peak_n, now)
                .await?;
            group_target = g;
            shadow_note = note;
        } else {
            self.metrics
                .set(metrics::SHADOW_POOL, name, st.pool.size() as f64);
        }
        self.metrics.set(metrics::DESIRED, name, d.desired as f64);
        self.metrics
            .set(metrics::COST, name, d.desired as f64 * price);
        let action = match d.desired.cmp(&current) {
            std::cmp::Ordering::Greater => format!("launch {}", d.desired - current),
            std::cmp::Ordering::Less => format!("terminate {}", current - d.desired),
            std::cmp::Ordering::Equal => "hold".to_string(),
        };
        if group_target != group.desired && self.mode == Mode::Act {
            let mut intent = Intent {
                token: format!("{name}@{now}"),
                workload: name.into(),
                ts: now,
                kind: "scale".into(),
                count: group_target,
                state: "pending".into(),
            };
            self.store.put_intent(&intent).await?;
            let res = self
                .timed(
                    name,
                    "scale_group",
                    &w.cloud,
                    w.cloud.scale_group(&gid, group_target),
                )
                .await;
            intent.state = if res.is_ok() {
                "done".into()
            } else {
                "failed".into()
            };
            self.store.put_intent(&intent).await?;
            res?;
            self.metrics.add(metrics::ACTIONS, name, 1.0);
        }
        let verb = if self.mode == Mode::DryRun && d.desired != current {
            "would "
        } else {
            ""
        };
        out.decisions.push(Decision {
            workload: name.into(),
            ts: now,
            mode: self.mode.as_str().into(),
            observed: usage,
            predicted: capacity,
            current,
            desired: d.desired,
            action: format!("{verb}{action}"),
            cost_per_hour: (d.desired + idle_running) as f64 * price,
            explanation: format!(
                "{why}; {capacity:.3} {} / {} per instance = {} instances{}; {} at ${price:.4}/h = ${:.4}/h{shadow_note}{remedy_note}",
                p.resource,
                p.capacity_per_instance,
                d.raw,
                d.note,
                d.desired,
                d.desired as f64 * price
            ),
        });
        Ok(out)
    }

    /// The plan over the refit's chosen model, when its forecast covers the lead steps and its
    /// recent accuracy meets the workload's objective; and a note for the explanation.
    fn plan_refit(
        &self,
        st: &State,
        w: &Workload,
        now: Timestamp,
        usage: f64,
    ) -> (Option<Plan>, String) {
        let p = &w.cfg.params;
        let Some(choice) = st.refit.as_ref() else {
            return (None, String::new());
        };
        let Some(forecast) = choice.quantile_forecast(
            now,
            self.interval,
            w.lead_steps,
            p.quantile,
            &st.refit_track,
        ) else {
            return (None, String::new());
        };
        if let Some(cov) = st
            .refit_track
            .coverage()
            .filter(|c| *c < p.accuracy_objective)
        {
            return (
                None,
                format!(
                    "; refit model {} covered {:.0}% of the last day, below the objective {:.0}%: planning follows the online forecaster",
                    choice.model,
                    cov * 100.0,
                    p.accuracy_objective * 100.0
                ),
            );
        }
        match Self::plan_on(st, &forecast, usage, st.refit_track.last_upper()) {
            Some(plan) => {
                let note = format!(
                    "; planned on refit model {} (rolling-origin CV pinball {:.3}, refitted at {}, spread x{:.2}{})",
                    choice.model,
                    choice.score,
                    choice.at,
                    st.refit_track.widen(),
                    st.refit_track
                        .coverage()
                        .map(|c| format!(", coverage {:.0}%", c * 100.0))
                        .unwrap_or_default()
                );
                (Some(plan), note)
            }
            None => (None, String::new()),
        }
    }

    /// The engine's plan over `forecast` (steps `1..=lead`), from the workload's state.
    fn plan_on(
        st: &State,
        forecast: &QuantileForecast,
        usage: f64,
        predicted_latest: Option<f64>,
    ) -> Option<Plan> {
        let n = st.recent.len().max(1);
        let typical = st.recent.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        let snapshot = Snapshot {
            current: st.current.unwrap_or(usage),
            latest_usage: usage,
            predicted_latest,
            surprise: 1.0,
            typical_usage: typical,
            recent_desired: st.desired.iter().copied().collect(),
        };
        policy::plan(&snapshot, forecast, st.allocator.policy()).ok()
    }

    /// The cold-start forecast of steps `1..=lead` for a workload with under three days of
    /// its own history, at the level of its samples: for a registered clone, the daily shape
    /// of its source workload (as the source's refit kept it); otherwise the shape of its
    /// cluster (the one its own samples match clearly better, else the one it had, else the
    /// fleet's largest). `None` when it is not cold or has no prior.
    fn cold_forecast(&self, st: &mut State, w: &Workload) -> Option<ColdForecast> {
        let cold = st.cold.as_deref_mut()?;
        if cold.values.is_empty() {
            return None;
        }
        let priors = self.source_priors();
        let source = priors
            .get(w.cfg.name())
            .and_then(|p| p.profile.as_ref().map(|(prof, spread)| (p, prof, *spread)));
        let fc = self.clusters();
        let season = match (&source, &fc) {
            (Some((_, prof, _)), _) => prof.len(),
            (None, Some(fc)) if fc.step == self.interval => fc.clusters.season(),
            _ => return None,
        };
        let q = w.cfg.params.quantile;
        let series = predictive_engine::series::Series::new(
            cold.start,
            self.interval,
            cold.values.iter().map(|&v| f64::from(v)).collect(),
        )
        .ok()?;
        let levels = if (q - 0.5).abs() < 1e-9 {
            vec![0.5]
        } else if q < 0.5 {
            vec![q, 0.5]
        } else {
            vec![0.5, q]
        };
        let params = ForecastParams::new(w.lead_steps.max(1))
            .season(season)
            .levels(levels.clone())
            .check(self.interval)
            .ok()?;
        let n = cold.values.len();
        let (f, model, prior) = match (source, fc) {
            (Some((p, prof, spread)), _) => (
                cold_start::forecast_along(&series, prof, spread, &params).ok()?,
                COLD_SOURCE_MODEL,
                format!(
                    "daily profile of its source workload {} (kept at {})",
                    p.source, p.at
                ),
            ),
            (None, Some(fc)) => {
                let fallback = cold.cluster.unwrap_or_else(|| fc.clusters.largest());
                let c = fc.clusters.assign_or(&series, fallback);
                cold.cluster = Some(c);
                (
                    cold_start::forecast_in_cluster(&series, &fc.clusters, c, &params).ok()?,
                    COLD_MODEL,
                    format!(
                        "cluster {} of {} (daily profiles of {} workloads, fitted at {})",
                        c + 1,
                        fc.clusters.centroids().len(),
                        fc.profiles,
                        fc.at
                    ),
                )
            }
            (None, None) => return None,
        };
        let (p50, up) = (f.median()?, f.quantile(q)?);
        let values: Vec<Vec<f64>> = (0..p50.len())
            .map(|h| {
                if levels.len() == 1 {
                    vec![p50[h]]
                } else if q < 0.5 {
                    vec![up[h], p50[h]]
                } else {
                    vec![p50[h], up[h]]
                }
            })
            .collect();
        Some(ColdForecast {
            p50: *p50.last()?,
            upper: *up.last()?,
            forecast: QuantileForecast {
                levels,
                values,
                model: model.to_string(),
            },
            note: format!("; prior: {prior}, {n} of {} own samples", 3 * season),
        })
    }

    /// Capacity predicted within the shadow horizon: the larger of the same hours yesterday and
    /// the trailing horizon's peak, plus the plan's current margin over usage, and at least the
    /// plan itself.
    fn peak_ahead(&self, st: &State, ss: &shadow::Settings, capacity: f64, usage: f64) -> f64 {
        let day = ticks_per_day(self.interval);
        let n = st.recent.len();
        let trailing = st
            .recent
            .iter()
            .rev()
            .take(ss.horizon)
            .map(|&x| f64::from(x))
            .fold(0.0_f64, f64::max);
        // recent[j] is the usage (n - 1 - j) steps ago; a day ago plus h steps is j = n - 1 - day + h
        // (summed first: with n == day, n - 1 - day would go below zero).
        let yesterday = if n >= day {
            (1..=ss.horizon.min(day))
                .filter_map(|h| st.recent.get(n + h - 1 - day))
                .map(|&x| f64::from(x))
                .fold(0.0_f64, f64::max)
        } else {
            0.0
        };
        let margin = (capacity - usage).max(0.0);
        (trailing.max(yesterday) + margin).max(capacity)
    }

    /// Applies one shadow pool step; returns the group's new desired count and a note for the
    /// explanation.
    #[allow(clippy::too_many_arguments)]
    async fn shadow_step(
        &self,
        w: &Workload,
        st: &mut State,
        ss: &shadow::Settings,
        group: &predictive_clouds::Group,
        desired: u32,
        gmin: u32,
        gmax: u32,
        peak: u32,
        now: Timestamp,
    ) -> Result<(u32, String)> {
        let name = w.cfg.name();
        let act = self.mode == Mode::Act;
        let before = st.pool.clone();
        let stop_mode = if ss.hibernate {
            predictive_clouds::StopMode::Hibernate
        } else {
            predictive_clouds::StopMode::Stop
        };
        // Warming units that finished booting are stopped into the ready state.
        if act {
            let mut keep = Vec::with_capacity(st.pool.units.len());
            for mut u in std::mem::take(&mut st.pool.units) {
                if u.state == UnitState::Warming {
                    let id = predictive_clouds::InstanceId::new(u.id.clone());
                    match w.cloud.describe_instance(&id).await {
                        Err(e) if e.is_not_found() => continue,
                        Err(_) => {}
                        Ok(i) if i.state == predictive_clouds::InstanceState::Terminated => {
                            continue
                        }
                        Ok(i) if i.state == predictive_clouds::InstanceState::Running => {
                            u.state = self.park(w, &id, stop_mode).await;
                        }
                        Ok(i)
                            if matches!(
                                i.state,
                                predictive_clouds::InstanceState::Stopping
                                    | predictive_clouds::InstanceState::Stopped
                            ) =>
                        {
                            u.state = UnitState::Ready;
                        }
                        Ok(_) => {}
                    }
                }
                keep.push(u);
            }
            st.pool.units = keep;
        }
        let sizes = shadow::Sizes {
            desired,
            group_desired: group.desired,
            group_min: gmin,
            peak,
            max: gmax,
        };
        let step = shadow::plan(&st.pool, ss, sizes, now, self.interval);
        let mut notes = Vec::new();
        if act {
            let mut promoted = 0;
            for id in &step.promote {
                let iid = predictive_clouds::InstanceId::new(id.clone());
                match self
                    .timed(
                        name,
                        "start_instance",
                        &w.cloud,
                        w.cloud.start_instance(&iid),
                    )
                    .await
                {
                    Ok(_) => {
                        if let Some(u) = st.pool.units.iter_mut().find(|u| &u.id == id) {
                            u.state = UnitState::Active;
                        }
                        promoted += 1;
                    }
                    Err(Error::CloudFailed { source, .. }) if source.is_not_found() => {
                        st.pool.units.retain(|u| &u.id != id);
                    }
                    Err(_) => {} // still stopping or no room: the group covers it
                }
            }
            for id in &step.demote {
                let iid = predictive_clouds::InstanceId::new(id.clone());
                let state = self.park(w, &iid, stop_mode).await;
                if let Some(u) = st.pool.units.iter_mut().find(|u| &u.id == id) {
                    u.state = state;
                    u.refreshed_at = now;
                }
            }
            for u in st
                .pool
                .units
                .iter_mut()
                .filter(|u| step.refresh.contains(&u.id))
            {
                u.refreshed_at = now;
            }
            let mut released = 0;
            for id in &step.release {
                let iid = predictive_clouds::InstanceId::new(id.clone());
                match self
                    .timed(
                        name,
                        "terminate_instance",
                        &w.cloud,
                        w.cloud.terminate_instance(&iid),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(Error::CloudFailed { source, .. }) if source.is_not_found() => {}
                    Err(e) => return Err(e),
                }
                st.pool.units.retain(|u| &u.id != id);
                released += 1;
            }
            if step.launch > 0 {
                let owner = Owner::new(self.owner.clone()).map_err(Error::OwnerInvalid)?;
                let token =
                    predictive_clouds::IdempotencyToken::new(shadow::launch_token(name, now))
                        .map_err(Error::OwnerInvalid)?;
                let mut req = predictive_clouds::LaunchRequest::new(
                    token,
                    owner,
                    w.cfg.params.instance_type.as_str(),
                    step.launch,
                );
                req.location = Some(group.location.clone());
                req.tags.insert(WORKLOAD_TAG.into(), name.into());
                req.tags
                    .insert(shadow::ROLE_TAG.into(), shadow::ROLE_SHADOW.into());
                let got = self
                    .timed(name, "launch", &w.cloud, w.cloud.launch(&req))
                    .await?;
                for i in got {
                    if !st.pool.contains(i.id.as_str()) {
                        st.pool.units.push(shadow::Unit {
                            id: i.id.as_str().to_string(),
                            state: UnitState::Warming,
                            since: now,
                            refreshed_at: now,
                        });
                        st.pool.launched += 1;
                    }
                }
                self.metrics
                    .add(metrics::SHADOW_LAUNCHES, name, step.launch as f64);
                notes.push(format!(
                    "launched {} ahead of a predicted peak of {peak}",
                    step.launch
                ));
            }
            if promoted > 0 {
                st.pool.promoted += promoted;
                self.metrics
                    .add(metrics::SHADOW_PROMOTIONS, name, promoted as f64);
                notes.push(format!("promoted {promoted}"));
            }
            if !step.demote.is_empty() {
                notes.push(format!("kept {} at scale-down", step.demote.len()));
            }
            if released > 0 {
                st.pool.released += released;
                self.metrics
                    .add(metrics::SHADOW_RELEASES, name, released as f64);
                notes.push(format!("released {released} by decay"));
            }
            if st.pool != before {
                self.store
                    .put_loop_state(name, shadow::STATE_KIND, &st.pool.encode(), now)
                    .await?;
                self.store.put_shadow(name, st.pool.size(), now).await?;
            }
        } else {
            let mut would = Vec::new();
            if !step.promote.is_empty() {
                would.push(format!("promote {}", step.promote.len()));
            }
            if !step.demote.is_empty() {
                would.push(format!("keep {} at scale-down", step.demote.len()));
            }
            if step.launch > 0 {
                would.push(format!(
                    "launch {} ahead of a predicted peak of {peak}",
                    step.launch
                ));
            }
            if !step.release.is_empty() {
                would.push(format!("release {} by decay", step.release.len()));
            }
            if !would.is_empty() {
                notes.push(format!("would {}", would.join(", ")));
            }
        }
        let price = st.price.unwrap_or(0.0);
        let ready = st.pool.count(UnitState::Ready);
        let running = st.pool.count(UnitState::ReadyRunning);
        self.metrics
            .set(metrics::SHADOW_POOL, name, st.pool.size() as f64);
        self.metrics
            .set(metrics::SHADOW_COST, name, running as f64 * price);
        let active = st.pool.count(UnitState::Active);
        let group_target = if act {
            desired.saturating_sub(active).max(gmin)
        } else {
            desired
                .saturating_sub(before.count(UnitState::Active))
                .max(gmin)
        };
        let mut note = format!(
            "; shadow pool: {ready} ready, {running} ready-running, {} warming, {active} serving",
            st.pool.count(UnitState::Warming)
        );
        if !notes.is_empty() {
            note.push_str(&format!(" ({})", notes.join(", ")));
        }
        Ok((group_target, note))
    }

    /// Stops (or hibernates) a shadow unit; the state it is left in.
    async fn park(
        &self,
        w: &Workload,
        id: &predictive_clouds::InstanceId,
        mode: predictive_clouds::StopMode,
    ) -> UnitState {
        let name = w.cfg.name();
        let r = self
            .timed(
                name,
                "stop_instance",
                &w.cloud,
                w.cloud.stop_instance(id, mode),
            )
            .await;
        let r = match r {
            Err(Error::CloudFailed { source, .. })
                if source.is_invalid_request()
                    && mode == predictive_clouds::StopMode::Hibernate =>
            {
                self.timed(
                    name,
                    "stop_instance",
                    &w.cloud,
                    w.cloud.stop_instance(id, predictive_clouds::StopMode::Stop),
                )
                .await
            }
            r => r,
        };
        match r {
            Ok(_) => UnitState::Ready,
            Err(Error::CloudFailed { source, .. })
                if source.is_invalid_request()
                    || source.kind() == predictive_clouds::ErrorKind::Unsupported =>
            {
                UnitState::ReadyRunning
            }
            Err(_) => UnitState::Warming, // still booting or a transient error: retried next tick
        }
    }

    /// Executes a `stop` or `terminate` remediation: every running member of the group (and
    /// every shadow unit) is stopped or terminated, and the workload is halted.
    async fn halt(
        &self,
        w: &Workload,
        st: &mut State,
        group: &predictive_clouds::Group,
        action: RemediationAction,
        now: Timestamp,
    ) -> Result<String> {
        let name = w.cfg.name();
        let terminate = action == RemediationAction::Terminate;
        let mut ids: Vec<predictive_clouds::InstanceId> = group
            .instances
            .iter()
            .filter(|i| {
                if terminate {
                    i.state.is_live()
                } else {
                    i.state.is_active()
                }
            })
            .map(|i| i.id.clone())
            .collect();
        ids.extend(
            st.pool
                .units
                .iter()
                .map(|u| predictive_clouds::InstanceId::new(u.id.clone())),
        );
        let mut done = 0;
        for id in &ids {
            let r = if terminate {
                self.timed(
                    name,
                    "terminate_instance",
                    &w.cloud,
                    w.cloud.terminate_instance(id),
                )
                .await
            } else {
                self.timed(
                    name,
                    "stop_instance",
                    &w.cloud,
                    w.cloud.stop_instance(id, predictive_clouds::StopMode::Stop),
                )
                .await
            };
            match r {
                Ok(_) => done += 1,
                Err(Error::CloudFailed { source, .. })
                    if source.is_not_found() || source.is_incorrect_state() => {}
                Err(e) => return Err(e),
            }
        }
        let what = if terminate { "terminated" } else { "stopped" };
        if terminate {
            st.pool.units.clear();
            self.store
                .put_loop_state(name, shadow::STATE_KIND, &st.pool.encode(), now)
                .await?;
            self.store.put_shadow(name, 0, now).await?;
        } else {
            for u in &mut st.pool.units {
                u.state = UnitState::Ready;
            }
        }
        st.held = remediate::store_halt(&*self.store, name, what, now).await?;
        self.metrics.add(metrics::ACTIONS, name, 1.0);
        Ok(format!("{what} {done} instances"))
    }

    /// Re-applies `w`'s intents left pending (a crash between the intent and its cloud call, or
    /// a replica that lost its lease in between), capped by the budget, and marks them done.
    /// Returns the cloud failures, naming the workload; the intent stays pending for the next
    /// try.
    ///
    /// # Errors
    /// A store failure.
    async fn replay_intents(&self, w: &Workload) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let name = w.cfg.name();
        for mut intent in self.store.pending_intents(name).await? {
            let gid = GroupId::new(w.cfg.params.group.clone());
            let mut st = w.state.lock().await;
            let price = match self.price(w, &mut st).await {
                Ok(p) => p,
                Err(e) => {
                    problems.push(chain(&e));
                    continue;
                }
            };
            drop(st);
            let budget = self.store.budget(name).await?;
            let cap = budget
                .map(|b| (b / price + 1e-9).floor() as u32)
                .unwrap_or(u32::MAX);
            let target = intent.count.min(cap);
            match self
                .timed(
                    name,
                    "scale_group",
                    &w.cloud,
                    w.cloud.scale_group(&gid, target),
                )
                .await
            {
                Ok(_) => {
                    intent.state = "done".into();
                    self.store.put_intent(&intent).await?;
                }
                Err(e) => problems.push(chain(&e)),
            }
        }
        Ok(problems)
    }

    /// Recovers after a restart (or a crash at any point): takes the leases it can, re-applies
    /// the intents left pending and adopts the unstored shadow units of the workloads it now
    /// leads, then terminates live instances tagged with this controller's owner that belong to no
    /// group and to no registered workload or clone (orphans of interrupted launches).
    ///
    /// # Guarantees
    /// Idempotent; never scales above the budget; touches only instances carrying the owner tag.
    ///
    /// # Errors
    /// The first store failure; cloud failures are returned as a list naming the workload.
    pub async fn recover(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let workloads: Vec<Arc<Workload>> = self.read().values().cloned().collect();
        // Only the workloads this replica leads: another live replica is carrying its own
        // intents and shadow pools on, and writing them from here would race it. An intent a
        // replica leaves behind is replayed by the one that takes its lease over.
        let leaders = self.take_leases(&workloads, self.clock.now()).await?;
        let led: Vec<Arc<Workload>> = workloads
            .iter()
            .zip(leaders)
            .filter(|(_, lead)| *lead)
            .map(|(w, _)| w.clone())
            .collect();
        for w in &led {
            problems.extend(self.replay_intents(w).await?);
        }
        // Orphan sweep, once per distinct cloud.
        let owner = Owner::new(self.owner.clone()).map_err(Error::OwnerInvalid)?;
        let known: std::collections::HashSet<String> = self
            .store
            .clones()
            .await?
            .into_iter()
            .map(|c| c.name)
            .chain(workloads.iter().map(|w| w.cfg.name().to_string()))
            .collect();
        let groups: std::collections::HashSet<String> = workloads
            .iter()
            .map(|w| w.cfg.params.group.clone())
            .collect();
        for (cname, cloud) in &self.clouds {
            let list = match self
                .timed("", "list_instances", cloud, cloud.list_instances(&owner))
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    problems.push(format!("cloud `{cname}`: {}", chain(&e)));
                    continue;
                }
            };
            // Shadow units launched by a tick whose pool was not stored before a crash are
            // adopted (their tick comes from the launch token), not swept.
            for w in led.iter().filter(|w| {
                self.clouds
                    .get(&w.cfg.params.cloud)
                    .is_some_and(|c| Arc::ptr_eq(c, cloud))
            }) {
                let name = w.cfg.name();
                let mut st = w.state.lock().await;
                let before = st.pool.clone();
                for i in list.iter().filter(|i| {
                    i.state.is_live()
                        && i.group.is_none()
                        && i.tags.get(WORKLOAD_TAG).is_some_and(|t| t == name)
                        && i.tags
                            .get(shadow::ROLE_TAG)
                            .is_some_and(|r| r == shadow::ROLE_SHADOW)
                }) {
                    if st.pool.contains(i.id.as_str()) {
                        continue;
                    }
                    let ts = i
                        .tags
                        .get(predictive_clouds::TOKEN_TAG)
                        .and_then(|t| t.strip_suffix("-shadow"))
                        .and_then(|t| t.rsplit('-').next())
                        .and_then(|t| t.parse::<Timestamp>().ok())
                        .unwrap_or_else(|| self.clock.now());
                    st.pool.units.push(shadow::Unit {
                        id: i.id.as_str().to_string(),
                        state: UnitState::Warming,
                        since: ts,
                        refreshed_at: ts,
                    });
                    st.pool.launched += 1;
                }
                if st.pool != before {
                    let now = self.clock.now();
                    self.store
                        .put_loop_state(name, shadow::STATE_KIND, &st.pool.encode(), now)
                        .await?;
                    self.store.put_shadow(name, st.pool.size(), now).await?;
                }
            }
            for i in list.into_iter().filter(|i| i.state.is_live()) {
                let in_group = i
                    .group
                    .as_ref()
                    .is_some_and(|g| groups.contains(g.as_str()));
                let tagged = i.tags.get(WORKLOAD_TAG).is_some_and(|w| known.contains(w));
                if in_group || tagged || i.group.is_some() {
                    continue;
                }
                if let Err(e) = self
                    .timed(
                        "",
                        "terminate_instance",
                        cloud,
                        cloud.terminate_instance(&i.id),
                    )
                    .await
                {
                    if !matches!(&e, Error::CloudFailed { source, .. } if source.is_not_found()) {
                        problems.push(chain(&e));
                    }
                }
            }
        }
        Ok(problems)
    }

    /// Runs ticks forever (or `ticks` times), sleeping on `sleep` between them, until `stop`
    /// completes. A tick is never cut short: `stop` is only looked at between ticks, so a stop
    /// asked for during a tick ends the loop once that tick is done.
    ///
    /// # Errors
    /// A store failure stops the loop.
    pub async fn run(
        self: &Arc<Self>,
        sleep: &dyn Sleep,
        ticks: Option<u64>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Vec<TickReport>> {
        tokio::pin!(stop);
        let mut reports = Vec::new();
        let mut n = 0;
        loop {
            if ticks.is_some_and(|t| n >= t) {
                return Ok(reports);
            }
            let r = self.tick().await?;
            tracing::info!(
                ts = r.ts,
                ok = r.ok,
                errors = r.errors.len(),
                not_leader = r.not_leader,
                "tick"
            );
            if ticks.is_some() {
                reports.push(r);
            }
            n += 1;
            let next =
                self.clock.now() - self.clock.now().rem_euclid(self.interval) + self.interval;
            tokio::select! {
                biased;
                () = &mut stop => return Ok(reports),
                () = sleep.sleep_until(next) => {}
            }
        }
    }
}

fn coverage(hits: &VecDeque<bool>) -> f64 {
    if hits.is_empty() {
        1.0
    } else {
        hits.iter().filter(|h| **h).count() as f64 / hits.len() as f64
    }
}

/// The instance count for a capacity: `ceil(capacity / per_instance)` within `[min, max]`, then
/// capped by the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    /// Instances before bounds and budget.
    pub raw: u32,
    /// Instances to run.
    pub desired: u32,
    /// What the bounds or budget changed, in words (empty when nothing).
    pub note: String,
}

/// Sizes a capacity into instances.
///
/// # Guarantees
/// `desired * price <= budget` whenever a budget is given (even below `min`);
/// otherwise `min <= desired <= max`.
pub fn decide(
    capacity: f64,
    per_instance: f64,
    min: u32,
    max: u32,
    price: f64,
    budget: Option<f64>,
) -> Sizing {
    let raw_f = if capacity.is_finite() {
        (capacity / per_instance - 1e-9).ceil().max(0.0)
    } else {
        0.0
    };
    let raw = raw_f.min(u32::MAX as f64) as u32;
    let mut desired = raw.clamp(min, max.max(min));
    let mut note = String::new();
    if desired != raw {
        note = format!(", bounded to [{min}, {max}]");
    }
    if let Some(b) = budget {
        let cap = if price > 0.0 {
            (b / price + 1e-9).floor().min(u32::MAX as f64) as u32
        } else {
            u32::MAX
        };
        if desired > cap {
            desired = cap;
            note.push_str(&format!(", capped at {cap} by the ${b:.2}/h budget"));
        }
    }
    Sizing { raw, desired, note }
}

/// Hash map helper so callers can build the clouds map from pairs.
pub fn clouds<I: IntoIterator<Item = (String, DynProvider)>>(
    it: I,
) -> BTreeMap<String, DynProvider> {
    it.into_iter()
        .collect::<HashMap<_, _>>()
        .into_iter()
        .collect()
}

/// How many ticks of `interval` seconds make a day (at least one).
/// A workload's offset in `0..modulus` from its name, so periodic writes of many workloads
/// spread over the ticks instead of landing on the same one.
fn name_offset(name: &str, modulus: i64) -> i64 {
    name.bytes()
        .fold(0_i64, |h, b| (h * 31 + i64::from(b)) % modulus)
}

fn ticks_per_day(interval: i64) -> usize {
    (86_400 / interval.max(1)).max(1) as usize
}

/// Every store key under which a workload's samples are kept: its own, its pushed samples' and
/// its watched metrics'.
fn stored_keys(w: &Workload) -> Vec<String> {
    let name = w.cfg.name();
    [name.to_string(), crate::source::push_key(name)]
        .into_iter()
        .chain(w.watched.iter().map(|m| watch::key(name, &m.resource)))
        .collect()
}

/// The loop's anomaly detector at a tick of `interval` seconds: a day of ticks as its season and
/// four weeks of them as its memory (the detector's default at a 5-minute tick), whatever the
/// tick. Its windows are a fixed number of blocks whatever their length, so four weeks cost the
/// bytes of a day, and a day's noisy top is judged against the month rather than the day before.
/// Its other windows keep the time they cover at a 5-minute tick (`DetectorParams::at_step`).
fn detector_params(interval: i64) -> DetectorParams {
    let day = ticks_per_day(interval);
    let fitted = DetectorParams {
        season: day,
        ..DetectorParams::default()
    }
    .at_step(interval);
    DetectorParams {
        memory: (28 * day).max(10),
        ..fitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_detector_should_remember_four_weeks_at_any_tick() {
        for (interval, day) in [(60, 1440), (300, 288), (900, 96), (3600, 24)] {
            let p = detector_params(interval);
            assert_eq!((p.season, p.memory), (day, 28 * day), "tick {interval} s");
            assert!(p.check().is_ok(), "tick {interval} s");
        }
    }

    #[test]
    fn the_detectors_mean_should_cover_two_hours_at_any_tick() {
        for (interval, window) in [(60, 120), (300, 24), (900, 8), (3600, 2)] {
            assert_eq!(
                detector_params(interval).short_window,
                window,
                "tick {interval} s"
            );
        }
    }

    proptest! {
        #[test]
        fn sizing_never_exceeds_budget_and_respects_bounds(
            cap in 0.0f64..1e4, per in 0.1f64..64.0, min in 0u32..20, span in 0u32..200,
            price in 0.01f64..10.0, budget in proptest::option::of(0.0f64..100.0),
        ) {
            let max = min + span;
            let s = decide(cap, per, min, max, price, budget);
            if let Some(b) = budget {
                prop_assert!(s.desired as f64 * price <= b + 1e-6);
                if (min as f64) * price <= b { prop_assert!(s.desired >= min); }
            } else {
                prop_assert!(s.desired >= min && s.desired <= max);
            }
            prop_assert!(s.desired <= max);
            if s.desired > min && s.desired < max && budget.is_none() {
                prop_assert!(s.desired as f64 * per >= cap - 1e-6);
            }
        }
    }

    #[test]
    fn sizing_explains_bounds_and_budget() {
        let s = decide(10.0, 2.0, 1, 3, 1.0, Some(2.5));
        assert_eq!((s.raw, s.desired), (5, 2));
        assert_eq!(
            s.note,
            ", bounded to [1, 3], capped at 2 by the $2.50/h budget"
        );
    }
}

#[cfg(test)]
mod recovery_tests {
    use super::*;
    use crate::clock::VirtualClock;
    use crate::config::ConfigParams;
    use crate::store::sqlite::SqliteStore;
    use predictive_clouds::{CloudProvider, IdempotencyToken, LaunchRequest};

    #[tokio::test]
    async fn recovery_terminates_orphans_keeps_clones_and_reapplies_intents_within_budget() {
        let trace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/data/nab_elb_request_count_8c0756.csv");
        let text = format!(
            "owner = \"rec\"\n[[workloads]]\nname = \"web\"\ngroup = \"web-asg\"\ninstance_type = \"m6i.large\"\ncapacity_per_instance = 25\nmax = 20\nbudget_per_hour = 0.5\nmetrics = {{ kind = \"replay\", path = \"{}\" }}\n",
            trace.display()
        );
        let cfg: ConfigParams = toml::from_str(&text).unwrap();
        let cfg = cfg.check("<t>", std::path::Path::new(".")).unwrap();
        let clock = VirtualClock::new(1_397_174_400);
        let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
        let sim = crate::embedded::sim(clock_arc.clone(), None).unwrap();
        crate::embedded::ensure_groups(&sim, "rec", &cfg.workloads).unwrap();
        let owner = Owner::new("rec").unwrap();
        let mut orphan = LaunchRequest::new(
            IdempotencyToken::new("t-orphan").unwrap(),
            owner.clone(),
            "m6i.large",
            2,
        );
        orphan.tags.insert(WORKLOAD_TAG.into(), "gone".into());
        let orphans = sim.cloud.launch(&orphan).await.unwrap();
        let mut kept = LaunchRequest::new(
            IdempotencyToken::new("t-clone").unwrap(),
            owner.clone(),
            "m6i.large",
            1,
        );
        kept.tags.insert(WORKLOAD_TAG.into(), "web-clone".into());
        let kept = sim.cloud.launch(&kept).await.unwrap();
        let foreign = sim
            .cloud
            .launch(&LaunchRequest::new(
                IdempotencyToken::new("t-other").unwrap(),
                Owner::new("someone-else").unwrap(),
                "m6i.large",
                1,
            ))
            .await
            .unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        store
            .put_clone(&crate::store::CloneRecord {
                name: "web-clone".into(),
                source: "web".into(),
                spec: "{}".into(),
            })
            .await
            .unwrap();
        // An intent left pending by a crash asks for more than the budget allows (0.5 / 0.096 = 5).
        store
            .put_intent(&Intent {
                token: "web@1".into(),
                workload: "web".into(),
                ts: 1,
                kind: "scale".into(),
                count: 9,
                state: "pending".into(),
            })
            .await
            .unwrap();
        let sim_cloud = sim.cloud.clone();
        let mut clouds = BTreeMap::new();
        clouds.insert("sim".to_string(), Arc::new(sim) as DynProvider);
        let ctl = Controller::new(&cfg, store.clone(), clouds, clock_arc, "rec");
        ctl.upsert(cfg.workloads[0].clone()).await.unwrap();
        let problems = ctl.recover().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        clock.advance(60);
        for i in &orphans {
            assert!(
                !sim_cloud
                    .describe_instance(&i.id)
                    .await
                    .unwrap()
                    .state
                    .is_live(),
                "orphan {} survived",
                i.id
            );
        }
        assert!(
            sim_cloud
                .describe_instance(&kept[0].id)
                .await
                .unwrap()
                .state
                .is_live(),
            "a clone's instance was terminated"
        );
        assert!(
            sim_cloud
                .describe_instance(&foreign[0].id)
                .await
                .unwrap()
                .state
                .is_live(),
            "another owner's instance was touched"
        );
        let g = sim_cloud
            .describe_group(&GroupId::new("web-asg"))
            .await
            .unwrap();
        assert_eq!(
            g.desired, 5,
            "the pending intent is re-applied, capped by the budget"
        );
        assert!(store.pending_intents("web").await.unwrap().is_empty());
        // Recovery is idempotent.
        assert!(ctl.recover().await.unwrap().is_empty());
        assert_eq!(
            sim_cloud
                .describe_group(&GroupId::new("web-asg"))
                .await
                .unwrap()
                .desired,
            5
        );
    }
}

#[cfg(test)]
mod anomaly_tests {
    use super::*;
    use crate::clock::VirtualClock;
    use crate::config::ConfigParams;
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn a_usage_burst_is_alerted_in_the_audit_log_and_metrics() {
        let text = "owner = \"an\"\n[[workloads]]\nname = \"web\"\ngroup = \"web-asg\"\ninstance_type = \"m6i.large\"\ncapacity_per_instance = 25\nmax = 40\nmetrics = { kind = \"push\" }\n";
        let cfg: ConfigParams = toml::from_str(text).unwrap();
        let cfg = cfg.check("<t>", std::path::Path::new(".")).unwrap();
        let start = 1_400_000_100;
        let clock = VirtualClock::new(start);
        let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
        let sim = crate::embedded::sim(clock_arc.clone(), None).unwrap();
        crate::embedded::ensure_groups(&sim, "an", &cfg.workloads).unwrap();
        // A steady daily wave, then a burst far outside anything seen.
        let mut values: Vec<f64> = (0..700)
            .map(|i| 100.0 + 20.0 * ((i as f64) * std::f64::consts::TAU / 288.0).sin())
            .collect();
        values.extend([900.0, 950.0, 980.0]);
        let n = values.len();
        let replay = Arc::new(crate::source::Replay::from_values(start + 300, 300, values));
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let cloud: DynProvider = Arc::new(sim);
        let mut clouds = BTreeMap::new();
        clouds.insert("sim".to_string(), cloud.clone());
        let ctl = Arc::new(Controller::new(
            &cfg,
            store.clone(),
            clouds,
            clock_arc,
            "an",
        ));
        ctl.upsert_with_source(cfg.workloads[0].clone(), replay, cloud)
            .await
            .unwrap();
        for _ in 0..n {
            clock.advance(300);
            let r = ctl.tick().await.unwrap();
            assert!(r.errors.is_empty(), "{:?}", r.errors);
        }
        let log = store.audit_log("web", u32::MAX).await.unwrap();
        let burst_from = start + 300 * (n as i64 - 2);
        assert!(
            log.iter()
                .any(|e| e.action == "alert" && e.ts >= burst_from),
            "the burst is alerted: {log:?}"
        );
        assert!(log.len() < 10, "the steady wave is mostly quiet: {log:?}");
        assert!(
            ctl.metrics()
                .render()
                .contains("predictive_anomalies_total{workload=\"web\",kind="),
            "anomalies are counted by kind"
        );
    }
}
