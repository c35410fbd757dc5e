//! Plan-time sizing: history → forecast (engine) → quantile demand → cost-optimal allocation
//! (engine), optionally under a shared budget (engine). The provider only gathers inputs and maps
//! them; every number comes from `predictive_engine`.

use super::config::{ControllerSettings, HistorySource};
use super::{controller, history};
use predictive_engine::cost::{self, Catalog, Demand, QuantileDemand, Sizing, SizingParams};
use predictive_engine::forecast::{self, ForecastParams, ModelKind, PROVISIONING_LEVELS};
use predictive_engine::series::Series;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Errors of sizing, each naming the input it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The history could not be read.
    #[error("could not read the history of workload {0:?}")]
    HistoryFailed(String, #[source] history::Error),
    /// No history source is configured for a named workload.
    #[error("workload {0:?} needs a history source: set the provider's history block, or give an inline profile")]
    NoHistorySource(String),
    /// The controller could not give the workload's history.
    #[error("could not get the controller's history of workload {0:?}")]
    ControllerFailed(String, #[source] controller::Error),
    /// The controller has no recorded usage of the workload over the lookback.
    #[error("the controller has recorded no usage of workload {0:?} over the lookback (it records a sample at every tick)")]
    NoControllerHistory(String),
    /// The samples do not make a series.
    #[error("the usage history is not a usable series")]
    SeriesFailed(#[source] predictive_engine::series::Error),
    /// The forecast failed.
    #[error("forecasting the usage failed")]
    ForecastFailed(#[source] forecast::Error),
    /// The sizing failed.
    #[error("sizing failed")]
    SizingFailed(#[source] cost::Error),
}

/// Where usage comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Usage {
    /// A named workload in the history source.
    Workload(String),
    /// An inline profile: CPU (and optionally memory) samples at a fixed step.
    Inline {
        /// vCPU samples.
        cpu: Vec<f64>,
        /// Memory samples in GiB, if given.
        mem_gib: Option<Vec<f64>>,
        /// Seconds between samples.
        step_seconds: i64,
    },
}

/// Demand forecast for one resource: the peak over the horizon of each quantile.
#[derive(Debug, Clone, PartialEq)]
pub struct Peaks {
    /// The forecasting model chosen.
    pub model: String,
    /// `(level, peak over the horizon)`.
    pub levels: Vec<(f64, f64)>,
}

/// The forecast of a clone's demand.
#[derive(Debug, Clone, PartialEq)]
pub struct DemandForecast {
    /// Model used for CPU.
    pub model: String,
    /// `(level, demand)` per provisioning level.
    pub levels: Vec<(f64, Demand)>,
}

/// Caches forecasts within one provider process: many resources sizing the same workload share one
/// forecast (plans of many clones stay fast).
#[derive(Debug, Default)]
pub struct ForecastCache {
    map: Mutex<HashMap<String, Arc<Peaks>>>,
}

/// Usage history as a source gives it.
#[derive(Debug, Clone)]
pub enum History {
    /// Samples for the engine to forecast.
    Series {
        /// CPU usage (vCPU).
        cpu: Series,
        /// Memory usage (GiB), when known.
        mem: Option<Series>,
    },
}

/// Caches loaded history within one provider process: many resources of one workload read the
/// source once (one file read, one Prometheus query, one controller call per plan).
#[derive(Debug, Default)]
pub struct HistoryCache {
    map: tokio::sync::Mutex<HashMap<String, Arc<History>>>,
}

/// Where [`load`] finds history. `Debug` never prints the token.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// The provider's history source.
    pub history: &'a HistorySource,
    /// The controller's API settings, if configured.
    pub controller: Option<&'a ControllerSettings>,
    /// The controller token from the environment.
    pub env_token: Option<&'a str>,
    /// The catalog (instance sizes, to turn controller units into vCPU).
    pub catalog: &'a Catalog,
    /// Unix seconds now.
    pub now: i64,
}

impl std::fmt::Debug for Sources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("history", self.history)
            .field("controller", &self.controller)
            .field("env_token", &self.env_token.map(|_| "***"))
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Loads the usage history of `usage` (cached per source and workload).
///
/// # Errors
/// See [`Error`].
pub async fn load(
    cache: &HistoryCache,
    src: Sources<'_>,
    usage: &Usage,
) -> Result<Arc<History>, Error> {
    let name = match usage {
        Usage::Inline {
            cpu,
            mem_gib,
            step_seconds,
        } => {
            let cpu_s = Series::new(0, *step_seconds, cpu.clone()).map_err(Error::SeriesFailed)?;
            let mem_s = match mem_gib {
                Some(m) => {
                    Some(Series::new(0, *step_seconds, m.clone()).map_err(Error::SeriesFailed)?)
                }
                None => None,
            };
            return Ok(Arc::new(History::Series {
                cpu: cpu_s,
                mem: mem_s,
            }));
        }
        Usage::Workload(name) => name,
    };
    let key = name.clone();
    let mut map = cache.map.lock().await;
    if let Some(h) = map.get(&key) {
        return Ok(h.clone());
    }
    let hist_err = |e| Error::HistoryFailed(name.clone(), e);
    let h = match src.history {
        HistorySource::None => return Err(Error::NoHistorySource(name.clone())),
        HistorySource::File(root) => History::Series {
            cpu: history::read_file(root, name).map_err(hist_err)?,
            mem: None,
        },
        HistorySource::Prometheus {
            url,
            query,
            lookback_secs,
        } => {
            // The window ends at the last full hour, so plan and apply within an hour see the
            // same samples.
            let end = src.now - src.now.rem_euclid(history::STEP);
            let q = history::prometheus_query(query, name);
            History::Series {
                cpu: history::read_prometheus(url, &q, end, *lookback_secs)
                    .await
                    .map_err(hist_err)?,
                mem: None,
            }
        }
        HistorySource::Controller { url, lookback_secs } => {
            let token = src
                .controller
                .map(|c| c.token.as_str())
                .or(src.env_token)
                .unwrap_or_default();
            let client = controller::Client::connect(url, token)
                .await
                .map_err(|e| Error::ControllerFailed(name.clone(), e))?;
            // Like Prometheus: the window ends at the last full hour, hourly means.
            let end = src.now - src.now.rem_euclid(history::STEP);
            let h = client
                .history(name, end - lookback_secs, end, history::STEP)
                .await
                .map_err(|e| Error::ControllerFailed(name.clone(), e))?;
            History::Series {
                cpu: controller_series(&h, src.catalog)
                    .ok_or_else(|| Error::NoControllerHistory(name.clone()))?
                    .map_err(Error::SeriesFailed)?,
                mem: None,
            }
        }
    };
    let h = Arc::new(h);
    map.insert(key, h.clone());
    Ok(h)
}

/// The controller's recorded usage as hourly vCPU: its units are turned into instances by the
/// workload's `capacity_per_instance` and into vCPU by its `instance_type`'s size in the catalog
/// (taken as vCPU already when the spec has neither). `None` when there are no samples.
pub fn controller_series(
    h: &controller::ControllerHistory,
    catalog: &Catalog,
) -> Option<Result<Series, predictive_engine::series::Error>> {
    if h.samples.is_empty() {
        return None;
    }
    let spec: serde_json::Value = serde_json::from_str(&h.spec_json).unwrap_or_default();
    let per_instance = spec["capacity_per_instance"].as_f64().filter(|c| *c > 0.0);
    let vcpu = spec["instance_type"]
        .as_str()
        .and_then(|t| catalog.types().iter().find(|x| x.name == t))
        .map(|t| t.vcpu);
    let factor = match (per_instance, vcpu) {
        (Some(c), Some(v)) => v / c,
        _ => 1.0,
    };
    let samples: Vec<(i64, f64)> = h.samples.iter().map(|(t, v)| (*t, v * factor)).collect();
    Some(
        Series::from_samples(
            samples,
            history::STEP,
            predictive_engine::series::Aggregation::Mean,
        )
        .map(|(s, _)| s),
    )
}

/// Peaks of each provisioning quantile of the forecast of `series` over `horizon_hours`.
///
/// # Errors
/// [`Error::ForecastFailed`].
pub fn peaks(
    cache: &ForecastCache,
    key: &str,
    series: &Series,
    horizon_hours: f64,
) -> Result<Arc<Peaks>, Error> {
    let steps = ((horizon_hours * 3600.0) / series.step() as f64)
        .ceil()
        .max(1.0) as usize;
    let full_key = format!("{key}|{steps}|{}", fingerprint(series));
    if let Some(p) = cache
        .map
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&full_key)
    {
        return Ok(p.clone());
    }
    let params = ForecastParams::new(steps)
        .model(ModelKind::Auto)
        .check(series.step())
        .map_err(Error::ForecastFailed)?;
    let f = forecast::forecast(series, &params).map_err(Error::ForecastFailed)?;
    let levels = PROVISIONING_LEVELS
        .iter()
        .filter_map(|l| {
            f.quantile(*l)
                .map(|v| (*l, v.iter().copied().fold(0.0_f64, f64::max)))
        })
        .collect();
    let p = Arc::new(Peaks {
        model: f.model().name().to_string(),
        levels,
    });
    cache
        .map
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(full_key, p.clone());
    Ok(p)
}

fn fingerprint(s: &Series) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.start().hash(&mut h);
    s.step().hash(&mut h);
    for v in s.values() {
        v.to_bits().hash(&mut h);
    }
    h.finish()
}

/// The quantile demand of a clone: CPU peaks, memory peaks (forecast, or CPU × `mem_gib_per_cpu`),
/// constant GPUs.
pub fn demand_forecast(
    cpu: &Peaks,
    mem: Option<&Peaks>,
    mem_gib_per_cpu: f64,
    gpu: f64,
) -> DemandForecast {
    let levels = cpu
        .levels
        .iter()
        .map(|(l, c)| {
            let m = mem
                .and_then(|m| m.levels.iter().find(|(ml, _)| ml == l).map(|(_, v)| *v))
                .unwrap_or(c * mem_gib_per_cpu);
            (*l, Demand::new(*c, m).with_gpu(gpu))
        })
        .collect();
    DemandForecast {
        model: cpu.model.clone(),
        levels,
    }
}

/// Caches sizings within one provider process: clones with identical parameters (a module with
/// `count = N`) are solved once.
#[derive(Debug, Default)]
pub struct SizingCache {
    map: Mutex<HashMap<String, Arc<Sizing>>>,
}

/// Sizes the demand at `quantile`, grown by `safety_margin`, under `constraints`.
///
/// # Errors
/// [`Error::SizingFailed`] with the engine's reason (unknown region, nothing fits, ...).
pub fn size(
    cache: &SizingCache,
    catalog: &Catalog,
    demand: &DemandForecast,
    quantile: f64,
    safety_margin: f64,
    constraints: &SizingParams,
) -> Result<Arc<Sizing>, Error> {
    let params = sizing_params(demand, quantile, safety_margin, constraints);
    let key = serde_json::to_string(&params).ok();
    if let Some(k) = &key {
        if let Some(s) = cache.map.lock().unwrap_or_else(|p| p.into_inner()).get(k) {
            return Ok(s.clone());
        }
    }
    let valid = params.check(catalog).map_err(Error::SizingFailed)?;
    let s = Arc::new(cost::size(catalog, &valid).map_err(Error::SizingFailed)?);
    if let Some(k) = key {
        cache
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, s.clone());
    }
    Ok(s)
}

/// The engine's sizing parameters for a clone.
pub fn sizing_params(
    demand: &DemandForecast,
    quantile: f64,
    safety_margin: f64,
    constraints: &SizingParams,
) -> SizingParams {
    let mut params = constraints.clone();
    params.quantiles = Some(QuantileDemand {
        levels: demand
            .levels
            .iter()
            .map(|(l, d)| (*l, d.scaled(1.0 + safety_margin)))
            .collect(),
        provision_at: quantile,
    });
    params
}
