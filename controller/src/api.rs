//! The gRPC API (tonic), authenticated with a bearer token, over TLS or mTLS when configured.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::config::{check_workload, WorkloadParams};
use crate::run::{chain, Controller};
use crate::source::push_key;
use crate::store::{CloneRecord, Sample};

/// Generated protobuf types and service stubs.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
pub mod pb {
    tonic::include_proto!("predictive.controller.v1");
}

use pb::controller_server::ControllerServer;

/// The service over a running [`Controller`].
#[derive(Debug, Clone)]
pub struct Api {
    ctl: Arc<Controller>,
}

/// Checks `authorization: Bearer <token>` in constant time.
#[derive(Clone)]
pub struct BearerAuth {
    token: Arc<str>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerAuth(***)")
    }
}

impl BearerAuth {
    /// Accepts requests presenting `token`.
    pub fn new(token: &str) -> Self {
        Self {
            token: token.into(),
        }
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let got = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let presented = got.strip_prefix("Bearer ").unwrap_or("");
        let (a, b) = (presented.as_bytes(), self.token.as_bytes());
        let mut diff = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
        }
        if diff == 0 && !b.is_empty() {
            Ok(req)
        } else {
            Err(Status::unauthenticated("missing or wrong bearer token"))
        }
    }
}

/// The service with its auth layer, ready for `tonic::transport::Server::add_service`.
pub fn service(
    ctl: Arc<Controller>,
    token: &str,
) -> tonic::service::interceptor::InterceptedService<ControllerServer<Api>, BearerAuth> {
    ControllerServer::with_interceptor(Api { ctl }, BearerAuth::new(token))
}

/// Serves the API on `listener` (plaintext) until the future is dropped.
///
/// # Errors
/// The transport error that stopped the server.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctl: Arc<Controller>,
    token: &str,
) -> Result<(), tonic::transport::Error> {
    serve_with(listener, ctl, token, None).await
}

/// Serves the API on `listener`, over TLS when `tls` is given (mTLS when it holds a client CA),
/// until the future is dropped. The bearer token is checked either way.
///
/// # Errors
/// The transport error that stopped the server (or refused the TLS material).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    ctl: Arc<Controller>,
    token: &str,
    tls: Option<&ServerTls>,
) -> Result<(), tonic::transport::Error> {
    let mut b = tonic::transport::Server::builder();
    if let Some(t) = tls {
        b = b.tls_config(t.config())?;
    }
    b.add_service(service(ctl, token))
        .serve_with_incoming(tokio_stream_from(listener))
        .await
}

/// Errors of reading TLS material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("field `{field}`: cannot read {path}")]
    ReadFailed {
        /// The config field or CLI option naming the file.
        field: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate or key was refused (not a certificate, key not matching, unsupported).
    #[error("field `api.tls`: the certificate or key is invalid")]
    Invalid(#[source] tonic::transport::Error),
    /// A PEM file holds no PEM block.
    #[error("field `{field}`: {path} holds no PEM data")]
    NotPem {
        /// The config field or CLI option naming the file.
        field: &'static str,
        /// The file.
        path: std::path::PathBuf,
    },
}

fn read_pem(
    field: &'static str,
    base: &std::path::Path,
    p: &std::path::Path,
) -> Result<Vec<u8>, TlsError> {
    let path = if p.is_relative() {
        base.join(p)
    } else {
        p.to_path_buf()
    };
    let bytes = std::fs::read(&path).map_err(|source| TlsError::ReadFailed {
        field,
        path: path.clone(),
        source,
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(TlsError::NotPem { field, path });
    }
    Ok(bytes)
}

/// Installs aws-lc-rs as the process' rustls crypto provider unless one is installed already
/// (several rustls backends are linked, so rustls cannot pick one by itself).
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// TLS material of the API server (certificate chain, key, optional client CA), read once.
#[derive(Clone)]
pub struct ServerTls {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mtls", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the files of `api.tls`, relative to `base` (the config file's directory).
    ///
    /// # Errors
    /// [`TlsError`] naming the field and file (never the key's content).
    pub fn read(p: &crate::config::ApiTlsParams, base: &std::path::Path) -> Result<Self, TlsError> {
        let s = Self {
            cert: read_pem("api.tls.cert", base, &p.cert)?,
            key: read_pem("api.tls.key", base, &p.key)?,
            client_ca: p
                .client_ca
                .as_ref()
                .map(|c| read_pem("api.tls.client_ca", base, c))
                .transpose()?,
        };
        tonic::transport::Server::builder()
            .tls_config(s.config())
            .map_err(TlsError::Invalid)?;
        Ok(s)
    }

    /// From PEM bytes (tests, embedding).
    pub fn from_pem(
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
        client_ca: Option<Vec<u8>>,
    ) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            client_ca,
        }
    }

    /// Whether clients must present a certificate signed by the client CA.
    pub fn is_mtls(&self) -> bool {
        self.client_ca.is_some()
    }

    fn config(&self) -> tonic::transport::ServerTlsConfig {
        ensure_crypto_provider();
        let mut c = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert, &self.key));
        if let Some(ca) = &self.client_ca {
            c = c
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(false);
        }
        c
    }
}

/// TLS material of a client: the CA the server's certificate must chain to, and the client's
/// own certificate and key for mTLS.
#[derive(Clone, Default)]
pub struct ClientTls {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}

impl ClientTls {
    /// Reads the CA file and, for mTLS, the client's certificate and key (CLI options
    /// `--ca-file`, `--cert-file`, `--key-file`).
    ///
    /// # Errors
    /// [`TlsError`] naming the option and file.
    pub fn read(
        ca: Option<&std::path::Path>,
        cert: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
    ) -> Result<Self, TlsError> {
        let here = std::path::Path::new(".");
        let ca = ca.map(|p| read_pem("--ca-file", here, p)).transpose()?;
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((
                read_pem("--cert-file", here, c)?,
                read_pem("--key-file", here, k)?,
            )),
            _ => None,
        };
        Ok(Self {
            ca,
            identity,
            domain: None,
        })
    }

    /// From PEM bytes (tests).
    pub fn from_pem(ca: Option<Vec<u8>>, identity: Option<(Vec<u8>, Vec<u8>)>) -> Self {
        Self {
            ca,
            identity,
            domain: None,
        }
    }

    /// Checks the server's certificate against `domain` instead of the address' host.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    fn config(&self) -> tonic::transport::ClientTlsConfig {
        ensure_crypto_provider();
        let mut c = tonic::transport::ClientTlsConfig::new();
        match &self.ca {
            Some(ca) => c = c.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            None => c = c.with_enabled_roots(),
        }
        if let Some((cert, key)) = &self.identity {
            c = c.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        if let Some(d) = &self.domain {
            c = c.domain_name(d.clone());
        }
        c
    }
}

fn tokio_stream_from(l: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(l)
}

/// A listing's `limit`: 0 asks for the default of 20, and no call lists more than 10,000.
fn list_limit(limit: u32) -> u32 {
    if limit == 0 {
        20
    } else {
        limit.min(10_000)
    }
}

fn internal(e: &dyn std::error::Error) -> Status {
    Status::internal(chain(e))
}

fn to_pb(d: crate::store::Decision) -> pb::Decision {
    pb::Decision {
        workload: d.workload,
        ts: d.ts,
        mode: d.mode,
        observed: d.observed,
        predicted: d.predicted,
        current: d.current,
        desired: d.desired,
        action: d.action,
        cost_per_hour: d.cost_per_hour,
        explanation: d.explanation,
    }
}

#[tonic::async_trait]
impl pb::controller_server::Controller for Api {
    async fn put_workload(
        &self,
        req: Request<pb::PutWorkloadRequest>,
    ) -> Result<Response<pb::PutWorkloadResponse>, Status> {
        let params: WorkloadParams =
            serde_json::from_str(&req.get_ref().spec_json).map_err(|e| {
                Status::invalid_argument(format!(
                    "spec_json: line {} column {}: {e}",
                    e.line(),
                    e.column()
                ))
            })?;
        let valid = check_workload("<api>", &params, std::path::Path::new("."))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.ctl
            .upsert(valid)
            .await
            .map_err(|e| Status::invalid_argument(chain(&e)))?;
        Ok(Response::new(pb::PutWorkloadResponse {}))
    }

    async fn delete_workload(
        &self,
        req: Request<pb::DeleteWorkloadRequest>,
    ) -> Result<Response<pb::DeleteWorkloadResponse>, Status> {
        let existed = self
            .ctl
            .remove(&req.get_ref().name)
            .await
            .map_err(|e| internal(&e))?;
        Ok(Response::new(pb::DeleteWorkloadResponse { existed }))
    }

    async fn release_workload(
        &self,
        req: Request<pb::ReleaseWorkloadRequest>,
    ) -> Result<Response<pb::ReleaseWorkloadResponse>, Status> {
        let name = &req.get_ref().name;
        match self.ctl.release(name).await {
            Ok(was) => Ok(Response::new(pb::ReleaseWorkloadResponse {
                released: was.is_some(),
                was: was.unwrap_or_default(),
            })),
            Err(e @ crate::run::Error::UnknownWorkload(_)) => Err(Status::not_found(e.to_string())),
            Err(e) => Err(internal(&e)),
        }
    }

    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let r = req.get_ref();
        let Some(events) = self
            .ctl
            .store()
            .known_audit_log(&r.workload, list_limit(r.limit))
            .await
            .map_err(|e| internal(&e))?
        else {
            return Err(Status::not_found(format!(
                "workload `{}` is not registered",
                r.workload
            )));
        };
        Ok(Response::new(pb::ListAuditResponse {
            events: events
                .into_iter()
                .map(|e| pb::AuditEvent {
                    ts: e.ts,
                    workload: e.workload,
                    action: e.action,
                    detail: e.detail,
                })
                .collect(),
        }))
    }

    async fn list_workloads(
        &self,
        _req: Request<pb::ListWorkloadsRequest>,
    ) -> Result<Response<pb::ListWorkloadsResponse>, Status> {
        let store = self.ctl.store();
        let mut workloads = Vec::new();
        for (name, spec) in store.workloads().await.map_err(|e| internal(&e))? {
            let latest = store
                .decisions(Some(&name), 1)
                .await
                .map_err(|e| internal(&e))?
                .into_iter()
                .next()
                .map(to_pb);
            let budget = store
                .budget(&name)
                .await
                .map_err(|e| internal(&e))?
                .unwrap_or(0.0);
            workloads.push(pb::WorkloadSummary {
                name,
                spec_json: spec,
                latest,
                budget_per_hour: budget,
            });
        }
        Ok(Response::new(pb::ListWorkloadsResponse { workloads }))
    }

    async fn put_clone(
        &self,
        req: Request<pb::PutCloneRequest>,
    ) -> Result<Response<pb::PutCloneResponse>, Status> {
        let c = req
            .into_inner()
            .clone
            .ok_or_else(|| Status::invalid_argument("clone: missing"))?;
        if c.name.trim().is_empty() {
            return Err(Status::invalid_argument("clone.name: must not be empty"));
        }
        if !c.spec_json.is_empty() {
            serde_json::from_str::<serde_json::Value>(&c.spec_json).map_err(|e| {
                Status::invalid_argument(format!(
                    "clone.spec_json: line {} column {}: {e}",
                    e.line(),
                    e.column()
                ))
            })?;
        }
        self.ctl
            .store()
            .put_clone(&CloneRecord {
                name: c.name,
                source: c.source,
                spec: c.spec_json,
            })
            .await
            .map_err(|e| internal(&e))?;
        self.ctl.clones_changed();
        Ok(Response::new(pb::PutCloneResponse {}))
    }

    async fn delete_clone(
        &self,
        req: Request<pb::DeleteCloneRequest>,
    ) -> Result<Response<pb::DeleteCloneResponse>, Status> {
        let existed = self
            .ctl
            .store()
            .delete_clone(&req.get_ref().name)
            .await
            .map_err(|e| internal(&e))?;
        self.ctl.clones_changed();
        Ok(Response::new(pb::DeleteCloneResponse { existed }))
    }

    async fn list_clones(
        &self,
        _req: Request<pb::ListClonesRequest>,
    ) -> Result<Response<pb::ListClonesResponse>, Status> {
        let clones = self.ctl.store().clones().await.map_err(|e| internal(&e))?;
        Ok(Response::new(pb::ListClonesResponse {
            clones: clones
                .into_iter()
                .map(|c| pb::Clone {
                    name: c.name,
                    source: c.source,
                    spec_json: c.spec,
                })
                .collect(),
        }))
    }

    async fn push_metrics(
        &self,
        req: Request<pb::PushMetricsRequest>,
    ) -> Result<Response<pb::PushMetricsResponse>, Status> {
        let r = req.into_inner();
        if self.ctl.workload(&r.workload).is_none() {
            return Err(Status::not_found(format!(
                "workload `{}` is not registered",
                r.workload
            )));
        }
        let mut xs = Vec::with_capacity(r.samples.len());
        for (i, s) in r.samples.iter().enumerate() {
            if !s.value.is_finite() || s.value < 0.0 {
                return Err(Status::invalid_argument(format!(
                    "samples[{i}].value: must be a finite non-negative number"
                )));
            }
            xs.push(Sample {
                ts: s.ts,
                value: s.value,
            });
        }
        self.ctl
            .store()
            .put_samples(&push_key(&r.workload), &xs)
            .await
            .map_err(|e| internal(&e))?;
        Ok(Response::new(pb::PushMetricsResponse {
            accepted: xs.len() as u32,
        }))
    }

    async fn get_forecasts(
        &self,
        req: Request<pb::GetForecastsRequest>,
    ) -> Result<Response<pb::GetForecastsResponse>, Status> {
        let r = req.get_ref();
        let f = self
            .ctl
            .store()
            .forecasts(&r.workload, r.since)
            .await
            .map_err(|e| internal(&e))?;
        Ok(Response::new(pb::GetForecastsResponse {
            forecasts: f
                .into_iter()
                .map(|f| pb::Forecast {
                    ts: f.ts,
                    target: f.target,
                    p50: f.p50,
                    upper: f.upper,
                    quantile: f.quantile,
                    model: f.model,
                })
                .collect(),
        }))
    }

    async fn get_history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let r = req.get_ref();
        if self.ctl.workload(&r.workload).is_none() {
            return Err(Status::not_found(format!(
                "workload `{}` is not registered",
                r.workload
            )));
        }
        if r.step < 0 {
            return Err(Status::invalid_argument(
                "step: must be 0 (raw samples) or a positive number of seconds",
            ));
        }
        if r.to != 0 && r.to <= r.from {
            return Err(Status::invalid_argument(format!(
                "to: {} must be after from ({}) or 0",
                r.to, r.from
            )));
        }
        let mut xs = self
            .ctl
            .store()
            .samples(&r.workload, r.from)
            .await
            .map_err(|e| internal(&e))?;
        if r.to != 0 {
            xs.retain(|s| s.ts < r.to);
        }
        let samples = if r.step == 0 {
            xs.into_iter()
                .map(|s| pb::Sample {
                    ts: s.ts,
                    value: s.value,
                })
                .collect()
        } else {
            // One mean per step that holds samples, at the step's start (steps aligned on `from`).
            let mut out: Vec<(i64, f64, u32)> = Vec::new();
            for s in xs {
                let start = r.from + (s.ts - r.from).div_euclid(r.step) * r.step;
                match out.last_mut() {
                    Some((t, sum, n)) if *t == start => {
                        *sum += s.value;
                        *n += 1;
                    }
                    _ => out.push((start, s.value, 1)),
                }
            }
            out.into_iter()
                .map(|(ts, sum, n)| pb::Sample {
                    ts,
                    value: sum / f64::from(n),
                })
                .collect()
        };
        Ok(Response::new(pb::GetHistoryResponse { samples }))
    }

    async fn list_decisions(
        &self,
        req: Request<pb::ListDecisionsRequest>,
    ) -> Result<Response<pb::ListDecisionsResponse>, Status> {
        let r = req.get_ref();
        let w = (!r.workload.is_empty()).then_some(r.workload.as_str());
        let d = self
            .ctl
            .store()
            .decisions(w, list_limit(r.limit))
            .await
            .map_err(|e| internal(&e))?;
        Ok(Response::new(pb::ListDecisionsResponse {
            decisions: d.into_iter().map(to_pb).collect(),
        }))
    }
}

/// A client with the bearer token attached to every call.
pub type Client = pb::controller_client::ControllerClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, ClientAuth>,
>;

/// Adds `authorization: Bearer <token>` to outgoing calls.
#[derive(Clone)]
pub struct ClientAuth {
    header: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientAuth(***)")
    }
}

impl tonic::service::Interceptor for ClientAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(req)
    }
}

/// Errors of connecting a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address is not a URI.
    #[error("`{0}` is not a valid address (expected http://HOST:PORT or https://HOST:PORT)")]
    BadAddress(String),
    /// The token holds characters a header cannot carry.
    #[error("the token holds characters that cannot be sent in a header")]
    BadToken,
    /// The TLS settings were refused.
    #[error("the TLS settings are invalid")]
    Tls {
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server could not be reached.
    #[error("cannot reach the controller at {addr}")]
    Unreachable {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Connects to the API at `addr` (`http://HOST:PORT`) with `token`.
///
/// # Errors
/// [`ConnectError`].
pub async fn connect(addr: &str, token: &str) -> Result<Client, ConnectError> {
    connect_with(addr, token, None).await
}

/// Connects to the API at `addr` with `token`, over TLS when `tls` is given or `addr` is
/// `https://` (then with the system's roots unless `tls` names a CA).
///
/// # Errors
/// [`ConnectError`]; a server refusing the client's certificate shows as
/// [`ConnectError::Unreachable`] here or as an error status on the first call.
pub async fn connect_with(
    addr: &str,
    token: &str,
    tls: Option<&ClientTls>,
) -> Result<Client, ConnectError> {
    let header = format!("Bearer {token}")
        .parse()
        .map_err(|_| ConnectError::BadToken)?;
    let mut ep = tonic::transport::Endpoint::from_shared(addr.to_string())
        .map_err(|_| ConnectError::BadAddress(addr.into()))?;
    let default_tls = ClientTls::default();
    let tls = match tls {
        Some(t) => Some(t),
        None if addr.starts_with("https://") => Some(&default_tls),
        None => None,
    };
    if let Some(t) = tls {
        if addr.starts_with("http://") {
            return Err(ConnectError::BadAddress(format!(
                "{addr} (TLS options need an https:// address)"
            )));
        }
        ep = ep
            .tls_config(t.config())
            .map_err(|source| ConnectError::Tls { source })?;
    }
    let ch = ep
        .connect()
        .await
        .map_err(|source| ConnectError::Unreachable {
            addr: addr.into(),
            source,
        })?;
    Ok(pb::controller_client::ControllerClient::with_interceptor(
        ch,
        ClientAuth { header },
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::pb;
    use crate::clock::{Clock, VirtualClock};
    use crate::config::ConfigParams;
    use crate::run::Controller;
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn api_requires_the_token_and_serves_workloads_pushes_forecasts_and_decisions() {
        let cfg = ConfigParams {
            interval: "5m".into(),
            mode: crate::config::Mode::Act,
            concurrency: 2,
            owner: "api-test".into(),
            retention: "35d".into(),
            store: None,
            api: None,
            metrics_listen: None,
            clouds: Default::default(),
            workloads: vec![],
        }
        .check("<t>", std::path::Path::new("."))
        .unwrap();
        let clock = VirtualClock::new(1_000_200);
        let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
        let sim = crate::embedded::sim(clock_arc.clone(), None).unwrap();
        sim.cloud
            .create_group(predictive_clouds::sim::GroupSpec::new(
                "batch-asg",
                "m6i.xlarge",
                0,
                10,
            ))
            .unwrap();
        let mut clouds = BTreeMap::new();
        clouds.insert(
            "sim".to_string(),
            Arc::new(sim) as predictive_clouds::DynProvider,
        );
        let ctl = Arc::new(Controller::new(
            &cfg,
            Arc::new(SqliteStore::in_memory().unwrap()),
            clouds,
            clock_arc,
            "t",
        ));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", l.local_addr().unwrap());
        let server = tokio::spawn(super::serve(l, ctl.clone(), "s3cret"));

        let mut bad = super::connect(&addr, "wrong").await.unwrap();
        let e = bad
            .list_workloads(pb::ListWorkloadsRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);

        let mut c = super::connect(&addr, "s3cret").await.unwrap();
        let bad_spec = r#"{"name":"batch","group":"batch-asg","instance_type":"m6i.xlarge","capacity_per_instance":4,"min":5,"max":3,"metrics":{"kind":"push"}}"#;
        let e = c
            .put_workload(pb::PutWorkloadRequest {
                spec_json: bad_spec.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("workload `batch`: field `min`"),
            "{}",
            e.message()
        );
        assert!(!e.message().contains("s3cret"));

        let spec = bad_spec.replace("\"min\":5", "\"min\":1");
        c.put_workload(pb::PutWorkloadRequest { spec_json: spec })
            .await
            .unwrap();
        c.put_clone(pb::PutCloneRequest {
            clone: Some(pb::Clone {
                name: "batch-clone".into(),
                source: "batch".into(),
                spec_json: "{}".into(),
            }),
        })
        .await
        .unwrap();
        assert_eq!(
            c.list_clones(pb::ListClonesRequest {})
                .await
                .unwrap()
                .into_inner()
                .clones
                .len(),
            1
        );
        for k in 0..4i64 {
            let ts = 1_000_200 + k * 300;
            let n = c
                .push_metrics(pb::PushMetricsRequest {
                    workload: "batch".into(),
                    samples: vec![pb::Sample {
                        ts: ts + 300,
                        value: 10.0 + k as f64,
                    }],
                })
                .await
                .unwrap()
                .into_inner()
                .accepted;
            assert_eq!(n, 1);
            clock.advance(300);
            let r = ctl.tick().await.unwrap();
            assert!(r.errors.is_empty(), "{:?}", r.errors);
        }
        // history: the observed samples, raw then averaged on a step; `to` exclusive
        let raw = c
            .get_history(pb::GetHistoryRequest {
                workload: "batch".into(),
                from: 0,
                to: 0,
                step: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .samples;
        assert!(raw.len() >= 3, "{raw:?}");
        assert!(raw.windows(2).all(|w| w[0].ts < w[1].ts), "{raw:?}");
        let (t0, t1) = (raw[0].ts, raw[1].ts);
        let cut = c
            .get_history(pb::GetHistoryRequest {
                workload: "batch".into(),
                from: t0,
                to: t1,
                step: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .samples;
        assert_eq!(cut, vec![raw[0]]);
        let stepped = c
            .get_history(pb::GetHistoryRequest {
                workload: "batch".into(),
                from: t0,
                to: 0,
                step: 2 * (t1 - t0),
            })
            .await
            .unwrap()
            .into_inner()
            .samples;
        let step = 2 * (t1 - t0);
        let mut want: Vec<(i64, Vec<f64>)> = Vec::new();
        for x in &raw {
            let start = t0 + (x.ts - t0) / step * step;
            match want.last_mut() {
                Some((t, v)) if *t == start => v.push(x.value),
                _ => want.push((start, vec![x.value])),
            }
        }
        assert_eq!(stepped.len(), want.len(), "{stepped:?} {raw:?}");
        assert!(
            stepped.len() < raw.len(),
            "steps merged samples: {stepped:?}"
        );
        for (got, (ts, vs)) in stepped.iter().zip(&want) {
            assert_eq!(got.ts, *ts);
            assert!(
                (got.value - vs.iter().sum::<f64>() / vs.len() as f64).abs() < 1e-9,
                "{stepped:?} {raw:?}"
            );
        }
        let e = c
            .get_history(pb::GetHistoryRequest {
                workload: "nope".into(),
                from: 0,
                to: 0,
                step: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = c
            .get_history(pb::GetHistoryRequest {
                workload: "batch".into(),
                from: 0,
                to: 0,
                step: -1,
            })
            .await
            .unwrap_err();
        assert!(e.message().contains("step"), "{}", e.message());

        let e = c
            .push_metrics(pb::PushMetricsRequest {
                workload: "nope".into(),
                samples: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let f = c
            .get_forecasts(pb::GetForecastsRequest {
                workload: "batch".into(),
                since: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .forecasts;
        assert_eq!(f.len(), 4);
        assert!(f.iter().all(|f| f.upper >= f.p50));
        let d = c
            .list_decisions(pb::ListDecisionsRequest {
                workload: "batch".into(),
                limit: 10,
            })
            .await
            .unwrap()
            .into_inner()
            .decisions;
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].observed, 13.0);
        let want = ((d[0].predicted / 4.0 - 1e-9).ceil() as u32).clamp(1, 10);
        assert_eq!(
            d[0].desired, want,
            "planned {} units at 4 per instance",
            d[0].predicted
        );
        assert!(d[0].predicted > 0.0);
        assert!(!d[0].explanation.is_empty());
        let w = c
            .list_workloads(pb::ListWorkloadsRequest {})
            .await
            .unwrap()
            .into_inner()
            .workloads;
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].latest.as_ref().unwrap().ts, d[0].ts);
        // Release: nothing held on a quiet workload; an unknown one is not found.
        let r = c
            .release_workload(pb::ReleaseWorkloadRequest {
                name: "batch".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!r.released && r.was.is_empty(), "{r:?}");
        let e = c
            .release_workload(pb::ReleaseWorkloadRequest {
                name: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        assert!(e.message().contains("`nope`"), "{e:?}");
        // The audit log: the newest entries, oldest first; an unknown workload is not found.
        for ts in [1, 2, 3] {
            ctl.store()
                .audit(&crate::store::AuditEvent {
                    ts,
                    workload: "batch".into(),
                    action: "alert".into(),
                    detail: format!("spike {ts}"),
                })
                .await
                .unwrap();
        }
        let audit = |workload: &str, limit| pb::ListAuditRequest {
            workload: workload.into(),
            limit,
        };
        let events = c
            .list_audit(audit("batch", 2))
            .await
            .unwrap()
            .into_inner()
            .events;
        let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(details, ["spike 2", "spike 3"]);
        let all = c.list_audit(audit("batch", 0)).await.unwrap().into_inner();
        assert_eq!(all.events.len(), 3);
        let e = c.list_audit(audit("nope", 0)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        assert!(
            c.delete_workload(pb::DeleteWorkloadRequest {
                name: "batch".into()
            })
            .await
            .unwrap()
            .into_inner()
            .existed
        );
        assert!(c
            .list_workloads(pb::ListWorkloadsRequest {})
            .await
            .unwrap()
            .into_inner()
            .workloads
            .is_empty());
        server.abort();
    }

    /// A CA that signs server (`localhost`) and client certificates.
    struct Pki {
        ca_pem: String,
        issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    }

    impl Pki {
        fn new(name: &str) -> Self {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.distinguished_name.push(rcgen::DnType::CommonName, name);
            let issuer =
                rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap())
                    .unwrap();
            Self {
                ca_pem: issuer.pem(),
                issuer,
            }
        }

        fn leaf(&self, names: &[&str], client: bool) -> (Vec<u8>, Vec<u8>) {
            let mut p = rcgen::CertificateParams::new(
                names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            p.extended_key_usages = vec![if client {
                rcgen::ExtendedKeyUsagePurpose::ClientAuth
            } else {
                rcgen::ExtendedKeyUsagePurpose::ServerAuth
            }];
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &*self.issuer).unwrap();
            (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
        }
    }

    async fn controller() -> Arc<Controller> {
        let cfg = ConfigParams {
            interval: "5m".into(),
            mode: crate::config::Mode::Act,
            concurrency: 1,
            owner: "tls-test".into(),
            retention: "35d".into(),
            store: None,
            api: None,
            metrics_listen: None,
            clouds: Default::default(),
            workloads: vec![],
        }
        .check("<t>", std::path::Path::new("."))
        .unwrap();
        let clock_arc: Arc<dyn Clock> = Arc::new(VirtualClock::new(1_000_200));
        Arc::new(Controller::new(
            &cfg,
            Arc::new(SqliteStore::in_memory().unwrap()),
            BTreeMap::new(),
            clock_arc,
            "t",
        ))
    }

    async fn list(
        addr: &str,
        token: &str,
        tls: Option<&super::ClientTls>,
    ) -> Result<usize, String> {
        let mut c = super::connect_with(addr, token, tls)
            .await
            .map_err(|e| crate::run::chain(&e))?;
        c.list_workloads(pb::ListWorkloadsRequest {})
            .await
            .map(|r| r.into_inner().workloads.len())
            .map_err(|e| format!("{e}"))
    }

    #[tokio::test]
    async fn tls_api_accepts_clients_trusting_its_ca_and_mtls_refuses_clients_without_a_valid_cert()
    {
        let pki = Pki::new("predictive test CA");
        let rogue = Pki::new("rogue CA");
        let (cert, key) = pki.leaf(&["localhost", "127.0.0.1"], false);

        // TLS: the bearer token is still required; clients must trust the server's CA.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("https://127.0.0.1:{}", l.local_addr().unwrap().port());
        let tls = super::ServerTls::from_pem(cert.clone(), key.clone(), None);
        let server = tokio::spawn({
            let ctl = controller().await;
            async move { super::serve_with(l, ctl, "s3cret", Some(&tls)).await }
        });
        let trusting = super::ClientTls::from_pem(Some(pki.ca_pem.clone().into_bytes()), None);
        assert_eq!(list(&addr, "s3cret", Some(&trusting)).await, Ok(0));
        let e = list(&addr, "forged-7f3a", Some(&trusting))
            .await
            .unwrap_err();
        assert!(e.contains("bearer token"), "{e}");
        assert!(!e.contains("s3cret") && !e.contains("forged-7f3a"), "{e}");
        let other = super::ClientTls::from_pem(Some(rogue.ca_pem.clone().into_bytes()), None);
        assert!(
            list(&addr, "s3cret", Some(&other)).await.is_err(),
            "a client trusting another CA must fail"
        );
        let plain = format!("http://127.0.0.1:{}", addr.rsplit(':').next().unwrap());
        assert!(
            list(&plain, "s3cret", None).await.is_err(),
            "plaintext is refused by a TLS server"
        );
        server.abort();

        // mTLS: a client certificate signed by the client CA is required.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("https://127.0.0.1:{}", l.local_addr().unwrap().port());
        let tls = super::ServerTls::from_pem(cert, key, Some(pki.ca_pem.clone().into_bytes()));
        assert!(tls.is_mtls());
        let server = tokio::spawn({
            let ctl = controller().await;
            async move { super::serve_with(l, ctl, "s3cret", Some(&tls)).await }
        });
        let ca = Some(pki.ca_pem.clone().into_bytes());
        let good = super::ClientTls::from_pem(ca.clone(), Some(pki.leaf(&["cli"], true)));
        assert_eq!(list(&addr, "s3cret", Some(&good)).await, Ok(0));
        let none = super::ClientTls::from_pem(ca.clone(), None);
        assert!(
            list(&addr, "s3cret", Some(&none)).await.is_err(),
            "a client without a certificate is refused"
        );
        let forged = super::ClientTls::from_pem(ca, Some(rogue.leaf(&["cli"], true)));
        assert!(
            list(&addr, "s3cret", Some(&forged)).await.is_err(),
            "a certificate from another CA is refused"
        );
        let dbg = format!(
            "{good:?} {:?}",
            super::ServerTls::from_pem("c", "PRIVATE KEY BYTES", None)
        );
        assert!(
            !dbg.contains("PRIVATE KEY BYTES") && !dbg.contains("BEGIN"),
            "{dbg}"
        );
        server.abort();
    }

    #[test]
    fn tls_files_are_named_in_errors() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cert.pem"), "not pem").unwrap();
        let p = crate::config::ApiTlsParams {
            cert: "cert.pem".into(),
            key: "missing.pem".into(),
            client_ca: None,
        };
        let e = super::ServerTls::read(&p, d.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field `api.tls.cert`") && e.contains("holds no PEM data"),
            "{e}"
        );
    }
}
