use std::sync::Arc;

use predictive_clouds::clock::ManualSleep;
use predictive_clouds::fake::{CallOutcome, FakeCloud, FaultConfig, FaultKind};
use predictive_clouds::sim::{SimBilling, SimCloud, SimOffer};
use predictive_clouds::DynProvider;
use predictive_engine::cost::{Catalog, Cloud};
use predictive_engine::policy::budget::{BudgetShare, UnitBudget};
use predictive_engine::policy::{AllocatorSettings, PolicyParams};
use predictive_engine::shadow::ValidShadow;
use predictive_engine::simulate::baselines::Baseline;

use std::time::Duration;

use super::*;

/// 10 days of a real RDS CPU trace at 5 minutes (NAB; see tests/data/allocate/SOURCE.md).
fn real_excerpt() -> Vec<f64> {
    include_str!("../../../tests/data/allocate/nab_rds_cpu_utilization_e47b3b_10d.csv")
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect()
}

/// A daily pattern with sharp recurring peaks: 20 at night, a 2-hour burst to 90 that starts
/// at a slightly different time each day, 40 the rest of the day; 288 steps a day.
fn recurring_peaks(days: usize) -> Vec<f64> {
    (0..days * 288)
        .map(|i| {
            let (d, m) = (i / 288, i % 288);
            let onset = 108 + (d * 7) % 5;
            if m >= onset && m < onset + 24 {
                90.0
            } else if (96..200).contains(&m) {
                40.0
            } else {
                20.0
            }
        })
        .collect()
}

/// 30-minute bursts to 80 every 2 hours over a base of 20: the bursts recur within the pool's
/// two-hour lifetime, so even a policy without a forecast finds stopped instances to start.
fn hourly_bursts(days: usize) -> Vec<f64> {
    (0..days * 288)
        .map(|i| if i % 24 < 6 { 80.0 } else { 20.0 })
        .collect()
}

fn workload(name: &str, usage: Vec<f64>, unit: f64) -> Workload {
    Workload {
        name: name.into(),
        usage,
        unit_capacity: unit,
        min_units: 1,
        max_units: 100,
    }
}

fn config(policy: PolicyKind, warmup: usize, shadow: bool) -> ReplayConfig {
    ReplayConfig {
        policy,
        params: PolicyParams::default().lead(3).check().unwrap(),
        settings: AllocatorSettings::for_step(300),
        step_seconds: 300,
        boot_steps: 3,
        warmup,
        offer: SimOffer::new("m5.large", 2, 8192, 0.096),
        billing: SimBilling::default(),
        shadow: shadow.then(ValidShadow::default),
        learn_half_life: false,
        shortfall_value: 0.05,
        pool_share: 0.5,
        seed: 7,
        spot: None,
        spot_interruptions_per_month: 0.0,
        pool_record: true,
    }
}

#[test]
fn port_replay_should_launch_nothing_twice_and_leave_no_orphans() {
    let w = [workload("rds", real_excerpt(), 2.0)];
    let r = replay(
        &w,
        &config(PolicyKind::Predictive, 3 * 288, true),
        None,
        &mut |_| {},
    )
    .unwrap();
    let lane = &r.lanes[0];
    assert!(
        lane.launches > 0 && lane.starts > 0 && lane.stops > 0,
        "{lane:?}"
    );
    assert_eq!(r.sim_launches, r.instances_requested);
    assert_eq!(r.instances_requested, lane.launches + lane.pool_launches);
    assert_eq!(r.orphans, 0);
    assert!(lane.shortfall_volume < 0.05, "{lane:?}");
    assert!(lane.slack > 0.0 && lane.slack < 0.6, "{lane:?}");
    // Billing adds up, and the pool costs something.
    assert!((lane.dollars - lane.active_dollars - lane.shadow_dollars).abs() < 1e-9);
    assert!(lane.shadow_dollars > 0.0);
    assert_eq!(lane.points.len(), w[0].usage.len());
}

#[test]
fn port_replay_should_survive_faults_without_duplicates_or_orphans() {
    let cfg = config(PolicyKind::Baseline(Baseline::Reactive), 288, true);
    let (sim, clock) = SimCloud::with_manual_clock(cfg.sim_config());
    let fake = FakeCloud::wrap(Arc::new(sim.clone()));
    fake.set_faults(FaultConfig::uniform(0.2, 11));
    let provider: DynProvider = Arc::new(fake.clone());
    let usage: Vec<f64> = recurring_peaks(3);
    let w = [workload("peaks", usage, 10.0)];
    let r = replay_on(provider, &sim, &clock, &w, &cfg, None, &mut |_| {}).unwrap();
    assert!(fake.injected() > 10, "{} faults", fake.injected());
    assert!(r.retries > 0);
    // Dropped launch answers were resent with the same token: the sim created each once.
    assert_eq!(r.sim_launches, r.instances_requested);
    assert_eq!(r.orphans, 0);
    let live = sim
        .all_instances()
        .iter()
        .filter(|i| i.state.is_live())
        .count();
    assert_eq!(live, 0);
}

#[test]
fn shadow_pool_should_reduce_shortfall_on_recurring_peaks() {
    let cases = [
        // Daily peaks: the predictive policy keeps what it stopped after one for the next.
        (PolicyKind::Predictive, recurring_peaks(10)),
        // Bursts every 2 hours: the reactive baseline starts the instances its last scale-down
        // stopped instead of booting new ones.
        (PolicyKind::Baseline(Baseline::Reactive), hourly_bursts(6)),
    ];
    for (policy, usage) in cases {
        let w = [workload("peaks", usage, 10.0)];
        let run = |pool| {
            let mut cfg = config(policy, 3 * 288, pool);
            // The peaks more than double the allocation: the cap lets the pool hold the whole
            // jump. For daily peaks, the instances stopped after one serve the next when the
            // half-life follows the peak spacing (learnt from the warm-up).
            cfg.pool_share = 3.0;
            cfg.learn_half_life = policy == PolicyKind::Predictive;
            replay(&w, &cfg, None, &mut |_| {}).unwrap().lanes.remove(0)
        };
        let (without, with) = (run(false), run(true));
        let name = policy.name();
        assert!(with.starts > 0, "{name}: {:?}", with.pool);
        assert!(
            with.shortfall_minutes < without.shortfall_minutes,
            "{name}: with {} without {}",
            with.shortfall_minutes,
            without.shortfall_minutes
        );
        assert!(
            with.mean_time_to_capacity_minutes < without.mean_time_to_capacity_minutes,
            "{name}: with {} without {}",
            with.mean_time_to_capacity_minutes,
            without.mean_time_to_capacity_minutes
        );
        assert!(with.shadow_dollars > 0.0 && without.shadow_dollars == 0.0);
    }
}

#[test]
fn shared_budget_should_never_be_exceeded_and_cut_low_priority_first() {
    let usage = recurring_peaks(4);
    let w = [
        workload("critical", usage.clone(), 10.0),
        workload("batch", usage, 10.0),
    ];
    let price = 0.096; // m5.large, us-east-1, in the embedded catalog
    let shares = vec![
        BudgetShare {
            name: "critical".into(),
            priority: 10.0,
            floor: 0.0,
            min_units: 1,
            max_units: 100,
        },
        BudgetShare {
            name: "batch".into(),
            priority: 1.0,
            floor: 0.25,
            min_units: 1,
            max_units: 100,
        },
    ];
    // Room for 14 instances: both peaks together want about 20.
    let b = UnitBudget::new(
        Catalog::embedded(),
        Cloud::Aws,
        "m5.large",
        "us-east-1",
        14.0 * price,
        shares,
    )
    .unwrap();
    assert!(
        (b.unit_price() - price).abs() < 1e-9,
        "catalog price {}",
        b.unit_price()
    );
    for shadow in [false, true] {
        let r = replay(
            &w,
            &config(PolicyKind::Predictive, 288, shadow),
            Some(&b),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(r.budget_exceeded_steps, 0, "{r:?}");
        assert!(
            r.peak_hourly_bill <= b.cap() + 1e-9,
            "{} > {}",
            r.peak_hourly_bill,
            b.cap()
        );
        let (crit, batch) = (&r.lanes[0], &r.lanes[1]);
        assert!(batch.budget_cut_steps > 0, "{batch:?}");
        assert!(crit.budget_cut_steps < batch.budget_cut_steps);
        assert!(crit.shortfall_minutes < batch.shortfall_minutes);
        assert_eq!(r.sim_launches, r.instances_requested);
        assert_eq!(r.orphans, 0);
    }
}

#[test]
fn every_policy_should_run_through_the_port() {
    let w = [workload("rds", real_excerpt()[..288 * 4].to_vec(), 2.0)];
    for p in PolicyKind::ALL {
        let r = replay(&w, &config(p, 288, true), None, &mut |_| {}).unwrap();
        let lane = &r.lanes[0];
        assert_eq!(lane.policy, p.name());
        assert_eq!(r.orphans, 0, "{}", p.name());
        assert!(lane.dollars > 0.0, "{}", p.name());
    }
    assert_eq!(
        PolicyKind::parse("window-max"),
        Some(PolicyKind::Baseline(Baseline::WindowMax))
    );
    assert_eq!(PolicyKind::parse("oracle"), None);
}

#[test]
fn port_replay_should_retry_a_throttled_launch_in_virtual_time_and_count_it() {
    let cfg = config(PolicyKind::Baseline(Baseline::Reactive), 0, false);
    let w = [workload("peaks", recurring_peaks(2), 10.0)];
    let run = |latency: Option<Duration>| {
        let (sim, clock) = SimCloud::with_manual_clock(cfg.sim_config());
        let fake = FakeCloud::wrap(Arc::new(sim.clone()))
            .with_sleep(Arc::new(ManualSleep::new(clock.clone())));
        if let Some(d) = latency {
            // Every launch answer takes a (virtual) minute, and the first one is throttled.
            fake.set_latency(Operation::Launch, d);
            fake.fail_next(Operation::Launch, FaultKind::Throttle);
        }
        let provider: DynProvider = Arc::new(fake.clone());
        let r = replay_on(provider, &sim, &clock, &w, &cfg, None, &mut |_| {}).unwrap();
        (r, fake)
    };
    let (slow, fake) = run(Some(Duration::from_secs(60)));
    let launches = fake.calls_of(Operation::Launch);
    assert_eq!(
        launches[0].outcome,
        CallOutcome::Injected(FaultKind::Throttle)
    );
    // The same request (same target) went again and succeeded.
    assert_eq!(launches[1].target, launches[0].target);
    assert_eq!(launches[1].outcome, CallOutcome::Ok);
    assert_eq!(slow.failed_launch_attempts, 1, "{slow:?}");
    assert!(slow.retries >= 1);
    assert_eq!(slow.sim_launches, slow.instances_requested);
    assert_eq!(slow.orphans, 0);
    // Time to capacity (from the ledger, to the second) grows by the minute each launch waits.
    let (fast, _) = run(None);
    assert_eq!(fast.failed_launch_attempts, 0);
    let d =
        slow.lanes[0].mean_time_to_capacity_minutes - fast.lanes[0].mean_time_to_capacity_minutes;
    assert!((0.8..2.0).contains(&d), "time to capacity grew by {d} min");
}

#[test]
fn refused_launches_should_be_counted_and_the_bill_should_match_the_ledger() {
    // No warm-up: the lane's dollars are every dollar the sim billed its instances.
    let cfg = config(PolicyKind::Predictive, 0, true);
    let (sim, clock) = SimCloud::with_manual_clock(cfg.sim_config());
    // At most 6 active instances: the 90-unit peaks want 9.
    sim.set_capacity("sim-1a", "m5.large", Some(6));
    let provider: DynProvider = Arc::new(sim.clone());
    let w = [workload("peaks", recurring_peaks(3), 10.0)];
    let r = replay_on(provider, &sim, &clock, &w, &cfg, None, &mut |_| {}).unwrap();
    let lane = &r.lanes[0];
    assert!(lane.refused_launches > 0, "{lane:?}");
    assert!(lane.shortfall_minutes > 0.0);
    assert_eq!(r.orphans, 0);
    assert!(
        (lane.dollars - r.ledger_dollars).abs() < 1e-9,
        "{} vs {}",
        lane.dollars,
        r.ledger_dollars
    );
    assert!((lane.dollars - lane.active_dollars - lane.shadow_dollars).abs() < 1e-12);
    assert!(lane.shadow_dollars > 0.0);
    // A hibernated m5.large pays its 20 GiB root volume and 8 GiB RAM image at $0.08/GiB-month.
    assert!((lane.ready_hourly_price - 28.0 * 0.08 / 730.0).abs() < 1e-12);
}

#[test]
fn spot_units_should_be_launched_within_the_cap_and_interruptions_replaced() {
    let w = [workload("peaks", recurring_peaks(6), 10.0)];
    let split = |cap| {
        SpotSplit::new(
            Catalog::embedded(),
            Cloud::Aws,
            "m5.large",
            "us-east-1",
            cap,
            Default::default(),
        )
        .unwrap()
    };
    let run = |spot: Option<SpotSplit>, per_month: f64| {
        let mut cfg = config(PolicyKind::Predictive, 2 * 288, false);
        cfg.spot = spot;
        cfg.spot_interruptions_per_month = per_month;
        replay(&w, &cfg, None, &mut |_| {}).unwrap()
    };
    let on_demand = run(None, 0.0);
    // Spot within a half cap, with interruptions far above any real rate (one per running
    // instance every 3 days) so some happen within the replay.
    let spot = run(Some(split(0.5)), 10.0);
    let (a, b) = (&on_demand.lanes[0], &spot.lanes[0]);
    assert_eq!(a.spot_launches, 0);
    assert!(b.spot_launches > 0, "{b:?}");
    assert!(b.interruptions > 0, "{b:?}");
    // Every interruption was replaced by a launch: nothing duplicated, nothing leaked, and
    // the shortfall stays close to the on-demand run's.
    assert_eq!(spot.sim_launches, spot.instances_requested);
    assert_eq!(spot.orphans, 0);
    assert!(
        b.shortfall_minutes <= a.shortfall_minutes + 5.0 * b.interruptions as f64 * 15.0,
        "spot {} on-demand {}",
        b.shortfall_minutes,
        a.shortfall_minutes
    );
    // The bill is the sim's ledger: spot (35 % of the on-demand price in the sim) saves money.
    assert!(
        b.dollars < a.dollars,
        "spot {} on-demand {}",
        b.dollars,
        a.dollars
    );
    // The sim's ledger knows which were spot; never more than half of the active ones at a
    // decision (checked through the split itself).
    let mut sp = split(0.5);
    for n in 0..20 {
        assert!(sp.split(n).unwrap().spot <= n / 2);
    }
}

#[test]
fn pool_record_should_shrink_a_pool_that_does_not_pay() {
    // The real RDS excerpt: the forecast's tail asks for units above the allocation, launched
    // into the pool at a boot's price, and few are promoted while usage needs them. The record
    // sees the bill outgrow the avoided shortfall, discounts the stated value, and the pool
    // launches fewer units and costs less.
    let w = [workload("rds", real_excerpt(), 0.5)];
    let run = |record| {
        let mut cfg = config(PolicyKind::Predictive, 2 * 288, true);
        cfg.pool_record = record;
        cfg.shortfall_value = 0.02;
        replay(&w, &cfg, None, &mut |_| {}).unwrap()
    };
    let (without, with) = (run(false), run(true));
    let (a, b) = (&without.lanes[0], &with.lanes[0]);
    assert_eq!(a.pool_value_factor, 1.0);
    assert!(b.pool_value_factor < 1.0, "{b:?}");
    assert!(a.pool_launches > 0, "{a:?}");
    assert!(
        b.pool_launches < a.pool_launches,
        "{} vs {}",
        b.pool_launches,
        a.pool_launches
    );
    assert!(
        b.shadow_dollars < a.shadow_dollars,
        "with the record {} without {}",
        b.shadow_dollars,
        a.shadow_dollars
    );
    // Nothing it launched avoided shortfall here, so shrinking it loses none.
    assert!(
        b.shortfall_minutes <= a.shortfall_minutes,
        "{} vs {}",
        b.shortfall_minutes,
        a.shortfall_minutes
    );
    assert_eq!(with.sim_launches, with.instances_requested);
    assert_eq!(with.orphans, 0);
}
