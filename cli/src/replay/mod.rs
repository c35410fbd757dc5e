//! The port-driven replay: usage traces through the whole loop on the real `sim` cloud.
//!
//! Each workload (one trace) is a *lane* with its own owner label on one shared
//! [`SimCloud`](predictive_clouds::sim::SimCloud) in virtual time ([`ManualClock`]). Every step:
//!
//! 1. **Observe.** The clock moves to the step's instant; `list_instances(owner)` says which of
//!    the lane's instances are running, which are still booting, which pool instances have
//!    stopped and which warm-up launches have finished booting. Time to capacity is measured
//!    here, from the request to the first step that sees the instance running.
//! 2. **Score.** Usage is served by the *running* instances only (`units × unit capacity`).
//! 3. **Decide.** The policy (the predictive [`Allocator`] or a protocol baseline) gives the
//!    capacity wanted one boot delay from now, as whole units; with a shared budget the units of
//!    all lanes are cut by priority through [`UnitBudget`] (the cost engine's budget allocation).
//! 4. **Act through the `CloudProvider` port.** Scale-down: cancel the newest launches, then stop
//!    (hibernate) running instances into the shadow pool, or terminate them without a pool.
//!    Scale-up: start pool instances first (a resume takes seconds), launch the rest (a cold boot
//!    takes the sim's boot delay). Ahead of a predicted peak the pool is topped up by as many
//!    units as pay for themselves ([`ValidEconomics::top_up`](predictive_engine::shadow::ValidEconomics::top_up): the chance the forecast gives
//!    that usage needs each unit above the active allocation, times the value of the
//!    shortfall minutes a promotion avoids, against its launch and wait), capped at a share
//!    of the active allocation: instances are launched, and stopped once they have booted.
//!    The decay rule releases (terminates) idle instances whose score fell below the larger
//!    of the pool's threshold and the score at which they stop paying for their wait
//!    ([`ValidEconomics::keep_threshold`](predictive_engine::shadow::ValidEconomics::keep_threshold)), and any beyond the cap. The half-life is learnt
//!    from the spacing of the warm-up's peaks ([`half_life_from_peaks`]) unless set.
//!
//! **Billing** comes from the sim's own ledger ([`SimCloud::ledger_entry`]), which bills each
//! instance per second in each state ([`SimBilling`]: compute while running, and here while
//! booting, since the boot delay stands for boot and warm-up; the root volume in every state;
//! the RAM image while hibernated). Each time an instance changes role (active, warming into
//! the pool, ready in the pool) the ledger's dollars since its last change are added to the
//! role it had, so the pool's cost is exactly what its instances were billed while they were
//! the pool's. **Time to capacity** is the ledger's `running_since` minus the instant the
//! replay asked for the instance (the step's decision time), to the second.
//!
//! The replay is async and runs on a tokio current-thread runtime in virtual time: the
//! [`ManualClock`] moves to each step's instant, and every wait of the cloud side (injected
//! latency of a [`FakeCloud`](predictive_clouds::fake::FakeCloud), backoff between retries)
//! sleeps on a [`ManualSleep`] of that clock, which advances it instead of waiting. Calls go
//! through the clouds crate's shared layers: retries of retryable errors (throttling, 5xx,
//! timeouts, lost answers; launches carry idempotency tokens derived from the lane and step, so
//! a resent launch never creates twice) and call metrics, from which the report counts failed
//! attempts. A launch refused for capacity or quota is counted and asked again at the next
//! step. At the end every instance the lanes own is terminated and the owners are swept for
//! orphans.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use predictive_clouds::clock::{Clock, ManualClock, ManualSleep, SplitMix};
use predictive_clouds::layer::metrics::MetricsRegistry;
use predictive_clouds::layer::retry::RetryPolicy;
use predictive_clouds::layer::Stack;
use predictive_clouds::sim::{SimBilling, SimCloud, SimConfig, SimOffer};
use predictive_clouds::{
    CloudError, DynProvider, IdempotencyToken, InstanceId, InstanceState, LaunchRequest, Operation,
    Owner, PurchaseOption, StopMode,
};
use predictive_engine::policy::budget::UnitBudget;
use predictive_engine::policy::purchase::SpotSplit;
use predictive_engine::policy::{Allocator, AllocatorSettings, ValidPolicy};
use predictive_engine::shadow::{
    half_life_from_peaks, EconomicsParams, PoolRecord, PoolStats, ShadowParams, ShadowPool,
    ValidShadow,
};
use predictive_engine::simulate::baselines::{allocate, Baseline, Geometry};
use predictive_engine::simulate::replay::SimPoint;
use serde::Serialize;

#[cfg(test)]
mod tests;

/// Failures of the replay.
#[derive(Debug)]
pub(crate) enum ReplayError {
    /// A cloud call failed for good (not retryable, or still failing after the retries).
    Cloud {
        /// What was being done.
        what: String,
        /// Step of the replay.
        step: usize,
        /// The cloud's error.
        source: CloudError,
    },
    /// The async runtime could not be built.
    Runtime(std::io::Error),
    /// The budget cut failed.
    Budget(predictive_engine::policy::budget::Error),
    /// A bad setting.
    Invalid(String),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Cloud { what, step, .. } => write!(f, "{what} failed at step {step}"),
            ReplayError::Runtime(_) => f.write_str("cannot start the replay's runtime"),
            ReplayError::Budget(_) => f.write_str("budget cut"),
            ReplayError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ReplayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplayError::Cloud { source, .. } => Some(source),
            ReplayError::Budget(e) => Some(e),
            ReplayError::Runtime(e) => Some(e),
            ReplayError::Invalid(_) => None,
        }
    }
}

impl From<predictive_engine::policy::budget::Error> for ReplayError {
    fn from(e: predictive_engine::policy::budget::Error) -> Self {
        ReplayError::Budget(e)
    }
}

type Result<T, E = ReplayError> = std::result::Result<T, E>;

/// The policy deciding each lane's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PolicyKind {
    /// The predictive policy ([`Allocator`]).
    Predictive,
    /// A protocol baseline (PROTOCOL.md §2).
    Baseline(Baseline),
}

impl PolicyKind {
    /// Every policy `--policy all` runs, in report order.
    pub(crate) const ALL: [PolicyKind; 5] = [
        PolicyKind::Baseline(Baseline::PeakStatic),
        PolicyKind::Baseline(Baseline::Reactive),
        PolicyKind::Baseline(Baseline::Vpa),
        PolicyKind::Baseline(Baseline::WindowMax),
        PolicyKind::Predictive,
    ];

    /// Parses a policy name.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The policy's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            PolicyKind::Predictive => "predictive",
            PolicyKind::Baseline(b) => b.name(),
        }
    }
}

/// One workload: a usage trace served by whole units of one instance type.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    /// Name (the series id).
    pub(crate) name: String,
    /// Usage per step.
    pub(crate) usage: Vec<f64>,
    /// Usage one instance serves.
    pub(crate) unit_capacity: f64,
    /// Fewest active instances.
    pub(crate) min_units: u32,
    /// Most active instances.
    pub(crate) max_units: u32,
}

/// Settings shared by every lane of one replay.
#[derive(Debug, Clone)]
pub(crate) struct ReplayConfig {
    /// The policy.
    pub(crate) policy: PolicyKind,
    /// The predictive policy's parameters (its `lead` is also the baselines' lead).
    pub(crate) params: ValidPolicy,
    /// The predictive policy's online settings.
    pub(crate) settings: AllocatorSettings,
    /// Seconds per step.
    pub(crate) step_seconds: u64,
    /// Steps from a launch to the instance running (the sim's boot delay is set just under it).
    pub(crate) boot_steps: usize,
    /// Steps not scored at the start.
    pub(crate) warmup: usize,
    /// The instance type every lane runs, with its price (becomes the sim's catalog).
    pub(crate) offer: SimOffer,
    /// How the sim bills each state (pending is always billed here: the boot delay stands for
    /// boot and warm-up).
    pub(crate) billing: SimBilling,
    /// The shadow pool, if any.
    pub(crate) shadow: Option<ValidShadow>,
    /// Learn the pool's half-life from the warm-up's peak spacing (instead of the one given).
    pub(crate) learn_half_life: bool,
    /// Dollars one shortfall minute is worth avoiding (the pool's keep and top-up rules).
    pub(crate) shortfall_value: f64,
    /// Most ready instances as a share of the active ones.
    pub(crate) pool_share: f64,
    /// Seed of the sim.
    pub(crate) seed: u64,
    /// How each step's units are bought (on-demand and spot, through the cost engine); `None`
    /// buys on-demand only.
    pub(crate) spot: Option<SpotSplit>,
    /// Spot interruptions in the sim: the share of spot instances reclaimed per month of
    /// running (see [`SimConfig::spot_per_month`]).
    pub(crate) spot_interruptions_per_month: f64,
    /// Let the pool's own record of avoided shortfall against its bill discount the stated
    /// value of a shortfall minute ([`PoolRecord`]).
    pub(crate) pool_record: bool,
}

impl ReplayConfig {
    /// The sim cloud for this replay: one catalog entry, boot just under `boot_steps` steps
    /// (10 % jitter, so an instance launched at step `t` runs at step `t + boot_steps`), stop
    /// and resume well within a step, terminated instances forgotten after one step.
    pub(crate) fn sim_config(&self) -> SimConfig {
        let step = Duration::from_secs(self.step_seconds);
        SimConfig {
            seed: self.seed,
            catalog: vec![self.offer.clone()],
            boot_delay: step.mul_f64(self.boot_steps as f64 * 0.9),
            stop_delay: step.mul_f64(0.1).min(Duration::from_secs(30)),
            start_delay: step.mul_f64(0.1).min(Duration::from_secs(30)),
            resume_delay: step.mul_f64(0.05).min(Duration::from_secs(10)),
            jitter: 0.1,
            terminated_retention: step,
            billing: SimBilling {
                bill_pending: true,
                ..self.billing.clone()
            },
            ..SimConfig::default()
        }
        .spot_per_month(
            self.spot_interruptions_per_month,
            self.billing.hours_per_month,
        )
    }
}

/// What one lane cost and achieved over its scored steps.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LaneReport {
    /// Series name.
    pub(crate) series: String,
    /// Policy name.
    pub(crate) policy: &'static str,
    /// Whether the lane ran with a shadow pool.
    pub(crate) shadow_pool: bool,
    /// Scored steps.
    pub(crate) steps: usize,
    /// Usage one instance serves.
    pub(crate) unit_capacity: f64,
    /// What one running instance costs per hour (compute at the sim's `prices()`, plus its
    /// root volume).
    pub(crate) hourly_price: f64,
    /// What one hibernated instance costs per hour (root volume and RAM image).
    pub(crate) ready_hourly_price: f64,
    /// Total dollars over the scored steps, from the sim's ledger.
    pub(crate) dollars: f64,
    /// Dollars of active instances (booting or running), from the ledger.
    pub(crate) active_dollars: f64,
    /// Dollars of the shadow pool, from the ledger: what its instances were billed while they
    /// were the pool's (stopped, and booting when launched into it ahead of a peak).
    pub(crate) shadow_dollars: f64,
    /// `Σ max(capacity − usage, 0) / Σ capacity`.
    pub(crate) slack: f64,
    /// Minutes with usage above running capacity.
    pub(crate) shortfall_minutes: f64,
    /// `Σ max(usage − capacity, 0) / Σ usage`.
    pub(crate) shortfall_volume: f64,
    /// Mean minutes from asking for an active instance (launch or start) to it running, from
    /// the ledger's `running_since`.
    pub(crate) mean_time_to_capacity_minutes: f64,
    /// Steps where the running instance count changed, per day.
    pub(crate) changes_per_day: f64,
    /// Instances launched cold for active capacity.
    pub(crate) launches: u64,
    /// Instances launched to be stopped into the pool ahead of a peak.
    pub(crate) pool_launches: u64,
    /// Pool instances started (promoted).
    pub(crate) starts: u64,
    /// Instances stopped into the pool.
    pub(crate) stops: u64,
    /// Instances terminated (scale-down without pool room, cancelled boots, pool releases).
    pub(crate) terminations: u64,
    /// Launches the cloud refused for capacity or quota (asked again at the next step).
    pub(crate) refused_launches: u64,
    /// Active instances launched as spot.
    pub(crate) spot_launches: u64,
    /// Spot instances the sim reclaimed while they were active (replaced by the loop).
    pub(crate) interruptions: u64,
    /// Shortfall minutes the pool's promotions avoided, as measured online: steps in which
    /// usage exceeded the running capacity without the promoted units that would still have
    /// been booting had they been launched cold, but not with them.
    pub(crate) pool_avoided_minutes: f64,
    /// The pool record's factor at the end (the share of the stated shortfall value the keep
    /// and top-up rules used); 1 without a record.
    pub(crate) pool_value_factor: f64,
    /// The pool's own counters (admitted, promoted, released, ready unit-steps).
    pub(crate) pool: PoolStats,
    /// Steps where a shared budget cut this lane below what its policy wanted.
    pub(crate) budget_cut_steps: u64,
    /// Per-step trace, for the plot.
    #[serde(skip)]
    pub(crate) points: Vec<SimPoint>,
}

/// What a joint replay did, over every lane.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplayReport {
    /// One report per lane, in the order given.
    pub(crate) lanes: Vec<LaneReport>,
    /// Instances the lanes asked the cloud to create (sum of launch counts, one per token).
    pub(crate) instances_requested: u64,
    /// Instances the sim created (its own counter): equal to `instances_requested` when no
    /// launch was duplicated.
    pub(crate) sim_launches: u64,
    /// Live instances the owners still had after the final cleanup (0 when nothing leaked).
    pub(crate) orphans: usize,
    /// Attempts sent again after a retryable error (by the shared retry layer).
    pub(crate) retries: u64,
    /// Calls through the port (each may take several attempts).
    pub(crate) calls: u64,
    /// Launch attempts that failed (throttled, 5xx, timeout, lost answer, capacity, quota).
    pub(crate) failed_launch_attempts: u64,
    /// Dollars of every instance the replay created, warm-up included (the sim's ledger).
    pub(crate) ledger_dollars: f64,
    /// The shared budget's cap, USD per hour.
    pub(crate) budget_cap: Option<f64>,
    /// The highest hourly bill of all lanes together in any step.
    pub(crate) peak_hourly_bill: f64,
    /// Steps whose bill exceeded the cap (only when floors and minimums alone exceed it).
    pub(crate) budget_exceeded_steps: u64,
}

enum Driver {
    Predictive(Box<Allocator>),
    Plan(Vec<f64>),
}

/// An instance counted as active capacity.
#[derive(Debug, Clone)]
struct Active {
    id: InstanceId,
    requested_at: SystemTime,
    running: bool,
    /// Bought as spot.
    spot: bool,
    /// Promoted from the pool: the step before which a cold boot asked at the same time
    /// would not yet run (its head start, for the pool's record).
    head_start_until: Option<usize>,
}

struct Lane<'a> {
    w: &'a Workload,
    owner: Owner,
    driver: Driver,
    pool: Option<ShadowPool>,
    pool_ids: HashMap<u64, InstanceId>,
    active: Vec<Active>,
    warming: Vec<InstanceId>,
    band: std::collections::VecDeque<(usize, f64, f64)>,
    // Scores.
    over: f64,
    under: f64,
    sum_cap: f64,
    sum_u: f64,
    short_steps: usize,
    changes: usize,
    prev_running: Option<usize>,
    ttc_seconds: f64,
    ttc_count: u64,
    /// Ledger dollars of each held instance at its last role change.
    paid: HashMap<InstanceId, f64>,
    active_dollars: f64,
    shadow_dollars: f64,
    launches: u64,
    refused: u64,
    pool_launches: u64,
    starts: u64,
    stops: u64,
    terminations: u64,
    cut_steps: u64,
    points: Vec<SimPoint>,
    split: Option<SpotSplit>,
    spot_launches: u64,
    interruptions: u64,
    record: Option<PoolRecord>,
    /// Pool dollars charged since the record last took them.
    pool_cost_pending: f64,
    /// Dollars of shortfall the pool avoided in this step.
    avoided_value: f64,
    pool_avoided_minutes: f64,
}

/// The cloud side of a replay: the port (wrapped in the shared retry and metrics layers), the
/// sim behind it (for its ledger), the virtual clock, and the counters every call updates.
struct Port {
    provider: DynProvider,
    sim: SimCloud,
    clock: ManualClock,
    calls: u64,
    requested: u64,
}

impl Port {
    /// One call through the layers (which retry retryable errors); a failure is final.
    async fn call<T, Fut>(
        &mut self,
        what: impl Fn() -> String,
        step: usize,
        f: impl FnOnce(DynProvider) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = predictive_clouds::Result<T>>,
    {
        self.calls += 1;
        f(self.provider.clone())
            .await
            .map_err(|source| ReplayError::Cloud {
                what: what(),
                step,
                source,
            })
    }

    /// Launches `count` instances; an empty list when the cloud refuses for capacity or quota
    /// (the caller asks again later).
    #[allow(clippy::too_many_arguments)]
    async fn launch(
        &mut self,
        owner: &Owner,
        kind: &str,
        step: usize,
        count: usize,
        t: &str,
        purchase: PurchaseOption,
    ) -> Result<Option<Vec<InstanceId>>> {
        if count == 0 {
            return Ok(Some(Vec::new()));
        }
        let token = IdempotencyToken::new(format!("{owner}-{step}-{kind}"))
            .map_err(|e| ReplayError::Invalid(e.to_string()))?;
        let req = LaunchRequest::new(token, owner.clone(), t, count as u32).with_purchase(purchase);
        let r = self
            .call(
                || format!("launching {count} {t} for {owner}"),
                step,
                |p| async move { p.launch(&req).await },
            )
            .await;
        match r {
            Ok(out) => {
                self.requested += count as u64;
                Ok(Some(out.into_iter().map(|i| i.id).collect()))
            }
            Err(ReplayError::Cloud { source, .. })
                if source.is_insufficient_capacity() || source.is_quota() =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn terminate(&mut self, id: &InstanceId, step: usize) -> Result<()> {
        let r = self
            .call(
                || format!("terminating {id}"),
                step,
                |p| async move { p.terminate_instance(id).await },
            )
            .await;
        match r {
            Err(ReplayError::Cloud { source, .. }) if source.is_not_found() => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Stops `id` (hibernating it); `Ok(false)` when the cloud refuses (not running yet).
    async fn stop(&mut self, id: &InstanceId, step: usize) -> Result<bool> {
        let r = self
            .call(
                || format!("stopping {id}"),
                step,
                |p| async move {
                    match p.stop_instance(id, StopMode::Hibernate).await {
                        Err(e) if e.is_invalid_request() => {
                            p.stop_instance(id, StopMode::Stop).await
                        }
                        r => r,
                    }
                },
            )
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(ReplayError::Cloud { source, .. })
                if source.is_incorrect_state() || source.is_not_found() =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Starts a stopped pool instance; `Ok(false)` when the cloud cannot (still stopping,
    /// gone, or no capacity).
    async fn start(&mut self, id: &InstanceId, step: usize) -> Result<bool> {
        let r = self
            .call(
                || format!("starting {id}"),
                step,
                |p| async move { p.start_instance(id).await },
            )
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(ReplayError::Cloud { source, .. })
                if source.is_incorrect_state()
                    || source.is_not_found()
                    || source.is_insufficient_capacity() =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn states(
        &mut self,
        owner: &Owner,
        step: usize,
    ) -> Result<HashMap<InstanceId, InstanceState>> {
        let list = self
            .call(
                || format!("listing the instances of {owner}"),
                step,
                |p| async move { p.list_instances(owner).await },
            )
            .await?;
        Ok(list.into_iter().map(|i| (i.id, i.state)).collect())
    }

    /// The ledger's dollars of `id` so far (0 for an id the sim does not know).
    fn billed(&self, id: &InstanceId) -> f64 {
        self.sim.ledger_entry(id).map_or(0.0, |e| e.dollars())
    }
}

impl Lane<'_> {
    /// Active units bought as spot.
    fn spot_active(&self) -> usize {
        self.active.iter().filter(|a| a.spot).count()
    }

    /// The spot units the split wants among `units` (0 without a split).
    fn spot_wanted(&mut self, units: usize) -> Result<usize, ReplayError> {
        match self.split.as_mut() {
            Some(sp) => Ok(sp
                .split(units as u32)
                .map_err(|e| ReplayError::Invalid(e.to_string()))?
                .spot as usize),
            None => Ok(0),
        }
    }

    /// Adds what `id` was billed since its last role change to the pool's dollars (`pool`) or
    /// the active dollars, and starts its next role from here.
    fn charge(&mut self, port: &Port, id: &InstanceId, pool: bool) {
        let now = port.billed(id);
        let before = self.paid.insert(id.clone(), now).unwrap_or(0.0);
        let d = (now - before).max(0.0);
        if pool {
            self.shadow_dollars += d;
            self.pool_cost_pending += d;
        } else {
            self.active_dollars += d;
        }
    }

    /// [`charge`](Self::charge) for an instance the lane lets go of.
    fn settle(&mut self, port: &Port, id: &InstanceId, pool: bool) {
        self.charge(port, id, pool);
        self.paid.remove(id);
    }
}

/// Runs every workload on one fresh sim cloud (see the module docs).
///
/// # Errors
/// [`ReplayError`] when a cloud call fails for good or the budget cut fails.
pub(crate) fn replay(
    workloads: &[Workload],
    cfg: &ReplayConfig,
    budget: Option<&UnitBudget>,
    progress: &mut dyn FnMut(usize),
) -> Result<ReplayReport> {
    let (sim, clock) = SimCloud::with_manual_clock(cfg.sim_config());
    let provider: DynProvider = Arc::new(sim.clone());
    replay_on(provider, &sim, &clock, workloads, cfg, budget, progress)
}

/// [`replay`] through `provider`, which must end in `sim` (it may wrap it, for example in a
/// fake that injects faults or latency; give such a fake a [`ManualSleep`] of `clock` so its
/// waits take virtual time); `clock` is the sim's clock.
///
/// Runs on its own tokio current-thread runtime; must not be called from inside a runtime.
pub(crate) fn replay_on(
    provider: DynProvider,
    sim: &SimCloud,
    clock: &ManualClock,
    workloads: &[Workload],
    cfg: &ReplayConfig,
    budget: Option<&UnitBudget>,
    progress: &mut dyn FnMut(usize),
) -> Result<ReplayReport> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(ReplayError::Runtime)?;
    rt.block_on(run(provider, sim, clock, workloads, cfg, budget, progress))
}

/// The replay itself (see the module docs).
async fn run(
    provider: DynProvider,
    sim: &SimCloud,
    clock: &ManualClock,
    workloads: &[Workload],
    cfg: &ReplayConfig,
    budget: Option<&UnitBudget>,
    progress: &mut dyn FnMut(usize),
) -> Result<ReplayReport> {
    if let Some(b) = budget {
        if b.shares().len() != workloads.len() {
            return Err(ReplayError::Invalid(format!(
                "the budget has {} workloads, the replay {}",
                b.shares().len(),
                workloads.len()
            )));
        }
    }
    // The shared layers, on virtual time: retries (backoff sleeps advance the clock) over call
    // metrics (one sample per attempt, so failed attempts are counted).
    let registry = MetricsRegistry::default();
    let stack = Stack {
        retry: Some(RetryPolicy::default()),
        metrics: Some(registry.clone()),
        rng: Arc::new(SplitMix::new(cfg.seed)),
        ..Stack::none(
            Arc::new(clock.clone()),
            Arc::new(ManualSleep::new(clock.clone())),
        )
    };
    let mut port = Port {
        provider: stack.apply(provider),
        sim: sim.clone(),
        clock: clock.clone(),
        calls: 0,
        requested: 0,
    };
    let prices = port
        .call(
            || "listing prices".into(),
            0,
            |p| async move { p.prices().await },
        )
        .await?;
    let t = cfg.offer.info.name.clone();
    if !prices.iter().any(|p| p.instance_type == t) {
        return Err(ReplayError::Invalid(format!(
            "the cloud has no price for {t}"
        )));
    }
    let rates = sim
        .billing_rates(&t, PurchaseOption::OnDemand)
        .ok_or_else(|| ReplayError::Invalid(format!("the sim does not bill {t}")))?;
    // What the budget reserves: a running instance, and a hibernated one in the pool.
    let price = rates.running_per_hour();
    let ready_price = rates.stopped_per_hour(true);
    let hours = cfg.step_seconds as f64 / 3600.0;
    // The pool's economics: a promotion spares the cold boot (minus the resume); a new pool
    // unit pays its boot at the running price; a ready one the hibernated price.
    let sim_cfg = sim.snapshot().config().clone();
    let boot_minutes = sim_cfg.boot_delay.as_secs_f64() / 60.0;
    let econ = EconomicsParams {
        value_per_shortfall_minute: cfg.shortfall_value,
        minutes_saved: (boot_minutes - sim_cfg.resume_delay.as_secs_f64() / 60.0).max(0.0),
        ready_cost_per_step: ready_price * hours,
        launch_cost: rates.running_per_hour() * boot_minutes / 60.0,
        max_share_of_active: cfg.pool_share,
    }
    .check()
    .map_err(|e| ReplayError::Invalid(e.to_string()))?;
    let lead = cfg.params.params().lead;
    // A young pool record trusts the rule for one promotion's worth of dollars and forgets
    // with a one-week half-life.
    let record_prior = econ.value_of_promotion();
    let record_memory = 7.0 * cfg.settings.day as f64;
    let geometry = Geometry {
        lead,
        warmup: cfg.warmup,
        day: cfg.settings.day,
    };
    let mut lanes = Vec::with_capacity(workloads.len());
    for (i, w) in workloads.iter().enumerate() {
        if !(w.unit_capacity > 0.0 && w.unit_capacity.is_finite()) {
            return Err(ReplayError::Invalid(format!(
                "{}: unit capacity {} is not a positive number",
                w.name, w.unit_capacity
            )));
        }
        if w.min_units > w.max_units {
            return Err(ReplayError::Invalid(format!(
                "{}: min units above max units",
                w.name
            )));
        }
        let driver = match cfg.policy {
            PolicyKind::Predictive => {
                Driver::Predictive(Box::new(Allocator::new(cfg.params.clone(), cfg.settings)))
            }
            PolicyKind::Baseline(b) => Driver::Plan(allocate(b, &w.usage, geometry)),
        };
        lanes.push(Lane {
            w,
            owner: Owner::new(format!("sim-{}-w{i}", cfg.seed))
                .map_err(|e| ReplayError::Invalid(e.to_string()))?,
            driver,
            pool: cfg.shadow.clone().map(ShadowPool::new),
            pool_ids: HashMap::new(),
            active: Vec::new(),
            warming: Vec::new(),
            band: Default::default(),
            over: 0.0,
            under: 0.0,
            sum_cap: 0.0,
            sum_u: 0.0,
            short_steps: 0,
            changes: 0,
            prev_running: None,
            ttc_seconds: 0.0,
            ttc_count: 0,
            paid: HashMap::new(),
            active_dollars: 0.0,
            shadow_dollars: 0.0,
            launches: 0,
            refused: 0,
            pool_launches: 0,
            starts: 0,
            stops: 0,
            terminations: 0,
            cut_steps: 0,
            points: Vec::with_capacity(w.usage.len()),
            split: cfg.spot.clone(),
            spot_launches: 0,
            interruptions: 0,
            record: (cfg.pool_record && cfg.shadow.is_some())
                .then(|| PoolRecord::new(record_prior, record_memory)),
            pool_cost_pending: 0.0,
            avoided_value: 0.0,
            pool_avoided_minutes: 0.0,
        });
    }
    let steps = workloads.iter().map(|w| w.usage.len()).max().unwrap_or(0);
    let start: SystemTime = clock.now();
    let step_len = Duration::from_secs(cfg.step_seconds);
    let mut peak_bill = 0.0f64;
    let mut exceeded = 0u64;
    if cfg.learn_half_life && cfg.warmup > 0 {
        for lane in lanes.iter_mut() {
            retune_half_life(lane, cfg)?;
        }
    }
    let type_name = t.as_str().to_owned();
    for s in 0..steps {
        // Never backwards: waits of the previous step (latency, backoff) may have gone past.
        clock.set(start + step_len * s as u32);
        if s == cfg.warmup {
            // Scoring starts: what the instances were billed so far is not counted.
            for lane in lanes.iter_mut() {
                for (id, paid) in lane.paid.iter_mut() {
                    *paid = port.billed(id);
                }
                lane.active_dollars = 0.0;
                lane.shadow_dollars = 0.0;
                lane.spot_launches = 0;
                lane.interruptions = 0;
                lane.pool_avoided_minutes = 0.0;
            }
        }
        let decided_at = start + step_len * s as u32;
        // 1-3. Observe, score and decide, lane by lane.
        let mut desired = Vec::with_capacity(lanes.len());
        let mut peaks = Vec::with_capacity(lanes.len());
        for lane in lanes.iter_mut() {
            let (want, peak) = observe_and_decide(lane, &mut port, s, cfg).await?;
            desired.push(want);
            peaks.push(peak);
        }
        // The budget cut over all lanes (at the catalog's compute price), the pool's cost and
        // the root volumes of the units wanted reserved.
        let reserved: f64 = lanes
            .iter()
            .map(|l| {
                l.warming.len() as f64 * price
                    + l.pool.as_ref().map_or(0, |p| p.len()) as f64 * ready_price
            })
            .sum::<f64>()
            + desired.iter().sum::<u32>() as f64 * rates.storage_per_hour;
        let units = match budget {
            Some(b) => {
                let cut = b.cut(&desired, reserved)?;
                for ((lane, d), u) in lanes.iter_mut().zip(&desired).zip(&cut.units) {
                    if u < d && s >= cfg.warmup {
                        lane.cut_steps += 1;
                    }
                }
                cut.units
            }
            None => desired.clone(),
        };
        // 4. Act: scale-downs first, then scale-ups, then pool top-ups. Under a budget, what
        // the cut left over pays for instances stopped into the pool.
        let units_cost = units.iter().sum::<u32>() as f64 * price;
        let mut allowance = budget.map(|b| b.cap() - units_cost - reserved);
        for (lane, &u) in lanes.iter_mut().zip(&units) {
            if (u as usize) < lane.active.len() {
                scale_down(lane, &mut port, s, u as usize, &mut allowance, ready_price).await?;
            }
        }
        for (lane, &u) in lanes.iter_mut().zip(&units) {
            if (u as usize) > lane.active.len() {
                scale_up(lane, &mut port, s, decided_at, u as usize, &type_name, cfg).await?;
            }
        }
        let mut bill = active_bill(&lanes, price, ready_price);
        for ((lane, &u), peak) in lanes.iter_mut().zip(&units).zip(&peaks) {
            // The stated value, discounted by what the pool's own record says it achieves.
            let econ = match &lane.record {
                Some(r) => econ.discounted(r.factor()),
                None => econ.clone(),
            };
            if let (Some((levels, row)), Some(pool)) = (peak, lane.pool.as_ref()) {
                let p = pool.params().params();
                let have = pool.len() + lane.warming.len();
                let want = econ.top_up(
                    levels,
                    row,
                    u as usize,
                    lane.w.unit_capacity,
                    have,
                    p.half_life,
                    p.max_units,
                );
                let mut room = budget.map(|b| ((b.cap() - bill) / price).floor().max(0.0) as usize);
                // A pool whose record says it does not pay launches nothing new (it still
                // refreshes the units it has).
                if lane.record.as_ref().is_some_and(|r| !r.pays()) {
                    room = Some(0);
                }
                top_up(lane, &mut port, s, want, room, &type_name, &mut bill, price).await?;
            }
            // The decay rule releases idle pool instances, and those that no longer pay for
            // their wait or exceed the cap.
            if let Some(pool) = lane.pool.as_mut() {
                let p = pool.params().params();
                let keep = econ.keep_threshold(p.half_life);
                let cap = econ.cap(lane.active.len(), p.max_units);
                let mut released = pool.tick_released_below(s as u64, keep);
                released.extend(pool.release_over(cap));
                for key in released {
                    if let Some(id) = lane.pool_ids.remove(&key) {
                        port.terminate(&id, s).await?;
                        lane.settle(&port, &id, true);
                        lane.terminations += 1;
                    }
                }
            }
            // The pool's record takes this step's avoided shortfall and bill.
            if let Some(r) = lane.record.as_mut() {
                r.record(lane.avoided_value, lane.pool_cost_pending);
            }
            lane.avoided_value = 0.0;
            lane.pool_cost_pending = 0.0;
        }
        // The hourly bill as the lanes now stand (for the budget's peak).
        let bill = active_bill(&lanes, price, ready_price);
        if s >= cfg.warmup {
            peak_bill = peak_bill.max(bill);
            if budget.is_some_and(|b| bill > b.cap() + 1e-9) {
                exceeded += 1;
            }
        }
        if s % 1024 == 1023 {
            progress(s + 1);
        }
    }
    progress(steps);
    // Cleanup: terminate everything the lanes hold, then sweep the owners for anything left.
    clock.set(start + step_len * steps as u32);
    let mut orphans = 0;
    for lane in lanes.iter_mut() {
        let held: Vec<(InstanceId, bool)> = lane
            .active
            .drain(..)
            .map(|a| (a.id, false))
            .chain(lane.warming.drain(..).map(|id| (id, true)))
            .chain(lane.pool_ids.drain().map(|(_, id)| (id, true)))
            .collect();
        for (id, pool) in held {
            port.terminate(&id, steps).await?;
            lane.settle(&port, &id, pool);
        }
        for (id, state) in port.states(&lane.owner, steps).await? {
            if state.is_live() {
                port.terminate(&id, steps).await?;
            }
        }
        orphans += port
            .states(&lane.owner, steps)
            .await?
            .values()
            .filter(|s| s.is_live())
            .count();
    }
    let minutes = cfg.step_seconds as f64 / 60.0;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let reports = lanes
        .into_iter()
        .map(|l| {
            let scored = l.w.usage.len().saturating_sub(cfg.warmup);
            LaneReport {
                series: l.w.name.clone(),
                policy: cfg.policy.name(),
                shadow_pool: l.pool.is_some(),
                steps: scored,
                unit_capacity: l.w.unit_capacity,
                hourly_price: price,
                ready_hourly_price: ready_price,
                dollars: l.active_dollars + l.shadow_dollars,
                active_dollars: l.active_dollars,
                shadow_dollars: l.shadow_dollars,
                slack: ratio(l.over, l.sum_cap),
                shortfall_minutes: l.short_steps as f64 * minutes,
                shortfall_volume: ratio(l.under, l.sum_u),
                mean_time_to_capacity_minutes: ratio(l.ttc_seconds, l.ttc_count as f64) / 60.0,
                changes_per_day: ratio(l.changes as f64, scored as f64 * hours / 24.0),
                launches: l.launches,
                pool_launches: l.pool_launches,
                starts: l.starts,
                stops: l.stops,
                terminations: l.terminations,
                refused_launches: l.refused,
                spot_launches: l.spot_launches,
                interruptions: l.interruptions,
                pool_avoided_minutes: l.pool_avoided_minutes,
                pool_value_factor: l.record.map_or(1.0, |r| r.factor()),
                pool: l.pool.as_ref().map(|p| p.stats()).unwrap_or_default(),
                budget_cut_steps: l.cut_steps,
                points: l.points,
            }
        })
        .collect();
    let attempts: u64 = registry.snapshot().values().map(|v| v.count).sum();
    let failed_launch_attempts = registry
        .snapshot()
        .iter()
        .filter(|(k, _)| k.operation == Operation::Launch && k.outcome != "ok")
        .map(|(_, v)| v.count)
        .sum();
    let owners: Vec<String> = (0..workloads.len())
        .map(|i| format!("sim-{}-w{i}", cfg.seed))
        .collect();
    let ledger_dollars = sim
        .ledger()
        .iter()
        .filter(|e| e.owner.as_ref().is_some_and(|o| owners.contains(o)))
        .map(|e| e.dollars())
        .sum();
    Ok(ReplayReport {
        lanes: reports,
        instances_requested: port.requested,
        sim_launches: sim.launches(),
        orphans,
        retries: attempts.saturating_sub(port.calls),
        calls: port.calls,
        failed_launch_attempts,
        ledger_dollars,
        budget_cap: budget.map(|b| b.cap()),
        peak_hourly_bill: peak_bill,
        budget_exceeded_steps: exceeded,
    })
}

/// Hourly bill of every lane as it stands: active and warming instances at the on-demand
/// price, pool instances at the ready price.
fn active_bill(lanes: &[Lane<'_>], price: f64, ready_price: f64) -> f64 {
    lanes
        .iter()
        .map(|l| {
            (l.active.len() + l.warming.len()) as f64 * price
                + l.pool.as_ref().map_or(0, |p| p.len()) as f64 * ready_price
        })
        .sum()
}

/// Sets the lane's pool half-life from the spacing of the warm-up's peaks (episodes above its
/// 0.9 quantile, at least a boot delay apart), so an idle unit lives about one gap between
/// peaks: between the policy's lead and half a day. Left as it is when the warm-up has too
/// few peaks.
fn retune_half_life(lane: &mut Lane<'_>, cfg: &ReplayConfig) -> Result<()> {
    let Some(pool) = lane.pool.as_mut() else {
        return Ok(());
    };
    let p = pool.params().params().clone();
    let history = &lane.w.usage[..cfg.warmup.min(lane.w.usage.len())];
    let lead = cfg.params.params().lead as f64;
    let max = (cfg.settings.day as f64 / 2.0).max(lead);
    if let Some(hl) =
        half_life_from_peaks(history, 0.9, cfg.boot_steps, p.release_threshold, lead, max)
    {
        let params = ShadowParams { half_life: hl, ..p }
            .check()
            .map_err(|e| ReplayError::Invalid(e.to_string()))?;
        pool.retune(params);
    }
    Ok(())
}

/// Whole units for a capacity, within the lane's bounds; `None` for a non-finite capacity.
fn units_for(w: &Workload, c: f64) -> Option<usize> {
    c.is_finite().then(|| {
        ((c / w.unit_capacity).ceil().max(0.0) as usize)
            .clamp(w.min_units as usize, w.max_units as usize)
    })
}

/// Steps 1-3 for one lane: observe its instances, score the step, and return the units its
/// policy wants plus, for the predictive policy, the units the forecast's top quantile needs.
async fn observe_and_decide(
    lane: &mut Lane<'_>,
    port: &mut Port,
    s: usize,
    cfg: &ReplayConfig,
) -> Result<(u32, Option<(Vec<f64>, Vec<f64>)>)> {
    let states = if lane.active.is_empty() && lane.warming.is_empty() && lane.pool_ids.is_empty() {
        HashMap::new()
    } else {
        port.states(&lane.owner, s).await?
    };
    // Active instances: running ones serve; vanished ones are forgotten. Time to capacity is
    // the ledger's start of the running period minus the decision that asked for it.
    let mut gone = Vec::new();
    for a in std::mem::take(&mut lane.active) {
        match states.get(&a.id) {
            Some(InstanceState::Running) if !a.running => {
                let since = port
                    .sim
                    .ledger_entry(&a.id)
                    .and_then(|e| e.running_since)
                    .unwrap_or_else(|| port.clock.now());
                lane.ttc_seconds += since
                    .duration_since(a.requested_at)
                    .unwrap_or_default()
                    .as_secs_f64();
                lane.ttc_count += 1;
                lane.active.push(Active { running: true, ..a });
            }
            Some(InstanceState::Running | InstanceState::Pending) => lane.active.push(a),
            _ => gone.push(a.id),
        }
    }
    for id in gone {
        if s >= cfg.warmup && port.sim.ledger_entry(&id).is_some_and(|e| e.interrupted) {
            lane.interruptions += 1;
        }
        lane.settle(port, &id, false);
    }
    // Warm-up launches that have booted are stopped into the pool.
    let mut still_warming = Vec::new();
    for id in std::mem::take(&mut lane.warming) {
        match states.get(&id) {
            Some(InstanceState::Running) => {
                let pool = lane.pool.as_mut().expect("warming implies a pool");
                let key = pool.admit_keys(1, s as u64).first().copied();
                match key {
                    Some(key) if port.stop(&id, s).await? => {
                        lane.charge(port, &id, true);
                        lane.pool_ids.insert(key, id);
                        lane.stops += 1;
                    }
                    other => {
                        if let (Some(key), Some(pool)) = (other, lane.pool.as_mut()) {
                            pool.remove(key);
                        }
                        port.terminate(&id, s).await?;
                        lane.settle(port, &id, true);
                        lane.terminations += 1;
                    }
                }
            }
            Some(InstanceState::Pending) => still_warming.push(id),
            _ => lane.settle(port, &id, true),
        }
    }
    lane.warming = still_warming;
    // Pool instances that vanished leave the pool.
    if let Some(pool) = lane.pool.as_mut() {
        let mut vanished = Vec::new();
        lane.pool_ids.retain(|&key, id| {
            let live = states.get(id).is_some_and(|st| st.is_live());
            if !live {
                pool.remove(key);
                vanished.push(id.clone());
            }
            live
        });
        for id in vanished {
            lane.settle(port, &id, true);
        }
    }
    // Score against running capacity.
    let w = lane.w;
    let running = lane.active.iter().filter(|a| a.running).count();
    let cap = running as f64 * w.unit_capacity;
    let u = w.usage.get(s).copied();
    // Promoted units still ahead of the cold boot they replaced: the shortfall they remove
    // this step is what the pool avoided.
    let ahead = lane
        .active
        .iter()
        .filter(|a| a.running && a.head_start_until.is_some_and(|t| s < t))
        .count();
    if let Some(u) = u.filter(|u| u.is_finite()) {
        let without = (running - ahead) as f64 * w.unit_capacity;
        if ahead > 0 && u > without && u <= cap {
            let minutes = cfg.step_seconds as f64 / 60.0;
            lane.avoided_value += minutes * cfg.shortfall_value;
            if s >= cfg.warmup {
                lane.pool_avoided_minutes += minutes;
            }
        }
    }
    let (mut lo, mut hi) = (f64::NAN, f64::NAN);
    while let Some(&(t, l, h)) = lane.band.front() {
        if t > s {
            break;
        }
        lane.band.pop_front();
        if t == s {
            (lo, hi) = (l, h);
        }
    }
    if let Some(u) = u {
        lane.points.push(SimPoint {
            usage: u,
            active: cap,
            shadow: lane.pool.as_ref().map_or(0, |p| p.len()) as f64 * w.unit_capacity,
            forecast_low: lo,
            forecast_high: hi,
        });
        if s >= cfg.warmup && u.is_finite() {
            lane.sum_cap += cap;
            lane.sum_u += u;
            lane.over += (cap - u).max(0.0);
            lane.under += (u - cap).max(0.0);
            if u > cap {
                lane.short_steps += 1;
            }
            if lane.prev_running.is_some_and(|p| p != running) {
                lane.changes += 1;
            }
        }
    }
    lane.prev_running = Some(running);
    // A finished trace releases its capacity (down to its minimum).
    let Some(u) = u else {
        return Ok((w.min_units, None));
    };
    let lead = cfg.params.params().lead;
    let current = lane.active.len();
    match &mut lane.driver {
        Driver::Predictive(alloc) => {
            let (plan, f) = alloc.step_with_forecast(u);
            let peak = {
                let row = &f.values[f.steps() - 1];
                let qi = f.level_index(plan.explanation.quantile);
                lane.band.push_back((s + lead, row[0], row[qi]));
                Some((f.levels.clone(), row.clone()))
            };
            let want = units_for(w, plan.capacity).unwrap_or(current);
            Ok((want as u32, peak))
        }
        Driver::Plan(a) => {
            let c = a[(s + lead).min(a.len() - 1)];
            Ok((units_for(w, c).unwrap_or(current) as u32, None))
        }
    }
}

/// Scale-down to `units` active instances: cancel the newest boots first, then stop running
/// instances into the pool (while it has room and, under a budget, `allowance` dollars per
/// hour pay for them), terminating the rest.
async fn scale_down(
    lane: &mut Lane<'_>,
    port: &mut Port,
    s: usize,
    units: usize,
    allowance: &mut Option<f64>,
    ready_price: f64,
) -> Result<()> {
    let mut excess = lane.active.len() - units;
    // Newest boots first.
    while excess > 0 {
        let Some(i) = lane.active.iter().rposition(|a| !a.running) else {
            break;
        };
        let a = lane.active.remove(i);
        port.terminate(&a.id, s).await?;
        lane.settle(port, &a.id, false);
        lane.terminations += 1;
        excess -= 1;
    }
    // Spot units beyond what the split wants for `units` go first, terminated (a one-time
    // spot request cannot be stopped into the pool).
    let target_spot = lane.spot_wanted(units)?;
    while excess > 0 && lane.spot_active() > target_spot {
        let i = lane
            .active
            .iter()
            .rposition(|a| a.spot)
            .expect("counted above");
        let a = lane.active.remove(i);
        port.terminate(&a.id, s).await?;
        lane.settle(port, &a.id, false);
        lane.terminations += 1;
        excess -= 1;
    }
    while excess > 0 {
        let i = lane
            .active
            .iter()
            .rposition(|a| !a.spot)
            .unwrap_or(lane.active.len() - 1);
        let a = lane.active.remove(i);
        excess -= 1;
        if a.spot {
            port.terminate(&a.id, s).await?;
            lane.settle(port, &a.id, false);
            lane.terminations += 1;
            continue;
        }
        let fits = allowance.is_none_or(|a| a + 1e-9 >= ready_price);
        let key = match lane.pool.as_mut() {
            Some(pool) if fits => pool.admit_keys(1, s as u64).first().copied(),
            _ => None,
        };
        match key {
            Some(key) if port.stop(&a.id, s).await? => {
                lane.charge(port, &a.id, false);
                lane.pool_ids.insert(key, a.id);
                lane.stops += 1;
                if let Some(a) = allowance.as_mut() {
                    *a -= ready_price;
                }
            }
            other => {
                if let (Some(key), Some(pool)) = (other, lane.pool.as_mut()) {
                    pool.remove(key);
                }
                port.terminate(&a.id, s).await?;
                lane.settle(port, &a.id, false);
                lane.terminations += 1;
            }
        }
    }
    Ok(())
}

/// Scale-up to `units` active instances: start pool instances first, launch the rest. A launch
/// the cloud refuses for capacity or quota is counted; the next step asks again.
async fn scale_up(
    lane: &mut Lane<'_>,
    port: &mut Port,
    s: usize,
    decided_at: SystemTime,
    units: usize,
    t: &str,
    cfg: &ReplayConfig,
) -> Result<()> {
    let mut need = units - lane.active.len();
    if let Some(pool) = lane.pool.as_mut() {
        let keys = pool.promote_keys(need);
        for key in keys {
            let Some(id) = lane.pool_ids.remove(&key) else {
                continue;
            };
            if port.start(&id, s).await? {
                lane.charge(port, &id, true);
                lane.active.push(Active {
                    id,
                    requested_at: decided_at,
                    running: false,
                    spot: false,
                    head_start_until: Some(s + cfg.boot_steps),
                });
                lane.starts += 1;
                need -= 1;
            } else {
                // Cannot start (still stopping, or no capacity): give it up and boot cold.
                port.terminate(&id, s).await?;
                lane.settle(port, &id, true);
                lane.terminations += 1;
            }
        }
    }
    // What the split wants on spot for `units`, less the spot units already active.
    let spot_need = lane
        .spot_wanted(units)?
        .saturating_sub(lane.spot_active())
        .min(need);
    for (kind, n, spot) in [("s", spot_need, true), ("a", need - spot_need, false)] {
        let purchase = if spot {
            PurchaseOption::Spot
        } else {
            PurchaseOption::OnDemand
        };
        let Some(ids) = port.launch(&lane.owner, kind, s, n, t, purchase).await? else {
            lane.refused += 1;
            continue;
        };
        lane.launches += ids.len() as u64;
        if spot {
            lane.spot_launches += ids.len() as u64;
        }
        for id in ids {
            lane.paid.insert(id.clone(), 0.0);
            lane.active.push(Active {
                id,
                requested_at: decided_at,
                running: false,
                spot,
                head_start_until: None,
            });
        }
    }
    Ok(())
}

/// Keeps `want` instances ready ahead of a predicted peak: refreshes that many pool scores and
/// launches what the pool (plus instances already warming) lacks, within `room` more
/// instances when a budget applies.
#[allow(clippy::too_many_arguments)]
async fn top_up(
    lane: &mut Lane<'_>,
    port: &mut Port,
    s: usize,
    want: usize,
    room: Option<usize>,
    t: &str,
    bill: &mut f64,
    price: f64,
) -> Result<()> {
    if want == 0 {
        return Ok(());
    }
    let pool = lane.pool.as_mut().expect("top-up implies a pool");
    pool.refresh(want, s as u64);
    let max = pool.params().params().max_units;
    let have = pool.len() + lane.warming.len();
    let mut n = want.saturating_sub(have).min(max.saturating_sub(have));
    if let Some(room) = room {
        n = n.min(room);
    }
    let Some(ids) = port
        .launch(&lane.owner, "w", s, n, t, PurchaseOption::OnDemand)
        .await?
    else {
        lane.refused += 1;
        return Ok(());
    };
    lane.pool_launches += ids.len() as u64;
    *bill += ids.len() as f64 * price;
    for id in ids {
        lane.paid.insert(id.clone(), 0.0);
        lane.warming.push(id);
    }
    Ok(())
}
