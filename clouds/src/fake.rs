//! `fake`: a [`CloudProvider`] for tests that records every call and injects faults.
//!
//! By default it runs over an instant [`SimCloud`] (every transition completes by the next call),
//! so it behaves like a cloud; [`FakeCloud::wrap`] puts the same recording and fault injection in
//! front of any other provider (an adapter against its local emulator, for example).
//!
//! - **Recording**: every call (each attempt, faulted or not) is kept as a [`Call`]. Scenario
//!   tests state the calls they expect with [`Expected`] and check them with
//!   [`FakeCloud::verify`] or [`FakeCloud::wait_for`]; both fail on a missing or an extra call.
//! - **Faults**: [`FaultConfig`] injects throttling, server errors (5xx), timeouts and dropped
//!   responses at a rate, from a seeded generator (the same seed gives the same faults);
//!   [`FakeCloud::fail_next`] scripts one fault for the next call of an operation.
//!   A *dropped response* performs the call and then loses the answer: the caller sees an error
//!   although the action happened, which is what idempotency must survive.
//!
//! # Example
//! ```no_run
//! # async fn demo() {
//! use predictive_clouds::fake::{Expected, FakeCloud, FaultConfig};
//! use predictive_clouds::{CloudProvider, GroupId, Operation};
//!
//! let fake = FakeCloud::new();
//! fake.create_group("web", "m6i.large", 0, 10);
//! fake.set_faults(FaultConfig::uniform(0.2, 42));
//! let _ = fake.scale_group(&GroupId::new("web"), 3).await;
//! fake.verify(&[Expected::on(Operation::ScaleGroup, "web")]).unwrap();
//! # }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::clock::{Rng, Sleep, SplitMix, TokioSleep};
use crate::error::{CloudError, ErrorKind, Result};
use crate::port::{CloudProvider, DynProvider};
use crate::sim::{GroupSpec, SimCloud, SimConfig};
use crate::types::{
    Group, GroupId, Instance, InstanceId, InstanceType, InstanceTypeInfo, LaunchRequest, Operation,
    Owner, Price, StopMode,
};

/// A kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The call is refused with [`ErrorKind::Throttled`] and a 1 s retry-after hint; nothing
    /// happens.
    Throttle,
    /// The call fails with [`ErrorKind::Unavailable`] (a 5xx); nothing happens.
    ServerError,
    /// The call fails with [`ErrorKind::Timeout`]; nothing happens.
    Timeout,
    /// The call happens, then the answer is lost: [`ErrorKind::Unavailable`].
    DroppedResponse,
}

impl FaultKind {
    /// All four kinds.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Throttle,
        FaultKind::ServerError,
        FaultKind::Timeout,
        FaultKind::DroppedResponse,
    ];

    fn error(self, op: Operation) -> CloudError {
        match self {
            FaultKind::Throttle => CloudError::new(op, ErrorKind::Throttled)
                .with_detail("injected: rate exceeded")
                .with_retry_after(Duration::from_secs(1)),
            FaultKind::ServerError => CloudError::new(op, ErrorKind::Unavailable)
                .with_detail("injected: internal server error"),
            FaultKind::Timeout => {
                CloudError::new(op, ErrorKind::Timeout).with_detail("injected: request timed out")
            }
            FaultKind::DroppedResponse => CloudError::new(op, ErrorKind::Unavailable)
                .with_detail("injected: connection reset after the request was sent"),
        }
    }
}

/// Random fault injection settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultConfig {
    /// Probability that a call is faulted, in `[0, 1]`.
    pub rate: f64,
    /// Kinds to draw from, uniformly (empty means no faults).
    pub kinds: Vec<FaultKind>,
    /// Operations to fault (empty means all).
    pub operations: Vec<Operation>,
    /// Seed of the generator.
    pub seed: u64,
}

impl FaultConfig {
    /// No faults.
    pub fn none() -> Self {
        FaultConfig {
            rate: 0.0,
            kinds: Vec::new(),
            operations: Vec::new(),
            seed: 0,
        }
    }

    /// All four kinds on all operations at `rate`, seeded.
    pub fn uniform(rate: f64, seed: u64) -> Self {
        FaultConfig {
            rate,
            kinds: FaultKind::ALL.to_vec(),
            operations: Vec::new(),
            seed,
        }
    }
}

/// How a recorded call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The inner provider answered `Ok`.
    Ok,
    /// The inner provider answered with an error of this kind.
    Failed(ErrorKind),
    /// A fault was injected (for [`FaultKind::DroppedResponse`] the call did happen).
    Injected(FaultKind),
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Operation.
    pub operation: Operation,
    /// Its main argument: group id, instance id, launch token, owner; empty for catalog calls.
    pub target: String,
    /// How it ended.
    pub outcome: CallOutcome,
}

/// A call a scenario expects: an operation, and optionally its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Operation.
    pub operation: Operation,
    /// Target, or `None` for any.
    pub target: Option<String>,
}

impl Expected {
    /// Any call of `operation`.
    pub fn call(operation: Operation) -> Self {
        Expected {
            operation,
            target: None,
        }
    }

    /// A call of `operation` on `target`.
    pub fn on(operation: Operation, target: impl Into<String>) -> Self {
        Expected {
            operation,
            target: Some(target.into()),
        }
    }

    fn matches(&self, call: &Call) -> bool {
        self.operation == call.operation && self.target.as_deref().is_none_or(|t| t == call.target)
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Some(t) => write!(f, "{}({t})", self.operation.as_str()),
            None => write!(f, "{}(*)", self.operation.as_str()),
        }
    }
}

/// The recorded calls differ from the expected ones.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("calls differ from the scenario at call {position}: missing [{}], extra [{}]",
    list(.missing), list(.extra.iter().map(|c| format!("{}({})", c.operation.as_str(), c.target))))]
#[non_exhaustive]
pub struct CallMismatch {
    /// Index of the first difference.
    pub position: usize,
    /// Expected calls from that point that did not happen.
    pub missing: Vec<Expected>,
    /// Recorded calls from that point that were not expected.
    pub extra: Vec<Call>,
}

fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug)]
/// Everything a fake shares between its clones.
struct FakeState {
    calls: Vec<Call>,
    faults: FaultConfig,
    rng: SplitMix,
    scripted: VecDeque<(Operation, FaultKind)>,
    latency: BTreeMap<Operation, Duration>,
}

/// The recording, fault-injecting provider. Clones share calls, faults and the inner cloud.
#[derive(Debug, Clone)]
pub struct FakeCloud {
    inner: DynProvider,
    sim: Option<SimCloud>,
    state: Arc<Mutex<FakeState>>,
    notify: Arc<Notify>,
    sleep: Arc<dyn Sleep>,
}

impl Default for FakeCloud {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeCloud {
    /// A fake over an instant [`SimCloud`] with the default catalog, without faults.
    pub fn new() -> Self {
        let (sim, _clock) = SimCloud::with_manual_clock(SimConfig::instant());
        let mut fake = Self::wrap(Arc::new(sim.clone()));
        fake.sim = Some(sim);
        fake
    }

    /// Recording and fault injection in front of any provider.
    pub fn wrap(inner: DynProvider) -> Self {
        FakeCloud {
            inner,
            sim: None,
            state: Arc::new(Mutex::new(FakeState {
                calls: Vec::new(),
                faults: FaultConfig::none(),
                rng: SplitMix::new(0),
                scripted: VecDeque::new(),
                latency: BTreeMap::new(),
            })),
            notify: Arc::new(Notify::new()),
            sleep: Arc::new(TokioSleep),
        }
    }

    /// Uses `sleep` for injected latency (default: the tokio timer).
    pub fn with_sleep(mut self, sleep: Arc<dyn Sleep>) -> Self {
        self.sleep = sleep;
        self
    }

    /// The sim behind a fake made with [`new`](Self::new) (`None` after [`wrap`](Self::wrap)).
    pub fn sim(&self) -> Option<&SimCloud> {
        self.sim.as_ref()
    }

    /// Creates a group in the inner sim (setup, not recorded).
    ///
    /// # Panics
    /// When the fake wraps another provider, or the group cannot be created (duplicate id,
    /// unknown type, bounds): a broken test setup.
    pub fn create_group(&self, id: &str, instance_type: &str, min: u32, max: u32) -> Group {
        let sim = self
            .sim
            .as_ref()
            .expect("create_group needs a fake made with FakeCloud::new");
        sim.create_group(GroupSpec::new(id, instance_type, min, max))
            .unwrap_or_else(|e| panic!("cannot create fake group {id}: {e}"))
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the random fault settings (and reseeds the generator).
    pub fn set_faults(&self, faults: FaultConfig) {
        let mut s = self.lock();
        s.rng = SplitMix::new(faults.seed);
        s.faults = faults;
    }

    /// Makes the next call of `operation` fail with `kind` (queued; one per call).
    pub fn fail_next(&self, operation: Operation, kind: FaultKind) {
        self.lock().scripted.push_back((operation, kind));
    }

    /// Delays every call of `operation` by `latency` (through the fake's sleep).
    pub fn set_latency(&self, operation: Operation, latency: Duration) {
        self.lock().latency.insert(operation, latency);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls of one operation.
    pub fn calls_of(&self, operation: Operation) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.operation == operation)
            .cloned()
            .collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Number of faults injected so far.
    pub fn injected(&self) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| matches!(c.outcome, CallOutcome::Injected(_)))
            .count()
    }

    /// Checks that the recorded calls are exactly `expected`, in order.
    ///
    /// # Errors
    /// [`CallMismatch`] listing the missing and the extra calls from the first difference.
    pub fn verify(&self, expected: &[Expected]) -> std::result::Result<(), CallMismatch> {
        let calls = self.calls();
        let position = calls
            .iter()
            .zip(expected)
            .take_while(|(c, e)| e.matches(c))
            .count();
        if position == calls.len() && position == expected.len() {
            return Ok(());
        }
        Err(CallMismatch {
            position,
            missing: expected[position..].to_vec(),
            extra: calls[position..].to_vec(),
        })
    }

    /// Waits until at least `expected.len()` calls were recorded or `timeout` passed (on the
    /// tokio timer, so paused time works), then [`verify`](Self::verify)s.
    ///
    /// # Errors
    /// [`CallMismatch`] when calls are missing at the deadline, or differ, or are extra.
    pub async fn wait_for(
        &self,
        expected: &[Expected],
        timeout: Duration,
    ) -> std::result::Result<(), CallMismatch> {
        let want = expected.len();
        let _ = tokio::time::timeout(timeout, async {
            loop {
                let notified = self.notify.notified();
                if self.lock().calls.len() >= want {
                    return;
                }
                notified.await;
            }
        })
        .await;
        self.verify(expected)
    }

    /// The fault for this call, if any: a scripted fault for the operation first (in the
    /// order queued), otherwise a random draw. Draws happen only for operations that can be
    /// faulted, so enabling faults on one operation does not shift the others' sequence.
    fn pick_fault(&self, op: Operation) -> Option<FaultKind> {
        let mut s = self.lock();
        if let Some(pos) = s.scripted.iter().position(|(o, _)| *o == op) {
            return s.scripted.remove(pos).map(|(_, k)| k);
        }
        let f = &s.faults;
        if f.rate <= 0.0 || f.kinds.is_empty() {
            return None;
        }
        if !f.operations.is_empty() && !f.operations.contains(&op) {
            return None;
        }
        if s.rng.next_f64() >= s.faults.rate {
            return None;
        }
        let i = (s.rng.next_u64() % s.faults.kinds.len() as u64) as usize;
        Some(s.faults.kinds[i])
    }

    /// Appends a call and wakes every [`wait_for`](Self::wait_for).
    fn record(&self, operation: Operation, target: String, outcome: CallOutcome) {
        self.lock().calls.push(Call {
            operation,
            target,
            outcome,
        });
        self.notify.notify_waiters();
    }

    /// One call: latency, then either the inner call (recorded with its outcome) or a fault
    /// (recorded as injected). The inner future is created by the caller but only polled here,
    /// so a fault other than a dropped response never reaches the inner provider.
    async fn run<'a, T, Fut>(&'a self, op: Operation, target: String, call: Fut) -> Result<T>
    where
        Fut: Future<Output = Result<T>> + Send + 'a,
    {
        let latency = self.lock().latency.get(&op).copied();
        if let Some(d) = latency {
            self.sleep.sleep(d).await;
        }
        match self.pick_fault(op) {
            None => {
                let out = call.await;
                let outcome = match &out {
                    Ok(_) => CallOutcome::Ok,
                    Err(e) => CallOutcome::Failed(e.kind()),
                };
                self.record(op, target, outcome);
                out
            }
            Some(kind) => {
                if kind == FaultKind::DroppedResponse {
                    // The action happens; only the answer is lost.
                    let _ = call.await;
                }
                self.record(op, target, CallOutcome::Injected(kind));
                Err(kind.error(op))
            }
        }
    }
}

#[async_trait]
impl CloudProvider for FakeCloud {
    fn name(&self) -> &str {
        "fake"
    }

    async fn describe_group(&self, group: &GroupId) -> Result<Group> {
        self.run(
            Operation::DescribeGroup,
            group.to_string(),
            self.inner.describe_group(group),
        )
        .await
    }

    async fn scale_group(&self, group: &GroupId, desired: u32) -> Result<Group> {
        self.run(
            Operation::ScaleGroup,
            group.to_string(),
            self.inner.scale_group(group, desired),
        )
        .await
    }

    async fn resize_group(&self, group: &GroupId, instance_type: &InstanceType) -> Result<Group> {
        self.run(
            Operation::ResizeGroup,
            group.to_string(),
            self.inner.resize_group(group, instance_type),
        )
        .await
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>> {
        self.run(
            Operation::Launch,
            request.token.to_string(),
            self.inner.launch(request),
        )
        .await
    }

    async fn describe_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.run(
            Operation::DescribeInstance,
            id.to_string(),
            self.inner.describe_instance(id),
        )
        .await
    }

    async fn stop_instance(&self, id: &InstanceId, mode: StopMode) -> Result<Instance> {
        self.run(
            Operation::StopInstance,
            id.to_string(),
            self.inner.stop_instance(id, mode),
        )
        .await
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.run(
            Operation::StartInstance,
            id.to_string(),
            self.inner.start_instance(id),
        )
        .await
    }

    async fn resize_instance(
        &self,
        id: &InstanceId,
        instance_type: &InstanceType,
    ) -> Result<Instance> {
        self.run(
            Operation::ResizeInstance,
            id.to_string(),
            self.inner.resize_instance(id, instance_type),
        )
        .await
    }

    async fn terminate_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.run(
            Operation::TerminateInstance,
            id.to_string(),
            self.inner.terminate_instance(id),
        )
        .await
    }

    async fn list_instances(&self, owner: &Owner) -> Result<Vec<Instance>> {
        self.run(
            Operation::ListInstances,
            owner.to_string(),
            self.inner.list_instances(owner),
        )
        .await
    }

    async fn instance_types(&self) -> Result<Vec<InstanceTypeInfo>> {
        self.run(
            Operation::InstanceTypes,
            String::new(),
            self.inner.instance_types(),
        )
        .await
    }

    async fn prices(&self) -> Result<Vec<Price>> {
        self.run(Operation::Prices, String::new(), self.inner.prices())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{IdempotencyToken, InstanceState};

    fn launch_req(token: &str) -> LaunchRequest {
        LaunchRequest::new(
            IdempotencyToken::new(token).unwrap(),
            Owner::new("o").unwrap(),
            "m6i.large",
            1,
        )
    }

    #[tokio::test]
    async fn scenario_should_fail_on_missing_and_extra_calls() {
        let fake = FakeCloud::new();
        fake.create_group("web", "m6i.large", 0, 5);
        let g = GroupId::new("web");
        fake.describe_group(&g).await.unwrap();
        fake.scale_group(&g, 2).await.unwrap();
        let ok = [
            Expected::on(Operation::DescribeGroup, "web"),
            Expected::call(Operation::ScaleGroup),
        ];
        fake.verify(&ok).unwrap();
        let missing = fake
            .verify(&[
                Expected::on(Operation::DescribeGroup, "web"),
                Expected::call(Operation::ScaleGroup),
                Expected::call(Operation::DescribeGroup),
            ])
            .unwrap_err();
        assert_eq!(missing.position, 2);
        assert_eq!(missing.missing.len(), 1);
        let extra = fake
            .verify(&[Expected::on(Operation::DescribeGroup, "web")])
            .unwrap_err();
        assert_eq!(extra.extra.len(), 1);
        assert_eq!(
            extra.to_string(),
            "calls differ from the scenario at call 1: missing [], extra [scale_group(web)]"
        );
        let wrong = fake
            .verify(&[
                Expected::on(Operation::DescribeGroup, "api"),
                Expected::call(Operation::ScaleGroup),
            ])
            .unwrap_err();
        assert_eq!(wrong.position, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_should_return_once_calls_arrive_or_time_out() {
        let fake = FakeCloud::new();
        fake.create_group("web", "m6i.large", 0, 5);
        let f2 = fake.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            f2.scale_group(&GroupId::new("web"), 1).await.unwrap();
        });
        fake.wait_for(
            &[Expected::call(Operation::ScaleGroup)],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        task.await.unwrap();
        let err = fake
            .wait_for(
                &[
                    Expected::call(Operation::ScaleGroup),
                    Expected::call(Operation::DescribeGroup),
                ],
                Duration::from_secs(10),
            )
            .await
            .unwrap_err();
        assert_eq!(err.missing, vec![Expected::call(Operation::DescribeGroup)]);
    }

    #[tokio::test]
    async fn dropped_response_should_perform_the_action() {
        let fake = FakeCloud::new();
        fake.fail_next(Operation::Launch, FaultKind::DroppedResponse);
        let err = fake.launch(&launch_req("t")).await.unwrap_err();
        assert!(err.is_retryable());
        let sim = fake.sim().unwrap();
        assert_eq!(sim.launches(), 1, "the launch happened");
        // The retry with the same token returns the same instance and creates nothing.
        let again = fake.launch(&launch_req("t")).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(sim.launches(), 1);
        assert_eq!(again[0].state, InstanceState::Running, "instant sim");
    }

    #[tokio::test]
    async fn other_faults_should_not_perform_the_action() {
        let fake = FakeCloud::new();
        for (i, kind) in [
            FaultKind::Throttle,
            FaultKind::ServerError,
            FaultKind::Timeout,
        ]
        .into_iter()
        .enumerate()
        {
            fake.fail_next(Operation::Launch, kind);
            let err = fake
                .launch(&launch_req(&format!("t{i}")))
                .await
                .unwrap_err();
            assert!(err.is_retryable());
            assert_eq!(err.is_throttled(), kind == FaultKind::Throttle);
        }
        assert_eq!(fake.sim().unwrap().launches(), 0);
        assert_eq!(fake.injected(), 3);
    }

    #[tokio::test]
    async fn random_faults_should_follow_the_rate_and_the_seed() {
        let run = |seed| async move {
            let fake = FakeCloud::new();
            fake.set_faults(FaultConfig::uniform(0.2, seed));
            for _ in 0..1000 {
                let _ = fake.prices().await;
            }
            fake.calls()
        };
        let a = run(9).await;
        assert_eq!(a, run(9).await, "same seed, same faults");
        let faulted = a
            .iter()
            .filter(|c| matches!(c.outcome, CallOutcome::Injected(_)))
            .count();
        assert!(
            (150..=250).contains(&faulted),
            "{faulted} faults in 1000 calls at 20 %"
        );
        for kind in FaultKind::ALL {
            assert!(a.iter().any(|c| c.outcome == CallOutcome::Injected(kind)));
        }
    }

    #[tokio::test]
    async fn faults_should_target_only_the_listed_operations() {
        let fake = FakeCloud::new();
        fake.set_faults(FaultConfig {
            operations: vec![Operation::Prices],
            ..FaultConfig::uniform(1.0, 1)
        });
        assert!(fake.prices().await.is_err());
        assert!(fake.instance_types().await.is_ok());
    }
}
