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
//!    takes the sim's boot delay). Ahead of a predicted peak (the forecast's top quantile above
//!    the plan) the pool is topped up: instances are launched, and stopped once they have
//!    booted. The pool's decay rule releases (terminates) idle instances.
//! 5. **Bill** the step from the lane's instances and the sim's catalog prices: pending and
//!    running at the on-demand price, stopping and stopped at `ready_fraction` of it (the sim
//!    has no price for stopped instances; on EC2 it is the EBS volume).
//!
//! Launches carry idempotency tokens derived from the lane and step, and every call that fails
//! with a retryable error is sent again unchanged, so a lost answer never launches twice. At the
//! end every instance the lanes own is terminated and the owners are swept for orphans.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use predictive_clouds::clock::{Clock, ManualClock};
use predictive_clouds::sim::{SimCloud, SimConfig, SimOffer};
use predictive_clouds::{
    CloudError, DynProvider, IdempotencyToken, InstanceId, InstanceState, LaunchRequest, Owner,
    StopMode,
};
use predictive_engine::policy::budget::UnitBudget;
use predictive_engine::policy::{Allocator, AllocatorSettings, ValidPolicy};
use predictive_engine::shadow::{PoolStats, ShadowPool, ValidShadow};
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
    /// A provider call did not complete at once: the replay only drives providers that answer
    /// without waiting (the sim, the fake without injected latency).
    Pending(String),
    /// The budget cut failed.
    Budget(predictive_engine::policy::budget::Error),
    /// A bad setting.
    Invalid(String),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Cloud { what, step, .. } => write!(f, "{what} failed at step {step}"),
            ReplayError::Pending(what) => write!(
                f,
                "{what}: the provider waited; the replay drives providers that answer at once"
            ),
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
            ReplayError::Pending(_) | ReplayError::Invalid(_) => None,
        }
    }
}

impl From<predictive_engine::policy::budget::Error> for ReplayError {
    fn from(e: predictive_engine::policy::budget::Error) -> Self {
        ReplayError::Budget(e)
    }
}

type Result<T, E = ReplayError> = std::result::Result<T, E>;

/// Runs a future that is expected to complete without waiting (the sim answers at once). No
/// runtime is needed: the replay is synchronous and single-threaded.
fn now_or_never<F: Future>(what: &str, f: F) -> Result<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(ReplayError::Pending(what.to_owned())),
    }
}

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
    /// Price of a stopped instance as a share of its on-demand price.
    pub(crate) ready_fraction: f64,
    /// The shadow pool, if any.
    pub(crate) shadow: Option<ValidShadow>,
    /// Seed of the sim.
    pub(crate) seed: u64,
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
            ..SimConfig::default()
        }
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
    /// On-demand price of one instance per hour (from the sim's `prices()`).
    pub(crate) hourly_price: f64,
    /// Total dollars over the scored steps.
    pub(crate) dollars: f64,
    /// Dollars of active instances (booting or running).
    pub(crate) active_dollars: f64,
    /// Dollars of the shadow pool: its stopped instances plus the boot of instances launched
    /// into it ahead of peaks.
    pub(crate) shadow_dollars: f64,
    /// `Σ max(capacity − usage, 0) / Σ capacity`.
    pub(crate) slack: f64,
    /// Minutes with usage above running capacity.
    pub(crate) shortfall_minutes: f64,
    /// `Σ max(usage − capacity, 0) / Σ usage`.
    pub(crate) shortfall_volume: f64,
    /// Mean minutes from asking for an instance (launch or start) to seeing it run.
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
    /// Calls sent again after a retryable error.
    pub(crate) retries: u64,
    /// Calls through the port.
    pub(crate) calls: u64,
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
    requested_at: usize,
    running: bool,
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
    ttc_steps: u64,
    ttc_count: u64,
    active_unit_steps: u64,
    warming_unit_steps: u64,
    ready_unit_steps: u64,
    launches: u64,
    pool_launches: u64,
    starts: u64,
    stops: u64,
    terminations: u64,
    cut_steps: u64,
    points: Vec<SimPoint>,
}

/// The cloud side of a replay: the port, plus the counters every call updates.
struct Port {
    provider: DynProvider,
    calls: u64,
    retries: u64,
    requested: u64,
}

const ATTEMPTS: usize = 8;

impl Port {
    /// Sends a call, again (unchanged) while it fails with a retryable error.
    fn call<T, Fut>(
        &mut self,
        what: impl Fn() -> String,
        step: usize,
        mut f: impl FnMut(&DynProvider) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = predictive_clouds::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            self.calls += 1;
            match now_or_never(&what(), f(&self.provider))? {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    self.retries += 1;
                }
                Err(source) => {
                    return Err(ReplayError::Cloud {
                        what: what(),
                        step,
                        source,
                    })
                }
            }
        }
    }

    fn launch(
        &mut self,
        owner: &Owner,
        kind: &str,
        step: usize,
        count: usize,
        t: &str,
    ) -> Result<Vec<InstanceId>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let token = IdempotencyToken::new(format!("{owner}-{step}-{kind}"))
            .map_err(|e| ReplayError::Invalid(e.to_string()))?;
        let req = LaunchRequest::new(token, owner.clone(), t, count as u32);
        let out = self.call(
            || format!("launching {count} {t} for {owner}"),
            step,
            |p| {
                let p = p.clone();
                let req = req.clone();
                async move { p.launch(&req).await }
            },
        )?;
        self.requested += count as u64;
        Ok(out.into_iter().map(|i| i.id).collect())
    }

    fn terminate(&mut self, id: &InstanceId, step: usize) -> Result<()> {
        let r = self.call(
            || format!("terminating {id}"),
            step,
            |p| {
                let (p, id) = (p.clone(), id.clone());
                async move { p.terminate_instance(&id).await }
            },
        );
        match r {
            Err(ReplayError::Cloud { source, .. }) if source.is_not_found() => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Stops `id` (hibernating it); `Ok(false)` when the cloud refuses (not running yet).
    fn stop(&mut self, id: &InstanceId, step: usize) -> Result<bool> {
        let r = self.call(
            || format!("stopping {id}"),
            step,
            |p| {
                let (p, id) = (p.clone(), id.clone());
                async move {
                    match p.stop_instance(&id, StopMode::Hibernate).await {
                        Err(e) if e.is_invalid_request() => {
                            p.stop_instance(&id, StopMode::Stop).await
                        }
                        r => r,
                    }
                }
            },
        );
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
    fn start(&mut self, id: &InstanceId, step: usize) -> Result<bool> {
        let r = self.call(
            || format!("starting {id}"),
            step,
            |p| {
                let (p, id) = (p.clone(), id.clone());
                async move { p.start_instance(&id).await }
            },
        );
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

    fn states(&mut self, owner: &Owner, step: usize) -> Result<HashMap<InstanceId, InstanceState>> {
        let list = self.call(
            || format!("listing the instances of {owner}"),
            step,
            |p| {
                let (p, o) = (p.clone(), owner.clone());
                async move { p.list_instances(&o).await }
            },
        )?;
        Ok(list.into_iter().map(|i| (i.id, i.state)).collect())
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
/// fake that injects faults); `clock` is the sim's clock.
pub(crate) fn replay_on(
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
    let mut port = Port {
        provider,
        calls: 0,
        retries: 0,
        requested: 0,
    };
    let prices = now_or_never("listing prices", port.provider.prices())?.map_err(|source| {
        ReplayError::Cloud {
            what: "listing prices".into(),
            step: 0,
            source,
        }
    })?;
    let t = cfg.offer.info.name.clone();
    let price = prices
        .iter()
        .find(|p| p.instance_type == t)
        .map(|p| p.on_demand_per_hour)
        .ok_or_else(|| ReplayError::Invalid(format!("the cloud has no price for {t}")))?;
    let ready_price = price * cfg.ready_fraction;
    let lead = cfg.params.params().lead;
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
            ttc_steps: 0,
            ttc_count: 0,
            active_unit_steps: 0,
            warming_unit_steps: 0,
            ready_unit_steps: 0,
            launches: 0,
            pool_launches: 0,
            starts: 0,
            stops: 0,
            terminations: 0,
            cut_steps: 0,
            points: Vec::with_capacity(w.usage.len()),
        });
    }
    let steps = workloads.iter().map(|w| w.usage.len()).max().unwrap_or(0);
    let start: SystemTime = clock.now();
    let step_len = Duration::from_secs(cfg.step_seconds);
    let hours = cfg.step_seconds as f64 / 3600.0;
    let mut peak_bill = 0.0f64;
    let mut exceeded = 0u64;
    let type_name = t.as_str().to_owned();
    for s in 0..steps {
        clock.set(start + step_len * s as u32);
        // 1-3. Observe, score and decide, lane by lane.
        let mut desired = Vec::with_capacity(lanes.len());
        let mut peaks = Vec::with_capacity(lanes.len());
        for lane in lanes.iter_mut() {
            let (want, peak) = observe_and_decide(lane, &mut port, s, cfg)?;
            desired.push(want);
            peaks.push(peak);
        }
        // The budget cut over all lanes, the pool's cost reserved.
        let reserved: f64 = lanes
            .iter()
            .map(|l| {
                l.warming.len() as f64 * price
                    + l.pool.as_ref().map_or(0, |p| p.len()) as f64 * ready_price
            })
            .sum();
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
                scale_down(lane, &mut port, s, u as usize, &mut allowance, ready_price)?;
            }
        }
        for (lane, &u) in lanes.iter_mut().zip(&units) {
            if (u as usize) > lane.active.len() {
                scale_up(lane, &mut port, s, u as usize, &type_name)?;
            }
        }
        let mut bill = active_bill(&lanes, price, ready_price);
        for ((lane, &u), peak) in lanes.iter_mut().zip(&units).zip(&peaks) {
            if let (Some(peak), true) = (peak, lane.pool.is_some()) {
                let want = peak.saturating_sub(u as usize);
                let room = budget.map(|b| ((b.cap() - bill) / price).floor().max(0.0) as usize);
                top_up(lane, &mut port, s, want, room, &type_name, &mut bill, price)?;
            }
            // The decay rule releases idle pool instances.
            if let Some(pool) = lane.pool.as_mut() {
                for key in pool.tick_released(s as u64) {
                    if let Some(id) = lane.pool_ids.remove(&key) {
                        port.terminate(&id, s)?;
                        lane.terminations += 1;
                    }
                }
            }
        }
        // 5. Bill the step as the lanes now stand.
        let bill = active_bill(&lanes, price, ready_price);
        if s >= cfg.warmup {
            peak_bill = peak_bill.max(bill);
            if budget.is_some_and(|b| bill > b.cap() + 1e-9) {
                exceeded += 1;
            }
            for lane in lanes.iter_mut() {
                lane.active_unit_steps += lane.active.len() as u64;
                lane.warming_unit_steps += lane.warming.len() as u64;
                lane.ready_unit_steps += lane.pool.as_ref().map_or(0, |p| p.len()) as u64;
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
        let ids: Vec<InstanceId> = lane
            .active
            .drain(..)
            .map(|a| a.id)
            .chain(lane.warming.drain(..))
            .chain(lane.pool_ids.drain().map(|(_, id)| id))
            .collect();
        for id in ids {
            port.terminate(&id, steps)?;
        }
        for (id, state) in port.states(&lane.owner, steps)? {
            if state.is_live() {
                port.terminate(&id, steps)?;
            }
        }
        orphans += port
            .states(&lane.owner, steps)?
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
            let active_dollars = l.active_unit_steps as f64 * hours * price;
            let shadow_dollars = l.warming_unit_steps as f64 * hours * price
                + l.ready_unit_steps as f64 * hours * ready_price;
            LaneReport {
                series: l.w.name.clone(),
                policy: cfg.policy.name(),
                shadow_pool: l.pool.is_some(),
                steps: scored,
                unit_capacity: l.w.unit_capacity,
                hourly_price: price,
                dollars: active_dollars + shadow_dollars,
                active_dollars,
                shadow_dollars,
                slack: ratio(l.over, l.sum_cap),
                shortfall_minutes: l.short_steps as f64 * minutes,
                shortfall_volume: ratio(l.under, l.sum_u),
                mean_time_to_capacity_minutes: ratio(l.ttc_steps as f64, l.ttc_count as f64)
                    * minutes,
                changes_per_day: ratio(l.changes as f64, scored as f64 * hours / 24.0),
                launches: l.launches,
                pool_launches: l.pool_launches,
                starts: l.starts,
                stops: l.stops,
                terminations: l.terminations,
                pool: l.pool.as_ref().map(|p| p.stats()).unwrap_or_default(),
                budget_cut_steps: l.cut_steps,
                points: l.points,
            }
        })
        .collect();
    Ok(ReplayReport {
        lanes: reports,
        instances_requested: port.requested,
        sim_launches: sim.launches(),
        orphans,
        retries: port.retries,
        calls: port.calls,
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

/// Whole units for a capacity, within the lane's bounds; `None` for a non-finite capacity.
fn units_for(w: &Workload, c: f64) -> Option<usize> {
    c.is_finite().then(|| {
        ((c / w.unit_capacity).ceil().max(0.0) as usize)
            .clamp(w.min_units as usize, w.max_units as usize)
    })
}

/// Steps 1-3 for one lane: observe its instances, score the step, and return the units its
/// policy wants plus, for the predictive policy, the units the forecast's top quantile needs.
fn observe_and_decide(
    lane: &mut Lane<'_>,
    port: &mut Port,
    s: usize,
    cfg: &ReplayConfig,
) -> Result<(u32, Option<usize>)> {
    let states = if lane.active.is_empty() && lane.warming.is_empty() && lane.pool_ids.is_empty() {
        HashMap::new()
    } else {
        port.states(&lane.owner, s)?
    };
    // Active instances: running ones serve; vanished ones are forgotten.
    lane.active.retain_mut(|a| match states.get(&a.id) {
        Some(InstanceState::Running) => {
            if !a.running {
                a.running = true;
                lane.ttc_steps += (s - a.requested_at) as u64;
                lane.ttc_count += 1;
            }
            true
        }
        Some(InstanceState::Pending) => true,
        _ => false,
    });
    // Warm-up launches that have booted are stopped into the pool.
    let mut still_warming = Vec::new();
    for id in std::mem::take(&mut lane.warming) {
        match states.get(&id) {
            Some(InstanceState::Running) => {
                let pool = lane.pool.as_mut().expect("warming implies a pool");
                match pool.admit_keys(1, s as u64).first() {
                    Some(&key) if port.stop(&id, s)? => {
                        lane.pool_ids.insert(key, id);
                        lane.stops += 1;
                    }
                    Some(&key) => {
                        pool.remove(key);
                        port.terminate(&id, s)?;
                        lane.terminations += 1;
                    }
                    None => {
                        port.terminate(&id, s)?;
                        lane.terminations += 1;
                    }
                }
            }
            Some(InstanceState::Pending) => still_warming.push(id),
            _ => {}
        }
    }
    lane.warming = still_warming;
    // Pool instances that vanished leave the pool.
    if let Some(pool) = lane.pool.as_mut() {
        lane.pool_ids.retain(|&key, id| {
            let live = states.get(id).is_some_and(|st| st.is_live());
            if !live {
                pool.remove(key);
            }
            live
        });
    }
    // Score against running capacity.
    let w = lane.w;
    let running = lane.active.iter().filter(|a| a.running).count();
    let cap = running as f64 * w.unit_capacity;
    let u = w.usage.get(s).copied();
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
            let plan = alloc.step(u);
            let mut peak = None;
            if let Some(f) = alloc.forecast() {
                let row = &f.values[f.steps() - 1];
                let qi = f
                    .levels
                    .iter()
                    .position(|&l| l >= plan.explanation.quantile - 1e-12)
                    .unwrap_or(row.len() - 1);
                lane.band.push_back((s + lead, row[0], row[qi]));
                peak = units_for(w, row[row.len() - 1]);
            }
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
fn scale_down(
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
        port.terminate(&a.id, s)?;
        lane.terminations += 1;
        excess -= 1;
    }
    while excess > 0 {
        let a = lane
            .active
            .pop()
            .expect("excess is at most the active count");
        excess -= 1;
        let fits = allowance.is_none_or(|a| a + 1e-9 >= ready_price);
        let key = match lane.pool.as_mut() {
            Some(pool) if fits => pool.admit_keys(1, s as u64).first().copied(),
            _ => None,
        };
        match key {
            Some(key) if port.stop(&a.id, s)? => {
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
                port.terminate(&a.id, s)?;
                lane.terminations += 1;
            }
        }
    }
    Ok(())
}

/// Scale-up to `units` active instances: start pool instances first, launch the rest.
fn scale_up(lane: &mut Lane<'_>, port: &mut Port, s: usize, units: usize, t: &str) -> Result<()> {
    let mut need = units - lane.active.len();
    if let Some(pool) = lane.pool.as_mut() {
        let keys = pool.promote_keys(need);
        for key in keys {
            let Some(id) = lane.pool_ids.remove(&key) else {
                continue;
            };
            if port.start(&id, s)? {
                lane.active.push(Active {
                    id,
                    requested_at: s,
                    running: false,
                });
                lane.starts += 1;
                need -= 1;
            } else {
                // Cannot start (still stopping, or no capacity): give it up and boot cold.
                port.terminate(&id, s)?;
                lane.terminations += 1;
            }
        }
    }
    let ids = port.launch(&lane.owner, "a", s, need, t)?;
    lane.launches += ids.len() as u64;
    lane.active.extend(ids.into_iter().map(|id| Active {
        id,
        requested_at: s,
        running: false,
    }));
    Ok(())
}

/// Keeps `want` instances ready ahead of a predicted peak: refreshes that many pool scores and
/// launches what the pool (plus instances already warming) lacks, within `room` more
/// instances when a budget applies.
#[allow(clippy::too_many_arguments)]
fn top_up(
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
    let ids = port.launch(&lane.owner, "w", s, n, t)?;
    lane.pool_launches += ids.len() as u64;
    *bill += ids.len() as f64 * price;
    lane.warming.extend(ids);
    Ok(())
}
