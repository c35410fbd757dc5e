//! Clone drift at plan time: how much earlier clones used relative to their source, learned by
//! the engine (`policy::clone::DriftModel`), applied to a new clone's source forecast, and
//! replaced by the clone's own usage as it grows.
//!
//! - **Earlier clones** are the clones registered in the state store and, with a `controller`
//!   block, with the controller (`ListClones`). Each is known by the features recorded when it
//!   was registered ([`Recorded`]: app type, user role, source allocation, creation time); records
//!   without them (registered before they were recorded, or by another tool) teach nothing.
//! - **Their usage** is what the history source holds under the clone's own name (a file whose
//!   stem is the name, the Prometheus query with `{workload}` = the name, or the controller's
//!   `GetHistory`), or else, with a `controller` block, the controller's `GetHistory` of the name
//!   since the clone was created. Hourly vCPU, kept from the hour the clone was created on.
//! - **Source allocation** ([`source_allocation`]) is one number, used alike when learning and
//!   when applying: the source's forecast CPU demand at the clone's `quantile` (the peak over the
//!   horizon, vCPU, before the safety margin), taken when the clone is first planned.
//! - **Applying** ([`apply`]): each quantile's demand is the source's × the drift ratio for the
//!   clone's features (age = hours since it was created, 0 before), blended towards the forecast
//!   of the clone's own usage with the engine's weight `n / (n + 288)` ([`own_weight`], `n` in
//!   5-minute samples, so one day of own history weighs as much as the prior).

use super::config::HistorySource;
use super::sizing::{self, DemandForecast, HistoryCache, Peaks, Sources, Usage};
use super::store::{self, Kind, Store};
use super::{controller, history};
use predictive_engine::cost::QuantileDemand;
use predictive_engine::policy::clone::{self as engine_clone, CloneHistory, CloneParams};
use predictive_engine::series::Series;
use std::sync::Arc;

/// Seconds of one sample in the engine's `prior_strength` (288 = one day of 5-minute samples).
const ENGINE_SAMPLE_SECS: i64 = 300;

/// Errors of gathering earlier clones; each names the clone or the place it is about. They do
/// not stop a plan: the clone concerned is left out of learning and the plan warns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A clone's spec registered with the controller is not readable JSON.
    #[error("the spec of clone {name:?} registered with the controller is not readable")]
    BadSpec {
        /// The clone.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A clone's feature in its spec has the wrong type.
    #[error("the spec of clone {name:?} registered with the controller: `{field}` must be {want}")]
    BadField {
        /// The clone.
        name: String,
        /// The field.
        field: &'static str,
        /// What it must be.
        want: &'static str,
    },
    /// A clone's record in the state store is not readable.
    #[error("the record of clone {name:?} in the state store is not readable")]
    BadRecord {
        /// The clone.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The state store could not be listed.
    #[error("could not list the clones in the state store")]
    StoreFailed(#[source] store::Error),
    /// The controller's clones could not be listed.
    #[error("could not list the clones registered with the controller")]
    ListFailed(#[source] controller::Error),
    /// A clone's usage could not be read.
    #[error("could not read the usage of clone {name:?}")]
    UsageFailed {
        /// The clone.
        name: String,
        /// Why.
        #[source]
        source: Box<sizing::Error>,
    },
}

/// The features a clone is registered with (in the state store and the controller's spec).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    /// Application type.
    pub app_type: String,
    /// Role of its users.
    pub user_role: String,
    /// The source's allocation when the clone was first planned ([`source_allocation`]).
    pub source_allocation: f64,
    /// Unix seconds when the clone was created.
    pub created_at: i64,
}

/// An earlier clone: its name, features and usage since it was created (hourly vCPU).
#[derive(Debug, Clone)]
pub struct Earlier {
    /// The clone's name.
    pub name: String,
    /// Its features.
    pub features: Recorded,
    /// Its usage since it was created, when any is recorded.
    pub usage: Option<Series>,
}

/// The earlier clones of one provider process, gathered once (plans of many clones read each
/// clone's usage once), with the problems met doing it.
#[derive(Debug, Default)]
pub struct Gathered {
    /// The clones with features, store's and controller's, each name once.
    pub clones: Vec<Earlier>,
    /// Clones left out, and why.
    pub problems: Vec<Error>,
}

/// Caches [`Gathered`] within one provider process.
#[derive(Debug, Default)]
pub struct Cache(tokio::sync::Mutex<Option<Arc<Gathered>>>);

/// The source allocation of a clone: the CPU of `demand` at `quantile` (levels interpolated as
/// the engine's sizing does), in vCPU. 0 when the demand has no levels.
pub fn source_allocation(demand: &DemandForecast, quantile: f64) -> f64 {
    QuantileDemand {
        levels: demand.levels.clone(),
        provision_at: quantile,
    }
    .resolve()
    .map_or(0.0, |d| d.cpu)
}

/// Reads the features in a controller spec: `Ok(None)` when any is missing.
///
/// # Errors
/// [`Error::BadSpec`] for unreadable JSON, [`Error::BadField`] for a feature of the wrong type.
pub fn features_from_spec(name: &str, spec: &str) -> Result<Option<Recorded>, Error> {
    if spec.trim().is_empty() {
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_str(spec).map_err(|source| Error::BadSpec {
        name: name.into(),
        source,
    })?;
    let bad = |field, want| Error::BadField {
        name: name.into(),
        field,
        want,
    };
    let text = |field| match &v[field] {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.clone())),
        _ => Err(bad(field, "a string")),
    };
    let (app_type, user_role) = (text("app_type")?, text("user_role")?);
    let source_allocation = match &v["source_allocation"] {
        serde_json::Value::Null => None,
        x => Some(
            x.as_f64()
                .filter(|a| a.is_finite() && *a >= 0.0)
                .ok_or_else(|| bad("source_allocation", "a number at least 0"))?,
        ),
    };
    let created_at = match &v["created_at"] {
        serde_json::Value::Null => None,
        x => Some(
            x.as_i64()
                .ok_or_else(|| bad("created_at", "a whole number of unix seconds"))?,
        ),
    };
    Ok(match (app_type, user_role, source_allocation, created_at) {
        (Some(app_type), Some(user_role), Some(source_allocation), Some(created_at)) => {
            Some(Recorded {
                app_type,
                user_role,
                source_allocation,
                created_at,
            })
        }
        _ => None,
    })
}

/// The clones to learn from, gathered once per process (see [`gather`]).
pub async fn cached(
    cache: &Cache,
    src: Sources<'_>,
    histories: &HistoryCache,
    store: &Store,
) -> Arc<Gathered> {
    let mut slot = cache.0.lock().await;
    if let Some(g) = &*slot {
        return g.clone();
    }
    let g = Arc::new(gather(src, histories, store).await);
    *slot = Some(g.clone());
    g
}

/// Gathers the registered clones with features (state store first, then the controller's list
/// for names the store does not hold) and each one's usage since it was created.
pub async fn gather(src: Sources<'_>, histories: &HistoryCache, store: &Store) -> Gathered {
    let mut out = Gathered::default();
    let mut found: Vec<(String, Recorded)> = Vec::new();
    match store.list(Kind::Clone) {
        Ok(rows) => {
            for (_, name, body) in rows {
                match serde_json::from_str::<StoredFeatures>(&body) {
                    Ok(r) => {
                        if let Some(f) = r.recorded() {
                            found.push((name, f));
                        }
                    }
                    Err(source) => out.problems.push(Error::BadRecord { name, source }),
                }
            }
        }
        Err(e) => out.problems.push(Error::StoreFailed(e)),
    }
    if let Some(c) = src.controller {
        let listed = match controller::Client::connect(&c.endpoint, &c.token).await {
            Ok(client) => client.clones().await,
            Err(e) => Err(e),
        };
        match listed {
            Ok(list) => {
                for (name, _source, spec) in list {
                    if found.iter().any(|(n, _)| *n == name) {
                        continue;
                    }
                    match features_from_spec(&name, &spec) {
                        Ok(Some(f)) => found.push((name, f)),
                        Ok(None) => {}
                        Err(e) => out.problems.push(e),
                    }
                }
            }
            Err(e) => out.problems.push(Error::ListFailed(e)),
        }
    }
    for (name, features) in found {
        match usage_of(src, histories, &name, features.created_at).await {
            Ok(usage) => out.clones.push(Earlier {
                name,
                features,
                usage,
            }),
            Err(source) => {
                out.problems.push(Error::UsageFailed {
                    name: name.clone(),
                    source: Box::new(source),
                });
                out.clones.push(Earlier {
                    name,
                    features,
                    usage: None,
                });
            }
        }
    }
    out
}

/// The features part of the provider's store record (`clone::Registration`); older records
/// lack them.
#[derive(serde::Deserialize)]
struct StoredFeatures {
    #[serde(default)]
    app_type: Option<String>,
    #[serde(default)]
    user_role: Option<String>,
    #[serde(default)]
    source_allocation: Option<f64>,
    #[serde(default)]
    created_at: Option<i64>,
}

impl StoredFeatures {
    fn recorded(self) -> Option<Recorded> {
        Some(Recorded {
            app_type: self.app_type?,
            user_role: self.user_role?,
            source_allocation: self.source_allocation?,
            created_at: self.created_at?,
        })
    }
}

/// Whether a history error only says there is no usage under that name.
fn is_missing(e: &sizing::Error) -> bool {
    match e {
        sizing::Error::NoHistorySource(_) | sizing::Error::NoControllerHistory(_) => true,
        sizing::Error::HistoryFailed(_, history::Error::WorkloadNotFound { .. }) => true,
        sizing::Error::HistoryFailed(
            _,
            history::Error::PrometheusSeriesCount { series: 0, .. },
        ) => true,
        sizing::Error::ControllerFailed(_, controller::Error::CallFailed { code, .. }) => {
            *code == tonic::Code::NotFound
        }
        _ => false,
    }
}

/// A clone's usage since `created_at` under its own name: from the history source when it
/// tells workloads apart by name, else from the controller's `GetHistory`. `None` when neither
/// has any.
///
/// # Errors
/// When a source fails other than by not knowing the name.
pub async fn usage_of(
    src: Sources<'_>,
    histories: &HistoryCache,
    name: &str,
    created_at: i64,
) -> Result<Option<Series>, sizing::Error> {
    // A single file, or a query without `{workload}`, gives the same series for every name.
    let by_name = match src.history {
        HistorySource::None => false,
        HistorySource::File(root) => !root.is_file(),
        HistorySource::Prometheus { query, .. } => query.contains("{workload}"),
        HistorySource::Controller { .. } => true,
    };
    if by_name {
        match sizing::load(histories, src, &Usage::Workload(name.to_string())).await {
            Ok(h) => {
                let sizing::History::Series { cpu, .. } = &*h;
                return Ok(since(cpu, created_at));
            }
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let Some(c) = src.controller else {
        return Ok(None);
    };
    if matches!(src.history, HistorySource::Controller { url, .. } if *url == c.endpoint) {
        return Ok(None);
    }
    let failed = |e| sizing::Error::ControllerFailed(name.to_string(), e);
    let client = controller::Client::connect(&c.endpoint, &c.token)
        .await
        .map_err(failed)?;
    let end = src.now - src.now.rem_euclid(history::STEP);
    let from = created_at - created_at.rem_euclid(history::STEP);
    if from >= end {
        return Ok(None);
    }
    let h = match client.history(name, from, end, history::STEP).await {
        Ok(h) => h,
        Err(controller::Error::CallFailed {
            code: tonic::Code::NotFound,
            ..
        }) => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    match sizing::controller_series(&h, src.catalog) {
        None => Ok(None),
        Some(s) => Ok(since(&s.map_err(sizing::Error::SeriesFailed)?, created_at)),
    }
}

/// The part of `s` from the step holding `created_at` on; `None` when nothing is left.
fn since(s: &Series, created_at: i64) -> Option<Series> {
    let first = s
        .values()
        .iter()
        .enumerate()
        .position(|(i, _)| s.start() + (i as i64 + 1) * s.step() > created_at)?;
    Series::new(
        s.start() + first as i64 * s.step(),
        s.step(),
        s.values()[first..].to_vec(),
    )
    .ok()
}

/// `(hours since created, usage)` of each finite sample of `s`.
fn observations(s: &Series, created_at: i64) -> Vec<(f64, f64)> {
    s.values()
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| {
            let ts = s.start() + i as i64 * s.step();
            (((ts - created_at) as f64 / 3600.0).max(0.0), *v)
        })
        .collect()
}

/// The engine's learning input: every earlier clone but `except` with usage.
pub fn histories(clones: &[Earlier], except: &str) -> Vec<CloneHistory> {
    clones
        .iter()
        .filter(|c| c.name != except)
        .filter_map(|c| {
            let u = c.usage.as_ref()?;
            Some(CloneHistory {
                app_type: c.features.app_type.clone(),
                user_role: c.features.user_role.clone(),
                source_allocation: c.features.source_allocation,
                observations: observations(u, c.features.created_at),
            })
        })
        .collect()
}

/// The latest `own_window` samples of a clone's own usage (the engine's window, counted in
/// 5-minute samples) and how many 5-minute samples they stand for.
pub fn own_window(own: &Series) -> (Series, f64) {
    let per = (own.step() / ENGINE_SAMPLE_SECS).max(1) as usize;
    let keep = CloneParams::default().own_window.div_ceil(per).max(1);
    let n = own.len();
    let s = if n > keep {
        Series::new(
            own.start() + (n - keep) as i64 * own.step(),
            own.step(),
            own.values()[n - keep..].to_vec(),
        )
        .unwrap_or_else(|_| own.clone())
    } else {
        own.clone()
    };
    let finite = s.values().iter().filter(|v| v.is_finite()).count();
    let samples = (finite * per).min(CloneParams::default().own_window) as f64;
    (s, samples)
}

/// Weight of `samples` 5-minute samples of own history against the engine's default prior.
pub fn own_weight(samples: f64) -> f64 {
    engine_clone::own_weight(samples, CloneParams::default().prior_strength)
}

/// What drift did to a clone's demand.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// The learned ratio of clone usage to source allocation (1: none).
    pub ratio: f64,
    /// Which level of the model answered: `size`, `group`, `app`, `all` or `none`.
    pub basis: &'static str,
    /// The source allocation the ratio is measured against (vCPU).
    pub source_allocation: f64,
    /// Hours since the clone was created (0 before).
    pub age_hours: f64,
    /// Earlier clones learned from.
    pub learned_from: usize,
    /// Hours of the clone's own usage that count.
    pub own_hours: usize,
    /// Weight of the clone's own usage forecast, in [0, 1].
    pub own_weight: f64,
}

impl Drift {
    /// No drift and no own history: the source's demand as it is.
    pub fn none(source_allocation: f64, age_hours: f64) -> Drift {
        Drift {
            ratio: 1.0,
            basis: "none",
            source_allocation,
            age_hours,
            learned_from: 0,
            own_hours: 0,
            own_weight: 0.0,
        }
    }

    /// Whether the demand differs from the source's.
    pub fn changes_demand(&self) -> bool {
        self.basis != "none" || self.own_weight > 0.0
    }

    /// One sentence for the sizing explanation.
    pub fn sentence(&self) -> String {
        let mut s = format!(
            "Clone drift: source allocation {} vCPU × {} ({}, {} earlier clones, {:.0} h old)",
            round3(self.source_allocation),
            round3(self.ratio),
            basis_text(self.basis),
            self.learned_from,
            self.age_hours
        );
        if self.own_weight > 0.0 {
            s.push_str(&format!(
                ", blended with the forecast of its own {} h of usage at weight {}",
                self.own_hours,
                round3(self.own_weight)
            ));
        }
        s.push('.');
        s
    }
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn basis_text(b: &str) -> &'static str {
    match b {
        "size" => "same app type, user role and source size",
        "group" => "same app type and user role",
        "app" => "same app type",
        "all" => "all clones",
        _ => "no earlier clones",
    }
}

/// The clone's demand: each level of `source` times `ratio`, blended with `own`'s level with
/// weight `w`. Memory keeps the source's memory per vCPU; GPUs and network stay the source's.
/// With ratio 1 and no own weight, `source` unchanged.
pub fn apply(source: &DemandForecast, ratio: f64, own: Option<&Peaks>, w: f64) -> DemandForecast {
    let own = own.filter(|_| w > 0.0);
    if ratio == 1.0 && own.is_none() {
        return source.clone();
    }
    let levels = source
        .levels
        .iter()
        .map(|(l, d)| {
            let prior = d.cpu * ratio;
            let cpu = match own.and_then(|o| o.levels.iter().find(|(ol, _)| ol == l)) {
                Some((_, o)) => (1.0 - w) * prior + w * o,
                None => prior,
            };
            let mut out = *d;
            out.cpu = cpu;
            out.mem_gib = if d.cpu > 0.0 {
                d.mem_gib * (cpu / d.cpu)
            } else {
                d.mem_gib * ratio
            };
            (*l, out)
        })
        .collect();
    DemandForecast {
        model: source.model.clone(),
        levels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use predictive_engine::cost::Demand;
    use predictive_engine::policy::clone::{CloneFeatures, DriftModel};

    fn hourly(start: i64, v: &[f64]) -> Series {
        Series::new(start, 3600, v.to_vec()).unwrap()
    }

    fn earlier(name: &str, role: &str, src: f64, created: i64, usage: &[f64]) -> Earlier {
        Earlier {
            name: name.into(),
            features: Recorded {
                app_type: "web".into(),
                user_role: role.into(),
                source_allocation: src,
                created_at: created,
            },
            usage: Some(hourly(created, usage)),
        }
    }

    fn demand(cpu: &[(f64, f64)]) -> DemandForecast {
        DemandForecast {
            model: "m".into(),
            levels: cpu
                .iter()
                .map(|(l, c)| (*l, Demand::new(*c, 4.0 * c).with_gpu(1.0)))
                .collect(),
        }
    }

    #[test]
    fn specs_should_give_features_or_say_which_clone_is_unreadable() {
        let ok = r#"{"app_type":"web","user_role":"qa","source_allocation":8.5,"created_at":1700000000}"#;
        assert_eq!(
            features_from_spec("a", ok).unwrap(),
            Some(Recorded {
                app_type: "web".into(),
                user_role: "qa".into(),
                source_allocation: 8.5,
                created_at: 1_700_000_000
            })
        );
        // Registered before the features were recorded: nothing to learn, no error.
        assert_eq!(
            features_from_spec("a", r#"{"id":"clone-a","app_type":"web"}"#).unwrap(),
            None
        );
        assert_eq!(features_from_spec("a", "").unwrap(), None);
        let cases = [
            ("{not json", "the spec of clone \"bad\" registered with the controller is not readable"),
            (
                r#"{"app_type":"web","user_role":"qa","source_allocation":"big","created_at":1}"#,
                "the spec of clone \"bad\" registered with the controller: `source_allocation` must be a number at least 0",
            ),
            (
                r#"{"app_type":"web","user_role":7,"source_allocation":1,"created_at":1}"#,
                "the spec of clone \"bad\" registered with the controller: `user_role` must be a string",
            ),
        ];
        for (spec, want) in cases {
            let e = features_from_spec("bad", spec).unwrap_err();
            assert_eq!(e.to_string(), want, "{spec}");
        }
    }

    #[test]
    fn old_store_records_should_stay_readable_and_teach_nothing() {
        let old = r#"{"state":"{}","sizing":{},"budget_id":null,"priority":1,"floor":0,"app_type":"web","cloud":"sim","generation":1}"#;
        let r: StoredFeatures = serde_json::from_str(old).unwrap();
        assert!(r.recorded().is_none());
    }

    #[test]
    fn usage_should_start_at_the_hour_the_clone_was_created() {
        let s = hourly(0, &[1.0, 2.0, 3.0, 4.0]);
        let cut = since(&s, 3600 + 1800).unwrap();
        assert_eq!((cut.start(), cut.values()), (3600, &[2.0, 3.0, 4.0][..]));
        assert!(since(&s, 4 * 3600).is_none());
        assert_eq!(
            observations(&cut, 3600 + 1800),
            vec![(0.0, 2.0), (0.5, 3.0), (1.5, 4.0)]
        );
    }

    #[test]
    fn earlier_clones_of_a_role_should_set_its_ratio_and_leave_others_alone() {
        let t = 1_700_000_000;
        let clones = vec![
            earlier("qa-1", "qa", 10.0, t, &[3.0; 48]),
            earlier("qa-2", "qa", 10.0, t, &[2.8; 48]),
            earlier("dev-1", "dev", 10.0, t, &[10.0; 48]),
            // The clone being planned: its own usage is not learned from.
            earlier("me", "qa", 10.0, t, &[9.0; 48]),
        ];
        let h = histories(&clones, "me");
        assert_eq!(h.len(), 3);
        let m = DriftModel::fit(&h);
        let f = |role: &str| CloneFeatures {
            age_hours: 0.0,
            app_type: "web".into(),
            user_role: role.into(),
            source_allocation: 40.0,
        };
        let (r, basis) = m.ratio(&f("qa"));
        assert!((r - 0.29).abs() < 1e-9 && basis == "group", "{r} {basis}");
        assert_eq!(m.ratio(&f("dev")), (1.0, "group"));
        let src = demand(&[(0.5, 10.0), (0.95, 20.0)]);
        let d = apply(&src, r, None, 0.0);
        assert!((d.levels[1].1.cpu - 0.29 * 20.0).abs() < 1e-9);
        assert!((d.levels[1].1.mem_gib - 0.29 * 80.0).abs() < 1e-9);
        assert_eq!(d.levels[1].1.gpu, 1.0);
    }

    #[test]
    fn no_drift_and_no_own_history_should_leave_the_source_demand_as_it_is() {
        let src = demand(&[(0.5, 10.0), (0.9, 13.0), (0.95, 20.0)]);
        assert_eq!(apply(&src, 1.0, None, 0.0), src);
        assert_eq!(source_allocation(&src, 0.95), 20.0);
        assert!((source_allocation(&src, 0.925) - 16.5).abs() < 1e-9);
        assert!(!Drift::none(20.0, 0.0).changes_demand());
    }

    #[test]
    fn own_history_should_weigh_more_as_it_grows() {
        let own = Peaks {
            model: "m".into(),
            levels: vec![(0.5, 2.0), (0.95, 4.0)],
        };
        let src = demand(&[(0.5, 10.0), (0.95, 20.0)]);
        let mut last = (0.0, f64::INFINITY);
        for hours in [1usize, 6, 24, 72, 168, 1000] {
            let (window, n) = own_window(&hourly(0, &vec![1.0; hours]));
            assert_eq!(window.len(), hours.min(168));
            let w = own_weight(n);
            let d = apply(&src, 0.5, Some(&own), w);
            let cpu = d.levels[1].1.cpu;
            assert!(w > last.0 || (hours > 168 && w == last.0), "{hours} h: {w}");
            assert!(
                cpu < last.1 || (hours > 168 && cpu == last.1),
                "{hours} h: {cpu}"
            );
            assert!((cpu - ((1.0 - w) * 10.0 + w * 4.0)).abs() < 1e-9);
            last = (w, cpu);
        }
        // One day of hourly samples is 288 five-minute samples: half the weight.
        assert_eq!(own_weight(own_window(&hourly(0, &[1.0; 24])).1), 0.5);
    }
}
