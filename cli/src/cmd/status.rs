//! `status` subcommand: the controller's workloads and their latest decisions.

use std::path::PathBuf;

use predictive_controller::api::ClientTls;
use predictive_controller::inspect::{status, Target};

/// TLS options of the API clients (`status`, `explain`, `release`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TlsArgs {
    /// CA certificate (PEM) the controller's certificate must chain to; implies TLS
    /// (the address must be https://). Without it, https:// uses the system's roots.
    #[arg(long, env = "PREDICTIVE_CA_FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS, with --key-file.
    #[arg(long, env = "PREDICTIVE_CERT_FILE", requires = "key_file")]
    pub(crate) cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mTLS, with --cert-file.
    #[arg(long, env = "PREDICTIVE_KEY_FILE", requires = "cert_file")]
    pub(crate) key_file: Option<PathBuf>,
    /// Name the controller's certificate must carry, when it differs from the address' host.
    #[arg(long)]
    pub(crate) tls_domain: Option<String>,
}

/// Which controller the API clients (`status`, `explain`, `release`) talk to.
#[derive(Debug, clap::Args)]
pub(crate) struct ControllerArgs {
    /// The controller's API address (http://HOST:PORT, or https://HOST:PORT for TLS).
    #[arg(long, env = "PREDICTIVE_ADDR", default_value = "http://127.0.0.1:7070")]
    pub(crate) addr: String,
    /// Use a local SQLite store instead of calling the API (a stopped controller's).
    #[arg(long)]
    pub(crate) db: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

impl ControllerArgs {
    /// The store file, or the API with the token from `PREDICTIVE_TOKEN`.
    pub(crate) fn target(&self) -> anyhow::Result<Target> {
        target(&self.addr, self.db.clone(), &self.tls)
    }
}

/// Where to read from: the store file, or the API with the token from `PREDICTIVE_TOKEN`.
fn target(addr: &str, db: Option<PathBuf>, tls: &TlsArgs) -> anyhow::Result<Target> {
    Ok(match db {
        Some(p) => Target::Db(p),
        None => {
            let any = tls.ca_file.is_some() || tls.cert_file.is_some() || tls.tls_domain.is_some();
            let tls = if any {
                let mut t = ClientTls::read(
                    tls.ca_file.as_deref(),
                    tls.cert_file.as_deref(),
                    tls.key_file.as_deref(),
                )?;
                if let Some(d) = &tls.tls_domain {
                    t = t.with_domain(d.clone());
                }
                Some(t)
            } else {
                None
            };
            Target::Api {
                addr: addr.to_string(),
                token: std::env::var("PREDICTIVE_TOKEN").unwrap_or_default(),
                tls,
            }
        }
    })
}

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    controller: ControllerArgs,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    print!("{}", status(&args.controller.target()?)?);
    Ok(())
}
