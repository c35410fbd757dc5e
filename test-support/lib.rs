//! Test support shared by the test suites of `predictive`: finding the external tools that
//! `scripts/install-test-deps.sh` installs, free loopback ports, and a real Prometheus server
//! over recorded samples (a TSDB built with `promtool tsdb create-blocks-from openmetrics`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The path of the executable `name` on `PATH`. When it is missing, a run with `CI` set fails
/// (CI installs every tool) and any other run gets `None` and a note on stderr, so the caller can
/// skip.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but `{name}` is missing: run scripts/install-test-deps.sh"
        );
        eprintln!("skipping: `{name}` is not installed (scripts/install-test-deps.sh)");
    }
    found
}

/// A Prometheus server on a loopback port over a TSDB of recorded samples; killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus over one gauge `metric{labels}` with `samples` (unix seconds, value)
    /// and waits until it answers `/-/ready`. `labels` is written as is inside the braces, e.g.
    /// `workload="web"`. `None` when promtool or prometheus is not installed (see [`tool`]).
    ///
    /// # Panics
    /// When promtool rejects the data or the server does not become ready within a minute.
    pub fn start(metric: &str, labels: &str, samples: &[(i64, f64)]) -> Option<Prometheus> {
        let promtool = tool("promtool")?;
        let prometheus = tool("prometheus")?;
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut om = format!("# HELP {metric} Recorded samples.\n# TYPE {metric} gauge\n");
        for (t, v) in samples {
            om.push_str(&format!("{metric}{{{labels}}} {v} {t}\n"));
        }
        om.push_str("# EOF\n");
        let om_path = dir.path().join("data.om");
        std::fs::write(&om_path, om).expect("write the OpenMetrics file");
        let tsdb = dir.path().join("tsdb");
        let out = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om_path)
            .arg(&tsdb)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").expect("write prometheus.yml");
        let port = free_port();
        let child = Command::new(&prometheus)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let server = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        // Readiness of an external process, bounded.
        for _ in 0..600 {
            if ready(port) {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus did not become ready on port {port}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /-/ready` on the port answers 200.
fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}
