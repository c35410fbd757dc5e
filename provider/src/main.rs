//! `terraform-provider-predictive`: started by Terraform, it serves plugin protocol 6.
//!
//! - no arguments: the go-plugin handshake (Terraform starts it this way);
//! - `--debug`: serves without Terraform's cookie and TLS and prints `TF_REATTACH_PROVIDERS`;
//! - `docs --out DIR`: writes the registry-layout documentation generated from the schemas.

use terraform_provider_predictive::plugin::{serve, ServeOpts};
use terraform_provider_predictive::provider::PredictiveProvider;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("docs") => {
            let out = match args.get(1).map(String::as_str) {
                Some("--out") => args.get(2).cloned().unwrap_or_else(|| "docs".into()),
                _ => "docs".into(),
            };
            for (path, text) in terraform_provider_predictive::provider::docs() {
                let p = std::path::Path::new(&out).join(&path);
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&p, text)?;
                println!("wrote {}", p.display());
            }
            Ok(())
        }
        Some("--help" | "-h") => {
            println!("terraform-provider-predictive [--debug] | docs [--out DIR]\nA Terraform provider plugin: terraform starts it.");
            Ok(())
        }
        first => {
            let debug = first == Some("--debug");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let opts = ServeOpts {
                debug,
                provider_address: "registry.terraform.io/predictive/predictive".into(),
            };
            let result = rt.block_on(serve(PredictiveProvider, opts));
            // Do not wait for blocking tasks once the server is done.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            if let Err(e) = result {
                eprintln!("error: {:#}", anyhow::Error::from(e));
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
