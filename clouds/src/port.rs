//! The `CloudProvider` port: the one async trait every cloud adapter, the `sim` cloud and the
//! `fake` implement, and that the layers decorate.
//!
//! The surface is small and fixed. Policy (what to scale, when to retry, how long to wait) lives
//! in the callers and in the [layers](crate::layer); implementations only perform calls and map
//! results onto the shared types and [`CloudError`](crate::CloudError) kinds.
//!
//! # Assumptions shared by every method
//! - Every method is idempotent: sending the same call twice has the effect of sending it once
//!   (`launch` through its token). So a caller that gets a retryable error
//!   ([`CloudError::is_retryable`](crate::CloudError::is_retryable): throttled, timed out,
//!   unavailable) may send the same call again, and should do so only through the
//!   [`retry`](crate::layer::retry) layer.
//! - Mutations are asynchronous in the cloud: a method returns once the cloud accepted the
//!   request, and the resulting state is observed later with `describe_*`/`list_instances`.
//! - Futures are `Send`, so they can be spawned on a multi-threaded runtime, and are safe to
//!   drop at any `.await` (the request was either sent or not; callers re-observe and re-issue).

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::types::{
    Group, GroupId, Instance, InstanceId, InstanceType, InstanceTypeInfo, LaunchRequest, Owner,
    Price, StopMode,
};

/// A cloud, seen through operations on managed groups and their instances.
///
/// See the [module docs](crate::port) for the assumptions every method shares.
#[async_trait]
pub trait CloudProvider: Send + Sync + std::fmt::Debug {
    /// Short name of the implementation (`sim`, `fake`, `aws`, `azure`, `gcp`), used in metrics,
    /// traces and reports.
    fn name(&self) -> &str;

    /// Observes a group: its type, bounds, desired capacity and live members.
    ///
    /// # Outcomes
    /// - `Ok(group)`: the current view; members may still be `Pending` after a scale-up.
    /// - `NotFound`: the group does not exist; the caller reports a configuration error and does
    ///   not retry.
    /// - retryable: the caller retries through the retry layer.
    async fn describe_group(&self, group: &GroupId) -> Result<Group>;

    /// Sets the group's desired capacity to `desired` members; the cloud launches or terminates
    /// members to match.
    ///
    /// # Outcomes
    /// - `Ok(group)`: accepted; `group.desired == desired`. The caller polls `describe_group`
    ///   until the members are running; it never assumes they are.
    /// - `InvalidRequest`: `desired` is outside `[min, max]`; the caller clamps its plan and
    ///   does not retry unchanged.
    /// - `InsufficientCapacity` / `Quota`: nothing changed; the caller tries another type
    ///   (`resize_group`) or location, or records the shortfall.
    /// - `NotFound`: the group is gone.
    /// - retryable: retry; scaling to the same number twice is a no-op.
    async fn scale_group(&self, group: &GroupId, desired: u32) -> Result<Group>;

    /// Changes the instance type the group launches from now on (launch template / scale set
    /// model / instance template). Existing members keep their type until replaced.
    ///
    /// # Outcomes
    /// - `Ok(group)`: accepted; `group.instance_type == instance_type`.
    /// - `InvalidRequest`: unknown type in this location; the caller picks another.
    /// - `NotFound`: the group is gone.
    /// - retryable: retry; resizing to the current type is a no-op.
    async fn resize_group(&self, group: &GroupId, instance_type: &InstanceType) -> Result<Group>;

    /// Launches `request.count` standalone instances tagged with the owner and token.
    ///
    /// # Outcomes
    /// - `Ok(instances)`: exactly `request.count` instances, usually `Pending`. A second call
    ///   with the same token returns the same instances and creates none.
    /// - `InsufficientCapacity` / `Quota`: nothing was created; the caller changes type or
    ///   location and uses a **new** token.
    /// - `InvalidRequest`: bad type, count 0, or the token was used with other parameters.
    /// - retryable: the launch may have happened; the caller retries **with the same token**,
    ///   which never duplicates.
    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>>;

    /// Observes one instance.
    ///
    /// # Outcomes
    /// - `Ok(instance)`: current state. A `Terminated` instance may still be visible for a while.
    /// - `NotFound`: it never existed or is long gone; the caller forgets it.
    /// - retryable: retry.
    async fn describe_instance(&self, id: &InstanceId) -> Result<Instance>;

    /// Stops (or hibernates) a running instance to keep it as warm capacity.
    ///
    /// # Outcomes
    /// - `Ok(instance)`: `Stopping` or already `Stopped`; the caller polls until `Stopped`.
    ///   Stopping a stopped instance is a no-op.
    /// - `IncorrectState`: it is pending or terminated; the caller waits (pending) or forgets it
    ///   (terminated).
    /// - `InvalidRequest`: hibernation not supported for this instance; the caller uses
    ///   [`StopMode::Stop`].
    /// - `NotFound`: forget it. retryable: retry.
    async fn stop_instance(&self, id: &InstanceId, mode: StopMode) -> Result<Instance>;

    /// Starts a stopped instance (releases warm capacity).
    ///
    /// # Outcomes
    /// - `Ok(instance)`: `Pending` or already `Running`; starting a running instance is a no-op.
    /// - `InsufficientCapacity`: the cloud cannot place it now; the caller launches elsewhere or
    ///   retries later (not in a tight loop).
    /// - `IncorrectState`: it is still stopping, or terminated; wait, or forget it.
    /// - `NotFound`: forget it. retryable: retry.
    async fn start_instance(&self, id: &InstanceId) -> Result<Instance>;

    /// Changes the type of a **stopped** instance (EC2's rule, applied by every implementation
    /// even where the cloud or its emulator is more lenient).
    ///
    /// # Outcomes
    /// - `Ok(instance)`: the type is changed; resizing to the current type is a no-op.
    /// - `IncorrectState`: not stopped; the caller stops it first.
    /// - `InvalidRequest`: unknown type. `NotFound`: forget it. retryable: retry.
    async fn resize_instance(
        &self,
        id: &InstanceId,
        instance_type: &InstanceType,
    ) -> Result<Instance>;

    /// Terminates an instance (standalone, or a group member; the group's desired capacity is
    /// decremented so it is not replaced).
    ///
    /// # Outcomes
    /// - `Ok(instance)`: `Terminated` (or `Stopping` on its way there). Terminating a terminated
    ///   instance is a no-op.
    /// - `NotFound`: already gone; callers treat it like `Ok` (callers retry until `Ok` or
    ///   `NotFound`).
    /// - retryable: retry.
    async fn terminate_instance(&self, id: &InstanceId) -> Result<Instance>;

    /// Lists every instance tagged with `owner` under [`OWNER_TAG`](crate::OWNER_TAG), in any
    /// state (recently terminated ones may appear), group members included. The orphan sweep
    /// terminates the live ones it does not know.
    ///
    /// # Outcomes
    /// - `Ok(list)`: sorted by id; possibly empty. Listings may lag a launch by a few seconds
    ///   on real clouds; the sweep spares instances launched recently.
    /// - retryable: retry.
    async fn list_instances(&self, owner: &Owner) -> Result<Vec<Instance>>;

    /// Instance types offered in the adapter's location(s).
    ///
    /// # Outcomes
    /// - `Ok(list)`: sorted by name.
    /// - `Unsupported`: the cloud does not expose it; the caller uses its configured catalog.
    /// - retryable: retry.
    async fn instance_types(&self) -> Result<Vec<InstanceTypeInfo>>;

    /// Hourly prices where the cloud exposes them through this API.
    ///
    /// # Outcomes
    /// - `Ok(list)`: sorted by type then location.
    /// - `Unsupported`: no price API here; the caller uses the pricing fetchers or its
    ///   configured catalog.
    /// - retryable: retry.
    async fn prices(&self) -> Result<Vec<Price>>;
}

macro_rules! forward_provider {
    ($($ptr:ty),*) => {$(
        #[async_trait]
        impl<P: CloudProvider + ?Sized> CloudProvider for $ptr {
            fn name(&self) -> &str {
                (**self).name()
            }
            async fn describe_group(&self, group: &GroupId) -> Result<Group> {
                (**self).describe_group(group).await
            }
            async fn scale_group(&self, group: &GroupId, desired: u32) -> Result<Group> {
                (**self).scale_group(group, desired).await
            }
            async fn resize_group(&self, group: &GroupId, t: &InstanceType) -> Result<Group> {
                (**self).resize_group(group, t).await
            }
            async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>> {
                (**self).launch(request).await
            }
            async fn describe_instance(&self, id: &InstanceId) -> Result<Instance> {
                (**self).describe_instance(id).await
            }
            async fn stop_instance(&self, id: &InstanceId, mode: StopMode) -> Result<Instance> {
                (**self).stop_instance(id, mode).await
            }
            async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
                (**self).start_instance(id).await
            }
            async fn resize_instance(&self, id: &InstanceId, t: &InstanceType)
                -> Result<Instance> {
                (**self).resize_instance(id, t).await
            }
            async fn terminate_instance(&self, id: &InstanceId) -> Result<Instance> {
                (**self).terminate_instance(id).await
            }
            async fn list_instances(&self, owner: &Owner) -> Result<Vec<Instance>> {
                (**self).list_instances(owner).await
            }
            async fn instance_types(&self) -> Result<Vec<InstanceTypeInfo>> {
                (**self).instance_types().await
            }
            async fn prices(&self) -> Result<Vec<Price>> {
                (**self).prices().await
            }
        }
    )*};
}

forward_provider!(Arc<P>, Box<P>, &P);

/// A shared, type-erased provider, as the controller and the provider hold it.
pub type DynProvider = Arc<dyn CloudProvider>;
