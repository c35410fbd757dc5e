//! A fake of the Azure Resource Manager REST paths the Azure adapter uses (virtual machines, VM
//! scale sets and their members, VM sizes, operation status), since no Azure Compute emulator
//! exists.
//!
//! Mutations are long-running like on ARM: they answer `200`/`201`/`202` with an
//! `Azure-AsyncOperation` status URL and take effect when the operation finishes. Operations
//! finish on a logical clock that ticks on every request, so they complete whether or not the
//! client polls (as on ARM), and a client that polls sees `InProgress` first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::faults::{inject, Fault, FaultPlan, FaultState, Injector};

/// The bearer token the fake accepts.
pub const TOKEN: &str = "fake-arm-token";
/// Subscription of the fake.
pub const SUB: &str = "00000000-0000-0000-0000-000000000001";
/// Resource group of the fake.
pub const RG: &str = "rg-predictive";
/// Location of the fake.
pub const LOCATION: &str = "westeurope";
/// Requests an operation takes to finish.
const OP_TICKS: u64 = 3;

/// VM sizes offered: (name, cores, memory MiB).
pub const SIZES: [(&str, u64, u64); 4] = [
    ("Standard_B2s", 2, 4096),
    ("Standard_D2s_v5", 2, 8192),
    ("Standard_D4s_v5", 4, 16384),
    ("Standard_F2s_v2", 2, 4096),
];

#[derive(Debug, Clone)]
struct Vm {
    id: String,
    name: String,
    size: String,
    /// `creating`, `running`, `deallocating`, `deallocated`, `starting`, `deleting`.
    power: String,
    tags: Value,
    instance_id: Option<String>,
    created: u64,
    /// `priority`, `evictionPolicy` and `billingProfile` as sent (standalone VMs).
    spot: Option<Value>,
}

#[derive(Debug, Clone)]
struct ScaleSet {
    name: String,
    sku: String,
    capacity: u64,
    next_instance: u64,
    members: BTreeMap<u64, Vm>,
    profile: Value,
}

#[derive(Debug, Clone)]
enum Change {
    Capacity { set: String },
    Power { key: VmKey, power: &'static str },
    Delete { key: VmKey },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum VmKey {
    Standalone(String),
    Member(String, u64),
}

#[derive(Debug)]
struct Op {
    done_at: u64,
    changes: Vec<Change>,
    finished: bool,
}

/// The fake's state.
#[derive(Debug, Default)]
pub struct ArmState {
    tick: u64,
    vms: BTreeMap<String, Vm>,
    sets: BTreeMap<String, ScaleSet>,
    ops: BTreeMap<u64, Op>,
    next_op: u64,
    /// Mutating requests by `METHOD path` (for "polls, never re-sends" assertions).
    pub mutations: BTreeMap<String, u32>,
    /// Status polls answered.
    pub polls: u32,
    /// Polls of `Location` status URLs (deletes).
    pub location_polls: u32,
    /// VMs ever created (standalone and scale set members): the ground truth for duplicates.
    pub created: u64,
}

/// A running ARM fake.
#[derive(Debug, Clone)]
pub struct ArmFake {
    /// Its base URL.
    pub endpoint: String,
    /// Its state.
    pub state: Arc<Mutex<ArmState>>,
    /// Its fault injector.
    pub faults: Arc<Injector>,
}

fn err(status: StatusCode, code: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": format!("{code} (fake)")}})),
    )
        .into_response()
}

/// ARM's throttling and server-error answers.
pub fn arm_error(_: &HeaderMap, fault: Fault) -> Response {
    match fault {
        Fault::Throttle => err(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
        _ => err(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
    }
}

fn vm_id(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{name}")
}

fn set_id(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}")
}

impl Vm {
    fn json(&self) -> Value {
        let provisioning = match self.power.as_str() {
            "creating" => "Creating",
            "deleting" => "Deleting",
            _ => "Succeeded",
        };
        let mut statuses =
            vec![json!({"code": format!("ProvisioningState/{}", provisioning.to_lowercase())})];
        if !matches!(self.power.as_str(), "creating" | "deleting") {
            statuses.push(json!({"code": format!("PowerState/{}", self.power)}));
        }
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "location": LOCATION,
            "tags": self.tags,
            "properties": {
                "provisioningState": provisioning,
                "hardwareProfile": {"vmSize": self.size},
                "timeCreated": format!("2026-01-01T00:00:{:02}Z", self.created % 60),
                "instanceView": {"statuses": statuses},
            },
        });
        if let Some(spot) = &self.spot {
            for key in ["priority", "evictionPolicy", "billingProfile"] {
                if let Some(x) = spot.get(key) {
                    v["properties"][key] = x.clone();
                }
            }
        }
        if let Some(iid) = &self.instance_id {
            v["instanceId"] = json!(iid);
            v["sku"] = json!({"name": self.size});
        }
        v
    }
}

impl ArmState {
    /// Adds a scale set with `capacity` running members.
    pub fn add_scale_set(&mut self, name: &str, sku: &str, capacity: u64) {
        let mut set = ScaleSet {
            name: name.to_owned(),
            sku: sku.to_owned(),
            capacity: 0,
            next_instance: 0,
            members: BTreeMap::new(),
            profile: json!({
                "storageProfile": {"imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}},
                "osProfile": {"computerNamePrefix": "pred", "adminUsername": "azureuser"},
                "networkProfile": {"networkInterfaceConfigurations": [{"name": "nic", "properties": {"primary": true, "ipConfigurations": [{"name": "ip", "properties": {"subnet": {"id": "/subscriptions/x/subnets/default"}}}]}}]},
            }),
        };
        set.capacity = capacity;
        self.sets.insert(name.to_owned(), set);
        let tick = self.tick;
        Self::converge(self.sets.get_mut(name).unwrap(), tick);
    }

    /// Live (not deleted) standalone VMs and scale set members.
    pub fn live_vms(&self) -> usize {
        self.vms.len() + self.sets.values().map(|s| s.members.len()).sum::<usize>()
    }

    /// Standalone VMs by tag value.
    pub fn vms_tagged(&self, key: &str, value: &str) -> usize {
        self.vms
            .values()
            .filter(|v| v.tags.get(key).and_then(Value::as_str) == Some(value))
            .count()
    }

    /// Members of a scale set.
    pub fn members(&self, set: &str) -> usize {
        self.sets.get(set).map_or(0, |s| s.members.len())
    }

    /// Adds and removes members until the set has `capacity` of them.
    fn converge(set: &mut ScaleSet, tick: u64) -> u64 {
        let mut created = 0;
        while (set.members.len() as u64) < set.capacity {
            let iid = set.next_instance;
            set.next_instance += 1;
            set.members.insert(
                iid,
                Vm {
                    id: format!("{}/virtualMachines/{iid}", set_id(&set.name)),
                    name: format!("{}_{iid}", set.name),
                    size: set.sku.clone(),
                    power: "running".into(),
                    tags: json!({}),
                    instance_id: Some(iid.to_string()),
                    created: tick,
                    spot: None,
                },
            );
            created += 1;
        }
        while (set.members.len() as u64) > set.capacity {
            let last = *set.members.keys().next_back().unwrap();
            set.members.remove(&last);
        }
        created
    }

    fn vm_mut(&mut self, key: &VmKey) -> Option<&mut Vm> {
        match key {
            VmKey::Standalone(n) => self.vms.get_mut(n),
            VmKey::Member(s, i) => self.sets.get_mut(s).and_then(|s| s.members.get_mut(i)),
        }
    }

    /// Finishes the operations that are due.
    fn advance(&mut self) {
        self.tick += 1;
        let tick = self.tick;
        let due: Vec<u64> = self
            .ops
            .iter()
            .filter(|(_, o)| !o.finished && o.done_at <= tick)
            .map(|(k, _)| *k)
            .collect();
        for id in due {
            let changes = {
                let op = self.ops.get_mut(&id).unwrap();
                op.finished = true;
                std::mem::take(&mut op.changes)
            };
            for c in changes {
                match c {
                    Change::Capacity { set } => {
                        if let Some(s) = self.sets.get_mut(&set) {
                            self.created += Self::converge(s, tick);
                        }
                    }
                    Change::Power { key, power } => {
                        if let Some(vm) = self.vm_mut(&key) {
                            vm.power = power.into();
                        }
                    }
                    Change::Delete { key } => match key {
                        VmKey::Standalone(n) => {
                            self.vms.remove(&n);
                        }
                        VmKey::Member(s, i) => {
                            if let Some(set) = self.sets.get_mut(&s) {
                                set.members.remove(&i);
                            }
                        }
                    },
                }
            }
        }
    }

    fn start_op(&mut self, changes: Vec<Change>) -> u64 {
        self.next_op += 1;
        let id = self.next_op;
        self.ops.insert(
            id,
            Op {
                done_at: self.tick + OP_TICKS,
                changes,
                finished: false,
            },
        );
        id
    }
}

#[derive(Clone)]
struct Ctx {
    state: Arc<Mutex<ArmState>>,
    base: String,
}

fn accepted(base: &str, op: u64, status: StatusCode, body: Value) -> Response {
    let url = format!("{base}/subscriptions/{SUB}/providers/Microsoft.Compute/locations/{LOCATION}/operations/{op}?api-version=2024-07-01");
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert("azure-asyncoperation", url.parse().unwrap());
    r.headers_mut().insert("retry-after", "0".parse().unwrap());
    r
}

/// A `202 Accepted` with only a `Location` status URL (ARM's other long-running style, used here
/// for deletes): polling it answers `202` until the operation is done, then `200`.
fn accepted_location(base: &str, op: u64) -> Response {
    let url = format!("{base}/subscriptions/{SUB}/providers/Microsoft.Compute/locations/{LOCATION}/operationResults/{op}?api-version=2024-07-01");
    let mut r = StatusCode::ACCEPTED.into_response();
    r.headers_mut().insert("location", url.parse().unwrap());
    r.headers_mut().insert("retry-after", "0".parse().unwrap());
    r
}

fn known_size(size: &str) -> bool {
    SIZES.iter().any(|(n, _, _)| *n == size)
}

async fn handle(State(ctx): State<Ctx>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {TOKEN}") {
        return err(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    }
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();
    let mut st = ctx.state.lock().unwrap();
    st.advance();
    if method != Method::GET {
        *st.mutations.entry(format!("{method} {path}")).or_default() += 1;
    }
    // ARM paths are case-insensitive (the REST specs spell some `virtualmachines`).
    const CANONICAL: [&str; 5] = [
        "virtualMachines",
        "virtualMachineScaleSets",
        "resourceGroups",
        "providers",
        "Microsoft.Compute",
    ];
    let seg: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            CANONICAL
                .iter()
                .find(|c| c.eq_ignore_ascii_case(s))
                .copied()
                .unwrap_or(s)
        })
        .collect();
    let base = ctx.base.as_str();
    match (method.as_str(), seg.as_slice()) {
        (
            "GET",
            ["subscriptions", _, "providers", "Microsoft.Compute", "locations", _, "operations", id],
        ) => {
            st.polls += 1;
            let Some(op) = id.parse::<u64>().ok().and_then(|i| st.ops.get(&i)) else {
                return err(StatusCode::NOT_FOUND, "NotFound");
            };
            let status = if op.finished {
                "Succeeded"
            } else {
                "InProgress"
            };
            let mut r = axum::Json(json!({"status": status})).into_response();
            r.headers_mut().insert("retry-after", "0".parse().unwrap());
            r
        }
        (
            "GET",
            ["subscriptions", _, "providers", "Microsoft.Compute", "locations", _, "operationResults", id],
        ) => {
            st.polls += 1;
            st.location_polls += 1;
            match id.parse::<u64>().ok().and_then(|i| st.ops.get(&i)) {
                Some(op) if op.finished => StatusCode::OK.into_response(),
                Some(_) => accepted_location(base, id.parse().unwrap()),
                None => err(StatusCode::NOT_FOUND, "NotFound"),
            }
        }
        (
            "GET",
            ["subscriptions", _, "providers", "Microsoft.Compute", "locations", _, "vmSizes"],
        ) => {
            let value: Vec<Value> = SIZES
                .iter()
                .map(|(n, c, m)| json!({"name": n, "numberOfCores": c, "memoryInMB": m}))
                .collect();
            axum::Json(json!({"value": value})).into_response()
        }
        (
            m,
            ["subscriptions", _, "resourceGroups", _, "providers", "Microsoft.Compute", "virtualMachineScaleSets", name, rest @ ..],
        ) => {
            let name = (*name).to_owned();
            let Some(set) = st.sets.get(&name).cloned() else {
                return err(StatusCode::NOT_FOUND, "ResourceNotFound");
            };
            match (m, rest) {
                ("GET", []) => axum::Json(json!({
                    "id": set_id(&name), "name": name, "location": LOCATION,
                    "sku": {"name": set.sku, "tier": "Standard", "capacity": set.capacity},
                    "properties": {"provisioningState": "Succeeded", "virtualMachineProfile": set.profile},
                }))
                .into_response(),
                ("PATCH", []) => {
                    let s = st.sets.get_mut(&name).unwrap();
                    if let Some(sku) = body.pointer("/sku/name").and_then(Value::as_str) {
                        if !known_size(sku) {
                            return err(StatusCode::BAD_REQUEST, "InvalidParameter");
                        }
                        s.sku = sku.to_owned();
                    }
                    if let Some(c) = body.pointer("/sku/capacity").and_then(Value::as_u64) {
                        s.capacity = c;
                    }
                    let view = json!({"id": set_id(&name), "name": name, "location": LOCATION,
                        "sku": {"name": s.sku, "capacity": s.capacity},
                        "properties": {"provisioningState": "Updating"}});
                    let op = st.start_op(vec![Change::Capacity { set: name.clone() }]);
                    accepted(base, op, StatusCode::OK, view)
                }
                ("POST", ["delete"]) => {
                    let ids: Vec<u64> = body
                        .get("instanceIds")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().and_then(|s| s.parse().ok()))
                        .collect();
                    let s = st.sets.get_mut(&name).unwrap();
                    let mut changes = Vec::new();
                    for i in ids {
                        if let Some(vm) = s.members.get_mut(&i) {
                            vm.power = "deleting".into();
                            s.capacity = s.capacity.saturating_sub(1);
                            changes.push(Change::Delete { key: VmKey::Member(name.clone(), i) });
                        }
                    }
                    let op = st.start_op(changes);
                    accepted(base, op, StatusCode::ACCEPTED, Value::Null)
                }
                ("GET", ["virtualMachines"]) => {
                    let value: Vec<Value> = set.members.values().map(Vm::json).collect();
                    axum::Json(json!({"value": value})).into_response()
                }
                (m, ["virtualMachines", iid, action @ ..]) => {
                    let Some(i) = iid.parse::<u64>().ok().filter(|i| set.members.contains_key(i)) else {
                        return err(StatusCode::NOT_FOUND, "ResourceNotFound");
                    };
                    let key = VmKey::Member(name.clone(), i);
                    vm_action(&mut st, base, m, key, action, &body)
                }
                _ => err(StatusCode::BAD_REQUEST, "InvalidRequestFormat"),
            }
        }
        (
            "GET",
            ["subscriptions", _, "resourceGroups", _, "providers", "Microsoft.Compute", "virtualMachines"],
        ) => {
            let expand = parts
                .uri
                .query()
                .unwrap_or("")
                .contains("expand=instanceView");
            let value: Vec<Value> = st
                .vms
                .values()
                .map(|v| {
                    let mut j = v.json();
                    if !expand {
                        j["properties"]
                            .as_object_mut()
                            .unwrap()
                            .remove("instanceView");
                    }
                    j
                })
                .collect();
            axum::Json(json!({"value": value})).into_response()
        }
        (
            m,
            ["subscriptions", _, "resourceGroups", _, "providers", "Microsoft.Compute", "virtualMachines", name, action @ ..],
        ) => {
            let name = (*name).to_owned();
            let tick = st.tick;
            if m == "PUT" && action.is_empty() {
                let size = body
                    .pointer("/properties/hardwareProfile/vmSize")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !known_size(size) {
                    return err(StatusCode::BAD_REQUEST, "InvalidParameter");
                }
                let tags = body.get("tags").cloned().unwrap_or(json!({}));
                let priority = body.pointer("/properties/priority").and_then(Value::as_str);
                let eviction = body.pointer("/properties/evictionPolicy");
                // ARM: an eviction policy and a max price only go with Spot (or Low) priority.
                let spot_like = matches!(priority, Some("Spot" | "Low"));
                if !spot_like
                    && (eviction.is_some() || body.pointer("/properties/billingProfile").is_some())
                {
                    return err(StatusCode::BAD_REQUEST, "InvalidParameter");
                }
                let spot = spot_like.then(|| body["properties"].clone());
                let (status, creating) = match st.vms.get_mut(&name) {
                    Some(vm) => {
                        vm.tags = tags;
                        (StatusCode::OK, false)
                    }
                    None => {
                        st.created += 1;
                        st.vms.insert(
                            name.clone(),
                            Vm {
                                id: vm_id(&name),
                                name: name.clone(),
                                size: size.to_owned(),
                                power: "creating".into(),
                                tags,
                                instance_id: None,
                                created: tick,
                                spot,
                            },
                        );
                        (StatusCode::CREATED, true)
                    }
                };
                let view = st.vms[&name].json();
                let changes = if creating {
                    vec![Change::Power {
                        key: VmKey::Standalone(name.clone()),
                        power: "running",
                    }]
                } else {
                    Vec::new()
                };
                let op = st.start_op(changes);
                return accepted(base, op, status, view);
            }
            if !st.vms.contains_key(&name) {
                return err(StatusCode::NOT_FOUND, "ResourceNotFound");
            }
            vm_action(&mut st, base, m, VmKey::Standalone(name), action, &body)
        }
        _ => err(StatusCode::NOT_FOUND, "NotFound"),
    }
}

fn vm_action(
    st: &mut ArmState,
    base: &str,
    method: &str,
    key: VmKey,
    action: &[&str],
    body: &Value,
) -> Response {
    let vm = st.vm_mut(&key).unwrap().clone();
    let conflict = || err(StatusCode::CONFLICT, "OperationNotAllowed");
    match (method, action) {
        ("GET", []) => axum::Json(vm.json()).into_response(),
        ("POST", ["deallocate"]) => match vm.power.as_str() {
            "running" => {
                st.vm_mut(&key).unwrap().power = "deallocating".into();
                let op = st.start_op(vec![Change::Power {
                    key,
                    power: "deallocated",
                }]);
                accepted(base, op, StatusCode::ACCEPTED, Value::Null)
            }
            "deallocating" | "deallocated" => {
                let op = st.start_op(Vec::new());
                accepted(base, op, StatusCode::ACCEPTED, Value::Null)
            }
            _ => conflict(),
        },
        ("POST", ["start"]) => match vm.power.as_str() {
            "deallocated" => {
                st.vm_mut(&key).unwrap().power = "starting".into();
                let op = st.start_op(vec![Change::Power {
                    key,
                    power: "running",
                }]);
                accepted(base, op, StatusCode::ACCEPTED, Value::Null)
            }
            "running" | "starting" => {
                let op = st.start_op(Vec::new());
                accepted(base, op, StatusCode::ACCEPTED, Value::Null)
            }
            _ => conflict(),
        },
        ("PATCH", []) => {
            let Some(size) = body
                .pointer("/properties/hardwareProfile/vmSize")
                .and_then(Value::as_str)
            else {
                return err(StatusCode::BAD_REQUEST, "InvalidRequestContent");
            };
            if !known_size(size) {
                return err(StatusCode::BAD_REQUEST, "InvalidParameter");
            }
            st.vm_mut(&key).unwrap().size = size.to_owned();
            let view = st.vm_mut(&key).unwrap().json();
            let op = st.start_op(Vec::new());
            accepted(base, op, StatusCode::OK, view)
        }
        ("DELETE", []) => {
            if vm.power == "deleting" {
                let op = st.start_op(Vec::new());
                return accepted_location(base, op);
            }
            st.vm_mut(&key).unwrap().power = "deleting".into();
            let op = st.start_op(vec![Change::Delete { key }]);
            accepted_location(base, op)
        }
        _ => err(
            StatusCode::BAD_REQUEST,
            &format!("InvalidRequestFormat {method} {action:?}"),
        ),
    }
}

/// Starts the fake on a free loopback port.
pub async fn start(plan: FaultPlan) -> ArmFake {
    let injector = Injector::new(plan);
    let state = Arc::new(Mutex::new(ArmState::default()));
    // The base URL is known only once bound: bind first, then build the router.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let router = axum::Router::new()
        .fallback(handle)
        .with_state(Ctx {
            state: state.clone(),
            base: base.clone(),
        })
        .layer(axum::middleware::from_fn_with_state(
            FaultState {
                injector: injector.clone(),
                respond: arm_error,
            },
            inject,
        ));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    ArmFake {
        endpoint: base,
        state,
        faults: injector,
    }
}
