//! Wiring: builds every subsystem from the config, runs them under one
//! supervisor, and on SIGINT/SIGTERM drains them in order — stop taking
//! requests, let running tasks finish (or release their leases after the
//! grace period), flush the outbox, close the database.

mod supervisor;

pub use supervisor::Supervisor;

use crate::actions::{ActionExecutors, WebhookExecutor};
use crate::agent::{GeneralExecutor, Llm, PromptBuilder, build_provider};
use crate::api::{ApiState, router, serve as serve_api};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::domain::TaskKind;
use crate::gateway::{Gateway, GatewayParts};
use crate::orchestrator::{Executors, NoopExecutor, OrchestratorHandle, spawn_pool};
use crate::outbox::{Outbox, Publishers};
use crate::store::{Store, StoreError};
use crate::workspace::Workspaces;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
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

/// Runs the daemon on `listener` until `stop` fires, then drains.
pub async fn serve(config: Config, listener: TcpListener, stop: CancellationToken) -> Result<(), ServeError> {
    install_crypto_provider();
    mkdir(&config.paths.data_dir)?;
    mkdir(&config.paths.workspace_root)?;
    let store = Store::open(&config.paths.db_path)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let workspaces = Workspaces::new(config.paths.workspace_root.clone());
    let outbox_ready = Arc::new(Notify::new());
    let orchestrator =
        OrchestratorHandle::new(store.clone(), clock.clone(), config.orchestrator.clone(), config.notify, outbox_ready.clone());
    let llm = Llm::new(build_provider(&config.llm), store.clone(), clock.clone());
    let prompts = PromptBuilder::new(config.prompts.clone(), &config.llm, workspaces.clone());
    let general = GeneralExecutor::new(llm.clone(), prompts.clone(), store.clone(), workspaces.clone(), clock.clone());
    let executors = Executors::default().with(TaskKind::General, Arc::new(general)).with(TaskKind::Noop, Arc::new(NoopExecutor));

    let root = Supervisor::new();
    let pool = spawn_pool(orchestrator.clone(), executors, &root);
    let outbox_sup = root.child();
    let outbox = Outbox {
        store: store.clone(),
        publishers: Publishers::default(),
        config: config.outbox.clone(),
        clock: clock.clone(),
        ready: outbox_ready.clone(),
    };
    outbox.spawn(&outbox_sup, Duration::from_secs(5));

    let gateway = Gateway::new(GatewayParts {
        store: store.clone(),
        orchestrator: orchestrator.clone(),
        llm: llm.clone(),
        llm_enabled: config.llm.enabled,
        prompts,
        workspaces,
        clock: clock.clone(),
        config: config.gateway.clone(),
        outbox_ready,
        actions: action_executors(&config)?,
    });
    let interrupted = store.interrupt_running_executions(clock.now_ms()).await?;
    if interrupted > 0 {
        tracing::warn!(count = interrupted, "approved actions were executing when the runtime stopped; marked interrupted, not retried");
    }
    let expiry = gateway.clone();
    let expiry_stop = root.token().clone();
    root.spawn("approval-expiry", async move { expire_loop(expiry, expiry_stop).await });
    let state = ApiState { store: store.clone(), gateway, orchestrator, clock, environment: config.environment.clone() };
    let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: config.http.addr, source })?;
    let state_file = config.paths.serve_state_file();
    write_state_file(&state_file, addr);
    tracing::info!(%addr, db = %config.paths.db_path.display(), llm = %llm.describe(), workers = config.orchestrator.concurrency, "agent-runtime serving");

    let api_stop = CancellationToken::new();
    let api = serve_api(listener, router(state, config.http.max_body_bytes), api_stop.clone());
    let mut api = std::pin::pin!(api);
    let api_result = tokio::select! {
        r = &mut api => Some(r),
        _ = stop.cancelled() => None,
    };
    tracing::info!("shutting down: no new requests; draining tasks and the outbox");
    api_stop.cancel();
    let api_result = match api_result {
        Some(r) => r,
        None => api.await,
    };
    pool.drain(config.orchestrator.shutdown_grace).await;
    outbox_sup.shutdown();
    outbox_sup.drain().await;
    root.shutdown();
    root.drain().await;
    store.close();
    let _ = std::fs::remove_file(&state_file);
    tracing::info!("stopped cleanly");
    api_result.map_err(ServeError::Api)
}

/// The executors of approved actions.
fn action_executors(config: &Config) -> Result<ActionExecutors, ServeError> {
    let webhook = WebhookExecutor::new(config.gateway.webhook_timeout).map_err(|e| ServeError::Setup(format!("webhook client: {e}")))?;
    Ok(ActionExecutors::default().with("webhook", Arc::new(webhook)))
}

/// Expires action requests past their time, every second.
async fn expire_loop(gateway: Gateway, stop: CancellationToken) {
    loop {
        if let Err(e) = gateway.expire_actions().await {
            tracing::warn!(error = %e, "expiring action requests failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Binds the configured address and serves until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let addr = config.http.addr;
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let stop = CancellationToken::new();
    let serving = serve(config, listener, stop.clone());
    let mut serving = std::pin::pin!(serving);
    tokio::select! {
        r = &mut serving => return r,
        _ = shutdown_signal() => stop.cancel(),
    }
    serving.await
}

fn write_state_file(path: &Path, addr: std::net::SocketAddr) {
    let body = serde_json::json!({"pid": std::process::id(), "http_addr": addr.to_string(), "version": crate::VERSION});
    let tmp = path.with_extension("json.tmp");
    let res = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&tmp, body.to_string()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = res {
        tracing::warn!(error = %e, path = %path.display(), "could not record the serve state file; the CLI will need --api-url");
    }
}
