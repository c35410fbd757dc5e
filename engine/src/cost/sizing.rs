//! Sizing: the cheapest allocation of instances that covers a demand under constraints.
//!
//! [`SizingParams`] (unchecked, with the defaults of `PROTOCOL.md` §4) → [`SizingParams::check`]
//! against a catalog → [`ValidSizing`] → [`size`] → [`Sizing`].
//!
//! # Cost model
//! - On-demand: the list price.
//! - Spot: the list price plus the expected cost of interruptions, `spot × (1 + λ·h) + λ·h ×
//!   on-demand`, where `λ` is the cloud's interruption rate per instance-hour and `h` the hours lost
//!   per interruption (replacement boot plus lost work) during which on-demand capacity stands in.
//!   Rates and their sources are in `docs/cost.md` and [`SpotRisk::default`].
//! - Committed (1y/3y): paid for every hour of the term. Over a horizon of `H` hours the user pays
//!   `ceil(H / T)` whole terms, and uses the capacity a share `u` (the utilisation) of the time, so
//!   the effective hourly price is `price × ceil(H/T)·T / H / u`. A commitment is therefore chosen
//!   only when horizon and utilisation make it cheaper than the alternatives.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::catalog::{Arch, Catalog, Cloud, Purchase, HOURS_PER_MONTH};
use super::solver::{self, Candidate, Problem};
use super::{Error, Result};

/// A demand for resources at one point (one quantile) of the horizon.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Demand {
    /// Virtual CPUs.
    pub cpu: f64,
    /// Memory in GiB.
    pub mem_gib: f64,
    /// GPUs.
    #[serde(default)]
    pub gpu: f64,
    /// Network bandwidth in Gbit/s (only types whose bandwidth the catalog knows can cover it).
    #[serde(default)]
    pub network_gbps: f64,
}

impl Demand {
    /// A CPU and memory demand.
    pub fn new(cpu: f64, mem_gib: f64) -> Demand {
        Demand {
            cpu,
            mem_gib,
            gpu: 0.0,
            network_gbps: 0.0,
        }
    }

    /// The same demand with `gpu` GPUs.
    pub fn with_gpu(mut self, gpu: f64) -> Demand {
        self.gpu = gpu;
        self
    }

    /// The same demand with `gbps` of network bandwidth.
    pub fn with_network(mut self, gbps: f64) -> Demand {
        self.network_gbps = gbps;
        self
    }

    /// Every resource multiplied by `f`.
    pub fn scaled(self, f: f64) -> Demand {
        Demand {
            cpu: self.cpu * f,
            mem_gib: self.mem_gib * f,
            gpu: self.gpu * f,
            network_gbps: self.network_gbps * f,
        }
    }

    pub(crate) fn as_array(self) -> [f64; 4] {
        [self.cpu, self.mem_gib, self.gpu, self.network_gbps]
    }
}

/// Demand given as quantiles over the horizon, and the quantile to provision at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileDemand {
    /// `(level, demand)` pairs, e.g. `(0.5, ..), (0.9, ..), (0.95, ..)`; levels in (0, 1).
    pub levels: Vec<(f64, Demand)>,
    /// The quantile to provision at (e.g. 0.95). Between given levels the demand is interpolated
    /// linearly per resource; outside them the nearest level is used.
    pub provision_at: f64,
}

impl QuantileDemand {
    /// The demand at `provision_at`, after checking the levels.
    ///
    /// # Errors
    /// [`Error::InvalidDemand`] for levels outside (0, 1), no levels, or a quantile outside (0, 1).
    pub fn resolve(&self) -> Result<Demand> {
        let q = self.provision_at;
        if !(q > 0.0 && q < 1.0) {
            return Err(Error::InvalidDemand {
                resource: "quantile",
                value: q,
                reason: "the quantile to provision at must be in (0, 1)",
            });
        }
        let mut lv = self.levels.clone();
        if lv.is_empty() {
            return Err(Error::InvalidDemand {
                resource: "quantile",
                value: q,
                reason: "no quantile levels given",
            });
        }
        for (l, _) in &lv {
            if !(*l > 0.0 && *l < 1.0) {
                return Err(Error::InvalidDemand {
                    resource: "quantile",
                    value: *l,
                    reason: "quantile levels must be in (0, 1)",
                });
            }
        }
        lv.sort_by(|a, b| a.0.total_cmp(&b.0));
        if q <= lv[0].0 {
            return Ok(lv[0].1);
        }
        if q >= lv[lv.len() - 1].0 {
            return Ok(lv[lv.len() - 1].1);
        }
        let j = lv.iter().position(|(l, _)| *l >= q).unwrap_or(lv.len() - 1);
        let (l0, d0) = lv[j - 1];
        let (l1, d1) = lv[j];
        let w = if l1 > l0 { (q - l0) / (l1 - l0) } else { 1.0 };
        let a = d0.as_array();
        let b = d1.as_array();
        let m: Vec<f64> = (0..4).map(|k| a[k] + w * (b[k] - a[k])).collect();
        Ok(Demand {
            cpu: m[0],
            mem_gib: m[1],
            gpu: m[2],
            network_gbps: m[3],
        })
    }
}

/// Interruption rates used to price spot capacity (see `docs/cost.md`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpotRisk {
    /// Interruptions per instance-month on AWS.
    pub aws_per_month: f64,
    /// Evictions per instance-month on Azure.
    pub azure_per_month: f64,
    /// Preemptions per instance-month on GCP.
    pub gcp_per_month: f64,
    /// Hours lost per interruption (replacement boot, warm-up and lost work), covered on demand.
    pub hours_lost: f64,
}

impl Default for SpotRisk {
    /// AWS: 10 % of instances interrupted per month, the upper edge of the "5-10 %" band of the
    /// AWS Spot Instance Advisor in which most current types sit. Azure: 10 %/month, the lower
    /// bands of the eviction rates the Azure portal shows. GCP: 15 %/month, since Spot VMs
    /// publish no rate and share the preemption mechanism of preemptible VMs. One hour lost per
    /// interruption.
    fn default() -> Self {
        SpotRisk {
            aws_per_month: 0.10,
            azure_per_month: 0.10,
            gcp_per_month: 0.15,
            hours_lost: 1.0,
        }
    }
}

impl SpotRisk {
    /// Interruptions per instance-hour on `cloud`.
    pub fn per_hour(&self, cloud: Cloud) -> f64 {
        let m = match cloud {
            Cloud::Aws => self.aws_per_month,
            Cloud::Azure => self.azure_per_month,
            Cloud::Gcp => self.gcp_per_month,
        };
        m / HOURS_PER_MONTH
    }

    /// The expected hourly cost of a spot instance with spot price `spot` and on-demand price
    /// `on_demand` (the spot price when unknown).
    pub fn effective(&self, cloud: Cloud, spot: f64, on_demand: Option<f64>) -> f64 {
        let lh = self.per_hour(cloud) * self.hours_lost;
        spot * (1.0 + lh) + lh * on_demand.unwrap_or(spot)
    }
}

/// Unchecked sizing parameters: the demand and the constraints. Defaults follow `PROTOCOL.md` §4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SizingParams {
    /// The demand to cover (ignored when `quantiles` is set).
    pub demand: Demand,
    /// Demand as quantiles over the horizon; when set, the demand at its `provision_at` is covered.
    pub quantiles: Option<QuantileDemand>,
    /// Clouds allowed (empty: all).
    pub clouds: Vec<Cloud>,
    /// Clouds denied.
    pub deny_clouds: Vec<Cloud>,
    /// Regions allowed (empty: every priced region).
    pub regions: Vec<String>,
    /// Regions denied.
    pub deny_regions: Vec<String>,
    /// Families allowed (empty: all), e.g. `m7g`, `n2`, `Dsv5`.
    pub families: Vec<String>,
    /// Families denied.
    pub deny_families: Vec<String>,
    /// Architectures allowed (empty: any).
    pub arch: Vec<Arch>,
    /// Purchase options allowed (default: on-demand only).
    pub purchase: Vec<Purchase>,
    /// At most this many distinct instance types in the mix (None: no limit).
    pub max_types: Option<u32>,
    /// At least this many instances in total.
    pub min_count: u32,
    /// At most this many instances in total (default 100).
    pub max_count: u32,
    /// At most this share (0..=1) of each demanded resource may be covered by spot capacity.
    pub spot_share_cap: f64,
    /// Allow burstable and shared-core types (default false).
    pub include_burstable: bool,
    /// Allow promotional and retired SKUs (default false).
    pub include_promo: bool,
    /// How long the capacity is needed, in hours (prices committed terms; default one month).
    pub horizon_hours: f64,
    /// Share (0, 1] of the horizon the capacity is actually used (prices committed terms).
    pub utilisation: f64,
    /// Interruption rates that price spot capacity.
    pub spot_risk: SpotRisk,
    /// Compute the next-best alternative for the explanation (one more solve; default true).
    pub explain_alternative: bool,
    /// Relative optimality gap of the branch and bound (default 0.0095): the answer is proven to
    /// cost at most `1 / (1 − gap)` times the optimum. 0 asks for the exact optimum.
    pub optimality_gap: f64,
}

impl Default for SizingParams {
    fn default() -> Self {
        SizingParams {
            demand: Demand::default(),
            quantiles: None,
            clouds: Vec::new(),
            deny_clouds: Vec::new(),
            regions: Vec::new(),
            deny_regions: Vec::new(),
            families: Vec::new(),
            deny_families: Vec::new(),
            arch: Vec::new(),
            purchase: vec![Purchase::OnDemand],
            max_types: None,
            min_count: 0,
            max_count: 100,
            spot_share_cap: 1.0,
            include_burstable: false,
            include_promo: false,
            horizon_hours: HOURS_PER_MONTH,
            utilisation: 1.0,
            spot_risk: SpotRisk::default(),
            explain_alternative: true,
            optimality_gap: 0.0095,
        }
    }
}

/// Sizing parameters checked against a catalog. Only these reach [`size`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSizing {
    params: SizingParams,
    demand: Demand,
}

impl ValidSizing {
    /// The checked parameters.
    pub fn params(&self) -> &SizingParams {
        &self.params
    }

    /// The demand that will be covered (resolved from quantiles where given).
    pub fn demand(&self) -> Demand {
        self.demand
    }

    /// The same checked constraints with every demanded resource scaled by `f` (> 0); used by
    /// budget allocation to size a share of a workload.
    pub fn scaled(&self, f: f64) -> ValidSizing {
        ValidSizing {
            params: self.params.clone(),
            demand: self.demand.scaled(f),
        }
    }
}

fn check_nonneg(resource: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(Error::InvalidDemand {
            resource,
            value: v,
            reason: "must be a finite number >= 0",
        });
    }
    Ok(())
}

impl SizingParams {
    /// Parameters with the default constraints and this demand.
    pub fn new(demand: Demand) -> SizingParams {
        SizingParams {
            demand,
            ..SizingParams::default()
        }
    }

    /// Checks the demand and every constraint against `catalog`.
    ///
    /// # Errors
    /// - [`Error::InvalidDemand`]: a negative or non-finite resource, or no positive CPU/memory/GPU.
    /// - [`Error::UnknownRegion`] / [`Error::UnknownFamily`]: a name the catalog does not know.
    /// - [`Error::InvalidConstraint`]: counts, shares, horizon or utilisation out of range.
    pub fn check(&self, catalog: &Catalog) -> Result<ValidSizing> {
        let demand = match &self.quantiles {
            Some(q) => q.resolve()?,
            None => self.demand,
        };
        check_nonneg("cpu", demand.cpu)?;
        check_nonneg("mem_gib", demand.mem_gib)?;
        check_nonneg("gpu", demand.gpu)?;
        check_nonneg("network_gbps", demand.network_gbps)?;
        // Every workload needs some CPU and memory: zero there is a mistake, not a request.
        if demand.cpu <= 0.0 {
            return Err(Error::InvalidDemand {
                resource: "cpu",
                value: demand.cpu,
                reason: "must be positive",
            });
        }
        if demand.mem_gib <= 0.0 {
            return Err(Error::InvalidDemand {
                resource: "mem_gib",
                value: demand.mem_gib,
                reason: "must be positive",
            });
        }
        if self.max_count == 0 {
            return Err(Error::InvalidConstraint {
                constraint: "max_count",
                reason: "must be at least 1".into(),
            });
        }
        if self.min_count > self.max_count {
            return Err(Error::InvalidConstraint {
                constraint: "min_count",
                reason: format!(
                    "min_count {} is above max_count {}",
                    self.min_count, self.max_count
                ),
            });
        }
        if self.max_types == Some(0) {
            return Err(Error::InvalidConstraint {
                constraint: "max_types",
                reason: "must be at least 1".into(),
            });
        }
        if !(0.0..=1.0).contains(&self.spot_share_cap) {
            return Err(Error::InvalidConstraint {
                constraint: "spot_share_cap",
                reason: format!("{} is not in [0, 1]", self.spot_share_cap),
            });
        }
        if !(self.utilisation > 0.0 && self.utilisation <= 1.0) {
            return Err(Error::InvalidConstraint {
                constraint: "utilisation",
                reason: format!("{} is not in (0, 1]", self.utilisation),
            });
        }
        if !(self.horizon_hours.is_finite() && self.horizon_hours > 0.0) {
            return Err(Error::InvalidConstraint {
                constraint: "horizon_hours",
                reason: format!("{} is not a positive number of hours", self.horizon_hours),
            });
        }
        if !(0.0..0.01).contains(&self.optimality_gap) {
            return Err(Error::InvalidConstraint {
                constraint: "optimality_gap",
                reason: format!(
                    "{} is not in [0, 0.01): answers must stay within 1 % of the optimum",
                    self.optimality_gap
                ),
            });
        }
        if self.purchase.is_empty() {
            return Err(Error::InvalidConstraint {
                constraint: "purchase",
                reason: "no purchase option allowed".into(),
            });
        }
        let sr = &self.spot_risk;
        for v in [
            sr.aws_per_month,
            sr.azure_per_month,
            sr.gcp_per_month,
            sr.hours_lost,
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::InvalidConstraint {
                    constraint: "spot_risk",
                    reason: format!("{v} is not a rate >= 0"),
                });
            }
        }
        let clouds = allowed_clouds(self);
        for (list, constraint) in [
            (&self.regions, "regions"),
            (&self.deny_regions, "deny_regions"),
        ] {
            for r in list {
                if !catalog
                    .regions()
                    .iter()
                    .any(|x| &x.name == r && clouds.contains(&x.cloud))
                {
                    return Err(Error::UnknownRegion {
                        name: r.clone(),
                        constraint,
                    });
                }
            }
        }
        for (list, constraint) in [
            (&self.families, "families"),
            (&self.deny_families, "deny_families"),
        ] {
            for f in list {
                if !catalog
                    .types()
                    .iter()
                    .any(|t| t.family.eq_ignore_ascii_case(f) && clouds.contains(&t.cloud))
                {
                    return Err(Error::UnknownFamily {
                        name: f.clone(),
                        constraint,
                    });
                }
            }
        }
        Ok(ValidSizing {
            params: self.clone(),
            demand,
        })
    }
}

fn allowed_clouds(p: &SizingParams) -> Vec<Cloud> {
    Cloud::ALL
        .into_iter()
        .filter(|c| (p.clouds.is_empty() || p.clouds.contains(c)) && !p.deny_clouds.contains(c))
        .collect()
}

/// One line of an allocation: `count` instances of one type, in one region, bought one way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationLine {
    /// The cloud.
    pub cloud: Cloud,
    /// The region.
    pub region: String,
    /// The instance type.
    pub instance_type: String,
    /// How many instances.
    pub count: u32,
    /// How they are bought.
    pub purchase: Purchase,
    /// List price of all `count` instances, USD per hour.
    pub hourly_cost: f64,
    /// Expected cost of all `count` instances per hour as optimised: list price plus spot
    /// interruption risk, or committed price spread over the used hours of the horizon.
    pub effective_hourly_cost: f64,
}

/// Resources provided by an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Capacity {
    /// Virtual CPUs.
    pub cpu: f64,
    /// Memory in GiB.
    pub mem_gib: f64,
    /// GPUs.
    pub gpu: f64,
    /// Network bandwidth in Gbit/s (known bandwidths only).
    pub network_gbps: f64,
}

/// An alternative allocation, for comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    /// What differs from the chosen allocation.
    pub description: String,
    /// Its allocation.
    pub allocation: Vec<AllocationLine>,
    /// Its total list price, USD per hour.
    pub total_hourly_cost: f64,
    /// Its total effective (optimised) cost, USD per hour.
    pub effective_hourly_cost: f64,
}

/// Why this allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// One paragraph in plain words.
    pub summary: String,
    /// Resources whose demand the allocation meets with less than one smallest instance to spare.
    pub binding: Vec<String>,
    /// The best allocation that does not use the chosen allocation's main instance type.
    pub next_best: Option<Alternative>,
    /// Offers (type × region × purchase) that passed the constraints.
    pub candidates: usize,
    /// Offers left after dominance pruning (cheapest per type, then the Pareto front).
    pub pareto: usize,
    /// Branch-and-bound nodes explored.
    pub nodes: u64,
    /// Whether optimality was proven (false only if the node limit was hit).
    pub optimal: bool,
    /// Proven lower bound on the effective hourly cost.
    pub lower_bound: f64,
}

/// The answer of [`size`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizing {
    /// The allocation, most expensive line first.
    pub allocation: Vec<AllocationLine>,
    /// Total list price, USD per hour.
    pub total_hourly_cost: f64,
    /// Total list price, USD per month (730 h).
    pub total_monthly_cost: f64,
    /// Total effective cost as optimised (spot risk, committed terms), USD per hour.
    pub effective_hourly_cost: f64,
    /// Resources provided.
    pub capacity: Capacity,
    /// The demand that was covered.
    pub demand: Demand,
    /// Why this allocation, and the next-best alternative.
    pub explanation: Explanation,
}

/// Builds the candidate offers that pass the constraints, naming the filter that emptied the list.
///
/// Only the cheapest region of each (instance type, purchase option) is kept (the first in
/// catalog order among equals): the other regions offer the same resources for no less, so no
/// optimum needs them.
#[cfg(test)]
pub(crate) fn candidates(
    catalog: &Catalog,
    v: &ValidSizing,
    exclude_types: &HashSet<u32>,
) -> Result<Vec<Candidate>> {
    candidates_counted(catalog, v, exclude_types).map(|(c, _)| c)
}

/// [`candidates`] and the number of (offer, purchase option) pairs that passed the constraints.
pub(crate) fn candidates_counted(
    catalog: &Catalog,
    v: &ValidSizing,
    exclude_types: &HashSet<u32>,
) -> Result<(Vec<Candidate>, usize)> {
    let p = &v.params;
    let d = v.demand;
    let clouds = allowed_clouds(p);
    let region_ok: Vec<bool> = catalog
        .regions()
        .iter()
        .map(|r| {
            clouds.contains(&r.cloud)
                && (p.regions.is_empty() || p.regions.contains(&r.name))
                && !p.deny_regions.contains(&r.name)
        })
        .collect();
    // Stage-by-stage type filters, so that an empty result names the constraint that emptied it.
    type Filter<'a> = (
        &'static str,
        Box<dyn Fn(&super::catalog::InstanceType) -> bool + 'a>,
    );
    let filters: Vec<Filter<'_>> = vec![
        ("clouds", Box::new(|t| clouds.contains(&t.cloud))),
        (
            "burstable types excluded by default",
            Box::new(|t| p.include_burstable || !t.burstable),
        ),
        (
            "promotional SKUs excluded by default",
            Box::new(|t| p.include_promo || !t.promo),
        ),
        (
            "arch",
            Box::new(|t| p.arch.is_empty() || p.arch.contains(&t.arch)),
        ),
        (
            "families",
            Box::new(|t| {
                p.families.is_empty()
                    || p.families.iter().any(|f| f.eq_ignore_ascii_case(&t.family))
            }),
        ),
        (
            "deny_families",
            Box::new(|t| {
                !p.deny_families
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&t.family))
            }),
        ),
        ("gpu", Box::new(|t| d.gpu <= 0.0 || t.gpu > 0.0)),
        (
            "network_gbps",
            Box::new(|t| d.network_gbps <= 0.0 || t.network_gbps.is_some()),
        ),
    ];
    let mut type_ok = vec![true; catalog.types().len()];
    let mut alive = catalog.types().len();
    for (name, f) in &filters {
        let before = alive;
        for (i, t) in catalog.types().iter().enumerate() {
            if type_ok[i] && !f(t) {
                type_ok[i] = false;
                alive -= 1;
            }
        }
        if alive == 0 {
            return Err(Error::NoOffers {
                constraint: name,
                detail: format!("{before} instance types before it"),
            });
        }
    }
    for &t in exclude_types {
        if let Some(x) = type_ok.get_mut(t as usize) {
            *x = false;
        }
    }
    let mut out: Vec<Candidate> = Vec::new();
    let np = p.purchase.len();
    // Index in `out` of the cheapest candidate of each (type, purchase option).
    let mut slot = vec![u32::MAX; catalog.types().len() * np];
    let mut passed = 0usize;
    let mut any_region = false;
    let mut any_purchase_priced = false;
    for (oi, o) in catalog.offers().iter().enumerate() {
        let ti = o.type_index as usize;
        if !type_ok[ti] {
            continue;
        }
        if !region_ok[o.region_index as usize] {
            continue;
        }
        any_region = true;
        let t = &catalog.types()[ti];
        for (pi, &pu) in p.purchase.iter().enumerate() {
            let Some(price) = o.price(pu) else { continue };
            any_purchase_priced = true;
            let effective = match pu {
                Purchase::OnDemand => price,
                Purchase::Spot => p.spot_risk.effective(t.cloud, price, o.on_demand),
                Purchase::Reserved1y | Purchase::Reserved3y => {
                    let term = pu.term_hours();
                    let terms = (p.horizon_hours / term).ceil().max(1.0);
                    price * terms * term / p.horizon_hours / p.utilisation
                }
            };
            passed += 1;
            let cand = Candidate {
                offer: oi as u32,
                type_index: o.type_index,
                purchase: pu,
                price,
                cost: effective,
                res: [t.vcpu, t.mem_gib, t.gpu, t.network_gbps.unwrap_or(0.0)],
                spot: pu == Purchase::Spot,
            };
            let s = &mut slot[ti * np + pi];
            if *s == u32::MAX {
                *s = out.len() as u32;
                out.push(cand);
            } else if cand.cost < out[*s as usize].cost {
                out[*s as usize] = cand;
            }
        }
    }
    if !any_region {
        return Err(Error::NoOffers {
            constraint: "regions",
            detail: "no allowed instance type is priced in the allowed regions".into(),
        });
    }
    if !any_purchase_priced || out.is_empty() {
        let list: Vec<&str> = p.purchase.iter().map(|x| x.as_str()).collect();
        return Err(Error::NoOffers {
            constraint: "purchase",
            detail: format!("no allowed type and region has a {} price", list.join("/")),
        });
    }
    Ok((out, passed))
}

/// Sizes the cheapest allocation that covers the demand of `valid` under its constraints.
///
/// # Errors
/// - [`Error::NoOffers`] naming the filter that left no offer.
/// - [`Error::Infeasible`] naming the constraint that cannot be met (`max_count`, `spot_share_cap`,
///   `max_types`, `gpu`...).
///
/// # Guarantees
/// The allocation covers every demanded resource, and its effective cost is optimal among all
/// allocations allowed by the constraints (proven by branch and bound; `explanation.optimal`
/// says so, with the proven lower bound).
pub fn size(catalog: &Catalog, valid: &ValidSizing) -> Result<Sizing> {
    let (cands, n_cands) = candidates_counted(catalog, valid, &HashSet::new())?;
    let problem = problem_for(valid, cands);
    let mut sol = solver::solve(&problem)?;
    // The alternative: the best allocation without the main line's instance type (any region,
    // any purchase option). Both searches stop within the optimality gap, so the alternative can
    // come out cheaper; it is then a better answer (the lower bound of the full problem still
    // holds) and the alternative is searched again without its main type.
    let mut alternative: Option<(u32, Problem, solver::Solution)> = None;
    let mut no_alternative: Option<u32> = None;
    if valid.params.explain_alternative {
        for _ in 0..4 {
            let Some(mt) = main_type(&problem, &sol) else {
                break;
            };
            let mut p2 = problem.clone();
            p2.cands.retain(|c| c.type_index != mt);
            match solver::solve(&p2) {
                Ok(s) if s.cost < sol.cost * (1.0 - 1e-12) => {
                    let lower_bound = sol.lower_bound.min(s.cost);
                    let optimal = sol.optimal;
                    let nodes = sol.nodes + s.nodes;
                    sol = solver::Solution {
                        counts: s
                            .counts
                            .iter()
                            .map(|&(i, k)| {
                                let c = &p2.cands[i];
                                let j = problem
                                    .cands
                                    .iter()
                                    .position(|d| d.offer == c.offer && d.purchase == c.purchase)
                                    .expect("a candidate of the restricted problem");
                                (j, k)
                            })
                            .collect(),
                        cost: s.cost,
                        lower_bound,
                        optimal,
                        nodes,
                        pareto: sol.pareto,
                    };
                    alternative = None;
                }
                Ok(s) => {
                    alternative = Some((mt, p2, s));
                    break;
                }
                Err(_) => {
                    no_alternative = Some(mt);
                    break;
                }
            }
        }
    }
    let mut sizing = to_sizing(catalog, valid, &problem, &sol, n_cands);
    if let Some((mt, p2, s)) = alternative {
        let main_name = catalog.types()[mt as usize].name.clone();
        let lines = lines_of(catalog, &p2, &s);
        let total: f64 = lines.iter().map(|l| l.hourly_cost).sum();
        let delta = if sol.cost > 0.0 {
            (s.cost / sol.cost - 1.0) * 100.0
        } else {
            0.0
        };
        let description = format!(
            "without {main_name}: {} at {:.4} USD/h list, {:.4} USD/h effective (+{delta:.1} %)",
            describe(&lines),
            total,
            s.cost
        );
        sizing
            .explanation
            .summary
            .push_str(&format!(" Next best, {description}."));
        sizing.explanation.next_best = Some(Alternative {
            description,
            allocation: lines,
            total_hourly_cost: round6(total),
            effective_hourly_cost: round6(s.cost),
        });
    } else if let Some(mt) = no_alternative {
        let main_name = &catalog.types()[mt as usize].name;
        sizing.explanation.summary.push_str(&format!(
            " No allocation without {main_name} meets the constraints."
        ));
    }
    Ok(sizing)
}

/// The instance type of the most expensive line of `sol`.
fn main_type(problem: &Problem, sol: &solver::Solution) -> Option<u32> {
    sol.counts
        .iter()
        .max_by(|a, b| {
            let ca = problem.cands[a.0].cost * a.1 as f64;
            let cb = problem.cands[b.0].cost * b.1 as f64;
            ca.total_cmp(&cb)
        })
        .map(|&(ci, _)| problem.cands[ci].type_index)
}

pub(crate) fn problem_for(valid: &ValidSizing, cands: Vec<Candidate>) -> Problem {
    let p = &valid.params;
    let spot_allowed = p.purchase.contains(&Purchase::Spot);
    Problem {
        demand: valid.demand.as_array(),
        cands,
        spot_cap: if spot_allowed { p.spot_share_cap } else { 1.0 },
        min_count: p.min_count,
        max_count: p.max_count,
        max_types: p.max_types.unwrap_or(u32::MAX),
        gap: p.optimality_gap,
    }
}

fn lines_of(catalog: &Catalog, problem: &Problem, sol: &solver::Solution) -> Vec<AllocationLine> {
    let mut lines: Vec<AllocationLine> = sol
        .counts
        .iter()
        .map(|&(ci, n)| {
            let c = &problem.cands[ci];
            let o = &catalog.offers()[c.offer as usize];
            let t = &catalog.types()[o.type_index as usize];
            let r = &catalog.regions()[o.region_index as usize];
            AllocationLine {
                cloud: t.cloud,
                region: r.name.clone(),
                instance_type: t.name.clone(),
                count: n,
                purchase: c.purchase,
                hourly_cost: round6(c.price * n as f64),
                effective_hourly_cost: round6(c.cost * n as f64),
            }
        })
        .collect();
    lines.sort_by(|a, b| b.effective_hourly_cost.total_cmp(&a.effective_hourly_cost));
    lines
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn describe(lines: &[AllocationLine]) -> String {
    let parts: Vec<String> = lines
        .iter()
        .map(|l| {
            format!(
                "{} × {} {} in {} {}",
                l.count, l.purchase, l.instance_type, l.cloud, l.region
            )
        })
        .collect();
    parts.join(" + ")
}

fn to_sizing(
    catalog: &Catalog,
    valid: &ValidSizing,
    problem: &Problem,
    sol: &solver::Solution,
    n_cands: usize,
) -> Sizing {
    let lines = lines_of(catalog, problem, sol);
    let mut cap = [0.0; 4];
    for &(ci, n) in &sol.counts {
        for (k, c) in cap.iter_mut().enumerate() {
            *c += problem.cands[ci].res[k] * n as f64;
        }
    }
    let total: f64 = lines.iter().map(|l| l.hourly_cost).sum();
    let d = valid.demand.as_array();
    let names = ["cpu", "mem_gib", "gpu", "network_gbps"];
    let mut binding = Vec::new();
    for k in 0..4 {
        if d[k] > 0.0 {
            let smallest = sol
                .counts
                .iter()
                .map(|&(ci, _)| problem.cands[ci].res[k])
                .fold(f64::INFINITY, f64::min);
            if cap[k] - d[k] < smallest {
                binding.push(names[k].to_string());
            }
        }
    }
    let summary = format!(
        "Cheapest of {} offers ({} left after dominance pruning) covering cpu {}, mem {} GiB{}{}: {} at {:.4} USD/h ({:.2} USD/month){}; binding: {}.",
        n_cands,
        sol.pareto,
        valid.demand.cpu,
        valid.demand.mem_gib,
        if d[2] > 0.0 { format!(", gpu {}", d[2]) } else { String::new() },
        if d[3] > 0.0 { format!(", network {} Gbit/s", d[3]) } else { String::new() },
        describe(&lines),
        total,
        total * HOURS_PER_MONTH,
        if sol.optimal { ", proven optimal".to_string() } else { format!(", within {:.2} % of the lower bound", (sol.cost / sol.lower_bound.max(1e-12) - 1.0) * 100.0) },
        if binding.is_empty() { "none".to_string() } else { binding.join(", ") }
    );
    Sizing {
        allocation: lines,
        total_hourly_cost: round6(total),
        total_monthly_cost: round6(total * HOURS_PER_MONTH),
        effective_hourly_cost: round6(sol.cost),
        capacity: Capacity {
            cpu: cap[0],
            mem_gib: cap[1],
            gpu: cap[2],
            network_gbps: cap[3],
        },
        demand: valid.demand,
        explanation: Explanation {
            summary,
            binding,
            next_best: None,
            candidates: n_cands,
            pareto: sol.pareto,
            nodes: sol.nodes,
            optimal: sol.optimal,
            lower_bound: sol.lower_bound,
        },
    }
}
