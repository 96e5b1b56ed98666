//! The gateway's permission matrix, pairing life cycle and channel rules,
//! through the real store.

use crate::support::gateway::{Gw, token_in};
use crate::support::llm::{FakeLlm, Step};
use agent_runtime::domain::{ChatKind, Role};
use agent_runtime::store::AuditFilter;

const GROUP: ChatKind = ChatKind::Group;
const DM: ChatKind = ChatKind::Private;

/// Who needs what, written out independently of the gateway's own table:
/// (command text, least role or None for anyone, needs an admin channel).
const MATRIX: &[(&str, Option<Role>, bool)] = &[
    ("/help", None, false),
    ("/whoami", None, false),
    ("/task write a haiku", Some(Role::Member), false),
    ("/tasks", Some(Role::Viewer), false),
    ("/status", Some(Role::Viewer), false),
    ("/cancel abcd", Some(Role::Member), false),
    ("/search pricing", Some(Role::Viewer), false),
    ("/open notes.md", Some(Role::Viewer), false),
    ("/monitor example.com prices", Some(Role::Member), false),
    ("/objectives", Some(Role::Viewer), false),
    ("/admin-channel {mode}", Some(Role::Admin), false),
    ("/prompt show", Some(Role::Admin), false),
    ("/approve NOTATOKEN", Some(Role::Admin), false),
    ("/deny NOTATOKEN", Some(Role::Admin), false),
    ("/pending-actions", Some(Role::Admin), false),
    ("/approve-action act_none", Some(Role::Admin), false),
    ("/deny-action act_none", Some(Role::Admin), false),
    ("/route abcd task", Some(Role::Admin), true),
];

#[tokio::test]
async fn permission_matrix_every_command_by_role_and_channel() {
    let gw = Gw::start(&[("AGENT_RUNTIME_GATEWAY_GUEST_ROLE", "none")]).await;
    for r in Role::ALL {
        gw.link(r.as_str(), r).await;
    }
    assert!(gw.say("admin-room", "overlord", GROUP, "/admin-channel enable").await.starts_with("Admin channel enabled"));
    let actors: Vec<(&str, Option<Role>)> = std::iter::once(("stranger", None)).chain(Role::ALL.map(|r| (r.as_str(), Some(r)))).collect();
    let mut checked = 0;
    for (room, admin_room) in [("admin-room", true), ("plain-room", false)] {
        for (user, held) in &actors {
            for (text, min, needs_admin_room) in MATRIX {
                // Admins keep the admin room an admin room and the plain room plain.
                let text = text.replace("{mode}", if admin_room { "enable" } else { "disable" });
                let reply = gw.say(room, user, GROUP, &text).await;
                let expected = match (min, held) {
                    (Some(_), None) => Some("Access denied: link your account first (send `pair` to me in a private chat).".to_string()),
                    (Some(m), Some(h)) if h < m => Some(format!("Access denied: this needs the {m} role (yours is {h}).")),
                    _ if *needs_admin_room && !admin_room => {
                        Some("Access denied: this command only works in an admin channel (`/admin-channel enable`).".to_string())
                    }
                    _ => None,
                };
                match expected {
                    Some(denial) => assert_eq!(reply, denial, "{user} in {room}: {text}"),
                    None => assert!(!reply.starts_with("Access denied"), "{user} in {room}: {text} was refused: {reply}"),
                }
                checked += 1;
            }
            let pair = gw.say(room, user, GROUP, "/pair").await;
            assert_eq!(pair, "Send `pair` to me in a private chat, not in a group.", "pair is private-only");
        }
    }
    assert_eq!(checked, 2 * 6 * MATRIX.len());
    let denials = gw
        .store
        .list_audit(AuditFilter { event: Some("permission.denied".into()), limit: 1000, ..Default::default() })
        .await
        .expect("audit");
    assert!(denials.len() > 50, "every denial is audited ({} rows)", denials.len());
    assert!(denials.iter().all(|d| d.decision == "deny" && d.reason.is_some() && d.connector.as_deref() == Some("test")));
    let help = gw.say("plain-room", "viewer", GROUP, "/help").await;
    assert!(
        help.contains("/tasks") && !help.contains("/task <") && !help.contains("/approve"),
        "help lists only what a viewer may run: {help}"
    );
}

#[tokio::test]
async fn pairing_life_cycle_expiry_reuse_and_escalation() {
    let gw = Gw::start(&[]).await;
    gw.link("boss", Role::Admin).await;
    let first = token_in(&gw.say("dm-alice", "alice", DM, "pair").await);
    let second_reply = gw.say("dm-alice", "alice", DM, "/pair").await;
    let second = token_in(&second_reply);
    assert_ne!(first, second);
    assert_eq!(gw.say("ops", "boss", GROUP, &format!("/approve {first}")).await, "This pairing request was already expired.");
    assert_eq!(gw.say("ops", "boss", GROUP, "/approve AAAAAAAAAAAAAAAA").await, "Pairing token not found.");
    assert_eq!(
        gw.say("ops", "boss", GROUP, &format!("/approve {second} overlord")).await,
        "You cannot grant the role overlord (yours is admin)."
    );
    let ok = gw.say("ops", "boss", GROUP, &format!("/approve {} operator", second.to_lowercase())).await;
    assert!(ok.starts_with("Pairing approved for alice") && ok.contains("linked as operator"), "{ok}");
    assert_eq!(gw.say("ops", "boss", GROUP, &format!("/approve {second}")).await, "This pairing request was already approved.");
    assert!(gw.say("dm-alice", "alice", DM, "/whoami").await.contains("role operator"));
    assert_eq!(gw.say("dm-alice", "alice", DM, "pair").await, "This identity is already linked to a user.");

    let late = token_in(&gw.say("dm-bob", "bob", DM, "pair").await);
    gw.clock.advance(11 * 60 * 1000);
    assert_eq!(
        gw.say("ops", "boss", GROUP, &format!("/deny {late} spam")).await,
        "This pairing token has expired; ask the user to send `pair` again."
    );
    let carol = token_in(&gw.say("dm-carol", "carol", DM, "pair").await);
    assert_eq!(gw.say("ops", "boss", GROUP, &format!("/deny {carol} not known here")).await, "Pairing denied for carol.");
    assert!(gw.say("dm-carol", "carol", DM, "/whoami").await.starts_with("You are not linked"));

    // Tokens never reach the chat logs.
    let mut logs = String::new();
    for entry in walk(gw._dir.path()) {
        if entry.extension().is_some_and(|e| e == "md") {
            logs.push_str(&std::fs::read_to_string(&entry).unwrap_or_default());
        }
    }
    assert!(logs.contains("<token hidden>") && logs.contains("hidden in this log"), "the chat logs were written");
    for t in [&first, &second, &late, &carol] {
        assert!(!logs.to_uppercase().contains(t.as_str()), "token {t} leaked into a chat log");
    }
    let events: Vec<String> = gw
        .store
        .list_audit(AuditFilter { event: Some("pairing.".into()), limit: 100, ..Default::default() })
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.event)
        .collect();
    for e in ["pairing.requested", "pairing.approved", "pairing.denied", "pairing.approve_refused", "pairing.deny_refused"] {
        assert!(events.iter().any(|x| x == e), "{e} audited: {events:?}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[tokio::test]
async fn group_messages_without_a_mention_and_rate_limited_senders_get_no_llm_call() {
    let llm = FakeLlm::start().await;
    llm.push((0..10).map(|i| Step::Reply(format!("answer {i}"))));
    let gw = Gw::start(&[
        ("AGENT_RUNTIME_LLM_BASE_URL", &llm.base_url),
        ("AGENT_RUNTIME_LLM_API_KEY", "test-key"),
        ("AGENT_RUNTIME_LLM_RATE_LIMIT_PER_WINDOW", "2"),
    ])
    .await;
    gw.link("dan", Role::Member).await;
    assert_eq!(gw.say("group-1", "dan", GROUP, "what is the weather").await, "", "no mention: recorded, not answered");
    assert!(llm.requests().is_empty(), "no LLM call without a mention");
    let replies = [
        gw.say_mentioned("group-1", "dan", GROUP, true, "@bot one").await,
        gw.say_mentioned("group-1", "dan", GROUP, true, "@bot two").await,
        gw.say_mentioned("group-1", "dan", GROUP, true, "@bot three").await,
        gw.say_mentioned("group-1", "dan", GROUP, true, "@bot four").await,
    ];
    assert!(replies[0].starts_with("answer") && replies[1].starts_with("answer"), "{replies:?}");
    assert_eq!(replies[2], "Rate limit reached for non-admin users. Try again shortly.");
    assert_eq!(replies[3], "", "one notice per window, not one per message");
    assert_eq!(llm.requests().len(), 2);
    gw.link("eve", Role::Admin).await;
    for i in 0..4 {
        assert!(gw.say("dm-eve", "eve", DM, &format!("question {i}")).await.starts_with("answer"), "admins are exempt");
    }
    gw.clock.advance(61_000);
    assert!(gw.say_mentioned("group-1", "dan", GROUP, true, "@bot again").await.starts_with("answer"), "the window slides");
    let rows = gw.store.list_audit(AuditFilter { limit: 100, ..Default::default() }).await.expect("audit");
    let count = |ev: &str, reason: &str| rows.iter().filter(|r| r.event == ev && r.reason.as_deref() == Some(reason)).count();
    assert_eq!(count("channel_rule.denied", "mention_required"), 1);
    assert_eq!(count("rate_limit.denied", "rate_limited"), 2);
}

/// Issue 14, item 5: an unlinked sender was a `member` by default and
/// `/task` skipped the channel rules and every rate limit, so anyone who
/// could message the bot could queue unlimited model work. By default a
/// stranger may pair and ask for help, and nothing else reaches the model.
#[tokio::test]
async fn a_stranger_may_pair_and_ask_for_help_but_spends_nothing() {
    let llm = FakeLlm::start().await;
    let gw = Gw::start(&[("AGENT_RUNTIME_LLM_BASE_URL", &llm.base_url), ("AGENT_RUNTIME_LLM_API_KEY", "test-key")]).await;
    assert!(gw.say("dm-eve", "eve", DM, "/help").await.starts_with("Commands:"), "help is open");
    assert!(gw.say("dm-eve", "eve", DM, "pair").await.starts_with("Pairing requested."), "pairing is open");
    assert_eq!(
        gw.say("dm-eve", "eve", DM, "/task write me a novel").await,
        "Access denied: link your account first (send `pair` to me in a private chat)."
    );
    let first = gw.say("dm-eve", "eve", DM, "write me a novel").await;
    assert!(first.starts_with("I answer linked accounts only."), "{first}");
    for i in 0..20 {
        gw.say("dm-eve", "eve", DM, &format!("question {i}")).await;
    }
    assert!(llm.requests().is_empty(), "a stranger reached the model");
    assert_eq!(gw.store.list_tasks(Default::default()).await.expect("tasks").len(), 0);
    let notices =
        gw.store.chat_messages(&agent_runtime::domain::ChatRef::new("test", "dm-eve").expect("chat"), 0, 100).await.expect("outbox");
    let unlinked = notices.iter().filter(|m| m.body.starts_with("I answer linked accounts only.")).count();
    assert!(unlinked <= 8, "a stranger's flood gets notices up to the free-text limit, then silence: {unlinked}");
}

/// Issue 14, item 5: `/task` passed no rate limit and no channel rule.
#[tokio::test]
async fn task_commands_pass_the_channel_rules_and_a_per_sender_rate_limit() {
    let gw = Gw::start(&[("AGENT_RUNTIME_TASK_RATE_LIMIT_PER_WINDOW", "3"), ("AGENT_RUNTIME_TASK_RATE_LIMIT_WINDOW_SECONDS", "60")]).await;
    gw.link("mia", Role::Member).await;
    gw.link("boss", Role::Admin).await;
    let replies: Vec<String> = queue_tasks(&gw, "mia", 5).await;
    assert!(replies[..3].iter().all(|r| r.starts_with("Task queued: `")), "{replies:?}");
    assert_eq!(replies[3], "Rate limit reached for non-admin users. Try again shortly.");
    assert_eq!(replies[4], "", "one notice per window, then silence");
    assert_eq!(gw.store.list_tasks(Default::default()).await.expect("tasks").len(), 3);
    // /cancel writes, so it counts against the same window.
    assert_eq!(gw.say("dm-mia", "mia", DM, "/cancel abcd").await, "");
    let limited =
        gw.store.list_audit(AuditFilter { event: Some("rate_limit.denied".into()), limit: 10, ..Default::default() }).await.expect("audit");
    assert!(limited.iter().any(|a| a.reason.as_deref().is_some_and(|r| r.starts_with("/task"))), "{limited:?}");
    // Admins are exempt; the window slides.
    assert!(queue_tasks(&gw, "boss", 5).await.iter().all(|r| r.starts_with("Task queued: `")));
    gw.clock.advance(61_000);
    assert!(gw.say("dm-mia", "mia", DM, "/task one more").await.starts_with("Task queued: `"));

    // The context and role rules that keep free text from the model keep /task from it too.
    let only_admins = Gw::start(&[("AGENT_RUNTIME_LLM_ALLOWED_ROLES", "admin")]).await;
    only_admins.link("mia", Role::Member).await;
    assert_eq!(only_admins.say("dm-mia", "mia", DM, "/task anything").await, "LLM replies are disabled for your role.");
    assert_eq!(only_admins.store.list_tasks(Default::default()).await.expect("tasks").len(), 0);
}

async fn queue_tasks(gw: &Gw, user: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(gw.say(&format!("dm-{user}"), user, DM, &format!("/task job {i}")).await);
    }
    out
}

/// Issue 14, item 6: pairing tokens reached the event log (the `pair`
/// reply's preview and the `/approve` message's) and, written as
/// `/approve@bot`, the chat log; the inbox row kept them for good.
#[tokio::test]
async fn pairing_tokens_are_copied_nowhere() {
    let gw = Gw::start(&[]).await;
    gw.link("boss", Role::Admin).await;
    let ann = token_in(&gw.say("dm-ann", "ann", DM, "pair").await);
    let bob = token_in(&gw.say("dm-bob", "bob", DM, "pair").await);
    let cy = token_in(&gw.say("dm-cy", "cy", DM, "pair").await);
    assert!(gw.say("ops", "boss", GROUP, &format!("/approve@agent_bot {ann} member")).await.starts_with("Pairing approved"));
    assert!(gw.say("ops", "boss", GROUP, &format!("/Deny@agent_bot {bob} not now")).await.starts_with("Pairing denied"));
    // A malformed decision (usage error) carries the token too.
    assert!(gw.say("ops", "boss", GROUP, &format!("/approve {cy} member and more")).await.starts_with("Usage:"));

    let db = rusqlite::Connection::open(gw.store.path()).expect("db");
    let dump = |sql: &str| -> String {
        let mut stmt = db.prepare(sql).expect("prepare");
        let rows: Vec<String> =
            stmt.query_map([], |r| r.get::<_, Option<String>>(0)).expect("query").filter_map(|r| r.ok().flatten()).collect();
        rows.join("\n")
    };
    let events = dump("SELECT data FROM events");
    let inbox = dump("SELECT text || ' ' || COALESCE(meta, '') FROM inbox");
    let audit = dump("SELECT COALESCE(reason, '') || ' ' || COALESCE(subject, '') FROM audit_events");
    let mut logs = String::new();
    for entry in walk(gw._dir.path()) {
        if entry.extension().is_some_and(|e| e == "md") {
            logs.push_str(&std::fs::read_to_string(&entry).unwrap_or_default());
        }
    }
    assert!(events.contains("message.inbound") || events.contains("inbox_id"), "the event log was written: {events}");
    assert!(logs.contains("/approve@agent_bot <token hidden>"), "{logs}");
    for t in [&ann, &bob, &cy] {
        let t = t.to_uppercase();
        for (what, text) in [("event log", &events), ("inbox rows", &inbox), ("audit log", &audit), ("chat logs", &logs)] {
            assert!(!text.to_uppercase().contains(&t), "token {t} leaked into the {what}");
        }
    }
}

/// Issue 14, item 13: a stored message whose processing failed on our side
/// stayed `received` until the next start. It is tried again with backoff
/// while the daemon runs, and after the last try it is `failed`, counted and
/// shown by the health component.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_errors_are_retried_with_backoff_and_then_failed_for_good() {
    use agent_runtime::domain::{ChatRef, Inbound, TraceId};
    use agent_runtime::gateway::{Arrival, Dispatcher};
    use agent_runtime::health::Health;
    use agent_runtime::runtime::Supervisor;
    use std::time::Duration;

    let gw = Gw::start(&[]).await;
    let clock: agent_runtime::clock::SharedClock = std::sync::Arc::new(agent_runtime::clock::SystemClock);
    let health = Health::new(clock, Duration::from_secs(60));
    let sup = Supervisor::new();
    let dispatcher = Dispatcher::spawn(gw.gateway.clone(), &sup, 4, Some(health.clone()));
    let db = rusqlite::Connection::open(gw.store.path()).expect("db");
    // The store refuses to record any outcome: every processing attempt fails on our side.
    db.execute_batch("CREATE TRIGGER refuse BEFORE UPDATE ON inbox BEGIN SELECT RAISE(ABORT, 'injected: disk trouble'); END;")
        .expect("trigger");
    let msg = |n: u32| Inbound {
        chat: ChatRef::new("test", &format!("dm-{n}")).expect("chat"),
        from_user_id: format!("u{n}"),
        display_name: "U".into(),
        text: "/help".into(),
        kind: DM,
        mentioned: false,
        dedupe_key: format!("retry-{n}"),
        trace_id: TraceId::random(),
        meta: Default::default(),
    };
    let status = |id: i64| db.query_row("SELECT status FROM inbox WHERE id = ?1", [id], |r| r.get::<_, String>(0)).expect("status");
    let stored = gw.gateway.ingest(vec![Arrival::text(msg(1))], None).await.expect("stored");
    let first: i64 = db.query_row("SELECT MAX(id) FROM inbox", [], |r| r.get(0)).expect("id");
    dispatcher.submit(stored).await;
    // A try fails; then the fault is gone and a later try answers it, with no restart.
    crate::support::wait_until("a failed try", Duration::from_secs(10), || async {
        let log = agent_runtime::metrics::metrics().render(&Default::default(), &[]);
        log.lines()
            .any(|l| l.contains("outcome=\"process_retried\"") && l.contains("connector=\"test\"") && !l.ends_with(" 0"))
            .then_some(())
    })
    .await;
    assert_eq!(status(first), "received", "still waiting between tries");
    db.execute_batch("DROP TRIGGER refuse;").expect("drop");
    crate::support::wait_until("the retried message answered", Duration::from_secs(15), || async {
        (status(first) == "handled").then_some(())
    })
    .await;

    // A fault that does not pass: after five tries (1+2+4+8 s) the row is failed for good.
    db.execute_batch("CREATE TRIGGER refuse BEFORE UPDATE ON inbox WHEN NEW.status = 'handled' BEGIN SELECT RAISE(ABORT, 'injected: disk trouble'); END;")
        .expect("trigger");
    let stored = gw.gateway.ingest(vec![Arrival::text(msg(2))], None).await.expect("stored");
    let second: i64 = db.query_row("SELECT MAX(id) FROM inbox", [], |r| r.get(0)).expect("id");
    dispatcher.submit(stored).await;
    crate::support::wait_until("the message failed for good", Duration::from_secs(30), || async {
        (status(second) == "failed").then_some(())
    })
    .await;
    let error: String = db.query_row("SELECT error FROM inbox WHERE id = ?1", [second], |r| r.get(0)).expect("error");
    assert!(error.starts_with("database error"), "the store's error is recorded: {error}");
    let view = health.snapshot().components.into_iter().find(|c| c.name == "dispatcher").expect("the dispatcher component");
    assert_eq!(view.state.as_str(), "degraded", "{view:?}");
    let metrics = agent_runtime::metrics::metrics().render(&Default::default(), &[]);
    assert!(metrics.lines().any(|l| l.contains("outcome=\"process_failed\"") && l.contains("connector=\"test\"")), "{metrics}");
    sup.token().cancel();
}
