//! `simulate`: pure virtual-time replays of usage traces through allocation policies.
//!
//! - [`baselines`]: the benchmark protocol's reference policies (PROTOCOL.md §2);
//! - [`metrics`]: the protocol's allocation scores;
//! - [`hindsight`]: how little slack the series allow at a shortfall rate, known in advance (a
//!   reference for the benchmark's targets, not a policy);
//! - [`replay`]: the whole loop on whole units (policy, boot and promotion delays, prices,
//!   shadow pool) in virtual time.
//!
//! The benchmark's `predictive` allocations come from [`crate::policy::replay`].

pub mod baselines;
pub mod hindsight;
pub mod metrics;
pub mod replay;
