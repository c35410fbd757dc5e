//! How a plan's units are bought: the cost engine splits whole units of one instance type in
//! one region between on-demand and spot capacity, within a spot share cap.
//!
//! A workload that runs whole units of one type (a replay lane, a managed group) asks
//! [`SpotSplit::split`] for `units`; the answer comes from [`crate::cost::size`] on a
//! one-type, one-region catalog holding the type's on-demand and spot prices, with the demand
//! `units × (vCPUs, memory)`, spot allowed and at most `spot_share_cap` of each resource from
//! spot. Spot is priced with its interruption risk ([`SpotRisk`]), so the cost engine takes it
//! only when it stays cheaper than on-demand after that risk. Answers are cached per unit count:
//! a replay asks for few distinct counts, and each solve is tiny.

use std::collections::HashMap;

use serde::Serialize;

use crate::cost::{
    size, Catalog, Cloud, Demand, Error as CostError, Purchase, SizingParams, SpotRisk,
};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The type, its price or its one-type catalog: what [`super::budget`] reports.
    #[error(transparent)]
    Unit(#[from] super::budget::Error),
    /// The spot share cap is outside `[0, 1]`.
    #[error("invalid spot share cap {0}: must lie in [0, 1]")]
    InvalidCap(f64),
    /// The cost engine failed.
    #[error("the cost engine could not split the units")]
    CostFailed(#[source] CostError),
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Units bought each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Split {
    /// On-demand units.
    pub on_demand: u32,
    /// Spot units.
    pub spot: u32,
}

impl Split {
    /// All units.
    pub fn total(&self) -> u32 {
        self.on_demand + self.spot
    }
}

/// Splits whole units of one type in one region between on-demand and spot through the cost
/// engine (see the module docs).
#[derive(Debug, Clone)]
pub struct SpotSplit {
    catalog: Catalog,
    cloud: Cloud,
    vcpu: f64,
    mem_gib: f64,
    on_demand_price: f64,
    spot_price: Option<f64>,
    cap: f64,
    risk: SpotRisk,
    cache: HashMap<u32, Split>,
}

impl SpotSplit {
    /// A split for `instance_type` of `cloud` in `region`, priced from `catalog`, with at most
    /// `spot_share_cap` of the units on spot, spot priced with `risk`.
    ///
    /// # Errors
    /// [`Error::Unit`] for a type not in the catalog, no on-demand price in the region or a
    /// one-type catalog that cannot be built; [`Error::InvalidCap`].
    pub fn new(
        catalog: &Catalog,
        cloud: Cloud,
        instance_type: &str,
        region: &str,
        spot_share_cap: f64,
        risk: SpotRisk,
    ) -> Result<Self> {
        if !(0.0..=1.0).contains(&spot_share_cap) {
            return Err(Error::InvalidCap(spot_share_cap));
        }
        let unit = super::budget::unit_offer(catalog, cloud, instance_type, region, true)?;
        Ok(SpotSplit {
            catalog: unit.catalog,
            cloud,
            vcpu: unit.vcpu,
            mem_gib: unit.mem_gib,
            on_demand_price: unit.on_demand,
            spot_price: unit.spot,
            cap: spot_share_cap,
            risk,
            cache: HashMap::new(),
        })
    }

    /// On-demand price of one unit per hour.
    pub fn on_demand_price(&self) -> f64 {
        self.on_demand_price
    }

    /// Spot price of one unit per hour, when the catalog has one.
    pub fn spot_price(&self) -> Option<f64> {
        self.spot_price
    }

    /// The spot share cap.
    pub fn cap(&self) -> f64 {
        self.cap
    }

    /// How to buy `units` units: the cost engine's cheapest mix of on-demand and spot units
    /// of the type, with at most the cap's share on spot.
    ///
    /// # Guarantees
    /// `total() == units`, and `spot <= floor(cap × units)` (up to rounding of the cap).
    ///
    /// # Errors
    /// [`Error::CostFailed`] when the cost engine finds no answer.
    pub fn split(&mut self, units: u32) -> Result<Split> {
        if let Some(s) = self.cache.get(&units) {
            return Ok(*s);
        }
        let s = self.solve(units)?;
        self.cache.insert(units, s);
        Ok(s)
    }

    fn solve(&self, units: u32) -> Result<Split> {
        let all_on_demand = Split {
            on_demand: units,
            spot: 0,
        };
        if units == 0 || self.cap <= 0.0 || self.spot_price.is_none() {
            return Ok(all_on_demand);
        }
        let n = f64::from(units);
        let mut p = SizingParams::new(Demand::new(self.vcpu * n, self.mem_gib * n));
        p.clouds = vec![self.cloud];
        p.purchase = vec![Purchase::OnDemand, Purchase::Spot];
        p.spot_share_cap = self.cap;
        p.spot_risk = self.risk;
        p.max_count = units.max(1);
        p.min_count = 0;
        p.include_burstable = true;
        p.include_promo = true;
        p.explain_alternative = false;
        p.optimality_gap = 0.0;
        let v = p.check(&self.catalog).map_err(Error::CostFailed)?;
        let sized = size(&self.catalog, &v).map_err(Error::CostFailed)?;
        let spot: u32 = sized
            .allocation
            .iter()
            .filter(|l| l.purchase == Purchase::Spot)
            .map(|l| l.count)
            .sum();
        // Whole units: what is not spot is on-demand (the solver covers the demand with the
        // type's own units, so its counts add up to `units`).
        let spot = spot.min(units);
        Ok(Split {
            on_demand: units - spot,
            spot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(cap: f64, risk: SpotRisk) -> SpotSplit {
        SpotSplit::new(
            Catalog::embedded(),
            Cloud::Aws,
            "m6g.large",
            "us-east-1",
            cap,
            risk,
        )
        .unwrap()
    }

    #[test]
    fn spot_should_take_up_to_the_cap_when_it_is_cheaper_and_nothing_otherwise() {
        let mut s = split(0.5, SpotRisk::default());
        assert!(s.spot_price().is_some_and(|p| p < s.on_demand_price()));
        for units in 0..=12u32 {
            let x = s.split(units).unwrap();
            assert_eq!(x.total(), units);
            assert!(
                f64::from(x.spot) <= 0.5 * f64::from(units) + 1e-9,
                "{units}: {x:?}"
            );
            // Spot is cheaper even with its risk, so the cap binds.
            assert_eq!(x.spot, units / 2, "{units}: {x:?}");
            assert_eq!(s.split(units).unwrap(), x, "cached");
        }
        // No spot allowed: all on-demand.
        let mut none = split(0.0, SpotRisk::default());
        assert_eq!(
            none.split(7).unwrap(),
            Split {
                on_demand: 7,
                spot: 0
            }
        );
        // A risk so high that spot costs more than on-demand: the cost engine declines it.
        let risky = SpotRisk {
            aws_per_month: 730.0,
            hours_lost: 2.0,
            ..SpotRisk::default()
        };
        assert_eq!(split(1.0, risky).split(5).unwrap().spot, 0);
    }

    #[test]
    fn bad_inputs_should_be_named() {
        let e = SpotSplit::new(
            Catalog::embedded(),
            Cloud::Aws,
            "no.such",
            "us-east-1",
            0.5,
            SpotRisk::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no.such"), "{e}");
        let e = SpotSplit::new(
            Catalog::embedded(),
            Cloud::Aws,
            "m6g.large",
            "us-east-1",
            1.5,
            SpotRisk::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("1.5"), "{e}");
    }
}
