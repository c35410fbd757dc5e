//! A client of the `predictive` controller's gRPC API: clone registration and the controller's
//! recorded usage (`GetHistory`) as a history source. Every call carries `authorization: Bearer <token>`; the token
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

/// A workload's recorded usage from the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerHistory {
    /// `(unix seconds, value)` in the workload's own units, oldest first.
    pub samples: Vec<(i64, f64)>,
    /// The workload's spec (JSON), for `capacity_per_instance` and `instance_type`.
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
    /// A workload's usage as the controller recorded it over `[from, to)`, averaged on `step`
    /// seconds (`GetHistory`), with the workload's spec (`ListWorkloads`) to convert its units.
    ///
    /// # Errors
    /// [`Error::CallFailed`] (a workload the controller does not know is `NotFound`).
    pub async fn history(
        &self,
        workload: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<ControllerHistory, Error> {
        let spec_json = self.spec(workload).await?;
        let samples = self
            .inner
            .clone()
            .get_history(pb::GetHistoryRequest {
                workload: workload.into(),
                from,
                to,
                step,
            })
            .await
            .map_err(|s| self.failed("GetHistory", s))?
            .into_inner()
            .samples
            .into_iter()
            .map(|s| (s.ts, s.value))
            .collect();
        Ok(ControllerHistory { samples, spec_json })
    }

    async fn spec(&self, workload: &str) -> Result<String, Error> {
        let workloads = self
            .inner
            .clone()
            .list_workloads(pb::ListWorkloadsRequest {})
            .await
            .map_err(|s| self.failed("ListWorkloads", s))?
            .into_inner()
            .workloads;
        workloads
            .into_iter()
            .find(|w| w.name == workload)
            .map(|w| w.spec_json)
            .ok_or_else(|| Error::CallFailed {
                endpoint: self.endpoint.clone(),
                call: "ListWorkloads",
                code: tonic::Code::NotFound,
                message: format!("workload {workload:?} is not registered with the controller"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_should_not_show_in_debug_output() {
        let a = Auth("Bearer s3cret-token".parse().unwrap());
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
