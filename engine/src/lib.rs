//! `predictive-engine`: the pure domain of `predictive`.
//!
//! Data flows one way: metrics → [`series`] → [`forecast`] → [`cost`] / [`policy`] → plan.
//! Nothing in this crate performs IO, reads a clock or spawns tasks: time is always a parameter,
//! randomness comes from seeded generators, and every decision is a pure function of its inputs.

pub mod anomaly;
pub mod civil;
pub mod cost;
pub mod forecast;
pub mod noise;
pub mod policy;
pub mod series;
pub mod shadow;
pub mod simulate;
