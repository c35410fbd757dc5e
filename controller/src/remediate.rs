//! Anomaly remediation applied by the loop: the engine decides
//! ([`predictive_engine::anomaly::decide`]), the loop executes, holds and audits.
//!
//! Per workload, `remediation.policy` is `alert-only` (the default), `isolate` (hold the
//! allocation where it is and stop growing it), `stop` (stop the group's running members) or
//! `terminate` (terminate its members and its shadow units). `remediation.dry_run` (or the loop's
//! dry-run mode) records and audits every decision but changes nothing in the cloud.
//!
//! - A flagged leak of a `memory` or `disk` workload (or any with `remediation.cap_leaks`) caps
//!   the allocation whatever the policy (the engine's rule): a leak is never fed capacity
//!   forever. The cap (in instances) is stored (loop state `remediation`) and passed back to the
//!   engine every tick, so it survives restarts and holds while the usage keeps climbing.
//! - After `stop` or `terminate` the workload is **halted**: the loop observes and forecasts it
//!   but no longer scales it.
//! - An operator releases a hold or a halt with [`release`] (`predictive release WORKLOAD`,
//!   through the API or on the store): the workload's history and models stay, the release is
//!   audited, and the replica that leads the workload sees it at its next tick (a held
//!   workload's stored state is read again every tick). A cap the leader changes meanwhile is
//!   written only over the state it read ([`store_held`]), so the release is never undone; a
//!   halt executed meanwhile is recorded over the stored state as it is ([`store_halt`]).
//!   Deleting the workload and registering it
//!   again releases it too, with its history.
//! - Every decided action is appended to the audit log (`alert`, `isolate`, `stop`,
//!   `terminate`, or `would stop` / `would terminate` / ... under dry-run) and counted in
//!   `predictive_remediations_total{action=...}`; anomalies are counted by kind in
//!   `predictive_anomalies_total{kind=...}`. The decision's explanation carries the reason.

use serde::{Deserialize, Serialize};

use predictive_engine::anomaly::RemediationAction;

use crate::clock::Timestamp;
use crate::store::{AuditEvent, Store};

/// Loop state kind under which a workload's remediation state is stored.
pub const STATE_KIND: &str = "remediation";

/// A workload's remediation state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// Most instances the loop may ask for (a leak or an isolation), if any.
    pub cap: Option<f64>,
    /// `stopped` or `terminated` once such an action was executed.
    pub halted: Option<String>,
    /// When the current hold or halt began.
    pub since: Option<Timestamp>,
}

impl Held {
    /// Decodes a stored state (nothing held when nothing is stored).
    ///
    /// # Errors
    /// The JSON error of a corrupt record.
    pub fn decode(text: Option<&str>) -> Result<Self, serde_json::Error> {
        text.map_or(Ok(Self::default()), serde_json::from_str)
    }

    /// Encodes the state for the store.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// True when nothing is held or halted.
    pub fn is_free(&self) -> bool {
        self.cap.is_none() && self.halted.is_none()
    }

    /// What is held, in words (`held at 4 instances since 1700000000`, `halted (stopped) since
    /// ...`).
    pub fn describe(&self) -> String {
        let since = self
            .since
            .map_or_else(String::new, |t| format!(" since {t}"));
        match (&self.halted, self.cap) {
            (Some(h), _) => format!("halted ({h}){since}"),
            (None, Some(cap)) => format!("held at {} instances{since}", cap_instances(cap, 0)),
            (None, None) => "nothing held".into(),
        }
    }
}

/// Tries of a compare-and-swap write before the writer gives up: only an operator's release
/// races the leader, and it writes once.
const SWAP_TRIES: usize = 3;

/// Releases `workload`'s hold or halt in `store`: its remediation state becomes "nothing held"
/// and the release goes to the audit log (action `release`). Returns what was released, in
/// words, or `None` when nothing was held. A stored state that does not decode is released too.
/// The release is written over exactly the state it describes (a compare-and-swap), so what it
/// reports is what it ended.
///
/// # Errors
/// A store error, or [`crate::store::Error::Conflict`] when the state kept changing under it.
pub async fn release(
    store: &dyn Store,
    workload: &str,
    now: Timestamp,
) -> Result<Option<String>, crate::store::Error> {
    let free = Held::default().encode();
    let was = swap(store, workload, now, |stored| match stored {
        Ok(h) if h.is_free() => Swap::Keep(None),
        Ok(h) => Swap::Write(free.clone(), Some(h.describe())),
        Err(e) => Swap::Write(
            free.clone(),
            Some(format!("an unreadable remediation state ({e})")),
        ),
    })
    .await?;
    if let Some(was) = &was {
        store
            .audit(&AuditEvent {
                ts: now,
                workload: workload.into(),
                action: "release".into(),
                detail: format!("released by an operator: was {was}"),
            })
            .await?;
    }
    Ok(was)
}

/// Stores `next` as `workload`'s remediation state in place of `was`, the state the loop holds
/// in memory, unless the stored state is no longer `was`: an operator released it during the
/// tick. The release wins: nothing is written and the stored state is returned, for the loop to
/// carry on with. `None` when `next` was written.
///
/// # Errors
/// A store error, or [`crate::store::Error::Conflict`] when the state kept changing under it.
pub async fn store_held(
    store: &dyn Store,
    workload: &str,
    was: &Held,
    next: &Held,
    now: Timestamp,
) -> Result<Option<Held>, crate::store::Error> {
    let next = next.encode();
    swap(store, workload, now, |stored| match stored {
        Ok(stored) if stored != *was => Swap::Keep(Some(stored)),
        // A state that no longer decodes is the loop's own to overwrite.
        _ => Swap::Write(next.clone(), None),
    })
    .await
}

/// Stores that `workload` was halted (`stopped` or `terminated`) at `now`, over the stored
/// state as it is: a halt is a new action, executed in the cloud, so it is recorded whatever
/// happened during the tick, but a cap an operator released meanwhile stays released. Returns
/// the state written, for the loop to carry on with.
///
/// # Errors
/// A store error, or [`crate::store::Error::Conflict`] when the state kept changing under it.
pub async fn store_halt(
    store: &dyn Store,
    workload: &str,
    halted: &str,
    now: Timestamp,
) -> Result<Held, crate::store::Error> {
    swap(store, workload, now, |stored| {
        let next = Held {
            halted: Some(halted.into()),
            since: Some(now),
            // A state that no longer decodes is the loop's own to overwrite.
            cap: stored.ok().and_then(|h| h.cap),
        };
        Swap::Write(next.encode(), next)
    })
    .await
}

/// What a writer does with the remediation state it read: keep it (and answer `T`), or write
/// a new state over exactly what it read (and answer `T` once written).
enum Swap<T> {
    Keep(T),
    Write(String, T),
}

/// Reads `workload`'s remediation state, lets `decide` say what to do with it, and writes over
/// the state read only (a compare-and-swap), reading again when another writer came first, at
/// most [`SWAP_TRIES`] times.
async fn swap<T>(
    store: &dyn Store,
    workload: &str,
    now: Timestamp,
    mut decide: impl FnMut(Result<Held, serde_json::Error>) -> Swap<T>,
) -> Result<T, crate::store::Error> {
    for _ in 0..SWAP_TRIES {
        let raw = store.loop_state(workload, STATE_KIND).await?;
        match decide(Held::decode(raw.as_deref())) {
            Swap::Keep(answer) => return Ok(answer),
            Swap::Write(state, answer) => {
                if store
                    .swap_loop_state(workload, STATE_KIND, raw.as_deref(), &state, now)
                    .await?
                {
                    return Ok(answer);
                }
            }
        }
    }
    Err(conflict(workload))
}

fn conflict(workload: &str) -> crate::store::Error {
    crate::store::Error::Conflict(format!(
        "the remediation state of workload `{workload}` changed {SWAP_TRIES} times while it was being written"
    ))
}

/// The audit log's name of an action (`None` for no action), prefixed with `would ` in dry-run.
pub fn action_name(a: RemediationAction, dry_run: bool) -> Option<String> {
    let base = match a {
        RemediationAction::None => return None,
        RemediationAction::Alert => "alert",
        RemediationAction::Isolate => "isolate",
        RemediationAction::Stop => "stop",
        RemediationAction::Terminate => "terminate",
    };
    Some(if dry_run && a != RemediationAction::Alert {
        format!("would {base}")
    } else {
        base.to_string()
    })
}

/// The cap in instances: `floor(cap)`, never below `floor` (the group's minimum).
pub fn cap_instances(cap: f64, floor: u32) -> u32 {
    if cap.is_finite() && cap >= 0.0 {
        (cap + 1e-9).floor().min(u32::MAX as f64) as u32
    } else {
        u32::MAX
    }
    .max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_caps() {
        assert_eq!(
            action_name(RemediationAction::Terminate, true).as_deref(),
            Some("would terminate")
        );
        assert_eq!(
            action_name(RemediationAction::Alert, true).as_deref(),
            Some("alert")
        );
        assert_eq!(action_name(RemediationAction::None, false), None);
        assert_eq!(cap_instances(4.0, 1), 4);
        assert_eq!(cap_instances(0.0, 2), 2);
        let h = Held {
            cap: Some(3.0),
            halted: None,
            since: Some(5),
        };
        assert_eq!(Held::decode(Some(&h.encode())).unwrap(), h);
        assert_eq!(Held::decode(None).unwrap(), Held::default());
    }

    fn held(cap: f64, since: Timestamp) -> Held {
        Held {
            cap: Some(cap),
            halted: None,
            since: Some(since),
        }
    }

    /// A store where `web` is held at four instances since 10.
    async fn holding_four() -> (crate::store::sqlite::SqliteStore, &'static str, Held) {
        let store = crate::store::sqlite::SqliteStore::in_memory().unwrap();
        let four = held(4.0, 10);
        store
            .put_loop_state("web", STATE_KIND, &four.encode(), 10)
            .await
            .unwrap();
        (store, "web", four)
    }

    #[tokio::test]
    async fn a_release_during_a_tick_wins_over_the_leaders_new_cap() {
        let (store, web, four) = holding_four().await;
        // The leader read `four`; an operator releases before it writes a lower cap.
        assert!(release(&store, web, 11).await.unwrap().is_some());
        let kept = store_held(&store, web, &four, &held(3.0, 12), 12)
            .await
            .unwrap();
        assert_eq!(kept, Some(Held::default()), "the release is handed back");
        let stored = Held::decode(store.loop_state(web, STATE_KIND).await.unwrap().as_deref());
        assert!(
            stored.unwrap().is_free(),
            "the new cap overwrote the release"
        );
    }

    #[tokio::test]
    async fn a_halt_during_a_release_is_recorded_without_the_released_cap() {
        let (store, web, four) = holding_four().await;
        // The leader holds `four` and stops the group; an operator released the cap first.
        release(&store, web, 11).await.unwrap();
        let written = store_halt(&store, web, "stopped", 12).await.unwrap();
        let stored = Held::decode(store.loop_state(web, STATE_KIND).await.unwrap().as_deref());
        assert_eq!(stored.unwrap(), written);
        assert_eq!(written.halted.as_deref(), Some("stopped"));
        assert_eq!(
            written.cap, None,
            "the released cap came back with the halt"
        );
        // Without a release the cap stays beside the halt.
        store
            .put_loop_state(web, STATE_KIND, &four.encode(), 13)
            .await
            .unwrap();
        assert_eq!(
            store_halt(&store, web, "terminated", 14).await.unwrap().cap,
            Some(4.0)
        );
    }

    #[tokio::test]
    async fn the_leaders_new_cap_is_written_over_the_state_it_read() {
        let store = crate::store::sqlite::SqliteStore::in_memory().unwrap();
        let web = "web";
        // Nothing stored yet, then a hold; a state written in another field order (an older
        // version) still counts as the one the leader read.
        let first = held(4.0, 10);
        assert_eq!(
            store_held(&store, web, &Held::default(), &first, 10)
                .await
                .unwrap(),
            None
        );
        store
            .put_loop_state(web, STATE_KIND, r#"{"since":10,"cap":4.0}"#, 10)
            .await
            .unwrap();
        let next = held(3.0, 12);
        assert_eq!(
            store_held(&store, web, &first, &next, 12).await.unwrap(),
            None
        );
        let stored = store.loop_state(web, STATE_KIND).await.unwrap();
        assert_eq!(Held::decode(stored.as_deref()).unwrap(), next);
    }
}
