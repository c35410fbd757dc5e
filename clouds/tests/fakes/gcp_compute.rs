//! A fake of the Compute Engine REST paths (`/compute/v1/...`) the GCP adapter uses: instances,
//! zonal and regional managed instance groups, instance templates, machine types and
//! operations, since no Compute Engine emulator exists.
//!
//! Mutations answer a `RUNNING` operation that becomes `DONE` after a few requests (a logical
//! clock ticking on every request), and take effect then. A `requestId` seen before returns the
//! same operation without applying the mutation again, as Compute Engine does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::faults::{inject, Fault, FaultPlan, FaultState, Injector};

/// Project of the fake.
pub const PROJECT: &str = "predictive-test";
/// Zone of the fake.
pub const ZONE: &str = "europe-west1-b";
/// Region of the fake.
pub const REGION: &str = "europe-west1";
const OP_TICKS: u64 = 3;

/// Machine types offered: (name, cpus, memory MiB).
pub const MACHINE_TYPES: [(&str, u64, u64); 4] = [
    ("e2-small", 2, 2048),
    ("e2-standard-2", 2, 8192),
    ("e2-standard-4", 4, 16384),
    ("n2-standard-2", 2, 8192),
];

#[derive(Debug, Clone)]
struct Vm {
    name: String,
    zone: String,
    machine_type: String,
    status: String,
    labels: Value,
    /// The group that created it (`created-by` metadata).
    created_by: Option<String>,
    /// `scheduling` as inserted (`null` when the insert sent none).
    scheduling: Value,
}

#[derive(Debug, Clone)]
struct Mig {
    name: String,
    template: String,
    target: u64,
    members: BTreeMap<u64, String>,
    next: u64,
}

#[derive(Debug, Clone)]
enum Change {
    Status {
        zone: String,
        name: String,
        status: &'static str,
    },
    Remove {
        zone: String,
        name: String,
    },
    Converge {
        key: String,
    },
    /// Removes a member and lowers its group's target (`deleteInstances`).
    RemoveMember {
        key: String,
        name: String,
    },
}

#[derive(Debug)]
struct Op {
    scope: String,
    done_at: u64,
    changes: Vec<Change>,
    done: bool,
    error: Option<String>,
}

/// The fake's state.
#[derive(Debug, Default)]
pub struct ComputeState {
    tick: u64,
    vms: BTreeMap<(String, String), Vm>,
    /// Groups by `zones/Z/NAME` or `regions/R/NAME`.
    migs: BTreeMap<String, Mig>,
    templates: BTreeMap<String, Value>,
    ops: BTreeMap<String, Op>,
    request_ids: BTreeMap<String, String>,
    next_op: u64,
    /// Mutating requests (POST/DELETE) received, including repeats.
    pub mutations: u32,
    /// Instances ever created (standalone and group members): the ground truth for duplicates.
    pub created: u64,
}

/// A running Compute fake.
#[derive(Debug, Clone)]
pub struct ComputeFake {
    /// Its base URL.
    pub endpoint: String,
    /// Its state.
    pub state: Arc<Mutex<ComputeState>>,
    /// Its fault injector.
    pub faults: Arc<Injector>,
}

fn err(status: StatusCode, reason: &str) -> Response {
    let code = status.as_u16();
    (
        status,
        axum::Json(
            json!({"error": {"code": code, "message": format!("{reason} (fake)"),
        "errors": [{"reason": reason, "message": reason, "domain": "global"}]}}),
        ),
    )
        .into_response()
}

/// Compute Engine's throttling and server-error answers.
pub fn compute_error(_: &HeaderMap, fault: Fault) -> Response {
    match fault {
        Fault::Throttle => {
            let mut r = err(StatusCode::TOO_MANY_REQUESTS, "rateLimitExceeded");
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            r
        }
        _ => err(StatusCode::SERVICE_UNAVAILABLE, "backendError"),
    }
}

impl ComputeState {
    /// Adds an instance template with a machine type.
    pub fn add_template(&mut self, name: &str, machine_type: &str) {
        self.templates.insert(
            name.to_owned(),
            json!({"name": name, "properties": {"machineType": machine_type,
                "disks": [{"boot": true, "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
                "networkInterfaces": [{"network": "global/networks/default"}]}}),
        );
    }

    /// Adds an instance template whose instances are Spot VMs (`scheduling.provisioningModel:
    /// SPOT`): an insert that sends no `scheduling` of its own gets the template's.
    pub fn add_spot_template(&mut self, name: &str, machine_type: &str) {
        self.add_template(name, machine_type);
        if let Some(t) = self.templates.get_mut(name) {
            t["properties"]["scheduling"] = json!({"provisioningModel": "SPOT",
                "instanceTerminationAction": "DELETE", "automaticRestart": false,
                "onHostMaintenance": "TERMINATE"});
        }
    }

    /// Adds a zonal (`zones/Z`) or regional (`regions/R`) group with `size` running members.
    pub fn add_group(&mut self, scope: &str, name: &str, template: &str, size: u64) {
        let key = format!("{scope}/{name}");
        self.migs.insert(
            key.clone(),
            Mig {
                name: name.to_owned(),
                template: format!("https://compute.googleapis.com/compute/v1/projects/{PROJECT}/global/instanceTemplates/{template}"),
                target: size,
                members: BTreeMap::new(),
                next: 0,
            },
        );
        self.converge(&key);
    }

    /// Standalone instances labelled `key=value`, in any state.
    pub fn labelled(&self, key: &str, value: &str) -> usize {
        self.vms
            .values()
            .filter(|v| v.labels.get(key).and_then(Value::as_str) == Some(value))
            .count()
    }

    /// Members of a group (`zones/Z/NAME` or `regions/R/NAME`).
    pub fn members(&self, key: &str) -> usize {
        self.migs.get(key).map_or(0, |m| m.members.len())
    }

    fn converge(&mut self, key: &str) {
        let Some(mig) = self.migs.get(key).cloned() else {
            return;
        };
        let zone = if key.starts_with("regions/") {
            format!("{REGION}-b")
        } else {
            key.split('/').nth(1).unwrap_or(ZONE).to_owned()
        };
        let mt = self
            .templates
            .get(mig.template.rsplit('/').next().unwrap_or(""))
            .and_then(|t| t.pointer("/properties/machineType").and_then(Value::as_str))
            .unwrap_or("e2-small")
            .to_owned();
        let key_scope = key
            .rsplit_once('/')
            .map(|(s, _)| s.to_owned())
            .unwrap_or_default();
        let mut mig = mig;
        while (mig.members.len() as u64) < mig.target {
            let name = format!("{}-{:04x}", mig.name, mig.next);
            mig.members.insert(mig.next, name.clone());
            mig.next += 1;
            self.created += 1;
            self.vms.insert(
                (zone.clone(), name.clone()),
                Vm {
                    name,
                    zone: zone.clone(),
                    machine_type: mt.clone(),
                    status: "RUNNING".into(),
                    labels: json!({}),
                    scheduling: Value::Null,
                    created_by: Some(format!(
                        "projects/{PROJECT}/{key_scope}/instanceGroupManagers/{}",
                        mig.name
                    )),
                },
            );
        }
        while (mig.members.len() as u64) > mig.target {
            let last = *mig.members.keys().next_back().unwrap();
            let name = mig.members.remove(&last).unwrap();
            self.vms.remove(&(zone.clone(), name));
        }
        self.migs.insert(key.to_owned(), mig);
    }

    fn advance(&mut self) {
        self.tick += 1;
        let tick = self.tick;
        let due: Vec<String> = self
            .ops
            .iter()
            .filter(|(_, o)| !o.done && o.done_at <= tick)
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            let changes = {
                let op = self.ops.get_mut(&id).unwrap();
                op.done = true;
                std::mem::take(&mut op.changes)
            };
            for c in changes {
                match c {
                    Change::Status { zone, name, status } => {
                        if let Some(vm) = self.vms.get_mut(&(zone, name)) {
                            vm.status = status.into();
                        }
                    }
                    Change::Remove { zone, name } => {
                        // As on Compute Engine: a deleted group member is recreated by its group.
                        self.vms.remove(&(zone, name.clone()));
                        let mut touched = Vec::new();
                        for (key, mig) in self.migs.iter_mut() {
                            let before = mig.members.len();
                            mig.members.retain(|_, n| *n != name);
                            if mig.members.len() < before {
                                touched.push(key.clone());
                            }
                        }
                        for key in touched {
                            self.converge(&key);
                        }
                    }
                    Change::Converge { key } => self.converge(&key),
                    Change::RemoveMember { key, name } => {
                        let zone = if key.starts_with("regions/") {
                            format!("{REGION}-b")
                        } else {
                            key.split('/').nth(1).unwrap_or(ZONE).to_owned()
                        };
                        if let Some(mig) = self.migs.get_mut(&key) {
                            let before = mig.members.len();
                            mig.members.retain(|_, n| *n != name);
                            if mig.members.len() < before {
                                mig.target = mig.target.saturating_sub(1);
                                self.vms.remove(&(zone, name));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Starts an operation, or returns the one a repeated `requestId` started.
    fn start_op(
        &mut self,
        scope: &str,
        request_id: Option<&str>,
        changes: Vec<Change>,
        error: Option<&str>,
    ) -> (String, bool) {
        if let Some(r) = request_id {
            if let Some(existing) = self.request_ids.get(r) {
                return (existing.clone(), false);
            }
        }
        self.next_op += 1;
        let name = format!("operation-{}", self.next_op);
        self.ops.insert(
            name.clone(),
            Op {
                scope: scope.to_owned(),
                done_at: self.tick + OP_TICKS,
                changes,
                done: false,
                error: error.map(str::to_owned),
            },
        );
        if let Some(r) = request_id {
            self.request_ids.insert(r.to_owned(), name.clone());
        }
        (name, true)
    }

    fn op_json(&self, name: &str) -> Value {
        let op = &self.ops[name];
        let mut v = json!({"kind": "compute#operation", "name": name,
            "status": if op.done { "DONE" } else { "RUNNING" }});
        if op.scope.starts_with("zones/") {
            v["zone"] = json!(op.scope.split('/').nth(1));
        } else if op.scope.starts_with("regions/") {
            v["region"] = json!(op.scope.split('/').nth(1));
        }
        if let (true, Some(e)) = (op.done, &op.error) {
            v["error"] = json!({"errors": [{"code": e, "message": e}]});
        }
        v
    }
}

impl Vm {
    fn json(&self) -> Value {
        let metadata = match &self.created_by {
            Some(g) => json!({"items": [{"key": "created-by", "value": g}]}),
            None => json!({"items": []}),
        };
        json!({"kind": "compute#instance", "name": self.name, "metadata": metadata,
            "zone": format!("https://compute.googleapis.com/compute/v1/projects/{PROJECT}/zones/{}", self.zone),
            "machineType": format!("https://compute.googleapis.com/compute/v1/projects/{PROJECT}/zones/{}/machineTypes/{}", self.zone, self.machine_type),
            "status": self.status, "labels": self.labels,
            "creationTimestamp": "2026-01-01T00:00:00.000-00:00",
            "scheduling": self.scheduling})
    }
}

fn known_type(t: &str) -> bool {
    MACHINE_TYPES.iter().any(|(n, _, _)| *n == t)
}

fn query(uri: &axum::http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_owned(),
                v.replace("%2F", "/")
                    .replace("%3D", "=")
                    .replace("%22", "\"")
                    .replace("%20", " ")
                    .replace('+', " "),
            )
        })
        .collect()
}

async fn handle(State(state): State<Arc<Mutex<ComputeState>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let q = query(&parts.uri);
    let rid = q.get("requestId").map(String::as_str);
    let path = parts.uri.path().to_owned();
    let mut st = state.lock().unwrap();
    st.advance();
    if parts.method != Method::GET && !path.ends_with("/listManagedInstances") {
        st.mutations += 1;
    }
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["compute", "v1", "projects", _project, rest @ ..] = seg.as_slice() else {
        return err(StatusCode::NOT_FOUND, "notFound");
    };
    let m = parts.method.as_str();
    let op_reply = |st: &ComputeState, name: &str| axum::Json(st.op_json(name)).into_response();
    match (m, rest) {
        ("GET", [kind @ ("zones" | "regions"), s, "operations", name])
        | ("GET", [kind @ "global", s @ "operations", name]) => {
            let _ = (kind, s);
            if st.ops.contains_key(*name) {
                op_reply(&st, name)
            } else {
                err(StatusCode::NOT_FOUND, "notFound")
            }
        }
        ("GET", ["zones", _z, "machineTypes"]) => {
            let items: Vec<Value> = MACHINE_TYPES
                .iter()
                .map(|(n, c, mem)| json!({"name": n, "guestCpus": c, "memoryMb": mem}))
                .collect();
            axum::Json(json!({"items": items})).into_response()
        }
        ("GET", ["global", "instanceTemplates", name]) => match st.templates.get(*name) {
            Some(t) => axum::Json(t.clone()).into_response(),
            None => err(StatusCode::NOT_FOUND, "notFound"),
        },
        ("POST", ["global", "instanceTemplates"]) => {
            let name = body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let mt = body
                .pointer("/properties/machineType")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !known_type(mt) {
                return err(StatusCode::BAD_REQUEST, "invalid");
            }
            if rid.is_none_or(|r| !st.request_ids.contains_key(r))
                && st.templates.contains_key(&name)
            {
                return err(StatusCode::CONFLICT, "alreadyExists");
            }
            st.templates.insert(name, body.clone());
            let (op, _) = st.start_op("global", rid, Vec::new(), None);
            op_reply(&st, &op)
        }
        (_, [kind @ ("zones" | "regions"), scope, "instanceGroupManagers", name, action @ ..]) => {
            let key = format!("{kind}/{scope}/{name}");
            let Some(mig) = st.migs.get(&key).cloned() else {
                return err(StatusCode::NOT_FOUND, "notFound");
            };
            let scope_key = format!("{kind}/{scope}");
            match (m, action) {
                ("GET", []) => axum::Json(json!({"name": mig.name, "targetSize": mig.target, "instanceTemplate": mig.template,
                    kind.trim_end_matches('s'): scope})).into_response(),
                ("POST", ["resize"]) => {
                    let Some(size) = q.get("size").and_then(|s| s.parse::<u64>().ok()) else {
                        return err(StatusCode::BAD_REQUEST, "invalid");
                    };
                    let (op, fresh) = st.start_op(&scope_key, rid, vec![Change::Converge { key: key.clone() }], None);
                    if fresh {
                        st.migs.get_mut(&key).unwrap().target = size;
                    }
                    op_reply(&st, &op)
                }
                ("POST", ["setInstanceTemplate"]) => {
                    let url = body.get("instanceTemplate").and_then(Value::as_str).unwrap_or("").to_owned();
                    if !st.templates.contains_key(url.rsplit('/').next().unwrap_or("")) {
                        return err(StatusCode::NOT_FOUND, "notFound");
                    }
                    let (op, fresh) = st.start_op(&scope_key, rid, Vec::new(), None);
                    if fresh {
                        st.migs.get_mut(&key).unwrap().template = url;
                    }
                    op_reply(&st, &op)
                }
                ("POST", ["deleteInstances"]) => {
                    let names: Vec<String> = body
                        .get("instances")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|u| u.as_str().and_then(|u| u.rsplit('/').next()).map(str::to_owned))
                        .collect();
                    if names.iter().any(|n| !mig.members.values().any(|m| m == n)) {
                        return err(StatusCode::BAD_REQUEST, "invalid");
                    }
                    let changes = names.into_iter().map(|name| Change::RemoveMember { key: key.clone(), name }).collect();
                    let (op, _) = st.start_op(&scope_key, rid, changes, None);
                    op_reply(&st, &op)
                }
                ("POST", ["listManagedInstances"]) => {
                    let zone = if *kind == "regions" { format!("{REGION}-b") } else { (*scope).to_owned() };
                    let items: Vec<Value> = mig
                        .members
                        .values()
                        .map(|n| {
                            let status = st.vms.get(&(zone.clone(), n.clone())).map(|v| v.status.clone()).unwrap_or("PROVISIONING".into());
                            json!({"instance": format!("https://compute.googleapis.com/compute/v1/projects/{PROJECT}/zones/{zone}/instances/{n}"),
                                "instanceStatus": status, "currentAction": "NONE"})
                        })
                        .collect();
                    axum::Json(json!({"managedInstances": items})).into_response()
                }
                _ => err(StatusCode::BAD_REQUEST, "badRequest"),
            }
        }
        ("GET", ["zones", zone, "instances"]) => {
            let filter = q.get("filter").cloned().unwrap_or_default();
            let want = filter.split('"').nth(1).unwrap_or("").to_owned();
            let label = filter
                .trim_start_matches("labels.")
                .split(' ')
                .next()
                .unwrap_or("")
                .to_owned();
            let items: Vec<Value> = st
                .vms
                .values()
                .filter(|v| v.zone == *zone)
                .filter(|v| {
                    filter.is_empty()
                        || v.labels.get(&label).and_then(Value::as_str) == Some(want.as_str())
                })
                .map(Vm::json)
                .collect();
            axum::Json(json!({"items": items})).into_response()
        }
        ("POST", ["zones", zone, "instances"]) => {
            let name = body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let mt = body
                .get("machineType")
                .and_then(Value::as_str)
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_owned();
            if !known_type(&mt) {
                return err(StatusCode::BAD_REQUEST, "invalid");
            }
            let scheduling = body.get("scheduling").cloned().unwrap_or(Value::Null);
            // Compute Engine: a Spot VM neither restarts automatically nor migrates.
            if scheduling.get("provisioningModel").and_then(Value::as_str) == Some("SPOT")
                && (scheduling.get("automaticRestart").and_then(Value::as_bool) != Some(false)
                    || scheduling.get("onHostMaintenance").and_then(Value::as_str)
                        != Some("TERMINATE"))
            {
                return err(StatusCode::BAD_REQUEST, "invalid");
            }
            let template = q.get("sourceInstanceTemplate").cloned().unwrap_or_default();
            let Some(tpl) = st.templates.get(template.rsplit('/').next().unwrap_or("")) else {
                return err(StatusCode::BAD_REQUEST, "invalid");
            };
            // The body's fields override the template's; without its own `scheduling` the
            // instance gets the template's.
            let scheduling = if scheduling.is_null() {
                tpl.pointer("/properties/scheduling")
                    .cloned()
                    .unwrap_or(Value::Null)
            } else {
                scheduling
            };
            let key = ((*zone).to_owned(), name.clone());
            let seen = rid.is_some_and(|r| st.request_ids.contains_key(r));
            if !seen && st.vms.contains_key(&key) {
                return err(StatusCode::CONFLICT, "alreadyExists");
            }
            let (op, fresh) = st.start_op(
                &format!("zones/{zone}"),
                rid,
                vec![Change::Status {
                    zone: (*zone).to_owned(),
                    name: name.clone(),
                    status: "RUNNING",
                }],
                None,
            );
            if fresh {
                st.created += 1;
                let labels = body.get("labels").cloned().unwrap_or(json!({}));
                st.vms.insert(
                    key,
                    Vm {
                        name,
                        zone: (*zone).to_owned(),
                        machine_type: mt,
                        status: "PROVISIONING".into(),
                        labels,
                        created_by: None,
                        scheduling,
                    },
                );
            }
            op_reply(&st, &op)
        }
        (_, ["zones", zone, "instances", name, action @ ..]) => {
            let key = ((*zone).to_owned(), (*name).to_owned());
            let Some(vm) = st.vms.get(&key).cloned() else {
                return err(StatusCode::NOT_FOUND, "notFound");
            };
            let scope = format!("zones/{zone}");
            let status = |s: &'static str| Change::Status {
                zone: (*zone).to_owned(),
                name: (*name).to_owned(),
                status: s,
            };
            match (m, action) {
                ("GET", []) => axum::Json(vm.json()).into_response(),
                ("POST", ["stop"]) => {
                    let (op, fresh) = match vm.status.as_str() {
                        "RUNNING" => st.start_op(&scope, rid, vec![status("TERMINATED")], None),
                        "STOPPING" | "TERMINATED" => st.start_op(&scope, rid, Vec::new(), None),
                        _ => return err(StatusCode::BAD_REQUEST, "resourceNotReady"),
                    };
                    if fresh && vm.status == "RUNNING" {
                        st.vms.get_mut(&key).unwrap().status = "STOPPING".into();
                    }
                    op_reply(&st, &op)
                }
                ("POST", ["start"]) => {
                    let (op, fresh) = match vm.status.as_str() {
                        "TERMINATED" => st.start_op(&scope, rid, vec![status("RUNNING")], None),
                        "RUNNING" | "STAGING" => st.start_op(&scope, rid, Vec::new(), None),
                        _ => return err(StatusCode::BAD_REQUEST, "resourceNotReady"),
                    };
                    if fresh && vm.status == "TERMINATED" {
                        st.vms.get_mut(&key).unwrap().status = "STAGING".into();
                    }
                    op_reply(&st, &op)
                }
                ("POST", ["setMachineType"]) => {
                    let mt = body
                        .get("machineType")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    if !known_type(&mt) {
                        return err(StatusCode::BAD_REQUEST, "invalid");
                    }
                    if vm.status != "TERMINATED" {
                        return err(StatusCode::BAD_REQUEST, "resourceNotReady");
                    }
                    st.vms.get_mut(&key).unwrap().machine_type = mt;
                    let (op, _) = st.start_op(&scope, rid, Vec::new(), None);
                    op_reply(&st, &op)
                }
                ("DELETE", []) => {
                    let (op, fresh) = st.start_op(
                        &scope,
                        rid,
                        vec![Change::Remove {
                            zone: (*zone).to_owned(),
                            name: (*name).to_owned(),
                        }],
                        None,
                    );
                    if fresh {
                        st.vms.get_mut(&key).unwrap().status = "STOPPING".into();
                    }
                    op_reply(&st, &op)
                }
                _ => err(StatusCode::BAD_REQUEST, "badRequest"),
            }
        }
        _ => err(StatusCode::NOT_FOUND, "notFound"),
    }
}

/// Starts the fake on a free loopback port.
pub async fn start(plan: FaultPlan) -> ComputeFake {
    let injector = Injector::new(plan);
    let state = Arc::new(Mutex::new(ComputeState::default()));
    let router = axum::Router::new()
        .fallback(handle)
        .with_state(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            FaultState {
                injector: injector.clone(),
                respond: compute_error,
            },
            inject,
        ));
    let addr = super::serve(router).await;
    ComputeFake {
        endpoint: format!("http://{addr}"),
        state,
        faults: injector,
    }
}
