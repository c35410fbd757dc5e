//! A small dense simplex for the dual of a covering LP with few rows.
//!
//! The covering LP `min c·x  s.t.  G x ≥ b, x ≥ 0` (few rows `m`, many columns `n`, every
//! `c_j > 0`) has the dual `max b·y  s.t.  g_j·y ≤ c_j, y ≥ 0`, whose origin is feasible. The
//! dual is solved by the primal simplex in dictionary form (an `n × m` tableau, `O(n·m)` per
//! pivot): largest coefficient first, Bland's rule after a few pivots so that it always ends.
//! Any dual-feasible `y` bounds the covering optimum from below (weak duality), so the result is
//! checked against the original columns and scaled into feasibility before it is used: the
//! bound stays valid whatever the rounding.

/// Most rows of one LP.
pub(crate) const MAX_ROWS: usize = 10;

const TOL: f64 = 1e-11;
const MAX_PIVOTS: usize = 200;

/// Reusable buffers of the simplex.
#[derive(Debug, Default)]
pub(crate) struct Lp {
    tab: Vec<f64>,
    rhs: Vec<f64>,
    basic: Vec<usize>,
}

/// The result of one dual solve.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DualSolution {
    /// The lower bound `b·y` (infinite when the covering LP is infeasible).
    pub(crate) bound: f64,
    /// The dual vector, feasible for the columns it was solved over.
    pub(crate) y: [f64; MAX_ROWS],
}

impl Lp {
    /// Solves `max b·y  s.t.  g_j·y ≤ c_j (every column j), y ≥ 0` over `m` rows.
    ///
    /// `cols` gives `(c_j, g_j)`; `c_j` must be positive. `primal`, when given, receives the
    /// primal values `x_j` of the covering LP (one per column).
    pub(crate) fn solve_dual(
        &mut self,
        m: usize,
        b: &[f64; MAX_ROWS],
        cols: &[(f64, [f64; MAX_ROWS])],
        primal: Option<&mut Vec<f64>>,
    ) -> DualSolution {
        let n = cols.len();
        let w = m;
        self.tab.clear();
        self.rhs.clear();
        self.basic.clear();
        for (j, (c, g)) in cols.iter().enumerate() {
            self.rhs.push(*c);
            self.tab.extend_from_slice(&g[..m]);
            self.basic.push(m + j);
        }
        // Nonbasic variable per column: 0..m are the duals y, m.. the slacks of the columns.
        let mut nonbasic = [0usize; MAX_ROWS];
        for (k, v) in nonbasic.iter_mut().enumerate().take(m) {
            *v = k;
        }
        let mut obj = [0.0f64; MAX_ROWS];
        obj[..m].copy_from_slice(&b[..m]);
        let mut unbounded = false;
        for pivots in 0..MAX_PIVOTS {
            // Entering column.
            let mut e = usize::MAX;
            let mut best = TOL;
            for k in 0..m {
                if obj[k] > TOL {
                    if pivots < 2 * m + 4 {
                        if obj[k] > best {
                            best = obj[k];
                            e = k;
                        }
                    } else if e == usize::MAX || nonbasic[k] < nonbasic[e] {
                        e = k;
                    }
                }
            }
            if e == usize::MAX {
                break;
            }
            // Ratio test.
            let mut l = usize::MAX;
            let mut ratio = f64::INFINITY;
            for j in 0..n {
                let t = self.tab[j * w + e];
                if t > TOL {
                    let r = self.rhs[j].max(0.0) / t;
                    if r < ratio - 1e-15
                        || (r <= ratio + 1e-15 && l != usize::MAX && self.basic[j] < self.basic[l])
                    {
                        ratio = r;
                        l = j;
                    }
                }
            }
            if l == usize::MAX {
                unbounded = true;
                break;
            }
            // Pivot on (l, e).
            let p = self.tab[l * w + e];
            let inv = 1.0 / p;
            let rl = self.rhs[l] * inv;
            self.rhs[l] = rl;
            for k in 0..m {
                if k != e {
                    self.tab[l * w + k] *= inv;
                }
            }
            self.tab[l * w + e] = inv;
            let (head, rest) = self.tab.split_at_mut(l * w);
            let (lrow, tail) = rest.split_at_mut(w);
            for (j, row) in head
                .chunks_exact_mut(w)
                .chain(tail.chunks_exact_mut(w))
                .enumerate()
            {
                let jj = if j < l { j } else { j + 1 };
                let t = row[e];
                if t == 0.0 {
                    continue;
                }
                self.rhs[jj] -= t * rl;
                for k in 0..m {
                    if k != e {
                        row[k] -= t * lrow[k];
                    }
                }
                row[e] = -t * inv;
            }
            let oe = obj[e];
            for k in 0..m {
                if k != e {
                    obj[k] -= oe * lrow[k];
                }
            }
            obj[e] = -oe * inv;
            std::mem::swap(&mut self.basic[l], &mut nonbasic[e]);
        }
        if unbounded {
            if let Some(x) = primal {
                x.clear();
            }
            return DualSolution {
                bound: f64::INFINITY,
                y: [0.0; MAX_ROWS],
            };
        }
        let mut y = [0.0f64; MAX_ROWS];
        for (j, &v) in self.basic.iter().enumerate() {
            if v < m {
                y[v] = self.rhs[j].max(0.0);
            }
        }
        if let Some(x) = primal {
            x.clear();
            x.resize(n, 0.0);
            for k in 0..m {
                if nonbasic[k] >= m {
                    x[nonbasic[k] - m] = (-obj[k]).max(0.0);
                }
            }
        }
        // Scale into exact feasibility against the original columns.
        let mut s = 1.0f64;
        for (c, g) in cols {
            let gy: f64 = (0..m).map(|k| g[k] * y[k]).sum();
            if gy > *c {
                s = s.min(c / gy);
            }
        }
        for v in y.iter_mut().take(m) {
            *v *= s;
        }
        let bound = (0..m).map(|k| b[k] * y[k]).sum();
        DualSolution { bound, y }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(c: f64, g: &[f64]) -> (f64, [f64; MAX_ROWS]) {
        let mut a = [0.0; MAX_ROWS];
        a[..g.len()].copy_from_slice(g);
        (c, a)
    }

    #[test]
    fn dual_should_equal_the_covering_optimum() {
        // min x1 + x2 s.t. x1 + 0.25 x2 ≥ 1, 0.25 x1 + x2 ≥ 1 → x1 = x2 = 0.8, cost 1.6.
        let mut lp = Lp::default();
        let mut b = [0.0; MAX_ROWS];
        b[0] = 1.0;
        b[1] = 1.0;
        let cols = vec![
            col(1.0, &[1.0, 0.25]),
            col(1.0, &[0.25, 1.0]),
            col(3.0, &[1.0, 1.0]),
        ];
        let mut x = Vec::new();
        let s = lp.solve_dual(2, &b, &cols, Some(&mut x));
        assert!((s.bound - 1.6).abs() < 1e-9, "{s:?}");
        assert!(
            (x[0] - 0.8).abs() < 1e-9 && (x[1] - 0.8).abs() < 1e-9 && x[2].abs() < 1e-9,
            "{x:?}"
        );
    }

    #[test]
    fn count_row_should_raise_the_bound() {
        // Cover 10 with at most 2 items: the cheap small item (1 per 1) cannot do it alone.
        // Rows: coverage (b = 1, a = size/10), count (b = −2, a = −1).
        let mut lp = Lp::default();
        let mut b = [0.0; MAX_ROWS];
        b[0] = 1.0;
        b[1] = -2.0;
        let cols = vec![col(1.0, &[0.1, -1.0]), col(8.0, &[0.5, -1.0])];
        let s = lp.solve_dual(2, &b, &cols, None);
        // LP: x_big = 2 → cost 16 (x_small·0.1 + x_big·0.5 ≥ 1, x_small + x_big ≤ 2):
        // x_big = (1 − 0.1·x_small)/0.5, count x_small + 2 − 0.2 x_small ≤ 2 → x_small = 0.
        assert!((s.bound - 16.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn infeasible_cover_should_give_an_infinite_bound() {
        let mut lp = Lp::default();
        let mut b = [0.0; MAX_ROWS];
        b[0] = 1.0;
        b[1] = 1.0;
        let cols = vec![col(1.0, &[1.0, 0.0])];
        assert!(lp.solve_dual(2, &b, &cols, None).bound.is_infinite());
    }
}
