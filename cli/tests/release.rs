//! `predictive release --db`: a stopped controller's hold released on its store, the history kept;
//! `predictive audit --db`: its audit log read.

use std::process::Command;

use predictive_controller::remediate::{Held, STATE_KIND};
use predictive_controller::store::{sqlite::SqliteStore, AuditEvent, Sample, Store};

fn predictive(args: &[&str], db: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_predictive"))
        .args(args)
        .arg(db)
        .output()
        .expect("predictive starts")
}

fn release(db: &std::path::Path, workload: &str) -> std::process::Output {
    predictive(&["release", workload, "--db"], db)
}

#[tokio::test]
async fn release_should_end_a_hold_in_the_store_and_keep_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    {
        let s = SqliteStore::open(&db).unwrap();
        s.put_workload("web", "{}", 1).await.unwrap();
        s.put_samples("web", &[Sample { ts: 1, value: 2.0 }])
            .await
            .unwrap();
        let held = Held {
            cap: Some(4.0),
            halted: None,
            since: Some(1_700_000_000),
        };
        s.put_loop_state("web", STATE_KIND, &held.encode(), 1)
            .await
            .unwrap();
    }
    let out = release(&db, "web");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.trim(),
        "web: released (was held at 4 instances since 1700000000)"
    );
    let out = release(&db, "web");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "web: nothing held"
    );

    let s = SqliteStore::open(&db).unwrap();
    let stored = Held::decode(s.loop_state("web", STATE_KIND).await.unwrap().as_deref()).unwrap();
    assert!(stored.is_free(), "{stored:?}");
    assert_eq!(s.samples("web", 0).await.unwrap().len(), 1);
    let log = s.audit_log("web", u32::MAX).await.unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].action, "release");

    // The audit log shows the release, and the newest entries only when asked for fewer.
    s.audit(&AuditEvent {
        ts: 1_700_000_300,
        workload: "web".into(),
        action: "isolate".into(),
        detail: "usage 9.000: leak anomaly".into(),
    })
    .await
    .unwrap();
    let out = predictive(&["audit", "web", "--limit", "5", "--db"], &db);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // The isolation was before the release (at the clock's time).
    assert_eq!(
        lines[0],
        "web @ 1700000300 isolate: usage 9.000: leak anomaly"
    );
    assert!(
        lines[1].contains(" release: released by an operator: was held at 4 instances"),
        "{text}"
    );
    let out = predictive(&["audit", "web", "--limit", "1", "--db"], &db);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        [lines[1]]
    );

    // An unknown workload is named, with a failure status.
    for cmd in ["release", "audit"] {
        let out = predictive(&[cmd, "nope", "--db"], &db);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("workload `nope` is not registered"),
            "{cmd}: {err}"
        );
    }
}
