//! An in-process gateway over a real store in a temp dir, with a manual
//! clock, the real webhook executor and (optionally) the scripted LLM.

use agent_runtime::actions::{ActionExecutors, WebhookExecutor};
use agent_runtime::agent::{Llm, PromptBuilder, build_provider};
use agent_runtime::clock::{ManualClock, SharedClock};
use agent_runtime::config::{Config, EnvSource};
use agent_runtime::domain::{Actor, ChatKind, ChatRef, Inbound, Role, TraceId};
use agent_runtime::gateway::{Delivery, Gateway, GatewayParts};
use agent_runtime::orchestrator::OrchestratorHandle;
use agent_runtime::store::Store;
use agent_runtime::workspace::Workspaces;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

/// The harness.
pub struct Gw {
    pub _dir: tempfile::TempDir,
    pub store: Store,
    pub gateway: Gateway,
    pub clock: ManualClock,
    seq: AtomicU64,
}

impl Gw {
    /// A gateway configured by `env` (on top of a temp data dir).
    pub async fn start(env: &[(&str, &str)]) -> Gw {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut pairs: Vec<(String, String)> = vec![("AGENT_RUNTIME_DATA_DIR".into(), dir.path().display().to_string())];
        pairs.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let cfg = Config::read(&EnvSource::from_pairs(pairs)).config;
        let store = Store::open(&cfg.paths.db_path).expect("store");
        let clock = ManualClock::new(1_700_000_000_000);
        let shared: SharedClock = Arc::new(clock.clone());
        let workspaces = Workspaces::new(dir.path().join("workspaces"));
        let ready = Arc::new(Notify::new());
        let webhook = WebhookExecutor::new(cfg.gateway.webhook_timeout).expect("webhook client");
        let gateway = Gateway::new(GatewayParts {
            store: store.clone(),
            orchestrator: OrchestratorHandle::new(store.clone(), shared.clone(), cfg.orchestrator.clone(), cfg.notify, ready.clone()),
            llm: Llm::new(build_provider(&cfg.llm), store.clone(), shared.clone()),
            llm_enabled: cfg.llm.enabled,
            prompts: PromptBuilder::new(cfg.prompts.clone(), &cfg.llm, workspaces.clone()),
            workspaces,
            clock: shared,
            config: cfg.gateway.clone(),
            outbox_ready: ready,
            actions: ActionExecutors::default().with("webhook", Arc::new(webhook)),
        });
        Gw { _dir: dir, store, gateway, clock, seq: AtomicU64::new(0) }
    }

    /// Sends `text` from `user` in chat `chat` (connector `test`); returns the reply ("" for none).
    pub async fn say(&self, chat: &str, user: &str, kind: ChatKind, text: &str) -> String {
        self.say_mentioned(chat, user, kind, false, text).await
    }

    /// Like `say`, with the mention flag.
    pub async fn say_mentioned(&self, chat: &str, user: &str, kind: ChatKind, mentioned: bool, text: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let msg = Inbound {
            chat: ChatRef::new("test", chat).expect("chat"),
            from_user_id: user.into(),
            display_name: user.into(),
            text: text.into(),
            kind,
            mentioned,
            dedupe_key: format!("m{n}"),
            trace_id: TraceId::random(),
            meta: Default::default(),
        };
        self.gateway.handle(msg, Delivery::Inline).await.expect("handled").reply.unwrap_or_default()
    }

    /// Links `user` (private chat `dm-<user>`) with `role`, approved by the operator.
    pub async fn link(&self, user: &str, role: Role) {
        let reply = self.say(&format!("dm-{user}"), user, ChatKind::Private, "pair").await;
        let token = token_in(&reply);
        let linked = self.gateway.approve_pairing(&Actor::operator(), None, &token, Some(role)).await;
        linked.expect("store").expect("approved");
    }
}

/// The token in a `pair` reply (between the first pair of backticks).
pub fn token_in(reply: &str) -> String {
    reply.split('`').nth(1).unwrap_or_else(|| panic!("no token in {reply:?}")).to_string()
}
