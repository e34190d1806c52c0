//! mTLS for `bulkhead serve` (`--tls-cert`, `--tls-key`, `--client-ca`): the host speaks
//! TLS only and requires a client certificate that chains to `--client-ca` (Envoy's, in
//! `make run`). A client with no certificate, or one from another CA, is refused during the
//! handshake and never reaches the HTTP layer.
//!
//! rustls with the `ring` provider, chosen explicitly (not the process default), so nothing
//! depends on which crypto provider another crate happens to enable.

use anyhow::{Context, Result, anyhow};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

/// The three files; all or none are given (checked by the CLI).
#[derive(Debug, Clone)]
pub struct TlsFiles<'a> {
    /// `--tls-cert`: the host's certificate chain (leaf first), PEM.
    pub cert: &'a Path,
    /// `--tls-key`: its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: &'a Path,
    /// `--client-ca`: the CA certificate(s) client certificates must chain to, PEM.
    pub client_ca: &'a Path,
}

fn pem_certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{flag} {}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "{flag} {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// The server config: TLS 1.2/1.3, HTTP/1.1, client certificate required.
///
/// # Errors
/// A file that cannot be read or holds no usable certificate/key, or a key that does not
/// belong to the certificate; the message names the flag and the file.
pub fn server_config(files: &TlsFiles<'_>) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = pem_certs("--tls-cert", files.cert)?;
    let key_bytes =
        std::fs::read(files.key).with_context(|| format!("--tls-key {}", files.key.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| anyhow!("--tls-key {}: no PEM private key: {e}", files.key.display()))?;

    let mut roots = RootCertStore::empty();
    for ca in pem_certs("--client-ca", files.client_ca)? {
        roots.add(ca).map_err(|e| {
            anyhow!(
                "--client-ca {}: not a usable CA certificate: {e}",
                files.client_ca.display()
            )
        })?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| anyhow!("--client-ca {}: {e}", files.client_ca.display()))?;

    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            anyhow!(
                "--tls-cert {} / --tls-key {}: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    // axum serves HTTP/1.1 here (Envoy's upstream default).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections have completed the TLS handshake (client certificate
/// verified). Handshakes run in their own tasks, so a slow or hostile client holds up
/// nobody else; a refused one is logged and dropped.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener`; must be called inside a tokio runtime.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off, as axum does.
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            drop(permit);
            match handshake {
                Ok(Ok(tls)) => {
                    // The server is gone when the receiver is: nothing to do then.
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::warn!(%peer, error = %e, "TLS handshake refused"),
                Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended (it only does when the runtime shuts down): accept
            // nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
