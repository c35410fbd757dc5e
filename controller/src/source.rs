//! Where usage comes from: trace replay, Prometheus `query_range`, and samples pushed through the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::store::Store;

/// Errors of observing usage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The trace file could not be read.
    #[error("cannot read trace {path}")]
    TraceReadFailed {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A line of the trace is malformed.
    #[error("{path}:{line}: {reason}")]
    TraceLineInvalid {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The trace holds no usable point.
    #[error("trace {path} holds no data")]
    TraceEmpty {
        /// The file.
        path: PathBuf,
    },
    /// Prometheus could not be reached or answered with an error.
    #[error("prometheus at {url} is unreachable or failed")]
    PrometheusUnreachable {
        /// The server.
        url: String,
        /// The HTTP error.
        #[source]
        source: reqwest::Error,
    },
    /// Prometheus answered, but not with a usable matrix.
    #[error("prometheus at {url} answered query `{query}` with {reason}")]
    PrometheusBadAnswer {
        /// The server.
        url: String,
        /// The query.
        query: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The request timed out.
    #[error("metrics source timed out after {0:?}")]
    TimedOut(Duration),
    /// No samples were pushed for the interval.
    #[error("no samples pushed between {from} and {to}")]
    NoPushedSamples {
        /// Start (exclusive).
        from: Timestamp,
        /// End (inclusive).
        to: Timestamp,
    },
    /// Reading pushed samples from the store failed.
    #[error("cannot read pushed samples")]
    StoreFailed(#[source] crate::store::Error),
    /// The source answered the tick, but not with the history of the ticks the loop did not
    /// observe: the next tick asks again.
    #[error("cannot read the history of the ticks not observed (asked again next tick)")]
    History(#[source] Box<Error>),
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A source of one workload's usage.
#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// The mean usage over `(to - step, to]`.
    ///
    /// # Errors
    /// [`Error`] saying which source failed and why; the loop reports it against the workload.
    async fn observe(&self, to: Timestamp, step: i64) -> Result<f64>;

    /// Whether [`Self::history`] can return anything (the loop skips reading its stored
    /// history for a source that keeps none).
    fn keeps_history(&self) -> bool {
        false
    }

    /// The values [`Self::observe`] would have returned at the ticks `from`, `from + step`, ...
    /// up to `to`, as far as the source still holds them: the loop fills with them the history
    /// it did not observe (before the workload was registered, or while no replica ran). A
    /// source that keeps no history has none (the default); ticks it holds no value for are
    /// left out.
    ///
    /// # Errors
    /// As [`Self::observe`].
    async fn history(
        &self,
        _from: Timestamp,
        _to: Timestamp,
        _step: i64,
    ) -> Result<Vec<(Timestamp, f64)>> {
        Ok(Vec::new())
    }
}

/// A trace replayed onto the clock.
///
/// Inside the trace's own time span the value at `t` is the trace's; outside it the trace repeats
/// (aligned to its step), so a week-long trace drives a daemon indefinitely.
#[derive(Debug, Clone)]
pub struct Replay {
    start: Timestamp,
    step: i64,
    values: Arc<Vec<f64>>,
}

impl Replay {
    /// Reads a NAB-style canonical CSV (`timestamp,value`; the timestamp is `YYYY-MM-DD HH:MM:SS`
    /// UTC or unix seconds), resampled by mean onto its most common step, gaps linearly filled.
    ///
    /// # Errors
    /// [`Error::TraceLineInvalid`] naming the file and line.
    pub fn from_csv(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::TraceReadFailed {
            path: path.into(),
            source,
        })?;
        Self::from_csv_text(&text, path)
    }

    /// As [`Replay::from_csv`], from the file's text; `path` names it in errors.
    ///
    /// # Errors
    /// [`Error::TraceLineInvalid`] naming the file and line.
    pub fn from_csv_text(text: &str, path: &Path) -> Result<Self> {
        let mut points: Vec<(Timestamp, f64)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("timestamp")) {
                continue;
            }
            let bad = |reason: String| Error::TraceLineInvalid {
                path: path.into(),
                line: i + 1,
                reason,
            };
            let (ts, v) = line
                .split_once(',')
                .ok_or_else(|| bad("expected `timestamp,value`".into()))?;
            let ts = parse_timestamp(ts.trim())
                .ok_or_else(|| bad(format!("`{}` is not a timestamp", ts.trim())))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| bad(format!("`{}` is not a number", v.trim())))?;
            if !v.is_finite() {
                return Err(bad("value is not finite".into()));
            }
            points.push((ts, v));
        }
        points.sort_by_key(|p| p.0);
        if points.len() < 2 {
            return Err(Error::TraceEmpty { path: path.into() });
        }
        let mut gaps: Vec<i64> = points
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .filter(|g| *g > 0)
            .collect();
        gaps.sort_unstable();
        let step = gaps.get(gaps.len() / 2).copied().unwrap_or(300).max(1);
        let start = points[0].0 - points[0].0.rem_euclid(step);
        let n = ((points[points.len() - 1].0 - start) / step + 1) as usize;
        let mut sum = vec![0.0; n];
        let mut cnt = vec![0u32; n];
        for (t, v) in points {
            let k = ((t - start) / step) as usize;
            sum[k] += v;
            cnt[k] += 1;
        }
        let mut values: Vec<Option<f64>> = sum
            .iter()
            .zip(&cnt)
            .map(|(s, c)| (*c > 0).then(|| s / *c as f64))
            .collect();
        fill_gaps(&mut values);
        Ok(Self {
            start,
            step,
            values: Arc::new(values.into_iter().map(|v| v.unwrap_or(0.0)).collect()),
        })
    }

    /// A replay of in-memory values (tests, benchmarks).
    pub fn from_values(start: Timestamp, step: i64, values: Vec<f64>) -> Self {
        Self {
            start,
            step: step.max(1),
            values: Arc::new(values),
        }
    }

    /// The same trace shifted in time by `offset` seconds (shares the values).
    pub fn shifted(&self, offset: i64) -> Self {
        Self {
            start: self.start + offset,
            step: self.step,
            values: self.values.clone(),
        }
    }

    /// The trace's first timestamp.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// The trace's step in seconds.
    pub fn step(&self) -> i64 {
        self.step
    }

    /// The trace's values.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The trace's value at `t` (repeating outside its span).
    pub fn at(&self, t: Timestamp) -> f64 {
        let n = self.values.len() as i64;
        let k = ((t - self.start).div_euclid(self.step)).rem_euclid(n);
        self.values[k as usize]
    }
}

fn fill_gaps(v: &mut [Option<f64>]) {
    let known: Vec<usize> = (0..v.len()).filter(|&i| v[i].is_some()).collect();
    for w in known.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (va, vb) = (v[a].unwrap_or(0.0), v[b].unwrap_or(0.0));
        for (i, slot) in v.iter_mut().enumerate().take(b).skip(a + 1) {
            *slot = Some(va + (vb - va) * (i - a) as f64 / (b - a) as f64);
        }
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS` (UTC, `T` allowed) or unix seconds.
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    if let Ok(f) = s.parse::<f64>() {
        return Some(f as i64);
    }
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b' ' || b[10] == b'T') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(predictive_engine::civil::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

#[async_trait::async_trait]
impl MetricsSource for Replay {
    async fn observe(&self, to: Timestamp, step: i64) -> Result<f64> {
        // Mean of the trace's points inside (to - step, to].
        let n = (step / self.step).max(1);
        let sum: f64 = (0..n).map(|i| self.at(to - i * self.step)).sum();
        Ok(sum / n as f64)
    }
}

/// Prometheus' HTTP API (`/api/v1/query_range`).
#[derive(Debug, Clone)]
pub struct Prometheus {
    url: String,
    query: String,
    client: reqwest::Client,
    timeout: Duration,
}

impl Prometheus {
    /// A source running `query` against the server at `url`, each request bounded by `timeout`.
    pub fn new(url: &str, query: &str, timeout: Duration) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            query: query.to_string(),
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            timeout,
        }
    }

    /// The samples of the query's first series in `[from, to]` at resolution `step`.
    ///
    /// # Errors
    /// [`Error::PrometheusUnreachable`] or [`Error::PrometheusBadAnswer`].
    pub async fn query_range(
        &self,
        from: Timestamp,
        to: Timestamp,
        step: i64,
    ) -> Result<Vec<(Timestamp, f64)>> {
        self.points(from, to, step)
            .await?
            .ok_or_else(|| Error::PrometheusBadAnswer {
                url: self.url.clone(),
                query: self.query.clone(),
                reason: "an empty result".into(),
            })
    }

    /// As [`Self::query_range`], `None` when no series has a point in the range.
    async fn points(
        &self,
        from: Timestamp,
        to: Timestamp,
        step: i64,
    ) -> Result<Option<Vec<(Timestamp, f64)>>> {
        let unreachable = |source| Error::PrometheusUnreachable {
            url: self.url.clone(),
            source,
        };
        let req = self
            .client
            .get(format!("{}/api/v1/query_range", self.url))
            .query(&[
                ("query", self.query.as_str()),
                ("start", &from.to_string()),
                ("end", &to.to_string()),
                ("step", &format!("{}s", step.max(1))),
            ]);
        let resp = tokio::time::timeout(self.timeout, req.send())
            .await
            .map_err(|_| Error::TimedOut(self.timeout))?
            .map_err(unreachable)?;
        let body: serde_json::Value = resp
            .error_for_status()
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)?;
        let bad = |reason: &str| Error::PrometheusBadAnswer {
            url: self.url.clone(),
            query: self.query.clone(),
            reason: reason.into(),
        };
        if body["status"] != "success" {
            return Err(bad(&format!("status {}", body["status"])));
        }
        let result = body["data"]["result"]
            .as_array()
            .ok_or_else(|| bad("no result array"))?;
        let Some(series) = result.first() else {
            return Ok(None);
        };
        let values = series["values"]
            .as_array()
            .ok_or_else(|| bad("a series without values"))?;
        values
            .iter()
            .map(|p| {
                let t = p[0]
                    .as_f64()
                    .ok_or_else(|| bad("a non-numeric timestamp"))? as i64;
                let v: f64 = p[1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("a non-numeric value"))?;
                Ok((t, v))
            })
            .collect::<Result<_>>()
            .map(Some)
    }
}

/// The value of the query at the tick: the last point of `query_range` over `[to - step, to]`
/// at resolution `step`. Prometheus holds each sample for its lookback window, so this is the latest
/// sample at or before `to`; expressions average as they say (`rate(x[5m])`, `avg_over_time`).
#[async_trait::async_trait]
impl MetricsSource for Prometheus {
    async fn observe(&self, to: Timestamp, step: i64) -> Result<f64> {
        let pts = self.query_range(to - step, to, step).await?;
        match pts.iter().rev().find(|p| p.0 <= to && p.1.is_finite()) {
            Some(p) => Ok(p.1),
            None => Err(Error::PrometheusBadAnswer {
                url: self.url.clone(),
                query: self.query.clone(),
                reason: "no samples at the tick".into(),
            }),
        }
    }

    fn keeps_history(&self) -> bool {
        true
    }

    /// `query_range` over the ticks, in requests of at most [`MAX_POINTS`] points (Prometheus
    /// refuses more than 11,000 per series).
    async fn history(
        &self,
        from: Timestamp,
        to: Timestamp,
        step: i64,
    ) -> Result<Vec<(Timestamp, f64)>> {
        let step = step.max(1);
        let mut out = Vec::new();
        let mut start = from;
        while start <= to {
            let end = to.min(start + step * (MAX_POINTS - 1));
            let pts = self.points(start, end, step).await?.unwrap_or_default();
            out.extend(
                pts.into_iter()
                    .filter(|&(t, v)| v.is_finite() && (t - from).rem_euclid(step) == 0),
            );
            start = end + step;
        }
        Ok(out)
    }
}

/// Most points one history request to Prometheus asks for.
pub const MAX_POINTS: i64 = 10_000;

/// Samples pushed through the API into the store's raw history.
#[derive(Debug, Clone)]
pub struct Pushed {
    workload: String,
    store: Arc<dyn Store>,
}

impl Pushed {
    /// Reads what was pushed for `workload`.
    pub fn new(workload: &str, store: Arc<dyn Store>) -> Self {
        Self {
            workload: workload.into(),
            store,
        }
    }
}

#[async_trait::async_trait]
impl MetricsSource for Pushed {
    /// The mean of the pushes in `(to - step, to]`: the one tick of [`Self::history`].
    async fn observe(&self, to: Timestamp, step: i64) -> Result<f64> {
        match self.history(to, to, step).await?.pop() {
            Some((_, mean)) => Ok(mean),
            None => Err(Error::NoPushedSamples {
                from: to - step,
                to,
            }),
        }
    }

    /// Pushes reach the store whichever replica takes them, and an agent may send what it
    /// buffered while the API was down: the mean of each tick's pushed samples.
    fn keeps_history(&self) -> bool {
        true
    }

    async fn history(
        &self,
        from: Timestamp,
        to: Timestamp,
        step: i64,
    ) -> Result<Vec<(Timestamp, f64)>> {
        let step = step.max(1);
        let xs = self
            .store
            .samples(&push_key(&self.workload), from - step + 1)
            .await
            .map_err(Error::StoreFailed)?;
        let mut ticks: std::collections::BTreeMap<Timestamp, (f64, u32)> = Default::default();
        for s in xs.iter().filter(|s| s.ts <= to && s.value.is_finite()) {
            // The tick whose interval (t - step, t] holds the sample.
            let t = from + (s.ts - from + step - 1).div_euclid(step) * step;
            let e = ticks.entry(t).or_default();
            e.0 += s.value;
            e.1 += 1;
        }
        Ok(ticks
            .into_iter()
            .map(|(t, (sum, n))| (t, sum / f64::from(n)))
            .collect())
    }
}

/// The store key under which pushed samples of `workload` are kept.
pub fn push_key(workload: &str) -> String {
    format!("push:{workload}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_as_utc() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp("2014-04-10 00:02:00"), Some(1_397_088_120));
        assert_eq!(parse_timestamp("1397088120"), Some(1_397_088_120));
        assert_eq!(parse_timestamp("2014-13-10 00:02:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[tokio::test]
    async fn replay_resamples_fills_gaps_and_repeats() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.csv");
        std::fs::write(
            &p,
            "timestamp,value\n1970-01-01 00:00:00,1\n1970-01-01 00:05:00,2\n1970-01-01 00:15:00,4\n1970-01-01 00:20:00,5\n",
        )
        .unwrap();
        let r = Replay::from_csv(&p).unwrap();
        assert_eq!(r.step(), 300);
        assert_eq!(r.values(), &[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(r.at(600), 3.0);
        assert_eq!(r.at(1500), 1.0); // wraps
        assert_eq!(r.observe(600, 600).await.unwrap(), 2.5);
    }

    #[test]
    fn bad_trace_lines_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.csv");
        std::fs::write(
            &p,
            "timestamp,value\n1970-01-01 00:00:00,1\n1970-01-01 00:05:00,lots\n",
        )
        .unwrap();
        let e = Replay::from_csv(&p).unwrap_err().to_string();
        assert!(e.ends_with("t.csv:3: `lots` is not a number"), "{e}");
    }

    #[tokio::test]
    async fn unreachable_prometheus_is_an_error_naming_the_url() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let p = Prometheus::new(&url, "up", Duration::from_secs(2));
        let e = p.observe(1000, 300).await.unwrap_err();
        assert!(e.to_string().contains(&url), "{e}");
    }
}
