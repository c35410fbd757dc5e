//! `predictive-controller`: the tokio shell that runs the scaling loop
//! (observe → forecast → decide → act), its store, API and metrics.
//!
//! - [`config`]: the TOML/YAML config, checked into [`config::ValidConfig`].
//! - [`store`]: durable state (SQLite by default, PostgreSQL for replicas).
//! - [`source`]: usage from trace replay, Prometheus and API pushes.
//! - [`run`]: the loop ([`run::Controller`]), its recovery and its guarantees.
//! - [`metrics`]: `/metrics` in the Prometheus text format.
//! - [`clock`]: injected time (virtual in the demo and tests).

pub mod adapters;
pub mod api;
pub mod bench;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod embedded;
pub mod inspect;
#[cfg(test)]
mod loop_tests;
pub mod metrics;
pub mod png;
pub mod refit;
pub mod remediate;
pub mod run;
pub mod shadow;
pub mod source;
pub mod store;
pub mod watch;
