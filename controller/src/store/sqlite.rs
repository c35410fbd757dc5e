//! The default store: one SQLite file in WAL mode.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    query_err, AuditEvent, Calibration, CloneRecord, Decision, Error, ForecastRecord, Intent,
    Result, Sample, Store, MIGRATIONS,
};
use crate::clock::Timestamp;

/// A [`Store`] in one SQLite file (WAL, `synchronous=NORMAL`), or in memory.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path` and runs pending migrations.
    ///
    /// # Errors
    /// [`Error::OpenFailed`] when the file cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self> {
        let open = |e: rusqlite::Error| Error::OpenFailed {
            location: path.display().to_string(),
            source: Box::new(e),
        };
        let conn = Connection::open(path).map_err(open)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open)?;
        Self::migrate(conn, &path.display().to_string())
    }

    /// An in-memory database (tests, benchmarks).
    ///
    /// # Errors
    /// [`Error::OpenFailed`] when SQLite cannot start.
    pub fn in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|e| Error::OpenFailed {
            location: ":memory:".into(),
            source: Box::new(e),
        })?;
        Self::migrate(conn, ":memory:")
    }

    fn migrate(mut conn: Connection, location: &str) -> Result<Self> {
        let open = |e: rusqlite::Error| Error::OpenFailed {
            location: location.to_string(),
            source: Box::new(e),
        };
        let tx = conn.transaction().map_err(open)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .map_err(open)?;
        let have: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .map_err(open)?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(have as usize) {
            tx.execute_batch(m).map_err(open)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [i as i64 + 1],
            )
            .map_err(open)?;
        }
        tx.commit().map_err(open)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// The schema version after migrations.
    ///
    /// # Errors
    /// [`Error::QueryFailed`].
    pub fn schema_version(&self) -> Result<i64> {
        self.lock()
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .map_err(query_err("schema_version"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on drop).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Takes or renews one lease (`?1` workload, `?2` holder, `?3` expiry, `?4` now).
const LEASE_SQL: &str = "INSERT INTO leases (workload, holder, expires_at) VALUES (?1, ?2, ?3)
     ON CONFLICT (workload) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
     WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4";

fn put_calibrations(tx: &rusqlite::Transaction<'_>, cal: &[Calibration]) -> rusqlite::Result<()> {
    if cal.is_empty() {
        return Ok(());
    }
    let mut st = tx.prepare_cached(
        "INSERT OR REPLACE INTO refit_calibration (workload, refit_at, model, widen, hits, last_upper, judged_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for c in cal {
        st.execute(params![
            c.workload,
            c.refit_at,
            c.model,
            c.widen,
            c.hits,
            c.last_upper,
            c.judged_until
        ])?;
    }
    Ok(())
}

fn put_sample_rows<'a>(
    tx: &rusqlite::Transaction<'_>,
    rows: impl IntoIterator<Item = (&'a str, &'a Sample)>,
) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT OR REPLACE INTO samples (workload, ts, value) VALUES (?1, ?2, ?3)",
    )?;
    for (w, s) in rows {
        st.execute(params![w, s.ts, s.value])?;
    }
    Ok(())
}

fn put_forecast_rows(tx: &rusqlite::Transaction<'_>, f: &[ForecastRecord]) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT OR REPLACE INTO forecasts (workload, ts, target, p50, upper, quantile, model) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for r in f {
        st.execute(params![
            r.workload, r.ts, r.target, r.p50, r.upper, r.quantile, r.model
        ])?;
    }
    Ok(())
}

fn put_decision_rows(tx: &rusqlite::Transaction<'_>, d: &[Decision]) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT OR REPLACE INTO decisions (workload, ts, mode, observed, predicted, current, desired, action, cost_per_hour, explanation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for x in d {
        st.execute(params![
            x.workload,
            x.ts,
            x.mode,
            x.observed,
            x.predicted,
            x.current,
            x.desired,
            x.action,
            x.cost_per_hour,
            x.explanation
        ])?;
    }
    Ok(())
}

fn decision_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Decision> {
    Ok(Decision {
        workload: r.get(0)?,
        ts: r.get(1)?,
        mode: r.get(2)?,
        observed: r.get(3)?,
        predicted: r.get(4)?,
        current: r.get::<_, i64>(5)? as u32,
        desired: r.get::<_, i64>(6)? as u32,
        action: r.get(7)?,
        cost_per_hour: r.get(8)?,
        explanation: r.get(9)?,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn put_workload(&self, name: &str, spec: &str, now: Timestamp) -> Result<()> {
        self.lock()
            .execute(
                "INSERT INTO workloads (name, spec, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                params![name, spec, now],
            )
            .map_err(query_err("put_workload"))?;
        Ok(())
    }

    async fn delete_workload(&self, name: &str) -> Result<bool> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(query_err("delete_workload"))?;
        let n = tx
            .execute("DELETE FROM workloads WHERE name = ?1", [name])
            .map_err(query_err("delete_workload"))?;
        for t in super::WORKLOAD_STATE_TABLES {
            tx.execute(&format!("DELETE FROM {t} WHERE workload = ?1"), [name])
                .map_err(query_err("delete_workload"))?;
        }
        tx.commit().map_err(query_err("delete_workload"))?;
        Ok(n > 0)
    }

    async fn workloads(&self) -> Result<Vec<(String, String)>> {
        let c = self.lock();
        let mut st = c
            .prepare("SELECT name, spec FROM workloads ORDER BY name")
            .map_err(query_err("workloads"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(query_err("workloads"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(query_err("workloads"))
    }

    async fn has_workload(&self, name: &str) -> Result<bool> {
        self.lock()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM workloads WHERE name = ?1)",
                [name],
                |r| r.get(0),
            )
            .map_err(query_err("has_workload"))
    }

    async fn put_samples(&self, workload: &str, samples: &[Sample]) -> Result<()> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(query_err("put_samples"))?;
        put_sample_rows(&tx, samples.iter().map(|s| (workload, s)))
            .map_err(query_err("put_samples"))?;
        tx.commit().map_err(query_err("put_samples"))
    }

    async fn samples(&self, workload: &str, since: Timestamp) -> Result<Vec<Sample>> {
        let c = self.lock();
        let mut st = c
            .prepare_cached(
                "SELECT ts, value FROM samples WHERE workload = ?1 AND ts >= ?2 ORDER BY ts",
            )
            .map_err(query_err("samples"))?;
        let rows = st
            .query_map(params![workload, since], |r| {
                Ok(Sample {
                    ts: r.get(0)?,
                    value: r.get(1)?,
                })
            })
            .map_err(query_err("samples"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(query_err("samples"))
    }

    async fn last_sample_at(&self, workload: &str) -> Result<Option<Timestamp>> {
        self.lock()
            .query_row(
                "SELECT MAX(ts) FROM samples WHERE workload = ?1",
                [workload],
                |r| r.get(0),
            )
            .map_err(query_err("last_sample_at"))
    }

    async fn prune(&self, workload: &str, before: Timestamp) -> Result<u64> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(query_err("prune"))?;
        let mut n = 0;
        for sql in [
            "DELETE FROM samples WHERE workload = ?1 AND ts < ?2",
            "DELETE FROM forecasts WHERE workload = ?1 AND ts < ?2",
            "DELETE FROM decisions WHERE workload = ?1 AND ts < ?2",
            "DELETE FROM intents WHERE workload = ?1 AND ts < ?2 AND state <> 'pending'",
        ] {
            n += tx
                .execute(sql, params![workload, before])
                .map_err(query_err("prune"))?;
        }
        tx.commit().map_err(query_err("prune"))?;
        Ok(n as u64)
    }

    async fn put_model(&self, workload: &str, state: &str, now: Timestamp) -> Result<()> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO models (workload, state, updated_at) VALUES (?1, ?2, ?3)",
                params![workload, state, now],
            )
            .map_err(query_err("put_model"))?;
        Ok(())
    }

    async fn model(&self, workload: &str) -> Result<Option<String>> {
        self.lock()
            .query_row(
                "SELECT state FROM models WHERE workload = ?1",
                [workload],
                |r| r.get(0),
            )
            .optional()
            .map_err(query_err("model"))
    }

    async fn put_forecasts(&self, f: &[ForecastRecord]) -> Result<()> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(query_err("put_forecasts"))?;
        put_forecast_rows(&tx, f).map_err(query_err("put_forecasts"))?;
        tx.commit().map_err(query_err("put_forecasts"))
    }

    async fn forecasts(&self, workload: &str, since: Timestamp) -> Result<Vec<ForecastRecord>> {
        let c = self.lock();
        let mut st = c
            .prepare_cached(
                "SELECT workload, ts, target, p50, upper, quantile, model FROM forecasts WHERE workload = ?1 AND ts >= ?2 ORDER BY ts",
            )
            .map_err(query_err("forecasts"))?;
        let rows = st
            .query_map(params![workload, since], |r| {
                Ok(ForecastRecord {
                    workload: r.get(0)?,
                    ts: r.get(1)?,
                    target: r.get(2)?,
                    p50: r.get(3)?,
                    upper: r.get(4)?,
                    quantile: r.get(5)?,
                    model: r.get(6)?,
                })
            })
            .map_err(query_err("forecasts"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(query_err("forecasts"))
    }

    async fn put_shadow(&self, workload: &str, size: u32, now: Timestamp) -> Result<()> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO shadow_pool (workload, size, updated_at) VALUES (?1, ?2, ?3)",
                params![workload, size, now],
            )
            .map_err(query_err("put_shadow"))?;
        Ok(())
    }

    async fn put_loop_state(
        &self,
        workload: &str,
        kind: &str,
        state: &str,
        now: Timestamp,
    ) -> Result<()> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO loop_state (workload, kind, state, updated_at) VALUES (?1, ?2, ?3, ?4)",
                params![workload, kind, state, now],
            )
            .map_err(query_err("put_loop_state"))?;
        Ok(())
    }

    async fn swap_loop_state(
        &self,
        workload: &str,
        kind: &str,
        expected: Option<&str>,
        state: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let db = self.lock();
        let changed = match expected {
            Some(old) => db.execute(
                "UPDATE loop_state SET state = ?3, updated_at = ?4 WHERE workload = ?1 AND kind = ?2 AND state = ?5",
                params![workload, kind, state, now, old],
            ),
            None => db.execute(
                "INSERT INTO loop_state (workload, kind, state, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workload, kind) DO NOTHING",
                params![workload, kind, state, now],
            ),
        }
        .map_err(query_err("swap_loop_state"))?;
        Ok(changed == 1)
    }

    async fn loop_state(&self, workload: &str, kind: &str) -> Result<Option<String>> {
        self.lock()
            .query_row(
                "SELECT state FROM loop_state WHERE workload = ?1 AND kind = ?2",
                [workload, kind],
                |r| r.get(0),
            )
            .optional()
            .map_err(query_err("loop_state"))
    }

    async fn shadow(&self, workload: &str) -> Result<u32> {
        let v: Option<i64> = self
            .lock()
            .query_row(
                "SELECT size FROM shadow_pool WHERE workload = ?1",
                [workload],
                |r| r.get(0),
            )
            .optional()
            .map_err(query_err("shadow"))?;
        Ok(v.unwrap_or(0) as u32)
    }

    async fn put_decisions(&self, d: &[Decision]) -> Result<()> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(query_err("put_decisions"))?;
        put_decision_rows(&tx, d).map_err(query_err("put_decisions"))?;
        tx.commit().map_err(query_err("put_decisions"))
    }

    async fn decisions(&self, workload: Option<&str>, limit: u32) -> Result<Vec<Decision>> {
        let c = self.lock();
        let cols = "workload, ts, mode, observed, predicted, current, desired, action, cost_per_hour, explanation";
        let rows = match workload {
            Some(w) => {
                let mut st = c
                    .prepare_cached(&format!(
                        "SELECT {cols} FROM decisions WHERE workload = ?1 ORDER BY ts DESC LIMIT ?2"
                    ))
                    .map_err(query_err("decisions"))?;
                let r = st
                    .query_map(params![w, limit], decision_row)
                    .map_err(query_err("decisions"))?;
                r.collect::<rusqlite::Result<Vec<_>>>()
            }
            None => {
                let mut st = c
                    .prepare_cached(&format!(
                        "SELECT {cols} FROM decisions ORDER BY ts DESC, workload LIMIT ?1"
                    ))
                    .map_err(query_err("decisions"))?;
                let r = st
                    .query_map(params![limit], decision_row)
                    .map_err(query_err("decisions"))?;
                r.collect::<rusqlite::Result<Vec<_>>>()
            }
        };
        rows.map_err(query_err("decisions"))
    }

    async fn put_budget(&self, workload: &str, per_hour: f64) -> Result<()> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO budgets (workload, per_hour) VALUES (?1, ?2)",
                params![workload, per_hour],
            )
            .map_err(query_err("put_budget"))?;
        Ok(())
    }

    async fn budget(&self, workload: &str) -> Result<Option<f64>> {
        self.lock()
            .query_row(
                "SELECT per_hour FROM budgets WHERE workload = ?1",
                [workload],
                |r| r.get(0),
            )
            .optional()
            .map_err(query_err("budget"))
    }

    async fn put_intent(&self, i: &Intent) -> Result<()> {
        self.lock()
            .execute(
                "INSERT INTO intents (token, workload, ts, kind, count, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (token) DO UPDATE SET state = excluded.state",
                params![i.token, i.workload, i.ts, i.kind, i.count, i.state],
            )
            .map_err(query_err("put_intent"))?;
        Ok(())
    }

    async fn pending_intents(&self, workload: &str) -> Result<Vec<Intent>> {
        let c = self.lock();
        let mut st = c
            .prepare_cached(
                "SELECT token, workload, ts, kind, count, state FROM intents WHERE workload = ?1 AND state = 'pending' ORDER BY ts",
            )
            .map_err(query_err("pending_intents"))?;
        let rows = st
            .query_map([workload], |r| {
                Ok(Intent {
                    token: r.get(0)?,
                    workload: r.get(1)?,
                    ts: r.get(2)?,
                    kind: r.get(3)?,
                    count: r.get::<_, i64>(4)? as u32,
                    state: r.get(5)?,
                })
            })
            .map_err(query_err("pending_intents"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(query_err("pending_intents"))
    }

    async fn put_clone(&self, c: &CloneRecord) -> Result<()> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO clones (name, source, spec) VALUES (?1, ?2, ?3)",
                params![c.name, c.source, c.spec],
            )
            .map_err(query_err("put_clone"))?;
        Ok(())
    }

    async fn delete_clone(&self, name: &str) -> Result<bool> {
        let n = self
            .lock()
            .execute("DELETE FROM clones WHERE name = ?1", [name])
            .map_err(query_err("delete_clone"))?;
        Ok(n > 0)
    }

    async fn clones(&self) -> Result<Vec<CloneRecord>> {
        let c = self.lock();
        let mut st = c
            .prepare_cached("SELECT name, source, spec FROM clones ORDER BY name")
            .map_err(query_err("clones"))?;
        let rows = st
            .query_map([], |r| {
                Ok(CloneRecord {
                    name: r.get(0)?,
                    source: r.get(1)?,
                    spec: r.get(2)?,
                })
            })
            .map_err(query_err("clones"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(query_err("clones"))
    }

    async fn audit(&self, e: &AuditEvent) -> Result<()> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO audit (workload, ts, action, detail) VALUES (?1, ?2, ?3, ?4)",
                params![e.workload, e.ts, e.action, e.detail],
            )
            .map_err(query_err("audit"))?;
        Ok(())
    }

    async fn audit_log(&self, workload: &str, limit: u32) -> Result<Vec<AuditEvent>> {
        let c = self.lock();
        let mut st = c
            .prepare_cached(
                "SELECT ts, workload, action, detail FROM (
                   SELECT ts, workload, action, detail FROM audit WHERE workload = ?1
                   ORDER BY ts DESC, action DESC LIMIT ?2)
                 ORDER BY ts, action",
            )
            .map_err(query_err("audit_log"))?;
        let rows = st
            .query_map(params![workload, i64::from(limit)], |r| {
                Ok(AuditEvent {
                    ts: r.get(0)?,
                    workload: r.get(1)?,
                    action: r.get(2)?,
                    detail: r.get(3)?,
                })
            })
            .map_err(query_err("audit_log"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(query_err("audit_log"))
    }

    async fn record_tick(
        &self,
        samples: &[(String, Sample)],
        forecasts: &[ForecastRecord],
        decisions: &[Decision],
        calibrations: &[Calibration],
    ) -> Result<()> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(query_err("record_tick"))?;
        put_calibrations(&tx, calibrations).map_err(query_err("record_tick"))?;
        put_sample_rows(&tx, samples.iter().map(|(w, s)| (w.as_str(), s)))
            .map_err(query_err("record_tick"))?;
        put_forecast_rows(&tx, forecasts).map_err(query_err("record_tick"))?;
        put_decision_rows(&tx, decisions).map_err(query_err("record_tick"))?;
        tx.commit().map_err(query_err("record_tick"))
    }

    async fn loop_states(&self, kind: &str) -> Result<Vec<(String, String)>> {
        let c = self.lock();
        let mut st = c
            .prepare_cached(
                "SELECT workload, state FROM loop_state WHERE kind = ?1 ORDER BY workload",
            )
            .map_err(query_err("loop_states"))?;
        let rows = st
            .query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(query_err("loop_states"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(query_err("loop_states"))
    }

    async fn put_calibrations(&self, cal: &[Calibration]) -> Result<()> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(query_err("put_calibrations"))?;
        put_calibrations(&tx, cal).map_err(query_err("put_calibrations"))?;
        tx.commit().map_err(query_err("put_calibrations"))
    }

    async fn calibration(&self, workload: &str) -> Result<Option<Calibration>> {
        self.lock()
            .query_row(
                "SELECT workload, refit_at, model, widen, hits, last_upper, judged_until FROM refit_calibration WHERE workload = ?1",
                [workload],
                |r| {
                    Ok(Calibration {
                        workload: r.get(0)?,
                        refit_at: r.get(1)?,
                        model: r.get(2)?,
                        widen: r.get(3)?,
                        hits: r.get(4)?,
                        last_upper: r.get(5)?,
                        judged_until: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(query_err("calibration"))
    }

    async fn put_fleet_state(&self, kind: &str, state: &str, now: Timestamp) -> Result<()> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO fleet_state (kind, state, updated_at) VALUES (?1, ?2, ?3)",
                params![kind, state, now],
            )
            .map_err(query_err("put_fleet_state"))?;
        Ok(())
    }

    async fn fleet_state(&self, kind: &str) -> Result<Option<(String, Timestamp)>> {
        self.lock()
            .query_row(
                "SELECT state, updated_at FROM fleet_state WHERE kind = ?1",
                [kind],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(query_err("fleet_state"))
    }

    async fn acquire_leases(
        &self,
        workloads: &[&str],
        holder: &str,
        now: Timestamp,
        ttl: i64,
    ) -> Result<Vec<bool>> {
        let mut c = self.lock();
        let tx = c.transaction().map_err(query_err("acquire_leases"))?;
        let mut out = Vec::with_capacity(workloads.len());
        {
            let mut st = tx
                .prepare_cached(LEASE_SQL)
                .map_err(query_err("acquire_leases"))?;
            for w in workloads {
                let n = st
                    .execute(params![w, holder, now + ttl, now])
                    .map_err(query_err("acquire_leases"))?;
                out.push(n > 0);
            }
        }
        tx.commit().map_err(query_err("acquire_leases"))?;
        Ok(out)
    }

    async fn budgets(&self) -> Result<std::collections::HashMap<String, f64>> {
        let c = self.lock();
        let mut st = c
            .prepare_cached("SELECT workload, per_hour FROM budgets")
            .map_err(query_err("budgets"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(query_err("budgets"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(query_err("budgets"))
    }

    async fn acquire_lease(
        &self,
        workload: &str,
        holder: &str,
        now: Timestamp,
        ttl: i64,
    ) -> Result<bool> {
        let n = self
            .lock()
            .prepare_cached(LEASE_SQL)
            .and_then(|mut st| st.execute(params![workload, holder, now + ttl, now]))
            .map_err(query_err("acquire_lease"))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    #[tokio::test]
    async fn sqlite_passes_the_store_conformance_suite() {
        let s = SqliteStore::in_memory().unwrap();
        conformance::run(&s).await;
    }

    #[tokio::test]
    async fn reopening_a_file_keeps_state_and_does_not_rerun_migrations() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        {
            let s = SqliteStore::open(&p).unwrap();
            s.put_workload("web", "{}", 1).await.unwrap();
        }
        let s = SqliteStore::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(
            s.workloads().await.unwrap(),
            vec![("web".to_string(), "{}".to_string())]
        );
        let mode: String = s
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
