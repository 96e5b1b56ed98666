//! Pairings and approvals from outside the chat: the pairing endpoints over
//! real mutual TLS (life cycle, every bad input, audit by certificate, tokens kept out of logs) and
//! the `approval` and `pairing` CLI verbs against a running daemon.

use crate::approvals::receiver;
use crate::support::daemon::{Daemon, command};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_else(|| panic!("no error field in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_endpoints_run_the_life_cycle_with_clear_errors_and_audit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;

    let (s, v) =
        d.post("/api/v1/pairings/start", &json!({"connector": "Telegram", "connector_user_id": "42", "display_name": "Ann"})).await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().expect("token").to_string();
    assert_eq!(token.len(), 16, "80 bits in base32: {token}");
    assert_eq!((v["status"].as_str(), v["connector"].as_str()), (Some("pending"), Some("telegram")));
    assert!(v.get("token_hash").is_none(), "the hash is not handed out: {v}");

    // Lookup is loose about case and dashes, and never changes state.
    let loose = format!("{}-{}", token[..8].to_lowercase(), &token[8..]);
    let (s, v) = d.post("/api/v1/pairings/lookup", &json!({"token": loose})).await;
    assert_eq!((s, v["status"].as_str(), v["display_name"].as_str()), (200, Some("pending"), Some("Ann")), "{v}");

    // Bad input: each gets a 400 naming the problem.
    let bad = [
        (json!({"connector_user_id": "1"}), "missing field `connector`"),
        (json!({"connector": "telegram", "connector_user_id": "1", "role": "admin"}), "unknown field `role`"),
        (json!({"connector": "telegram", "connector_user_id": "1", "expires_in_sec": 5}), "expires_in_sec must be between 60 and 86400"),
        (json!({"connector": "Bad Name!", "connector_user_id": "1"}), "connector must be"),
        (json!({"connector": "telegram", "connector_user_id": " "}), "connector_user_id must be"),
    ];
    for (body, want) in bad {
        let (s, v) = d.post("/api/v1/pairings/start", &body).await;
        assert_eq!(s, 400, "{body} → {v}");
        assert!(error_of(&v).contains(want), "{body} → {v}");
    }
    let (s, v) = d.post_raw("/api/v1/pairings/approve", "{\"token\": ").await;
    assert_eq!(s, 400);
    assert!(error_of(&v).starts_with("invalid request body"), "{v}");
    let (s, v) = d.post("/api/v1/pairings/approve", &json!({"token": token, "role": "king"})).await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("unknown role \"king\""), "{v}");
    let (s, v) = d.post("/api/v1/pairings/approve", &json!({"token": "x"})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = d.post("/api/v1/pairings/approve", &json!({"token": "AAAAAAAAAAAAAAAA"})).await;
    assert_eq!((s, error_of(&v)), (404, "Pairing token not found."));
    let (s, _) = d.get("/api/v1/pairings/start").await;
    assert_eq!(s, 405);

    // Approve as admin; a second approval and a new request for the linked identity are refused.
    let (s, v) = d.post("/api/v1/pairings/approve", &json!({"token": token, "role": "admin"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["pairing"]["status"].as_str(), v["user"]["role"].as_str()), (Some("approved"), Some("admin")), "{v}");
    let (s, v) = d.post("/api/v1/pairings/approve", &json!({"token": token})).await;
    assert_eq!((s, error_of(&v)), (409, "This pairing request was already approved."));
    let (s, v) = d.post("/api/v1/pairings/start", &json!({"connector": "telegram", "connector_user_id": "42"})).await;
    assert_eq!((s, error_of(&v)), (409, "This identity is already linked to a user."));
    let (s, v) =
        d.post("/api/v1/chat", &json!({"connector": "telegram", "external_id": "42", "from_user_id": "42", "text": "/whoami"})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["reply"].as_str().expect("reply").contains("admin"), "the linked identity acts as admin: {v}");

    // Deny another request; its lookup shows why.
    let (_, v) = d.post("/api/v1/pairings/start", &json!({"connector": "discord", "connector_user_id": "7"})).await;
    let other = v["token"].as_str().expect("token").to_string();
    let (s, v) = d.post("/api/v1/pairings/deny", &json!({"token": other, "reason": "unknown person"})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("denied")), "{v}");
    let (_, v) = d.post("/api/v1/pairings/lookup", &json!({"token": other})).await;
    assert_eq!((v["status"].as_str(), v["reason"].as_str()), (Some("denied"), Some("unknown person")));
    let (s, v) = d.post("/api/v1/pairings/deny", &json!({"token": other})).await;
    assert_eq!((s, error_of(&v)), (409, "This pairing request was already denied."));

    let (s, v) = d.get("/api/v1/pairings?status=approved").await;
    assert_eq!(s, 200);
    let approved = v["pairings"].as_array().expect("list");
    assert_eq!(approved.len(), 1, "{v}");
    assert_eq!(approved[0]["connector_user_id"], "42");
    let (s, v) = d.get("/api/v1/pairings?status=bogus").await;
    assert_eq!(s, 400, "{v}");

    let (_, v) = d.get("/api/v1/audit?event=pairing.").await;
    let events: Vec<(String, String)> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (e["event"].as_str().unwrap_or("").to_string(), e["actor"].as_str().unwrap_or("").to_string()))
        .collect();
    for want in
        ["pairing.requested", "pairing.approved", "pairing.approve_refused", "pairing.refused", "pairing.denied", "pairing.deny_refused"]
    {
        // The actor is the client certificate the call came with.
        assert!(events.iter().any(|(e, a)| e == want && a == "cert:local-admin"), "{want} by cert:local-admin missing from {events:?}");
    }
    let log = d.log();
    assert!(!log.contains(&token) && !log.contains(&other), "tokens never reach the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_and_pairing_verbs_drive_a_running_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let (url, calls) = receiver().await;
    let cli = |args: &[&str]| command(dir.path(), &[]).args(args).output().expect("run agent-runtime");
    let ok = |args: &[&str]| {
        let o = cli(args);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "{args:?}: {out}{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let propose = |summary: &str| {
        json!({"connector": "test", "external_id": "ops", "action_type": "webhook",
               "target": url, "summary": summary, "payload": {"text": summary}})
    };
    let (s, first) = d.post("/api/v1/approvals", &propose("ping the deploy hook")).await;
    assert_eq!(s, 201, "{first}");
    let first_id = first["id"].as_str().expect("id").to_string();

    let list = ok(&["approval", "list", "--status", "pending"]);
    assert!(list.contains(&first_id) && list.contains("ping the deploy hook") && list.contains("1 request(s)"), "{list}");
    let show = ok(&["approval", "show", &first_id]);
    assert!(show.contains("status:    pending (execution not_executed)") && show.contains("sha256 "), "{show}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "listing and showing run nothing");

    let approved = ok(&["approval", "approve", "latest"]);
    assert!(approved.contains(&format!("Approved {first_id}: succeeded")), "{approved}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let again = cli(&["approval", "approve", &first_id]);
    let text = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && text.contains("already") && text.contains("HTTP 409"), "{text}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a second approval runs nothing");

    let (_, second) = d.post("/api/v1/approvals", &propose("ping it again")).await;
    let second_id = second["id"].as_str().expect("id").to_string();
    let json_out: Value =
        serde_json::from_str(&ok(&["approval", "deny", &second_id[..second_id.len() - 4], "--reason", "not today", "--json"]))
            .expect("json");
    assert_eq!((json_out["status"].as_str(), json_out["reason"].as_str()), (Some("denied"), Some("not today")));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a denied action never runs");

    let started = ok(&["pairing", "start", "--connector", "telegram", "--user-id", "7", "--display-name", "Bo"]);
    let token = started
        .lines()
        .find_map(|l| l.strip_prefix("Token:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token in {started}"))
        .to_string();
    assert!(ok(&["pairing", "lookup", &token]).contains("status:    pending"));
    let linked = ok(&["pairing", "approve", &token, "--role", "operator"]);
    assert!(linked.contains("telegram user 7 (Bo) linked as operator"), "{linked}");
    let list = ok(&["pairing", "list", "--status", "approved"]);
    assert!(list.contains("telegram/7") && list.contains("1 request(s)"), "{list}");
    let bad = cli(&["pairing", "approve", "AAAAAAAAAAAAAAAA"]);
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && text.contains("Pairing token not found. (HTTP 404)"), "{text}");
    assert!(!d.log().contains(&token), "the token never reaches the daemon log");
}
