//! Durable state: workloads, downsampled history, models, forecasts, shadow pool, decisions with
//! explanations, budgets, clones, action intents and leases.
//!
//! [`Store`] is the port; [`sqlite::SqliteStore`] (the default, one file in WAL mode) and
//! [`postgres::PostgresStore`] (several replicas, leader election by a lease table) implement it.
//! Both run numbered migrations on open.

pub mod conformance;
pub mod postgres;
pub mod sqlite;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening the database or running migrations failed.
    #[error("cannot open the store at {location}")]
    OpenFailed {
        /// File or host (never the password).
        location: String,
        /// The database error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A query failed.
    #[error("store query `{what}` failed")]
    QueryFailed {
        /// What was being done.
        what: &'static str,
        /// The database error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored value could not be decoded.
    #[error("stored {what} is corrupt")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A compare-and-swap write kept losing to other writers.
    #[error("{0}")]
    Conflict(String),
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One observation of usage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When.
    pub ts: Timestamp,
    /// Usage in the workload's resource units.
    pub value: f64,
}

/// A forecast made at `ts` for the time `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastRecord {
    /// The workload.
    pub workload: String,
    /// When the forecast was made.
    pub ts: Timestamp,
    /// The time it forecasts.
    pub target: Timestamp,
    /// Median.
    pub p50: f64,
    /// The planning quantile.
    pub upper: f64,
    /// Which quantile `upper` is.
    pub quantile: f64,
    /// The model that made it.
    pub model: String,
}

/// One decision of the loop, with its explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The workload.
    pub workload: String,
    /// Tick time.
    pub ts: Timestamp,
    /// `act`, `dry-run` or `forecast-only`.
    pub mode: String,
    /// Last observed usage.
    pub observed: f64,
    /// Planned-for demand (the forecast's upper quantile over the lead time).
    pub predicted: f64,
    /// Instances running before the decision.
    pub current: u32,
    /// Instances wanted.
    pub desired: u32,
    /// `launch N`, `terminate N` or `hold`.
    pub action: String,
    /// Hourly cost of `desired` instances in USD.
    pub cost_per_hour: f64,
    /// Why, in words.
    pub explanation: String,
}

/// An action the loop intends to take; written before the cloud call, closed after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// Idempotency token handed to the cloud.
    pub token: String,
    /// The workload.
    pub workload: String,
    /// Tick time.
    pub ts: Timestamp,
    /// `launch` or `terminate`.
    pub kind: String,
    /// How many instances.
    pub count: u32,
    /// `pending`, `done` or `failed`.
    pub state: String,
}

/// A clone registered through the API (a Terraform `predictive_clone`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloneRecord {
    /// Unique name.
    pub name: String,
    /// The workload it copies.
    pub source: String,
    /// Free-form JSON spec.
    pub spec: String,
}

/// One remediation or administrative event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When.
    pub ts: Timestamp,
    /// The workload.
    pub workload: String,
    /// What was done (`alert`, `isolate`, `stop`, `terminate`, ...).
    pub action: String,
    /// Details.
    pub detail: String,
}

/// The calibration of a workload's refit forecast ([`crate::refit::Tracker`]), stored so a
/// restart (or another replica taking the lease) goes on from it instead of from scratch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The workload.
    pub workload: String,
    /// Time of the refit whose forecast is calibrated (a calibration of an older refit is
    /// stale).
    pub refit_at: Timestamp,
    /// The refit's chosen model.
    pub model: String,
    /// Multiplier of the forecast's spread above the median.
    pub widen: f64,
    /// Outcomes of the judged observations, oldest first: `1` covered, `0` missed.
    pub hits: String,
    /// The calibrated planning quantile given for the latest judged observation.
    pub last_upper: Option<f64>,
    /// Time of the latest judged observation (later ones are replayed from the samples).
    pub judged_until: Timestamp,
}

/// The store port.
///
/// # Guarantees
/// Every write is idempotent on its key: writing the same sample, forecast, intent or workload twice
/// leaves one row, so a tick replayed after a crash does not duplicate state.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Inserts or replaces a workload's spec (JSON).
    async fn put_workload(&self, name: &str, spec: &str, now: Timestamp) -> Result<()>;
    /// Deletes a workload and its state; `false` when it did not exist.
    async fn delete_workload(&self, name: &str) -> Result<bool>;
    /// All workloads as `(name, spec)`, by name.
    async fn workloads(&self) -> Result<Vec<(String, String)>>;
    /// Whether a workload named `name` is stored (one index lookup).
    async fn has_workload(&self, name: &str) -> Result<bool>;
    /// Adds samples (one per `(workload, ts)`; a later write wins).
    async fn put_samples(&self, workload: &str, samples: &[Sample]) -> Result<()>;
    /// Samples with `ts >= since`, oldest first.
    async fn samples(&self, workload: &str, since: Timestamp) -> Result<Vec<Sample>>;
    /// Time of the workload's latest sample (one index lookup).
    async fn last_sample_at(&self, workload: &str) -> Result<Option<Timestamp>>;
    /// Deletes `workload`'s history older than `before`: its samples, forecasts, decisions and
    /// settled intents (a pending intent is kept whatever its age, and so is the audit log).
    /// Returns how many rows went.
    async fn prune(&self, workload: &str, before: Timestamp) -> Result<u64>;
    /// Saves a model's state (JSON).
    async fn put_model(&self, workload: &str, state: &str, now: Timestamp) -> Result<()>;
    /// A model's state.
    async fn model(&self, workload: &str) -> Result<Option<String>>;
    /// Records forecasts.
    async fn put_forecasts(&self, f: &[ForecastRecord]) -> Result<()>;
    /// Forecasts of a workload made at or after `since`, oldest first.
    async fn forecasts(&self, workload: &str, since: Timestamp) -> Result<Vec<ForecastRecord>>;
    /// Sets a workload's shadow pool size.
    async fn put_shadow(&self, workload: &str, size: u32, now: Timestamp) -> Result<()>;
    /// A workload's shadow pool size (0 when unknown).
    async fn shadow(&self, workload: &str) -> Result<u32>;
    /// Records decisions.
    async fn put_decisions(&self, d: &[Decision]) -> Result<()>;
    /// The latest `limit` decisions of a workload (all workloads when `None`), newest first.
    async fn decisions(&self, workload: Option<&str>, limit: u32) -> Result<Vec<Decision>>;
    /// Sets a workload's budget in USD per hour.
    async fn put_budget(&self, workload: &str, per_hour: f64) -> Result<()>;
    /// A workload's budget.
    async fn budget(&self, workload: &str) -> Result<Option<f64>>;
    /// Writes an intent (insert or update by token).
    async fn put_intent(&self, i: &Intent) -> Result<()>;
    /// Intents of a workload still `pending`.
    async fn pending_intents(&self, workload: &str) -> Result<Vec<Intent>>;
    /// Inserts or replaces a clone.
    async fn put_clone(&self, c: &CloneRecord) -> Result<()>;
    /// Deletes a clone; `false` when it did not exist.
    async fn delete_clone(&self, name: &str) -> Result<bool>;
    /// All clones.
    async fn clones(&self) -> Result<Vec<CloneRecord>>;
    /// Appends to the audit log.
    async fn audit(&self, e: &AuditEvent) -> Result<()>;
    /// The newest `limit` events of a workload's audit log, oldest first.
    async fn audit_log(&self, workload: &str, limit: u32) -> Result<Vec<AuditEvent>>;
    /// [`Self::audit_log`] of a workload that is registered or has entries in the log; `None`
    /// when it is neither (an unknown name).
    async fn known_audit_log(&self, workload: &str, limit: u32) -> Result<Option<Vec<AuditEvent>>> {
        let events = self.audit_log(workload, limit).await?;
        if events.is_empty() && !self.has_workload(workload).await? {
            return Ok(None);
        }
        Ok(Some(events))
    }
    /// Saves one piece of a workload's loop state (JSON) under `kind` (`shadow`, `remediation`,
    /// `refit`); a later write replaces it.
    async fn put_loop_state(
        &self,
        workload: &str,
        kind: &str,
        state: &str,
        now: Timestamp,
    ) -> Result<()>;
    /// A piece of a workload's loop state.
    async fn loop_state(&self, workload: &str, kind: &str) -> Result<Option<String>>;
    /// Replaces a piece of a workload's loop state only while it still reads `expected`
    /// (`None`: nothing stored), in one atomic statement. `false`, and nothing written, when
    /// another writer changed it first (an operator's `predictive release` during a tick).
    async fn swap_loop_state(
        &self,
        workload: &str,
        kind: &str,
        expected: Option<&str>,
        state: &str,
        now: Timestamp,
    ) -> Result<bool>;
    /// Takes or renews the lease on `workload` for `holder` until `now + ttl`.
    ///
    /// Returns `true` when `holder` holds the lease afterwards: it was free, expired or already
    /// `holder`'s. Only the holder runs the loop for that workload.
    async fn acquire_lease(
        &self,
        workload: &str,
        holder: &str,
        now: Timestamp,
        ttl: i64,
    ) -> Result<bool>;

    /// Every workload's piece of loop state of one `kind`, as `(workload, state)` by workload.
    async fn loop_states(&self, kind: &str) -> Result<Vec<(String, String)>>;
    /// Writes refit calibrations (insert or replace by workload).
    async fn put_calibrations(&self, c: &[Calibration]) -> Result<()>;
    /// A workload's stored refit calibration.
    async fn calibration(&self, workload: &str) -> Result<Option<Calibration>>;
    /// Saves one piece of state of the whole fleet (JSON, e.g. the cold-start clusters) under
    /// `kind`; a later write replaces it.
    async fn put_fleet_state(&self, kind: &str, state: &str, now: Timestamp) -> Result<()>;
    /// A piece of fleet state, with the time it was written.
    async fn fleet_state(&self, kind: &str) -> Result<Option<(String, Timestamp)>>;
    /// Takes or renews the leases on `workloads` for `holder` until `now + ttl` (as
    /// [`Store::acquire_lease`] for each, in one round trip where the backend allows it);
    /// whether `holder` holds each afterwards, in the same order.
    async fn acquire_leases(
        &self,
        workloads: &[&str],
        holder: &str,
        now: Timestamp,
        ttl: i64,
    ) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(workloads.len());
        for w in workloads {
            out.push(self.acquire_lease(w, holder, now, ttl).await?);
        }
        Ok(out)
    }
    /// Every workload's budget in USD per hour, by workload.
    async fn budgets(&self) -> Result<std::collections::HashMap<String, f64>>;

    /// Writes one tick's samples, forecasts, decisions and refit calibrations (one transaction
    /// where the backend allows it). The default body is the fallback for a new backend: one put
    /// per workload and kind, not atomic. SQLite and PostgreSQL override it with one transaction
    /// (SQLite) or one statement (PostgreSQL).
    async fn record_tick(
        &self,
        samples: &[(String, Sample)],
        forecasts: &[ForecastRecord],
        decisions: &[Decision],
        calibrations: &[Calibration],
    ) -> Result<()> {
        let mut by: std::collections::BTreeMap<&str, Vec<Sample>> =
            std::collections::BTreeMap::new();
        for (w, s) in samples {
            by.entry(w.as_str()).or_default().push(*s);
        }
        for (w, xs) in by {
            self.put_samples(w, &xs).await?;
        }
        self.put_forecasts(forecasts).await?;
        self.put_decisions(decisions).await?;
        self.put_calibrations(calibrations).await
    }
}

pub(crate) fn query_err<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> Error {
    move |e| Error::QueryFailed {
        what,
        source: Box::new(e),
    }
}

/// The tables that hold a workload's state beside its row in `workloads` (keyed by a `workload`
/// column): deleting a workload deletes its rows in all of them, in one transaction or statement.
pub(crate) const WORKLOAD_STATE_TABLES: [&str; 7] = [
    "samples",
    "models",
    "forecasts",
    "shadow_pool",
    "budgets",
    "loop_state",
    "refit_calibration",
];

/// The schema, one migration per entry; both backends run them in order (SQL common to both).
pub(crate) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE workloads (name TEXT PRIMARY KEY, spec TEXT NOT NULL, updated_at BIGINT NOT NULL);
     CREATE TABLE samples (workload TEXT NOT NULL, ts BIGINT NOT NULL, value DOUBLE PRECISION NOT NULL, PRIMARY KEY (workload, ts));
     CREATE TABLE models (workload TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at BIGINT NOT NULL);
     CREATE TABLE forecasts (workload TEXT NOT NULL, ts BIGINT NOT NULL, target BIGINT NOT NULL, p50 DOUBLE PRECISION NOT NULL,
        upper DOUBLE PRECISION NOT NULL, quantile DOUBLE PRECISION NOT NULL, model TEXT NOT NULL, PRIMARY KEY (workload, ts));
     CREATE TABLE shadow_pool (workload TEXT PRIMARY KEY, size BIGINT NOT NULL, updated_at BIGINT NOT NULL);
     CREATE TABLE decisions (workload TEXT NOT NULL, ts BIGINT NOT NULL, mode TEXT NOT NULL, observed DOUBLE PRECISION NOT NULL,
        predicted DOUBLE PRECISION NOT NULL, current BIGINT NOT NULL, desired BIGINT NOT NULL, action TEXT NOT NULL,
        cost_per_hour DOUBLE PRECISION NOT NULL, explanation TEXT NOT NULL, PRIMARY KEY (workload, ts));
     CREATE TABLE budgets (workload TEXT PRIMARY KEY, per_hour DOUBLE PRECISION NOT NULL);
     CREATE TABLE clones (name TEXT PRIMARY KEY, source TEXT NOT NULL, spec TEXT NOT NULL);
     CREATE TABLE intents (token TEXT PRIMARY KEY, workload TEXT NOT NULL, ts BIGINT NOT NULL, kind TEXT NOT NULL,
        count BIGINT NOT NULL, state TEXT NOT NULL);
     CREATE INDEX intents_pending ON intents (workload, state);
     CREATE TABLE leases (workload TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    "CREATE TABLE audit (workload TEXT NOT NULL, ts BIGINT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL,
        PRIMARY KEY (workload, ts, action))",
    "CREATE TABLE loop_state (workload TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, updated_at BIGINT NOT NULL,
        PRIMARY KEY (workload, kind))",
    "CREATE TABLE refit_calibration (workload TEXT PRIMARY KEY, refit_at BIGINT NOT NULL, model TEXT NOT NULL,
        widen DOUBLE PRECISION NOT NULL, hits TEXT NOT NULL, last_upper DOUBLE PRECISION, judged_until BIGINT NOT NULL);
     CREATE TABLE fleet_state (kind TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at BIGINT NOT NULL)",
];
