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
//! 3. Depth-first branch and bound over the remaining offers, sorted by cost per unit of the
//!    root's best dual direction, branching on the count of one offer at a time (largest first).
//!    The bound at a node is `max_y (y·r) · min_{j ≥ i} c_j / (y·a_j)` over a grid of directions
//!    `y` on the simplex of demanded resources (each is a valid lower bound of the LP relaxation
//!    of the rest), with the same bound on the non-spot remainder. Nodes that cannot be covered
//!    by the remaining count are cut. The incumbent starts from the best single-type solution
//!    and a greedy cover.
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
    dirs: &'a [[f64; 4]],
    /// `m_all[d * (n + 1) + i]` = min over j ≥ i of cost_j / (y_d · a_j).
    m_all: Vec<f64>,
    /// The same over non-spot items.
    m_ns: Vec<f64>,
    /// Lagrange multipliers on the instance count (0 first).
    mus: Vec<f64>,
    /// `smax[i * 4 + k]` = max over j ≥ i of a_jk (all items), and over non-spot items.
    smax: Vec<f64>,
    smax_ns: Vec<f64>,
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

    fn lb(&self, i: usize, rem: &[f64; 4], rns: &[f64; 4], left: u32) -> f64 {
        // For a direction y, every item costs at least ρ(y)·(y·a) with ρ the suffix minimum of
        // c/(y·a) (ρ_ns over non-spot items). Non-spot items must supply y·rns and all items
        // y·rem, so the cost is at least ρ_ns·(y·rns) + ρ_all·max(0, y·rem − y·rns).
        // With a Lagrange multiplier μ ≥ 0 on the instance count (at most `left` more), the same
        // bound over costs c + μ, minus μ·left, is valid too and sees the count limit.
        let n1 = self.n() + 1;
        let nd = self.dirs.len();
        let mut best: f64 = 0.0;
        let mut sy = [0.0f64; 64];
        let mut sny = [0.0f64; 64];
        let many = nd > 64;
        for (d, y) in self.dirs.iter().enumerate().take(64) {
            let mut s = 0.0;
            let mut sn = 0.0;
            for &k in self.dims {
                s += y[k] * rem[k];
                sn += y[k] * rns[k];
            }
            sy[d] = s;
            sny[d] = sn;
        }
        for (mi, &mu) in self.mus.iter().enumerate() {
            for (d, y) in self.dirs.iter().enumerate() {
                let (s, sn) = if !many || d < 64 {
                    (sy[d], sny[d])
                } else {
                    let mut s = 0.0;
                    let mut sn = 0.0;
                    for &k in self.dims {
                        s += y[k] * rem[k];
                        sn += y[k] * rns[k];
                    }
                    (s, sn)
                };
                let base = (mi * nd + d) * n1 + i;
                let ra = self.m_all[base];
                let v = if sn > EPS {
                    let rn = self.m_ns[base];
                    if !rn.is_finite() {
                        return f64::INFINITY;
                    }
                    sn * rn + if s > sn { (s - sn) * ra } else { 0.0 }
                } else if s > EPS {
                    s * ra
                } else {
                    0.0
                } - mu * left as f64;
                if v > best {
                    best = v;
                }
            }
        }
        best
    }

    fn covered(&self, rem: &[f64; 4], rns: &[f64; 4]) -> bool {
        self.dims.iter().all(|&k| rem[k] <= EPS && rns[k] <= EPS)
    }

    /// Right-hand side of the node LP.
    fn rhs(&self, rem: &[f64; 4], rns: &[f64; 4], count: u32) -> [f64; MAX_ROWS] {
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
        i: usize,
        rem: &[f64; 4],
        rns: &[f64; 4],
        count: u32,
        parent_y: &[f64; MAX_ROWS],
    ) -> (f64, [f64; MAX_ROWS]) {
        let restrict = self.used_types.len() as u32 >= self.max_types;
        self.cols.clear();
        self.colmap.clear();
        for j in i..self.items.len() {
            let it = &self.items[j];
            if restrict && !self.used_types.contains(&it.ty) {
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
        let b = self.rhs(rem, rns, count);
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

    fn dfs(
        &mut self,
        i: usize,
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
        let covered = self.covered(&rem, &rns);
        if covered && count >= self.min_count {
            if cost < self.best_cost {
                self.best_cost = cost;
                self.best.clone_from(&self.cur);
            }
            return;
        }
        if i >= self.n() {
            return;
        }
        let left = self.max_count - count;
        // Cut: the remaining count cannot cover what is left with the largest remaining items.
        for &k in self.dims {
            if rem[k] > EPS && self.smax[i * 4 + k] * left as f64 + EPS < rem[k] {
                return;
            }
            if rns[k] > EPS && self.smax_ns[i * 4 + k] * left as f64 + EPS < rns[k] {
                return;
            }
        }
        // Bounds, cheapest first: the parent's dual (still feasible here), the direction grid,
        // then the node LP.
        let b = self.rhs(&rem, &rns, count);
        let inherited: f64 = (0..self.rows.len()).map(|r| b[r] * parent_y[r]).sum();
        if self.prune(cost + inherited) {
            return;
        }
        if self.prune(cost + self.lb(i, &rem, &rns, left)) {
            return;
        }
        let (lpb, y) = self.node_lp(i, &rem, &rns, count, parent_y);
        if self.prune(cost + lpb) {
            return;
        }
        self.round_up(cost, count);
        if self.prune(cost + lpb) {
            return;
        }
        let it = self.items[i];
        let type_known = self.used_types.contains(&it.ty);
        let may_take = type_known || (self.used_types.len() as u32) < self.max_types;
        if may_take && left > 0 {
            // The most of this item worth taking: enough to cover the rest alone (or to reach
            // the minimum count).
            let mut need = 0.0f64;
            for &k in self.dims {
                if it.a[k] > 0.0 {
                    need = need.max(rem[k] / it.a[k]);
                    if !it.spot {
                        need = need.max(rns[k] / it.a[k]);
                    }
                }
            }
            let mut kmax = ((need - 1e-9).ceil().max(0.0)) as u32;
            kmax = kmax
                .max(self.min_count.saturating_sub(count))
                .min(left)
                .min(self.caps[i]);
            if kmax > 0 && !type_known {
                self.used_types.push(it.ty);
            }
            for kk in (1..=kmax).rev() {
                let kf = kk as f64;
                let ncost = cost + kf * it.cost;
                if ncost >= self.best_cost * (1.0 - 1e-12) - EPS {
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
                self.cur[i] = kk;
                self.dfs(i + 1, r2, n2, ncost, count + kk, &y);
                self.cur[i] = 0;
                if self.aborted {
                    break;
                }
            }
            if kmax > 0 && !type_known {
                self.used_types.pop();
            }
            if self.aborted {
                return;
            }
        }
        self.dfs(i + 1, rem, rns, cost, count, &y);
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
    let (coarse, fine) = match dims.len() {
        1 => (1, 1),
        2 => (32, 1024),
        3 => (8, 48),
        _ => (4, 12),
    };
    let mut dirs = simplex_dirs(&dims, coarse);
    let mut best_dir = dirs[0];
    let mut best_val = -1.0;
    for y in simplex_dirs(&dims, fine) {
        let v = root_value(&y);
        if v.is_finite() && v > best_val {
            best_val = v;
            best_dir = y;
        }
    }
    dirs.push(best_dir);
    // Neighbours: move weight between each pair of demanded dimensions by small steps.
    for &da in &dims {
        for &db in &dims {
            if da == db {
                continue;
            }
            for step in [1.0f64 / 256.0, 1.0 / 64.0, 1.0 / 32.0] {
                let mut y = best_dir;
                let m = step.min(y[da]);
                if m <= 0.0 {
                    continue;
                }
                y[da] -= m;
                y[db] += m;
                dirs.push(y);
            }
        }
    }
    // Passes: under a spot share cap the search runs first with all offers in one order, then
    // (if the node limit stopped it) with the non-spot offers first, sharing the incumbent.
    let passes: &[bool] = if ns_need > 0.0 {
        &[false, true]
    } else {
        &[false]
    };
    let node_limit = NODE_LIMIT / passes.len() as u64;
    let mut inc_cost = f64::INFINITY;
    let mut inc: Vec<(usize, u32)> = Vec::new();
    let mut total_nodes = 0u64;
    let mut proven: Option<f64> = None;
    let mut root_lb = 0.0f64;
    for &ns_first in passes {
        front.sort_by(|x, y| {
            let ex = x.cost / dot(&best_dir, &x.a).max(1e-300);
            let ey = y.cost / dot(&best_dir, &y.a).max(1e-300);
            // Second pass under a spot share cap: decide the non-spot part first (once the
            // non-spot requirement is met, the rest is a plain cover whose bound is tight).
            let kx = ns_first && x.spot;
            let ky = ns_first && y.spot;
            kx.cmp(&ky)
                .then(ex.total_cmp(&ey))
                .then_with(|| x.orig.cmp(&y.orig))
        });
        let n = front.len();
        let n1 = n + 1;
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
        let tables = |mus: &[f64]| {
            let nd = dirs.len();
            let mut m_all = vec![f64::INFINITY; mus.len() * nd * n1];
            let mut m_ns = vec![f64::INFINITY; mus.len() * nd * n1];
            for (mi, mu) in mus.iter().enumerate() {
                for (d, y) in dirs.iter().enumerate() {
                    let b = (mi * nd + d) * n1;
                    for i in (0..n).rev() {
                        let ya = dot(y, &front[i].a);
                        let r = if ya > 0.0 {
                            (front[i].cost + mu) / ya
                        } else {
                            f64::INFINITY
                        };
                        m_all[b + i] = m_all[b + i + 1].min(r);
                        m_ns[b + i] = if front[i].spot {
                            m_ns[b + i + 1]
                        } else {
                            m_ns[b + i + 1].min(r)
                        };
                    }
                }
            }
            (m_all, m_ns)
        };
        let (m_all, m_ns) = tables(&[0.0]);
        let mut smax = vec![0.0; n1 * 4];
        let mut smax_ns = vec![0.0; n1 * 4];
        for i in (0..n).rev() {
            for k in 0..4 {
                smax[i * 4 + k] = f64::max(smax[(i + 1) * 4 + k], front[i].a[k]);
                smax_ns[i * 4 + k] = if front[i].spot {
                    smax_ns[(i + 1) * 4 + k]
                } else {
                    f64::max(smax_ns[(i + 1) * 4 + k], front[i].a[k])
                };
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
            dirs: &dirs,
            m_all,
            m_ns,
            mus: vec![0.0],
            smax,
            smax_ns,
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
        };
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
        // Count multipliers, kept only when they raise the root bound (the count limit binds).
        let root0 = s.lb(0, &rem0, &rns0, p.max_count);
        if root0.is_finite() && root0 > 0.0 {
            let unit = root0 / p.max_count.max(1) as f64;
            let mus: Vec<f64> = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
                .iter()
                .map(|f| f * unit)
                .collect();
            let (ma, mn) = tables(&mus);
            let (old_a, old_n, old_mu) = (
                std::mem::replace(&mut s.m_all, ma),
                std::mem::replace(&mut s.m_ns, mn),
                std::mem::replace(&mut s.mus, mus),
            );
            if s.lb(0, &rem0, &rns0, p.max_count) <= root0 * (1.0 + 1e-4) {
                s.m_all = old_a;
                s.m_ns = old_n;
                s.mus = old_mu;
            }
        }
        // The incumbent of the previous pass, in this pass's order.
        if inc_cost < s.best_cost {
            s.best_cost = inc_cost;
            s.best = vec![0; n];
            for &(o, k) in &inc {
                if let Some(i) = front.iter().position(|f| f.orig == o) {
                    s.best[i] = k;
                }
            }
        }
        greedy(&mut s, rem0, rns0);
        pairs(&mut s, rem0, rns0);
        let root_grid = s.lb(0, &rem0, &rns0, p.max_count);
        let (root_lp, _) = s.node_lp(0, &rem0, &rns0, 0, &[0.0; MAX_ROWS]);
        s.round_up(0.0, 0);
        root_lb = root_lb.max(root_grid.max(root_lp));
        s.dfs(0, rem0, rns0, 0.0, 0, &[0.0; MAX_ROWS]);
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
            break;
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
