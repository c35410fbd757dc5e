//! The embedded default cloud: the clouds crate's `sim` on the controller's clock, optionally
//! persisted to a JSON file after every mutation (so a killed daemon restarts against the same
//! cloud, as it would against a real one).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use predictive_clouds::sim::{GroupSpec, SimCloud, SimConfig};
use predictive_clouds::{
    CloudProvider, Group, GroupId, Instance, InstanceId, InstanceType, InstanceTypeInfo,
    LaunchRequest, Owner, Price, StopMode, OWNER_TAG,
};

use crate::clock::Clock;
use crate::config::ValidWorkload;

/// The controller's clock seen as the clouds crate's clock.
#[derive(Debug, Clone)]
pub struct CloudClock(pub Arc<dyn Clock>);

impl predictive_clouds::clock::Clock for CloudClock {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.0.now().max(0) as u64)
    }
}

/// A sim cloud on `clock`, loaded from `state` when given and present.
///
/// # Errors
/// The sim's error when the state file exists but cannot be read.
pub fn sim(
    clock: Arc<dyn Clock>,
    state: Option<PathBuf>,
) -> Result<PersistedSim, predictive_clouds::sim::SimStoreError> {
    let cc: Arc<dyn predictive_clouds::clock::Clock> = Arc::new(CloudClock(clock));
    let cloud = match &state {
        Some(p) => SimCloud::load_or_new(p, SimConfig::default(), cc)?,
        None => SimCloud::new(SimConfig::default(), cc),
    };
    Ok(PersistedSim { cloud, path: state })
}

/// Creates the sim groups of `workloads` that do not exist yet (bounds `[0, max]`, owner-tagged).
///
/// # Errors
/// The sim's error naming the group (unknown instance type, for example).
pub fn ensure_groups(
    sim: &PersistedSim,
    owner: &str,
    workloads: &[ValidWorkload],
) -> predictive_clouds::Result<()> {
    for w in workloads.iter().filter(|w| w.params.cloud == "sim") {
        let p = &w.params;
        if futures_block(sim.cloud.describe_group(&GroupId::new(p.group.clone()))).is_err() {
            let mut spec = GroupSpec::new(&p.group, &p.instance_type, 0, p.max);
            spec.desired = p.min;
            spec.tags.insert(OWNER_TAG.into(), owner.into());
            spec.tags
                .insert(crate::run::WORKLOAD_TAG.into(), p.name.clone());
            sim.cloud.create_group(spec)?;
        }
    }
    sim.persist();
    Ok(())
}

/// Polls a future that never waits (the sim's methods do not), without a runtime.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// The sim, saved to its file after every mutating call.
#[derive(Debug, Clone)]
pub struct PersistedSim {
    /// The sim itself (clones share state).
    pub cloud: SimCloud,
    path: Option<PathBuf>,
}

impl PersistedSim {
    fn persist(&self) {
        if let Some(p) = &self.path {
            if let Err(e) = self.cloud.save(p) {
                tracing::error!(error = %e, "cannot save the sim state");
            }
        }
    }
}

#[async_trait::async_trait]
impl CloudProvider for PersistedSim {
    fn name(&self) -> &str {
        self.cloud.name()
    }
    async fn describe_group(&self, group: &GroupId) -> predictive_clouds::Result<Group> {
        self.cloud.describe_group(group).await
    }
    async fn scale_group(&self, group: &GroupId, desired: u32) -> predictive_clouds::Result<Group> {
        let r = self.cloud.scale_group(group, desired).await;
        self.persist();
        r
    }
    async fn resize_group(
        &self,
        group: &GroupId,
        t: &InstanceType,
    ) -> predictive_clouds::Result<Group> {
        let r = self.cloud.resize_group(group, t).await;
        self.persist();
        r
    }
    async fn launch(&self, request: &LaunchRequest) -> predictive_clouds::Result<Vec<Instance>> {
        let r = self.cloud.launch(request).await;
        self.persist();
        r
    }
    async fn describe_instance(&self, id: &InstanceId) -> predictive_clouds::Result<Instance> {
        self.cloud.describe_instance(id).await
    }
    async fn stop_instance(
        &self,
        id: &InstanceId,
        mode: StopMode,
    ) -> predictive_clouds::Result<Instance> {
        let r = self.cloud.stop_instance(id, mode).await;
        self.persist();
        r
    }
    async fn start_instance(&self, id: &InstanceId) -> predictive_clouds::Result<Instance> {
        let r = self.cloud.start_instance(id).await;
        self.persist();
        r
    }
    async fn resize_instance(
        &self,
        id: &InstanceId,
        t: &InstanceType,
    ) -> predictive_clouds::Result<Instance> {
        let r = self.cloud.resize_instance(id, t).await;
        self.persist();
        r
    }
    async fn terminate_instance(&self, id: &InstanceId) -> predictive_clouds::Result<Instance> {
        let r = self.cloud.terminate_instance(id).await;
        self.persist();
        r
    }
    async fn list_instances(&self, owner: &Owner) -> predictive_clouds::Result<Vec<Instance>> {
        self.cloud.list_instances(owner).await
    }
    async fn instance_types(&self) -> predictive_clouds::Result<Vec<InstanceTypeInfo>> {
        self.cloud.instance_types().await
    }
    async fn prices(&self) -> predictive_clouds::Result<Vec<Price>> {
        self.cloud.prices().await
    }
}
