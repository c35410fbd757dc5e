//! Local fakes of cloud REST APIs for the adapter tests, with fault injection.
//!
//! - [`faults`]: seeded throttling / 5xx / timeout / dropped-response injection (axum middleware).
//! - [`moto`]: starts moto's server for the EC2 adapter and puts a fault-injecting proxy in front.
//! - `azure_arm`, `gcp_compute`: fakes of the ARM and Compute Engine REST paths.
#![allow(dead_code, unreachable_pub)]

pub mod azure_arm;
pub mod faults;
pub mod gcp_compute;
pub mod moto;

use std::net::SocketAddr;

/// Serves `router` on a free loopback port; the server stops when the runtime ends.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

use std::sync::Arc;
use std::time::Duration;

use predictive_clouds::clock::{SplitMix, TokioSleep};
use predictive_clouds::conformance::ConformanceConfig;
use predictive_clouds::layer::retry::{Retry, RetryPolicy};

/// The shared retry layer with short backoffs (the fakes answer in milliseconds).
pub fn retried<P>(inner: P, seed: u64) -> Retry<P> {
    Retry::new(
        inner,
        RetryPolicy {
            max_attempts: 12,
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(40),
            ..RetryPolicy::default()
        },
        Arc::new(TokioSleep),
        Arc::new(SplitMix::new(seed)),
    )
}

/// Conformance settings for a local emulator: real (short) waits.
pub fn conformance(
    group: &str,
    instance_type: &str,
    resize_to: &str,
    run_id: &str,
) -> ConformanceConfig {
    let mut cfg = ConformanceConfig::new(group, instance_type, resize_to, Arc::new(TokioSleep))
        .with_run_id(run_id);
    cfg.poll_interval = Duration::from_millis(10);
    cfg.max_polls = 300;
    cfg
}
