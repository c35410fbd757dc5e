//! PostgreSQL store, for several controller replicas sharing one database.
//!
//! Replicas elect one active loop per workload through the `leases` table
//! ([`Store::acquire_lease`]); migrations run under an advisory lock so replicas starting together
//! migrate once.

use tokio_postgres::{Client, NoTls, Row};

use super::{
    query_err, AuditEvent, Calibration, CloneRecord, Decision, Error, ForecastRecord, Intent,
    Result, Sample, Store, MIGRATIONS,
};
use crate::clock::Timestamp;

/// Advisory lock key that serialises migrations ("predictiv" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x7072_6564_6963_7469;

/// A [`Store`] on PostgreSQL.
#[derive(Debug)]
pub struct PostgresStore {
    client: Client,
}

/// The connection string with any password removed, for error messages.
fn redact(url: &str) -> String {
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
        .split('@')
        .next_back()
        .unwrap_or_default()
        .to_string()
}

impl PostgresStore {
    /// Connects with a libpq-style string (`host=... port=... user=... dbname=...`) and migrates.
    ///
    /// # Errors
    /// [`Error::OpenFailed`] naming the host (never the password).
    pub async fn connect(url: &str) -> Result<Self> {
        let open = |e: tokio_postgres::Error| Error::OpenFailed {
            location: redact(url),
            source: Box::new(e),
        };
        let (mut client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(open)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::error!(error = %e, "postgres connection closed");
            }
        });
        let tx = client.transaction().await.map_err(open)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(open)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await
            .map_err(open)?;
        let have: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await
            .map_err(open)?
            .get(0);
        for (i, m) in MIGRATIONS.iter().enumerate().skip(have as usize) {
            tx.batch_execute(m).await.map_err(open)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&(i as i64 + 1)],
            )
            .await
            .map_err(open)?;
        }
        tx.commit().await.map_err(open)?;
        Ok(Self { client })
    }
}

fn decision_row(r: &Row) -> Decision {
    Decision {
        workload: r.get(0),
        ts: r.get(1),
        mode: r.get(2),
        observed: r.get(3),
        predicted: r.get(4),
        current: r.get::<_, i64>(5) as u32,
        desired: r.get::<_, i64>(6) as u32,
        action: r.get(7),
        cost_per_hour: r.get(8),
        explanation: r.get(9),
    }
}

/// The rows of `xs` whose key does not come again later in `xs`: one statement may not upsert
/// a row twice, and the last write of a key is the one that stands (as in SQLite's
/// `INSERT OR REPLACE`).
fn last_per_key<T, K: std::hash::Hash + Eq>(xs: &[T], key: impl Fn(&T) -> K) -> Vec<&T> {
    let last: std::collections::HashMap<K, usize> =
        xs.iter().enumerate().map(|(i, x)| (key(x), i)).collect();
    xs.iter()
        .enumerate()
        .filter(|(i, x)| last.get(&key(x)) == Some(i))
        .map(|(_, x)| x)
        .collect()
}

/// Upserts samples, forecasts, decisions and refit calibrations in one statement (data-modifying
/// common table expressions over `UNNEST`ed arrays): one round trip however many workloads a
/// tick writes, and all of it or nothing.
const BATCH_SQL: &str = "WITH s AS (
    INSERT INTO samples (workload, ts, value)
    SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::DOUBLE PRECISION[])
    ON CONFLICT (workload, ts) DO UPDATE SET value = excluded.value
), f AS (
    INSERT INTO forecasts (workload, ts, target, p50, upper, quantile, model)
    SELECT * FROM UNNEST($4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::DOUBLE PRECISION[],
                         $8::DOUBLE PRECISION[], $9::DOUBLE PRECISION[], $10::TEXT[])
    ON CONFLICT (workload, ts) DO UPDATE SET target = excluded.target, p50 = excluded.p50,
        upper = excluded.upper, quantile = excluded.quantile, model = excluded.model
), d AS (
    INSERT INTO decisions (workload, ts, mode, observed, predicted, current, desired, action,
                           cost_per_hour, explanation)
    SELECT * FROM UNNEST($11::TEXT[], $12::BIGINT[], $13::TEXT[], $14::DOUBLE PRECISION[],
                         $15::DOUBLE PRECISION[], $16::BIGINT[], $17::BIGINT[], $18::TEXT[],
                         $19::DOUBLE PRECISION[], $20::TEXT[])
    ON CONFLICT (workload, ts) DO UPDATE SET mode = excluded.mode, observed = excluded.observed,
        predicted = excluded.predicted, current = excluded.current, desired = excluded.desired,
        action = excluded.action, cost_per_hour = excluded.cost_per_hour,
        explanation = excluded.explanation
)
INSERT INTO refit_calibration (workload, refit_at, model, widen, hits, last_upper, judged_until)
SELECT * FROM UNNEST($21::TEXT[], $22::BIGINT[], $23::TEXT[], $24::DOUBLE PRECISION[], $25::TEXT[],
                     $26::DOUBLE PRECISION[], $27::BIGINT[])
ON CONFLICT (workload) DO UPDATE SET refit_at = excluded.refit_at, model = excluded.model,
    widen = excluded.widen, hits = excluded.hits, last_upper = excluded.last_upper,
    judged_until = excluded.judged_until";

impl PostgresStore {
    /// Writes one batch with [`BATCH_SQL`]; `what` names the operation in errors.
    async fn write_batch(
        &self,
        what: &'static str,
        samples: &[(String, Sample)],
        forecasts: &[ForecastRecord],
        decisions: &[Decision],
        calibrations: &[Calibration],
    ) -> Result<()> {
        if samples.is_empty()
            && forecasts.is_empty()
            && decisions.is_empty()
            && calibrations.is_empty()
        {
            return Ok(());
        }
        let s = last_per_key(samples, |(w, x)| (w.clone(), x.ts));
        let f = last_per_key(forecasts, |r| (r.workload.clone(), r.ts));
        let d = last_per_key(decisions, |x| (x.workload.clone(), x.ts));
        let c = last_per_key(calibrations, |c| c.workload.clone());
        let s_w: Vec<&str> = s.iter().map(|(w, _)| w.as_str()).collect();
        let s_ts: Vec<i64> = s.iter().map(|(_, x)| x.ts).collect();
        let s_v: Vec<f64> = s.iter().map(|(_, x)| x.value).collect();
        let f_w: Vec<&str> = f.iter().map(|r| r.workload.as_str()).collect();
        let f_ts: Vec<i64> = f.iter().map(|r| r.ts).collect();
        let f_target: Vec<i64> = f.iter().map(|r| r.target).collect();
        let f_p50: Vec<f64> = f.iter().map(|r| r.p50).collect();
        let f_upper: Vec<f64> = f.iter().map(|r| r.upper).collect();
        let f_q: Vec<f64> = f.iter().map(|r| r.quantile).collect();
        let f_model: Vec<&str> = f.iter().map(|r| r.model.as_str()).collect();
        let d_w: Vec<&str> = d.iter().map(|x| x.workload.as_str()).collect();
        let d_ts: Vec<i64> = d.iter().map(|x| x.ts).collect();
        let d_mode: Vec<&str> = d.iter().map(|x| x.mode.as_str()).collect();
        let d_obs: Vec<f64> = d.iter().map(|x| x.observed).collect();
        let d_pred: Vec<f64> = d.iter().map(|x| x.predicted).collect();
        let d_cur: Vec<i64> = d.iter().map(|x| i64::from(x.current)).collect();
        let d_des: Vec<i64> = d.iter().map(|x| i64::from(x.desired)).collect();
        let d_action: Vec<&str> = d.iter().map(|x| x.action.as_str()).collect();
        let d_cost: Vec<f64> = d.iter().map(|x| x.cost_per_hour).collect();
        let d_expl: Vec<&str> = d.iter().map(|x| x.explanation.as_str()).collect();
        let c_w: Vec<&str> = c.iter().map(|c| c.workload.as_str()).collect();
        let c_at: Vec<i64> = c.iter().map(|c| c.refit_at).collect();
        let c_model: Vec<&str> = c.iter().map(|c| c.model.as_str()).collect();
        let c_widen: Vec<f64> = c.iter().map(|c| c.widen).collect();
        let c_hits: Vec<&str> = c.iter().map(|c| c.hits.as_str()).collect();
        let c_last: Vec<Option<f64>> = c.iter().map(|c| c.last_upper).collect();
        let c_until: Vec<i64> = c.iter().map(|c| c.judged_until).collect();
        self.client
            .execute(
                BATCH_SQL,
                &[
                    &s_w, &s_ts, &s_v, &f_w, &f_ts, &f_target, &f_p50, &f_upper, &f_q, &f_model,
                    &d_w, &d_ts, &d_mode, &d_obs, &d_pred, &d_cur, &d_des, &d_action, &d_cost,
                    &d_expl, &c_w, &c_at, &c_model, &c_widen, &c_hits, &c_last, &c_until,
                ],
            )
            .await
            .map_err(query_err(what))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn put_workload(&self, name: &str, spec: &str, now: Timestamp) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO workloads (name, spec, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                &[&name, &spec, &now],
            )
            .await
            .map_err(query_err("put_workload"))?;
        Ok(())
    }

    async fn delete_workload(&self, name: &str) -> Result<bool> {
        // One statement, so all of it or nothing (and one round trip): a data-modifying `WITH`
        // clause per table of the workload's state.
        let state: Vec<String> = super::WORKLOAD_STATE_TABLES
            .iter()
            .enumerate()
            .map(|(i, t)| format!("d{i} AS (DELETE FROM {t} WHERE workload = $1)"))
            .collect();
        let sql = format!(
            "WITH {} DELETE FROM workloads WHERE name = $1",
            state.join(", ")
        );
        let n = self
            .client
            .execute(&sql, &[&name])
            .await
            .map_err(query_err("delete_workload"))?;
        Ok(n > 0)
    }

    async fn workloads(&self) -> Result<Vec<(String, String)>> {
        let rows = self
            .client
            .query("SELECT name, spec FROM workloads ORDER BY name", &[])
            .await
            .map_err(query_err("workloads"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn has_workload(&self, name: &str) -> Result<bool> {
        let row = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM workloads WHERE name = $1)",
                &[&name],
            )
            .await
            .map_err(query_err("has_workload"))?;
        Ok(row.get(0))
    }

    async fn put_samples(&self, workload: &str, samples: &[Sample]) -> Result<()> {
        let samples = last_per_key(samples, |s| s.ts);
        let ts: Vec<i64> = samples.iter().map(|s| s.ts).collect();
        let vs: Vec<f64> = samples.iter().map(|s| s.value).collect();
        self.client
            .execute(
                "INSERT INTO samples (workload, ts, value) SELECT $1, t, v FROM UNNEST($2::BIGINT[], $3::DOUBLE PRECISION[]) AS x(t, v)
                 ON CONFLICT (workload, ts) DO UPDATE SET value = excluded.value",
                &[&workload, &ts, &vs],
            )
            .await
            .map_err(query_err("put_samples"))?;
        Ok(())
    }

    async fn samples(&self, workload: &str, since: Timestamp) -> Result<Vec<Sample>> {
        let rows = self
            .client
            .query(
                "SELECT ts, value FROM samples WHERE workload = $1 AND ts >= $2 ORDER BY ts",
                &[&workload, &since],
            )
            .await
            .map_err(query_err("samples"))?;
        Ok(rows
            .iter()
            .map(|r| Sample {
                ts: r.get(0),
                value: r.get(1),
            })
            .collect())
    }

    async fn last_sample_at(&self, workload: &str) -> Result<Option<Timestamp>> {
        let row = self
            .client
            .query_one(
                "SELECT MAX(ts) FROM samples WHERE workload = $1",
                &[&workload],
            )
            .await
            .map_err(query_err("last_sample_at"))?;
        Ok(row.get(0))
    }

    async fn prune(&self, workload: &str, before: Timestamp) -> Result<u64> {
        // One statement: the four deletes commit together.
        let row = self
            .client
            .query_one(
                "WITH s AS (DELETE FROM samples WHERE workload = $1 AND ts < $2 RETURNING 1),
                      f AS (DELETE FROM forecasts WHERE workload = $1 AND ts < $2 RETURNING 1),
                      d AS (DELETE FROM decisions WHERE workload = $1 AND ts < $2 RETURNING 1),
                      i AS (DELETE FROM intents WHERE workload = $1 AND ts < $2 AND state <> 'pending' RETURNING 1)
                 SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM f)
                      + (SELECT count(*) FROM d) + (SELECT count(*) FROM i)",
                &[&workload, &before],
            )
            .await
            .map_err(query_err("prune"))?;
        let n: i64 = row.get(0);
        Ok(n as u64)
    }

    async fn put_model(&self, workload: &str, state: &str, now: Timestamp) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO models (workload, state, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (workload) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                &[&workload, &state, &now],
            )
            .await
            .map_err(query_err("put_model"))?;
        Ok(())
    }

    async fn model(&self, workload: &str) -> Result<Option<String>> {
        let r = self
            .client
            .query_opt("SELECT state FROM models WHERE workload = $1", &[&workload])
            .await
            .map_err(query_err("model"))?;
        Ok(r.map(|r| r.get(0)))
    }

    async fn put_forecasts(&self, f: &[ForecastRecord]) -> Result<()> {
        self.write_batch("put_forecasts", &[], f, &[], &[]).await
    }

    async fn forecasts(&self, workload: &str, since: Timestamp) -> Result<Vec<ForecastRecord>> {
        let rows = self
            .client
            .query(
                "SELECT workload, ts, target, p50, upper, quantile, model FROM forecasts WHERE workload = $1 AND ts >= $2 ORDER BY ts",
                &[&workload, &since],
            )
            .await
            .map_err(query_err("forecasts"))?;
        Ok(rows
            .iter()
            .map(|r| ForecastRecord {
                workload: r.get(0),
                ts: r.get(1),
                target: r.get(2),
                p50: r.get(3),
                upper: r.get(4),
                quantile: r.get(5),
                model: r.get(6),
            })
            .collect())
    }

    async fn put_shadow(&self, workload: &str, size: u32, now: Timestamp) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO shadow_pool (workload, size, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (workload) DO UPDATE SET size = excluded.size, updated_at = excluded.updated_at",
                &[&workload, &(size as i64), &now],
            )
            .await
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
        self.client
            .execute(
                "INSERT INTO loop_state (workload, kind, state, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workload, kind) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                &[&workload, &kind, &state, &now],
            )
            .await
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
        let changed = match expected {
            Some(old) => {
                self.client
                    .execute(
                        "UPDATE loop_state SET state = $3, updated_at = $4 WHERE workload = $1 AND kind = $2 AND state = $5",
                        &[&workload, &kind, &state, &now, &old],
                    )
                    .await
            }
            None => {
                self.client
                    .execute(
                        "INSERT INTO loop_state (workload, kind, state, updated_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (workload, kind) DO NOTHING",
                        &[&workload, &kind, &state, &now],
                    )
                    .await
            }
        }
        .map_err(query_err("swap_loop_state"))?;
        Ok(changed == 1)
    }

    async fn loop_state(&self, workload: &str, kind: &str) -> Result<Option<String>> {
        let r = self
            .client
            .query_opt(
                "SELECT state FROM loop_state WHERE workload = $1 AND kind = $2",
                &[&workload, &kind],
            )
            .await
            .map_err(query_err("loop_state"))?;
        Ok(r.map(|r| r.get(0)))
    }

    async fn shadow(&self, workload: &str) -> Result<u32> {
        let r = self
            .client
            .query_opt(
                "SELECT size FROM shadow_pool WHERE workload = $1",
                &[&workload],
            )
            .await
            .map_err(query_err("shadow"))?;
        Ok(r.map(|r| r.get::<_, i64>(0) as u32).unwrap_or(0))
    }

    async fn put_decisions(&self, d: &[Decision]) -> Result<()> {
        self.write_batch("put_decisions", &[], &[], d, &[]).await
    }

    async fn decisions(&self, workload: Option<&str>, limit: u32) -> Result<Vec<Decision>> {
        let cols = "workload, ts, mode, observed, predicted, current, desired, action, cost_per_hour, explanation";
        let limit = limit as i64;
        let rows = match workload {
            Some(w) => {
                self.client
                    .query(
                        &format!("SELECT {cols} FROM decisions WHERE workload = $1 ORDER BY ts DESC LIMIT $2"),
                        &[&w, &limit],
                    )
                    .await
            }
            None => {
                self.client
                    .query(
                        &format!("SELECT {cols} FROM decisions ORDER BY ts DESC, workload LIMIT $1"),
                        &[&limit],
                    )
                    .await
            }
        }
        .map_err(query_err("decisions"))?;
        Ok(rows.iter().map(decision_row).collect())
    }

    async fn put_budget(&self, workload: &str, per_hour: f64) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO budgets (workload, per_hour) VALUES ($1, $2) ON CONFLICT (workload) DO UPDATE SET per_hour = excluded.per_hour",
                &[&workload, &per_hour],
            )
            .await
            .map_err(query_err("put_budget"))?;
        Ok(())
    }

    async fn budget(&self, workload: &str) -> Result<Option<f64>> {
        let r = self
            .client
            .query_opt(
                "SELECT per_hour FROM budgets WHERE workload = $1",
                &[&workload],
            )
            .await
            .map_err(query_err("budget"))?;
        Ok(r.map(|r| r.get(0)))
    }

    async fn put_intent(&self, i: &Intent) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO intents (token, workload, ts, kind, count, state) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (token) DO UPDATE SET state = excluded.state",
                &[&i.token, &i.workload, &i.ts, &i.kind, &(i.count as i64), &i.state],
            )
            .await
            .map_err(query_err("put_intent"))?;
        Ok(())
    }

    async fn pending_intents(&self, workload: &str) -> Result<Vec<Intent>> {
        let rows = self
            .client
            .query(
                "SELECT token, workload, ts, kind, count, state FROM intents WHERE workload = $1 AND state = 'pending' ORDER BY ts",
                &[&workload],
            )
            .await
            .map_err(query_err("pending_intents"))?;
        Ok(rows
            .iter()
            .map(|r| Intent {
                token: r.get(0),
                workload: r.get(1),
                ts: r.get(2),
                kind: r.get(3),
                count: r.get::<_, i64>(4) as u32,
                state: r.get(5),
            })
            .collect())
    }

    async fn put_clone(&self, c: &CloneRecord) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO clones (name, source, spec) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET source = excluded.source, spec = excluded.spec",
                &[&c.name, &c.source, &c.spec],
            )
            .await
            .map_err(query_err("put_clone"))?;
        Ok(())
    }

    async fn delete_clone(&self, name: &str) -> Result<bool> {
        let n = self
            .client
            .execute("DELETE FROM clones WHERE name = $1", &[&name])
            .await
            .map_err(query_err("delete_clone"))?;
        Ok(n > 0)
    }

    async fn clones(&self) -> Result<Vec<CloneRecord>> {
        let rows = self
            .client
            .query("SELECT name, source, spec FROM clones ORDER BY name", &[])
            .await
            .map_err(query_err("clones"))?;
        Ok(rows
            .iter()
            .map(|r| CloneRecord {
                name: r.get(0),
                source: r.get(1),
                spec: r.get(2),
            })
            .collect())
    }

    async fn audit(&self, e: &AuditEvent) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO audit (workload, ts, action, detail) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workload, ts, action) DO UPDATE SET detail = excluded.detail",
                &[&e.workload, &e.ts, &e.action, &e.detail],
            )
            .await
            .map_err(query_err("audit"))?;
        Ok(())
    }

    async fn audit_log(&self, workload: &str, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows = self
            .client
            .query(
                "SELECT ts, workload, action, detail FROM (
                   SELECT ts, workload, action, detail FROM audit WHERE workload = $1
                   ORDER BY ts DESC, action DESC LIMIT $2) newest
                 ORDER BY ts, action",
                &[&workload, &i64::from(limit)],
            )
            .await
            .map_err(query_err("audit_log"))?;
        Ok(rows
            .iter()
            .map(|r| AuditEvent {
                ts: r.get(0),
                workload: r.get(1),
                action: r.get(2),
                detail: r.get(3),
            })
            .collect())
    }

    async fn loop_states(&self, kind: &str) -> Result<Vec<(String, String)>> {
        let rows = self
            .client
            .query(
                "SELECT workload, state FROM loop_state WHERE kind = $1 ORDER BY workload",
                &[&kind],
            )
            .await
            .map_err(query_err("loop_states"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn put_calibrations(&self, cal: &[Calibration]) -> Result<()> {
        self.write_batch("put_calibrations", &[], &[], &[], cal)
            .await
    }

    async fn record_tick(
        &self,
        samples: &[(String, Sample)],
        forecasts: &[ForecastRecord],
        decisions: &[Decision],
        calibrations: &[Calibration],
    ) -> Result<()> {
        self.write_batch("record_tick", samples, forecasts, decisions, calibrations)
            .await
    }

    async fn calibration(&self, workload: &str) -> Result<Option<Calibration>> {
        let r = self
            .client
            .query_opt(
                "SELECT workload, refit_at, model, widen, hits, last_upper, judged_until FROM refit_calibration WHERE workload = $1",
                &[&workload],
            )
            .await
            .map_err(query_err("calibration"))?;
        Ok(r.map(|r| Calibration {
            workload: r.get(0),
            refit_at: r.get(1),
            model: r.get(2),
            widen: r.get(3),
            hits: r.get(4),
            last_upper: r.get(5),
            judged_until: r.get(6),
        }))
    }

    async fn put_fleet_state(&self, kind: &str, state: &str, now: Timestamp) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO fleet_state (kind, state, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (kind) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                &[&kind, &state, &now],
            )
            .await
            .map_err(query_err("put_fleet_state"))?;
        Ok(())
    }

    async fn fleet_state(&self, kind: &str) -> Result<Option<(String, Timestamp)>> {
        let r = self
            .client
            .query_opt(
                "SELECT state, updated_at FROM fleet_state WHERE kind = $1",
                &[&kind],
            )
            .await
            .map_err(query_err("fleet_state"))?;
        Ok(r.map(|r| (r.get(0), r.get(1))))
    }

    async fn budgets(&self) -> Result<std::collections::HashMap<String, f64>> {
        let rows = self
            .client
            .query("SELECT workload, per_hour FROM budgets", &[])
            .await
            .map_err(query_err("budgets"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn acquire_lease(
        &self,
        workload: &str,
        holder: &str,
        now: Timestamp,
        ttl: i64,
    ) -> Result<bool> {
        Ok(self.acquire_leases(&[workload], holder, now, ttl).await?[0])
    }

    /// All leases in one statement (one round trip for the fleet): the rows inserted or taken
    /// over come back, and a workload is held when its name is among them. The rows are locked
    /// in name order, so replicas taking leases on the same workloads at once wait for each
    /// other instead of deadlocking (each would otherwise hold some rows and wait for others).
    async fn acquire_leases(
        &self,
        workloads: &[&str],
        holder: &str,
        now: Timestamp,
        ttl: i64,
    ) -> Result<Vec<bool>> {
        if workloads.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .client
            .query(
                "INSERT INTO leases (workload, holder, expires_at)
                 SELECT w, $2::TEXT, $3::BIGINT FROM (SELECT DISTINCT w FROM UNNEST($1::TEXT[]) AS w) AS x
                 ORDER BY w
                 ON CONFLICT (workload) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= $4
                 RETURNING workload",
                &[&workloads, &holder, &(now + ttl), &now],
            )
            .await
            .map_err(query_err("acquire_leases"))?;
        let held: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(workloads.iter().map(|w| held.contains(*w)).collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redaction_hides_passwords() {
        let r = super::redact("host=db port=5432 user=u password=hunter2 dbname=p");
        assert!(!r.contains("hunter2"), "{r}");
        let r = super::redact("postgres://u:hunter2@db:5432/p");
        assert!(!r.contains("hunter2"), "{r}");
    }
}
