//! The behaviour every [`Store`] shows, as one function that panics on the first difference.
//! Run against SQLite in unit tests and against a real PostgreSQL in `tests/`.

use super::{
    AuditEvent, Calibration, CloneRecord, Decision, ForecastRecord, Intent, Sample, Store,
};

fn decision(w: &str, ts: i64, desired: u32) -> Decision {
    Decision {
        workload: w.into(),
        ts,
        mode: "act".into(),
        observed: 1.0,
        predicted: 2.0,
        current: 1,
        desired,
        action: "hold".into(),
        cost_per_hour: 0.5,
        explanation: format!("because {ts}"),
    }
}

/// Runs the suite on an empty store.
///
/// # Panics
/// On the first behaviour that differs from the contract of [`Store`].
pub async fn run(s: &dyn Store) {
    // workloads: upsert, list, delete
    s.put_workload("web", "{\"v\":1}", 1).await.unwrap();
    s.put_workload("web", "{\"v\":2}", 2).await.unwrap();
    s.put_workload("api", "{}", 2).await.unwrap();
    assert_eq!(
        s.workloads().await.unwrap(),
        vec![
            ("api".into(), "{}".into()),
            ("web".into(), "{\"v\":2}".into())
        ]
    );

    // samples: idempotent on (workload, ts), the last of a key written twice at once stands,
    // ordered
    let xs: Vec<Sample> = (0..5)
        .map(|i| Sample {
            ts: 100 + i * 60,
            value: i as f64,
        })
        .collect();
    s.put_samples("web", &xs).await.unwrap();
    s.put_samples("web", &xs[3..]).await.unwrap();
    s.put_samples(
        "web",
        &[
            Sample {
                ts: 100,
                value: 8.0,
            },
            Sample {
                ts: 100,
                value: 9.0,
            },
        ],
    )
    .await
    .unwrap();
    let got = s.samples("web", 0).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].value, 9.0);
    assert_eq!(s.samples("web", 220).await.unwrap().len(), 3);
    assert!(s.samples("api", 0).await.unwrap().is_empty());
    assert_eq!(s.last_sample_at("web").await.unwrap(), Some(340));
    assert_eq!(s.last_sample_at("api").await.unwrap(), None);

    // models
    assert_eq!(s.model("web").await.unwrap(), None);
    s.put_model("web", "m1", 1).await.unwrap();
    s.put_model("web", "m2", 2).await.unwrap();
    assert_eq!(s.model("web").await.unwrap().as_deref(), Some("m2"));

    // forecasts
    let f = ForecastRecord {
        workload: "web".into(),
        ts: 10,
        target: 610,
        p50: 1.0,
        upper: 2.0,
        quantile: 0.95,
        model: "m".into(),
    };
    s.put_forecasts(&[f.clone(), f.clone()]).await.unwrap();
    assert_eq!(s.forecasts("web", 0).await.unwrap(), vec![f]);

    // shadow pool and budgets
    assert_eq!(s.shadow("web").await.unwrap(), 0);
    s.put_shadow("web", 3, 1).await.unwrap();
    assert_eq!(s.shadow("web").await.unwrap(), 3);
    // loop state: replaced on its key, kinds apart
    assert_eq!(s.loop_state("web", "shadow").await.unwrap(), None);
    s.put_loop_state("web", "shadow", "[1]", 1).await.unwrap();
    s.put_loop_state("web", "shadow", "[2]", 2).await.unwrap();
    s.put_loop_state("web", "remediation", "{}", 2)
        .await
        .unwrap();
    assert_eq!(
        s.loop_state("web", "shadow").await.unwrap().as_deref(),
        Some("[2]")
    );
    assert_eq!(
        s.loop_state("web", "remediation").await.unwrap().as_deref(),
        Some("{}")
    );
    assert_eq!(s.loop_state("api", "shadow").await.unwrap(), None);
    // a swap writes only over what its writer last read
    let held = |w: &'static str| async move { s.loop_state(w, "held").await.unwrap() };
    assert!(s
        .swap_loop_state("web", "held", None, "a", 3)
        .await
        .unwrap());
    assert!(!s
        .swap_loop_state("web", "held", None, "b", 3)
        .await
        .unwrap());
    assert!(!s
        .swap_loop_state("web", "held", Some("b"), "c", 3)
        .await
        .unwrap());
    assert_eq!(held("web").await.as_deref(), Some("a"));
    assert!(s
        .swap_loop_state("web", "held", Some("a"), "c", 4)
        .await
        .unwrap());
    assert_eq!(held("web").await.as_deref(), Some("c"));
    assert!(!s
        .swap_loop_state("api", "held", Some("c"), "x", 4)
        .await
        .unwrap());
    assert_eq!(held("api").await, None);
    assert_eq!(s.budget("web").await.unwrap(), None);
    s.put_budget("web", 4.5).await.unwrap();
    assert_eq!(s.budget("web").await.unwrap(), Some(4.5));
    assert_eq!(
        s.budgets().await.unwrap(),
        std::collections::HashMap::from([("web".to_string(), 4.5)])
    );
    assert_eq!(
        s.loop_states("shadow").await.unwrap(),
        vec![("web".to_string(), "[2]".to_string())]
    );

    // refit calibrations: replaced by workload, written alone or with a tick
    let cal = |w: &str, widen: f64, last: Option<f64>| Calibration {
        workload: w.into(),
        refit_at: 100,
        model: "snaive".into(),
        widen,
        hits: "1101".into(),
        last_upper: last,
        judged_until: 400,
    };
    assert_eq!(s.calibration("web").await.unwrap(), None);
    s.put_calibrations(&[cal("web", 1.5, None)]).await.unwrap();
    s.record_tick(
        &[],
        &[],
        &[],
        &[cal("web", 2.0, Some(3.5)), cal("api", 0.5, None)],
    )
    .await
    .unwrap();
    assert_eq!(
        s.calibration("web").await.unwrap(),
        Some(cal("web", 2.0, Some(3.5)))
    );
    assert_eq!(
        s.calibration("api").await.unwrap(),
        Some(cal("api", 0.5, None))
    );

    // fleet state: replaced on its kind, with its time
    assert_eq!(s.fleet_state("conformance-fleet").await.unwrap(), None);
    s.put_fleet_state("conformance-fleet", "{\"k\":1}", 5)
        .await
        .unwrap();
    s.put_fleet_state("conformance-fleet", "{\"k\":2}", 6)
        .await
        .unwrap();
    assert_eq!(
        s.fleet_state("conformance-fleet").await.unwrap(),
        Some(("{\"k\":2}".to_string(), 6))
    );

    // decisions: newest first, idempotent on (workload, ts)
    s.put_decisions(&[
        decision("web", 1, 1),
        decision("web", 2, 2),
        decision("api", 2, 5),
    ])
    .await
    .unwrap();
    s.put_decisions(&[decision("web", 2, 3)]).await.unwrap();
    let d = s.decisions(Some("web"), 10).await.unwrap();
    assert_eq!(
        d.iter().map(|x| (x.ts, x.desired)).collect::<Vec<_>>(),
        vec![(2, 3), (1, 1)]
    );
    assert_eq!(d[0].explanation, "because 2");
    assert_eq!(s.decisions(None, 2).await.unwrap().len(), 2);

    // a tick: samples, forecasts and decisions of several workloads at once; a key written twice
    // in one tick keeps its last value, and rows written before are replaced
    let sample = |ts: i64, value: f64| Sample { ts, value };
    let fc = |w: &str, ts: i64, p50: f64| ForecastRecord {
        workload: w.into(),
        ts,
        target: ts + 600,
        p50,
        upper: p50 + 1.0,
        quantile: 0.9,
        model: "tick".into(),
    };
    s.record_tick(
        &[
            ("tick-a".into(), sample(1000, 1.0)),
            ("tick-b".into(), sample(1000, 2.0)),
            ("tick-a".into(), sample(1000, 3.0)),
            ("tick-a".into(), sample(1060, 4.0)),
        ],
        &[
            fc("tick-a", 1000, 1.0),
            fc("tick-a", 1000, 5.0),
            fc("tick-b", 1000, 2.0),
        ],
        &[
            decision("tick-a", 1000, 7),
            decision("tick-a", 1000, 8),
            decision("web", 1, 9),
        ],
        &[],
    )
    .await
    .unwrap();
    let values = |xs: Vec<Sample>| xs.iter().map(|x| (x.ts, x.value)).collect::<Vec<_>>();
    assert_eq!(
        values(s.samples("tick-a", 0).await.unwrap()),
        vec![(1000, 3.0), (1060, 4.0)]
    );
    assert_eq!(
        values(s.samples("tick-b", 0).await.unwrap()),
        vec![(1000, 2.0)]
    );
    assert_eq!(
        s.forecasts("tick-a", 0).await.unwrap(),
        vec![fc("tick-a", 1000, 5.0)]
    );
    assert_eq!(
        s.forecasts("tick-b", 0).await.unwrap(),
        vec![fc("tick-b", 1000, 2.0)]
    );
    assert_eq!(
        s.decisions(Some("tick-a"), 10).await.unwrap(),
        vec![decision("tick-a", 1000, 8)]
    );
    let d = s.decisions(Some("web"), 10).await.unwrap();
    assert_eq!(
        d.iter().map(|x| (x.ts, x.desired)).collect::<Vec<_>>(),
        vec![(2, 3), (1, 9)]
    );

    // intents: pending until closed
    let mut i = Intent {
        token: "t1".into(),
        workload: "web".into(),
        ts: 5,
        kind: "launch".into(),
        count: 2,
        state: "pending".into(),
    };
    s.put_intent(&i).await.unwrap();
    s.put_intent(&i).await.unwrap();
    assert_eq!(s.pending_intents("web").await.unwrap(), vec![i.clone()]);
    i.state = "done".into();
    s.put_intent(&i).await.unwrap();
    assert!(s.pending_intents("web").await.unwrap().is_empty());

    // clones
    let c = CloneRecord {
        name: "staging".into(),
        source: "web".into(),
        spec: "{}".into(),
    };
    s.put_clone(&c).await.unwrap();
    assert_eq!(s.clones().await.unwrap(), vec![c]);
    assert!(s.delete_clone("staging").await.unwrap());
    assert!(!s.delete_clone("staging").await.unwrap());

    // audit
    let e = AuditEvent {
        ts: 7,
        workload: "web".into(),
        action: "alert".into(),
        detail: "spike".into(),
    };
    s.audit(&e).await.unwrap();
    s.audit(&e).await.unwrap();
    assert_eq!(s.audit_log("web", u32::MAX).await.unwrap(), vec![e.clone()]);
    // The newest `limit` events, oldest first (two events in one tick ordered by action).
    let later: Vec<AuditEvent> = [(8, "isolate"), (9, "alert"), (9, "release")]
        .into_iter()
        .map(|(ts, action)| AuditEvent {
            ts,
            workload: "web".into(),
            action: action.into(),
            detail: "d".into(),
        })
        .collect();
    for l in &later {
        s.audit(l).await.unwrap();
    }
    assert_eq!(s.audit_log("web", 2).await.unwrap(), later[1..].to_vec());
    assert_eq!(s.audit_log("web", 4).await.unwrap()[0], e);
    assert!(s.audit_log("api", 4).await.unwrap().is_empty());

    // leases: one holder at a time, renewable, taken over after expiry
    assert!(s.acquire_lease("web", "a", 100, 30).await.unwrap());
    assert!(!s.acquire_lease("web", "b", 110, 30).await.unwrap());
    assert!(s.acquire_lease("web", "a", 120, 30).await.unwrap());
    assert!(!s.acquire_lease("web", "b", 149, 30).await.unwrap());
    assert!(s.acquire_lease("web", "b", 150, 30).await.unwrap());
    assert!(!s.acquire_lease("web", "a", 151, 30).await.unwrap());
    assert_eq!(
        s.acquire_leases(&["web", "api"], "a", 160, 30)
            .await
            .unwrap(),
        vec![false, true]
    );
    assert_eq!(
        s.acquire_leases(&["web", "api"], "b", 170, 30)
            .await
            .unwrap(),
        vec![true, false]
    );
    // a name given twice gets the same answer twice; none asked, none answered
    assert_eq!(
        s.acquire_leases(&["api", "web", "api"], "b", 180, 30)
            .await
            .unwrap(),
        vec![false, true, false]
    );
    assert!(s
        .acquire_leases(&[], "b", 180, 30)
        .await
        .unwrap()
        .is_empty());

    // prune: one workload's samples, forecasts, decisions and settled intents before a time;
    // its pending intents, its audit log and other workloads' rows stay
    for ts in [10, 20, 30] {
        s.put_samples("old", &[Sample { ts, value: 1.0 }])
            .await
            .unwrap();
    }
    s.put_samples("young", &[Sample { ts: 10, value: 1.0 }])
        .await
        .unwrap();
    let forecast = |ts| ForecastRecord {
        workload: "old".into(),
        ts,
        target: ts + 600,
        p50: 1.0,
        upper: 2.0,
        quantile: 0.95,
        model: "m".into(),
    };
    s.put_forecasts(&[forecast(10), forecast(30)])
        .await
        .unwrap();
    s.put_decisions(&[decision("old", 10, 1), decision("old", 30, 2)])
        .await
        .unwrap();
    let intent = |token: &str, ts, state: &str| Intent {
        token: token.into(),
        workload: "old".into(),
        ts,
        kind: "launch".into(),
        count: 1,
        state: state.into(),
    };
    for i in [
        intent("old-done", 10, "done"),
        intent("old-pending", 10, "pending"),
        intent("new-done", 30, "done"),
    ] {
        s.put_intent(&i).await.unwrap();
    }
    let e = AuditEvent {
        ts: 10,
        workload: "old".into(),
        action: "alert".into(),
        detail: "spike".into(),
    };
    s.audit(&e).await.unwrap();
    assert_eq!(s.prune("old", 25).await.unwrap(), 5);
    assert_eq!(
        s.samples("old", 0).await.unwrap(),
        vec![Sample { ts: 30, value: 1.0 }]
    );
    assert_eq!(s.forecasts("old", 0).await.unwrap(), vec![forecast(30)]);
    assert_eq!(
        s.decisions(Some("old"), 10).await.unwrap(),
        vec![decision("old", 30, 2)]
    );
    assert_eq!(
        s.pending_intents("old").await.unwrap(),
        vec![intent("old-pending", 10, "pending")]
    );
    assert_eq!(s.audit_log("old", u32::MAX).await.unwrap(), vec![e]);
    assert_eq!(s.samples("young", 0).await.unwrap().len(), 1);
    assert_eq!(s.prune("old", 25).await.unwrap(), 0);

    // delete cascades to state
    assert!(s.delete_workload("web").await.unwrap());
    assert!(!s.delete_workload("web").await.unwrap());
    assert!(s.samples("web", 0).await.unwrap().is_empty());
    assert_eq!(s.model("web").await.unwrap(), None);
    assert_eq!(s.calibration("web").await.unwrap(), None);
    assert!(s.forecasts("web", 0).await.unwrap().is_empty());
    assert_eq!(s.shadow("web").await.unwrap(), 0);
    assert_eq!(s.budget("web").await.unwrap(), None);
    assert_eq!(s.loop_state("web", "shadow").await.unwrap(), None);
    assert!(!s.workloads().await.unwrap().iter().any(|(n, _)| n == "web"));
    assert!(!s.has_workload("web").await.unwrap());
    assert!(s.has_workload("api").await.unwrap());
    assert_eq!(
        s.calibration("api").await.unwrap().map(|c| c.widen),
        Some(0.5)
    );
}
