//! The EC2 adapter: instances, launch templates and Auto Scaling groups (with warm pools) through
//! `aws-sdk-ec2` and `aws-sdk-autoscaling`.
//!
//! The adapter only calls the SDK and maps results and errors; retries, timeouts policy and rate
//! limits are layers around the port. The SDK's own retries are turned off so that the shared
//! retry layer sees every failure.
//!
//! # EC2 rules the adapter applies even where an emulator is lenient
//! - `resize_instance` only changes a **stopped** instance (`IncorrectState` otherwise); the
//!   caller stops it, resizes, then starts it (stop → `ModifyInstanceAttribute` → start).
//! - `scale_group` refuses a desired capacity outside the group's `[min, max]`.
//! - `stop_instance` refuses pending or terminated instances; `start_instance` refuses stopping
//!   or terminated ones.
//! - `launch` sends the token as `ClientToken` **and** first looks for instances already tagged
//!   with it, so a retried launch never duplicates even on an endpoint that ignores
//!   `ClientToken`.
//!
//! # Groups
//! A group is an Auto Scaling group by name. Its instance type is the one of the launch template
//! version it uses; `resize_group` creates a new template version with the new type and points
//! the group at it. Warm pool members are not counted in [`Group::instances`]; see
//! [`AwsProvider::put_warm_pool`] and [`AwsProvider::warm_pool`].
//!
//! # Tagged groups
//! A group id `tag:KEY=VALUE` names the standalone instances tagged `KEY=VALUE` instead of an
//! Auto Scaling group, when [`AwsParams::tagged_groups`] configures it ([`TaggedGroup`]: type,
//! bounds, owner, image). Its members are the tagged instances that are pending, running,
//! stopping or stopped; `desired` is their number.
//! - `scale_group` launches the missing members (tagged `KEY=VALUE`, with the owner and an
//!   idempotency token derived from the group, the target and the current members, so a retried
//!   scale sends the same token and creates nothing new), or terminates the newest extra ones.
//! - `resize_group` changes the type of later launches (kept by this adapter; after a restart
//!   the newest member's type, else the configured one).
//! - Members carry the group in [`Instance::group`], so an orphan sweep spares them.

mod error;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_autoscaling as asg;
use aws_sdk_ec2 as ec2;

use self::error::map_sdk;
pub use self::error::Error;
use crate::error::{CloudError, ErrorKind, Result};
use crate::port::CloudProvider;
use crate::types::{
    Group, GroupId, IdempotencyToken, Instance, InstanceId, InstanceState, InstanceType,
    InstanceTypeInfo, LaunchRequest, Operation, Owner, Price, PurchaseOption, StopMode, Tags,
    OWNER_TAG, TOKEN_TAG,
};

/// Tag EC2 Auto Scaling puts on its members.
const ASG_NAME_TAG: &str = "aws:autoscaling:groupName";
/// EC2 state reason of a hibernated instance.
const HIBERNATE_REASON: &str = "Client.UserInitiatedHibernate";

/// Where the adapter's credentials come from.
#[derive(Clone, Default)]
pub enum AwsCredentials {
    /// The SDK's default chain: environment, shared profile, web identity, ECS/EC2 metadata.
    #[default]
    DefaultChain,
    /// A fixed key pair (tests against a local endpoint).
    Static {
        /// Access key id.
        access_key_id: String,
        /// Secret access key (never printed).
        secret_access_key: String,
    },
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AwsCredentials::DefaultChain => f.write_str("DefaultChain"),
            AwsCredentials::Static { .. } => f.write_str("Static { .. }"),
        }
    }
}

/// Unchecked settings of the AWS adapter; [`check`](AwsParams::check) them into [`ValidAwsParams`].
#[derive(Debug, Clone)]
pub struct AwsParams {
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// Endpoint override for every service (a local emulator); `None` uses AWS.
    pub endpoint_url: Option<String>,
    /// Credentials source.
    pub credentials: AwsCredentials,
    /// AMI for standalone launches without a `template_group`.
    pub image_id: Option<String>,
    /// Subnet for standalone launches without a `template_group`.
    pub subnet_id: Option<String>,
    /// Timeout of one HTTP attempt (the shared timeout layer bounds the whole call).
    pub attempt_timeout: Duration,
    /// Groups of tagged standalone instances, by id (`tag:KEY=VALUE`); see the module docs.
    pub tagged_groups: BTreeMap<GroupId, TaggedGroup>,
}

/// Prefix of the id of a group of tagged standalone instances: `tag:KEY=VALUE`.
pub const TAGGED_GROUP_PREFIX: &str = "tag:";

/// A group of standalone instances defined by a tag (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedGroup {
    /// Type of new members (until `resize_group`).
    pub instance_type: InstanceType,
    /// Smallest size `scale_group` accepts.
    pub min: u32,
    /// Largest size `scale_group` accepts.
    pub max: u32,
    /// Owner written on new members (the orphan sweep lists them by it).
    pub owner: Owner,
    /// AMI of new members (default: [`AwsParams::image_id`]).
    pub image_id: Option<String>,
    /// Subnet of new members (default: [`AwsParams::subnet_id`]).
    pub subnet_id: Option<String>,
    /// Availability zone of new members (default: EC2's choice).
    pub location: Option<String>,
}

impl TaggedGroup {
    /// New members of `instance_type` owned by `owner`, between `min` and `max`, with the
    /// adapter's image and subnet.
    pub fn new(instance_type: impl Into<InstanceType>, min: u32, max: u32, owner: Owner) -> Self {
        TaggedGroup {
            instance_type: instance_type.into(),
            min,
            max,
            owner,
            image_id: None,
            subnet_id: None,
            location: None,
        }
    }
}

/// The `(KEY, VALUE)` of a tagged group id `tag:KEY=VALUE`, if it is one.
pub fn parse_tagged_group(id: &GroupId) -> Option<(&str, &str)> {
    let (k, v) = id
        .as_str()
        .strip_prefix(TAGGED_GROUP_PREFIX)?
        .split_once('=')?;
    (!k.is_empty() && !v.is_empty()).then_some((k, v))
}

impl AwsParams {
    /// Settings for `region` with the default credential chain and a 30 s attempt timeout.
    pub fn new(region: impl Into<String>) -> Self {
        AwsParams {
            region: region.into(),
            endpoint_url: None,
            credentials: AwsCredentials::DefaultChain,
            image_id: None,
            subnet_id: None,
            attempt_timeout: Duration::from_secs(30),
            tagged_groups: BTreeMap::new(),
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error`] naming the bad field: empty region, endpoint that is not an http(s) URL, zero
    /// timeout, empty static credentials.
    pub fn check(self) -> std::result::Result<ValidAwsParams, Error> {
        if self.region.trim().is_empty() {
            return Err(Error::EmptyRegion);
        }
        if let Some(url) = &self.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::BadEndpoint { url: url.clone() });
            }
        }
        if self.attempt_timeout.is_zero() {
            return Err(Error::ZeroTimeout);
        }
        if let AwsCredentials::Static {
            access_key_id,
            secret_access_key,
        } = &self.credentials
        {
            if access_key_id.is_empty() || secret_access_key.is_empty() {
                return Err(Error::EmptyCredentials);
            }
        }
        for (id, g) in &self.tagged_groups {
            let bad = |reason: String| Error::BadTaggedGroup {
                group: id.to_string(),
                reason,
            };
            if parse_tagged_group(id).is_none() {
                return Err(bad(format!(
                    "the id must read {TAGGED_GROUP_PREFIX}KEY=VALUE"
                )));
            }
            if g.min > g.max {
                return Err(bad(format!("min {} is above max {}", g.min, g.max)));
            }
            if g.image_id.is_none() && self.image_id.is_none() {
                return Err(bad("no image: set its image_id or the adapter's".into()));
            }
        }
        Ok(ValidAwsParams(self))
    }
}

/// Checked settings of the AWS adapter.
#[derive(Debug, Clone)]
pub struct ValidAwsParams(AwsParams);

impl ValidAwsParams {
    /// The settings.
    pub fn get(&self) -> &AwsParams {
        &self.0
    }
}

/// State of the instances an Auto Scaling warm pool keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmPoolState {
    /// Stopped instances (EBS storage billed only).
    Stopped,
    /// Hibernated instances.
    Hibernated,
    /// Running instances.
    Running,
}

/// An Auto Scaling warm pool as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmPool {
    /// Minimum number of instances kept in the pool.
    pub min_size: u32,
    /// Maximum of group plus pool instances (`None`: the group's max).
    pub max_group_prepared_capacity: Option<u32>,
    /// State the pooled instances are kept in.
    pub state: Option<WarmPoolState>,
    /// Pooled instances (ids).
    pub instances: Vec<InstanceId>,
}

/// The EC2 / Auto Scaling adapter.
#[derive(Debug, Clone)]
pub struct AwsProvider {
    ec2: ec2::Client,
    asg: asg::Client,
    params: ValidAwsParams,
    /// Types set by `resize_group` on tagged groups.
    tagged_types: Arc<Mutex<BTreeMap<GroupId, InstanceType>>>,
}

impl AwsProvider {
    /// Builds the SDK clients (loading the default credential chain when asked).
    ///
    /// No call is made here; a wrong endpoint or credential shows on the first call.
    pub async fn connect(params: ValidAwsParams) -> Self {
        let p = params.get();
        let retry = ec2::config::retry::RetryConfig::disabled();
        let timeout = ec2::config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(p.attempt_timeout)
            .connect_timeout(p.attempt_timeout.min(Duration::from_secs(10)))
            .build();
        let region = ec2::config::Region::new(p.region.clone());
        let (mut e, mut a) = match &p.credentials {
            AwsCredentials::DefaultChain => {
                let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(region.clone())
                    .load()
                    .await;
                (
                    ec2::config::Builder::from(&shared),
                    asg::config::Builder::from(&shared),
                )
            }
            AwsCredentials::Static {
                access_key_id,
                secret_access_key,
            } => {
                let creds = ec2::config::Credentials::new(
                    access_key_id,
                    secret_access_key,
                    None,
                    None,
                    "predictive-static",
                );
                (
                    ec2::config::Builder::new()
                        .behavior_version(ec2::config::BehaviorVersion::latest())
                        .credentials_provider(creds.clone()),
                    asg::config::Builder::new()
                        .behavior_version(asg::config::BehaviorVersion::latest())
                        .credentials_provider(creds),
                )
            }
        };
        e = e
            .region(region.clone())
            .retry_config(retry.clone())
            .timeout_config(timeout.clone());
        a = a.region(region).retry_config(retry).timeout_config(timeout);
        if let Some(url) = &p.endpoint_url {
            e = e.endpoint_url(url);
            a = a.endpoint_url(url);
        }
        AwsProvider {
            ec2: ec2::Client::from_conf(e.build()),
            asg: asg::Client::from_conf(a.build()),
            params,
            tagged_types: Arc::default(),
        }
    }

    /// Creates or updates the group's warm pool (pre-initialised stopped, hibernated or running
    /// instances that scale-outs draw from).
    ///
    /// # Errors
    /// `NotFound` when the group does not exist, `InvalidRequest` for sizes the group refuses,
    /// retryable kinds otherwise.
    pub async fn put_warm_pool(
        &self,
        group: &GroupId,
        min_size: u32,
        max_group_prepared_capacity: Option<u32>,
        state: WarmPoolState,
    ) -> Result<WarmPool> {
        let op = Operation::ScaleGroup;
        self.asg_group(op, group).await?;
        let pool_state = match state {
            WarmPoolState::Stopped => asg::types::WarmPoolState::Stopped,
            WarmPoolState::Hibernated => asg::types::WarmPoolState::Hibernated,
            WarmPoolState::Running => asg::types::WarmPoolState::Running,
        };
        let mut call = self
            .asg
            .put_warm_pool()
            .auto_scaling_group_name(group.as_str())
            .min_size(to_i32(op, min_size)?)
            .pool_state(pool_state);
        if let Some(max) = max_group_prepared_capacity {
            call = call.max_group_prepared_capacity(to_i32(op, max)?);
        }
        call.send().await.map_err(|e| map_sdk(op, e))?;
        self.warm_pool(group).await?.ok_or_else(|| {
            CloudError::new(op, ErrorKind::Other).with_detail("warm pool missing after put")
        })
    }

    /// The group's warm pool, if it has one.
    ///
    /// # Errors
    /// `NotFound` when the group does not exist, retryable kinds otherwise.
    pub async fn warm_pool(&self, group: &GroupId) -> Result<Option<WarmPool>> {
        let op = Operation::DescribeGroup;
        let out = self
            .asg
            .describe_warm_pool()
            .auto_scaling_group_name(group.as_str())
            .send()
            .await
            .map_err(|e| map_sdk(op, e))?;
        let Some(cfg) = out.warm_pool_configuration() else {
            return Ok(None);
        };
        let state = cfg.pool_state().and_then(|s| match s {
            asg::types::WarmPoolState::Stopped => Some(WarmPoolState::Stopped),
            asg::types::WarmPoolState::Hibernated => Some(WarmPoolState::Hibernated),
            asg::types::WarmPoolState::Running => Some(WarmPoolState::Running),
            _ => None,
        });
        let mut instances: Vec<InstanceId> = out
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(InstanceId::from))
            .collect();
        instances.sort();
        Ok(Some(WarmPool {
            min_size: cfg.min_size().unwrap_or(0).max(0) as u32,
            max_group_prepared_capacity: cfg
                .max_group_prepared_capacity()
                .filter(|m| *m >= 0)
                .map(|m| m as u32),
            state,
            instances,
        }))
    }

    async fn asg_group(
        &self,
        op: Operation,
        group: &GroupId,
    ) -> Result<asg::types::AutoScalingGroup> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group.as_str())
            .send()
            .await
            .map_err(|e| map_sdk(op, e))?;
        out.auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(group.as_str()))
            .cloned()
            .ok_or_else(|| CloudError::not_found(op, format!("auto scaling group {group}")))
    }

    /// The launch template a group uses: (template id or name, version).
    fn group_template(
        op: Operation,
        g: &asg::types::AutoScalingGroup,
    ) -> Result<asg::types::LaunchTemplateSpecification> {
        g.launch_template()
            .or_else(|| {
                g.mixed_instances_policy()
                    .and_then(|m| m.launch_template())
                    .and_then(|t| t.launch_template_specification())
            })
            .cloned()
            .ok_or_else(|| {
                CloudError::invalid(
                    op,
                    format!(
                        "auto scaling group {} has no launch template",
                        g.auto_scaling_group_name().unwrap_or("?")
                    ),
                )
            })
    }

    /// The launch template version a spec points at.
    async fn template_version(
        &self,
        op: Operation,
        spec: &asg::types::LaunchTemplateSpecification,
    ) -> Result<ec2::types::LaunchTemplateVersion> {
        let version = spec.version().unwrap_or("$Default").to_owned();
        let mut call = self
            .ec2
            .describe_launch_template_versions()
            .versions(version.clone());
        if let Some(id) = spec.launch_template_id() {
            call = call.launch_template_id(id);
        } else if let Some(name) = spec.launch_template_name() {
            call = call.launch_template_name(name);
        }
        let out = call.send().await.map_err(|e| map_sdk(op, e))?;
        out.launch_template_versions()
            .first()
            .cloned()
            .ok_or_else(|| CloudError::not_found(op, format!("launch template version {version}")))
    }

    async fn group_view(&self, op: Operation, g: &asg::types::AutoScalingGroup) -> Result<Group> {
        let name = g.auto_scaling_group_name().unwrap_or_default();
        let spec = Self::group_template(op, g)?;
        let version = self.template_version(op, &spec).await?;
        let instance_type = version
            .launch_template_data()
            .and_then(|d| d.instance_type())
            .map(|t| InstanceType::new(t.as_str()))
            .ok_or_else(|| {
                CloudError::invalid(
                    op,
                    format!("launch template of group {name} sets no instance type"),
                )
            })?;
        let ids: Vec<String> = g
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        let mut instances = if ids.is_empty() {
            Vec::new()
        } else {
            self.describe_many(op, Some(ids), Vec::new()).await?
        };
        instances.retain(|i| i.state.is_live());
        let location = g.availability_zones().join(",");
        Ok(Group {
            id: GroupId::new(name),
            location,
            instance_type,
            min: g.min_size().unwrap_or(0).max(0) as u32,
            max: g.max_size().unwrap_or(0).max(0) as u32,
            desired: g.desired_capacity().unwrap_or(0).max(0) as u32,
            instances,
        })
    }

    /// DescribeInstances by ids and/or filters, following pages; sorted by id.
    async fn describe_many(
        &self,
        op: Operation,
        ids: Option<Vec<String>>,
        filters: Vec<ec2::types::Filter>,
    ) -> Result<Vec<Instance>> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut call = self
                .ec2
                .describe_instances()
                .set_instance_ids(ids.clone())
                .set_next_token(next.take());
            for f in &filters {
                call = call.filters(f.clone());
            }
            let page = call.send().await.map_err(|e| map_sdk(op, e))?;
            for r in page.reservations() {
                out.extend(
                    r.instances()
                        .iter()
                        .map(|i| self.with_group(to_instance(i))),
                );
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn describe_one(&self, op: Operation, id: &InstanceId) -> Result<Instance> {
        let found = self
            .describe_many(op, Some(vec![id.as_str().to_owned()]), Vec::new())
            .await?;
        found
            .into_iter()
            .find(|i| &i.id == id)
            .ok_or_else(|| CloudError::not_found(op, format!("instance {id}")))
    }

    /// Sets the tagged group of a standalone instance that carries a configured group's tag.
    fn with_group(&self, mut i: Instance) -> Instance {
        if i.group.is_none() {
            i.group = self
                .params
                .get()
                .tagged_groups
                .keys()
                .find(|g| {
                    parse_tagged_group(g)
                        .is_some_and(|(k, v)| i.tags.get(k).map(String::as_str) == Some(v))
                })
                .cloned();
        }
        i
    }

    /// The configured tagged group `group`, `None` when it is not a tagged group id, `NotFound`
    /// when it is one that is not configured.
    fn tagged<'a>(
        &'a self,
        op: Operation,
        group: &'a GroupId,
    ) -> Result<Option<(&'a TaggedGroup, &'a str, &'a str)>> {
        let Some((k, v)) = parse_tagged_group(group) else {
            return Ok(None);
        };
        match self.params.get().tagged_groups.get(group) {
            Some(g) => Ok(Some((g, k, v))),
            None => Err(CloudError::not_found(
                op,
                format!("tagged group {group} (not configured)"),
            )),
        }
    }

    /// The members of a tagged group: instances tagged `key=value` that are pending, running,
    /// stopping or stopped, oldest first.
    async fn tagged_members(&self, op: Operation, key: &str, value: &str) -> Result<Vec<Instance>> {
        let states = ec2::types::Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .build();
        let mut members = self
            .describe_many(op, None, vec![filter(&format!("tag:{key}"), value), states])
            .await?;
        members.retain(|i| i.state.is_live());
        members.sort_by(|a, b| (a.launched_at, &a.id).cmp(&(b.launched_at, &b.id)));
        Ok(members)
    }

    async fn tagged_view(
        &self,
        op: Operation,
        group: &GroupId,
        g: &TaggedGroup,
        key: &str,
        value: &str,
    ) -> Result<Group> {
        let members = self.tagged_members(op, key, value).await?;
        let resized = self
            .tagged_types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(group)
            .cloned();
        let instance_type = resized
            .or_else(|| members.last().map(|i| i.instance_type.clone()))
            .unwrap_or_else(|| g.instance_type.clone());
        Ok(Group {
            id: group.clone(),
            location: g
                .location
                .clone()
                .unwrap_or_else(|| self.params.get().region.clone()),
            instance_type,
            min: g.min,
            max: g.max,
            desired: members.len() as u32,
            instances: members,
        })
    }

    /// Scales a tagged group: launches the missing members or terminates the newest extra ones.
    ///
    /// # Guarantees
    /// The launch token is derived from the group, the target and the current members: a retry
    /// after a lost answer either sees the new members (and launches nothing) or sends the same
    /// token (which creates nothing new). A token whose instances are all gone already (an
    /// earlier scale up and down through the same state) is not reused: the next one is taken.
    async fn scale_tagged(
        &self,
        group: &GroupId,
        g: &TaggedGroup,
        key: &str,
        value: &str,
        desired: u32,
    ) -> Result<Group> {
        let op = Operation::ScaleGroup;
        if desired < g.min || desired > g.max {
            return Err(CloudError::invalid(
                op,
                format!(
                    "desired capacity {desired} is outside [{}, {}] of group {group}",
                    g.min, g.max
                ),
            ));
        }
        let view = self.tagged_view(op, group, g, key, value).await?;
        let have = view.instances.len() as u32;
        if desired > have {
            let mut seed = format!("{group}|{desired}");
            for i in &view.instances {
                seed.push('|');
                seed.push_str(i.id.as_str());
            }
            let base = fnv64(&seed);
            let mut token = None;
            for attempt in 0..16 {
                let t = IdempotencyToken::new(format!("grp-{base:016x}-{attempt}"))
                    .map_err(|e| CloudError::new(op, ErrorKind::Other).with_source(e))?;
                let used = self
                    .describe_many(
                        op,
                        None,
                        vec![filter(&format!("tag:{TOKEN_TAG}"), t.as_str())],
                    )
                    .await?;
                // A token is spent once none of its instances is a member any more (all of them
                // terminated or shutting down); a member would have changed the seed.
                if used.is_empty()
                    || used
                        .iter()
                        .any(|i| i.state.is_active() || i.state == InstanceState::Stopped)
                {
                    token = Some(t);
                    break;
                }
            }
            let token = token.ok_or_else(|| {
                CloudError::new(op, ErrorKind::Other)
                    .with_detail(format!("no free launch token for group {group}"))
            })?;
            let mut req = LaunchRequest::new(
                token,
                g.owner.clone(),
                view.instance_type.clone(),
                desired - have,
            );
            req.location = g.location.clone();
            req.template_group = Some(group.clone());
            req.tags.insert(key.to_owned(), value.to_owned());
            self.launch_as(op, &req).await?;
        } else if desired < have {
            let newest: Vec<String> = view
                .instances
                .iter()
                .rev()
                .take((have - desired) as usize)
                .map(|i| i.id.as_str().to_owned())
                .collect();
            self.ec2
                .terminate_instances()
                .set_instance_ids(Some(newest))
                .send()
                .await
                .map_err(|e| map_sdk(op, e))?;
        }
        self.tagged_view(op, group, g, key, value).await
    }

    /// Launches standalone instances (the port's `launch`, and a tagged group's scale-up under
    /// `op`); see [`CloudProvider::launch`].
    async fn launch_as(&self, op: Operation, request: &LaunchRequest) -> Result<Vec<Instance>> {
        if request.count == 0 {
            return Err(CloudError::invalid(op, "count must be at least 1"));
        }
        // A launch retried after a lost response: the instances carry the token already.
        let existing = self
            .describe_many(
                op,
                None,
                vec![
                    filter(&format!("tag:{TOKEN_TAG}"), request.token.as_str()),
                    filter(&format!("tag:{OWNER_TAG}"), request.owner.as_str()),
                ],
            )
            .await?;
        if !existing.is_empty() {
            let same = existing.len() == request.count as usize
                && existing.iter().all(|i| {
                    i.instance_type == request.instance_type && i.purchase == request.purchase
                });
            if !same {
                return Err(CloudError::invalid(
                    op,
                    format!("token {} was used with other parameters", request.token),
                ));
            }
            return Ok(existing);
        }
        let count = to_i32(op, request.count)?;
        let tags = request.all_tags();
        let mut call = self
            .ec2
            .run_instances()
            .client_token(request.token.as_str())
            .min_count(count)
            .max_count(count)
            .instance_type(ec2::types::InstanceType::from(
                request.instance_type.as_str(),
            ))
            .tag_specifications(
                ec2::types::TagSpecification::builder()
                    .resource_type(ec2::types::ResourceType::Instance)
                    .set_tags(Some(tags.iter().map(|(k, v)| tag(k, v)).collect()))
                    .build(),
            );
        if request.purchase.is_spot() {
            call = call.instance_market_options(spot_market());
        }
        if let Some(location) = &request.location {
            call = call.placement(
                ec2::types::Placement::builder()
                    .availability_zone(location)
                    .build(),
            );
        }
        let tagged = match &request.template_group {
            Some(group) => self.tagged(op, group)?.map(|(t, _, _)| t),
            None => None,
        };
        if let Some(t) = tagged {
            let p = self.params.get();
            let image = t
                .image_id
                .as_deref()
                .or(p.image_id.as_deref())
                .ok_or_else(|| {
                    CloudError::invalid(op, "no image: set image_id for the tagged group")
                })?;
            call = call
                .image_id(image)
                .set_subnet_id(t.subnet_id.clone().or_else(|| p.subnet_id.clone()));
        } else if let Some(group) = &request.template_group {
            let g = self.asg_group(op, group).await?;
            let spec = Self::group_template(op, &g)?;
            call = call.launch_template(
                ec2::types::LaunchTemplateSpecification::builder()
                    .set_launch_template_id(spec.launch_template_id().map(str::to_owned))
                    .set_launch_template_name(spec.launch_template_name().map(str::to_owned))
                    .set_version(spec.version().map(str::to_owned))
                    .build(),
            );
        } else {
            let p = self.params.get();
            let image = p.image_id.as_deref().ok_or_else(|| {
                CloudError::invalid(op, "no image: set image_id or pass a template_group")
            })?;
            call = call.image_id(image).set_subnet_id(p.subnet_id.clone());
        }
        let out = call.send().await.map_err(|e| map_sdk(op, e))?;
        let mut launched: Vec<Instance> = out
            .instances()
            .iter()
            .map(|i| self.with_group(to_instance(i)))
            .collect();
        launched.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(launched)
    }

    /// Fails with `InvalidRequest` when EC2 does not offer `instance_type` here.
    async fn check_type(&self, op: Operation, instance_type: &InstanceType) -> Result<()> {
        let out = self
            .ec2
            .describe_instance_types()
            .instance_types(ec2::types::InstanceType::from(instance_type.as_str()))
            .send()
            .await
            .map_err(|e| map_sdk(op, e).with_detail(format!("instance type {instance_type}")))?;
        if out.instance_types().is_empty() {
            return Err(CloudError::invalid(
                op,
                format!("unknown instance type {instance_type}"),
            ));
        }
        Ok(())
    }
}

/// FNV-1a 64 (stable across releases and platforms, unlike std's hasher).
fn fnv64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn to_i32(op: Operation, n: u32) -> Result<i32> {
    i32::try_from(n).map_err(|_| CloudError::invalid(op, format!("{n} is too large")))
}

fn tag(key: &str, value: &str) -> ec2::types::Tag {
    ec2::types::Tag::builder().key(key).value(value).build()
}

fn filter(name: &str, value: &str) -> ec2::types::Filter {
    ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

fn to_state(s: Option<&ec2::types::InstanceState>) -> InstanceState {
    use ec2::types::InstanceStateName as N;
    match s.and_then(|s| s.name()) {
        Some(N::Running) => InstanceState::Running,
        Some(N::ShuttingDown) | Some(N::Stopping) => InstanceState::Stopping,
        Some(N::Stopped) => InstanceState::Stopped,
        Some(N::Terminated) => InstanceState::Terminated,
        _ => InstanceState::Pending,
    }
}

fn to_instance(i: &ec2::types::Instance) -> Instance {
    let tags: Tags = i
        .tags()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect();
    let group = tags.get(ASG_NAME_TAG).map(|g| GroupId::new(g.clone()));
    let launched_at = i.launch_time().and_then(|t| {
        u64::try_from(t.secs())
            .ok()
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
    });
    Instance {
        id: InstanceId::new(i.instance_id().unwrap_or_default()),
        instance_type: InstanceType::new(i.instance_type().map(|t| t.as_str()).unwrap_or_default()),
        state: to_state(i.state()),
        location: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_owned(),
        group,
        tags,
        launched_at: launched_at.filter(|t| *t > SystemTime::UNIX_EPOCH),
        hibernated: i.state_reason().and_then(|r| r.code()) == Some(HIBERNATE_REASON),
        purchase: match i.instance_lifecycle() {
            Some(ec2::types::InstanceLifecycleType::Spot) => PurchaseOption::Spot,
            _ => PurchaseOption::OnDemand,
        },
    }
}

/// `InstanceMarketOptions` of a spot launch: a one-time spot request (no persistent request
/// that would relaunch behind the controller's back), terminated on interruption, at no maximum
/// price (EC2 then caps it at the on-demand price).
fn spot_market() -> ec2::types::InstanceMarketOptionsRequest {
    ec2::types::InstanceMarketOptionsRequest::builder()
        .market_type(ec2::types::MarketType::Spot)
        .spot_options(
            ec2::types::SpotMarketOptions::builder()
                .spot_instance_type(ec2::types::SpotInstanceType::OneTime)
                .instance_interruption_behavior(ec2::types::InstanceInterruptionBehavior::Terminate)
                .build(),
        )
        .build()
}

#[async_trait]
impl CloudProvider for AwsProvider {
    fn name(&self) -> &str {
        "aws"
    }

    async fn describe_group(&self, group: &GroupId) -> Result<Group> {
        let op = Operation::DescribeGroup;
        if let Some((t, k, v)) = self.tagged(op, group)? {
            return self.tagged_view(op, group, t, k, v).await;
        }
        let g = self.asg_group(op, group).await?;
        self.group_view(op, &g).await
    }

    async fn scale_group(&self, group: &GroupId, desired: u32) -> Result<Group> {
        let op = Operation::ScaleGroup;
        if let Some((t, k, v)) = self.tagged(op, group)? {
            return self.scale_tagged(group, t, k, v, desired).await;
        }
        let g = self.asg_group(op, group).await?;
        let (min, max) = (g.min_size().unwrap_or(0), g.max_size().unwrap_or(0));
        let want = to_i32(op, desired)?;
        // Auto Scaling rejects a desired capacity outside [min, max] with a ValidationError.
        if want < min || want > max {
            return Err(CloudError::invalid(
                op,
                format!("desired capacity {desired} is outside [{min}, {max}] of group {group}"),
            ));
        }
        if g.desired_capacity() != Some(want) {
            self.asg
                .set_desired_capacity()
                .auto_scaling_group_name(group.as_str())
                .desired_capacity(want)
                .honor_cooldown(false)
                .send()
                .await
                .map_err(|e| map_sdk(op, e))?;
        }
        let g = self.asg_group(op, group).await?;
        self.group_view(op, &g).await
    }

    async fn resize_group(&self, group: &GroupId, instance_type: &InstanceType) -> Result<Group> {
        let op = Operation::ResizeGroup;
        if let Some((t, k, v)) = self.tagged(op, group)? {
            let current = self.tagged_view(op, group, t, k, v).await?;
            if &current.instance_type != instance_type {
                self.check_type(op, instance_type).await?;
                self.tagged_types
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(group.clone(), instance_type.clone());
            }
            return self.tagged_view(op, group, t, k, v).await;
        }
        let g = self.asg_group(op, group).await?;
        let spec = Self::group_template(op, &g)?;
        let current = self.template_version(op, &spec).await?;
        let current_type = current
            .launch_template_data()
            .and_then(|d| d.instance_type())
            .map(|t| t.as_str().to_owned());
        if current_type.as_deref() == Some(instance_type.as_str()) {
            return self.group_view(op, &g).await;
        }
        self.check_type(op, instance_type).await?;
        let template_id = current
            .launch_template_id()
            .ok_or_else(|| {
                CloudError::new(op, ErrorKind::Other).with_detail("launch template without id")
            })?
            .to_owned();
        let mut create = self
            .ec2
            .create_launch_template_version()
            .launch_template_id(&template_id)
            .version_description(format!("predictive: {instance_type}"))
            .launch_template_data(
                ec2::types::RequestLaunchTemplateData::builder()
                    .instance_type(ec2::types::InstanceType::from(instance_type.as_str()))
                    .build(),
            );
        if let Some(v) = current.version_number() {
            create = create.source_version(v.to_string());
        }
        let created = create.send().await.map_err(|e| map_sdk(op, e))?;
        let version = created
            .launch_template_version()
            .and_then(|v| v.version_number())
            .ok_or_else(|| {
                CloudError::new(op, ErrorKind::Other)
                    .with_detail("new template version without number")
            })?;
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(group.as_str())
            .launch_template(
                asg::types::LaunchTemplateSpecification::builder()
                    .launch_template_id(template_id)
                    .version(version.to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| map_sdk(op, e))?;
        let g = self.asg_group(op, group).await?;
        self.group_view(op, &g).await
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>> {
        self.launch_as(Operation::Launch, request).await
    }

    async fn describe_instance(&self, id: &InstanceId) -> Result<Instance> {
        self.describe_one(Operation::DescribeInstance, id).await
    }

    async fn stop_instance(&self, id: &InstanceId, mode: StopMode) -> Result<Instance> {
        let op = Operation::StopInstance;
        let current = self.describe_one(op, id).await?;
        match current.state {
            InstanceState::Stopped | InstanceState::Stopping => return Ok(current),
            InstanceState::Pending | InstanceState::Terminated => {
                return Err(CloudError::new(op, ErrorKind::IncorrectState)
                    .with_detail(format!("instance {id} is {}", current.state)));
            }
            InstanceState::Running => {}
        }
        let hibernate = mode == StopMode::Hibernate;
        if hibernate {
            let raw = self
                .ec2
                .describe_instances()
                .instance_ids(id.as_str())
                .send()
                .await
                .map_err(|e| map_sdk(op, e))?;
            let configured = raw
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .any(|i| i.hibernation_options().and_then(|h| h.configured()) == Some(true));
            if !configured {
                return Err(CloudError::invalid(
                    op,
                    format!("instance {id} was not launched with hibernation configured"),
                ));
            }
        }
        self.ec2
            .stop_instances()
            .instance_ids(id.as_str())
            .hibernate(hibernate)
            .send()
            .await
            .map_err(|e| map_sdk(op, e))?;
        self.describe_one(op, id).await
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        let op = Operation::StartInstance;
        let current = self.describe_one(op, id).await?;
        match current.state {
            InstanceState::Running | InstanceState::Pending => return Ok(current),
            InstanceState::Stopping | InstanceState::Terminated => {
                return Err(CloudError::new(op, ErrorKind::IncorrectState)
                    .with_detail(format!("instance {id} is {}", current.state)));
            }
            InstanceState::Stopped => {}
        }
        self.ec2
            .start_instances()
            .instance_ids(id.as_str())
            .send()
            .await
            .map_err(|e| map_sdk(op, e))?;
        self.describe_one(op, id).await
    }

    async fn resize_instance(
        &self,
        id: &InstanceId,
        instance_type: &InstanceType,
    ) -> Result<Instance> {
        let op = Operation::ResizeInstance;
        let current = self.describe_one(op, id).await?;
        if &current.instance_type == instance_type {
            return Ok(current);
        }
        // EC2 changes the type of a stopped instance only.
        if current.state != InstanceState::Stopped {
            return Err(CloudError::new(op, ErrorKind::IncorrectState)
                .with_detail(format!("instance {id} is {}, not stopped", current.state)));
        }
        self.check_type(op, instance_type).await?;
        self.ec2
            .modify_instance_attribute()
            .instance_id(id.as_str())
            .instance_type(
                ec2::types::AttributeValue::builder()
                    .value(instance_type.as_str())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| map_sdk(op, e))?;
        self.describe_one(op, id).await
    }

    async fn terminate_instance(&self, id: &InstanceId) -> Result<Instance> {
        let op = Operation::TerminateInstance;
        let current = self.describe_one(op, id).await?;
        if current.state == InstanceState::Terminated {
            return Ok(current);
        }
        let membership = self
            .asg
            .describe_auto_scaling_instances()
            .instance_ids(id.as_str())
            .send()
            .await
            .map_err(|e| map_sdk(op, e))?;
        let in_group = membership
            .auto_scaling_instances()
            .iter()
            .any(|m| m.instance_id() == Some(id.as_str()));
        if in_group {
            self.asg
                .terminate_instance_in_auto_scaling_group()
                .instance_id(id.as_str())
                .should_decrement_desired_capacity(true)
                .send()
                .await
                .map_err(|e| map_sdk(op, e))?;
        } else {
            self.ec2
                .terminate_instances()
                .instance_ids(id.as_str())
                .send()
                .await
                .map_err(|e| map_sdk(op, e))?;
        }
        self.describe_one(op, id).await
    }

    async fn list_instances(&self, owner: &Owner) -> Result<Vec<Instance>> {
        self.describe_many(
            Operation::ListInstances,
            None,
            vec![filter(&format!("tag:{OWNER_TAG}"), owner.as_str())],
        )
        .await
    }

    async fn instance_types(&self) -> Result<Vec<InstanceTypeInfo>> {
        let op = Operation::InstanceTypes;
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .ec2
                .describe_instance_types()
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| map_sdk(op, e))?;
            for t in page.instance_types() {
                let Some(name) = t.instance_type() else {
                    continue;
                };
                out.push(InstanceTypeInfo {
                    name: InstanceType::new(name.as_str()),
                    vcpus: t
                        .v_cpu_info()
                        .and_then(|v| v.default_v_cpus())
                        .unwrap_or(0)
                        .max(0) as u32,
                    memory_mib: t
                        .memory_info()
                        .and_then(|m| m.size_in_mib())
                        .unwrap_or(0)
                        .max(0) as u64,
                    hibernation: t.hibernation_supported().unwrap_or(false),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    async fn prices(&self) -> Result<Vec<Price>> {
        // On-demand prices live in the separate AWS Price List API, not in EC2.
        Err(CloudError::new(Operation::Prices, ErrorKind::Unsupported)
            .with_detail("ec2 exposes no on-demand price list; use the pricing catalog"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_should_reject_bad_fields_and_hide_secrets() {
        assert!(matches!(
            AwsParams::new("").check(),
            Err(Error::EmptyRegion)
        ));
        let mut p = AwsParams::new("us-east-1");
        p.endpoint_url = Some("127.0.0.1:5000".into());
        assert!(matches!(p.check(), Err(Error::BadEndpoint { .. })));
        let mut p = AwsParams::new("us-east-1");
        p.attempt_timeout = Duration::ZERO;
        assert!(matches!(p.check(), Err(Error::ZeroTimeout)));
        let mut p = AwsParams::new("us-east-1");
        p.credentials = AwsCredentials::Static {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "very-secret".into(),
        };
        let shown = format!("{:?}", p.clone().check().unwrap());
        assert!(!shown.contains("very-secret"), "{shown}");
    }

    #[test]
    fn states_should_map_onto_the_port() {
        use ec2::types::{InstanceState as S, InstanceStateName as N};
        let table = [
            (N::Pending, InstanceState::Pending),
            (N::Running, InstanceState::Running),
            (N::Stopping, InstanceState::Stopping),
            (N::ShuttingDown, InstanceState::Stopping),
            (N::Stopped, InstanceState::Stopped),
            (N::Terminated, InstanceState::Terminated),
        ];
        for (name, want) in table {
            let s = S::builder().name(name.clone()).build();
            assert_eq!(to_state(Some(&s)), want, "{name:?}");
        }
    }
}
