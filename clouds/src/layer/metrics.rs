//! Call counts and latency per provider, operation and outcome, kept in a shared in-memory
//! registry that the controller renders on `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::error::Result;
use crate::layer::{decorate, Around};
use crate::port::CloudProvider;
use crate::types::Operation;

/// Key of one series: provider name, operation, outcome (`ok` or an error kind label).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// Provider name.
    pub provider: String,
    /// Operation.
    pub operation: Operation,
    /// `ok` or an [`ErrorKind`](crate::ErrorKind) label.
    pub outcome: &'static str,
}

/// Totals of one series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SeriesStats {
    /// Calls.
    pub count: u64,
    /// Sum of latencies.
    pub total_latency: Duration,
}

/// A shared registry of call metrics. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MetricsRegistry {
    series: Arc<Mutex<BTreeMap<SeriesKey, SeriesStats>>>,
}

impl MetricsRegistry {
    fn record(&self, key: SeriesKey, latency: Duration) {
        let mut m = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = m.entry(key).or_default();
        s.count += 1;
        s.total_latency += latency;
    }

    /// A copy of every series.
    pub fn snapshot(&self) -> BTreeMap<SeriesKey, SeriesStats> {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Calls of `operation` with `outcome`, summed over providers.
    pub fn count(&self, operation: Operation, outcome: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(k, _)| k.operation == operation && k.outcome == outcome)
            .map(|(_, s)| s.count)
            .sum()
    }

    /// The registry in Prometheus text exposition format: `predictive_cloud_calls_total` and
    /// `predictive_cloud_call_seconds_sum`, labelled by provider, operation and outcome.
    pub fn render_prometheus(&self) -> String {
        let snap = self.snapshot();
        let mut out = String::new();
        out.push_str("# HELP predictive_cloud_calls_total Cloud API calls by outcome.\n");
        out.push_str("# TYPE predictive_cloud_calls_total counter\n");
        for (k, s) in &snap {
            let _ = writeln!(
                out,
                "predictive_cloud_calls_total{{provider=\"{}\",operation=\"{}\",outcome=\"{}\"}} {}",
                k.provider,
                k.operation.as_str(),
                k.outcome,
                s.count
            );
        }
        out.push_str(
            "# HELP predictive_cloud_call_seconds_sum Total latency of cloud API calls.\n",
        );
        out.push_str("# TYPE predictive_cloud_call_seconds_sum counter\n");
        for (k, s) in &snap {
            let _ = writeln!(
                out,
                "predictive_cloud_call_seconds_sum{{provider=\"{}\",operation=\"{}\",outcome=\"{}\"}} {}",
                k.provider,
                k.operation.as_str(),
                k.outcome,
                s.total_latency.as_secs_f64()
            );
        }
        out
    }
}

/// Records every call of the inner provider into a [`MetricsRegistry`].
#[derive(Debug)]
pub struct Metrics<P> {
    inner: P,
    registry: MetricsRegistry,
    clock: Arc<dyn Clock>,
}

impl<P> Metrics<P> {
    /// Wraps `inner`, recording into `registry`, measuring latency with `clock`.
    pub fn new(inner: P, registry: MetricsRegistry, clock: Arc<dyn Clock>) -> Self {
        Metrics {
            inner,
            registry,
            clock,
        }
    }
}

impl<P: CloudProvider> Around for Metrics<P> {
    async fn around<'a, T, F, Fut>(&'a self, op: Operation, call: F) -> Result<T>
    where
        T: Send + 'a,
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<T>> + Send + 'a,
    {
        {
            let start = self.clock.now();
            let out = call().await;
            let latency = self.clock.now().duration_since(start).unwrap_or_default();
            let outcome = match &out {
                Ok(_) => "ok",
                Err(e) => e.kind().as_str(),
            };
            self.registry.record(
                SeriesKey {
                    provider: self.inner.name().to_owned(),
                    operation: op,
                    outcome,
                },
                latency,
            );
            out
        }
    }
}

decorate!(Metrics);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::fake::{FakeCloud, FaultKind};
    use crate::GroupId;

    #[tokio::test]
    async fn metrics_should_count_outcomes_per_operation() {
        let fake = FakeCloud::new();
        fake.create_group("g", "m6i.large", 0, 3);
        fake.fail_next(Operation::DescribeGroup, FaultKind::Throttle);
        let reg = MetricsRegistry::default();
        let m = Metrics::new(&fake, reg.clone(), Arc::new(ManualClock::at_unix(0)));
        let g = GroupId::new("g");
        assert!(m.describe_group(&g).await.is_err());
        m.describe_group(&g).await.unwrap();
        m.describe_group(&GroupId::new("x")).await.unwrap_err();
        assert_eq!(reg.count(Operation::DescribeGroup, "ok"), 1);
        assert_eq!(reg.count(Operation::DescribeGroup, "throttled"), 1);
        assert_eq!(reg.count(Operation::DescribeGroup, "not_found"), 1);
        let text = reg.render_prometheus();
        assert!(text.contains(
            "predictive_cloud_calls_total{provider=\"fake\",operation=\"describe_group\",outcome=\"ok\"} 1"
        ), "{text}");
    }
}
