//! Serving the admin API over mutual TLS. The accept loop is ours (not
//! `axum::serve`) so that each handshake runs on its own task under a
//! timeout (a silent client delays nobody), what the listener takes in is
//! bounded (`intake`), the verified client certificate reaches handlers as
//! an [`AdminClient`] extension (or, when it names no usable role, as a
//! [`RefusedCertificate`] that every request is refused with), and the
//! certificate files can be swapped on SIGHUP without a restart.

use super::intake::{HandshakeSlot, Intake, IntakeLimits, over_capacity};
use crate::config::TlsFiles;
use crate::domain::Actor;
use crate::pki::{self, ClientIdentity, IdentityError, PkiError};
use crate::runtime::Supervisor;
use axum::Router;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

/// The verified client of a connection (from its certificate).
#[derive(Debug, Clone)]
pub struct AdminClient(pub ClientIdentity);

/// A connection whose certificate the CA signed but that names no usable
/// caller (no role OU, an unknown one, two roles): every request on it is
/// refused with 403 and this reason (`guard::refuse_certificate`).
#[derive(Debug, Clone)]
pub struct RefusedCertificate(pub IdentityError);

/// Who is calling: the certificate's admin over mutual TLS, or the local
/// operator (overlord) over plain loopback HTTP, which only exists when
/// `AGENT_RUNTIME_ADMIN_PLAIN_HTTP` is on. A refused certificate is an
/// actor with no role, which every role check refuses.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(RefusedCertificate(why)) = parts.extensions.get::<RefusedCertificate>() {
            let cn = why.cn().unwrap_or("(no CN)");
            return Ok(Caller(Actor { platform_user_id: format!("cert:{cn}"), api: true, user: None, role: None }));
        }
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

/// Failed handshakes, logged without flooding: each at debug, and a warning
/// at most once per [`WARN_EVERY`] with the count since the last one (a
/// scanner probing without a certificate was one INFO line per attempt).
/// Every one is counted in `agent_runtime_admin_tls_handshakes_failed_total`.
#[derive(Debug, Default)]
struct FailedHandshakes {
    since_warned: std::sync::atomic::AtomicU64,
    last_warned: std::sync::Mutex<Option<std::time::Instant>>,
}

/// At most one failed-handshake warning this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl FailedHandshakes {
    fn record(&self, peer: SocketAddr, timed_out: bool, error: &dyn std::fmt::Display) {
        use std::sync::atomic::Ordering::Relaxed;
        crate::metrics::metrics().handshake_failed(timed_out);
        tracing::debug!(%peer, timed_out, error = %error, "admin TLS handshake failed");
        self.since_warned.fetch_add(1, Relaxed);
        let Ok(mut last) = self.last_warned.lock() else { return };
        let now = std::time::Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            *last = Some(now);
            let failed = self.since_warned.swap(0, Relaxed);
            tracing::warn!(
                %peer,
                error = %error,
                failed,
                "admin TLS handshakes failed (no client certificate, an untrusted one, or not TLS): {failed} since the last warning; \
                 at most one warning a minute, each failure at debug, all counted in agent_runtime_admin_tls_handshakes_failed_total"
            );
        }
    }
}

/// How long in-flight requests may finish after shutdown is asked.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` over mutual TLS on `listener` until `shutdown` fires, then
/// lets open connections finish their requests (up to 10 s). Each
/// connection is a task of `connections`, drained before this returns.
/// Accept errors (out of file descriptors and the like) are logged and
/// backed off; they never end the loop.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    tls: Arc<TlsState>,
    limits: IntakeLimits,
    connections: Supervisor,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let intake = Intake::new(limits);
    let failed = Arc::new(FailedHandshakes::default());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tokio::time::sleep(intake.accept_failed(&e)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Responses are written whole; without TCP_NODELAY a small response on a
        // new connection could wait for the client's delayed ACK (Nagle),
        // ~40 ms: measured as the ceiling of new connections per second.
        let _ = tcp.set_nodelay(true);
        let Some(config) = tls.current() else { continue };
        let conn = Connection {
            tcp,
            peer,
            acceptor: TlsAcceptor::from(config),
            slot: intake.admit(),
            intake: intake.clone(),
            router: router.clone(),
            watcher: graceful.watcher(),
            failed: failed.clone(),
        };
        connections.spawn("admin-connection", conn.serve());
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("some admin connections were still open after {DRAIN:?}; closing them");
    }
    connections.shutdown();
    let _ = tokio::time::timeout(limits.handshake_timeout, connections.drain()).await;
    Ok(())
}

/// One accepted connection, from its handshake to its last request.
struct Connection {
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    slot: HandshakeSlot,
    intake: Arc<Intake>,
    router: Router,
    watcher: Watcher,
    failed: Arc<FailedHandshakes>,
}

impl Connection {
    async fn serve(self) {
        let Connection { tcp, peer, acceptor, slot, intake, router, watcher, failed } = self;
        let timeout = intake.limits.handshake_timeout;
        let stream = tokio::select! {
            r = tokio::time::timeout(timeout, acceptor.accept(tcp)) => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return failed.record(peer, false, &e),
                Err(_) => return failed.record(peer, true, &"no handshake within AGENT_RUNTIME_ADMIN_TLS_HANDSHAKE_TIMEOUT_SECONDS"),
            },
            _ = slot.evicted.cancelled() => return tracing::debug!(%peer, "dropped in its handshake to make room"),
        };
        let who = match who(&stream) {
            Ok(id) => {
                tracing::debug!(%peer, client = %id.name, role = %id.role, "admin client connected");
                Ok(AdminClient(id))
            }
            Err(e) => {
                tracing::warn!(%peer, client = %e.cn().unwrap_or("(no CN)"), error = %e, "client certificate refused: every request gets 403");
                Err(RefusedCertificate(e))
            }
        };
        match intake.connection() {
            Some(_permit) => {
                drop(slot);
                // The caller goes into each request's extensions, and the one
                // shared router serves it. (`router.layer(Extension(..))` per
                // connection rebuilt every route: measured ~0.5 MiB per open
                // connection.)
                let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let extensions = req.extensions_mut();
                    match &who {
                        Ok(id) => drop(extensions.insert(id.clone())),
                        Err(refused) => drop(extensions.insert(refused.clone())),
                    }
                    router.clone().call(req)
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            // Past the cap: answered under the handshake's place and deadline, so
            // refused connections stay bounded too.
            None => {
                let service = TowerToHyperService::new(over_capacity(intake.limits.max_connections));
                let conn = hyper::server::conn::http1::Builder::new().keep_alive(false).serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = tokio::time::timeout(timeout, conn) => {}
                    _ = slot.evicted.cancelled() => {}
                }
            }
        }
    }
}

/// The caller a connection's verified certificate names.
fn who(stream: &TlsStream<TcpStream>) -> Result<ClientIdentity, IdentityError> {
    // The verifier requires a certificate, so there always is one.
    let cert = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).ok_or(IdentityError::NoName)?;
    pki::identity(cert)
}
