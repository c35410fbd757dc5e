//! Plan-time sizing: history → forecast (engine) → quantile demand → cost-optimal allocation
//! (engine), optionally under a shared budget (engine). The provider only gathers inputs and maps
//! them; every number comes from `predictive_engine`.

use super::config::HistorySource;
use super::history;
use predictive_engine::cost::{self, Catalog, Demand, QuantileDemand, Sizing, SizingParams};
use predictive_engine::forecast::{self, ForecastParams, ModelKind, PROVISIONING_LEVELS};
use predictive_engine::series::{Aggregation, Series};
use std::collections::HashMap;
use std::path::PathBuf;
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
    /// The configured source type is not available in this build.
    #[error(
        "the {0} history source is not available in this build; use a file or an inline profile"
    )]
    SourceUnavailable(&'static str),
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

/// Loads a series of usage at `step_seconds` (hourly for files).
///
/// # Errors
/// See [`Error`].
pub fn load_series(
    source: &HistorySource,
    usage: &Usage,
) -> Result<(Series, Option<Series>), Error> {
    match usage {
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
            Ok((cpu_s, mem_s))
        }
        Usage::Workload(name) => {
            let root: PathBuf = match source {
                HistorySource::File(p) => p.clone(),
                HistorySource::None => return Err(Error::NoHistorySource(name.clone())),
                HistorySource::Prometheus(_) => {
                    return Err(Error::SourceUnavailable("prometheus_url"))
                }
                HistorySource::Controller(_) => {
                    return Err(Error::SourceUnavailable("controller_url"))
                }
            };
            let path =
                history::find(&root, name).map_err(|e| Error::HistoryFailed(name.clone(), e))?;
            let samples =
                history::read_samples(&path).map_err(|e| Error::HistoryFailed(name.clone(), e))?;
            let (s, _) = Series::from_samples(samples, 3600, Aggregation::Mean)
                .map_err(Error::SeriesFailed)?;
            Ok((s, None))
        }
    }
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
