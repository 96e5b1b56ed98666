//! Wiring: builds every subsystem from the config, runs them under one
//! supervisor, and on SIGINT/SIGTERM drains them in order — stop taking
//! requests, let running tasks finish (or release their leases after the
//! grace period), flush the outbox, close the database.
//!
//! Start-up runs in phases (`start.rs`): open the store under the data
//! directory's lock and recover what a dead process left, build the parts,
//! start the workers, then open the doors (dispatcher, connectors, API).
//! An essential task that panics stops the daemon with an error
//! (`Supervisor`), as SIGTERM would, but exiting 1.

mod lock;
mod loops;
mod start;
mod supervisor;

pub use lock::{DataLock, LOCK_FILE, LockError};
pub use supervisor::{Failure, Restart, Supervisor};

use crate::config::{Config, TlsFiles};
use crate::health::Health;
use crate::pki::{self, InitOutcome, PkiDir};
use crate::store::StoreError;
use std::path::{Path, PathBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why `serve` could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A directory could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A part could not be set up.
    #[error("setup failed: {0}")]
    Setup(String),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("admin API failed: {0}")]
    Api(#[source] std::io::Error),
    /// The TLS material could not be created or read.
    #[error("admin TLS: {0}")]
    Tls(#[from] crate::pki::PkiError),
    /// Another `serve` holds the data directory (→ exit 2, naming its pid),
    /// or the lock file could not be used.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// An essential task panicked; the daemon drained and stopped so that
    /// a service manager starts a clean process (→ exit 1).
    #[error("task `{}` panicked ({}): {}; stopped so that a clean process can take over", .0.task, .0.component, .0.message)]
    Panicked(Failure),
}

/// The admin API's TLS settings: the configured files, else the local PKI
/// under `<data>/pki` (created on first start).
pub fn tls_files(config: &Config) -> Result<TlsFiles, ServeError> {
    if let Some(f) = &config.http.tls_files {
        warn_if_uncovered(config.http.addr.ip(), &f.cert);
        return Ok(f.clone());
    }
    let pki = PkiDir::new(config.paths.pki_dir());
    if pki::init(&pki)? == InitOutcome::Created {
        let (cert, _) = pki.client(pki::LOCAL_ADMIN);
        tracing::info!(dir = %pki.dir.display(), client = %cert.display(), "created the local PKI: a CA, a server certificate and an admin client certificate");
    }
    let added = pki::ensure_server_names(&pki, &config.http.tls_sans)?;
    if !added.is_empty() {
        tracing::info!(names = %added.join(", "), cert = %pki.server_cert().display(), "reissued the server certificate with the names of AGENT_RUNTIME_TLS_SANS");
    }
    let files = TlsFiles { ca: pki.ca_cert(), cert: pki.server_cert(), key: pki.server_key() };
    warn_if_uncovered(config.http.addr.ip(), &files.cert);
    Ok(files)
}

/// Warns when clients cannot reach the bound address by a name the server
/// certificate has: a specific address not in it, or every address with a
/// certificate for loopback names only (each client would fail the name check).
fn warn_if_uncovered(ip: std::net::IpAddr, cert: &Path) {
    let Ok(names) = pki::server_names(cert) else { return };
    let only_defaults = names.iter().all(|n| pki::DEFAULT_NAMES.contains(&n.as_str()));
    if ip.is_unspecified() && only_defaults {
        tracing::warn!(
            %ip, names = %names.join(", "),
            "listening on every address, but the server certificate names only loopback: clients elsewhere fail the TLS name check; \
             add the names they use with AGENT_RUNTIME_TLS_SANS (or `agent-runtime pki init --san`)"
        );
    } else if !ip.is_unspecified() && !pki::covers(&names, ip) {
        tracing::warn!(
            %ip, names = %names.join(", "),
            "the bound address is not in the server certificate: clients connecting to it fail the TLS name check; \
             add it with AGENT_RUNTIME_TLS_SANS (or `agent-runtime pki init --san`)"
        );
    }
}

fn mkdir(path: &Path) -> Result<(), ServeError> {
    std::fs::create_dir_all(path).map_err(|source| ServeError::Dir { path: path.to_path_buf(), source })
}

/// Installs the one rustls crypto provider (`ring`) for the process.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the daemon on `listener` until `stop` fires (or an essential task
/// panics), then drains. `lock` is the data directory's: the store is
/// opened only under it.
pub async fn serve(config: Config, lock: DataLock, listener: TcpListener, stop: CancellationToken) -> Result<(), ServeError> {
    serve_with(config, lock, listener, stop, Supervisor::with_health).await
}

/// [`serve`], with the root supervisor made by `root` (tests inject panics).
async fn serve_with(
    config: Config,
    lock: DataLock,
    listener: TcpListener,
    stop: CancellationToken,
    root: impl FnOnce(Health) -> Supervisor,
) -> Result<(), ServeError> {
    install_crypto_provider();
    let started = std::time::Instant::now();
    let core = start::open(&config, &lock).await?;
    let root = root(core.health.clone());
    let parts = start::build(&config, &core)?;
    let workers = start::start_workers(&config, &core, &parts, &root);
    let mut doors = start::start_doors(&config, &core, parts, &root, listener, started).await?;

    let api_result = tokio::select! {
        r = &mut doors.api => Some(r),
        _ = stop.cancelled() => None,
        _ = root.failed() => None,
    };
    match root.failure() {
        Some(f) => tracing::error!(task = f.task, "shutting down because an essential task panicked; draining tasks and the outbox"),
        None => tracing::info!("shutting down: no new requests; draining tasks and the outbox"),
    }
    let api_result = drain(&config, workers, doors, &root, api_result).await;
    core.store.close();
    drop(lock);
    if let Some(f) = root.failure() {
        return Err(ServeError::Panicked(f));
    }
    tracing::info!("stopped cleanly");
    api_result.map_err(ServeError::Api)
}

/// Stops in order: no new requests or chat messages (those being answered
/// finish; the rest are answered at the next start), running tasks finish
/// or are released after the grace period, the outbox flushes, then the
/// daemon's own loops. Returns the admin API's result.
async fn drain(
    config: &Config,
    workers: start::Workers,
    doors: start::Doors,
    root: &Supervisor,
    api_result: Option<std::io::Result<()>>,
) -> std::io::Result<()> {
    doors.api_stop.cancel();
    // Event streams never end on their own: end them so the listener can drain.
    doors.streams.shutdown();
    let api_result = match api_result {
        Some(r) => r,
        None => doors.api.await,
    };
    doors.connectors.shutdown();
    doors.connectors.drain().await;
    doors.dispatch.drain().await;
    workers.pool.drain(config.orchestrator.shutdown_grace).await;
    workers.outbox.shutdown();
    workers.outbox.drain().await;
    root.shutdown();
    root.drain().await;
    doors.streams.drain().await;
    let _ = std::fs::remove_file(&doors.state_file);
    api_result
}

/// Locks the data directory, binds the configured address and serves
/// until SIGINT/SIGTERM. The lock comes first: a second `serve` with the
/// same settings is refused for the lock (naming its holder), not for the
/// address.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let lock = DataLock::acquire(&config.paths.data_dir, &config.paths.db_path)?;
    let addr = config.http.addr;
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let stop = CancellationToken::new();
    let serving = serve(config, lock, listener, stop.clone());
    let mut serving = std::pin::pin!(serving);
    tokio::select! {
        r = &mut serving => return r,
        _ = shutdown_signal() => stop.cancel(),
    }
    serving.await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvSource;
    use crate::store::Store;
    use std::time::Duration;

    fn config(data: &Path) -> Config {
        let data = data.to_string_lossy().into_owned();
        let src = EnvSource::from_pairs([
            ("AGENT_RUNTIME_DATA_DIR", data.as_str()),
            ("AGENT_RUNTIME_ADMIN_PLAIN_HTTP", "true"),
            ("AGENT_RUNTIME_HTTP_ADDR", "127.0.0.1:0"),
        ]);
        Config::read(&src).config
    }

    // Regression (issue 14, item 10): a panicked pool coordinator was dropped
    // by the supervisor; the daemon stayed up with a green orchestrator and
    // nothing claiming tasks. Now serve stops on its own (no signal), with
    // an error naming the task, after recording the degraded component.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicked_pool_coordinator_stops_serve_with_an_error_after_recording_the_degraded_orchestrator() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(&dir.path().join("data"));
        let lock = DataLock::acquire(&config.paths.data_dir, &config.paths.db_path).expect("lock");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let never = CancellationToken::new();
        let serving = serve_with(config.clone(), lock, listener, never, |h| Supervisor::with_health(h).panic_in("pool-coordinator"));
        let ended = tokio::time::timeout(Duration::from_secs(30), serving).await.expect("serve stops on its own after the panic");
        match ended {
            Err(ServeError::Panicked(f)) => assert_eq!((f.task, f.component), ("pool-coordinator", "orchestrator"), "{f:?}"),
            other => panic!("expected ServeError::Panicked, got {other:?}"),
        }

        DataLock::acquire(&config.paths.data_dir, &config.paths.db_path).expect("the lock is released when serve returns");
        let store = Store::open(&config.paths.db_path).expect("reopen");
        let events = store.events_after(0, 1000, vec!["health.changed".into()]).await.expect("events");
        let degraded = events.iter().find_map(|e| {
            let d: serde_json::Value = serde_json::from_str(&e.data).ok()?;
            (d["component"] == "orchestrator" && d["to"] == "degraded").then_some(d)
        });
        let d = degraded.unwrap_or_else(|| panic!("no orchestrator degradation in the event log: {events:?}"));
        assert!(d["error"].as_str().unwrap_or("").contains("`pool-coordinator` panicked"), "{d}");
        store.close();
    }
}
