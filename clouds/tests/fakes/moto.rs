//! moto's server (an EC2 / Auto Scaling emulator) for the AWS adapter tests, started on a free
//! loopback port, with a fault-injecting proxy in front of it.
//!
//! When moto is missing the tests skip with a message, except under `CI`, where they fail.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::faults::{inject, Fault, FaultPlan, FaultState, Injector};

/// A running moto server, killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn spawn(program: &str, args: &[&str], port: u16) -> Option<Child> {
    let port = port.to_string();
    Command::new(program)
        .args(args)
        .args(["-H", "127.0.0.1", "-p", &port])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

impl Moto {
    /// Starts moto (`moto_server` on PATH, else `python3 -m moto.server`).
    ///
    /// Returns `None` (after printing why) when moto is not installed and `CI` is not set.
    ///
    /// # Panics
    /// When moto is missing under `CI`, or does not accept connections within 60 s.
    pub fn start() -> Option<Moto> {
        let port = free_port();
        let python_has_moto = || {
            Command::new("python3")
                .args(["-c", "import moto.server"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let child = spawn("moto_server", &[], port).or_else(|| {
            python_has_moto()
                .then(|| spawn("python3", &["-m", "moto.server"], port))
                .flatten()
        });
        let Some(child) = child else {
            let why = "moto is not installed (pip install 'moto[server]'; scripts/install-test-deps.sh does it)";
            if std::env::var_os("CI").is_some() {
                panic!("{why}");
            }
            eprintln!("skipping: {why}");
            return None;
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let moto = Moto { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on {addr} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }
}

/// The AWS service a signed request is for, from its SigV4 credential scope.
fn service_of(headers: &HeaderMap) -> &'static str {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth.contains("/autoscaling/") {
        "autoscaling"
    } else {
        "ec2"
    }
}

/// EC2 and Auto Scaling throttling and server-error answers, as documented.
pub fn aws_error(headers: &HeaderMap, fault: Fault) -> Response {
    let (status, code) = match (service_of(headers), fault) {
        ("ec2", Fault::Throttle) => (StatusCode::SERVICE_UNAVAILABLE, "RequestLimitExceeded"),
        ("ec2", _) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        (_, Fault::Throttle) => (StatusCode::BAD_REQUEST, "Throttling"),
        (_, _) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure"),
    };
    let body = if service_of(headers) == "ec2" {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>\
             <Message>injected</Message></Error></Errors><RequestID>fault</RequestID></Response>"
        )
    } else {
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected</Message>\
             </Error><RequestId>fault</RequestId></ErrorResponse>"
        )
    };
    let mut r = (status, [("content-type", "text/xml")], body).into_response();
    if fault == Fault::Throttle {
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
    }
    r
}

#[derive(Clone)]
struct Upstream {
    base: String,
    http: reqwest::Client,
}

async fn forward(State(up): State<Upstream>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
    let mut out = up.http.request(method, format!("{}{}", up.base, path));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    match out.body(bytes).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .map(|v| v.as_bytes().to_vec());
            let body = resp.bytes().await.unwrap_or_default();
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            if let Some(c) = ctype {
                r.headers_mut()
                    .insert("content-type", c.try_into().unwrap());
            }
            r
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// A fault-injecting proxy in front of moto; returns its address and the injector.
pub async fn proxy(moto: &Moto, plan: FaultPlan) -> (SocketAddr, Arc<Injector>) {
    let injector = Injector::new(plan);
    let up = Upstream {
        base: format!("http://{}", moto.addr),
        http: reqwest::Client::new(),
    };
    let router = axum::Router::new().fallback(forward).with_state(up).layer(
        axum::middleware::from_fn_with_state(
            FaultState {
                injector: injector.clone(),
                respond: aws_error,
            },
            inject,
        ),
    );
    (super::serve(router).await, injector)
}
