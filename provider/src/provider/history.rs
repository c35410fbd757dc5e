//! Workload history from the configured source:
//! - a file or directory: trace files read by `predictive-traces` (canonical `timestamp,value`
//!   CSV or Bitbrains, optionally gzipped), one series per workload found by its file stem;
//! - Prometheus: the HTTP `query_range` API over a lookback window at an hourly step.
//!
//! (The controller's recorded usage is the third source; see [`super::controller`] and
//! [`super::sizing::controller_series`].)

use predictive_engine::series::{Aggregation, Series};
use predictive_traces::{Entry, Metric};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Step of the series the provider forecasts (seconds).
pub const STEP: i64 = 3600;

/// Errors of reading history.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No file for the workload.
    #[error("no history file for workload {workload:?} under {}", .root.display())]
    WorkloadNotFound {
        /// The workload asked for.
        workload: String,
        /// Where it was looked for.
        root: PathBuf,
    },
    /// A trace file could not be read or parsed (the cause names the file and line).
    #[error("could not read the history file")]
    ReadFailed(#[source] predictive_traces::Error),
    /// Prometheus could not be reached.
    #[error("cannot query prometheus at {url}")]
    PrometheusUnreachable {
        /// The base URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// Prometheus answered with an error.
    #[error("prometheus at {url} answered {status}: {message}")]
    PrometheusFailed {
        /// The base URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Prometheus's error text.
        message: String,
    },
    /// Prometheus's answer is not the documented `query_range` JSON.
    #[error("prometheus at {url}: unexpected answer: {reason}")]
    PrometheusBadAnswer {
        /// The base URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The query selects no data or several series.
    #[error("prometheus query {query:?} returned {series} series over the lookback (expected exactly one; aggregate it with sum(...))")]
    PrometheusSeriesCount {
        /// The query sent.
        query: String,
        /// How many series came back.
        series: usize,
    },
}

/// Finds the file of `workload` (file stem) under `root` (a file is taken as it is, a
/// directory is searched recursively).
///
/// # Errors
/// [`Error::WorkloadNotFound`] when there is none; [`Error::ReadFailed`] for unreadable paths.
pub fn find(root: &Path, workload: &str) -> Result<Entry, Error> {
    let entries = predictive_traces::discover(&[root]).map_err(Error::ReadFailed)?;
    if root.is_file() {
        return entries.into_iter().next().ok_or(Error::WorkloadNotFound {
            workload: workload.into(),
            root: root.to_path_buf(),
        });
    }
    entries
        .into_iter()
        .find(|e| e.id.rsplit('/').next() == Some(workload))
        .ok_or_else(|| Error::WorkloadNotFound {
            workload: workload.into(),
            root: root.to_path_buf(),
        })
}

/// Reads a workload's CPU usage from its trace file(s), hourly (mean).
///
/// # Errors
/// See [`find`]; [`Error::ReadFailed`] naming the file and line of bad content.
pub fn read_file(root: &Path, workload: &str) -> Result<Series, Error> {
    let entry = find(root, workload)?;
    predictive_traces::load(&entry, Metric::Cpu, STEP, Aggregation::Mean)
        .map(|(s, _)| s)
        .map_err(Error::ReadFailed)
}

/// The Prometheus query of a workload: `{workload}` in the template replaced by its name.
pub fn prometheus_query(template: &str, workload: &str) -> String {
    template.replace("{workload}", workload)
}

/// Reads `query` from Prometheus over `[end - lookback, end]` at an hourly step.
///
/// # Errors
/// [`Error::PrometheusUnreachable`], [`Error::PrometheusFailed`],
/// [`Error::PrometheusBadAnswer`], [`Error::PrometheusSeriesCount`].
pub async fn read_prometheus(
    url: &str,
    query: &str,
    end: i64,
    lookback_secs: i64,
) -> Result<Series, Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|source| Error::PrometheusUnreachable {
            url: url.into(),
            source,
        })?;
    let start = end - lookback_secs;
    let resp = client
        .get(format!("{url}/api/v1/query_range"))
        .query(&[
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", STEP.to_string()),
        ])
        .send()
        .await
        .map_err(|source| Error::PrometheusUnreachable {
            url: url.into(),
            source,
        })?;
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .map_err(|source| Error::PrometheusUnreachable {
            url: url.into(),
            source,
        })?;
    let samples = parse_query_range(&body).map_err(|(reason, message)| match message {
        Some(message) => Error::PrometheusFailed {
            url: url.into(),
            status,
            message,
        },
        None => Error::PrometheusBadAnswer {
            url: url.into(),
            reason,
        },
    })?;
    let n = samples.len();
    let mut it = samples.into_iter();
    match (it.next(), n) {
        (Some(s), 1) if !s.is_empty() => Series::from_samples(s, STEP, Aggregation::Mean)
            .map(|(s, _)| s)
            .map_err(|e| Error::PrometheusBadAnswer {
                url: url.into(),
                reason: format!("the samples do not form a series: {e}"),
            }),
        _ => Err(Error::PrometheusSeriesCount {
            query: query.into(),
            series: n,
        }),
    }
}

/// Why a `query_range` answer was not understood: (what is wrong, Prometheus's own error text
/// if it sent one).
pub type QueryRangeError = (String, Option<String>);

/// Parses a `query_range` answer (`{"status":"success","data":{"resultType":"matrix","result":
/// [{"metric":{..},"values":[[ts,"v"],..]}]}}`) into one sample list per series (non-finite
/// values dropped). Errors are `(what is wrong, Prometheus's own error text if it sent one)`.
pub fn parse_query_range(body: &str) -> Result<Vec<Vec<(i64, f64)>>, QueryRangeError> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| (format!("not JSON ({e})"), None))?;
    if v["status"] != "success" {
        let msg = v["error"].as_str().unwrap_or("no error text").to_string();
        return Err((msg.clone(), Some(msg)));
    }
    if v["data"]["resultType"] != "matrix" {
        return Err((
            format!(
                "resultType is {} (expected \"matrix\")",
                v["data"]["resultType"]
            ),
            None,
        ));
    }
    let result = v["data"]["result"]
        .as_array()
        .ok_or(("data.result is not an array".to_string(), None))?;
    let mut out = Vec::new();
    for (i, s) in result.iter().enumerate() {
        let values = s["values"]
            .as_array()
            .ok_or((format!("data.result[{i}].values is not an array"), None))?;
        let mut pts = Vec::with_capacity(values.len());
        for (j, p) in values.iter().enumerate() {
            let bad = || {
                (
                    format!("data.result[{i}].values[{j}] is not [time, \"value\"]"),
                    None,
                )
            };
            let t = p[0].as_f64().ok_or_else(bad)?;
            let x: f64 = p[1].as_str().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
            if x.is_finite() {
                pts.push((t.round() as i64, x));
            }
        }
        out.push(pts);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_answer_should_parse_and_drop_non_finite_values() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"job":"web"},"values":[[1700000000,"2.5"],[1700003600.0,"NaN"],[1700007200,"3"]]}]}}"#;
        assert_eq!(
            parse_query_range(body).unwrap(),
            vec![vec![(1_700_000_000, 2.5), (1_700_007_200, 3.0)]]
        );
    }

    #[test]
    fn errors_should_say_what_is_wrong() {
        let cases = [
            (
                r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#,
                "parse error at char 4",
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                "resultType",
            ),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[1,2]]}]}}"#,
                "values[0]",
            ),
            ("<html>", "not JSON"),
        ];
        for (body, want) in cases {
            let (what, _) = parse_query_range(body).unwrap_err();
            assert!(what.contains(want), "{body}: {what}");
        }
    }

    #[test]
    fn the_query_template_should_name_the_workload() {
        assert_eq!(
            prometheus_query("sum(cpu{app=\"{workload}\"})", "web"),
            "sum(cpu{app=\"web\"})"
        );
    }

    #[test]
    fn a_workload_should_be_found_by_its_file_stem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(
            dir.path().join("a/web.csv"),
            "timestamp,value\n2014-02-14 14:00:00,2.5\n2014-02-14 15:00:00,3\n",
        )
        .unwrap();
        let s = read_file(dir.path(), "web").unwrap();
        assert_eq!(s.values(), &[2.5, 3.0]);
        assert!(matches!(
            read_file(dir.path(), "db"),
            Err(Error::WorkloadNotFound { .. })
        ));
        std::fs::write(dir.path().join("a/db.csv"), "timestamp,value\n1,2\n2,x\n").unwrap();
        let e = read_file(dir.path(), "db").unwrap_err();
        let chain = crate::framework::diag::error_chain(&e);
        assert!(chain.contains("db.csv:3"), "{chain}");
    }
}
