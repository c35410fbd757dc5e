//! The Azure adapter: virtual machines and VM scale sets through `azure_mgmt_compute` (ARM API
//! version 2024-07-01) on the `azure_core` 0.21 pipeline.
//!
//! The adapter only calls the SDK and maps results and errors; retries and timeouts policy are
//! layers around the port, so the pipeline's own retries are turned off.
//!
//! # Long-running operations
//! ARM answers a PATCH, PUT, POST or DELETE on a VM or scale set with `201`/`202` and an
//! `Azure-AsyncOperation` (or `Location`) status URL. The SDK's `.await` would re-send the PATCH
//! until `provisioningState` settles; the adapter instead sends the request **once** (`send()`)
//! and polls the status URL (honouring `Retry-After`) until the operation succeeds, fails or the
//! configured LRO deadline passes. A poll that fails transiently is polled again: it is a read of
//! the same operation, never a second mutation.
//!
//! # Ids
//! - Groups: a VM scale set name (in the configured resource group) or its full resource id.
//! - Instances: a VM resource id
//!   (`/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/NAME`), a
//!   scale set member id (`…/virtualMachineScaleSets/SS/virtualMachines/ID`), or a bare VM name
//!   in the configured resource group.
//!
//! # Launch
//! Standalone launches create VMs named `pred-<16 hex of the token>-<i>` with a PUT, which ARM
//! treats as create-or-update: re-sending the same launch updates the same VMs and never
//! duplicates them. The VM body comes from the scale set named by `template_group` (its
//! `virtualMachineProfile`) or from the configured `vm_template`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use azure_core_legacy as azcore;
use azure_mgmt_compute::package_2024_07_01 as compute;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::clock::{Sleep, TokioSleep};
use crate::error::{CloudError, ErrorKind, Result};
use crate::port::CloudProvider;
use crate::types::{
    Group, GroupId, Instance, InstanceId, InstanceState, InstanceType, InstanceTypeInfo,
    LaunchRequest, Operation, Owner, Price, PurchaseOption, StopMode, Tags, OWNER_TAG,
};

/// Errors raised while building the Azure adapter (before any call is made).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required setting is empty.
    #[error("azure {field} must not be empty")]
    Empty {
        /// The setting's name.
        field: &'static str,
    },
    /// The endpoint override is not a URL.
    #[error("azure endpoint {url:?} is not a valid URL")]
    BadEndpoint {
        /// The endpoint as given.
        url: String,
        /// Why it was refused.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A duration setting is zero.
    #[error("azure {field} must be greater than zero")]
    ZeroDuration {
        /// The setting's name.
        field: &'static str,
    },
    /// The default credential chain could not be set up.
    #[error("azure credentials could not be set up")]
    Credentials(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The HTTP client could not be built.
    #[error("azure http client could not be built")]
    HttpClient(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where the adapter's credentials come from.
#[derive(Clone, Default)]
pub enum AzureCredentials {
    /// The usual sources, in order: environment (service principal or workload identity),
    /// managed identity, Azure CLI.
    #[default]
    Default,
    /// A fixed bearer token (tests against a local fake).
    FixedToken(String),
}

impl std::fmt::Debug for AzureCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AzureCredentials::Default => f.write_str("Default"),
            AzureCredentials::FixedToken(_) => f.write_str("FixedToken(..)"),
        }
    }
}

/// Unchecked settings of the Azure adapter; [`check`](AzureParams::check) them.
#[derive(Debug, Clone)]
pub struct AzureParams {
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group of the scale sets and VMs.
    pub resource_group: String,
    /// Default location for launches, e.g. `westeurope`.
    pub location: String,
    /// ARM endpoint override (a local fake); `None` uses the public cloud.
    pub endpoint: Option<String>,
    /// Credentials source.
    pub credentials: AzureCredentials,
    /// VM `properties` (storage, OS and network profiles) for launches without a
    /// `template_group`.
    pub vm_template: Option<Value>,
    /// Largest capacity reported for scale sets (ARM keeps min/max in autoscale settings).
    pub group_max: u32,
    /// Timeout of one HTTP attempt.
    pub attempt_timeout: Duration,
    /// Delay between two polls of an operation when ARM sends no `Retry-After`.
    pub poll_interval: Duration,
    /// How long a long-running operation may take before the call reports a timeout.
    pub lro_timeout: Duration,
}

impl AzureParams {
    /// Settings with the default credential chain, 30 s attempts, 5 s polls and a 15 min LRO
    /// deadline.
    pub fn new(
        subscription_id: impl Into<String>,
        resource_group: impl Into<String>,
        location: impl Into<String>,
    ) -> Self {
        AzureParams {
            subscription_id: subscription_id.into(),
            resource_group: resource_group.into(),
            location: location.into(),
            endpoint: None,
            credentials: AzureCredentials::Default,
            vm_template: None,
            group_max: 1000,
            attempt_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(5),
            lro_timeout: Duration::from_secs(15 * 60),
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error`] naming the bad field.
    pub fn check(self) -> std::result::Result<ValidAzureParams, Error> {
        for (field, value) in [
            ("subscription_id", &self.subscription_id),
            ("resource_group", &self.resource_group),
            ("location", &self.location),
        ] {
            if value.trim().is_empty() {
                return Err(Error::Empty { field });
            }
        }
        if let Some(url) = &self.endpoint {
            azcore::Url::parse(url).map_err(|e| Error::BadEndpoint {
                url: url.clone(),
                source: Box::new(e),
            })?;
        }
        for (field, d) in [
            ("attempt_timeout", self.attempt_timeout),
            ("poll_interval", self.poll_interval),
            ("lro_timeout", self.lro_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::ZeroDuration { field });
            }
        }
        if let AzureCredentials::FixedToken(t) = &self.credentials {
            if t.is_empty() {
                return Err(Error::Empty { field: "token" });
            }
        }
        Ok(ValidAzureParams(self))
    }
}

/// Checked settings of the Azure adapter.
#[derive(Debug, Clone)]
pub struct ValidAzureParams(AzureParams);

impl ValidAzureParams {
    /// The settings.
    pub fn get(&self) -> &AzureParams {
        &self.0
    }
}

/// A credential that always returns the same token (tests).
#[derive(Debug)]
struct FixedToken(azcore::auth::Secret);

#[async_trait]
impl azcore::auth::TokenCredential for FixedToken {
    async fn get_token(&self, _scopes: &[&str]) -> azcore::Result<azcore::auth::AccessToken> {
        let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        Ok(azcore::auth::AccessToken::new(self.0.clone(), expires))
    }
    async fn clear_cache(&self) -> azcore::Result<()> {
        Ok(())
    }
}

/// The Azure VM / VM scale set adapter.
pub struct AzureProvider {
    client: compute::Client,
    http: Arc<dyn azcore::HttpClient>,
    credential: Arc<dyn azcore::auth::TokenCredential>,
    scopes: Vec<String>,
    sleep: Arc<dyn Sleep>,
    params: ValidAzureParams,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// Where a VM lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VmRef {
    Standalone {
        rg: String,
        name: String,
    },
    Member {
        rg: String,
        set: String,
        instance: String,
    },
}

/// A response body as JSON, its status and headers.
struct Raw {
    status: u16,
    headers: azcore::headers::Headers,
    body: Value,
}

impl AzureProvider {
    /// Builds the client. Uses the tokio timer for LRO polling.
    ///
    /// # Errors
    /// [`Error::Credentials`] when the default chain cannot be set up, [`Error::HttpClient`]
    /// when the HTTP client cannot be built.
    pub fn new(params: ValidAzureParams) -> std::result::Result<Self, Error> {
        Self::with_sleep(params, Arc::new(TokioSleep))
    }

    /// Builds the client with an injected sleep for LRO polling.
    ///
    /// # Errors
    /// As [`AzureProvider::new`].
    pub fn with_sleep(
        params: ValidAzureParams,
        sleep: Arc<dyn Sleep>,
    ) -> std::result::Result<Self, Error> {
        let p = params.get();
        let credential: Arc<dyn azcore::auth::TokenCredential> = match &p.credentials {
            AzureCredentials::Default => azure_identity_legacy::create_default_credential()
                .map_err(|e| Error::Credentials(Box::new(e)))?,
            AzureCredentials::FixedToken(t) => {
                Arc::new(FixedToken(azcore::auth::Secret::new(t.clone())))
            }
        };
        let reqwest = reqwest::Client::builder()
            .timeout(p.attempt_timeout)
            .connect_timeout(p.attempt_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::HttpClient(Box::new(e)))?;
        let http: Arc<dyn azcore::HttpClient> = Arc::new(reqwest);
        let mut builder = compute::Client::builder(credential.clone())
            .retry(azcore::RetryOptions::none())
            .transport(azcore::TransportOptions::new(http.clone()));
        let endpoint = match &p.endpoint {
            Some(url) => azcore::Url::parse(url).map_err(|e| Error::BadEndpoint {
                url: url.clone(),
                source: Box::new(e),
            })?,
            None => compute::DEFAULT_ENDPOINT.to_owned(),
        };
        let scope = format!("{}/.default", endpoint.as_str().trim_end_matches('/'));
        builder = builder.endpoint(endpoint).scopes(&[scope.as_str()]);
        let client = builder
            .build()
            .map_err(|e| Error::HttpClient(Box::new(e)))?;
        Ok(AzureProvider {
            client,
            http,
            credential,
            scopes: vec![scope],
            sleep,
            params,
        })
    }

    fn p(&self) -> &AzureParams {
        self.params.get()
    }

    fn sub(&self) -> &str {
        &self.p().subscription_id
    }

    /// (resource group, scale set name) of a group id.
    fn group_ref(&self, op: Operation, group: &GroupId) -> Result<(String, String)> {
        let s = group.as_str();
        if !s.contains('/') {
            return Ok((self.p().resource_group.clone(), s.to_owned()));
        }
        let parts: Vec<&str> = s.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            [_, _, rg_key, rg, "providers", "Microsoft.Compute", "virtualMachineScaleSets", name]
                if rg_key.eq_ignore_ascii_case("resourceGroups") =>
            {
                Ok(((*rg).to_owned(), (*name).to_owned()))
            }
            _ => Err(CloudError::invalid(op, format!("not a scale set id: {s}"))),
        }
    }

    fn vm_ref(&self, op: Operation, id: &InstanceId) -> Result<VmRef> {
        let s = id.as_str();
        if !s.contains('/') {
            return Ok(VmRef::Standalone {
                rg: self.p().resource_group.clone(),
                name: s.to_owned(),
            });
        }
        let parts: Vec<&str> = s.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            [_, _, rg_key, rg, "providers", "Microsoft.Compute", "virtualMachines", name]
                if rg_key.eq_ignore_ascii_case("resourceGroups") =>
            {
                Ok(VmRef::Standalone {
                    rg: (*rg).to_owned(),
                    name: (*name).to_owned(),
                })
            }
            [_, _, rg_key, rg, "providers", "Microsoft.Compute", "virtualMachineScaleSets", set, "virtualMachines", iid]
                if rg_key.eq_ignore_ascii_case("resourceGroups") =>
            {
                Ok(VmRef::Member {
                    rg: (*rg).to_owned(),
                    set: (*set).to_owned(),
                    instance: (*iid).to_owned(),
                })
            }
            _ => Err(CloudError::not_found(
                op,
                format!("not a virtual machine id: {s}"),
            )),
        }
    }

    /// Reads a raw SDK response into JSON.
    async fn raw(op: Operation, resp: azcore::Response) -> Result<Raw> {
        let (status, headers, body) = resp.deconstruct();
        let bytes = body.collect().await.map_err(|e| map_core(op, e))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                CloudError::new(op, ErrorKind::Unavailable)
                    .with_detail("unreadable response body")
                    .with_source(e)
            })?
        };
        Ok(Raw {
            status: u16::from(status),
            headers,
            body,
        })
    }

    /// Waits for a long-running operation started by `started` to finish, by polling its
    /// status URL (never by re-sending the request).
    async fn wait(&self, op: Operation, started: &Raw) -> Result<()> {
        let async_url = started
            .headers
            .get_optional_str(&azcore::headers::AZURE_ASYNCOPERATION)
            .map(str::to_owned);
        let location_url = started
            .headers
            .get_optional_str(&azcore::headers::LOCATION)
            .map(str::to_owned);
        let (url, is_async) = match (async_url, location_url) {
            (Some(u), _) => (u, true),
            (None, Some(u)) if started.status == 202 => (u, false),
            _ => return Ok(()),
        };
        let url = azcore::Url::parse(&url).map_err(|e| {
            CloudError::new(op, ErrorKind::Other)
                .with_detail("bad operation status url")
                .with_source(e)
        })?;
        let deadline = Instant::now() + self.p().lro_timeout;
        let mut delay = retry_after(&started.headers).unwrap_or(self.p().poll_interval);
        loop {
            if Instant::now() >= deadline {
                return Err(CloudError::new(op, ErrorKind::Timeout)
                    .with_detail("long-running operation did not finish in time"));
            }
            self.sleep.sleep(delay).await;
            let polled = match self.get_url(op, &url).await {
                Ok(r) => r,
                // A poll is a read: a transient failure is polled again.
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e),
            };
            delay = retry_after(&polled.headers).unwrap_or(self.p().poll_interval);
            if is_async {
                let status = polled
                    .body
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match status {
                    "Succeeded" => return Ok(()),
                    "Failed" | "Canceled" => {
                        let code = polled
                            .body
                            .pointer("/error/code")
                            .and_then(Value::as_str)
                            .unwrap_or(status);
                        return Err(CloudError::new(op, kind_for_code(code, 0))
                            .with_detail(code.to_owned()));
                    }
                    _ => {}
                }
            } else if polled.status != 202 {
                return Ok(());
            }
        }
    }

    /// GET on an absolute ARM URL (operation status), with the bearer token.
    async fn get_url(&self, op: Operation, url: &azcore::Url) -> Result<Raw> {
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let token = self
            .credential
            .get_token(&scopes)
            .await
            .map_err(|e| map_core(op, e))?;
        let mut req = azcore::Request::new(url.clone(), azcore::Method::Get);
        req.insert_header(
            azcore::headers::AUTHORIZATION,
            format!("Bearer {}", token.token.secret()),
        );
        let resp = self
            .http
            .execute_request(&req)
            .await
            .map_err(|e| map_core(op, e))?;
        let raw = Self::raw(op, resp).await?;
        if raw.status >= 400 {
            let code = raw
                .body
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(CloudError::new(op, kind_for_code(code, raw.status))
                .with_detail(format!("operation status {}: {code}", raw.status)));
        }
        Ok(raw)
    }

    async fn scale_set(&self, op: Operation, rg: &str, name: &str) -> Result<Value> {
        let resp = self
            .client
            .virtual_machine_scale_sets_client()
            .get(rg, name, self.sub())
            .send()
            .await
            .map_err(|e| map_core(op, e))?;
        Ok(Self::raw(op, resp.into_raw_response()).await?.body)
    }

    async fn members(&self, op: Operation, rg: &str, name: &str) -> Result<Vec<Instance>> {
        let mut stream = self
            .client
            .virtual_machine_scale_set_v_ms_client()
            .list(rg, name, self.sub())
            .expand("instanceView")
            .into_stream();
        let mut out = Vec::new();
        while let Some(page) = stream.next().await {
            let page = page.map_err(|e| map_core(op, e))?;
            let page = serde_json::to_value(&page).unwrap_or(Value::Null);
            for vm in page
                .get("value")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push(to_instance(vm, Some(GroupId::new(name))));
            }
        }
        out.retain(|i| i.state.is_live());
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn group_view(&self, op: Operation, rg: &str, name: &str, set: &Value) -> Result<Group> {
        let instances = self.members(op, rg, name).await?;
        Ok(Group {
            id: GroupId::new(name),
            location: set
                .get("location")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            instance_type: InstanceType::new(
                set.pointer("/sku/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            min: 0,
            max: self.p().group_max,
            desired: set
                .pointer("/sku/capacity")
                .and_then(Value::as_u64)
                .unwrap_or(0) as u32,
            instances,
        })
    }

    /// PATCHes the scale set's sku once and waits for the operation through its status URL.
    async fn patch_sku(
        &self,
        op: Operation,
        rg: &str,
        name: &str,
        sku: compute::models::Sku,
    ) -> Result<()> {
        let update = compute::models::VirtualMachineScaleSetUpdate {
            sku: Some(sku),
            ..Default::default()
        };
        let resp = self
            .client
            .virtual_machine_scale_sets_client()
            .update(rg, name, update, self.sub())
            .send()
            .await
            .map_err(|e| map_core(op, e))?;
        let raw = Self::raw(op, resp.into_raw_response()).await?;
        self.wait(op, &raw).await
    }

    async fn vm(&self, op: Operation, vm: &VmRef) -> Result<Instance> {
        let resp = match vm {
            VmRef::Standalone { rg, name } => self
                .client
                .virtual_machines_client()
                .get(rg, name, self.sub())
                .expand("instanceView")
                .send()
                .await
                .map_err(|e| map_core(op, e))?
                .into_raw_response(),
            VmRef::Member { rg, set, instance } => self
                .client
                .virtual_machine_scale_set_v_ms_client()
                .get(rg, set, instance, self.sub())
                .expand("instanceView")
                .send()
                .await
                .map_err(|e| map_core(op, e))?
                .into_raw_response(),
        };
        let body = Self::raw(op, resp).await?.body;
        let group = match vm {
            VmRef::Member { set, .. } => Some(GroupId::new(set.clone())),
            VmRef::Standalone { .. } => None,
        };
        Ok(to_instance(&body, group))
    }

    /// Polls a VM that is being deleted until it is gone (`None`) or no longer deleting
    /// (`Some`, the VM as seen), within the long-running operation deadline.
    async fn wait_gone(&self, op: Operation, vm: &VmRef) -> Result<Option<Instance>> {
        let deadline = Instant::now() + self.p().lro_timeout;
        loop {
            if Instant::now() >= deadline {
                return Err(CloudError::new(op, ErrorKind::Timeout)
                    .with_detail("the vm's delete did not finish in time"));
            }
            self.sleep.sleep(self.p().poll_interval).await;
            match self.vm(op, vm).await {
                Err(e) if e.is_not_found() => return Ok(None),
                // A poll is a read: a transient failure is polled again.
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e),
                Ok(seen) if seen.state == InstanceState::Terminated => {}
                Ok(seen) => return Ok(Some(seen)),
            }
        }
    }

    /// Sends a VM action once (deallocate, start, delete…) and waits for it.
    async fn act(&self, op: Operation, resp: azcore::Response) -> Result<()> {
        let raw = Self::raw(op, resp).await?;
        self.wait(op, &raw).await
    }

    async fn launch_body(
        &self,
        op: Operation,
        request: &LaunchRequest,
        location: &str,
    ) -> Result<Value> {
        let mut properties = match &request.template_group {
            Some(group) => {
                let (rg, name) = self.group_ref(op, group)?;
                let set = self.scale_set(op, &rg, &name).await?;
                let profile = set
                    .pointer("/properties/virtualMachineProfile")
                    .cloned()
                    .unwrap_or(Value::Null);
                let mut props = json!({});
                for key in [
                    "storageProfile",
                    "osProfile",
                    "diagnosticsProfile",
                    "securityProfile",
                ] {
                    if let Some(v) = profile.get(key) {
                        props[key] = v.clone();
                    }
                }
                if let Some(nics) =
                    profile.pointer("/networkProfile/networkInterfaceConfigurations")
                {
                    props["networkProfile"] = json!({
                        "networkApiVersion": "2020-11-01",
                        "networkInterfaceConfigurations": nics,
                    });
                }
                props
            }
            None => self.p().vm_template.clone().ok_or_else(|| {
                CloudError::invalid(
                    op,
                    "no vm template: set vm_template or pass a template_group",
                )
            })?,
        };
        if !properties.is_object() {
            return Err(CloudError::invalid(op, "vm template must be a JSON object"));
        }
        properties["hardwareProfile"] = json!({ "vmSize": request.instance_type.as_str() });
        match request.purchase {
            // Evicted Spot VMs are deleted (not deallocated and left behind), and the price is
            // capped at the pay-as-you-go price (`maxPrice: -1`) so that price alone never
            // evicts them.
            PurchaseOption::Spot => {
                properties["priority"] = json!("Spot");
                properties["evictionPolicy"] = json!("Delete");
                properties["billingProfile"] = json!({ "maxPrice": -1 });
            }
            // A template group's settings are copied, but a launch asked as on-demand is one.
            PurchaseOption::OnDemand => {
                if let Some(p) = properties.as_object_mut() {
                    for key in ["priority", "evictionPolicy", "billingProfile"] {
                        p.remove(key);
                    }
                }
            }
        }
        Ok(json!({
            "location": location,
            "tags": launch_tags(request),
            "properties": properties,
        }))
    }

    async fn list_vms(&self, op: Operation) -> Result<Vec<Value>> {
        let mut stream = self
            .client
            .virtual_machines_client()
            .list(&self.p().resource_group, self.sub())
            .expand("instanceView")
            .into_stream();
        let mut out = Vec::new();
        while let Some(page) = stream.next().await {
            let page = page.map_err(|e| map_core(op, e))?;
            let page = serde_json::to_value(&page).unwrap_or(Value::Null);
            out.extend(
                page.get("value")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        Ok(out)
    }
}

/// Tag recording how many VMs a launch asked for, so a token reused with another count is
/// refused.
const COUNT_TAG: &str = "predictive-count";

/// The tags of a launched VM: the request's, plus the launch's count.
fn launch_tags(request: &LaunchRequest) -> Tags {
    let mut tags = request.all_tags();
    tags.insert(COUNT_TAG.into(), request.count.to_string());
    tags
}

/// The VM name a launch token derives for instance `i`.
fn launch_name(token: &str, i: u32) -> String {
    // FNV-1a 64: stable across releases and platforms (unlike std's hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("pred-{h:016x}-{i}")
}

fn retry_after(headers: &azcore::headers::Headers) -> Option<Duration> {
    headers
        .get_optional_str(&azcore::headers::RETRY_AFTER)
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The port state of a VM from its provisioning state and instance view.
fn to_state(vm: &Value) -> InstanceState {
    let provisioning = vm
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .unwrap_or("");
    if provisioning.eq_ignore_ascii_case("deleting") {
        return InstanceState::Terminated;
    }
    let power = vm
        .pointer("/properties/instanceView/statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("code").and_then(Value::as_str))
        .find_map(|c| c.strip_prefix("PowerState/"))
        .unwrap_or("");
    match power {
        "running" => InstanceState::Running,
        "stopping" | "deallocating" => InstanceState::Stopping,
        "stopped" | "deallocated" => InstanceState::Stopped,
        _ => InstanceState::Pending,
    }
}

fn to_instance(vm: &Value, group: Option<GroupId>) -> Instance {
    let tags: Tags = vm
        .get("tags")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let size = vm
        .pointer("/properties/hardwareProfile/vmSize")
        .or_else(|| vm.pointer("/sku/name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let launched_at = vm
        .pointer("/properties/timeCreated")
        .and_then(Value::as_str)
        .and_then(|t| azcore::date::parse_rfc3339(t).ok())
        .and_then(|t| u64::try_from(t.unix_timestamp()).ok())
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    let hibernated = vm
        .pointer("/properties/instanceView/statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("code").and_then(Value::as_str))
        .any(|c| c.eq_ignore_ascii_case("HibernationState/Hibernated"));
    Instance {
        id: InstanceId::new(vm.get("id").and_then(Value::as_str).unwrap_or_default()),
        instance_type: InstanceType::new(size),
        state: to_state(vm),
        location: vm
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        group,
        tags,
        launched_at,
        hibernated,
        purchase: purchase_of(vm),
    }
}

/// What a VM was launched as: its `priority` (`Spot`, or the older `Low` of scale sets) where
/// it says, on-demand (`Regular` or absent) otherwise.
fn purchase_of(vm: &Value) -> PurchaseOption {
    let priority = vm
        .pointer("/properties/priority")
        .or_else(|| vm.pointer("/properties/virtualMachineProfile/priority"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if priority.eq_ignore_ascii_case("spot") || priority.eq_ignore_ascii_case("low") {
        PurchaseOption::Spot
    } else {
        PurchaseOption::OnDemand
    }
}

/// The kind for an ARM error code, falling back on the HTTP status.
fn kind_for_code(code: &str, status: u16) -> ErrorKind {
    match code {
        "TooManyRequests"
        | "SubscriptionRequestsThrottled"
        | "ResourceRequestsThrottled"
        | "OperationThrottled" => ErrorKind::Throttled,
        "AllocationFailed"
        | "ZonalAllocationFailed"
        | "OverconstrainedAllocationRequest"
        | "OverconstrainedZonalAllocationRequest"
        | "SkuNotAvailable" => ErrorKind::InsufficientCapacity,
        "QuotaExceeded" | "OperationNotAllowedQuota" => ErrorKind::Quota,
        "NotFound" | "ResourceNotFound" | "ResourceGroupNotFound" | "ParentResourceNotFound" => {
            ErrorKind::NotFound
        }
        "Conflict"
        | "OperationNotAllowed"
        | "PropertyChangeNotAllowed"
        | "VMRedeploymentInProgress"
        | "ConflictingUserInput" => ErrorKind::IncorrectState,
        "InvalidParameter"
        | "BadRequest"
        | "InvalidRequestFormat"
        | "InvalidVmSize"
        | "MissingRequiredParameter"
        | "InvalidRequestContent" => ErrorKind::InvalidRequest,
        "AuthenticationFailed"
        | "AuthorizationFailed"
        | "InvalidAuthenticationToken"
        | "ExpiredAuthenticationToken" => ErrorKind::Unauthorized,
        "InternalServerError"
        | "InternalExecutionError"
        | "ServiceUnavailable"
        | "GatewayTimeout" => ErrorKind::Unavailable,
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

/// Maps an `azure_core` error onto a [`CloudError`] (the ARM error code becomes the detail).
fn map_core(op: Operation, err: azcore::Error) -> CloudError {
    let (kind, detail) = match err.kind() {
        azcore::error::ErrorKind::HttpResponse { status, error_code } => {
            let code = error_code.clone().unwrap_or_default();
            let kind = kind_for_code(&code, u16::from(*status));
            (
                kind,
                Some(if code.is_empty() {
                    format!("http {}", u16::from(*status))
                } else {
                    code
                }),
            )
        }
        // Connection refused or reset, response cut off: the call may have happened.
        azcore::error::ErrorKind::Io => {
            (ErrorKind::Unavailable, Some("transport failure".to_owned()))
        }
        azcore::error::ErrorKind::Credential => (ErrorKind::Unauthorized, None),
        azcore::error::ErrorKind::DataConversion => (
            ErrorKind::Unavailable,
            Some("unreadable response".to_owned()),
        ),
        _ => (ErrorKind::Other, None),
    };
    let timed_out = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<reqwest::Error>())
        .is_some_and(reqwest::Error::is_timeout);
    let kind = if timed_out { ErrorKind::Timeout } else { kind };
    let mut out = CloudError::new(op, kind);
    if let Some(d) = detail {
        out = out.with_detail(d);
    }
    out.with_source(err)
}

fn hibernation_enabled(vm: &Value) -> bool {
    vm.pointer("/properties/additionalCapabilities/hibernationEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

#[async_trait]
impl CloudProvider for AzureProvider {
    fn name(&self) -> &str {
        "azure"
    }

    async fn describe_group(&self, group: &GroupId) -> Result<Group> {
        let op = Operation::DescribeGroup;
        let (rg, name) = self.group_ref(op, group)?;
        let set = self.scale_set(op, &rg, &name).await?;
        self.group_view(op, &rg, &name, &set).await
    }

    async fn scale_group(&self, group: &GroupId, desired: u32) -> Result<Group> {
        let op = Operation::ScaleGroup;
        let (rg, name) = self.group_ref(op, group)?;
        if desired > self.p().group_max {
            return Err(CloudError::invalid(
                op,
                format!(
                    "capacity {desired} is above the maximum {} of group {group}",
                    self.p().group_max
                ),
            ));
        }
        let set = self.scale_set(op, &rg, &name).await?;
        let current = set.pointer("/sku/capacity").and_then(Value::as_u64);
        if current != Some(u64::from(desired)) {
            let sku = compute::models::Sku {
                capacity: Some(i64::from(desired)),
                ..Default::default()
            };
            self.patch_sku(op, &rg, &name, sku).await?;
        }
        let set = self.scale_set(op, &rg, &name).await?;
        self.group_view(op, &rg, &name, &set).await
    }

    async fn resize_group(&self, group: &GroupId, instance_type: &InstanceType) -> Result<Group> {
        let op = Operation::ResizeGroup;
        let (rg, name) = self.group_ref(op, group)?;
        let set = self.scale_set(op, &rg, &name).await?;
        if set.pointer("/sku/name").and_then(Value::as_str) != Some(instance_type.as_str()) {
            let sku = compute::models::Sku {
                name: Some(instance_type.as_str().to_owned()),
                tier: set
                    .pointer("/sku/tier")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                capacity: set.pointer("/sku/capacity").and_then(Value::as_i64),
            };
            self.patch_sku(op, &rg, &name, sku).await?;
        }
        let set = self.scale_set(op, &rg, &name).await?;
        self.group_view(op, &rg, &name, &set).await
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>> {
        let op = Operation::Launch;
        if request.count == 0 {
            return Err(CloudError::invalid(op, "count must be at least 1"));
        }
        let rg = self.p().resource_group.clone();
        let location = request
            .location
            .clone()
            .unwrap_or_else(|| self.p().location.clone());
        // The same token names the same VMs: refuse a reuse with other parameters.
        let first = VmRef::Standalone {
            rg: rg.clone(),
            name: launch_name(request.token.as_str(), 0),
        };
        match self.vm(op, &first).await {
            Ok(existing) => {
                let count = request.count.to_string();
                if existing.instance_type != request.instance_type
                    || existing.purchase != request.purchase
                    || existing.tags.get(OWNER_TAG).map(String::as_str)
                        != Some(request.owner.as_str())
                    || existing.tags.get(COUNT_TAG) != Some(&count)
                {
                    return Err(CloudError::invalid(
                        op,
                        format!("token {} was used with other parameters", request.token),
                    ));
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let body = self.launch_body(op, request, &location).await?;
        let vm: compute::models::VirtualMachine = serde_json::from_value(body).map_err(|e| {
            CloudError::invalid(op, "vm template does not fit the virtual machine model")
                .with_source(e)
        })?;
        let mut out = Vec::new();
        for i in 0..request.count {
            let name = launch_name(request.token.as_str(), i);
            let resp = self
                .client
                .virtual_machines_client()
                .create_or_update(&rg, &name, vm.clone(), self.sub())
                .send()
                .await
                .map_err(|e| map_core(op, e))?;
            // Creation runs on: the caller observes it with describe_instance.
            let raw = Self::raw(op, resp.into_raw_response()).await?;
            let mut inst = to_instance(&raw.body, None);
            if inst.id.as_str().is_empty() {
                inst = self
                    .vm(
                        op,
                        &VmRef::Standalone {
                            rg: rg.clone(),
                            name,
                        },
                    )
                    .await?;
            }
            out.push(inst);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn describe_instance(&self, id: &InstanceId) -> Result<Instance> {
        let op = Operation::DescribeInstance;
        let vm = self.vm_ref(op, id)?;
        self.vm(op, &vm).await
    }

    async fn stop_instance(&self, id: &InstanceId, mode: StopMode) -> Result<Instance> {
        let op = Operation::StopInstance;
        let vm = self.vm_ref(op, id)?;
        let current = self.vm(op, &vm).await?;
        match current.state {
            InstanceState::Stopped | InstanceState::Stopping => return Ok(current),
            InstanceState::Pending | InstanceState::Terminated => {
                return Err(CloudError::new(op, ErrorKind::IncorrectState)
                    .with_detail(format!("instance {id} is {}", current.state)));
            }
            InstanceState::Running => {}
        }
        let resp = match (&vm, mode) {
            (VmRef::Standalone { rg, name }, mode) => {
                let mut call =
                    self.client
                        .virtual_machines_client()
                        .deallocate(rg, name, self.sub());
                if mode == StopMode::Hibernate {
                    let raw = self
                        .client
                        .virtual_machines_client()
                        .get(rg, name, self.sub())
                        .send()
                        .await
                        .map_err(|e| map_core(op, e))?;
                    let body = Self::raw(op, raw.into_raw_response()).await?.body;
                    if !hibernation_enabled(&body) {
                        return Err(CloudError::invalid(
                            op,
                            format!("vm {id} has hibernation disabled"),
                        ));
                    }
                    call = call.hibernate(true);
                }
                call.send()
                    .await
                    .map_err(|e| map_core(op, e))?
                    .into_raw_response()
            }
            (VmRef::Member { .. }, StopMode::Hibernate) => {
                return Err(CloudError::invalid(
                    op,
                    "scale set members cannot hibernate one by one",
                ));
            }
            (VmRef::Member { rg, set, instance }, StopMode::Stop) => self
                .client
                .virtual_machine_scale_set_v_ms_client()
                .deallocate(rg, set, instance, self.sub())
                .send()
                .await
                .map_err(|e| map_core(op, e))?
                .into_raw_response(),
        };
        self.act(op, resp).await?;
        self.vm(op, &vm).await
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<Instance> {
        let op = Operation::StartInstance;
        let vm = self.vm_ref(op, id)?;
        let current = self.vm(op, &vm).await?;
        match current.state {
            InstanceState::Running | InstanceState::Pending => return Ok(current),
            InstanceState::Stopping | InstanceState::Terminated => {
                return Err(CloudError::new(op, ErrorKind::IncorrectState)
                    .with_detail(format!("instance {id} is {}", current.state)));
            }
            InstanceState::Stopped => {}
        }
        let resp = match &vm {
            VmRef::Standalone { rg, name } => self
                .client
                .virtual_machines_client()
                .start(rg, name, self.sub())
                .send()
                .await
                .map_err(|e| map_core(op, e))?
                .into_raw_response(),
            VmRef::Member { rg, set, instance } => self
                .client
                .virtual_machine_scale_set_v_ms_client()
                .start(rg, set, instance, self.sub())
                .send()
                .await
                .map_err(|e| map_core(op, e))?
                .into_raw_response(),
        };
        self.act(op, resp).await?;
        self.vm(op, &vm).await
    }

    async fn resize_instance(
        &self,
        id: &InstanceId,
        instance_type: &InstanceType,
    ) -> Result<Instance> {
        let op = Operation::ResizeInstance;
        let vm = self.vm_ref(op, id)?;
        let current = self.vm(op, &vm).await?;
        if &current.instance_type == instance_type {
            return Ok(current);
        }
        if current.state != InstanceState::Stopped {
            return Err(CloudError::new(op, ErrorKind::IncorrectState)
                .with_detail(format!("instance {id} is {}, not stopped", current.state)));
        }
        let VmRef::Standalone { rg, name } = &vm else {
            return Err(CloudError::invalid(
                op,
                "scale set members take the size of their scale set",
            ));
        };
        let update: compute::models::VirtualMachineUpdate = serde_json::from_value(json!({
            "properties": { "hardwareProfile": { "vmSize": instance_type.as_str() } }
        }))
        .map_err(|e| CloudError::new(op, ErrorKind::Other).with_source(e))?;
        let resp = self
            .client
            .virtual_machines_client()
            .update(rg, name, update, self.sub())
            .send()
            .await
            .map_err(|e| map_core(op, e))?;
        self.act(op, resp.into_raw_response()).await?;
        self.vm(op, &vm).await
    }

    async fn terminate_instance(&self, id: &InstanceId) -> Result<Instance> {
        let op = Operation::TerminateInstance;
        let vm = self.vm_ref(op, id)?;
        let mut current = self.vm(op, &vm).await?;
        if current.state == InstanceState::Terminated {
            // A delete is running, sent by an earlier attempt whose answer was lost (or by
            // someone else): wait for it as for our own, so that a terminated answer means the
            // VM is gone and a caller that stops here leaves nothing behind.
            match self.wait_gone(op, &vm).await? {
                None => return Ok(current),
                // The delete did not take (the VM is back): send ours.
                Some(back) => current = back,
            }
        }
        let resp = match &vm {
            VmRef::Standalone { rg, name } => self
                .client
                .virtual_machines_client()
                .delete(rg, name, self.sub())
                .send()
                .await
                .map_err(|e| map_core(op, e))?
                .into_raw_response(),
            // Deleting through the scale set lowers its capacity, so the member is not replaced.
            VmRef::Member { rg, set, instance } => self
                .client
                .virtual_machine_scale_sets_client()
                .delete_instances(
                    rg,
                    set,
                    compute::models::VirtualMachineScaleSetVmInstanceRequiredIDs::new(vec![
                        instance.clone(),
                    ]),
                    self.sub(),
                )
                .send()
                .await
                .map_err(|e| map_core(op, e))?
                .into_raw_response(),
        };
        self.act(op, resp).await?;
        current.state = InstanceState::Terminated;
        match self.vm(op, &vm).await {
            Ok(after) => Ok(after),
            Err(e) if e.is_not_found() => Ok(current),
            Err(e) => Err(e),
        }
    }

    async fn list_instances(&self, owner: &Owner) -> Result<Vec<Instance>> {
        let op = Operation::ListInstances;
        let mut out = Vec::new();
        for vm in self.list_vms(op).await? {
            if vm
                .pointer(&format!("/tags/{OWNER_TAG}"))
                .and_then(Value::as_str)
                == Some(owner.as_str())
            {
                out.push(to_instance(&vm, None));
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn instance_types(&self) -> Result<Vec<InstanceTypeInfo>> {
        let op = Operation::InstanceTypes;
        let resp = self
            .client
            .virtual_machine_sizes_client()
            .list(&self.p().location, self.sub())
            .send()
            .await
            .map_err(|e| map_core(op, e))?;
        let page = Self::raw(op, resp.into_raw_response()).await?.body;
        let mut out = Vec::new();
        for s in page
            .get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push(InstanceTypeInfo {
                name: InstanceType::new(s.get("name").and_then(Value::as_str).unwrap_or_default()),
                vcpus: s.get("numberOfCores").and_then(Value::as_u64).unwrap_or(0) as u32,
                memory_mib: s.get("memoryInMB").and_then(Value::as_u64).unwrap_or(0),
                hibernation: false,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn prices(&self) -> Result<Vec<Price>> {
        // Prices live in the Azure Retail Prices API, not in ARM compute.
        Err(CloudError::new(Operation::Prices, ErrorKind::Unsupported)
            .with_detail("arm compute exposes no price list; use the pricing catalog"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_names_should_be_stable_and_distinct() {
        assert_eq!(launch_name("t-1", 0), launch_name("t-1", 0));
        assert_ne!(launch_name("t-1", 0), launch_name("t-2", 0));
        assert_ne!(launch_name("t-1", 0), launch_name("t-1", 1));
        assert!(launch_name(&"x".repeat(64), 999).len() <= 64);
    }

    #[test]
    fn codes_should_map_to_kinds() {
        let table = [
            ("TooManyRequests", 429, ErrorKind::Throttled),
            ("AllocationFailed", 409, ErrorKind::InsufficientCapacity),
            ("QuotaExceeded", 409, ErrorKind::Quota),
            ("ResourceNotFound", 404, ErrorKind::NotFound),
            ("OperationNotAllowed", 409, ErrorKind::IncorrectState),
            ("InvalidParameter", 400, ErrorKind::InvalidRequest),
            ("AuthorizationFailed", 403, ErrorKind::Unauthorized),
            ("", 503, ErrorKind::Unavailable),
            ("", 504, ErrorKind::Timeout),
        ];
        for (code, status, kind) in table {
            assert_eq!(kind_for_code(code, status), kind, "{code} {status}");
        }
    }

    #[test]
    fn power_states_should_map_onto_the_port() {
        let vm = |code: &str| {
            json!({"properties": {"instanceView": {"statuses": [
            {"code": "ProvisioningState/succeeded"}, {"code": code}]}}})
        };
        assert_eq!(to_state(&vm("PowerState/running")), InstanceState::Running);
        assert_eq!(
            to_state(&vm("PowerState/deallocated")),
            InstanceState::Stopped
        );
        assert_eq!(
            to_state(&vm("PowerState/deallocating")),
            InstanceState::Stopping
        );
        assert_eq!(to_state(&vm("PowerState/starting")), InstanceState::Pending);
        let deleting = json!({"properties": {"provisioningState": "Deleting"}});
        assert_eq!(to_state(&deleting), InstanceState::Terminated);
    }

    #[test]
    fn params_should_name_the_bad_field_and_hide_the_token() {
        let err = AzureParams::new("", "rg", "westeurope")
            .check()
            .unwrap_err();
        assert_eq!(err.to_string(), "azure subscription_id must not be empty");
        let mut p = AzureParams::new("s", "rg", "westeurope");
        p.credentials = AzureCredentials::FixedToken("secret-token".into());
        assert!(!format!("{:?}", p.check().unwrap()).contains("secret-token"));
    }
}
