//! `ets`: additive exponential smoothing with a daily season and, when the history holds at
//! least three weeks, a second (weekly) season (Taylor's double-seasonal Holt-Winters, without
//! trend: over one or two days a trend extrapolates noise more often than it helps).
//!
//! State: level `l`, daily season `s1[t mod m]`, weekly season `s2[t mod 7m]`. With the one-step
//! error `e = y - (l + s1 + s2)`: `l += α e`, `s1 += γ e`, `s2 += δ e`. The smoothing weights are
//! chosen on a small grid by the mean absolute error of multi-step forecasts (leads 1..horizon)
//! from origins in the last weeks of the history: that is the error the forecast is used for,
//! and absolute error keeps rare spikes from dragging the choice.

use super::{calibrate, Body, Ctx};

const ALPHAS: [f64; 4] = [0.03, 0.1, 0.25, 0.5];
const GAMMAS: [f64; 3] = [0.0, 0.1, 0.25];
const DELTAS: [f64; 2] = [0.0, 0.1];

/// Smoothing weights.
#[derive(Debug, Clone, Copy)]
struct Weights {
    alpha: f64,
    gamma: f64,
    delta: f64,
}

/// The filter state.
#[derive(Debug, Clone)]
struct State {
    level: f64,
    s1: Vec<f64>,
    s2: Vec<f64>,
}

impl State {
    /// Initial state from the first seasons of `y` (means by position in the season).
    fn init(y: &[f64], m: usize, w: usize) -> Self {
        let k = if y.len() >= 7 * m {
            7 * m
        } else {
            (y.len() / m).max(1) * m
        }
        .min(y.len());
        let level = y[..k].iter().sum::<f64>() / k as f64;
        let mut s1 = vec![0.0; m];
        let mut c1 = vec![0usize; m];
        for (t, v) in y[..k].iter().enumerate() {
            s1[t % m] += v - level;
            c1[t % m] += 1;
        }
        for (s, c) in s1.iter_mut().zip(&c1) {
            *s /= (*c).max(1) as f64;
        }
        let mut s2 = vec![0.0; w];
        if w > 1 {
            let k2 = (2 * w).min(y.len());
            let mut c2 = vec![0usize; w];
            for (t, v) in y[..k2].iter().enumerate() {
                s2[t % w] += v - level - s1[t % m];
                c2[t % w] += 1;
            }
            for (s, c) in s2.iter_mut().zip(&c2) {
                *s /= (*c).max(1) as f64;
            }
        }
        Self { level, s1, s2 }
    }

    fn predict(&self, t: usize) -> f64 {
        let w = self.s2.len();
        self.level + self.s1[t % self.s1.len()] + if w > 1 { self.s2[t % w] } else { 0.0 }
    }

    fn update(&mut self, t: usize, y: f64, wt: Weights) {
        let e = y - self.predict(t);
        let m = self.s1.len();
        let w = self.s2.len();
        self.level += wt.alpha * e;
        self.s1[t % m] += wt.gamma * e;
        if w > 1 {
            self.s2[t % w] += wt.delta * e;
        }
    }

    fn path(&self, origin: usize, out: &mut [f64]) {
        for (k, o) in out.iter_mut().enumerate() {
            *o = self.predict(origin + k);
        }
    }
}

/// Runs the filter over `y`, calling `at(origin, state)` before each origin in `origins`
/// (ascending) is consumed.
fn run(
    y: &[f64],
    m: usize,
    w: usize,
    wt: Weights,
    origins: &[usize],
    mut at: impl FnMut(usize, &State),
) {
    let mut st = State::init(y, m, w);
    let mut next = origins.iter().peekable();
    for (t, &v) in y.iter().enumerate() {
        while next.peek().is_some_and(|&&o| o == t) {
            at(t, &st);
            next.next();
        }
        st.update(t, v, wt);
    }
    for &o in next {
        if o == y.len() {
            at(o, &st);
        }
    }
}

pub(super) fn fit(ctx: &Ctx<'_>) -> Body {
    let y = ctx.y;
    let n = y.len();
    let m = if n > ctx.season { ctx.season.max(1) } else { 1 };
    let w = if n >= 21 * m && m > 1 { 7 * m } else { 1 };
    let h = ctx.horizon;
    // Selection origins: every quarter season over the last two weeks (at most), from 2 seasons in.
    let lo = (2 * m).max(n.saturating_sub(14 * m.max(24)));
    let stride = (m / 4).max(1).max((n.saturating_sub(lo)) / 60);
    let sel: Vec<usize> = (lo..n.saturating_sub(1)).step_by(stride).collect();
    let deltas: &[f64] = if w > 1 { &DELTAS } else { &DELTAS[..1] };
    let mut best = (
        f64::INFINITY,
        Weights {
            alpha: 0.1,
            gamma: 0.05,
            delta: 0.0,
        },
    );
    let mut buf = vec![0.0; h];
    if !sel.is_empty() {
        for &alpha in &ALPHAS {
            for &gamma in &GAMMAS {
                for &delta in deltas {
                    let wt = Weights {
                        alpha,
                        gamma,
                        delta,
                    };
                    let mut loss = 0.0;
                    let mut cnt = 0usize;
                    run(y, m, w, wt, &sel, |o, st| {
                        st.path(o, &mut buf);
                        for (k, p) in buf.iter().enumerate().take(n - o) {
                            loss += (y[o + k] - p).abs();
                            cnt += 1;
                        }
                    });
                    let loss = loss / cnt.max(1) as f64;
                    if loss < best.0 {
                        best = (loss, wt);
                    }
                }
            }
        }
    }
    let wt = best.1;
    // Calibration errors from the chosen weights; the states at every origin come from one pass.
    let origins = calibrate::origins(ctx, 2 * m);
    let mut states: Vec<State> = Vec::with_capacity(origins.len());
    let mut all = origins.clone();
    all.push(n);
    let mut point = vec![0.0; h];
    run(y, m, w, wt, &all, |o, st| {
        if o == n {
            st.path(o, &mut point);
        } else {
            states.push(st.clone());
        }
    });
    let residuals = calibrate::collect(ctx, &origins, |i, o, out| states[i].path(o, out));
    Body::Calibrated { point, residuals }
}
