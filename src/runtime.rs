//! Wiring: builds every subsystem from the config, runs them under one
//! supervisor, and on SIGINT/SIGTERM drains them in order — stop taking
//! requests, let running tasks finish (or release their leases after the
//! grace period), flush the outbox, close the database.

mod supervisor;

pub use supervisor::Supervisor;

use crate::actions::{ActionExecutors, SendEmailExecutor, UntrustedTaskExecutor, WebhookExecutor};
use crate::agent::{GeneralExecutor, Llm, PromptBuilder, build_provider};
use crate::api::{ApiState, router, serve as serve_api};
use crate::api::{TlsState, serve_tls};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, HeartbeatConfig, TlsFiles};
use crate::connectors::email::smtp::SmtpSender;
use crate::connectors::{Connector, discord, email, telegram};
use crate::domain::TaskKind;
use crate::gateway::{Dispatcher, Gateway, GatewayParts};
use crate::health::{Health, State};
use crate::orchestrator::{Executors, NoopExecutor, OrchestratorHandle, spawn_pool};
use crate::outbox::{Outbox, Publishers};
use crate::pki::{self, InitOutcome, PkiDir};
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
    /// The TLS material could not be created or read.
    #[error("admin TLS: {0}")]
    Tls(#[from] crate::pki::PkiError),
}

/// The admin API's TLS settings: the configured files, else the local PKI
/// under `<data>/pki` (created on first start).
pub fn tls_files(config: &Config) -> Result<TlsFiles, ServeError> {
    if let Some(f) = &config.http.tls_files {
        return Ok(f.clone());
    }
    let pki = PkiDir::new(config.paths.pki_dir());
    if pki::init(&pki)? == InitOutcome::Created {
        let (cert, _) = pki.client(pki::LOCAL_ADMIN);
        tracing::info!(dir = %pki.dir.display(), client = %cert.display(), "created the local PKI: a CA, a server certificate and an admin client certificate");
    }
    Ok(TlsFiles { ca: pki.ca_cert(), cert: pki.server_cert(), key: pki.server_key() })
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
    let started = std::time::Instant::now();
    let store = Store::open(&config.paths.db_path)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let health = Health::new(clock.clone(), config.heartbeat.stale_after);
    health.register("runtime");
    health.register("api");
    health.register_periodic("store", Duration::from_secs(1));
    // The heartbeat compares against this first view, taken before any
    // component can move (taken in its own task, it could come after the
    // store's first beat, and that start-up transition was never logged).
    let first_view = health.snapshot();
    let workspaces = Workspaces::new(config.paths.workspace_root.clone());
    let outbox_ready = Arc::new(Notify::new());
    let orchestrator =
        OrchestratorHandle::new(store.clone(), clock.clone(), config.orchestrator.clone(), config.notify, outbox_ready.clone())
            .with_health(health.clone());
    let llm = Llm::new(build_provider(&config.llm), store.clone(), clock.clone());
    let prompts = PromptBuilder::new(config.prompts.clone(), &config.llm, workspaces.clone());
    let general = GeneralExecutor::new(llm.clone(), prompts.clone(), store.clone(), workspaces.clone(), clock.clone());
    let executors = Executors::default().with(TaskKind::General, Arc::new(general)).with(TaskKind::Noop, Arc::new(NoopExecutor));

    let root = Supervisor::new();
    let pool = spawn_pool(orchestrator.clone(), executors, &root);
    let outbox_sup = root.child();
    let telegram_bot = match &config.connectors.telegram {
        Some(t) => Some(crate::connectors::telegram::bot(t).map_err(ServeError::Setup)?),
        None => None,
    };
    let discord_rest = match &config.connectors.discord {
        Some(d) => Some(discord::DiscordRest::new(&d.api_base, d.token.expose()).map_err(ServeError::Setup)?),
        None => None,
    };
    let smtp = match &config.connectors.smtp {
        Some(c) => Some(SmtpSender::new(c).map_err(ServeError::Setup)?),
        None => None,
    };
    let mut publishers = Publishers::default();
    if let Some(bot) = &telegram_bot {
        publishers = publishers.with(telegram::NAME, Arc::new(telegram::TelegramPublisher::new(bot.clone())));
    }
    if let Some(rest) = &discord_rest {
        publishers = publishers.with(discord::NAME, Arc::new(discord::DiscordPublisher::new(rest.clone())));
    }
    if let (Some(sender), Some(e)) = (&smtp, &config.connectors.email) {
        publishers = publishers.with(email::NAME, Arc::new(email::EmailPublisher::new(sender.clone(), vec![e.address.clone()])));
    }
    let outbox = Outbox {
        store: store.clone(),
        publishers,
        config: config.outbox.clone(),
        clock: clock.clone(),
        ready: outbox_ready.clone(),
        health: Some(health.clone()),
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
        actions: action_executors(&config, &orchestrator, smtp.as_ref())?,
    });
    // Connectors: stored-but-unanswered messages go first, then each platform's loop.
    let connectors = root.child();
    let dispatcher = Dispatcher::spawn(gateway.clone(), &connectors, 32);
    let recovered = gateway.recover_inbox(&dispatcher).await.map_err(|e| ServeError::Setup(format!("inbox recovery: {e}")))?;
    if recovered > 0 {
        tracing::warn!(count = recovered, "messages were stored but not answered when the runtime stopped; answering them now");
    }
    let mut platforms: Vec<Box<dyn Connector>> = Vec::new();
    match (&config.connectors.telegram, telegram_bot) {
        (Some(t), Some(bot)) => platforms.push(Box::new(telegram::TelegramConnector {
            bot,
            config: t.clone(),
            command_sync: config.connectors.command_sync,
            attachment_max_bytes: config.connectors.attachment_max_bytes,
            gateway: gateway.clone(),
            dispatcher: dispatcher.clone(),
            health: health.clone(),
        })),
        _ => health.disabled(telegram::NAME, "AGENT_RUNTIME_TELEGRAM_TOKEN is not set"),
    }
    match (&config.connectors.discord, discord_rest) {
        (Some(d), Some(rest)) => platforms.push(Box::new(discord::DiscordConnector {
            config: d.clone(),
            rest,
            command_sync: config.connectors.command_sync,
            attachment_max_bytes: config.connectors.attachment_max_bytes,
            gateway: gateway.clone(),
            dispatcher: dispatcher.clone(),
            health: health.clone(),
        })),
        _ => health.disabled(discord::NAME, "AGENT_RUNTIME_DISCORD_TOKEN is not set"),
    }
    match &config.connectors.email {
        Some(e) => platforms.push(Box::new(email::EmailConnector {
            config: e.clone(),
            attachment_max_bytes: config.connectors.attachment_max_bytes,
            gateway: gateway.clone(),
            dispatcher: dispatcher.clone(),
            health: health.clone(),
        })),
        None => health.disabled(email::NAME, "AGENT_RUNTIME_EMAIL_ENABLED is not true (or the IMAP settings are incomplete)"),
    }
    for c in platforms {
        let (name, stop) = (c.name(), connectors.token().clone());
        connectors.spawn(name, c.run(stop));
    }
    let interrupted = store.interrupt_running_executions(clock.now_ms()).await?;
    if interrupted > 0 {
        tracing::warn!(count = interrupted, "approved actions were executing when the runtime stopped; marked interrupted, not retried");
    }
    if config.heartbeat.enabled {
        let (h, st, cl, hb, stop) = (health.clone(), store.clone(), clock.clone(), config.heartbeat.clone(), root.token().clone());
        root.spawn("heartbeat", async move { heartbeat_loop(h, st, cl, hb, first_view, stop).await });
    }
    let (keeper_store, keeper_stop) = (store.clone(), root.token().clone());
    root.spawn("memory", async move { crate::memory::keep(keeper_store, keeper_stop).await });
    let expiry = gateway.clone();
    let expiry_stop = root.token().clone();
    let (expiry_store, expiry_clock) = (store.clone(), clock.clone());
    let retention = config.http.events_retention;
    let expiry_health = health.clone();
    root.spawn("expiry", async move { expire_loop(expiry, expiry_store, expiry_clock, retention, expiry_health, expiry_stop).await });
    let streams = Supervisor::new();
    let state = ApiState {
        store: store.clone(),
        gateway,
        orchestrator,
        clock,
        environment: config.environment.clone(),
        prices: Arc::new(config.llm.prices.clone()),
        streams: streams.clone(),
        events_slow_client: config.http.events_slow_client,
        health: health.clone(),
        heartbeat_enabled: config.heartbeat.enabled,
        started,
    };
    let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: config.http.addr, source })?;
    let tls = if config.http.plain_http { None } else { Some(TlsState::load(tls_files(&config)?)?) };
    let api_stop = CancellationToken::new();
    if let Some(probe_addr) = config.http.health_addr {
        let probes = TcpListener::bind(probe_addr).await.map_err(|source| ServeError::Bind { addr: probe_addr, source })?;
        let (probe_state, probe_stop) = (state.clone(), api_stop.clone());
        root.spawn("health-listener", async move {
            if let Err(e) = serve_api(probes, crate::api::probe_router(probe_state), probe_stop).await {
                tracing::error!(error = %e, "the probe listener failed");
            }
        });
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let state_file = config.paths.serve_state_file();
    write_state_file(&state_file, addr, scheme);
    health.healthy("api", format!("listening on {scheme}://{addr}"));
    health.healthy("runtime", format!("agent-runtime {}", crate::VERSION));
    tracing::info!(url = %format!("{scheme}://{addr}"), mutual_tls = tls.is_some(), db = %config.paths.db_path.display(), llm = %llm.describe(), workers = config.orchestrator.concurrency, "agent-runtime serving");

    let app = router(state, &config.http);
    let api: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> = match &tls {
        Some(tls) => {
            let (reload, hup_health) = (tls.clone(), health.clone());
            let hup_stop = root.token().clone();
            root.spawn("tls-reload", async move { reload_on_sighup(reload, hup_health, hup_stop).await });
            Box::pin(serve_tls(listener, app, tls.clone(), (&config.http).into(), root.child(), api_stop.clone()))
        }
        None => Box::pin(serve_api(listener, app, api_stop.clone())),
    };
    let mut api = api;
    let api_result = tokio::select! {
        r = &mut api => Some(r),
        _ = stop.cancelled() => None,
    };
    tracing::info!("shutting down: no new requests; draining tasks and the outbox");
    api_stop.cancel();
    // Event streams never end on their own: end them so the listener can drain.
    streams.shutdown();
    let api_result = match api_result {
        Some(r) => r,
        None => api.await,
    };
    // No new chat messages; those being answered finish (the rest are answered at the next start).
    connectors.shutdown();
    connectors.drain().await;
    pool.drain(config.orchestrator.shutdown_grace).await;
    outbox_sup.shutdown();
    outbox_sup.drain().await;
    root.shutdown();
    root.drain().await;
    streams.drain().await;
    store.close();
    let _ = std::fs::remove_file(&state_file);
    tracing::info!("stopped cleanly");
    api_result.map_err(ServeError::Api)
}

/// The executors of approved actions.
/// The executors of approved actions: webhooks, held untrusted messages,
/// and `send_email` when SMTP is configured.
fn action_executors(config: &Config, orchestrator: &OrchestratorHandle, smtp: Option<&SmtpSender>) -> Result<ActionExecutors, ServeError> {
    let webhook = WebhookExecutor::new(config.gateway.webhook_timeout).map_err(|e| ServeError::Setup(format!("webhook client: {e}")))?;
    let mut executors = ActionExecutors::default()
        .with("webhook", Arc::new(webhook))
        .with(crate::gateway::UNTRUSTED_TASK, Arc::new(UntrustedTaskExecutor::new(orchestrator.clone())));
    if let Some(sender) = smtp {
        let own = config.connectors.email.as_ref().map(|e| e.address.clone());
        executors = executors.with("send_email", Arc::new(SendEmailExecutor::new(sender.clone(), own)));
    }
    Ok(executors)
}

/// Expires action requests past their time, every second; drops
/// idempotency keys past their 24 hours and events past their retention,
/// every minute.
async fn expire_loop(gateway: Gateway, store: Store, clock: SharedClock, retention: Duration, health: Health, stop: CancellationToken) {
    let mut ticks: u64 = 0;
    loop {
        // This pass writes every second, so it doubles as the store's beat.
        match gateway.expire_actions().await {
            Ok(_) => health.beat("store"),
            Err(e) => {
                tracing::warn!(error = %e, "expiring action requests failed");
                health.degrade("store", format!("a write failed: {e}"));
            }
        }
        if ticks.is_multiple_of(60)
            && let Err(e) = store.purge_idempotency_keys(clock.now_ms()).await
        {
            tracing::warn!(error = %e, "purging idempotency keys failed");
        }
        if ticks.is_multiple_of(60)
            && let Err(e) = store.prune_events(clock.now_ms() - retention.as_millis() as i64).await
        {
            tracing::warn!(error = %e, "pruning the event log failed");
        }
        ticks += 1;
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

/// Re-reads the TLS files on every SIGHUP (certificate rotation without a
/// restart); a bad file is reported and the settings in force stay.
async fn reload_on_sighup(tls: Arc<TlsState>, health: Health, stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; certificate files are read only at start");
            return;
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %tls.files().cert.display(), ca = %tls.files().ca.display(), "SIGHUP: reloaded the admin TLS certificates");
                    health.healthy("api", "certificates reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: could not reload the admin TLS certificates; keeping the ones in use");
                    health.degrade("api", format!("certificate reload failed (the previous certificates stay in use): {e}"));
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (tls, health, stop);
    }
}

fn write_state_file(path: &Path, addr: std::net::SocketAddr, scheme: &str) {
    let body = serde_json::json!({"pid": std::process::id(), "http_addr": addr.to_string(), "url": format!("{scheme}://{addr}"), "version": crate::VERSION});
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

/// Watches component health: every change (and, each interval, derived
/// staleness) becomes a `health.changed` event; degradations and recoveries
/// are told to the admin chats when so configured.
async fn heartbeat_loop(
    health: Health,
    store: Store,
    clock: SharedClock,
    config: HeartbeatConfig,
    mut before: crate::health::Snapshot,
    stop: CancellationToken,
) {
    let changes = health.changes();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changes.notified() => {}
            _ = tokio::time::sleep(config.interval) => {}
        }
        let now = health.snapshot();
        for t in crate::health::transitions(&before, &now) {
            let data = serde_json::json!({
                "component": t.component, "from": t.from.map(|s| s.as_str()), "to": t.to.as_str(),
                "error": t.error, "overall": t.overall,
            });
            if let Err(e) = store.log_event("health.changed", data, clock.now_ms()).await {
                tracing::warn!(error = %e, "could not log a health change");
            }
            let bad = |s: State| matches!(s, State::Degraded | State::Stale);
            let word = match t.from {
                Some(from) if !bad(from) && bad(t.to) => "degraded",
                Some(from) if bad(from) && t.to == State::Healthy => "recovered",
                _ => continue,
            };
            tracing::warn!(component = %t.component, to = t.to.as_str(), error = ?t.error, "component {word}");
            if config.notify_admin {
                let mut body = format!(
                    "Heartbeat {word}\n- component: `{}`\n- state: `{}` -> `{}`\n- overall: `{}`",
                    t.component,
                    t.from.map_or("new", State::as_str),
                    t.to.as_str(),
                    t.overall
                );
                if let Some(e) = &t.error {
                    body.push_str(&format!("\n- error: {e}"));
                }
                if let Err(e) = store.notify_admin_chats(body, clock.now_ms()).await {
                    tracing::warn!(error = %e, "could not notify admin chats of a health change");
                }
            }
        }
        before = now;
    }
}
