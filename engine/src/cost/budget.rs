//! Budgets: several workloads sharing a hard hourly cap, served by priority.
//!
//! # Rule
//! 1. Every workload first gets its floor (a share of its demand, default 0). If the floors alone
//!    cost more than the cap, the budget is infeasible ([`Error::BudgetBelowFloors`]).
//! 2. Workloads are then served in order of priority weight, highest first (ties: the cheaper
//!    full sizing first, then name): each is raised to its full demand if the rest of the budget
//!    pays for it, otherwise to the largest share of its demand that it pays for (bisection on
//!    the share, 20 steps, each a full exact sizing).
//! 3. The plan states, per workload, the share served and the demand left unmet.
//!
//! [`allocate_proportional`] is the baseline: every workload is cut by the same share (never
//! below its floor). The plans are compared on the weighted unmet demand
//! `Σ priority_i · (1 − served_i) / Σ priority_i`.
//!
//! Costs here are list prices (what is billed per hour), since the cap is a billing limit.

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, HOURS_PER_MONTH};
use super::sizing::{size, Demand, Sizing, SizingParams, ValidSizing};
use super::{Error, Result};

/// One workload under a budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadParams {
    /// Name, used in the plan and in errors.
    pub name: String,
    /// Its demand and constraints.
    pub sizing: SizingParams,
    /// Priority weight (> 0); higher is served first (e.g. critical 100, VIP 10, normal 1).
    pub priority: f64,
    /// The share of its demand (0..=1) it always gets, whatever the budget.
    pub floor: f64,
}

/// Unchecked budget parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetParams {
    /// The hard cap, USD per hour.
    pub hourly_cap: f64,
    /// The workloads sharing it.
    pub workloads: Vec<WorkloadParams>,
}

impl BudgetParams {
    /// A budget with an hourly cap.
    pub fn hourly(cap: f64, workloads: Vec<WorkloadParams>) -> BudgetParams {
        BudgetParams {
            hourly_cap: cap,
            workloads,
        }
    }

    /// A budget with a monthly cap (730 h a month).
    pub fn monthly(cap: f64, workloads: Vec<WorkloadParams>) -> BudgetParams {
        BudgetParams {
            hourly_cap: cap / HOURS_PER_MONTH,
            workloads,
        }
    }

    /// Checks the cap, the weights and floors, and every workload's sizing.
    ///
    /// # Errors
    /// [`Error::InvalidConstraint`] for a bad cap, priority or floor; [`Error::WorkloadFailed`]
    /// wrapping the sizing error of a workload.
    pub fn check(&self, catalog: &Catalog) -> Result<ValidBudget> {
        if !(self.hourly_cap.is_finite() && self.hourly_cap > 0.0) {
            return Err(Error::InvalidConstraint {
                constraint: "budget",
                reason: format!("cap {} is not a positive amount", self.hourly_cap),
            });
        }
        if self.workloads.is_empty() {
            return Err(Error::InvalidConstraint {
                constraint: "workloads",
                reason: "no workload given".into(),
            });
        }
        let mut out = Vec::new();
        for w in &self.workloads {
            if !(w.priority.is_finite() && w.priority > 0.0) {
                return Err(Error::InvalidConstraint {
                    constraint: "priority",
                    reason: format!(
                        "workload `{}`: priority {} is not a positive weight",
                        w.name, w.priority
                    ),
                });
            }
            if !(0.0..=1.0).contains(&w.floor) {
                return Err(Error::InvalidConstraint {
                    constraint: "floor",
                    reason: format!(
                        "workload `{}`: floor {} is not a share in [0, 1]",
                        w.name, w.floor
                    ),
                });
            }
            let mut sp = w.sizing.clone();
            sp.explain_alternative = false;
            let v = sp.check(catalog).map_err(|e| Error::WorkloadFailed {
                name: w.name.clone(),
                source: Box::new(e),
            })?;
            out.push((w.clone(), v));
        }
        Ok(ValidBudget {
            hourly_cap: self.hourly_cap,
            workloads: out,
        })
    }
}

/// A checked budget. Only these reach [`allocate_budget`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidBudget {
    hourly_cap: f64,
    workloads: Vec<(WorkloadParams, ValidSizing)>,
}

impl ValidBudget {
    /// The hourly cap.
    pub fn hourly_cap(&self) -> f64 {
        self.hourly_cap
    }
}

/// What one workload gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadPlan {
    /// Its name.
    pub name: String,
    /// Its priority weight.
    pub priority: f64,
    /// Its floor share.
    pub floor: f64,
    /// The share of its demand served (0..=1).
    pub served: f64,
    /// Its full demand.
    pub demand: Demand,
    /// The demand left unmet.
    pub unmet: Demand,
    /// Hourly list cost of its allocation.
    pub hourly_cost: f64,
    /// Its allocation (None when nothing is served).
    pub sizing: Option<Sizing>,
}

/// The answer of [`allocate_budget`] and [`allocate_proportional`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetPlan {
    /// The rule used: `priority` or `proportional`.
    pub rule: String,
    /// Per workload, in the order given.
    pub workloads: Vec<WorkloadPlan>,
    /// Total hourly list cost (≤ the cap).
    pub total_hourly_cost: f64,
    /// The cap.
    pub hourly_cap: f64,
    /// `Σ priority · (1 − served) / Σ priority`: 0 when everything is served.
    pub weighted_unmet: f64,
}

fn cost_at(
    catalog: &Catalog,
    name: &str,
    v: &ValidSizing,
    f: f64,
) -> Result<(f64, Option<Sizing>)> {
    if f <= 0.0 {
        return Ok((0.0, None));
    }
    let s = size(catalog, &v.scaled(f)).map_err(|e| Error::WorkloadFailed {
        name: name.to_string(),
        source: Box::new(e),
    })?;
    Ok((s.total_hourly_cost, Some(s)))
}

fn plan(catalog: &Catalog, b: &ValidBudget, rule: &str, served: &[f64]) -> Result<BudgetPlan> {
    let mut ws = Vec::new();
    let mut total = 0.0;
    let mut wsum = 0.0;
    let mut wunmet = 0.0;
    for ((w, v), &f) in b.workloads.iter().zip(served) {
        let (c, s) = cost_at(catalog, &w.name, v, f)?;
        total += c;
        wsum += w.priority;
        wunmet += w.priority * (1.0 - f);
        ws.push(WorkloadPlan {
            name: w.name.clone(),
            priority: w.priority,
            floor: w.floor,
            served: f,
            demand: v.demand(),
            unmet: v.demand().scaled(1.0 - f),
            hourly_cost: c,
            sizing: s,
        });
    }
    Ok(BudgetPlan {
        rule: rule.to_string(),
        workloads: ws,
        total_hourly_cost: total,
        hourly_cap: b.hourly_cap,
        weighted_unmet: if wsum > 0.0 { wunmet / wsum } else { 0.0 },
    })
}

/// Largest share in `[lo, 1]` whose cost is within `budget` (bisection; `lo` is assumed to fit).
fn largest_share(
    catalog: &Catalog,
    name: &str,
    v: &ValidSizing,
    lo: f64,
    budget: f64,
) -> Result<(f64, f64)> {
    let (c_lo, _) = cost_at(catalog, name, v, lo)?;
    let (c1, _) = cost_at(catalog, name, v, 1.0)?;
    if c1 <= budget {
        return Ok((1.0, c1));
    }
    let (mut a, mut ca) = (lo, c_lo);
    let mut b = 1.0;
    for _ in 0..20 {
        let m = 0.5 * (a + b);
        let (cm, _) = cost_at(catalog, name, v, m)?;
        if cm <= budget {
            a = m;
            ca = cm;
        } else {
            b = m;
        }
    }
    Ok((a, ca))
}

/// Serves the workloads of `budget` by priority within the cap (see the module docs).
///
/// # Errors
/// [`Error::BudgetBelowFloors`] when the floors alone exceed the cap; [`Error::WorkloadFailed`]
/// when a workload cannot be sized at all.
///
/// # Guarantees
/// The total hourly list cost is at most the cap, and every workload gets at least its floor.
pub fn allocate_budget(catalog: &Catalog, budget: &ValidBudget) -> Result<BudgetPlan> {
    let n = budget.workloads.len();
    let mut served = vec![0.0; n];
    let mut costs = vec![0.0; n];
    for (i, (w, v)) in budget.workloads.iter().enumerate() {
        served[i] = w.floor;
        costs[i] = cost_at(catalog, &w.name, v, w.floor)?.0;
    }
    let floors: f64 = costs.iter().sum();
    if floors > budget.hourly_cap + 1e-9 {
        return Err(Error::BudgetBelowFloors {
            cap_hourly: budget.hourly_cap,
            floors_hourly: floors,
        });
    }
    let mut full = vec![0.0; n];
    for (i, (w, v)) in budget.workloads.iter().enumerate() {
        full[i] = cost_at(catalog, &w.name, v, 1.0)?.0;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (wa, wb) = (&budget.workloads[a].0, &budget.workloads[b].0);
        wb.priority
            .total_cmp(&wa.priority)
            .then(full[a].total_cmp(&full[b]))
            .then(wa.name.cmp(&wb.name))
    });
    let mut left = budget.hourly_cap - floors;
    for &i in &order {
        let (w, v) = &budget.workloads[i];
        if served[i] >= 1.0 {
            continue;
        }
        let allowance = left + costs[i];
        let (f, c) = largest_share(catalog, &w.name, v, served[i], allowance)?;
        if c <= allowance + 1e-9 && f >= served[i] {
            left = allowance - c;
            served[i] = f;
            costs[i] = c;
        }
    }
    plan(catalog, budget, "priority", &served)
}

/// The baseline: every workload cut by the same share (never below its floor) so that the total
/// fits the cap.
///
/// # Errors
/// As [`allocate_budget`].
pub fn allocate_proportional(catalog: &Catalog, budget: &ValidBudget) -> Result<BudgetPlan> {
    let total_at = |f: f64| -> Result<f64> {
        let mut t = 0.0;
        for (w, v) in &budget.workloads {
            t += cost_at(catalog, &w.name, v, f.max(w.floor))?.0;
        }
        Ok(t)
    };
    let floors = total_at(0.0)?;
    if floors > budget.hourly_cap + 1e-9 {
        return Err(Error::BudgetBelowFloors {
            cap_hourly: budget.hourly_cap,
            floors_hourly: floors,
        });
    }
    let f = if total_at(1.0)? <= budget.hourly_cap {
        1.0
    } else {
        let (mut a, mut b) = (0.0, 1.0);
        for _ in 0..20 {
            let m = 0.5 * (a + b);
            if total_at(m)? <= budget.hourly_cap {
                a = m;
            } else {
                b = m;
            }
        }
        a
    };
    let served: Vec<f64> = budget
        .workloads
        .iter()
        .map(|(w, _)| f.max(w.floor))
        .collect();
    plan(catalog, budget, "proportional", &served)
}
