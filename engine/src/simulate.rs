//! `simulate`: pure virtual-time replays of usage traces through allocation policies.
//!
//! - [`baselines`]: the benchmark protocol's reference policies (PROTOCOL.md §2);
//! - [`metrics`]: the protocol's allocation scores;
//! - [`replay`]: the whole loop on whole units (policy, boot and promotion delays, prices,
//!   shadow pool) in virtual time.
//!
//! The benchmark's `predictive` allocations come from [`crate::policy::replay`].

pub mod baselines;
pub mod metrics;
pub mod replay;
