//! The go-plugin side of the protocol: the handshake Terraform expects on stdout, AutoMTLS, the
//! health, controller, stdio and broker services, graceful shutdown and the `--debug` mode.

use crate::plugin_pb::{self, grpc_broker_server, grpc_controller_server, grpc_stdio_server};
use crate::proto::{ProviderDef, ProviderServer};
use crate::tfplugin6::provider_server::ProviderServer as ProviderGrpc;
use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

/// The magic cookie Terraform sets for its provider plugins.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// Its value.
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// Errors of starting or running the plugin server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Started by something other than Terraform.
    #[error(
        "this binary is a Terraform provider plugin: run it through terraform (or with --debug)"
    )]
    NotStartedByTerraform,
    /// No listening socket.
    #[error("could not listen on 127.0.0.1")]
    ListenFailed(#[source] std::io::Error),
    /// The server certificate could not be made.
    #[error("could not generate the server certificate")]
    CertificateFailed(#[source] rcgen::Error),
    /// The client certificate from Terraform is unusable.
    #[error("PLUGIN_CLIENT_CERT does not hold a PEM certificate")]
    BadClientCertificate,
    /// TLS could not be set up.
    #[error("could not configure TLS")]
    TlsConfigFailed(#[source] rustls::Error),
    /// The gRPC server failed.
    #[error("the gRPC server failed")]
    ServeFailed(#[source] tonic::transport::Error),
    /// Writing the handshake failed.
    #[error("could not write the handshake line")]
    HandshakeFailed(#[source] std::io::Error),
}

/// How the server runs.
#[derive(Debug, Clone, Default)]
pub struct ServeOpts {
    /// Debug mode: no cookie, no TLS; prints `TF_REATTACH_PROVIDERS` for a terraform run elsewhere.
    pub debug: bool,
    /// The provider address used in the reattach line.
    pub provider_address: String,
}

/// Serves `def` until Terraform asks the plugin to shut down.
///
/// # Errors
/// When not started by Terraform (outside debug mode), or when listening or TLS fails.
pub async fn serve<P: ProviderDef>(def: P, opts: ServeOpts) -> Result<(), Error> {
    if !opts.debug && std::env::var(MAGIC_COOKIE_KEY).ok().as_deref() != Some(MAGIC_COOKIE_VALUE) {
        return Err(Error::NotStartedByTerraform);
    }
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(Error::ListenFailed)?;
    let addr = listener.local_addr().map_err(Error::ListenFailed)?;
    let shutdown = Arc::new(Notify::new());
    let stop = Arc::new(Notify::new());

    let client_cert = if opts.debug {
        None
    } else {
        std::env::var("PLUGIN_CLIENT_CERT")
            .ok()
            .filter(|s| !s.is_empty())
    };
    let (incoming, server_cert_b64) = match client_cert {
        Some(pem) => {
            let (cfg, der) = tls_config(&pem)?;
            (
                spawn_tls_accept(listener, Arc::new(cfg)),
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(der),
            )
        }
        None => (spawn_plain_accept(listener), String::new()),
    };

    let mut out = std::io::stdout().lock();
    if opts.debug {
        let reattach = serde_json::json!({
            opts.provider_address.clone(): {
                "Protocol": "grpc", "ProtocolVersion": 6, "Pid": std::process::id(), "Test": true,
                "Addr": { "Network": "tcp", "String": addr.to_string() }
            }
        });
        writeln!(out, "Provider started. To attach Terraform, set in your shell:\n\n\tTF_REATTACH_PROVIDERS='{reattach}'\n")
            .map_err(Error::HandshakeFailed)?;
    } else {
        writeln!(out, "1|6|tcp|{addr}|grpc|{server_cert_b64}").map_err(Error::HandshakeFailed)?;
    }
    out.flush().map_err(Error::HandshakeFailed)?;
    drop(out);

    // Terraform forwards Ctrl-C to the whole process group; like go-plugin servers, the plugin keeps
    // running and leaves the decision to Terraform (StopProvider, then Shutdown or kill). In debug
    // mode Ctrl-C ends the server.
    let sd = shutdown.clone();
    let debug = opts.debug;
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if debug {
                sd.notify_one();
                return;
            }
        }
    });

    let controller = Controller {
        shutdown: shutdown.clone(),
    };
    let sd = shutdown.clone();
    tonic::transport::Server::builder()
        .add_service(ProviderGrpc::new(ProviderServer::new(def, stop)))
        .add_service(plugin_pb::health_server::HealthServer::new(Health))
        .add_service(grpc_controller_server::GrpcControllerServer::new(
            controller,
        ))
        .add_service(grpc_stdio_server::GrpcStdioServer::new(Stdio))
        .add_service(grpc_broker_server::GrpcBrokerServer::new(Broker))
        .serve_with_incoming_shutdown(incoming, async move { sd.notified().await })
        .await
        .map_err(Error::ServeFailed)
}

/// A self-signed server certificate (as go-plugin makes one) and a TLS config that accepts exactly
/// the client certificate Terraform passed in `PLUGIN_CLIENT_CERT`.
fn tls_config(client_pem: &str) -> Result<(rustls::ServerConfig, Vec<u8>), Error> {
    let client_der = pem_to_der(client_pem).ok_or(Error::BadClientCertificate)?;
    let key = ServerKey::generate().map_err(Error::CertificateFailed)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .map_err(Error::CertificateFailed)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "predictive");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key).map_err(Error::CertificateFailed)?;
    let der = cert.der().to_vec();
    // ring does the server's side of the handshake (key exchange, signatures, randomness) and
    // aws-lc checks the client's P-521 signatures, which ring cannot.
    let mut provider = rustls::crypto::ring::default_provider();
    provider.signature_verification_algorithms =
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
    let provider = Arc::new(provider);
    let verifier = Arc::new(PinnedClientCert {
        der: client_der,
        provider: provider.clone(),
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::TlsConfigFailed)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(der.clone())],
            PrivateKeyDer::Pkcs8(key.pkcs8.clone().into()),
        )
        .map_err(Error::TlsConfigFailed)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok((cfg, der))
}

/// The server's P-256 key, held by ring, so that generating it, signing the certificate and
/// signing in the TLS handshake draw on the operating system's randomness. aws-lc would first
/// seed its own generator from CPU jitter, about 60 ms of CPU in each of the three provider
/// processes a `terraform plan` starts.
struct ServerKey {
    pkcs8: Vec<u8>,
    pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl ServerKey {
    fn generate() -> Result<ServerKey, rcgen::Error> {
        let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng)
            .map_err(|_| rcgen::Error::RingUnspecified)?;
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng)
            .map_err(|e| rcgen::Error::RingKeyRejected(e.to_string()))?;
        Ok(ServerKey {
            pkcs8: doc.as_ref().to_vec(),
            pair,
            rng,
        })
    }
}

impl rcgen::PublicKeyData for ServerKey {
    fn der_bytes(&self) -> &[u8] {
        use ring::signature::KeyPair as _;
        self.pair.public_key().as_ref()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for ServerKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.pair
            .sign(&self.rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| rcgen::Error::RingUnspecified)
    }
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()
        .filter(|d| !d.is_empty())
}

/// Accepts only the one certificate Terraform generated for this run. go-plugin's client
/// certificate is a self-signed CA certificate, which ordinary WebPKI path building rejects as an
/// end-entity certificate, so the certificate is pinned by its bytes; the TLS signatures are still
/// checked with the certificate's key.
#[derive(Debug)]
struct PinnedClientCert {
    der: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for PinnedClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A connection handed to tonic: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP (debug mode).
    Plain(TcpStream),
    /// TLS (AutoMTLS).
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for Conn {
    type ConnectInfo = Option<SocketAddr>;
    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Conn::Plain(s) => s.peer_addr().ok(),
            Conn::Tls(s) => s.get_ref().0.peer_addr().ok(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Incoming = tokio_stream::wrappers::ReceiverStream<Result<Conn, std::io::Error>>;

fn spawn_plain_accept(listener: TcpListener) -> Incoming {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let r = listener.accept().await.map(|(s, _)| Conn::Plain(s));
            if tx.send(r).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Accepts connections and runs each TLS handshake in its own task, so one slow or failed
/// handshake never blocks the others; failed handshakes are logged and dropped.
pub fn spawn_tls_accept(listener: TcpListener, cfg: Arc<rustls::ServerConfig>) -> Incoming {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(tls) => {
                        let _ = tx.send(Ok(Conn::Tls(Box::new(tls)))).await;
                    }
                    Err(e) => eprintln!("[WARN] tls handshake failed: {e}"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[derive(Debug)]
struct Health;

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[async_trait::async_trait]
impl plugin_pb::health_server::Health for Health {
    async fn check(
        &self,
        req: Request<plugin_pb::HealthCheckRequest>,
    ) -> Result<Response<plugin_pb::HealthCheckResponse>, Status> {
        use plugin_pb::health_check_response::ServingStatus;
        let status = match req.get_ref().service.as_str() {
            "" | "plugin" => ServingStatus::Serving,
            _ => ServingStatus::ServiceUnknown,
        };
        Ok(Response::new(plugin_pb::HealthCheckResponse {
            status: status as i32,
        }))
    }
    type WatchStream = BoxStream<plugin_pb::HealthCheckResponse>;
    async fn watch(
        &self,
        req: Request<plugin_pb::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let first = self.check(req).await?.into_inner();
        let s =
            tokio_stream::StreamExt::chain(tokio_stream::once(Ok(first)), tokio_stream::pending());
        Ok(Response::new(Box::pin(s)))
    }
}

#[derive(Debug)]
struct Controller {
    shutdown: Arc<Notify>,
}

#[async_trait::async_trait]
impl grpc_controller_server::GrpcController for Controller {
    async fn shutdown(
        &self,
        _: Request<plugin_pb::Empty>,
    ) -> Result<Response<plugin_pb::Empty>, Status> {
        // Let this response go out first; the server then drains in-flight requests and stops.
        self.shutdown.notify_one();
        Ok(Response::new(plugin_pb::Empty {}))
    }
}

#[derive(Debug)]
struct Stdio;

#[async_trait::async_trait]
impl grpc_stdio_server::GrpcStdio for Stdio {
    type StreamStdioStream = BoxStream<plugin_pb::StdioData>;
    async fn stream_stdio(
        &self,
        _: Request<plugin_pb::Empty>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::pending())))
    }
}

#[derive(Debug)]
struct Broker;

#[async_trait::async_trait]
impl grpc_broker_server::GrpcBroker for Broker {
    type StartStreamStream = BoxStream<plugin_pb::ConnInfo>;
    async fn start_stream(
        &self,
        _: Request<tonic::Streaming<plugin_pb::ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::pending())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_stream::StreamExt as _;

    /// A client certificate as go-plugin makes one: ECDSA P-521, self-signed, a CA.
    fn client_cert() -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        ];
        (params.self_signed(&key).unwrap(), key)
    }

    /// The client side of the handshake line: trust exactly the certificate the plugin printed.
    #[derive(Debug)]
    struct PinnedServer(Vec<u8>, Arc<rustls::crypto::CryptoProvider>);

    impl rustls::client::danger::ServerCertVerifier for PinnedServer {
        fn verify_server_cert(
            &self,
            end: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            if end.as_ref() == self.0.as_slice() {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer,
                ))
            }
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.1.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.1.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.1.signature_verification_algorithms.supported_schemes()
        }
    }

    async fn connect(
        addr: SocketAddr,
        server_der: &[u8],
        cert: &rcgen::Certificate,
        key: &rcgen::KeyPair,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedServer(server_der.to_vec(), provider)))
            .with_client_auth_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let tcp = TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
    }

    #[tokio::test]
    async fn tls_should_accept_terraforms_p521_client_certificate_and_no_other() {
        let (cert, key) = client_cert();
        let (cfg, server_der) = tls_config(&cert.pem()).unwrap();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = spawn_tls_accept(listener, Arc::new(cfg));

        let mut ok = connect(addr, &server_der, &cert, &key)
            .await
            .expect("the pinned client certificate is accepted");
        ok.write_all(b"ping").await.unwrap();
        let mut conn = match incoming.next().await {
            Some(Ok(Conn::Tls(c))) => c,
            other => panic!("expected a TLS connection, got {other:?}"),
        };
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        // Another certificate, even of the same shape, is refused: the client sees the alert.
        let (other, other_key) = client_cert();
        let refused = match connect(addr, &server_der, &other, &other_key).await {
            Err(_) => true,
            Ok(mut s) => {
                let _ = s.write_all(b"ping").await;
                let mut b = [0u8; 1];
                !matches!(s.read(&mut b).await, Ok(n) if n > 0)
            }
        };
        assert!(
            refused,
            "a certificate other than PLUGIN_CLIENT_CERT must be refused"
        );
    }

    #[test]
    fn pem_to_der_should_read_the_certificate_body() {
        let der = vec![0x30u8, 0x82, 0x01, 0x02, 0x03];
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert_eq!(pem_to_der(&pem), Some(der));
        assert_eq!(pem_to_der("not a pem"), None);
    }
}
