//! Admin API behaviour across endpoints: idempotency keys on create
//! endpoints and the audit row every mutating call leaves, over real
//! mutual TLS with the daemon's own PKI.

use crate::support::daemon::{Daemon, command, tls_client};
use serde_json::{Value, json};

async fn post_with_key(c: &reqwest::Client, url: &str, key: &str, body: &Value) -> (u16, Option<String>, String) {
    let r = c.post(url).header("Idempotency-Key", key).json(body).send().await.expect("post");
    let replayed = r.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()).map(str::to_string);
    (r.status().as_u16(), replayed, r.text().await.expect("body"))
}

fn tasks(d: &Daemon) -> i64 {
    d.db().query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0)).expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_replays_the_first_response_and_refuses_a_different_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let url = format!("{}/api/v1/tasks", d.base);
    let body = json!({"prompt": "summarise the logs", "kind": "noop"});

    let (s1, r1, b1) = post_with_key(&d.http, &url, "create-1", &body).await;
    assert_eq!(s1, 202, "{b1}");
    assert_eq!(r1, None, "the first answer is not a replay");
    let (s2, r2, b2) = post_with_key(&d.http, &url, "create-1", &body).await;
    assert_eq!((s2, r2.as_deref(), b2.as_str()), (s1, Some("true"), b1.as_str()), "same key, same request: the same answer");
    assert_eq!(tasks(&d), 1, "and it ran once");

    let (s, _, b) = post_with_key(&d.http, &url, "create-1", &json!({"prompt": "something else", "kind": "noop"})).await;
    assert_eq!(s, 409, "{b}");
    assert!(b.contains("used with a different request"), "{b}");
    // The body limit holds for keyed requests too (the key layer reads the body itself).
    let big = json!({"prompt": "x".repeat(2 << 20), "kind": "noop"});
    let (s, _, b) = post_with_key(&d.http, &url, "big-1", &big).await;
    assert_eq!(s, 413, "{}", &b[..b.len().min(200)]);
    let (s, _, b) = post_with_key(&d.http, &url, &"k".repeat(300), &body).await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("Idempotency-Key must be"), "{b}");
    let (s, _, _) = post_with_key(&d.http, &url, "create-2", &body).await;
    assert_eq!(s, 202);
    assert_eq!(tasks(&d), 2, "a new key is a new request");

    // A bad request is kept too: the replay is the same 400, and nothing ran.
    let (s, _, b) = post_with_key(&d.http, &url, "bad-1", &json!({"promt": "typo"})).await;
    assert_eq!(s, 400, "{b}");
    let (s, r, b_again) = post_with_key(&d.http, &url, "bad-1", &json!({"promt": "typo"})).await;
    assert_eq!((s, r.as_deref(), b_again), (400, Some("true"), b));

    // Keys belong to the caller: another admin's "create-1" is their own.
    let o = command(dir.path(), &[]).args(["pki", "issue-client", "bob"]).output().expect("run");
    assert!(o.status.success());
    let bob = tls_client(&d.data(), "bob");
    let (s, r, _) = post_with_key(&bob, &url, "create-1", &body).await;
    assert!(s == 202 && r.is_none(), "{s} {r:?}");
    assert_eq!(tasks(&d), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_call_is_audited_with_the_callers_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let (s, _) = d.post("/api/v1/tasks", &json!({"prompt": "x", "kind": "noop"})).await;
    assert_eq!(s, 202);
    let (s, _) = d.post("/api/v1/tasks", &json!({"nope": 1})).await;
    assert_eq!(s, 400);
    let (s, _) = d.get("/api/v1/tasks").await;
    assert_eq!(s, 200);
    assert!(!d.chat("/help").await.is_empty());
    let (_, v) = d.get("/api/v1/audit?event=api.request").await;
    let rows: Vec<(String, String, String)> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
            (s("actor"), s("decision"), s("reason"))
        })
        .collect();
    assert_eq!(rows.len(), 3, "three POSTs audited once each, the GETs not: {rows:?}");
    assert!(rows.contains(&("cert:local-admin".into(), "allow".into(), "POST /api/v1/chat → 200".into())), "{rows:?}");
    assert!(rows.contains(&("cert:local-admin".into(), "allow".into(), "POST /api/v1/tasks → 202".into())), "{rows:?}");
    assert!(rows.contains(&("cert:local-admin".into(), "deny".into(), "POST /api/v1/tasks → 400".into())), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_can_be_retried_and_nothing_else_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let (_, v) = d.post("/api/v1/tasks", &json!({"prompt": "needs a model"})).await;
    let id = v["task"]["id"].as_str().expect("id").to_string();
    d.wait_task(&id, "failed without a model", |t| t["status"] == "failed").await;

    let (s, v) = d.post(&format!("/api/v1/tasks/{id}/retry"), &json!({})).await;
    assert_eq!((s, v["status"].as_str(), v["attempts"].as_i64()), (202, Some("queued"), Some(0)), "{v}");
    let t = d.wait_task(&id, "failed again", |t| t["status"] == "failed").await;
    let events: Vec<String> =
        t["events"].as_array().expect("events").iter().map(|e| e["event"].as_str().unwrap_or("").to_string()).collect();
    assert!(events.contains(&"retried".to_string()), "{events:?}");
    let detail = t["events"].as_array().expect("events").iter().find(|e| e["event"] == "retried").expect("retried")["detail"].clone();
    assert_eq!(detail, "retried by cert:local-admin");

    // The Go runtime's form, and the CLI.
    let (s, v) = d.post("/api/v1/tasks/retry", &json!({"task_id": id})).await;
    assert_eq!(s, 202, "{v}");
    d.wait_task(&id, "failed a third time", |t| t["status"] == "failed").await;
    let o = command(dir.path(), &[]).args(["task", "retry", &id]).output().expect("run");
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("queued again"), "{}", String::from_utf8_lossy(&o.stderr));

    let (_, v) = d.post("/api/v1/tasks", &json!({"prompt": "fine", "kind": "noop"})).await;
    let ok = v["task"]["id"].as_str().expect("id").to_string();
    d.wait_task(&ok, "noop done", |t| t["status"] == "succeeded").await;
    let (s, v) = d.post(&format!("/api/v1/tasks/{ok}/retry"), &json!({})).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("only failed or canceled tasks can be retried; this one is succeeded"), "{v}");
    let (s, _) = d.post("/api/v1/tasks/nope/retry", &json!({})).await;
    assert_eq!(s, 404);
    let (s, v) = d.post("/api/v1/tasks/retry", &json!({})).await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_sums_calls_tokens_and_cost_per_day_and_model_and_the_cli_shows_it_and_the_audit() {
    use crate::support::llm::{FakeLlm, Step};
    let llm = FakeLlm::start().await;
    llm.push([
        Step::Reply("hello".into()),
        Step::Status(500, "boom".into()),
        Step::Status(500, "boom".into()),
        Step::Status(500, "boom".into()),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("AGENT_RUNTIME_LLM_BASE_URL", llm.base_url.clone()),
        ("AGENT_RUNTIME_LLM_MODEL", "m-1".into()),
        ("AGENT_RUNTIME_LLM_PRICES", "m-1=2/10, other=1/1".into()),
    ];
    let d = Daemon::start(dir.path(), &env).await;
    assert_eq!(d.chat("hi there").await, "hello");
    let failed = d.chat("and again").await;
    assert!(failed.contains("could not reach the language model"), "{failed}");

    let (s, v) = d.get("/api/v1/usage").await;
    assert_eq!(s, 200, "{v}");
    // The provider reports its own name for the model ("m-1-fake"); the
    // failed call is recorded under the name asked for. One price covers both.
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{v}");
    let row = |m: &str| items.iter().find(|r| r["model"] == m).unwrap_or_else(|| panic!("{m} missing from {v}")).clone();
    let ok = row("m-1-fake");
    assert_eq!((ok["calls"].as_u64(), ok["errors"].as_u64()), (Some(1), Some(0)));
    assert_eq!((ok["prompt_tokens"].as_u64(), ok["completion_tokens"].as_u64()), (Some(11), Some(7)));
    let cost = ok["cost_usd"].as_f64().expect("priced by the m-1 prefix");
    assert!((cost - (11.0 * 2.0 + 7.0 * 10.0) / 1e6).abs() < 1e-9, "{cost}");
    let failed = row("m-1");
    assert_eq!((failed["calls"].as_u64(), failed["errors"].as_u64(), failed["cost_usd"].as_f64()), (Some(1), Some(1), Some(0.0)));
    assert_eq!((v["totals"]["calls"].as_u64(), v["totals"]["priced_calls"].as_u64()), (Some(2), Some(2)));
    let (s, v) = d.get("/api/v1/usage?since=10&until=5").await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = d.get("/api/v1/usage?sinec=1").await;
    assert_eq!(s, 400, "unknown parameters are refused");

    let out = command(dir.path(), &[]).args(["usage", "--days", "2"]).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("m-1") && text.contains("0.0001"), "{text}");
    let out = command(dir.path(), &[]).args(["audit", "list", "--event", "api.", "--hours", "1"]).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("cert:local-admin") && text.contains("POST /api/v1/chat → 200"), "{text}");
}

/// The `reason` of every `api.request` row, oldest first.
async fn audited(d: &Daemon) -> Vec<String> {
    let (_, v) = d.get("/api/v1/audit?event=api.request&limit=100").await;
    let mut rows: Vec<String> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| format!("{} {}", e["actor"].as_str().unwrap_or(""), e["reason"].as_str().unwrap_or("")))
        .collect();
    rows.reverse();
    rows
}

/// Regression (issue 14): refused non-GET calls (404, 405, 413) left no
/// `api.request` row, although docs/api.md says every non-GET call does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_are_audited_like_any_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_HTTP_MAX_BODY_BYTES", "1024".into())]).await;
    let send = |method: reqwest::Method, path: &str| d.http.request(method, format!("{}{path}", d.base));
    let status = |r: reqwest::RequestBuilder| async move { r.send().await.expect("send").status().as_u16() };
    assert_eq!(status(send(reqwest::Method::POST, "/api/v1/nope").json(&json!({}))).await, 404);
    assert_eq!(status(send(reqwest::Method::PUT, "/api/v1/tasks").json(&json!({}))).await, 405);
    assert_eq!(status(send(reqwest::Method::DELETE, "/api/v1/tasks/t1")).await, 405);
    assert_eq!(status(send(reqwest::Method::POST, "/api/v1/tasks").json(&json!({"prompt": "x".repeat(2048)}))).await, 413);
    let plain = send(reqwest::Method::POST, "/api/v1/tasks").header("content-type", "text/plain").body(r#"{"prompt":"x","kind":"noop"}"#);
    assert_eq!(status(plain).await, 415);
    let page = send(reqwest::Method::POST, "/api/v1/approvals/latest/approve").header("origin", "https://evil.test");
    assert_eq!(status(page).await, 403);
    assert_eq!(status(send(reqwest::Method::GET, "/api/v1/nope")).await, 404, "a GET is not audited, refused or not");
    assert_eq!(
        audited(&d).await,
        [
            "cert:local-admin POST /api/v1/nope → 404",
            "cert:local-admin PUT /api/v1/tasks → 405",
            "cert:local-admin DELETE /api/v1/tasks/{id} → 405",
            "cert:local-admin POST /api/v1/tasks → 413",
            "cert:local-admin POST /api/v1/tasks → 415",
            "cert:local-admin POST /api/v1/approvals/{id}/approve → 403",
        ]
    );
    assert_eq!(tasks(&d), 0);
}

/// Regression (issue 14): a plain loopback daemon (its callers are the
/// overlord) answered any `Host`, so a web page whose name resolves to
/// 127.0.0.1 could read and change everything (DNS rebinding), and a
/// cross-site `text/plain` POST, which needs no permission from the
/// browser, created a task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_loopback_answers_only_loopback_names_and_json_bodies_from_non_browsers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_ADMIN_PLAIN_HTTP", "true".into())]).await;
    let port = d.base.rsplit(':').next().expect("port").to_string();
    let get = |host: String| d.http.get(format!("{}/api/v1/tasks", d.base)).header("host", host).send();
    for host in ["evil.test".to_string(), format!("evil.test:{port}"), format!("127.0.0.1.evil.test:{port}")] {
        let r = get(host.clone()).await.expect("send");
        assert_eq!(r.status().as_u16(), 421, "{host}");
        let v: Value = r.json().await.expect("json");
        assert!(v["error"].as_str().is_some_and(|e| e.contains("is not a loopback name") && e.contains("DNS rebinding")), "{v}");
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}"), "localhost".to_string()] {
        assert_eq!(get(host.clone()).await.expect("send").status().as_u16(), 200, "{host}");
    }
    let rebound = d.http.post(format!("{}/api/v1/tasks", d.base)).header("host", "evil.test").json(&json!({"prompt": "x", "kind": "noop"}));
    assert_eq!(rebound.send().await.expect("send").status().as_u16(), 421);

    let form = d
        .http
        .post(format!("{}/api/v1/tasks", d.base))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(r#"{"prompt":"exfiltrate","kind":"noop"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(form.status().as_u16(), 415);
    let v: Value = form.json().await.expect("json");
    assert_eq!(v["error"], "request bodies must be sent as Content-Type: application/json (got text/plain;charset=UTF-8)");
    // An empty POST needs no Content-Type, so a page could still approve the
    // latest action: a browser's request (it carries Origin) is refused.
    let page = d.http.post(format!("{}/api/v1/approvals/latest/approve", d.base)).header("origin", "http://evil.test").send();
    let page = page.await.expect("send");
    assert_eq!(page.status().as_u16(), 403);
    let v: Value = page.json().await.expect("json");
    assert!(v["error"].as_str().is_some_and(|e| e.starts_with("requests from web pages are refused")), "{v}");
    assert_eq!(tasks(&d), 0, "nothing was created");
    assert_eq!(
        audited(&d).await,
        ["api POST /api/v1/tasks → 421", "api POST /api/v1/tasks → 415", "api POST /api/v1/approvals/{id}/approve → 403"]
    );
}
