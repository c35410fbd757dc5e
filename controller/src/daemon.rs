//! `predictive controller run`: wires config, store, clouds, API, `/metrics` and the loop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use predictive_clouds::DynProvider;

use crate::clock::{Clock, Sleep, SystemClock, VirtualClock};
use crate::config::{Mode, StoreParams, ValidConfig};
use crate::run::{chain, Controller};
use crate::store::{postgres::PostgresStore, sqlite::SqliteStore, Store};

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config is invalid.
    #[error("invalid configuration")]
    Config(#[from] crate::config::Error),
    /// The config or its `clouds` sections are invalid.
    #[error("invalid configuration")]
    Clouds(#[from] crate::adapters::Error),
    /// The API's TLS material cannot be read.
    #[error("invalid configuration")]
    Tls(#[from] crate::api::TlsError),
    /// The store could not be opened.
    #[error("cannot open the store")]
    Store(#[from] crate::store::Error),
    /// The embedded sim could not be loaded or set up.
    #[error("cannot set up the sim cloud")]
    Sim(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A workload could not be registered.
    #[error("cannot register the workloads")]
    Register(#[source] Box<crate::run::Error>),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The API is on but its token variable is unset or empty.
    #[error("api.token_env: environment variable `{0}` is unset or empty")]
    NoToken(String),
    /// The runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The handlers that stop the loop on SIGTERM and SIGINT could not be installed.
    #[error("cannot install the SIGTERM and SIGINT handlers")]
    Signals(#[source] std::io::Error),
    /// The loop stopped on a store failure.
    #[error("the loop stopped")]
    Loop(#[source] Box<crate::run::Error>),
}

/// Options of `controller run` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The config file.
    pub config: PathBuf,
    /// Stop after this many ticks.
    pub ticks: Option<u64>,
    /// Run on a virtual clock starting at this unix time (no waiting between ticks).
    pub virtual_start: Option<i64>,
    /// Persist the embedded sim cloud in this JSON file.
    pub sim_state: Option<PathBuf>,
    /// Overrides the config's mode.
    pub mode: Option<Mode>,
    /// Identity of this replica in leases (default: host and pid).
    pub replica: Option<String>,
}

/// Installs JSON logs on stderr (level from `RUST_LOG`, default `info`). Safe to call twice.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Completes at the first SIGTERM or SIGINT (Ctrl-C) received after this call. The handlers are
/// installed at once, so a signal that arrives during a tick is not lost: the loop sees it once
/// the tick is done.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "stopping after the current tick");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("stopping after the current tick");
        })
    }
}

/// Opens the configured store.
///
/// # Errors
/// [`crate::store::Error::OpenFailed`].
pub async fn open_store(p: &StoreParams) -> Result<Arc<dyn Store>, crate::store::Error> {
    Ok(match p {
        StoreParams::Sqlite { path } => Arc::new(SqliteStore::open(path)?),
        StoreParams::Postgres { url } => Arc::new(PostgresStore::connect(&expand_env(url)).await?),
    })
}

/// Replaces `${VAR}` with the variable's value (secrets stay out of config files).
fn expand_env(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i + 2..].find('}') {
            Some(j) => {
                out.push_str(&std::env::var(&rest[i + 2..i + 2 + j]).unwrap_or_default());
                rest = &rest[i + 3 + j..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Runs the daemon to completion (forever unless `ticks` is set).
///
/// # Errors
/// [`Error`] for anything that stops it; per-workload failures are logged and the loop goes on.
pub fn run_blocking(opts: RunOptions) -> Result<(), Error> {
    init_logs();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    rt.block_on(run(opts))
}

/// The daemon, async.
///
/// # Errors
/// As [`run_blocking`].
pub async fn run(opts: RunOptions) -> Result<(), Error> {
    let daemon_cfg = crate::adapters::load(&opts.config)?;
    let mut cfg: ValidConfig = daemon_cfg.config.clone();
    if let Some(m) = opts.mode {
        cfg.mode = m;
    }
    let base = opts
        .config
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let api_tls = match cfg.api.as_ref().and_then(|a| a.tls.as_ref()) {
        Some(t) => Some(crate::api::ServerTls::read(t, &base)?),
        None => None,
    };
    let (clock, sleep): (Arc<dyn Clock>, Arc<dyn Sleep>) = match opts.virtual_start {
        Some(t) => {
            let c = VirtualClock::new(t);
            (Arc::new(c.clone()), Arc::new(c))
        }
        None => (Arc::new(SystemClock), Arc::new(SystemClock)),
    };
    let store = open_store(&cfg.store).await?;
    let sim = crate::embedded::sim(clock.clone(), opts.sim_state.clone())
        .map_err(|e| Error::Sim(Box::new(e)))?;
    crate::embedded::ensure_groups(&sim, &cfg.owner, &cfg.workloads)
        .map_err(|e| Error::Sim(Box::new(e)))?;
    // The cloud adapters the workloads use, in the production layer stack. A cloud that is not
    // built or cannot be set up stops its workloads only.
    let stack = crate::adapters::production_stack(Default::default());
    let (adapters, failed) = crate::adapters::build_all(&daemon_cfg, &stack).await;
    let mut clouds: BTreeMap<String, DynProvider> = adapters;
    clouds.insert("sim".into(), Arc::new(sim));
    let replica = opts
        .replica
        .clone()
        .unwrap_or_else(|| format!("{}-{}", cfg.owner, std::process::id()));
    let ctl = Arc::new(Controller::new(
        &cfg,
        store,
        clouds.clone(),
        clock,
        &replica,
    ));
    start_workloads(
        &ctl,
        &cfg.workloads,
        &daemon_cfg.clouds,
        &clouds,
        &failed,
        cfg.concurrency,
    )
    .await;
    for p in ctl.recover().await.map_err(|e| Error::Loop(Box::new(e)))? {
        tracing::warn!(problem = %p, "recovery");
    }
    let mut servers = Vec::new();
    if let Some(addr) = &cfg.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen {
                addr: addr.clone(),
                source,
            })?;
        tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics listening");
        servers.push(tokio::spawn({
            let m = ctl.metrics().clone();
            async move {
                let _ = crate::metrics::serve(l, m).await;
            }
        }));
    }
    if let Some(api) = &cfg.api {
        let token = std::env::var(&api.token_env).unwrap_or_default();
        if token.is_empty() {
            return Err(Error::NoToken(api.token_env.clone()));
        }
        let l = tokio::net::TcpListener::bind(&api.listen)
            .await
            .map_err(|source| Error::Listen {
                addr: api.listen.clone(),
                source,
            })?;
        tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "api listening");
        let c = ctl.clone();
        if let Some(t) = &api_tls {
            tracing::info!(mtls = t.is_mtls(), "api uses tls");
        }
        servers.push(tokio::spawn(async move {
            if let Err(e) = crate::api::serve_with(l, c, &token, api_tls.as_ref()).await {
                tracing::error!(error = %chain(&e), "api stopped");
            }
        }));
    }
    let stop = stop_signal().map_err(Error::Signals)?;
    let res = ctl.run(sleep.as_ref(), opts.ticks, stop).await;
    for s in servers {
        s.abort();
    }
    res.map_err(|e| Error::Loop(Box::new(e)))?;
    // Between ticks: nothing is half done. The refits under way finish, and every detector
    // goes to the store, so the next start carries on from here.
    ctl.refits_settled().await;
    match ctl.store_detectors().await {
        Ok(n) => tracing::info!(detectors = n, "stopped: anomaly detectors stored"),
        Err(e) => tracing::warn!(error = %chain(&e), "stopped; anomaly detectors not stored"),
    }
    Ok(())
}

/// Registers the configured workloads, up to `concurrency` at once, each in its own task: their
/// models are rebuilt from the stored history on every core, and a cloud that does not answer
/// costs one check timeout per `concurrency` workloads, not one per workload. A workload that
/// cannot be set up (its cloud not built or not configured, its registration failed) is
/// reported and not started; the others still run. A workload on a cloud adapter is checked
/// against its cloud (its group described) and stays registered when that fails: the loop
/// retries every tick and reports each failure.
async fn start_workloads(
    ctl: &Arc<Controller>,
    workloads: &[crate::config::ValidWorkload],
    sections: &crate::adapters::CloudSections,
    clouds: &BTreeMap<String, DynProvider>,
    failed: &[(String, String)],
    concurrency: usize,
) {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for w in workloads {
        if let Err(e) = crate::adapters::check_workload(w, sections) {
            tracing::error!(workload = %w.name(), error = %chain(&e), "workload not started");
            continue;
        }
        if let Some((_, why)) = failed.iter().find(|(n, _)| n == w.name()) {
            tracing::error!(workload = %w.name(), error = %why, "workload not started");
            continue;
        }
        let (ctl, w, sem) = (ctl.clone(), w.clone(), sem.clone());
        let cloud = clouds
            .get(&w.params.cloud)
            .filter(|_| w.params.cloud != "sim")
            .cloned();
        let at = crate::adapters::endpoint_for(&w.params.cloud, &w.params.region, sections);
        set.spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else {
                return;
            };
            if let Err(e) = ctl.upsert(w.clone()).await {
                // A workload that cannot be set up is reported; the others still run.
                tracing::error!(workload = %w.name(), error = %chain(&e), "workload not started");
                return;
            }
            let Some(cloud) = cloud else {
                return;
            };
            let timeout = std::time::Duration::from_secs(20);
            match crate::adapters::probe(&w, &cloud, at.as_deref(), timeout).await {
                Ok(()) => {
                    tracing::info!(workload = %w.name(), cloud = %w.params.cloud, group = %w.params.group, "cloud reachable")
                }
                // Kept registered: the loop retries every tick and reports each failure.
                Err(why) => {
                    tracing::error!(workload = %w.name(), error = %why, "cloud check failed")
                }
            }
        });
    }
    while let Some(done) = set.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a workload's start-up task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use predictive_clouds::clock::Sleep;
    use predictive_clouds::fake::FakeCloud;
    use predictive_clouds::{DynProvider, Operation};

    use crate::clock::{Clock, VirtualClock};
    use crate::config::ConfigParams;
    use crate::run::Controller;
    use crate::store::{sqlite::SqliteStore, Store};

    /// A cloud's answer that comes only once `n` calls wait for it together.
    #[derive(Debug)]
    struct Together(Arc<tokio::sync::Barrier>);

    impl Sleep for Together {
        fn sleep(&self, _: Duration) -> predictive_clouds::clock::BoxFuture<'static, ()> {
            let b = self.0.clone();
            Box::pin(async move {
                b.wait().await;
            })
        }
    }

    /// Four workloads on a cloud whose group descriptions answer only when all four are asked
    /// at once: the start-up finishes only if it checks the workloads side by side (one at a
    /// time, it would wait for the first answer for good).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workloads_should_start_side_by_side() {
        let mut text = String::from("owner = \"d\"\nconcurrency = 4\n");
        for i in 0..4 {
            text.push_str(&format!(
                "[[workloads]]\nname = \"w{i}\"\ncloud = \"fake\"\ngroup = \"g{i}\"\ninstance_type = \"m6i.large\"\ncapacity_per_instance = 1\nmax = 4\nmetrics = {{ kind = \"push\" }}\n"
            ));
        }
        let params: ConfigParams = toml::from_str(&text).unwrap();
        let cfg = params.check("<t>", std::path::Path::new(".")).unwrap();
        let fake =
            FakeCloud::new().with_sleep(Arc::new(Together(Arc::new(tokio::sync::Barrier::new(4)))));
        for i in 0..4 {
            fake.create_group(&format!("g{i}"), "m6i.large", 0, 4);
        }
        fake.set_latency(Operation::DescribeGroup, Duration::from_secs(1));
        let fake = Arc::new(fake);
        let clouds: BTreeMap<String, DynProvider> =
            BTreeMap::from([("fake".to_string(), fake.clone() as DynProvider)]);
        let clock: Arc<dyn Clock> = Arc::new(VirtualClock::new(1_700_000_000));
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let ctl = Arc::new(Controller::new(&cfg, store, clouds.clone(), clock, "d"));
        let sections = Default::default();
        let started = super::start_workloads(
            &ctl,
            &cfg.workloads,
            &sections,
            &clouds,
            &[],
            cfg.concurrency,
        );
        tokio::time::timeout(Duration::from_secs(120), started)
            .await
            .expect("the workloads' checks waited for each other");
        assert_eq!(fake.calls_of(Operation::DescribeGroup).len(), 4);
        for i in 0..4 {
            assert!(ctl.store().has_workload(&format!("w{i}")).await.unwrap());
        }
    }

    #[test]
    fn env_references_expand() {
        std::env::set_var("PREDICTIVE_TEST_PW", "s3cret");
        assert_eq!(
            super::expand_env("host=h password=${PREDICTIVE_TEST_PW} x"),
            "host=h password=s3cret x"
        );
        assert_eq!(super::expand_env("a ${unterminated"), "a ${unterminated");
    }
}
