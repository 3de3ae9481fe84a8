//! Shared by the HTTPS tests: certificates from `gen-certs`, the real server on
//! 127.0.0.1:0, and a keep-alive HTTPS client (rustls + hyper, no reqwest).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode};
use claworc_webhook::certs;
use claworc_webhook::server::{ServeOptions, Server};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

/// A fresh private directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "claworc-webhook-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `gen-certs` (the library function behind it) into `dir`.
pub fn gen_certs(dir: &Path) -> certs::Written {
    let req = certs::Request {
        service: "claworc-webhook".into(),
        namespace: "claworc-system".into(),
        ips: vec!["127.0.0.1".parse().unwrap()],
    };
    certs::write(dir, &certs::generate(&req).unwrap()).unwrap()
}

/// The webhook, served in-process over TLS on an ephemeral loopback port.
pub struct TestServer {
    pub server: Server,
    pub certs: certs::Written,
    pub dir: PathBuf,
}

impl TestServer {
    pub async fn start(tag: &str) -> Self {
        Self::start_with_reload(tag, Duration::from_secs(2)).await
    }

    pub async fn start_with_reload(tag: &str, reload: Duration) -> Self {
        Self::start_with(tag, |opts| opts.reload_interval = reload).await
    }

    /// The server with `configure` applied to its options.
    pub async fn start_with(tag: &str, configure: impl FnOnce(&mut ServeOptions)) -> Self {
        let dir = temp_dir(tag);
        let certs = gen_certs(&dir);
        let mut opts = ServeOptions::new("127.0.0.1:0".parse().unwrap(), &certs.tls_cert, &certs.tls_key);
        opts.shutdown_grace = Duration::from_secs(2);
        configure(&mut opts);
        let server = Server::start(opts).await.unwrap();
        Self { server, certs, dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr(), &[&self.certs.ca_cert]).await.unwrap()
    }

    pub async fn stop(self) {
        self.server.shutdown().await.unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS client config that trusts the CAs in `ca_files` only, and offers
/// only HTTP/1.1 (as hyper's http1 client speaks).
pub fn client_config(ca_files: &[&Path]) -> Arc<rustls::ClientConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for f in ca_files {
        for cert in CertificateDer::pem_file_iter(f).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One keep-alive HTTPS connection.
pub struct Client {
    sender: http1::SendRequest<Full<Bytes>>,
    /// DER of the certificate the server presented.
    pub peer_cert: Vec<u8>,
    /// The negotiated TLS version.
    pub version: Option<rustls::ProtocolVersion>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, ca_files: &[&Path]) -> anyhow::Result<Self> {
        Self::connect_with(addr, client_config(ca_files)).await
    }

    pub async fn connect_with(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("claworc-webhook.claworc-system.svc")?;
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        let (_, session) = tls.get_ref();
        let peer_cert = session.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
        let version = session.protocol_version();
        let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender, peer_cert, version })
    }

    pub async fn request(&mut self, method: Method, path: &str, body: Vec<u8>) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "claworc-webhook.claworc-system.svc")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let res = self.sender.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, String)> {
        let (status, body) = self.request(Method::GET, path, Vec::new()).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    pub async fn post(
        &mut self,
        path: &str,
        body: impl Into<Vec<u8>>,
    ) -> anyhow::Result<(StatusCode, serde_json::Value)> {
        let (status, body) = self.request(Method::POST, path, body.into()).await?;
        let json = serde_json::from_slice(&body)
            .map_err(|e| anyhow::anyhow!("{status}: body is not JSON ({e}): {}", String::from_utf8_lossy(&body)))?;
        Ok((status, json))
    }
}

/// A fixture from the workspace's tests/fixtures/.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// SHA-256 of a DER certificate, as hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// DER of the first certificate in a PEM file.
pub fn cert_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}
