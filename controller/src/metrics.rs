//! The controller's own metrics, served at `/metrics` in the Prometheus text format.
//!
//! A small registry of labelled gauges and counters keyed by workload: forecast error, coverage,
//! slack, shortfall, shadow pool size, actions, cloud errors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// One metric family: name, help, type.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Metric name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
}

/// Absolute forecast error of the median at the last tick.
pub const FORECAST_ERROR: Family = Family {
    name: "predictive_forecast_abs_error",
    help: "Absolute error of the median forecast for the latest step, in resource units.",
    kind: "gauge",
};
/// Share of recent observations inside the planning quantile.
pub const COVERAGE: Family = Family {
    name: "predictive_forecast_coverage",
    help: "Share of recent observations at or below the planned quantile.",
    kind: "gauge",
};
/// Provisioned minus used, when positive.
pub const SLACK: Family = Family {
    name: "predictive_slack",
    help: "Capacity minus usage at the latest tick, when positive, in resource units.",
    kind: "gauge",
};
/// Used minus provisioned, when positive.
pub const SHORTFALL: Family = Family {
    name: "predictive_shortfall",
    help: "Usage minus capacity at the latest tick, when positive, in resource units.",
    kind: "gauge",
};
/// Ticks with a shortfall.
pub const SHORTFALL_TICKS: Family = Family {
    name: "predictive_shortfall_ticks_total",
    help: "Ticks whose usage exceeded capacity.",
    kind: "counter",
};
/// Shadow pool size.
pub const SHADOW_POOL: Family = Family {
    name: "predictive_shadow_pool_instances",
    help: "Instances held in the shadow pool.",
    kind: "gauge",
};
/// Desired instances.
pub const DESIRED: Family = Family {
    name: "predictive_desired_instances",
    help: "Instances the latest decision asked for.",
    kind: "gauge",
};
/// Scale actions applied.
pub const ACTIONS: Family = Family {
    name: "predictive_actions_total",
    help: "Scale actions applied to the cloud.",
    kind: "counter",
};
/// Cloud call failures.
pub const CLOUD_ERRORS: Family = Family {
    name: "predictive_cloud_errors_total",
    help: "Cloud calls that failed.",
    kind: "counter",
};
/// Metrics source failures.
pub const SOURCE_ERRORS: Family = Family {
    name: "predictive_metrics_source_errors_total",
    help: "Usage observations that failed.",
    kind: "counter",
};
/// Hourly cost of the desired instances.
pub const COST: Family = Family {
    name: "predictive_cost_per_hour_dollars",
    help: "Hourly cost of the desired instances in USD.",
    kind: "gauge",
};
/// Whether the conservative fallback policy is in force.
pub const FALLBACK: Family = Family {
    name: "predictive_fallback_active",
    help: "1 when the workload missed its accuracy objective and runs the conservative policy.",
    kind: "gauge",
};
/// Anomalies and remediations.
pub const ANOMALIES: Family = Family {
    name: "predictive_anomalies_total",
    help: "Usage anomalies detected.",
    kind: "counter",
};
/// Remediations decided, labelled by `action` (`dry-run` ones included, labelled `dry_run="true"`).
pub const REMEDIATIONS: Family = Family {
    name: "predictive_remediations_total",
    help: "Anomaly remediations decided, by action.",
    kind: "counter",
};
/// The latest anomaly score.
pub const ANOMALY_SCORE: Family = Family {
    name: "predictive_anomaly_score",
    help: "Anomaly score of the latest observation, in [0, 1]; at or above 0.5025 it is acted on.",
    kind: "gauge",
};
/// Whether a remediation holds or halts the workload.
pub const HELD: Family = Family {
    name: "predictive_remediation_held",
    help: "1 while an anomaly remediation holds the workload's allocation or halted it (until released).",
    kind: "gauge",
};
/// Hourly cost of shadow instances left running (stopped ones cost storage only).
pub const SHADOW_COST: Family = Family {
    name: "predictive_shadow_pool_cost_per_hour_dollars",
    help: "Hourly compute cost of shadow pool instances that could not be stopped, in USD.",
    kind: "gauge",
};
/// Shadow units promoted to serving.
pub const SHADOW_PROMOTIONS: Family = Family {
    name: "predictive_shadow_promotions_total",
    help: "Ready instances started to serve demand instead of booting new ones.",
    kind: "counter",
};
/// Shadow units launched ahead of a predicted peak.
pub const SHADOW_LAUNCHES: Family = Family {
    name: "predictive_shadow_launches_total",
    help: "Instances launched into the shadow pool ahead of predicted peaks.",
    kind: "counter",
};
/// Shadow units released by the decay rule.
pub const SHADOW_RELEASES: Family = Family {
    name: "predictive_shadow_releases_total",
    help: "Ready instances terminated by the decay rule.",
    kind: "counter",
};
/// Scheduled refits.
pub const REFITS: Family = Family {
    name: "predictive_refits_total",
    help: "Scheduled model refits (rolling-origin cross-validation), by chosen model.",
    kind: "counter",
};
/// Fits of the fleet's cold-start clusters.
pub const CLUSTER_FITS: Family = Family {
    name: "predictive_cluster_fits_total",
    help: "Fits of the cold-start clusters of daily usage profiles.",
    kind: "counter",
};
/// Reads of the registered clones from the store.
pub const CLONE_READS: Family = Family {
    name: "predictive_clone_reads_total",
    help: "Reads of the registered clones from the store (after a change, or hourly).",
    kind: "counter",
};
/// Completed ticks.
pub const TICKS: Family = Family {
    name: "predictive_ticks_total",
    help: "Completed loop ticks.",
    kind: "counter",
};

const ALL: [Family; 24] = [
    FORECAST_ERROR,
    COVERAGE,
    SLACK,
    SHORTFALL,
    SHORTFALL_TICKS,
    SHADOW_POOL,
    DESIRED,
    ACTIONS,
    CLOUD_ERRORS,
    SOURCE_ERRORS,
    COST,
    FALLBACK,
    ANOMALIES,
    REMEDIATIONS,
    ANOMALY_SCORE,
    HELD,
    SHADOW_COST,
    SHADOW_PROMOTIONS,
    SHADOW_LAUNCHES,
    SHADOW_RELEASES,
    REFITS,
    CLUSTER_FITS,
    CLONE_READS,
    TICKS,
];

/// Separates a workload from an extra label inside a registry key.
const SEP: char = '\u{1f}';

/// The values of one series key (a workload, or a workload and one more label), by family name.
/// A handful of families per key: a small vector is smaller and faster than a map, and setting
/// a value that exists allocates nothing (the loop sets about ten per workload per tick).
type Slots = Vec<(&'static str, f64)>;

/// The registry; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    values: Arc<Mutex<BTreeMap<String, Slots>>>,
}

fn slot<'a>(map: &'a mut BTreeMap<String, Slots>, f: Family, key: &str) -> &'a mut f64 {
    if !map.contains_key(key) {
        map.insert(key.to_string(), Vec::with_capacity(4));
    }
    let slots = map.get_mut(key).expect("inserted above");
    let i = match slots.iter().position(|(n, _)| *n == f.name) {
        Some(i) => i,
        None => {
            slots.push((f.name, 0.0));
            slots.len() - 1
        }
    };
    &mut slots[i].1
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slots>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a gauge for a workload (`""` for none).
    pub fn set(&self, f: Family, workload: &str, v: f64) {
        *slot(&mut self.lock(), f, workload) = v;
    }

    /// Adds to a counter for a workload.
    pub fn add(&self, f: Family, workload: &str, v: f64) {
        *slot(&mut self.lock(), f, workload) += v;
    }

    /// The current value.
    pub fn get(&self, f: Family, workload: &str) -> Option<f64> {
        Self::find(&self.lock(), f, workload)
    }

    fn find(map: &BTreeMap<String, Slots>, f: Family, key: &str) -> Option<f64> {
        map.get(key)?
            .iter()
            .find(|(n, _)| *n == f.name)
            .map(|(_, v)| *v)
    }

    /// Adds to a counter for a workload with one more label (`kind="leak"`, `action="isolate"`).
    pub fn add_labelled(&self, f: Family, workload: &str, label: (&str, &str), v: f64) {
        let key = format!("{workload}{SEP}{}={}", label.0, label.1);
        *slot(&mut self.lock(), f, &key) += v;
    }

    /// The current value of a series with one more label.
    pub fn get_labelled(&self, f: Family, workload: &str, label: (&str, &str)) -> Option<f64> {
        let key = format!("{workload}{SEP}{}={}", label.0, label.1);
        Self::find(&self.lock(), f, &key)
    }

    /// Forgets a workload's series (after it is deleted).
    pub fn forget(&self, workload: &str) {
        self.lock()
            .retain(|w, _| w.split(SEP).next() != Some(workload));
    }

    /// Renders every family in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let values = self.lock();
        let mut out = String::new();
        for f in ALL {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            for (w, v) in values.iter().filter_map(|(w, slots)| {
                slots
                    .iter()
                    .find(|(n, _)| *n == f.name)
                    .map(|(_, v)| (w, v))
            }) {
                let esc = |x: &str| {
                    x.replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n")
                };
                let mut parts = w.splitn(2, SEP);
                let workload = parts.next().unwrap_or_default();
                let extra = parts
                    .next()
                    .and_then(|l| l.split_once('='))
                    .map(|(k, v)| format!(",{k}=\"{}\"", esc(v)))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{}{{workload=\"{}\"{extra}}} {}",
                    f.name,
                    esc(workload),
                    fmt_value(*v)
                );
            }
        }
        out
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Serves `GET /metrics` on `listener` until the future is dropped.
///
/// # Errors
/// The IO error that stopped the server.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics) -> std::io::Result<()> {
    use axum::{routing::get, Router};
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move { ([("content-type", "text/plain; version=0.0.4")], m.render()) }
        }),
    );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text() {
        let m = Metrics::new();
        m.set(COVERAGE, "web", 0.9);
        m.add(ACTIONS, "web", 1.0);
        m.add(ACTIONS, "web", 2.0);
        m.set(SLACK, "we\"b", 1.5);
        let text = m.render();
        assert!(
            text.contains("# TYPE predictive_actions_total counter\npredictive_actions_total{workload=\"web\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("predictive_forecast_coverage{workload=\"web\"} 0.9\n"),
            "{text}"
        );
        assert!(
            text.contains("predictive_slack{workload=\"we\\\"b\"} 1.5"),
            "{text}"
        );
        m.add_labelled(ANOMALIES, "web", ("kind", "leak"), 1.0);
        assert!(
            m.render()
                .contains("predictive_anomalies_total{workload=\"web\",kind=\"leak\"} 1\n"),
            "{}",
            m.render()
        );
        assert_eq!(
            m.get_labelled(ANOMALIES, "web", ("kind", "leak")),
            Some(1.0)
        );
        m.forget("web");
        assert!(!m.render().contains("workload=\"web\""));
    }

    #[tokio::test]
    async fn metrics_endpoint_serves_the_registry() {
        let m = Metrics::new();
        m.set(DESIRED, "api", 4.0);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, m));
        let body = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains("predictive_desired_instances{workload=\"api\"} 4"),
            "{body}"
        );
        server.abort();
    }
}
