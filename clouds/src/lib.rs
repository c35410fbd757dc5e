//! `predictive-clouds`: the `CloudProvider` port, its shared types and errors, the in-process `sim`
//! cloud (the embedded default), the `fake` used by controller tests, and the adapters for EC2,
//! Azure and GCP behind cargo features.
//!
//! - [`port`]: the [`CloudProvider`] trait: one async trait over managed groups and instances.
//! - [`types`]: ids, [`InstanceState`], tags and ownership, [`LaunchRequest`], catalog entries.
//! - [`error`]: [`CloudError`] with an [`ErrorKind`] and `is_*` predicates.
//! - [`clock`]: injected [`Clock`](clock::Clock), [`Sleep`](clock::Sleep) and
//!   [`Rng`](clock::Rng), with manual (virtual-time) and seeded implementations.
//! - [`sim`]: the in-process cloud on virtual time (delays, capacity and quota errors, catalog
//!   prices, idempotent launches, JSON persistence), the embedded default.
//! - [`fake`]: records calls for scenario tests and injects faults (throttling, 5xx, timeouts,
//!   dropped responses) at a seeded rate, over the sim or in front of any provider.
//! - [`layer`]: timeout, retry, rate limit, metrics and tracing decorators, composed by
//!   [`layer::Stack`].
//! - [`conformance`]: the scenarios every implementation passes, public so adapter tests run it
//!   on their own provider.
//!
//! Default features pull no cloud SDK; the adapters come with the `aws`, `azure` and `gcp`
//! features. See `docs/clouds.md` for the design.

pub mod clock;
pub mod conformance;
pub mod error;
pub mod fake;
pub mod layer;
pub mod port;
pub mod sim;
pub mod types;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(feature = "price-api")]
pub mod pricing;

pub use error::{CloudError, ErrorKind, Result};
pub use port::{CloudProvider, DynProvider};
pub use types::{
    Group, GroupId, IdempotencyToken, Instance, InstanceId, InstanceState, InstanceType,
    InstanceTypeInfo, InvalidLabel, LaunchRequest, Operation, Owner, Price, PurchaseOption,
    StopMode, Tags, OWNER_TAG, TOKEN_TAG,
};
