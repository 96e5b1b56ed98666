//! Durable approvals: a pending webhook action does not run; approve runs
//! exactly the stored payload exactly once; deny and expiry never run it.

use crate::support::gateway::Gw;
use agent_runtime::domain::{Actor, ChatKind, ChatRef, Role};
use agent_runtime::gateway::{ActionError, ProposedAction};
use agent_runtime::store::{ApprovalError, AuditFilter};
use axum::Router;
use axum::routing::post;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A webhook receiver that counts POSTs (each takes 50 ms, to widen races).
pub(crate) async fn receiver() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = Router::new().route(
        "/hook",
        post(move |body: String| {
            let c = c.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                c.fetch_add(1, Ordering::SeqCst);
                format!("got {} bytes", body.len())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), calls)
}

fn proposal(url: &str, user: &str) -> ProposedAction {
    ProposedAction {
        chat: ChatRef::new("test", &format!("dm-{user}")).expect("chat"),
        from_user_id: user.into(),
        display_name: user.into(),
        action_type: "webhook".into(),
        target: url.into(),
        summary: "notify the deploy channel".into(),
        payload: serde_json::json!({"text": "deploy v2", "level": 3}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_runs_the_webhook_exactly_once_even_when_approved_twice_at_once() {
    let (url, calls) = receiver().await;
    let gw = Gw::start(&[]).await;
    gw.link("mallory", Role::Member).await;
    gw.link("boss", Role::Admin).await;
    let a = gw.gateway.propose_action(proposal(&url, "mallory")).await.expect("proposed");
    assert!(a.id.as_str().starts_with("act_") && a.status == "pending");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a pending action does not call the webhook");

    gw.link("root", Role::Overlord).await;
    for word in ["yes", "approve", "approve it", "ok do it"] {
        let reply = gw.say("dm-root", "root", ChatKind::Private, word).await;
        assert!(!reply.contains("approved"), "a plain {word:?} is free text, not an approval: {reply}");
    }
    assert_eq!(gw.store.get_approval(&a.id).await.expect("row").status, "pending", "plain words approve nothing");
    let refused = gw.say("dm-mallory", "mallory", ChatKind::Private, &format!("/approve-action {}", a.id)).await;
    assert_eq!(refused, "Access denied: this needs the admin role (yours is member).");
    assert_eq!(gw.store.get_approval(&a.id).await.expect("row").status, "pending");

    let prefix = &a.id.as_str()[..12];
    let (g1, g2) = (gw.gateway.clone(), gw.gateway.clone());
    let boss = gw.gateway.actor("boss", gw.store.lookup_user("test", "boss").await.expect("lookup"));
    let (b1, b2) = (boss.clone(), boss.clone());
    let (id1, id2) = (prefix.to_string(), a.id.to_string());
    let (r1, r2) = tokio::join!(
        tokio::spawn(async move { g1.approve_action(&b1, None, &id1).await }),
        tokio::spawn(async move { g2.approve_action(&b2, None, &id2).await })
    );
    let results = [r1.expect("join"), r2.expect("join")];
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "exactly one approval wins: {results:?}");
    assert!(results.iter().any(|r| matches!(r, Err(ActionError::State(ApprovalError::NotPending(_))))));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the webhook ran exactly once");
    let done = gw.store.get_approval(&a.id).await.expect("row");
    assert_eq!((done.status.as_str(), done.execution_status.as_str()), ("approved", "succeeded"));
    assert!(done.execution_result.as_deref().is_some_and(|r| r.starts_with("HTTP 200")), "{:?}", done.execution_result);
    let again = gw.say("ops", "boss", ChatKind::Group, &format!("/approve-action {}", a.id)).await;
    assert_eq!(again, "This action was already approved.");
    assert_eq!(gw.say("ops", "boss", ChatKind::Group, "/approve-action act_doesnotexist").await, "Action approval not found.");

    let events: Vec<String> = gw
        .store
        .list_audit(AuditFilter { event: Some("approval.".into()), limit: 50, ..Default::default() })
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.event)
        .collect();
    for e in ["approval.requested", "approval.approved", "approval.executed"] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
    let denied =
        gw.store.list_audit(AuditFilter { event: Some("permission.denied".into()), limit: 10, ..Default::default() }).await.expect("audit");
    assert!(
        denied.iter().any(|d| d.reason.as_deref().is_some_and(|r| r.starts_with("/approve-action"))),
        "the refused approval is audited"
    );
}

#[tokio::test]
async fn a_payload_changed_after_the_request_is_refused() {
    let (url, calls) = receiver().await;
    let gw = Gw::start(&[]).await;
    gw.link("mallory", Role::Member).await;
    let a = gw.gateway.propose_action(proposal(&url, "mallory")).await.expect("proposed");
    let db = rusqlite::Connection::open(gw.store.path()).expect("db");
    db.execute("UPDATE approvals SET payload_json = ?1 WHERE id = ?2", rusqlite::params![r#"{"level":3,"text":"rm -rf"}"#, a.id.as_str()])
        .expect("tamper");
    let done = gw.gateway.approve_action(&Actor::operator(), None, a.id.as_str()).await.expect("approved");
    assert_eq!(done.execution_status, "refused");
    assert!(done.execution_result.as_deref().is_some_and(|r| r.contains("no longer matches its hash")));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a tampered payload never runs");
}

#[tokio::test]
async fn deny_never_runs_and_expiry_denies_and_tells_the_requester() {
    let (url, calls) = receiver().await;
    let gw = Gw::start(&[("AGENT_RUNTIME_AGENT_SENSITIVE_APPROVAL_TTL_SECONDS", "60")]).await;
    gw.link("mallory", Role::Member).await;
    gw.link("boss", Role::Admin).await;
    let denied = gw.gateway.propose_action(proposal(&url, "mallory")).await.expect("proposed");
    let reply = gw.say("ops", "boss", ChatKind::Group, &format!("/deny-action {} too risky", &denied.id.as_str()[..10])).await;
    assert_eq!(reply, format!("Action `{}` denied.", denied.id));
    let row = gw.store.get_approval(&denied.id).await.expect("row");
    assert_eq!((row.status.as_str(), row.reason.as_deref(), row.execution_status.as_str()), ("denied", Some("too risky"), "not_executed"));

    let late = gw.gateway.propose_action(proposal(&url, "mallory")).await.expect("proposed");
    gw.clock.advance(61_000);
    assert_eq!(gw.gateway.expire_actions().await.expect("expire"), 1);
    assert_eq!(gw.store.get_approval(&late.id).await.expect("row").status, "expired");
    let again = gw.say("ops", "boss", ChatKind::Group, &format!("/approve-action {}", late.id)).await;
    assert_eq!(again, "This action was already expired.");
    let notices = gw.store.chat_messages(&ChatRef::new("test", "dm-mallory").expect("chat"), 0, 50).await.expect("outbox");
    assert!(notices.iter().any(|n| n.body.contains(late.id.as_str()) && n.body.contains("expired without approval")), "{notices:?}");
    assert!(notices.iter().any(|n| n.body.contains(denied.id.as_str()) && n.body.contains("was denied: too risky")), "{notices:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "neither a denied nor an expired action runs");
}

#[tokio::test]
async fn requesters_approve_their_own_request_only_as_admins_in_an_admin_channel() {
    let (url, calls) = receiver().await;
    let gw = Gw::start(&[]).await;
    gw.link("boss", Role::Admin).await;
    let own = gw
        .gateway
        .propose_action(ProposedAction { chat: ChatRef::new("test", "plain").expect("chat"), ..proposal(&url, "boss") })
        .await
        .expect("proposed");
    let here = gw.say("plain", "boss", ChatKind::Group, &format!("/approve-action {}", own.id)).await;
    assert_eq!(here, "You cannot approve your own request here; do it in an admin channel.");
    gw.say("ops", "boss", ChatKind::Group, "/admin-channel enable").await;
    let there = gw.say("ops", "boss", ChatKind::Group, "/approve-action latest").await;
    assert!(there.starts_with(&format!("Action `{}` approved and run.", own.id)), "{there}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let bad = gw.gateway.propose_action(ProposedAction { target: "file:///etc/passwd".into(), ..proposal(&url, "boss") }).await;
    assert!(matches!(bad, Err(ActionError::Invalid(_))), "bad targets are refused at request time");
}

/// Issue 14, item 3: the hash covered the payload alone, so a request whose
/// stored target was changed (a webhook URL pointed elsewhere) still ran.
#[tokio::test]
async fn a_target_or_type_changed_after_the_request_is_refused() {
    let (url, calls) = receiver().await;
    let (elsewhere, other_calls) = receiver().await;
    let gw = Gw::start(&[]).await;
    gw.link("mallory", Role::Member).await;
    let moved = gw.gateway.propose_action(proposal(&url, "mallory")).await.expect("proposed");
    let retyped = gw.gateway.propose_action(proposal(&url, "mallory")).await.expect("proposed");
    let db = rusqlite::Connection::open(gw.store.path()).expect("db");
    db.execute("UPDATE approvals SET target = ?1 WHERE id = ?2", rusqlite::params![elsewhere, moved.id.as_str()]).expect("tamper");
    db.execute("UPDATE approvals SET action_type = 'send_email' WHERE id = ?1", [retyped.id.as_str()]).expect("tamper");
    for a in [&moved, &retyped] {
        let done = gw.gateway.approve_action(&Actor::operator(), None, a.id.as_str()).await.expect("approved");
        assert_eq!(done.execution_status, "refused", "{done:?}");
        assert!(done.execution_result.as_deref().is_some_and(|r| r.contains("no longer matches its hash")), "{done:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst) + other_calls.load(Ordering::SeqCst), 0, "a tampered action never runs");
}

/// Issue 14, item 3: the admins who decide are shown exactly the text the
/// hash is of, and the hash.
#[tokio::test]
async fn admins_see_exactly_what_is_hashed() {
    let (url, _calls) = receiver().await;
    let gw = Gw::start(&[]).await;
    gw.link("boss", Role::Admin).await;
    gw.link("mallory", Role::Member).await;
    gw.say("ops", "boss", ChatKind::Group, "/admin-channel enable").await;
    let a = gw.gateway.propose_action(proposal(&url, "mallory")).await.expect("proposed");
    let shown = agent_runtime::actions::hashed_text("webhook", &url, &serde_json::json!({"text": "deploy v2", "level": 3}));
    assert_eq!(agent_runtime::actions::sha256_hex(&shown), a.payload_hash);
    let notices = gw.store.chat_messages(&ChatRef::new("test", "ops").expect("chat"), 0, 50).await.expect("outbox");
    let n = notices.iter().find(|n| n.body.contains(a.id.as_str())).expect("the admin notice");
    assert!(n.body.contains(&shown) && n.body.contains(&a.payload_hash), "{}", n.body);
}

/// Issue 14, item 3: `latest` read the 500 oldest pending requests and took
/// the last of those, so past 500 it picked the wrong one.
#[tokio::test]
async fn latest_is_the_newest_pending_request_beyond_500() {
    let (url, calls) = receiver().await;
    let gw = Gw::start(&[]).await;
    gw.link("boss", Role::Admin).await;
    gw.link("mallory", Role::Member).await;
    gw.say("ops", "boss", ChatKind::Group, "/admin-channel enable").await;
    let mut last = None;
    for _ in 0..502 {
        gw.clock.advance(1);
        last = Some(gw.gateway.propose_action(proposal(&url, "mallory")).await.expect("proposed"));
    }
    let last = last.expect("proposed");
    let reply = gw.say("ops", "boss", ChatKind::Group, "/approve-action latest").await;
    assert!(reply.starts_with(&format!("Action `{}` approved and run.", last.id)), "{reply}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
