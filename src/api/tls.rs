//! Serving the admin API over mutual TLS. The accept loop is ours (not
//! `axum::serve`) so that each handshake runs on its own task under a
//! timeout (a silent client delays nobody), the verified client certificate
//! reaches handlers as an [`AdminClient`] extension, and the certificate
//! files can be swapped on SIGHUP without a restart.

use crate::config::TlsFiles;
use crate::domain::Actor;
use crate::pki::{self, ClientIdentity, PkiError};
use crate::runtime::Supervisor;
use axum::Router;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The verified client of a connection (from its certificate).
#[derive(Debug, Clone)]
pub struct AdminClient(pub ClientIdentity);

/// Who is calling: the certificate's admin over mutual TLS, or the local
/// operator (overlord) over plain loopback HTTP, which only exists when
/// `AGENT_RUNTIME_ADMIN_PLAIN_HTTP` is on.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(match parts.extensions.get::<AdminClient>() {
            Some(AdminClient(id)) => Actor::admin_client(&id.name, id.role),
            None => Actor::operator(),
        }))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AdminClient {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<AdminClient>().cloned())
    }
}

/// The TLS settings in force, replaceable while serving.
#[derive(Debug)]
pub struct TlsState {
    files: TlsFiles,
    config: RwLock<Arc<rustls::ServerConfig>>,
}

impl TlsState {
    /// Reads the files; fails with an error naming the bad one.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, PkiError> {
        let config = pki::server_config(&files.ca, &files.cert, &files.key)?;
        Ok(Arc::new(Self { files, config: RwLock::new(config) }))
    }

    /// Re-reads the files (SIGHUP). On error the settings in force stay.
    pub fn reload(&self) -> Result<(), PkiError> {
        let fresh = pki::server_config(&self.files.ca, &self.files.cert, &self.files.key)?;
        if let Ok(mut c) = self.config.write() {
            *c = fresh;
        }
        Ok(())
    }

    fn current(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.config.read().ok().map(|c| c.clone())
    }

    /// The files in use.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// How long in-flight requests may finish after shutdown is asked.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` over mutual TLS on `listener` until `shutdown` fires, then
/// lets open connections finish their requests (up to 10 s). Each
/// connection is a task of `connections`, drained before this returns.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    tls: Arc<TlsState>,
    handshake_timeout: Duration,
    connections: Supervisor,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(config) = tls.current() else { continue };
        let acceptor = TlsAcceptor::from(config);
        let router = router.clone();
        let watcher = graceful.watcher();
        connections.spawn("admin-connection", async move {
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let cert = stream.get_ref().1.peer_certificates().and_then(|c| c.first());
            let identity = match cert.map(pki::identity) {
                Some(Ok(id)) => id,
                Some(Err(e)) => {
                    tracing::info!(%peer, error = %e, "client certificate refused");
                    return;
                }
                None => return, // the verifier requires a certificate; cannot happen
            };
            tracing::debug!(%peer, client = %identity.name, role = %identity.role, "admin client connected");
            let service = TowerToHyperService::new(router.layer(axum::Extension(AdminClient(identity))));
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("some admin connections were still open after {DRAIN:?}; closing them");
    }
    connections.shutdown();
    let _ = tokio::time::timeout(handshake_timeout, connections.drain()).await;
    Ok(())
}
