//! The GCP adapter: Compute Engine instances and zonal or regional managed instance groups
//! through `google-cloud-compute-v1` (only the `instances`, `instance-group-managers`,
//! `region-instance-group-managers`, `instance-templates` and `machine-types` features).
//!
//! The adapter only calls the SDK and maps results and errors; the client's own retries are off
//! (`NeverRetry`) so the shared retry layer sees every failure.
//!
//! # Operations
//! Mutations return a Compute `Operation`; the adapter polls that operation (`get_operation`)
//! until it is `DONE` and maps its error, instead of sending the mutation again. Each mutation
//! carries a `requestId` derived from the call, so a mutation re-sent by the retry layer after
//! a lost answer is de-duplicated by Compute Engine.
//!
//! # Ids
//! - Groups: `name` (zonal, in the configured zone), `zones/Z/instanceGroupManagers/NAME` or
//!   `regions/R/instanceGroupManagers/NAME`.
//! - Instances: `zones/Z/instances/NAME` (what the adapter returns) or a bare name in the
//!   configured zone.
//!
//! # Launch
//! Standalone launches insert instances named `pred-<16 hex of the token>-<i>` from the instance
//! template of `template_group` (or the configured `instance_template`), labelled with owner and
//! token (lowercased: GCP label values are lowercase).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use google_cloud_compute_v1::client as gc;
use google_cloud_compute_v1::model;
use serde_json::{json, Value};

use crate::clock::{Sleep, TokioSleep};
use crate::error::{CloudError, ErrorKind, Result};
use crate::port::CloudProvider;
use crate::types::{
    Group, GroupId, Instance, InstanceId, InstanceState, InstanceType, InstanceTypeInfo,
    LaunchRequest, Operation, Owner, Price, PurchaseOption, StopMode, Tags, OWNER_TAG,
};

/// Errors raised while building the GCP adapter (before any call is made).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required setting is empty.
    #[error("gcp {field} must not be empty")]
    Empty {
        /// The setting's name.
        field: &'static str,
    },
    /// A duration setting is zero.
    #[error("gcp {field} must be greater than zero")]
    ZeroDuration {
        /// The setting's name.
        field: &'static str,
    },
    /// A client could not be built (credentials or endpoint).
    #[error("gcp compute client could not be built")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The service-account key of [`GcpCredentials::ServiceAccountKey`] is not a usable key.
    /// The message names what is wrong (a field, a JSON position), never the key's content.
    #[error("gcp credentials: service account key {problem}")]
    ServiceAccountKey {
        /// What is wrong, e.g. ``field `private_key` is missing``.
        problem: String,
    },
}

/// Where the adapter's credentials come from.
///
/// `Debug` never shows a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GcpCredentials {
    /// Application Default Credentials (environment, gcloud, metadata server).
    #[default]
    Default,
    /// No credentials (tests against a local fake).
    Anonymous,
    /// A service-account key (the JSON key file's text), used with the `cloud-platform` scope.
    ServiceAccountKey(GcpServiceAccountKey),
}

/// The text of a service-account key file, held as a secret: `Debug` is redacted and no error
/// of this module quotes it.
#[derive(Clone, PartialEq, Eq)]
pub struct GcpServiceAccountKey(String);

impl GcpServiceAccountKey {
    /// Wraps the key file's JSON text. Nothing is checked here: [`GcpParams::check`] does.
    pub fn new(json: impl Into<String>) -> Self {
        GcpServiceAccountKey(json.into())
    }

    /// The key's JSON object, or what is wrong with it (naming a field or a JSON position,
    /// never a value).
    fn parse(&self) -> std::result::Result<Value, Error> {
        let bad = |problem: String| Error::ServiceAccountKey { problem };
        let v: Value = serde_json::from_str(&self.0).map_err(|e| {
            // serde_json's syntax errors carry a position, never the input; only the position
            // and category are kept, to be sure.
            let what = match e.classify() {
                serde_json::error::Category::Eof => "ends early",
                _ => "is not valid JSON",
            };
            bad(format!("{what} (line {}, column {})", e.line(), e.column()))
        })?;
        let Some(obj) = v.as_object() else {
            return Err(bad("is not a JSON object".into()));
        };
        match obj.get("type") {
            None => {}
            Some(Value::String(t)) if t == "service_account" => {}
            Some(_) => return Err(bad(
                "field `type` is not `service_account` (is this another kind of credentials file?)"
                    .into(),
            )),
        }
        for field in [
            "client_email",
            "private_key_id",
            "private_key",
            "project_id",
        ] {
            match obj.get(field) {
                None => return Err(bad(format!("field `{field}` is missing"))),
                Some(Value::String(s)) if s.trim().is_empty() => {
                    return Err(bad(format!("field `{field}` is empty")))
                }
                Some(Value::String(_)) => {}
                Some(_) => return Err(bad(format!("field `{field}` is not a string"))),
            }
        }
        let pem = obj
            .get("private_key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim();
        if !pem.starts_with("-----BEGIN PRIVATE KEY-----")
            || !pem.ends_with("-----END PRIVATE KEY-----")
        {
            return Err(bad(
                "field `private_key` is not a PEM PKCS#8 key (-----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY-----)"
                    .into(),
            ));
        }
        Ok(v)
    }

    /// Service-account credentials built from the key.
    fn credentials(
        &self,
    ) -> std::result::Result<google_cloud_auth::credentials::Credentials, Error> {
        let key = self.parse()?;
        google_cloud_auth::credentials::service_account::Builder::new(key)
            .build()
            // The builder's error may quote the key's fields: it is not kept.
            .map_err(|_| Error::ServiceAccountKey {
                problem: "was refused by the credentials builder".into(),
            })
    }
}

impl std::fmt::Debug for GcpServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GcpServiceAccountKey(..)")
    }
}

/// Unchecked settings of the GCP adapter; [`check`](GcpParams::check) them.
#[derive(Debug, Clone)]
pub struct GcpParams {
    /// Project id.
    pub project: String,
    /// Zone of zonal groups, standalone instances and launches, e.g. `europe-west1-b`.
    pub zone: String,
    /// Endpoint override (a local fake); `None` uses `https://compute.googleapis.com`.
    pub endpoint: Option<String>,
    /// Credentials source.
    pub credentials: GcpCredentials,
    /// Instance template URL for launches without a `template_group`.
    pub instance_template: Option<String>,
    /// Largest target size reported for groups (Compute keeps bounds in autoscalers).
    pub group_max: u32,
    /// Delay between two polls of an operation.
    pub poll_interval: Duration,
    /// How long an operation may take before the call reports a timeout.
    pub operation_timeout: Duration,
}

impl GcpParams {
    /// Settings with Application Default Credentials, 2 s polls and a 10 min deadline.
    pub fn new(project: impl Into<String>, zone: impl Into<String>) -> Self {
        GcpParams {
            project: project.into(),
            zone: zone.into(),
            endpoint: None,
            credentials: GcpCredentials::Default,
            instance_template: None,
            group_max: 1000,
            poll_interval: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(600),
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error`] naming the bad field.
    pub fn check(self) -> std::result::Result<ValidGcpParams, Error> {
        for (field, v) in [("project", &self.project), ("zone", &self.zone)] {
            if v.trim().is_empty() {
                return Err(Error::Empty { field });
            }
        }
        for (field, d) in [
            ("poll_interval", self.poll_interval),
            ("operation_timeout", self.operation_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::ZeroDuration { field });
            }
        }
        if let GcpCredentials::ServiceAccountKey(key) = &self.credentials {
            key.parse()?;
        }
        Ok(ValidGcpParams(self))
    }
}

/// Checked settings of the GCP adapter.
#[derive(Debug, Clone)]
pub struct ValidGcpParams(GcpParams);

impl ValidGcpParams {
    /// The settings.
    pub fn get(&self) -> &GcpParams {
        &self.0
    }
}

/// Where a group lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Zone(String),
    Region(String),
}

/// The Compute Engine adapter.
#[derive(Debug)]
pub struct GcpProvider {
    instances: gc::Instances,
    zonal: gc::InstanceGroupManagers,
    regional: gc::RegionInstanceGroupManagers,
    templates: gc::InstanceTemplates,
    machine_types: gc::MachineTypes,
    sleep: Arc<dyn Sleep>,
    params: ValidGcpParams,
}

macro_rules! build_client {
    ($ty:ty, $p:expr, $creds:expr) => {{
        let mut b = <$ty>::builder().with_retry_policy(google_cloud_gax::retry_policy::NeverRetry);
        if let Some(url) = &$p.endpoint {
            b = b.with_endpoint(url.clone());
        }
        if let Some(c) = &$creds {
            b = b.with_credentials(c.clone());
        }
        b.build().await.map_err(|e| Error::Client(Box::new(e)))?
    }};
}

/// Starts `$method` on the managed instance group client of the scope (zonal or regional) with
/// the project, the zone or region and the group's name set, binds the builder to `$b` and
/// evaluates `$then`. The two clients have the same calls with different builder and body types,
/// so `$then` is expanded once for each. With `body`, the body (the zonal or the regional model
/// type) is read from JSON and set first.
macro_rules! on_group {
    ($self:ident, $op:expr, $scope:expr, $name:expr, $method:ident,
     body: ($zonal:ty, $regional:ty) = $json:expr, |$b:ident| $then:expr) => {
        on_group!(@ $self, $scope, $name, $method, |$b|
            zone: {
                let $b = $b.set_body(request_body::<$zonal>($op, $json)?);
                $then
            },
            region: {
                let $b = $b.set_body(request_body::<$regional>($op, $json)?);
                $then
            })
    };
    ($self:ident, $scope:expr, $name:expr, $method:ident, |$b:ident| $then:expr) => {
        on_group!(@ $self, $scope, $name, $method, |$b| zone: $then, region: $then)
    };
    (@ $self:ident, $scope:expr, $name:expr, $method:ident, |$b:ident|
     zone: $zone:expr, region: $region:expr) => {
        match $scope {
            Scope::Zone(z) => {
                let $b = $self
                    .zonal
                    .$method()
                    .set_project($self.project())
                    .set_zone(z.clone())
                    .set_instance_group_manager($name);
                $zone
            }
            Scope::Region(r) => {
                let $b = $self
                    .regional
                    .$method()
                    .set_project($self.project())
                    .set_region(r.clone())
                    .set_instance_group_manager($name);
                $region
            }
        }
    };
}

impl GcpProvider {
    /// Builds the clients (tokio timer for operation polling).
    ///
    /// # Errors
    /// [`Error::Client`] when credentials or the endpoint cannot be set up;
    /// [`Error::ServiceAccountKey`] when the credentials builder refuses the key.
    pub async fn new(params: ValidGcpParams) -> std::result::Result<Self, Error> {
        Self::with_sleep(params, Arc::new(TokioSleep)).await
    }

    /// Builds the clients with an injected sleep for operation polling.
    ///
    /// # Errors
    /// As [`GcpProvider::new`].
    pub async fn with_sleep(
        params: ValidGcpParams,
        sleep: Arc<dyn Sleep>,
    ) -> std::result::Result<Self, Error> {
        let p = params.get();
        // `None`: each client finds Application Default Credentials itself.
        let creds = match &p.credentials {
            GcpCredentials::Default => None,
            GcpCredentials::Anonymous => {
                Some(google_cloud_auth::credentials::anonymous::Builder::new().build())
            }
            GcpCredentials::ServiceAccountKey(key) => Some(key.credentials()?),
        };
        Ok(GcpProvider {
            instances: build_client!(gc::Instances, p, creds),
            zonal: build_client!(gc::InstanceGroupManagers, p, creds),
            regional: build_client!(gc::RegionInstanceGroupManagers, p, creds),
            templates: build_client!(gc::InstanceTemplates, p, creds),
            machine_types: build_client!(gc::MachineTypes, p, creds),
            sleep,
            params,
        })
    }

    fn p(&self) -> &GcpParams {
        self.params.get()
    }

    fn project(&self) -> String {
        self.p().project.clone()
    }

    fn group_ref(&self, op: Operation, group: &GroupId) -> Result<(Scope, String)> {
        let parts: Vec<&str> = group.as_str().trim_matches('/').split('/').collect();
        match parts.as_slice() {
            [name] => Ok((Scope::Zone(self.p().zone.clone()), (*name).to_owned())),
            [.., "zones", z, "instanceGroupManagers", name] => {
                Ok((Scope::Zone((*z).to_owned()), (*name).to_owned()))
            }
            [.., "regions", r, "instanceGroupManagers", name] => {
                Ok((Scope::Region((*r).to_owned()), (*name).to_owned()))
            }
            _ => Err(CloudError::invalid(
                op,
                format!("not a managed instance group: {group}"),
            )),
        }
    }

    fn instance_ref(&self, op: Operation, id: &InstanceId) -> Result<(String, String)> {
        let parts: Vec<&str> = id.as_str().trim_matches('/').split('/').collect();
        match parts.as_slice() {
            [name] if !name.is_empty() => Ok((self.p().zone.clone(), (*name).to_owned())),
            [.., "zones", z, "instances", name] => Ok(((*z).to_owned(), (*name).to_owned())),
            _ => Err(CloudError::not_found(
                op,
                format!("not an instance id: {id}"),
            )),
        }
    }

    /// Polls a zonal, regional or global operation until it is `DONE`.
    async fn wait(
        &self,
        op: Operation,
        started: model::Operation,
        scope: Option<&Scope>,
    ) -> Result<()> {
        let mut current = to_json(&started);
        let name = current
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let deadline = Instant::now() + self.p().operation_timeout;
        loop {
            if current.get("status").and_then(Value::as_str) == Some("DONE") {
                return match current.pointer("/error/errors/0") {
                    Some(e) => {
                        let reason = e.get("code").and_then(Value::as_str).unwrap_or("");
                        Err(CloudError::new(op, kind_for_reason(reason, 0))
                            .with_detail(reason.to_owned()))
                    }
                    None => Ok(()),
                };
            }
            if Instant::now() >= deadline {
                return Err(CloudError::new(op, ErrorKind::Timeout)
                    .with_detail("operation did not finish in time"));
            }
            self.sleep.sleep(self.p().poll_interval).await;
            let polled = match scope {
                Some(Scope::Zone(z)) => self
                    .instances
                    .get_operation()
                    .set_project(self.project())
                    .set_zone(z.clone())
                    .set_operation(name.clone())
                    .send()
                    .await
                    .map(|o| to_json(&o)),
                Some(Scope::Region(r)) => self
                    .regional
                    .get_operation()
                    .set_project(self.project())
                    .set_region(r.clone())
                    .set_operation(name.clone())
                    .send()
                    .await
                    .map(|o| to_json(&o)),
                None => self
                    .templates
                    .get_operation()
                    .set_project(self.project())
                    .set_operation(name.clone())
                    .send()
                    .await
                    .map(|o| to_json(&o)),
            };
            match polled.map_err(|e| map_gax(op, e)) {
                Ok(v) => current = v,
                // A poll is a read: a transient failure is polled again.
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn igm(&self, op: Operation, scope: &Scope, name: &str) -> Result<Value> {
        on_group!(self, scope, name, get, |b| b.send().await)
            .map(|m| to_json(&m))
            .map_err(|e| map_gax(op, e))
    }

    async fn template_machine_type(
        &self,
        op: Operation,
        template_url: &str,
    ) -> Result<(String, Value)> {
        let name = last_segment(template_url);
        let t = self
            .templates
            .get()
            .set_project(self.project())
            .set_instance_template(name)
            .send()
            .await
            .map_err(|e| map_gax(op, e))?;
        let t = to_json(&t);
        let mt = t
            .pointer("/properties/machineType")
            .and_then(Value::as_str)
            .map(last_segment)
            .unwrap_or_default()
            .to_owned();
        Ok((mt, t))
    }

    async fn members(
        &self,
        op: Operation,
        scope: &Scope,
        name: &str,
        machine_type: &str,
    ) -> Result<Vec<Instance>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = on_group!(self, scope, name, list_managed_instances, |b| b
                .set_page_token(token.take().unwrap_or_default())
                .send()
                .await
                .map(|r| to_json(&r)))
            .map_err(|e| map_gax(op, e))?;
            for m in page
                .get("managedInstances")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let url = m
                    .get("instance")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let status = m
                    .get("instanceStatus")
                    .and_then(Value::as_str)
                    .or_else(|| {
                        m.get("currentAction")
                            .and_then(Value::as_str)
                            .map(|_| "PROVISIONING")
                    })
                    .unwrap_or("PROVISIONING");
                out.push(Instance {
                    id: InstanceId::new(short_instance_id(url)),
                    instance_type: InstanceType::new(machine_type),
                    state: to_state(status),
                    location: zone_of(url).to_owned(),
                    group: Some(GroupId::new(name)),
                    tags: Tags::new(),
                    launched_at: None,
                    hibernated: false,
                    // The group's template decides; the member listing does not say.
                    purchase: PurchaseOption::OnDemand,
                });
            }
            match page.get("nextPageToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.retain(|i| i.state.is_live());
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn group_view(&self, op: Operation, scope: &Scope, name: &str) -> Result<Group> {
        let igm = self.igm(op, scope, name).await?;
        let template = igm
            .get("instanceTemplate")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let (machine_type, _) = self.template_machine_type(op, &template).await?;
        let instances = self.members(op, scope, name, &machine_type).await?;
        Ok(Group {
            id: GroupId::new(name),
            location: match scope {
                Scope::Zone(z) | Scope::Region(z) => z.clone(),
            },
            instance_type: InstanceType::new(machine_type),
            min: 0,
            max: self.p().group_max,
            desired: igm.get("targetSize").and_then(Value::as_u64).unwrap_or(0) as u32,
            instances,
        })
    }

    async fn instance(&self, op: Operation, zone: &str, name: &str) -> Result<Instance> {
        let got = self
            .instances
            .get()
            .set_project(self.project())
            .set_zone(zone)
            .set_instance(name)
            .send()
            .await
            .map_err(|e| map_gax(op, e))?;
        Ok(to_instance(&to_json(&got)))
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A request body of the SDK's model from its JSON form.
fn request_body<T: serde::de::DeserializeOwned>(op: Operation, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| CloudError::new(op, ErrorKind::Other).with_source(e))
}

fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

fn zone_of(url: &str) -> &str {
    let parts: Vec<&str> = url.split('/').collect();
    parts
        .iter()
        .position(|p| *p == "zones")
        .and_then(|i| parts.get(i + 1))
        .copied()
        .unwrap_or("")
}

/// `zones/Z/instances/NAME` from a full or partial instance URL.
fn short_instance_id(url: &str) -> String {
    format!("zones/{}/instances/{}", zone_of(url), last_segment(url))
}

/// A request id (Compute wants a UUID) derived from a call's identity.
fn request_id(parts: &[&str]) -> String {
    let mut h1: u64 = 0xcbf2_9ce4_8422_2325;
    let mut h2: u64 = 0x8422_2325_cbf2_9ce4;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h1 ^= u64::from(b);
            h1 = h1.wrapping_mul(0x0100_0000_01b3);
            h2 = h2.rotate_left(5) ^ u64::from(b);
            h2 = h2.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    let hex = format!("{h1:016x}{h2:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Label recording how many instances a launch asked for, so a token reused with another
/// count is refused.
const COUNT_TAG: &str = "predictive-count";

/// Label recording the purchase option a launch asked for (`on_demand` or `spot`). The
/// instance's effective model cannot stand for it: a spot instance template makes the
/// instances of an on-demand launch spot, so a token's on-demand re-send of a spot launch
/// would look the same as the launch.
const PURCHASE_TAG: &str = "predictive-purchase";

fn launch_name(token: &str, i: u32) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("pred-{h:016x}-{i}")
}

fn to_state(status: &str) -> InstanceState {
    match status {
        "RUNNING" => InstanceState::Running,
        "STOPPING" | "SUSPENDING" => InstanceState::Stopping,
        "STOPPED" | "SUSPENDED" | "TERMINATED" => InstanceState::Stopped,
        "DELETING" => InstanceState::Terminated,
        _ => InstanceState::Pending,
    }
}

fn to_instance(v: &Value) -> Instance {
    let zone = v
        .get("zone")
        .and_then(Value::as_str)
        .map(last_segment)
        .unwrap_or_default();
    let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
    let tags: Tags = v
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, x)| (k.clone(), x.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let launched_at = v
        .get("creationTimestamp")
        .and_then(Value::as_str)
        .and_then(time_from_rfc3339);
    let status = v.get("status").and_then(Value::as_str).unwrap_or("");
    Instance {
        id: InstanceId::new(format!("zones/{zone}/instances/{name}")),
        instance_type: InstanceType::new(
            v.get("machineType")
                .and_then(Value::as_str)
                .map(last_segment)
                .unwrap_or_default(),
        ),
        state: to_state(status),
        location: zone.to_owned(),
        group: created_by(v).map(|url| GroupId::new(group_path(&url))),
        tags,
        launched_at,
        hibernated: status == "SUSPENDED",
        purchase: purchase_of(v),
    }
}

/// What an instance was launched as: `scheduling.provisioningModel: SPOT`, or the older
/// `scheduling.preemptible: true`, is spot; anything else on-demand.
fn purchase_of(v: &Value) -> PurchaseOption {
    let model = v
        .pointer("/scheduling/provisioningModel")
        .and_then(Value::as_str);
    let preemptible = v
        .pointer("/scheduling/preemptible")
        .and_then(Value::as_bool)
        == Some(true);
    if model == Some("SPOT") || preemptible {
        PurchaseOption::Spot
    } else {
        PurchaseOption::OnDemand
    }
}

/// The `scheduling` of a spot insert: Spot VMs are deleted when preempted (nothing stopped is
/// left behind) and, as Compute Engine requires, neither restart automatically nor migrate on
/// host maintenance. An on-demand insert sends no `scheduling`, so the template's settings
/// (such as `onHostMaintenance: TERMINATE` for GPUs) stay as they are.
fn spot_scheduling() -> Value {
    json!({
        "provisioningModel": "SPOT",
        "instanceTerminationAction": "DELETE",
        "automaticRestart": false,
        "onHostMaintenance": "TERMINATE",
    })
}

/// The managed instance group that created an instance (its `created-by` metadata), if any.
fn created_by(v: &Value) -> Option<String> {
    v.pointer("/metadata/items")
        .and_then(Value::as_array)?
        .iter()
        .find(|i| i.get("key").and_then(Value::as_str) == Some("created-by"))
        .and_then(|i| i.get("value").and_then(Value::as_str))
        .map(str::to_owned)
}

/// `zones/Z/instanceGroupManagers/N` or `regions/R/instanceGroupManagers/N` from a group URL.
fn group_path(url: &str) -> String {
    let parts: Vec<&str> = url.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [.., kind @ ("zones" | "regions"), scope, "instanceGroupManagers", name] => {
            format!("{kind}/{scope}/instanceGroupManagers/{name}")
        }
        _ => url.to_owned(),
    }
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp such as `2026-01-01T00:00:00.000-07:00`
/// (offset honoured), without a date library.
fn time_from_rfc3339(t: &str) -> Option<SystemTime> {
    let (date, rest) = t.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    let hms: String = rest.chars().take(8).collect();
    let mut h = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mi, ss) = (h.next()??, h.next()??, h.next()??);
    let offset = rest
        .rfind(['+', '-'])
        .filter(|i| *i >= 8)
        .map(|i| {
            let sign = if &rest[i..=i] == "-" { -1 } else { 1 };
            let mut o = rest[i + 1..]
                .split(':')
                .map(|x| x.parse::<i64>().unwrap_or(0));
            sign * (o.next().unwrap_or(0) * 3600 + o.next().unwrap_or(0) * 60)
        })
        .unwrap_or(0);
    let days = predictive_engine::civil::days_from_civil(y, m, dd);
    let secs = days * 86_400 + hh * 3600 + mi * 60 + ss - offset;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// The kind for a Compute error reason (`errors[0].reason` or operation error `code`).
fn kind_for_reason(reason: &str, status: u16) -> ErrorKind {
    match reason {
        "rateLimitExceeded" | "userRateLimitExceeded" | "RATE_LIMIT_EXCEEDED" => {
            ErrorKind::Throttled
        }
        "ZONE_RESOURCE_POOL_EXHAUSTED"
        | "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
        | "resourcePoolExhausted" => ErrorKind::InsufficientCapacity,
        "QUOTA_EXCEEDED" | "quotaExceeded" => ErrorKind::Quota,
        "notFound" | "RESOURCE_NOT_FOUND" => ErrorKind::NotFound,
        "resourceNotReady" | "RESOURCE_NOT_READY" | "resourceInUseByAnotherResource" => {
            ErrorKind::IncorrectState
        }
        "invalid" | "badRequest" | "INVALID_FIELD_VALUE" | "invalidParameter" => {
            ErrorKind::InvalidRequest
        }
        "forbidden" | "insufficientPermissions" | "authError" => ErrorKind::Unauthorized,
        "backendError" | "internalError" => ErrorKind::Unavailable,
        _ => match status {
            429 => ErrorKind::Throttled,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::IncorrectState,
            401 | 403 => ErrorKind::Unauthorized,
            408 | 504 => ErrorKind::Timeout,
            500..=599 => ErrorKind::Unavailable,
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Other,
        },
    }
}

/// Maps a client error onto a [`CloudError`] (the Compute reason becomes the detail).
fn map_gax(op: Operation, err: google_cloud_gax::error::Error) -> CloudError {
    let status = err.http_status_code().unwrap_or(0);
    let reason = err
        .http_payload()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| {
            v.pointer("/error/errors/0/reason")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let kind = if err.is_timeout() {
        ErrorKind::Timeout
    } else if status != 0 || !reason.is_empty() {
        kind_for_reason(&reason, status)
    } else if err.is_io() || err.is_transport() || err.is_connect() || err.is_deserialization() {
        ErrorKind::Unavailable
    } else if err.is_authentication() {
        ErrorKind::Unauthorized
    } else {
        ErrorKind::Other
    };
    let detail = if reason.is_empty() {
        if status == 0 {
            "no answer".to_owned()
        } else {
            format!("http {status}")
        }
    } else {
        reason
    };
    let retry_after = err
        .http_headers()
        .and_then(|h| h.get("retry-after"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut out = CloudError::new(op, kind).with_detail(detail);
    // A throttling answer may say how long to wait; the retry layer honours it.
    if let Some(secs) = retry_after {
        out = out.with_retry_after(Duration::from_secs(secs));
    }
    out.with_source(err)
}

#[async_trait]
impl CloudProvider for GcpProvider {
    fn name(&self) -> &str {
        "gcp"
    }

    async fn describe_group(&self, group: &GroupId) -> Result<Group> {
        let op = Operation::DescribeGroup;
        let (scope, name) = self.group_ref(op, group)?;
        self.group_view(op, &scope, &name).await
    }

    async fn scale_group(&self, group: &GroupId, desired: u32) -> Result<Group> {
        let op = Operation::ScaleGroup;
        let (scope, name) = self.group_ref(op, group)?;
        if desired > self.p().group_max {
            return Err(CloudError::invalid(
                op,
                format!("size {desired} is above the maximum {}", self.p().group_max),
            ));
        }
        let igm = self.igm(op, &scope, &name).await?;
        if igm.get("targetSize").and_then(Value::as_u64) != Some(u64::from(desired)) {
            let size =
                i32::try_from(desired).map_err(|_| CloudError::invalid(op, "size too large"))?;
            let rid = request_id(&[
                "resize",
                group.as_str(),
                &desired.to_string(),
                &igm.get("fingerprint")
                    .map(Value::to_string)
                    .unwrap_or_default(),
            ]);
            let started = on_group!(self, &scope, name.clone(), resize, |b| b
                .set_size(size)
                .set_request_id(rid)
                .send()
                .await)
            .map_err(|e| map_gax(op, e))?;
            self.wait(op, started, Some(&scope)).await?;
        }
        self.group_view(op, &scope, &name).await
    }

    async fn resize_group(&self, group: &GroupId, instance_type: &InstanceType) -> Result<Group> {
        let op = Operation::ResizeGroup;
        let (scope, name) = self.group_ref(op, group)?;
        let igm = self.igm(op, &scope, &name).await?;
        let current_url = igm
            .get("instanceTemplate")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let (current_type, template) = self.template_machine_type(op, &current_url).await?;
        if current_type == instance_type.as_str() {
            return self.group_view(op, &scope, &name).await;
        }
        // A new template with the new machine type; its name is derived so a retry reuses it.
        let new_name = format!(
            "{}-{}",
            last_segment(&current_url)
                .chars()
                .take(40)
                .collect::<String>(),
            &request_id(&[&current_url, instance_type.as_str()])[..8]
        );
        let mut body = template.clone();
        for key in ["id", "selfLink", "creationTimestamp", "kind"] {
            if let Some(o) = body.as_object_mut() {
                o.remove(key);
            }
        }
        body["name"] = json!(new_name);
        body["properties"]["machineType"] = json!(instance_type.as_str());
        let body: model::InstanceTemplate = request_body(op, body)?;
        match self
            .templates
            .insert()
            .set_project(self.project())
            .set_body(body)
            .set_request_id(request_id(&["template", &new_name]))
            .send()
            .await
        {
            Ok(started) => self.wait(op, started, None).await?,
            Err(e) => {
                let e = map_gax(op, e);
                // Already created by an earlier attempt whose answer was lost.
                if e.kind() != ErrorKind::IncorrectState {
                    return Err(e);
                }
            }
        }
        let url = format!(
            "projects/{}/global/instanceTemplates/{new_name}",
            self.project()
        );
        let rid = request_id(&["set-template", group.as_str(), &url]);
        let started = on_group!(self, op, &scope, name.clone(), set_instance_template,
            body: (
                model::InstanceGroupManagersSetInstanceTemplateRequest,
                model::RegionInstanceGroupManagersSetTemplateRequest
            ) = json!({ "instanceTemplate": url }),
            |b| b
            .set_request_id(rid)
            .send()
            .await)
        .map_err(|e| map_gax(op, e))?;
        self.wait(op, started, Some(&scope)).await?;
        self.group_view(op, &scope, &name).await
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>> {
        let op = Operation::Launch;
        if request.count == 0 {
            return Err(CloudError::invalid(op, "count must be at least 1"));
        }
        let zone = request
            .location
            .clone()
            .unwrap_or_else(|| self.p().zone.clone());
        let template = match &request.template_group {
            Some(g) => {
                let (scope, name) = self.group_ref(op, g)?;
                let igm = self.igm(op, &scope, &name).await?;
                igm.get("instanceTemplate")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }
            None => self.p().instance_template.clone(),
        }
        .ok_or_else(|| {
            CloudError::invalid(
                op,
                "no instance template: set instance_template or pass a template_group",
            )
        })?;
        let mut tags = request.all_tags();
        tags.insert(COUNT_TAG.into(), request.count.to_string());
        tags.insert(PURCHASE_TAG.into(), request.purchase.as_str().to_owned());
        let labels: serde_json::Map<String, Value> = tags
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), json!(v.to_lowercase())))
            .collect();
        let mut out = Vec::new();
        for i in 0..request.count {
            let name = launch_name(request.token.as_str(), i);
            match self.instance(op, &zone, &name).await {
                Ok(existing) => {
                    let same_purchase = match existing.tags.get(PURCHASE_TAG) {
                        Some(asked) => asked == request.purchase.as_str(),
                        // Launched before the label existed: a spot request needs a spot
                        // instance (a spot template makes spot instances of either option).
                        None => !request.purchase.is_spot() || existing.purchase.is_spot(),
                    };
                    let same = existing.instance_type == request.instance_type
                        && same_purchase
                        && existing.tags.get(OWNER_TAG).map(String::as_str)
                            == Some(request.owner.as_str())
                        && existing.tags.get(COUNT_TAG) == Some(&request.count.to_string());
                    if !same {
                        return Err(CloudError::invalid(
                            op,
                            format!("token {} was used with other parameters", request.token),
                        ));
                    }
                    out.push(existing);
                    continue;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            let mut body = json!({
                "name": name,
                "machineType": format!("zones/{zone}/machineTypes/{}", request.instance_type),
                "labels": labels,
            });
            if request.purchase.is_spot() {
                body["scheduling"] = spot_scheduling();
            }
            let body: model::Instance = request_body(op, body)?;
            let inserted = self
                .instances
                .insert()
                .set_project(self.project())
                .set_zone(zone.clone())
                .set_source_instance_template(template.clone())
                .set_body(body)
                .set_request_id(request_id(&[
                    "launch",
                    request.token.as_str(),
                    &i.to_string(),
                ]))
                .send()
                .await;
            match inserted.map_err(|e| map_gax(op, e)) {
                Ok(started) => {
                    self.wait(op, started, Some(&Scope::Zone(zone.clone())))
                        .await?
                }
                // Created by an earlier attempt whose answer was lost.
                Err(e) if e.kind() == ErrorKind::IncorrectState => {}
                Err(e) => return Err(e),
            }
            out.push(self.instance(op, &zone, &name).await?);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn describe_instance(&self, id: &InstanceId) -> Result<Instance> {
        let op = Operation::DescribeInstance;
        let (zone, name) = self.instance_ref(op, id)?;
        self.instance(op, &zone, &name).await
    }

    async fn stop_instance(&self, id: &InstanceId, mode: StopMode) -> Result<Instance> {
        let op = Operation::StopInstance;
        let (zone, name) = self.instance_ref(op, id)?;
        let current = self.instance(op, &zone, &name).await?;
        match current.state {
            InstanceState::Stopped | InstanceState::Stopping => return Ok(current),
            InstanceState::Pending | InstanceState::Terminated => {
                return Err(CloudError::new(op, ErrorKind::IncorrectState)
                    .with_detail(format!("instance {id} is {}", current.state)));
            }
            InstanceState::Running => {}
        }
        if mode == StopMode::Hibernate {
            // Suspend needs the `suspend` method, not enabled here: the caller uses Stop.
            return Err(CloudError::invalid(
                op,
                "suspend is not enabled in this adapter; use stop",
            ));
        }
        let started = self
            .instances
            .stop()
            .set_project(self.project())
            .set_zone(zone.clone())
            .set_instance(name.clone())
            .set_request_id(request_id(&[
                "stop",
                id.as_str(),
                &current
                    .launched_at
                    .map(|t| format!("{t:?}"))
                    .unwrap_or_default(),
            ]))
            .send()
            .await
            .map_err(|e| map_gax(op, e))?;
        self.wait(op, started, Some(&Scope::Zone(zone.clone())))
            .await?;
        self.instance(op, &zone, &name).await
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        let op = Operation::StartInstance;
        let (zone, name) = self.instance_ref(op, id)?;
        let current = self.instance(op, &zone, &name).await?;
        match current.state {
            InstanceState::Running | InstanceState::Pending => return Ok(current),
            InstanceState::Stopping | InstanceState::Terminated => {
                return Err(CloudError::new(op, ErrorKind::IncorrectState)
                    .with_detail(format!("instance {id} is {}", current.state)));
            }
            InstanceState::Stopped => {}
        }
        let started = self
            .instances
            .start()
            .set_project(self.project())
            .set_zone(zone.clone())
            .set_instance(name.clone())
            .send()
            .await
            .map_err(|e| map_gax(op, e))?;
        self.wait(op, started, Some(&Scope::Zone(zone.clone())))
            .await?;
        self.instance(op, &zone, &name).await
    }

    async fn resize_instance(
        &self,
        id: &InstanceId,
        instance_type: &InstanceType,
    ) -> Result<Instance> {
        let op = Operation::ResizeInstance;
        let (zone, name) = self.instance_ref(op, id)?;
        let current = self.instance(op, &zone, &name).await?;
        if &current.instance_type == instance_type {
            return Ok(current);
        }
        if current.state != InstanceState::Stopped {
            return Err(CloudError::new(op, ErrorKind::IncorrectState)
                .with_detail(format!("instance {id} is {}, not stopped", current.state)));
        }
        let body: model::InstancesSetMachineTypeRequest = request_body(
            op,
            json!({ "machineType": format!("zones/{zone}/machineTypes/{instance_type}") }),
        )?;
        let started = self
            .instances
            .set_machine_type()
            .set_project(self.project())
            .set_zone(zone.clone())
            .set_instance(name.clone())
            .set_body(body)
            .set_request_id(request_id(&[
                "set-machine-type",
                id.as_str(),
                instance_type.as_str(),
            ]))
            .send()
            .await
            .map_err(|e| map_gax(op, e))?;
        self.wait(op, started, Some(&Scope::Zone(zone.clone())))
            .await?;
        self.instance(op, &zone, &name).await
    }

    async fn terminate_instance(&self, id: &InstanceId) -> Result<Instance> {
        let op = Operation::TerminateInstance;
        let (zone, name) = self.instance_ref(op, id)?;
        let mut current = self.instance(op, &zone, &name).await?;
        if current.state == InstanceState::Terminated {
            return Ok(current);
        }
        let started = match &current.group {
            // A group member is removed through its group, which lowers the target size so the
            // member is not recreated.
            Some(group) => {
                let (scope, group_name) = self.group_ref(op, group)?;
                let url = format!("zones/{zone}/instances/{name}");
                let rid = request_id(&["delete-member", id.as_str()]);
                on_group!(self, op, &scope, group_name, delete_instances,
                    body: (
                        model::InstanceGroupManagersDeleteInstancesRequest,
                        model::RegionInstanceGroupManagersDeleteInstancesRequest
                    ) = json!({ "instances": [url] }),
                    |b| b
                    .set_request_id(rid)
                    .send()
                    .await)
                .map_err(|e| map_gax(op, e))
                .map(|o| (o, scope))?
            }
            None => self
                .instances
                .delete()
                .set_project(self.project())
                .set_zone(zone.clone())
                .set_instance(name.clone())
                .set_request_id(request_id(&["delete", id.as_str()]))
                .send()
                .await
                .map_err(|e| map_gax(op, e))
                .map(|o| (o, Scope::Zone(zone.clone())))?,
        };
        self.wait(op, started.0, Some(&started.1)).await?;
        current.state = InstanceState::Terminated;
        match self.instance(op, &zone, &name).await {
            Ok(after) => Ok(after),
            Err(e) if e.is_not_found() => Ok(current),
            Err(e) => Err(e),
        }
    }

    async fn list_instances(&self, owner: &Owner) -> Result<Vec<Instance>> {
        let op = Operation::ListInstances;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .instances
                .list()
                .set_project(self.project())
                .set_zone(self.p().zone.clone())
                .set_filter(format!("labels.{OWNER_TAG} = \"{}\"", owner.as_str()))
                .set_page_token(token.take().unwrap_or_default())
                .send()
                .await
                .map_err(|e| map_gax(op, e))?;
            let page = to_json(&page);
            for i in page
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let inst = to_instance(i);
                if inst.owner() == Some(owner.as_str()) {
                    out.push(inst);
                }
            }
            match page.get("nextPageToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn instance_types(&self) -> Result<Vec<InstanceTypeInfo>> {
        let op = Operation::InstanceTypes;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .machine_types
                .list()
                .set_project(self.project())
                .set_zone(self.p().zone.clone())
                .set_page_token(token.take().unwrap_or_default())
                .send()
                .await
                .map_err(|e| map_gax(op, e))?;
            let page = to_json(&page);
            for m in page
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push(InstanceTypeInfo {
                    name: InstanceType::new(
                        m.get("name").and_then(Value::as_str).unwrap_or_default(),
                    ),
                    vcpus: m.get("guestCpus").and_then(Value::as_u64).unwrap_or(0) as u32,
                    memory_mib: m.get("memoryMb").and_then(Value::as_u64).unwrap_or(0),
                    hibernation: false,
                });
            }
            match page.get("nextPageToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn prices(&self) -> Result<Vec<Price>> {
        // Prices live in the Cloud Billing Catalog API, not in Compute Engine.
        Err(CloudError::new(Operation::Prices, ErrorKind::Unsupported)
            .with_detail("compute engine exposes no price list; use the pricing catalog"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key shaped like a real key file; the PEM body is not a real key (the builder only
    /// parses it when it first signs a token).
    fn key_json(private_key: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": "proj-1",
            "private_key_id": "abc123",
            "private_key": private_key,
            "client_email": "sa@proj-1.iam.gserviceaccount.com",
            "client_id": "1",
        })
        .to_string()
    }

    const PEM: &str =
        "-----BEGIN PRIVATE KEY-----\nU0VDUkVULUtFWS1NQVRFUklBTA==\n-----END PRIVATE KEY-----\n";

    fn params_with(key: &str) -> GcpParams {
        let mut p = GcpParams::new("proj-1", "europe-west1-b");
        p.credentials = GcpCredentials::ServiceAccountKey(GcpServiceAccountKey::new(key));
        p
    }

    #[test]
    fn malformed_service_account_keys_should_be_refused_naming_the_problem() {
        let wrong_type = key_json(PEM).replace("service_account", "authorized_user");
        let no_email = {
            let mut v: Value = serde_json::from_str(&key_json(PEM)).unwrap();
            v.as_object_mut().unwrap().remove("client_email");
            v.to_string()
        };
        let numeric_id = key_json(PEM).replace("\"abc123\"", "12345");
        let cases: [(&str, String, &str); 7] = [
            (
                "not json",
                "SECRET-KEY-MATERIAL not json".into(),
                "is not valid JSON (line 1, column 1)",
            ),
            ("truncated", key_json(PEM)[..40].to_owned(), "ends early"),
            (
                "array",
                "[\"SECRET-KEY-MATERIAL\"]".into(),
                "is not a JSON object",
            ),
            (
                "other kind of file",
                wrong_type,
                "field `type` is not `service_account`",
            ),
            ("missing field", no_email, "field `client_email` is missing"),
            (
                "number for a string",
                numeric_id,
                "field `private_key_id` is not a string",
            ),
            (
                "not a pem",
                key_json("SECRET-KEY-MATERIAL"),
                "field `private_key` is not a PEM PKCS#8 key",
            ),
        ];
        for (name, key, expected) in cases {
            let err = params_with(&key).check().expect_err(name);
            assert!(
                matches!(err, Error::ServiceAccountKey { .. }),
                "{name}: {err:?}"
            );
            let text = crate::conformance::chain(&err);
            assert!(text.contains(expected), "{name}: {text}");
            assert!(
                text.starts_with("gcp credentials: service account key "),
                "{name}: {text}"
            );
            for secret in [
                "SECRET-KEY-MATERIAL",
                "U0VDUkVU",
                "12345",
                "authorized_user",
            ] {
                assert!(
                    !text.contains(secret),
                    "{name}: error shows the key: {text}"
                );
                assert!(!format!("{err:?}").contains(secret), "{name}: {err:?}");
            }
        }
    }

    #[test]
    fn service_account_keys_should_be_redacted_in_debug() {
        let p = params_with(&key_json(PEM));
        let shown = format!("{p:?} {:?}", p.credentials);
        assert!(
            shown.contains("ServiceAccountKey(GcpServiceAccountKey(..))"),
            "{shown}"
        );
        for secret in ["U0VDUkVU", "PRIVATE KEY", "abc123", "sa@proj-1"] {
            assert!(!shown.contains(secret), "debug shows the key: {shown}");
        }
        let valid = p.check().expect("a well-formed key");
        assert!(!format!("{valid:?}").contains("U0VDUkVU"));
    }

    #[tokio::test]
    async fn a_well_formed_key_should_build_the_clients() {
        let mut p = params_with(&key_json(PEM));
        p.endpoint = Some("http://127.0.0.1:9".into());
        let provider = GcpProvider::new(p.check().unwrap()).await.expect("clients");
        assert!(!format!("{provider:?}").contains("U0VDUkVU"));
        assert_eq!(GcpCredentials::default(), GcpCredentials::Default);
    }

    #[test]
    fn request_ids_should_be_uuids_stable_per_call() {
        let a = request_id(&["launch", "t1", "0"]);
        assert_eq!(a, request_id(&["launch", "t1", "0"]));
        assert_ne!(a, request_id(&["launch", "t1", "1"]));
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12], "{a}");
    }

    #[test]
    fn statuses_and_reasons_should_map_onto_the_port() {
        assert_eq!(to_state("RUNNING"), InstanceState::Running);
        assert_eq!(to_state("STAGING"), InstanceState::Pending);
        assert_eq!(to_state("TERMINATED"), InstanceState::Stopped);
        assert_eq!(to_state("SUSPENDED"), InstanceState::Stopped);
        assert_eq!(
            kind_for_reason("rateLimitExceeded", 403),
            ErrorKind::Throttled
        );
        assert_eq!(
            kind_for_reason("ZONE_RESOURCE_POOL_EXHAUSTED", 0),
            ErrorKind::InsufficientCapacity
        );
        assert_eq!(kind_for_reason("QUOTA_EXCEEDED", 0), ErrorKind::Quota);
        assert_eq!(kind_for_reason("notFound", 404), ErrorKind::NotFound);
        assert_eq!(kind_for_reason("", 503), ErrorKind::Unavailable);
    }

    #[test]
    fn timestamps_should_parse_with_offsets() {
        let t = time_from_rfc3339("1970-01-02T00:00:00.000-01:00").unwrap();
        assert_eq!(
            t,
            SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 + 3600)
        );
        let t = time_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_767_225_600
        );
    }

    #[test]
    fn ids_should_be_short_instance_paths() {
        let url = "https://compute.googleapis.com/compute/v1/projects/p/zones/europe-west1-b/instances/vm-1";
        assert_eq!(
            short_instance_id(url),
            "zones/europe-west1-b/instances/vm-1"
        );
    }
}
