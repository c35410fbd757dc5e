//! Shared types of the port: ids, instance state, tags, ownership, launch requests, catalog entries.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Tags (AWS), tags (Azure) or labels (GCP) on an instance. Sorted for stable output.
pub type Tags = BTreeMap<String, String>;

/// Tag key that marks which `predictive` deployment owns an instance (the orphan sweep lists it).
///
/// Lowercase letters and `-` only, so the same key is valid as an AWS tag, an Azure tag and a
/// GCP label.
pub const OWNER_TAG: &str = "predictive-owner";

/// Tag key that carries the idempotency token an instance was launched with.
pub const TOKEN_TAG: &str = "predictive-token";

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a cloud-side identifier as it is.
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            /// The identifier as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
    };
}

string_id!(
    /// A managed group: an Auto Scaling group name, a VM scale set resource id, a managed
    /// instance group name (with its zone or region in the adapter's configuration).
    GroupId
);
string_id!(
    /// An instance: an EC2 instance id, an Azure VM resource id, a GCE instance name.
    InstanceId
);
string_id!(
    /// An instance type / VM size / machine type, such as `m6i.large`, `Standard_D2s_v5`,
    /// `e2-standard-2`.
    InstanceType
);

/// A label identifying the owner of instances (one `predictive` deployment), stored under
/// [`OWNER_TAG`].
///
/// # Guarantees
/// 1 to 63 characters of `a-z`, `0-9`, `-` and `_`, so it is a valid value for AWS tags, Azure
/// tags and GCP labels alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Owner(String);

impl Owner {
    /// Checks and wraps an owner label.
    ///
    /// # Errors
    /// [`InvalidLabel`] when the label is empty, longer than 63 characters or has a character
    /// outside `a-z0-9-_`.
    pub fn new(label: impl Into<String>) -> Result<Self, InvalidLabel> {
        let label = label.into();
        check_label("owner", &label, 63, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
        })?;
        Ok(Owner(label))
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Owner {
    type Error = InvalidLabel;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Owner::new(s)
    }
}

impl From<Owner> for String {
    fn from(o: Owner) -> String {
        o.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client idempotency token: the same launch sent twice with the same token creates once.
///
/// Maps to EC2's `ClientToken`, and is derived into Azure resource names and GCP `requestId`s by
/// the adapters.
///
/// # Guarantees
/// 1 to 64 characters of `A-Z`, `a-z`, `0-9`, `-` and `_` (EC2 accepts at most 64 ASCII
/// characters; the narrower set is also a valid GCP label value once lowercased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyToken(String);

impl IdempotencyToken {
    /// Checks and wraps a token.
    ///
    /// # Errors
    /// [`InvalidLabel`] when the token is empty, longer than 64 characters or has a character
    /// outside `A-Za-z0-9-_`.
    pub fn new(token: impl Into<String>) -> Result<Self, InvalidLabel> {
        let token = token.into();
        check_label("idempotency token", &token, 64, |c| {
            c.is_ascii_alphanumeric() || c == '-' || c == '_'
        })?;
        Ok(IdempotencyToken(token))
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyToken {
    type Error = InvalidLabel;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        IdempotencyToken::new(s)
    }
}

impl From<IdempotencyToken> for String {
    fn from(t: IdempotencyToken) -> String {
        t.0
    }
}

impl fmt::Display for IdempotencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A label (owner or token) that does not follow its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
#[non_exhaustive]
pub struct InvalidLabel {
    /// Which label: `owner` or `idempotency token`.
    pub what: &'static str,
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

fn check_label(
    what: &'static str,
    value: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), InvalidLabel> {
    let fail = |reason: String| InvalidLabel {
        what,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(fail("must not be empty".into()));
    }
    if value.len() > max {
        return Err(fail(format!("longer than {max} characters")));
    }
    if let Some((at, c)) = value.char_indices().find(|&(_, c)| !allowed(c)) {
        return Err(fail(format!(
            "character {c:?} at position {at} is not allowed"
        )));
    }
    Ok(())
}

/// Lifecycle state of an instance, common to the three clouds.
///
/// AWS `shutting-down` maps to [`Stopping`](InstanceState::Stopping) on its way to
/// [`Terminated`](InstanceState::Terminated); Azure `deallocating`/`deallocated` map to
/// `Stopping`/`Stopped`; GCP `STAGING`/`PROVISIONING` map to `Pending`, `SUSPENDED` to `Stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Booting or resuming; not serving yet.
    Pending,
    /// Up and serving.
    Running,
    /// On its way to stopped (or to terminated).
    Stopping,
    /// Stopped or hibernated: warm capacity that costs storage only and starts faster than a launch.
    Stopped,
    /// Gone or going; it will disappear from listings after a while.
    Terminated,
}

impl InstanceState {
    /// Pending or running: capacity that is (or is about to be) serving and billed.
    pub fn is_active(self) -> bool {
        matches!(self, InstanceState::Pending | InstanceState::Running)
    }

    /// Not terminated.
    pub fn is_live(self) -> bool {
        self != InstanceState::Terminated
    }

    /// The state as a lowercase label.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Terminated => "terminated",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to stop an instance kept as warm capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMode {
    /// Plain stop (AWS stop, Azure deallocate, GCP stop): memory is lost, boot on start.
    #[default]
    Stop,
    /// Hibernate / suspend: memory saved to disk, faster resume. Adapters whose instance does not
    /// support it return [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest).
    Hibernate,
}

/// One instance as observed.
///
/// Adapters fill it from EC2 `DescribeInstances`, Azure VM instance views, or GCE
/// `instances.get`; fields a cloud does not report are `None`/empty rather than guessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Cloud id.
    pub id: InstanceId,
    /// Current type.
    pub instance_type: InstanceType,
    /// Lifecycle state.
    pub state: InstanceState,
    /// Zone or region it runs in.
    pub location: String,
    /// The managed group it is a member of, if any.
    pub group: Option<GroupId>,
    /// Its tags (including [`OWNER_TAG`] and [`TOKEN_TAG`] when launched through the port).
    pub tags: Tags,
    /// When it was launched, if the cloud says.
    pub launched_at: Option<SystemTime>,
    /// Whether its last stop was a hibernation (meaningful when stopped).
    pub hibernated: bool,
    /// What it was launched as: on-demand or spot (EC2 `InstanceLifecycle`, Azure `priority`,
    /// GCP `scheduling.provisioningModel`). States persisted before this field existed load as
    /// on-demand.
    #[serde(default)]
    pub purchase: PurchaseOption,
}

impl Instance {
    /// The owner recorded in its tags, if any.
    pub fn owner(&self) -> Option<&str> {
        self.tags.get(OWNER_TAG).map(String::as_str)
    }
}

/// A managed group (Auto Scaling group, VM scale set, managed instance group) as observed.
///
/// `desired` is what the group was asked for; `instances` is what exists. They differ while
/// members boot or terminate, and when the cloud is short of capacity: callers compare the two
/// rather than assume a scale took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Cloud id.
    pub id: GroupId,
    /// Zone or region.
    pub location: String,
    /// Instance type new members are launched with.
    pub instance_type: InstanceType,
    /// Smallest desired capacity the group accepts.
    pub min: u32,
    /// Largest desired capacity the group accepts.
    pub max: u32,
    /// Desired number of members (not terminated).
    pub desired: u32,
    /// Current members, in any state but terminated.
    pub instances: Vec<Instance>,
}

impl Group {
    /// Members in a given state.
    pub fn count_in(&self, state: InstanceState) -> usize {
        self.instances.iter().filter(|i| i.state == state).count()
    }

    /// Members that are not terminated.
    pub fn live(&self) -> usize {
        self.instances.iter().filter(|i| i.state.is_live()).count()
    }
}

/// Request to launch standalone instances (outside any group), tagged with their owner.
///
/// # Guarantees
/// With the same `token`, a second launch returns the instances the first created and creates
/// nothing; with the same token and different parameters it fails with `InvalidRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchRequest {
    /// Idempotency token.
    pub token: IdempotencyToken,
    /// Owner written under [`OWNER_TAG`].
    pub owner: Owner,
    /// Instance type.
    pub instance_type: InstanceType,
    /// How many instances (at least 1).
    pub count: u32,
    /// Zone or region; `None` uses the adapter's default.
    pub location: Option<String>,
    /// Copy launch settings (image, network, launch template) from this group. The instances do
    /// not join it. `None` uses the adapter's configured defaults.
    pub template_group: Option<GroupId>,
    /// Extra tags. [`OWNER_TAG`] and [`TOKEN_TAG`] are set by the adapter and win over these.
    pub tags: Tags,
    /// On-demand (the default) or spot. Part of the parameters the token is bound to: the same
    /// token with another purchase option is `InvalidRequest`.
    #[serde(default)]
    pub purchase: PurchaseOption,
}

impl LaunchRequest {
    /// A request for `count` instances of `instance_type`, with no extra tags, default location
    /// and default launch settings.
    pub fn new(
        token: IdempotencyToken,
        owner: Owner,
        instance_type: impl Into<InstanceType>,
        count: u32,
    ) -> Self {
        LaunchRequest {
            token,
            owner,
            instance_type: instance_type.into(),
            count,
            location: None,
            template_group: None,
            tags: Tags::new(),
            purchase: PurchaseOption::OnDemand,
        }
    }

    /// The same request with another purchase option.
    ///
    /// # Example
    /// ```no_run
    /// use predictive_clouds::{IdempotencyToken, LaunchRequest, Owner, PurchaseOption};
    /// let token = IdempotencyToken::new("shadow-web-7").unwrap();
    /// let owner = Owner::new("team-a").unwrap();
    /// let spot = LaunchRequest::new(token, owner, "m6i.large", 2).with_purchase(PurchaseOption::Spot);
    /// assert!(spot.purchase.is_spot());
    /// ```
    pub fn with_purchase(mut self, purchase: PurchaseOption) -> Self {
        self.purchase = purchase;
        self
    }

    /// The tags to write on each instance: the extra tags plus owner and token.
    pub fn all_tags(&self) -> Tags {
        let mut tags = self.tags.clone();
        tags.insert(OWNER_TAG.into(), self.owner.as_str().into());
        tags.insert(TOKEN_TAG.into(), self.token.as_str().into());
        tags
    }
}

/// How an instance is bought: at the on-demand price, or as spot capacity (cheaper, and the
/// cloud may reclaim it at short notice).
///
/// Adapters map it onto EC2 `InstanceMarketOptions` (`MarketType: spot`, one-time request,
/// terminated on interruption), an Azure VM's `priority: Spot` with `evictionPolicy: Delete`,
/// and a GCE instance's `scheduling.provisioningModel: SPOT` with
/// `instanceTerminationAction: DELETE`. Spot instances are launched with no maximum price (they
/// are paid the current spot price, capped at the on-demand price).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseOption {
    /// Billed at the on-demand price; never reclaimed by the cloud.
    #[default]
    OnDemand,
    /// Spot (AWS, Azure) / Spot VM (GCP) capacity: billed at the spot price, may be interrupted.
    Spot,
}

impl PurchaseOption {
    /// Both options.
    pub const ALL: [PurchaseOption; 2] = [PurchaseOption::OnDemand, PurchaseOption::Spot];

    /// Whether it is spot capacity.
    pub fn is_spot(self) -> bool {
        self == PurchaseOption::Spot
    }

    /// The option as a snake_case label (`on_demand`, `spot`), as in configs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseOption::OnDemand => "on_demand",
            PurchaseOption::Spot => "spot",
        }
    }
}

impl fmt::Display for PurchaseOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PurchaseOption::OnDemand => "on-demand",
            PurchaseOption::Spot => "spot",
        })
    }
}

/// Size of an instance type.
///
/// Enough for the cost engine to compare types by capacity; adapters that cannot tell
/// hibernation support report `false`, so callers fall back to a plain stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceTypeInfo {
    /// Type name.
    pub name: InstanceType,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Whether it can hibernate.
    pub hibernation: bool,
}

/// Hourly price of an instance type in a location.
///
/// List prices as the cloud's API reports them, without account discounts; the cost engine
/// applies its own adjustments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Type name.
    pub instance_type: InstanceType,
    /// Zone or region.
    pub location: String,
    /// On-demand price per hour.
    pub on_demand_per_hour: f64,
    /// Spot / preemptible price per hour, where offered.
    pub spot_per_hour: Option<f64>,
    /// ISO 4217 currency, e.g. `USD`.
    pub currency: String,
}

/// The port's operations, named for errors, metrics, traces and recorded calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// [`CloudProvider::describe_group`](crate::CloudProvider::describe_group)
    DescribeGroup,
    /// [`CloudProvider::scale_group`](crate::CloudProvider::scale_group)
    ScaleGroup,
    /// [`CloudProvider::resize_group`](crate::CloudProvider::resize_group)
    ResizeGroup,
    /// [`CloudProvider::launch`](crate::CloudProvider::launch)
    Launch,
    /// [`CloudProvider::describe_instance`](crate::CloudProvider::describe_instance)
    DescribeInstance,
    /// [`CloudProvider::stop_instance`](crate::CloudProvider::stop_instance)
    StopInstance,
    /// [`CloudProvider::start_instance`](crate::CloudProvider::start_instance)
    StartInstance,
    /// [`CloudProvider::resize_instance`](crate::CloudProvider::resize_instance)
    ResizeInstance,
    /// [`CloudProvider::terminate_instance`](crate::CloudProvider::terminate_instance)
    TerminateInstance,
    /// [`CloudProvider::list_instances`](crate::CloudProvider::list_instances)
    ListInstances,
    /// [`CloudProvider::instance_types`](crate::CloudProvider::instance_types)
    InstanceTypes,
    /// [`CloudProvider::prices`](crate::CloudProvider::prices)
    Prices,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 12] = [
        Operation::DescribeGroup,
        Operation::ScaleGroup,
        Operation::ResizeGroup,
        Operation::Launch,
        Operation::DescribeInstance,
        Operation::StopInstance,
        Operation::StartInstance,
        Operation::ResizeInstance,
        Operation::TerminateInstance,
        Operation::ListInstances,
        Operation::InstanceTypes,
        Operation::Prices,
    ];

    /// The operation as a snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::DescribeGroup => "describe_group",
            Operation::ScaleGroup => "scale_group",
            Operation::ResizeGroup => "resize_group",
            Operation::Launch => "launch",
            Operation::DescribeInstance => "describe_instance",
            Operation::StopInstance => "stop_instance",
            Operation::StartInstance => "start_instance",
            Operation::ResizeInstance => "resize_instance",
            Operation::TerminateInstance => "terminate_instance",
            Operation::ListInstances => "list_instances",
            Operation::InstanceTypes => "instance_types",
            Operation::Prices => "prices",
        }
    }

    /// Whether the call changes anything in the cloud.
    pub fn is_mutation(self) -> bool {
        !matches!(
            self,
            Operation::DescribeGroup
                | Operation::DescribeInstance
                | Operation::ListInstances
                | Operation::InstanceTypes
                | Operation::Prices
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::DescribeGroup => "describe group",
            Operation::ScaleGroup => "scale group",
            Operation::ResizeGroup => "resize group",
            Operation::Launch => "launch",
            Operation::DescribeInstance => "describe instance",
            Operation::StopInstance => "stop instance",
            Operation::StartInstance => "start instance",
            Operation::ResizeInstance => "resize instance",
            Operation::TerminateInstance => "terminate instance",
            Operation::ListInstances => "list instances",
            Operation::InstanceTypes => "list instance types",
            Operation::Prices => "list prices",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_should_accept_portable_labels_and_reject_others() {
        let table = [
            ("team-a", true),
            ("a_1", true),
            ("", false),
            ("Team", false),
            ("a:b", false),
        ];
        for (label, ok) in table {
            assert_eq!(Owner::new(label).is_ok(), ok, "{label:?}");
        }
        assert!(Owner::new("x".repeat(64)).is_err());
        let err = Owner::new("a b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid owner \"a b\": character ' ' at position 1 is not allowed"
        );
    }

    #[test]
    fn token_should_accept_up_to_64_characters() {
        assert!(IdempotencyToken::new("x".repeat(64)).is_ok());
        assert!(IdempotencyToken::new("x".repeat(65)).is_err());
        assert!(IdempotencyToken::new("Abc-123_z").is_ok());
        assert!(IdempotencyToken::new("a/b").is_err());
    }

    #[test]
    fn launch_tags_should_carry_owner_and_token_over_user_tags() {
        let mut req = LaunchRequest::new(
            IdempotencyToken::new("t1").unwrap(),
            Owner::new("me").unwrap(),
            "m5.large",
            1,
        );
        req.tags.insert(OWNER_TAG.into(), "someone-else".into());
        req.tags.insert("env".into(), "test".into());
        let tags = req.all_tags();
        assert_eq!(tags[OWNER_TAG], "me");
        assert_eq!(tags[TOKEN_TAG], "t1");
        assert_eq!(tags["env"], "test");
    }

    #[test]
    fn launch_should_default_to_on_demand_and_load_old_json_as_on_demand() {
        let req = LaunchRequest::new(
            IdempotencyToken::new("t1").unwrap(),
            Owner::new("me").unwrap(),
            "m5.large",
            1,
        );
        assert_eq!(req.purchase, PurchaseOption::OnDemand);
        let spot = req.clone().with_purchase(PurchaseOption::Spot);
        assert!(spot.purchase.is_spot());
        assert_ne!(
            spot, req,
            "the purchase option is part of the token's parameters"
        );
        let mut json = serde_json::to_value(&spot).unwrap();
        assert_eq!(json["purchase"], "spot");
        json.as_object_mut().unwrap().remove("purchase");
        let old: LaunchRequest = serde_json::from_value(json).unwrap();
        assert_eq!(old.purchase, PurchaseOption::OnDemand);
    }

    #[test]
    fn owner_should_refuse_bad_labels_when_deserialized() {
        let ok: Owner = serde_json::from_str("\"pool-1\"").unwrap();
        assert_eq!(ok.as_str(), "pool-1");
        assert!(serde_json::from_str::<Owner>("\"POOL\"").is_err());
    }
}
