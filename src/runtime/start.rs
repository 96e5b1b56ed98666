//! The start-up phases of `serve`, in the order they must run:
//!
//! 1. [`open`] — under the data-directory lock: the store, then recovery of
//!    what a dead process left behind (running tasks requeued at once,
//!    executing actions marked interrupted), before anything can claim or
//!    execute;
//! 2. [`build`] — clients, publishers, the gateway: constructed, nothing
//!    running yet;
//! 3. [`start_workers`] — the worker pool, the outbox and the daemon's own
//!    loops;
//! 4. [`start_doors`] — what lets work in: the dispatcher (with the inbox
//!    left by a crash), the connectors and the admin API.
//!
//! Each phase takes what the one before produced, so the order is the
//! types' order, not a comment's.

use super::lock::DataLock;
use super::loops::{expire_loop, heartbeat_loop, reload_on_sighup, write_state_file};
use super::{Restart, ServeError, Supervisor, mkdir, tls_files};
use crate::actions::{ActionExecutors, Desk, SendEmailExecutor, UntrustedTaskExecutor, WebhookExecutor};
use crate::agent::tools::Registry;
use crate::agent::{Agent, AgentParts, GeneralExecutor, Llm, PromptBuilder, ResumeExecutor, build_provider};
use crate::api::{ApiParts, ApiState, TlsState, router, serve as serve_api, serve_tls};
use crate::budget::Budget;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::connectors::email::smtp::SmtpSender;
use crate::connectors::{Connector, discord, email, telegram};
use crate::domain::TaskKind;
use crate::gateway::{Dispatcher, Gateway, GatewayParts};
use crate::health::{Health, Snapshot};
use crate::orchestrator::{Executors, NoopExecutor, OrchestratorHandle, Pool, spawn_pool};
use crate::outbox::{OfflinePublisher, Outbox, Publishers};
use crate::retrieval::Retrieval;
use crate::scheduler::Scheduler;
use crate::store::Store;
use crate::workspace::Workspaces;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A connector loop that panicked starts again after this backoff (its
/// state, the platform cursor, is in the store).
const CONNECTOR_RESTART: Restart = Restart { base: Duration::from_secs(1), max: Duration::from_secs(60) };

/// Phase 1's result: the store and the handles every later phase uses.
pub(super) struct Core {
    pub store: Store,
    pub clock: SharedClock,
    pub health: Health,
    /// What the heartbeat compares its first look with.
    pub first_view: Snapshot,
    pub workspaces: Workspaces,
    pub outbox_ready: Arc<Notify>,
    pub orchestrator: OrchestratorHandle,
    pub scheduler: Scheduler,
    /// The markdown index (`None`: turned off, or it could not open).
    pub retrieval: Option<Retrieval>,
    /// Spending limits and the kill switch.
    pub budget: Budget,
}

/// Phase 1: opens the store under `lock` and recovers what the previous
/// process left: holding the lock proves it is gone, so its running tasks
/// are requeued now (not when their leases run out) and its executing
/// actions are marked interrupted — before any worker, connector or
/// dispatcher of this process starts.
pub(super) async fn open(config: &Config, _lock: &DataLock) -> Result<Core, ServeError> {
    mkdir(&config.paths.data_dir)?;
    mkdir(&config.paths.workspace_root)?;
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
    let outbox_ready = Arc::new(Notify::new());
    let prices = Arc::new(config.llm.prices.clone());
    let budget = Budget::load(store.clone(), clock.clone(), config.llm.budget, prices, outbox_ready.clone()).await?;
    if budget.switch().is_paused() {
        tracing::warn!("the agent is paused (agent pause): no model calls until `agent-runtime agent resume`");
    }
    let orchestrator =
        OrchestratorHandle::new(store.clone(), clock.clone(), config.orchestrator.clone(), config.notify, outbox_ready.clone())
            .with_health(health.clone())
            .with_switch(budget.switch().clone());
    orchestrator.recover_at_start().await?;
    let interrupted = store.interrupt_running_executions(clock.now_ms()).await?;
    if interrupted > 0 {
        tracing::warn!(count = interrupted, "approved actions were executing when the runtime stopped; marked interrupted, not retried");
    }
    let workspaces = Workspaces::new(config.paths.workspace_root.clone());
    store.set_objective_pause_after(config.scheduler.max_consecutive_failures).await?;
    let mut scheduler = Scheduler::new(store.clone(), orchestrator.clone(), clock.clone(), config.scheduler.clone());
    if config.scheduler.enabled {
        scheduler = scheduler.with_health(health.clone());
    } else {
        health.disabled(crate::scheduler::COMPONENT, "AGENT_RUNTIME_SCHEDULER_ENABLED=false: objectives do not fire on their own");
    }
    if !config.scheduler.watch {
        health.disabled(crate::workspace::watch::COMPONENT, "AGENT_RUNTIME_WATCH_ENABLED=false: workspace changes fire nothing");
    }
    let retrieval = open_retrieval(config, &health);
    Ok(Core { store, clock, health, first_view, workspaces, outbox_ready, orchestrator, scheduler, retrieval, budget })
}

/// Opens the markdown index (building it from the workspaces happens once
/// the workers run); a failure leaves search off and the component degraded.
fn open_retrieval(config: &Config, health: &Health) -> Option<Retrieval> {
    if !config.retrieval.enabled {
        health.disabled(crate::retrieval::COMPONENT, "AGENT_RUNTIME_RETRIEVAL_ENABLED=false: /search and /open are off");
        return None;
    }
    match Retrieval::start(&config.retrieval, &config.paths.workspace_root) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, db = %config.retrieval.db_path.display(), "the retrieval index cannot open; search is off");
            health.degrade(crate::retrieval::COMPONENT, e.to_string());
            None
        }
    }
}

/// Phase 2's result: everything constructed, nothing running.
pub(super) struct Parts {
    pub llm: Llm,
    pub executors: Executors,
    pub outbox: Outbox,
    pub gateway: Gateway,
    pub telegram_bot: Option<telegram::Bot>,
    pub discord_rest: Option<discord::DiscordRest>,
}

/// Phase 2: the LLM, the executors, the platform clients and publishers,
/// and the gateway.
pub(super) fn build(config: &Config, core: &Core) -> Result<Parts, ServeError> {
    let llm = Llm::new(build_provider(&config.llm), core.store.clone(), core.clock.clone())
        .with_max_concurrent_calls(config.llm.max_concurrent_calls)
        .with_budget(core.budget.clone());
    let prompts = PromptBuilder::new(config.prompts.clone(), &config.llm, core.workspaces.clone());
    let smtp = config.connectors.smtp.as_ref().map(SmtpSender::new).transpose().map_err(ServeError::Setup)?;
    let actions = action_executors(config, &core.orchestrator, smtp.as_ref())?;
    let desk = Desk::new(actions.clone(), core.store.clone(), core.clock.clone(), config.gateway.approval_ttl, core.outbox_ready.clone());
    let agent = Agent::new(AgentParts {
        llm: llm.clone(),
        prompts: prompts.clone(),
        registry: Registry::builtin(),
        store: core.store.clone(),
        workspaces: core.workspaces.clone(),
        retrieval: core.retrieval.clone(),
        orchestrator: Some(core.orchestrator.clone()),
        desk: Some(desk),
        clock: core.clock.clone(),
        limits: config.agent,
    });
    let general = GeneralExecutor::new(agent.clone(), core.store.clone(), core.workspaces.clone(), core.clock.clone());
    let general = Arc::new(general);
    let resume = Arc::new(ResumeExecutor::new(agent.clone(), core.store.clone()));
    // An objective's run is answered as a general task; its outcome is recorded on the objective.
    let executors = Executors::default()
        .with(TaskKind::General, general.clone())
        .with(TaskKind::Objective, general)
        .with(TaskKind::AgentResume, resume)
        .with(TaskKind::Noop, Arc::new(NoopExecutor));
    let telegram_bot = config.connectors.telegram.as_ref().map(telegram::bot).transpose().map_err(ServeError::Setup)?;
    let discord_rest = match &config.connectors.discord {
        Some(d) => Some(discord::DiscordRest::new(&d.api_base, d.token.expose()).map_err(ServeError::Setup)?),
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
    // A platform chat whose connector is off gets an honest `failed`, not the mailbox's `sent`.
    let offline = [
        (telegram::NAME, telegram_bot.is_none(), "AGENT_RUNTIME_TELEGRAM_TOKEN is not set"),
        (discord::NAME, discord_rest.is_none(), "AGENT_RUNTIME_DISCORD_TOKEN is not set"),
        (email::NAME, smtp.is_none() || config.connectors.email.is_none(), "email is off or SMTP is not configured"),
    ];
    for (name, off, why) in offline {
        if off {
            publishers = publishers.with(name, Arc::new(OfflinePublisher::new(name, why)));
        }
    }
    let typing = publishers.clone();
    let outbox = Outbox {
        store: core.store.clone(),
        publishers,
        config: config.outbox.clone(),
        clock: core.clock.clone(),
        ready: core.outbox_ready.clone(),
        health: Some(core.health.clone()),
    };
    let gateway = Gateway::new(GatewayParts {
        store: core.store.clone(),
        orchestrator: core.orchestrator.clone(),
        llm: llm.clone(),
        llm_enabled: config.llm.enabled,
        prompts,
        workspaces: core.workspaces.clone(),
        clock: core.clock.clone(),
        config: config.gateway.clone(),
        outbox_ready: core.outbox_ready.clone(),
        actions,
    });
    let gateway = match &core.retrieval {
        Some(r) => gateway.with_retrieval(r.clone()),
        None => gateway,
    }
    .with_agent(agent)
    .with_typing(typing);
    Ok(Parts { llm, executors, outbox, gateway, telegram_bot, discord_rest })
}

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

/// Phase 3's result, drained in this order at shutdown (after the doors).
pub(super) struct Workers {
    pub pool: Pool,
    pub outbox: Supervisor,
}

/// Phase 3: the worker pool, the outbox, the heartbeat, the memory keeper
/// and the expiry pass. A panic in any of them stops the daemon.
pub(super) fn start_workers(config: &Config, core: &Core, parts: &Parts, root: &Supervisor) -> Workers {
    let pool = spawn_pool(core.orchestrator.clone(), parts.executors.clone(), root);
    let outbox = root.child();
    parts.outbox.clone().spawn(&outbox.essential("outbox"), Duration::from_secs(5));
    let own = root.essential("runtime");
    if config.heartbeat.enabled {
        let (h, st, cl, hb, first, stop) = (
            core.health.clone(),
            core.store.clone(),
            core.clock.clone(),
            config.heartbeat.clone(),
            core.first_view.clone(),
            own.token().clone(),
        );
        own.spawn("heartbeat", async move { heartbeat_loop(h, st, cl, hb, first, stop).await });
    }
    let (keeper_store, keeper_stop) = (core.store.clone(), own.token().clone());
    own.spawn("memory", async move { crate::memory::keep(keeper_store, keeper_stop).await });
    let (gateway, store, clock, health, stop) =
        (parts.gateway.clone(), core.store.clone(), core.clock.clone(), core.health.clone(), own.token().clone());
    let retention = config.http.events_retention;
    own.spawn("expiry", async move { expire_loop(gateway, store, clock, retention, health, stop).await });
    let (store, clock, rules, stop) = (core.store.clone(), core.clock.clone(), config.retention, own.token().clone());
    own.spawn("retention", async move { super::loops::retention_loop(store, clock, rules, stop).await });
    start_scheduler(config, core, root);
    Workers { pool, outbox }
}

/// The scheduler's time loop, the retrieval index, and the workspace
/// watcher feeding both; each restarted after a panic (their state is in
/// the store, or on disk).
fn start_scheduler(config: &Config, core: &Core, root: &Supervisor) {
    let sched = &config.scheduler;
    let channel = crate::workspace::WatchChannel::default();
    if let Some(r) = &core.retrieval {
        let (r, store, health, stop, ch, every) =
            (r.clone(), core.store.clone(), core.health.clone(), root.token().clone(), channel.clone(), config.retrieval.reconcile_every);
        let watch = sched.watch;
        let first = std::sync::Mutex::new(Some(channel.subscribe()));
        root.spawn_restarting("retrieval", crate::retrieval::COMPONENT, CONNECTOR_RESTART, move || {
            // Subscribed before the watcher starts; a restart subscribes anew (and compares with the disk first).
            let rx = watch.then(|| first.lock().ok().and_then(|mut e| e.take()).unwrap_or_else(|| ch.subscribe()));
            r.clone().run(store.clone(), rx, health.clone(), every, stop.clone())
        });
    }
    if sched.enabled {
        let (s, stop) = (core.scheduler.clone(), root.token().clone());
        root.spawn_restarting("scheduler", crate::scheduler::COMPONENT, CONNECTOR_RESTART, move || s.clone().run(stop.clone()));
        let (s, stop, ch) = (core.scheduler.clone(), root.token().clone(), channel.clone());
        let events = std::sync::Mutex::new(Some(channel.subscribe()));
        root.spawn_restarting("scheduler-events", crate::scheduler::COMPONENT, CONNECTOR_RESTART, move || {
            // The first run takes the subscription made before the watcher starts; a restart subscribes anew.
            let rx = events.lock().ok().and_then(|mut e| e.take()).unwrap_or_else(|| ch.subscribe());
            s.clone().run_events(rx, stop.clone())
        });
    }
    if sched.watch {
        let (rootdir, store, health, stop, debounce) =
            (config.paths.workspace_root.clone(), core.store.clone(), core.health.clone(), root.token().clone(), sched.watch_debounce);
        root.spawn_restarting("watcher", crate::workspace::watch::COMPONENT, CONNECTOR_RESTART, move || {
            crate::workspace::watch::run(rootdir.clone(), store.clone(), channel.clone(), debounce, health.clone(), stop.clone())
        });
    }
}

/// The admin API as it runs.
pub(super) type ApiFuture = std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>;

/// Phase 4's result.
pub(super) struct Doors {
    /// Connector loops (drained first).
    pub connectors: Supervisor,
    /// The dispatcher (drained after the connectors that feed it).
    pub dispatch: Supervisor,
    pub api: ApiFuture,
    pub api_stop: CancellationToken,
    /// Event streams: they never end on their own.
    pub streams: Supervisor,
    pub state_file: PathBuf,
}

/// Phase 4: the dispatcher (handed the messages a crash left unanswered
/// first), the connectors, then the admin API; writes the serve state file.
pub(super) async fn start_doors(
    config: &Config,
    core: &Core,
    parts: Parts,
    root: &Supervisor,
    listener: TcpListener,
    started: std::time::Instant,
) -> Result<Doors, ServeError> {
    let connectors = root.child();
    let dispatch = connectors.child();
    // Its queues are in memory (the rows stay `received` in the inbox): a
    // panic stops the daemon, and the next start hands them over again.
    let dispatcher = Dispatcher::spawn(parts.gateway.clone(), &dispatch.essential("runtime"), 32, Some(core.health.clone()));
    let recovered = parts.gateway.recover_inbox(&dispatcher).await.map_err(|e| ServeError::Setup(format!("inbox recovery: {e}")))?;
    if recovered > 0 {
        tracing::warn!(count = recovered, "messages were stored but not answered when the runtime stopped; answering them now");
    }
    start_connectors(config, core, &parts, &dispatcher, &connectors);
    let (api, api_stop, streams, state_file) = start_api(config, core, parts, root, listener, started).await?;
    Ok(Doors { connectors, dispatch, api, api_stop, streams, state_file })
}

/// A connector, built afresh for each (re)start.
type MakeConnector = Box<dyn FnMut() -> Box<dyn Connector> + Send>;

/// Starts each configured platform's loop (restarted after a panic); the
/// others are reported `disabled`.
fn start_connectors(config: &Config, core: &Core, parts: &Parts, dispatcher: &Dispatcher, sup: &Supervisor) {
    let (c, health, gateway) = (&config.connectors, &core.health, &parts.gateway);
    let mut platforms: Vec<(&'static str, MakeConnector)> = Vec::new();
    match (&c.telegram, &parts.telegram_bot) {
        (Some(t), Some(bot)) => {
            let (bot, t, sync, max) = (bot.clone(), t.clone(), c.command_sync, c.attachment_max_bytes);
            let (gateway, dispatcher, health) = (gateway.clone(), dispatcher.clone(), health.clone());
            platforms.push((
                telegram::NAME,
                Box::new(move || {
                    Box::new(telegram::TelegramConnector {
                        bot: bot.clone(),
                        config: t.clone(),
                        command_sync: sync,
                        attachment_max_bytes: max,
                        gateway: gateway.clone(),
                        dispatcher: dispatcher.clone(),
                        health: health.clone(),
                    })
                }),
            ));
        }
        _ => health.disabled(telegram::NAME, "AGENT_RUNTIME_TELEGRAM_TOKEN is not set"),
    }
    match (&c.discord, &parts.discord_rest) {
        (Some(d), Some(rest)) => {
            let (rest, d, sync, max) = (rest.clone(), d.clone(), c.command_sync, c.attachment_max_bytes);
            let (gateway, dispatcher, health) = (gateway.clone(), dispatcher.clone(), health.clone());
            platforms.push((
                discord::NAME,
                Box::new(move || {
                    Box::new(discord::DiscordConnector {
                        config: d.clone(),
                        rest: rest.clone(),
                        command_sync: sync,
                        attachment_max_bytes: max,
                        gateway: gateway.clone(),
                        dispatcher: dispatcher.clone(),
                        health: health.clone(),
                    })
                }),
            ));
        }
        _ => health.disabled(discord::NAME, "AGENT_RUNTIME_DISCORD_TOKEN is not set"),
    }
    match &c.email {
        Some(e) => {
            let (e, max) = (e.clone(), c.attachment_max_bytes);
            let (gateway, dispatcher, health) = (gateway.clone(), dispatcher.clone(), health.clone());
            platforms.push((
                email::NAME,
                Box::new(move || {
                    Box::new(email::EmailConnector {
                        config: e.clone(),
                        attachment_max_bytes: max,
                        gateway: gateway.clone(),
                        dispatcher: dispatcher.clone(),
                        health: health.clone(),
                    })
                }),
            ));
        }
        None => health.disabled(email::NAME, "AGENT_RUNTIME_EMAIL_ENABLED is not true (or the IMAP settings are incomplete)"),
    }
    for (name, mut make) in platforms {
        let stop = sup.token().clone();
        sup.spawn_restarting(name, name, CONNECTOR_RESTART, move || make().run(stop.clone()));
    }
}

/// The admin API (mutual TLS unless plain HTTP is configured), the probe
/// listener if configured, and the serve state file; reports `api` and
/// `runtime` healthy.
async fn start_api(
    config: &Config,
    core: &Core,
    parts: Parts,
    root: &Supervisor,
    listener: TcpListener,
    started: std::time::Instant,
) -> Result<(ApiFuture, CancellationToken, Supervisor, PathBuf), ServeError> {
    let streams = Supervisor::new();
    let health = &core.health;
    let state = ApiState::new(ApiParts {
        store: core.store.clone(),
        gateway: parts.gateway,
        orchestrator: core.orchestrator.clone(),
        clock: core.clock.clone(),
        environment: config.environment.clone(),
        prices: Arc::new(config.llm.prices.clone()),
        streams: streams.clone(),
        events_slow_client: config.http.events_slow_client,
        health: health.clone(),
        heartbeat_enabled: config.heartbeat.enabled,
        started,
        scheduler: core.scheduler.clone(),
    });
    let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: config.http.addr, source })?;
    let tls = if config.http.plain_http { None } else { Some(TlsState::load(tls_files(config)?)?) };
    let api_stop = CancellationToken::new();
    let api_sup = root.essential("api");
    if let Some(probe_addr) = config.http.health_addr {
        let probes = TcpListener::bind(probe_addr).await.map_err(|source| ServeError::Bind { addr: probe_addr, source })?;
        let (probe_state, probe_stop) = (state.clone(), api_stop.clone());
        api_sup.spawn("health-listener", async move {
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
    tracing::info!(url = %format!("{scheme}://{addr}"), mutual_tls = tls.is_some(), db = %config.paths.db_path.display(), llm = %parts.llm.describe(), workers = config.orchestrator.concurrency, "agent-runtime serving");

    let app = router(state, &config.http);
    let api: ApiFuture = match &tls {
        Some(tls) => {
            let (reload, hup_health, hup_stop) = (tls.clone(), health.clone(), api_sup.token().clone());
            api_sup.spawn("tls-reload", async move { reload_on_sighup(reload, hup_health, hup_stop).await });
            // Connections are per-request work: a panic in one is logged, the listener carries on.
            Box::pin(serve_tls(listener, app, tls.clone(), (&config.http).into(), root.child(), api_stop.clone()))
        }
        None => Box::pin(serve_api(listener, app, api_stop.clone())),
    };
    Ok((api, api_stop, streams, state_file))
}
