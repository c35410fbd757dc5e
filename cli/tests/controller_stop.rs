//! `predictive controller run` stopped by SIGTERM (what an orchestrator sends before a restart):
//! the loop ends between ticks, every anomaly detector goes to the store, and the process exits
//! with success.
#![cfg(unix)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_should_stop_the_loop_between_ticks_and_store_the_detectors() {
    let dir = tempfile::tempdir().unwrap();
    let trace = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/data/nab_elb_request_count_8c0756.csv"
    );
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "interval = \"5m\"\nowner = \"stop-test\"\n[[workloads]]\nname = \"web\"\ngroup = \"web-asg\"\ninstance_type = \"m6i.large\"\ncapacity_per_instance = 25.0\nmin = 1\nmax = 40\nmetrics = {{ kind = \"replay\", path = \"{trace}\" }}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_predictive"))
        .args(["controller", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("predictive starts");
    // The first tick runs at once; the loop then sleeps until the next 5-minute boundary.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ticked = line.contains("\"message\":\"tick\"");
        log.push(line);
        if ticked {
            break;
        }
    }
    assert!(
        log.last()
            .is_some_and(|l| l.contains("\"message\":\"tick\"")),
        "no tick before the log ended: {log:#?}"
    );
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // The rest of the log is read aside: a process that does not stop never ends it.
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("still running a minute after SIGTERM: {log:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    log.extend(rest.join().unwrap());
    assert!(status.success(), "{status}: {log:#?}");
    let stopped = log
        .iter()
        .find(|l| l.contains("stopped: anomaly detectors stored"))
        .unwrap_or_else(|| panic!("no stop line: {log:#?}"));
    assert!(stopped.contains("\"detectors\":1"), "{stopped}");
    assert!(
        log.iter().any(|l| l.contains("\"signal\":\"SIGTERM\"")),
        "{log:#?}"
    );
    // Stopped without waiting for the next tick (a second one only if a 5-minute boundary
    // fell between the first and the signal).
    let ticks = log
        .iter()
        .filter(|l| l.contains("\"message\":\"tick\""))
        .count();
    assert!(ticks <= 2, "{log:#?}");
}
