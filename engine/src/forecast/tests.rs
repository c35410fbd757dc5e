//! Tests of the forecasting models: invariants (proptest), calibration on synthetic series
//! with known noise, and the model-choice and cold-start rules.

use super::*;
use proptest::prelude::*;

/// A seeded normal generator (tests only; the engine itself takes no randomness here).
struct Normal(crate::noise::Mmix);

impl Normal {
    /// Uniform in `(0, 1)`: never 0, so the logarithm below stays finite.
    fn uniform(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn sample(&mut self) -> f64 {
        let (a, b) = (self.uniform(), self.uniform());
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
    }
}

/// Hourly series: daily sine around `level` plus N(0, sigma) noise.
fn synthetic(len: usize, level: f64, sigma: f64, seed: u64) -> Vec<f64> {
    let mut g = Normal(crate::noise::Mmix::new(seed));
    (0..len)
        .map(|t| {
            let day = (2.0 * std::f64::consts::PI * (t % 24) as f64 / 24.0).sin();
            level + 10.0 * day + sigma * g.sample()
        })
        .collect()
}

fn params(model: ModelKind, horizon: usize) -> ValidForecastParams {
    ForecastParams::new(horizon)
        .model(model)
        .check(3600)
        .unwrap()
}

#[test]
fn seasonal_naive_should_repeat_the_last_season() {
    let y: Vec<f64> = (0..72).map(|t| (t % 24) as f64 + 100.0).collect();
    let s = Series::new(0, 3600, y).unwrap();
    let f = forecast(&s, &params(ModelKind::SeasonalNaive, 30)).unwrap();
    let med = f.median().unwrap();
    for (t, v) in med.iter().enumerate() {
        assert!(
            (v - ((t % 24) as f64 + 100.0)).abs() < 1e-9,
            "step {t}: {v}"
        );
    }
    assert_eq!(f.start(), 72 * 3600);
    assert_eq!(f.model(), ModelKind::SeasonalNaive);
}

#[test]
fn every_model_should_cover_known_gaussian_noise_near_nominal() {
    // 60 days of history, then 40 independent test days; noise sd 2 around a daily sine.
    for kind in [
        ModelKind::SeasonalNaive,
        ModelKind::Ets,
        ModelKind::CalendarQr,
        ModelKind::Auto,
    ] {
        let mut inside80 = 0usize;
        let mut inside90 = 0usize;
        let mut total = 0usize;
        for seed in 0..40u64 {
            let y = synthetic(24 * 60 + 24, 50.0, 2.0, seed + 1);
            let s = Series::new(0, 3600, y[..24 * 60].to_vec()).unwrap();
            let f = forecast(&s, &params(kind, 24)).unwrap();
            let (q05, q10, q90, q95) = (
                f.quantile(0.05).unwrap(),
                f.quantile(0.1).unwrap(),
                f.quantile(0.9).unwrap(),
                f.quantile(0.95).unwrap(),
            );
            for (t, &v) in y[24 * 60..].iter().enumerate() {
                inside80 += usize::from(v >= q10[t] && v <= q90[t]);
                inside90 += usize::from(v >= q05[t] && v <= q95[t]);
                total += 1;
            }
        }
        let c80 = inside80 as f64 / total as f64;
        let c90 = inside90 as f64 / total as f64;
        assert!((0.74..=0.87).contains(&c80), "{kind}: coverage 80 = {c80}");
        assert!((0.85..=0.95).contains(&c90), "{kind}: coverage 90 = {c90}");
    }
}

#[test]
fn vpa_hist_should_report_the_decayed_percentiles() {
    // Old samples at 100, the last two days at 1: with a 24 h half-life the recent ones dominate.
    let mut y = vec![100.0; 24 * 5];
    y.extend(vec![1.0; 48]);
    let s = Series::new(0, 3600, y).unwrap();
    let f = forecast(&s, &params(ModelKind::VpaHist, 5)).unwrap();
    assert_eq!(f.median().unwrap(), &[1.0; 5]);
    assert_eq!(f.quantile(0.95).unwrap(), &[100.0; 5]);
}

#[test]
fn auto_should_prefer_the_model_that_tracks_a_weekly_pattern() {
    // Weekdays high, weekends low: seasonal naive is wrong every Monday and Saturday.
    let y: Vec<f64> = (0..24 * 7 * 6)
        .map(|t| {
            let dow = crate::series::day_of_week(1_372_636_800 + t as i64 * 3600);
            let base = if dow >= 5 { 10.0 } else { 80.0 };
            base + (t % 24) as f64
        })
        .collect();
    let s = Series::new(1_372_636_800, 3600, y).unwrap();
    let f = forecast(&s, &params(ModelKind::Auto, 48)).unwrap();
    assert_ne!(f.model(), ModelKind::SeasonalNaive);
    assert_ne!(f.model(), ModelKind::Auto);
}

#[test]
fn forecasts_of_usage_should_never_go_below_zero() {
    let y = synthetic(24 * 20, 3.0, 4.0, 9)
        .into_iter()
        .map(|v| v.max(0.0))
        .collect();
    let s = Series::new(0, 3600, y).unwrap();
    for kind in ModelKind::ALL {
        let f = forecast(&s, &params(kind, 48)).unwrap();
        assert!(f.values().iter().flatten().all(|&v| v >= 0.0), "{kind}");
    }
}

#[test]
fn errors_should_name_what_is_wrong() {
    assert_eq!(
        ForecastParams::new(0).check(60).unwrap_err(),
        Error::InvalidHorizon
    );
    assert_eq!(
        ForecastParams::new(3)
            .levels([0.5, 1.0])
            .check(60)
            .unwrap_err(),
        Error::InvalidLevel { level: 1.0 }
    );
    assert_eq!(
        ForecastParams::new(3).season(0).check(60).unwrap_err(),
        Error::InvalidSeason
    );
    let s = Series::new(0, 60, vec![1.0; 10]).unwrap();
    let p = ForecastParams::new(3).check(3600).unwrap();
    assert_eq!(
        p.fit(&s).unwrap_err(),
        Error::StepMismatch {
            expected: 3600,
            got: 60
        }
    );
    let p = ForecastParams::new(3).check(60).unwrap();
    let m = p.fit(&s).unwrap();
    assert_eq!(
        m.predict(4, p.levels()).unwrap_err(),
        Error::HorizonBeyondFit {
            asked: 4,
            fitted: 3
        }
    );
    assert_eq!(
        "gbm".parse::<ModelKind>().unwrap_err(),
        Error::UnknownModel { name: "gbm".into() }
    );
    assert_eq!(
        "calendar-qr".parse::<ModelKind>().unwrap(),
        ModelKind::CalendarQr
    );
}

#[test]
fn surprise_should_widen_only_when_the_intervals_were_broken() {
    let s = Series::new(0, 3600, synthetic(24 * 30, 50.0, 1.0, 3)).unwrap();
    let f = forecast(&s, &params(ModelKind::SeasonalNaive, 24)).unwrap();
    let calm = synthetic(24 * 31, 50.0, 1.0, 3)[24 * 30..].to_vec();
    let calm_s = Surprise::measure(&f, &calm);
    let wild: Vec<f64> = calm
        .iter()
        .enumerate()
        .map(|(i, v)| v + if i % 2 == 0 { 30.0 } else { -30.0 })
        .collect();
    let wild_s = Surprise::measure(&f, &wild);
    assert!(wild_s.is_surprised(), "{wild_s:?}");
    assert!(wild_s.factor > 5.0, "{wild_s:?}");
    assert!(calm_s.factor < wild_s.factor);
    let mut widened = f.clone();
    widened.widen(wild_s.factor, true);
    let w_lo = widened.quantile(0.05).unwrap();
    let w_hi = widened.quantile(0.99).unwrap();
    let covered = wild
        .iter()
        .enumerate()
        .filter(|(i, v)| **v >= w_lo[*i] && **v <= w_hi[*i])
        .count();
    assert!(covered as f64 / wild.len() as f64 >= 0.8, "{covered}");
}

#[test]
fn cold_start_should_borrow_the_shape_and_narrow_with_history() {
    let fleet: Vec<Series> = (0..6)
        .map(|i| {
            let y = synthetic(24 * 10, 40.0 + 10.0 * i as f64, 1.0, 100 + i);
            Series::new(0, 3600, y).unwrap()
        })
        .chain((0..6).map(|i| Series::new(0, 3600, vec![5.0 + i as f64; 240]).unwrap()))
        .collect();
    let clusters = cold::ProfileClusters::fit(&fleet, 24, 2, 7).unwrap();
    assert_eq!(clusters.centroids().len(), 2);
    let y = synthetic(24 * 3, 60.0, 1.0, 999);
    let p = params(ModelKind::Auto, 24);
    let mut widths = Vec::new();
    for n in [6usize, 20, 50] {
        let h = Series::new(0, 3600, y[..n].to_vec()).unwrap();
        let f = cold::forecast_cold(&h, cold::Prior::Cluster(&clusters), &p).unwrap();
        let med = f.median().unwrap();
        // The sine's peak at hour 6 and trough at hour 18 come from the cluster, scaled to ~60.
        let (peak, trough) = (med[(30 - n % 24) % 24], med[(42 - n % 24) % 24]);
        assert!(peak > trough + 10.0, "n={n}: {peak} vs {trough}");
        assert!((60.0..85.0).contains(&peak), "n={n}: {peak}");
        widths.push(f.quantile(0.95).unwrap()[0] - f.quantile(0.05).unwrap()[0]);
    }
    assert!(widths[0] > widths[1] && widths[1] > widths[2], "{widths:?}");
    let src = &fleet[0];
    let h = Series::new(0, 3600, y[..5].to_vec()).unwrap();
    let f = cold::forecast_cold(&h, cold::Prior::Source(src), &p).unwrap();
    assert!(f.median().unwrap().iter().all(|v| (40.0..85.0).contains(v)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn quantiles_should_be_ordered_finite_and_never_panic(
        y in proptest::collection::vec(-1e6f64..1e6, 1..150),
        horizon in 1usize..30,
        season in 1usize..30,
        model in 0usize..5,
    ) {
        let s = Series::new(1_000_000, 300, y).unwrap();
        let p = ForecastParams::new(horizon).season(season).model(ModelKind::ALL[model]).check(300).unwrap();
        let f = forecast(&s, &p).unwrap();
        prop_assert_eq!(f.horizon(), horizon);
        for t in 0..horizon {
            let col: Vec<f64> = f.values().iter().map(|r| r[t]).collect();
            prop_assert!(col.iter().all(|v| v.is_finite()));
            prop_assert!(col.windows(2).all(|w| w[0] <= w[1]), "{:?}", col);
        }
        if s.is_non_negative() {
            prop_assert!(f.values().iter().flatten().all(|&v| v >= 0.0));
        }
    }

    #[test]
    fn extreme_finite_values_should_not_panic(
        y in proptest::collection::vec(proptest::num::f64::NORMAL, 1..80),
        model in 0usize..5,
    ) {
        let s = Series::new(0, 3600, y).unwrap();
        let p = ForecastParams::new(12).season(6).model(ModelKind::ALL[model]).check(3600).unwrap();
        // Huge values may overflow into a `ForecastDiverged` error, but never a panic.
        match forecast(&s, &p) {
            Ok(f) => prop_assert!(f.values().iter().flatten().all(|v| v.is_finite())),
            Err(e) => prop_assert!(matches!(e, Error::ForecastDiverged { .. }), "{e:?}"),
        }
    }
}

#[test]
fn a_season_far_longer_than_the_history_should_not_panic_or_allocate_it() {
    let s = Series::new(0, 3600, synthetic(100, 5.0, 1.0, 4)).unwrap();
    for kind in ModelKind::ALL {
        let p = ForecastParams::new(5)
            .season(usize::MAX / 2)
            .model(kind)
            .check(3600)
            .unwrap();
        let f = forecast(&s, &p).unwrap();
        assert_eq!(f.horizon(), 5, "{kind}");
    }
}
