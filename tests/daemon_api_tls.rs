//! The daemon's gRPC API over mTLS, configured in `api.tls`, read by the same client code as
//! `predictive status`: a client with a certificate from the client CA and the bearer token is
//! served; a client without a certificate, or with one from another CA, is refused; a wrong
//! token is refused over TLS too, and no secret shows in the errors.

use std::time::{Duration, Instant};

use predictive_controller::api::ClientTls;
use predictive_controller::daemon::{run, RunOptions};
use predictive_controller::inspect::{status, Target};

struct Ca {
    pem: String,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
        Self {
            pem: issuer.pem(),
            issuer,
        }
    }

    fn leaf(&self, name: &str, client: bool) -> (String, String) {
        let names = if client {
            vec![name.to_string()]
        } else {
            vec![name.to_string(), "127.0.0.1".to_string()]
        };
        let mut p = rcgen::CertificateParams::new(names).unwrap();
        p.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &*self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn target(addr: &str, token: &str, tls: ClientTls) -> Target {
    Target::Api {
        addr: addr.into(),
        token: token.into(),
        tls: Some(tls),
    }
}

async fn status_of(t: Target) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        status(&t).map_err(|e| predictive_controller::run::chain(&e))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_serves_its_api_over_mtls_and_refuses_clients_without_a_valid_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, rogue) = (Ca::new("test client and server CA"), Ca::new("rogue CA"));
    let (cert, key) = ca.leaf("localhost", false);
    std::fs::write(dir.path().join("server.pem"), cert).unwrap();
    std::fs::write(dir.path().join("server.key"), key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::env::set_var("DAEMON_TLS_TEST_TOKEN", "tls-test-token-value");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            r#"
interval = "1h"
owner = "tls-test"

[api]
listen = "127.0.0.1:{port}"
token_env = "DAEMON_TLS_TEST_TOKEN"
tls = {{ cert = "server.pem", key = "server.key", client_ca = "ca.pem" }}

[[workloads]]
name = "web"
group = "web-asg"
instance_type = "m6i.large"
capacity_per_instance = 2.0
max = 4
metrics = {{ kind = "push" }}
"#
        ),
    )
    .unwrap();
    let daemon = tokio::spawn(run(RunOptions {
        config,
        ..Default::default()
    }));

    let addr = format!("https://127.0.0.1:{port}");
    let good = ClientTls::from_pem(Some(ca.pem.clone().into_bytes()), {
        let (c, k) = ca.leaf("cli", true);
        Some((c.into_bytes(), k.into_bytes()))
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let table = loop {
        match status_of(target(&addr, "tls-test-token-value", good.clone())).await {
            Ok(t) => break t,
            Err(e) => {
                assert!(!daemon.is_finished(), "the daemon stopped: {e}");
                assert!(Instant::now() < deadline, "the API never answered: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(table.contains("web"), "{table}");

    let no_cert = ClientTls::from_pem(Some(ca.pem.clone().into_bytes()), None);
    let e = status_of(target(&addr, "tls-test-token-value", no_cert))
        .await
        .unwrap_err();
    assert!(!e.contains("tls-test-token-value"), "{e}");
    let forged = ClientTls::from_pem(Some(ca.pem.clone().into_bytes()), {
        let (c, k) = rogue.leaf("cli", true);
        Some((c.into_bytes(), k.into_bytes()))
    });
    assert!(status_of(target(&addr, "tls-test-token-value", forged))
        .await
        .is_err());
    let e = status_of(target(&addr, "not-the-token", good.clone()))
        .await
        .unwrap_err();
    assert!(e.contains("bearer token"), "{e}");
    assert!(
        !e.contains("tls-test-token-value") && !e.contains("not-the-token"),
        "{e}"
    );
    // Plaintext against the TLS port fails as well.
    let plain = Target::Api {
        addr: format!("http://127.0.0.1:{port}"),
        token: "tls-test-token-value".into(),
        tls: None,
    };
    assert!(status_of(plain).await.is_err());
    daemon.abort();
}
