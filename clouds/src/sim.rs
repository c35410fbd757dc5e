//! `sim`: an in-process cloud on injected (virtual) time, the embedded default of the demo, the
//! simulator and the Terraform provider.
//!
//! It behaves like a small, honest cloud:
//! - launches and group scale-ups create `Pending` instances that become `Running` after a boot
//!   delay; stop and start take their own delays (a hibernated instance resumes faster);
//! - capacity is limited on request, per location and instance type ([`SimCloud::set_capacity`]),
//!   and an optional vCPU quota applies; both fail with the matching [`ErrorKind`];
//! - instance types and prices come from the catalog passed in [`SimConfig`] (a price table, so
//!   the sim does not depend on where prices come from);
//! - launches are idempotent by token, instances carry ownership tags, and resizing follows EC2's
//!   rule (stopped instances only);
//! - terminated instances stay visible for a retention period, then describe returns `NotFound`.
//!
//! # Guarantees
//! - Deterministic: the same seed, configuration and sequence of calls at the same virtual times
//!   produce the same ids, delays and results. Nothing reads the wall clock unless the caller
//!   passes [`SystemClock`](crate::clock::SystemClock).
//! - The whole state is serde-serializable ([`SimCloud::snapshot`], [`SimCloud::restore`],
//!   [`SimCloud::save`], [`SimCloud::load`]), so a short-lived process (a Terraform provider run)
//!   can keep its sim capacity in a JSON file across invocations.
//! - Clones of a [`SimCloud`] share one cloud, so a controller and a test can observe the same
//!   instances.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> predictive_clouds::Result<()> {
//! use predictive_clouds::sim::{GroupSpec, SimCloud, SimConfig};
//! use predictive_clouds::{CloudProvider, GroupId};
//! use std::time::Duration;
//!
//! let (cloud, clock) = SimCloud::with_manual_clock(SimConfig::default());
//! cloud.create_group(GroupSpec::new("web", "m6i.large", 0, 10)).unwrap();
//! cloud.scale_group(&GroupId::new("web"), 3).await?;
//! clock.advance(Duration::from_secs(120));
//! assert_eq!(cloud.describe_group(&GroupId::new("web")).await?.live(), 3);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::{splitmix64, Clock, ManualClock};
use crate::error::{CloudError, ErrorKind, Result};
use crate::port::CloudProvider;
use crate::types::{
    Group, GroupId, Instance, InstanceId, InstanceState, InstanceType, InstanceTypeInfo,
    LaunchRequest, Operation, Owner, Price, PurchaseOption, StopMode, Tags, OWNER_TAG,
};

/// One catalog entry of the sim: an instance type and its hourly prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimOffer {
    /// Size of the type.
    pub info: InstanceTypeInfo,
    /// On-demand price per hour (same in every location of the sim).
    pub on_demand_per_hour: f64,
    /// Spot price per hour, if offered.
    pub spot_per_hour: Option<f64>,
}

impl SimOffer {
    /// An offer for `name` with `vcpus`, `memory_mib` and an on-demand price; spot at 35 % of it.
    pub fn new(name: &str, vcpus: u32, memory_mib: u64, on_demand_per_hour: f64) -> Self {
        SimOffer {
            info: InstanceTypeInfo {
                name: InstanceType::new(name),
                vcpus,
                memory_mib,
                hibernation: true,
            },
            on_demand_per_hour,
            spot_per_hour: Some((on_demand_per_hour * 0.35 * 10_000.0).round() / 10_000.0),
        }
    }
}

/// A source of catalog entries for the sim (a price table passed in).
///
/// Implemented for `Vec<SimOffer>`; the cost engine's catalog can implement it once it exists.
pub trait PriceTable {
    /// The offers, one per instance type.
    fn offers(&self) -> Vec<SimOffer>;
}

impl PriceTable for Vec<SimOffer> {
    fn offers(&self) -> Vec<SimOffer> {
        self.clone()
    }
}

/// Behaviour of a sim cloud. Serializable: it is part of the persisted state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Seed of every random draw (ids, delay jitter).
    pub seed: u64,
    /// Name used in metrics and reports.
    pub name: String,
    /// Locations (zones or regions); the first one is the default.
    pub locations: Vec<String>,
    /// Instance types and prices.
    pub catalog: Vec<SimOffer>,
    /// Time from launch or group scale-up to `Running`.
    pub boot_delay: Duration,
    /// Time from `Stopping` to `Stopped`.
    pub stop_delay: Duration,
    /// Time from start to `Running` for a stopped instance.
    pub start_delay: Duration,
    /// Time from start to `Running` for a hibernated instance.
    pub resume_delay: Duration,
    /// Each delay is multiplied by a factor drawn in `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
    /// How long a terminated instance stays visible before describe returns `NotFound`.
    pub terminated_retention: Duration,
    /// Maximum vCPUs of pending and running instances, if any.
    pub vcpu_quota: Option<u32>,
    /// How instances are billed in each state (see [`SimBilling`]). States persisted before
    /// billing existed load with the defaults.
    #[serde(default)]
    pub billing: SimBilling,
    /// Spot interruptions per instance-hour of running: each spot instance is reclaimed
    /// (terminated, as EC2 does for a one-time spot request) after an exponentially distributed
    /// running time with this rate, drawn when it starts running. 0 (the default) never
    /// interrupts. The 2-minute notice is not modelled. See [`SimConfig::spot_per_month`].
    #[serde(default)]
    pub spot_interruptions_per_hour: f64,
}

impl Default for SimConfig {
    /// Seed 0, two zones `sim-1a`/`sim-1b`, the [`default_catalog`], boot 45 s, stop 30 s,
    /// start 30 s, resume 10 s, 20 % jitter, one hour of retention, no quota, EC2-style
    /// billing ([`SimBilling::default`]).
    fn default() -> Self {
        SimConfig {
            seed: 0,
            name: "sim".into(),
            locations: vec!["sim-1a".into(), "sim-1b".into()],
            catalog: default_catalog(),
            boot_delay: Duration::from_secs(45),
            stop_delay: Duration::from_secs(30),
            start_delay: Duration::from_secs(30),
            resume_delay: Duration::from_secs(10),
            jitter: 0.2,
            terminated_retention: Duration::from_secs(3600),
            vcpu_quota: None,
            billing: SimBilling::default(),
            spot_interruptions_per_hour: 0.0,
        }
    }
}

impl SimConfig {
    /// A configuration with every delay at zero: transitions complete by the next call.
    pub fn instant() -> Self {
        SimConfig {
            boot_delay: Duration::ZERO,
            stop_delay: Duration::ZERO,
            start_delay: Duration::ZERO,
            resume_delay: Duration::ZERO,
            jitter: 0.0,
            ..SimConfig::default()
        }
    }

    /// Spot interruptions given as the share of spot instances reclaimed in a month of
    /// running (the way the AWS Spot Instance Advisor states its "frequency of interruption"
    /// bands, e.g. 0.05–0.10), at `hours_per_month` hours a month: sets
    /// [`spot_interruptions_per_hour`](Self::spot_interruptions_per_hour).
    pub fn spot_per_month(mut self, share: f64, hours_per_month: f64) -> Self {
        self.spot_interruptions_per_hour = if share > 0.0 && hours_per_month > 0.0 {
            share / hours_per_month
        } else {
            0.0
        };
        self
    }

    /// Replaces the catalog with the offers of a price table.
    pub fn with_prices(mut self, table: &dyn PriceTable) -> Self {
        self.catalog = table.offers();
        self
    }
}

/// A small catalog shaped like EC2's general purpose, compute and memory families; on-demand
/// prices are us-east-1 Linux list prices (USD per hour) of those types.
pub fn default_catalog() -> Vec<SimOffer> {
    vec![
        SimOffer::new("c6i.large", 2, 4096, 0.085),
        SimOffer::new("c6i.xlarge", 4, 8192, 0.17),
        SimOffer::new("m6i.large", 2, 8192, 0.096),
        SimOffer::new("m6i.xlarge", 4, 16384, 0.192),
        SimOffer::new("m6i.2xlarge", 8, 32768, 0.384),
        SimOffer::new("r6i.large", 2, 16384, 0.126),
    ]
}

/// How the sim bills an instance in each state, shaped on EC2's rules (the instance lifecycle
/// and per-second billing pages of the EC2 user guide):
///
/// | state | compute (catalog price) | storage (root volume) |
/// |---|---|---|
/// | pending | only with [`bill_pending`](Self::bill_pending) | yes |
/// | running | yes, at least [`minimum_running_seconds`](Self::minimum_running_seconds) per start | yes |
/// | stopping | only when hibernating (EC2 bills a hibernating instance until it is stopped) | yes |
/// | stopped | no | yes, plus the RAM image when hibernated |
/// | terminated | no | no |
///
/// Compute is the on-demand price, or the spot price for an instance launched as spot. Storage
/// is `root_volume_gib × storage_per_gib_month / hours_per_month` per hour; a hibernated
/// instance also keeps its memory on that volume, so it pays for `memory_mib / 1024` GiB more.
///
/// The defaults are EBS gp3 in us-east-1 ($0.08 per GiB-month, AWS EBS pricing page) on a
/// 20 GiB root volume, 730 hours a month, pending not billed, a 60-second minimum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimBilling {
    /// Size of every instance's root volume, GiB.
    pub root_volume_gib: f64,
    /// Block storage price, USD per GiB-month.
    pub storage_per_gib_month: f64,
    /// Hours in a billing month (the clouds' price pages use 730).
    pub hours_per_month: f64,
    /// Whether a pending (booting) instance pays compute. EC2, Azure and GCP do not; a
    /// simulator whose boot delay stands for boot *and* application warm-up (time an instance
    /// spends running but not yet serving) sets it.
    pub bill_pending: bool,
    /// Shortest billed running period, seconds (EC2 Linux and GCP: 60).
    pub minimum_running_seconds: f64,
}

impl Default for SimBilling {
    fn default() -> Self {
        SimBilling {
            root_volume_gib: 20.0,
            storage_per_gib_month: 0.08,
            hours_per_month: 730.0,
            bill_pending: false,
            minimum_running_seconds: 60.0,
        }
    }
}

impl SimBilling {
    /// The hourly rates of an offer, bought as `purchase`.
    pub fn rates(&self, offer: &SimOffer, purchase: PurchaseOption) -> BillingRates {
        let per_gib_hour = self.storage_per_gib_month / self.hours_per_month;
        let storage = self.root_volume_gib * per_gib_hour;
        let compute = match purchase {
            PurchaseOption::Spot => offer.spot_per_hour.unwrap_or(offer.on_demand_per_hour),
            _ => offer.on_demand_per_hour,
        };
        BillingRates {
            compute_per_hour: compute,
            storage_per_hour: storage,
            ram_image_per_hour: offer.info.memory_mib as f64 / 1024.0 * per_gib_hour,
        }
    }
}

/// Hourly rates of one instance type and purchase option (USD per hour).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BillingRates {
    /// Compute, while running (and pending or hibernating, see [`SimBilling`]).
    pub compute_per_hour: f64,
    /// The root volume, in every state but terminated.
    pub storage_per_hour: f64,
    /// The RAM image of a hibernated instance, while it is stopped.
    pub ram_image_per_hour: f64,
}

impl BillingRates {
    /// What a running instance costs per hour (compute and storage).
    pub fn running_per_hour(&self) -> f64 {
        self.compute_per_hour + self.storage_per_hour
    }

    /// What a stopped instance costs per hour: storage, plus the RAM image when hibernated.
    pub fn stopped_per_hour(&self, hibernated: bool) -> f64 {
        self.storage_per_hour
            + if hibernated {
                self.ram_image_per_hour
            } else {
                0.0
            }
    }
}

/// Seconds an instance spent in each state (billed seconds for `running`: each running period
/// counts at least [`SimBilling::minimum_running_seconds`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StateSeconds {
    /// Booting or starting.
    pub pending: f64,
    /// Running (billed seconds).
    pub running: f64,
    /// Stopping (or hibernating).
    pub stopping: f64,
    /// Stopped after a plain stop.
    pub stopped: f64,
    /// Stopped after a hibernation.
    pub hibernated: f64,
}

/// The bill of one instance: what the sim's ledger knows about it. Kept after the instance is
/// terminated and forgotten by describe, so a whole run's bill can be read at its end.
///
/// Values returned by [`SimCloud::ledger`] and [`SimCloud::ledger_entry`] are as of the clock's
/// current time: the state the instance is in counts up to now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The instance.
    pub id: InstanceId,
    /// Its type (the latest, if it was resized).
    pub instance_type: InstanceType,
    /// Its owner tag, if any.
    pub owner: Option<String>,
    /// How it was bought.
    pub purchase: PurchaseOption,
    /// When it was launched.
    pub launched_at: SystemTime,
    /// When it first became running (after the boot delay); `None` while it has never run.
    pub ready_at: Option<SystemTime>,
    /// When its current running period began; `None` when it is not running.
    pub running_since: Option<SystemTime>,
    /// When it was last asked to become running: the launch, or the latest start.
    pub asked_at: SystemTime,
    /// When it was terminated.
    pub terminated_at: Option<SystemTime>,
    /// Its state (as of the ledger's time).
    pub state: InstanceState,
    /// Whether its last stop was a hibernation.
    pub hibernated: bool,
    /// When it entered `state`.
    pub state_since: SystemTime,
    /// Seconds per state.
    pub seconds: StateSeconds,
    /// Dollars of compute.
    pub compute_dollars: f64,
    /// Dollars of storage (root volume and RAM image).
    pub storage_dollars: f64,
    /// Whether the cloud reclaimed it (a spot interruption) rather than the owner ending it.
    #[serde(default)]
    pub interrupted: bool,
}

impl LedgerEntry {
    fn new(instance: &Instance, at: SystemTime) -> Self {
        LedgerEntry {
            id: instance.id.clone(),
            instance_type: instance.instance_type.clone(),
            owner: instance.owner().map(str::to_owned),
            purchase: instance.purchase,
            launched_at: instance.launched_at.unwrap_or(at),
            ready_at: None,
            running_since: None,
            asked_at: at,
            terminated_at: None,
            state: instance.state,
            hibernated: instance.hibernated,
            state_since: at,
            seconds: StateSeconds::default(),
            compute_dollars: 0.0,
            storage_dollars: 0.0,
            interrupted: false,
        }
    }

    /// Total dollars.
    pub fn dollars(&self) -> f64 {
        self.compute_dollars + self.storage_dollars
    }

    /// Charges the time from `state_since` to `at` in the current state, at `rates`.
    fn close(&mut self, at: SystemTime, rates: &BillingRates, billing: &SimBilling) {
        let secs = at
            .duration_since(self.state_since)
            .unwrap_or_default()
            .as_secs_f64();
        let (compute, storage, bucket) = match self.state {
            InstanceState::Pending => (
                billing.bill_pending,
                rates.storage_per_hour,
                &mut self.seconds.pending,
            ),
            InstanceState::Running => (true, rates.storage_per_hour, &mut self.seconds.running),
            InstanceState::Stopping => (
                self.hibernated,
                rates.storage_per_hour,
                &mut self.seconds.stopping,
            ),
            InstanceState::Stopped if self.hibernated => (
                false,
                rates.stopped_per_hour(true),
                &mut self.seconds.hibernated,
            ),
            InstanceState::Stopped => (
                false,
                rates.stopped_per_hour(false),
                &mut self.seconds.stopped,
            ),
            InstanceState::Terminated => return,
        };
        let billed = if self.state == InstanceState::Running {
            secs.max(billing.minimum_running_seconds)
        } else {
            secs
        };
        *bucket += billed;
        if compute {
            self.compute_dollars += billed / 3600.0 * rates.compute_per_hour;
        }
        self.storage_dollars += secs / 3600.0 * storage;
        self.state_since = at;
    }

    /// The entry valued at `now`: the open period charged up to `now`.
    fn as_of(&self, now: SystemTime, rates: Option<&BillingRates>, billing: &SimBilling) -> Self {
        let mut e = self.clone();
        if let Some(r) = rates {
            e.close(now.max(e.state_since), r, billing);
        }
        e
    }
}

/// What to create with [`SimCloud::create_group`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Group id.
    pub id: GroupId,
    /// Location; `None` is the default location.
    pub location: Option<String>,
    /// Type of new members.
    pub instance_type: InstanceType,
    /// Smallest desired capacity.
    pub min: u32,
    /// Largest desired capacity.
    pub max: u32,
    /// Initial desired capacity.
    pub desired: u32,
    /// Tags copied to every member (put [`OWNER_TAG`] here to let the orphan sweep see them).
    pub tags: Tags,
}

impl GroupSpec {
    /// A group `id` of `instance_type` with bounds `[min, max]`, starting at `min`, in the
    /// default location, without tags.
    pub fn new(id: &str, instance_type: &str, min: u32, max: u32) -> Self {
        GroupSpec {
            id: GroupId::new(id),
            location: None,
            instance_type: InstanceType::new(instance_type),
            min,
            max,
            desired: min,
            tags: Tags::new(),
        }
    }
}

/// A capacity limit: at most `limit` pending or running instances of a type in a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityLimit {
    /// Location.
    pub location: String,
    /// Instance type.
    pub instance_type: InstanceType,
    /// Maximum active instances.
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SimInstance {
    instance: Instance,
    /// The state it reaches, and when.
    transition: Option<(InstanceState, SystemTime)>,
    terminated_at: Option<SystemTime>,
    /// When a running spot instance is reclaimed (see
    /// [`SimConfig::spot_interruptions_per_hour`]).
    #[serde(default)]
    interrupt_at: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SimGroup {
    id: GroupId,
    location: String,
    instance_type: InstanceType,
    min: u32,
    max: u32,
    desired: u32,
    tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TokenRecord {
    request: LaunchRequest,
    ids: Vec<InstanceId>,
}

/// The complete state of a sim cloud, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimState {
    config: SimConfig,
    draws: u64,
    launches: u64,
    instances: BTreeMap<InstanceId, SimInstance>,
    groups: BTreeMap<GroupId, SimGroup>,
    tokens: BTreeMap<String, TokenRecord>,
    capacity: Vec<CapacityLimit>,
    /// The bill of every instance ever created, kept after the instance is forgotten.
    #[serde(default)]
    ledger: BTreeMap<InstanceId, LedgerEntry>,
    /// Spot instances reclaimed so far.
    #[serde(default)]
    interruptions: u64,
}

impl SimState {
    /// A fresh cloud with `config` and nothing in it.
    pub fn new(config: SimConfig) -> Self {
        SimState {
            config,
            draws: 0,
            launches: 0,
            instances: BTreeMap::new(),
            groups: BTreeMap::new(),
            tokens: BTreeMap::new(),
            capacity: Vec::new(),
            ledger: BTreeMap::new(),
            interruptions: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The next random draw. Derived from the seed and a counter stored in the state (rather
    /// than a generator object) so a saved and restored sim continues the same sequence.
    fn draw(&mut self) -> u64 {
        self.draws += 1;
        splitmix64(self.config.seed ^ self.draws.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// `base` scaled by a factor in `[1 - jitter, 1 + jitter]`; no draw when there is no jitter,
    /// so instant configurations do not consume the sequence.
    fn jittered(&mut self, base: Duration) -> Duration {
        let j = self.config.jitter.clamp(0.0, 1.0);
        if j == 0.0 || base.is_zero() {
            return base;
        }
        let u = (self.draw() >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(1.0 - j + 2.0 * j * u)
    }

    /// A fresh id shaped like EC2's (`i-` and 17 hex digits), so logs and tests read alike
    /// across sim and aws.
    fn new_id(&mut self) -> InstanceId {
        loop {
            let id = InstanceId::new(format!("i-{:017x}", self.draw() >> 4));
            if !self.instances.contains_key(&id) {
                return id;
            }
        }
    }

    fn offer(&self, t: &InstanceType) -> Option<&SimOffer> {
        self.config.catalog.iter().find(|o| &o.info.name == t)
    }

    /// The billing rates of an instance as it stands (its type and purchase option); `None`
    /// for a type no longer in the catalog (it is then not billed).
    fn rates_of(&self, i: &Instance) -> Option<BillingRates> {
        self.offer(&i.instance_type)
            .map(|o| self.config.billing.rates(o, i.purchase))
    }

    /// Records in the ledger that instance `id` enters `to` at `at` (hibernated or not): the
    /// period in its previous state is charged first. Call it before changing the instance.
    fn bill_transition(
        &mut self,
        id: &InstanceId,
        at: SystemTime,
        to: InstanceState,
        hibernated: bool,
    ) {
        let Some(i) = self.instances.get(id).map(|i| i.instance.clone()) else {
            return;
        };
        let rates = self.rates_of(&i);
        let billing = &self.config.billing;
        let e = self
            .ledger
            .entry(id.clone())
            .or_insert_with(|| LedgerEntry::new(&i, at));
        if let Some(r) = rates {
            e.close(at.max(e.state_since), &r, billing);
        }
        e.state_since = at.max(e.state_since);
        e.purchase = i.purchase;
        e.instance_type = i.instance_type.clone();
        match to {
            InstanceState::Running => {
                e.running_since = Some(at);
                e.ready_at.get_or_insert(at);
            }
            InstanceState::Pending => {
                e.asked_at = at;
                e.running_since = None;
            }
            InstanceState::Terminated => {
                e.running_since = None;
                e.terminated_at = Some(at);
            }
            InstanceState::Stopping | InstanceState::Stopped => e.running_since = None,
        }
        e.state = to;
        e.hibernated = hibernated;
    }

    /// The ledger entry of `id` valued at `now`.
    fn ledger_as_of(&self, id: &InstanceId, now: SystemTime) -> Option<LedgerEntry> {
        let e = self.ledger.get(id)?;
        let rates = self
            .instances
            .get(id)
            .and_then(|i| self.rates_of(&i.instance))
            .or_else(|| {
                self.offer(&e.instance_type)
                    .map(|o| self.config.billing.rates(o, e.purchase))
            });
        Some(e.as_of(now, rates.as_ref(), &self.config.billing))
    }

    /// When a spot instance that starts running at `at` will be reclaimed: an exponential
    /// draw at the configured rate; `None` for on-demand instances or a zero rate (no draw is
    /// taken then, so on-demand runs keep their sequence).
    fn interruption_after(&mut self, id: &InstanceId, at: SystemTime) -> Option<SystemTime> {
        let rate = self.config.spot_interruptions_per_hour;
        let spot = self
            .instances
            .get(id)
            .is_some_and(|i| i.instance.purchase == PurchaseOption::Spot);
        if !(spot && rate > 0.0 && rate.is_finite()) {
            return None;
        }
        // u in (0, 1]: -ln(u) is an Exp(1) draw.
        let u = ((self.draw() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let hours = -u.ln() / rate;
        Some(at + Duration::from_secs_f64((hours * 3600.0).min(1e12)))
    }

    /// The requested location if the sim has it, the first one when none is requested.
    fn location(&self, op: Operation, requested: Option<&str>) -> Result<String> {
        match requested {
            None => self
                .config
                .locations
                .first()
                .cloned()
                .ok_or_else(|| CloudError::invalid(op, "the sim has no location")),
            Some(l) if self.config.locations.iter().any(|x| x == l) => Ok(l.to_owned()),
            Some(l) => Err(CloudError::invalid(op, format!("unknown location {l:?}"))),
        }
    }

    /// Pending and running instances of `t` in `location`: what a capacity limit counts.
    /// Stopped instances hold no host, so they do not count.
    fn active_count(&self, location: &str, t: &InstanceType) -> u32 {
        self.instances
            .values()
            .filter(|i| {
                i.instance.state.is_active()
                    && i.instance.location == location
                    && &i.instance.instance_type == t
            })
            .count() as u32
    }

    /// vCPUs of pending and running instances: what the quota counts.
    fn active_vcpus(&self) -> u32 {
        self.instances
            .values()
            .filter(|i| i.instance.state.is_active())
            .map(|i| {
                self.offer(&i.instance.instance_type)
                    .map_or(0, |o| o.info.vcpus)
            })
            .sum()
    }

    /// How many more instances of `t` can become active in `location` (capacity and quota).
    /// Checks that `want` more instances of `t` fit in `location` under the capacity limit and
    /// the quota; the error names what is short.
    fn room(&self, op: Operation, location: &str, t: &InstanceType, want: u32) -> Result<()> {
        if want == 0 {
            return Ok(());
        }
        if let Some(c) = self
            .capacity
            .iter()
            .find(|c| c.location == location && &c.instance_type == t)
        {
            if self.active_count(location, t) + want > c.limit {
                return Err(CloudError::new(op, ErrorKind::InsufficientCapacity)
                    .with_detail(format!("no capacity for {want} more {t} in {location}")));
            }
        }
        if let Some(q) = self.config.vcpu_quota {
            let per = self.offer(t).map_or(0, |o| o.info.vcpus);
            if self.active_vcpus() + per * want > q {
                return Err(CloudError::new(op, ErrorKind::Quota)
                    .with_detail(format!("vCPU quota of {q} would be exceeded")));
            }
        }
        Ok(())
    }

    /// Creates one `Pending` instance that becomes `Running` after a jittered boot delay, and
    /// counts it in `launches` (the duplicate witness).
    fn create_instance(
        &mut self,
        now: SystemTime,
        t: &InstanceType,
        location: &str,
        group: Option<GroupId>,
        tags: Tags,
    ) -> InstanceId {
        let id = self.new_id();
        let boot = self.jittered(self.config.boot_delay);
        self.launches += 1;
        let inst = SimInstance {
            instance: Instance {
                id: id.clone(),
                instance_type: t.clone(),
                state: InstanceState::Pending,
                location: location.to_owned(),
                group,
                tags,
                launched_at: Some(now),
                hibernated: false,
                purchase: Default::default(),
            },
            transition: Some((InstanceState::Running, now + boot)),
            terminated_at: None,
            interrupt_at: None,
        };
        self.ledger
            .insert(id.clone(), LedgerEntry::new(&inst.instance, now));
        self.instances.insert(id.clone(), inst);
        id
    }

    /// Marks an instance terminated now (idempotent); the retention clock starts here.
    fn terminate(&mut self, now: SystemTime, id: &InstanceId) {
        if self
            .instances
            .get(id)
            .is_some_and(|i| i.instance.state != InstanceState::Terminated)
        {
            self.bill_transition(id, now, InstanceState::Terminated, false);
        }
        if let Some(i) = self.instances.get_mut(id) {
            if i.instance.state != InstanceState::Terminated {
                i.instance.state = InstanceState::Terminated;
                i.transition = None;
                i.terminated_at = Some(now);
                i.interrupt_at = None;
            }
        }
    }

    /// Live (not terminated) members of a group, in id order.
    fn members(&self, g: &GroupId) -> Vec<&SimInstance> {
        self.instances
            .values()
            .filter(|i| i.instance.group.as_ref() == Some(g) && i.instance.state.is_live())
            .collect()
    }

    /// Applies every transition due by `now`, forgets long-terminated instances and refills
    /// groups that are below their desired capacity (as far as capacity allows).
    fn settle(&mut self, now: SystemTime) {
        let due: Vec<(InstanceId, InstanceState, SystemTime, bool)> = self
            .instances
            .values()
            .filter_map(|i| match i.transition {
                Some((to, at)) if at <= now => {
                    Some((i.instance.id.clone(), to, at, i.instance.hibernated))
                }
                _ => None,
            })
            .collect();
        for (id, to, at, hibernated) in due {
            // Billed at the instant the transition happened, not when someone looked.
            self.bill_transition(&id, at, to, hibernated);
            let reclaim = if to == InstanceState::Running {
                self.interruption_after(&id, at)
            } else {
                None
            };
            if let Some(i) = self.instances.get_mut(&id) {
                i.instance.state = to;
                i.transition = None;
                i.interrupt_at = reclaim;
            }
        }
        // Spot interruptions due by now, at the instant they happened.
        let reclaimed: Vec<(InstanceId, SystemTime)> = self
            .instances
            .values()
            .filter_map(|i| match i.interrupt_at {
                Some(at) if at <= now && i.instance.state == InstanceState::Running => {
                    Some((i.instance.id.clone(), at))
                }
                _ => None,
            })
            .collect();
        for (id, at) in reclaimed {
            self.terminate(at, &id);
            self.interruptions += 1;
            if let Some(e) = self.ledger.get_mut(&id) {
                e.interrupted = true;
            }
        }
        let retention = self.config.terminated_retention;
        self.instances.retain(|_, i| match i.terminated_at {
            Some(t) => now < t + retention,
            None => true,
        });
        let groups: Vec<SimGroup> = self.groups.values().cloned().collect();
        for g in groups {
            let live = self.members(&g.id).len() as u32;
            for _ in live..g.desired {
                if self
                    .room(Operation::ScaleGroup, &g.location, &g.instance_type, 1)
                    .is_err()
                {
                    break;
                }
                self.create_instance(
                    now,
                    &g.instance_type,
                    &g.location,
                    Some(g.id.clone()),
                    g.tags.clone(),
                );
            }
        }
    }

    /// The port's view of a group: its settings and live members.
    fn group_view(&self, g: &SimGroup) -> Group {
        Group {
            id: g.id.clone(),
            location: g.location.clone(),
            instance_type: g.instance_type.clone(),
            min: g.min,
            max: g.max,
            desired: g.desired,
            instances: self
                .members(&g.id)
                .into_iter()
                .map(|i| i.instance.clone())
                .collect(),
        }
    }

    fn instance_mut(&mut self, op: Operation, id: &InstanceId) -> Result<&mut SimInstance> {
        self.instances
            .get_mut(id)
            .ok_or_else(|| CloudError::not_found(op, format!("instance {id}")))
    }

    fn group(&self, op: Operation, id: &GroupId) -> Result<&SimGroup> {
        self.groups
            .get(id)
            .ok_or_else(|| CloudError::not_found(op, format!("group {id}")))
    }
}

/// The sim cloud. Clones share the same state.
#[derive(Debug, Clone)]
pub struct SimCloud {
    state: Arc<Mutex<SimState>>,
    clock: Arc<dyn Clock>,
    name: Arc<str>,
    /// Held by [`save`](SimCloud::save): clones acting side by side (terraform's parallel
    /// applies, the loop's bounded concurrency) save one at a time, so no rename finds the
    /// shared temporary file gone and the last save written holds the newest state.
    saving: Arc<Mutex<()>>,
}

impl SimCloud {
    /// An empty sim cloud with `config`, reading time from `clock`.
    pub fn new(config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        Self::restore(SimState::new(config), clock)
    }

    /// An empty sim cloud on a [`ManualClock`] started at 2026-01-01T00:00:00Z; returns the
    /// clock so the caller advances virtual time.
    pub fn with_manual_clock(config: SimConfig) -> (Self, ManualClock) {
        let clock = ManualClock::at_unix(1_767_225_600);
        (Self::new(config, Arc::new(clock.clone())), clock)
    }

    /// A sim cloud continuing from a saved state.
    pub fn restore(state: SimState, clock: Arc<dyn Clock>) -> Self {
        SimCloud {
            name: Arc::from(state.config.name.as_str()),
            state: Arc::new(Mutex::new(state)),
            clock,
            saving: Arc::new(Mutex::new(())),
        }
    }

    /// A copy of the whole state, for persistence or assertions.
    pub fn snapshot(&self) -> SimState {
        self.lock().clone()
    }

    /// Writes the state as JSON to `path` (through a temporary file and a rename, so a crash
    /// never leaves half a file).
    ///
    /// # Errors
    /// [`SimStoreError`] naming the path when it cannot be written.
    pub fn save(&self, path: &Path) -> std::result::Result<(), SimStoreError> {
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let json = serde_json::to_vec_pretty(&self.snapshot()).map_err(|source| {
            SimStoreError::Encode {
                path: path.to_owned(),
                source,
            }
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| SimStoreError::Write {
                path: path.to_owned(),
                source,
            })
    }

    /// Reads a state written by [`save`](Self::save).
    ///
    /// # Errors
    /// [`SimStoreError`] naming the path (and line and column for malformed JSON).
    pub fn load(path: &Path, clock: Arc<dyn Clock>) -> std::result::Result<Self, SimStoreError> {
        let bytes = std::fs::read(path).map_err(|source| SimStoreError::Read {
            path: path.to_owned(),
            source,
        })?;
        let state: SimState =
            serde_json::from_slice(&bytes).map_err(|source| SimStoreError::Decode {
                path: path.to_owned(),
                line: source.line(),
                column: source.column(),
                source,
            })?;
        Ok(Self::restore(state, clock))
    }

    /// Loads `path` if it exists, otherwise starts an empty cloud with `config`.
    ///
    /// # Errors
    /// As [`load`](Self::load), for a file that exists but cannot be read or decoded.
    pub fn load_or_new(
        path: &Path,
        config: SimConfig,
        clock: Arc<dyn Clock>,
    ) -> std::result::Result<Self, SimStoreError> {
        if path.exists() {
            Self::load(path, clock)
        } else {
            Ok(Self::new(config, clock))
        }
    }

    /// Locks the state. A poisoned lock (a panic in another test thread) is recovered: the
    /// state is always consistent between statements that hold it.
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the state and applies everything due by now: every operation starts here, so
    /// the sim needs no background task and time only matters when someone looks.
    fn settled(&self) -> (MutexGuard<'_, SimState>, SystemTime) {
        let now = self.clock.now();
        let mut s = self.lock();
        s.settle(now);
        (s, now)
    }

    /// Creates a managed group and launches its initial members.
    ///
    /// # Errors
    /// `InvalidRequest` when the id is taken, the type or location unknown, or
    /// `min <= desired <= max` does not hold; `InsufficientCapacity`/`Quota` for the initial
    /// members.
    pub fn create_group(&self, spec: GroupSpec) -> Result<Group> {
        let op = Operation::ScaleGroup;
        let (mut s, now) = self.settled();
        if s.groups.contains_key(&spec.id) {
            return Err(CloudError::invalid(
                op,
                format!("group {} already exists", spec.id),
            ));
        }
        if s.offer(&spec.instance_type).is_none() {
            return Err(CloudError::invalid(
                op,
                format!("unknown instance type {}", spec.instance_type),
            ));
        }
        if !(spec.min <= spec.desired && spec.desired <= spec.max) {
            return Err(CloudError::invalid(
                op,
                format!(
                    "desired {} outside [{}, {}]",
                    spec.desired, spec.min, spec.max
                ),
            ));
        }
        let location = s.location(op, spec.location.as_deref())?;
        s.room(op, &location, &spec.instance_type, spec.desired)?;
        let g = SimGroup {
            id: spec.id.clone(),
            location,
            instance_type: spec.instance_type,
            min: spec.min,
            max: spec.max,
            desired: spec.desired,
            tags: spec.tags,
        };
        s.groups.insert(g.id.clone(), g.clone());
        s.settle(now);
        Ok(s.group_view(&g))
    }

    /// Limits active (pending or running) instances of `instance_type` in `location` to `limit`;
    /// `None` removes the limit. Existing instances are not affected.
    pub fn set_capacity(&self, location: &str, instance_type: &str, limit: Option<u32>) {
        let mut s = self.lock();
        let t = InstanceType::new(instance_type);
        s.capacity
            .retain(|c| !(c.location == location && c.instance_type == t));
        if let Some(limit) = limit {
            s.capacity.push(CapacityLimit {
                location: location.to_owned(),
                instance_type: t,
                limit,
            });
        }
    }

    /// Spot instances the sim has reclaimed so far (see
    /// [`SimConfig::spot_interruptions_per_hour`]).
    pub fn interruptions(&self) -> u64 {
        self.settled().0.interruptions
    }

    /// Total instances ever created (by launches and by groups): the "no duplicate" witness of
    /// the conformance suite.
    pub fn launches(&self) -> u64 {
        self.lock().launches
    }

    /// Every instance currently known (terminated ones until their retention ends), by id.
    pub fn all_instances(&self) -> Vec<Instance> {
        let (s, _) = self.settled();
        s.instances.values().map(|i| i.instance.clone()).collect()
    }

    /// The bill of every instance ever created, by id, as of now (see [`SimBilling`] for
    /// what each state costs). Terminated instances stay in the ledger after describe has
    /// forgotten them.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        let (s, now) = self.settled();
        s.ledger
            .keys()
            .filter_map(|id| s.ledger_as_of(id, now))
            .collect()
    }

    /// The bill of one instance as of now; `None` for an id the sim never created.
    pub fn ledger_entry(&self, id: &InstanceId) -> Option<LedgerEntry> {
        let (s, now) = self.settled();
        s.ledger_as_of(id, now)
    }

    /// Total dollars of every instance ever created, as of now.
    pub fn total_dollars(&self) -> f64 {
        self.ledger().iter().map(LedgerEntry::dollars).sum()
    }

    /// The hourly rates of a catalog type bought as `purchase`; `None` for an unknown type.
    pub fn billing_rates(
        &self,
        instance_type: &InstanceType,
        purchase: PurchaseOption,
    ) -> Option<BillingRates> {
        let s = self.lock();
        s.offer(instance_type)
            .map(|o| s.config.billing.rates(o, purchase))
    }
}

/// Failure to persist or restore a sim cloud's state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimStoreError {
    /// The state could not be encoded as JSON.
    #[error("cannot encode the sim state for {}", path.display())]
    Encode {
        /// Target file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The state file could not be written.
    #[error("cannot write the sim state to {}", path.display())]
    Write {
        /// Target file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file could not be read.
    #[error("cannot read the sim state from {}", path.display())]
    Read {
        /// Source file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not a valid sim state.
    #[error("invalid sim state in {} at line {line}, column {column}", path.display())]
    Decode {
        /// Source file.
        path: std::path::PathBuf,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

#[async_trait]
impl CloudProvider for SimCloud {
    fn name(&self) -> &str {
        &self.name
    }

    /// Settles due transitions first, so the view reflects virtual time; members are listed in
    /// id order.
    async fn describe_group(&self, group: &GroupId) -> Result<Group> {
        let (s, _) = self.settled();
        let g = s.group(Operation::DescribeGroup, group)?;
        Ok(s.group_view(g))
    }

    /// Checks `desired` against the bounds and (for a scale-up) against capacity and quota
    /// for all the new members at once, so a refused scale-up changes nothing. New members
    /// start `Pending`; a scale-in terminates pending members first, then the newest, at once.
    async fn scale_group(&self, group: &GroupId, desired: u32) -> Result<Group> {
        let op = Operation::ScaleGroup;
        let (mut s, now) = self.settled();
        let g = s.group(op, group)?.clone();
        if desired < g.min || desired > g.max {
            return Err(CloudError::invalid(
                op,
                format!(
                    "desired {desired} outside [{}, {}] of group {group}",
                    g.min, g.max
                ),
            ));
        }
        let live = s.members(group).len() as u32;
        if desired > live {
            s.room(op, &g.location, &g.instance_type, desired - live)?;
        } else if desired < live {
            // Scale in: pending members first, then the newest.
            let mut members: Vec<(bool, Option<SystemTime>, InstanceId)> = s
                .members(group)
                .into_iter()
                .map(|i| {
                    (
                        i.instance.state != InstanceState::Pending,
                        i.instance.launched_at,
                        i.instance.id.clone(),
                    )
                })
                .collect();
            members.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
            for (_, _, id) in members.into_iter().take((live - desired) as usize) {
                s.terminate(now, &id);
            }
        }
        if let Some(g) = s.groups.get_mut(group) {
            g.desired = desired;
        }
        s.settle(now);
        let g = s.group(op, group)?;
        Ok(s.group_view(g))
    }

    /// Changes the type of future members only, like a new launch template version.
    async fn resize_group(&self, group: &GroupId, instance_type: &InstanceType) -> Result<Group> {
        let op = Operation::ResizeGroup;
        let (mut s, _) = self.settled();
        s.group(op, group)?;
        if s.offer(instance_type).is_none() {
            return Err(CloudError::invalid(
                op,
                format!("unknown instance type {instance_type}"),
            ));
        }
        let g = s.groups.get_mut(group).expect("checked above");
        g.instance_type = instance_type.clone();
        let g = g.clone();
        Ok(s.group_view(&g))
    }

    /// Looks the token up first: a known token with the same request returns the recorded
    /// instances in their current state (even terminated, as EC2 does); a known token with
    /// another request is refused. Only then are count, type, template group, location,
    /// capacity and quota checked, all before anything is created.
    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>> {
        let op = Operation::Launch;
        let (mut s, now) = self.settled();
        if let Some(rec) = s.tokens.get(request.token.as_str()) {
            if &rec.request != request {
                return Err(CloudError::invalid(
                    op,
                    format!(
                        "idempotency token {} was used with different parameters",
                        request.token
                    ),
                ));
            }
            return Ok(rec
                .ids
                .iter()
                .filter_map(|id| s.instances.get(id).map(|i| i.instance.clone()))
                .collect());
        }
        if request.count == 0 {
            return Err(CloudError::invalid(op, "count must be at least 1"));
        }
        if s.offer(&request.instance_type).is_none() {
            return Err(CloudError::invalid(
                op,
                format!("unknown instance type {}", request.instance_type),
            ));
        }
        if let Some(t) = &request.template_group {
            if !s.groups.contains_key(t) {
                return Err(CloudError::invalid(
                    op,
                    format!("unknown template group {t}"),
                ));
            }
        }
        let location = s.location(op, request.location.as_deref())?;
        s.room(op, &location, &request.instance_type, request.count)?;
        let tags = request.all_tags();
        let ids: Vec<InstanceId> = (0..request.count)
            .map(|_| s.create_instance(now, &request.instance_type, &location, None, tags.clone()))
            .collect();
        // Launched as asked (group members are on-demand).
        for id in &ids {
            s.instances
                .get_mut(id)
                .expect("just created")
                .instance
                .purchase = request.purchase;
        }
        s.tokens.insert(
            request.token.as_str().to_owned(),
            TokenRecord {
                request: request.clone(),
                ids: ids.clone(),
            },
        );
        Ok(ids
            .iter()
            .map(|id| s.instances[id].instance.clone())
            .collect())
    }

    async fn describe_instance(&self, id: &InstanceId) -> Result<Instance> {
        let (mut s, _) = self.settled();
        Ok(s.instance_mut(Operation::DescribeInstance, id)?
            .instance
            .clone())
    }

    /// `Running` → `Stopping` → `Stopped` after the stop delay; the mode is remembered so a
    /// later start resumes faster. A jitter draw is taken whatever the state, so the draw
    /// sequence (and thus determinism) does not depend on retries of a no-op stop.
    async fn stop_instance(&self, id: &InstanceId, mode: StopMode) -> Result<Instance> {
        let op = Operation::StopInstance;
        let (mut s, now) = self.settled();
        let t = s.instance_mut(op, id)?.instance.instance_type.clone();
        let hibernation = s.offer(&t).is_some_and(|o| o.info.hibernation);
        let delay = s.config.stop_delay;
        let delay = s.jittered(delay);
        let state = s.instance_mut(op, id)?.instance.state;
        if state == InstanceState::Running && (mode != StopMode::Hibernate || hibernation) {
            s.bill_transition(
                id,
                now,
                InstanceState::Stopping,
                mode == StopMode::Hibernate,
            );
        }
        let i = s.instance_mut(op, id)?;
        match i.instance.state {
            InstanceState::Running => {
                if mode == StopMode::Hibernate && !hibernation {
                    return Err(CloudError::invalid(
                        op,
                        format!("instance type {t} cannot hibernate"),
                    ));
                }
                i.instance.state = InstanceState::Stopping;
                i.instance.hibernated = mode == StopMode::Hibernate;
                i.transition = Some((InstanceState::Stopped, now + delay));
                i.interrupt_at = None;
            }
            InstanceState::Stopping | InstanceState::Stopped => {}
            state @ (InstanceState::Pending | InstanceState::Terminated) => {
                return Err(CloudError::new(op, ErrorKind::IncorrectState)
                    .with_detail(format!("instance {id} is {state}")));
            }
        }
        let out = i.instance.clone();
        s.settle(now);
        Ok(s.instances.get(id).map_or(out, |i| i.instance.clone()))
    }

    /// `Stopped` → `Pending` → `Running` after the start (or resume) delay. Capacity is
    /// checked again, as on a real cloud, where a stopped instance holds no host.
    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        let op = Operation::StartInstance;
        let (mut s, now) = self.settled();
        let i = s.instance_mut(op, id)?.instance.clone();
        match i.state {
            InstanceState::Stopped => {
                s.room(op, &i.location, &i.instance_type, 1)?;
                let base = if i.hibernated {
                    s.config.resume_delay
                } else {
                    s.config.start_delay
                };
                let delay = s.jittered(base);
                s.bill_transition(id, now, InstanceState::Pending, i.hibernated);
                let i = s.instance_mut(op, id)?;
                i.instance.state = InstanceState::Pending;
                i.transition = Some((InstanceState::Running, now + delay));
            }
            InstanceState::Pending | InstanceState::Running => {}
            state @ (InstanceState::Stopping | InstanceState::Terminated) => {
                return Err(CloudError::new(op, ErrorKind::IncorrectState)
                    .with_detail(format!("instance {id} is {state}")));
            }
        }
        s.settle(now);
        Ok(s.instance_mut(op, id)?.instance.clone())
    }

    /// Only a stopped instance can change type; resizing to the current type is a no-op in any
    /// state (so a retried resize after a dropped answer succeeds).
    async fn resize_instance(
        &self,
        id: &InstanceId,
        instance_type: &InstanceType,
    ) -> Result<Instance> {
        let op = Operation::ResizeInstance;
        let (mut s, now) = self.settled();
        if s.offer(instance_type).is_none() {
            return Err(CloudError::invalid(
                op,
                format!("unknown instance type {instance_type}"),
            ));
        }
        let i = s.instance_mut(op, id)?;
        if &i.instance.instance_type == instance_type {
            return Ok(i.instance.clone());
        }
        if i.instance.state != InstanceState::Stopped {
            return Err(
                CloudError::new(op, ErrorKind::IncorrectState).with_detail(format!(
                    "instance {id} is {}; only stopped instances can be resized",
                    i.instance.state
                )),
            );
        }
        // The stopped period so far is billed at the old type's rates.
        let hibernated = i.instance.hibernated;
        s.bill_transition(id, now, InstanceState::Stopped, hibernated);
        let i = s.instance_mut(op, id)?;
        i.instance.instance_type = instance_type.clone();
        let out = i.instance.clone();
        if let Some(e) = s.ledger.get_mut(id) {
            e.instance_type = instance_type.clone();
        }
        Ok(out)
    }

    /// Terminates at once (there is no shutting-down phase in the sim). The instance stays
    /// visible as `Terminated` for the retention period, then is `NotFound`.
    async fn terminate_instance(&self, id: &InstanceId) -> Result<Instance> {
        let op = Operation::TerminateInstance;
        let (mut s, now) = self.settled();
        let i = s.instance_mut(op, id)?.instance.clone();
        if i.state != InstanceState::Terminated {
            s.terminate(now, id);
            if let Some(g) = i.group.as_ref().and_then(|g| s.groups.get_mut(g)) {
                // Like EC2's ShouldDecrementDesiredCapacity, but never below the minimum: a
                // group at its minimum replaces the member.
                if g.desired > g.min {
                    g.desired -= 1;
                }
            }
            s.settle(now);
        }
        Ok(s.instance_mut(op, id)?.instance.clone())
    }

    /// Matches the owner tag exactly, terminated instances included until their retention
    /// ends; sorted by id (the state is a sorted map).
    async fn list_instances(&self, owner: &Owner) -> Result<Vec<Instance>> {
        let (s, _) = self.settled();
        Ok(s.instances
            .values()
            .filter(|i| i.instance.tags.get(OWNER_TAG).map(String::as_str) == Some(owner.as_str()))
            .map(|i| i.instance.clone())
            .collect())
    }

    /// The catalog's types, sorted by name.
    async fn instance_types(&self) -> Result<Vec<InstanceTypeInfo>> {
        let s = self.lock();
        let mut v: Vec<InstanceTypeInfo> =
            s.config.catalog.iter().map(|o| o.info.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// One price per catalog type and location (the sim prices every location alike), in USD.
    async fn prices(&self) -> Result<Vec<Price>> {
        let s = self.lock();
        let mut v = Vec::new();
        for o in &s.config.catalog {
            for l in &s.config.locations {
                v.push(Price {
                    instance_type: o.info.name.clone(),
                    location: l.clone(),
                    on_demand_per_hour: o.on_demand_per_hour,
                    spot_per_hour: o.spot_per_hour,
                    currency: "USD".into(),
                });
            }
        }
        v.sort_by(|a, b| {
            a.instance_type
                .cmp(&b.instance_type)
                .then(a.location.cmp(&b.location))
        });
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::IdempotencyToken;
    use proptest::prelude::*;

    fn owner() -> Owner {
        Owner::new("test").unwrap()
    }

    fn req(token: &str, count: u32) -> LaunchRequest {
        LaunchRequest::new(
            IdempotencyToken::new(token).unwrap(),
            owner(),
            "m6i.large",
            count,
        )
    }

    #[tokio::test]
    async fn launch_should_boot_after_the_delay_on_virtual_time() {
        let (cloud, clock) = SimCloud::with_manual_clock(SimConfig::default());
        let out = cloud.launch(&req("t1", 2)).await.unwrap();
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|i| i.state == InstanceState::Pending));
        clock.advance(Duration::from_secs(20));
        let i = cloud.describe_instance(&out[0].id).await.unwrap();
        assert_eq!(i.state, InstanceState::Pending, "boot takes 45 s +- 20 %");
        clock.advance(Duration::from_secs(40));
        let i = cloud.describe_instance(&out[0].id).await.unwrap();
        assert_eq!(i.state, InstanceState::Running);
    }

    #[tokio::test]
    async fn launch_should_be_idempotent_by_token() {
        let (cloud, _) = SimCloud::with_manual_clock(SimConfig::default());
        let a = cloud.launch(&req("tok", 3)).await.unwrap();
        let b = cloud.launch(&req("tok", 3)).await.unwrap();
        assert_eq!(
            a.iter().map(|i| &i.id).collect::<Vec<_>>(),
            b.iter().map(|i| &i.id).collect::<Vec<_>>()
        );
        assert_eq!(cloud.launches(), 3);
        let err = cloud.launch(&req("tok", 4)).await.unwrap_err();
        assert!(err.is_invalid_request(), "{err}");
        assert_eq!(cloud.list_instances(&owner()).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn capacity_limits_should_fail_launch_and_start() {
        let (cloud, clock) = SimCloud::with_manual_clock(SimConfig::default());
        cloud.set_capacity("sim-1a", "m6i.large", Some(1));
        let a = cloud.launch(&req("a", 1)).await.unwrap();
        let err = cloud.launch(&req("b", 1)).await.unwrap_err();
        assert!(err.is_insufficient_capacity(), "{err}");
        // Other location still has room.
        let mut r = req("c", 1);
        r.location = Some("sim-1b".into());
        cloud.launch(&r).await.unwrap();
        clock.advance(Duration::from_secs(60));
        cloud.stop_instance(&a[0].id, StopMode::Stop).await.unwrap();
        clock.advance(Duration::from_secs(60));
        cloud.launch(&req("d", 1)).await.unwrap();
        let err = cloud.start_instance(&a[0].id).await.unwrap_err();
        assert!(err.is_insufficient_capacity());
        cloud.set_capacity("sim-1a", "m6i.large", None);
        cloud.start_instance(&a[0].id).await.unwrap();
    }

    #[tokio::test]
    async fn vcpu_quota_should_be_enforced() {
        let config = SimConfig {
            vcpu_quota: Some(4),
            ..SimConfig::default()
        };
        let (cloud, _) = SimCloud::with_manual_clock(config);
        cloud.launch(&req("a", 2)).await.unwrap();
        let err = cloud.launch(&req("b", 1)).await.unwrap_err();
        assert!(err.is_quota(), "{err}");
    }

    #[tokio::test]
    async fn resize_should_require_a_stopped_instance() {
        let (cloud, clock) = SimCloud::with_manual_clock(SimConfig::default());
        let id = cloud.launch(&req("a", 1)).await.unwrap()[0].id.clone();
        clock.advance(Duration::from_secs(60));
        let large = InstanceType::new("m6i.xlarge");
        let err = cloud.resize_instance(&id, &large).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IncorrectState);
        let i = cloud.stop_instance(&id, StopMode::Hibernate).await.unwrap();
        assert_eq!(i.state, InstanceState::Stopping);
        clock.advance(Duration::from_secs(60));
        let i = cloud.resize_instance(&id, &large).await.unwrap();
        assert_eq!(i.instance_type, large);
        assert!(i.hibernated);
        let err = cloud
            .resize_instance(&id, &InstanceType::new("nope"))
            .await
            .unwrap_err();
        assert!(err.is_invalid_request());
        let i = cloud.start_instance(&id).await.unwrap();
        assert_eq!(i.state, InstanceState::Pending);
        clock.advance(Duration::from_secs(13));
        let i = cloud.describe_instance(&id).await.unwrap();
        assert_eq!(i.state, InstanceState::Running, "resume is 10 s +- 20 %");
    }

    #[tokio::test]
    async fn groups_should_scale_within_bounds_and_refill() {
        let (cloud, clock) = SimCloud::with_manual_clock(SimConfig::default());
        let g = GroupId::new("web");
        cloud
            .create_group(GroupSpec::new("web", "m6i.large", 1, 5))
            .unwrap();
        let view = cloud.scale_group(&g, 4).await.unwrap();
        assert_eq!((view.desired, view.live()), (4, 4));
        assert!(cloud
            .scale_group(&g, 6)
            .await
            .unwrap_err()
            .is_invalid_request());
        assert!(cloud
            .scale_group(&g, 0)
            .await
            .unwrap_err()
            .is_invalid_request());
        clock.advance(Duration::from_secs(60));
        let view = cloud.describe_group(&g).await.unwrap();
        assert_eq!(view.count_in(InstanceState::Running), 4);
        let view = cloud.scale_group(&g, 2).await.unwrap();
        assert_eq!(view.live(), 2);
        // Terminating a member decrements desired above the minimum...
        let id = view.instances[0].id.clone();
        cloud.terminate_instance(&id).await.unwrap();
        let view = cloud.describe_group(&g).await.unwrap();
        assert_eq!((view.desired, view.live()), (1, 1));
        // ...and is replaced at the minimum.
        let id = view.instances[0].id.clone();
        cloud.terminate_instance(&id).await.unwrap();
        let view = cloud.describe_group(&g).await.unwrap();
        assert_eq!((view.desired, view.live()), (1, 1));
        assert_ne!(view.instances[0].id, id);
        let err = cloud
            .describe_group(&GroupId::new("nope"))
            .await
            .unwrap_err();
        assert!(err.is_not_found());
    }

    #[tokio::test]
    async fn terminated_instances_should_vanish_after_retention() {
        let (cloud, clock) = SimCloud::with_manual_clock(SimConfig::default());
        let id = cloud.launch(&req("a", 1)).await.unwrap()[0].id.clone();
        let i = cloud.terminate_instance(&id).await.unwrap();
        assert_eq!(i.state, InstanceState::Terminated);
        cloud.terminate_instance(&id).await.unwrap();
        clock.advance(Duration::from_secs(3601));
        assert!(cloud
            .describe_instance(&id)
            .await
            .unwrap_err()
            .is_not_found());
        assert!(cloud
            .terminate_instance(&id)
            .await
            .unwrap_err()
            .is_not_found());
    }

    #[tokio::test]
    async fn state_should_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.json");
        let (cloud, clock) = SimCloud::with_manual_clock(SimConfig::default());
        cloud
            .create_group(GroupSpec::new("web", "m6i.large", 2, 5))
            .unwrap();
        let a = cloud.launch(&req("a", 1)).await.unwrap();
        cloud.save(&path).unwrap();
        let back = SimCloud::load(&path, Arc::new(clock.clone())).unwrap();
        assert_eq!(back.snapshot(), cloud.snapshot());
        // The same token after a restart still creates nothing.
        let again = back.launch(&req("a", 1)).await.unwrap();
        assert_eq!(again[0].id, a[0].id);
        // Both continue identically (deterministic draws are part of the state).
        let x = cloud.launch(&req("b", 1)).await.unwrap();
        let y = back.launch(&req("b", 1)).await.unwrap();
        assert_eq!(x, y);
        std::fs::write(&path, "{\n  \"config\": 3\n}").unwrap();
        let err = SimCloud::load(&path, Arc::new(clock)).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(err.to_string().contains("sim.json"), "{err}");
    }

    /// Clones saving from many threads at once: every save succeeds and the file ends with
    /// the newest state.
    #[tokio::test]
    async fn concurrent_saves_should_all_succeed_and_keep_the_newest_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.json");
        let (cloud, clock) = SimCloud::with_manual_clock(SimConfig::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cloud, path) = (cloud.clone(), path.clone());
                std::thread::spawn(move || {
                    (0..40)
                        .filter_map(|_| cloud.save(&path).err().map(|e| e.to_string()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let failures: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(
            failures.is_empty(),
            "{} saves failed: {:?}",
            failures.len(),
            failures.first()
        );
        // A change after the storm is what the file holds.
        cloud.launch(&req("last", 1)).await.unwrap();
        cloud.save(&path).unwrap();
        let back = SimCloud::load(&path, Arc::new(clock)).unwrap();
        assert_eq!(back.snapshot(), cloud.snapshot());
    }

    #[tokio::test]
    async fn same_seed_should_give_same_ids() {
        let run = || async {
            let (cloud, _) = SimCloud::with_manual_clock(SimConfig::default());
            cloud.launch(&req("a", 3)).await.unwrap()
        };
        assert_eq!(run().await, run().await);
    }

    #[tokio::test]
    async fn prices_should_come_from_the_table_passed_in() {
        let table = vec![SimOffer::new("x1", 1, 1024, 0.5)];
        let config = SimConfig::default().with_prices(&table);
        let (cloud, _) = SimCloud::with_manual_clock(config);
        let p = cloud.prices().await.unwrap();
        assert_eq!(p.len(), 2, "one per location");
        assert_eq!(p[0].on_demand_per_hour, 0.5);
        assert_eq!(cloud.instance_types().await.unwrap()[0].name.as_str(), "x1");
    }

    /// A sim with one type, `x1` (2 vCPUs, 8 GiB, $0.36/h on demand, spot at 35 %: $0.126/h),
    /// no jitter, boot 60 s, stop 30 s, start 30 s, resume 10 s, default billing.
    fn billed_sim() -> (SimCloud, ManualClock) {
        billed_sim_with(|c| c)
    }

    /// [`billed_sim`] with its configuration changed by `f`.
    fn billed_sim_with(f: impl FnOnce(SimConfig) -> SimConfig) -> (SimCloud, ManualClock) {
        let config = SimConfig {
            catalog: vec![SimOffer::new("x1", 2, 8192, 0.36)],
            boot_delay: Duration::from_secs(60),
            stop_delay: Duration::from_secs(30),
            start_delay: Duration::from_secs(30),
            resume_delay: Duration::from_secs(10),
            jitter: 0.0,
            ..SimConfig::default()
        };
        SimCloud::with_manual_clock(f(config))
    }

    fn x1(token: &str) -> LaunchRequest {
        LaunchRequest::new(IdempotencyToken::new(token).unwrap(), owner(), "x1", 1)
    }

    #[tokio::test]
    async fn ledger_should_bill_a_scripted_life_as_computed_by_hand() {
        let (cloud, clock) = billed_sim();
        let t0 = clock.now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let id = cloud.launch(&x1("life")).await.unwrap()[0].id.clone();
        // t = 300: booted at 60, running since.
        clock.set(at(300));
        let e = cloud.ledger_entry(&id).unwrap();
        assert_eq!(e.state, InstanceState::Running);
        assert_eq!(
            (e.launched_at, e.ready_at, e.running_since),
            (t0, Some(at(60)), Some(at(60)))
        );
        // Storage: 20 GiB x $0.08 / 730 h = $0.002191781 per hour, in every live state.
        let storage_h = 20.0 * 0.08 / 730.0;
        let want = 240.0 / 3600.0 * 0.36 + 300.0 / 3600.0 * storage_h;
        assert!(
            (e.dollars() - want).abs() < 1e-12,
            "{} vs {want}",
            e.dollars()
        );
        // Stop at 600 (stopped at 630), start at 3630 (running at 3660), terminate at 3690.
        clock.set(at(600));
        cloud.stop_instance(&id, StopMode::Stop).await.unwrap();
        clock.set(at(3630));
        assert_eq!(
            cloud.describe_instance(&id).await.unwrap().state,
            InstanceState::Stopped
        );
        cloud.start_instance(&id).await.unwrap();
        clock.set(at(3690));
        cloud.terminate_instance(&id).await.unwrap();
        // Long after: the instance is forgotten by describe, not by the ledger.
        clock.set(at(3690 + 7200));
        assert!(cloud
            .describe_instance(&id)
            .await
            .unwrap_err()
            .is_not_found());
        let e = cloud.ledger_entry(&id).unwrap();
        let s = e.seconds;
        // Pending 60 + 30 (not billed), running 540 + 30 billed as the 60 s minimum, stopping
        // 30, stopped 3000.
        assert_eq!(
            (s.pending, s.running, s.stopping, s.stopped, s.hibernated),
            (90.0, 600.0, 30.0, 3000.0, 0.0)
        );
        assert_eq!(e.asked_at, at(3630));
        assert_eq!(e.ready_at, Some(at(60)));
        assert_eq!(e.running_since, None);
        assert_eq!(e.terminated_at, Some(at(3690)));
        // Compute: 600 billed running seconds at $0.36/h = $0.06. Storage: 3690 live seconds.
        assert!(
            (e.compute_dollars - 0.06).abs() < 1e-12,
            "{}",
            e.compute_dollars
        );
        let storage = 3690.0 / 3600.0 * storage_h;
        assert!(
            (e.storage_dollars - storage).abs() < 1e-12,
            "{}",
            e.storage_dollars
        );
        assert!((cloud.total_dollars() - (0.06 + storage)).abs() < 1e-12);
        assert_eq!(cloud.ledger().len(), 1);
    }

    #[tokio::test]
    async fn ledger_should_bill_spot_and_the_ram_image_of_a_hibernated_instance() {
        let (cloud, clock) = billed_sim();
        let t0 = clock.now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let req = x1("spot").with_purchase(PurchaseOption::Spot);
        let id = cloud.launch(&req).await.unwrap()[0].id.clone();
        clock.set(at(660));
        cloud.stop_instance(&id, StopMode::Hibernate).await.unwrap();
        clock.set(at(4230));
        cloud.start_instance(&id).await.unwrap();
        assert_eq!(cloud.ledger_entry(&id).unwrap().seconds.hibernated, 3540.0);
        clock.set(at(4240 + 3600));
        cloud.terminate_instance(&id).await.unwrap();
        let e = cloud.ledger_entry(&id).unwrap();
        assert_eq!(e.purchase, PurchaseOption::Spot);
        let s = e.seconds;
        assert_eq!(
            (s.pending, s.running, s.stopping, s.hibernated),
            (70.0, 4200.0, 30.0, 3540.0)
        );
        // Spot compute ($0.126/h) while running and while hibernating (stopping):
        // (600 + 3600 + 30) s.
        let compute = (600.0 + 3600.0 + 30.0) / 3600.0 * 0.126;
        assert!(
            (e.compute_dollars - compute).abs() < 1e-12,
            "{}",
            e.compute_dollars
        );
        // Root volume over all 7840 live seconds, plus 8 GiB of RAM image while hibernated.
        let gib_h = 0.08 / 730.0;
        let storage = 7840.0 / 3600.0 * 20.0 * gib_h + 3540.0 / 3600.0 * 8.0 * gib_h;
        assert!(
            (e.storage_dollars - storage).abs() < 1e-12,
            "{}",
            e.storage_dollars
        );
        let r = cloud
            .billing_rates(&InstanceType::new("x1"), PurchaseOption::Spot)
            .unwrap();
        assert!((r.stopped_per_hour(true) - 28.0 * gib_h).abs() < 1e-15);
        assert_eq!(r.running_per_hour(), 0.126 + 20.0 * gib_h);
    }

    #[tokio::test]
    async fn ledger_should_bill_pending_when_configured_and_survive_a_save() {
        let config = SimConfig {
            catalog: vec![SimOffer::new("x1", 2, 8192, 0.36)],
            boot_delay: Duration::from_secs(600),
            jitter: 0.0,
            billing: SimBilling {
                bill_pending: true,
                root_volume_gib: 0.0,
                ..SimBilling::default()
            },
            ..SimConfig::default()
        };
        let (cloud, clock) = SimCloud::with_manual_clock(config);
        let id = cloud.launch(&x1("p")).await.unwrap()[0].id.clone();
        clock.advance(Duration::from_secs(300));
        let e = cloud.ledger_entry(&id).unwrap();
        assert!((e.dollars() - 0.03).abs() < 1e-12, "{}", e.dollars());
        let back = SimCloud::restore(cloud.snapshot(), Arc::new(clock.clone()));
        assert_eq!(back.ledger(), cloud.ledger());
    }

    /// Spot instances are reclaimed at the configured rate (terminated at the drawn instant,
    /// billed up to it, marked `interrupted`); on-demand ones never are; a hibernated spot
    /// instance is not reclaimed while stopped; the same seed gives the same interruptions.
    #[tokio::test]
    async fn spot_instances_should_be_reclaimed_at_the_configured_rate_and_on_demand_never() {
        async fn run(seed: u64) -> (Vec<Option<SystemTime>>, u64, SimCloud) {
            let (cloud, clock) = billed_sim_with(|c| SimConfig {
                seed,
                ..c.spot_per_month(730.0, 730.0)
            });
            let t0 = clock.now();
            let mut spot = Vec::new();
            for k in 0..40 {
                let r = x1(&format!("s{k}")).with_purchase(PurchaseOption::Spot);
                spot.push(cloud.launch(&r).await.unwrap()[0].id.clone());
            }
            let od = cloud.launch(&x1("od")).await.unwrap()[0].id.clone();
            // One interruption per running hour on average: after 10 hours nearly all are gone.
            clock.set(t0 + Duration::from_secs(10 * 3600));
            let ends: Vec<Option<SystemTime>> = spot
                .iter()
                .map(|id| cloud.ledger_entry(id).unwrap().terminated_at)
                .collect();
            for (id, end) in spot.iter().zip(&ends) {
                let e = cloud.ledger_entry(id).unwrap();
                assert_eq!(e.interrupted, end.is_some());
                if let Some(end) = end {
                    assert_eq!(e.state, InstanceState::Terminated);
                    // Billed while running (60 s boot not billed), up to the reclaim instant.
                    let ran = end.duration_since(t0 + Duration::from_secs(60)).unwrap();
                    assert!((e.seconds.running - ran.as_secs_f64().max(60.0)).abs() < 1e-6);
                }
            }
            let o = cloud.ledger_entry(&od).unwrap();
            assert!(!o.interrupted && o.state == InstanceState::Running);
            (ends, cloud.interruptions(), cloud)
        }
        let (ends, n, _) = run(7).await;
        assert_eq!(n as usize, ends.iter().filter(|e| e.is_some()).count());
        // P(survive 10 h) = e^-10 each: at least 38 of 40 reclaimed is overwhelmingly likely,
        // and the mean life is about an hour.
        assert!(n >= 38, "{n} of 40 reclaimed");
        let (again, _, _) = run(7).await;
        assert_eq!(ends, again, "same seed, same interruptions");
        let (other, _, _) = run(8).await;
        assert_ne!(ends, other);

        // Stopped (hibernated) spot instances are not reclaimed; the clock restarts on resume.
        let (cloud, clock) = billed_sim_with(|c| c.spot_per_month(730.0, 730.0));
        let t0 = clock.now();
        let r = x1("h").with_purchase(PurchaseOption::Spot);
        let id = cloud.launch(&r).await.unwrap()[0].id.clone();
        clock.set(t0 + Duration::from_secs(61));
        if cloud.ledger_entry(&id).unwrap().state == InstanceState::Running {
            cloud.stop_instance(&id, StopMode::Hibernate).await.unwrap();
            clock.set(t0 + Duration::from_secs(100 * 3600));
            let e = cloud.ledger_entry(&id).unwrap();
            assert_eq!(e.state, InstanceState::Stopped);
            assert!(!e.interrupted);
        }
        // Without a rate nothing is reclaimed.
        let (cloud, clock) = billed_sim();
        let r = x1("none").with_purchase(PurchaseOption::Spot);
        let id = cloud.launch(&r).await.unwrap()[0].id.clone();
        clock.advance(Duration::from_secs(1000 * 3600));
        assert_eq!(
            cloud.ledger_entry(&id).unwrap().state,
            InstanceState::Running
        );
        assert_eq!(cloud.interruptions(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever sequence of scale requests arrives, the group stays within [min, max] and its
        /// live members equal its desired capacity.
        #[test]
        fn scale_should_never_leave_the_group_outside_its_bounds(
            min in 0u32..3, extra in 0u32..6, asks in proptest::collection::vec(0u32..12, 1..12)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let (cloud, clock) = SimCloud::with_manual_clock(SimConfig::default());
                let max = min + extra;
                cloud.create_group(GroupSpec::new("g", "m6i.large", min, max)).unwrap();
                let g = GroupId::new("g");
                for n in asks {
                    let r = cloud.scale_group(&g, n).await;
                    prop_assert_eq!(r.is_ok(), n >= min && n <= max);
                    clock.advance(Duration::from_secs(10));
                    let view = cloud.describe_group(&g).await.unwrap();
                    prop_assert!(view.desired >= min && view.desired <= max);
                    prop_assert_eq!(view.live() as u32, view.desired);
                }
                Ok(())
            })?;
        }
    }
}
