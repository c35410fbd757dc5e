//! Fault injection for the local fakes: throttling, server errors, timeouts and dropped
//! responses, drawn at a configurable rate from a seeded generator (so a failing run replays).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The cloud's throttling answer (429 / RequestLimitExceeded); nothing applied.
    Throttle,
    /// A 5xx answer; nothing applied.
    ServerError,
    /// No answer until after the client gave up; nothing applied.
    Timeout,
    /// The request **is applied**, then the response breaks off mid-way.
    Dropped,
}

/// How often and how faults are injected.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// Probability that a request gets a fault, in `[0, 1]`.
    pub rate: f64,
    /// Seed of the generator.
    pub seed: u64,
    /// How long a `Timeout` fault holds the request (longer than the client's attempt timeout).
    pub hang: Duration,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        FaultPlan {
            rate: 0.0,
            seed: 1,
            hang: Duration::from_millis(1500),
        }
    }

    /// Faults at `rate` with `seed`.
    pub fn at(rate: f64, seed: u64) -> Self {
        FaultPlan {
            rate,
            seed,
            ..FaultPlan::none()
        }
    }
}

/// Draws faults and counts them.
#[derive(Debug)]
pub struct Injector {
    plan: FaultPlan,
    state: Mutex<u64>,
    enabled: AtomicBool,
    counts: Mutex<BTreeMap<Fault, u32>>,
    requests: Mutex<u32>,
}

impl Injector {
    /// A new injector following `plan`.
    pub fn new(plan: FaultPlan) -> Arc<Self> {
        Arc::new(Injector {
            plan,
            state: Mutex::new(plan.seed.max(1)),
            enabled: AtomicBool::new(true),
            counts: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(0),
        })
    }

    /// Turns injection on or off (fixtures are set up and checked without faults).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    fn next_unit(&self) -> f64 {
        // xorshift64*: small, deterministic, good enough to spread faults.
        let mut s = self.state.lock().unwrap();
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        let v = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The fault for the next request, if any.
    pub fn draw(&self) -> Option<Fault> {
        *self.requests.lock().unwrap() += 1;
        if !self.enabled.load(Ordering::SeqCst) || self.plan.rate <= 0.0 {
            return None;
        }
        if self.next_unit() >= self.plan.rate {
            return None;
        }
        let fault = match (self.next_unit() * 4.0) as u32 {
            0 => Fault::Throttle,
            1 => Fault::ServerError,
            2 => Fault::Timeout,
            _ => Fault::Dropped,
        };
        *self.counts.lock().unwrap().entry(fault).or_default() += 1;
        Some(fault)
    }

    /// Faults injected so far, by kind.
    pub fn counts(&self) -> BTreeMap<Fault, u32> {
        self.counts.lock().unwrap().clone()
    }

    /// Faults injected so far.
    pub fn total(&self) -> u32 {
        self.counts.lock().unwrap().values().sum()
    }

    /// The configured fault rate.
    pub fn rate(&self) -> f64 {
        self.plan.rate
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u32 {
        *self.requests.lock().unwrap()
    }
}

/// How a cloud spells its throttling and server-error answers.
pub type ErrorResponder = fn(&HeaderMap, Fault) -> Response;

/// State of the fault middleware.
#[derive(Clone)]
pub struct FaultState {
    /// The injector.
    pub injector: Arc<Injector>,
    /// The cloud's error answers.
    pub respond: ErrorResponder,
}

/// Axum middleware injecting faults in front of a fake's routes.
pub async fn inject(State(state): State<FaultState>, req: Request, next: Next) -> Response {
    let Some(fault) = state.injector.draw() else {
        return next.run(req).await;
    };
    match fault {
        Fault::Throttle | Fault::ServerError => (state.respond)(req.headers(), fault),
        Fault::Timeout => {
            tokio::time::sleep(state.injector.plan.hang).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Fault::Dropped => {
            let applied = next.run(req).await;
            let status = applied.status();
            let broken = futures::stream::once(async {
                Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other(
                    "response dropped by the fault injector",
                ))
            });
            let mut out = Response::new(Body::from_stream(broken));
            *out.status_mut() = status;
            out
        }
    }
}
