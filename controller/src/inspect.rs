//! `predictive status`, `explain`, `audit` and `release`: read the controller's workloads,
//! decisions and audit log (and release a hold) through the API, or straight from a local
//! SQLite store.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::api::pb;
use crate::store::{sqlite::SqliteStore, AuditEvent, Decision, Store};

/// Errors of reading the controller's state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting to the API failed.
    #[error("cannot connect to the controller")]
    Connect(#[from] crate::api::ConnectError),
    /// The API answered with an error.
    #[error("the controller refused the call")]
    Call(#[from] tonic::Status),
    /// The local store failed.
    #[error("cannot read the store")]
    Store(#[from] crate::store::Error),
    /// The workload is unknown.
    #[error("workload `{0}` is not registered")]
    UnknownWorkload(String),
    /// The runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// Where to read from.
#[derive(Clone)]
pub enum Target {
    /// The gRPC API.
    Api {
        /// `http://HOST:PORT` or `https://HOST:PORT`.
        addr: String,
        /// Bearer token.
        token: String,
        /// TLS settings (CA, client certificate), when any.
        tls: Option<crate::api::ClientTls>,
    },
    /// A local SQLite store file.
    Db(PathBuf),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Api { addr, tls, .. } => f
                .debug_struct("Api")
                .field("addr", addr)
                .field("token", &"***")
                .field("tls", tls)
                .finish(),
            Target::Db(p) => f.debug_tuple("Db").field(p).finish(),
        }
    }
}

/// One workload and its latest decision.
#[derive(Debug, Clone)]
pub struct Row {
    /// Name.
    pub name: String,
    /// Budget in USD per hour (0 when none).
    pub budget: f64,
    /// Latest decision.
    pub latest: Option<Decision>,
}

fn from_pb(d: pb::Decision) -> Decision {
    Decision {
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

async fn rows(t: &Target) -> Result<Vec<Row>, Error> {
    match t {
        Target::Api { addr, token, tls } => {
            let mut c = crate::api::connect_with(addr, token, tls.as_ref()).await?;
            let r = c
                .list_workloads(pb::ListWorkloadsRequest {})
                .await?
                .into_inner();
            Ok(r.workloads
                .into_iter()
                .map(|w| Row {
                    name: w.name,
                    budget: w.budget_per_hour,
                    latest: w.latest.map(from_pb),
                })
                .collect())
        }
        Target::Db(p) => {
            let s = SqliteStore::open(p)?;
            let mut out = Vec::new();
            for (name, _) in s.workloads().await? {
                let latest = s.decisions(Some(&name), 1).await?.into_iter().next();
                let budget = s.budget(&name).await?.unwrap_or(0.0);
                out.push(Row {
                    name,
                    budget,
                    latest,
                });
            }
            Ok(out)
        }
    }
}

async fn decisions(t: &Target, workload: &str, limit: u32) -> Result<Vec<Decision>, Error> {
    match t {
        Target::Api { addr, token, tls } => {
            let mut c = crate::api::connect_with(addr, token, tls.as_ref()).await?;
            let r = c
                .list_decisions(pb::ListDecisionsRequest {
                    workload: workload.into(),
                    limit,
                })
                .await?
                .into_inner();
            Ok(r.decisions.into_iter().map(from_pb).collect())
        }
        Target::Db(p) => Ok(SqliteStore::open(p)?
            .decisions(Some(workload), limit)
            .await?),
    }
}

/// The newest `limit` entries of a workload's audit log (anomaly alerts, remediations,
/// releases), oldest first, one per line: `WORKLOAD @ TS ACTION: DETAIL`.
///
/// # Errors
/// [`Error::UnknownWorkload`] when the workload is neither registered nor in the audit log, or
/// [`Error`].
pub fn audit(t: &Target, workload: &str, limit: u32) -> Result<String, Error> {
    let events = block(async {
        match t {
            Target::Api { addr, token, tls } => {
                let mut c = crate::api::connect_with(addr, token, tls.as_ref()).await?;
                let r = c
                    .list_audit(pb::ListAuditRequest {
                        workload: workload.into(),
                        limit,
                    })
                    .await
                    .map_err(|s| not_found_is_unknown(s, workload))?
                    .into_inner();
                Ok(r.events
                    .into_iter()
                    .map(|e| AuditEvent {
                        ts: e.ts,
                        workload: e.workload,
                        action: e.action,
                        detail: e.detail,
                    })
                    .collect::<Vec<_>>())
            }
            Target::Db(p) => SqliteStore::open(p)?
                .known_audit_log(workload, limit)
                .await?
                .ok_or_else(|| Error::UnknownWorkload(workload.into())),
        }
    })?;
    if events.is_empty() {
        return Ok(format!("{workload}: nothing in the audit log yet\n"));
    }
    let mut s = String::new();
    for e in events {
        let _ = writeln!(s, "{} @ {} {}: {}", e.workload, e.ts, e.action, e.detail);
    }
    Ok(s)
}

/// An API answer of NOT_FOUND is the workload not being registered.
fn not_found_is_unknown(s: tonic::Status, workload: &str) -> Error {
    match s.code() {
        tonic::Code::NotFound => Error::UnknownWorkload(workload.into()),
        _ => Error::Call(s),
    }
}

/// Releases a workload's anomaly-remediation hold or halt, through the API (the running
/// controller) or on a local SQLite store (a stopped one: it reads the release at its start).
/// Returns one line saying what was released.
///
/// # Errors
/// [`Error::UnknownWorkload`] when the workload is not registered, or [`Error`].
pub fn release(t: &Target, workload: &str) -> Result<String, Error> {
    let was = block(async {
        match t {
            Target::Api { addr, token, tls } => {
                let mut c = crate::api::connect_with(addr, token, tls.as_ref()).await?;
                let r = c
                    .release_workload(pb::ReleaseWorkloadRequest {
                        name: workload.into(),
                    })
                    .await
                    .map_err(|s| not_found_is_unknown(s, workload))?
                    .into_inner();
                Ok(r.released.then_some(r.was))
            }
            Target::Db(p) => {
                let s = SqliteStore::open(p)?;
                if !s.has_workload(workload).await? {
                    return Err(Error::UnknownWorkload(workload.into()));
                }
                let now = crate::clock::Clock::now(&crate::clock::SystemClock);
                Ok(crate::remediate::release(&s, workload, now).await?)
            }
        }
    })?;
    Ok(match was {
        Some(was) => format!("{workload}: released (was {was})\n"),
        None => format!("{workload}: nothing held\n"),
    })
}

fn block<T>(f: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?
        .block_on(f)
}

/// The status table: one line per workload with its latest decision.
///
/// # Errors
/// [`Error`].
pub fn status(t: &Target) -> Result<String, Error> {
    let rows = block(rows(t))?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:>9} {:>8} {:>8} {:>10} {:>10} {:<14} {:>12}",
        "WORKLOAD", "TICK", "CURRENT", "DESIRED", "USAGE", "PLANNED", "ACTION", "$/H (BUDGET)"
    );
    for r in rows {
        match r.latest {
            Some(d) => {
                let _ = writeln!(
                    s,
                    "{:<20} {:>9} {:>8} {:>8} {:>10.3} {:>10.3} {:<14} {:>5.2} ({:.2})",
                    r.name,
                    d.ts,
                    d.current,
                    d.desired,
                    d.observed,
                    d.predicted,
                    d.action,
                    d.cost_per_hour,
                    r.budget
                );
            }
            None => {
                let _ = writeln!(s, "{:<20} {:>9}", r.name, "no decision yet");
            }
        }
    }
    Ok(s)
}

/// The latest `limit` decisions of a workload, each with its explanation.
///
/// # Errors
/// [`Error::UnknownWorkload`] when it has no decision and is not registered, or [`Error`].
pub fn explain(t: &Target, workload: &str, limit: u32) -> Result<String, Error> {
    let ds = block(decisions(t, workload, limit))?;
    if ds.is_empty() {
        let known = block(rows(t))?.iter().any(|r| r.name == workload);
        if !known {
            return Err(Error::UnknownWorkload(workload.into()));
        }
        return Ok(format!("{workload}: no decision yet\n"));
    }
    let mut s = String::new();
    for d in ds {
        let _ = writeln!(
            s,
            "{} @ {} [{}]: {} ({} -> {} instances, usage {:.3}, planned {:.3}, ${:.4}/h)\n    {}",
            d.workload,
            d.ts,
            d.mode,
            d.action,
            d.current,
            d.desired,
            d.observed,
            d.predicted,
            d.cost_per_hour,
            d.explanation
        );
    }
    Ok(s)
}
