//! `BENCH_ONLY=gateway`: in-process gateway dispatch of `/help`, `/status`
//! and `/task x` (a third each) through `Gateway::handle`, including every
//! store write (inbox row with the sender lookup, reply + audit, the task),
//! from `BENCH_CLIENTS` concurrent callers (default 64).

use agent_runtime::actions::ActionExecutors;
use agent_runtime::agent::{Llm, PromptBuilder, build_provider};
use agent_runtime::clock::{SharedClock, SystemClock};
use agent_runtime::config::{Config, EnvSource};
use agent_runtime::domain::{ChatKind, ChatRef, Inbound, TraceId};
use agent_runtime::gateway::{Delivery, Gateway, GatewayParts};
use agent_runtime::orchestrator::OrchestratorHandle;
use agent_runtime::store::Store;
use agent_runtime::workspace::Workspaces;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Commands per second over `total` commands.
pub async fn dispatch(total: usize, clients: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config::read(&EnvSource::from_pairs([("AGENT_RUNTIME_DATA_DIR".to_string(), dir.path().display().to_string())])).config;
    let store = Store::open(&cfg.paths.db_path).expect("store");
    let clock: SharedClock = Arc::new(SystemClock);
    let ws = Workspaces::new(dir.path().join("workspaces"));
    let ready = Arc::new(tokio::sync::Notify::new());
    let gateway = Gateway::new(GatewayParts {
        store: store.clone(),
        orchestrator: OrchestratorHandle::new(store.clone(), clock.clone(), cfg.orchestrator.clone(), cfg.notify, ready.clone()),
        llm: Llm::new(build_provider(&cfg.llm), store.clone(), clock.clone()),
        llm_enabled: false,
        prompts: PromptBuilder::new(cfg.prompts.clone(), &cfg.llm, ws.clone()),
        workspaces: ws,
        clock,
        config: cfg.gateway.clone(),
        outbox_ready: ready,
        actions: ActionExecutors::default(),
    });
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut joins = Vec::new();
    for c in 0..clients {
        let (g, next) = (gateway.clone(), next.clone());
        joins.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let text = ["/help", "/status", "/task x"][i % 3];
                let msg = Inbound {
                    chat: ChatRef::new("bench", &format!("chat-{}", c % 50)).expect("chat"),
                    from_user_id: format!("u{c}"),
                    display_name: "bench".into(),
                    text: text.into(),
                    kind: ChatKind::Private,
                    mentioned: false,
                    dedupe_key: format!("d{i}"),
                    trace_id: TraceId::random(),
                };
                g.handle(msg, Delivery::Inline).await.expect("handled");
            }
        }));
    }
    for j in joins {
        j.await.expect("client");
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    store.close();
    rate
}
