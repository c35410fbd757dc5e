//! `cost`: the three-cloud price catalog and cost-optimal sizing under budgets and priorities.
//!
//! - [`Catalog`] holds instance types, regions and hourly prices (on-demand, spot, 1- and 3-year
//!   committed) of AWS, Azure and GCP. [`Catalog::embedded`] is the committed snapshot;
//!   [`build::build_catalog`] rebuilds one from source files (pure: it takes their text).
//! - [`SizingParams`] → [`SizingParams::check`] → [`ValidSizing`] → [`size`] → [`Sizing`]: the
//!   cheapest allocation `{cloud, region, instance_type, count, purchase, hourly_cost}[]` that
//!   covers a demand under constraints, found by an exact branch and bound over the Pareto front
//!   of the offers (see [`solver`]).
//! - [`BudgetParams`] → [`BudgetParams::check`] → [`ValidBudget`] → [`allocate_budget`]: several
//!   workloads sharing a hard hourly cap, served by priority, never below their floors.
//!
//! Everything here is pure: no IO, no clock. Time enters only as the horizon parameter.
//!
//! # Example
//! ```no_run
//! use predictive_engine::cost::{size, Catalog, Demand, SizingParams};
//! let catalog = Catalog::embedded();
//! let valid = SizingParams::new(Demand::new(16.0, 64.0)).check(catalog)?;
//! let sizing = size(catalog, &valid)?;
//! println!("{} USD/h", sizing.total_hourly_cost);
//! # Ok::<(), predictive_engine::cost::Error>(())
//! ```

pub mod budget;
pub mod build;
pub mod catalog;
mod lp;
pub mod sizing;
pub mod solver;

pub use budget::{
    allocate_budget, allocate_proportional, BudgetParams, BudgetPlan, ValidBudget, WorkloadParams,
    WorkloadPlan,
};
pub use catalog::{
    Arch, Catalog, CatalogStats, Cloud, InstanceType, Offer, Purchase, Region, SourceInfo,
    HOURS_PER_MONTH,
};
pub use sizing::{
    size, AllocationLine, Alternative, Capacity, Demand, Explanation, QuantileDemand, Sizing,
    SizingParams, SpotRisk, ValidSizing,
};

/// Errors of the cost engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cloud name is not `aws`, `azure` or `gcp`.
    #[error("unknown cloud `{name}` (expected aws, azure or gcp)")]
    UnknownCloud {
        /// The name given.
        name: String,
    },
    /// An architecture name is not `x86_64` or `arm64`.
    #[error("unknown architecture `{name}` (expected x86_64 or arm64)")]
    UnknownArch {
        /// The name given.
        name: String,
    },
    /// A purchase option is not one of the known ones.
    #[error("unknown purchase option `{name}` (expected on-demand, spot, reserved, reserved-1y or reserved-3y)")]
    UnknownPurchase {
        /// The name given.
        name: String,
    },
    /// A region is not in the catalog for any allowed cloud.
    #[error("unknown region `{name}` in constraint `{constraint}`: no allowed cloud prices it in the catalog")]
    UnknownRegion {
        /// The region given.
        name: String,
        /// The constraint that named it (`regions`, `deny_regions`).
        constraint: &'static str,
    },
    /// A family is not in the catalog for any allowed cloud.
    #[error("unknown instance family `{name}` in constraint `{constraint}`")]
    UnknownFamily {
        /// The family given.
        name: String,
        /// The constraint that named it (`families`, `deny_families`).
        constraint: &'static str,
    },
    /// A demand value is zero, negative or not a number where a positive one is needed.
    #[error("invalid demand: {resource} = {value} ({reason})")]
    InvalidDemand {
        /// The resource (`cpu`, `mem_gib`, `gpu`, `network_gbps`, `quantile`).
        resource: &'static str,
        /// The value given.
        value: f64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A constraint parameter is out of its range.
    #[error("invalid constraint `{constraint}`: {reason}")]
    InvalidConstraint {
        /// The parameter (`max_count`, `spot_share_cap`, `utilisation`...).
        constraint: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The filters leave no priced offer to choose from.
    #[error("no offer is left after applying constraint `{constraint}` ({detail})")]
    NoOffers {
        /// The filter that removed the last offers.
        constraint: &'static str,
        /// What was left before it.
        detail: String,
    },
    /// No allocation satisfies the constraints.
    #[error("infeasible: constraint `{constraint}` cannot be met ({detail})")]
    Infeasible {
        /// The constraint that makes the problem infeasible.
        constraint: &'static str,
        /// Why.
        detail: String,
    },
    /// The budget cannot pay for the workloads' floors.
    #[error("budget of {cap_hourly:.4} USD/h cannot pay the floors of all workloads ({floors_hourly:.4} USD/h)")]
    BudgetBelowFloors {
        /// The hourly cap.
        cap_hourly: f64,
        /// The hourly cost of all floors.
        floors_hourly: f64,
    },
    /// A budget workload failed to size.
    #[error("workload `{name}` cannot be sized")]
    WorkloadFailed {
        /// The workload's name.
        name: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// The catalog text does not parse.
    #[error("invalid catalog at line {line}: {reason}")]
    CatalogInvalid {
        /// 1-based line number.
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A price source file does not parse.
    #[error("invalid source file {file} at line {line}: {reason}")]
    SourceInvalid {
        /// The file (as given to the builder).
        file: String,
        /// 1-based line number (0 for the whole file).
        line: usize,
        /// What is wrong there.
        reason: String,
    },
}

/// Result of the cost engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
