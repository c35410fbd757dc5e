//! The conformance suite through the public API, as an adapter's test calls it: against the sim
//! behind the full layer stack, and against a sim persisted to JSON between "invocations" (what
//! the Terraform provider does between runs).

use std::sync::Arc;
use std::time::Duration;

use predictive_clouds::clock::{ManualClock, ManualSleep};
use predictive_clouds::conformance::{run_all, run_some, ConformanceConfig, Scenario};
use predictive_clouds::fake::{FakeCloud, FaultConfig};
use predictive_clouds::layer::metrics::MetricsRegistry;
use predictive_clouds::layer::Stack;
use predictive_clouds::sim::{GroupSpec, SimCloud, SimConfig};
use predictive_clouds::{CloudProvider, DynProvider, GroupId, Operation};

fn config(clock: &ManualClock) -> ConformanceConfig {
    ConformanceConfig::new(
        "web",
        "m6i.large",
        "c6i.large",
        Arc::new(ManualSleep::new(clock.clone())),
    )
    .with_run_id("it")
}

#[tokio::test]
async fn full_layer_stack_over_a_faulty_sim_should_pass_the_suite() {
    let (sim, clock) = SimCloud::with_manual_clock(SimConfig::default());
    sim.create_group(GroupSpec::new("web", "m6i.large", 0, 3))
        .unwrap();
    let faulty = FakeCloud::wrap(Arc::new(sim.clone()));
    faulty.set_faults(FaultConfig::uniform(0.2, 7));
    let registry = MetricsRegistry::default();
    let stack = Stack {
        clock: Arc::new(clock.clone()),
        sleep: Arc::new(ManualSleep::new(clock.clone())),
        ..Stack::production(registry.clone(), 7)
    };
    let provider: DynProvider = stack.apply(Arc::new(faulty.clone()));
    let report = run_all(provider.as_ref(), &config(&clock)).await;
    report.assert_passed();
    // Every attempt was counted, the injected faults among them.
    let throttled: u64 = Operation::ALL
        .iter()
        .map(|op| registry.count(*op, "throttled"))
        .sum();
    assert!(throttled > 0);
    assert_eq!(
        registry.snapshot().values().map(|s| s.count).sum::<u64>() as usize,
        faulty.calls().len()
    );
    assert_eq!(sim.launches(), report.expected_creations);
}

#[tokio::test]
async fn sim_state_should_carry_over_between_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim-cloud.json");
    let clock = ManualClock::at_unix(1_767_225_600);

    // First invocation: create the group, scale it, save.
    {
        let sim =
            SimCloud::load_or_new(&path, SimConfig::default(), Arc::new(clock.clone())).unwrap();
        sim.create_group(GroupSpec::new("web", "m6i.large", 0, 3))
            .unwrap();
        sim.scale_group(&GroupId::new("web"), 2).await.unwrap();
        sim.save(&path).unwrap();
    }
    clock.advance(Duration::from_secs(120));

    // Second invocation: the group and its members are still there, and have booted.
    let sim = SimCloud::load_or_new(&path, SimConfig::default(), Arc::new(clock.clone())).unwrap();
    let g = sim.describe_group(&GroupId::new("web")).await.unwrap();
    assert_eq!(
        (
            g.desired,
            g.count_in(predictive_clouds::InstanceState::Running)
        ),
        (2, 2)
    );
    let report = run_some(
        &sim,
        &config(&clock),
        &[Scenario::ScaleUpDown, Scenario::IdempotentLaunch],
    )
    .await;
    report.assert_passed();
    sim.save(&path).unwrap();
    let again = SimCloud::load(&path, Arc::new(clock)).unwrap();
    assert_eq!(again.snapshot(), sim.snapshot());
}
