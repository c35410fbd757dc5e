//! The command's output going to a reader that stops early (`predictive … | head -1`).

use std::io::Read as _;
use std::process::{Command, Stdio};

/// The bundled trace, read by `forecast` with a horizon long enough that its CSV (over 100 KiB)
/// cannot all fit in a pipe's buffer: the command is still writing when the reader leaves.
fn long_forecast() -> Command {
    let trace = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/data/nab_elb_request_count_8c0756.csv"
    );
    let mut c = Command::new(env!("CARGO_BIN_EXE_predictive"));
    c.args([
        "forecast",
        trace,
        "--freq",
        "5min",
        "--csv",
        "--horizon",
        "3000",
    ]);
    c
}

#[test]
fn a_reader_that_stops_early_should_end_the_command_quietly() {
    let mut child = long_forecast()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("predictive starts");
    // Read the first line, as `head -1` would, then close the pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let n = stdout.read(&mut first).unwrap();
    assert!(n > 0, "no output before the pipe closed");
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.success(), "{status}: {stderr}");
}

#[test]
fn the_whole_output_should_reach_a_reader_that_reads_it_all() {
    let out = long_forecast().output().expect("predictive runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // A header and one row per forecast step.
    assert_eq!(
        text.lines().count(),
        3001,
        "{}",
        &text[..text.len().min(300)]
    );
}
