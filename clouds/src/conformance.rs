//! The conformance suite: the scenarios every [`CloudProvider`] must pass, the same for `sim`,
//! `fake`, and each adapter against its emulator or fake (or, opted in, the real cloud).
//!
//! Adapters call it from their own tests with their own provider instance:
//!
//! ```no_run
//! # async fn demo(provider: &dyn predictive_clouds::CloudProvider) {
//! use predictive_clouds::conformance::{run_all, ConformanceConfig};
//! use predictive_clouds::clock::TokioSleep;
//! use std::sync::Arc;
//!
//! let config = ConformanceConfig::new("my-group", "m6i.large", "m6i.xlarge", Arc::new(TokioSleep))
//!     .with_missing_ids("i-0123456789abcdef0", "no-such-group");
//! let report = run_all(provider, &config).await;
//! report.assert_passed();
//! # }
//! ```
//!
//! # Scenarios
//! - [`Scenario::ScaleUpDown`]: scale the group up by two (within its max), wait for the members,
//!   refuse a scale above max, scale back down.
//! - [`Scenario::Resize`]: change the group's type and back; refuse to resize a running
//!   instance; resize it once stopped.
//! - [`Scenario::StopStart`]: launch, stop to `Stopped`, start to `Running`, terminate.
//! - [`Scenario::IdempotentLaunch`]: the same launch sent three times creates once; the same
//!   token with other parameters is refused.
//! - [`Scenario::NotFound`]: describe/stop/start/terminate of a missing instance and
//!   describe/scale of a missing group report `NotFound`.
//! - [`Scenario::OrphanSweep`]: listing by ownership tag returns exactly the owner's instances;
//!   terminating them leaves none live, and another owner's instance is untouched.
//! - [`Scenario::SpotLaunch`]: an on-demand launch reports on-demand instances, a spot launch
//!   reports spot ones (launch answer, describe and listing alike), a spot launch sent again
//!   creates nothing, and its token with the on-demand option is refused.
//!
//! # Assumptions
//! - The group named in the configuration exists, has room for two more members (or at least
//!   one) below its max, and nothing else scales it during the run.
//! - Owners and tokens are derived from [`ConformanceConfig::run_id`], which must be unique per
//!   run against a shared cloud.
//! - Under injected faults, wrap the provider in the [`retry`](crate::layer::retry) layer: the
//!   suite never retries by itself (except by polling for state), so it also proves the layer.
//!
//! # Guarantees
//! Every scenario terminates what it launched, also when it fails midway (best effort), and the
//! report counts the instances the suite meant to create
//! ([`ConformanceReport::expected_creations`]) so a test with access to the cloud's ground truth
//! can prove that no instance was duplicated.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Sleep;
use crate::error::ErrorKind;
use crate::port::CloudProvider;
use crate::types::{
    Group, GroupId, IdempotencyToken, Instance, InstanceId, InstanceState, InstanceType,
    LaunchRequest, Owner, PurchaseOption, StopMode,
};

/// One scenario of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Scale the group up and down within its bounds.
    ScaleUpDown,
    /// Resize the group and a stopped instance; refuse a running one.
    Resize,
    /// Stop and start an instance.
    StopStart,
    /// The same launch twice creates once.
    IdempotentLaunch,
    /// Missing groups and instances report `NotFound`.
    NotFound,
    /// List by ownership tag and terminate the owner's instances.
    OrphanSweep,
    /// Launch spot and on-demand instances; each reports what it was launched as.
    SpotLaunch,
}

impl Scenario {
    /// Every scenario, in the order [`run_all`] runs them.
    pub const ALL: [Scenario; 7] = [
        Scenario::ScaleUpDown,
        Scenario::Resize,
        Scenario::StopStart,
        Scenario::IdempotentLaunch,
        Scenario::NotFound,
        Scenario::OrphanSweep,
        Scenario::SpotLaunch,
    ];

    /// The scenario as a kebab-case label (used in owners and tokens).
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::ScaleUpDown => "scale",
            Scenario::Resize => "resize",
            Scenario::StopStart => "stop-start",
            Scenario::IdempotentLaunch => "idempotent",
            Scenario::NotFound => "not-found",
            Scenario::OrphanSweep => "sweep",
            Scenario::SpotLaunch => "spot",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the suite runs against and how it waits.
#[derive(Debug, Clone)]
pub struct ConformanceConfig {
    /// An existing group the suite may scale and resize (restored afterwards).
    pub group: GroupId,
    /// Type for launched instances.
    pub instance_type: InstanceType,
    /// A second type, for the resize scenario.
    pub resize_to: InstanceType,
    /// Location for launches; `None` for the provider's default.
    pub location: Option<String>,
    /// A well-formed instance id that does not exist.
    pub missing_instance: InstanceId,
    /// A well-formed group id that does not exist.
    pub missing_group: GroupId,
    /// Prefix of owners and tokens: lowercase `a-z0-9-`, at most 40 characters, unique per run.
    pub run_id: String,
    /// Time between two observations while waiting for a state.
    pub poll_interval: Duration,
    /// Observations before a wait is declared failed.
    pub max_polls: u32,
    /// How to wait between polls (a [`ManualSleep`](crate::clock::ManualSleep) on the sim's
    /// clock for virtual time, the tokio timer for emulators).
    pub sleep: Arc<dyn Sleep>,
    /// Also hibernate and resume in the stop/start scenario (for clouds and types that
    /// support it; off by default because emulators rarely do).
    pub hibernate: bool,
}

impl ConformanceConfig {
    /// A configuration for `group`, launching `instance_type` and resizing to `resize_to`,
    /// polling every 5 s up to 120 times, with run id `conformance` and sim-style missing ids.
    pub fn new(group: &str, instance_type: &str, resize_to: &str, sleep: Arc<dyn Sleep>) -> Self {
        ConformanceConfig {
            group: GroupId::new(group),
            instance_type: InstanceType::new(instance_type),
            resize_to: InstanceType::new(resize_to),
            location: None,
            missing_instance: InstanceId::new("i-0000000000000dead"),
            missing_group: GroupId::new("conformance-missing-group"),
            run_id: "conformance".into(),
            poll_interval: Duration::from_secs(5),
            max_polls: 120,
            sleep,
            hibernate: false,
        }
    }

    /// Sets the ids used by the not-found scenario (they must be well-formed for the cloud).
    pub fn with_missing_ids(mut self, instance: &str, group: &str) -> Self {
        self.missing_instance = InstanceId::new(instance);
        self.missing_group = GroupId::new(group);
        self
    }

    /// Sets the run id (prefix of owners and tokens).
    pub fn with_run_id(mut self, run_id: &str) -> Self {
        self.run_id = run_id.to_owned();
        self
    }
}

/// Result of one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioReport {
    /// Which scenario.
    pub scenario: Scenario,
    /// `None` when it passed, otherwise what failed.
    pub failure: Option<String>,
}

/// Result of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ConformanceReport {
    /// The provider's name.
    pub provider: String,
    /// One entry per scenario run.
    pub scenarios: Vec<ScenarioReport>,
    /// Instances the suite asked the cloud to create (distinct launch tokens' counts plus
    /// members added by scaling up). A cloud whose creation count exceeds it duplicated one.
    pub expected_creations: u64,
    /// Owners the suite used, for a final look at the cloud's ground truth.
    pub owners: Vec<Owner>,
}

impl ConformanceReport {
    /// Whether every scenario passed.
    pub fn passed(&self) -> bool {
        self.scenarios.iter().all(|s| s.failure.is_none())
    }

    /// The failed scenarios.
    pub fn failures(&self) -> Vec<&ScenarioReport> {
        self.scenarios
            .iter()
            .filter(|s| s.failure.is_some())
            .collect()
    }

    /// Panics with every failure listed, for use in tests.
    ///
    /// # Panics
    /// When a scenario failed.
    pub fn assert_passed(&self) {
        assert!(self.passed(), "{self}");
    }
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance of {}:", self.provider)?;
        for s in &self.scenarios {
            match &s.failure {
                None => writeln!(f, "  {:<12} ok", s.scenario.as_str())?,
                Some(why) => writeln!(f, "  {:<12} FAILED: {why}", s.scenario.as_str())?,
            }
        }
        Ok(())
    }
}

/// Runs every scenario, in [`Scenario::ALL`] order, and reports each.
pub async fn run_all(
    provider: &dyn CloudProvider,
    config: &ConformanceConfig,
) -> ConformanceReport {
    run_some(provider, config, &Scenario::ALL).await
}

/// Runs the given scenarios, in order, and reports each.
pub async fn run_some(
    provider: &dyn CloudProvider,
    config: &ConformanceConfig,
    scenarios: &[Scenario],
) -> ConformanceReport {
    let suite = Suite {
        p: provider,
        cfg: config,
        creations: AtomicU64::new(0),
        tokens: AtomicU64::new(0),
    };
    let mut reports = Vec::new();
    let mut owners = Vec::new();
    for &s in scenarios {
        let result = match s {
            Scenario::ScaleUpDown => suite.scale_up_down().await,
            Scenario::Resize => suite.resize().await,
            Scenario::StopStart => suite.stop_start().await,
            Scenario::IdempotentLaunch => suite.idempotent_launch().await,
            Scenario::NotFound => suite.not_found().await,
            Scenario::OrphanSweep => suite.orphan_sweep().await,
            Scenario::SpotLaunch => suite.spot_launch().await,
        };
        if let Ok(o) = suite.owner(s, "") {
            owners.push(o);
        }
        if s == Scenario::OrphanSweep {
            owners.extend(suite.owner(s, "b"));
        }
        reports.push(ScenarioReport {
            scenario: s,
            failure: result.err(),
        });
    }
    ConformanceReport {
        provider: provider.name().to_owned(),
        scenarios: reports,
        expected_creations: suite.creations.load(Ordering::SeqCst),
        owners,
    }
}

type Check<T = ()> = std::result::Result<T, String>;

/// Formats an error with its whole source chain.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Names the step that failed in front of the error chain.
fn step<T>(what: &str, r: crate::Result<T>) -> Check<T> {
    r.map_err(|e| format!("{what}: {}", chain(&e)))
}

/// Fails with a lazily built message when `cond` does not hold.
fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Check {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

/// Passes only when the call failed with exactly `kind`.
fn expect_kind<T: fmt::Debug>(what: &str, r: crate::Result<T>, kind: ErrorKind) -> Check {
    match r {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(format!("{what}: expected {kind}, got {}", chain(&e))),
        Ok(v) => Err(format!("{what}: expected {kind}, got Ok({v:?})")),
    }
}

/// One run of the suite: the provider, the configuration, and the counters shared by the
/// scenarios (creations for the duplicate check, a token sequence so every launch is distinct).
struct Suite<'a> {
    p: &'a dyn CloudProvider,
    cfg: &'a ConformanceConfig,
    creations: AtomicU64,
    tokens: AtomicU64,
}

impl Suite<'_> {
    /// The owner label of a scenario: `<run_id>-<scenario>[-suffix]`, so each scenario sweeps
    /// only what it launched and concurrent runs with distinct run ids never meet.
    fn owner(&self, s: Scenario, suffix: &str) -> Check<Owner> {
        let label = if suffix.is_empty() {
            format!("{}-{}", self.cfg.run_id, s.as_str())
        } else {
            format!("{}-{}-{suffix}", self.cfg.run_id, s.as_str())
        };
        Owner::new(label).map_err(|e| format!("configuration: {e}"))
    }

    /// A launch request with a fresh token (`<run_id>-<scenario>-<n>`) and a `purpose` tag.
    fn request(&self, s: Scenario, owner: &Owner, count: u32) -> Check<LaunchRequest> {
        let n = self.tokens.fetch_add(1, Ordering::SeqCst);
        let token = IdempotencyToken::new(format!("{}-{}-{n}", self.cfg.run_id, s.as_str()))
            .map_err(|e| format!("configuration: {e}"))?;
        let mut r = LaunchRequest::new(token, owner.clone(), self.cfg.instance_type.clone(), count);
        r.location = self.cfg.location.clone();
        r.tags.insert("purpose".into(), "conformance".into());
        Ok(r)
    }

    /// Launches and counts the creation (once per token, whatever the retries).
    /// Launches through the provider, counts the creations once per token (whatever retries
    /// the layers did underneath), and checks the count returned.
    async fn launch(&self, r: &LaunchRequest) -> Check<Vec<Instance>> {
        let out = step("launch", self.p.launch(r).await)?;
        self.creations
            .fetch_add(u64::from(r.count), Ordering::SeqCst);
        ensure(out.len() == r.count as usize, || {
            format!(
                "launch returned {} instances for count {}",
                out.len(),
                r.count
            )
        })?;
        Ok(out)
    }

    /// Polls an instance until it reaches `want`, sleeping `poll_interval` between looks.
    /// The failure names the last state seen.
    async fn wait_instance(&self, id: &InstanceId, want: InstanceState) -> Check<Instance> {
        let mut last = None;
        for _ in 0..self.cfg.max_polls {
            let i = step("describe instance", self.p.describe_instance(id).await)?;
            if i.state == want {
                return Ok(i);
            }
            last = Some(i.state);
            self.cfg.sleep.sleep(self.cfg.poll_interval).await;
        }
        Err(format!(
            "instance {id} did not reach {want} after {} polls (last {last:?})",
            self.cfg.max_polls
        ))
    }

    /// Polls the group until exactly `want_live` members are live and all of them run; fails
    /// at once if it ever shows more live members than `max`.
    async fn wait_group(&self, want_live: usize, max: u32) -> Check<Group> {
        let mut last = 0;
        for _ in 0..self.cfg.max_polls {
            let g = step(
                "describe group",
                self.p.describe_group(&self.cfg.group).await,
            )?;
            ensure(g.live() as u32 <= max, || {
                format!("group has {} live members above its max {max}", g.live())
            })?;
            if g.live() == want_live && g.count_in(InstanceState::Running) == want_live {
                return Ok(g);
            }
            last = g.live();
            self.cfg.sleep.sleep(self.cfg.poll_interval).await;
        }
        Err(format!(
            "group did not reach {want_live} running members after {} polls (last {last} live)",
            self.cfg.max_polls
        ))
    }

    /// Terminates, tolerating "already gone"; used for cleanup too.
    async fn terminate(&self, id: &InstanceId) -> Check {
        match self.p.terminate_instance(id).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(format!("terminate {id}: {}", chain(&e))),
        }
    }

    /// Best-effort termination after a scenario, also after a failure; errors are ignored
    /// because the scenario's own result is what the report shows.
    async fn cleanup(&self, ids: &[InstanceId]) {
        for id in ids {
            let _ = self.terminate(id).await;
        }
    }

    /// Scale up by two (or one at the max), wait, refuse above max, scale back; the group is
    /// restored even when a step fails.
    async fn scale_up_down(&self) -> Check {
        let g = step(
            "describe group",
            self.p.describe_group(&self.cfg.group).await,
        )?;
        let base = g.desired;
        ensure(g.max > base, || {
            format!(
                "configuration: group {} has no room above {base} (max {})",
                g.id, g.max
            )
        })?;
        let result = self.scale_body(&g).await;
        // Restore the group whatever happened.
        let restore = step(
            "scale group back",
            self.p.scale_group(&self.cfg.group, base).await,
        );
        result?;
        restore?;
        self.wait_group(base as usize, g.max).await?;
        Ok(())
    }

    /// The steps of [`Suite::scale_up_down`] between the first look and the restore.
    async fn scale_body(&self, g: &Group) -> Check {
        let base = g.desired;
        self.wait_group(base as usize, g.max).await?;
        let up = (base + 2).min(g.max);
        let view = step("scale group up", self.p.scale_group(&g.id, up).await)?;
        ensure(view.desired == up, || {
            format!("scale up answered desired {}, asked {up}", view.desired)
        })?;
        self.creations
            .fetch_add(u64::from(up - base), Ordering::SeqCst);
        let view = self.wait_group(up as usize, g.max).await?;
        ensure(
            view.instances
                .iter()
                .all(|i| i.group.as_ref() == Some(&g.id)),
            || "a member does not name its group".into(),
        )?;
        if g.max < u32::MAX {
            expect_kind(
                "scale above max",
                self.p.scale_group(&g.id, g.max + 1).await,
                ErrorKind::InvalidRequest,
            )?;
        }
        let view = step("scale group down", self.p.scale_group(&g.id, base).await)?;
        ensure(view.desired == base, || {
            format!("scale down answered desired {}, asked {base}", view.desired)
        })?;
        Ok(())
    }

    /// Resize the group to the other type and back, then resize one launched instance.
    async fn resize(&self) -> Check {
        let g = step(
            "describe group",
            self.p.describe_group(&self.cfg.group).await,
        )?;
        let original = g.instance_type.clone();
        let to = if original == self.cfg.resize_to {
            self.cfg.instance_type.clone()
        } else {
            self.cfg.resize_to.clone()
        };
        let view = step("resize group", self.p.resize_group(&g.id, &to).await)?;
        ensure(view.instance_type == to, || {
            format!(
                "resize group answered type {}, asked {to}",
                view.instance_type
            )
        })?;
        let seen = step("describe group", self.p.describe_group(&g.id).await)?;
        ensure(seen.instance_type == to, || {
            format!(
                "group shows type {} after resize to {to}",
                seen.instance_type
            )
        })?;
        step(
            "resize group back",
            self.p.resize_group(&g.id, &original).await,
        )?;

        let owner = self.owner(Scenario::Resize, "")?;
        let r = self.request(Scenario::Resize, &owner, 1)?;
        let launched = self.launch(&r).await?;
        let id = launched[0].id.clone();
        let result = self.resize_instance(&id).await;
        self.cleanup(&[id]).await;
        result
    }

    /// A running instance must refuse the resize with `IncorrectState` (EC2's rule, even where
    /// an emulator accepts it); once stopped it must accept it and show the new type.
    async fn resize_instance(&self, id: &InstanceId) -> Check {
        let to = &self.cfg.resize_to;
        self.wait_instance(id, InstanceState::Running).await?;
        expect_kind(
            "resize of a running instance",
            self.p.resize_instance(id, to).await,
            ErrorKind::IncorrectState,
        )?;
        step("stop", self.p.stop_instance(id, StopMode::Stop).await)?;
        self.wait_instance(id, InstanceState::Stopped).await?;
        let i = step(
            "resize stopped instance",
            self.p.resize_instance(id, to).await,
        )?;
        ensure(&i.instance_type == to, || {
            format!("resize answered type {}, asked {to}", i.instance_type)
        })?;
        let i = step("describe instance", self.p.describe_instance(id).await)?;
        ensure(&i.instance_type == to, || {
            format!(
                "instance shows type {} after resize to {to}",
                i.instance_type
            )
        })
    }

    /// Launch, check the owner tag, stop (twice: the second is a no-op), start (twice),
    /// optionally hibernate and resume, terminate, and check it is gone or going.
    async fn stop_start(&self) -> Check {
        let owner = self.owner(Scenario::StopStart, "")?;
        let r = self.request(Scenario::StopStart, &owner, 1)?;
        let launched = self.launch(&r).await?;
        let id = launched[0].id.clone();
        let result = async {
            let i = self.wait_instance(&id, InstanceState::Running).await?;
            ensure(i.owner() == Some(owner.as_str()), || {
                format!("instance owner tag is {:?}, expected {owner}", i.owner())
            })?;
            let i = step("stop", self.p.stop_instance(&id, StopMode::Stop).await)?;
            ensure(
                matches!(i.state, InstanceState::Stopping | InstanceState::Stopped),
                || format!("stop answered {}", i.state),
            )?;
            self.wait_instance(&id, InstanceState::Stopped).await?;
            step(
                "stop again",
                self.p.stop_instance(&id, StopMode::Stop).await,
            )?;
            let i = step("start", self.p.start_instance(&id).await)?;
            ensure(
                matches!(i.state, InstanceState::Pending | InstanceState::Running),
                || format!("start answered {}", i.state),
            )?;
            self.wait_instance(&id, InstanceState::Running).await?;
            step("start again", self.p.start_instance(&id).await)?;
            if self.cfg.hibernate {
                step(
                    "hibernate",
                    self.p.stop_instance(&id, StopMode::Hibernate).await,
                )?;
                let i = self.wait_instance(&id, InstanceState::Stopped).await?;
                ensure(i.hibernated, || {
                    format!("instance {id} stopped but not hibernated")
                })?;
                step("resume", self.p.start_instance(&id).await)?;
                self.wait_instance(&id, InstanceState::Running).await?;
            }
            self.terminate(&id).await?;
            let gone = match self.p.describe_instance(&id).await {
                Ok(i) => i.state == InstanceState::Terminated || i.state == InstanceState::Stopping,
                Err(e) => e.is_not_found(),
            };
            ensure(gone, || format!("instance {id} still live after terminate"))
        }
        .await;
        self.cleanup(&[id]).await;
        result
    }

    /// Three sends of one launch give one set of instances; the owner lists exactly that set;
    /// the token with another count is refused.
    async fn idempotent_launch(&self) -> Check {
        let owner = self.owner(Scenario::IdempotentLaunch, "")?;
        let r = self.request(Scenario::IdempotentLaunch, &owner, 2)?;
        let first = self.launch(&r).await?;
        let ids: BTreeSet<InstanceId> = first.iter().map(|i| i.id.clone()).collect();
        let result = async {
            for attempt in ["second", "third"] {
                let again = step(
                    &format!("{attempt} launch with the same token"),
                    self.p.launch(&r).await,
                )?;
                let again: BTreeSet<InstanceId> = again.into_iter().map(|i| i.id).collect();
                ensure(again == ids, || {
                    format!("{attempt} launch returned {again:?}, first returned {ids:?}")
                })?;
                self.cfg.sleep.sleep(self.cfg.poll_interval).await;
            }
            let mut changed = r.clone();
            changed.count += 1;
            expect_kind(
                "same token, other parameters",
                self.p.launch(&changed).await,
                ErrorKind::InvalidRequest,
            )?;
            let listed: BTreeSet<InstanceId> = step("list", self.p.list_instances(&owner).await)?
                .into_iter()
                .filter(|i| i.state.is_live())
                .map(|i| i.id)
                .collect();
            ensure(listed == ids, || {
                format!("owner lists {listed:?}, launched {ids:?}: duplicated or lost")
            })
        }
        .await;
        let ids: Vec<InstanceId> = ids.into_iter().collect();
        self.cleanup(&ids).await;
        result
    }

    /// Every instance operation on the missing id, and describe/scale on the missing group,
    /// must say `NotFound` (not `InvalidRequest`, not a generic failure).
    async fn not_found(&self) -> Check {
        let id = &self.cfg.missing_instance;
        let g = &self.cfg.missing_group;
        expect_kind(
            "describe missing instance",
            self.p.describe_instance(id).await,
            ErrorKind::NotFound,
        )?;
        expect_kind(
            "stop missing instance",
            self.p.stop_instance(id, StopMode::Stop).await,
            ErrorKind::NotFound,
        )?;
        expect_kind(
            "start missing instance",
            self.p.start_instance(id).await,
            ErrorKind::NotFound,
        )?;
        expect_kind(
            "terminate missing instance",
            self.p.terminate_instance(id).await,
            ErrorKind::NotFound,
        )?;
        expect_kind(
            "describe missing group",
            self.p.describe_group(g).await,
            ErrorKind::NotFound,
        )?;
        expect_kind(
            "scale missing group",
            self.p.scale_group(g, 1).await,
            ErrorKind::NotFound,
        )
    }

    /// Owner A launches three (in two launches), owner B one. Listing A gives exactly A's
    /// three; terminating them leaves none live; B's instance is untouched.
    async fn orphan_sweep(&self) -> Check {
        let a = self.owner(Scenario::OrphanSweep, "")?;
        let b = self.owner(Scenario::OrphanSweep, "b")?;
        let mut mine = BTreeSet::new();
        let mut all = Vec::new();
        let result = async {
            for count in [1, 2] {
                let r = self.request(Scenario::OrphanSweep, &a, count)?;
                for i in self.launch(&r).await? {
                    all.push(i.id.clone());
                    mine.insert(i.id);
                }
            }
            let r = self.request(Scenario::OrphanSweep, &b, 1)?;
            let other = self.launch(&r).await?[0].id.clone();
            all.push(other.clone());
            let listed: BTreeSet<InstanceId> = step("list owner", self.p.list_instances(&a).await)?
                .into_iter()
                .filter(|i| i.state.is_live())
                .map(|i| i.id)
                .collect();
            ensure(listed == mine, || {
                format!("owner lists {listed:?}, launched {mine:?}")
            })?;
            // The sweep: terminate every live instance of the owner, as the controller does
            // for instances it does not know.
            for id in &listed {
                self.terminate(id).await?;
            }
            let mut left = listed.len();
            for _ in 0..self.cfg.max_polls {
                left = step("list owner", self.p.list_instances(&a).await)?
                    .into_iter()
                    .filter(|i| {
                        i.state.is_live()
                            && !(i.state == InstanceState::Stopping && mine.contains(&i.id))
                    })
                    .count();
                if left == 0 {
                    break;
                }
                self.cfg.sleep.sleep(self.cfg.poll_interval).await;
            }
            ensure(left == 0, || {
                format!("{left} instances of {a} survived the sweep")
            })?;
            let others = step("list other owner", self.p.list_instances(&b).await)?;
            ensure(
                others.iter().any(|i| i.id == other && i.state.is_live()),
                || format!("the sweep of {a} touched {other} of {b}"),
            )
        }
        .await;
        self.cleanup(&all).await;
        result
    }

    /// One on-demand and one spot launch: each reports its purchase option in the launch
    /// answer, in `describe_instance` and in the owner's listing; the spot launch sent again
    /// returns the same instance, and its token with the on-demand option is refused.
    async fn spot_launch(&self) -> Check {
        let owner = self.owner(Scenario::SpotLaunch, "")?;
        let on_demand = self.request(Scenario::SpotLaunch, &owner, 1)?;
        let spot = self
            .request(Scenario::SpotLaunch, &owner, 1)?
            .with_purchase(PurchaseOption::Spot);
        let mut all = Vec::new();
        let result = async {
            let mut want = Vec::new();
            for r in [&on_demand, &spot] {
                let i = self.launch(r).await?.remove(0);
                all.push(i.id.clone());
                ensure(i.purchase == r.purchase, || {
                    format!(
                        "{} launch answered instance {} as {}",
                        r.purchase, i.id, i.purchase
                    )
                })?;
                let seen = step("describe instance", self.p.describe_instance(&i.id).await)?;
                ensure(seen.purchase == r.purchase, || {
                    format!(
                        "instance {} launched {} shows {}",
                        i.id, r.purchase, seen.purchase
                    )
                })?;
                want.push((i.id, r.purchase));
            }
            let again = step(
                "spot launch with the same token",
                self.p.launch(&spot).await,
            )?;
            ensure(
                again.len() == 1 && again[0].id == want[1].0 && again[0].purchase.is_spot(),
                || format!("spot launch sent again returned {again:?}"),
            )?;
            expect_kind(
                "spot token with the on-demand option",
                self.p
                    .launch(&spot.clone().with_purchase(PurchaseOption::OnDemand))
                    .await,
                ErrorKind::InvalidRequest,
            )?;
            let listed = step("list owner", self.p.list_instances(&owner).await)?;
            for (id, purchase) in &want {
                let found = listed.iter().find(|i| &i.id == id);
                ensure(found.is_some_and(|i| i.purchase == *purchase), || {
                    format!("owner lists {found:?} for {id} launched {purchase}")
                })?;
            }
            Ok(())
        }
        .await;
        self.cleanup(&all).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, ManualSleep, SplitMix};
    use crate::fake::{FakeCloud, FaultConfig};
    use crate::layer::retry::{Retry, RetryPolicy};
    use crate::sim::{GroupSpec, SimCloud, SimConfig};

    fn sim_setup(config: SimConfig) -> (SimCloud, ManualClock, ConformanceConfig) {
        let (sim, clock) = SimCloud::with_manual_clock(config);
        sim.create_group(GroupSpec {
            desired: 1,
            ..GroupSpec::new("conformance", "m6i.large", 0, 4)
        })
        .unwrap();
        let cfg = ConformanceConfig {
            hibernate: true,
            ..ConformanceConfig::new(
                "conformance",
                "m6i.large",
                "m6i.xlarge",
                Arc::new(ManualSleep::new(clock.clone())),
            )
        };
        (sim, clock, cfg)
    }

    /// Ground truth after a run: nothing the suite created is still live, and the cloud created
    /// exactly what the suite asked for (no duplicate from retried launches).
    async fn assert_no_duplicate_no_leak(sim: &SimCloud, report: &ConformanceReport, base: u64) {
        assert_eq!(
            sim.launches(),
            base + report.expected_creations,
            "instances created vs asked"
        );
        for owner in &report.owners {
            let live: Vec<_> = sim
                .list_instances(owner)
                .await
                .unwrap()
                .into_iter()
                .filter(|i| i.state.is_live())
                .collect();
            assert!(live.is_empty(), "{owner} leaked {live:?}");
        }
    }

    #[tokio::test]
    async fn sim_should_pass_the_suite() {
        let (sim, _clock, cfg) = sim_setup(SimConfig::default());
        let base = sim.launches();
        let report = run_all(&sim, &cfg).await;
        report.assert_passed();
        assert_eq!(report.scenarios.len(), 7);
        assert_no_duplicate_no_leak(&sim, &report, base).await;
    }

    #[tokio::test]
    async fn fake_should_pass_the_suite() {
        let fake = FakeCloud::new();
        fake.create_group("conformance", "m6i.large", 0, 4);
        let cfg = ConformanceConfig::new(
            "conformance",
            "m6i.large",
            "m6i.xlarge",
            Arc::new(ManualSleep::new(ManualClock::at_unix(0))),
        );
        let report = run_all(&fake, &cfg).await;
        report.assert_passed();
        assert!(fake.calls().len() > 30);
    }

    /// 20 % of calls fail (throttling, 5xx, timeouts, dropped responses); behind the retry
    /// layer every scenario still converges with no duplicated and no lost instance.
    #[tokio::test]
    async fn suite_should_converge_under_twenty_percent_faults_behind_retry() {
        for seed in 0..8 {
            let (sim, clock, cfg) = sim_setup(SimConfig::default());
            let fake = FakeCloud::wrap(Arc::new(sim.clone()));
            fake.set_faults(FaultConfig::uniform(0.2, seed));
            let retried = Retry::new(
                fake.clone(),
                RetryPolicy {
                    max_attempts: 12,
                    ..RetryPolicy::default()
                },
                Arc::new(ManualSleep::new(clock.clone())),
                Arc::new(SplitMix::new(seed)),
            );
            let base = sim.launches();
            let report = run_all(&retried, &cfg).await;
            assert!(report.passed(), "seed {seed}: {report}");
            assert!(fake.injected() > 10, "seed {seed}: faults were injected");
            assert_no_duplicate_no_leak(&sim, &report, base).await;
        }
    }

    /// A broken cloud for the suite to catch: the sim, with every launch request rewritten by
    /// `.2` first; every other call passes through.
    struct RewriteLaunch<F>(&'static str, SimCloud, F);

    impl<F> fmt::Debug for RewriteLaunch<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_tuple("RewriteLaunch").field(&self.0).finish()
        }
    }

    #[async_trait::async_trait]
    impl<F> CloudProvider for RewriteLaunch<F>
    where
        F: Fn(&LaunchRequest) -> LaunchRequest + Send + Sync,
    {
        fn name(&self) -> &str {
            self.0
        }
        async fn describe_group(&self, g: &GroupId) -> crate::Result<Group> {
            self.1.describe_group(g).await
        }
        async fn scale_group(&self, g: &GroupId, n: u32) -> crate::Result<Group> {
            self.1.scale_group(g, n).await
        }
        async fn resize_group(&self, g: &GroupId, t: &InstanceType) -> crate::Result<Group> {
            self.1.resize_group(g, t).await
        }
        async fn launch(&self, r: &LaunchRequest) -> crate::Result<Vec<Instance>> {
            self.1.launch(&(self.2)(r)).await
        }
        async fn describe_instance(&self, id: &InstanceId) -> crate::Result<Instance> {
            self.1.describe_instance(id).await
        }
        async fn stop_instance(&self, id: &InstanceId, m: StopMode) -> crate::Result<Instance> {
            self.1.stop_instance(id, m).await
        }
        async fn start_instance(&self, id: &InstanceId) -> crate::Result<Instance> {
            self.1.start_instance(id).await
        }
        async fn resize_instance(
            &self,
            id: &InstanceId,
            t: &InstanceType,
        ) -> crate::Result<Instance> {
            self.1.resize_instance(id, t).await
        }
        async fn terminate_instance(&self, id: &InstanceId) -> crate::Result<Instance> {
            self.1.terminate_instance(id).await
        }
        async fn list_instances(&self, o: &Owner) -> crate::Result<Vec<Instance>> {
            self.1.list_instances(o).await
        }
        async fn instance_types(&self) -> crate::Result<Vec<crate::InstanceTypeInfo>> {
            self.1.instance_types().await
        }
        async fn prices(&self) -> crate::Result<Vec<crate::Price>> {
            self.1.prices().await
        }
    }

    #[tokio::test]
    async fn suite_should_catch_a_provider_that_duplicates_launches() {
        // A cloud that ignores idempotency tokens: every launch gets a fresh one.
        let (sim, _clock, cfg) = sim_setup(SimConfig::default());
        let n = AtomicU64::new(0);
        let broken = RewriteLaunch("forgetful", sim, move |r: &LaunchRequest| {
            let mut r = r.clone();
            let k = n.fetch_add(1, Ordering::SeqCst);
            r.token = IdempotencyToken::new(format!("{}-{k}", r.token)).unwrap();
            r
        });
        let report = run_some(&broken, &cfg, &[Scenario::IdempotentLaunch]).await;
        assert!(!report.passed());
        let why = report.failures()[0].failure.clone().unwrap();
        assert!(why.contains("second launch"), "{why}");
    }

    #[tokio::test]
    async fn suite_should_catch_a_provider_that_launches_everything_on_demand() {
        // A cloud that ignores the purchase option.
        let (sim, _clock, cfg) = sim_setup(SimConfig::default());
        let broken = RewriteLaunch("on-demand-only", sim, |r: &LaunchRequest| {
            r.clone().with_purchase(PurchaseOption::OnDemand)
        });
        let report = run_some(&broken, &cfg, &[Scenario::SpotLaunch]).await;
        let why = report.failures()[0].failure.clone().unwrap();
        assert!(why.contains("spot launch answered instance"), "{why}");
        assert!(why.ends_with("as on-demand"), "{why}");
    }

    #[tokio::test]
    async fn report_should_name_a_misconfigured_group() {
        let (sim, _clock, cfg) = sim_setup(SimConfig::default());
        let cfg = ConformanceConfig {
            group: GroupId::new("absent"),
            ..cfg
        };
        let report = run_some(&sim, &cfg, &[Scenario::ScaleUpDown]).await;
        let text = report.to_string();
        assert!(
            text.contains(
                "scale        FAILED: describe group: describe group: not found: group absent"
            ),
            "{text}"
        );
    }
}
