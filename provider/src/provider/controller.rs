//! A client of the `predictive` controller's gRPC API: clone registration and the controller's
//! forecasts as a history source. Every call carries `authorization: Bearer <token>`; the token
//! never appears in `Debug` output, errors or diagnostics.

use crate::controller_pb as pb;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Deadline of one API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of talking to the controller. Messages name the endpoint, never the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint is not an `http(s)://HOST:PORT` URI.
    #[error("controller endpoint {0:?} is not a valid address (expected http://HOST:PORT)")]
    BadEndpoint(String),
    /// The token cannot be carried in a header.
    #[error("the controller token holds characters that cannot be sent in a header")]
    BadToken,
    /// The controller could not be reached.
    #[error("cannot reach the controller at {endpoint}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The controller refused or failed a call.
    #[error("controller at {endpoint}: {call} failed ({code:?}: {message})")]
    CallFailed {
        /// The endpoint.
        endpoint: String,
        /// The RPC.
        call: &'static str,
        /// gRPC status code.
        code: tonic::Code,
        /// The controller's message.
        message: String,
    },
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Auth(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(***)")
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// A connected client.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: String,
    inner: pb::controller_client::ControllerClient<InterceptedService<Channel, Auth>>,
}

/// What the controller forecasts for one workload at its latest tick.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestForecast {
    /// Model the controller used.
    pub model: String,
    /// Highest median over the forecast targets, in the workload's metric units.
    pub p50: f64,
    /// Highest upper bound, in the workload's metric units.
    pub upper: f64,
    /// The quantile of the upper bound.
    pub quantile: f64,
    /// The workload's spec as JSON (as registered).
    pub spec_json: String,
}

impl Client {
    /// Connects to `endpoint` (`http://HOST:PORT`) with `token`.
    ///
    /// # Errors
    /// [`Error::BadEndpoint`], [`Error::BadToken`], [`Error::Unreachable`].
    pub async fn connect(endpoint: &str, token: &str) -> Result<Client, Error> {
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::BadToken)?;
        let ep = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|_| Error::BadEndpoint(endpoint.into()))?
            .connect_timeout(Duration::from_secs(10))
            .timeout(CALL_TIMEOUT);
        let ch = ep.connect().await.map_err(|source| Error::Unreachable {
            endpoint: endpoint.into(),
            source,
        })?;
        Ok(Client {
            endpoint: endpoint.into(),
            inner: pb::controller_client::ControllerClient::with_interceptor(ch, Auth(header)),
        })
    }

    fn failed(&self, call: &'static str, s: tonic::Status) -> Error {
        Error::CallFailed {
            endpoint: self.endpoint.clone(),
            call,
            code: s.code(),
            message: s.message().to_string(),
        }
    }

    /// Registers (or updates) a clone of workload `source`.
    ///
    /// # Errors
    /// [`Error::CallFailed`].
    pub async fn put_clone(&self, name: &str, source: &str, spec_json: &str) -> Result<(), Error> {
        self.inner
            .clone()
            .put_clone(pb::PutCloneRequest {
                clone: Some(pb::Clone {
                    name: name.into(),
                    source: source.into(),
                    spec_json: spec_json.into(),
                }),
            })
            .await
            .map_err(|s| self.failed("PutClone", s))?;
        Ok(())
    }

    /// Unregisters a clone; `Ok(false)` when it was not registered.
    ///
    /// # Errors
    /// [`Error::CallFailed`].
    pub async fn delete_clone(&self, name: &str) -> Result<bool, Error> {
        let r = self
            .inner
            .clone()
            .delete_clone(pb::DeleteCloneRequest { name: name.into() })
            .await
            .map_err(|s| self.failed("DeleteClone", s))?;
        Ok(r.into_inner().existed)
    }

    /// The registered clones as `(name, source, spec_json)`.
    ///
    /// # Errors
    /// [`Error::CallFailed`].
    pub async fn clones(&self) -> Result<Vec<(String, String, String)>, Error> {
        let r = self
            .inner
            .clone()
            .list_clones(pb::ListClonesRequest {})
            .await
            .map_err(|s| self.failed("ListClones", s))?;
        Ok(r.into_inner()
            .clones
            .into_iter()
            .map(|c| (c.name, c.source, c.spec_json))
            .collect())
    }

    /// The controller's latest forecast of `workload` over targets up to `horizon_secs` after
    /// it was made; `None` when the workload is registered but has no forecast yet.
    ///
    /// # Errors
    /// [`Error::CallFailed`] (`NotFound`-like answers included).
    pub async fn latest_forecast(
        &self,
        workload: &str,
        horizon_secs: i64,
    ) -> Result<Option<LatestForecast>, Error> {
        let workloads = self
            .inner
            .clone()
            .list_workloads(pb::ListWorkloadsRequest {})
            .await
            .map_err(|s| self.failed("ListWorkloads", s))?
            .into_inner()
            .workloads;
        let Some(w) = workloads.into_iter().find(|w| w.name == workload) else {
            return Err(Error::CallFailed {
                endpoint: self.endpoint.clone(),
                call: "ListWorkloads",
                code: tonic::Code::NotFound,
                message: format!("workload {workload:?} is not registered with the controller"),
            });
        };
        let fs = self
            .inner
            .clone()
            .get_forecasts(pb::GetForecastsRequest {
                workload: workload.into(),
                since: 0,
            })
            .await
            .map_err(|s| self.failed("GetForecasts", s))?
            .into_inner()
            .forecasts;
        Ok(latest(&fs, horizon_secs).map(|mut f| {
            f.spec_json = w.spec_json;
            f
        }))
    }
}

/// The forecasts made at the latest tick with targets within `horizon_secs`, folded into their
/// peaks (at least the first target is kept however short the horizon).
fn latest(fs: &[pb::Forecast], horizon_secs: i64) -> Option<LatestForecast> {
    let ts = fs.iter().map(|f| f.ts).max()?;
    let mut at: Vec<&pb::Forecast> = fs.iter().filter(|f| f.ts == ts).collect();
    at.sort_by_key(|f| f.target);
    let first = at.first()?.target;
    let within: Vec<&&pb::Forecast> = at
        .iter()
        .filter(|f| f.target == first || f.target - ts <= horizon_secs)
        .collect();
    Some(LatestForecast {
        model: within[0].model.clone(),
        p50: within.iter().map(|f| f.p50).fold(f64::MIN, f64::max),
        upper: within.iter().map(|f| f.upper).fold(f64::MIN, f64::max),
        quantile: within[0].quantile,
        spec_json: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(ts: i64, target: i64, p50: f64, upper: f64) -> pb::Forecast {
        pb::Forecast {
            ts,
            target,
            p50,
            upper,
            quantile: 0.9,
            model: "ets".into(),
        }
    }

    #[test]
    fn the_latest_tick_within_the_horizon_should_be_folded() {
        let fs = [
            f(100, 400, 50.0, 90.0),
            f(400, 700, 5.0, 9.0),
            f(400, 1000, 6.0, 8.0),
            f(400, 99_999, 60.0, 80.0),
        ];
        let l = latest(&fs, 600).unwrap();
        assert_eq!((l.p50, l.upper, l.quantile), (6.0, 9.0, 0.9));
        // A horizon shorter than the first target still keeps it.
        let l = latest(&fs, 10).unwrap();
        assert_eq!((l.p50, l.upper), (5.0, 9.0));
        assert_eq!(latest(&[], 600), None);
    }

    #[test]
    fn the_token_should_not_show_in_debug_output() {
        let a = Auth("Bearer s3cret-token".parse().unwrap());
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
