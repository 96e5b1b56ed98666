//! The outbox delivery worker: retries with backoff, gives up honestly, and
//! keeps what it could not deliver.

use agent_runtime::BoxFuture;
use agent_runtime::clock::{Clock, ManualClock};
use agent_runtime::config::OutboxConfig;
use agent_runtime::domain::{ChatRef, MessageKind, OutboundMessage, OutboxStatus};
use agent_runtime::outbox::{Delivered, Outbox, PublishError, Publisher, Publishers};
use agent_runtime::store::{NewOutbound, Store};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Plays a script of results; records what it was asked to send.
struct Scripted {
    script: Mutex<VecDeque<Result<Delivered, PublishError>>>,
    sent: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(script: Vec<Result<Delivered, PublishError>>) -> Arc<Self> {
        Arc::new(Self { script: Mutex::new(script.into()), sent: Mutex::new(Vec::new()) })
    }
}

impl Publisher for Scripted {
    fn publish<'a>(&'a self, msg: &'a OutboundMessage) -> BoxFuture<'a, Result<Delivered, PublishError>> {
        Box::pin(async move {
            self.sent.lock().expect("sent").push(msg.body.clone());
            self.script.lock().expect("script").pop_front().unwrap_or(Ok(Delivered::default()))
        })
    }
}

fn transient() -> Result<Delivered, PublishError> {
    Err(PublishError::transient("503 Service Unavailable"))
}

async fn setup(script: Vec<Result<Delivered, PublishError>>) -> (tempfile::TempDir, Store, Outbox, ManualClock, Arc<Scripted>, ChatRef) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("meta.sqlite")).expect("store");
    let clock = ManualClock::new(1_000_000);
    let publisher = Scripted::new(script);
    let outbox = Outbox {
        store: store.clone(),
        publishers: Publishers::default().with("fakechat", publisher.clone()),
        config: OutboxConfig { max_attempts: 3, retry_base: Duration::from_secs(2), retry_max: Duration::from_secs(600) },
        clock: Arc::new(clock.clone()),
        ready: Arc::new(tokio::sync::Notify::new()),
        health: None,
    };
    (dir, store, outbox, clock, publisher, ChatRef::new("fakechat", "room-1").expect("chat"))
}

fn message(chat: &ChatRef, body: &str) -> NewOutbound {
    NewOutbound {
        preview: None,
        chat: chat.clone(),
        kind: MessageKind::Reply,
        body: body.into(),
        task_id: None,
        trace_id: None,
        options: Default::default(),
    }
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_until_delivered() {
    let (_d, store, outbox, clock, publisher, chat) =
        setup(vec![transient(), transient(), Ok(Delivered { platform_message_id: Some("m-77".into()) })]).await;
    let id = store.enqueue_outbound(message(&chat, "hello"), clock.now_ms()).await.expect("enqueue");
    assert_eq!(outbox.deliver_due().await.expect("pass 1"), 0);
    assert_eq!(outbox.deliver_due().await.expect("not due yet"), 0, "backoff holds the retry");
    assert_eq!(publisher.sent.lock().expect("sent").len(), 1);
    clock.advance(2_000);
    assert_eq!(outbox.deliver_due().await.expect("pass 2"), 0);
    clock.advance(3_999);
    assert_eq!(outbox.deliver_due().await.expect("still backing off (4 s)"), 0);
    clock.advance(1);
    assert_eq!(outbox.deliver_due().await.expect("pass 3"), 1);
    let m = store.get_outbound(id).await.expect("row");
    assert_eq!((m.status, m.attempts, m.platform_message_id.as_deref(), m.last_error), (OutboxStatus::Sent, 3, Some("m-77"), None));
}

#[tokio::test]
async fn permanent_failures_and_exhausted_retries_are_marked_failed_with_the_reason() {
    let permanent = Err(PublishError::permanent("403 bot was blocked by the user"));
    let (_d, store, outbox, clock, _p, chat) = setup(vec![permanent, transient(), transient(), transient()]).await;
    let blocked = store.enqueue_outbound(message(&chat, "to a blocked chat"), clock.now_ms()).await.expect("enqueue");
    outbox.deliver_due().await.expect("pass");
    let m = store.get_outbound(blocked).await.expect("row");
    assert_eq!((m.status, m.attempts, m.last_error.as_deref()), (OutboxStatus::Failed, 1, Some("403 bot was blocked by the user")));

    let flaky = store.enqueue_outbound(message(&chat, "to a flaky chat"), clock.now_ms()).await.expect("enqueue");
    for _ in 0..3 {
        outbox.deliver_due().await.expect("pass");
        clock.advance(600_000);
    }
    let m = store.get_outbound(flaky).await.expect("row");
    assert_eq!((m.status, m.attempts, m.last_error.as_deref()), (OutboxStatus::Failed, 3, Some("503 Service Unavailable")));
    assert_eq!(outbox.deliver_due().await.expect("nothing left"), 0);
    assert_eq!(store.pending_outbound_count().await.expect("count"), 0);
}

#[tokio::test]
async fn chats_without_a_platform_publisher_go_to_the_mailbox() {
    let (_d, store, outbox, clock, publisher, _chat) = setup(vec![]).await;
    let api_chat = ChatRef::new("codex", "cli").expect("chat");
    let id = store.enqueue_outbound(message(&api_chat, "for polling"), clock.now_ms()).await.expect("enqueue");
    assert_eq!(outbox.deliver_due().await.expect("pass"), 1);
    assert_eq!(store.get_outbound(id).await.expect("row").status, OutboxStatus::Sent);
    assert!(publisher.sent.lock().expect("sent").is_empty(), "the platform publisher was not used");
    let polled = store.chat_messages(&api_chat, 0, 10).await.expect("poll");
    assert_eq!(polled.len(), 1);
}

/// The seam connectors will use: a message handled with `Delivery::Outbox`
/// gets its reply through the outbox and the connector's publisher, never
/// inline.
#[tokio::test]
async fn gateway_replies_for_platform_chats_go_through_the_outbox_and_publisher() {
    use agent_runtime::agent::{Llm, PromptBuilder};
    use agent_runtime::config::{Config, EnvSource};
    use agent_runtime::domain::{Inbound, TraceId};
    use agent_runtime::gateway::{Delivery, Gateway, GatewayParts};
    use agent_runtime::orchestrator::OrchestratorHandle;
    use agent_runtime::workspace::Workspaces;

    let (dir, store, outbox, clock, publisher, chat) = setup(vec![]).await;
    // An open bot: unlinked senders may queue tasks (the default guest role is `none`).
    let cfg = Config::read(&EnvSource::from_pairs([
        ("AGENT_RUNTIME_DATA_DIR", dir.path().display().to_string()),
        ("AGENT_RUNTIME_GATEWAY_GUEST_ROLE", "member".to_string()),
    ]))
    .config;
    let shared: agent_runtime::clock::SharedClock = Arc::new(clock.clone());
    let workspaces = Workspaces::new(dir.path().join("workspaces"));
    let gateway = Gateway::new(GatewayParts {
        store: store.clone(),
        orchestrator: OrchestratorHandle::new(store.clone(), shared.clone(), cfg.orchestrator.clone(), cfg.notify, outbox.ready.clone()),
        llm: Llm::new(Err("no provider in this test".into()), store.clone(), shared.clone()),
        llm_enabled: true,
        prompts: PromptBuilder::new(cfg.prompts.clone(), &cfg.llm, workspaces.clone()),
        workspaces,
        clock: shared,
        config: cfg.gateway.clone(),
        outbox_ready: outbox.ready.clone(),
        actions: Default::default(),
    });
    let msg = Inbound {
        chat: chat.clone(),
        from_user_id: "u-1".into(),
        display_name: "U".into(),
        text: "/task@anybot water the plants".into(),
        dedupe_key: "fakechat:update:1".into(),
        kind: agent_runtime::domain::ChatKind::Private,
        mentioned: false,
        trace_id: TraceId::random(),
        meta: Default::default(),
    };
    let handled = gateway.handle(msg.clone(), Delivery::Outbox).await.expect("handle");
    let reply_id = handled.outbox_id.expect("a reply row");
    assert_eq!(store.get_outbound(reply_id).await.expect("row").status, OutboxStatus::Pending, "not delivered inline");
    assert_eq!(outbox.deliver_due().await.expect("deliver"), 1);
    let sent = publisher.sent.lock().expect("sent").clone();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("Task queued: `"), "{sent:?}");
    let again = gateway.handle(msg, Delivery::Outbox).await.expect("redelivered update");
    assert!(again.duplicate && again.outbox_id.is_none(), "a redelivered platform update is not handled twice");
    assert_eq!(store.list_tasks(Default::default()).await.expect("tasks").len(), 1);
}

/// Holds every delivery to chat `slow` until released; others pass at once.
struct Gate {
    release: tokio::sync::Semaphore,
    order: Mutex<Vec<String>>,
}

impl Publisher for Gate {
    fn publish<'a>(&'a self, msg: &'a OutboundMessage) -> BoxFuture<'a, Result<Delivered, PublishError>> {
        Box::pin(async move {
            if msg.chat.external_id == "slow" {
                self.release.acquire().await.expect("open").forget();
            }
            self.order.lock().expect("order").push(msg.body.clone());
            Ok(Delivered::default())
        })
    }
}

#[tokio::test]
async fn a_slow_chat_holds_up_no_other_chat_and_each_chat_keeps_its_order() {
    let (_dir, store, mut outbox, _clock, _p, _chat) = setup(vec![]).await;
    let gate = Arc::new(Gate { release: tokio::sync::Semaphore::new(0), order: Mutex::new(Vec::new()) });
    outbox.publishers = Publishers::default().with("fakechat", gate.clone());
    let (slow, fast) = (ChatRef::new("fakechat", "slow").expect("chat"), ChatRef::new("fakechat", "fast").expect("chat"));
    for (chat, body) in [(&slow, "s1"), (&fast, "f1"), (&slow, "s2"), (&fast, "f2")] {
        store.enqueue_outbound(message(chat, body), 1_000_000).await.expect("enqueue");
    }
    let pass = tokio::spawn({
        let outbox = outbox.clone();
        async move { outbox.deliver_due().await }
    });
    crate::support::wait_until("the fast chat delivered", Duration::from_secs(5), || async {
        (*gate.order.lock().expect("order") == ["f1", "f2"]).then_some(())
    })
    .await;
    gate.release.add_permits(2);
    assert_eq!(pass.await.expect("join").expect("pass"), 4);
    assert_eq!(*gate.order.lock().expect("order"), ["f1", "f2", "s1", "s2"]);
}
