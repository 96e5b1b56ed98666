//! `BENCH_ONLY=gateway`: in-process gateway dispatch of `/help`, `/status`
//! and `/task x` (a third each) through `Gateway::handle`, including every
//! store write (inbox row with the sender lookup, reply + audit, the task),
//! from `BENCH_CLIENTS` concurrent callers (default 64), half of them linked
//! users (members), half guests.
//!
//! It also prices the permission checks: the identity lookup that
//! `record_inbound` runs inside its write (timed on the same database with the
//! same statement, warm) plus the rule check (`gateway::check`), against the
//! CPU time one command takes (cores / rate).

use agent_runtime::actions::ActionExecutors;
use agent_runtime::agent::{Llm, PromptBuilder, build_provider};
use agent_runtime::clock::{SharedClock, SystemClock};
use agent_runtime::config::{Config, EnvSource};
use agent_runtime::domain::{Actor, ChatKind, ChatRef, Inbound, Role, TraceId};
use agent_runtime::gateway::{Command, Delivery, Gateway, GatewayParts, check};
use agent_runtime::orchestrator::OrchestratorHandle;
use agent_runtime::store::Store;
use agent_runtime::workspace::Workspaces;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// One dispatch run.
pub struct Dispatch {
    /// Commands per second.
    pub rate: f64,
    /// Mean identity lookup inside a write transaction, ns.
    pub lookup_ns: f64,
    /// Mean rule check, ns.
    pub check_ns: f64,
}

/// The identity lookup `store::people::lookup_user` runs (same text).
const LOOKUP_SQL: &str = "SELECT u.id, u.display_name, u.role FROM identities i JOIN users u ON u.id = i.user_id \
     WHERE i.connector = ?1 AND i.connector_user_id = ?2 AND i.verified = 1";

/// Times `LOOKUP_SQL` for every caller's identity, many rounds, inside one transaction.
fn time_lookups(db: &std::path::Path, clients: usize) -> f64 {
    let mut c = rusqlite::Connection::open(db).expect("open");
    let tx = c.transaction().expect("tx");
    let rounds = 2_000;
    let started = Instant::now();
    let mut found = 0usize;
    for _ in 0..rounds {
        for u in 0..clients {
            let mut stmt = tx.prepare_cached(LOOKUP_SQL).expect("prepare");
            let hit = stmt.query_row(rusqlite::params!["bench", format!("u{u}")], |r| r.get::<_, String>(0)).ok();
            found += usize::from(hit.is_some());
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / (rounds * clients) as f64;
    assert_eq!(found, rounds * clients.div_ceil(2), "half the callers are linked users");
    ns
}

/// Commands per second over `total` commands, and the permission-check prices.
pub async fn dispatch(total: usize, clients: usize) -> Dispatch {
    let dir = tempfile::tempdir().expect("tempdir");
    // Guests are members here, as before issue 14 changed the default, so the measured mix is unchanged.
    let cfg = Config::read(&EnvSource::from_pairs([
        ("AGENT_RUNTIME_DATA_DIR".to_string(), dir.path().display().to_string()),
        ("AGENT_RUNTIME_GATEWAY_GUEST_ROLE".to_string(), "member".to_string()),
        ("AGENT_RUNTIME_TASK_RATE_LIMIT_PER_WINDOW".to_string(), "0".to_string()),
    ]))
    .config;
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
    let op = Actor::operator();
    for c in (0..clients).step_by(2) {
        let started = gateway.start_pairing(&op, None, "bench", &format!("u{c}"), "bench", None).await.expect("store").expect("pairing");
        gateway.approve_pairing(&op, None, &started.token, Some(Role::Member)).await.expect("store").expect("approved");
    }
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
                    meta: Default::default(),
                };
                g.handle(msg, Delivery::Inline).await.expect("handled");
            }
        }));
    }
    for j in joins {
        j.await.expect("client");
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let ctx = store.ensure_context(&ChatRef::new("bench", "chat-0").expect("chat"), "bench", 0).await.expect("context");
    let member = store.lookup_user("bench", "u0").await.expect("store");
    let actors = [gateway.actor("u0", member), gateway.actor("u1", None)];
    let cmds = [Command::Help, Command::Status, Command::Task { prompt: "x".into() }];
    let rounds = 1_000_000;
    let check_started = Instant::now();
    let mut allowed = 0usize;
    for i in 0..rounds {
        let cmd = std::hint::black_box(&cmds[i % 3]);
        allowed += usize::from(check(&actors[i % 2], &ctx, ChatKind::Private, cmd).is_ok());
    }
    let check_ns = check_started.elapsed().as_nanos() as f64 / rounds as f64;
    assert_eq!(allowed, rounds, "members and guests may run all three");
    store.close();
    let lookup_ns = time_lookups(&cfg.paths.db_path, clients);
    Dispatch { rate, lookup_ns, check_ns }
}
