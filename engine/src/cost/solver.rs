//! The exact sizing solver: an integer covering program solved by branch and bound.
//!
//! # Formulation
//! Choose integer counts `x_i ≥ 0` of candidate offers `i` (type × region × purchase) to
//! minimise `Σ c_i x_i` (effective hourly cost) subject to
//! - coverage: `Σ a_ik x_i ≥ d_k` for every demanded resource `k` (cpu, memory, gpu, network);
//! - spot share: `Σ_{i not spot} a_ik x_i ≥ (1 − s) d_k` (at most a share `s` of each resource
//!   comes from spot capacity);
//! - count: `n_min ≤ Σ x_i ≤ n_max`;
//! - types: at most `K` distinct instance types have `x_i > 0`.
//!
//! # Method
//! 1. Resources are normalised by the demand and capped at 1 (an instance never covers more
//!    than the whole demand), which makes more offers comparable.
//! 2. Dominance pruning, exact under all the constraints above: only the cheapest offer of each
//!    type (per spot/non-spot class) is kept, then every offer for which another one is at least
//!    as large in every demanded resource, no more expensive, and not spot where it is not spot.
//!    Replacing a dominated offer by its dominator keeps every solution feasible and no dearer.
//! 3. Depth-first branch and bound on the LP relaxation. At each node the LP of the rest of
//!    the problem (coverage, non-spot coverage, remaining count; coefficients tightened to the
//!    remaining demand) is solved by a small dense simplex on its dual ([`super::lp`]), after the
//!    free bound of the parent's dual. A fractional `x_j = v` splits the node into `x_j ≥ ⌈v⌉`
//!    and `x_j = s` for `s = ⌊v⌋ … 0`; an integral solution with too many types splits a new
//!    type off (`x_j ≥ 1` / `x_j = 0`). Incumbents: best single type, a greedy cover, pairs of the
//!    best offers, and at every node the LP solution rounded up and rounded down then completed
//!    with the cheapest single offer.
//!
//! The search is exact: it stops only when every node is pruned by a valid bound, unless a node
//! limit is hit, in which case [`Solution::optimal`] is false and [`Solution::lower_bound`]
//! bounds the gap.

use std::collections::HashMap;

use super::catalog::Purchase;
use super::lp::{Lp, MAX_ROWS};
use super::{Error, Result};

/// Node limit of one solve; beyond it the best allocation found so far is returned, flagged
/// as not proven optimal.
pub const NODE_LIMIT: u64 = 50_000;

/// Names of the resources, in the order of [`Candidate::res`].
pub const RESOURCES: [&str; 4] = ["cpu", "mem_gib", "gpu", "network_gbps"];

/// One offer the solver may buy: a type in a region, bought one way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Index of the offer in the catalog.
    pub offer: u32,
    /// Index of the instance type in the catalog (distinct types are counted by it).
    pub type_index: u32,
    /// How it is bought.
    pub purchase: Purchase,
    /// List price, USD per hour per instance.
    pub price: f64,
    /// Effective price the solver minimises, USD per hour per instance.
    pub cost: f64,
    /// Resources per instance: cpu, memory GiB, gpu, network Gbit/s.
    pub res: [f64; 4],
    /// Whether this is spot capacity (limited by the spot share cap).
    pub spot: bool,
}

/// A sizing problem in solver terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Demand per resource (cpu, memory GiB, gpu, network Gbit/s); zero means not demanded.
    pub demand: [f64; 4],
    /// The candidate offers.
    pub cands: Vec<Candidate>,
    /// At most this share of each resource from spot capacity.
    pub spot_cap: f64,
    /// At least this many instances.
    pub min_count: u32,
    /// At most this many instances.
    pub max_count: u32,
    /// At most this many distinct instance types.
    pub max_types: u32,
    /// Relative optimality gap: a node is pruned when its bound is within this share of the
    /// incumbent, so the answer is at most `1 / (1 − gap)` times the optimum (0 = exact).
    pub gap: f64,
}

/// An optimal (or best found) allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// `(candidate index, count)` pairs with count > 0.
    pub counts: Vec<(usize, u32)>,
    /// Effective hourly cost.
    pub cost: f64,
    /// Proven lower bound on the optimum (equal to `cost` when optimal).
    pub lower_bound: f64,
    /// Whether optimality was proven.
    pub optimal: bool,
    /// Nodes explored.
    pub nodes: u64,
    /// Candidates left after dominance pruning.
    pub pareto: usize,
}

const EPS: f64 = 1e-9;

#[derive(Debug, Clone, Copy)]
struct Item {
    orig: usize,
    cost: f64,
    a: [f64; 4],
    spot: bool,
    ty: u32,
}

#[derive(Debug)]
struct Search<'a> {
    items: &'a [Item],
    dims: &'a [usize],
    /// Items fixed at their current count (`x_j = cur_j`) by a branch.
    removed: Vec<bool>,
    min_count: u32,
    max_count: u32,
    max_types: u32,
    best_cost: f64,
    best: Vec<u32>,
    cur: Vec<u32>,
    used_types: Vec<u32>,
    nodes: u64,
    aborted: bool,
    gap: f64,
    node_limit: u64,
    /// Rows of the node LP (see [`Row`]).
    rows: Vec<Row>,
    lp: Lp,
    cols: Vec<(f64, [f64; MAX_ROWS])>,
    colmap: Vec<usize>,
    primal: Vec<f64>,
    /// Smallest bound of a node pruned so far (with the final incumbent, a proven lower bound).
    min_pruned: f64,
    /// LPs solved.
    lps: u64,
    /// Normalised demand (1) and non-spot demand (`1 − s`, or 0).
    need_all: f64,
    need_ns: f64,
    /// Most instances of each item some optimum takes (see the exchange argument in `solve`).
    caps: Vec<u32>,
    /// Granularity of each demanded resource over the items (normalised; 0 when none): every
    /// item's amount is a whole multiple of it, so a remaining need rounds up to a multiple.
    unit: [f64; 4],
    /// The same over the non-spot items (for the non-spot rows).
    unit_ns: [f64; 4],
}

/// `v` rounded up to a whole multiple of `u` (within a tolerance that keeps it valid), at most 1
/// and never below `v`.
fn round_need(v: f64, u: f64) -> f64 {
    if u > 0.0 && v > EPS {
        ((v / u - 1e-6).ceil() * u).min(1.0).max(v)
    } else {
        v
    }
}

/// Largest `g` such that every positive value is a whole multiple of it (to 1/1000), or 0.
fn granularity(values: impl Iterator<Item = f64>) -> f64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let mut g = 0u64;
    for v in values {
        if v <= 0.0 {
            continue;
        }
        let s = v * 1000.0;
        let r = s.round();
        // A tolerance far below 1/1000 (only the binary rounding of a decimal), so that a value
        // that is not a multiple is never taken for one.
        if !(1.0..1e12).contains(&r) || (s - r).abs() > 1e-6 + 1e-12 * s {
            return 0.0;
        }
        g = gcd(r as u64, g);
    }
    g as f64 / 1000.0
}

/// One row of the covering LP solved at the nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Row {
    /// Coverage of a demanded resource.
    Cover(usize),
    /// Non-spot coverage of a demanded resource (spot share cap).
    NonSpot(usize),
    /// At most the remaining instance count.
    MaxCount,
    /// At least the remaining minimum count.
    MinCount,
}

impl Search<'_> {
    fn n(&self) -> usize {
        self.items.len()
    }

    fn covered(&self, rem: &[f64; 4], rns: &[f64; 4]) -> bool {
        self.dims.iter().all(|&k| rem[k] <= EPS && rns[k] <= EPS)
    }

    /// The remaining needs rounded up to the granularity of the items that can meet them:
    /// every integer cover meets the rounded needs too.
    fn needs(&self, rem: &[f64; 4], rns: &[f64; 4]) -> ([f64; 4], [f64; 4]) {
        let mut r = *rem;
        let mut n = *rns;
        for &k in self.dims {
            r[k] = round_need(rem[k], self.unit[k]);
            n[k] = round_need(rns[k], self.unit_ns[k]);
        }
        (r, n)
    }

    /// Right-hand side of the node LP.
    fn rhs(&self, rem: &[f64; 4], rns: &[f64; 4], count: u32) -> [f64; MAX_ROWS] {
        let (rem, rns) = self.needs(rem, rns);
        let mut b = [0.0; MAX_ROWS];
        for (r, row) in self.rows.iter().enumerate() {
            b[r] = match *row {
                Row::Cover(k) => rem[k],
                Row::NonSpot(k) => rns[k],
                Row::MaxCount => -f64::from(self.max_count - count),
                Row::MinCount => f64::from(self.min_count.saturating_sub(count)),
            };
        }
        b
    }

    /// The LP relaxation of the rest of the problem at a node: items `i..` (only the types in
    /// use once the type limit is reached), coefficients tightened to the remaining demand
    /// (`min(a_jk, rem_k)`: valid for integer counts, and much tighter for small covers).
    fn node_lp(
        &mut self,
        rem: &[f64; 4],
        rns: &[f64; 4],
        count: u32,
        parent_y: &[f64; MAX_ROWS],
    ) -> (f64, [f64; MAX_ROWS]) {
        let b = self.rhs(rem, rns, count);
        let (rem, rns) = &self.needs(rem, rns);
        let restrict = self.used_types.len() as u32 >= self.max_types;
        self.cols.clear();
        self.colmap.clear();
        for j in 0..self.items.len() {
            let it = &self.items[j];
            if self.removed[j]
                || self.cur[j] >= self.caps[j]
                || (restrict && !self.used_types.contains(&it.ty))
            {
                continue;
            }
            let mut g = [0.0; MAX_ROWS];
            let mut useful = false;
            for (r, row) in self.rows.iter().enumerate() {
                g[r] = match *row {
                    Row::Cover(k) => it.a[k].min(rem[k]),
                    Row::NonSpot(k) => {
                        if it.spot {
                            0.0
                        } else {
                            it.a[k].min(rns[k])
                        }
                    }
                    Row::MaxCount => -1.0,
                    Row::MinCount => 1.0,
                };
                if g[r] > 0.0 {
                    useful = true;
                }
            }
            if useful {
                self.cols.push((it.cost, g));
                self.colmap.push(j);
            }
        }
        let m = self.rows.len();
        self.lps += 1;
        let mut primal = std::mem::take(&mut self.primal);
        let warm = parent_y.iter().any(|&v| v > 0.0);
        if warm && self.cols.len() > 4 * m + 8 {
            // Sifting: solve over the columns priced near zero by the parent's dual, then add
            // the columns the answer violates; when none is left the answer is the exact LP
            // optimum, else (after a few rounds) it is scaled into feasibility: still a bound.
            let dot = |g: &[f64; MAX_ROWS], y: &[f64; MAX_ROWS]| -> f64 {
                (0..m).map(|r| g[r] * y[r]).sum()
            };
            let mut rc: Vec<(f64, usize)> = self
                .cols
                .iter()
                .enumerate()
                .map(|(c, (cost, g))| ((cost - dot(g, parent_y)) / cost, c))
                .collect();
            let mut inw = vec![false; self.cols.len()];
            let mut w: Vec<usize> = rc.iter().filter(|x| x.0 <= 0.02).map(|x| x.1).collect();
            if w.len() < 2 * m + 2 {
                rc.sort_by(|x, y| x.0.total_cmp(&y.0));
                w = rc.iter().take(2 * m + 2).map(|x| x.1).collect();
            }
            for &c in &w {
                inw[c] = true;
            }
            let mut wcols: Vec<(f64, [f64; MAX_ROWS])> = Vec::new();
            for round in 0..4 {
                wcols.clear();
                wcols.extend(w.iter().map(|&c| self.cols[c]));
                let sol = self.lp.solve_dual(m, &b, &wcols, Some(&mut primal));
                if !sol.bound.is_finite() {
                    break;
                }
                let mut viol: Vec<(f64, usize)> = Vec::new();
                let mut scale = 1.0f64;
                for (c, (cost, g)) in self.cols.iter().enumerate() {
                    let gy = dot(g, &sol.y);
                    if gy > *cost * (1.0 + 1e-9) {
                        scale = scale.min(cost / gy);
                        if !inw[c] {
                            viol.push((cost / gy, c));
                        }
                    }
                }
                if viol.is_empty() || round == 3 {
                    let mut y = sol.y;
                    for v in y.iter_mut().take(m) {
                        *v *= scale;
                    }
                    let bound = (0..m).map(|r| b[r] * y[r]).sum();
                    let map: Vec<usize> = w.iter().map(|&c| self.colmap[c]).collect();
                    self.colmap = map;
                    self.primal = primal;
                    return (bound, y);
                }
                viol.sort_by(|x, y| x.0.total_cmp(&y.0));
                for &(_, c) in viol.iter().take(2 * m + 2) {
                    inw[c] = true;
                    w.push(c);
                }
            }
        }
        let sol = self.lp.solve_dual(m, &b, &self.cols, Some(&mut primal));
        self.primal = primal;
        (sol.bound, sol.y)
    }

    /// Rounds the LP solution of the node up to whole instances: a feasible cover when the count
    /// and type limits allow it.
    fn round_up(&mut self, cost: f64, count: u32) {
        if self.primal.is_empty() {
            return;
        }
        let mut add = 0u32;
        let mut c = cost;
        let mut new_types: Vec<u32> = Vec::new();
        for (ci, &x) in self.primal.iter().enumerate() {
            if x > 1e-9 {
                let k = (x - 1e-9).ceil();
                let it = &self.items[self.colmap[ci]];
                add += k as u32;
                c += k * it.cost;
                if !self.used_types.contains(&it.ty) && !new_types.contains(&it.ty) {
                    new_types.push(it.ty);
                }
            }
        }
        if c < self.best_cost
            && self.rounded_covers()
            && count + add <= self.max_count
            && count + add >= self.min_count
            && (self.used_types.len() + new_types.len()) as u32 <= self.max_types
        {
            self.best_cost = c;
            self.best.clone_from(&self.cur);
            for (ci, &x) in self.primal.iter().enumerate() {
                if x > 1e-9 {
                    self.best[self.colmap[ci]] += (x - 1e-9).ceil() as u32;
                }
            }
        }
    }

    /// Whether the current counts plus the rounded-up LP solution cover the whole demand.
    fn rounded_covers(&self) -> bool {
        let mut tot = [0.0f64; 4];
        let mut tns = [0.0f64; 4];
        let mut add = |j: usize, k: f64| {
            let it = &self.items[j];
            for &d in self.dims {
                tot[d] += k * it.a[d];
                if !it.spot {
                    tns[d] += k * it.a[d];
                }
            }
        };
        for (j, &k) in self.cur.iter().enumerate() {
            if k > 0 {
                add(j, f64::from(k));
            }
        }
        for (ci, &x) in self.primal.iter().enumerate() {
            if x > 1e-9 {
                add(self.colmap[ci], (x - 1e-9).ceil());
            }
        }
        self.dims
            .iter()
            .all(|&d| tot[d] >= self.need_all - EPS && tns[d] >= self.need_ns - EPS)
    }

    fn prune(&mut self, bound: f64) -> bool {
        if bound >= self.best_cost * (1.0 - self.gap) - EPS {
            self.min_pruned = self.min_pruned.min(bound);
            true
        } else {
            false
        }
    }

    /// Rounds the LP solution of the node down to whole instances and completes the cover with
    /// the cheapest single offer: a feasible cover when the count and type limits allow it.
    fn round_down_repair(&mut self, cost: f64, count: u32, rem: &[f64; 4], rns: &[f64; 4]) {
        let mut r = *rem;
        let mut rn = *rns;
        let mut c = cost;
        let mut n = count;
        let mut types = self.used_types.clone();
        let mut add: Vec<(usize, u32)> = Vec::new();
        for (ci, &x) in self.primal.iter().enumerate() {
            let k = (x + 1e-9).floor();
            if k >= 1.0 {
                let j = self.colmap[ci];
                let it = &self.items[j];
                add.push((j, k as u32));
                n += k as u32;
                c += k * it.cost;
                if !types.contains(&it.ty) {
                    types.push(it.ty);
                }
                for &d in self.dims {
                    r[d] = (r[d] - k * it.a[d]).max(0.0);
                    if !it.spot {
                        rn[d] = (rn[d] - k * it.a[d]).max(0.0);
                    }
                }
            }
        }
        if types.len() as u32 > self.max_types || n > self.max_count || c >= self.best_cost {
            return;
        }
        let mut best: Option<(usize, u32, f64)> = None;
        for (j, it) in self.items.iter().enumerate() {
            if !types.contains(&it.ty) && types.len() as u32 >= self.max_types {
                continue;
            }
            let mut k = 0.0f64;
            let mut ok = true;
            for &d in self.dims {
                if r[d] > EPS {
                    if it.a[d] <= 0.0 {
                        ok = false;
                        break;
                    }
                    k = k.max(r[d] / it.a[d]);
                }
                if rn[d] > EPS {
                    if it.spot || it.a[d] <= 0.0 {
                        ok = false;
                        break;
                    }
                    k = k.max(rn[d] / it.a[d]);
                }
            }
            if !ok {
                continue;
            }
            let k = ((k - 1e-9).ceil().max(0.0) as u32).max(self.min_count.saturating_sub(n));
            if n + k > self.max_count {
                continue;
            }
            let total = c + f64::from(k) * it.cost;
            if best.is_none_or(|b| total < b.2) {
                best = Some((j, k, total));
            }
        }
        if let Some((j, k, total)) = best {
            if total < self.best_cost {
                self.best_cost = total;
                self.best.clone_from(&self.cur);
                for &(i, m) in &add {
                    self.best[i] += m;
                }
                self.best[j] += k;
            }
        }
    }

    /// Branch and bound on the LP solution: at each node the LP relaxation of the rest is solved;
    /// a fractional `x_j = v` splits the node into `x_j ≥ ⌈v⌉` (the column stays, shifted) and
    /// `x_j = s` for `s = ⌊v⌋ … 0` (the column is fixed and leaves the LP). An integral LP
    /// solution that uses too many types splits on a new type's item into `x_j ≥ 1` and `x_j = 0`.
    /// The children partition the integer points of the node, so the search is exact.
    fn dfs(
        &mut self,
        rem: [f64; 4],
        rns: [f64; 4],
        cost: f64,
        count: u32,
        parent_y: &[f64; MAX_ROWS],
    ) {
        self.nodes += 1;
        if self.nodes > self.node_limit {
            self.aborted = true;
            return;
        }
        if self.covered(&rem, &rns) && count >= self.min_count {
            if cost < self.best_cost {
                self.best_cost = cost;
                self.best.clone_from(&self.cur);
            }
            return;
        }
        if count >= self.max_count {
            return;
        }
        // Bounds, cheapest first: the parent's dual (still feasible here), then the node LP.
        let b = self.rhs(&rem, &rns, count);
        let inherited: f64 = (0..self.rows.len()).map(|r| b[r] * parent_y[r]).sum();
        if self.prune(cost + inherited) {
            return;
        }
        let (lpb, y) = self.node_lp(&rem, &rns, count, parent_y);
        if self.prune(cost + lpb) {
            return;
        }
        self.round_up(cost, count);
        self.round_down_repair(cost, count, &rem, &rns);
        if self.prune(cost + lpb) {
            return;
        }
        // Branching variable: the largest fractional cost (cost × distance to the nearest integer).
        let mut pick: Option<(usize, u32, f64)> = None;
        for (ci, &x) in self.primal.iter().enumerate() {
            let f = x - x.floor();
            if x > 1e-9 && f > 1e-6 && f < 1.0 - 1e-6 {
                let j = self.colmap[ci];
                let score = self.items[j].cost * f.min(1.0 - f);
                if pick.is_none_or(|p| score > p.2) {
                    pick = Some((j, x.ceil() as u32, score));
                }
            }
        }
        if pick.is_none() {
            // Integral: too many types (split a new type off), or an inexact LP (split at x).
            let new_types = self
                .primal
                .iter()
                .enumerate()
                .filter(|(_, &x)| x > 1e-9)
                .map(|(ci, _)| self.items[self.colmap[ci]].ty)
                .filter(|t| !self.used_types.contains(t))
                .collect::<std::collections::HashSet<_>>()
                .len();
            let too_many = self.used_types.len() + new_types > self.max_types as usize;
            for (ci, &x) in self.primal.iter().enumerate() {
                if x > 1e-9 {
                    let j = self.colmap[ci];
                    if too_many && self.used_types.contains(&self.items[j].ty) {
                        continue;
                    }
                    let t = if too_many {
                        1
                    } else {
                        (x + 1e-9).floor() as u32
                    };
                    let score = self.items[j].cost * x;
                    if pick.is_none_or(|p| score > p.2) {
                        pick = Some((j, t.max(1), score));
                    }
                }
            }
        }
        let Some((j, t, _)) = pick.or_else(|| {
            (0..self.n())
                .find(|&j| !self.removed[j] && self.cur[j] < self.caps[j])
                .map(|j| (j, 1, 0.0))
        }) else {
            return;
        };
        let it = self.items[j];
        let type_known = self.used_types.contains(&it.ty);
        // Children: x_j ≥ t first, then x_j = t − 1, …, 0.
        for child in 0..=t {
            let (add, fix) = if child == 0 {
                (t, false)
            } else {
                (t - child, true)
            };
            if add > 0 && !type_known && self.used_types.len() as u32 >= self.max_types {
                continue;
            }
            if count + add > self.max_count || self.cur[j].saturating_add(add) > self.caps[j] {
                continue;
            }
            let kf = f64::from(add);
            let ncost = cost + kf * it.cost;
            if self.prune(ncost) {
                continue;
            }
            let mut r2 = rem;
            let mut n2 = rns;
            for &k in self.dims {
                r2[k] = (r2[k] - kf * it.a[k]).max(0.0);
                if !it.spot {
                    n2[k] = (n2[k] - kf * it.a[k]).max(0.0);
                }
            }
            self.cur[j] += add;
            self.removed[j] = fix;
            let pushed = add > 0 && !type_known;
            if pushed {
                self.used_types.push(it.ty);
            }
            self.dfs(r2, n2, ncost, count + add, &y);
            if pushed {
                self.used_types.pop();
            }
            self.removed[j] = false;
            self.cur[j] -= add;
            if self.aborted {
                return;
            }
        }
    }
}

/// Directions on the simplex of the demanded dimensions, with a grid step of `1/steps`.
fn simplex_dirs(dims: &[usize], steps: u32) -> Vec<[f64; 4]> {
    let mut out = Vec::new();
    fn rec(
        dims: &[usize],
        steps: u32,
        left: u32,
        cur: &mut [f64; 4],
        idx: usize,
        out: &mut Vec<[f64; 4]>,
    ) {
        if idx == dims.len() - 1 {
            cur[dims[idx]] = left as f64 / steps as f64;
            out.push(*cur);
            return;
        }
        for v in 0..=left {
            cur[dims[idx]] = v as f64 / steps as f64;
            rec(dims, steps, left - v, cur, idx + 1, out);
        }
    }
    let mut cur = [0.0; 4];
    rec(dims, steps, steps, &mut cur, 0, &mut out);
    out
}

/// Solves `p` exactly (see the module docs).
///
/// # Errors
/// [`Error::Infeasible`] naming the constraint that cannot be met: a resource no candidate
/// provides, `spot_share_cap`, `max_count`, `max_types` or `min_count`.
pub fn solve(p: &Problem) -> Result<Solution> {
    let dims: Vec<usize> = (0..4).filter(|&k| p.demand[k] > 0.0).collect();
    if dims.is_empty() {
        return Err(Error::Infeasible {
            constraint: "demand",
            detail: "nothing is demanded".into(),
        });
    }
    let spot_cap = p.spot_cap.clamp(0.0, 1.0);
    let ns_need = if spot_cap < 1.0 && p.cands.iter().any(|c| c.spot) {
        1.0 - spot_cap
    } else {
        0.0
    };
    let split_classes = ns_need > 0.0;
    // 1. Normalise and keep the cheapest offer per (type, class).
    let mut per_type: HashMap<(u32, bool), Item> = HashMap::new();
    for (i, c) in p.cands.iter().enumerate() {
        if !(c.cost.is_finite() && c.cost > 0.0) {
            continue;
        }
        let mut a = [0.0; 4];
        let mut useful = false;
        for &k in &dims {
            a[k] = (c.res[k] / p.demand[k]).min(1.0);
            if a[k] > 0.0 {
                useful = true;
            }
        }
        if !useful {
            continue;
        }
        let item = Item {
            orig: i,
            cost: c.cost,
            a,
            spot: c.spot,
            ty: c.type_index,
        };
        let key = (c.type_index, split_classes && c.spot);
        match per_type.get(&key) {
            Some(old) if old.cost <= item.cost => {}
            _ => {
                per_type.insert(key, item);
            }
        }
    }
    let mut items: Vec<Item> = per_type.into_values().collect();
    // 2. Pareto filter: cheaper first; among equal cost, larger first; then stable by index.
    items.sort_by(|x, y| {
        x.cost
            .total_cmp(&y.cost)
            .then_with(|| {
                let sx: f64 = dims.iter().map(|&k| x.a[k]).sum();
                let sy: f64 = dims.iter().map(|&k| y.a[k]).sum();
                sy.total_cmp(&sx)
            })
            .then_with(|| x.spot.cmp(&y.spot))
            .then_with(|| x.orig.cmp(&y.orig))
    });
    let covers = |f: &Item, it: &Item| f.cost <= it.cost && dims.iter().all(|&k| f.a[k] >= it.a[k]);
    let mut front: Vec<Item> = Vec::new();
    let distinct_types = items
        .iter()
        .map(|it| it.ty)
        .collect::<std::collections::HashSet<_>>()
        .len();
    if split_classes && (p.max_types as usize) < distinct_types {
        // Under a limit on the number of types, an offer of one type may only be dropped for
        // another type's when the whole type is dominated: every class it offers is covered by
        // the other type (a non-spot offer may stand in for a spot one). Otherwise a type that
        // is only cheap as an on-demand + spot pair would be lost.
        let mut by_type: HashMap<u32, (Option<Item>, Option<Item>)> = HashMap::new();
        for it in items {
            let e = by_type.entry(it.ty).or_default();
            if it.spot {
                e.1 = Some(it);
            } else {
                e.0 = Some(it);
            }
        }
        let mut types: Vec<(Option<Item>, Option<Item>)> = by_type.into_values().collect();
        let key = |t: &(Option<Item>, Option<Item>)| {
            let c = |o: &Option<Item>| o.map_or(f64::INFINITY, |i| i.cost);
            let first = t.0.or(t.1).map_or(usize::MAX, |i| i.orig);
            (c(&t.0).min(c(&t.1)), first)
        };
        types.sort_by(|x, y| {
            let (cx, ox) = key(x);
            let (cy, oy) = key(y);
            cx.total_cmp(&cy).then(ox.cmp(&oy))
        });
        let class_covered =
            |f: &(Option<Item>, Option<Item>), it: &Option<Item>, spot: bool| match it {
                None => true,
                Some(it) => {
                    let by_same = if spot { f.1 } else { f.0 };
                    by_same.is_some_and(|g| covers(&g, it))
                        || (spot && f.0.is_some_and(|g| covers(&g, it)))
                }
            };
        let mut kept: Vec<(Option<Item>, Option<Item>)> = Vec::new();
        for t in types {
            let dominated = kept
                .iter()
                .any(|f| class_covered(f, &t.0, false) && class_covered(f, &t.1, true));
            if !dominated {
                kept.push(t);
            }
        }
        front = kept
            .into_iter()
            .flat_map(|(a, b)| a.into_iter().chain(b))
            .collect();
    } else {
        for it in items {
            let dominated = front
                .iter()
                .any(|f| covers(f, &it) && (!split_classes || !f.spot || it.spot));
            if !dominated {
                front.push(it);
            }
        }
    }
    let pareto = front.len();
    // Feasibility diagnostics before searching.
    for &k in &dims {
        if !front.iter().any(|f| f.a[k] > 0.0) {
            return Err(Error::Infeasible {
                constraint: RESOURCES[k],
                detail: format!("no allowed offer provides {}", RESOURCES[k]),
            });
        }
        if ns_need > 0.0 && !front.iter().any(|f| !f.spot && f.a[k] > 0.0) {
            return Err(Error::Infeasible {
                constraint: "spot_share_cap",
                detail: format!(
                    "at least {:.0} % of {} must be on non-spot capacity, but only spot offers are allowed",
                    ns_need * 100.0,
                    RESOURCES[k]
                ),
            });
        }
    }
    // 3. Directions and order.
    // Directions: a coarse grid for every node, plus the root's best direction (found on a fine
    // grid) and its neighbours, where the bound of most nodes is attained.
    let dot = |y: &[f64; 4], a: &[f64; 4]| dims.iter().map(|&k| y[k] * a[k]).sum::<f64>();
    let root = [1.0; 4];
    let root_value = |y: &[f64; 4]| {
        let m = front
            .iter()
            .map(|f| f.cost / dot(y, &f.a))
            .fold(f64::INFINITY, f64::min);
        dot(y, &root) * m
    };
    let fine = match dims.len() {
        1 => 1,
        2 => 1024,
        3 => 48,
        _ => 12,
    };
    let mut best_dir = simplex_dirs(&dims, 1)[0];
    let mut best_val = -1.0;
    for y in simplex_dirs(&dims, fine) {
        let v = root_value(&y);
        if v.is_finite() && v > best_val {
            best_val = v;
            best_dir = y;
        }
    }
    let node_limit = NODE_LIMIT;
    let mut inc_cost = f64::INFINITY;
    let mut inc: Vec<(usize, u32)> = Vec::new();
    let mut total_nodes = 0u64;
    let mut proven: Option<f64> = None;
    let mut root_lb = 0.0f64;
    {
        // Order by cost per unit of the root's best direction (the incumbent heuristics take the
        // first offers of each class).
        front.sort_by(|x, y| {
            let ex = x.cost / dot(&best_dir, &x.a).max(1e-300);
            let ey = y.cost / dot(&best_dir, &y.a).max(1e-300);
            ex.total_cmp(&ey).then_with(|| x.orig.cmp(&y.orig))
        });
        let n = front.len();
        // Count caps by exchange: when one offer `j` has at least `m` times the resources of offer
        // `i` (raw, every demanded resource) for at most `m` times its cost, `m` of `i` can be
        // replaced by one `j`, no dearer and with fewer instances; so some optimum (the one with the
        // fewest instances) takes at most `m − 1` of `i`. Valid without a minimum count or a type
        // limit (the exchange may bring in a new type); `j` must be non-spot where `i` is.
        let mut caps = vec![u32::MAX; n];
        if p.min_count == 0 && p.max_types == u32::MAX {
            for (i, fi) in front.iter().enumerate() {
                let ri = &p.cands[fi.orig].res;
                for (j, fj) in front.iter().enumerate() {
                    if i == j || (fj.spot && !fi.spot && ns_need > 0.0) {
                        continue;
                    }
                    let rj = &p.cands[fj.orig].res;
                    let fit = dims
                        .iter()
                        .map(|&k| (rj[k] / ri[k] * (1.0 + 1e-12)).floor())
                        .fold(f64::INFINITY, f64::min);
                    let m = (fj.cost / fi.cost * (1.0 - 1e-12)).ceil().max(2.0);
                    if m <= fit && m < f64::from(caps[i]) {
                        caps[i] = m as u32 - 1;
                    }
                }
            }
        }
        let rem0 = {
            let mut r = [0.0; 4];
            for &k in &dims {
                r[k] = 1.0;
            }
            r
        };
        let rns0 = {
            let mut r = [0.0; 4];
            for &k in &dims {
                r[k] = ns_need;
            }
            r
        };
        let mut rows: Vec<Row> = dims.iter().map(|&k| Row::Cover(k)).collect();
        if ns_need > 0.0 {
            rows.extend(dims.iter().map(|&k| Row::NonSpot(k)));
        }
        rows.push(Row::MaxCount);
        if p.min_count > 0 {
            rows.push(Row::MinCount);
        }
        let mut s = Search {
            items: &front,
            dims: &dims,
            removed: vec![false; n],
            min_count: p.min_count,
            max_count: p.max_count,
            max_types: p.max_types.max(1),
            best_cost: f64::INFINITY,
            best: vec![0; n],
            cur: vec![0; n],
            used_types: Vec::new(),
            nodes: 0,
            aborted: false,
            gap: p.gap.clamp(0.0, 0.5).max(1e-12),
            node_limit,
            rows,
            lp: Lp::default(),
            cols: Vec::new(),
            colmap: Vec::new(),
            primal: Vec::new(),
            min_pruned: f64::INFINITY,
            lps: 0,
            need_all: 1.0,
            need_ns: ns_need,
            caps,
            unit: [0.0; 4],
            unit_ns: [0.0; 4],
        };
        // Granularity of each resource over the items the search uses (raw amounts: an item
        // capped at the whole demand covers it alone, so its cap does not matter).
        for &k in &dims {
            let g = granularity(front.iter().map(|f| p.cands[f.orig].res[k]));
            s.unit[k] = g / p.demand[k];
            let g = granularity(
                front
                    .iter()
                    .filter(|f| !f.spot)
                    .map(|f| p.cands[f.orig].res[k]),
            );
            s.unit_ns[k] = g / p.demand[k];
        }
        // Incumbent: best single-type solution, then a greedy cover.
        for (i, it) in front.iter().enumerate() {
            if it.spot && ns_need > 0.0 {
                continue;
            }
            let need = dims
                .iter()
                .map(|&k| {
                    if it.a[k] > 0.0 {
                        1.0 / it.a[k]
                    } else {
                        f64::INFINITY
                    }
                })
                .fold(0.0, f64::max);
            if !need.is_finite() {
                continue;
            }
            let k = ((need - 1e-9).ceil() as u32).max(p.min_count).max(1);
            if k <= p.max_count && (k as f64) * it.cost < s.best_cost {
                s.best_cost = k as f64 * it.cost;
                s.best = vec![0; n];
                s.best[i] = k;
            }
        }
        greedy(&mut s, rem0, rns0);
        pairs(&mut s, rem0, rns0);
        let (root_lp, _) = s.node_lp(&rem0, &rns0, 0, &[0.0; MAX_ROWS]);
        s.round_up(0.0, 0);
        root_lb = root_lb.max(root_lp);
        s.dfs(rem0, rns0, 0.0, 0, &[0.0; MAX_ROWS]);
        total_nodes += s.nodes;
        if s.best_cost < inc_cost {
            inc_cost = s.best_cost;
            inc = s
                .best
                .iter()
                .enumerate()
                .filter(|(_, &k)| k > 0)
                .map(|(i, &k)| (front[i].orig, k))
                .collect();
        }
        if !s.aborted {
            proven = Some(s.min_pruned);
        }
    }
    if !inc_cost.is_finite() {
        return Err(diagnose(p));
    }
    let counts = inc;
    let cost: f64 = counts
        .iter()
        .map(|&(i, k)| p.cands[i].cost * k as f64)
        .sum();
    Ok(Solution {
        counts,
        cost,
        lower_bound: match proven {
            // Every node was pruned by a valid bound or led to a cover no cheaper than the answer.
            Some(min_pruned) => min_pruned.min(cost).max(root_lb.min(cost)),
            None => root_lb.min(cost),
        },
        optimal: proven.is_some(),
        nodes: total_nodes,
        pareto,
    })
}

fn greedy(s: &mut Search<'_>, mut rem: [f64; 4], mut rns: [f64; 4]) {
    let n = s.n();
    let mut x = vec![0u32; n];
    let mut cost = 0.0;
    let mut count = 0u32;
    let mut types: Vec<u32> = Vec::new();
    while !(s.covered(&rem, &rns) && count >= s.min_count) {
        if count >= s.max_count {
            return;
        }
        let mut best: Option<(usize, f64)> = None;
        for (i, it) in s.items.iter().enumerate() {
            if !types.contains(&it.ty) && types.len() as u32 >= s.max_types {
                continue;
            }
            let mut gain = 0.0;
            for &k in s.dims {
                gain += it.a[k].min(rem[k]);
                if !it.spot {
                    gain += it.a[k].min(rns[k]);
                }
            }
            let score = if gain > EPS {
                gain / it.cost
            } else if s.covered(&rem, &rns) {
                1e-12 / it.cost
            } else {
                0.0
            };
            if score > 0.0 && best.is_none_or(|(_, b)| score > b) {
                best = Some((i, score));
            }
        }
        let Some((i, _)) = best else { return };
        let it = s.items[i];
        if !types.contains(&it.ty) {
            types.push(it.ty);
        }
        x[i] += 1;
        count += 1;
        cost += it.cost;
        for &k in s.dims {
            rem[k] = (rem[k] - it.a[k]).max(0.0);
            if !it.spot {
                rns[k] = (rns[k] - it.a[k]).max(0.0);
            }
        }
    }
    if cost < s.best_cost {
        s.best_cost = cost;
        s.best = x;
    }
}

/// Incumbent from pairs of the best items: for each pair among the first items (best cost per
/// unit of the root direction), every count of the first and the fewest of the second that
/// completes the cover. Most optimal mixes use one or two types, so this starts the search close.
fn pairs(s: &mut Search<'_>, rem: [f64; 4], rns: [f64; 4]) {
    // The best items of each class: with a spot share cap, a non-spot item must take part.
    let mut idx: Vec<usize> = (0..s.n()).filter(|&i| s.items[i].spot).take(16).collect();
    idx.extend((0..s.n()).filter(|&i| !s.items[i].spot).take(16));
    let need = |it: &Item, r: &[f64; 4], rn: &[f64; 4]| -> Option<u32> {
        let mut k = 0.0f64;
        for &d in s.dims {
            if r[d] > EPS || (rn[d] > EPS && !it.spot) {
                if it.a[d] <= 0.0 {
                    return None;
                }
                k = k.max(r[d] / it.a[d]);
                if !it.spot {
                    k = k.max(rn[d] / it.a[d]);
                }
            }
            if rn[d] > EPS && it.spot {
                return None;
            }
        }
        Some((k - 1e-9).ceil().max(0.0) as u32)
    };
    for &i in &idx {
        let a = s.items[i];
        for &j in &idx {
            if i == j || (s.max_types < 2 && a.ty != s.items[j].ty) {
                continue;
            }
            let b = s.items[j];
            // Counts of `a` from 0 up to what covers everything it can alone.
            let mut amax = 0.0f64;
            for &d in s.dims {
                if a.a[d] > 0.0 {
                    amax = amax.max(rem[d] / a.a[d]);
                }
            }
            let amax = ((amax - 1e-9).ceil().max(0.0) as u32).min(s.max_count);
            for xa in 0..=amax {
                let mut r = rem;
                let mut rn = rns;
                for &d in s.dims {
                    r[d] = (r[d] - xa as f64 * a.a[d]).max(0.0);
                    if !a.spot {
                        rn[d] = (rn[d] - xa as f64 * a.a[d]).max(0.0);
                    }
                }
                let Some(xb) = need(&b, &r, &rn) else {
                    continue;
                };
                let n = xa + xb;
                if n > s.max_count || n < s.min_count {
                    continue;
                }
                let cost = xa as f64 * a.cost + xb as f64 * b.cost;
                if cost < s.best_cost {
                    s.best_cost = cost;
                    s.best = vec![0; s.n()];
                    s.best[i] = xa;
                    s.best[j] += xb;
                }
            }
        }
    }
}

/// Names the constraint that makes an infeasible problem infeasible, by relaxing one at a time.
fn diagnose(p: &Problem) -> Error {
    if p.max_types != u32::MAX {
        let mut q = p.clone();
        q.max_types = u32::MAX;
        if solve(&q).is_ok() {
            return Error::Infeasible {
                constraint: "max_types",
                detail: format!("no mix of at most {} instance types covers the demand within the other constraints", p.max_types),
            };
        }
    }
    if p.spot_cap < 1.0 {
        let mut q = p.clone();
        q.spot_cap = 1.0;
        q.max_types = u32::MAX;
        if solve(&q).is_ok() {
            return Error::Infeasible {
                constraint: "spot_share_cap",
                detail: format!("with at most {:.0} % on spot the demand cannot be covered within the other constraints", p.spot_cap * 100.0),
            };
        }
    }
    Error::Infeasible {
        constraint: "max_count",
        detail: format!(
            "the demand needs more than {} instances of the allowed types",
            p.max_count
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(i: u32, cost: f64, cpu: f64, mem: f64, spot: bool) -> Candidate {
        Candidate {
            offer: i,
            type_index: i,
            purchase: if spot {
                Purchase::Spot
            } else {
                Purchase::OnDemand
            },
            price: cost,
            cost,
            res: [cpu, mem, 0.0, 0.0],
            spot,
        }
    }

    fn problem(cands: Vec<Candidate>, cpu: f64, mem: f64) -> Problem {
        Problem {
            demand: [cpu, mem, 0.0, 0.0],
            cands,
            spot_cap: 1.0,
            min_count: 0,
            max_count: 100,
            max_types: u32::MAX,
            gap: 0.0,
        }
    }

    #[test]
    fn granularity_should_be_the_largest_common_unit() {
        assert_eq!(granularity([2.0, 4.0, 6.0].into_iter()), 2.0);
        assert_eq!(granularity([0.5, 1.75, 0.0].into_iter()), 0.25);
        assert_eq!(granularity([3.75, 1.8].into_iter()), 0.15);
        assert_eq!(granularity([1.0, 1.0 / 3.0].into_iter()), 0.0);
        assert_eq!(granularity([1.0, 2.0004].into_iter()), 0.0);
        assert_eq!(granularity(std::iter::empty()), 0.0);
    }

    #[test]
    fn round_need_should_round_up_to_a_whole_unit_and_never_down() {
        let u = 1.0 / 128.0;
        assert!((round_need(38.4 / 128.0, u) - 39.0 / 128.0).abs() < 1e-12);
        // Already a multiple (up to rounding noise): unchanged.
        assert!((round_need(39.0 / 128.0 + 1e-13, u) - 39.0 / 128.0).abs() < 1e-12);
        // Never above the whole demand, never below the need, nothing without a unit.
        assert_eq!(round_need(0.999, 0.3), 1.0);
        assert_eq!(round_need(0.25, 0.0), 0.25);
        assert_eq!(round_need(0.0, u), 0.0);
    }

    /// With a spot share cap the non-spot need is a fraction of the demand (here 0.3 × 10 = 3
    /// vCPU of 2-vCPU types): the node bound rounds it up to 4 vCPU and proves the optimum at
    /// once, where the plain LP bound is fractional.
    #[test]
    fn rounded_non_spot_need_should_prove_the_optimum() {
        let c = vec![cand(0, 1.0, 2.0, 4.0, false), cand(1, 0.25, 2.0, 4.0, true)];
        let mut p = problem(c, 10.0, 20.0);
        p.spot_cap = 0.7;
        let s = solve(&p).unwrap();
        // 2 on demand (4 vCPU ≥ 3) + 3 spot.
        assert!((s.cost - 2.75).abs() < 1e-9, "{s:?}");
        assert!(s.optimal);
        assert!((s.lower_bound - 2.75).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn solver_should_mix_types_when_mixing_is_cheaper() {
        // cpu-heavy and memory-heavy shapes; the demand has both.
        let c = vec![
            cand(0, 1.0, 8.0, 16.0, false),
            cand(1, 1.0, 2.0, 64.0, false),
        ];
        let s = solve(&problem(c, 16.0, 128.0)).unwrap();
        assert!((s.cost - 4.0).abs() < 1e-9, "{s:?}");
        assert!(s.optimal);
    }

    #[test]
    fn spot_cap_should_keep_a_share_on_demand() {
        let c = vec![
            cand(0, 1.0, 4.0, 16.0, false),
            cand(1, 0.3, 4.0, 16.0, true),
        ];
        let mut p = problem(c, 16.0, 64.0);
        p.spot_cap = 0.5;
        let s = solve(&p).unwrap();
        assert!((s.cost - (2.0 + 0.6)).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn infeasible_count_should_name_max_count() {
        let c = vec![cand(0, 1.0, 2.0, 4.0, false)];
        let mut p = problem(c, 100.0, 4.0);
        p.max_count = 10;
        let e = solve(&p).unwrap_err();
        assert!(e.to_string().contains("`max_count`"), "{e}");
    }

    /// Regression (found by `size_should_match_brute_force`): with one type allowed and a spot
    /// share cap, the cheapest answer is one type's on-demand + spot pair; an equal on-demand offer
    /// of another type must not push that type out of the search.
    #[test]
    fn type_limit_should_keep_a_type_whose_pair_is_cheapest() {
        let mut p = problem(
            vec![
                Candidate {
                    type_index: 0,
                    ..cand(0, 0.25, 12.0, 24.0, false)
                },
                Candidate {
                    type_index: 0,
                    ..cand(1, 0.19, 12.0, 24.0, true)
                },
                Candidate {
                    type_index: 1,
                    ..cand(2, 0.25, 12.0, 24.0, false)
                },
                Candidate {
                    type_index: 1,
                    ..cand(3, 0.025, 12.0, 24.0, true)
                },
            ],
            1.0,
            25.0,
        );
        p.max_types = 1;
        p.max_count = 2;
        p.spot_cap = 0.25;
        let s = solve(&p).unwrap();
        assert!((s.cost - 0.275).abs() < 1e-9, "cost {}", s.cost);
    }

    #[test]
    fn infeasible_types_should_name_max_types() {
        let c = vec![
            cand(0, 1.0, 64.0, 1.0, false),
            cand(1, 1.0, 1.0, 64.0, false),
        ];
        let mut p = problem(c, 64.0, 64.0);
        p.max_count = 1;
        p.max_types = 1;
        let e = solve(&p).unwrap_err();
        assert!(e.to_string().contains("`max_count`"), "{e}");
        p.max_count = 2;
        let e = solve(&p).unwrap_err();
        assert!(e.to_string().contains("`max_types`"), "{e}");
    }
}
