//! Several workloads sharing one hourly budget: each step's desired capacities are cut by
//! priority through the cost engine's budget allocation ([`crate::cost::allocate_budget`]),
//! never below each workload's floor, always within its `[min, max]` bounds.
//!
//! Every workload here runs whole units of one instance type in one region (what a replay or a
//! managed group runs), so a workload's demand is `units × (vCPUs, memory)` of that type and the
//! cost engine's answer maps back to a whole number of units. The cut is built on a one-type,
//! one-region catalog taken from the full catalog, so each sizing is a tiny exact solve.
//!
//! # Rule
//! 1. Each workload's desired units are clipped to `[min, max]`.
//! 2. Its lower bound is `max(min, ceil(floor × desired))`: the bounds win over the budget.
//! 3. When the desired units of all workloads (plus `reserved`, for example a shadow pool's
//!    ready instances) cost at most the cap, nothing is cut.
//! 4. Otherwise [`crate::cost::allocate_budget`] serves the workloads in order of priority with
//!    their lower bounds as floors; the share it serves becomes whole units (rounded down, never
//!    below the lower bound).
//! 5. When the lower bounds alone cost more than the cap, every workload gets its lower bound
//!    and the cut says the budget could not be held ([`BudgetCut::within_cap`] is `false`).

use serde::Serialize;

use crate::cost::{
    allocate_budget, BudgetParams, Catalog, Cloud, Demand, Error as CostError, Offer, Purchase,
    Region, SizingParams, WorkloadParams,
};

/// Errors of the budget cut.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The instance type is not in the catalog.
    #[error("instance type `{instance_type}` is not in the {cloud} catalog")]
    UnknownType {
        /// Cloud searched.
        cloud: String,
        /// Type asked for.
        instance_type: String,
    },
    /// The catalog has no on-demand price for the type in the region.
    #[error("no on-demand price for `{instance_type}` in `{region}`")]
    NoPrice {
        /// Type asked for.
        instance_type: String,
        /// Region asked for.
        region: String,
    },
    /// A parameter is out of range.
    #[error("invalid budget parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The cost engine failed.
    #[error("the cost engine could not allocate the budget")]
    CostFailed(#[source] CostError),
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One workload under the shared budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetShare {
    /// Name (unique; used by the cost engine's plan).
    pub name: String,
    /// Priority weight (> 0); higher is served first.
    pub priority: f64,
    /// Share (0..=1) of its desired units it always keeps.
    pub floor: f64,
    /// Fewest units.
    pub min_units: u32,
    /// Most units.
    pub max_units: u32,
}

/// The unit every workload runs: one instance type in one region, priced by the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitBudget {
    catalog: Catalog,
    vcpu: f64,
    mem_gib: f64,
    hourly_price: f64,
    cap: f64,
    shares: Vec<BudgetShare>,
}

/// The result of one cut.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetCut {
    /// Units per workload, in the order given.
    pub units: Vec<u32>,
    /// Hourly list cost of those units (without `reserved`).
    pub hourly_cost: f64,
    /// Whether the cost engine was asked (the desired units did not fit).
    pub cut: bool,
    /// Whether units plus `reserved` fit the cap (false only when the lower bounds do not).
    pub within_cap: bool,
}

impl UnitBudget {
    /// A budget of `cap` USD per hour shared by `shares`, each running `instance_type` of
    /// `cloud` in `region`, priced from `catalog`.
    ///
    /// # Errors
    /// [`Error::UnknownType`], [`Error::NoPrice`], or [`Error::InvalidParameter`] for a bad cap,
    /// priority, floor, bounds or duplicate name.
    pub fn new(
        catalog: &Catalog,
        cloud: Cloud,
        instance_type: &str,
        region: &str,
        cap: f64,
        shares: Vec<BudgetShare>,
    ) -> Result<Self> {
        let bad = |name, reason: String| Err(Error::InvalidParameter { name, reason });
        if !(cap.is_finite() && cap > 0.0) {
            return bad("cap", format!("{cap} is not a positive amount per hour"));
        }
        if shares.is_empty() {
            return bad("workloads", "no workload shares the budget".into());
        }
        for (i, s) in shares.iter().enumerate() {
            if !(s.priority.is_finite() && s.priority > 0.0) {
                return bad("priority", format!("workload `{}`: {}", s.name, s.priority));
            }
            if !(0.0..=1.0).contains(&s.floor) {
                return bad("floor", format!("workload `{}`: {}", s.name, s.floor));
            }
            if s.min_units > s.max_units {
                return bad("min_units", format!("workload `{}`: min above max", s.name));
            }
            if shares[..i].iter().any(|o| o.name == s.name) {
                return bad("name", format!("workload `{}` appears twice", s.name));
            }
        }
        let unit = unit_offer(catalog, cloud, instance_type, region, false)?;
        Ok(UnitBudget {
            catalog: unit.catalog,
            vcpu: unit.vcpu,
            mem_gib: unit.mem_gib,
            hourly_price: unit.on_demand,
            cap,
            shares,
        })
    }

    /// List price of one unit per hour.
    pub fn unit_price(&self) -> f64 {
        self.hourly_price
    }

    /// The cap, USD per hour.
    pub fn cap(&self) -> f64 {
        self.cap
    }

    /// The workloads.
    pub fn shares(&self) -> &[BudgetShare] {
        &self.shares
    }

    /// Cuts `desired` units (one per workload, in order) to fit the cap minus `reserved` USD per
    /// hour (see the module docs for the rule).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `desired` does not have one entry per workload;
    /// [`Error::CostFailed`] when the cost engine cannot size a workload.
    ///
    /// # Guarantees
    /// `min <= units <= max` for every workload and `units >= ceil(floor × clipped desired)`;
    /// `units <= clipped desired`; when `within_cap`, the units plus `reserved` cost at most the cap.
    pub fn cut(&self, desired: &[u32], reserved: f64) -> Result<BudgetCut> {
        if desired.len() != self.shares.len() {
            return Err(Error::InvalidParameter {
                name: "desired",
                reason: format!(
                    "{} values for {} workloads",
                    desired.len(),
                    self.shares.len()
                ),
            });
        }
        let want: Vec<u32> = desired
            .iter()
            .zip(&self.shares)
            .map(|(&d, s)| d.clamp(s.min_units, s.max_units))
            .collect();
        let lower: Vec<u32> = want
            .iter()
            .zip(&self.shares)
            .map(|(&w, s)| {
                ((s.floor * w as f64 - 1e-9).ceil().max(0.0) as u32).clamp(s.min_units, w)
            })
            .collect();
        let cost = |u: &[u32]| u.iter().sum::<u32>() as f64 * self.hourly_price;
        let room = self.cap - reserved.max(0.0);
        if cost(&want) <= room + 1e-9 {
            return Ok(BudgetCut {
                hourly_cost: cost(&want),
                units: want,
                cut: false,
                within_cap: true,
            });
        }
        if cost(&lower) > room + 1e-9 {
            return Ok(BudgetCut {
                hourly_cost: cost(&lower),
                units: lower,
                cut: true,
                within_cap: false,
            });
        }
        // Workloads with nothing to cut keep their lower bound outside the cost engine's plan.
        let mut units = lower.clone();
        let fixed = cost(&lower);
        let mut workloads = Vec::new();
        let mut index = Vec::new();
        for (i, s) in self.shares.iter().enumerate() {
            if want[i] > lower[i] {
                // The engine serves a share of the units above the lower bound; the lower
                // bound is already paid for in `fixed`.
                let extra = (want[i] - lower[i]) as f64;
                let mut sizing =
                    SizingParams::new(Demand::new(extra * self.vcpu, extra * self.mem_gib));
                sizing.max_count = want[i] - lower[i];
                sizing.explain_alternative = false;
                sizing.optimality_gap = 0.0;
                workloads.push(WorkloadParams {
                    name: s.name.clone(),
                    sizing,
                    priority: s.priority,
                    floor: 0.0,
                });
                index.push(i);
            }
        }
        let budget = BudgetParams::hourly((room - fixed).max(1e-9), workloads)
            .check(&self.catalog)
            .map_err(Error::CostFailed)?;
        let plan = allocate_budget(&self.catalog, &budget).map_err(Error::CostFailed)?;
        for (w, &i) in plan.workloads.iter().zip(&index) {
            let extra = want[i] - lower[i];
            let served = w
                .sizing
                .as_ref()
                .map_or(0, |s| s.allocation.iter().map(|l| l.count).sum::<u32>());
            units[i] = lower[i] + served.min(extra);
        }
        // The cost engine's shares are list-priced like ours; guard against rounding anyway.
        let mut order: Vec<usize> = (0..units.len()).collect();
        order.sort_by(|&a, &b| self.shares[a].priority.total_cmp(&self.shares[b].priority));
        while cost(&units) > room + 1e-9 {
            match order.iter().find(|&&i| units[i] > lower[i]) {
                Some(&i) => units[i] -= 1,
                None => break,
            }
        }
        Ok(BudgetCut {
            hourly_cost: cost(&units),
            within_cap: cost(&units) <= room + 1e-9,
            units,
            cut: true,
        })
    }
}

/// One instance type in one region as a catalog of its own, with its size and prices: what
/// the shared budget and the spot split size whole units against.
#[derive(Debug)]
pub(crate) struct UnitOffer {
    /// The one-type, one-region catalog.
    pub(crate) catalog: Catalog,
    /// vCPUs of one unit.
    pub(crate) vcpu: f64,
    /// Memory of one unit, GiB.
    pub(crate) mem_gib: f64,
    /// On-demand price of one unit per hour.
    pub(crate) on_demand: f64,
    /// Spot price of one unit per hour, when the catalog has one and `spot` asked for it.
    pub(crate) spot: Option<f64>,
}

/// Finds `instance_type` of `cloud` in `region` and builds its [`UnitOffer`], on-demand only
/// unless `spot` (reserved terms are always left out).
///
/// # Errors
/// [`Error::UnknownType`], [`Error::NoPrice`] (no on-demand price in the region), or
/// [`Error::CostFailed`] when the one-type catalog cannot be built.
pub(crate) fn unit_offer(
    catalog: &Catalog,
    cloud: Cloud,
    instance_type: &str,
    region: &str,
    spot: bool,
) -> Result<UnitOffer> {
    let t = catalog
        .find_type(cloud, instance_type)
        .ok_or_else(|| Error::UnknownType {
            cloud: cloud.as_str().into(),
            instance_type: instance_type.into(),
        })?
        .clone();
    let no_price = || Error::NoPrice {
        instance_type: instance_type.into(),
        region: region.into(),
    };
    let offer = catalog
        .find_offer(cloud, instance_type, region)
        .ok_or_else(no_price)?;
    let on_demand = offer.price(Purchase::OnDemand).ok_or_else(no_price)?;
    let (vcpu, mem_gib) = (t.vcpu, t.mem_gib);
    let small = Catalog::new(
        format!(
            "{}-{instance_type}-{region}{}",
            catalog.version(),
            if spot { "-spot" } else { "" }
        ),
        Vec::new(),
        vec![Region {
            cloud,
            name: region.into(),
        }],
        vec![t],
        vec![Offer {
            type_index: 0,
            region_index: 0,
            on_demand: Some(on_demand),
            spot: if spot { offer.spot } else { None },
            reserved_1y: None,
            reserved_3y: None,
        }],
    )
    .map_err(Error::CostFailed)?;
    Ok(UnitOffer {
        catalog: small,
        vcpu,
        mem_gib,
        on_demand,
        spot: if spot { offer.spot } else { None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn share(name: &str, priority: f64, floor: f64, min: u32, max: u32) -> BudgetShare {
        BudgetShare {
            name: name.into(),
            priority,
            floor,
            min_units: min,
            max_units: max,
        }
    }

    fn budget(cap: f64, shares: Vec<BudgetShare>) -> UnitBudget {
        UnitBudget::new(
            Catalog::embedded(),
            Cloud::Aws,
            "m5.large",
            "us-east-1",
            cap,
            shares,
        )
        .unwrap()
    }

    #[test]
    fn desired_units_within_the_cap_should_not_be_cut() {
        let b = budget(
            10.0,
            vec![share("a", 1.0, 0.0, 0, 50), share("b", 1.0, 0.0, 0, 50)],
        );
        let r = b.cut(&[3, 4], 0.0).unwrap();
        assert_eq!(r.units, vec![3, 4]);
        assert!(!r.cut && r.within_cap);
        assert!((r.hourly_cost - 7.0 * b.unit_price()).abs() < 1e-9);
    }

    #[test]
    fn the_higher_priority_should_be_served_first_and_floors_kept() {
        let b = budget(
            10.0,
            vec![
                share("low", 1.0, 0.5, 1, 50),
                share("high", 10.0, 0.0, 0, 50),
            ],
        );
        let p = b.unit_price();
        // Room for 10 units; 8 + 8 wanted: `low` keeps its floor of 4, `high` gets the other 6.
        let cap_units = 10;
        let b = budget(cap_units as f64 * p + 1e-6, b.shares().to_vec());
        let r = b.cut(&[8, 8], 0.0).unwrap();
        assert!(r.cut && r.within_cap, "{r:?}");
        assert_eq!(r.units, vec![4, 6]);
        // With a pool reserving two units' worth, `low` drops to its floor.
        let r = b.cut(&[8, 8], 2.0 * p).unwrap();
        assert_eq!(r.units, vec![4, 4]);
    }

    #[test]
    fn floors_above_the_cap_should_win_and_say_so() {
        let b = budget(0.2, vec![share("a", 1.0, 1.0, 0, 50)]);
        let r = b.cut(&[10], 0.0).unwrap();
        assert_eq!(r.units, vec![10]);
        assert!(!r.within_cap);
    }

    #[test]
    fn bad_parameters_should_be_named() {
        let e = UnitBudget::new(
            Catalog::embedded(),
            Cloud::Aws,
            "no.such",
            "us-east-1",
            1.0,
            vec![share("a", 1.0, 0.0, 0, 1)],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "instance type `no.such` is not in the aws catalog"
        );
        let e = UnitBudget::new(
            Catalog::embedded(),
            Cloud::Aws,
            "m5.large",
            "us-east-1",
            1.0,
            vec![share("a", 1.0, 1.5, 0, 1)],
        )
        .unwrap_err();
        assert!(e.to_string().contains("`floor`"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn cut_should_hold_bounds_floors_and_the_cap(
            cap_units in 0.5f64..40.0,
            reserved_units in 0.0f64..5.0,
            ws in proptest::collection::vec((0u32..30, 0u32..5, 0u32..30, 0.0f64..1.0, 0.1f64..100.0), 1..4),
        ) {
            let shares: Vec<BudgetShare> = ws.iter().enumerate()
                .map(|(i, &(_, min, span, floor, prio))| share(&format!("w{i}"), prio, floor, min, min + span))
                .collect();
            let b = budget(1.0, shares.clone());
            let p = b.unit_price();
            let b = budget(cap_units * p, shares);
            let desired: Vec<u32> = ws.iter().map(|w| w.0).collect();
            let r = b.cut(&desired, reserved_units * p).unwrap();
            for ((u, s), d) in r.units.iter().zip(b.shares()).zip(&desired) {
                let want = (*d).clamp(s.min_units, s.max_units);
                prop_assert!(*u >= s.min_units && *u <= s.max_units);
                prop_assert!(*u <= want);
                prop_assert!(*u as f64 >= (s.floor * want as f64 - 1e-9).ceil().min(want as f64));
            }
            if r.within_cap {
                prop_assert!(r.hourly_cost + reserved_units * p <= cap_units * p + 1e-6);
            }
        }
    }
}
